//! A sans-IO TURN client (RFC 8656, long-term credentials of RFC 8489 §9.2).
//!
//! One [`TurnClient`] holds one allocation on one server. It speaks to the
//! server only: every [`TurnClient::poll_transmit`] payload goes to
//! [`TurnConfig::server`] over the configured transport, and every byte the
//! server sends back goes into [`TurnClient::handle_input`], which answers the
//! client's own transactions and unwraps peer data (Data indications and
//! ChannelData).
//!
//! The client does the 401 → realm/nonce → retry dance, retries on 438 (stale
//! nonce), refreshes the allocation, permissions and channels before they
//! expire, creates a permission on the first packet to a new peer IP (holding a
//! few packets until it is granted), then binds a channel so the hot path is the
//! 4-byte ChannelData header instead of a Send indication.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use natter_turn::stun::{
    self, attr_type, long_term_key_md5, Attribute, ChannelData, ChannelNumber, Class, IntegrityKey,
    MessageBuilder, Method, TransactionId,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// How the client reaches the TURN server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TurnTransport {
    Udp,
    Tcp,
    Tls,
}

impl TurnTransport {
    /// Streams need no retransmissions and pad ChannelData to 4 bytes.
    pub fn is_stream(self) -> bool {
        !matches!(self, TurnTransport::Udp)
    }
}

/// Settings for one allocation.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// The server's address (default port 3478, 5349 for TLS).
    pub server: SocketAddr,
    pub transport: TurnTransport,
    pub username: String,
    pub password: String,
    /// Requested allocation lifetime. Default 600 s (the RFC default).
    pub lifetime: Duration,
    /// First retransmission timeout over UDP. Default 250 ms.
    pub initial_rto: Duration,
    /// Requests sent at most this many times over UDP before giving up. Default 7.
    pub max_sends: u32,
    /// Seed for transaction ids (tests pass one; `None` seeds from the OS).
    pub seed: Option<u64>,
}

impl TurnConfig {
    pub fn new(
        server: SocketAddr,
        transport: TurnTransport,
        username: &str,
        password: &str,
    ) -> Self {
        TurnConfig {
            server,
            transport,
            username: username.to_owned(),
            password: password.to_owned(),
            lifetime: Duration::from_secs(600),
            initial_rto: Duration::from_millis(250),
            max_sends: 7,
            seed: None,
        }
    }
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEvent {
    /// The allocation exists: `relayed` is the relay candidate, `mapped` our
    /// address as the server saw it (a server-reflexive candidate over UDP).
    Allocated {
        relayed: SocketAddr,
        mapped: Option<SocketAddr>,
    },
    /// Peers from this IP can now reach us through the relay.
    PermissionCreated(IpAddr),
    /// A channel to this peer is bound: data now flows as ChannelData.
    ChannelBound(SocketAddr),
    /// The allocation could not be made or kept.
    Failed(TurnFailure),
}

/// Why the allocation failed, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TurnFailure {
    #[error("TURN server refused the credentials for {user} (wrong password?)")]
    Unauthorized { user: String },
    #[error(
        "TURN server did not answer after {sends} tries (is UDP to it blocked? try TURN over TCP)"
    )]
    Timeout { sends: u32 },
    #[error("TURN server answered {code} {reason}")]
    Rejected { code: u16, reason: String },
    #[error("TURN server sent an answer without a relayed address")]
    NoRelayAddress,
}

/// Data a peer sent through the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerData<'a> {
    pub peer: SocketAddr,
    pub data: &'a [u8],
}

/// Counters for stats and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnCounters {
    pub requests_sent: u64,
    pub retransmits: u64,
    pub channel_data_sent: u64,
    pub send_indications: u64,
    /// Packets dropped while waiting for a permission (the hold queue was full).
    pub dropped_unpermitted: u64,
    /// Server bytes that were neither a known answer nor peer data.
    pub ignored: u64,
}

