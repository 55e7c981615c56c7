//! Liveness and readiness.

use super::HttpContext;
use axum::extract::State;
use axum::http::StatusCode;
use std::sync::Arc;

/// `GET /healthz`: the process serves requests.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: ready once the status and step caches are synced.
pub async fn readyz(State(ctx): State<Arc<HttpContext>>) -> (StatusCode, &'static str) {
    if ctx.store.cache().synced() && ctx.steps.synced() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}
