//! One replica of the service: configuration, the shared context, and start-up, which
//! wires the caches, the Lease election, the runner and the HTTP API together.

pub mod config;
pub mod context;
pub mod run;
pub mod steps;

pub use config::ServiceConfig;
pub use context::Context;
pub use run::{Service, StartError, TaskDied};
pub use steps::{PlanState, StepSource};