/// The TURN client state machine.
pub struct TurnClient {
    config: TurnConfig,
    state: State,
    realm: Option<String>,
    nonce: Option<String>,
    key: Option<IntegrityKey>,
    mapped: Option<SocketAddr>,
    permissions: HashMap<IpAddr, Permission>,
    channels: HashMap<SocketAddr, Channel>,
    by_channel: HashMap<u16, SocketAddr>,
    next_channel: u16,
    pending: HashMap<TransactionId, Pending>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<TurnEvent>,
    counters: TurnCounters,
    rng: StdRng,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Allocating,
    Allocated {
        relayed: SocketAddr,
        refresh_at: Instant,
    },
    Closing,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Allocate,
    Refresh { lifetime: u32 },
    CreatePermission(IpAddr),
    ChannelBind { peer: SocketAddr, number: u16 },
}

#[derive(Debug)]
struct Pending {
    request: Request,
    bytes: Vec<u8>,
    sends: u32,
    resend_at: Instant,
    rto: Duration,
    /// Whether a 401/438 retry was already made for this request.
    retried_auth: bool,
}

#[derive(Debug, Default)]
struct Permission {
    granted_until: Option<Instant>,
    in_flight: bool,
    held: Vec<(SocketAddr, Vec<u8>)>,
}

#[derive(Debug)]
struct Channel {
    number: u16,
    bound_until: Option<Instant>,
    in_flight: bool,
}

/// Permissions last 300 s, refreshed after 240 s (RFC 8656 §9).
const PERMISSION_REFRESH: Duration = Duration::from_secs(240);
/// Channels last 600 s, refreshed after 540 s (RFC 8656 §12).
const CHANNEL_REFRESH: Duration = Duration::from_secs(540);
/// Packets held per peer IP while its permission is being created.
const MAX_HELD: usize = 16;
/// First channel number (RFC 8656 §12: 0x4000 through 0x4FFF).
const FIRST_CHANNEL: u16 = 0x4000;
const LAST_CHANNEL: u16 = 0x4FFF;
/// Over streams a request gets one long wait (RFC 8489 §6.2.2: 39.5 s).
const STREAM_TIMEOUT: Duration = Duration::from_millis(39_500);

impl TurnClient {
    pub fn new(config: TurnConfig) -> Self {
        let rng = match config.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_entropy(),
        };
        TurnClient {
            config,
            state: State::Idle,
            realm: None,
            nonce: None,
            key: None,
            mapped: None,
            permissions: HashMap::new(),
            channels: HashMap::new(),
            by_channel: HashMap::new(),
            next_channel: FIRST_CHANNEL,
            pending: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: TurnCounters::default(),
            rng,
        }
    }

    pub fn config(&self) -> &TurnConfig {
        &self.config
    }

    /// Start the allocation (the first request goes out unauthenticated).
    pub fn allocate(&mut self, now: Instant) {
        if self.state == State::Idle {
            self.state = State::Allocating;
            self.send_request(now, Request::Allocate, false);
        }
    }

    /// The relayed address once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        match self.state {
            State::Allocated { relayed, .. } => Some(relayed),
            _ => None,
        }
    }

    /// Our address as the TURN server saw it.
    pub fn mapped(&self) -> Option<SocketAddr> {
        self.mapped
    }

    pub fn is_failed(&self) -> bool {
        self.state == State::Failed
    }

    /// True while some permission is asked for but not granted yet.
    pub fn permissions_pending(&self) -> bool {
        self.permissions
            .values()
            .any(|p| p.granted_until.is_none() && p.in_flight)
    }

    pub fn counters(&self) -> TurnCounters {
        self.counters
    }

    /// Allow peers at `ip` to reach us (done automatically on the first send).
    pub fn permit(&mut self, now: Instant, ip: IpAddr) {
        let allocated = self.relayed().is_some();
        let p = self.permissions.entry(ip).or_default();
        if p.granted_until.is_none() && !p.in_flight && allocated {
            p.in_flight = true;
            self.send_request(now, Request::CreatePermission(ip), false);
        }
    }

    /// Send `data` to `peer` through the relay.
    ///
    /// Before the permission for `peer`'s IP is granted the packet is held (up
    /// to a few per IP); after it, data goes as a Send indication until a
    /// channel is bound, then as ChannelData.
    pub fn send_to(&mut self, now: Instant, peer: SocketAddr, data: &[u8]) {
        if self.relayed().is_none() {
            self.counters.dropped_unpermitted += 1;
            return;
        }
        self.permit(now, peer.ip());
        let granted = self
            .permissions
            .get(&peer.ip())
            .is_some_and(|p| p.granted_until.is_some());
        if !granted {
            self.hold(peer, data);
            return;
        }
        self.bind_channel(now, peer);
        self.wrap_and_queue(peer, data);
    }

    /// Bytes from the server (one datagram, or one frame cut with
    /// [`natter_turn::stun::frame_len`] on streams). Returns peer data, if that is
    /// what it was; answers to our requests update the state.
    pub fn handle_input<'a>(&mut self, now: Instant, bytes: &'a [u8]) -> Option<PeerData<'a>> {
        if ChannelData::is_channel_data(bytes) {
            return self.channel_data(bytes);
        }
        let Ok(msg) = stun::decode(bytes) else {
            self.counters.ignored += 1;
            return None;
        };
        match msg.class() {
            Class::Indication if msg.method() == Method::DATA => data_indication(&msg),
            Class::Success | Class::Error => {
                self.response(now, &msg);
                None
            }
            _ => {
                self.counters.ignored += 1;
                None
            }
        }
    }

    /// Retransmit and refresh.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.retransmit(now);
        self.refresh(now);
    }

    /// The earliest time [`TurnClient::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let resend = self.pending.values().map(|p| p.resend_at);
        let alloc = match self.state {
            State::Allocated { refresh_at, .. } => Some(refresh_at),
            _ => None,
        };
        let perms = self
            .permissions
            .values()
            .filter(|p| !p.in_flight)
            .filter_map(|p| p.granted_until);
        let chans = self
            .channels
            .values()
            .filter(|c| !c.in_flight)
            .filter_map(|c| c.bound_until);
        resend.chain(alloc).chain(perms).chain(chans).min()
    }

    /// The next message for the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TurnEvent> {
        self.events.pop_front()
    }

    /// Release the allocation (Refresh with lifetime 0). Fire and forget.
    pub fn close(&mut self, now: Instant) {
        if self.relayed().is_some() {
            self.state = State::Closing;
            self.send_request(now, Request::Refresh { lifetime: 0 }, false);
        }
    }
}

