//! The cluster the step scripts run against, with a namespace of their own: the
//! `CUTOVER_TEST_KUBECONFIG` cluster when set (with Flux and Cilium installed), else a
//! sandbox that serves, besides its builtins, the Flux and Cilium kinds.

use crate::common::TestCluster;
use catalyst_cutover::sandbox::api::{ApiServerConfig, flux_and_cilium_kinds};

/// A cluster and the namespace of one test.
pub type Cluster = TestCluster;

/// Starts the cluster of one step test.
pub async fn start() -> Cluster {
    TestCluster::start_with(ApiServerConfig {
        custom_resources: flux_and_cilium_kinds(),
        ..ApiServerConfig::default()
    })
    .await
}
