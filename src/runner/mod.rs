//! The engine that runs the steps exactly once: leader election, the pure decision of what
//! comes next, Job steps and daemonset-wait steps.

pub mod decide;
pub mod lease;
pub mod rollout;
