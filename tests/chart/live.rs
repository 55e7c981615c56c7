//! The chart's own RBAC, live: its ServiceAccounts, Roles, ClusterRoles and bindings, rendered
//! by Helm for the test's namespace and created on the cluster under test (the sandbox with
//! RBAC on, or `CUTOVER_TEST_KUBECONFIG`); each identity then does its real work with a token
//! the TokenRequest API issued for its ServiceAccount, and nothing else.

use crate::common::{self, TestCluster};
use k8s_openapi::api::authorization::v1::ResourceAttributes;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{AuthInfo, Kubeconfig};
use kube_sandbox::access_control::TokenTable;
use kube_sandbox::api::ApiServerConfig;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a new binding may take to reach a real API server's authorizer.
const RBAC_SETTLES: Duration = Duration::from_secs(60);

/// A cluster with RBAC on: the sandbox with a token table (its admin token only), serving
/// HTTPS as kube-apiserver does (kubectl sends no bearer token over plain HTTP), or
/// `CUTOVER_TEST_KUBECONFIG`, whose RBAC is always on.
pub async fn start() -> TestCluster {
    TestCluster::start_with(ApiServerConfig {
        tokens: Some(TokenTable::default()),
        tls: true,
        ..ApiServerConfig::default()
    })
    .await
}

/// The default values with every namespace the chart's Roles go to set to `namespace`, so
/// a test's RBAC stays in the test's namespace.
pub fn values_in(namespace: &str) -> Json {
    let mut values = crate::default_values();
    values["flux"]["namespace"] = Json::from(namespace);
    values["flux"]["gitRepository"] = Json::from("flux-system");
    values["catalystApi"]["namespace"] = Json::from(namespace);
    values["internalCallers"] = Json::Array(Vec::new());
    // Step 08's Flux rights then are a Role in this namespace, the narrower form.
    values["egressBlock"]["watchNamespace"] = Json::from(namespace);
    // Step 09's Secret and step 10's HelmReleases, as the later steps' tests make them.
    values["giteaToken"]["secretNamespace"] = Json::from(namespace);
    values["vclusterPivot"]["helmReleases"] = ["team-a", "team-b", "ingress", "missing"]
        .iter()
        .map(|name| Json::from(format!("{namespace}/{name}")))
        .collect();
    // A shared plane holds other suites' nodes and pods, tethers this test cannot clear:
    // the completion gate has a suite of its own (tests/tethers.rs).
    values["completion"]["requireNoTethers"] = Json::Bool(false);
    values
}

/// The chart's RBAC as created on one cluster for one test: the cluster-scoped objects carry
/// the test's namespace in their names (tests of one run share a real cluster), and are
/// deleted when this is dropped; the namespaced ones go with the namespaces.
pub struct InstalledRbac {
    kubeconfig: Kubeconfig,
    cluster_roles: Vec<String>,
    cluster_role_bindings: Vec<String>,
}

impl Drop for InstalledRbac {
    /// Best-effort, on a thread and runtime of its own with a client of its own: a drop may
    /// happen on a runtime that is busy with the test.
    fn drop(&mut self) {
        let kubeconfig = self.kubeconfig.clone();
        let roles = std::mem::take(&mut self.cluster_roles);
        let bindings = std::mem::take(&mut self.cluster_role_bindings);
        let removal = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(config) =
                    kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await
                else {
                    return;
                };
                let Ok(client) = kube::Client::try_from(config) else {
                    return;
                };
                let params = DeleteParams::default();
                for name in &bindings {
                    let _ = Api::<ClusterRoleBinding>::all(client.clone())
                        .delete(name, &params)
                        .await;
                }
                for name in &roles {
                    let _ = Api::<ClusterRole>::all(client.clone())
                        .delete(name, &params)
                        .await;
                }
            });
        });
        let _ = removal.join();
    }
}

/// The name a cluster-scoped object of the chart gets in `namespace`'s test.
pub fn cluster_name(name: &str, namespace: &str) -> String {
    format!("{name}-{namespace}")
}

