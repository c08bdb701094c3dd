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
        ok.push(HeaderName::Contact, format!("<{contact}>"));
        ok.push(HeaderName::ContentType, "application/sdp");
        ok.body = sdp.clone();
        let bytes = ok.to_bytes();
        call.local_sdp = sdp;
        call.state = CallState::Answered;
        call.ok = Some(bytes.clone());
        self.transmits.push_back(bytes);
        if !self.cfg.transport.is_reliable() {
            let t1 = self.cfg.t1;
            self.ok_timers
                .insert(id.clone(), (now + t1, t1, now + t1 * 64));
        }
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
        let mut ok = req.response(200, "OK", Some(&call.local_tag));
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

// ---- building and sending requests -----------------------------------------

impl UserAgent {
    fn contact(&self) -> String {
        format!(
            "sip:{}@{};transport={};ob",
            self.cfg.user,
            self.cfg.local,
            self.cfg.transport.uri_param()
        )
    }

    fn via(&mut self) -> (String, String) {
        let branch = format!("z9hG4bK{}", token(&mut self.rng, 16));
        let via = format!(
            "SIP/2.0/{} {};branch={branch};rport",
            self.cfg.transport.via_token(),
            self.cfg.local
        );
        (via, branch)
    }

    fn send_register(&mut self, now: Instant, expires: u32) {
        self.reg.cseq += 1;
        let mut m = Message::request(Method::Register, format!("sip:{}", self.domain));
        m.push(HeaderName::MaxForwards, "70");
        m.push(
            HeaderName::From,
            format!("<{}>;tag={}", self.aor(), self.reg.tag),
        );
        m.push(HeaderName::To, format!("<{}>", self.aor()));
        m.push(HeaderName::CallId, self.reg.call_id.clone());
        m.push(HeaderName::CSeq, format!("{} REGISTER", self.reg.cseq));
        m.push(
            HeaderName::Contact,
            format!(
                "<{}>;+sip.instance=\"<{}>\";reg-id=1",
                self.contact(),
                self.cfg.instance
            ),
        );
        m.push(HeaderName::Expires, expires.to_string());
        m.push(HeaderName::Supported, "outbound, path");
        m.push(
            HeaderName::UserAgent,
            concat!("natter-phone/", env!("CARGO_PKG_VERSION")),
        );
        self.send_request(now, TxKind::Register, m);
    }

    fn send_invite(&mut self, now: Instant, id: &CallId) {
        let contact = self.contact();
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let mut m = Message::request(Method::Invite, call.remote_uri.clone());
        m.push(HeaderName::MaxForwards, "70");
        m.push(
            HeaderName::From,
            format!("<{}>;tag={}", call.local_uri, call.local_tag),
        );
        m.push(HeaderName::To, format!("<{}>", call.remote_uri));
        m.push(HeaderName::CallId, id.0.clone());
        m.push(HeaderName::CSeq, format!("{} INVITE", call.local_cseq));
        m.push(HeaderName::Contact, format!("<{contact}>"));
        m.push(HeaderName::Allow, "INVITE, ACK, CANCEL, BYE, OPTIONS");
        m.push(HeaderName::ContentType, "application/sdp");
        m.body = call.local_sdp.clone();
        let branch = self.send_request(now, TxKind::Invite(id.clone()), m);
        if let Some(call) = self.calls.get_mut(id) {
            call.state = CallState::Calling {
                branch: branch.clone(),
                ringing: false,
            };
            if let Some(tx) = self.txs.get(&branch) {
                if let Ok(sent) = natter_sip::parse(&tx.bytes, &self.limits) {
                    call.invite = sent;
                }
            }
        }
    }

