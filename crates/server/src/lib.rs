//! The `natter serve` process: thin async drivers (tokio) around the sans-IO
//! protocol cores in `natter-turn` and `natter-sip`.
//!
//! [`run`] binds every configured listener first (so a port already in use is
//! reported before anything is announced), prints one line per listener, then
//! serves until the [`Shutdown`] fires.

pub mod config;
pub mod data;
pub mod http;
pub mod sip;
pub mod tls;
pub mod turn;

mod batch;
mod listen;
mod pii;
mod serve;
mod shutdown;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use config::Config;
pub use serve::{run, Started};
pub use shutdown::{Shutdown, ShutdownTrigger};

/// One socket the server listens on, printed at start.
#[derive(Debug, Clone)]
pub struct Listening {
    /// What is served there, e.g. `"STUN/TURN"`, `"SIP"`, `"HTTPS"`.
    pub service: &'static str,
    /// `"udp"`, `"tcp"`, `"tls"`, `"https"`…
    pub transport: &'static str,
    /// The bound address (with the real port when 0 was asked for).
    pub addr: SocketAddr,
}

/// Everything the drivers share. Built once by [`run`].
#[derive(Clone)]
pub struct Shared {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Accounts and bindings.
    pub store: natter_store::Store,
    /// TLS server configuration (self-signed on first start unless replaced).
    pub tls: Arc<rustls::ServerConfig>,
    /// The TURN REST secret (from `--turn-secret` or `DATA/turn-secret`).
    pub turn_secret: Arc<str>,
    /// Fires once when the server is asked to stop.
    pub shutdown: Shutdown,
    /// The SIP core's inbox, filled by [`sip::start`] (used by `/sip`).
    pub sip: sip::CoreHandle,
}

/// Why the server could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({transport}) for {flag}: {error}; {hint}")]
    Bind {
        flag: &'static str,
        transport: &'static str,
        addr: SocketAddr,
        hint: &'static str,
        error: std::io::Error,
    },
    /// The data directory could not be created or read.
    #[error("data directory {path}: {reason}; choose another with --data DIR")]
    DataDir { path: PathBuf, reason: String },
    /// TLS material was unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The account store failed.
    #[error(transparent)]
    Store(#[from] natter_store::StoreError),
    /// Any other I/O failure while serving.
    #[error("{context}: {error}")]
    Io {
        context: String,
        error: std::io::Error,
    },
}

impl ServeError {
    /// A bind error with a hint derived from the OS error.
    pub fn bind(
        flag: &'static str,
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    ) -> Self {
        let hint = match source.kind() {
            std::io::ErrorKind::AddrInUse => "another program already uses this port: stop it, or pick another address with the flag (ADDR or `off`)",
            std::io::ErrorKind::PermissionDenied => "ports below 1024 need root or CAP_NET_BIND_SERVICE: run as root or pick a port above 1023",
            std::io::ErrorKind::AddrNotAvailable => "this machine has no such address: use one of its own IPs or 0.0.0.0",
            _ => "check the address given to the flag",
        };
        ServeError::Bind {
            flag,
            transport,
            addr,
            hint,
            error: source,
        }
    }
}
