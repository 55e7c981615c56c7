//! Behaviour of steps 09 to 11 (and of the preflight's checks for them, and of the reports
//! of steps 01 and 02), run for real with `sh` as [`crate::steps`] runs the others: kubectl
//! against the cluster under test, the Gitea stand-in for the token API. What a step reports
//! lands in a file standing for its termination message (`TERMINATION_LOG`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::common::crds::{PROVIDERS_CRD, install_crossplane, providers_served};
use crate::standins::{self, AccessToken, Gitea, Harbor, PASSWORD, USER};
use crate::steps::{
    Outcome, Runner, STEP_00, STEP_01, STEP_02, UPSTREAM_REPO, create_git_repository, env,
    failed_checks, gitea_calls, gitea_with_org, harbor_settings, mirror_settings, on_cluster,
    pivot_daemonset, preflight_settings, require_tools, upstream_repository,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value as Json, json};

/// Steps 10 and 11 (and the preflight's checks of them) read what the whole cluster holds:
/// every vcluster, every Provider, whether Crossplane is installed. On a shared cluster the
/// tests that arrange those take turns, each starting on a cluster without vclusters and
/// leaving none (see [`no_vclusters`]).
static CLUSTER_WIDE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Marks the vclusters these tests make, so that a turn can remove those a failed test left.
const TEST_VCLUSTER: &str = "catalyst.openova.io/test-vcluster";

/// A turn at the cluster-wide state, on a cluster without vclusters: those an earlier test
/// left (it failed before removing them) are removed; any other stops the test.
async fn cluster_wide_turn(cluster: &Cluster) -> tokio::sync::MutexGuard<'static, ()> {
    let turn = CLUSTER_WIDE.lock().await;
    let all: Api<StatefulSet> = Api::all(cluster.client());
    let left = kube::api::ListParams::default().labels(&format!("app=vcluster,{TEST_VCLUSTER}"));
    for sts in all.list(&left).await.expect("list vclusters").items {
        let ns = sts.metadata.namespace.clone().unwrap_or_default();
        let name = sts.metadata.name.clone().unwrap_or_default();
        let _ = Api::<StatefulSet>::namespaced(cluster.client(), &ns)
            .delete(&name, &DeleteParams::default())
            .await;
    }
    let any = kube::api::ListParams::default().labels("app=vcluster");
    let none = tokio::time::timeout(Duration::from_secs(60), async {
        while !all
            .list(&any)
            .await
            .expect("list vclusters")
            .items
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        none.is_ok(),
        "the cluster runs vclusters these tests did not make"
    );
    turn
}

/// Removes this test's vclusters, so that the next test's turn starts without them.
async fn no_vclusters(cluster: &Cluster) {
    let api: Api<StatefulSet> = Api::namespaced(cluster.client(), cluster.namespace());
    let params = kube::api::ListParams::default().labels("app=vcluster");
    api.delete_collection(&DeleteParams::default(), &params)
        .await
        .expect("delete the vclusters");
}

/// The file standing for the step container's termination message, empty and writable.
fn termination_log(runner: &Runner) -> std::path::PathBuf {
    let path = runner
        .dir
        .join(format!("termination-log-{}", uuid::Uuid::new_v4()));
    std::fs::write(&path, "").expect("termination log");
    path
}

/// What the step reported: the JSON object in its termination message.
fn reported(path: &std::path::Path) -> Json {
    let text = std::fs::read_to_string(path).expect("read the termination log");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
}

/// Runs `file` with `settings` and a termination log; the outcome and what it reported (the
/// raw text: a failure writes its reason there).
async fn run_reporting(
    runner: &Runner,
    file: &str,
    settings: &BTreeMap<String, String>,
) -> (Outcome, std::path::PathBuf) {
    let log = termination_log(runner);
    let mut settings = settings.clone();
    settings.insert("TERMINATION_LOG".into(), log.display().to_string());
    (runner.run(file, &settings).await, log)
}

