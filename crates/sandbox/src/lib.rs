//! The embedded sandbox: an in-process Kubernetes API server ([`api`]) and a cluster
//! simulator ([`sim`]) that acts only through the API.

pub mod api;
pub mod auth;
pub mod cluster;
pub mod faults;
pub mod sim;

pub use cluster::{Sandbox, SandboxError, SandboxOptions};
