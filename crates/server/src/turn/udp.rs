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

/// Bind the primary sockets and, with `alt`, the three RFC 5780 ones.
pub(super) fn bind_all(
    primary: SocketAddr,
    alt: Option<SocketAddr>,
) -> Result<(HashMap<Source, Vec<Arc<UdpSocket>>>, Vec<Listening>), ServeError> {
    let mut map = HashMap::new();
    let first = bind("--turn", primary, true)?;
    let bound = first
        .local_addr()
        .map_err(|e| ServeError::bind("--turn", "udp", primary, e))?;
    let mut prim = vec![Arc::new(first)];
    for _ in 1..PRIMARY_SOCKETS {
        prim.push(Arc::new(bind("--turn", bound, true)?));
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
            listening.push(Listening {
                service: "STUN (RFC 5780)",
                transport: "udp",
                addr,
            });
            map.insert(source, vec![Arc::new(s)]);
        }
    }
    Ok((map, listening))
}

fn bind(flag: &'static str, addr: SocketAddr, reuse_port: bool) -> Result<UdpSocket, ServeError> {
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
    UdpSocket::from_std(s.into()).map_err(err)
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
