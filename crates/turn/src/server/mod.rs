//! The TURN server core (RFC 8656, RFC 5766 clients), sans-IO.
//!
//! The driver owns the listener sockets and one UDP socket per relay. It feeds
//! * client bytes (datagrams, or frames cut with [`crate::stun::frame_len`]) into
//!   [`Server::handle_client`], which answers through [`Server::poll_transmit`]
//!   and returns a [`Forward`] (borrowing the input) when data must go to a peer;
//! * peer datagrams into [`Server::handle_peer`], which frames them in place
//!   (ChannelData or a Data indication) and says which client gets them;
//! * time into [`Server::handle_timeout`] at [`Server::poll_timeout`].
//!
//! Relay sockets come from a [`RelayAllocator`] the driver implements.
//! Account keys come from the driver too: before handing a request over it asks
//! [`Server::user_to_look_up`], looks the keys up off the hot path and gives them
//! with [`Server::set_user_keys`]; the core caches them (60 s) and never blocks.
//! Both data paths allocate nothing per packet.

mod allocation;
mod auth;
mod config;
mod counters;
mod handlers;
mod relay;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

pub use allocation::AllocationId;
pub use auth::{rest_password, UserKeys};
pub use config::{PeerPolicy, ServerConfig};
pub use counters::Counters;
pub use relay::{ToClient, PEER_HEADROOM, PEER_TAILROOM};

use crate::binding::{BindingConfig, BindingServer, Source};
use crate::pii::Redaction;
use crate::stun::{self, attr_type, Attribute, ChannelData, Class, Method};
use allocation::{Allocation, Bucket};
use auth::{Cached, KeyCache, Nonces};

/// How the client reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// Streams pad ChannelData to 4 bytes (RFC 8656 §12.5).
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// The client's 5-tuple: transport, client address, our listener address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    pub transport: Transport,
    pub client: SocketAddr,
    pub server: SocketAddr,
}

/// A relay socket, numbered by the driver's [`RelayAllocator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayId(pub u32);

/// Address family of a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

/// What the core asks of the relay allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayRequest {
    pub family: Family,
    /// EVEN-PORT: the port must be even.
    pub even_port: bool,
    /// EVEN-PORT with R: also hold port+1 for a later RESERVATION-TOKEN.
    pub reserve_next: bool,
}

/// A bound relay socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relay {
    pub id: RelayId,
    pub addr: SocketAddr,
}

/// What the allocator granted: the relay and, for `reserve_next`, port+1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub relay: Relay,
    pub reserved: Option<Relay>,
}

/// Why no relay socket could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayError {
    /// This server has no relay address of that family (440).
    FamilyUnsupported,
    /// No port free (508).
    NoCapacity,
}

/// Binds and releases relay sockets (the driver's side of allocations).
pub trait RelayAllocator {
    fn allocate(&mut self, req: RelayRequest) -> Result<Granted, RelayError>;
    /// The relay is no longer used: close its socket.
    fn release(&mut self, id: RelayId);
}

/// A message for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: FiveTuple,
    /// For UDP with RFC 5780: which socket to send from.
    pub from: Source,
    pub payload: Vec<u8>,
}

/// Data a client sent to a peer (ChannelData or Send indication), borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward<'b> {
    pub relay: RelayId,
    pub peer: SocketAddr,
    pub data: &'b [u8],
}

/// Notable things for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    AllocationCreated {
        id: AllocationId,
        user: Arc<str>,
        client: FiveTuple,
        relayed: SocketAddr,
    },
    AllocationClosed {
        id: AllocationId,
        user: Arc<str>,
        reason: CloseReason,
    },
    AuthFailed {
        client: SocketAddr,
        user: Option<String>,
    },
    PeerRefused {
        id: AllocationId,
        peer: IpAddr,
    },
}

/// Why an allocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Expired,
    Deleted,
    ConnectionClosed,
}

/// Events kept when the driver does not drain them.
const MAX_EVENTS: usize = 1024;
/// How often expiry is checked.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// RFC 8656 §7.2: reserved ports are held for 30 s.
const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);
/// Source IPs tracked by the unauthenticated rate limiter.
const RATE_TABLE_MAX: usize = 100_000;

