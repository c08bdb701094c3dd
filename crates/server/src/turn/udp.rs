//! UDP listeners: binding (with `SO_REUSEPORT` so two sockets share the
//! primary port) and the receive loops.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use natter_turn::binding::Source;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::batch::RecvBatch;
use super::driver::Driver;
use crate::{Listening, ServeError, Shutdown};

/// Sockets sharing the primary port: one per core of the target machine.
const PRIMARY_SOCKETS: usize = 2;
/// Kernel buffer size asked for each listener socket.
const SOCKET_BUFFER: usize = 4 << 20;

/// A thread with its own single-threaded runtime serving one primary socket
/// and the relay sockets its allocations create: no cross-thread wake-ups on
/// the relay path. Send it the driver to start.
pub(super) struct Lane(std::sync::mpsc::Sender<Arc<Driver>>);

impl Lane {
    pub(super) fn start(self, driver: Arc<Driver>) {
        let _ = self.0.send(driver);
    }
}

/// Listener sockets by RFC 5780 role, what to announce, and the lanes to start.
pub(super) type Bound = (
    HashMap<Source, Vec<Arc<UdpSocket>>>,
    Vec<Listening>,
    Vec<Lane>,
);

/// Bind the primary sockets (each on its own [`Lane`]) and, with `alt`, the
/// three RFC 5780 ones (served on the main runtime).
pub(super) fn bind_all(
    primary: SocketAddr,
    alt: Option<SocketAddr>,
    shutdown: &Shutdown,
) -> Result<Bound, ServeError> {
    let mut map = HashMap::new();
    let first = bind("--turn", primary, true)?;
    let bound = first
        .local_addr()
        .map_err(|e| ServeError::bind("--turn", "udp", primary, e))?;
    let mut stds = vec![first];
    for _ in 1..PRIMARY_SOCKETS {
        stds.push(bind("--turn", bound, true)?);
    }
    let mut prim = Vec::new();
    let mut lanes = Vec::new();
    for std_sock in stds {
        let (sock, lane) = spawn_lane(std_sock, shutdown.clone())
            .map_err(|e| ServeError::bind("--turn", "udp", bound, e))?;
        prim.push(sock);
        lanes.push(lane);
    }
    map.insert(Source::Primary, prim);
    let mut listening = vec![Listening {
        service: "STUN/TURN",
        transport: "udp",
        addr: bound,
    }];
    if let Some(alt) = alt {
        for (source, addr) in [
            (Source::AltPort, SocketAddr::new(bound.ip(), alt.port())),
            (Source::AltIp, SocketAddr::new(alt.ip(), bound.port())),
            (Source::AltBoth, alt),
        ] {
            let s = bind("--stun-alt", addr, false)?;
            let s = UdpSocket::from_std(s)
                .map_err(|e| ServeError::bind("--stun-alt", "udp", addr, e))?;
            listening.push(Listening {
                service: "STUN (RFC 5780)",
                transport: "udp",
                addr,
            });
            map.insert(source, vec![Arc::new(s)]);
        }
    }
    Ok((map, listening, lanes))
}

fn spawn_lane(
    std_sock: std::net::UdpSocket,
    shutdown: Shutdown,
) -> std::io::Result<(Arc<UdpSocket>, Lane)> {
    let (sock_tx, sock_rx) = std::sync::mpsc::channel();
    let (drv_tx, drv_rx) = std::sync::mpsc::channel::<Arc<Driver>>();
    std::thread::Builder::new()
        .name("natter-turn-udp".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = sock_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let sock = match UdpSocket::from_std(std_sock) {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        let _ = sock_tx.send(Err(e));
                        return;
                    }
                };
                let _ = sock_tx.send(Ok(sock.clone()));
                // Blocks this lane's own thread only, until `start` hands the driver over.
                let Ok(driver) = drv_rx.recv() else { return };
                serve(driver, sock, Source::Primary, shutdown).await;
            });
        })?;
    let sock = sock_rx
        .recv()
        .map_err(|_| std::io::Error::other("the UDP lane thread stopped"))??;
    Ok((sock, Lane(drv_tx)))
}

fn bind(
    flag: &'static str,
    addr: SocketAddr,
    reuse_port: bool,
) -> Result<std::net::UdpSocket, ServeError> {
    let err = |e| ServeError::bind(flag, "udp", addr, e);
    let s =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    if reuse_port {
        s.set_reuse_port(true).map_err(err)?;
    }
    // Larger buffers absorb bursts; the kernel caps them at net.core.*mem_max.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true).map_err(err)?;
    s.bind(&addr.into()).map_err(err)?;
    Ok(s.into())
}

/// Receive datagrams on `sock` (in batches) until shutdown.
pub(super) async fn serve(
    driver: Arc<Driver>,
    sock: Arc<UdpSocket>,
    source: Source,
    mut shutdown: Shutdown,
) {
    let Ok(local) = sock.local_addr() else { return };
    let task = tokio::spawn(async move {
        let mut batch = RecvBatch::new();
        loop {
            let got = sock
                .async_io(Interest::READABLE, || batch.recv(&*sock))
                .await;
            if got.is_err() {
                tokio::task::yield_now().await;
                continue;
            }
            driver.handle_batch(local, source, &batch).await;
        }
    });
    shutdown.wait().await;
    task.abort();
}
