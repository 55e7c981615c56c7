//! A fault-injecting reverse proxy for any Kubernetes API server: the engine's resilience
//! tests put it between their clients and the server, then add latency, error answers, cut
//! watch streams or a whole "restart" while the engine runs.
//!
//! The decisions are pure ([`decide`]); [`FaultProxy`] is the I/O shell and [`Faults`] the
//! handle that changes them at run time.

mod answer;
mod decide;
mod handle;
mod proxy;

pub use decide::{Action, FaultState, decide};
pub use handle::Faults;
pub use proxy::{FaultError, FaultProxy};