/// Renders the chart with `values` for `cluster`'s namespace and creates every
/// ServiceAccount, Role, RoleBinding, ClusterRole and ClusterRoleBinding it holds (each
/// Role in the namespace the chart names, else the release's).
pub async fn install_rbac(cluster: &TestCluster, values: &Json) -> InstalledRbac {
    let ns = cluster.namespace();
    let client = cluster.client();
    let mut installed = InstalledRbac {
        kubeconfig: cluster.kubeconfig().clone(),
        cluster_roles: Vec::new(),
        cluster_role_bindings: Vec::new(),
    };
    let create = PostParams::default();
    for (_, doc) in crate::render_in(values, ns) {
        let namespace = doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or(ns)
            .to_owned();
        match crate::kind(&doc) {
            "ServiceAccount" => {
                let sa: ServiceAccount = crate::typed(&doc);
                Api::<ServiceAccount>::namespaced(client.clone(), &namespace)
                    .create(&create, &sa)
                    .await
                    .expect("create the chart's ServiceAccount");
            }
            "Role" => {
                let role: Role = crate::typed(&doc);
                Api::<Role>::namespaced(client.clone(), &namespace)
                    .create(&create, &role)
                    .await
                    .expect("create the chart's Role");
            }
            "RoleBinding" => {
                let mut binding: RoleBinding = crate::typed(&doc);
                if binding.role_ref.kind == "ClusterRole" {
                    binding.role_ref.name = cluster_name(&binding.role_ref.name, ns);
                }
                Api::<RoleBinding>::namespaced(client.clone(), &namespace)
                    .create(&create, &binding)
                    .await
                    .expect("create the chart's RoleBinding");
            }
            "ClusterRole" => {
                let mut role: ClusterRole = crate::typed(&doc);
                let name = cluster_name(role.metadata.name.as_deref().unwrap_or_default(), ns);
                role.metadata.name = Some(name.clone());
                common::create_or_replace(&Api::<ClusterRole>::all(client.clone()), &role).await;
                installed.cluster_roles.push(name);
            }
            "ClusterRoleBinding" => {
                let mut binding: ClusterRoleBinding = crate::typed(&doc);
                let name = cluster_name(binding.metadata.name.as_deref().unwrap_or_default(), ns);
                binding.metadata.name = Some(name.clone());
                binding.role_ref.name = cluster_name(&binding.role_ref.name, ns);
                common::create_or_replace(
                    &Api::<ClusterRoleBinding>::all(client.clone()),
                    &binding,
                )
                .await;
                installed.cluster_role_bindings.push(name);
            }
            _ => {}
        }
    }
    installed
}

/// Waits until ServiceAccount `sa` of `cluster`'s namespace may `verb` `group/resource`
/// (named `name`, in `namespace`).
pub async fn wait_granted(
    cluster: &TestCluster,
    sa: &str,
    verb: &str,
    group_resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) {
    let (group, resource) = group_resource
        .split_once('/')
        .expect("group/resource, `/pods` for the core group");
    let attributes = ResourceAttributes {
        verb: Some(verb.to_owned()),
        group: Some(group.to_owned()),
        resource: Some(resource.to_owned()),
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        ..ResourceAttributes::default()
    };
    assert!(
        common::allowed_within_a_minute(&cluster.client(), cluster.namespace(), sa, attributes)
            .await,
        "{sa} was never allowed to {verb} {group_resource}"
    );
}

/// `cluster`'s kubeconfig with every user's credentials replaced by a fresh token of
/// ServiceAccount `sa` in the test's namespace, from the TokenRequest API.
pub async fn kubeconfig_of(cluster: &TestCluster, sa: &str) -> Kubeconfig {
    let answer = common::request_token(&cluster.client(), cluster.namespace(), sa, None)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {sa}: {e}"));
    let token = common::token_of(&answer);
    let mut kubeconfig = cluster.kubeconfig().clone();
    for user in &mut kubeconfig.auth_infos {
        user.auth_info = Some(AuthInfo {
            token: Some(token.clone().into()),
            ..AuthInfo::default()
        });
    }
    kubeconfig
}

/// Writes `kubeconfig` to `dir/<name>` and returns the path.
pub fn write_kubeconfig(dir: &Path, name: &str, kubeconfig: &Kubeconfig) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        serde_yaml::to_string(kubeconfig).expect("kubeconfig serializes"),
    )
    .expect("write kubeconfig");
    path
}

