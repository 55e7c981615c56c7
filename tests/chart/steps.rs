//! Behaviour of the step scripts: each runs for real with `sh`, its kubectl talking to the
//! cluster under test (the sandbox with the Flux and Cilium kinds, or
//! `CUTOVER_TEST_KUBECONFIG`) through a kubeconfig file. Flux itself is played by the test
//! as an API client where a step waits for it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use crate::cluster::Cluster;
use crate::standins::{self, Gitea, Harbor, PASSWORD, USER};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value as Json, json};

/// The tools the scripts call; the image of the steps has them all.
const TOOLS: [&str; 5] = ["sh", "kubectl", "jq", "curl", "git"];

/// Whether the tools are here; without them the behaviour tests are skipped, except in CI.
fn tools_present() -> bool {
    let missing: Vec<&str> = TOOLS
        .into_iter()
        .filter(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map_or(true, |o| !o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI lacks {missing:?}"
    );
    eprintln!("note: {missing:?} not on PATH; step behaviour tests skipped");
    false
}

/// The script `key` of the first ConfigMap in chart file `rel`.
fn script(rel: &str, key: &str) -> String {
    let text = crate::read(rel);
    let first = serde_yaml::Deserializer::from_str(&text)
        .next()
        .expect("a document");
    let cm: ConfigMap = serde::Deserialize::deserialize(first).expect("ConfigMap parses");
    cm.data
        .and_then(|mut d| d.remove(key))
        .unwrap_or_else(|| panic!("{rel} has no {key}"))
}

/// What one run of a script printed and how it ended.
struct Outcome {
    success: bool,
    output: String,
}

impl Outcome {
    /// The script succeeded (else the test fails showing its output).
    fn succeeds(&self) {
        assert!(self.success, "{}", self.output);
    }

    /// The script failed and said `text`.
    fn fails_with(&self, text: &str) {
        assert!(!self.success, "succeeded:\n{}", self.output);
        self.says(text);
    }

    /// The script said `text`.
    fn says(&self, text: &str) {
        assert!(
            self.output.contains(text),
            "`{text}` not in:\n{}",
            self.output
        );
    }
}

/// A place to run scripts against one cluster: a kubeconfig file and a HOME, and the
/// chart's RBAC the scripts run under.
struct Runner {
    dir: PathBuf,
    _rbac: Option<crate::live::InstalledRbac>,
}

impl Runner {
    /// Without a cluster, kubectl finds no kubeconfig and reaches nothing.
    fn new(cluster: Option<&Cluster>) -> Runner {
        let runner = Runner::in_temp_dir(None);
        if let Some(cluster) = cluster {
            crate::live::write_kubeconfig(&runner.dir, "kubeconfig", cluster.kubeconfig());
        }
        runner
    }

    /// Scripts that run as ServiceAccount `sa`: the chart's RBAC installed for `cluster`'s
    /// namespace, kubectl holding a token of `sa` from the TokenRequest API and nothing else.
    async fn as_service_account(cluster: &Cluster, sa: &str) -> Runner {
        let ns = cluster.namespace();
        let rbac = crate::live::install_rbac(cluster, &crate::live::values_in(ns)).await;
        // Each identity's first right, as the API server's authorizer sees it.
        let (verb, resource, name) = match sa {
            "registry-pivot" => ("get", "/configmaps", "self-sovereign-cutover-status"),
            _ => ("get", "apps/daemonsets", "registry-pivot"),
        };
        crate::live::wait_granted(cluster, sa, verb, resource, Some(ns), Some(name)).await;
        let runner = Runner::in_temp_dir(Some(rbac));
        let kubeconfig = crate::live::kubeconfig_of(cluster, sa).await;
        crate::live::write_kubeconfig(&runner.dir, "kubeconfig", &kubeconfig);
        runner
    }

    fn in_temp_dir(rbac: Option<crate::live::InstalledRbac>) -> Runner {
        let dir = std::env::temp_dir().join(format!("chart-steps-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Runner { dir, _rbac: rbac }
    }

    /// Runs the script of `chart/steps/<file>`.
    async fn run(&self, file: &str, env: &BTreeMap<String, String>) -> Outcome {
        self.run_script(&script(&format!("steps/{file}"), "run.sh"), env)
            .await
    }

    /// Runs `text` with `sh` and exactly `env` (plus PATH, HOME, TMPDIR, KUBECONFIG).
    async fn run_script(&self, text: &str, env: &BTreeMap<String, String>) -> Outcome {
        let child = self.spawn(text, env);
        finish(child).await
    }

    /// Starts `text` with `sh` and exactly `env` (plus PATH, HOME, TMPDIR, KUBECONFIG).
    fn spawn(&self, text: &str, env: &BTreeMap<String, String>) -> std::process::Child {
        let path = self.dir.join(format!("{}.sh", uuid::Uuid::new_v4()));
        std::fs::write(&path, text).expect("write script");
        Command::new("sh")
            .arg(&path)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .env("TMPDIR", &self.dir)
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .envs(env)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs")
    }
}

/// Waits for a script started by [`Runner::spawn`].
async fn finish(child: std::process::Child) -> Outcome {
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("sh ends");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Outcome {
        success: output.status.success(),
        output: text,
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cluster with a runner on it whose scripts run as the chart's step runner
/// (`cutover-runner`) under the chart's RBAC; `None` (the test is skipped) without the tools.
async fn on_cluster() -> Option<(Cluster, Runner)> {
    on_cluster_as("cutover-runner").await
}

/// As [`on_cluster`], the scripts running as the chart's ServiceAccount `sa`.
async fn on_cluster_as(sa: &str) -> Option<(Cluster, Runner)> {
    if !tools_present() {
        return None;
    }
    let cluster = crate::cluster::start().await;
    let runner = Runner::as_service_account(&cluster, sa).await;
    Some((cluster, runner))
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn git_repository_api(cluster: &Cluster) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("source.toolkit.fluxcd.io", "v1", "GitRepository");
    Api::namespaced_with(
        cluster.client(),
        cluster.namespace(),
        &ApiResource::from_gvk(&gvk),
    )
}

async fn create_git_repository(cluster: &Cluster, name: &str, url: &str) {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": name},
        "spec": {"url": url, "interval": "1m", "ref": {"branch": "main"},
                 "secretRef": {"name": "github-auth"}},
    }))
    .expect("GitRepository");
    git_repository_api(cluster)
        .create(&PostParams::default(), &object)
        .await
        .expect("create GitRepository");
}

const LOCAL_REPO: &str = "https://gitea.sovereign.test/openova/platform.git";
const UPSTREAM_REPO: &str = "https://github.com/openova-io/openova.git";

fn gitea_settings(cluster: &Cluster) -> BTreeMap<String, String> {
    env(&[
        ("FLUX_NAMESPACE", cluster.namespace()),
        ("FLUX_GITREPOSITORY", "flux-system"),
        ("GITEA_URL", "https://gitea.sovereign.test"),
        ("GITEA_OWNER", "openova"),
        ("GITEA_REPO", "platform"),
        ("GITEA_REPO_URL", ""),
        ("FLUX_GIT_SECRET_REF", ""),
        ("FLUX_READY_TIMEOUT_SECONDS", "0"),
    ])
}

// ---------------------------------------------------------------------------------------
// 05 flux-gitrepository-patch
// ---------------------------------------------------------------------------------------

const STEP_05: &str = "05-flux-gitrepository-patch.yaml";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_gitrepository_patch_points_flux_at_gitea_and_is_idempotent() {
    let Some((cluster, runner)) = on_cluster().await else {
        return;
    };
    create_git_repository(&cluster, "flux-system", UPSTREAM_REPO).await;
    let settings = gitea_settings(&cluster);

    let first = runner.run(STEP_05, &settings).await;
    first.succeeds();
    assert!(
        first
            .output
            .contains(&format!("from {UPSTREAM_REPO} to {LOCAL_REPO}")),
        "{}",
        first.output
    );
    let repo = git_repository_api(&cluster)
        .get("flux-system")
        .await
        .expect("get");
    assert_eq!(repo.data["spec"]["url"], LOCAL_REPO);
    assert_eq!(
        repo.data["spec"]["secretRef"]["name"], "github-auth",
        "no secret setting: untouched"
    );
    let annotations = repo.metadata.annotations.clone().unwrap_or_default();
    assert!(annotations.contains_key("reconcile.fluxcd.io/requestedAt"));

    let second = runner.run(STEP_05, &settings).await;
    second.succeeds();
    second.says("already points at");
    let again = git_repository_api(&cluster)
        .get("flux-system")
        .await
        .expect("get");
    assert_eq!(
        again.data["spec"], repo.data["spec"],
        "a second run changes no spec"
    );
    assert_eq!(again.metadata.generation, repo.metadata.generation);

    let mut with_secret = settings.clone();
    with_secret.insert("FLUX_GIT_SECRET_REF".into(), "gitea-auth".into());
    let third = runner.run(STEP_05, &with_secret).await;
    third.succeeds();
    let repo = git_repository_api(&cluster)
        .get("flux-system")
        .await
        .expect("get");
    assert_eq!(repo.data["spec"]["secretRef"]["name"], "gitea-auth");
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_gitrepository_patch_fails_clearly_without_its_gitrepository_or_settings() {
    let Some((cluster, runner)) = on_cluster().await else {
        return;
    };
    let settings = gitea_settings(&cluster);

    let missing = runner.run(STEP_05, &settings).await;
    missing.fails_with(&format!(
        "cannot read GitRepository {}/flux-system",
        cluster.namespace()
    ));

    let mut unset = settings.clone();
    unset.remove("GITEA_URL");
    let unset = runner.run(STEP_05, &unset).await;
    unset.fails_with("setting GITEA_URL is empty");
    cluster.cleanup().await;
}

/// Plays Flux's source-controller for one GitRepository: once the reconcile request
/// appears, reports the fetch as done and Ready.
async fn play_source_controller(api: Api<DynamicObject>, name: &str) {
    loop {
        let repo = api.get(name).await.expect("get GitRepository");
        let requested = repo
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("reconcile.fluxcd.io/requestedAt").cloned());
        if let Some(at) = requested {
            let status = json!({"status": {
                "observedGeneration": repo.metadata.generation,
                "lastHandledReconcileAt": at,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded",
                    "message": "stored artifact", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            }});
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .expect("patch status");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_gitrepository_patch_waits_until_flux_has_fetched_from_gitea() {
    let Some((cluster, runner)) = on_cluster().await else {
        return;
    };
    create_git_repository(&cluster, "flux-system", UPSTREAM_REPO).await;
    let mut settings = gitea_settings(&cluster);
    settings.insert("FLUX_READY_TIMEOUT_SECONDS".into(), "120".into());

    let flux = tokio::spawn(play_source_controller(
        git_repository_api(&cluster),
        "flux-system",
    ));
    let run = runner.run(STEP_05, &settings).await;
    flux.abort();
    run.succeeds();
    run.says("is Ready from");
    cluster.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// 07 catalyst-api-env-patch
// ---------------------------------------------------------------------------------------

const STEP_07: &str = "07-catalyst-api-env-patch.yaml";

async fn create_console_backend(cluster: &Cluster, containers: Json) {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "catalyst-api"},
        "spec": {
            "selector": {"matchLabels": {"app": "catalyst-api"}},
            "template": {"metadata": {"labels": {"app": "catalyst-api"}}, "spec": {"containers": containers}},
        },
    }))
    .expect("Deployment");
    Api::<Deployment>::namespaced(cluster.client(), cluster.namespace())
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create Deployment");
}

fn console_settings(cluster: &Cluster) -> BTreeMap<String, String> {
    let mut settings = gitea_settings(cluster);
    settings.extend(env(&[
        ("CATALYST_API_NAMESPACE", cluster.namespace()),
        ("CATALYST_API_DEPLOYMENT", "catalyst-api"),
        ("CATALYST_API_CONTAINER", ""),
        ("CATALYST_API_ENV_NAME", "CATALYST_GITOPS_REPO_URL"),
        ("ROLLOUT_TIMEOUT_SECONDS", "0"),
    ]));
    settings
}

async fn console_env(cluster: &Cluster) -> (Json, Option<i64>) {
    let deployment = Api::<Deployment>::namespaced(cluster.client(), cluster.namespace())
        .get("catalyst-api")
        .await
        .expect("get Deployment");
    let containers = serde_json::to_value(
        &deployment
            .spec
            .expect("spec")
            .template
            .spec
            .expect("pod spec")
            .containers,
    )
    .expect("containers");
    (containers, deployment.metadata.generation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalyst_api_env_patch_sets_the_repository_url_once() {
    let Some((cluster, runner)) = on_cluster().await else {
        return;
    };
    create_console_backend(
        &cluster,
        json!([
            {"name": "sidecar", "image": "busybox:1.36"},
            {"name": "api", "image": "catalyst-api:1.0", "env": [
                {"name": "LOG_LEVEL", "value": "info"},
                {"name": "CATALYST_GITOPS_REPO_URL", "value": UPSTREAM_REPO}]},
        ]),
    )
    .await;
    let mut settings = console_settings(&cluster);
    settings.insert("CATALYST_API_CONTAINER".into(), "api".into());

    let first = runner.run(STEP_07, &settings).await;
    first.succeeds();
    let (containers, generation) = console_env(&cluster).await;
    assert_eq!(
        containers[1]["env"],
        json!([{"name": "LOG_LEVEL", "value": "info"}, {"name": "CATALYST_GITOPS_REPO_URL", "value": LOCAL_REPO}])
    );
    assert!(
        containers[0].get("env").is_none(),
        "other containers untouched"
    );

    let second = runner.run(STEP_07, &settings).await;
    second.succeeds();
    second.says("already sets");
    assert_eq!(
        console_env(&cluster).await,
        (containers, generation),
        "a second run changes nothing"
    );
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalyst_api_env_patch_adds_the_variable_to_the_first_container() {
    let Some((cluster, runner)) = on_cluster().await else {
        return;
    };
    create_console_backend(
        &cluster,
        json!([{"name": "api", "image": "catalyst-api:1.0"}]),
    )
    .await;

    let run = runner.run(STEP_07, &console_settings(&cluster)).await;
    run.succeeds();
    let (containers, _) = console_env(&cluster).await;
    assert_eq!(
        containers[0]["env"],
        json!([{"name": "CATALYST_GITOPS_REPO_URL", "value": LOCAL_REPO}])
    );
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalyst_api_env_patch_fails_clearly_on_a_missing_deployment_or_container() {
    let Some((cluster, runner)) = on_cluster().await else {
        return;
    };
    let settings = console_settings(&cluster);

    let missing = runner.run(STEP_07, &settings).await;
    missing.fails_with("cannot read deployment");

    create_console_backend(
        &cluster,
        json!([{"name": "api", "image": "catalyst-api:1.0"}]),
    )
    .await;
    let mut wrong = settings.clone();
    wrong.insert("CATALYST_API_CONTAINER".into(), "backend".into());
    let wrong = runner.run(STEP_07, &wrong).await;
    wrong.fails_with("has no container 'backend'");
    cluster.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// 01 gitea-mirror (the Gitea stand-in serves real git repositories)
// ---------------------------------------------------------------------------------------

const STEP_01: &str = "01-gitea-mirror.yaml";
const MIRROR: &str = "openova/platform-upstream";
const RUN_FROM: &str = "openova/platform";

/// A Gitea stand-in with the organisation `openova`.
async fn gitea_with_org() -> standins::Server<Gitea> {
    standins::gitea(Gitea {
        orgs: ["openova".to_owned()].into(),
        ..Gitea::default()
    })
    .await
}

/// An upstream platform repository (branches `main` and `release-1.0`, tag `v1.0.0`;
/// HelmRepositories in `namespace`) in the runner's directory, by path.
fn upstream_repository(runner: &Runner, namespace: &str) -> PathBuf {
    let root = runner.dir.join("upstream");
    std::fs::create_dir_all(&root).expect("upstream root");
    platform_repository(&root, namespace)
}

fn mirror_settings(
    gitea: &standins::Server<Gitea>,
    upstream: &std::path::Path,
) -> BTreeMap<String, String> {
    env(&[
        ("GITEA_URL", &gitea.url),
        ("GITEA_OWNER", "openova"),
        ("GITEA_REPO", "platform"),
        ("GITEA_MIRROR_REPO", ""),
        ("GITEA_REPO_URL", ""),
        ("GITEA_BRANCH", "main"),
        ("UPSTREAM_REPO_URL", upstream.to_str().expect("utf-8")),
        ("GITEA_MIRROR_INTERVAL", "10m0s"),
        ("GITEA_USERNAME", USER),
        ("GITEA_PASSWORD", PASSWORD),
        ("HTTP_TIMEOUT_SECONDS", "10"),
    ])
}

fn gitea_calls(gitea: &standins::Server<Gitea>) -> Vec<String> {
    std::mem::take(&mut gitea.state.lock().expect("lock").calls)
}

/// The bare repository of `full_name` in the stand-in.
fn gitea_repo(gitea: &standins::Server<Gitea>, full_name: &str) -> PathBuf {
    gitea.state.lock().expect("lock").path(full_name)
}

/// Every branch and tag of a repository, `refname objectname` per line.
fn refs(repo: &std::path::Path) -> String {
    git(
        repo,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/heads",
            "refs/tags",
        ],
    )
}

/// A commit on `main` of the bare repository `repo`, as someone else's push would make it.
fn commit_to(repo: &std::path::Path, file: &str) -> String {
    let work = repo.with_extension(format!("work-{}", uuid::Uuid::new_v4()));
    git(
        repo.parent().expect("parent"),
        &[
            "clone",
            "--quiet",
            repo.to_str().expect("utf-8"),
            work.to_str().expect("utf-8"),
        ],
    );
    std::fs::write(work.join(file), "change\n").expect("write");
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", file]);
    git(&work, &["push", "--quiet", "origin", "main"]);
    let head = git(&work, &["rev-parse", "HEAD"]);
    std::fs::remove_dir_all(&work).expect("remove clone");
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_mirror_mirrors_upstream_and_seeds_the_repository_the_sovereign_runs_from() {
    if !tools_present() {
        return;
    }
    let gitea = gitea_with_org().await;
    let runner = Runner::new(None);
    let upstream = upstream_repository(&runner, "flux-system");
    let settings = mirror_settings(&gitea, &upstream);

    let first = runner.run(STEP_01, &settings).await;
    first.succeeds();
    first.says("seeded openova/platform with 2 branches and 1 tags");
    assert_eq!(
        gitea_calls(&gitea),
        [
            "GET /repos/openova/platform",
            "GET /repos/openova/platform-upstream",
            "POST /repos/migrate",
            "GET /orgs/openova",
            "POST /orgs/openova/repos",
        ]
    );
    let (migration, creation) = {
        let state = gitea.state.lock().expect("lock");
        assert_eq!(state.repos[MIRROR]["mirror"], true);
        assert_eq!(state.repos[RUN_FROM]["mirror"], false);
        (state.migrations[0].clone(), state.creations[0].clone())
    };
    for (field, value) in [
        ("clone_addr", json!(upstream.to_str())),
        ("repo_owner", json!("openova")),
        ("repo_name", json!("platform-upstream")),
        ("mirror", json!(true)),
        ("mirror_interval", json!("10m0s")),
    ] {
        assert_eq!(migration[field], value, "{field}");
    }
    for off in [
        "issues",
        "pull_requests",
        "wiki",
        "labels",
        "milestones",
        "releases",
    ] {
        assert_eq!(migration[off], json!(false), "{off} must not be migrated");
    }
    assert!(
        migration.get("auth_password").is_none(),
        "a public upstream needs no credentials"
    );
    for (field, value) in [
        ("name", json!("platform")),
        ("private", json!(true)),
        ("auto_init", json!(false)),
        ("default_branch", json!("main")),
    ] {
        assert_eq!(creation[field], value, "{field}");
    }
    let upstream_refs = refs(&upstream);
    assert!(
        upstream_refs.contains("refs/heads/release-1.0")
            && upstream_refs.contains("refs/tags/v1.0.0"),
        "{upstream_refs}"
    );
    assert_eq!(
        refs(&gitea_repo(&gitea, MIRROR)),
        upstream_refs,
        "the mirror"
    );
    assert_eq!(
        refs(&gitea_repo(&gitea, RUN_FROM)),
        upstream_refs,
        "every branch and tag seeded"
    );

    // Meanwhile upstream moves on and the cutover commits to the repository it runs from.
    let upstream_head = commit_to(&upstream, "upstream-change");
    let local_head = commit_to(&gitea_repo(&gitea, RUN_FROM), "cutover-change");

    let second = runner.run(STEP_01, &settings).await;
    second.succeeds();
    second.says("already mirrors every 10m0s");
    second.says("leaving its content alone");
    assert_eq!(
        gitea_calls(&gitea),
        [
            "GET /repos/openova/platform",
            "GET /repos/openova/platform-upstream",
            "GET /repos/openova/platform-upstream",
            "POST /repos/openova/platform-upstream/mirror-sync",
        ]
    );
    assert_eq!(
        git(&gitea_repo(&gitea, MIRROR), &["rev-parse", "main"]),
        upstream_head,
        "the sync brought upstream's commit"
    );
    assert_eq!(
        git(&gitea_repo(&gitea, RUN_FROM), &["rev-parse", "main"]),
        local_head,
        "the repository the Sovereign runs from keeps its own commits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_mirror_passes_credentials_and_creates_a_user_repository() {
    if !tools_present() {
        return;
    }
    // No organisations: the owner is the user the step authenticates as.
    let gitea = standins::gitea(Gitea::default()).await;
    let runner = Runner::new(None);
    let upstream = upstream_repository(&runner, "flux-system");
    let mut settings = mirror_settings(&gitea, &upstream);
    settings.insert("GITEA_OWNER".into(), USER.into());
    settings.insert("GITEA_MIRROR_REPO".into(), "platform-github".into());
    settings.insert("UPSTREAM_GIT_USERNAME".into(), "bot".into());
    settings.insert("UPSTREAM_GIT_PASSWORD".into(), "ghp_token".into());
    let run = runner.run(STEP_01, &settings).await;
    run.succeeds();
    assert!(
        !run.output.contains("ghp_token") && !run.output.contains(PASSWORD),
        "credentials never printed: {}",
        run.output
    );
    assert_eq!(
        gitea_calls(&gitea),
        [
            format!("GET /repos/{USER}/platform"),
            format!("GET /repos/{USER}/platform-github"),
            "POST /repos/migrate".to_owned(),
            format!("GET /orgs/{USER}"),
            "POST /user/repos".to_owned(),
        ]
    );
    let migration = gitea.state.lock().expect("lock").migrations[0].clone();
    assert_eq!(
        (&migration["auth_username"], &migration["auth_password"]),
        (&json!("bot"), &json!("ghp_token"))
    );
    assert_eq!(migration["repo_name"], "platform-github");
    assert_eq!(
        refs(&gitea_repo(&gitea, &format!("{USER}/platform"))),
        refs(&upstream)
    );

    let mut stranger = settings.clone();
    stranger.insert("GITEA_OWNER".into(), "someone-else".into());
    let run = runner.run(STEP_01, &stranger).await;
    run.fails_with("someone-else is neither an organisation of the local Gitea nor the user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_mirror_adopts_an_upstream_already_migrated_and_an_empty_repository() {
    if !tools_present() {
        return;
    }
    let gitea = gitea_with_org().await;
    let runner = Runner::new(None);
    let upstream = upstream_repository(&runner, "flux-system");
    let upstream_url = upstream.to_str().expect("utf-8");
    gitea.add_repo("openova", "platform-upstream", Some(upstream_url), "8h0m0s");
    // Created by a run that stopped before seeding it.
    gitea.add_repo("openova", "platform", None, "");
    let run = runner
        .run(STEP_01, &mirror_settings(&gitea, &upstream))
        .await;
    run.succeeds();
    run.says("seeding openova/platform with every branch and tag of openova/platform-upstream");
    assert_eq!(
        gitea_calls(&gitea),
        [
            "GET /repos/openova/platform",
            "GET /repos/openova/platform-upstream",
            "GET /repos/openova/platform-upstream",
            "PATCH /repos/openova/platform-upstream",
            "POST /repos/openova/platform-upstream/mirror-sync",
        ]
    );
    assert_eq!(refs(&gitea_repo(&gitea, RUN_FROM)), refs(&upstream));
    let state = gitea.state.lock().expect("lock");
    assert_eq!(state.repos[MIRROR]["mirror_interval"], "10m0s");
    assert!(state.migrations.is_empty() && state.creations.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_mirror_refuses_to_run_from_a_mirror() {
    if !tools_present() {
        return;
    }
    let gitea = gitea_with_org().await;
    let runner = Runner::new(None);
    let upstream = upstream_repository(&runner, "flux-system");
    // The earlier chart's layout: the repository Flux follows is the pull mirror itself.
    gitea.add_repo(
        "openova",
        "platform",
        Some(upstream.to_str().expect("utf-8")),
        "10m0s",
    );
    let settings = mirror_settings(&gitea, &upstream);
    let run = runner.run(STEP_01, &settings).await;
    run.fails_with("openova/platform is a pull mirror");
    run.says("rename it in Gitea to openova/platform-upstream");
    assert_eq!(
        gitea_calls(&gitea),
        ["GET /repos/openova/platform"],
        "nothing created or changed"
    );

    let mut same = settings.clone();
    same.insert("GITEA_MIRROR_REPO".into(), "platform".into());
    let run = runner.run(STEP_01, &same).await;
    run.fails_with("so they must differ");
    assert_eq!(gitea_calls(&gitea), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_mirror_fails_with_the_reason() {
    if !tools_present() {
        return;
    }
    let runner = Runner::new(None);
    let upstream = upstream_repository(&runner, "flux-system");
    let failing = standins::gitea(Gitea {
        fail_migrate: Some(500),
        ..Gitea::default()
    })
    .await;
    let run = runner
        .run(STEP_01, &mirror_settings(&failing, &upstream))
        .await;
    run.fails_with("answered 500: migrate: upstream unreachable");
    assert!(
        failing.state.lock().expect("lock").creations.is_empty(),
        "no repository without its mirror"
    );

    let not_mirror = gitea_with_org().await;
    not_mirror.add_repo("openova", "platform-upstream", None, "");
    let run = runner
        .run(STEP_01, &mirror_settings(&not_mirror, &upstream))
        .await;
    run.fails_with("openova/platform-upstream exists in the local Gitea but is not a mirror; refusing to touch it");
    assert_eq!(
        gitea_calls(&not_mirror),
        [
            "GET /repos/openova/platform",
            "GET /repos/openova/platform-upstream",
            "GET /repos/openova/platform-upstream"
        ]
    );

    let mut wrong_password = mirror_settings(&not_mirror, &upstream);
    wrong_password.insert("GITEA_PASSWORD".into(), "wrong".into());
    let run = runner.run(STEP_01, &wrong_password).await;
    run.fails_with("answered 401");

    // A repository of someone else's, without the branch Flux is to follow.
    let no_branch = gitea_with_org().await;
    no_branch.add_repo("openova", "platform", None, "");
    let elsewhere = gitea_repo(&no_branch, RUN_FROM);
    git(
        &upstream,
        &[
            "push",
            "--quiet",
            elsewhere.to_str().expect("utf-8"),
            "release-1.0",
        ],
    );
    let run = runner
        .run(STEP_01, &mirror_settings(&no_branch, &upstream))
        .await;
    run.fails_with("openova/platform has no branch main, which Flux is to follow");
    run.says("leaving its content alone");
}

// ---------------------------------------------------------------------------------------
// 02 harbor-projects (HTTP only)
// ---------------------------------------------------------------------------------------

const STEP_02: &str = "02-harbor-projects.yaml";
const REGISTRIES: &str = "docker.io ghcr.io registry.k8s.io";

fn harbor_settings(harbor: &standins::Server<Harbor>) -> BTreeMap<String, String> {
    env(&[
        ("HARBOR_URL", &harbor.url),
        ("HARBOR_REGISTRY", &harbor.host),
        ("HARBOR_INSECURE", "true"),
        ("UPSTREAM_REGISTRIES", REGISTRIES),
        ("HARBOR_USERNAME", USER),
        ("HARBOR_PASSWORD", PASSWORD),
        ("HTTP_TIMEOUT_SECONDS", "10"),
    ])
}

fn harbor_writes(harbor: &standins::Server<Harbor>) -> Vec<String> {
    let calls = std::mem::take(&mut harbor.state.lock().expect("lock").calls);
    calls
        .into_iter()
        .filter(|c| c.starts_with("POST") || c.starts_with("PUT"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harbor_projects_creates_endpoints_then_proxy_cache_projects_once() {
    if !tools_present() {
        return;
    }
    let harbor = standins::harbor(Harbor::default()).await;
    let runner = Runner::new(None);
    let settings = harbor_settings(&harbor);

    let first = runner.run(STEP_02, &settings).await;
    first.succeeds();
    assert_eq!(
        harbor_writes(&harbor),
        [
            "POST /registries docker.io",
            "POST /registries ghcr.io",
            "POST /registries registry.k8s.io",
            "POST /projects docker.io",
            "POST /projects ghcr.io",
            "POST /projects registry.k8s.io",
        ]
    );
    {
        let state = harbor.state.lock().expect("lock");
        let docker = &state.registries[0];
        assert_eq!(
            (&docker["type"], &docker["url"]),
            (&json!("docker-hub"), &json!("https://hub.docker.com"))
        );
        assert_eq!(
            (&state.registries[1]["type"], &state.registries[1]["url"]),
            (&json!("docker-registry"), &json!("https://ghcr.io"))
        );
        for registry in &state.registries {
            let project = &state.projects[registry["name"].as_str().expect("name")];
            assert_eq!(
                project["registry_id"], registry["id"],
                "each project proxies its own endpoint"
            );
            assert_eq!(
                (&project["public"], &project["metadata"]["public"]),
                (&json!(false), &json!("false")),
                "private unless the values say otherwise: {project}"
            );
        }
    }

    let second = runner.run(STEP_02, &settings).await;
    second.succeeds();
    assert_eq!(
        harbor_writes(&harbor),
        Vec::<String>::new(),
        "a second run creates nothing"
    );

    // The values open them up; a later run closes them again (an earlier chart made them
    // all public).
    let mut public = settings.clone();
    public.insert("HARBOR_PROXY_CACHE_PUBLIC".into(), "true".into());
    runner.run(STEP_02, &public).await.succeeds();
    assert_eq!(
        harbor_writes(&harbor),
        [
            r#"PUT /projects/docker.io {"public":"true"}"#,
            r#"PUT /projects/ghcr.io {"public":"true"}"#,
            r#"PUT /projects/registry.k8s.io {"public":"true"}"#,
        ]
    );
    runner.run(STEP_02, &settings).await.succeeds();
    assert_eq!(harbor_writes(&harbor).len(), 3, "made private again");
    let state = harbor.state.lock().expect("lock");
    assert!(
        state
            .projects
            .values()
            .all(|p| p["metadata"]["public"] == json!("false"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_stops_at_once_on_term_even_while_a_command_runs() {
    if !tools_present() {
        return;
    }
    // A Harbor that accepts connections and never answers: step 02's first call hangs.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", silent.local_addr().expect("addr"));
    let runner = Runner::new(None);
    let settings = env(&[
        ("HARBOR_URL", &url),
        ("UPSTREAM_REGISTRIES", "docker.io"),
        ("HARBOR_USERNAME", USER),
        ("HARBOR_PASSWORD", PASSWORD),
        // Far longer than the test may take: it ends only if the TERM stops the call.
        ("HTTP_TIMEOUT_SECONDS", "3600"),
    ]);
    let child = runner.spawn(&script(&format!("steps/{STEP_02}"), "run.sh"), &settings);
    // The call is under way once the connection is in the listener's backlog.
    silent.set_nonblocking(false).expect("blocking");
    let (_connection, _) = silent.accept().expect("the step connects");
    let killed = Command::new("kill")
        .args(["-s", "TERM", "--", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let run = finish(child).await;
    assert!(!run.success, "{}", run.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harbor_projects_fails_with_the_reason() {
    if !tools_present() {
        return;
    }
    let runner = Runner::new(None);
    let failing = standins::harbor(Harbor {
        fail_projects: Some(500),
        ..Harbor::default()
    })
    .await;
    let run = runner.run(STEP_02, &harbor_settings(&failing)).await;
    run.fails_with("answered 500: internal server error");

    let mut state = Harbor::default();
    state.projects.insert(
        "docker.io".into(),
        json!({"name": "docker.io", "registry_id": null}),
    );
    let taken = standins::harbor(state).await;
    let run = runner.run(STEP_02, &harbor_settings(&taken)).await;
    run.fails_with("project docker.io exists but is not a proxy cache");
}

// ---------------------------------------------------------------------------------------
// 03 harbor-prewarm
// ---------------------------------------------------------------------------------------

const STEP_03: &str = "03-harbor-prewarm.yaml";

async fn create_object(cluster: &Cluster, api_version: &str, kind: &str, body: Json) {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client(),
        cluster.namespace(),
        &ApiResource::from_gvk(&gvk),
    );
    let mut body = body;
    body["apiVersion"] = json!(api_version);
    body["kind"] = json!(kind);
    let object: DynamicObject = serde_json::from_value(body).expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {kind}: {e}"));
}

/// A Job's pod template: Jobs take only pods that do not restart.
fn job_pod_template(containers: Json) -> Json {
    let mut template = pod_template(containers, json!([]));
    template["spec"]["restartPolicy"] = json!("OnFailure");
    template
}

fn pod_template(containers: Json, init: Json) -> Json {
    json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": containers, "initContainers": init}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harbor_prewarm_pulls_every_platform_image_through_the_cache() {
    let Some((cluster, runner)) = on_cluster().await else {
        return;
    };
    let state = Harbor {
        images: [
            "docker.io/library/nginx-multi:1.27",
            "ghcr.io/openova-io/api:1.2.3",
            "registry.k8s.io/pause:3.10",
            "docker.io/bitnami/redis:7.4",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect(),
        ..Harbor::default()
    };
    let harbor = standins::harbor(state).await;
    let flux = json!({"helm.toolkit.fluxcd.io/name": "platform", "helm.toolkit.fluxcd.io/namespace": "flux-system"});
    create_object(&cluster, "apps/v1", "Deployment", json!({
        "metadata": {"name": "api", "labels": flux},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": pod_template(
            json!([{"name": "nginx", "image": "nginx-multi:1.27"}, {"name": "api", "image": "ghcr.io/openova-io/api:1.2.3"}]),
            json!([{"name": "local", "image": format!("{}/docker.io/library/busybox:1.36", harbor.host)}]))},
    })).await;
    create_object(
        &cluster,
        "batch/v1",
        "CronJob",
        json!({
            "metadata": {"name": "backup", "labels": flux},
            "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": job_pod_template(
                json!([{"name": "redis", "image": "bitnami/redis:7.4"}]))}}},
        }),
    )
    .await;
    create_object(
        &cluster,
        "apps/v1",
        "Deployment",
        json!({
            "metadata": {"name": "not-flux"},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": pod_template(
                json!([{"name": "x", "image": "quay.io/not/platform:1"}]), json!([]))},
        }),
    )
    .await;
    let mut settings = harbor_settings(&harbor);
    settings.insert("PREWARM_PARALLELISM".into(), "2".into());
    settings.insert(
        "PREWARM_EXTRA_IMAGES".into(),
        "registry.k8s.io/pause:3.10".into(),
    );

    let run = runner.run(STEP_03, &settings).await;
    run.succeeds();
    assert!(
        run.output
            .contains("summary: 4 pre-warmed, 1 skipped, 0 failed of 5"),
        "{}",
        run.output
    );
    assert!(
        !run.output.contains("quay.io/not/platform"),
        "only the HelmReleases' workloads: {}",
        run.output
    );
    // Every blob (config and layers) of every image, and of a multi-platform one those of
    // the chosen platform only: a manifest alone would leave the layers upstream.
    let pulled: BTreeSet<String> = harbor
        .state
        .lock()
        .expect("lock")
        .blobs_pulled
        .iter()
        .cloned()
        .collect();
    let mut wanted = BTreeSet::new();
    for (repository, platform) in [
        ("docker.io/library/nginx-multi", "linux/amd64"),
        ("ghcr.io/openova-io/api", ""),
        ("registry.k8s.io/pause", ""),
        ("docker.io/bitnami/redis", ""),
    ] {
        for blob in standins::image_blobs(repository, platform) {
            wanted.insert(format!("{repository}@{blob}"));
        }
    }
    assert_eq!(pulled, wanted);

    settings.insert(
        "PREWARM_EXTRA_IMAGES".into(),
        "ghcr.io/openova-io/missing:9".into(),
    );
    let run = runner.run(STEP_03, &settings).await;
    run.fails_with("failed ghcr.io/openova-io/missing:9");
    run.says("1 of 5 images could not be pre-warmed");
    cluster.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// The registry-pivot agent
// ---------------------------------------------------------------------------------------

fn agent_script() -> String {
    script("daemonset/registry-pivot.yaml", "agent.sh")
}

fn status_api(cluster: &Cluster) -> Api<ConfigMap> {
    Api::namespaced(cluster.client(), cluster.namespace())
}

async fn set_status(cluster: &Cluster, data: Json) {
    let api = status_api(cluster);
    let patch = json!({"metadata": {"name": "self-sovereign-cutover-status"}, "data": data});
    if api
        .get_opt("self-sovereign-cutover-status")
        .await
        .expect("get")
        .is_some()
    {
        api.patch(
            "self-sovereign-cutover-status",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("patch status");
    } else {
        let cm: ConfigMap = serde_json::from_value(patch).expect("ConfigMap");
        api.create(&PostParams::default(), &cm)
            .await
            .expect("create status");
    }
}

async fn status_data(cluster: &Cluster) -> (BTreeMap<String, String>, Option<String>) {
    let cm = status_api(cluster)
        .get("self-sovereign-cutover-status")
        .await
        .expect("get status");
    (cm.data.unwrap_or_default(), cm.metadata.resource_version)
}

/// A node's files as the agent sees them: its registries.yaml, containerd's certs.d and the
/// agent's own state directory.
struct Node {
    registries_yaml: PathBuf,
    certs: PathBuf,
    state: PathBuf,
}

impl Node {
    fn new(runner: &Runner) -> Node {
        let host = runner.dir.join("host");
        std::fs::create_dir_all(&host).expect("host dir");
        Node {
            registries_yaml: host.join("registries.yaml"),
            certs: host.join("certs.d"),
            state: host.join("state"),
        }
    }

    fn settings(
        &self,
        runner: &Runner,
        namespace: &str,
        registry: &str,
    ) -> BTreeMap<String, String> {
        let path = |p: &std::path::Path| p.to_str().expect("utf-8").to_owned();
        env(&[
            ("NODE_NAME", "node-a"),
            ("POD_NAMESPACE", namespace),
            ("HARBOR_REGISTRY", registry),
            ("HARBOR_INSECURE", "true"),
            ("UPSTREAM_REGISTRIES", REGISTRIES),
            ("REGISTRIES_YAML", &path(&self.registries_yaml)),
            ("CERTS_DIR", &path(&self.certs)),
            ("STATE_DIR", &path(&self.state)),
            ("READY_FILE", &path(&runner.dir.join("ready"))),
            ("PIVOT_ONCE", "true"),
        ])
    }

    /// Every file under the node's registries.yaml and certs.d, with its content.
    fn files(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(&self.registries_yaml) {
            out.insert("registries.yaml".to_owned(), text);
        }
        for entry in std::fs::read_dir(&self.certs)
            .into_iter()
            .flatten()
            .flatten()
        {
            let hosts = entry.path().join("hosts.toml");
            if let Ok(text) = std::fs::read_to_string(&hosts) {
                out.insert(
                    format!("certs.d/{}/hosts.toml", entry.file_name().to_string_lossy()),
                    text,
                );
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_pivot_agent_pivots_on_v2_restores_the_exact_files_on_rollback_and_else_keeps_the_node()
 {
    let Some((cluster, runner)) = on_cluster_as("registry-pivot").await else {
        return;
    };
    let harbor = standins::harbor(Harbor::default()).await;
    let node = Node::new(&runner);
    // The node's own configuration: a registries.yaml and a hosts.toml of one registry.
    std::fs::write(
        &node.registries_yaml,
        "mirrors:\n  docker.io:\n    endpoint: [\"https://mirror.example\"]\n",
    )
    .expect("registries.yaml");
    std::fs::create_dir_all(node.certs.join("ghcr.io")).expect("certs.d");
    std::fs::write(
        node.certs.join("ghcr.io/hosts.toml"),
        "server = \"https://ghcr.io\"\n[host.\"https://ghcr-mirror.example\"]\n",
    )
    .expect("hosts.toml");
    let original = node.files();
    let settings = node.settings(&runner, cluster.namespace(), &harbor.host);
    let agent = agent_script();
    let ack = "node.node-a.registriesYaml";

    // v1, the initial value, and anything but v2 or rollback: nothing changes, nothing is acked.
    for data in [
        json!({"registriesYamlActive": "v1"}),
        json!({"registriesYamlActive": ""}),
        json!({"registriesYamlActive": "v3"}),
        json!({"registriesYamlActive": "rollback "}),
    ] {
        set_status(&cluster, data).await;
        runner.run_script(&agent, &settings).await.succeeds();
        assert_eq!(node.files(), original, "the node keeps its own files");
        assert!(!status_data(&cluster).await.0.contains_key(ack));
    }
    assert!(
        runner.dir.join("ready").exists(),
        "ready once the status was read"
    );

    set_status(&cluster, json!({"registriesYamlActive": "v2"})).await;
    runner.run_script(&agent, &settings).await.succeeds();
    let v2 = node.files();
    let yaml = &v2["registries.yaml"];
    assert!(
        yaml.contains(&format!(
            "\"ghcr.io\":\n    endpoint:\n      - \"http://{}\"",
            harbor.host
        )),
        "{yaml}"
    );
    assert!(yaml.contains("\"^(.*)$\": \"ghcr.io/$1\""), "{yaml}");
    for registry in REGISTRIES.split_whitespace() {
        let hosts = &v2[&format!("certs.d/{registry}/hosts.toml")];
        assert!(
            hosts.contains(&format!("[host.\"http://{}/v2/{registry}\"]", harbor.host)),
            "{hosts}"
        );
    }
    let (data, version) = status_data(&cluster).await;
    assert_eq!(data.get(ack).map(String::as_str), Some("v2"));
    runner.run_script(&agent, &settings).await.succeeds();
    assert_eq!(
        status_data(&cluster).await.1,
        version,
        "a second pass writes nothing"
    );
    assert_eq!(node.files(), v2);

    // v1 after a pivot still changes nothing (only an explicit rollback does), and neither
    // does a status that cannot be read.
    set_status(&cluster, json!({"registriesYamlActive": "v1"})).await;
    runner.run_script(&agent, &settings).await.succeeds();
    assert_eq!(node.files(), v2, "v1 never rolls a node back");
    status_api(&cluster)
        .delete("self-sovereign-cutover-status", &Default::default())
        .await
        .expect("delete status");
    let unreadable = runner.run_script(&agent, &settings).await;
    unreadable.succeeds();
    unreadable.says("keeping the node as it is");
    assert_eq!(node.files(), v2, "a failed read never rolls the node back");

    set_status(
        &cluster,
        json!({"registriesYamlActive": "rollback", ack: "v2"}),
    )
    .await;
    runner.run_script(&agent, &settings).await.succeeds();
    assert_eq!(
        node.files(),
        original,
        "rollback restores exactly the node's own files"
    );
    assert_eq!(
        status_data(&cluster).await.0.get(ack).map(String::as_str),
        Some("rolled-back")
    );

    // A second pivot saves the node's files afresh, and a second rollback restores them.
    set_status(&cluster, json!({"registriesYamlActive": "v2"})).await;
    runner.run_script(&agent, &settings).await.succeeds();
    assert_eq!(node.files(), v2);
    set_status(&cluster, json!({"registriesYamlActive": "rollback"})).await;
    runner.run_script(&agent, &settings).await.succeeds();
    assert_eq!(node.files(), original);
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_pivot_agent_gives_the_nodes_the_pull_credential_of_private_proxy_caches() {
    let Some((cluster, runner)) = on_cluster_as("registry-pivot").await else {
        return;
    };
    let harbor = standins::harbor(Harbor::default()).await;
    let node = Node::new(&runner);
    let mut settings = node.settings(&runner, cluster.namespace(), &harbor.host);
    settings.insert("HARBOR_PULL_USERNAME".into(), "robot$nodes".into());
    settings.insert("HARBOR_PULL_PASSWORD".into(), "p\"a\\ss".into());
    set_status(&cluster, json!({"registriesYamlActive": "v2"})).await;
    runner
        .run_script(&agent_script(), &settings)
        .await
        .succeeds();
    let files = node.files();
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&files["registries.yaml"]).expect("registries.yaml parses");
    assert_eq!(
        yaml["configs"][harbor.host.as_str()]["auth"],
        serde_yaml::from_str::<serde_yaml::Value>("{username: robot$nodes, password: 'p\"a\\ss'}")
            .expect("yaml"),
        "{}",
        files["registries.yaml"]
    );
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "robot$nodes:p\"a\\ss",
    );
    assert!(
        files["certs.d/ghcr.io/hosts.toml"].contains(&format!("Authorization = \"Basic {basic}\"")),
        "{}",
        files["certs.d/ghcr.io/hosts.toml"]
    );
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_pivot_agent_refuses_values_that_could_break_out_of_its_quotes() {
    let Some((cluster, runner)) = on_cluster_as("registry-pivot").await else {
        return;
    };
    let node = Node::new(&runner);
    set_status(&cluster, json!({"registriesYamlActive": "v2"})).await;
    for (key, value) in [
        ("HARBOR_REGISTRY", "harbor.test\"; touch /tmp/x; \""),
        ("UPSTREAM_REGISTRIES", "docker.io *"),
        ("UPSTREAM_REGISTRIES", "docker.io $(id)"),
        ("UPSTREAM_REGISTRIES", "ghcr.io/../../etc"),
    ] {
        let mut settings = node.settings(&runner, cluster.namespace(), "harbor.test");
        settings.insert(key.to_owned(), value.to_owned());
        let run = runner.run_script(&agent_script(), &settings).await;
        run.fails_with("not a registry host[:port]");
        assert!(node.files().is_empty(), "nothing written for {value}");
    }
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_pivot_agent_does_not_acknowledge_while_the_registry_is_down() {
    let Some((cluster, runner)) = on_cluster_as("registry-pivot").await else {
        return;
    };
    // A port nothing listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .to_string();
    let settings = env(&[
        ("NODE_NAME", "node-b"),
        ("POD_NAMESPACE", cluster.namespace()),
        ("HARBOR_REGISTRY", &closed),
        ("HARBOR_INSECURE", "true"),
        ("UPSTREAM_REGISTRIES", REGISTRIES),
        (
            "REGISTRIES_YAML",
            runner.dir.join("registries.yaml").to_str().expect("utf-8"),
        ),
        (
            "CERTS_DIR",
            runner.dir.join("certs.d").to_str().expect("utf-8"),
        ),
        (
            "STATE_DIR",
            runner.dir.join("state").to_str().expect("utf-8"),
        ),
        (
            "READY_FILE",
            runner.dir.join("ready").to_str().expect("utf-8"),
        ),
        ("PIVOT_ONCE", "true"),
    ]);
    set_status(&cluster, json!({"registriesYamlActive": "v2"})).await;
    let run = runner.run_script(&agent_script(), &settings).await;
    run.succeeds();
    run.says("does not answer yet");
    assert!(
        !status_data(&cluster)
            .await
            .0
            .contains_key("node.node-b.registriesYaml")
    );
    cluster.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// 06 helmrepository-patches, with a local git server
// ---------------------------------------------------------------------------------------

/// Step 6 reads back every HelmRepository of the cluster: on a shared cluster, its tests
/// take turns so that one's upstream repositories do not fail the other's read-back.
static HELM_REPOSITORIES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const STEP_06: &str = "06-helmrepository-patches.yaml";
const HARBOR_HOST: &str = "harbor.sovereign.test";

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let identity = ["-c", "user.name=test", "-c", "user.email=test@example.org"];
    let all: Vec<&str> = identity.iter().chain(args).copied().collect();
    crate::standins::run_git(Some(dir), &all).unwrap_or_else(|e| panic!("git {args:?}: {e}"))
}

/// `git daemon` serving `<root>/*.git` read-write on 127.0.0.1, stopped on drop.
struct GitServer {
    child: std::process::Child,
    url: String,
}

impl GitServer {
    async fn start(root: &std::path::Path) -> GitServer {
        // A free port: bound, then released for the daemon.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        // `git daemon` runs git-daemon as a child of its own; start that binary directly so
        // that killing our child stops the server.
        let exec_path = Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git --exec-path");
        let exec_path = String::from_utf8_lossy(&exec_path.stdout).trim().to_owned();
        let child = Command::new(std::path::Path::new(&exec_path).join("git-daemon"))
            .args([
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                "--informative-errors",
            ])
            .arg(format!("--base-path={}", root.display()))
            .args(["--listen=127.0.0.1", &format!("--port={port}")])
            .arg(root)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git daemon starts");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return GitServer {
                    child,
                    url: format!("git://127.0.0.1:{port}"),
                };
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        panic!("git daemon does not listen on {port}");
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn helm_repository(namespace: &str, name: &str, kind: &str, url: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  type: {kind}\n  interval: 10m\n  url: {url}\n"
    )
}

/// A bare `platform.git` whose bootstrap-kit holds HelmRepositories pointing upstream
/// (branches `main` and `release-1.0`, tag `v1.0.0`).
fn platform_repository(root: &std::path::Path, namespace: &str) -> PathBuf {
    let bare = root.join("platform.git");
    let work = root.join("seed");
    std::fs::create_dir_all(work.join("clusters/bootstrap-kit")).expect("seed dir");
    git(
        root,
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            "platform.git",
        ],
    );
    let kit = [
        helm_repository(
            namespace,
            "openova",
            "oci",
            "oci://ghcr.io/openova-io/charts",
        ),
        helm_repository(namespace, "bitnami", "oci", "oci://docker.io/bitnamicharts"),
        helm_repository(namespace, "legacy", "default", "https://charts.example.org"),
    ]
    .join("---\n");
    std::fs::write(
        work.join("clusters/bootstrap-kit/helmrepositories.yaml"),
        kit,
    )
    .expect("kit");
    std::fs::write(work.join("README.md"), "platform\n").expect("readme");
    git(&work, &["init", "--quiet", "--initial-branch=main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "platform"]);
    git(&work, &["branch", "release-1.0"]);
    git(&work, &["tag", "v1.0.0"]);
    git(
        &work,
        &[
            "push",
            "--quiet",
            bare.to_str().expect("utf-8"),
            "main",
            "release-1.0",
            "v1.0.0",
        ],
    );
    bare
}

/// What Flux's kustomize-controller does: apply the bootstrap-kit at the repository's HEAD.
/// Applies the bootstrap kit of `url` to `cluster` as Flux would: with Flux's rights (the
/// cluster's admin), not the step runner's.
async fn flux_apply(cluster: &Cluster, url: &str) {
    let runner = Runner::new(Some(cluster));
    let apply = format!(
        "set -eu\nd=$(mktemp -d)\ngit clone --quiet \"{url}\" \"$d/repo\"\nkubectl apply -f \"$d/repo/clusters/bootstrap-kit/\"\nrm -rf \"$d\"\n"
    );
    let run = runner.run_script(&apply, &BTreeMap::new()).await;
    run.succeeds();
}

async fn live_urls(cluster: &Cluster) -> BTreeMap<String, String> {
    let gvk = GroupVersionKind::gvk("source.toolkit.fluxcd.io", "v1", "HelmRepository");
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client(),
        cluster.namespace(),
        &ApiResource::from_gvk(&gvk),
    );
    api.list(&Default::default())
        .await
        .expect("list HelmRepositories")
        .items
        .into_iter()
        .map(|r| {
            (
                r.metadata.name.clone().unwrap_or_default(),
                r.data["spec"]["url"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

fn pivot_settings(cluster: &Cluster, repo_url: &str) -> BTreeMap<String, String> {
    let mut settings = gitea_settings(cluster);
    settings.extend(env(&[
        ("GITEA_REPO_URL", repo_url),
        ("GITEA_BRANCH", "main"),
        ("GITEA_USERNAME", USER),
        ("GITEA_PASSWORD", PASSWORD),
        ("HARBOR_REGISTRY", HARBOR_HOST),
        ("UPSTREAM_REGISTRIES", REGISTRIES),
        ("FLUX_BOOTSTRAP_KIT_PATH", "clusters/bootstrap-kit"),
        ("GIT_AUTHOR_NAME", "catalyst-cutover"),
        ("GIT_AUTHOR_EMAIL", "cutover@openova.io"),
    ]));
    settings
}

/// The bootstrap-kit YAML on `main` of the bare repository `repo` points at the local Harbor.
fn assert_kit_points_local(repo: &std::path::Path) {
    let kit = git(
        repo,
        &["show", "main:clusters/bootstrap-kit/helmrepositories.yaml"],
    );
    assert!(
        kit.contains(&format!(
            "url: oci://{HARBOR_HOST}/ghcr.io/openova-io/charts"
        )),
        "{kit}"
    );
    assert!(!kit.contains("url: oci://ghcr.io/"), "{kit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helmrepository_patches_pivot_live_and_in_git_so_a_reapply_keeps_them_local() {
    let _one_at_a_time = HELM_REPOSITORIES.lock().await;
    let Some((cluster, runner)) = on_cluster().await else {
        return;
    };
    let root = runner.dir.join("git");
    std::fs::create_dir_all(&root).expect("git root");
    let bare = platform_repository(&root, cluster.namespace());
    let server = GitServer::start(&root).await;
    let url = format!("{}/platform.git", server.url);
    create_git_repository(&cluster, "flux-system", &url).await;
    flux_apply(&cluster, &url).await;
    let upstream = live_urls(&cluster).await;
    assert_eq!(upstream["openova"], "oci://ghcr.io/openova-io/charts");

    let settings = pivot_settings(&cluster, &url);
    let first = runner.run(STEP_06, &settings).await;
    first.succeeds();
    let local = BTreeMap::from([
        (
            "bitnami".to_owned(),
            format!("oci://{HARBOR_HOST}/docker.io/bitnamicharts"),
        ),
        ("legacy".to_owned(), "https://charts.example.org".to_owned()),
        (
            "openova".to_owned(),
            format!("oci://{HARBOR_HOST}/ghcr.io/openova-io/charts"),
        ),
    ]);
    assert_eq!(live_urls(&cluster).await, local);
    let head = git(&bare, &["rev-parse", "main"]);
    assert_kit_points_local(&bare);
    assert_eq!(
        git(&bare, &["log", "-1", "--format=%an <%ae>", "main"]),
        "catalyst-cutover <cutover@openova.io>"
    );

    // Flux re-applies what git holds: the pivot stays.
    flux_apply(&cluster, &url).await;
    assert_eq!(
        live_urls(&cluster).await,
        local,
        "a git-driven re-apply keeps the pivot"
    );

    let second = runner.run(STEP_06, &settings).await;
    second.succeeds();
    second.says("already points at");
    assert_eq!(
        git(&bare, &["rev-parse", "main"]),
        head,
        "a second run pushes nothing"
    );
    let repo = git_repository_api(&cluster)
        .get("flux-system")
        .await
        .expect("get");
    assert!(
        repo.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("reconcile.fluxcd.io/requestedAt")
    );
    cluster.cleanup().await;
}

/// Step 01 then step 06 against the Gitea stand-in, which refuses pushes to a mirror like
/// Gitea: the earlier layout (Flux following the mirror itself) stops at step 06, the
/// repository step 01 seeds takes the push, and a later step 01 keeps that commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helmrepository_patches_pushes_to_the_seeded_repository_never_to_the_mirror() {
    let _one_at_a_time = HELM_REPOSITORIES.lock().await;
    let Some((cluster, runner)) = on_cluster().await else {
        return;
    };
    let gitea = gitea_with_org().await;
    let upstream = upstream_repository(&runner, cluster.namespace());
    let upstream_head = git(&upstream, &["rev-parse", "main"]);
    let step_01 = mirror_settings(&gitea, &upstream);
    runner.run(STEP_01, &step_01).await.succeeds();
    create_git_repository(&cluster, "flux-system", LOCAL_REPO).await;
    flux_apply(&cluster, upstream.to_str().expect("utf-8")).await;

    let mut settings = pivot_settings(&cluster, "");
    settings.insert("GITEA_URL".into(), gitea.url.clone());

    let mut old_layout = settings.clone();
    old_layout.insert("GITEA_REPO".into(), "platform-upstream".into());
    let refused = runner.run(STEP_06, &old_layout).await;
    refused.fails_with(&format!("cannot push to {}/{MIRROR}.git (main)", gitea.url));
    refused.says("mirror repository is read-only");
    assert_eq!(
        git(&gitea_repo(&gitea, MIRROR), &["rev-parse", "main"]),
        upstream_head,
        "the mirror took nothing"
    );

    let pushed = runner.run(STEP_06, &settings).await;
    pushed.succeeds();
    pushed.says(&format!("to {}/{RUN_FROM}.git (main)", gitea.url));
    let run_from = gitea_repo(&gitea, RUN_FROM);
    let head = git(&run_from, &["rev-parse", "main"]);
    assert_ne!(head, upstream_head);
    assert_kit_points_local(&run_from);

    let again = runner.run(STEP_01, &step_01).await;
    again.succeeds();
    again.says("leaving its content alone");
    assert_eq!(
        git(&run_from, &["rev-parse", "main"]),
        head,
        "step 01 keeps step 06's commit"
    );
    cluster.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// 08 egress-block-test
// ---------------------------------------------------------------------------------------

const STEP_08: &str = "08-egress-block-test.yaml";
const POLICY: &str = "cutover-egress-block";

fn policy_api(cluster: &Cluster) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("cilium.io", "v2", "CiliumClusterwideNetworkPolicy");
    Api::all_with(cluster.client(), &ApiResource::from_gvk(&gvk))
}

/// A spec with the fields Flux's definition of `kind` requires.
fn flux_spec(kind: &str) -> Json {
    let source = json!({"kind": "GitRepository", "name": "flux-system"});
    match kind {
        "GitRepository" => json!({"interval": "1m", "url": LOCAL_REPO}),
        "Kustomization" => json!({"interval": "1m", "prune": true, "sourceRef": source}),
        _ => json!({"interval": "1m"}),
    }
}

/// A Flux object with the given Ready condition status.
async fn flux_object(cluster: &Cluster, api_version: &str, kind: &str, name: &str, ready: &str) {
    create_object(
        cluster,
        api_version,
        kind,
        json!({"metadata": {"name": name}, "spec": flux_spec(kind)}),
    )
    .await;
    let (group, version) = api_version.split_once('/').expect("group/version");
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client(),
        cluster.namespace(),
        &ApiResource::from_gvk(&gvk),
    );
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": ready, "reason": "Test",
        "message": format!("{kind} is {ready}"), "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch status");
}

/// Step 8's policy is one cluster-wide object with a fixed name: on a shared cluster, its
/// tests take turns.
static EGRESS_BLOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Step 8's settings, watching the test's namespace only: on a shared cluster other tests'
/// Flux objects come and go.
fn egress_settings(cluster: &Cluster) -> BTreeMap<String, String> {
    env(&[
        ("EGRESS_WATCH_NAMESPACE", cluster.namespace()),
        (
            "FLUX_READY_KINDS",
            "gitrepositories.source.toolkit.fluxcd.io helmrepositories.source.toolkit.fluxcd.io helmreleases.helm.toolkit.fluxcd.io kustomizations.kustomize.toolkit.fluxcd.io",
        ),
        ("EGRESS_BLOCK_HOSTS", ""),
        ("EGRESS_BLOCK_CIDRS", "203.0.113.0/24 2001:db8::/32"),
        ("EGRESS_HOLD_SECONDS", "2"),
        ("EGRESS_CHECK_INTERVAL_SECONDS", "1"),
    ])
}

/// Waits for the policy to appear and returns it.
/// Gives up after about a minute, so a step that never applies it fails the test.
async fn observed_block(api: Api<DynamicObject>) -> Json {
    for _ in 0..1200 {
        if let Some(policy) = api.get_opt(POLICY).await.expect("get policy") {
            return policy.data;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the egress block never appeared");
}

/// The policy only denies: no allow rule in any spec (Cilium adds allow rules together, so
/// one would void every other egress restriction), default-deny off both ways, and the
/// denied CIDRs.
fn assert_deny_only(policy: &Json) -> Json {
    let specs = policy["specs"].as_array().expect("specs");
    assert_eq!(specs.len(), 2, "pods and nodes");
    for spec in specs {
        for allow in ["egress", "ingress"] {
            assert!(spec.get(allow).is_none(), "an allow rule: {spec}");
        }
        assert_eq!(
            spec["enableDefaultDeny"],
            json!({"egress": false, "ingress": false}),
            "{spec}"
        );
        assert_eq!(spec["egressDeny"], specs[0]["egressDeny"]);
    }
    specs[0]["egressDeny"][0]["toCIDRSet"].clone()
}

async fn policy_exists(cluster: &Cluster) -> bool {
    policy_api(cluster)
        .get_opt(POLICY)
        .await
        .expect("get")
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_block_holds_while_flux_stays_ready_and_always_lifts() {
    let _one_block = EGRESS_BLOCK.lock().await;
    let Some((cluster, runner)) = on_cluster().await else {
        return;
    };
    flux_object(
        &cluster,
        "source.toolkit.fluxcd.io/v1",
        "GitRepository",
        "flux-system",
        "True",
    )
    .await;
    flux_object(
        &cluster,
        "helm.toolkit.fluxcd.io/v2",
        "HelmRelease",
        "platform",
        "True",
    )
    .await;

    let seen = tokio::spawn(observed_block(policy_api(&cluster)));
    let run = runner.run(STEP_08, &egress_settings(&cluster)).await;
    run.succeeds();
    run.says("stayed Ready for 2s");
    assert!(seen.is_finished(), "the block was never applied");
    assert_eq!(
        assert_deny_only(&seen.await.expect("observer")),
        json!([{"cidr": "2001:db8::/32"}, {"cidr": "203.0.113.0/24"}])
    );
    assert!(
        policy_api(&cluster)
            .get_opt(POLICY)
            .await
            .expect("get")
            .is_none(),
        "the block is lifted"
    );
    let source = git_repository_api(&cluster)
        .get("flux-system")
        .await
        .expect("get");
    assert!(
        source
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("reconcile.fluxcd.io/requestedAt")
    );

    flux_object(
        &cluster,
        "helm.toolkit.fluxcd.io/v2",
        "HelmRelease",
        "broken",
        "False",
    )
    .await;
    let run = runner.run(STEP_08, &egress_settings(&cluster)).await;
    run.fails_with(&format!(
        "helmreleases.helm.toolkit.fluxcd.io {}/broken: Test HelmRelease is False",
        cluster.namespace()
    ));
    assert!(
        policy_api(&cluster)
            .get_opt(POLICY)
            .await
            .expect("get")
            .is_none(),
        "lifted after a failure too"
    );

    let mut nothing = egress_settings(&cluster);
    nothing.insert("EGRESS_BLOCK_CIDRS".into(), String::new());
    let run = runner.run(STEP_08, &nothing).await;
    run.fails_with("nothing to block");
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_block_is_lifted_when_the_step_is_terminated() {
    let _one_block = EGRESS_BLOCK.lock().await;
    let Some((cluster, runner)) = on_cluster().await else {
        return;
    };
    let mut settings = egress_settings(&cluster);
    settings.insert("EGRESS_HOLD_SECONDS".into(), "600".into());
    let child = runner.spawn(&script(&format!("steps/{STEP_08}"), "run.sh"), &settings);
    observed_block(policy_api(&cluster)).await;
    // What the kubelet does at the Job's deadline.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let run = finish(child).await;
    run.fails_with("removed the egress block");
    assert!(
        policy_api(&cluster)
            .get_opt(POLICY)
            .await
            .expect("get")
            .is_none(),
        "a terminated step lifts the block"
    );
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_block_left_by_a_killed_step_is_removed_by_the_next_run() {
    let _one_block = EGRESS_BLOCK.lock().await;
    let Some((cluster, runner)) = on_cluster().await else {
        return;
    };
    let mut settings = egress_settings(&cluster);
    settings.insert("EGRESS_HOLD_SECONDS".into(), "600".into());
    let child = runner.spawn(&script(&format!("steps/{STEP_08}"), "run.sh"), &settings);
    observed_block(policy_api(&cluster)).await;
    // What an OOM kill or a lost node does to the container: every process gone at once,
    // no trap runs, the block stays. Each process of the step by its own (positive) id.
    let mut pids = vec![child.id()];
    let mut next = 0;
    while next < pids.len() {
        let children = Command::new("ps")
            .args(["-o", "pid=", "--ppid", &pids[next].to_string()])
            .output()
            .expect("ps runs");
        pids.extend(
            String::from_utf8_lossy(&children.stdout)
                .split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok()),
        );
        next += 1;
    }
    assert!(pids.len() > 1, "the script runs under its supervisor");
    assert!(pids.iter().all(|pid| *pid > 1));
    // One may have ended meanwhile; the others are killed all the same.
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--"])
        .args(pids.iter().map(u32::to_string))
        .status()
        .expect("kill runs");
    let run = finish(child).await;
    assert!(!run.success);
    assert!(policy_exists(&cluster).await, "nothing ran to lift it");

    // The next run (the Job's next pod, or a retry) removes it before anything else: here
    // it then stops at once, as nothing is left to block.
    let mut nothing = egress_settings(&cluster);
    nothing.insert("EGRESS_BLOCK_CIDRS".into(), String::new());
    let next = runner.run(STEP_08, &nothing).await;
    next.fails_with("nothing to block");
    next.says("removed the egress block");
    assert!(!policy_exists(&cluster).await, "the next run lifted it");
    cluster.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// The chart's manifests against the API server
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_accepts_every_manifest_the_chart_installs() {
    let cluster = crate::cluster::start().await;
    let mut unserved = Vec::new();
    let docs = crate::all_on_docs();
    for (template, doc) in &docs {
        let mut object: DynamicObject = serde_yaml::from_value(doc.clone()).expect("object");
        // 07's Role lives in the console's namespace; here, in the test's.
        object.metadata.namespace = None;
        let types = object.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types).expect("group version kind");
        let Ok((resource, capabilities)) =
            kube::discovery::pinned_kind(&cluster.client(), &gvk).await
        else {
            unserved.push(types.kind.clone());
            continue;
        };
        let api: Api<DynamicObject> = if capabilities.scope == kube::discovery::Scope::Namespaced {
            Api::namespaced_with(cluster.client(), cluster.namespace(), &resource)
        } else {
            Api::all_with(cluster.client(), &resource)
        };
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        match api.create(&dry_run, &object).await {
            Ok(_) => {}
            // A real cluster may hold the chart's cluster-scoped objects already.
            Err(kube::Error::Api(status))
                if status.code == 409 && capabilities.scope == kube::discovery::Scope::Cluster => {}
            Err(e) => panic!(
                "{template}: {} {} refused: {e}",
                types.kind,
                object.metadata.name.clone().unwrap_or_default()
            ),
        }
    }
    assert!(
        unserved.is_empty(),
        "kinds the API server does not serve: {unserved:?}"
    );
    cluster.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// 00 preflight
// ---------------------------------------------------------------------------------------

const STEP_00: &str = "00-preflight.yaml";
const FLUX_KINDS: &str = "gitrepositories.source.toolkit.fluxcd.io helmrepositories.source.toolkit.fluxcd.io helmreleases.helm.toolkit.fluxcd.io kustomizations.kustomize.toolkit.fluxcd.io";

/// A registry-pivot DaemonSet on one simulated node of the test's own pool, rolled out
/// when `rolled_out` (the simulator runs its pod), else left without a node to run on.
async fn pivot_daemonset(cluster: &Cluster, rolled_out: bool) -> kube_sandbox::sim::Simulator {
    use k8s_openapi::api::apps::v1::DaemonSet;
    use kube_sandbox::sim::{LABEL_POOL, SimConfig, Simulator};
    let ns = cluster.namespace().to_owned();
    let sim = Simulator::start(
        cluster.client(),
        SimConfig {
            namespace: Some(ns.clone()),
            nodes: 1,
            pool: ns.clone(),
            controllers: crate::common::controllers(),
            ..SimConfig::default()
        },
    )
    .await
    .expect("start simulator");
    // A pool no node is in leaves the DaemonSet wanting a node it never gets.
    let pool = if rolled_out {
        ns.clone()
    } else {
        format!("{ns}-none")
    };
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "registry-pivot"},
        "spec": {
            "selector": {"matchLabels": {"app": "registry-pivot"}},
            "template": {
                "metadata": {"labels": {"app": "registry-pivot"}},
                "spec": {"nodeSelector": {LABEL_POOL: pool},
                         "containers": [{"name": "agent", "image": "busybox:1.36"}]}
            }
        }
    }))
    .expect("DaemonSet");
    let api: Api<DaemonSet> = Api::namespaced(cluster.client(), &ns);
    api.create(&PostParams::default(), &ds)
        .await
        .expect("create DaemonSet");
    if rolled_out {
        let ready = |ds: Option<&DaemonSet>| {
            ds.and_then(|d| d.status.as_ref())
                .is_some_and(|s| s.desired_number_scheduled == 1 && s.number_available == Some(1))
        };
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            kube::runtime::wait::await_condition(api, "registry-pivot", ready),
        )
        .await
        .expect("the DaemonSet rolls out")
        .expect("watch");
    }
    sim
}

/// Everything the preflight reads, pointing at the stand-ins and the test's namespace.
fn preflight_settings(
    cluster: &Cluster,
    gitea: &standins::Server<Gitea>,
    harbor: &standins::Server<Harbor>,
    upstream: &std::path::Path,
) -> BTreeMap<String, String> {
    let mut settings = mirror_settings(gitea, upstream);
    settings.extend(harbor_settings(harbor));
    settings.extend(env(&[
        ("FLUX_NAMESPACE", cluster.namespace()),
        ("FLUX_GITREPOSITORY", "flux-system"),
        ("FLUX_READY_KINDS", FLUX_KINDS),
        ("POD_NAMESPACE", cluster.namespace()),
        ("EGRESS_BLOCK_STEP", "egress-block-test"),
    ]));
    settings
}

/// The lines of the checks that failed, in the order the script ran them.
fn failed_checks(outcome: &Outcome) -> Vec<&str> {
    outcome
        .output
        .lines()
        .filter_map(|l| l.split_once("CHECK FAILED: ").map(|(_, check)| check))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_passes_when_everything_is_in_place_and_changes_nothing() {
    let Some((cluster, runner)) = on_cluster().await else {
        return;
    };
    let sim = pivot_daemonset(&cluster, true).await;
    create_git_repository(&cluster, "flux-system", UPSTREAM_REPO).await;
    let gitea = gitea_with_org().await;
    let harbor = standins::harbor(Harbor::default()).await;
    let upstream = upstream_repository(&runner, cluster.namespace());
    let settings = preflight_settings(&cluster, &gitea, &harbor, &upstream);

    let run = runner.run(STEP_00, &settings).await;
    run.succeeds();
    run.says("every check passed; nothing was changed");
    run.says("DaemonSet registry-pivot is rolled out on all 1 nodes");
    assert!(
        gitea_calls(&gitea).iter().all(|c| c.starts_with("GET ")),
        "Gitea was only read"
    );
    let harbor_calls = std::mem::take(&mut harbor.state.lock().expect("lock").calls);
    assert!(
        harbor_calls
            .iter()
            .all(|c| c.starts_with("GET ") || c.starts_with("POST /registries/ping ")),
        "Harbor was only read and pinged: {harbor_calls:?}"
    );
    let created = {
        let state = harbor.state.lock().expect("lock");
        state.registries.len() + state.projects.len()
    };
    assert_eq!(created, 0, "Harbor holds no endpoint or project");
    sim.shutdown().await;
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_names_each_failed_check_and_runs_them_all() {
    let Some((cluster, runner)) = on_cluster().await else {
        return;
    };
    let sim = pivot_daemonset(&cluster, false).await;
    let gitea = gitea_with_org().await;
    let harbor = standins::harbor(Harbor::default()).await;
    let upstream = upstream_repository(&runner, cluster.namespace());
    let ns = cluster.namespace();

    // Wrong credentials for both, an unreadable upstream, an unknown Flux kind, no
    // GitRepository, and a DaemonSet that runs on no node: six checks fail in one run.
    let mut broken = preflight_settings(&cluster, &gitea, &harbor, &upstream);
    broken.insert("GITEA_PASSWORD".into(), "wrong".into());
    broken.insert("HARBOR_PASSWORD".into(), "wrong".into());
    broken.insert(
        "UPSTREAM_REPO_URL".into(),
        runner.dir.join("no-such-upstream").display().to_string(),
    );
    broken.insert(
        "FLUX_READY_KINDS".into(),
        format!("{FLUX_KINDS} widgets.example.io"),
    );
    let run = runner.run(STEP_00, &broken).await;
    run.fails_with("6 check(s) failed; nothing was changed");
    let checks = failed_checks(&run);
    let expected = [
        "Gitea at ",
        "the upstream ",
        "Harbor at ",
        "the cluster does not serve the Flux kind widgets.example.io: install Flux",
        &format!("GitRepository {ns}/flux-system cannot be read"),
        &format!("DaemonSet {ns}/registry-pivot is not rolled out on every node (nodes 0,"),
    ];
    assert_eq!(checks.len(), expected.len(), "{}", run.output);
    for (check, start) in checks.iter().zip(expected) {
        assert!(check.starts_with(start), "`{check}` vs `{start}`");
    }
    run.says("refuses GITEA_USERNAME cutover (HTTP 401");
    run.says("cannot be read for the mirror");
    run.says("refuses HARBOR_USERNAME cutover (HTTP 401");
    assert!(
        harbor.state.lock().expect("lock").registries.is_empty(),
        "nothing created"
    );

    // The credentials work, but the owner, the repository layout, Harbor's rights and its
    // reach, and an existing project are wrong.
    create_git_repository(&cluster, "flux-system", UPSTREAM_REPO).await;
    let stranger = standins::gitea(Gitea::default()).await;
    stranger.state.lock().expect("lock").repos.insert(
        "openova/platform".into(),
        Gitea::repo("openova", "platform", true, "10m0s", UPSTREAM_REPO),
    );
    let mut state = Harbor::default();
    state.ping.insert("https://ghcr.io".into(), 400);
    state.projects.insert(
        "registry.k8s.io".into(),
        json!({"name": "registry.k8s.io", "registry_id": null}),
    );
    let unreachable = standins::harbor(state).await;
    let run = runner
        .run(
            STEP_00,
            &preflight_settings(&cluster, &stranger, &unreachable, &upstream),
        )
        .await;
    let checks = failed_checks(&run);
    assert_eq!(checks.len(), 5, "{}", run.output);
    run.says("Gitea owner openova (gitea.owner) is neither an organisation of the local Gitea nor the user cutover");
    run.says("openova/platform is a pull mirror");
    run.says("Harbor cannot reach the upstream registry ghcr.io at https://ghcr.io (ping answered 400: failed to ping endpoint)");
    run.says("Harbor project registry.k8s.io exists but is not a proxy cache");

    let mut state = Harbor::default();
    for url in [
        "https://hub.docker.com",
        "https://ghcr.io",
        "https://registry.k8s.io",
    ] {
        state.ping.insert(url.into(), 403);
    }
    let forbidden = standins::harbor(state).await;
    let run = runner
        .run(
            STEP_00,
            &preflight_settings(&cluster, &gitea, &forbidden, &upstream),
        )
        .await;
    assert_eq!(failed_checks(&run).len(), 2, "{}", run.output);
    run.says(
        "Harbor user cutover may not create registry endpoints (ping of docker.io answered 403",
    );

    // Nothing answers, a setting is missing, and the DaemonSet is gone.
    let mut silent = preflight_settings(&cluster, &gitea, &harbor, &upstream);
    silent.insert("GITEA_URL".into(), "http://127.0.0.1:9".into());
    silent.insert("HARBOR_URL".into(), "http://127.0.0.1:9".into());
    silent.remove("GITEA_OWNER");
    silent.insert("POD_NAMESPACE".into(), format!("{ns}-gone"));
    let run = runner.run(STEP_00, &silent).await;
    run.fails_with("check(s) failed");
    run.says("setting GITEA_OWNER is empty");
    run.says("Harbor's API at http://127.0.0.1:9/api/v2.0 does not answer");
    run.says(&format!(
        "DaemonSet {ns}-gone/registry-pivot cannot be read"
    ));
    sim.shutdown().await;
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_names_missing_flux_and_cilium_kinds() {
    if !tools_present() {
        return;
    }
    if std::env::var(crate::common::ENV_KUBECONFIG).is_ok_and(|v| !v.is_empty()) {
        eprintln!("note: the cluster under test serves Flux and Cilium; kinds check skipped");
        return;
    }
    // A sandbox as it starts, with no CustomResourceDefinitions: no Flux, no Cilium.
    let cluster = crate::common::TestCluster::start().await;
    let runner = Runner::new(Some(&cluster));
    let gitea = gitea_with_org().await;
    let harbor = standins::harbor(Harbor::default()).await;
    let upstream = upstream_repository(&runner, cluster.namespace());
    let settings = preflight_settings(&cluster, &gitea, &harbor, &upstream);
    let run = runner.run(STEP_00, &settings).await;
    run.fails_with("check(s) failed");
    for kind in FLUX_KINDS.split(' ') {
        run.says(&format!("the cluster does not serve the Flux kind {kind}"));
    }
    run.says("step 08 egress-block-test needs Cilium, but the cluster does not serve ciliumclusterwidenetworkpolicies.cilium.io");

    let mut off = settings.clone();
    off.remove("EGRESS_BLOCK_STEP");
    let run = runner.run(STEP_00, &off).await;
    assert!(
        !run.output.contains("needs Cilium"),
        "without step 08 Cilium is not needed:\n{}",
        run.output
    );
    cluster.cleanup().await;
}
