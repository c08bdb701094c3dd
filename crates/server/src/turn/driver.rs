//! The shared driver state and the per-message path from a client to the core and back.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use natter_turn::binding::Source;
use natter_turn::pii::Redaction;
use natter_turn::server::{
    Counters, FiveTuple, Server, ServerConfig, Transmit, Transport, UserKeys,
};
use tokio::sync::mpsc;

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
    /// How usernames and client addresses appear in the driver's own logs.
    pub(super) pii: Redaction,
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
    let (
        udp::Bound {
            sockets,
            mut listening,
            lanes,
        },
        tcp,
    ) = match conf.turn {
        Some(addr) => {
            // TCP shares the UDP port (which the OS may pick, for port 0).
            let (udp, tcp) = crate::listen::udp_and_tcp("--turn", addr, || {
                let udp = udp::bind_all(addr, conf.stun_alt)?;
                let bound = udp.listening.first().map_or(addr, |l: &Listening| l.addr);
                Ok((udp, bound))
            })?;
            (udp, Some(tcp))
        }
        // TLS only: one lane still serves the relay sockets.
        None => (udp::Bound::relays_only()?, None),
    };
    let tls = match conf.turns {
        Some(addr) => Some(crate::listen::tcp("--turns", addr)?),
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
    let registries = lanes
        .iter()
        .map(|l| l.registry())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Io {
            context: "TURN relay poller".into(),
            error: e,
        })?;
    let pool = RelayPool::new(relay_ip, conf.relay_ports, registries);
    let udp_by_addr = sockets
        .values()
        .filter_map(|v| v.first())
        .filter_map(|s| Some((s.local_addr().ok()?, s.clone())))
        .collect();
    let server = Server::new(cfg, pool, now, unix);
    let driver = Arc::new(Driver {
        pii: server.redaction(),
        core: Mutex::new(server),
        udp: sockets
            .iter()
            .filter_map(|(s, v)| Some((*s, v.first()?.clone())))
            .collect(),
        udp_by_addr,
        streams: Mutex::new(HashMap::new()),
        store: shared.store.clone(),
    });
    let runtime = tokio::runtime::Handle::current();
    for lane in lanes {
        lane.spawn(driver.clone(), runtime.clone(), shared.shutdown.clone())
            .map_err(|e| ServeError::Io {
                context: "starting a TURN lane thread".into(),
                error: e,
            })?;
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
            let fwd = fwd.and_then(|f| {
                let sock = core.relays().socket(f.relay)?.clone();
                Some((sock, f.peer, f.data))
            });
            while let Some(t) = core.poll_transmit() {
                out.push(t);
            }
            fwd
        };
        if let Some((sock, peer, data)) = forward {
            // A full socket buffer drops the packet, as a router would.
            let _ = sock.send_to(data, peer);
        }
        self.send_all(out);
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

    /// Send one message to a client: UDP now (a full socket buffer drops it,
    /// as a router would), a stream through its queue.
    pub(super) fn send_to_client(&self, t: Transmit) {
        match t.to.transport {
            Transport::Udp => {
                if let Some(sock) = self.udp.get(&t.from) {
                    let _ = sock.send_to(&t.payload, t.to.client);
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
        // The core logs each event in its allocation's span; none are
        // exported yet (metrics come later), so drop them here.
        while core.poll_event().is_some() {}
    }
}
