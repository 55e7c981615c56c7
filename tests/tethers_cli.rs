//! `catalyst-cutover tethers`, the binary itself, against the sandbox (or unchanged against
//! `CUTOVER_TEST_KUBECONFIG`): it lists the cluster through the Kubernetes API with the
//! kubeconfig it is given, prints the tethers as a table or as the route's JSON, and its
//! exit code says none (0), some (1), blind (3) or unreadable (4). Each test names an
//! upstream host of its own, so that other tests' objects on a shared cluster are no
//! tethers of its.

mod common;

use common::TestCluster;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube_sandbox::access_control::TokenTable;
use kube_sandbox::api::ApiServerConfig;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use tokio::process::Command;

/// Hang guard for one run, not a speed assertion.
const GUARD: Duration = Duration::from_secs(60);

struct Env {
    cluster: TestCluster,
    kubeconfig: PathBuf,
    /// The upstream host of this test alone.
    host: String,
}

impl Env {
    /// A cluster whose API server checks tokens and RBAC (as a real one does).
    async fn start() -> Env {
        let cluster = TestCluster::start_with(ApiServerConfig {
            tokens: Some(TokenTable::default()),
            ..ApiServerConfig::default()
        })
        .await;
        let ns = cluster.namespace().to_owned();
        let kubeconfig = write_kubeconfig(&ns, "admin", cluster.kubeconfig());
        Env {
            host: format!("{ns}.upstream.test"),
            cluster,
            kubeconfig,
        }
    }

    fn ns(&self) -> &str {
        self.cluster.namespace()
    }

    /// `catalyst-cutover tethers --kubeconfig <kubeconfig> -n <ns> --tether-upstream-host <host> <args>`.
    async fn run(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_catalyst-cutover"));
        command
            .arg("tethers")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["-n", self.ns(), "--tether-upstream-host", &self.host])
            .args(args)
            .env_remove("KUBECONFIG")
            .env_remove("CATALYST_CUTOVER_NAMESPACE")
            .env_remove("CATALYST_CUTOVER_TETHER_UPSTREAM_HOSTS")
            .env_remove("CATALYST_CUTOVER_MIRRORED_REGISTRIES")
            .kill_on_drop(true);
        tokio::time::timeout(GUARD, command.output())
            .await
            .expect("tethers ends in time")
            .expect("run catalyst-cutover tethers")
    }

    /// A bare pod whose container names this test's upstream host in an env value.
    async fn plant(&self, name: &str) {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [{
                "name": "app",
                "image": "registry.local/app:1",
                "env": [{"name": "REPO", "value": format!("https://{}/openova/platform", self.host)}],
            }]}
        }))
        .unwrap();
        Api::<Pod>::namespaced(self.cluster.client(), self.ns())
            .create(&PostParams::default(), &pod)
            .await
            .expect("plant the pod");
    }

    async fn fix(&self, name: &str) {
        let pods: Api<Pod> = Api::namespaced(self.cluster.client(), self.ns());
        pods.delete(name, &DeleteParams::default().grace_period(0))
            .await
            .expect("delete the pod");
        common::eventually("the pod is gone", || {
            let pods = pods.clone();
            async move { pods.get_opt(name).await.ok().flatten().is_none() }
        })
        .await;
    }
}

fn write_kubeconfig(ns: &str, who: &str, kubeconfig: &kube::config::Kubeconfig) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{ns}.{who}.tethers.kubeconfig"));
    std::fs::write(
        &path,
        serde_yaml::to_string(kubeconfig).expect("kubeconfig"),
    )
    .expect("write kubeconfig");
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("an exit code")
}

/// The report as `-o json` prints it, and the exit code that came with it.
async fn report(env: &Env) -> (i32, Value) {
    let output = env.run(&env.kubeconfig, &["-o", "json"]).await;
    let body = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&output.stdout), text(&output.stderr)));
    (code(&output), body)
}

/// The tethers naming this test's host.
fn mine<'a>(env: &Env, body: &'a Value) -> Vec<&'a Value> {
    body["tethers"]
        .as_array()
        .expect("tethers")
        .iter()
        .filter(|t| t["host"] == env.host.as_str())
        .collect()
}

/// The exit code a report calls for: 1 with any tether, else 0 (every kind not installed
/// hides nothing, and these tests' kubeconfig sees everything else).
fn exit_for(body: &Value) -> i32 {
    i32::from(body["count"].as_u64().expect("count") > 0)
}

