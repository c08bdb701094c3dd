//! The core thread: owns the sans-IO [`Server`] and the UDP socket, with its
//! own poller (epoll through mio), and takes stream and WebSocket traffic
//! from a queue that rings the poller.
//!
//! Per wake-up: one `epoll_wait`, one `recvmmsg` per batch of up to
//! [`batch::BATCH`] datagrams (a short batch means the socket is empty: it is
//! registered edge-triggered, and a datagram arriving later raises a new
//! edge), the core runs over the batch, and its UDP answers leave with one
//! `sendmmsg`. The poller sleeps until the next live deadline of the core
//! (at most one timer run per [`TIMER_SLACK`]) or the binding outbox.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use natter_sip::flow::{ConnId, Flow, Input, Transport};
use natter_sip::{Event, Limits, Server};
use tokio::sync::mpsc;

use super::dial::Dialer;
use crate::batch::{self, RecvBatch};
use crate::{ServeError, Shutdown};

/// Messages from connection tasks to the core.
#[derive(Debug)]
pub(crate) enum ToCore {
    /// A connection opened; `tx` writes to it. `dialed` is the remote
    /// address when we opened it ourselves.
    Opened {
        conn: ConnId,
        tx: mpsc::Sender<Vec<u8>>,
        dialed: Option<SocketAddr>,
    },
    /// A connection the core asked for could not be made.
    ConnectFailed { flow: Flow },
    /// One SIP message from a stream or WebSocket connection.
    Frame { flow: Flow, bytes: Vec<u8> },
    /// The connection is gone.
    Closed { conn: ConnId },
}

/// How connection tasks reach the core: a bounded queue (a full one makes
/// the sender wait) and a bell that wakes the core's poller.
#[derive(Clone)]
pub(crate) struct CoreSender {
    tx: mpsc::Sender<ToCore>,
    bell: Arc<Bell>,
}

impl CoreSender {
    /// Queue `m` for the core; `Err` when the core has stopped.
    pub(crate) async fn send(&self, m: ToCore) -> Result<(), ToCore> {
        self.tx.send(m).await.map_err(|e| e.0)?;
        self.bell.ring();
        Ok(())
    }
}

impl std::fmt::Debug for CoreSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CoreSender")
    }
}

/// The core, set up but not yet running: its poller exists so that
/// [`CoreSender`]s can be handed out before the thread starts.
pub(crate) struct CoreSetup {
    poll: Poll,
    rx: mpsc::Receiver<ToCore>,
    sender: CoreSender,
}

impl CoreSetup {
    /// A poller and an inbox of `capacity` messages.
    pub(crate) fn new(capacity: usize) -> Result<(CoreSetup, CoreSender), ServeError> {
        let poll = Poll::new().map_err(start_err)?;
        let waker = Waker::new(poll.registry(), WAKE).map_err(start_err)?;
        let bell = Arc::new(Bell {
            waker,
            rung: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel(capacity);
        let sender = CoreSender { tx, bell };
        let setup = CoreSetup {
            poll,
            rx,
            sender: sender.clone(),
        };
        Ok((setup, sender))
    }

    /// Start the core on its own thread. `runtime` runs what the core
    /// spawns (dialled connections) and tells it about `shutdown`.
    pub(crate) fn spawn(
        self,
        server: Server,
        udp: Option<UdpSocket>,
        persist: mpsc::UnboundedSender<Vec<Event>>,
        shutdown: Shutdown,
        runtime: tokio::runtime::Handle,
    ) -> Result<(), ServeError> {
        let udp = udp.map(|u| u.local_addr().map(|a| (u, a))).transpose();
        let udp = udp.map_err(start_err)?;
        if let Some((sock, _)) = &udp {
            let fd = sock.as_raw_fd();
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), UDP, Interest::READABLE)
                .map_err(start_err)?;
        }
        let bell = self.sender.bell.clone();
        let mut stop = shutdown.clone();
        runtime.spawn(async move {
            stop.wait().await;
            bell.ring_now();
        });
        let redaction = server.redaction();
        let links = Links {
            conns: HashMap::new(),
            dialer: Dialer::new(self.sender.clone(), shutdown.clone(), redaction),
        };
        let core = Core::new(server, udp, links, self, persist, shutdown);
        std::thread::Builder::new()
            .name("sip-core".into())
            .spawn(move || {
                // Dialled connections are tokio tasks on the main runtime.
                let _runtime = runtime.enter();
                core.run();
            })
            .map_err(start_err)?;
        Ok(())
    }
}

fn start_err(error: io::Error) -> ServeError {
    ServeError::Io {
        context: "starting the SIP core".into(),
        error,
    }
}

/// Binding events are handed to the writer at most this often…
const OUTBOX_EVERY: Duration = Duration::from_millis(250);
/// …or when this many are waiting.
const OUTBOX_MAX: usize = 1024;

