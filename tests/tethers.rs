//! The tether report (`GET /cutover/tethers`) and the completion gate, through a running
//! service's HTTP API against a Kubernetes API (the sandbox, or `CUTOVER_TEST_KUBECONFIG`)
//! with the real Flux definitions installed. Each test counts as upstream only hosts named
//! after its namespace, and nodes of its own pool, so that on a shared cluster other tests'
//! objects are no tethers of its own.

mod common;

use catalyst_cutover::pivot::{Direction, Directive, ack};
use catalyst_cutover::service::{Service, ServiceConfig};
use catalyst_cutover::tethers::TetherConfig;
use common::TestCluster;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::config::KubeConfigOptions;
use serde_json::{Value, json};

/// One test's cluster, the hosts it calls upstream and its running service.
struct Env {
    cluster: TestCluster,
    service: Service,
    /// An upstream host no mirror covers.
    upstream: String,
    /// An upstream registry the agents mirror.
    mirrored: String,
    /// The report's settings.
    tethers: TetherConfig,
}

impl Env {
    /// A cluster with the real Flux definitions and Crossplane's Provider kind, and a
    /// service whose tether report counts this test's hosts; `tune` adjusts the report's
    /// settings, `gate` turns the completion gate on.
    async fn start(tune: impl FnOnce(&mut TetherConfig), gate: bool) -> Env {
        let cluster = TestCluster::start().await;
        common::crds::install_definitions(&cluster.client()).await;
        common::crds::install_crossplane(&cluster.client()).await;
        let ns = cluster.namespace().to_owned();
        let upstream = format!("{ns}.upstream.test");
        let mirrored = format!("{ns}.mirror.test");
        let mut config = ServiceConfig::new(&ns);
        let mut tethers = TetherConfig::new(&ns, &config.record_lease());
        tethers.upstream_hosts = vec![upstream.clone(), mirrored.clone()];
        tethers.mirrored_registries = vec![mirrored.clone()];
        tethers.node_selector = Some(format!("{}={ns}", kube_sandbox::sim::LABEL_POOL));
        tethers.vcluster_registry = Some(upstream.clone());
        tune(&mut tethers);
        config.tethers = Some(tethers.clone());
        config.require_no_tethers = gate;
        config.render.backoff_limit = 1;
        let kube_config = kube::Config::from_custom_kubeconfig(
            cluster.kubeconfig().clone(),
            &KubeConfigOptions::default(),
        )
        .await
        .expect("kube config");
        let service = Service::start(kube_config, config)
            .await
            .expect("start service");
        Env {
            cluster,
            service,
            upstream,
            mirrored,
            tethers,
        }
    }

    fn ns(&self) -> &str {
        self.cluster.namespace()
    }

    fn client(&self) -> kube::Client {
        self.cluster.client()
    }

    /// `GET /cutover/tethers`.
    async fn report(&self) -> Value {
        let answer = reqwest::get(format!("{}/cutover/tethers", self.service.url()))
            .await
            .expect("GET /cutover/tethers");
        assert_eq!(answer.status(), 200);
        answer.json().await.expect("a JSON report")
    }

