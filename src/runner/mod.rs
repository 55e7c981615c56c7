//! The engine that runs the steps exactly once: leader election, the pure decision of what
//! comes next, Job steps and daemonset-wait steps; and the follower of a registry-pivot
//! rollback.

pub mod context;
pub mod daemonset;
pub mod decide;
pub mod engine;
pub mod fault_hook;
pub mod job;
pub mod lease;
pub mod rollback_follower;
pub mod rollout;
pub mod watches;

pub use context::{RunnerConfig, RunnerContext};

/// How one attempt of a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// It did what it should, and reported these outputs (none for a daemonset-wait step).
    Succeeded(crate::status::StepOutputs),
    /// It failed, with a reason a person can act on.
    Failed(String),
    /// The status stopped showing it as running (an abort): nothing more to record.
    Cancelled,
}
