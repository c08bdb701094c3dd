//! `GET /api/turn-credentials`: fresh REST credentials for a signed-in natter user.
//!
//! The caller authenticates with HTTP Basic (account id and password), checked
//! against the store's MD5 key (MD5(id:realm:password)); the answer is shaped
//! like an RTCIceServer list so a web client can pass it to RTCPeerConnection.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use natter_turn::server::rest_password;
use natter_turn::stun::long_term_key_md5;
use serde::Serialize;

use crate::Shared;

/// Lifetime of the credentials handed out.
const TTL_SECS: u64 = 24 * 3600;

struct Creds {
    store: natter_store::Store,
    secret: Arc<str>,
    uris: Vec<String>,
}

#[derive(Serialize)]
struct IceServer {
    urls: Vec<String>,
    username: String,
    credential: String,
}

#[derive(Serialize)]
struct Answer {
    username: String,
    credential: String,
    ttl: u64,
    uris: Vec<String>,
    #[serde(rename = "iceServers")]
    ice_servers: Vec<IceServer>,
}

pub(super) fn routes(shared: &Shared) -> Router {
    let state = Arc::new(Creds {
        store: shared.store.clone(),
        secret: shared.turn_secret.clone(),
        uris: uris(shared),
    });
    Router::new()
        .route("/api/turn-credentials", get(credentials))
        .with_state(state)
}

/// The URIs clients should use: the public IP, else the listener IP, else the domain.
fn uris(shared: &Shared) -> Vec<String> {
    let c = &shared.config;
    let host = |addr: Option<std::net::SocketAddr>| -> Option<String> {
        let a = addr?;
        let ip = c.public_ip.or((!a.ip().is_unspecified()).then_some(a.ip()));
        let h = match ip {
            Some(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
            Some(v4) => v4.to_string(),
            None => c.domain.clone(),
        };
        Some(format!("{h}:{}", a.port()))
    };
    let mut out = Vec::new();
    if let Some(h) = host(c.turn) {
        out.push(format!("stun:{h}"));
        out.push(format!("turn:{h}?transport=udp"));
        out.push(format!("turn:{h}?transport=tcp"));
    }
    if let Some(h) = host(c.turns) {
        out.push(format!("turns:{h}?transport=tcp"));
    }
    out
}

async fn credentials(State(st): State<Arc<Creds>>, headers: HeaderMap) -> Response {
    let Some((user, password)) = basic_auth(&headers) else {
        return unauthorized("send HTTP Basic credentials of a natter account (id and password)");
    };
    let store = st.store.clone();
    let id = user.clone();
    let keys = tokio::task::spawn_blocking(move || store.digest_keys(&id)).await;
    let ok = match keys {
        Ok(Ok(Some(k))) => long_term_key_md5(&user, &k.realm, &password) == k.md5,
        Ok(Err(e)) => {
            tracing::warn!("account lookup failed: {e}");
            false
        }
        _ => false,
    };
    if !ok {
        return unauthorized("wrong account id or password");
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let username = format!("{}:{user}", now + TTL_SECS);
    let credential = rest_password(st.secret.as_bytes(), &username);
    let turn_uris: Vec<String> = st.uris.clone();
    Json(Answer {
        ice_servers: vec![IceServer {
            urls: turn_uris.clone(),
            username: username.clone(),
            credential: credential.clone(),
        }],
        username,
        credential,
        ttl: TTL_SECS,
        uris: turn_uris,
    })
    .into_response()
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

fn unauthorized(why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"natter\"")],
        format!("TURN credentials refused: {why}\n"),
    )
        .into_response()
}
