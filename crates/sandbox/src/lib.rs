//! An in-process Kubernetes API server ([`api`]) with authentication and RBAC ([`auth`]), a
//! fault-injecting proxy in front of any API server ([`faults`]), and a cluster simulator
//! ([`sim`]: nodes, pods, Jobs, DaemonSet rollouts) that acts only through the API, so it runs
//! as well against a real API server that has no kubelet or controller-manager.
//!
//! It knows nothing of what is tested against it: controllers of a product (such as an
//! agent on each node) run beside the simulator as clients of the API like any other.

pub mod api;
pub mod auth;
pub mod faults;
pub mod sim;