// ---------------------------------------------------------------------------------------
// 01 and 02 report the console's figures.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_mirror_and_harbor_projects_report_the_consoles_figures() {
    require_tools();
    let runner = Runner::new(None);
    let gitea = gitea_with_org().await;
    let upstream = upstream_repository(&runner, "flux-system");
    let (run, log) = run_reporting(&runner, STEP_01, &mirror_settings(&gitea, &upstream)).await;
    run.succeeds();
    let head = standins::run_git(Some(&upstream), &["rev-parse", "refs/heads/main"])
        .expect("upstream head");
    assert_eq!(reported(&log), json!({"mirroredCommitSHA": head}));

    let harbor = standins::harbor(Harbor::default()).await;
    let (run, log) = run_reporting(&runner, STEP_02, &harbor_settings(&harbor)).await;
    run.succeeds();
    assert_eq!(
        reported(&log),
        json!({"harborProjectCount": "3"}),
        "docker.io ghcr.io registry.k8s.io"
    );
}

// ---------------------------------------------------------------------------------------
// 09 gitea-token-mint
// ---------------------------------------------------------------------------------------

const STEP_09: &str = "09-gitea-token-mint.yaml";
const TOKEN_SECRET: &str = "catalyst-git-token";
const TOKEN_NAME: &str = "catalyst-provisioning";
const GITHUB_TOKEN: &str = "ghp_upstreamGitHubTokenOfTheProvisioning";

fn token_settings(cluster: &Cluster, gitea: &standins::Server<Gitea>) -> BTreeMap<String, String> {
    env(&[
        ("GITEA_URL", &gitea.url),
        ("GITEA_USERNAME", USER),
        ("GITEA_PASSWORD", PASSWORD),
        ("GITEA_TOKEN_SECRET_NAMESPACE", cluster.namespace()),
        ("GITEA_TOKEN_SECRET_NAME", TOKEN_SECRET),
        ("GITEA_TOKEN_SECRET_KEY", "token"),
        ("GITEA_TOKEN_NAME", TOKEN_NAME),
        (
            "GITEA_TOKEN_SCOPES",
            "write:organization,write:repository,read:user",
        ),
        ("HTTP_TIMEOUT_SECONDS", "10"),
    ])
}

fn secrets(cluster: &Cluster) -> Api<Secret> {
    Api::namespaced(cluster.client(), cluster.namespace())
}

/// The provisioning's Secret as the platform made it: an upstream GitHub token, and a key the
/// step must leave alone.
async fn provisioning_secret(cluster: &Cluster) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": TOKEN_SECRET},
        "stringData": {"token": GITHUB_TOKEN, "username": "openova-bot"},
    }))
    .expect("Secret");
    secrets(cluster)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the Secret");
}

/// `key` of the provisioning's Secret.
async fn stored(cluster: &Cluster, key: &str) -> String {
    let secret = secrets(cluster)
        .get(TOKEN_SECRET)
        .await
        .expect("read Secret");
    let value = secret
        .data
        .unwrap_or_default()
        .remove(key)
        .unwrap_or_else(|| panic!("no {key}"));
    String::from_utf8(value.0).expect("UTF-8")
}