// ---- requests ------------------------------------------------------------

impl TurnClient {
    fn send_request(&mut self, now: Instant, request: Request, retried_auth: bool) {
        let tid = TransactionId::random(&mut self.rng);
        let bytes = self.encode(tid, request);
        let rto = if self.config.transport.is_stream() {
            STREAM_TIMEOUT
        } else {
            self.config.initial_rto
        };
        self.counters.requests_sent += 1;
        self.transmits.push_back(bytes.clone());
        self.pending.insert(
            tid,
            Pending {
                request,
                bytes,
                sends: 1,
                resend_at: now + rto,
                rto,
                retried_auth,
            },
        );
    }

    fn encode(&self, tid: TransactionId, request: Request) -> Vec<u8> {
        let method = match request {
            Request::Allocate => Method::ALLOCATE,
            Request::Refresh { .. } => Method::REFRESH,
            Request::CreatePermission(_) => Method::CREATE_PERMISSION,
            Request::ChannelBind { .. } => Method::CHANNEL_BIND,
        };
        let mut b = MessageBuilder::new(Class::Request, method, tid);
        match request {
            Request::Allocate => {
                b.add(&Attribute::RequestedTransport(17));
                b.add(&Attribute::Lifetime(self.config.lifetime.as_secs() as u32));
            }
            Request::Refresh { lifetime } => {
                b.add(&Attribute::Lifetime(lifetime));
            }
            Request::CreatePermission(ip) => {
                b.add(&Attribute::XorPeerAddress(SocketAddr::new(ip, 0)));
            }
            Request::ChannelBind { peer, number } => {
                b.add(&Attribute::ChannelNumber(number));
                b.add(&Attribute::XorPeerAddress(peer));
            }
        }
        if let (Some(realm), Some(nonce), Some(key)) = (&self.realm, &self.nonce, &self.key) {
            b.add(&Attribute::Username(&self.config.username));
            b.add(&Attribute::Realm(realm));
            b.add(&Attribute::Nonce(nonce));
            b.add_integrity(key);
        }
        b.add_fingerprint();
        b.finish()
    }

