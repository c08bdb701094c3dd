//! Lanes: the UDP fast path. A lane is one thread with its own poller (epoll
//! through mio: readable interest only, up to [`EVENTS`] ready sockets per
//! wake-up) serving some UDP listener sockets (edge-triggered) and the relay
//! sockets of the allocations it created (level-triggered, see
//! `crate::batch::watch_level_triggered`; [`current`] says which lane).
//!
//! Per wake-up a lane takes a ready listener's datagrams with `recvmmsg`,
//! runs them through the core under one lock per batch, and sends the client
//! data to peers through its io_uring, one system call for the batch (every
//! relay socket is another socket, so `sendmmsg` cannot). Ready relay sockets
//! are read through the ring too, one datagram per socket per wake-up: a
//! socket that still holds data is reported again by the next `epoll_wait`,
//! so no round is spent learning that a socket is empty (`EAGAIN`); peer data
//! goes to clients with `sendmmsg` on the listener socket. Without io_uring ([`ring_use`]): one `sendto` per peer
//! datagram and one `recvmmsg` per relay socket (see `crate::batch::BatchIo`).
//! Sockets are registered for reading only, so the kernel never wakes a lane
//! to say a socket became writable again.

use std::cell::Cell;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use natter_turn::binding::Source;
use natter_turn::server::{
    FiveTuple, RelayId, ToClient, Transmit, Transport, PEER_HEADROOM, PEER_TAILROOM,
};

use super::driver::Driver;
use crate::batch::{self, BatchIo, RecvBatch, RingUse, BATCH, SLOT};
use crate::Shutdown;

thread_local! {
    static LANE: Cell<usize> = const { Cell::new(0) };
}

/// The lane this thread is (0 for threads that are not lanes, e.g. the
/// TCP/TLS tasks, so their relays are served by lane 0).
pub(super) fn current() -> usize {
    LANE.with(Cell::get)
}

/// A UDP listener socket served by a lane.
pub(super) struct Listener {
    pub(super) sock: Arc<UdpSocket>,
    pub(super) source: Source,
    pub(super) local: SocketAddr,
}

/// A lane with its sockets registered, not yet running.
pub(super) struct LaneSetup {
    index: usize,
    poll: Poll,
    listeners: Vec<Listener>,
}

impl LaneSetup {
    pub(super) fn new(index: usize, listeners: Vec<Listener>) -> io::Result<Self> {
        let poll = Poll::new()?;
        for (k, l) in listeners.iter().enumerate() {
            let fd = l.sock.as_raw_fd();
            poll.registry().register(
                &mut SourceFd(&fd),
                Token(LISTENER_TOKENS + k),
                Interest::READABLE,
            )?;
        }
        Ok(LaneSetup {
            index,
            poll,
            listeners,
        })
    }

    /// A handle to register relay sockets with this lane from any thread.
    pub(super) fn registry(&self) -> io::Result<Registry> {
        self.poll.registry().try_clone()
    }

    /// Start the lane's thread; it stops as soon as `shutdown` fires (a task
    /// on `runtime` wakes its poll), and sleeps in between until a socket is
    /// ready.
    pub(super) fn spawn(
        self,
        driver: Arc<Driver>,
        runtime: tokio::runtime::Handle,
        shutdown: Shutdown,
    ) -> io::Result<()> {
        let waker = Waker::new(self.poll.registry(), WAKE)?;
        let mut stop = shutdown.clone();
        let index = self.index;
        runtime.spawn(async move {
            stop.wait().await;
            if let Err(e) = waker.wake() {
                tracing::warn!(error = %e, "could not wake TURN lane {index} to stop");
            }
        });
        let lane = Lane {
            index: self.index,
            poll: self.poll,
            events: Events::with_capacity(EVENTS),
            listeners: self.listeners,
            driver,
            runtime,
            shutdown,
            clients: RecvBatch::new(),
            peers: RecvBatch::with_layout(BATCH, PEER_HEADROOM, SLOT, PEER_TAILROOM),
            peer_relays: Vec::with_capacity(BATCH),
            ready_listeners: Vec::new(),
            ready_relays: Vec::with_capacity(EVENTS),
            again_listeners: Vec::new(),
            again_relays: Vec::new(),
            relay_ids: Vec::with_capacity(EVENTS),
            relay_socks: Vec::with_capacity(EVENTS),
            relay_got: Vec::with_capacity(EVENTS),
            forwards: Vec::with_capacity(BATCH),
            to_clients: Vec::with_capacity(BATCH),
            io: BatchIo::new(RingUse::Off),
        };
        std::thread::Builder::new()
            .name(format!("natter-turn-{}", self.index))
            .spawn(move || lane.run())
            .map(|_| ())
    }
}