    /// This test's tethers (those naming its hosts), as `kind namespace/name field = value`.
    async fn mine(&self) -> Vec<String> {
        let report = self.report().await;
        report["tethers"]
            .as_array()
            .expect("tethers")
            .iter()
            .filter(|t| t["host"].as_str().is_some_and(|h| h.contains(self.ns())))
            .map(|t| {
                format!(
                    "{} {}/{} {} = {}",
                    t["kind"].as_str().unwrap_or_default(),
                    t["namespace"].as_str().unwrap_or("-"),
                    t["name"].as_str().unwrap_or_default(),
                    t["field"].as_str().unwrap_or_default(),
                    t["value"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }

    /// Waits until this test's tethers satisfy `check`; panics with the last seen.
    async fn until(&self, what: &str, check: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let synced = self.report().await["synced"] == json!(true);
            let mine = self.mine().await;
            if synced && check(&mine) {
                return mine;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never: {what}; the report holds {mine:#?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn finish(self) {
        self.service.shutdown().await;
        self.cluster.cleanup().await;
    }
}

fn has(tethers: &[String], needle: &str) -> bool {
    tethers.iter().any(|t| t.contains(needle))
}

fn flux(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

fn git_repositories() -> ApiResource {
    flux("source.toolkit.fluxcd.io", "v1", "GitRepository")
}
fn helm_repositories() -> ApiResource {
    flux("source.toolkit.fluxcd.io", "v1", "HelmRepository")
}
fn oci_repositories() -> ApiResource {
    flux("source.toolkit.fluxcd.io", "v1", "OCIRepository")
}
fn helm_releases() -> ApiResource {
    flux("helm.toolkit.fluxcd.io", "v2", "HelmRelease")
}
fn providers() -> ApiResource {
    flux("pkg.crossplane.io", "v1", "Provider")
}

/// Creates `object` (of `resource`) in `ns`, or cluster-wide when `ns` is `None`.
async fn create(client: &kube::Client, resource: &ApiResource, ns: Option<&str>, object: Value) {
    let mut object = object;
    object["apiVersion"] = json!(resource.api_version);
    object["kind"] = json!(resource.kind);
    let object: DynamicObject = serde_json::from_value(object).expect("an object");
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {} : {e}", resource.kind));
}

async fn patch(
    client: &kube::Client,
    resource: &ApiResource,
    ns: Option<&str>,
    name: &str,
    patch: Value,
) {
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patch {} {name}: {e}", resource.kind));
}

async fn delete(client: &kube::Client, resource: &ApiResource, ns: Option<&str>, name: &str) {
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    api.delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete {} {name}: {e}", resource.kind));
}

/// A pod `name` of one container `image` (with `env` and `args`), owned by the ReplicaSet
/// `owner` (name and UID, of [`replicaset`]) when given, on `node` when given.
fn pod(
    name: &str,
    image: &str,
    env: &[(&str, &str)],
    args: &[&str],
    owner: Option<&(String, String)>,
    node: Option<&str>,
) -> Pod {
    let env: Vec<Value> = env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let mut metadata = json!({"name": name});
    if let Some((replicaset, uid)) = owner {
        metadata["labels"] = json!({"pod-template-hash": "abc12"});
        metadata["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replicaset,
            "uid": uid, "controller": true
        }]);
    }
    let mut spec =
        json!({"containers": [{"name": "app", "image": image, "env": env, "args": args}]});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
        // Never scheduled by a simulator or kubelet: the pod stays as written.
        spec["schedulerName"] = json!("no-such-scheduler");
    }
    serde_json::from_value(json!({"metadata": metadata, "spec": spec})).expect("a Pod")
}

/// Creates the ReplicaSet `<deployment>-abc12` (no replicas: no controller acts on it) that
/// pods name as their owner, so that a garbage collector keeps them; its name and UID.
async fn replicaset(client: &kube::Client, ns: &str, deployment: &str) -> (String, String) {
    let name = format!("{deployment}-abc12");
    let rs: k8s_openapi::api::apps::v1::ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": deployment}},
                 "template": {"metadata": {"labels": {"app": deployment}},
                              "spec": {"containers": [{"name": "app", "image": "harbor.local/x:1"}]}}}
    }))
    .expect("a ReplicaSet");
    let made = Api::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &rs)
        .await
        .expect("create the ReplicaSet");
    (name, made.metadata.uid.expect("a UID"))
}

/// A node of this test's pool (cluster-scoped, named after the namespace).
async fn node(env: &Env, suffix: &str) -> String {
    let name = format!("{}-{suffix}", env.ns());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {kube_sandbox::sim::LABEL_POOL: env.ns()}}
    }))
    .expect("a Node");
    Api::<Node>::all(env.client())
        .create(&PostParams::default(), &node)
        .await
        .expect("create the node");
    name
}

async fn delete_node(env: &Env, name: &str) {
    let _ = Api::<Node>::all(env.client())
        .delete(name, &DeleteParams::default())
        .await;
}

