//! The router and `openapi.yaml` must agree: every route the router serves is described,
//! every described route is served, and every error code the API can answer is listed.

use super::server::ServerConfig;
use super::{HttpConfig, HttpContext};
use super::{OPENAPI, router, routes};
use crate::events::EventsConfig;
use crate::preflight::Preflights;
use crate::render::{JobRenderer, RenderConfig};
use crate::status::{StatusCache, StatusStore};
use crate::step::{StepPolicy, StepSource};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use std::collections::BTreeSet;
use std::sync::Arc;
use tower::ServiceExt;

fn spec() -> serde_yaml::Value {
    serde_yaml::from_str(OPENAPI).unwrap()
}

fn spec_routes() -> BTreeSet<(String, String)> {
    let spec = spec();
    let paths = spec["paths"].as_mapping().unwrap();
    paths
        .iter()
        .flat_map(|(path, item)| {
            let path = path.as_str().unwrap().to_owned();
            item.as_mapping()
                .unwrap()
                .keys()
                .filter_map(|m| m.as_str())
                .filter(|m| ["get", "post", "put", "patch", "delete"].contains(m))
                .map(move |m| (path.clone(), m.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A context whose API server is unreachable: routing is tested, not the cluster.
pub(super) fn offline_context() -> Arc<HttpContext> {
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let (steps, _driver) = StepSource::follow(client.clone(), "ns");
    let store = StatusStore::new(client.clone(), "ns", "status", StatusCache::new());
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let handoff = Arc::new(crate::step::PlanHandoff::default());
    let renderer = Arc::new(JobRenderer::new(RenderConfig::default()).unwrap());
    let jobs = crate::runner::watches::JobWatch::follow(&client, "ns").0;
    let (work, _) = crate::preflight::work_channel();
    Arc::new(HttpContext {
        auth: crate::auth::Authenticator::new(
            client.clone(),
            crate::auth::AuthConfig::disabled(),
            "ns",
            metrics.clone(),
        ),
        events: crate::events::EventHub::new(16, 16, metrics.clone()),
        metrics,
        bodies: Default::default(),
        event_streams: Arc::new(tokio::sync::Semaphore::new(
            ServerConfig::default().max_event_streams,
        )),
        caller_streams: crate::auth::StreamQuota::new(
            ServerConfig::default().max_event_streams_per_caller,
        ),
        starts: crate::preflight::Starts::new(
            client.clone(),
            "ns",
            StepPolicy::unrestricted(),
            "catalyst-cutover-record",
            store.clone(),
            handoff,
        ),
        auto_fire: crate::preflight::AutoFire::new(work.clone()),
        preflights: Preflights::new(client.clone(), "ns", renderer, jobs, work),
        tethers: crate::tethers::Tethers::disabled("offline"),
        client,
        config: HttpConfig {
            namespace: "ns".to_owned(),
            step_policy: StepPolicy::unrestricted(),
            request_timeout: std::time::Duration::from_millis(200),
            auto_fire: true,
            http: ServerConfig::default(),
            events: EventsConfig::default(),
        },
        store,
        steps,
    })
}

#[test]
fn spec_describes_exactly_the_routes() {
    let served: BTreeSet<(String, String)> = routes()
        .into_iter()
        .map(|(p, m)| (p.to_owned(), m.to_owned()))
        .collect();
    assert_eq!(spec_routes(), served);
}

#[tokio::test]
async fn router_serves_every_listed_route() {
    let app = router(offline_context());
    for (path, method) in routes() {
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method.clone())
                    .uri(path)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_ne!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
        assert_ne!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
    }
    let missing = app
        .oneshot(
            Request::builder()
                .uri("/not-a-route")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[test]
fn spec_lists_every_error_code() {
    use super::error::ApiError;
    use crate::auth::{AuthError, SessionError};
    let spec = spec();
    let listed: BTreeSet<&str> =
        spec["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
    let errors = [
        ApiError::InProgress {
            current_step: String::new(),
        },
        ApiError::Failed {
            step: String::new(),
            reason: String::new(),
        },
        ApiError::NotFailed { phase: "idle" },
        ApiError::NotRunning { phase: "idle" },
        ApiError::NoStepsFound {
            namespace: String::new(),
            selector: "",
        },
        ApiError::InvalidSteps {
            report: String::new(),
        },
        ApiError::ChartBelowFloor(crate::step::chart::BelowFloor {
            observed: String::new(),
            min: String::new(),
            configmap: String::new(),
            label: String::new(),
        }),
        ApiError::BadRequest(String::new()),
        ApiError::InvalidQuery(String::new()),
        ApiError::PreflightRunNotFound {
            asked: 1,
            latest: 2,
        },
        ApiError::StepNotFound {
            step: String::new(),
            known: Vec::new(),
        },
        ApiError::StepNotStarted {
            step: String::new(),
        },
        ApiError::StepLogPending {
            step: String::new(),
            detail: String::new(),
        },
        ApiError::StepLogNotFound {
            step: String::new(),
            detail: String::new(),
        },
        ApiError::RolledBack(String::new()),
        ApiError::RollbackInProgress {
            by: String::new(),
            at: String::new(),
        },
        ApiError::NothingToRollBack(String::new()),
        ApiError::RollbackNotConfirmed {
            confirmation: "",
            detail: String::new(),
        },
        ApiError::RollbackReasonRequired(String::new()),
        ApiError::NoRegistryPivot {
            namespace: String::new(),
            detail: String::new(),
        },
        ApiError::Unavailable(String::new()),
        ApiError::Upstream(String::new()),
        ApiError::TooManyConnections { limit: 1 },
        ApiError::TooManyEventStreams { limit: 1 },
        ApiError::TooManyCallerEventStreams { limit: 1 },
        ApiError::UnsupportedMediaType { got: String::new() },
        ApiError::Auth(AuthError::RateLimited {
            retry_after: 1,
            scope: String::new(),
        }),
        ApiError::Auth(AuthError::MissingBearer(String::new())),
        ApiError::Auth(AuthError::InvalidToken(String::new())),
        ApiError::Auth(AuthError::Forbidden {
            user: String::new(),
            verb: String::new(),
            resource: String::new(),
            namespace: String::new(),
            reason: String::new(),
        }),
        ApiError::Auth(AuthError::UnauthorizedSa {
            user: String::new(),
        }),
        ApiError::Auth(AuthError::Unavailable(String::new())),
        ApiError::Session(SessionError::InvalidSession(String::new())),
        ApiError::Session(SessionError::Unavailable(String::new())),
        ApiError::Session(SessionError::CrossSite(String::new())),
    ];
    for err in errors {
        assert!(
            listed.contains(err.code()),
            "{} missing from openapi.yaml",
            err.code()
        );
    }
}
