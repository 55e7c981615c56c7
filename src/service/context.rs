//! What the runner and the HTTP layer share: the client, the configuration, the status
//! store and cache, the step plan and the leadership signal.

use super::config::ServiceConfig;
use super::steps::StepSource;
use crate::auth::Authenticator;
use crate::events::EventHub;
use crate::metrics::Metrics;
use crate::render::JobRenderer;
use crate::status::StatusStore;
use std::sync::Arc;
use tokio::sync::watch;

/// The shared state of one service replica.
pub struct Context {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// The configuration.
    pub config: ServiceConfig,
    /// The status ConfigMap's store (and, through it, its cache).
    pub store: StatusStore,
    /// The watch-fed step plan.
    pub steps: StepSource,
    /// The Job renderer.
    pub renderer: JobRenderer,
    /// Whether this replica holds the Lease.
    pub leading: watch::Receiver<bool>,
    /// Who may call the HTTP API.
    pub auth: Authenticator,
    /// The live event frames.
    pub events: EventHub,
    /// The Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The serialized status body of the latest status version, so that a busy console's
    /// GETs serialize nothing.
    pub bodies: crate::http::cutover::BodyCache,
    /// One permit per open event stream, `max_event_streams` in all.
    pub event_streams: Arc<tokio::sync::Semaphore>,
    /// The plan a start on this replica validated, for the runner of that attempt.
    pub handoff: crate::step::PlanHandoff,
}