/// The TURN + STUN server state machine.
pub struct Server<A: RelayAllocator> {
    config: ServerConfig,
    binding: BindingServer,
    relays: A,
    allocations: Vec<Option<Allocation>>,
    free_ids: Vec<u32>,
    /// Probed for every ChannelData and peer datagram: a fast hash keyed
    /// from the core's RNG, so nobody outside can aim keys at one bucket.
    by_tuple: HashMap<FiveTuple, AllocationId, ahash::RandomState>,
    by_relay: HashMap<RelayId, AllocationId, ahash::RandomState>,
    per_user: HashMap<Arc<str>, u32>,
    reservations: HashMap<[u8; 8], (Relay, Instant)>,
    keys: KeyCache,
    nonces: Nonces,
    unauth: HashMap<IpAddr, Bucket>,
    rng: rand::rngs::StdRng,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
    /// How usernames and addresses appear in logs.
    redaction: Redaction,
    next_sweep: Instant,
    start: Instant,
    unix_at_start: u64,
}

impl<A: RelayAllocator> Server<A> {
    /// A server at `now`, when the wall clock reads `unix_now` seconds (for REST expiry).
    pub fn new(config: ServerConfig, relays: A, now: Instant, unix_now: u64) -> Self {
        let mut rng = match config.seed {
            Some(s) => rand::rngs::StdRng::seed_from_u64(s),
            None => rand::rngs::StdRng::from_entropy(),
        };
        let mut bcfg = BindingConfig::new(config.primary);
        bcfg.alternate = config.alternate;
        let nonces = Nonces::new(rng.gen(), config.nonce_lifetime, now);
        let redaction = match config.redaction {
            Some(r) => r,
            None if config.log_pii => Redaction::shown(),
            None => Redaction::hidden(rng.gen()),
        };
        let keyed = ahash::RandomState::with_seeds(rng.gen(), rng.gen(), rng.gen(), rng.gen());
        Server {
            binding: BindingServer::new(bcfg),
            config,
            relays,
            allocations: Vec::new(),
            free_ids: Vec::new(),
            by_tuple: HashMap::with_hasher(keyed.clone()),
            by_relay: HashMap::with_hasher(keyed),
            per_user: HashMap::new(),
            reservations: HashMap::new(),
            keys: KeyCache::default(),
            nonces,
            unauth: HashMap::new(),
            rng,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            redaction,
            next_sweep: now + SWEEP_EVERY,
            start: now,
            unix_at_start: unix_now,
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }
    /// How the driver should log usernames and addresses (same salt as the core).
    pub fn redaction(&self) -> Redaction {
        self.redaction
    }
    /// The driver dropped a datagram too long for its receive slot.
    pub fn count_oversize(&mut self) {
        self.counters.dropped_oversize += 1;
    }
    pub fn counters(&self) -> Counters {
        let mut c = self.counters;
        c.allocations_active = self.by_tuple.len() as u64;
        c
    }
    /// The relay allocator (the driver's).
    pub fn relays(&self) -> &A {
        &self.relays
    }
    pub fn relays_mut(&mut self) -> &mut A {
        &mut self.relays
    }
    /// Number of live allocations.
    pub fn allocation_count(&self) -> usize {
        self.by_tuple.len()
    }

    /// Handle bytes from a client: a STUN message or ChannelData.
    pub fn handle_client<'b>(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        source: Source,
        bytes: &'b [u8],
    ) -> Option<Forward<'b>> {
        if ChannelData::is_channel_data(bytes) {
            return self.channel_from_client(now, &tuple, bytes);
        }
        let Ok(msg) = stun::decode(bytes) else {
            self.counters.malformed += 1;
            return None;
        };
        if msg.check_fingerprint().is_err() {
            self.counters.malformed += 1;
            return None;
        }
        match (msg.class(), msg.method()) {
            (Class::Request, Method::BINDING) => {
                self.counters.binding_requests += 1;
                if let Some(r) = self.binding.handle_message(source, tuple.client, &msg) {
                    self.transmits.push_back(Transmit {
                        to: tuple,
                        from: r.from,
                        payload: r.payload,
                    });
                }
                None
            }
            (Class::Indication, Method::SEND) => self.send_indication(now, &tuple, &msg),
            (Class::Request, _) => {
                self.request(now, tuple, source, &msg);
                None
            }
            _ => None,
        }
    }

    /// A stream (TCP/TLS) client went away: its allocation goes too.
    pub fn handle_client_closed(&mut self, _now: Instant, tuple: FiveTuple) {
        if let Some(&id) = self.by_tuple.get(&tuple) {
            self.close(id, CloseReason::ConnectionClosed);
        }
    }

    /// The username whose keys the driver should look up before calling
    /// [`Server::handle_client`] with `bytes`, if any (account users not cached).
    pub fn user_to_look_up(&self, now: Instant, bytes: &[u8]) -> Option<String> {
        if ChannelData::is_channel_data(bytes) {
            return None;
        }
        let msg = stun::decode(bytes).ok()?;
        if msg.class() != Class::Request || msg.integrity_mac().is_none() {
            return None;
        }
        let Some(Ok(Attribute::Username(user))) = msg.get(attr_type::USERNAME) else {
            return None;
        };
        if let Some(secret) = &self.config.rest_secret {
            if auth::rest_keys(secret, user, &self.config.realm, self.unix_now(now))
                != auth::RestCheck::NotRest
            {
                return None;
            }
        }
        (self.keys.get(now, user) == Cached::Missing).then(|| user.to_owned())
    }

    /// Keys for `user` (or `None`: no such account), from the driver's store lookup.
    pub fn set_user_keys(&mut self, now: Instant, user: &str, keys: Option<UserKeys>) {
        self.keys.insert(now, user, keys);
    }

    /// Expire allocations, permissions, channels, reservations.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        let expired: Vec<AllocationId> = self
            .allocations
            .iter_mut()
            .enumerate()
            .filter_map(|(i, slot)| {
                let a = slot.as_mut()?;
                a.sweep(now);
                (a.expires <= now).then_some(AllocationId(i as u32))
            })
            .collect();
        for id in expired {
            self.close(id, CloseReason::Expired);
        }
        let stale: Vec<[u8; 8]> = self
            .reservations
            .iter()
            .filter(|(_, (_, exp))| *exp <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in stale {
            if let Some((relay, _)) = self.reservations.remove(&t) {
                self.relays.release(relay.id);
            }
        }
        if self.unauth.len() > RATE_TABLE_MAX / 2 {
            self.unauth.retain(|_, b| !b.is_full(now));
        }
    }

    /// When [`Server::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Instant {
        self.next_sweep
    }

    /// The next message for a client.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn unix_now(&self, now: Instant) -> u64 {
        self.unix_at_start + now.saturating_duration_since(self.start).as_secs()
    }

    fn event(&mut self, e: Event) {
        if self.events.len() < MAX_EVENTS {
            self.events.push_back(e);
        }
    }

    fn allocation(&self, id: AllocationId) -> Option<&Allocation> {
        self.allocations.get(id.0 as usize)?.as_ref()
    }

    fn allocation_mut(&mut self, id: AllocationId) -> Option<&mut Allocation> {
        self.allocations.get_mut(id.0 as usize)?.as_mut()
    }

    fn insert(&mut self, a: Allocation) -> AllocationId {
        let (tuple, relay, user) = (a.client, a.relay, a.user.clone());
        let id = match self.free_ids.pop() {
            Some(i) => {
                self.allocations[i as usize] = Some(a);
                AllocationId(i)
            }
            None => {
                self.allocations.push(Some(a));
                AllocationId(self.allocations.len() as u32 - 1)
            }
        };
        self.by_tuple.insert(tuple, id);
        self.by_relay.insert(relay, id);
        *self.per_user.entry(user).or_insert(0) += 1;
        id
    }

    fn close(&mut self, id: AllocationId, reason: CloseReason) {
        let Some(a) = self
            .allocations
            .get_mut(id.0 as usize)
            .and_then(Option::take)
        else {
            return;
        };
        self.free_ids.push(id.0);
        self.by_tuple.remove(&a.client);
        self.by_relay.remove(&a.relay);
        if let Some(n) = self.per_user.get_mut(&a.user) {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(&a.user);
            }
        }
        self.relays.release(a.relay);
        a.span
            .in_scope(|| tracing::info!(?reason, "allocation closed"));
        self.event(Event::AllocationClosed {
            id,
            user: a.user,
            reason,
        });
    }

    /// Spend one unauthenticated-request token for `ip`; false = drop silently.
    fn unauth_allowed(&mut self, now: Instant, ip: IpAddr) -> bool {
        if self.unauth.len() >= RATE_TABLE_MAX && !self.unauth.contains_key(&ip) {
            self.unauth.retain(|_, b| !b.is_full(now));
            if self.unauth.len() >= RATE_TABLE_MAX {
                self.counters.rate_limited += 1;
                return false;
            }
        }
        let (rate, burst) = (
            u64::from(self.config.unauth_rate),
            u64::from(self.config.unauth_burst),
        );
        let ok = self
            .unauth
            .entry(ip)
            .or_insert_with(|| Bucket::with_capacity(now, rate, burst))
            .spend(now, 1);
        if !ok {
            self.counters.rate_limited += 1;
        }
        ok
    }

    fn reservation_token(&mut self) -> [u8; 8] {
        self.rng.gen()
    }
}
