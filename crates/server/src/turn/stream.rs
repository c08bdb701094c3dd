//! TCP and TLS clients: STUN and ChannelData framed by their headers
//! (RFC 8489 §6.2.2, RFC 8656 §12.5), bounded buffers and idle timeouts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use natter_turn::binding::Source;
use natter_turn::server::{FiveTuple, Transport};
use natter_turn::stun;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::driver::{Driver, STREAM_QUEUE};
use crate::Shutdown;

/// A connection with no complete frame for this long is closed (allocations
/// refresh every few minutes and ChannelData flows far more often).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Time allowed for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame: a STUN message or ChannelData with padding.
const MAX_FRAME: usize = 4 + 65_535 + 3;
/// Stream connections served at once; more wait in the kernel backlog.
const MAX_CONNECTIONS: usize = 10_000;

pub(super) async fn accept_loop(
    driver: Arc<Driver>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut shutdown: Shutdown,
) {
    let Ok(local) = listener.local_addr() else {
        return;
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.wait() => return,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!("TURN accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => return,
        };
        let _ = tcp.set_nodelay(true);
        let (driver, tls, stop) = (driver.clone(), tls.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(driver, tcp, peer, local, tls, stop).await;
        });
    }
}

async fn serve_connection(
    driver: Arc<Driver>,
    tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    tls: Option<TlsAcceptor>,
    shutdown: Shutdown,
) {
    match tls {
        None => {
            let tuple = FiveTuple {
                transport: Transport::Tcp,
                client: peer,
                server: local,
            };
            run(driver, tcp, tuple, shutdown).await
        }
        Some(acceptor) => {
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                let peer = driver.pii.pii(peer);
                tracing::debug!(peer = %crate::pii::log_redaction().pii(peer), "TURN TLS handshake failed or timed out");
                return;
            };
            let tuple = FiveTuple {
                transport: Transport::Tls,
                client: peer,
                server: local,
            };
            run(driver, stream, tuple, shutdown).await
        }
    }
}

async fn run<S>(driver: Arc<Driver>, stream: S, tuple: FiveTuple, mut shutdown: Shutdown)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(STREAM_QUEUE);
    driver
        .streams
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(tuple, tx);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::select! {
        _ = read_frames(&driver, &mut rd, tuple) => {}
        _ = shutdown.wait() => {}
    }
    driver
        .streams
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&tuple);
    driver
        .core()
        .handle_client_closed(std::time::Instant::now(), tuple);
    writer.abort();
}

/// Read and dispatch frames until EOF, garbage, or idleness.
async fn read_frames<R: AsyncRead + Unpin>(driver: &Arc<Driver>, rd: &mut R, tuple: FiveTuple) {
    let mut buf = vec![0u8; MAX_FRAME];
    let mut filled = 0;
    loop {
        // Dispatch every complete frame in the buffer.
        let mut start = 0;
        loop {
            match stun::frame_len(&buf[start..filled]) {
                Ok(Some(len)) => {
                    driver
                        .handle_client(tuple, Source::Primary, &buf[start..start + len])
                        .await;
                    start += len;
                }
                Ok(None) => break,
                Err(e) => {
                    let client = driver.pii.pii(tuple.client);
                    tracing::debug!(client = %crate::pii::log_redaction().pii(client), "closing TURN stream: {e}");
                    return;
                }
            }
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        let read = tokio::time::timeout(IDLE_TIMEOUT, rd.read(&mut buf[filled..])).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Err(_) => {
                let client = driver.pii.pii(tuple.client);
                tracing::debug!(client = %crate::pii::log_redaction().pii(client), "closing idle TURN stream");
                return;
            }
            Ok(Ok(n)) => filled += n,
        }
    }
}
