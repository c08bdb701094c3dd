//! The core task: owns the sans-IO [`Server`], reads UDP directly, takes
//! stream and WebSocket traffic from a channel, fires timers, sends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use natter_sip::flow::{ConnId, Flow, Input, Transport};
use natter_sip::{Event, Server};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::dial::Dialer;
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

/// Binding events are handed to the writer at most this often…
const OUTBOX_EVERY: Duration = Duration::from_millis(250);
/// …or when this many are waiting.
const OUTBOX_MAX: usize = 1024;

/// Timers are run at most this often. The core's timers are RFC 3261
/// ones (500 ms and up) and most entries are stale when they come due (the
/// transaction already ended), so a wake-up for each would cost more than
/// the work; 10 ms of lateness changes nothing for them.
const TIMER_SLACK: Duration = Duration::from_millis(10);

/// Datagrams read per wake-up before timers and channels get a turn.
const UDP_BATCH: usize = 64;

/// Start the core on its own thread and single-threaded runtime.
pub(crate) fn spawn(
    server: Server,
    udp: Option<std::net::UdpSocket>,
    (to_core, rx): (mpsc::Sender<ToCore>, mpsc::Receiver<ToCore>),
    persist: mpsc::UnboundedSender<Vec<Event>>,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let io = |e| ServeError::Io {
        context: "starting the SIP core".into(),
        error: e,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    std::thread::Builder::new()
        .name("sip-core".into())
        .spawn(move || {
            rt.block_on(async move {
                let udp = match udp.map(UdpSocket::from_std).transpose() {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::error!(error = %e, "SIP UDP socket unusable; SIP stopped");
                        return;
                    }
                };
                let redaction = server.redaction();
                let links = Links {
                    conns: HashMap::new(),
                    dialer: Dialer::new(to_core, shutdown.clone(), redaction),
                    redaction,
                };
                run(server, udp, links, rx, persist, shutdown).await;
            })
        })
        .map_err(io)?;
    Ok(())
}

/// Stream connections: open ones by id, and the ones we dial.
struct Links {
    conns: HashMap<ConnId, mpsc::Sender<Vec<u8>>>,
    dialer: Dialer,
    redaction: natter_turn::pii::Redaction,
}

async fn run(
    mut server: Server,
    udp: Option<UdpSocket>,
    mut links: Links,
    mut rx: mpsc::Receiver<ToCore>,
    persist: mpsc::UnboundedSender<Vec<Event>>,
    mut shutdown: Shutdown,
) {
    let mut outbox = Outbox {
        events: Vec::new(),
        tx: persist,
        sent: Instant::now(),
    };
    let mut buf = vec![0u8; 65_536];
    let udp_local = udp.as_ref().and_then(|u| u.local_addr().ok());
    let far = || Instant::now() + Duration::from_secs(3600);
    let mut quiet_until = Instant::now();
    let mut armed = next_due(&server, &outbox).unwrap_or_else(far);
    let sleep = tokio::time::sleep_until(armed.into());
    tokio::pin!(sleep);
    loop {
        // Re-armed only when the deadline moves earlier: every re-arm costs
        // a timer-wheel update (and a driver wake-up when earlier than the
        // last park); waking early is harmless.
        if let Some(due) = next_due(&server, &outbox) {
            let wake = due.max(quiet_until);
            if wake < armed {
                armed = wake;
                sleep.as_mut().reset(wake.into());
            }
        }
        tokio::select! {
            _ = shutdown.wait() => break,
            r = recv(udp.as_ref(), &mut buf) => {
                if let (Ok((n, remote)), Some(local)) = (r, udp_local) {
                    let input = Input { transport: Transport::Udp, local, remote, conn_id: None, bytes: &buf[..n] };
                    server.handle_input(Instant::now(), input);
                    drain_udp(&mut server, udp.as_ref(), local, &mut buf);
                }
            }
            m = rx.recv() => match m {
                Some(m) => on_message(&mut server, &mut links, m),
                None => break,
            },
            _ = &mut sleep => {
                let now = Instant::now();
                server.handle_timeout(now); // no-op when only the outbox was due
                quiet_until = now + TIMER_SLACK;
                armed = next_due(&server, &outbox).map_or_else(far, |d| d.max(quiet_until));
                sleep.as_mut().reset(armed.into());
            }
        }
        flush(&mut server, udp.as_ref(), &mut links, &mut outbox).await;
        outbox.maybe_send(false);
    }
    outbox.maybe_send(true);
}

/// The earliest of the core's timers and the outbox's deadline.
fn next_due(server: &Server, outbox: &Outbox) -> Option<Instant> {
    match (server.poll_timeout(), outbox.deadline()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
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

async fn recv(
    udp: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, std::net::SocketAddr)> {
    match udp {
        Some(u) => u.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Read whatever else is already queued on the socket, without waiting.
fn drain_udp(
    server: &mut Server,
    udp: Option<&UdpSocket>,
    local: std::net::SocketAddr,
    buf: &mut [u8],
) {
    let Some(udp) = udp else { return };
    for _ in 0..UDP_BATCH {
        match udp.try_recv_from(buf) {
            Ok((n, remote)) => {
                let input = Input {
                    transport: Transport::Udp,
                    local,
                    remote,
                    conn_id: None,
                    bytes: &buf[..n],
                };
                server.handle_input(Instant::now(), input);
            }
            Err(_) => return,
        }
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

async fn flush(
    server: &mut Server,
    udp: Option<&UdpSocket>,
    links: &mut Links,
    persist: &mut Outbox,
) {
    while let Some(t) = server.poll_transmit() {
        match (t.flow.conn, udp) {
            (Some(conn), _) => match links.conns.get(&conn) {
                // A full queue means a peer that does not read: drop, as UDP would.
                Some(tx) => {
                    let _ = tx.try_send(t.bytes);
                }
                None => tracing::debug!(conn = conn.0, "connection gone; message dropped"),
            },
            (None, _) if t.flow.transport != Transport::Udp => {
                links.dialer.send(t.flow, t.bytes, &links.conns);
            }
            (None, Some(udp)) => {
                if let Err(e) = send_udp(udp, &t.bytes, t.flow.remote).await {
                    tracing::debug!(remote = %links.redaction.pii(t.flow.remote), error = %e, "udp send failed");
                }
            }
            (None, None) => {}
        }
    }
    while let Some(event) = server.poll_event() {
        persist.events.push(event);
    }
}

async fn send_udp(
    udp: &UdpSocket,
    bytes: &[u8],
    to: std::net::SocketAddr,
) -> std::io::Result<usize> {
    match udp.try_send_to(bytes, to) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => udp.send_to(bytes, to).await,
        other => other,
    }
}
