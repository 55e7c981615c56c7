//! What the runner works with, and nothing more: the client, its namespace and step policy,
//! the status store, the Job renderer, the leadership signal and the counters it feeds. The
//! HTTP layer's state (the event hub, the auth cache, the body cache) is not in it.

use crate::metrics::Metrics;
use crate::render::JobRenderer;
use crate::status::StatusStore;
use crate::step::StepPolicy;
use std::sync::Arc;
use tokio::sync::watch;

/// Where the runner runs the steps, and what their PodSpecs may ask for.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Namespace of the steps, the status ConfigMap and the Jobs.
    pub namespace: String,
    /// What a step's PodSpec may ask for.
    pub step_policy: StepPolicy,
}

/// The runner's share of one replica (the preflight runs its Jobs with it too).
pub struct RunnerContext {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// Namespace and step policy.
    pub config: RunnerConfig,
    /// The status ConfigMap's store (and, through it, its cache).
    pub store: StatusStore,
    /// The Job renderer, which also holds the step deadlines (shared with the preflight runs).
    pub renderer: Arc<JobRenderer>,
    /// Whether this replica holds the Lease.
    pub leading: watch::Receiver<bool>,
    /// The Prometheus metrics the runner counts into.
    pub metrics: Arc<Metrics>,
    /// The plan a start on this replica validated, taken by the run of that attempt.
    pub handoff: Arc<crate::step::PlanHandoff>,
    /// The cutover's Jobs, watched for the replica's life.
    pub jobs: super::watches::JobWatch,
    /// Whether the last step's success may complete the cutover (the tether report).
    pub completion: crate::tethers::CompletionGate,
}
