//! Test harness: a cluster per test binary run, a fresh namespace per test.
//!
//! By default every test starts its own sandbox API server. With `CUTOVER_TEST_KUBECONFIG`
//! set to a kubeconfig file, tests run against that cluster instead, unchanged.

#![allow(dead_code)]

pub mod crds;
pub mod session;

use catalyst_cutover::contract;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube_sandbox::api::{ApiServer, ApiServerConfig};
use kube_sandbox::sim::{Controllers, SimConfig, Simulator};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Display;

/// The chart's eleven steps, in execution order: the console's eleven rows.
pub const CHART_STEPS: [&str; 11] = [
    "gitea-mirror",
    "harbor-projects",
    "harbor-prewarm",
    "registry-pivot",
    "flux-gitrepository-patch",
    "helmrepository-patches",
    "catalyst-api-env-patch",
    "egress-block-test",
    "gitea-token-mint",
    "vcluster-registry-pivot",
    "crossplane-provider-pivot",
];

/// The chart's preflight step (mode `preflight`, order 0), which runs before the eleven.
pub const CHART_PREFLIGHT: &str = "preflight";

/// Environment variable naming a kubeconfig of a real cluster to test against.
pub const ENV_KUBECONFIG: &str = "CUTOVER_TEST_KUBECONFIG";

/// Environment variable: `1` when the cluster under test runs the real Job and DaemonSet
/// controllers (kube-controller-manager with `job,daemonset,ttl-after-finished`), so the
/// simulator must play only the nodes.
pub const ENV_REAL_CONTROLLERS: &str = "CUTOVER_TEST_REAL_CONTROLLERS";

/// Whether the cluster under test runs the real Job and DaemonSet controllers.
pub fn real_controllers() -> bool {
    std::env::var(ENV_REAL_CONTROLLERS).is_ok_and(|v| v == "1")
}

/// The controllers a test's simulator runs: its own on the sandbox or a bare API server, the
/// nodes only where the cluster's real controllers run ([`ENV_REAL_CONTROLLERS`]).
pub fn controllers() -> Controllers {
    if real_controllers() {
        Controllers::NodesOnly
    } else {
        Controllers::All
    }
}

/// A cluster for one test, with a namespace of its own.
pub struct TestCluster {
    server: Option<ApiServer>,
    client: kube::Client,
    kubeconfig: Kubeconfig,
    namespace: String,
}

impl TestCluster {
    /// Starts a sandbox (or connects to `CUTOVER_TEST_KUBECONFIG`) and creates `ct-<random>`.
    pub async fn start() -> TestCluster {
        Self::start_with(ApiServerConfig::default()).await
    }

    /// As [`Self::start`], with `sandbox` configuring the sandbox (unused on a real cluster).
    pub async fn start_with(sandbox: ApiServerConfig) -> TestCluster {
        let (server, kubeconfig) = match std::env::var(ENV_KUBECONFIG) {
            Ok(path) if !path.is_empty() => (
                None,
                Kubeconfig::read_from(&path).expect("read CUTOVER_TEST_KUBECONFIG"),
            ),
            _ => {
                let server = ApiServer::start(sandbox).await.expect("start sandbox");
                let kc = server.kubeconfig(server.admin_token());
                (Some(server), kc)
            }
        };
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &KubeConfigOptions::default())
                .await
                .expect("client config");
        let client = kube::Client::try_from(config).expect("client");
        let namespace = format!("ct-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))
                .expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        TestCluster {
            server,
            client,
            kubeconfig,
            namespace,
        }
    }

    /// A client for the cluster under test.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// This test's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The kubeconfig of the cluster under test.
    pub fn kubeconfig(&self) -> &Kubeconfig {
        &self.kubeconfig
    }

    /// A client configuration for the cluster under test, from its kubeconfig.
    pub async fn config(&self) -> kube::Config {
        kube::Config::from_custom_kubeconfig(self.kubeconfig.clone(), &KubeConfigOptions::default())
            .await
            .expect("client config")
    }

    /// The sandbox, when the tests run against one (`None` on a real cluster).
    pub fn sandbox(&self) -> Option<&ApiServer> {
        self.server.as_ref()
    }