/// Timers are run at most this often. The core's deadlines are all live
/// (a transaction's timers are disarmed when it moves on or ends), but they
/// are RFC 3261 ones (500 ms and up), one or more per transaction: under
/// load, batching them costs nothing and 10 ms of lateness changes nothing.
const TIMER_SLACK: Duration = Duration::from_millis(10);

/// `recvmmsg` calls per wake-up before the inbox and timers get a turn (the
/// socket is then served again at once, without waiting for an edge).
const ROUNDS: usize = 8;
/// Inbox messages taken per wake-up before the socket gets a turn.
const INBOX_ROUNDS: usize = 256;

const UDP: Token = Token(0);
const WAKE: Token = Token(1);

/// Wakes the core's poller when the inbox gets something, once per drain.
struct Bell {
    waker: Waker,
    /// Set by a sender that rang; the core clears it before draining, so
    /// a message queued after that rings again.
    rung: AtomicBool,
}

impl Bell {
    fn ring(&self) {
        if !self.rung.swap(true, Ordering::AcqRel) {
            self.ring_now();
        }
    }

    fn ring_now(&self) {
        if let Err(e) = self.waker.wake() {
            tracing::warn!(error = %e, "could not wake the SIP core");
        }
    }

    /// Called by the core right before it drains the inbox.
    fn answer(&self) {
        self.rung.swap(false, Ordering::AcqRel);
    }
}

/// Stream connections: open ones by id, and the ones we dial.
struct Links {
    conns: HashMap<ConnId, mpsc::Sender<Vec<u8>>>,
    dialer: Dialer,
}

struct Core {
    server: Server,
    udp: Option<(UdpSocket, SocketAddr)>,
    links: Links,
    poll: Poll,
    events: Events,
    rx: mpsc::Receiver<ToCore>,
    bell: Arc<Bell>,
    batch: RecvBatch,
    /// UDP answers of one batch, sent together.
    out: Vec<(Vec<u8>, SocketAddr)>,
    outbox: Outbox,
    shutdown: Shutdown,
    /// Timers do not run again before this.
    quiet_until: Instant,
    /// The socket or the inbox still had data when its turn ended.
    udp_again: bool,
    inbox_again: bool,
}

impl Core {
    fn new(
        server: Server,
        udp: Option<(UdpSocket, SocketAddr)>,
        links: Links,
        setup: CoreSetup,
        persist: mpsc::UnboundedSender<Vec<Event>>,
        shutdown: Shutdown,
    ) -> Core {
        let slot = Limits::default().max_message;
        Core {
            server,
            udp,
            links,
            events: Events::with_capacity(16),
            poll: setup.poll,
            rx: setup.rx,
            bell: setup.sender.bell,
            batch: RecvBatch::with_layout(batch::BATCH, 0, slot, 0),
            out: Vec::with_capacity(batch::BATCH),
            outbox: Outbox {
                events: Vec::new(),
                tx: persist,
                sent: Instant::now(),
            },
            shutdown,
            quiet_until: Instant::now(),
            udp_again: false,
            inbox_again: false,
        }
    }

