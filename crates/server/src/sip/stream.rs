//! TCP and TLS connections: accept, frame, keepalive, write queue, limits.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use natter_sip::flow::{ConnId, Flow, Transport};
use natter_sip::frame::{Frame, Framer, PONG};
use natter_sip::Limits;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::{CoreSender, ToCore};
use crate::Shutdown;

/// A connection that sends nothing (not even a keepalive) for this long is
/// closed. RFC 5626 clients ping every ~2 minutes.
const IDLE: Duration = Duration::from_secs(300);
/// TLS handshakes must finish within this.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Open stream connections at most (SIP over TCP, TLS and WebSocket).
const MAX_CONNECTIONS: usize = 20_000;
/// Messages queued towards one connection at most.
const WRITE_QUEUE: usize = 256;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// A fresh connection id, unique in the process.
pub(crate) fn next_conn() -> ConnId {
    ConnId(NEXT_CONN.fetch_add(1, Ordering::Relaxed))
}

/// Counts one open connection; refuses beyond the limit.
pub(crate) struct Slot(());

impl Slot {
    pub(crate) fn take() -> Option<Slot> {
        if OPEN.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            OPEN.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    core: CoreSender,
    mut shutdown: Shutdown,
) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    loop {
        let (tcp, remote) = tokio::select! {
            _ = shutdown.wait() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "sip accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = Slot::take() else {
            // No address here: personal data stays out of default-level logs.
            tracing::warn!("too many SIP connections; one refused");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (core, shutdown, tls) = (core.clone(), shutdown.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => serve(tcp, Transport::Tcp, local, remote, false, core, shutdown).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await
                {
                    Ok(Ok(stream)) => {
                        serve(stream, Transport::Tls, local, remote, false, core, shutdown).await
                    }
                    _ => {
                        tracing::debug!(remote = %crate::pii::log_redaction().pii(remote), "sip tls handshake failed or timed out")
                    }
                },
            }
            drop(slot);
        });
    }
}

/// Run one connection until it closes, idles out, breaks framing, or the
/// server stops. `dialed`: we opened it (see [`super::dial`]).
pub(crate) async fn serve<S>(
    stream: S,
    transport: Transport,
    local: SocketAddr,
    remote: SocketAddr,
    dialed: bool,
    core: CoreSender,
    mut shutdown: Shutdown,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let conn = next_conn();
    let flow = Flow {
        transport,
        local,
        remote,
        conn: Some(conn),
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut out) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    if core
        .send(ToCore::Opened {
            conn,
            tx: tx.clone(),
            dialed: dialed.then_some(remote),
        })
        .await
        .is_err()
    {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(bytes) = out.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut framer = Framer::new(Limits::default());
    let mut buf = vec![0u8; 16 * 1024];
    'read: loop {
        let n = tokio::select! {
            _ = shutdown.wait() => break,
            r = tokio::time::timeout(IDLE, rd.read(&mut buf)) => match r {
                Ok(Ok(n)) if n > 0 => n,
                _ => break, // closed, failed, or idle (half-open peers end here)
            },
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(bytes))) => {
                    if core.send(ToCore::Frame { flow, bytes }).await.is_err() {
                        break 'read;
                    }
                }
                Ok(Some(Frame::Ping)) => {
                    let _ = tx.try_send(PONG.to_vec());
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(remote = %crate::pii::log_redaction().pii(remote), error = %e, "sip stream cannot be framed; closing");
                    break 'read;
                }
            }
        }
    }
    drop(tx);
    let _ = core.send(ToCore::Closed { conn }).await;
    let _ = writer.await;
}