/// Directs the agents to `v2` at `since` and acknowledges it for `nodes`, as the agents do.
async fn pivot(env: &Env, since: &str, nodes: &[&str]) {
    let record = ServiceConfig::new(env.ns()).record_lease();
    common::direct_agents(&env.client(), env.ns(), &record, Some(("v2", since))).await;
    let directive = Directive {
        direction: Direction::V2,
        since: since.to_owned(),
    };
    let leases: Api<Lease> = Api::namespaced(env.client(), env.ns());
    for node in nodes {
        ack::acknowledge(&leases, node, &directive)
            .await
            .expect("acknowledge");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_tether_is_reported_then_cleared_when_fixed() {
    let env = Env::start(|_| {}, false).await;
    let (ns, client, up) = (env.ns().to_owned(), env.client(), env.upstream.clone());
    let n1 = node(&env, "n1").await;
    let provider = format!("{ns}-aws");
    let hr = |name: &str, chart: &str, source: &str| {
        json!({"metadata": {"name": name}, "spec": {"interval": "1m",
            "chart": {"spec": {"chart": chart, "sourceRef": {"kind": "HelmRepository", "name": source}}}}})
    };
    let mut vcluster = hr("team-a", "vcluster", "local");
    vcluster["spec"]["values"] =
        json!({"controlPlane": {"advanced": {"defaultImageRegistry": format!("{up}/loft-sh")}}});
    let source = |name: &str, url: String| json!({"metadata": {"name": name}, "spec": {"interval": "1m", "url": url}});
    let mut oci_charts = source("charts", format!("oci://{up}/charts"));
    oci_charts["spec"]["type"] = json!("oci");
    let objects = [
        (
            git_repositories(),
            Some(ns.as_str()),
            source("platform", format!("ssh://git@{up}/org/platform")),
        ),
        (helm_repositories(), Some(&ns), oci_charts),
        (
            oci_repositories(),
            Some(&ns),
            source("manifests", format!("oci://{up}/manifests")),
        ),
        (
            helm_repositories(),
            Some(&ns),
            source("local", "https://harbor.local/chartrepo/x".to_owned()),
        ),
        (helm_releases(), Some(&ns), hr("web", "web", "charts")),
        (helm_releases(), Some(&ns), hr("quiet", "quiet", "local")),
        (helm_releases(), Some(&ns), vcluster),
        (
            providers(),
            None,
            json!({"metadata": {"name": provider},
            "spec": {"package": format!("{up}/crossplane-contrib/provider-aws:v1")}}),
        ),
    ];
    for (resource, namespace, object) in objects {
        create(&client, &resource, namespace, object).await;
    }
    let owner = replicaset(&client, &ns, "api").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(
        &PostParams::default(),
        &pod(
            "api-abc12-x",
            &format!("{up}/org/api:1"),
            &[("GITOPS_REPO", &format!("https://{up}/org/platform.git"))],
            &["--verbose"],
            Some(&owner),
            None,
        ),
    )
    .await
    .expect("pod");
    pods.create(
        &PostParams::default(),
        &pod(
            "api-abc12-y",
            &format!("{up}/org/api:1"),
            &[],
            &[],
            Some(&owner),
            None,
        ),
    )
    .await
    .expect("pod");
    pods.create(
        &PostParams::default(),
        &pod(
            "tool",
            "harbor.local/x/tool:1",
            &[],
            &[&format!("--pull=git@{up}:org/tools.git")],
            None,
            None,
        ),
    )
    .await
    .expect("pod");

    let seen = env.until("every kind reported", |t| t.len() >= 10).await;
    let expected = [
        format!("git-repository {ns}/platform spec.url = ssh://git@{up}/org/platform"),
        format!("helm-repository {ns}/charts spec.url = oci://{up}/charts"),
        format!("oci-repository {ns}/manifests spec.url = oci://{up}/manifests"),
        format!(
            "helm-release {ns}/web spec.chart.spec.sourceRef = HelmRepository/{ns}/charts (oci://{up}/charts)"
        ),
        format!(
            "image {ns}/deployment/api spec.template.spec.containers[app].image = {up}/org/api:1"
        ),
        format!(
            "container-url {ns}/deployment/api spec.template.spec.containers[app].env[GITOPS_REPO] = https://{up}/org/platform.git"
        ),
        format!(
            "container-url {ns}/pod/tool spec.containers[app].args[0] = --pull=git@{up}:org/tools.git"
        ),
        format!(
            "crossplane-provider -/{provider} spec.package = {up}/crossplane-contrib/provider-aws:v1"
        ),
        format!(
            "vcluster {ns}/team-a spec.values.controlPlane.advanced.defaultImageRegistry = {up}/loft-sh"
        ),
        format!(
            "unacked-node -/{n1} registry-pivot acknowledgement = no registry pivot directed yet"
        ),
    ];
    assert_eq!(seen, expected, "one entry per reference, ordered by kind");
    // The one-off snapshot (the CLI's, no service needed) lists the same.
    let snapshot = catalyst_cutover::tethers::snapshot(client.clone(), &env.tethers)
        .await
        .expect("a snapshot");
    assert!(snapshot.synced);
    let listed: Vec<(String, String)> = snapshot
        .tethers
        .iter()
        .filter(|t| t.host.contains(&ns))
        .map(|t| (t.name.clone(), t.value.clone()))
        .collect();
    assert_eq!(listed.len(), expected.len(), "{listed:#?}");
    let report = env.report().await;
    let first = &report["tethers"]
        .as_array()
        .expect("tethers")
        .iter()
        .find(|t| t["name"] == json!("platform"))
        .expect("platform")["since"];
    assert!(
        first
            .as_str()
            .is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok()),
        "since: {first}"
    );

    // Fixed, one by one: each disappears, the rest stay.
    patch(
        &client,
        &git_repositories(),
        Some(&ns),
        "platform",
        json!({"spec": {"url": "https://gitea.local/org/platform"}}),
    )
    .await;
    delete(&client, &helm_repositories(), Some(&ns), "charts").await;
    patch(
        &client,
        &oci_repositories(),
        Some(&ns),
        "manifests",
        json!({"spec": {"url": "oci://harbor.local/manifests"}}),
    )
    .await;
    patch(
        &client,
        &providers(),
        None,
        &provider,
        json!({"spec": {"package": "harbor.local/xpkg/provider-aws:v1"}}),
    )
    .await;
    patch(&client, &helm_releases(), Some(&ns), "team-a", json!({"spec": {"values": {"controlPlane": {"advanced": {"defaultImageRegistry": "harbor.local/ghcr-io"}}}}})).await;
    pods.delete("api-abc12-x", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
    let left = env.until("the fixed ones cleared", |t| t.len() == 3).await;
    assert_eq!(
        left,
        [
            format!(
                "image {ns}/deployment/api spec.template.spec.containers[app].image = {up}/org/api:1"
            ),
            format!(
                "container-url {ns}/pod/tool spec.containers[app].args[0] = --pull=git@{up}:org/tools.git"
            ),
            format!(
                "unacked-node -/{n1} registry-pivot acknowledgement = no registry pivot directed yet"
            ),
        ],
        "the HelmRelease went with its source; the Deployment's other pod holds its image"
    );
    delete(&client, &providers(), None, &provider).await;
    delete_node(&env, &n1).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_no_tethers_on_nodes_that_acknowledged_the_pivot_to_a_mirror() {
    let env = Env::start(|_| {}, false).await;
    let (ns, client) = (env.ns().to_owned(), env.client());
    let (mirrored, up) = (env.mirrored.clone(), env.upstream.clone());
    let n1 = node(&env, "n1").await;
    let n2 = node(&env, "n2").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(
        &PostParams::default(),
        &pod(
            "a",
            &format!("{mirrored}/org/a:1"),
            &[],
            &[],
            None,
            Some(&n1),
        ),
    )
    .await
    .expect("pod");
    pods.create(
        &PostParams::default(),
        &pod(
            "b",
            &format!("{mirrored}/org/b:1"),
            &[],
            &[],
            None,
            Some(&n2),
        ),
    )
    .await
    .expect("pod");
    pods.create(
        &PostParams::default(),
        &pod("c", &format!("{up}/org/c:1"), &[], &[], None, Some(&n1)),
    )
    .await
    .expect("pod");
    env.until("three images and two nodes", |t| t.len() == 5)
        .await;

    pivot(&env, "2026-01-01T00:00:00Z", &[&n1]).await;
    let half = env.until("n1 acknowledged", |t| t.len() == 3).await;
    assert!(
        has(&half, "pod/b") && has(&half, "pod/c") && has(&half, &format!("unacked-node -/{n2}")),
        "{half:#?}"
    );
    assert!(has(
        &half,
        "no acknowledgement of the registry pivot given at 2026-01-01T00:00:00Z"
    ));

    pivot(&env, "2026-01-01T00:00:00Z", &[&n2]).await;
    let done = env.until("both acknowledged", |t| t.len() == 1).await;
    assert_eq!(
        done,
        [format!(
            "image {ns}/pod/c spec.containers[app].image = {up}/org/c:1"
        )],
        "a host no mirror covers stays a tether on a pivoted node"
    );
    // A new pivot: the earlier acknowledgements answer it no longer.
    pivot(&env, "2026-02-01T00:00:00Z", &[]).await;
    env.until("a new directive waits for new acknowledgements", |t| {
        t.len() == 5
    })
    .await;
    delete_node(&env, &n1).await;
    delete_node(&env, &n2).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gating_tether_fails_the_cutover_by_name_and_a_retry_completes_once_fixed() {
    let env = Env::start(|_| {}, true).await;
    let (ns, client, up) = (env.ns().to_owned(), env.client(), env.upstream.clone());
    let sim = common::steps_on_one_node(&env.cluster, &[common::job_step(1, "only", &[])]).await;
    let nodes: Vec<String> = Api::<Node>::all(client.clone())
        .list(
            &kube::api::ListParams::default()
                .labels(&format!("{}={ns}", kube_sandbox::sim::LABEL_POOL)),
        )
        .await
        .expect("nodes")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    let node_refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
    pivot(&env, "2026-01-01T00:00:00Z", &node_refs).await;
    create(
        &client,
        &git_repositories(),
        Some(&ns),
        json!({"metadata": {"name": "platform"},
        "spec": {"interval": "1m", "url": format!("https://{up}/org/platform")}}),
    )
    .await;
    let provider = format!("{ns}-aws");
    create(
        &client,
        &providers(),
        None,
        json!({"metadata": {"name": provider},
        "spec": {"package": format!("{up}/crossplane-contrib/provider-aws:v1")}}),
    )
    .await;
    env.until("the tethers seen", |t| t.len() == 2).await;

    let base = env.service.url();
    assert_eq!(common::post_status(&base, "/cutover").await, 202);
    let failed = wait_phase(&env, "failed").await;
    let why = failed.get("lastError").cloned().unwrap_or_default();
    assert!(why.contains(&format!("1 tether(s) still point upstream: git-repository {ns}/platform spec.url = https://{up}/org/platform")), "{why}");
    assert!(
        !why.contains("crossplane"),
        "non-gating kinds never gate: {why}"
    );
    assert_eq!(failed.get("failedStep").map(String::as_str), Some("only"));

    patch(
        &client,
        &git_repositories(),
        Some(&ns),
        "platform",
        json!({"spec": {"url": "https://gitea.local/org/platform"}}),
    )
    .await;
    env.until("the GitRepository cleared", |t| t.len() == 1)
        .await;
    assert_eq!(common::post_status(&base, "/cutover/retry").await, 202);
    let done = wait_phase(&env, "complete").await;
    assert_eq!(
        done.get("cutoverComplete").map(String::as_str),
        Some("true")
    );
    assert!(
        has(&env.mine().await, "crossplane-provider"),
        "reported, never gating"
    );
    delete(&client, &providers(), None, &provider).await;
    sim.shutdown().await;
    env.finish().await;
}

/// Waits until the status ConfigMap's `cutoverPhase` is `phase`; its data then.
async fn wait_phase(env: &Env, phase: &str) -> std::collections::BTreeMap<String, String> {
    let api: Api<ConfigMap> = Api::namespaced(env.client(), env.ns());
    let read = || async {
        api.get_opt(catalyst_cutover::contract::DEFAULT_STATUS_CONFIGMAP)
            .await
            .ok()
            .flatten()
            .and_then(|c| c.data)
            .unwrap_or_default()
    };
    common::eventually(&format!("the cutover is {phase}"), || async {
        read().await.get("cutoverPhase").map(String::as_str) == Some(phase)
    })
    .await;
    read().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cluster_wide_reads_the_report_names_what_it_cannot_see() {
    let env = Env::start(|c| c.cluster_wide = false, false).await;
    env.until("synced", |_| true).await;
    let report = env.report().await;
    let unseen: Vec<(String, String)> = report["unseen"]
        .as_array()
        .expect("unseen")
        .iter()
        .map(|u| {
            (
                u["source"].as_str().unwrap_or_default().to_owned(),
                u["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let sources: Vec<&str> = unseen.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        sources,
        [
            "nodes",
            "pods",
            "gitrepositories.source.toolkit.fluxcd.io",
            "helmrepositories.source.toolkit.fluxcd.io",
            "ocirepositories.source.toolkit.fluxcd.io",
            "helmreleases.helm.toolkit.fluxcd.io",
            "providers.pkg.crossplane.io",
        ]
    );
    assert!(
        unseen
            .iter()
            .all(|(_, why)| why.contains("tethers.clusterWide=false")),
        "{unseen:?}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_and_huge_values_are_bounded_and_hostile_strings_kept_as_data() {
    let env = Env::start(|_| {}, false).await;
    let (ns, client, up) = (env.ns().to_owned(), env.client(), env.upstream.clone());
    let huge = format!("https://{up}/{}", "a".repeat(100_000));
    let hostile = format!("\u{1b}[31mred\u{7} https://{up}/x <script>alert(1)</script>");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(
        &PostParams::default(),
        &pod(
            "odd",
            "harbor.local/x:1",
            &[("HUGE", &huge), ("HOSTILE", &hostile), ("EMPTY", "")],
            &["", "git@", "://", "@:"],
            None,
            None,
        ),
    )
    .await
    .expect("pod");
    // A HelmRelease naming a source that does not exist, and one whose chart comes by chartRef.
    create(&client, &helm_releases(), Some(&ns), json!({"metadata": {"name": "dangling"},
        "spec": {"interval": "1m", "chart": {"spec": {"chart": "x", "sourceRef": {"kind": "HelmRepository", "name": "nowhere"}}}}})).await;
    create(
        &client,
        &oci_repositories(),
        Some(&ns),
        json!({"metadata": {"name": "chart"},
        "spec": {"interval": "1m", "url": format!("oci://{up}/chart")}}),
    )
    .await;
    create(
        &client,
        &helm_releases(),
        Some(&ns),
        json!({"metadata": {"name": "by-ref"},
        "spec": {"interval": "1m", "chartRef": {"kind": "OCIRepository", "name": "chart"}}}),
    )
    .await;
    let seen = env
        .until("the odd pod and the chartRef", |t| t.len() == 4)
        .await;
    let huge_entry = seen
        .iter()
        .find(|t| t.contains("env[HUGE]"))
        .expect("the huge value");
    assert!(
        huge_entry.chars().count() < 700 && huge_entry.ends_with('…'),
        "bounded: {} chars",
        huge_entry.len()
    );
    assert!(
        has(&seen, &hostile),
        "a hostile value is data, kept whole when short: {seen:#?}"
    );
    assert!(has(
        &seen,
        &format!(
            "helm-release {ns}/by-ref spec.chartRef = OCIRepository/{ns}/chart (oci://{up}/chart)"
        )
    ));
    assert!(!has(&seen, "dangling"));
    env.finish().await;
}

/// Without the tethers ClusterRole (only the Leases of its namespace readable), a report
/// that is meant to read cluster-wide names each source it is refused, and never syncs: the
/// completion gate then waits rather than take "nothing seen" for "nothing there".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_source_is_named_as_forbidden_and_keeps_the_report_unsynced() {
    let cluster = TestCluster::start_with(kube_sandbox::api::ApiServerConfig {
        tokens: Some(kube_sandbox::access_control::TokenTable::default()),
        ..kube_sandbox::api::ApiServerConfig::default()
    })
    .await;
    let (admin, ns) = (cluster.client(), cluster.namespace().to_owned());
    common::crds::install_definitions(&admin).await;
    common::create_service_account(&admin, &ns, "reader").await;
    let role: k8s_openapi::api::rbac::v1::ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": format!("{ns}-leases")},
        "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["list", "watch"]}]
    }))
    .expect("a ClusterRole");
    let probe = k8s_openapi::api::authorization::v1::ResourceAttributes {
        verb: Some("list".to_owned()),
        group: Some("coordination.k8s.io".to_owned()),
        resource: Some("leases".to_owned()),
        namespace: Some(ns.clone()),
        ..Default::default()
    };
    common::grant_probed(&admin, &ns, "reader", role, probe).await;
    let token = common::token_of(
        &common::request_token(&admin, &ns, "reader", None)
            .await
            .expect("a token"),
    );
    let reader = common::client_with_token(&cluster, &token).await;
    let mut config = TetherConfig::new(&ns, &ServiceConfig::new(&ns).record_lease());
    config.upstream_hosts = vec![format!("{ns}.upstream.test")];
    let report = catalyst_cutover::tethers::snapshot(reader, &config)
        .await
        .expect("a snapshot");
    assert!(!report.synced, "{report:?}");
    let reason = |source: &str| {
        report
            .unseen
            .iter()
            .find(|u| u.source == source)
            .map(|u| u.reason.clone())
            .unwrap_or_default()
    };
    for source in ["pods", "nodes", "gitrepositories.source.toolkit.fluxcd.io"] {
        let why = reason(source);
        assert!(
            why.contains("forbidden") && why.contains("tethers.clusterWide"),
            "{source}: {why:?}"
        );
    }
    assert_eq!(
        reason("leases.coordination.k8s.io"),
        "",
        "its own namespace's Leases are seen"
    );
    assert!(matches!(
        catalyst_cutover::tethers::gate::decide(&report),
        catalyst_cutover::tethers::gate::Verdict::Unsynced(_)
    ));
    cluster.cleanup().await;
}
