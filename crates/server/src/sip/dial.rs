//! Connections the server opens itself: the core sends a request over TCP
//! to an address it has no connection with (RFC 3261 §18.1.1, a request too
//! large for UDP). One connection per address; messages wait while it is
//! being made; if it cannot be made the core is told and falls back to UDP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use natter_sip::flow::{ConnId, Flow, Transport};
use natter_turn::pii::Redaction;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::stream::{serve, Slot};
use super::{CoreSender, ToCore};
use crate::Shutdown;

/// How long a connection attempt may take. Devices behind NAT usually drop
/// the SYN silently, so this is also the delay before the UDP fallback of
/// the first large request to such a device (later ones go to UDP at once).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Messages queued for one connection being made, at most.
const MAX_WAITING: usize = 64;

/// Dialled connections by remote address.
pub(crate) struct Dialer {
    by_remote: HashMap<SocketAddr, State>,
    to_core: CoreSender,
    shutdown: Shutdown,
    redaction: Redaction,
}

enum State {
    Connecting(Vec<Vec<u8>>),
    Open(ConnId),
}

impl Dialer {
    pub(crate) fn new(to_core: CoreSender, shutdown: Shutdown, redaction: Redaction) -> Dialer {
        Dialer {
            by_remote: HashMap::new(),
            to_core,
            shutdown,
            redaction,
        }
    }

    /// Send `bytes` over a TCP connection to `flow.remote`, dialling it
    /// first when there is none. Only TCP is dialled (we hold no client
    /// certificates for TLS, and WebSocket peers always connect to us).
    pub(crate) fn send(
        &mut self,
        flow: Flow,
        bytes: Vec<u8>,
        conns: &HashMap<ConnId, mpsc::Sender<Vec<u8>>>,
    ) {
        if flow.transport != Transport::Tcp {
            tracing::debug!(remote = %self.redaction.pii(flow.remote), "no connection for a stream flow; dropped");
            return;
        }
        match self.by_remote.get_mut(&flow.remote) {
            Some(State::Open(conn)) => match conns.get(conn) {
                Some(tx) => {
                    let _ = tx.try_send(bytes);
                    return;
                }
                None => {
                    self.by_remote.remove(&flow.remote);
                }
            },
            Some(State::Connecting(waiting)) => {
                if waiting.len() < MAX_WAITING {
                    waiting.push(bytes);
                }
                return;
            }
            None => {}
        }
        self.by_remote
            .insert(flow.remote, State::Connecting(vec![bytes]));
        tokio::spawn(dial(
            flow,
            self.to_core.clone(),
            self.shutdown.clone(),
            self.redaction,
        ));
    }

    /// A dialled connection is up: hand it what waited.
    pub(crate) fn opened(&mut self, remote: SocketAddr, conn: ConnId, tx: &mpsc::Sender<Vec<u8>>) {
        if let Some(State::Connecting(waiting)) = self.by_remote.insert(remote, State::Open(conn)) {
            for bytes in waiting {
                let _ = tx.try_send(bytes);
            }
        }
    }

    /// The attempt failed: what waited is dropped (the core resends it).
    pub(crate) fn failed(&mut self, remote: SocketAddr) {
        self.by_remote.remove(&remote);
    }

    /// A connection closed; forget it if it was one of ours.
    pub(crate) fn closed(&mut self, conn: ConnId) {
        self.by_remote
            .retain(|_, s| !matches!(s, State::Open(c) if *c == conn));
    }
}

/// Connect, then serve the connection like an accepted one.
async fn dial(flow: Flow, core: CoreSender, shutdown: Shutdown, redaction: Redaction) {
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(flow.remote)).await;
    let slot = Slot::take();
    match (connected, slot) {
        (Ok(Ok(tcp)), Some(slot)) => {
            let _ = tcp.set_nodelay(true);
            serve(
                tcp,
                Transport::Tcp,
                flow.local,
                flow.remote,
                true,
                core,
                shutdown,
            )
            .await;
            drop(slot);
        }
        (result, _) => {
            let why = match result {
                Ok(Ok(_)) => "connection limit reached".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {CONNECT_TIMEOUT:?}"),
            };
            tracing::debug!(remote = %redaction.pii(flow.remote), %why, "could not connect for a large request");
            let _ = core.send(ToCore::ConnectFailed { flow }).await;
        }
    }
}