#[tokio::test]
async fn a_planted_tether_is_listed_with_exit_1_and_fixed_it_is_0() {
    let env = Env::start().await;
    // A shared cluster may hold other tests' nodes (each unacknowledged node is a tether of
    // its own): the exit code is checked against the whole report, and only this test's
    // tethers are counted; the sandbox holds nothing else, so there "none" is exact.
    let (clean_code, clean) = report(&env).await;
    assert!(mine(&env, &clean).is_empty(), "{clean}");
    assert_eq!(clean_code, exit_for(&clean), "{clean}");
    if env.cluster.sandbox().is_some() {
        let table = env.run(&env.kubeconfig, &[]).await;
        assert_eq!(code(&table), 0, "{}", text(&table.stdout));
        assert!(
            text(&table.stdout).starts_with("no tethers: "),
            "{}",
            text(&table.stdout)
        );
    }

    env.plant("api").await;
    let table = env.run(&env.kubeconfig, &[]).await;
    let stdout = text(&table.stdout);
    assert_eq!(code(&table), 1, "{stdout}{}", text(&table.stderr));
    assert!(stdout.contains("container-url ("), "{stdout}");
    // The object is the pod's owner, or the pod itself (`<ns>/pod/api`) when it has none.
    let object = format!("{}/", env.ns());
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&object) && l.contains("api"))
        .unwrap_or_else(|| panic!("no line of the pod:\n{stdout}"));
    assert!(
        line.contains(&format!("https://{}/openova/platform", env.host)),
        "{line}"
    );
    assert!(line.trim_end().ends_with(&env.host), "{line}");
    assert!(stdout.contains(" gating completion)"), "{stdout}");

    let (planted_code, planted) = report(&env).await;
    assert_eq!(planted_code, 1);
    assert_eq!(planted["synced"], true);
    let found = mine(&env, &planted);
    assert_eq!(found.len(), 1, "{planted}");
    assert_eq!(found[0]["kind"], "container-url");
    assert_eq!(found[0]["namespace"], env.ns());

    env.fix("api").await;
    let (fixed_code, fixed) = report(&env).await;
    assert!(mine(&env, &fixed).is_empty(), "{fixed}");
    assert_eq!(fixed_code, exit_for(&fixed), "{fixed}");
    env.cluster.cleanup().await;
}

#[tokio::test]
async fn what_the_cluster_holds_reaches_the_terminal_escaped() {
    let env = Env::start().await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "lying"},
        "spec": {"containers": [{
            "name": "app",
            "image": "registry.local/app:1",
            "args": [format!("https://{}/x\u{1b}[2K\rno tethers: nothing\u{202e}", env.host)],
        }]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(env.cluster.client(), env.ns())
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod");
    for args in [&[][..], &["-o", "json"][..]] {
        let output = env.run(&env.kubeconfig, args).await;
        assert_eq!(code(&output), 1, "{args:?}: {}", text(&output.stdout));
        let stdout = text(&output.stdout);
        assert!(
            !stdout
                .chars()
                .any(|c| c != '\n' && (c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c))),
            "{args:?}: {stdout:?}"
        );
    }
    env.cluster.cleanup().await;
}

#[tokio::test]
async fn without_cluster_wide_rights_it_is_blind_not_clean_and_unreadable_is_4() {
    let env = Env::start().await;
    let (admin, ns) = (env.cluster.client(), env.ns().to_owned());
    common::create_service_account(&admin, &ns, "narrow").await;
    let token = common::token_of(
        &common::request_token(&admin, &ns, "narrow", None)
            .await
            .expect("token"),
    );
    let mut narrow = env.cluster.kubeconfig().clone();
    for auth in &mut narrow.auth_infos {
        if let Some(info) = auth.auth_info.as_mut() {
            *info = kube::config::AuthInfo {
                token: Some(token.clone().into()),
                ..kube::config::AuthInfo::default()
            };
        }
    }
    let narrow = write_kubeconfig(&ns, "narrow", &narrow);
    let blind = env.run(&narrow, &[]).await;
    let stdout = text(&blind.stdout);
    assert_eq!(code(&blind), 3, "{stdout}{}", text(&blind.stderr));
    assert!(stdout.contains("no tethers seen, but"), "{stdout}");
    assert!(stdout.contains("not seen: pods"), "{stdout}");

    let missing = std::env::temp_dir().join(format!("{ns}.missing.kubeconfig"));
    let unreadable = env.run(&missing, &[]).await;
    assert_eq!(code(&unreadable), 4, "{}", text(&unreadable.stderr));
    assert!(text(&unreadable.stderr).starts_with("catalyst-cutover tethers: "));

    let usage = Command::new(env!("CARGO_BIN_EXE_catalyst-cutover"))
        .args(["tethers", "--kubeconfig"])
        .arg(&env.kubeconfig)
        .env_remove("CATALYST_CUTOVER_TETHER_UPSTREAM_HOSTS")
        .output()
        .await
        .expect("run");
    assert_eq!(code(&usage), 4, "no upstream host: nothing to report");
    assert!(
        text(&usage.stderr).contains("upstream"),
        "{}",
        text(&usage.stderr)
    );
    env.cluster.cleanup().await;
}
