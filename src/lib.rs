//! catalyst-cutover takes a Sovereign cluster off its upstream registries and git hosts and
//! onto its own Harbor and Gitea, one step Job at a time, with every transition recorded in
//! the `self-sovereign-cutover-status` ConfigMap.
//!
//! The layout follows the architecture:
//! - [`contract`]: the names the field already depends on (`../shared/CONTRACT.md`).
//! - [`step`]: the step model, parsed and validated from step ConfigMaps.
//! - [`render`]: the Job renderer (handlebars, strict mode).
//! - [`status`]: the status ConfigMap, its pure state machine and its store.
//! - [`migrate`]: the declarative migrations of the status ConfigMap (`migrations/`).
//! - [`runner`]: the engine that runs the steps exactly once.
//! - [`http`]: the service's HTTP layer.
//! - [`auth`]: who may call it (TokenReview, SubjectAccessReview).
//! - [`events`]: live event frames, their broadcaster and the Kubernetes Events.
//! - [`metrics`]: the Prometheus metrics.
//! - [`service`]: one replica: configuration, shared context, start-up and shutdown.
//! - `demo`: the registry-pivot agent simulation and the embedded cluster of the `demo` and
//!   `sandbox` subcommands, over the `kube-sandbox` crate (`crates/sandbox`: the Kubernetes
//!   API server and cluster simulator); cargo feature `sandbox`, on by default; the container
//!   image leaves it out.
//! - [`steplog`]: every step's log: where it is read from, and the tail kept after it.
//! - [`retry`]: which API errors are retried, and how.
//! - [`cli`]: the `catalyst-cutover` subcommands.
//! - [`telemetry`]: logs (JSON in a cluster, human on a terminal).

pub mod auth;
pub mod cli;
pub mod contract;
#[cfg(feature = "sandbox")]
pub mod demo;
pub mod events;
pub mod http;
pub mod metrics;
pub mod migrate;
pub mod preflight;
pub mod render;
pub mod request_timeout;
pub mod retry;
pub mod runner;
pub mod service;
pub mod status;
pub mod step;
pub mod steplog;
pub mod telemetry;