    fn run(mut self) {
        loop {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "SIP core stopped: epoll failed");
                    break;
                }
            }
            if self.shutdown.is_triggered() {
                break;
            }
            let (mut udp, mut inbox) = (self.udp_again, self.inbox_again);
            for ev in self.events.iter() {
                udp |= ev.token() == UDP;
                inbox |= ev.token() == WAKE;
            }
            if udp {
                self.udp_again = self.drain_udp();
            }
            if inbox {
                self.inbox_again = self.drain_inbox();
            }
            self.run_timers(Instant::now());
            self.outbox.maybe_send(false);
        }
        self.outbox.maybe_send(true);
    }

    /// How long the poller may sleep: until the next deadline (timers no
    /// earlier than the quiet period's end), not at all with work left.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if self.udp_again || self.inbox_again {
            return Some(Duration::ZERO);
        }
        let timers = self.server.poll_timeout().map(|d| d.max(self.quiet_until));
        let due = match (timers, self.outbox.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        due.map(|d| d.saturating_duration_since(now))
    }

    /// Read the socket batch by batch; true when it still had data after
    /// [`ROUNDS`] batches.
    fn drain_udp(&mut self) -> bool {
        let Some((sock, local)) = &self.udp else {
            return false;
        };
        for _ in 0..ROUNDS {
            match self.batch.recv(sock) {
                Ok(n) => {
                    let now = Instant::now();
                    for i in 0..self.batch.len() {
                        // Too long for a slot (truncated): dropped.
                        let Some((bytes, remote)) = self.batch.get(i) else {
                            continue;
                        };
                        let input = Input {
                            transport: Transport::Udp,
                            local: *local,
                            remote,
                            conn_id: None,
                            bytes,
                        };
                        self.server.handle_input(now, input);
                    }
                    flush(
                        &mut self.server,
                        sock,
                        &mut self.links,
                        &mut self.out,
                        &mut self.outbox,
                    );
                    if n < self.batch.capacity() {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                // ICMP errors and signals: the queue may still hold datagrams.
                Err(e) => tracing::debug!(error = %e, "sip udp receive failed"),
            }
        }
        true
    }

    /// Take queued stream messages; true when some were left for later.
    fn drain_inbox(&mut self) -> bool {
        self.bell.answer();
        let mut taken = 0;
        while let Ok(m) = self.rx.try_recv() {
            on_message(&mut self.server, &mut self.links, m);
            taken += 1;
            if taken == INBOX_ROUNDS {
                break;
            }
        }
        self.flush_all();
        taken == INBOX_ROUNDS
    }

    /// Run due timers, at most once per [`TIMER_SLACK`].
    fn run_timers(&mut self, now: Instant) {
        let due = self.server.poll_timeout().is_some_and(|d| d <= now);
        if !due || now < self.quiet_until {
            return;
        }
        self.server.handle_timeout(now);
        self.quiet_until = now + TIMER_SLACK;
        self.flush_all();
    }

    fn flush_all(&mut self) {
        match &self.udp {
            Some((sock, _)) => flush(
                &mut self.server,
                sock,
                &mut self.links,
                &mut self.out,
                &mut self.outbox,
            ),
            None => {
                // No UDP listener: only stream flows can be written.
                let mut out = Vec::new();
                flush_to(
                    &mut self.server,
                    &mut self.links,
                    &mut out,
                    &mut self.outbox,
                );
            }
        }
    }
}

/// Send what the core wants sent (UDP datagrams in one `sendmmsg` per
/// [`batch::BATCH`]) and collect its binding events.
fn flush(
    server: &mut Server,
    sock: &UdpSocket,
    links: &mut Links,
    out: &mut Vec<(Vec<u8>, SocketAddr)>,
    outbox: &mut Outbox,
) {
    flush_to(server, links, out, outbox);
    if out.is_empty() {
        return;
    }
    let msgs: Vec<(&[u8], SocketAddr)> = out.iter().map(|(b, to)| (&b[..], *to)).collect();
    let sent = batch::send_many(sock, &msgs);
    if sent < msgs.len() {
        tracing::debug!(
            dropped = msgs.len() - sent,
            "udp send refused (full buffer or unreachable)"
        );
    }
    out.clear();
}

/// Stream messages go to their connection's queue; UDP ones into `out`.
fn flush_to(
    server: &mut Server,
    links: &mut Links,
    out: &mut Vec<(Vec<u8>, SocketAddr)>,
    outbox: &mut Outbox,
) {
    while let Some(t) = server.poll_transmit() {
        match t.flow.conn {
            Some(conn) => match links.conns.get(&conn) {
                // A full queue means a peer that does not read: drop, as UDP would.
                Some(tx) => {
                    let _ = tx.try_send(t.bytes);
                }
                None => tracing::debug!(conn = conn.0, "connection gone; message dropped"),
            },
            None if t.flow.transport != Transport::Udp => {
                links.dialer.send(t.flow, t.bytes, &links.conns);
            }
            None => out.push((t.bytes, t.flow.remote)),
        }
    }
    while let Some(event) = server.poll_event() {
        outbox.events.push(event);
    }
}

fn on_message(server: &mut Server, links: &mut Links, m: ToCore) {
    match m {
        ToCore::Opened { conn, tx, dialed } => {
            if let Some(remote) = dialed {
                links.dialer.opened(remote, conn, &tx);
            }
            links.conns.insert(conn, tx);
        }
        ToCore::ConnectFailed { flow } => {
            links.dialer.failed(flow.remote);
            server.handle_connect_failed(Instant::now(), flow);
        }
        ToCore::Frame { flow, bytes } => {
            let input = Input {
                transport: flow.transport,
                local: flow.local,
                remote: flow.remote,
                conn_id: flow.conn,
                bytes: &bytes,
            };
            server.handle_input(Instant::now(), input);
        }
        ToCore::Closed { conn } => {
            links.conns.remove(&conn);
            links.dialer.closed(conn);
            server.handle_connection_closed(conn);
        }
    }
}

/// Binding events on their way to the persistence task, sent in batches.
struct Outbox {
    events: Vec<Event>,
    tx: mpsc::UnboundedSender<Vec<Event>>,
    sent: Instant,
}

impl Outbox {
    /// When the waiting batch must go out.
    fn deadline(&self) -> Option<Instant> {
        (!self.events.is_empty()).then(|| self.sent + OUTBOX_EVERY)
    }

    /// Hand the batch over when it is big or old enough (or `now`).
    fn maybe_send(&mut self, now: bool) {
        let due = self.events.len() >= OUTBOX_MAX || self.sent.elapsed() >= OUTBOX_EVERY;
        if self.events.is_empty() || !(now || due) {
            return;
        }
        let _ = self.tx.send(std::mem::take(&mut self.events));
        self.sent = Instant::now();
    }
}
