//! The shared driver state and the per-message path from a client to the core and back.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use natter_turn::binding::Source;
use natter_turn::server::{
    Counters, Event, FiveTuple, Server, ServerConfig, Transmit, Transport, UserKeys,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::batch::RecvBatch;
use super::relays::RelayPool;
use super::{stream, udp};
use crate::{Listening, ServeError, Shared};

/// Frames queued to one stream client before new ones are dropped.
pub(super) const STREAM_QUEUE: usize = 256;

/// Everything the driver tasks share.
pub(super) struct Driver {
    core: Mutex<Server<RelayPool>>,
    /// UDP listener sockets by RFC 5780 role; `Primary` always set.
    pub(super) udp: HashMap<Source, Arc<UdpSocket>>,
    /// The same sockets by local address (what `FiveTuple::server` holds).
    udp_by_addr: Vec<(SocketAddr, Arc<UdpSocket>)>,
    /// Stream clients: where to queue frames for them.
    pub(super) streams: Mutex<HashMap<FiveTuple, mpsc::Sender<Vec<u8>>>>,
    store: natter_store::Store,
}

/// A handle on a running driver (tests, benchmarks).
#[derive(Clone)]
pub struct TurnHandle(Option<Arc<Driver>>);

impl TurnHandle {
    pub(super) fn disabled() -> Self {
        TurnHandle(None)
    }
    /// The core's counters (zero when TURN is off).
    pub fn counters(&self) -> Counters {
        self.0
            .as_ref()
            .map(|d| d.core().counters())
            .unwrap_or_default()
    }
    /// Live allocations.
    pub fn allocations(&self) -> usize {
        self.0
            .as_ref()
            .map(|d| d.core().allocation_count())
            .unwrap_or(0)
    }
}

pub(super) async fn start(
    shared: &Shared,
    cfg: ServerConfig,
    relay_ip: IpAddr,
) -> Result<(Vec<Listening>, TurnHandle), ServeError> {
    let conf = &shared.config;
    let mut listening = Vec::new();
    let mut sockets = HashMap::new();
    let mut lanes = Vec::new();
    if let Some(addr) = conf.turn {
        let (socks, l, ls) = udp::bind_all(addr, conf.stun_alt, &shared.shutdown)?;
        listening.extend(l);
        sockets = socks;
        lanes = ls;
    }
    // TCP shares the UDP port (which may have been chosen by the OS for port 0).
    let tcp = match conf.turn {
        Some(addr) => Some(stream::bind(
            "--turn",
            listening.first().map_or(addr, |l: &Listening| l.addr),
        )?),
        None => None,
    };
    let tls = match conf.turns {
        Some(addr) => Some(stream::bind("--turns", addr)?),
        None => None,
    };
    let cfg = match listening.first() {
        Some(l) => cfg.set_primary(l.addr),
        None => cfg,
    };
    let now = Instant::now();
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let pool = RelayPool::new(relay_ip, conf.relay_ports);
    let udp_by_addr = sockets
        .values()
        .filter_map(|v| v.first())
        .filter_map(|s| Some((s.local_addr().ok()?, s.clone())))
        .collect();
    let driver = Arc::new(Driver {
        core: Mutex::new(Server::new(cfg, pool, now, unix)),
        udp: sockets
            .iter()
            .filter_map(|(s, v)| Some((*s, v.first()?.clone())))
            .collect(),
        udp_by_addr,
        streams: Mutex::new(HashMap::new()),
        store: shared.store.clone(),
    });
    for lane in lanes {
        lane.start(driver.clone());
    }
    for (source, socks) in sockets.into_iter().filter(|(s, _)| *s != Source::Primary) {
        for sock in socks {
            tokio::spawn(udp::serve(
                driver.clone(),
                sock,
                source,
                shared.shutdown.clone(),
            ));
        }
    }
    if let Some(l) = tcp {
        listening.push(Listening {
            service: "STUN/TURN",
            transport: "tcp",
            addr: local(&l, "--turn")?,
        });
        tokio::spawn(stream::accept_loop(
            driver.clone(),
            l,
            None,
            shared.shutdown.clone(),
        ));
    }
    if let Some(l) = tls {
        listening.push(Listening {
            service: "STUN/TURN",
            transport: "tls",
            addr: local(&l, "--turns")?,
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(shared.tls.clone());
        tokio::spawn(stream::accept_loop(
            driver.clone(),
            l,
            Some(acceptor),
            shared.shutdown.clone(),
        ));
    }
    tokio::spawn(timer_loop(driver.clone(), shared.shutdown.clone()));
    tracing::info!(%relay_ip, ports = ?conf.relay_ports, "TURN relay ready");
    Ok((listening, TurnHandle(Some(driver))))
}

fn local(l: &tokio::net::TcpListener, flag: &'static str) -> Result<SocketAddr, ServeError> {
    l.local_addr().map_err(|e| ServeError::Io {
        context: format!("{flag} listener address"),
        error: e,
    })
}

impl Driver {
    /// Lock the core. A poisoned lock means a bug panicked mid-update; the
    /// state is still memory-safe, so keep serving rather than stop everyone.
    pub(super) fn core(&self) -> MutexGuard<'_, Server<RelayPool>> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One datagram or stream frame from a client.
    pub(super) async fn handle_client(
        self: &Arc<Self>,
        tuple: FiveTuple,
        source: Source,
        bytes: &[u8],
    ) {
        let user = self.core().user_to_look_up(Instant::now(), bytes);
        if let Some(user) = user {
            let keys = self.lookup(&user).await;
            self.core().set_user_keys(Instant::now(), &user, keys);
        }
        let mut out = Vec::new();
        let forward = {
            let mut core = self.core();
            let fwd = core.handle_client(Instant::now(), tuple, source, bytes);
            let fwd = fwd.and_then(|f| core.relays().socket(f.relay).map(|s| (s, f.peer, f.data)));
            while let Some(t) = core.poll_transmit() {
                out.push(t);
            }
            self.spawn_new_relays(&mut core);
            fwd
        };
        if let Some((sock, peer, data)) = forward {
            // A full socket buffer drops the packet, as a router would.
            send_now(&sock, data, peer);
        }
        for t in out {
            self.send_to_client(t).await;
        }
    }

    /// A batch of datagrams from one UDP listener: one core lock for all of them.
    pub(super) async fn handle_batch(
        self: &Arc<Self>,
        local: SocketAddr,
        source: Source,
        batch: &RecvBatch,
    ) {
        let tuple = |from| FiveTuple {
            transport: Transport::Udp,
            client: from,
            server: local,
        };
        let missing: Vec<String> = {
            let core = self.core();
            let now = Instant::now();
            (0..batch.len())
                .filter_map(|i| batch.get(i))
                .filter_map(|(b, _)| core.user_to_look_up(now, b))
                .collect()
        };
        for user in missing {
            let keys = self.lookup(&user).await;
            self.core().set_user_keys(Instant::now(), &user, keys);
        }
        let mut forwards = Vec::with_capacity(batch.len());
        let mut out = Vec::new();
        {
            let mut core = self.core();
            let now = Instant::now();
            for (bytes, from) in (0..batch.len()).filter_map(|i| batch.get(i)) {
                if let Some(f) = core.handle_client(now, tuple(from), source, bytes) {
                    if let Some(sock) = core.relays().socket(f.relay) {
                        forwards.push((sock, f.peer, f.data));
                    }
                }
            }
            while let Some(t) = core.poll_transmit() {
                out.push(t);
            }
            self.spawn_new_relays(&mut core);
        }
        for (sock, peer, data) in forwards {
            // A full socket buffer drops the packet, as a router would.
            send_now(&sock, data, peer);
        }
        for t in out {
            self.send_to_client(t).await;
        }
    }

    /// Keys for an account user, read on a blocking thread.
    async fn lookup(&self, user: &str) -> Option<UserKeys> {
        let store = self.store.clone();
        let name = user.to_owned();
        let found = tokio::task::spawn_blocking(move || store.digest_keys(&name)).await;
        match found {
            Ok(Ok(Some(k))) => Some(UserKeys {
                md5: k.md5,
                sha256: k.sha256,
            }),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::warn!("account lookup for TURN failed: {e}");
                None
            }
            Err(_) => None,
        }
    }

    fn spawn_new_relays(self: &Arc<Self>, core: &mut Server<RelayPool>) {
        for (id, sock) in core.relays_mut().take_new() {
            let handle = tokio::spawn(super::relays::serve(self.clone(), id, sock)).abort_handle();
            core.relays_mut().set_task(id, handle);
        }
    }

    pub(super) async fn send_to_client(&self, t: Transmit) {
        match t.to.transport {
            Transport::Udp => {
                let sock = self.udp.get(&t.from);
                if let Some(sock) = sock {
                    let _ = sock.send_to(&t.payload, t.to.client).await;
                }
            }
            Transport::Tcp | Transport::Tls => self.queue_stream(&t.to, t.payload),
        }
    }

    /// The UDP listener bound to `addr`.
    pub(super) fn udp_for(&self, addr: SocketAddr) -> Option<&Arc<UdpSocket>> {
        self.udp_by_addr
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, s)| s)
    }

    /// Queue a frame for a stream client; dropped when its queue is full.
    pub(super) fn queue_stream(&self, to: &FiveTuple, frame: Vec<u8>) {
        let tx = self
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(to)
            .cloned();
        if let Some(tx) = tx {
            let _ = tx.try_send(frame);
        }
    }
}

