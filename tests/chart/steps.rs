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

/// Fails, naming how to install them, unless the tools the scripts call are here: no test
/// of a step's behaviour passes without running it.
pub(crate) fn require_tools() {
    let missing: Vec<&str> = TOOLS
        .into_iter()
        .filter(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map_or(true, |o| !o.status.success())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the step scripts' tests need {missing:?} on PATH: `apt-get install -y jq curl git` \
         and kubectl (`apt-get install -y kubernetes-client`), or run `scripts/test`, which \
         installs them"
    );
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
pub(crate) struct Outcome {
    success: bool,
    pub(crate) output: String,
}

impl Outcome {
    /// The script succeeded (else the test fails showing its output).
    pub(crate) fn succeeds(&self) {
        assert!(self.success, "{}", self.output);
    }

    /// The script failed and said `text`.
    pub(crate) fn fails_with(&self, text: &str) {
        assert!(!self.success, "succeeded:\n{}", self.output);
        self.says(text);
    }

    /// The script said `text`.
    pub(crate) fn says(&self, text: &str) {
        assert!(
            self.output.contains(text),
            "`{text}` not in:\n{}",
            self.output
        );
    }
}

/// A place to run scripts against one cluster: a kubeconfig file and a HOME, and the
/// chart's RBAC the scripts run under.
pub(crate) struct Runner {
    pub(crate) dir: PathBuf,
    _rbac: Option<crate::live::InstalledRbac>,
}

impl Runner {
    /// Without a cluster, kubectl finds no kubeconfig and reaches nothing.
    pub(crate) fn new(cluster: Option<&Cluster>) -> Runner {
        let runner = Runner::in_temp_dir(None);
        if let Some(cluster) = cluster {
            crate::live::write_kubeconfig(&runner.dir, "kubeconfig", cluster.kubeconfig());
        }
        runner
    }

    /// Scripts that run as the step runner: the chart's RBAC installed for `cluster`'s
    /// namespace, kubectl holding a token of `cutover-runner` from the TokenRequest API and
    /// nothing else.
    async fn as_step_runner(cluster: &Cluster) -> Runner {
        let (ns, sa) = (cluster.namespace(), "cutover-runner");
        let rbac = crate::live::install_rbac(cluster, &crate::live::values_in(ns)).await;
        // The runner's first right, as the API server's authorizer sees it.
        let (verb, resource, name) = ("get", "apps/daemonsets", "registry-pivot");
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
    pub(crate) async fn run(&self, file: &str, env: &BTreeMap<String, String>) -> Outcome {
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
/// (`cutover-runner`) under the chart's RBAC.
pub(crate) async fn on_cluster() -> (Cluster, Runner) {
    require_tools();
    let cluster = crate::cluster::start().await;
    let runner = Runner::as_step_runner(&cluster).await;
    (cluster, runner)
}

pub(crate) fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
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

pub(crate) async fn create_git_repository(cluster: &Cluster, name: &str, url: &str) {
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
pub(crate) const UPSTREAM_REPO: &str = "https://github.com/openova-io/openova.git";

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
    let (cluster, runner) = on_cluster().await;
    create_git_repository(&cluster, "flux-system", UPSTREAM_REPO).await;
    let settings = gitea_settings(&cluster);

    let first = runner.run(STEP_05, &settings).await;
    first.succeeds();
    assert!(
        first.output.contains(&format!(
            "from {UPSTREAM_REPO} (branch main) to {LOCAL_REPO} (branch main)"
        )),
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

/// The branch the chart names is the one Flux follows: set on the GitRepository, with any
/// tag, semver, name or commit of upstream's (which Flux would prefer) taken off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_gitrepository_patch_sets_the_branch_the_sovereign_follows() {
    let (cluster, runner) = on_cluster().await;
    create_git_repository(&cluster, "flux-system", UPSTREAM_REPO).await;
    git_repository_api(&cluster)
        .patch(
            "flux-system",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"ref": {"tag": "v1.0.0"}}})),
        )
        .await
        .expect("pin a tag");
    let mut settings = gitea_settings(&cluster);
    settings.insert("GITEA_BRANCH".into(), "release-1.0".into());

    let run = runner.run(STEP_05, &settings).await;
    run.succeeds();
    run.says(&format!(
        "from {UPSTREAM_REPO} (branch main, tag v1.0.0) to {LOCAL_REPO} (branch release-1.0)"
    ));
    let repo = git_repository_api(&cluster)
        .get("flux-system")
        .await
        .expect("get");
    assert_eq!(repo.data["spec"]["ref"], json!({"branch": "release-1.0"}));

    let again = runner.run(STEP_05, &settings).await;
    again.succeeds();
    again.says("already points at");
    let same = git_repository_api(&cluster)
        .get("flux-system")
        .await
        .expect("get");
    assert_eq!(same.metadata.generation, repo.metadata.generation);
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_gitrepository_patch_fails_clearly_without_its_gitrepository_or_settings() {
    let (cluster, runner) = on_cluster().await;
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
    let (cluster, runner) = on_cluster().await;
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
    let (cluster, runner) = on_cluster().await;
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
    let (cluster, runner) = on_cluster().await;
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
    let (cluster, runner) = on_cluster().await;
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

pub(crate) const STEP_01: &str = "01-gitea-mirror.yaml";
const MIRROR: &str = "openova/platform-upstream";
const RUN_FROM: &str = "openova/platform";

/// A Gitea stand-in with the organisation `openova`.
pub(crate) async fn gitea_with_org() -> standins::Server<Gitea> {
    standins::gitea(Gitea {
        orgs: ["openova".to_owned()].into(),
        ..Gitea::default()
    })
    .await
}

/// A Gitea stand-in with the organisation `openova`, a runner and an upstream platform
/// repository.
async fn gitea_and_upstream() -> (standins::Server<Gitea>, Runner, PathBuf) {
    require_tools();
    let gitea = gitea_with_org().await;
    let runner = Runner::new(None);
    let upstream = upstream_repository(&runner, "flux-system");
    (gitea, runner, upstream)
}

/// An upstream platform repository (branches `main` and `release-1.0`, tag `v1.0.0`;
/// HelmRepositories in `namespace`) in the runner's directory, by path.
pub(crate) fn upstream_repository(runner: &Runner, namespace: &str) -> PathBuf {
    let root = runner.dir.join("upstream");
    std::fs::create_dir_all(&root).expect("upstream root");
    platform_repository(&root, namespace)
}

pub(crate) fn mirror_settings(
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

pub(crate) fn gitea_calls(gitea: &standins::Server<Gitea>) -> Vec<String> {
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
    let (gitea, runner, upstream) = gitea_and_upstream().await;
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
            "GET /repos/openova/platform-upstream",
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
    require_tools();
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
            format!("GET /repos/{USER}/platform-github"),
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
    let (gitea, runner, upstream) = gitea_and_upstream().await;
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

/// The rename the README recommends for an earlier chart's layout (`platform`, a mirror,
/// becomes `platform-upstream`): Gitea then answers the old name with a 307 to the new one,
/// which means "absent". The step creates `platform` (the redirect goes) and seeds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_mirror_takes_a_redirect_left_by_a_rename_as_absent() {
    let (gitea, runner, upstream) = gitea_and_upstream().await;
    let upstream_url = upstream.to_str().expect("utf-8");
    gitea.add_repo("openova", "platform", Some(upstream_url), "10m0s");
    gitea.rename("openova", "platform", "platform-upstream");

    let run = runner
        .run(STEP_01, &mirror_settings(&gitea, &upstream))
        .await;
    run.succeeds();
    run.says("openova/platform is the old name of a renamed repository (Gitea redirects it: 307)");
    assert_eq!(refs(&gitea_repo(&gitea, RUN_FROM)), refs(&upstream));
    let state = gitea.state.lock().expect("lock");
    assert!(
        state.redirects.is_empty(),
        "creating platform took the name back"
    );
    assert_eq!(state.repos[RUN_FROM]["mirror"], false);
    assert_eq!(state.repos[MIRROR]["mirror"], true);
}

/// Gitea clones the upstream inside `POST /repos/migrate`: a large upstream takes longer
/// than the per-call limit, so the migration has a limit of its own, and the step confirms
/// the mirror before going on. A migration cut off earlier left a half-made mirror (flagged
/// a mirror, no mirror record: PATCH 500, mirror-sync 400): a rerun makes it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_mirror_waits_for_a_long_migration_and_remakes_a_half_made_mirror() {
    let (gitea, runner, upstream) = gitea_and_upstream().await;
    gitea.state.lock().expect("lock").migrate_takes = std::time::Duration::from_secs(3);
    let mut settings = mirror_settings(&gitea, &upstream);
    settings.insert("HTTP_TIMEOUT_SECONDS".into(), "1".into());
    settings.insert("GITEA_MIGRATE_TIMEOUT_SECONDS".into(), "60".into());
    let run = runner.run(STEP_01, &settings).await;
    run.succeeds();
    run.says("created the mirror openova/platform-upstream (every 10m0s)");

    let gitea = gitea_with_org().await;
    gitea.add_half_made_mirror("openova", "platform-upstream");
    let run = runner
        .run(STEP_01, &mirror_settings(&gitea, &upstream))
        .await;
    run.succeeds();
    run.says("openova/platform-upstream is a half-made mirror");
    assert_eq!(
        gitea_calls(&gitea)[..5],
        [
            "GET /repos/openova/platform",
            "GET /repos/openova/platform-upstream",
            "DELETE /repos/openova/platform-upstream",
            "POST /repos/migrate",
            "GET /repos/openova/platform-upstream",
        ]
    );
    assert_eq!(refs(&gitea_repo(&gitea, MIRROR)), refs(&upstream));
    assert_eq!(refs(&gitea_repo(&gitea, RUN_FROM)), refs(&upstream));
}

/// Gitea answers a mirror interval as a Go duration (`1h` reads back `1h0m0s`): a rerun
/// compares durations and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_mirror_compares_intervals_as_durations() {
    let (gitea, runner, upstream) = gitea_and_upstream().await;
    let mut settings = mirror_settings(&gitea, &upstream);
    settings.insert("GITEA_MIRROR_INTERVAL".into(), "1h".into());
    runner.run(STEP_01, &settings).await.succeeds();
    assert_eq!(
        gitea.state.lock().expect("lock").repos[MIRROR]["mirror_interval"],
        "1h0m0s"
    );
    gitea_calls(&gitea);
    let again = runner.run(STEP_01, &settings).await;
    again.succeeds();
    again.says("openova/platform-upstream already mirrors every 1h");
    assert!(
        !gitea_calls(&gitea)
            .iter()
            .any(|call| call.starts_with("PATCH")),
        "a rerun changes nothing"
    );

    settings.insert("GITEA_MIRROR_INTERVAL".into(), "an hour".into());
    let bad = runner.run(STEP_01, &settings).await;
    bad.fails_with("GITEA_MIRROR_INTERVAL 'an hour' is not a duration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_mirror_refuses_to_run_from_a_mirror() {
    let (gitea, runner, upstream) = gitea_and_upstream().await;
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
    require_tools();
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

pub(crate) const STEP_02: &str = "02-harbor-projects.yaml";
const REGISTRIES: &str = "docker.io ghcr.io registry.k8s.io";

pub(crate) fn harbor_settings(harbor: &standins::Server<Harbor>) -> BTreeMap<String, String> {
    env(&[
        ("HARBOR_URL", &harbor.url),
        ("HARBOR_REGISTRY", &harbor.host),
        ("HARBOR_INSECURE", "true"),
        ("UPSTREAM_REGISTRIES", REGISTRIES),
        ("HARBOR_USERNAME", USER),
        ("HARBOR_PASSWORD", PASSWORD),
        ("HTTP_TIMEOUT_SECONDS", "10"),
        ("PREWARM_CACHE_WAIT_SECONDS", "5"),
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
    require_tools();
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
    require_tools();
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
    require_tools();
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

/// Step 03 lists the platform's workloads in every namespace: on a shared cluster, its
/// tests take turns.
static PREWARM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harbor_prewarm_pulls_every_platform_image_through_the_cache() {
    let _one_at_a_time = PREWARM.lock().await;
    let (cluster, runner) = on_cluster().await;
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
    // Step 03 lists workloads in every namespace, and a namespace's contents outlive its
    // deletion a while on a real cluster: the next step 03 test must not meet these.
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), cluster.namespace());
    deployments
        .delete("api", &Default::default())
        .await
        .expect("delete Deployment api");
    let cronjobs: Api<k8s_openapi::api::batch::v1::CronJob> =
        Api::namespaced(cluster.client(), cluster.namespace());
    cronjobs
        .delete("backup", &Default::default())
        .await
        .expect("delete CronJob backup");
    cluster.cleanup().await;
}

/// Harbor's proxy cache streams a GET to the client and stores in the background, so a
/// pull that succeeded does not mean the image is cached: step 03 confirms every manifest
/// and blob from Harbor's local store (a blob HEAD, the artifacts API), waiting a bounded
/// time, and names what never got stored. Layers get a limit of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harbor_prewarm_confirms_harbor_stored_each_image_and_gives_layers_time() {
    let (cluster, runner) = on_cluster().await;
    // Step 03 lists the platform's workloads in every namespace: on a shared cluster the
    // other step 03 test's may still be there, so the stand-in serves their images as well.
    let _one_at_a_time = PREWARM.lock().await;
    let images = [
        "docker.io/library/nginx-multi:1.27",
        "ghcr.io/openova-io/api:1.2.3",
        "registry.k8s.io/pause:3.10",
        "docker.io/bitnami/redis:7.4",
    ];
    let state = Harbor {
        images: images.into_iter().map(str::to_owned).collect(),
        store_after: std::time::Duration::from_secs(2),
        blob_takes: std::time::Duration::from_millis(1500),
        ..Harbor::default()
    };
    let harbor = standins::harbor(state).await;
    let mut settings = harbor_settings(&harbor);
    settings.extend(env(&[
        (
            "PREWARM_EXTRA_IMAGES",
            "nginx-multi:1.27 ghcr.io/openova-io/api:1.2.3",
        ),
        ("PREWARM_PARALLELISM", "2"),
        ("PREWARM_PLATFORMS", "linux/amd64"),
        ("HTTP_TIMEOUT_SECONDS", "1"),
        ("PREWARM_BLOB_TIMEOUT_SECONDS", "30"),
        ("PREWARM_CACHE_WAIT_SECONDS", "60"),
    ]));
    let run = runner.run(STEP_03, &settings).await;
    run.succeeds();
    run.says(", 0 failed of");
    let stored = {
        let state = harbor.state.lock().expect("lock");
        state.stored.keys().cloned().collect::<BTreeSet<_>>()
    };
    for blob in standins::image_blobs("ghcr.io/openova-io/api", "") {
        assert!(stored.contains(&format!("ghcr.io/openova-io/api@{blob}")));
    }

    // A layer whose background store failed: streamed, never stored.
    let lost = standins::image_blobs("ghcr.io/openova-io/api", "")[2].clone();
    {
        let mut state = harbor.state.lock().expect("lock");
        state.stored.clear();
        state.never_store.insert(lost.clone());
        state.store_after = std::time::Duration::ZERO;
    }
    settings.insert("PREWARM_CACHE_WAIT_SECONDS".into(), "3".into());
    let run = runner.run(STEP_03, &settings).await;
    run.fails_with(&format!(
        "failed ghcr.io/openova-io/api:1.2.3 pulled, but not in Harbor's local store after 3s (a pull with upstream blocked would fail): blob {lost}"
    ));
    run.says("images could not be pre-warmed");
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
    std::fs::create_dir_all(work.join("clusters/_template/bootstrap-kit")).expect("seed dir");
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
        // The seed platform names Docker Hub by its registry host.
        helm_repository(
            namespace,
            "bitnami",
            "oci",
            "oci://registry-1.docker.io/bitnamicharts",
        ),
        helm_repository(namespace, "legacy", "default", "https://charts.example.org"),
    ]
    .join("---\n");
    std::fs::write(
        work.join("clusters/_template/bootstrap-kit/helmrepositories.yaml"),
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
        "set -eu\nd=$(mktemp -d)\ngit clone --quiet \"{url}\" \"$d/repo\"\nkubectl apply -f \"$d/repo/clusters/_template/bootstrap-kit/\"\nrm -rf \"$d\"\n"
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
        (
            "FLUX_BOOTSTRAP_KIT_PATH",
            "clusters/_template/bootstrap-kit",
        ),
        ("GIT_AUTHOR_NAME", "catalyst-cutover"),
        ("GIT_AUTHOR_EMAIL", "cutover@openova.io"),
    ]));
    settings
}

/// The bootstrap-kit YAML on `main` of the bare repository `repo` points at the local Harbor.
fn assert_kit_points_local(repo: &std::path::Path) {
    let kit = git(
        repo,
        &[
            "show",
            "main:clusters/_template/bootstrap-kit/helmrepositories.yaml",
        ],
    );
    assert!(
        kit.contains(&format!(
            "url: oci://{HARBOR_HOST}/ghcr.io/openova-io/charts"
        )),
        "{kit}"
    );
    assert!(!kit.contains("url: oci://ghcr.io/"), "{kit}");
}

/// A platform repository served by `git daemon` (its bare path, the server, its URL), with
/// Flux's GitRepository and its bootstrap-kit applied as Flux would.
async fn platform_applied(cluster: &Cluster, runner: &Runner) -> (PathBuf, GitServer, String) {
    let root = runner.dir.join("git");
    std::fs::create_dir_all(&root).expect("git root");
    let bare = platform_repository(&root, cluster.namespace());
    let server = GitServer::start(&root).await;
    let url = format!("{}/platform.git", server.url);
    // Flux follows the https URL of the repository; git:// is only the test's git server.
    create_git_repository(cluster, "flux-system", LOCAL_REPO).await;
    flux_apply(cluster, &url).await;
    (bare, server, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helmrepository_patches_pivot_live_and_in_git_so_a_reapply_keeps_them_local() {
    let _one_at_a_time = HELM_REPOSITORIES.lock().await;
    let (cluster, runner) = on_cluster().await;
    let (bare, _server, url) = platform_applied(&cluster, &runner).await;
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

/// With a plain-HTTP local Harbor, Flux must be told (`spec.insecure`), live and in git, or it
/// cannot pull a chart through it; a repository outside the proxied registries stays
/// upstream and the log says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helmrepository_patches_marks_an_insecure_harbor_live_and_in_git() {
    let _one_at_a_time = HELM_REPOSITORIES.lock().await;
    let (cluster, runner) = on_cluster().await;
    let (bare, _server, url) = platform_applied(&cluster, &runner).await;

    let mut settings = pivot_settings(&cluster, &url);
    settings.insert("HARBOR_INSECURE".into(), "true".into());
    let run = runner.run(STEP_06, &settings).await;
    run.succeeds();
    run.says("legacy stays upstream at https://charts.example.org");
    let insecure = |cluster: &Cluster| {
        let api = flux_api(cluster, "source.toolkit.fluxcd.io/v1", "HelmRepository");
        async move {
            api.list(&Default::default())
                .await
                .expect("list")
                .items
                .into_iter()
                .map(|r| {
                    (
                        r.metadata.name.clone().unwrap_or_default(),
                        r.data["spec"]["insecure"].clone(),
                    )
                })
                .collect::<BTreeMap<_, _>>()
        }
    };
    let expected = BTreeMap::from([
        ("bitnami".to_owned(), json!(true)),
        ("legacy".to_owned(), Json::Null),
        ("openova".to_owned(), json!(true)),
    ]);
    assert_eq!(insecure(&cluster).await, expected);
    let kit = git(
        &bare,
        &[
            "show",
            "main:clusters/_template/bootstrap-kit/helmrepositories.yaml",
        ],
    );
    assert_eq!(kit.matches("insecure: true").count(), 2, "{kit}");
    // Flux re-applies what git holds: still insecure, and a second run changes nothing.
    flux_apply(&cluster, &url).await;
    assert_eq!(insecure(&cluster).await, expected);
    let head = git(&bare, &["rev-parse", "main"]);
    runner.run(STEP_06, &settings).await.succeeds();
    assert_eq!(
        git(&bare, &["rev-parse", "main"]),
        head,
        "nothing more to push"
    );
    cluster.cleanup().await;
}

/// Step 01 then step 06 against the Gitea stand-in, which refuses pushes to a mirror like
/// Gitea: the earlier layout (Flux following the mirror itself) stops at step 06, the
/// repository step 01 seeds takes the push, and a later step 01 keeps that commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helmrepository_patches_pushes_to_the_seeded_repository_never_to_the_mirror() {
    let _one_at_a_time = HELM_REPOSITORIES.lock().await;
    let (cluster, runner) = on_cluster().await;
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

/// The OCI HelmRepository the platform's charts come through (Flux keeps it static).
const CHARTS: &str = "openova";

/// A spec Flux's own definition of `kind` accepts (URL patterns, `chart` or `chartRef`).
fn flux_spec(kind: &str) -> Json {
    let source = json!({"kind": "GitRepository", "name": "flux-system"});
    let charts = json!({"kind": "HelmRepository", "name": CHARTS});
    match kind {
        "GitRepository" => json!({"interval": "1m", "url": LOCAL_REPO}),
        "Kustomization" => json!({"interval": "1m", "prune": true, "sourceRef": source}),
        "HelmRepository" => json!({"interval": "10m", "type": "oci",
            "url": format!("oci://{HARBOR_HOST}/ghcr.io/openova-io")}),
        "HelmChart" => json!({"interval": "1m", "chart": "platform", "sourceRef": charts}),
        "HelmRelease" => json!({"interval": "1m",
            "chart": {"spec": {"chart": "platform", "sourceRef": charts}}}),
        other => panic!("no spec for the Flux kind {other}"),
    }
}

fn flux_api(cluster: &Cluster, api_version: &str, kind: &str) -> Api<DynamicObject> {
    let (group, version) = api_version.split_once('/').expect("group/version");
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Api::namespaced_with(
        cluster.client(),
        cluster.namespace(),
        &ApiResource::from_gvk(&gvk),
    )
}

/// Plays source-controller for the OCI HelmRepositories of the test's namespace, as its
/// HelmRepository reconciler does (`migrationToStatic`): it empties the status of every one
/// (no Ready condition, ever) and never answers a reconcile request.
async fn play_static_helm_repositories(api: Api<DynamicObject>) {
    loop {
        let list = api
            .list(&Default::default())
            .await
            .expect("list HelmRepositories");
        for repo in list {
            let has_status = repo.data["status"]
                .as_object()
                .is_some_and(|s| !s.is_empty());
            if repo.data["spec"]["type"] == "oci" && has_status {
                let name = repo.metadata.name.clone().unwrap_or_default();
                api.patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": null})),
                )
                .await
                .expect("empty the status");
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
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
    let api = flux_api(cluster, api_version, kind);
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
            "gitrepositories.source.toolkit.fluxcd.io helmrepositories.source.toolkit.fluxcd.io helmcharts.source.toolkit.fluxcd.io helmreleases.helm.toolkit.fluxcd.io kustomizations.kustomize.toolkit.fluxcd.io",
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
    let (cluster, runner) = on_cluster().await;
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

/// A real cutover's Flux: the platform's charts come through an OCI HelmRepository, which
/// source-controller keeps static (no Ready condition, reconcile requests ignored), beside a
/// Ready GitRepository, HelmChart and HelmRelease. The hold passes, the static repository is
/// neither waited for nor asked to reconcile, and what pulls through it is still checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_block_treats_oci_helm_repositories_as_static_and_checks_what_pulls_through_them() {
    let _one_block = EGRESS_BLOCK.lock().await;
    let (cluster, runner) = on_cluster().await;
    let source = "source.toolkit.fluxcd.io/v1";
    // Created with the Ready condition an older source-controller left on it.
    flux_object(&cluster, source, "HelmRepository", CHARTS, "True").await;
    let flux = tokio::spawn(play_static_helm_repositories(flux_api(
        &cluster,
        source,
        "HelmRepository",
    )));
    flux_object(&cluster, source, "GitRepository", "flux-system", "True").await;
    flux_object(&cluster, source, "HelmChart", "platform", "True").await;
    flux_object(
        &cluster,
        "helm.toolkit.fluxcd.io/v2",
        "HelmRelease",
        "platform",
        "True",
    )
    .await;
    let charts = flux_api(&cluster, source, "HelmRepository");
    for _ in 0..100 {
        let repo = charts.get(CHARTS).await.expect("get HelmRepository");
        if repo.data["status"].as_object().is_none_or(|s| s.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let run = runner.run(STEP_08, &egress_settings(&cluster)).await;
    run.succeeds();
    run.says(&format!(
        "helmrepositories.source.toolkit.fluxcd.io {}/{CHARTS} is static (type oci)",
        cluster.namespace()
    ));
    let requested = |object: DynamicObject| {
        object
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("reconcile.fluxcd.io/requestedAt")
    };
    assert!(
        !requested(charts.get(CHARTS).await.expect("get")),
        "a request the static HelmRepository would ignore"
    );
    let chart = flux_api(&cluster, source, "HelmChart");
    assert!(requested(chart.get("platform").await.expect("get")));

    // The HelmChart fetched through the static repository fails: so does the step.
    chart
        .patch_status(
            "platform",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"status": {"conditions": [{"type": "Ready", "status": "False",
                "reason": "ChartPullError", "message": "not found",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
            ),
        )
        .await
        .expect("patch status");
    let run = runner.run(STEP_08, &egress_settings(&cluster)).await;
    flux.abort();
    run.fails_with(&format!(
        "helmcharts.source.toolkit.fluxcd.io {}/platform: ChartPullError not found",
        cluster.namespace()
    ));
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_block_is_lifted_when_the_step_is_terminated() {
    let _one_block = EGRESS_BLOCK.lock().await;
    let (cluster, runner) = on_cluster().await;
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
    let (cluster, runner) = on_cluster().await;
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

pub(crate) const STEP_00: &str = "00-preflight.yaml";
const FLUX_KINDS: &str = "gitrepositories.source.toolkit.fluxcd.io helmrepositories.source.toolkit.fluxcd.io helmreleases.helm.toolkit.fluxcd.io kustomizations.kustomize.toolkit.fluxcd.io";

/// A registry-pivot DaemonSet on one simulated node of the test's own pool, rolled out
/// when `rolled_out` (the simulator runs its pod), else left without a node to run on.
pub(crate) async fn pivot_daemonset(
    cluster: &Cluster,
    rolled_out: bool,
) -> kube_sandbox::sim::Simulator {
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
pub(crate) fn preflight_settings(
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
pub(crate) fn failed_checks(outcome: &Outcome) -> Vec<&str> {
    outcome
        .output
        .lines()
        .filter_map(|l| l.split_once("CHECK FAILED: ").map(|(_, check)| check))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_passes_when_everything_is_in_place_and_changes_nothing() {
    let (cluster, runner) = on_cluster().await;
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

/// After the rename the README recommends, Gitea answers the old name with a 307: the
/// preflight reads that as "absent" (step 01 creates it), not as a repository that is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_takes_a_redirect_left_by_a_rename_as_absent() {
    let (cluster, runner) = on_cluster().await;
    let sim = pivot_daemonset(&cluster, true).await;
    create_git_repository(&cluster, "flux-system", UPSTREAM_REPO).await;
    let gitea = gitea_with_org().await;
    let harbor = standins::harbor(Harbor::default()).await;
    let upstream = upstream_repository(&runner, cluster.namespace());
    let upstream_url = upstream.to_str().expect("utf-8");
    gitea.add_repo("openova", "platform", Some(upstream_url), "10m0s");
    gitea.rename("openova", "platform", "platform-upstream");

    let run = runner
        .run(
            STEP_00,
            &preflight_settings(&cluster, &gitea, &harbor, &upstream),
        )
        .await;
    run.succeeds();
    run.says("openova/platform is the old name of a renamed repository (Gitea redirects it)");
    sim.shutdown().await;
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_names_each_failed_check_and_runs_them_all() {
    let (cluster, runner) = on_cluster().await;
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

    // A robot account (Harbor answers it 412 on /users/current) that may create projects
    // and ping, but not create the registry endpoints step 02 needs.
    let state = Harbor {
        robot: true,
        system_permissions: Some(vec![
            ("project".into(), "create".into()),
            ("registry".into(), "read".into()),
        ]),
        ..Harbor::default()
    };
    let robot = standins::harbor(state).await;
    let run = runner
        .run(
            STEP_00,
            &preflight_settings(&cluster, &gitea, &robot, &upstream),
        )
        .await;
    assert_eq!(failed_checks(&run).len(), 2, "{}", run.output);
    run.says("answers for the robot account cutover (412 on /users/current");
    run.says("Harbor does not let cutover create registry endpoints, which step 02 makes for: docker.io ghcr.io registry.k8s.io");
    run.says("Harbor lets cutover create the proxy-cache projects step 02 makes: docker.io ghcr.io registry.k8s.io");

    // A URL that does not lead to Harbor's API.
    let mut wrong = preflight_settings(&cluster, &gitea, &harbor, &upstream);
    wrong.insert("HARBOR_URL".into(), format!("{}/api/v2.0", harbor.url));
    let run = runner.run(STEP_00, &wrong).await;
    run.says("harbor.url does not lead to Harbor's API");

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
    require_tools();
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
