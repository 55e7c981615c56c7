//! The cluster the step scripts run against, with a namespace of their own: the
//! `CUTOVER_TEST_KUBECONFIG` cluster when set, else a sandbox that serves, besides its
//! builtins and the Flux and Cilium kinds, the workload kinds the steps read (Deployment,
//! StatefulSet, CronJob), which the sandbox does not have as builtins.

use crate::common::TestCluster;
use catalyst_cutover::sandbox::api::{ApiServerConfig, CustomResourceKind, flux_and_cilium_kinds};

/// A cluster and the namespace of one test.
pub type Cluster = TestCluster;

fn workload_kind(group: &str, kind: &str, plural: &str) -> CustomResourceKind {
    CustomResourceKind {
        group: group.to_owned(),
        version: "v1".to_owned(),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
        namespaced: true,
    }
}

/// Starts the cluster of one step test.
pub async fn start() -> Cluster {
    let mut custom_resources = flux_and_cilium_kinds();
    custom_resources.extend([
        workload_kind("apps", "Deployment", "deployments"),
        workload_kind("apps", "StatefulSet", "statefulsets"),
        workload_kind("batch", "CronJob", "cronjobs"),
    ]);
    TestCluster::start_with(ApiServerConfig {
        custom_resources,
        ..ApiServerConfig::default()
    })
    .await
}
