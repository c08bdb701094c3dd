//! The sans-IO SIP server: registrar, location service and proxy behind one
//! drive loop.
//!
//! ```
//! # use std::time::{Duration, Instant};
//! # use natter_sip::{Server, ServerConfig, auth::{Accounts, DigestKeys}, flow::{Input, Transport}};
//! struct NoAccounts;
//! impl Accounts for NoAccounts {
//!     fn digest_keys(&self, _: &str) -> Option<DigestKeys> { None }
//! }
//! let now = Instant::now();
//! let mut server = Server::new(ServerConfig::new("example.org"), Box::new(NoAccounts), now);
//! server.handle_input(now, Input {
//!     transport: Transport::Udp,
//!     local: "127.0.0.1:5060".parse().unwrap(),
//!     remote: "127.0.0.1:40000".parse().unwrap(),
//!     conn_id: None,
//!     bytes: b"garbage",
//! });
//! while let Some(transmit) = server.poll_transmit() { /* send transmit.bytes over transmit.flow */ }
//! if let Some(at) = server.poll_timeout() { /* sleep until `at`, then */ server.handle_timeout(at); }
//! ```

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tracing::debug;

use crate::auth::{Accounts, Digest};
use crate::dialog::Dialogs;
use crate::flow::{ConnId, Flow, Input, Transmit, Transport};
use crate::guard::{Guard, GuardConfig};
use crate::keepalive::{classify, Datagram};
use crate::location::{Binding, Location};
use crate::msg::{reason_phrase, Uri};
use crate::timers::{Timer, Timers};
use crate::tx::Transactions;
use crate::{Error, HeaderName, Limits, Message, Method};

/// Server settings. Defaults are in the field docs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Our SIP domain and digest realm.
    pub domain: String,
    /// Other host names and addresses that mean "this server" (listener
    /// IPs, public IP). Requests for them count as our domain.
    pub aliases: Vec<String>,
    /// Host written in Via and Record-Route. Default: the listener IP when
    /// specific, else `domain`.
    pub advertise: Option<String>,
    /// Shortest registration accepted (423 below). Default 60 s.
    pub min_expires: u32,
    /// Longest registration granted. Default 7,200 s.
    pub max_expires: u32,
    /// When the client names none. Default 3,600 s.
    pub default_expires: u32,
    /// Devices per account. Default 10.
    pub max_bindings: usize,
    /// Nonce lifetime. Default 300 s.
    pub nonce_ttl: Duration,
    /// Replay-protection slots (16 bytes each). Default 262,144 (4 MiB): at
    /// 4,000 challenges a second a nonce keeps its slot for over a minute;
    /// after that it is answered as stale and the client re-authenticates.
    pub nonce_slots: usize,
    pub guard: GuardConfig,
    pub limits: Limits,
    /// Proxy INVITE timer C. Default 180 s.
    pub timer_c: Duration,
    /// RTT estimate T1. Default 500 ms.
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests, T2. Default 4 s.
    pub t2: Duration,
    /// Digest algorithms challenges offer, in order. Default MD5 then
    /// SHA-256 (see [`crate::auth::DigestOffer`]).
    pub digest_offer: crate::auth::DigestOffer,
    /// Key for nonces and tags. Default: random.
    pub secret: [u8; 32],
    /// Seed for branch ids and tags. Default: random.
    pub seed: u64,
    /// Accept a digest `uri` that names this server itself (no user part,
    /// our domain or address) instead of the Request-URI. RFC 7616 §3.4.6
    /// wants the Request-URI exactly; sipp 3.6 (our tests, the benchmark)
    /// always sends `sip:SERVER-IP:PORT`. Any other mismatch is a 400
    /// either way. Default true.
    pub digest_uri_may_name_server: bool,
    /// Keepalive interval asked of outbound (RFC 5626) UAs on UDP, sent as
    /// Flow-Timer. Default 29 s (NATs drop idle UDP mappings after ~30 s).
    pub flow_timer_udp: u32,
    /// The same for TCP, TLS and WebSocket flows. Default 120 s (the
    /// drivers close streams idle for 300 s).
    pub flow_timer_stream: u32,
    /// How client addresses appear in logs. Default: hidden behind a salted
    /// digest with a random salt (`natter serve --log-pii` shows them).
    pub redaction: natter_turn::pii::Redaction,
}

