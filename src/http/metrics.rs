//! HTTP request metrics by matched route (never the raw path, so label sets stay bounded)
//! and the `/metrics` route.

use crate::service::Context;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;

/// Counts the request and times it to its response head.
pub async fn track(State(ctx): State<Arc<Context>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    ctx.metrics.http_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// `GET /metrics`: the text exposition.
pub async fn metrics(State(ctx): State<Arc<Context>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        ctx.metrics.encode(),
    )
}
