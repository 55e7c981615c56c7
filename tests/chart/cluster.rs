//! The cluster the step scripts run against, with a namespace of their own: the
//! `CUTOVER_TEST_KUBECONFIG` cluster when set, else a sandbox. Either way the real Flux and
//! Cilium CustomResourceDefinitions, as their projects publish them (`../shared/crds`), are
//! installed through the API, as on a cluster that has Flux and Cilium: never the sandbox's
//! cut-down copies, which serve `demo` and `catalyst-cutover sandbox` only.
//! `CUTOVER_TEST_CRDS` picks the set: `flux-2.6` (the default: Flux v2.6 with Cilium 1.16, the
//! oldest the chart supports) or `flux-latest` (the latest Flux release with Cilium as of
//! 2026). Only a real API server applies every rule of these schemas (patterns, `oneOf`,
//! CEL); the sandbox checks their types, enums and required fields.

use crate::common::TestCluster;
use crate::common::crds::install_definitions;

/// A cluster and the namespace of one test.
pub type Cluster = TestCluster;

/// Starts the cluster of one step test, with the Flux and Cilium definitions in place and
/// RBAC on (the scripts run under the chart's own ServiceAccounts).
pub async fn start() -> Cluster {
    let cluster = crate::live::start().await;
    install_definitions(&cluster.client()).await;
    cluster
}
