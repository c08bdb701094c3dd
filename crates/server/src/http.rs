//! The HTTPS listener: a page saying what this server is, `/healthz`, and
//! the routes the TURN and SIP drivers add (`/api/turn-credentials`, `/sip`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{Listening, ServeError, Shared};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bind the HTTPS listener (if configured) and spawn its accept loop.
pub async fn start(shared: &Shared, listening: &[Listening]) -> Result<Vec<Listening>, ServeError> {
    let Some(addr) = shared.config.http else {
        return Ok(Vec::new());
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::bind("--http", "tcp", addr, e))?;
    let local = listener
        .local_addr()
        .map_err(|e| ServeError::bind("--http", "tcp", addr, e))?;
    let mut tls = (*shared.tls).clone();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let mut all = listening.to_vec();
    all.push(Listening {
        service: "HTTPS",
        transport: "tcp",
        addr: local,
    });
    let app = router(shared, Arc::new(all));
    tokio::spawn(accept_loop(
        listener,
        acceptor,
        app,
        shared.shutdown.clone(),
    ));
    Ok(vec![Listening {
        service: "HTTPS",
        transport: "tcp",
        addr: local,
    }])
}

/// The full application: our own pages plus the drivers' routes.
pub fn router(shared: &Shared, listening: Arc<Vec<Listening>>) -> Router {
    let page = PageInfo {
        domain: shared.config.domain.clone(),
        listening,
    };
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(Arc::new(page))
        .merge(crate::turn::http_routes(shared))
        .merge(crate::sip::http_routes(shared))
}

struct PageInfo {
    domain: String,
    listening: Arc<Vec<Listening>>,
}

async fn index(State(info): State<Arc<PageInfo>>) -> impl IntoResponse {
    let rows: String = info
        .listening
        .iter()
        .map(|l| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                l.service, l.transport, l.addr
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>natter: {domain}</title></head>\
         <body><h1>natter</h1><p>This is a natter server for <b>{domain}</b>: a self-hostable calling \
         service with a directory (phone numbers and usernames), SIP signaling, a STUN server and a \
         TURN relay. Calls are end-to-end encrypted; this server only relays ciphertext.</p>\
         <h2>Services</h2><table><tr><th>service</th><th>transport</th><th>address</th></tr>{rows}</table>\
         <p>Version {version}.</p></body></html>",
        domain = html_escape(&info.domain),
        version = env!("CARGO_PKG_VERSION"),
    ))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    mut shutdown: crate::Shutdown,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.wait() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "https accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(serve_connection(tcp, peer, acceptor, app, shutdown));
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    mut shutdown: crate::Shutdown,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(peer = %crate::pii::log_redaction().pii(peer), error = %e, "https handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %crate::pii::log_redaction().pii(peer), "https handshake timed out");
            return;
        }
    };
    // The peer address for handlers (`Extension<ConnectInfo<SocketAddr>>`), e.g. WebSocket SIP flows.
    let app = app.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
    let service = TowerToHyperService::new(app);
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::select! {
        r = conn => if let Err(e) = r { tracing::debug!(peer = %crate::pii::log_redaction().pii(peer), error = %e, "https connection ended"); },
        _ = shutdown.wait() => {}
    }
}