    fn send_cancel(&mut self, now: Instant, id: &CallId) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        call.state = CallState::Cancelling;
        let inv = &call.invite;
        let mut m = Message::request(Method::Cancel, inv.request_uri().unwrap_or_default());
        for name in [HeaderName::Via, HeaderName::Route] {
            for v in inv.headers_named(&name).take(if name == HeaderName::Via {
                1
            } else {
                usize::MAX
            }) {
                m.push(name.clone(), v);
            }
        }
        for name in [
            HeaderName::MaxForwards,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
        ] {
            if let Some(v) = inv.header(&name) {
                m.push(name.clone(), v);
            }
        }
        let cseq = inv.cseq().map(|c| c.seq).unwrap_or(1);
        m.push(HeaderName::CSeq, format!("{cseq} CANCEL"));
        let bytes = m.to_bytes();
        let branch = inv
            .top_via()
            .and_then(|v| v.branch())
            .unwrap_or_default()
            .to_owned();
        // CANCEL shares the INVITE's branch but is its own transaction: key it apart.
        self.track(
            now,
            format!("{branch}/cancel"),
            TxKind::Cancel(id.clone()),
            m,
            bytes,
            false,
        );
    }

    fn send_in_dialog(&mut self, now: Instant, id: &CallId, method: Method) {
        let contact = self.contact();
        let (via, branch) = self.via();
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        call.local_cseq += 1;
        let mut m = call.request(method.clone(), call.local_cseq, via, &contact);
        if method == Method::Invite {
            m.push(HeaderName::ContentType, "application/sdp");
            m.body = call.local_sdp.clone();
        }
        let kind = match method {
            Method::Invite => TxKind::Reinvite(id.clone()),
            Method::Options => TxKind::Refresh(id.clone()),
            _ => TxKind::Bye(id.clone()),
        };
        let bytes = m.to_bytes();
        self.track(now, branch, kind, m, bytes, false);
    }

    /// Add Via (and credentials when we hold a challenge), send, track. Returns the branch.
    fn send_request(&mut self, now: Instant, kind: TxKind, template: Message) -> String {
        let (via, branch) = self.via();
        let mut m = template.clone();
        m.push_front(HeaderName::Via, via);
        let authed = self.add_credentials(&mut m, &kind);
        let bytes = m.to_bytes();
        self.track(now, branch.clone(), kind, template, bytes, authed);
        branch
    }

    fn add_credentials(&mut self, m: &mut Message, kind: &TxKind) -> bool {
        let Some(ch) = self.challenge.clone() else {
            return false;
        };
        self.nc += 1;
        let cnonce = token(&mut self.rng, 12);
        let method = m
            .method()
            .map(|x| x.as_str().to_owned())
            .unwrap_or_default();
        let uri = m.request_uri().unwrap_or_default().to_owned();
        let value = ch.answer(
            &self.cfg.user,
            &self.cfg.password,
            &method,
            &uri,
            self.nc,
            &cnonce,
        );
        let name = match kind {
            TxKind::Register => HeaderName::Authorization,
            _ => HeaderName::ProxyAuthorization,
        };
        m.push(name, value);
        !ch.stale
    }

    fn track(
        &mut self,
        now: Instant,
        key: String,
        kind: TxKind,
        template: Message,
        bytes: Vec<u8>,
        authed: bool,
    ) {
        let reliable = self.cfg.transport.is_reliable();
        self.transmits.push_back(bytes.clone());
        let t1 = self.cfg.t1;
        self.txs.insert(
            key,
            ClientTx {
                kind,
                template,
                bytes,
                authed,
                resend_at: (!reliable).then_some(now + t1),
                interval: t1,
                deadline: now + t1 * 64,
                proceeding: false,
            },
        );
    }

    fn retransmit(&mut self, now: Instant) {
        let mut dead = Vec::new();
        for (branch, tx) in self.txs.iter_mut() {
            if tx.deadline <= now {
                dead.push(branch.clone());
                continue;
            }
            if tx.resend_at.is_some_and(|t| t <= now) {
                let invite = matches!(tx.kind, TxKind::Invite(_) | TxKind::Reinvite(_));
                tx.interval = if invite {
                    tx.interval * 2
                } else {
                    (tx.interval * 2).min(T2)
                };
                tx.resend_at = Some(now + tx.interval);
                self.transmits.push_back(tx.bytes.clone());
            }
        }
        for branch in dead {
            if let Some(tx) = self.txs.remove(&branch) {
                self.tx_timed_out(tx);
            }
        }
    }

    fn tx_timed_out(&mut self, tx: ClientTx) {
        match tx.kind {
            TxKind::Register => {
                self.reg.registered = false;
                self.events
                    .push_back(UaEvent::RegistrationFailed(RegFailure::Timeout));
            }
            TxKind::Invite(id) if !tx.proceeding => self.end(&id, EndReason::Timeout),
            TxKind::Invite(id) => self.end(
                &id,
                EndReason::Offline {
                    target: self.peer_of(&id),
                },
            ),
            TxKind::Cancel(id) => self.end(&id, EndReason::LocalHangup),
            TxKind::Reinvite(call) => self
                .events
                .push_back(UaEvent::UpdateFailed { call, code: 408 }),
            TxKind::Bye(_) | TxKind::Refresh(_) => {}
        }
    }

    fn resend_oks(&mut self, now: Instant) {
        let due: Vec<CallId> = self
            .ok_timers
            .iter()
            .filter(|(_, t)| t.0 <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some((_, interval, give_up)) = self.ok_timers.remove(&id) else {
                continue;
            };
            if now >= give_up {
                // No ACK: RFC 3261 §13.3.1.4 says end the call with a BYE.
                self.send_in_dialog(now, &id, Method::Bye);
                self.end(&id, EndReason::Timeout);
                continue;
            }
            if let Some(ok) = self.calls.get(&id).and_then(|c| c.ok.clone()) {
                self.transmits.push_back(ok);
                let next = (interval * 2).min(T2);
                self.ok_timers.insert(id, (now + next, next, give_up));
            }
        }
    }

    fn peer_of(&self, id: &CallId) -> String {
        self.calls
            .get(id)
            .map(|c| c.peer.clone())
            .unwrap_or_default()
    }

    fn end(&mut self, id: &CallId, reason: EndReason) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if call.state == CallState::Ended {
            return;
        }
        call.state = CallState::Ended;
        self.ok_timers.remove(id);
        tracing::info!(call = %id, %reason, "call ended");
        self.events.push_back(UaEvent::Ended {
            call: id.clone(),
            reason,
        });
    }
}