    fn retransmit(&mut self, now: Instant) {
        let mut gave_up = Vec::new();
        for (tid, p) in self.pending.iter_mut() {
            if p.resend_at > now {
                continue;
            }
            if self.config.transport.is_stream() || p.sends >= self.config.max_sends {
                gave_up.push(*tid);
                continue;
            }
            p.sends += 1;
            p.rto = (p.rto * 2).min(Duration::from_secs(8));
            p.resend_at = now + p.rto;
            self.counters.retransmits += 1;
            self.transmits.push_back(p.bytes.clone());
        }
        for tid in gave_up {
            if let Some(p) = self.pending.remove(&tid) {
                self.timed_out(p);
            }
        }
    }

    fn timed_out(&mut self, p: Pending) {
        match p.request {
            Request::Allocate | Request::Refresh { .. } => {
                self.fail(TurnFailure::Timeout { sends: p.sends })
            }
            Request::CreatePermission(ip) => {
                if let Some(perm) = self.permissions.get_mut(&ip) {
                    perm.in_flight = false;
                }
            }
            Request::ChannelBind { peer, .. } => {
                if let Some(c) = self.channels.get_mut(&peer) {
                    c.in_flight = false;
                }
            }
        }
    }

    fn refresh(&mut self, now: Instant) {
        if let State::Allocated {
            relayed,
            refresh_at,
        } = self.state
        {
            if refresh_at <= now {
                let lifetime = self.config.lifetime.as_secs() as u32;
                // Pushed far out; the answer sets the real next time.
                self.state = State::Allocated {
                    relayed,
                    refresh_at: now + self.config.lifetime,
                };
                self.send_request(now, Request::Refresh { lifetime }, false);
            }
        }
        let due: Vec<IpAddr> = self
            .permissions
            .iter()
            .filter(|(_, p)| !p.in_flight && p.granted_until.is_some_and(|t| t <= now))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in due {
            if let Some(p) = self.permissions.get_mut(&ip) {
                p.in_flight = true;
            }
            self.send_request(now, Request::CreatePermission(ip), false);
        }
        let due: Vec<(SocketAddr, u16)> = self
            .channels
            .iter()
            .filter(|(_, c)| !c.in_flight && c.bound_until.is_some_and(|t| t <= now))
            .map(|(peer, c)| (*peer, c.number))
            .collect();
        for (peer, number) in due {
            if let Some(c) = self.channels.get_mut(&peer) {
                c.in_flight = true;
            }
            self.send_request(now, Request::ChannelBind { peer, number }, false);
        }
    }
}

// ---- responses -----------------------------------------------------------

impl TurnClient {
    fn response(&mut self, now: Instant, msg: &stun::Message<'_>) {
        let Some(p) = self.pending.remove(&msg.transaction_id()) else {
            self.counters.ignored += 1;
            return;
        };
        if msg.class() == Class::Success {
            // Only accept a success that proves the server knows our key.
            if let Some(key) = &self.key {
                if !msg.verify_integrity(key) {
                    self.counters.ignored += 1;
                    self.pending.insert(msg.transaction_id(), p);
                    return;
                }
            }
            self.success(now, p.request, msg);
        } else {
            self.error(now, p, msg);
        }
    }

    fn success(&mut self, now: Instant, request: Request, msg: &stun::Message<'_>) {
        match request {
            Request::Allocate => self.allocated(now, msg),
            Request::Refresh { lifetime: 0 } => self.state = State::Idle,
            Request::Refresh { .. } => {
                if let State::Allocated { relayed, .. } = self.state {
                    self.state = State::Allocated {
                        relayed,
                        refresh_at: now + refresh_delay(lifetime_of(msg)),
                    };
                }
            }
            Request::CreatePermission(ip) => self.permission_granted(now, ip),
            Request::ChannelBind { peer, .. } => {
                if let Some(c) = self.channels.get_mut(&peer) {
                    let first = c.bound_until.is_none();
                    c.in_flight = false;
                    c.bound_until = Some(now + CHANNEL_REFRESH);
                    if first {
                        self.events.push_back(TurnEvent::ChannelBound(peer));
                    }
                }
                // A bound channel also installs/refreshes the permission.
                if let Some(p) = self.permissions.get_mut(&peer.ip()) {
                    p.granted_until = Some(now + PERMISSION_REFRESH);
                }
            }
        }
    }