fn tokens(gitea: &standins::Server<Gitea>) -> Vec<AccessToken> {
    gitea.state.lock().expect("lock").tokens.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_token_mint_replaces_the_github_token_once_and_keeps_a_working_one() {
    let (cluster, runner) = on_cluster().await;
    provisioning_secret(&cluster).await;
    let gitea = standins::gitea(Gitea::default()).await;
    let settings = token_settings(&cluster, &gitea);

    let (first, log) = run_reporting(&runner, STEP_09, &settings).await;
    first.succeeds();
    first.says("stored the token under token of the Secret");
    let minted = tokens(&gitea);
    assert_eq!(minted.len(), 1, "{minted:?}");
    assert_eq!(minted[0].name, TOKEN_NAME);
    assert_eq!(
        minted[0].scopes,
        ["write:organization", "write:repository", "read:user"]
    );
    assert_eq!(stored(&cluster, "token").await, minted[0].value);
    assert_eq!(
        stored(&cluster, "username").await,
        "openova-bot",
        "the other keys stay"
    );
    assert_eq!(
        reported(&log),
        json!({"giteaTokenName": TOKEN_NAME,
               "giteaTokenSecret": format!("{}/{TOKEN_SECRET}", cluster.namespace())})
    );
    assert!(
        !first.output.contains(&minted[0].value),
        "the token is never printed"
    );
    gitea_calls(&gitea);

    // Again: the stored token still works, so nothing is minted.
    let (second, log) = run_reporting(&runner, STEP_09, &settings).await;
    second.succeeds();
    second.says("which still works; nothing to do");
    assert_eq!(tokens(&gitea), minted);
    let calls = gitea_calls(&gitea);
    assert!(
        calls.iter().all(|c| c.starts_with("GET ")),
        "a rerun only reads: {calls:?}"
    );
    assert_eq!(reported(&log)["giteaTokenName"], TOKEN_NAME);
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_token_mint_replaces_a_token_whose_value_was_lost_or_is_short_of_a_scope() {
    let (cluster, runner) = on_cluster().await;
    provisioning_secret(&cluster).await;
    // A token of that name exists already (a run that crashed before storing it), so its
    // name is taken and its value is lost.
    let gitea = standins::gitea(Gitea {
        tokens: vec![AccessToken {
            id: 7,
            name: TOKEN_NAME.into(),
            value: "0123456789abcdef0123456789abcdef01234567".into(),
            scopes: vec!["write:repository".into()],
        }],
        minted: 7,
        ..Gitea::default()
    })
    .await;
    let mut settings = token_settings(&cluster, &gitea);
    let run = runner.run(STEP_09, &settings).await;
    run.succeeds();
    run.says("deleting it to mint it again");
    let now = tokens(&gitea);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0].id, 7);
    assert_eq!(stored(&cluster, "token").await, now[0].value);

    // Another scope is asked for: the token is minted again with it.
    settings.insert(
        "GITEA_TOKEN_SCOPES".into(),
        "write:organization,write:repository,read:user,write:package".into(),
    );
    let run = runner.run(STEP_09, &settings).await;
    run.succeeds();
    let again = tokens(&gitea);
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].id, now[0].id);
    assert!(again[0].scopes.contains(&"write:package".to_owned()));
    assert_eq!(stored(&cluster, "token").await, again[0].value);

    // Gitea revoked it meanwhile (deleted in its UI): the stored one no longer works.
    gitea.state.lock().expect("lock").tokens.clear();
    let run = runner.run(STEP_09, &settings).await;
    run.succeeds();
    let last = tokens(&gitea);
    assert_eq!(last.len(), 1);
    assert_eq!(stored(&cluster, "token").await, last[0].value);
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_token_mint_fails_clearly_and_mints_nothing_it_cannot_store() {
    let (cluster, runner) = on_cluster().await;
    let gitea = standins::gitea(Gitea::default()).await;
    let settings = token_settings(&cluster, &gitea);

    // No Secret: nothing is minted.
    let (run, log) = run_reporting(&runner, STEP_09, &settings).await;
    run.fails_with(&format!(
        "cannot read the Secret {}/{TOKEN_SECRET}",
        cluster.namespace()
    ));
    assert!(tokens(&gitea).is_empty());
    let reason = std::fs::read_to_string(&log).expect("log");
    assert!(
        reason.starts_with("gitea-token-mint: cannot read the Secret"),
        "{reason}"
    );

    // A token for a password: Gitea refuses, and the step says what to put there.
    provisioning_secret(&cluster).await;
    let mut wrong = settings.clone();
    wrong.insert("GITEA_PASSWORD".into(), "a-token-not-a-password".into());
    runner
        .run(STEP_09, &wrong)
        .await
        .fails_with("minting a token needs GITEA_USERNAME's password");
    assert!(tokens(&gitea).is_empty());
    assert_eq!(stored(&cluster, "token").await, GITHUB_TOKEN);

    let mut unset = settings.clone();
    unset.insert("GITEA_TOKEN_SECRET_NAME".into(), String::new());
    runner
        .run(STEP_09, &unset)
        .await
        .fails_with("setting GITEA_TOKEN_SECRET_NAME is empty");
    cluster.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// 10 vcluster-registry-pivot
// ---------------------------------------------------------------------------------------

const STEP_10: &str = "10-vcluster-registry-pivot.yaml";
const HARBOR: &str = "harbor.sovereign.test";

fn vcluster_settings(helm_releases: &str) -> BTreeMap<String, String> {
    env(&[
        ("HARBOR_REGISTRY", HARBOR),
        ("VCLUSTER_REGISTRY", "ghcr.io"),
        ("UPSTREAM_REGISTRIES", "docker.io ghcr.io"),
        ("VCLUSTER_HELMRELEASES", helm_releases),
    ])
}

fn helm_release_api(cluster: &Cluster) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("helm.toolkit.fluxcd.io", "v2", "HelmRelease");
    Api::namespaced_with(
        cluster.client(),
        cluster.namespace(),
        &ApiResource::from_gvk(&gvk),
    )
}