async fn timer_loop(driver: Arc<Driver>, mut shutdown: crate::Shutdown) {
    loop {
        let next = driver.core().poll_timeout();
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(next));
        tokio::select! {
            _ = sleep => {}
            _ = shutdown.wait() => return,
        }
        let mut core = driver.core();
        core.handle_timeout(Instant::now());
        while let Some(e) = core.poll_event() {
            log_event(&e);
        }
    }
}

fn log_event(e: &Event) {
    match e {
        Event::AllocationCreated {
            id,
            user,
            client,
            relayed,
        } => {
            tracing::debug!(allocation = %id, %user, client = %client.client, %relayed, "allocation created")
        }
        Event::AllocationClosed { id, user, reason } => {
            tracing::debug!(allocation = %id, %user, ?reason, "allocation closed")
        }
        Event::AuthFailed { client, user } => {
            tracing::debug!(%client, ?user, "TURN authentication failed")
        }
        Event::PeerRefused { id, peer } => tracing::debug!(allocation = %id, %peer, "peer refused"),
        _ => {}
    }
}

/// Send a datagram now, without waiting: straight to the kernel, bypassing
/// tokio's cached write readiness (which can still be unset on a fresh socket
/// and would make `try_send_to` drop the datagram without trying). A full
/// socket buffer drops the datagram, as a router would.
pub(super) fn send_now(sock: &UdpSocket, data: &[u8], to: SocketAddr) {
    let _ = socket2::SockRef::from(sock).send_to(data, &to.into());
}
