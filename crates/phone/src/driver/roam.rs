//! Staying reachable when the network changes: the driver notices a new local
//! address towards the server (an interface went down, Wi-Fi → mobile) and a
//! lost signaling connection, opens new sockets and tells the phone, which
//! registers again and restarts ICE (see `engine::roam`).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::{local_ip_towards, open_sip, open_turn_stream, DriverError, Links, Opened, SipLink};
use crate::engine::Phone;

/// Give up one connection attempt after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits between reconnection attempts; the last one repeats.
const BACKOFF_MS: [u64; 8] = [0, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000];

/// Aborts a task when dropped (a reader on a dead connection never sees EOF).
pub(super) struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type Connecting = JoinHandle<Result<(SipLink, SocketAddr), DriverError>>;

/// Watches the network and reconnects the signaling flow.
pub(super) struct Watch {
    connecting: Option<Connecting>,
    attempt: usize,
}

impl Watch {
    pub(super) fn new() -> Self {
        Watch {
            connecting: None,
            attempt: 0,
        }
    }

    /// The signaling flow broke: connect again (after the backoff).
    pub(super) fn sip_lost(&mut self, links: &Links) {
        if self.connecting.is_none() {
            self.connect(links);
        }
    }

    /// The outcome of the pending connection attempt (pending forever without one).
    pub(super) async fn sip_reconnected(&mut self) -> Result<(SipLink, SocketAddr), DriverError> {
        let Some(task) = self.connecting.as_mut() else {
            return std::future::pending().await;
        };
        let r = task.await;
        self.connecting = None;
        r.unwrap_or_else(|e| Err(DriverError::Socket(format!("connect task: {e}"))))
    }

    pub(super) fn on_sip_connect(
        &mut self,
        r: Result<(SipLink, SocketAddr), DriverError>,
        phone: &mut Phone,
        opened: &mut Opened,
    ) {
        match r {
            Ok((link, local)) => {
                tracing::info!(%local, attempts = self.attempt + 1, "signaling reconnected");
                self.attempt = 0;
                opened.sip = link;
                phone.handle_sip_flow(Instant::now(), local);
            }
            Err(e) => {
                tracing::warn!(error = %e, "signaling reconnect failed: trying again");
                self.attempt += 1;
                self.connect(&opened.links);
            }
        }
    }

    /// Has the local address towards the server changed (looked up when the
    /// kernel reports a change, see `netwatch`)? Then move: a new
    /// media socket (and TURN stream), a new signaling flow.
    pub(super) async fn check(&mut self, phone: &mut Phone, opened: &mut Opened) {
        let Ok(ip) = local_ip_towards(opened.links.sip) else {
            return; // no route at all right now: wait for one
        };
        if ip == opened.ip {
            return;
        }
        tracing::info!(old = %opened.ip, new = %ip, "the local address towards the server changed");
        opened.ip = ip;
        match move_media(opened, ip).await {
            Ok(host) => phone.handle_media_moved(Instant::now(), host),
            Err(e) => tracing::warn!(error = %e, "cannot open media on the new address"),
        }
        opened.sip = SipLink::Down;
        if let Some(t) = self.connecting.take() {
            t.abort();
        }
        self.attempt = 0;
        self.connect(&opened.links);
    }

    fn connect(&mut self, links: &Links) {
        let delay = Duration::from_millis(BACKOFF_MS[self.attempt.min(BACKOFF_MS.len() - 1)]);
        let links = links.clone();
        self.connecting = Some(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let ip = local_ip_towards(links.sip)?;
            tokio::time::timeout(CONNECT_TIMEOUT, open_sip(&links, ip))
                .await
                .map_err(|_| DriverError::Connect {
                    addr: links.sip,
                    transport: links.sip_transport.via_token(),
                    why: format!("no answer in {} s", CONNECT_TIMEOUT.as_secs()),
                })?
        }));
    }
}

/// A media socket on `ip` (and a new TURN stream for TURN over TCP/TLS).
async fn move_media(opened: &mut Opened, ip: IpAddr) -> Result<SocketAddr, DriverError> {
    let s = super::MediaSocket::bind(SocketAddr::new(ip, 0))
        .map_err(|e| DriverError::Socket(e.to_string()))?;
    let host = s
        .local_addr()
        .map_err(|e| DriverError::Socket(e.to_string()))?;
    opened.media = s;
    if opened.turn_stream.is_some() {
        match tokio::time::timeout(CONNECT_TIMEOUT, open_turn_stream(&opened.links)).await {
            Ok(Ok((w, f))) => (opened.turn_stream, opened.turn_frames) = (w, f),
            Ok(Err(e)) => tracing::warn!(error = %e, "TURN stream on the new address failed"),
            Err(_) => tracing::warn!("TURN stream on the new address: no answer"),
        }
    }
    Ok(host)
}