/// A Flux HelmRelease of `chart` named `name`, with values of its own.
async fn helm_release(cluster: &Cluster, name: &str, chart: &str) {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": name},
        "spec": {
            "interval": "10m",
            "chart": {"spec": {"chart": chart, "version": "0.26.0",
                               "sourceRef": {"kind": "HelmRepository", "name": "loft"}}},
            "values": {"controlPlane": {"statefulSet": {"resources": {"limits": {"memory": "2Gi"}}}},
                       "sync": {"toHost": {"ingresses": {"enabled": true}}}},
        },
    }))
    .expect("HelmRelease");
    helm_release_api(cluster)
        .create(&PostParams::default(), &object)
        .await
        .expect("create HelmRelease");
}

/// The StatefulSet the vcluster chart runs for Helm release `release`.
async fn vcluster_statefulset(cluster: &Cluster, release: &str) {
    let labels = json!({"app": "vcluster", "release": release});
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": release,
                     "labels": {"app": "vcluster", "release": release, TEST_VCLUSTER: "true"}},
        "spec": {
            "serviceName": format!("{release}-headless"),
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "syncer",
                                                  "image": "ghcr.io/loft-sh/vcluster-oss:0.26.0"}]}},
        },
    }))
    .expect("StatefulSet");
    Api::<StatefulSet>::namespaced(cluster.client(), cluster.namespace())
        .create(&PostParams::default(), &sts)
        .await
        .expect("create StatefulSet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vcluster_registry_pivot_without_vclusters_succeeds_saying_so() {
    let (cluster, runner) = on_cluster().await;
    let _turn = cluster_wide_turn(&cluster).await;
    let (run, log) = run_reporting(&runner, STEP_10, &vcluster_settings("")).await;
    run.succeeds();
    run.says("no vclusters in the cluster; nothing to pivot");
    assert_eq!(reported(&log), json!({"vclustersPivoted": "0"}));
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vcluster_registry_pivot_points_each_listed_vcluster_at_harbor_once() {
    let (cluster, runner) = on_cluster().await;
    let _turn = cluster_wide_turn(&cluster).await;
    let ns = cluster.namespace().to_owned();
    helm_release(&cluster, "team-a", "vcluster").await;
    vcluster_statefulset(&cluster, "team-a").await;
    let settings = vcluster_settings(&format!("{ns}/team-a"));

    let (run, log) = run_reporting(&runner, STEP_10, &settings).await;
    run.succeeds();
    let target = format!("{HARBOR}/ghcr.io");
    assert_eq!(
        reported(&log),
        json!({"vclustersPivoted": "1", "vclusterRegistry": target})
    );
    let hr = helm_release_api(&cluster)
        .get("team-a")
        .await
        .expect("read");
    let values = &hr.data["spec"]["values"];
    assert_eq!(
        values["controlPlane"]["advanced"]["defaultImageRegistry"],
        target
    );
    assert_eq!(
        values["controlPlane"]["statefulSet"]["resources"]["limits"]["memory"], "2Gi",
        "the vcluster's own values stay"
    );
    assert_eq!(values["sync"]["toHost"]["ingresses"]["enabled"], true);
    let annotations = hr.metadata.annotations.clone().unwrap_or_default();
    assert!(
        annotations.contains_key("reconcile.fluxcd.io/requestedAt"),
        "Flux is asked to reconcile"
    );

    let again = runner.run(STEP_10, &settings).await;
    again.succeeds();
    again.says(&format!(
        "HelmRelease {ns}/team-a already points vcluster at {target}"
    ));
    let unchanged = helm_release_api(&cluster)
        .get("team-a")
        .await
        .expect("read");
    assert_eq!(
        unchanged.metadata.resource_version, hr.metadata.resource_version,
        "a rerun changes nothing"
    );
    no_vclusters(&cluster).await;
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vcluster_registry_pivot_changes_nothing_while_a_vcluster_is_not_listed() {
    let (cluster, runner) = on_cluster().await;
    let _turn = cluster_wide_turn(&cluster).await;
    let ns = cluster.namespace().to_owned();
    helm_release(&cluster, "team-a", "vcluster").await;
    vcluster_statefulset(&cluster, "team-a").await;
    vcluster_statefulset(&cluster, "by-hand").await;
    let settings = vcluster_settings(&format!("{ns}/team-a"));

    let run = runner.run(STEP_10, &settings).await;
    run.fails_with(&format!(
        "vclusters not managed by a HelmRelease of vclusterPivot.helmReleases (namespace release): {ns} by-hand"
    ));
    run.says("nothing was changed");
    let hr = helm_release_api(&cluster)
        .get("team-a")
        .await
        .expect("read");
    assert!(
        hr.data["spec"]["values"]["controlPlane"]["advanced"].is_null(),
        "the listed one is not touched either"
    );

    // A listed HelmRelease of another chart, or one that does not exist.
    helm_release(&cluster, "ingress", "ingress-nginx").await;
    runner
        .run(STEP_10, &vcluster_settings(&format!("{ns}/ingress")))
        .await
        .fails_with("installs the chart 'ingress-nginx', not vcluster");
    runner
        .run(STEP_10, &vcluster_settings(&format!("{ns}/missing")))
        .await
        .fails_with(&format!("cannot read the HelmRelease {ns}/missing"));
    let mut elsewhere = settings.clone();
    elsewhere.insert("VCLUSTER_REGISTRY".into(), "quay.io".into());
    runner
        .run(STEP_10, &elsewhere)
        .await
        .fails_with("add it to upstream.registries");
    no_vclusters(&cluster).await;
    cluster.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// 11 crossplane-provider-pivot
// ---------------------------------------------------------------------------------------

const STEP_11: &str = "11-crossplane-provider-pivot.yaml";

fn crossplane_settings() -> BTreeMap<String, String> {
    env(&[
        ("HARBOR_REGISTRY", HARBOR),
        ("CROSSPLANE_REGISTRY", "xpkg.upbound.io"),
        ("CROSSPLANE_PULL_SECRET", "harbor-pull"),
        ("UPSTREAM_REGISTRIES", "docker.io xpkg.upbound.io"),
    ])
}

/// A cluster without Crossplane: a shared one may have this suite's definition left.
async fn without_crossplane(cluster: &Cluster) {
    let api: Api<CustomResourceDefinition> = Api::all(cluster.client());
    match api.delete(PROVIDERS_CRD, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => panic!("delete {PROVIDERS_CRD}: {e}"),
    }
    providers_served(&cluster.client(), false).await;
}

fn provider_api(cluster: &Cluster) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("pkg.crossplane.io", "v1", "Provider");
    Api::all_with(cluster.client(), &ApiResource::from_gvk(&gvk))
}

/// Provider `<namespace>-<suffix>` (cluster-scoped: the test's namespace keeps it apart)
/// with `package`.
async fn provider(cluster: &Cluster, suffix: &str, package: &str) -> String {
    let name = format!("{}-{suffix}", cluster.namespace());
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "pkg.crossplane.io/v1",
        "kind": "Provider",
        "metadata": {"name": name},
        "spec": {"package": package, "packagePullSecrets": [{"name": "upbound"}]},
    }))
    .expect("Provider");
    provider_api(cluster)
        .create(&PostParams::default(), &object)
        .await
        .expect("create Provider");
    name
}

