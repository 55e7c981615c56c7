//! catalyst-cutover takes a Sovereign cluster off its upstream registries and git hosts and
//! onto its own Harbor and Gitea, one step Job at a time, with every transition recorded in
//! the `self-sovereign-cutover-status` ConfigMap.
//!
//! The modules form layers, listed here top to bottom; each uses only the layers below it,
//! and no two files import each other (`tests/layers.rs` keeps both so):
//! - [`cli`]: the `catalyst-cutover` subcommands.
//! - [`service`]: one replica's wiring: configuration, start-up and shutdown; it gives the
//!   HTTP layer and the runner each a narrow context of their own;
//!   `demo`: the registry-pivot agent simulation and the embedded cluster of the `demo` and
//!   `sandbox` subcommands, over the `kube-sandbox` crate (`crates/sandbox`: the Kubernetes
//!   API server and cluster simulator); cargo feature `sandbox`, on by default; the container
//!   image leaves it out.
//! - [`http`]: the service's HTTP layer.
//! - [`preflight`]: preflight runs of the plan's checks, apart from the cutover.
//! - [`runner`]: the engine that runs the steps exactly once.
//! - [`steplog`]: every step's log: where it is read from, and the tail kept after it.
//! - [`events`]: live event frames, their broadcaster and the Kubernetes Events;
//!   [`auth`]: who may call it (TokenReview, SubjectAccessReview);
//!   [`request_timeout`]: the kube client's per-request deadline; [`tethers`]: what still
//!   points upstream.
//! - [`metrics`]: the Prometheus metrics.
//! - [`render`]: the Job renderer (handlebars, strict mode); [`migrate`]: the declarative
//!   migrations of the status ConfigMap (`migrations/`).
//! - [`status`]: the status ConfigMap, its pure state machine and its store; [`step`]: the
//!   step model, parsed and validated from step ConfigMaps, and its watch.
//! - [`pivot`]: the registry-pivot agent (`catalyst-cutover agent`) and its Lease handshake
//!   with the runner: what it writes on a node, its direction and its acknowledgements.
//! - [`contract`]: the names the field already depends on (`../shared/CONTRACT.md`);
//!   [`retry`]: which API errors are retried, and how; [`telemetry`]: logs (JSON in a
//!   cluster, human on a terminal); [`sanitize`]: outside text made safe for terminals.

pub mod auth;
pub mod cli;
pub mod contract;
#[cfg(feature = "sandbox")]
pub mod demo;
pub mod events;
pub mod http;
pub mod metrics;
pub mod migrate;
pub mod pivot;
pub mod preflight;
pub mod render;
pub mod request_timeout;
pub mod retry;
pub mod runner;
pub mod sanitize;
pub mod service;
pub mod status;
pub mod step;
pub mod steplog;
pub mod telemetry;
pub mod tethers;
