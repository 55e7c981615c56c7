//! Preflight runs of their own (`GET /cutover/preflight`): the plan's preflight steps run as
//! Jobs and are recorded in a ConfigMap of their own, apart from the cutover's status, so an
//! operator can ask "would the cutover work now?" without starting it.
//!
//! [`report`] is the pure model of that ConfigMap and its changes, [`store`] writes them with
//! optimistic concurrency, [`run`] drives a run and waits for its end; [`gate`] holds the
//! first login's auto-fire until a preflight run passes, and [`auto_fire`] runs that gate;
//! [`work`] carries the gates and the runs' drives to the service's task set.
//!
//! [`start`] is the one way a cutover starts, for every caller (the HTTP routes, a login's
//! auto-fire, the gate): it lives here, below `http`, because the gate calls it too.

pub mod auto_fire;
pub mod gate;
pub mod report;
pub mod run;
pub mod start;
pub mod store;
pub mod work;

pub use auto_fire::{AutoFire, Gates};
pub use report::{Change, Refused, Report, RunResult, StepReport};
pub use run::{Preflights, Started};
pub use start::{Prepared, StartError, StartOutcome, StartRequest, Starts, StatusLost, Then};
pub use store::{PreflightStore, StoreError};
pub use work::{Work, WorkReceiver, WorkSender, work_channel};

/// Name of the ConfigMap that records the latest preflight run.
pub const CONFIGMAP: &str = "self-sovereign-cutover-preflight";
/// `app.kubernetes.io/component` of that ConfigMap and of the runs' Jobs, which are not the
/// cutover's (`cutover-job`) so nothing that follows the cutover's Jobs counts them.
pub const COMPONENT: &str = "cutover-preflight";
