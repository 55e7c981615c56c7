//! What the routes work with: the client and the caches they answer from, who may call, the
//! live event hub, the one start and the preflight runs. The runner's context is not in it:
//! the routes reach the runner through the status ConfigMap, and through narrow handles
//! (the start's plan hand-off, the auto-fire's requests) that carry nothing else of it.

use super::body_cache::BodyCache;
use super::server::ServerConfig;
use crate::auth::Authenticator;
use crate::events::{EventHub, EventsConfig};
use crate::metrics::Metrics;
use crate::preflight::{AutoFire, Preflights, Starts};
use crate::status::StatusStore;
use crate::step::{StepPolicy, StepSource};
use std::sync::Arc;
use std::time::Duration;

/// The settings the routes read.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Namespace of the steps, the status ConfigMap and the Jobs.
    pub namespace: String,
    /// What a step's PodSpec may ask for.
    pub step_policy: StepPolicy,
    /// How long one HTTP request may take.
    pub request_timeout: Duration,
    /// Whether the first operator login starts an idle cutover.
    pub auto_fire: bool,
    /// How the HTTP port treats its clients: timeouts, caps (event streams among them), TLS.
    pub http: ServerConfig,
    /// The live event stream's buffers and keep-alive.
    pub events: EventsConfig,
}

/// The HTTP layer's share of one replica.
pub struct HttpContext {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// The settings the routes read.
    pub config: HttpConfig,
    /// The status ConfigMap's store (and, through it, its cache).
    pub store: StatusStore,
    /// The watch-fed step plan.
    pub steps: StepSource,
    /// Who may call the HTTP API.
    pub auth: Authenticator,
    /// The live event frames.
    pub events: EventHub,
    /// The Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The serialized status body of the latest status version, so that a busy console's
    /// GETs serialize nothing.
    pub bodies: BodyCache,
    /// One permit per open event stream, `http.max_event_streams` in all.
    pub event_streams: Arc<tokio::sync::Semaphore>,
    /// The event streams each caller holds, `http.max_event_streams_per_caller` each.
    pub caller_streams: Arc<crate::auth::StreamQuota>,
    /// The one start, which every start route and the login's auto-fire go through.
    pub starts: Starts,
    /// Asks the service's task for a login's auto-fire gate.
    pub auto_fire: AutoFire,
    /// The preflight runs (`GET /cutover/preflight`).
    pub preflights: Preflights,
    /// The tether report (`GET /cutover/tethers`).
    pub tethers: crate::tethers::Tethers,
}