    /// Best-effort: deletes the namespace and stops the sandbox. The pods go first, at once:
    /// on a real API server no kubelet is left to finish their graceful deletion, which would
    /// keep the namespace terminating, and its controller retrying, for good.
    pub async fn cleanup(self) {
        let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(
            self.client.clone(),
            &self.namespace,
        );
        // A Job controller gone with its test (the simulator's) leaves its tracking finalizer
        // on the pods it had not counted: taken off here, as it would for orphans.
        if let Ok(list) = pods.list(&Default::default()).await {
            for pod in list
                .items
                .iter()
                .filter(|p| p.metadata.finalizers.is_some())
            {
                let name = pod.metadata.name.as_deref().unwrap_or_default();
                let patch = json!({"metadata": {"finalizers": null}});
                let _ = pods
                    .patch(name, &Default::default(), &kube::api::Patch::Merge(&patch))
                    .await;
            }
        }
        let _ = pods
            .delete_collection(
                &DeleteParams::default().grace_period(0),
                &Default::default(),
            )
            .await;
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.namespace, &DeleteParams::default())
            .await;
        // Nodes outlive namespaces: a simulator's pool is named after its test's namespace.
        let _ = Api::<k8s_openapi::api::core::v1::Node>::all(self.client.clone())
            .delete_collection(
                &DeleteParams::default(),
                &kube::api::ListParams::default().labels(&format!(
                    "{}={}",
                    kube_sandbox::sim::LABEL_POOL,
                    self.namespace
                )),
            )
            .await;
        if let Some(server) = self.server {
            server.shutdown().await;
        }
    }
}

/// The `metav1.Status` of an API error; panics on any other error.
pub fn api_status(error: kube::Error) -> kube::core::Status {
    match error {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other}"),
    }
}

/// Creates ServiceAccount `name` in `ns`.
pub async fn create_service_account(client: &kube::Client, ns: &str, name: &str) -> ServiceAccount {
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some(name.to_owned());
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("create serviceaccount")
}

/// Asks the TokenRequest API for a token of ServiceAccount `name` in `ns`, `seconds` long
/// (`None`: the server's default), as `client`.
pub async fn request_token(
    client: &kube::Client,
    ns: &str,
    name: &str,
    seconds: Option<i64>,
) -> Result<TokenRequest, kube::Error> {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: seconds,
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(name, &PostParams::default(), &request)
        .await
}

/// The token of an answered TokenRequest.
pub fn token_of(answer: &TokenRequest) -> String {
    answer.status.as_ref().expect("status").token.clone()
}

/// Sleeps until `deadline` has passed on this machine's clock.
pub async fn sleep_until(deadline: jiff::Timestamp) {
    let left = deadline.duration_since(jiff::Timestamp::now());
    if let Ok(left) = std::time::Duration::try_from(left) {
        tokio::time::sleep(left).await;
    }
}

/// Creates `object`, or replaces the one a real cluster holds from an earlier run (its
/// fixed-name, shared objects such as the chart's RBAC outlive the test's namespace).
pub async fn create_or_replace<K>(api: &Api<K>, object: &K)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), object).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let current = api.get(&name).await.expect("read the existing object");
            let mut next = object.clone();
            next.meta_mut().resource_version = current.meta().resource_version.clone();
            api.replace(&name, &PostParams::default(), &next)
                .await
                .unwrap_or_else(|e| panic!("replace {name}: {e}"));
        }
        Err(other) => panic!("create {name}: {other}"),
    }
}

/// A ClusterRole `name` with `verbs` on cutovers.catalyst.openova.io.
pub fn role(name: &str, verbs: &[&str]) -> ClusterRole {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "rules": [{"apiGroups": ["catalyst.openova.io"], "resources": ["cutovers"], "verbs": verbs}]
    }))
    .unwrap()
}

/// Creates `role` (or, on a cluster that has it from an earlier run, sets its rules), binds
/// it to ServiceAccount `sa` in `ns` with a RoleBinding, and waits until the API server's
/// authorizer lets `sa` read cutovers (a real cluster's RBAC follows its informers; every
/// role granted here includes `get`).
pub async fn grant(client: &kube::Client, ns: &str, sa: &str, role: ClusterRole) {
    grant_probed(client, ns, sa, role, cutovers_probe(ns)).await;
}

/// The SubjectAccessReview attributes of reading cutovers in `ns`: every role the tests grant
/// includes it, so its answer tells that a binding took effect.
pub fn cutovers_probe(ns: &str) -> ResourceAttributes {
    ResourceAttributes {
        verb: Some("get".to_owned()),
        group: Some("catalyst.openova.io".to_owned()),
        resource: Some("cutovers".to_owned()),
        namespace: Some(ns.to_owned()),
        ..ResourceAttributes::default()
    }
}

/// As [`grant`], waiting until the authorizer allows `probe` (in `ns`) to `sa`.
pub async fn grant_probed(
    client: &kube::Client,
    ns: &str,
    sa: &str,
    role: ClusterRole,
    probe: ResourceAttributes,
) {
    let subject = json!({"kind": "ServiceAccount", "name": sa, "namespace": ns});
    bind(
        client,
        ns,
        sa,
        subject,
        service_account_member(ns, sa),
        role,
        probe,
    )
    .await;
}

