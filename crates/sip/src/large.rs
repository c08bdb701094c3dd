//! Requests too large for UDP go over TCP (RFC 3261 §18.1.1).
//!
//! A request the proxy forwards to a UDP flow and that is larger than
//! [`LARGE_REQUEST`] bytes is sent over TCP to the same address instead,
//! with the top Via changed to TCP: the driver sees a [`Transmit`] whose flow
//! is TCP without a connection, and dials one. Devices behind NAT normally
//! cannot be dialled; the driver then reports it
//! ([`Server::handle_connect_failed`]) and the request goes out over the
//! original UDP flow after all, with UDP retransmissions. Addresses that
//! refused are remembered for a while so later large requests to them go
//! straight to UDP instead of waiting for another failed connection.
//!
//! [`Transmit`]: crate::flow::Transmit

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use crate::flow::{Flow, Transport};
use crate::server::Server;
use crate::timers::{ClientTimer, Timer};
use crate::tx::ClientState;
use crate::{HeaderName, Message};

/// Requests above this size are not sent over UDP when TCP is possible
/// (§18.1.1: "larger than 1300 bytes and the path MTU is unknown").
pub const LARGE_REQUEST: usize = 1300;

/// How long an address that refused a TCP connection gets UDP only.
const REMEMBER_REFUSAL: Duration = Duration::from_secs(600);
/// Refusals remembered at most (older ones then age out first).
const MAX_REMEMBERED: usize = 65_536;

/// Addresses whose TCP connection attempt failed, until when.
#[derive(Debug, Default)]
pub(crate) struct Unreachable(HashMap<SocketAddr, Instant>);

impl Unreachable {
    fn contains(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.0.get(addr).is_some_and(|until| *until > now)
    }

    fn insert(&mut self, addr: SocketAddr, now: Instant) {
        if self.0.len() >= MAX_REMEMBERED {
            self.purge(now);
        }
        if self.0.len() < MAX_REMEMBERED {
            self.0.insert(addr, now + REMEMBER_REFUSAL);
        }
    }

    pub(crate) fn purge(&mut self, now: Instant) {
        self.0.retain(|_, until| *until > now);
    }
}

impl Server {
    /// The driver could not open the stream connection for `flow` (a
    /// transmit with a stream transport and no connection). Requests that
    /// were moved from UDP to that connection go back to UDP.
    pub fn handle_connect_failed(&mut self, now: Instant, flow: Flow) {
        self.unreachable.insert(flow.remote, now);
        for cid in self.txs.clients_on(&flow) {
            self.fall_back_to_udp(now, cid);
        }
    }

    /// For a serialized request of `size` bytes bound for `flow`: the TCP
    /// flow to use instead, when §18.1.1 asks for one.
    pub(crate) fn large_request_flow(
        &mut self,
        now: Instant,
        flow: &Flow,
        size: usize,
    ) -> Option<Flow> {
        if flow.transport != Transport::Udp || size <= LARGE_REQUEST {
            return None;
        }
        if self.unreachable.contains(&flow.remote, now) {
            self.counters.tcp_fallbacks += 1;
            debug!(remote = %self.cfg.redaction.pii(flow.remote), size, "large request over UDP: TCP refused before");
            return None;
        }
        self.counters.sent_over_tcp += 1;
        Some(Flow {
            transport: Transport::Tcp,
            conn: None,
            ..*flow
        })
    }

    /// Resend a branch that went to a TCP connection which could not be
    /// made over its original UDP flow, with UDP timers.
    fn fall_back_to_udp(&mut self, now: Instant, cid: u64) {
        let Some(mut sent) = self.sent_request(cid) else {
            return;
        };
        let Some(client) = self.txs.client(cid) else {
            return;
        };
        let Some(udp) = client
            .udp
            .filter(|_| client.state != ClientState::Completed)
        else {
            return;
        };
        set_top_via_transport(&mut sent, Transport::Udp);
        let bytes = sent.to_bytes();
        client.bytes = bytes.clone();
        client.flow = udp;
        client.interval = self.cfg.t1;
        let resend_cancel = client.cancel.take().is_some();
        self.counters.tcp_fallbacks += 1;
        info!(remote = %self.cfg.redaction.pii(udp.remote), "no TCP connection for a large request: sent over UDP");
        self.send(udp, bytes);
        self.timers.set(
            now + self.cfg.t1,
            Timer::Client {
                tx: cid,
                kind: ClientTimer::Retransmit,
            },
        );
        if resend_cancel {
            self.send_cancel(now, cid);
        }
    }
}

/// Rewrite the transport token of the top Via (`SIP/2.0/TCP host` →
/// `SIP/2.0/UDP host`), keeping host and parameters.
pub(crate) fn set_top_via_transport(msg: &mut Message, transport: Transport) {
    let Some(via) = msg.headers.iter_mut().find(|h| h.name == HeaderName::Via) else {
        return;
    };
    let Some((_, rest)) = via.value.trim_start().split_once(char::is_whitespace) else {
        return;
    };
    via.value = format!("SIP/2.0/{} {}", transport.via_token(), rest.trim_start());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Method;

    #[test]
    fn top_via_transport_is_rewritten_and_nothing_else() {
        let mut m = Message::request(Method::Invite, "sip:a@192.0.2.9");
        m.push(
            HeaderName::Via,
            "SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1;rport",
        );
        m.push(HeaderName::Via, "SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK2");
        set_top_via_transport(&mut m, Transport::Udp);
        let vias: Vec<&str> = m.headers_named(&HeaderName::Via).collect();
        assert_eq!(
            vias,
            [
                "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport",
                "SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK2"
            ]
        );
    }

    #[test]
    fn refusals_are_remembered_for_a_while_and_bounded() {
        let t0 = Instant::now();
        let mut u = Unreachable::default();
        let a: SocketAddr = "198.51.100.7:5060".parse().unwrap();
        u.insert(a, t0);
        assert!(u.contains(&a, t0 + Duration::from_secs(599)));
        assert!(!u.contains(&a, t0 + REMEMBER_REFUSAL));
        u.purge(t0 + REMEMBER_REFUSAL);
        assert!(u.0.is_empty());
        for i in 0..MAX_REMEMBERED + 10 {
            let addr = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], (i >> 16) as u16 + 1));
            u.insert(addr, t0);
        }
        assert_eq!(u.0.len(), MAX_REMEMBERED);
    }
}
