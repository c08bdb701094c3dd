//! The user agent state machine: registration and calls.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use natter_sip::flow::Transport;
use natter_sip::msg::reason_phrase;
use natter_sip::{HeaderName, Limits, Message, Method};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::call::{contact_uri, record_routes, Call, CallId, CallState, EndReason, Role};
use super::digest::Challenge;

mod incoming;
mod responses;
mod send;

/// User agent settings. Defaults are in the field docs.
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// Account id (`+14155550100` or `alice`), also the digest user name.
    pub user: String,
    pub password: String,
    /// SIP domain. `None`: the server host until the first challenge, then its realm.
    pub domain: Option<String>,
    /// The server's host as the user gave it (name or IP).
    pub server_host: String,
    pub transport: Transport,
    /// Our socket's local address (Via sent-by and Contact).
    pub local: SocketAddr,
    /// Registration lifetime asked for. Default 300 s.
    pub expires: u32,
    /// RFC 5626 instance id (`urn:uuid:…`). Default: random.
    pub instance: String,
    /// Retransmission base over UDP (RFC 3261 T1). Default 500 ms.
    pub t1: Duration,
    /// Keepalive (CRLF CRLF) interval on the flow. Default 25 s.
    pub keepalive: Duration,
    /// Seed for tags, branches and Call-IDs. `None`: from the OS.
    pub seed: Option<u64>,
}

impl UaConfig {
    pub fn new(
        user: &str,
        password: &str,
        server_host: &str,
        transport: Transport,
        local: SocketAddr,
    ) -> Self {
        let mut rng = rand::thread_rng();
        let instance = format!(
            "urn:uuid:{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            rng.gen::<u32>(),
            rng.gen::<u16>(),
            rng.gen::<u16>() & 0xfff,
            rng.gen::<u16>() & 0xfff,
            rng.gen::<u64>() & 0xffff_ffff_ffff
        );
        UaConfig {
            user: user.to_owned(),
            password: password.to_owned(),
            domain: None,
            server_host: server_host.to_owned(),
            transport,
            local,
            expires: 300,
            instance,
            t1: Duration::from_millis(500),
            keepalive: Duration::from_secs(25),
            seed: None,
        }
    }
}

/// What the user agent reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UaEvent {
    Registered {
        aor: String,
        expires: u32,
    },
    RegistrationFailed(RegFailure),
    /// A call for us; answer with [`UserAgent::answer`] or [`UserAgent::reject`].
    Incoming {
        call: CallId,
        from: String,
        sdp: Vec<u8>,
    },
    /// The callee's phone rings.
    Ringing {
        call: CallId,
    },
    /// Our call was answered; `sdp` is the callee's answer. The ACK is sent.
    Answered {
        call: CallId,
        sdp: Vec<u8>,
    },
    /// The caller acknowledged our answer.
    Confirmed {
        call: CallId,
    },
    /// The far end sent a re-INVITE with this offer (ICE restart, …): answer
    /// with [`UserAgent::answer_update`] or refuse with [`UserAgent::reject_update`].
    Updated {
        call: CallId,
        sdp: Vec<u8>,
    },
    /// Our re-INVITE failed with `code` (491: both sides re-offered at once;
    /// try again after [`UserAgent::reinvite_backoff`]). The call goes on.
    UpdateFailed {
        call: CallId,
        code: u16,
    },
    Ended {
        call: CallId,
        reason: EndReason,
    },
}

