//! Preflight runs of their own (`GET /cutover/preflight`): the plan's preflight steps run as
//! Jobs and are recorded in a ConfigMap of their own, apart from the cutover's status, so an
//! operator can ask "would the cutover work now?" without starting it.
//!
//! [`report`] is the pure model of that ConfigMap and its changes, [`store`] writes them with
//! optimistic concurrency, [`run`] drives a run and waits for its end; [`gate`] holds the
//! first login's auto-fire until a preflight run passes.

pub mod gate;
pub mod report;
pub mod run;
pub mod store;

pub use report::{Change, Refused, Report, RunResult, StepReport};
pub use run::{Preflights, Started};
pub use store::{PreflightStore, StoreError};

/// Name of the ConfigMap that records the latest preflight run.
pub const CONFIGMAP: &str = "self-sovereign-cutover-preflight";
/// `app.kubernetes.io/component` of that ConfigMap and of the runs' Jobs, which are not the
/// cutover's (`cutover-job`) so nothing that follows the cutover's Jobs counts them.
pub const COMPONENT: &str = "cutover-preflight";