/// Creates `role`, binds it in `ns` to `subject` (a RoleBinding named after the role and
/// `suffix`), and waits until a SubjectAccessReview for `member` (user, groups) allows
/// `probe`.
pub async fn bind(
    client: &kube::Client,
    ns: &str,
    suffix: &str,
    subject: Value,
    member: (String, Vec<String>),
    role: ClusterRole,
    probe: ResourceAttributes,
) {
    let name = role.metadata.name.clone().unwrap_or_default();
    create_or_replace(&Api::<ClusterRole>::all(client.clone()), &role).await;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-{suffix}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [subject]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("role binding");
    assert!(
        member_allowed_within_a_minute(client, member, probe).await,
        "{name} for {suffix} never took effect"
    );
}

/// The user and groups a ServiceAccount `sa` of `ns` authenticates as.
pub fn service_account_member(ns: &str, sa: &str) -> (String, Vec<String>) {
    (
        format!("system:serviceaccount:{ns}:{sa}"),
        vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".to_owned(),
        ],
    )
}

/// Whether ServiceAccount `sa` of `ns` is allowed what `attributes` ask within a minute.
pub async fn allowed_within_a_minute(
    client: &kube::Client,
    ns: &str,
    sa: &str,
    attributes: ResourceAttributes,
) -> bool {
    member_allowed_within_a_minute(client, service_account_member(ns, sa), attributes).await
}

/// Whether `member` (user, groups) is allowed what `attributes` ask within a minute, asked
/// with SubjectAccessReviews every 100 ms: a real API server's authorizer sees new bindings
/// only once its informers have them.
pub async fn member_allowed_within_a_minute(
    client: &kube::Client,
    member: (String, Vec<String>),
    attributes: ResourceAttributes,
) -> bool {
    let (user, groups) = member;
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user),
            groups: Some(groups),
            resource_attributes: Some(attributes),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let reviews = Api::<SubjectAccessReview>::all(client.clone());
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            let answer = reviews
                .create(&PostParams::default(), &review)
                .await
                .expect("subjectaccessreview");
            if answer.status.is_some_and(|s| s.allowed) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
    .is_ok()
}

/// A DaemonSet `name` of one container running `image`, its pods labelled `app=<name>`, on
/// the nodes of the simulator's `pool` (a DaemonSet runs on every node of the cluster that
/// its node selector admits: on a cluster shared by tests, that is the test's own pool).
pub fn daemonset(name: &str, image: &str, pool: &str) -> k8s_openapi::api::apps::v1::DaemonSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {kube_sandbox::sim::LABEL_POOL: pool},
                    "containers": [{"name": "agent", "image": image}]
                }
            }
        }
    }))
    .expect("DaemonSet")
}

/// Creates the DaemonSet `name` in `ns` (one busybox container) on the nodes of the pool
/// named after `ns`, for the simulator to roll out and daemonset-wait steps to wait for.
pub async fn create_daemonset(client: &kube::Client, ns: &str, name: &str) {
    Api::<k8s_openapi::api::apps::v1::DaemonSet>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &daemonset(name, "busybox:1.36", ns))
        .await
        .expect("create DaemonSet");
}

/// A client of `cluster` that authenticates with `token`.
pub async fn client_with_token(cluster: &TestCluster, token: &str) -> kube::Client {
    let mut config = cluster.config().await;
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.to_owned().into()),
        ..kube::config::AuthInfo::default()
    };
    config.default_retry = false;
    kube::Client::try_from(config).expect("client")
}

/// A client of ServiceAccount `sa` (created now in the test's namespace) whose only rights
/// are every verb on ConfigMaps there: what whoever may edit the namespace's ConfigMaps can
/// do, with a TokenRequest token.
pub async fn configmap_writer(cluster: &TestCluster, sa: &str) -> kube::Client {
    let (admin, ns) = (cluster.client(), cluster.namespace());
    create_service_account(&admin, ns, sa).await;
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "cutover-test-configmap-writer"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]
    }))
    .unwrap();
    let probe = ResourceAttributes {
        verb: Some("patch".to_owned()),
        resource: Some("configmaps".to_owned()),
        namespace: Some(ns.to_owned()),
        ..ResourceAttributes::default()
    };
    grant_probed(&admin, ns, sa, role, probe).await;
    let token = request_token(&admin, ns, sa, None)
        .await
        .expect("token request");
    client_with_token(cluster, &token_of(&token)).await
}

