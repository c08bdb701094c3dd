//! STUN/TURN listeners: the tokio driver around [`natter_turn::server::Server`].
//!
//! * UDP on `--turn`: two `SO_REUSEPORT` sockets (one per core on this 2-core
//!   target) so the kernel spreads clients over both, each served by its own
//!   lane thread (see `lane`: epoll, recvmmsg/sendmmsg, no tokio on the relay
//!   path); with `--stun-alt`, three more sockets for RFC 5780 (primary IP/alt
//!   port, alt IP/primary port, alt IP/port).
//! * TCP on `--turn` and TLS on `--turns`: STUN and padded ChannelData framed
//!   by the header length; garbage closes that connection only; per-connection
//!   buffers are bounded; idle connections time out.
//! * One UDP socket per allocation on `--relay-ip`, port from `--relay-ports`,
//!   served by the lane that received the Allocate (lane 0 for TCP/TLS clients).
//!
//! The core sits behind one mutex, held only for the in-memory work of one packet.
//! Account keys are read from the store off the core lock (see
//! [`natter_turn::server`]): the core tells which user it lacks, the driver
//! looks the keys up on a blocking thread, hands them in, and the core caches them.

mod driver;
mod http;
mod lane;
mod relays;
mod stream;
mod udp;

use std::net::{IpAddr, SocketAddr};

use natter_turn::server::{PeerPolicy, ServerConfig};

use crate::{Listening, ServeError, Shared};

pub use driver::TurnHandle;

/// Bind this service's listeners and spawn their tasks.
pub async fn start(shared: &Shared) -> Result<Vec<Listening>, ServeError> {
    start_with(shared, |c| c).await.map(|(l, _)| l)
}

/// Like [`start`], with a hook to adjust the core's settings (quotas, rates)
/// and a handle for tests and benchmarks.
pub async fn start_with(
    shared: &Shared,
    tune: impl FnOnce(ServerConfig) -> ServerConfig,
) -> Result<(Vec<Listening>, TurnHandle), ServeError> {
    let cfg = &shared.config;
    let Some(primary) = cfg.turn.or(cfg.turns) else {
        return Ok((Vec::new(), TurnHandle::disabled()));
    };
    let relay_ip = relay_ip(cfg.relay_ip, primary.ip());
    let core_cfg = tune(core_config(shared, primary)?);
    driver::start(shared, core_cfg, relay_ip).await
}

/// Raise the open-file limit to the hard limit (every allocation holds a
/// socket) and log the result, warning when `--turn-total-quota` cannot fit.
pub fn raise_fd_limit(total_quota: u32) {
    match crate::batch::raise_nofile_limit() {
        Ok((before, now)) => {
            tracing::info!("open file limit {now} (was {before}); each TURN allocation uses one");
            // Listeners, the database, TCP/TLS clients and SIP need some too.
            let room = now.saturating_sub(FD_RESERVE);
            if u64::from(total_quota) > room {
                tracing::warn!(
                    "--turn-total-quota {total_quota} exceeds the ~{room} allocations the open file limit ({now}) allows; \
                     raise the hard limit (`ulimit -Hn`, or LimitNOFILE= in a systemd unit) or lower the quota"
                );
            }
        }
        Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
    }
}

/// Descriptors kept for everything but relay sockets.
const FD_RESERVE: u64 = 1024;

/// HTTP routes this service adds to the HTTPS listener.
pub fn http_routes(shared: &Shared) -> axum::Router {
    http::routes(shared)
}

fn core_config(shared: &Shared, primary: SocketAddr) -> Result<ServerConfig, ServeError> {
    let cfg = &shared.config;
    let bad = |e: natter_turn::StunError| ServeError::Io {
        context: "TURN settings".into(),
        error: std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
    };
    let burst = cfg.turn_unauth_rate.saturating_mul(5);
    let mut c = ServerConfig::new(&cfg.domain, primary)
        .set_rest_secret(&shared.turn_secret)
        .map_err(bad)?
        .set_peer_policy(PeerPolicy::allowing(cfg.allow_peer.clone()))
        .set_quotas(cfg.turn_user_quota, cfg.turn_total_quota)
        .map_err(bad)?
        .set_bandwidth_cap(cfg.turn_bandwidth)
        .map_err(bad)?
        .set_unauth_rate(cfg.turn_unauth_rate, burst)
        .map_err(bad)?
        .set_redaction(crate::pii::for_config(cfg.log_pii));
    if let Some(ip) = cfg.public_ip {
        c = c.set_public_ip(ip);
    }
    if let Some(alt) = cfg.stun_alt {
        c = c.set_alternate(alt).map_err(bad)?;
    }
    Ok(c)
}

/// `--relay-ip`, else the `--turn` IP, else the address the default route uses
/// (a UDP `connect` sends nothing), else loopback.
fn relay_ip(configured: Option<IpAddr>, listen: IpAddr) -> IpAddr {
    if let Some(ip) = configured {
        return ip;
    }
    if !listen.is_unspecified() {
        return listen;
    }
    let probe = || -> std::io::Result<IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.connect("192.0.2.1:9")?;
        Ok(s.local_addr()?.ip())
    };
    match probe() {
        Ok(ip) if !ip.is_unspecified() => ip,
        _ => IpAddr::from([127, 0, 0, 1]),
    }
}
