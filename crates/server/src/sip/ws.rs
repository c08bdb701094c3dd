//! SIP over WebSocket (RFC 7118) at `/sip` on the HTTPS listener: each
//! WebSocket message carries one SIP message; subprotocol `sip` is required.
//!
//! The route finds the core through [`Shared::sip`], which `start` fills in;
//! until then (or with SIP off) it answers 503.

use std::net::SocketAddr;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use natter_sip::flow::{Flow, Transport};
use tokio::sync::mpsc;

use super::stream::{next_conn, Slot};
use super::{CoreHandle, CoreSender, ToCore};
use crate::Shared;

/// Largest WebSocket message accepted (one SIP message).
const MAX_MESSAGE: usize = 65_535;

#[derive(Clone)]
struct WsState {
    core: CoreHandle,
    local: SocketAddr,
}

pub(crate) fn routes(shared: &Shared) -> Router {
    let local = shared
        .config
        .http
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let state = WsState {
        core: shared.sip.clone(),
        local,
    };
    Router::new()
        .route("/sip", get(upgrade))
        .layer(Extension(state))
}

async fn upgrade(
    ws: WebSocketUpgrade,
    Extension(state): Extension<WsState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Response {
    let ws = ws.protocols(["sip"]);
    if ws.selected_protocol().is_none() {
        let why =
            "WebSocket SIP needs the `sip` subprotocol (Sec-WebSocket-Protocol: sip, RFC 7118)";
        return (StatusCode::BAD_REQUEST, why).into_response();
    }
    let core = state.core.sender();
    let (Some(core), Some(slot)) = (core, Slot::take()) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "SIP is not running or is at its connection limit",
        )
            .into_response();
    };
    let remote = peer
        .map(|Extension(ConnectInfo(a))| a)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    ws.max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| async move {
            serve(socket, state.local, remote, core).await;
            drop(slot);
        })
        .into_response()
}

async fn serve(mut socket: WebSocket, local: SocketAddr, remote: SocketAddr, core: CoreSender) {
    let conn = next_conn();
    let flow = Flow {
        transport: Transport::Wss,
        local,
        remote,
        conn: Some(conn),
    };
    let (tx, mut out) = mpsc::channel::<Vec<u8>>(256);
    if core
        .send(ToCore::Opened {
            conn,
            tx,
            dialed: None,
        })
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Text(text))) => {
                    let bytes = text.as_str().as_bytes().to_vec();
                    if core.send(ToCore::Frame { flow, bytes }).await.is_err() { break; }
                }
                Some(Ok(WsMessage::Binary(bytes))) => {
                    if core.send(ToCore::Frame { flow, bytes: bytes.to_vec() }).await.is_err() { break; }
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                _ => break,
            },
            outgoing = out.recv() => match outgoing {
                Some(bytes) => {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    if socket.send(WsMessage::Text(text.into())).await.is_err() { break; }
                }
                None => break,
            },
        }
    }
    let _ = core.send(ToCore::Closed { conn }).await;
}
