//! UDP listeners: binding (with `SO_REUSEPORT` so two sockets share the
//! primary port) and handing them to the lanes that serve them.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use natter_turn::binding::Source;
use socket2::{Domain, Protocol, Socket, Type};

use super::lane::{LaneSetup, Listener};
use crate::{Listening, ServeError};

/// Sockets sharing the primary port, each with its own lane: one per core of
/// the target machine.
const PRIMARY_SOCKETS: usize = 2;
/// Kernel buffer size asked for each listener socket.
const SOCKET_BUFFER: usize = 4 << 20;

/// Listener sockets by RFC 5780 role, what to announce, and the lanes to start.
pub(super) struct Bound {
    pub(super) sockets: HashMap<Source, Vec<Arc<UdpSocket>>>,
    pub(super) listening: Vec<Listening>,
    pub(super) lanes: Vec<LaneSetup>,
}

impl Bound {
    /// No UDP listener (`--turn off`): one lane for the relay sockets of TLS clients.
    pub(super) fn relays_only() -> Result<Bound, ServeError> {
        let lane = LaneSetup::new(0, Vec::new()).map_err(|e| ServeError::Io {
            context: "TURN relay poller".into(),
            error: e,
        })?;
        Ok(Bound {
            sockets: HashMap::new(),
            listening: Vec::new(),
            lanes: vec![lane],
        })
    }
}

/// Bind the primary sockets (each for its own lane) and, with `alt`, the
/// three RFC 5780 ones (served by lane 0).
pub(super) fn bind_all(primary: SocketAddr, alt: Option<SocketAddr>) -> Result<Bound, ServeError> {
    let mut sockets = HashMap::new();
    let first = bind("--turn", primary, true)?;
    let bound = first
        .local_addr()
        .map_err(|e| ServeError::bind("--turn", "udp", primary, e))?;
    let mut prim = vec![Arc::new(first)];
    for _ in 1..PRIMARY_SOCKETS {
        prim.push(Arc::new(bind("--turn", bound, true)?));
    }
    let mut per_lane: Vec<Vec<Listener>> = prim
        .iter()
        .map(|sock| {
            vec![Listener {
                sock: sock.clone(),
                source: Source::Primary,
                local: bound,
            }]
        })
        .collect();
    sockets.insert(Source::Primary, prim);
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
            let sock = Arc::new(bind("--stun-alt", addr, false)?);
            listening.push(Listening {
                service: "STUN (RFC 5780)",
                transport: "udp",
                addr,
            });
            per_lane[0].push(Listener {
                sock: sock.clone(),
                source,
                local: addr,
            });
            sockets.insert(source, vec![sock]);
        }
    }
    let lanes = per_lane
        .into_iter()
        .enumerate()
        .map(|(i, ls)| LaneSetup::new(i, ls))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::bind("--turn", "udp", bound, e))?;
    Ok(Bound {
        sockets,
        listening,
        lanes,
    })
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