    fn allocated(&mut self, now: Instant, msg: &stun::Message<'_>) {
        let Some(relayed) = msg.address(attr_type::XOR_RELAYED_ADDRESS) else {
            self.fail(TurnFailure::NoRelayAddress);
            return;
        };
        self.mapped = msg.xor_mapped_address();
        self.state = State::Allocated {
            relayed,
            refresh_at: now + refresh_delay(lifetime_of(msg)),
        };
        tracing::debug!(%relayed, mapped = ?self.mapped, "TURN allocation made");
        self.events.push_back(TurnEvent::Allocated {
            relayed,
            mapped: self.mapped,
        });
        let wanted: Vec<IpAddr> = self.permissions.keys().copied().collect();
        for ip in wanted {
            if let Some(p) = self.permissions.get_mut(&ip) {
                p.in_flight = true;
            }
            self.send_request(now, Request::CreatePermission(ip), false);
        }
    }

    fn permission_granted(&mut self, now: Instant, ip: IpAddr) {
        let Some(p) = self.permissions.get_mut(&ip) else {
            return;
        };
        let first = p.granted_until.is_none();
        p.in_flight = false;
        p.granted_until = Some(now + PERMISSION_REFRESH);
        let held = std::mem::take(&mut p.held);
        if first {
            self.events.push_back(TurnEvent::PermissionCreated(ip));
        }
        for (peer, data) in held {
            self.bind_channel(now, peer);
            self.wrap_and_queue(peer, &data);
        }
    }

    fn error(&mut self, now: Instant, p: Pending, msg: &stun::Message<'_>) {
        let (code, reason) = msg
            .error_code()
            .map(|e| (e.code, e.reason.to_owned()))
            .unwrap_or((0, String::from("(no ERROR-CODE)")));
        let fresh_nonce = matches!(msg.get(attr_type::NONCE), Some(Ok(Attribute::Nonce(_))));
        if (code == 401 || code == 438) && fresh_nonce && !p.retried_auth {
            self.learn_challenge(msg);
            self.send_request(now, p.request, true);
            return;
        }
        match p.request {
            Request::Allocate | Request::Refresh { .. } if code == 401 => {
                self.fail(TurnFailure::Unauthorized {
                    user: self.config.username.clone(),
                })
            }
            Request::Allocate | Request::Refresh { .. } => {
                self.fail(TurnFailure::Rejected { code, reason })
            }
            Request::CreatePermission(ip) => {
                tracing::debug!(%ip, code, "TURN permission refused");
                self.permissions.remove(&ip);
            }
            Request::ChannelBind { peer, number } => {
                tracing::debug!(%peer, code, "TURN channel bind refused");
                self.channels.remove(&peer);
                self.by_channel.remove(&number);
            }
        }
    }

    fn learn_challenge(&mut self, msg: &stun::Message<'_>) {
        if let Some(Ok(Attribute::Realm(realm))) = msg.get(attr_type::REALM) {
            self.realm = Some(realm.to_owned());
        }
        if let Some(Ok(Attribute::Nonce(nonce))) = msg.get(attr_type::NONCE) {
            self.nonce = Some(nonce.to_owned());
        }
        if let Some(realm) = &self.realm {
            let key = long_term_key_md5(&self.config.username, realm, &self.config.password);
            self.key = Some(IntegrityKey::LongTermMd5(key));
        }
    }

    fn fail(&mut self, why: TurnFailure) {
        tracing::warn!(%why, "TURN allocation failed");
        self.state = State::Failed;
        self.pending.clear();
        self.events.push_back(TurnEvent::Failed(why));
    }
}

// ---- data ----------------------------------------------------------------

impl TurnClient {
    fn hold(&mut self, peer: SocketAddr, data: &[u8]) {
        let p = self.permissions.entry(peer.ip()).or_default();
        if p.held.len() < MAX_HELD {
            p.held.push((peer, data.to_vec()));
        } else {
            self.counters.dropped_unpermitted += 1;
        }
    }

