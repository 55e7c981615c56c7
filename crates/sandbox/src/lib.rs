//! An in-process Kubernetes API server ([`api`]) with authentication and RBAC
//! ([`access_control`]: named apart from the product's `auth`, which decides who may call
//! the cutover's HTTP API), a fault-injecting proxy in front of any API server ([`faults`]),
//! and a cluster simulator ([`sim`]: nodes, pods, Jobs, DaemonSet rollouts) that acts only
//! through the API, so it runs as well against a real API server that has no kubelet or
//! controller-manager.
//!
//! It knows nothing of what is tested against it: controllers of a product (such as an
//! agent on each node) run beside the simulator as clients of the API like any other.
//!
//! Feature `testing` adds [`testing`]: the integration-test harness (a cluster per test, on
//! this sandbox or on a real one) that this crate's suites and its users' suites share.

pub mod access_control;
pub mod api;
pub mod faults;
pub mod sim;
#[cfg(feature = "testing")]
pub mod testing;
