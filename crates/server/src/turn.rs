//! STUN/TURN listeners (driver). Owned by the TURN work; see `natter_turn`.
//!
//! PLACEHOLDER written by the lead so `serve` compiles while the driver is
//! being built: the owner of this file replaces `start` and `http_routes`
//! with the real driver (same signatures).

/// Bind this service's listeners and spawn their tasks.
pub async fn start(shared: &crate::Shared) -> Result<Vec<crate::Listening>, crate::ServeError> {
    let _ = shared;
    Ok(Vec::new())
}

/// HTTP routes this service adds to the HTTPS listener.
pub fn http_routes(shared: &crate::Shared) -> axum::Router {
    let _ = shared;
    axum::Router::new()
}