/// A `job` step ConfigMap whose pod behaves as `env` tells the simulator. Its command holds
/// what looks like a template: the renderer must pass it through untouched.
pub fn job_step(order: impl Display, name: &str, env: &[(&str, &str)]) -> ConfigMap {
    let env: Vec<Value> = env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let pod_spec = json!({
        "containers": [{"name": "step", "image": "alpine/k8s:1.33.1", "command": ["sh", "-c", "echo {{ .not.a.template }}"], "env": env}]
    });
    step_cm(
        order,
        name,
        "job",
        Some(serde_yaml::to_string(&pod_spec).expect("podSpec")),
    )
}

/// A step ConfigMap as the chart ships one: its order, name and mode, and a Job step's
/// PodSpec.
pub fn step_cm(order: impl Display, name: &str, mode: &str, pod_spec: Option<String>) -> ConfigMap {
    let mut data = BTreeMap::from([(contract::DATA_STEP_NAME.to_owned(), name.to_owned())]);
    if let Some(pod_spec) = pod_spec {
        data.insert(contract::DATA_POD_SPEC.to_owned(), pod_spec);
    }
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("cutover-step-{order:02}-{name}"),
            "labels": {
                contract::LABEL_PART_OF: contract::PART_OF,
                contract::LABEL_COMPONENT: contract::COMPONENT_STEP,
                contract::LABEL_STEP_ORDER: order.to_string(),
                contract::LABEL_STEP_MODE: mode,
            }
        },
        "data": data,
    }))
    .expect("step ConfigMap")
}

/// Creates `steps` in the test's namespace, then starts the simulator there with one node,
/// its Jobs finishing after 20 ms unless a step's env says otherwise.
pub async fn steps_on_one_node(cluster: &TestCluster, steps: &[ConfigMap]) -> Simulator {
    let ns = cluster.namespace().to_owned();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    for cm in steps {
        api.create(&PostParams::default(), cm)
            .await
            .expect("create step");
    }
    Simulator::start(
        cluster.client(),
        SimConfig {
            namespace: Some(ns.clone()),
            nodes: 1,
            pool: ns,
            default_run: std::time::Duration::from_millis(20),
            controllers: controllers(),
        },
    )
    .await
    .expect("start simulator")
}

/// Waits until the service at `base` answers `/readyz` with 200 (its caches are synced);
/// panics when it has not within `within` (a hang guard, not a speed assertion).
pub async fn wait_ready(base: &str, within: std::time::Duration) {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "service at {base} never became ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The ClusterRole `catalyst-cutover-operator` exactly as the chart ships it.
pub fn chart_operator_role() -> ClusterRole {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/chart/templates/service-rbac.yaml"
    );
    let text = std::fs::read_to_string(path).expect("the chart's service RBAC");
    text.split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<ClusterRole>(doc).ok())
        .find(|role| role.metadata.name.as_deref() == Some("catalyst-cutover-operator"))
        .expect("the chart ships ClusterRole catalyst-cutover-operator")
}

/// POSTs `path` of the service at `base` with no body (declared JSON, as a POST must be);
/// the answer's status code.
pub async fn post_status(base: &str, path: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .send()
        .await
        .expect("POST")
        .status()
        .as_u16()
}

/// Polls `check` until it holds; panics naming `what` after a minute (a hang guard, not a
/// speed assertion).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while !check().await {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "never: {what}");
}

/// Gives the registry-pivot agents of `ns` a direction as the service does: annotations
/// `direction` and `since` of the record Lease `record` (created if missing); `None`
/// deletes the Lease.
pub async fn direct_agents(
    client: &kube::Client,
    ns: &str,
    record: &str,
    direction: Option<(&str, &str)>,
) {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Patch, PatchParams};
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let Some((direction, since)) = direction else {
        leases
            .delete(record, &DeleteParams::default())
            .await
            .expect("delete the record Lease");
        return;
    };
    let lease = json!({"metadata": {"name": record, "annotations": {
        contract::pivot::ANNOTATION_DIRECTION: direction,
        contract::pivot::ANNOTATION_DIRECTION_SINCE: since,
    }}});
    if leases
        .get_opt(record)
        .await
        .expect("read the record Lease")
        .is_some()
    {
        leases
            .patch(record, &PatchParams::default(), &Patch::Merge(&lease))
            .await
            .expect("patch the record Lease");
    } else {
        let lease: Lease = serde_json::from_value(lease).expect("a Lease");
        leases
            .create(&PostParams::default(), &lease)
            .await
            .expect("create the record Lease");
    }
}