/// Tokens from here on are listener sockets; below are relay ids (u32).
const LISTENER_TOKENS: usize = usize::MAX - 16;
/// Ready sockets taken per `epoll_wait`.
const EVENTS: usize = 256;
/// The token of the waker that tells a lane to stop: below the listeners,
/// above every relay id (a `u32`).
const WAKE: Token = Token(LISTENER_TOKENS - 1);
/// Datagrams taken per `recvmmsg` on one relay socket (without io_uring).
const PER_RELAY: usize = 8;
/// Receive rounds per wake-up (listener batches, or relay socket rounds)
/// before the others get a turn (a socket still busy is then served again
/// right after, without waiting for an edge).
const ROUNDS: usize = 16;

struct Lane {
    index: usize,
    poll: Poll,
    events: Events,
    listeners: Vec<Listener>,
    driver: Arc<Driver>,
    /// The main runtime: requests that need an account lookup go there.
    runtime: tokio::runtime::Handle,
    shutdown: Shutdown,
    /// Client datagrams of one listener `recvmmsg`.
    clients: RecvBatch,
    /// Peer datagrams from many relay sockets, with room to frame them in place.
    peers: RecvBatch,
    /// The relay each datagram in `peers` came from.
    peer_relays: Vec<RelayId>,
    ready_listeners: Vec<usize>,
    ready_relays: Vec<RelayId>,
    /// Sockets left with data after [`ROUNDS`]: served again without an edge.
    again_listeners: Vec<usize>,
    again_relays: Vec<RelayId>,
    /// Relay sockets being drained this wake-up, and what each last round gave:
    /// (datagrams, may hold more).
    relay_ids: Vec<RelayId>,
    relay_socks: Vec<Arc<UdpSocket>>,
    relay_got: Vec<(usize, bool)>,
    /// Client data for peers: (relay socket, peer, datagram index, byte range).
    forwards: Vec<(Arc<UdpSocket>, SocketAddr, usize, Range<usize>)>,
    /// Framed peer data for clients: (datagram index, where it goes).
    to_clients: Vec<(usize, ToClient)>,
    /// Sends `forwards` (io_uring: one system call for all of them).
    io: BatchIo,
}