// ---- incoming --------------------------------------------------------------

impl UserAgent {
    fn on_request(&mut self, now: Instant, req: Message) {
        let id = CallId(req.call_id().unwrap_or_default().to_owned());
        let has_to_tag = req.to().is_some_and(|t| t.tag().is_some());
        match req.method().cloned() {
            Some(Method::Invite) if !has_to_tag => self.on_invite(req, id),
            Some(Method::Invite) => self.on_reinvite(req, id),
            Some(Method::Ack) => self.on_ack(id),
            Some(Method::Bye) => {
                let known = self.calls.contains_key(&id);
                let code = if known { 200 } else { 481 };
                self.reply(&req, code, None);
                self.end(&id, EndReason::RemoteHangup);
            }
            Some(Method::Cancel) => self.on_cancel(req, id),
            Some(Method::Options) => self.reply(&req, 200, None),
            _ => self.reply(&req, 501, None),
        }
        let _ = now;
    }

    fn reply(&mut self, req: &Message, code: u16, to_tag: Option<&str>) {
        let tag = to_tag
            .map(str::to_owned)
            .unwrap_or_else(|| token(&mut self.rng, 10));
        let resp = req.response(code, reason_phrase(code), Some(&tag));
        self.transmits.push_back(resp.to_bytes());
    }

    fn on_invite(&mut self, req: Message, id: CallId) {
        if let Some(call) = self.calls.get(&id) {
            // A retransmission: repeat our last answer.
            let again = match &call.ok {
                Some(ok) => ok.clone(),
                None => call
                    .invite
                    .response(180, "Ringing", Some(&call.local_tag))
                    .to_bytes(),
            };
            self.transmits.push_back(again);
            return;
        }
        let from = req
            .from()
            .map(|f| (f.uri.to_owned(), f.tag().map(str::to_owned)));
        let Some((remote_uri, Some(remote_tag))) = from else {
            return self.reply(&req, 400, None);
        };
        let local_uri = req
            .to()
            .map(|t| t.uri.to_owned())
            .unwrap_or_else(|| self.aor());
        let Some(remote_target) = req.header(&HeaderName::Contact).and_then(contact_uri) else {
            return self.reply(&req, 400, None);
        };
        let peer = natter_sip::msg::Uri::parse(&remote_uri)
            .and_then(|u| u.user_unescaped())
            .unwrap_or_else(|| remote_uri.clone());
        let call = Call {
            update: None,
            id: id.clone(),
            role: Role::Callee,
            state: CallState::Offered,
            peer: peer.clone(),
            local_uri,
            remote_uri,
            local_tag: token(&mut self.rng, 10),
            remote_tag: Some(remote_tag),
            remote_target,
            route_set: record_routes(&req),
            local_cseq: 0,
            invite: req,
            local_sdp: Vec::new(),
            ok: None,
        };
        let mut ringing = call.invite.response(180, "Ringing", Some(&call.local_tag));
        for rr in record_routes(&call.invite) {
            ringing.push(HeaderName::RecordRoute, rr);
        }
        ringing.push(HeaderName::Contact, format!("<{}>", self.contact()));
        self.transmits.push_back(ringing.to_bytes());
        let sdp = call.invite.body.clone();
        self.calls.insert(id.clone(), call);
        self.events.push_back(UaEvent::Incoming {
            call: id,
            from: peer,
            sdp,
        });
    }

