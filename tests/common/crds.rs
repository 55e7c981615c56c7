//! The real Flux and Cilium CustomResourceDefinitions, as their projects publish them
//! (`../shared/crds`), installed through the API as on a cluster that has Flux and Cilium.
//! `CUTOVER_TEST_CRDS` picks the set: `flux-2.6` (the default: Flux v2.6 with Cilium 1.16, the
//! oldest the chart supports) or `flux-latest` (the latest Flux release with Cilium as of
//! 2026).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// Marks a definition this suite installed, with a digest of its content: another run may
/// update it, while a definition that Flux or Cilium installed is never touched.
const INSTALLED_BY: &str = "catalyst.openova.io/installed-by-tests";

/// `shared/crds` beside an ancestor of this checkout (the project's `../shared`).
fn shared_crds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/crds"))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "no shared/crds beside this checkout: the chart's tests install the real Flux \
                 and Cilium definitions from the project's ../shared/crds (see its README)"
            )
        })
}

/// The folders of the set `CUTOVER_TEST_CRDS` names.
fn crd_set() -> (&'static str, &'static str) {
    match std::env::var("CUTOVER_TEST_CRDS").as_deref() {
        Err(_) | Ok("" | "flux-2.6") => (
            "flux-2.6",
            "cilium/ciliumclusterwidenetworkpolicies-1.16.yaml",
        ),
        Ok("flux-latest") => (
            "flux-latest",
            "cilium/ciliumclusterwidenetworkpolicies-2026.yaml",
        ),
        Ok(other) => panic!("CUTOVER_TEST_CRDS={other}: use flux-2.6 or flux-latest"),
    }
}

/// The real definitions of the chosen set, parsed once.
pub fn definitions() -> &'static [serde_json::Value] {
    static DEFINITIONS: OnceLock<Vec<serde_json::Value>> = OnceLock::new();
    DEFINITIONS.get_or_init(|| {
        let root = shared_crds();
        let (flux, cilium) = crd_set();
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(flux))
            .unwrap_or_else(|e| panic!("{}/{flux}: {e}", root.display()))
            .map(|entry| entry.expect("dir entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        files.push(root.join(cilium));
        let mut out = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let value = serde_json::Value::deserialize(doc)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                if !value.is_null() {
                    out.push(value);
                }
            }
        }
        out
    })
}

/// Installs every definition that is missing (or an older one of this suite's), then waits
/// until each is Established and listed by discovery. Tests of one run call this at once on
/// a shared cluster: a create that loses the race answers 409 and is as good as a win.
pub async fn install_definitions(client: &kube::Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for manifest in definitions() {
        let digest = hex::encode(Sha256::digest(manifest.to_string()));
        let mut crd: CustomResourceDefinition =
            serde_json::from_value(manifest.clone()).expect("a definition");
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

/// Crossplane's Provider definition.
pub const PROVIDERS_CRD: &str = "providers.pkg.crossplane.io";

/// Crossplane's Provider kind (pkg.crossplane.io/v1, cluster-scoped): the part of its
/// schema the step touches, the rest kept as Crossplane keeps it.
pub fn providers_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "metadata": {"name": PROVIDERS_CRD},
        "spec": {
            "group": "pkg.crossplane.io",
            "scope": "Cluster",
            "names": {"kind": "Provider", "listKind": "ProviderList",
                      "plural": "providers", "singular": "provider"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["package"], "properties": {
                        "package": {"type": "string"},
                        "packagePullPolicy": {"type": "string"},
                        "packagePullSecrets": {"type": "array", "items": {
                            "type": "object", "properties": {"name": {"type": "string"}}}},
                        "revisionActivationPolicy": {"type": "string"}}},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
            }],
        },
    }))
    .expect("CustomResourceDefinition")
}

/// Waits until discovery does (`served`) or does not list the Providers.
pub async fn providers_served(client: &kube::Client, served: bool) {
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let listed = client
                .list_api_group_resources("pkg.crossplane.io/v1")
                .await
                .is_ok_and(|l| l.resources.iter().any(|r| r.name == "providers"));
            if listed == served {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(found.is_ok(), "Providers served: never {served}");
}

/// Installs Crossplane's Provider kind (another test's is as good) and waits until it is served.
pub async fn install_crossplane(client: &kube::Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    match api.create(&PostParams::default(), &providers_crd()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("create {PROVIDERS_CRD}: {e}"),
    }
    providers_served(client, true).await;
}
