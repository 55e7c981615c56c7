//! One replica of the service: configuration, and start-up, which gives each layer its own
//! context and wires the caches, the Lease election, the runner and the HTTP API together.

pub mod client;
pub mod config;
pub mod run;

pub use config::ServiceConfig;
pub use run::{Service, StartError, TaskDied};