    fn on_reinvite(&mut self, req: Message, id: CallId) {
        let glare = self.reinvite_pending(&id);
        let Some(call) = self.calls.get_mut(&id) else {
            return self.reply(&req, 481, None);
        };
        let tag = call.local_tag.clone();
        let same = |m: &Message| m.cseq().map(|c| c.seq) == req.cseq().map(|c| c.seq);
        if call.update.as_ref().is_some_and(same) {
            return; // a retransmission of the re-INVITE we are answering
        }
        if call.state == CallState::Ended {
            return self.reply(&req, 481, Some(&tag));
        }
        if glare || call.update.is_some() {
            return self.reply(&req, 491, Some(&tag)); // RFC 3261 §14.2
        }
        if let Some(c) = req.header(&HeaderName::Contact).and_then(contact_uri) {
            call.remote_target = c; // target refresh (§12.2.2)
        }
        let sdp = req.body.clone();
        call.update = Some(req);
        self.events.push_back(UaEvent::Updated { call: id, sdp });
    }

    /// Our re-INVITE for `id` is still waiting for its final answer.
    fn reinvite_pending(&self, id: &CallId) -> bool {
        self.txs
            .values()
            .any(|t| matches!(&t.kind, TxKind::Reinvite(c) if c == id))
    }

    fn on_ack(&mut self, id: CallId) {
        self.ok_timers.remove(&id);
        if let Some(call) = self.calls.get_mut(&id) {
            if call.state == CallState::Answered {
                call.state = CallState::Confirmed;
                self.events.push_back(UaEvent::Confirmed { call: id });
            }
        }
    }

    fn on_cancel(&mut self, req: Message, id: CallId) {
        let offered = self
            .calls
            .get(&id)
            .is_some_and(|c| c.state == CallState::Offered);
        self.reply(&req, if offered { 200 } else { 481 }, None);
        if offered {
            if let Some(call) = self.calls.get(&id) {
                let resp = call
                    .invite
                    .response(487, "Request Terminated", Some(&call.local_tag));
                self.transmits.push_back(resp.to_bytes());
            }
            self.end(&id, EndReason::Cancelled);
        }
    }
}

// ---- responses ---------------------------------------------------------------

impl UserAgent {
    fn on_response(&mut self, now: Instant, resp: Message) {
        let Some(code) = resp.code() else {
            return;
        };
        let Some(branch) = resp.top_via().and_then(|v| v.branch()).map(str::to_owned) else {
            return;
        };
        let is_cancel = resp.cseq().is_some_and(|c| c.method == Method::Cancel);
        let key = if is_cancel {
            format!("{branch}/cancel")
        } else {
            branch
        };
        if code < 200 {
            self.on_provisional(now, &key, code);
            return;
        }
        let Some(tx) = self.txs.remove(&key) else {
            self.stray_final(now, &resp);
            return;
        };
        if (code == 401 || code == 407) && self.retry_with_credentials(now, &tx, &resp) {
            if let TxKind::Invite(_) = tx.kind {
                self.ack_failure(&tx, &resp);
            }
            return;
        }
        match tx.kind.clone() {
            TxKind::Register => self.on_register_final(now, &tx, &resp, code),
            TxKind::Invite(id) => self.on_invite_final(now, &tx, &resp, &id, code),
            TxKind::Reinvite(id) if code < 300 => {
                self.send_ack(&resp, &id);
                self.events.push_back(UaEvent::Answered {
                    call: id,
                    sdp: resp.body,
                });
            }
            TxKind::Reinvite(id) => {
                self.ack_failure(&tx, &resp);
                if code == 481 {
                    self.end(&id, EndReason::RemoteHangup); // the dialog is gone (§12.2.1.2)
                } else {
                    self.events
                        .push_back(UaEvent::UpdateFailed { call: id, code });
                }
            }
            TxKind::Bye(_) | TxKind::Cancel(_) | TxKind::Refresh(_) => {}
        }
    }