/// The `env` of the first container of the chart's Deployment `name` as a kubelet gives it
/// to pod `pod` in `namespace`: literal values, and the pod's own name and namespace.
pub fn deployment_env(
    docs: &[(String, Yaml)],
    name: &str,
    namespace: &str,
    pod: &str,
) -> Vec<(String, String)> {
    let deployment = crate::find(docs, "Deployment", name);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|env| {
            let key = env["name"].as_str().expect("env name").to_owned();
            let value = match env["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.namespace") => namespace,
                Some("metadata.name") => pod,
                Some(other) => panic!("{name}'s env {key} takes {other}, which this test lacks"),
                None => env["value"].as_str().unwrap_or_default(),
            };
            (key, value.to_owned())
        })
        .collect()
}

/// A running `catalyst-cutover serve` and every line it logged so far.
struct Served {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    url: String,
}

impl Served {
    /// Starts `serve` with `env` and `kubeconfig`, and waits until it listens and is ready.
    async fn start(env: &[(String, String)], kubeconfig: &Path) -> Served {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_catalyst-cutover"))
            .arg("serve")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("CATALYST_CUTOVER_LISTEN", "127.0.0.1:0")
            .env("CATALYST_CUTOVER_PROBE_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("serve starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let kept = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                kept.lock().expect("log lines").push(line.clone());
                // The test stops reading once the service listens.
                let _ = tx.send(line);
            }
        });
        let addr = tokio::time::timeout(RBAC_SETTLES, async {
            while let Some(line) = rx.recv().await {
                let Ok(json) = serde_json::from_str::<Json>(&line) else {
                    continue;
                };
                if json["fields"]["message"] == "catalyst-cutover is serving" {
                    return json["fields"]["addr"].as_str().map(str::to_owned);
                }
            }
            None
        })
        .await;
        let Ok(Some(addr)) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "serve never listened:\n{}",
                lines.lock().expect("log lines").join("\n")
            );
        };
        let url = format!("http://{addr}");
        common::wait_ready(&url, RBAC_SETTLES).await;
        Served { child, lines, url }
    }

    /// Stops the service (by its own PID) and returns everything it logged.
    fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader thread ends with the pipe; what it read is all there is.
        std::thread::sleep(Duration::from_millis(100));
        self.lines.lock().expect("log lines").clone()
    }
}

/// The lines of `log` that tell of a refusal by the API server's authorizer.
fn forbidden_lines(log: &[String]) -> Vec<&String> {
    log.iter()
        .filter(|line| line.to_lowercase().contains("forbidden"))
        .collect()
}

/// Waits (through a watch) until the status ConfigMap's phase is one of `phases`.
async fn wait_phase(
    cluster: &TestCluster,
    phases: &[&str],
) -> std::collections::BTreeMap<String, String> {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::wait::await_condition;
    let api: Api<ConfigMap> = Api::namespaced(cluster.client(), cluster.namespace());
    let name = catalyst_cutover::contract::DEFAULT_STATUS_CONFIGMAP;
    let wanted: Vec<String> = phases.iter().map(|p| (*p).to_owned()).collect();
    let reached = move |cm: Option<&ConfigMap>| {
        cm.and_then(|cm| cm.data.as_ref())
            .and_then(|d| d.get("cutoverPhase"))
            .is_some_and(|p| wanted.contains(p))
    };
    tokio::time::timeout(
        Duration::from_secs(90),
        await_condition(api.clone(), name, reached),
    )
    .await
    .unwrap_or_else(|_| panic!("the cutover never reached {phases:?}"))
    .expect("status watch");
    api.get(name)
        .await
        .expect("status ConfigMap")
        .data
        .unwrap_or_default()
}