    fn bind_channel(&mut self, now: Instant, peer: SocketAddr) {
        if self.channels.contains_key(&peer) || self.next_channel > LAST_CHANNEL {
            return;
        }
        let number = self.next_channel;
        self.next_channel += 1;
        self.channels.insert(
            peer,
            Channel {
                number,
                bound_until: None,
                in_flight: true,
            },
        );
        self.by_channel.insert(number, peer);
        self.send_request(now, Request::ChannelBind { peer, number }, false);
    }

    fn wrap_and_queue(&mut self, peer: SocketAddr, data: &[u8]) {
        let bound = self
            .channels
            .get(&peer)
            .filter(|c| c.bound_until.is_some())
            .map(|c| c.number)
            .and_then(|n| ChannelNumber::new(n).ok());
        let bytes = match bound {
            Some(channel) => {
                self.counters.channel_data_sent += 1;
                ChannelData { channel, data }.encode(self.config.transport.is_stream())
            }
            None => {
                self.counters.send_indications += 1;
                let tid = TransactionId::random(&mut self.rng);
                let mut b = MessageBuilder::new(Class::Indication, Method::SEND, tid);
                b.add(&Attribute::XorPeerAddress(peer));
                b.add(&Attribute::Data(data));
                b.finish()
            }
        };
        self.transmits.push_back(bytes);
    }

    fn channel_data<'a>(&mut self, bytes: &'a [u8]) -> Option<PeerData<'a>> {
        let Ok(cd) = ChannelData::decode(bytes) else {
            self.counters.ignored += 1;
            return None;
        };
        match self.by_channel.get(&cd.channel.get()) {
            Some(&peer) => Some(PeerData {
                peer,
                data: cd.data,
            }),
            None => {
                self.counters.ignored += 1;
                None
            }
        }
    }
}

fn data_indication<'a>(msg: &stun::Message<'a>) -> Option<PeerData<'a>> {
    let peer = msg.address(attr_type::XOR_PEER_ADDRESS)?;
    match msg.get(attr_type::DATA) {
        Some(Ok(Attribute::Data(data))) => Some(PeerData { peer, data }),
        _ => None,
    }
}

fn lifetime_of(msg: &stun::Message<'_>) -> Duration {
    match msg.get(attr_type::LIFETIME) {
        Some(Ok(Attribute::Lifetime(s))) => Duration::from_secs(u64::from(s)),
        _ => Duration::from_secs(600),
    }
}

/// Refresh a minute before expiry (or at half-life for short lifetimes).
fn refresh_delay(lifetime: Duration) -> Duration {
    if lifetime > Duration::from_secs(120) {
        lifetime - Duration::from_secs(60)
    } else {
        lifetime / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_happens_before_expiry() {
        assert_eq!(
            refresh_delay(Duration::from_secs(600)),
            Duration::from_secs(540)
        );
        assert_eq!(
            refresh_delay(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn garbage_from_the_server_is_counted_not_fatal() {
        let server = "192.0.2.1:3478".parse().unwrap();
        let mut c = TurnClient::new(TurnConfig::new(server, TurnTransport::Udp, "u", "p"));
        let now = Instant::now();
        c.allocate(now);
        assert!(c.poll_transmit().is_some());
        for junk in [
            &b""[..],
            b"\x40\x00\x00\x10abc",
            b"\x00\x01\x00\x00garbage",
            &[0xff; 40],
        ] {
            assert_eq!(c.handle_input(now, junk), None);
        }
        assert_eq!(c.counters().ignored, 4);
        assert!(!c.is_failed());
    }

    #[test]
    fn unanswered_allocate_over_udp_fails_after_max_sends() {
        let server = "192.0.2.1:3478".parse().unwrap();
        let mut cfg = TurnConfig::new(server, TurnTransport::Udp, "u", "p");
        cfg.max_sends = 3;
        let mut c = TurnClient::new(cfg);
        let mut now = Instant::now();
        c.allocate(now);
        let mut sent = 0;
        while let Some(t) = c.poll_timeout() {
            while c.poll_transmit().is_some() {
                sent += 1;
            }
            now = t;
            c.handle_timeout(now);
        }
        assert_eq!(sent, 3);
        assert_eq!(
            c.poll_event(),
            Some(TurnEvent::Failed(TurnFailure::Timeout { sends: 3 }))
        );
    }
}