impl ServerConfig {
    /// Defaults for `domain`, with a random secret and seed.
    pub fn new(domain: &str) -> ServerConfig {
        let mut rng = rand::rngs::OsRng;
        ServerConfig {
            domain: domain.to_ascii_lowercase(),
            aliases: Vec::new(),
            advertise: None,
            min_expires: 60,
            max_expires: 7200,
            default_expires: 3600,
            max_bindings: 10,
            nonce_ttl: Duration::from_secs(300),
            nonce_slots: 1 << 18,
            guard: GuardConfig::default(),
            limits: Limits::default(),
            timer_c: Duration::from_secs(180),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            digest_offer: crate::auth::DigestOffer::default(),
            secret: rng.gen(),
            seed: rng.gen(),
            digest_uri_may_name_server: true,
            flow_timer_udp: 29,
            flow_timer_stream: 120,
            redaction: natter_turn::pii::Redaction::hidden(rng.gen()),
        }
    }
}

/// Things the driver may want to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The bindings of an account changed (persist them; empty = removed).
    BindingsChanged {
        account: String,
        bindings: Vec<Binding>,
    },
}

/// Counts of live state (see [`Server::open_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenState {
    /// Server transactions and cached answers.
    pub server_transactions: usize,
    pub client_transactions: usize,
    pub dialogs: usize,
    /// Pending timers (the housekeeping sweep is always one).
    pub timers: usize,
}

/// Running totals, for metrics and tests (see [`Server::counters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// STUN Binding keepalives answered on UDP (RFC 5626 §8).
    pub stun_keepalives: u64,
    /// Datagrams that started like STUN but were not a Binding request we
    /// answer; dropped.
    pub stun_dropped: u64,
    /// Requests over 1,300 bytes for a UDP flow sent over TCP instead
    /// (RFC 3261 §18.1.1).
    pub sent_over_tcp: u64,
    /// …of which went back to UDP because no TCP connection could be made.
    pub tcp_fallbacks: u64,
}

/// How often expired bindings and stale protection state are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Registrar + location service + proxy.
pub struct Server {
    pub(crate) cfg: ServerConfig,
    pub(crate) accounts: Box<dyn Accounts + Send>,
    pub(crate) digest: Digest,
    pub(crate) location: Location,
    pub(crate) guard: Guard,
    pub(crate) txs: Transactions,
    pub(crate) dialogs: Dialogs,
    pub(crate) timers: Timers,
    pub(crate) rng: rand::rngs::StdRng,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    changed: HashMap<String, ()>,
    pub(crate) counters: Counters,
    pub(crate) unreachable: crate::large::Unreachable,
}

impl Server {
    /// A server starting at `now`.
    pub fn new(cfg: ServerConfig, accounts: Box<dyn Accounts + Send>, now: Instant) -> Server {
        let mut digest = Digest::new(
            &cfg.domain,
            &cfg.secret,
            now,
            cfg.nonce_ttl,
            cfg.nonce_slots,
        );
        digest.set_offer(cfg.digest_offer);
        let mut timers = Timers::new(now);
        timers.set(now + SWEEP_EVERY, Timer::Sweep);
        Server {
            guard: Guard::new(cfg.guard.clone()),
            rng: rand::rngs::StdRng::seed_from_u64(cfg.seed),
            cfg,
            accounts,
            digest,
            location: Location::default(),
            txs: Transactions::default(),
            dialogs: Dialogs::default(),
            timers,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            changed: HashMap::new(),
            counters: Counters::default(),
            unreachable: Default::default(),
        }
    }

