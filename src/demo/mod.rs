//! The cutover's side of the embedded sandbox (cargo feature `sandbox`): the registry-pivot
//! agent that each simulated node runs ([`agent`], [`ack`] decides), and the whole embedded
//! cluster ([`Sandbox`]: the `kube-sandbox` API server and simulator with these agents) that
//! the `demo` and `sandbox` subcommands, the tests and the benches start.

pub mod ack;
pub mod agent;
pub mod cluster;

pub use agent::{AgentConfig, Agents};
pub use cluster::{Sandbox, SandboxError, SandboxOptions};