impl Lane {
    fn run(mut self) {
        LANE.with(|l| l.set(self.index));
        // Made here: the ring belongs to the thread that submits to it.
        self.io = BatchIo::new(ring_use());
        tracing::debug!(lane = self.index, io_uring = ?self.io.ring_use(), "TURN lane started");
        loop {
            let busy = !self.again_listeners.is_empty() || !self.again_relays.is_empty();
            let timeout = busy.then_some(Duration::ZERO);
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!("TURN lane {} stopped: epoll failed: {e}", self.index);
                    return;
                }
            }
            if self.shutdown.is_triggered() {
                return;
            }
            self.collect_ready();
            // By index: the list keeps its capacity (no allocation per wake-up).
            for n in 0..self.ready_listeners.len() {
                let k = self.ready_listeners[n];
                self.drain_listener(k);
            }
            if !self.ready_relays.is_empty() {
                self.drain_relays();
            }
        }
    }

    /// Sort this wake-up's events (and sockets left over) into listeners and relays.
    fn collect_ready(&mut self) {
        self.ready_listeners.clear();
        self.ready_relays.clear();
        for ev in self.events.iter().filter(|ev| ev.token() != WAKE) {
            match ev.token().0.checked_sub(LISTENER_TOKENS) {
                Some(k) => self.ready_listeners.push(k),
                None => self.ready_relays.push(RelayId(ev.token().0 as u32)),
            }
        }
        for k in self.again_listeners.drain(..) {
            if !self.ready_listeners.contains(&k) {
                self.ready_listeners.push(k);
            }
        }
        self.ready_relays.append(&mut self.again_relays);
    }

    /// Read a listener until it is empty (or [`ROUNDS`] batches), handling each batch.
    fn drain_listener(&mut self, k: usize) {
        let Some(l) = self.listeners.get(k) else {
            return;
        };
        let (sock, source, local) = (l.sock.clone(), l.source, l.local);
        for _ in 0..ROUNDS {
            match self.clients.recv(&*sock) {
                Ok(n) => {
                    self.handle_clients(local, source);
                    if n < self.clients.capacity() {
                        return;
                    }
                }
                Err(e) if retry_after(&e) => {}
                Err(_) => return,
            }
        }
        self.again_listeners.push(k);
    }

    /// One batch of client datagrams: one core lock, then the sends.
    fn handle_clients(&mut self, local: SocketAddr, source: Source) {
        let tuple = |client| FiveTuple {
            transport: Transport::Udp,
            client,
            server: local,
        };
        let mut replies = Vec::new();
        let mut lookups = Vec::new();
        {
            let mut core = self.driver.core();
            let now = Instant::now();
            for i in 0..self.clients.len() {
                let Some((bytes, from)) = self.clients.get(i) else {
                    // Longer than a slot: cut short by the kernel, so dropped.
                    core.count_oversize();
                    continue;
                };
                if core.user_to_look_up(now, bytes).is_some() {
                    lookups.push((tuple(from), bytes.to_vec()));
                    continue;
                }
                if let Some(f) = core.handle_client(now, tuple(from), source, bytes) {
                    if let Some(sock) = core.relays().socket(f.relay) {
                        let start = f.data.as_ptr() as usize - bytes.as_ptr() as usize;
                        let range = start..start + f.data.len();
                        self.forwards.push((sock.clone(), f.peer, i, range));
                    }
                }
            }
            while let Some(t) = core.poll_transmit() {
                replies.push(t);
            }
        }
        // A full socket buffer drops the packet, as a router would.
        let clients = &self.clients;
        self.io
            .send_each(self.forwards.iter().filter_map(|(sock, peer, i, range)| {
                let (bytes, _) = clients.get(*i)?;
                Some((batch::fd(sock), bytes.get(range.clone())?, *peer))
            }));
        self.forwards.clear();
        self.driver.send_all(replies);
        for (tuple, bytes) in lookups {
            // Off the lane: the account lookup may wait on the database.
            let driver = self.driver.clone();
            self.runtime.spawn(async move {
                driver.handle_client(tuple, source, &bytes).await;
            });
        }
    }

    /// Read every ready relay socket once into `peers` (level-triggered: one
    /// still holding data is reported again); frame and send whenever `peers` fills.
    fn drain_relays(&mut self) {
        {
            let core = self.driver.core();
            for &id in &self.ready_relays {
                if let Some(sock) = core.relays().socket(id) {
                    self.relay_ids.push(id);
                    self.relay_socks.push(sock.clone());
                }
            }
        }
        let now = Instant::now();
        for _ in 0..ROUNDS {
            if self.relay_ids.is_empty() {
                break;
            }
            self.relay_round(now);
        }
        // Still unread after ROUNDS: served again right after.
        self.again_relays.append(&mut self.relay_ids);
        self.relay_socks.clear();
        self.frame_and_send(now);
    }

    /// One receive on each socket of `relay_socks` (as many as `peers` has
    /// room for); keeps there the ones not read yet (no room) or that
    /// reported an error after which data may follow. Those that gave data
    /// are done for this wake-up: level-triggered, epoll reports them again
    /// if they hold more.
    fn relay_round(&mut self, now: Instant) {
        if self.peers.room() == 0 {
            self.frame_and_send(now);
        }
        let take = self.relay_socks.len().min(self.peers.room());
        self.io.recv_each(
            &mut self.peers,
            &self.relay_socks[..take],
            PER_RELAY,
            &mut self.relay_got,
        );
        let mut keep = 0;
        for k in 0..self.relay_ids.len() {
            let (n, more) = self.relay_got.get(k).copied().unwrap_or((0, true));
            let id = self.relay_ids[k];
            self.peer_relays.extend(std::iter::repeat_n(id, n));
            if n == 0 && more {
                self.relay_ids[keep] = id;
                self.relay_socks.swap(keep, k);
                keep += 1;
            }
        }
        self.relay_ids.truncate(keep);
        self.relay_socks.truncate(keep);
    }

    /// Frame the held peer datagrams under one core lock, then send them:
    /// `sendmmsg` per listener socket for UDP clients, the queue for streams.
    fn frame_and_send(&mut self, now: Instant) {
        if self.peers.len() == 0 {
            return;
        }
        {
            let mut core = self.driver.core();
            for (i, &id) in self.peer_relays.iter().enumerate() {
                let Some((slot, data, peer)) = self.peers.slot_mut(i) else {
                    core.count_oversize();
                    continue;
                };
                if let Some(to) = core.handle_peer(now, id, peer, slot, data) {
                    self.to_clients.push((i, to));
                }
            }
        }
        self.send_to_clients();
        self.to_clients.clear();
        self.peers.clear();
        self.peer_relays.clear();
    }

    fn send_to_clients(&mut self) {
        let mut msgs: [(&[u8], SocketAddr); BATCH] = [(&[], UNSPECIFIED); BATCH];
        let mut done = [false; BATCH];
        for first in 0..self.to_clients.len() {
            if done[first] {
                continue;
            }
            let server = self.to_clients[first].1.to.server;
            let mut n = 0;
            for (j, (i, to)) in self.to_clients.iter().enumerate().skip(first) {
                if done[j] || to.to.server != server || to.to.transport != Transport::Udp {
                    continue;
                }
                done[j] = true;
                if let Some(slot) = self.peers.slot(*i) {
                    msgs[n] = (&slot[to.range.clone()], to.to.client);
                    n += 1;
                }
            }
            if n > 0 {
                if let Some(sock) = self.driver.udp_for(server) {
                    batch::send_many(&**sock, &msgs[..n]);
                }
            }
            if !done[first] {
                // A stream client: its writer task gets a copy.
                done[first] = true;
                let (i, to) = &self.to_clients[first];
                if let Some(slot) = self.peers.slot(*i) {
                    self.driver
                        .queue_stream(&to.to, slot[to.range.clone()].to_vec());
                }
            }
        }
    }
}

/// What lanes ask of io_uring, from `NATTER_TURN_IO_URING`: `off` (or `0`),
/// `send` (peer-bound sends only), `full` (sends and relay socket reads);
/// unset or anything else: [`DEFAULT_RING_USE`]. Without kernel support
/// they use `sendto`/`recvmmsg` whatever it says.
pub(super) fn ring_use() -> RingUse {
    match std::env::var("NATTER_TURN_IO_URING").as_deref() {
        Ok("off" | "0" | "false" | "no") => RingUse::Off,
        Ok("send") => RingUse::Send,
        Ok("full") => RingUse::Full,
        _ => DEFAULT_RING_USE,
    }
}

/// See `docs/decisions.md` ("TURN relay CPU") for the measurements behind it.
const DEFAULT_RING_USE: RingUse = RingUse::Full;

const UNSPECIFIED: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

/// Errors a UDP receive reports once for an earlier send (ICMP port
/// unreachable and the like): the queue may still hold datagrams.
fn retry_after(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::Interrupted
    )
}

impl Driver {
    /// Send replies the core produced: UDP now, streams through their queue.
    pub(super) fn send_all(&self, replies: Vec<Transmit>) {
        for t in replies {
            self.send_to_client(t);
        }
    }
}