async fn delete_provider(cluster: &Cluster, name: &str) {
    let _ = provider_api(cluster)
        .delete(name, &DeleteParams::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossplane_provider_pivot_without_crossplane_succeeds_saying_so() {
    let (cluster, runner) = on_cluster().await;
    let _turn = cluster_wide_turn(&cluster).await;
    without_crossplane(&cluster).await;
    let (run, log) = run_reporting(&runner, STEP_11, &crossplane_settings()).await;
    run.succeeds();
    run.says("Crossplane is not installed (the cluster does not serve providers.pkg.crossplane.io); nothing to pivot");
    assert_eq!(reported(&log), json!({"providersPivoted": "0"}));
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossplane_provider_pivot_rewrites_each_upbound_package_once() {
    let (cluster, runner) = on_cluster().await;
    let _turn = cluster_wide_turn(&cluster).await;
    install_crossplane(&cluster.client()).await;
    let upbound = provider(
        &cluster,
        "aws-s3",
        "xpkg.upbound.io/upbound/provider-aws-s3:v1.21.1",
    )
    .await;
    let elsewhere = provider(
        &cluster,
        "helm",
        "ghcr.io/crossplane-contrib/provider-helm:v0.20.0",
    )
    .await;
    let settings = crossplane_settings();

    let (run, log) = run_reporting(&runner, STEP_11, &settings).await;
    run.succeeds();
    assert!(
        reported(&log)["providersPivoted"]
            .as_str()
            .is_some_and(|n| n != "0")
    );
    let pivoted = provider_api(&cluster).get(&upbound).await.expect("read");
    assert_eq!(
        pivoted.data["spec"]["package"],
        format!("{HARBOR}/xpkg.upbound.io/upbound/provider-aws-s3:v1.21.1")
    );
    assert_eq!(
        pivoted.data["spec"]["packagePullSecrets"],
        json!([{"name": "upbound"}, {"name": "harbor-pull"}]),
        "Harbor's pull credential joins the ones it had"
    );
    let left = provider_api(&cluster).get(&elsewhere).await.expect("read");
    assert_eq!(
        left.data["spec"]["package"], "ghcr.io/crossplane-contrib/provider-helm:v0.20.0",
        "a package from elsewhere is left alone"
    );
    run.says(&format!("Provider {elsewhere} pulls ghcr.io/crossplane-contrib/provider-helm:v0.20.0, not from xpkg.upbound.io: left alone"));

    let again = runner.run(STEP_11, &settings).await;
    again.succeeds();
    again.says(&format!(
        "Provider {upbound} already pulls {HARBOR}/xpkg.upbound.io/"
    ));
    let unchanged = provider_api(&cluster).get(&upbound).await.expect("read");
    assert_eq!(
        unchanged.metadata.resource_version,
        pivoted.metadata.resource_version
    );

    // Without a proxy-cache project for the registry, nothing is pointed at Harbor.
    let fresh = provider(
        &cluster,
        "gcp",
        "xpkg.upbound.io/upbound/provider-gcp-storage:v1",
    )
    .await;
    let mut no_project = settings.clone();
    no_project.insert("UPSTREAM_REGISTRIES".into(), "docker.io".into());
    runner
        .run(STEP_11, &no_project)
        .await
        .fails_with("which has no proxy-cache project in Harbor: add it to upstream.registries");
    let untouched = provider_api(&cluster).get(&fresh).await.expect("read");
    assert_eq!(
        untouched.data["spec"]["package"],
        "xpkg.upbound.io/upbound/provider-gcp-storage:v1"
    );
    for name in [upbound, elsewhere, fresh] {
        delete_provider(&cluster, &name).await;
    }
    cluster.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// 00 preflight: the checks of steps 09 to 11.
// ---------------------------------------------------------------------------------------

/// The preflight's settings with steps 09 to 11 installed.
fn later_steps_settings(
    cluster: &Cluster,
    base: BTreeMap<String, String>,
    helm_releases: &str,
) -> BTreeMap<String, String> {
    let mut settings = base;
    settings.extend(env(&[
        ("GITEA_TOKEN_STEP", "gitea-token-mint"),
        ("VCLUSTER_PIVOT_STEP", "vcluster-registry-pivot"),
        ("CROSSPLANE_PIVOT_STEP", "crossplane-provider-pivot"),
        ("GITEA_TOKEN_SECRET_NAMESPACE", cluster.namespace()),
        ("GITEA_TOKEN_SECRET_NAME", TOKEN_SECRET),
        ("GITEA_TOKEN_SECRET_KEY", "token"),
        ("GITEA_TOKEN_NAME", TOKEN_NAME),
        ("GITEA_TOKEN_SCOPES", "write:repository"),
        ("VCLUSTER_HELMRELEASES", helm_releases),
        ("VCLUSTER_REGISTRY", "ghcr.io"),
        ("CROSSPLANE_REGISTRY", "xpkg.upbound.io"),
    ]));
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_checks_what_steps_09_to_11_need() {
    let (cluster, runner) = on_cluster().await;
    let _turn = cluster_wide_turn(&cluster).await;
    let ns = cluster.namespace().to_owned();
    let sim = pivot_daemonset(&cluster, true).await;
    create_git_repository(&cluster, "flux-system", UPSTREAM_REPO).await;
    let gitea = gitea_with_org().await;
    let harbor = standins::harbor(Harbor::default()).await;
    let upstream = upstream_repository(&runner, &ns);
    let base = preflight_settings(&cluster, &gitea, &harbor, &upstream);
    without_crossplane(&cluster).await;

    // Everything in place: the Secret, each vcluster listed, no Crossplane.
    provisioning_secret(&cluster).await;
    helm_release(&cluster, "team-a", "vcluster").await;
    vcluster_statefulset(&cluster, "team-a").await;
    let good = later_steps_settings(&cluster, base.clone(), &format!("{ns}/team-a"));
    let run = runner.run(STEP_00, &good).await;
    run.succeeds();
    run.says("step 09 can read the Secret");
    run.says("step 09 may mint tokens of cutover");
    run.says("every vcluster (1) is installed by a listed HelmRelease");
    run.says("Crossplane is not installed: step 11 has nothing to pivot");
    assert!(tokens(&gitea).is_empty(), "the preflight mints nothing");

    // No Secret, a password Gitea refuses for tokens (and everything else), a vcluster not
    // listed, Providers from a registry without a proxy-cache project.
    secrets(&cluster)
        .delete(TOKEN_SECRET, &DeleteParams::default())
        .await
        .expect("delete Secret");
    vcluster_statefulset(&cluster, "by-hand").await;
    install_crossplane(&cluster.client()).await;
    let upbound = provider(
        &cluster,
        "aws",
        "xpkg.upbound.io/upbound/provider-aws-s3:v1",
    )
    .await;
    let bad = later_steps_settings(&cluster, base, &format!("{ns}/team-a"));
    let run = runner.run(STEP_00, &bad).await;
    let failed = failed_checks(&run);
    for expected in [
        format!("step 09 cannot read the Secret {ns}/{TOKEN_SECRET}"),
        format!(
            "vclusters that no HelmRelease of vclusterPivot.helmReleases installs (namespace release): {ns} by-hand"
        ),
        "Crossplane Provider(s) come from xpkg.upbound.io, which is not in upstream.registries"
            .to_owned(),
    ] {
        assert!(
            failed.iter().any(|f| f.contains(&expected)),
            "{expected:?} not among {failed:#?}\n{}",
            run.output
        );
    }
    run.says("nothing was changed");
    let hr = helm_release_api(&cluster)
        .get("team-a")
        .await
        .expect("read");
    assert!(hr.data["spec"]["values"]["controlPlane"]["advanced"].is_null());
    delete_provider(&cluster, &upbound).await;
    sim.shutdown().await;
    no_vclusters(&cluster).await;
    cluster.cleanup().await;
}
