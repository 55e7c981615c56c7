//! The service's HTTP layer: the router, its middleware (request id, tracing, timeout) and
//! the routes, each in its own module. Errors are [`error::ApiError`].

pub mod authenticate;
pub mod body;
pub mod body_cache;
pub mod caller;
pub mod context;
pub mod cutover;
pub mod error;
pub mod events;
pub mod health;
pub mod internal;
pub mod logs;
pub mod metrics;
pub mod page;
pub mod permissions;
pub mod pivot_rollback;
pub mod preflight;
pub mod server;
pub mod status;
pub mod tether_signals;
pub mod tethers;

use axum::Router;
use axum::http::{HeaderName, StatusCode};
use axum::routing::{MethodRouter, get, post};
pub use context::{HttpConfig, HttpContext};
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// The OpenAPI 3.1 description of every route, served at `/openapi.yaml`.
pub const OPENAPI: &str = include_str!("../../openapi.yaml");

/// One route: its path, its method (lower case, as OpenAPI writes it) and its handler.
type Route = (&'static str, &'static str, MethodRouter<Arc<HttpContext>>);

/// Every route the router serves, the one table both the router and the OpenAPI test are
/// built from, so they cannot disagree.
fn table() -> Vec<Route> {
    vec![
        ("/", "get", get(page::index)),
        ("/app.js", "get", get(page::script)),
        ("/app.css", "get", get(page::stylesheet)),
        ("/cutover", "get", get(status::status)),
        ("/cutover/permissions", "get", get(permissions::permissions)),
        ("/cutover", "post", post(cutover::start)),
        ("/cutover/retry", "post", post(cutover::retry)),
        ("/cutover/abort", "post", post(cutover::abort)),
        ("/cutover/preflight", "get", get(preflight::report)),
        ("/cutover/tethers", "get", get(tethers::report)),
        ("/cutover/preflight", "post", post(preflight::run)),
        ("/cutover/steps/{step}/logs", "get", get(logs::logs)),
        ("/cutover/rollback", "post", post(pivot_rollback::rollback)),
        (
            "/api/v1/sovereign/cutover/rollback",
            "post",
            post(pivot_rollback::rollback),
        ),
        (
            "/api/v1/sovereign/cutover/start",
            "post",
            post(cutover::console_start),
        ),
        (
            "/api/v1/sovereign/cutover/status",
            "get",
            get(status::status),
        ),
        ("/cutover/events", "get", get(events::stream)),
        (
            "/api/v1/sovereign/cutover/events",
            "get",
            get(events::stream),
        ),
        (
            "/api/v1/internal/cutover/trigger",
            "post",
            post(internal::trigger),
        ),
        (
            "/api/v1/internal/cutover/operator-login",
            "post",
            post(internal::operator_login),
        ),
        ("/healthz", "get", get(health::healthz)),
        ("/readyz", "get", get(health::readyz)),
        ("/metrics", "get", get(metrics::metrics)),
        ("/openapi.yaml", "get", get(openapi)),
    ]
}

/// Every route with its method, as the router serves them.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    table()
        .into_iter()
        .map(|(path, method, _)| (path, method))
        .collect()
}

/// The router with its middleware: authentication on every route but the open ones,
/// request metrics by matched route, then request id, tracing and timeout.
pub fn router(ctx: Arc<HttpContext>) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let timeout = ctx.config.request_timeout;
    table()
        .into_iter()
        .fold(Router::new(), |router, (path, _, handler)| {
            router.route(path, handler)
        })
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            authenticate::require,
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
                        let path = req.uri().path();
                        // Probes and scrapes log at debug level: an operator's log shows what
                        // people and the console asked for.
                        if crate::auth::decision::OPEN_ROUTES.contains(&path) {
                            tracing::debug_span!("http", method = %req.method(), %path, request_id = %id)
                        } else {
                            tracing::info_span!("http", method = %req.method(), %path, request_id = %id)
                        }
                    },
                ).on_response(answered))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    timeout,
                )),
        )
}

/// The probe port's router: `/healthz`, `/readyz` and `/metrics` only, no authentication,
/// no page. It is served on a listener of its own ([`server::serve`] with
/// [`server::ServerConfig::probes`]) so that a flood of the API port never fails a probe.
pub fn probe_router(ctx: Arc<HttpContext>) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .with_state(ctx)
}

/// One line per answered request, in the request's span (method, path, request id).
fn answered<B>(
    response: &axum::http::Response<B>,
    latency: std::time::Duration,
    span: &tracing::Span,
) {
    let status = response.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1e3;
    if span
        .metadata()
        .is_some_and(|m| *m.level() == tracing::Level::INFO)
    {
        tracing::info!(status, latency_ms, "answered");
    } else {
        tracing::debug!(status, latency_ms, "answered");
    }
}

async fn openapi() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/yaml")],
        OPENAPI,
    )
}

#[cfg(test)]
mod spec_tests;