    fn on_provisional(&mut self, now: Instant, key: &str, code: u16) {
        let Some(tx) = self.txs.get_mut(key) else {
            return;
        };
        tx.proceeding = true;
        if matches!(tx.kind, TxKind::Invite(_)) {
            tx.resend_at = None;
            tx.deadline = now + TIMER_C;
        }
        if let TxKind::Invite(id) = tx.kind.clone() {
            if code == 180 || code == 183 {
                if let Some(call) = self.calls.get_mut(&id) {
                    if let CallState::Calling {
                        ringing: r @ false, ..
                    } = &mut call.state
                    {
                        *r = true;
                        self.events.push_back(UaEvent::Ringing { call: id });
                    }
                }
            }
        }
    }

    /// A 2xx retransmission for an INVITE we already finished: ACK again.
    fn stray_final(&mut self, _now: Instant, resp: &Message) {
        let invite = resp.cseq().is_some_and(|c| c.method == Method::Invite);
        if invite && resp.code().is_some_and(|c| (200..300).contains(&c)) {
            let id = CallId(resp.call_id().unwrap_or_default().to_owned());
            if self.calls.contains_key(&id) {
                self.send_ack(resp, &id);
            }
        }
    }

    /// Answer a 401/407 once per fresh challenge. False: give up (wrong password).
    fn retry_with_credentials(&mut self, now: Instant, tx: &ClientTx, resp: &Message) -> bool {
        let name = if resp.code() == Some(407) {
            HeaderName::ProxyAuthenticate
        } else {
            HeaderName::WwwAuthenticate
        };
        let Some(ch) = Challenge::pick(resp.headers_named(&name)) else {
            return false;
        };
        if tx.authed && !ch.stale {
            return false;
        }
        if self.cfg.domain.is_none() && !ch.realm.eq_ignore_ascii_case(&self.domain) {
            self.adopt_domain(&ch.realm);
        }
        self.challenge = Some(ch);
        self.nc = 0;
        match tx.kind.clone() {
            TxKind::Register => {
                let expires = tx
                    .template
                    .header(&HeaderName::Expires)
                    .and_then(|e| e.parse().ok())
                    .unwrap_or(self.cfg.expires);
                self.send_register(now, expires);
            }
            TxKind::Invite(id) => {
                if let Some(call) = self.calls.get_mut(&id) {
                    call.local_cseq += 1;
                }
                self.send_invite(now, &id);
            }
            TxKind::Bye(_) | TxKind::Cancel(_) | TxKind::Reinvite(_) | TxKind::Refresh(_) => {
                let mut m = tx.template.clone();
                m.remove_all(&HeaderName::Via);
                self.send_request(now, tx.kind.clone(), m);
            }
        }
        true
    }

    /// Without `--domain`, the realm of the first challenge is our domain.
    fn adopt_domain(&mut self, realm: &str) {
        tracing::info!(domain = realm, "SIP domain taken from the server's realm");
        self.domain = realm.to_owned();
        for call in self.calls.values_mut() {
            if call.role == Role::Caller && call.remote_tag.is_none() {
                call.local_uri = format!("sip:{}@{realm}", self.cfg.user);
                call.remote_uri = format!("sip:{}@{realm}", call.peer);
                call.remote_target = call.remote_uri.clone();
            }
        }
    }

    fn on_register_final(&mut self, now: Instant, tx: &ClientTx, resp: &Message, code: u16) {
        let asked: u32 = tx
            .template
            .header(&HeaderName::Expires)
            .and_then(|e| e.parse().ok())
            .unwrap_or(self.cfg.expires);
        if (200..300).contains(&code) {
            if asked == 0 {
                return;
            }
            let granted = granted_expires(resp, &self.contact())
                .unwrap_or(asked)
                .max(1);
            self.reg.registered = true;
            if std::mem::take(&mut self.flow_changed) {
                self.refresh_dialogs(now);
            }
            let after = Duration::from_secs_f64(f64::from(granted) * REFRESH_AT);
            self.reg.refresh_at = Some(now + after);
            self.events.push_back(UaEvent::Registered {
                aor: self.aor(),
                expires: granted,
            });
            return;
        }
        if code == 423 {
            if let Some(min) = resp
                .header(&HeaderName::MinExpires)
                .and_then(|v| v.trim().parse().ok())
            {
                self.cfg.expires = min;
                self.send_register(now, min);
                return;
            }
        }
        self.reg.registered = false;
        let reason = reason_of(resp);
        let failure = match code {
            401 | 407 => RegFailure::WrongPassword {
                user: self.cfg.user.clone(),
            },
            403 => RegFailure::Forbidden { reason },
            _ => RegFailure::Refused { code, reason },
        };
        self.events.push_back(UaEvent::RegistrationFailed(failure));
    }

