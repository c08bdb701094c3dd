//! Dialogs the proxy record-routed: both parties' flows, so in-dialog
//! requests (ACK, BYE, re-INVITE) go back over the flows the devices opened
//! (their NAT mappings) and only ever between the two parties, never to an
//! address named in the request (no open relay).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::flow::{ConnId, Flow};

/// Idle dialogs are forgotten after this long (a call with no in-dialog
/// request for 12 hours has surely ended without a BYE).
pub(crate) const DIALOG_IDLE: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, Clone)]
pub(crate) struct Dialog {
    pub caller_tag: String,
    pub caller: Flow,
    pub callee: Flow,
    pub expires: Instant,
    /// The caller's (callee's) connection has closed: the next in-dialog
    /// request from the same address may take its place.
    pub caller_gone: bool,
    pub callee_gone: bool,
}

/// Key: Call-ID and the two tags in sorted order (direction-free).
type Key = (String, String, String);

#[derive(Debug, Default)]
pub(crate) struct Dialogs {
    map: HashMap<Key, Dialog>,
}

fn key(call_id: &str, a: &str, b: &str) -> Key {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    (call_id.to_owned(), lo.to_owned(), hi.to_owned())
}

impl Dialogs {
    pub(crate) fn insert(
        &mut self,
        call_id: &str,
        caller_tag: &str,
        callee_tag: &str,
        caller: Flow,
        callee: Flow,
        now: Instant,
    ) {
        let dialog = Dialog {
            caller_tag: caller_tag.to_owned(),
            caller,
            callee,
            expires: now + DIALOG_IDLE,
            caller_gone: false,
            callee_gone: false,
        };
        self.map
            .insert(key(call_id, caller_tag, callee_tag), dialog);
    }

    /// The dialog of an in-dialog request, refreshed.
    pub(crate) fn touch(
        &mut self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        now: Instant,
    ) -> Option<Dialog> {
        let d = self.map.get_mut(&key(call_id, from_tag, to_tag))?;
        d.expires = now + DIALOG_IDLE;
        Some(d.clone())
    }

    /// A party re-registered over `new`: its dialogs on `old` now use `new`.
    pub(crate) fn move_flow(&mut self, old: &Flow, new: Flow) {
        for d in self.map.values_mut() {
            if d.caller == *old {
                d.caller = new;
                d.caller_gone = false;
            }
            if d.callee == *old {
                d.callee = new;
                d.callee_gone = false;
            }
        }
    }

    /// A connection closed: the parties that used it are marked gone.
    pub(crate) fn connection_closed(&mut self, conn: ConnId) {
        for d in self.map.values_mut() {
            d.caller_gone |= d.caller.conn == Some(conn);
            d.callee_gone |= d.callee.conn == Some(conn);
        }
    }

    pub(crate) fn remove(&mut self, call_id: &str, from_tag: &str, to_tag: &str) {
        self.map.remove(&key(call_id, from_tag, to_tag));
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        self.map.retain(|_, d| d.expires > now);
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Transport;
    use std::net::SocketAddr;

    #[test]
    fn found_from_either_side_and_expires_when_idle() {
        let f = Flow {
            transport: Transport::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "127.0.0.1:5000".parse().unwrap(),
            conn: None,
        };
        let t0 = Instant::now();
        let mut d = Dialogs::default();
        d.insert("c", "A", "B", f, f, t0);
        assert!(d.touch("c", "B", "A", t0).is_some());
        assert_eq!(d.touch("c", "A", "B", t0).unwrap().caller_tag, "A");
        assert!(d.touch("c", "A", "X", t0).is_none());
        d.expire(t0 + DIALOG_IDLE - Duration::from_secs(1));
        assert_eq!(d.len(), 1, "touched at t0, so it lives until t0 + idle");
        d.expire(t0 + DIALOG_IDLE);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn a_moved_party_takes_its_dialogs_along() {
        let flow = |port: u16, conn: u64| Flow {
            transport: Transport::Tcp,
            local: "192.0.2.1:5060".parse().unwrap(),
            remote: SocketAddr::from(([10, 0, 0, 1], port)),
            conn: Some(crate::flow::ConnId(conn)),
        };
        let (a, b, a2) = (flow(5000, 1), flow(6000, 2), flow(7000, 3));
        let t0 = Instant::now();
        let mut d = Dialogs::default();
        d.insert("c", "A", "B", a, b, t0);
        d.move_flow(&a, a2);
        let got = d.touch("c", "A", "B", t0).unwrap();
        assert_eq!((got.caller, got.callee), (a2, b));
        d.move_flow(&flow(9999, 9), a);
        assert_eq!(
            d.touch("c", "A", "B", t0).unwrap().caller,
            a2,
            "other flows: no change"
        );
        d.connection_closed(crate::flow::ConnId(2));
        let got = d.touch("c", "A", "B", t0).unwrap();
        assert_eq!((got.caller_gone, got.callee_gone), (false, true));
        d.move_flow(&b, flow(6001, 4));
        assert!(!d.touch("c", "A", "B", t0).unwrap().callee_gone);
    }
}