/// The step ConfigMap `cm` with `SANDBOX_SIM_OUTCOME=<outcome>` on its first container (the
/// simulator's pods then end that way), or without it when `outcome` is `None`.
fn with_outcome(
    mut cm: k8s_openapi::api::core::v1::ConfigMap,
    outcome: Option<&str>,
) -> k8s_openapi::api::core::v1::ConfigMap {
    use k8s_openapi::api::core::v1::{EnvVar, PodSpec};
    let key = catalyst_cutover::contract::DATA_POD_SPEC;
    let data = cm.data.get_or_insert_default();
    let mut spec: PodSpec =
        serde_yaml::from_str(data.get(key).expect("a job step's podSpec")).expect("PodSpec");
    let env = spec.containers[0].env.get_or_insert_default();
    env.retain(|e| e.name != kube_sandbox::sim::behaviour::ENV_OUTCOME);
    if let Some(outcome) = outcome {
        env.push(EnvVar {
            name: kube_sandbox::sim::behaviour::ENV_OUTCOME.to_owned(),
            value: Some(outcome.to_owned()),
            ..EnvVar::default()
        });
    }
    data.insert(
        key.to_owned(),
        serde_yaml::to_string(&spec).expect("PodSpec"),
    );
    cm
}

/// Issue 27.1 and 27.7: the service, as the chart ships it (its env, its ServiceAccount's
/// token, its Role and ClusterRole), runs the chart's own steps: a first run fails at its
/// first step, the retry deletes the earlier run's kept log tails by name and completes the
/// cutover; the simulator plays the nodes and the Jobs, the demo's agents acknowledge. No
/// call of the service is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_runs_a_cutover_under_the_charts_own_rbac() {
    use catalyst_cutover::contract::{DEFAULT_STATUS_CONFIGMAP, STEP_CONFIGMAP_PREFIX};
    use catalyst_cutover::demo::{AgentConfig, Agents};
    use catalyst_cutover::step::StepName;
    use catalyst_cutover::steplog::KeptLog;
    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::core::v1::ConfigMap;

    let cluster = start().await;
    let ns = cluster.namespace().to_owned();
    let admin = cluster.client();
    let values = values_in(&ns);
    let docs = crate::render_in(&values, &ns);
    let rbac = install_rbac(&cluster, &values).await;
    let first_step = format!("{STEP_CONFIGMAP_PREFIX}01-gitea-mirror");
    let configmaps: Api<ConfigMap> = Api::namespaced(admin.clone(), &ns);
    // The chart's steps, settings and status as Helm renders them, the first step's pod
    // failing until told otherwise; the simulator plays one node and the Jobs.
    let chart_configmaps: Vec<ConfigMap> = docs
        .iter()
        .filter(|(_, doc)| crate::kind(doc) == "ConfigMap")
        .map(|(_, doc)| {
            let cm: ConfigMap = crate::typed(doc);
            if cm.metadata.name.as_deref() == Some(first_step.as_str()) {
                with_outcome(cm, Some("fail"))
            } else {
                cm
            }
        })
        .collect();
    // The DaemonSet the simulator's nodes run (the chart's own needs a kubelet's host).
    Api::<DaemonSet>::namespaced(admin.clone(), &ns)
        .create(
            &PostParams::default(),
            &common::daemonset("registry-pivot", "busybox:1.36", &ns),
        )
        .await
        .expect("create DaemonSet");
    let sim = common::steps_on_one_node(&cluster, &chart_configmaps).await;
    let agents = Agents::start(
        admin.clone(),
        AgentConfig {
            namespace: Some(ns.clone()),
            daemonset: "registry-pivot".to_owned(),
            record_lease: (
                ns.clone(),
                catalyst_cutover::service::ServiceConfig::new(&ns).record_lease(),
            ),
            ack_delay: Duration::from_millis(20),
            never_ack: Default::default(),
            settings: AgentConfig::demo_settings(),
        },
    );
    // An operator allowed what the chart's operator role allows.
    common::create_service_account(&admin, &ns, "operator").await;
    let mut operator_role = common::chart_operator_role();
    let operator_role_name = cluster_name("catalyst-cutover-operator", &ns);
    operator_role.metadata.name = Some(operator_role_name.clone());
    common::grant(&admin, &ns, "operator", operator_role).await;
    // Issued for the audiences the chart's service accepts (`authAudiences`), as
    // `kubectl create token operator --audience catalyst-cutover` does.
    let env = deployment_env(&docs, "catalyst-cutover", &ns, "catalyst-cutover-0");
    let audiences: Vec<String> = env
        .iter()
        .find(|(key, _)| key == "CATALYST_CUTOVER_AUTH_AUDIENCES")
        .map(|(_, value)| value.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let request = k8s_openapi::api::authentication::v1::TokenRequest {
        spec: k8s_openapi::api::authentication::v1::TokenRequestSpec {
            audiences,
            ..Default::default()
        },
        ..Default::default()
    };
    let operator = common::token_of(
        &Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(admin.clone(), &ns)
            .create_token_request("operator", &PostParams::default(), &request)
            .await
            .expect("operator token"),
    );
    for (verb, resource, namespace, name) in [
        (
            "update",
            "/configmaps",
            Some(ns.as_str()),
            Some(DEFAULT_STATUS_CONFIGMAP),
        ),
        ("create", "authentication.k8s.io/tokenreviews", None, None),
    ] {
        wait_granted(
            &cluster,
            "catalyst-cutover",
            verb,
            resource,
            namespace,
            name,
        )
        .await;
    }

    let dir = std::env::temp_dir().join(format!("{ns}-live-rbac"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = write_kubeconfig(
        &dir,
        "service",
        &kubeconfig_of(&cluster, "catalyst-cutover").await,
    );
    let served = Served::start(&env, &kubeconfig).await;
    let http = reqwest::Client::new();
    let post = |path: &str| {
        http.post(format!("{}{path}", served.url))
            .bearer_auth(&operator)
            .send()
    };

    let started = post("/cutover").await.expect("POST /cutover");
    assert_eq!(started.status(), 202, "{:?}", started.text().await);
    let failed = wait_phase(&cluster, &["failed", "complete"]).await;
    assert_eq!(failed["failedStep"], "gitea-mirror", "{failed:?}");
    let first_run: u32 = failed["cutoverAttempt"].parse().expect("cutoverAttempt");

    // A tail kept in that first run (the simulator's pod may have no log to keep on a
    // cluster without its kubelet, so one is made here as the service makes them).
    let status = configmaps
        .get(DEFAULT_STATUS_CONFIGMAP)
        .await
        .expect("status");
    let earlier = KeptLog {
        step: StepName::new("harbor-projects").expect("step name"),
        run: first_run,
        job: "cutover-harbor-projects-a1".to_owned(),
        pod: "cutover-harbor-projects-a1-x".to_owned(),
        container: "step".to_owned(),
        log: "earlier run\n".to_owned(),
        truncated: false,
    }
    .to_configmap(&ns, &status);
    let earlier_name = earlier.metadata.name.clone().expect("name");
    configmaps
        .create(&PostParams::default(), &earlier)
        .await
        .expect("create the earlier run's tail");

    let step = configmaps.get(&first_step).await.expect("first step");
    configmaps
        .replace(
            &first_step,
            &PostParams::default(),
            &with_outcome(step, None),
        )
        .await
        .expect("let the first step pass");
    let retried = post("/cutover/retry").await.expect("POST /cutover/retry");
    assert_eq!(retried.status(), 202, "{:?}", retried.text().await);
    let done = wait_phase(&cluster, &["complete"]).await;
    assert_eq!(done["cutoverComplete"], "true", "{done:?}");
    assert_ne!(
        done["cutoverAttempt"],
        first_run.to_string(),
        "the retry is a run of its own"
    );
    let cleaned = tokio::time::timeout(RBAC_SETTLES, async {
        while configmaps
            .get_opt(&earlier_name)
            .await
            .expect("get")
            .is_some()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let log = served.stop();
    assert!(
        cleaned.is_ok(),
        "the earlier run's tail {earlier_name} stays:\n{}",
        log.join("\n")
    );
    let refused = forbidden_lines(&log);
    assert!(
        refused.is_empty(),
        "the chart's RBAC refused the service:\n{}",
        refused
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        configmaps
            .get_opt(DEFAULT_STATUS_CONFIGMAP)
            .await
            .expect("get")
            .is_some()
    );

    let _ = std::fs::remove_dir_all(&dir);
    agents.shutdown().await;
    sim.shutdown().await;
    drop(rbac);
    let _ = Api::<ClusterRole>::all(admin.clone())
        .delete(&operator_role_name, &DeleteParams::default())
        .await;
    cluster.cleanup().await;
}
