//! The cluster the step scripts run against, with a namespace of their own: the
//! `CUTOVER_TEST_KUBECONFIG` cluster when set, else a sandbox. Either way the Flux and Cilium
//! CustomResourceDefinitions the steps need are installed through the API, as on a cluster
//! that has Flux and Cilium.

use crate::common::TestCluster;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube_sandbox::api::flux_and_cilium_crds;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A cluster and the namespace of one test.
pub type Cluster = TestCluster;

/// Marks a definition this suite installed, with a digest of its content: another run may
/// update it, while a definition that Flux or Cilium installed is never touched.
const INSTALLED_BY: &str = "catalyst.openova.io/installed-by-tests";

/// Starts the cluster of one step test, with the Flux and Cilium definitions in place and
/// RBAC on (the scripts run under the chart's own ServiceAccounts).
pub async fn start() -> Cluster {
    let cluster = crate::live::start().await;
    install_definitions(&cluster.client()).await;
    cluster
}

/// Installs every definition that is missing (or an older one of this suite's), then waits
/// until each is Established and listed by discovery. Tests of one run call this at once on
/// a shared cluster: a create that loses the race answers 409 and is as good as a win.
async fn install_definitions(client: &kube::Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for manifest in flux_and_cilium_crds() {
        let digest = hex::encode(Sha256::digest(manifest.to_string()));
        let mut crd: CustomResourceDefinition =
            serde_json::from_value(manifest).expect("an embedded definition");
        crd.metadata
            .annotations
            .get_or_insert_default()
            .insert(INSTALLED_BY.to_owned(), digest.clone());
        let name = crd.metadata.name.clone().unwrap_or_default();
        install_one(&api, &name, &crd, &digest).await;
        wait_until_served(client, &api, &name, &crd).await;
    }
}

async fn install_one(
    api: &Api<CustomResourceDefinition>,
    name: &str,
    crd: &CustomResourceDefinition,
    digest: &str,
) {
    loop {
        match api.create(&PostParams::default(), crd).await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("create CustomResourceDefinition {name}: {e}"),
        }
        let current = api.get(name).await.expect("read the existing definition");
        let ours = current
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(INSTALLED_BY));
        match ours {
            // Flux's or Cilium's own, or this version of ours: leave it.
            None => return,
            Some(d) if d == digest => return,
            Some(_) => {}
        }
        let mut next = crd.clone();
        next.metadata.resource_version = current.metadata.resource_version.clone();
        match api.replace(name, &PostParams::default(), &next).await {
            Ok(_) => return,
            // Another test updated it first: read it again.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("update CustomResourceDefinition {name}: {e}"),
        }
    }
}

/// Waits until `name` is Established and discovery lists its kinds (kubectl finds resources
/// through discovery).
async fn wait_until_served(
    client: &kube::Client,
    api: &Api<CustomResourceDefinition>,
    name: &str,
    crd: &CustomResourceDefinition,
) {
    let served = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let current = api.get(name).await.expect("read the definition");
            let established = current
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            let mut listed = established;
            for version in crd.spec.versions.iter().filter(|v| v.served) {
                let gv = format!("{}/{}", crd.spec.group, version.name);
                listed = listed
                    && client
                        .list_api_group_resources(&gv)
                        .await
                        .is_ok_and(|l| l.resources.iter().any(|r| r.name == crd.spec.names.plural));
            }
            if listed {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        served.is_ok(),
        "{name} was never established and discovered"
    );
}
