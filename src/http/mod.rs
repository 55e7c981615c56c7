//! The service's HTTP layer: the router, its middleware (request id, tracing, timeout) and
//! the routes, each in its own module. Errors are [`error::ApiError`].

pub mod auth;
pub mod body;
pub mod caller;
pub mod cutover;
pub mod error;
pub mod events;
pub mod health;
pub mod internal;
pub mod metrics;

use crate::service::Context;
use axum::Router;
use axum::http::{HeaderName, StatusCode};
use axum::routing::{get, post};
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// The OpenAPI 3.1 description of every route, served at `/openapi.yaml`.
pub const OPENAPI: &str = include_str!("../../openapi.yaml");

/// Every route with its methods, as the router serves them; the OpenAPI test compares the
/// spec against this list.
pub const ROUTES: &[(&str, &str)] = &[
    ("/cutover", "get"),
    ("/cutover", "post"),
    ("/cutover/retry", "post"),
    ("/cutover/abort", "post"),
    ("/api/v1/sovereign/cutover/start", "post"),
    ("/api/v1/sovereign/cutover/status", "get"),
    ("/cutover/events", "get"),
    ("/api/v1/sovereign/cutover/events", "get"),
    ("/api/v1/internal/cutover/trigger", "post"),
    ("/api/v1/internal/cutover/operator-login", "post"),
    ("/healthz", "get"),
    ("/readyz", "get"),
    ("/metrics", "get"),
    ("/openapi.yaml", "get"),
];

/// The router with its middleware: authentication on every route but the open ones,
/// request metrics by matched route, then request id, tracing and timeout.
pub fn router(ctx: Arc<Context>) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let timeout = ctx.config.request_timeout;
    Router::new()
        .route("/cutover", get(cutover::status).post(cutover::start))
        .route("/cutover/retry", post(cutover::retry))
        .route("/cutover/abort", post(cutover::abort))
        .route("/api/v1/sovereign/cutover/start", post(cutover::start))
        .route("/api/v1/sovereign/cutover/status", get(cutover::status))
        .route("/cutover/events", get(events::stream))
        .route("/api/v1/sovereign/cutover/events", get(events::stream))
        .route("/api/v1/internal/cutover/trigger", post(internal::trigger))
        .route(
            "/api/v1/internal/cutover/operator-login",
            post(internal::operator_login),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.yaml", get(openapi))
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            auth::require,
        ))
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            metrics::track,
        ))
        .with_state(ctx)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(
                    |req: &axum::http::Request<axum::body::Body>| {
                        let id = req
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
                    },
                ))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    timeout,
                )),
        )
}

async fn openapi() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/yaml")],
        OPENAPI,
    )
}

#[cfg(test)]
mod spec_tests;