/// Why registration failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegFailure {
    #[error("registration refused: wrong password for {user}")]
    WrongPassword { user: String },
    #[error("registration refused: {reason}")]
    Forbidden { reason: String },
    #[error("registration: the server did not answer (is it running and reachable?)")]
    Timeout,
    #[error("registration refused: {code} {reason}")]
    Refused { code: u16, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TxKind {
    Register,
    Invite(CallId),
    Bye(CallId),
    Cancel(CallId),
    Reinvite(CallId),
    /// In-dialog OPTIONS after a new flow: the server learns the call's new flow.
    Refresh(CallId),
}

#[derive(Debug)]
struct ClientTx {
    kind: TxKind,
    /// The request without Via and credentials, to rebuild after a challenge.
    template: Message,
    bytes: Vec<u8>,
    /// Credentials were sent with a fresh (non-stale) challenge.
    authed: bool,
    resend_at: Option<Instant>,
    interval: Duration,
    deadline: Instant,
    /// A provisional answer stopped INVITE retransmissions.
    proceeding: bool,
}

#[derive(Debug)]
struct Registration {
    call_id: String,
    tag: String,
    cseq: u32,
    refresh_at: Option<Instant>,
    registered: bool,
}

/// The SIP user agent.
pub struct UserAgent {
    cfg: UaConfig,
    domain: String,
    rng: StdRng,
    reg: Registration,
    challenge: Option<Challenge>,
    nc: u32,
    calls: BTreeMap<CallId, Call>,
    txs: BTreeMap<String, ClientTx>,
    /// 200 OK retransmissions over UDP: (next, interval, give up at).
    ok_timers: BTreeMap<CallId, (Instant, Duration, Instant)>,
    keepalive_at: Option<Instant>,
    /// The flow changed since the last successful registration.
    flow_changed: bool,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<UaEvent>,
    limits: Limits,
}

/// RFC 3261 T2.
const T2: Duration = Duration::from_secs(4);
/// How long a ringing call may go unanswered (RFC 3261 Timer C).
const TIMER_C: Duration = Duration::from_secs(180);
/// Refresh when this fraction of the granted lifetime has passed.
const REFRESH_AT: f64 = 0.8;

impl UserAgent {
    pub fn new(cfg: UaConfig) -> Self {
        let mut rng = match cfg.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_entropy(),
        };
        let domain = cfg
            .domain
            .clone()
            .unwrap_or_else(|| cfg.server_host.clone());
        let reg = Registration {
            call_id: token(&mut rng, 16),
            tag: token(&mut rng, 10),
            cseq: 0,
            refresh_at: None,
            registered: false,
        };
        UserAgent {
            cfg,
            domain,
            rng,
            reg,
            challenge: None,
            nc: 0,
            calls: BTreeMap::new(),
            txs: BTreeMap::new(),
            ok_timers: BTreeMap::new(),
            keepalive_at: None,
            flow_changed: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            limits: Limits::default(),
        }
    }

    /// Our address of record, `sip:user@domain`.
    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.cfg.user, self.domain)
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn is_registered(&self) -> bool {
        self.reg.registered
    }

    /// Register (and keep refreshing).
    pub fn register(&mut self, now: Instant) {
        self.send_register(now, self.cfg.expires);
        self.keepalive_at = Some(now + self.cfg.keepalive);
    }

    /// Remove our binding (Expires: 0).
    pub fn unregister(&mut self, now: Instant) {
        self.reg.refresh_at = None;
        self.reg.registered = false;
        self.send_register(now, 0);
    }

    /// Dial `target` (an account id) offering `sdp`.
    pub fn call(&mut self, now: Instant, target: &str, sdp: Vec<u8>) -> CallId {
        let id = CallId(token(&mut self.rng, 20));
        let remote_uri = format!("sip:{target}@{}", self.domain);
        let call = Call {
            update: None,
            id: id.clone(),
            role: Role::Caller,
            state: CallState::Calling {
                branch: String::new(),
                ringing: false,
            },
            peer: target.to_owned(),
            local_uri: self.aor(),
            remote_uri: remote_uri.clone(),
            local_tag: token(&mut self.rng, 10),
            remote_tag: None,
            remote_target: remote_uri,
            route_set: Vec::new(),
            local_cseq: 1,
            invite: Message::request(Method::Invite, ""),
            local_sdp: sdp,
            ok: None,
        };
        self.calls.insert(id.clone(), call);
        self.send_invite(now, &id);
        id
    }

    /// Answer an incoming call with our SDP.
    pub fn answer(&mut self, now: Instant, id: &CallId, sdp: Vec<u8>) {
        let contact = self.contact();
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if call.state != CallState::Offered {
            return;
        }
        let mut ok = call.invite.response(200, "OK", Some(&call.local_tag));
        for rr in record_routes(&call.invite) {
            ok.push(HeaderName::RecordRoute, rr);
        }
        call.state = CallState::Answered;
        self.send_ok_with_sdp(now, id, ok, &contact, sdp);
    }

    /// Refuse an incoming call (486 Busy Here, 603 Decline, 488 …).
    pub fn reject(&mut self, _now: Instant, id: &CallId, code: u16) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if call.state != CallState::Offered {
            return;
        }
        let resp = call
            .invite
            .response(code, reason_phrase(code), Some(&call.local_tag));
        self.transmits.push_back(resp.to_bytes());
        self.end(id, EndReason::LocalHangup);
    }

    /// Hang up: CANCEL while calling, BYE once answered, 603 while ringing here.
    pub fn hangup(&mut self, now: Instant, id: &CallId) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        match call.state {
            CallState::Calling { .. } => self.send_cancel(now, id),
            CallState::Offered => self.reject(now, id, 603),
            CallState::Answered | CallState::Confirmed => {
                self.send_in_dialog(now, id, Method::Bye);
                self.end(id, EndReason::LocalHangup);
            }
            CallState::Cancelling | CallState::Ended => {}
        }
    }

    /// Send a new offer inside the call (ICE restart, codec change). False when
    /// the call cannot take one now (not confirmed, or a re-INVITE is pending).
    pub fn reinvite(&mut self, now: Instant, id: &CallId, sdp: Vec<u8>) -> bool {
        if self.reinvite_pending(id) {
            return false;
        }
        match self.calls.get_mut(id) {
            Some(call) if call.state == CallState::Confirmed => {
                call.local_sdp = sdp;
                self.send_in_dialog(now, id, Method::Invite);
                true
            }
            _ => false,
        }
    }

    /// The signaling flow changed (new connection, new local address after a
    /// move): register again over it and resend what was in flight (RFC 5626 §4.4).
    pub fn handle_flow_change(&mut self, now: Instant, local: SocketAddr) {
        tracing::info!(old = %self.cfg.local, new = %local, "new signaling flow: registering again");
        self.cfg.local = local;
        self.reg.registered = false;
        self.flow_changed = true;
        self.reg.refresh_at = None;
        self.txs.retain(|_, t| t.kind != TxKind::Register);
        let t1 = self.cfg.t1;
        for tx in self.txs.values_mut() {
            self.transmits.push_back(tx.bytes.clone());
            tx.deadline = tx.deadline.max(now + t1 * 64);
        }
        self.register(now);
    }

    /// The signaling flow is gone (the driver reconnects): not registered until
    /// [`UserAgent::handle_flow_change`] and a successful REGISTER over the new one.
    pub fn flow_lost(&mut self) {
        self.reg.registered = false;
    }

    /// How long to wait before re-offering after a 491 (RFC 3261 §14.1): the
    /// Call-ID's owner (the caller) 2.1–4 s, the other side 0–2 s.
    pub fn reinvite_backoff(&mut self, id: &CallId) -> Duration {
        let caller = self.calls.get(id).is_some_and(|c| c.role == Role::Caller);
        let ms = if caller {
            self.rng.gen_range(2100..=4000)
        } else {
            self.rng.gen_range(0..=2000)
        };
        Duration::from_millis(ms)
    }

    /// Answer the far end's re-INVITE ([`UaEvent::Updated`]) with our SDP.
    pub fn answer_update(&mut self, now: Instant, id: &CallId, sdp: Vec<u8>) {
        let contact = self.contact();
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let Some(req) = call.update.take() else {
            return;
        };
        let ok = req.response(200, "OK", Some(&call.local_tag));
        self.send_ok_with_sdp(now, id, ok, &contact, sdp);
    }

    /// Send a 200 OK carrying our SDP for call `id` and keep it for
    /// retransmission until the ACK (on UDP, from T1 doubling, for 64·T1).
    fn send_ok_with_sdp(
        &mut self,
        now: Instant,
        id: &CallId,
        mut ok: Message,
        contact: &str,
        sdp: Vec<u8>,
    ) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        ok.push(HeaderName::Contact, format!("<{contact}>"));
        ok.push(HeaderName::ContentType, "application/sdp");
        ok.body = sdp.clone();
        let bytes = ok.to_bytes();
        call.local_sdp = sdp;
        call.ok = Some(bytes.clone());
        self.transmits.push_back(bytes);
        if !self.cfg.transport.is_reliable() {
            let t1 = self.cfg.t1;
            self.ok_timers
                .insert(id.clone(), (now + t1, t1, now + t1 * 64));
        }
    }

    /// Refuse the far end's re-INVITE (488 for an unusable offer); the call goes on.
    pub fn reject_update(&mut self, _now: Instant, id: &CallId, code: u16) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if let Some(req) = call.update.take() {
            let resp = req.response(code, reason_phrase(code), Some(&call.local_tag));
            self.transmits.push_back(resp.to_bytes());
        }
    }

    /// One datagram or stream frame from the server.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if bytes.iter().all(|b| *b == b'\r' || *b == b'\n') {
            return; // keepalive pong
        }
        match natter_sip::parse(bytes, &self.limits) {
            Ok(msg) if msg.is_request() => self.on_request(now, msg),
            Ok(msg) => self.on_response(now, msg),
            Err(e) => tracing::debug!(error = %e, "unreadable SIP message dropped"),
        }
    }

    /// After registering over a new flow: one in-dialog OPTIONS per call, so the
    /// proxy routes the calls over this flow even if it forgot the old one.
    fn refresh_dialogs(&mut self, now: Instant) {
        let ids: Vec<CallId> = self
            .calls
            .values()
            .filter(|c| c.state == CallState::Confirmed)
            .map(|c| c.id.clone())
            .collect();
        for id in ids {
            self.send_in_dialog(now, &id, Method::Options);
        }
    }

    /// Retransmissions, timeouts, registration refresh and keepalives.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.retransmit(now);
        self.resend_oks(now);
        if self.reg.refresh_at.is_some_and(|t| t <= now) {
            self.reg.refresh_at = None;
            self.send_register(now, self.cfg.expires);
        }
        if self.keepalive_at.is_some_and(|t| t <= now) {
            self.transmits.push_back(b"\r\n\r\n".to_vec());
            self.keepalive_at = Some(now + self.cfg.keepalive);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let txs = self
            .txs
            .values()
            .flat_map(|t| [t.resend_at, Some(t.deadline)])
            .flatten();
        let oks = self.ok_timers.values().map(|t| t.0);
        txs.chain(oks)
            .chain(self.reg.refresh_at)
            .chain(self.keepalive_at)
            .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }
}

fn token(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}