    fn on_invite_final(
        &mut self,
        now: Instant,
        tx: &ClientTx,
        resp: &Message,
        id: &CallId,
        code: u16,
    ) {
        if (200..300).contains(&code) {
            if let Some(call) = self.calls.get_mut(id) {
                call.learn_from_2xx(resp);
            }
            self.send_ack(resp, id);
            let cancelled = self
                .calls
                .get(id)
                .is_some_and(|c| c.state == CallState::Cancelling);
            if let Some(call) = self.calls.get_mut(id) {
                call.state = CallState::Confirmed;
            }
            if cancelled {
                // Answered while we were cancelling: end it properly.
                self.send_in_dialog(now, id, Method::Bye);
                self.end(id, EndReason::LocalHangup);
                return;
            }
            self.events.push_back(UaEvent::Answered {
                call: id.clone(),
                sdp: resp.body.clone(),
            });
            return;
        }
        self.ack_failure(tx, resp);
        let cancelling = self
            .calls
            .get(id)
            .is_some_and(|c| c.state == CallState::Cancelling);
        let reason = if cancelling && code == 487 {
            EndReason::LocalHangup
        } else {
            EndReason::from_response(code, &reason_of(resp), &self.peer_of(id))
        };
        self.end(id, reason);
    }

    /// ACK for a non-2xx final answer: part of the INVITE transaction (§17.1.1.3).
    fn ack_failure(&mut self, tx: &ClientTx, resp: &Message) {
        let Ok(inv) = natter_sip::parse(&tx.bytes, &self.limits) else {
            return;
        };
        let mut m = Message::request(Method::Ack, inv.request_uri().unwrap_or_default());
        if let Some(v) = inv.header(&HeaderName::Via) {
            m.push(HeaderName::Via, v);
        }
        for r in inv.headers_named(&HeaderName::Route) {
            m.push(HeaderName::Route, r);
        }
        m.push(HeaderName::MaxForwards, "70");
        for name in [HeaderName::From, HeaderName::CallId] {
            if let Some(v) = inv.header(&name) {
                m.push(name.clone(), v);
            }
        }
        if let Some(to) = resp.header(&HeaderName::To) {
            m.push(HeaderName::To, to);
        }
        let n = inv.cseq().map(|c| c.seq).unwrap_or(1);
        m.push(HeaderName::CSeq, format!("{n} ACK"));
        self.transmits.push_back(m.to_bytes());
    }

    /// ACK for a 2xx: a new request inside the dialog (§13.2.2.4).
    fn send_ack(&mut self, resp: &Message, id: &CallId) {
        let contact = self.contact();
        let (via, _) = self.via();
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let n = resp.cseq().map(|c| c.seq).unwrap_or(call.local_cseq);
        let ack = call.request(Method::Ack, n, via, &contact);
        self.transmits.push_back(ack.to_bytes());
    }
}

fn reason_of(resp: &Message) -> String {
    match &resp.start {
        natter_sip::msg::StartLine::Response { reason, .. } => reason.clone(),
        natter_sip::msg::StartLine::Request { .. } => String::new(),
    }
}

/// The expiry the registrar granted our Contact (its `expires` param, else Expires).
fn granted_expires(resp: &Message, contact: &str) -> Option<u32> {
    let ours = resp.headers_named(&HeaderName::Contact).find_map(|c| {
        let na = natter_sip::msg::NameAddr::parse(c)?;
        (na.uri == contact).then(|| na.params.get("expires").flatten()?.parse().ok())?
    });
    ours.or_else(|| resp.header(&HeaderName::Expires)?.trim().parse().ok())
}

fn token(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}