    /// Feed one datagram or stream frame.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        let flow = input.flow();
        if input.bytes.iter().all(|b| *b == b'\r' || *b == b'\n') {
            return; // CRLF keepalive on UDP
        }
        if !self.guard.allow(now, flow.remote.ip()) {
            debug!(remote = %self.cfg.redaction.pii(flow.remote), "rate limit: request dropped");
            return;
        }
        if flow.transport == Transport::Udp && classify(input.bytes) == Datagram::Stun {
            return self.handle_stun(flow, input.bytes);
        }
        self.txs.expire_cache(now);
        match crate::parse(input.bytes, &self.cfg.limits) {
            Ok(msg) if msg.is_request() => self.handle_request(now, flow, msg),
            Ok(msg) => self.handle_response(now, flow, msg),
            Err(Error::Invalid { why, message })
                if message.is_request() && message.method() != Some(&Method::Ack) =>
            {
                debug!(remote = %self.cfg.redaction.pii(flow.remote), why, "400 for an invalid request");
                let reason = format!("Bad Request ({why})");
                self.reply_with(&flow, &message, 400, &reason, Vec::new());
            }
            Err(e) => {
                debug!(remote = %self.cfg.redaction.pii(flow.remote), error = %e, "dropped unreadable message")
            }
        }
        self.flush_events();
    }

    /// A STUN keepalive on the UDP SIP port: answer or drop.
    fn handle_stun(&mut self, flow: Flow, bytes: &[u8]) {
        match crate::keepalive::answer(&flow, bytes) {
            Some(reply) => {
                self.counters.stun_keepalives += 1;
                self.send(flow, reply);
            }
            None => {
                self.counters.stun_dropped += 1;
                debug!(remote = %self.cfg.redaction.pii(flow.remote), "dropped a STUN-like datagram that is no Binding request");
            }
        }
    }

    /// A stream connection closed: forget the bindings that used it.
    pub fn handle_connection_closed(&mut self, conn: ConnId) {
        self.dialogs.connection_closed(conn);
        for account in self.location.remove_connection(conn) {
            self.changed.insert(account, ());
        }
        self.flush_events();
    }

    /// Run every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Sweep => self.sweep(now),
                Timer::Client { tx, kind } => self.on_client_timer(now, tx, kind),
                Timer::Server { tx, kind } => self.on_server_timer(now, tx, kind),
            }
        }
        self.flush_events();
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`Server::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Put back a binding loaded from storage after a restart.
    pub fn restore_binding(&mut self, account: &str, binding: Binding) {
        let mut list = self.location.all(account).to_vec();
        list.push(binding);
        self.location.set(account, list);
    }

    /// The location service (read-only).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Running totals (keepalives, TCP for large requests).
    /// How personal data appears in logs (drivers log through it too).
    pub fn redaction(&self) -> natter_turn::pii::Redaction {
        self.cfg.redaction
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Open state, for metrics and leak tests.
    pub fn open_state(&self) -> OpenState {
        OpenState {
            server_transactions: self.txs.server_count(),
            client_transactions: self.txs.client_count(),
            dialogs: self.dialogs.len(),
            timers: self.timers.len(),
        }
    }

    fn handle_request(&mut self, now: Instant, flow: Flow, mut req: Message) {
        stamp_via(&mut req, &flow);
        let method = req.method().cloned();
        match method {
            Some(Method::Register) => self.handle_register(now, flow, req),
            Some(Method::Ack) => self.handle_ack(now, flow, req),
            Some(Method::Cancel) => self.handle_cancel(now, flow, req),
            Some(Method::Options) if self.is_for_us(&req, &flow) => self.reply(&flow, &req, 200),
            Some(_) => self.handle_proxy_request(now, flow, req),
            None => {}
        }
    }

    /// Is the Request-URI this server itself (no user part, our host)?
    fn is_for_us(&self, req: &Message, flow: &Flow) -> bool {
        let uri = req.request_uri().and_then(Uri::parse);
        uri.is_some_and(|u| u.user.is_none() && self.is_our_host(u.host, flow))
    }

    /// True when `host` names our domain or this server.
    pub(crate) fn is_our_host(&self, host: &str, flow: &Flow) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case(&self.cfg.domain)
            || self
                .cfg
                .aliases
                .iter()
                .any(|a| a.eq_ignore_ascii_case(host))
            || self
                .cfg
                .advertise
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case(host))
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip == flow.local.ip())
    }

    /// `host:port` we put in Via and Record-Route for a flow.
    pub(crate) fn sent_by(&self, flow: &Flow) -> String {
        let host = match (&self.cfg.advertise, flow.local.ip()) {
            (Some(a), _) => a.clone(),
            (None, ip) if ip.is_unspecified() => self.cfg.domain.clone(),
            (None, std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
            (None, ip) => ip.to_string(),
        };
        format!("{host}:{}", flow.local.port())
    }

    /// Queue bytes for a flow.
    pub(crate) fn send(&mut self, flow: Flow, bytes: Vec<u8>) {
        self.transmits.push_back(Transmit { flow, bytes });
    }

    /// Answer `req` with the standard reason phrase.
    pub(crate) fn reply(&mut self, flow: &Flow, req: &Message, code: u16) {
        self.reply_with(flow, req, code, reason_phrase(code), Vec::new());
    }

    /// Answer `req` with extra headers; returns the bytes sent.
    pub(crate) fn reply_with(
        &mut self,
        flow: &Flow,
        req: &Message,
        code: u16,
        reason: &str,
        extra: Vec<(HeaderName, String)>,
    ) -> Vec<u8> {
        let tag = self.local_tag(req);
        let mut resp = req.response(code, reason, Some(&tag));
        for (name, value) in extra {
            resp.push(name, value);
        }
        resp.push(HeaderName::Server, "natter");
        let bytes = resp.to_bytes();
        self.send(*flow, bytes.clone());
        bytes
    }

    /// A To tag that is the same for retransmissions of one request.
    pub(crate) fn local_tag(&self, req: &Message) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.cfg.seed.hash(&mut h);
        req.call_id().hash(&mut h);
        req.from().and_then(|f| f.tag()).hash(&mut h);
        format!("{:016x}", h.finish())
    }

    /// A fresh branch id, with our loop-detection hash in front.
    pub(crate) fn new_branch(&mut self, loop_hash: u64) -> String {
        let n: u64 = self.rng.gen();
        format!("z9hG4bK-nt{loop_hash:016x}.{n:x}")
    }

    pub(crate) fn note_changed(&mut self, account: &str) {
        self.changed.insert(account.to_owned(), ());
    }

    fn flush_events(&mut self) {
        for (account, ()) in self.changed.drain() {
            let bindings = self.location.all(&account).to_vec();
            self.events
                .push_back(Event::BindingsChanged { account, bindings });
        }
    }

    fn sweep(&mut self, now: Instant) {
        for account in self.location.remove_expired(now) {
            self.changed.insert(account, ());
        }
        self.guard.purge(now);
        self.dialogs.expire(now);
        self.txs.expire_cache(now);
        self.unreachable.purge(now);
        self.timers.set(now + SWEEP_EVERY, Timer::Sweep);
    }
}

/// RFC 3581 / §18.2.1: record where a request really came from in its top Via.
fn stamp_via(req: &mut Message, flow: &Flow) {
    let Some(first) = req.headers.iter_mut().find(|h| h.name == HeaderName::Via) else {
        return;
    };
    let Some(via) = crate::msg::Via::parse(&first.value) else {
        return;
    };
    let ip = flow.remote.ip();
    let host = via.host.trim_start_matches('[').trim_end_matches(']');
    // Compared as addresses, not text: this runs for every request.
    let same_host = host.parse::<std::net::IpAddr>().is_ok_and(|h| h == ip);
    let needs_received = !same_host && via.params.get("received").is_none();
    let rport = via.params.get("rport") == Some(None);
    if !needs_received && !rport {
        return;
    }
    let mut value = String::with_capacity(first.value.len() + 40);
    for piece in first.value.split(';') {
        if !value.is_empty() {
            value.push(';');
        }
        if piece.trim().eq_ignore_ascii_case("rport") {
            value.push_str("rport=");
            crate::tx::push_number(&mut value, u64::from(flow.remote.port()));
        } else {
            value.push_str(piece);
        }
    }
    value.push_str(";received=");
    // Writing into a String cannot fail.
    let _ = std::fmt::Write::write_fmt(&mut value, format_args!("{ip}"));
    first.value = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_are_hidden_in_logs_by_default() {
        let cfg = ServerConfig::new("example.org");
        let addr: std::net::SocketAddr = "198.51.100.7:5060".parse().unwrap();
        assert!(!cfg.redaction.shows());
        assert!(!cfg.redaction.pii(addr).to_string().contains("198.51.100.7"));
    }
    use crate::flow::Transport;

    #[test]
    fn via_gets_received_and_rport() {
        let flow = Flow {
            transport: Transport::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "198.51.100.7:40123".parse().unwrap(),
            conn: None,
        };
        let mut m = Message::request(Method::Options, "sip:x");
        m.push(
            HeaderName::Via,
            "SIP/2.0/UDP 10.0.0.2:5060;rport;branch=z9hG4bKa",
        );
        stamp_via(&mut m, &flow);
        let via = m.top_via().unwrap();
        assert_eq!(via.params.get("rport"), Some(Some("40123")));
        assert_eq!(via.params.get("received"), Some(Some("198.51.100.7")));
        assert_eq!(via.branch(), Some("z9hG4bKa"));
    }

    #[test]
    fn via_is_left_alone_when_it_names_the_source_without_rport() {
        let flow = Flow {
            transport: Transport::Udp,
            local: "[2001:db8::1]:5060".parse().unwrap(),
            remote: "[2001:db8::7]:5060".parse().unwrap(),
            conn: None,
        };
        let mut m = Message::request(Method::Options, "sip:x");
        let same = "SIP/2.0/UDP [2001:db8:0::7]:5060;branch=z9hG4bKb";
        m.push(HeaderName::Via, same);
        stamp_via(&mut m, &flow);
        assert_eq!(
            m.header(&HeaderName::Via),
            Some(same),
            "same address, other spelling"
        );

        let mut m = Message::request(Method::Options, "sip:x");
        m.push(
            HeaderName::Via,
            "SIP/2.0/UDP pc.example.org;branch=z9hG4bKc",
        );
        stamp_via(&mut m, &flow);
        let via = m.top_via().unwrap();
        assert_eq!(via.params.get("received"), Some(Some("2001:db8::7")));
        assert_eq!(via.params.get("rport"), None);
    }
}
