//! SIP listeners: the tokio driver around [`natter_sip::Server`].
//!
//! * One core thread owns the sans-IO server and its own poller ([`core`]:
//!   epoll through mio, no async runtime on the hot path). It reads the UDP
//!   socket itself with `recvmmsg` and answers with `sendmmsg`, and gets
//!   stream frames, connection open/close notices and WebSocket messages from
//!   the main runtime over one bounded channel that rings its poller.
//! * TCP on `--sip` and TLS on `--sips`: one task per connection cuts the
//!   stream into messages ([`natter_sip::frame::Framer`]), answers CRLF
//!   keepalives, and writes what the core sends through a bounded queue.
//! * WebSocket (RFC 7118, subprotocol `sip`) at `/sip` on the HTTPS listener.
//! * Bindings are written to the store behind the registrar, batched once a
//!   second ([`persist`]), and loaded back at start.

mod accounts;
mod core;
mod dial;
mod persist;
mod stream;
mod ws;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use natter_sip::{Server, ServerConfig};
use tokio::net::TcpListener;

use crate::{Listening, ServeError, Shared};

pub(crate) use self::core::{CoreSender, ToCore};

/// How other drivers reach the SIP core (the `/sip` WebSocket route): a
/// slot in [`Shared`] that [`start`] fills. Clones share the slot; empty
/// means SIP is not running (the route then answers 503).
#[derive(Clone, Default)]
pub struct CoreHandle(Arc<OnceLock<CoreSender>>);

impl CoreHandle {
    /// The core's inbox, once started.
    pub(crate) fn sender(&self) -> Option<CoreSender> {
        self.0.get().cloned()
    }

    fn set(&self, to_core: CoreSender) {
        if self.0.set(to_core).is_err() {
            tracing::warn!(
                "SIP started twice with one Shared; WebSocket SIP stays with the first core"
            );
        }
    }
}

impl std::fmt::Debug for CoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.0.get().is_some() {
            "running"
        } else {
            "not started"
        };
        write!(f, "CoreHandle({state})")
    }
}

/// Bind this service's listeners and spawn their tasks.
pub async fn start(shared: &Shared) -> Result<Vec<Listening>, ServeError> {
    let cfg = core_config(&shared.config);
    let accounts = accounts::StoreAccounts::new(shared.store.clone(), &shared.config.domain);
    let mut server = Server::new(cfg, Box::new(accounts), Instant::now());
    persist::restore(&shared.store, &mut server);

    let mut listening = Vec::new();
    let (udp, tcp) = match shared.config.sip {
        Some(addr) => {
            // TCP on the same port as UDP (which the OS may pick, for port 0).
            let (socket, listener) = crate::listen::udp_and_tcp("--sip", addr, || {
                let err = |e| ServeError::bind("--sip", "udp", addr, e);
                let socket = bind_udp(addr).map_err(err)?;
                let bound = socket.local_addr().map_err(err)?;
                Ok((socket, bound))
            })?;
            (Some(socket), Some(listener))
        }
        None => (None, None),
    };
    if let (Some(u), Some(t), Some(asked)) = (&udp, &tcp, shared.config.sip) {
        let bound = |transport, addr: std::io::Result<SocketAddr>| {
            addr.map_err(|e| ServeError::bind("--sip", transport, asked, e))
        };
        for (transport, addr) in [("udp", u.local_addr()), ("tcp", t.local_addr())] {
            listening.push(Listening {
                service: "SIP",
                transport,
                addr: bound(transport, addr)?,
            });
        }
    }
    let (core, to_core) = core::CoreSetup::new(4096)?;
    if let Some(listener) = tcp {
        tokio::spawn(stream::accept_loop(
            listener,
            None,
            to_core.clone(),
            shared.shutdown.clone(),
        ));
    }
    if let Some(addr) = shared.config.sips {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| ServeError::bind("--sips", "tls", addr, e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| ServeError::bind("--sips", "tls", addr, e))?;
        listening.push(Listening {
            service: "SIP",
            transport: "tls",
            addr: bound,
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(shared.tls.clone());
        tokio::spawn(stream::accept_loop(
            listener,
            Some(acceptor),
            to_core.clone(),
            shared.shutdown.clone(),
        ));
    }
    shared.sip.set(to_core.clone());
    let persist = persist::spawn(shared.store.clone(), shared.shutdown.clone());
    let runtime = tokio::runtime::Handle::current();
    core.spawn(server, udp, persist, shared.shutdown.clone(), runtime)?;
    Ok(listening)
}

/// HTTP routes this service adds to the HTTPS listener: WebSocket SIP at `/sip`.
pub fn http_routes(shared: &Shared) -> axum::Router {
    ws::routes(shared)
}

/// The core's settings from the server configuration.
fn core_config(config: &crate::Config) -> ServerConfig {
    let mut cfg = ServerConfig::new(&config.domain);
    cfg.redaction = crate::pii::for_config(config.log_pii);
    cfg.digest_offer = config.sip_digest;
    let mut aliases: Vec<String> = vec!["127.0.0.1".into(), "::1".into()];
    if config.domain == "localhost" {
        aliases.push("localhost".into());
    }
    for addr in [config.sip, config.sips].into_iter().flatten() {
        if !addr.ip().is_unspecified() {
            aliases.push(addr.ip().to_string());
        }
    }
    if let Some(ip) = config.public_ip {
        aliases.push(ip.to_string());
        cfg.advertise = Some(host_of(ip));
    }
    cfg.aliases = aliases;
    cfg
}

fn host_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// A UDP socket with large buffers (bursts of registrations), non-blocking,
/// handed to the core's runtime.
fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}
