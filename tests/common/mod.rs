//! Test harness: a cluster per test binary run, a fresh namespace per test.
//!
//! By default every test starts its own sandbox API server. With `CUTOVER_TEST_KUBECONFIG`
//! set to a kubeconfig file, tests run against that cluster instead, unchanged. The cluster
//! itself ([`TestCluster`]) and the helpers that know nothing of the cutover live in the
//! sandbox crate (`kube_sandbox::testing`), whose own suites use them too; the ones here
//! speak the cutover's language (steps, roles on cutovers, the chart).

#![allow(dead_code)]

pub mod crds;
pub mod env;
pub mod session;

// Each suite uses some of these.
#[allow(unused_imports)]
pub use env::{Env, EnvBuilder, REGISTRY_PIVOT, daemonset_step, steps_on_one_node};

use catalyst_cutover::contract;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{Api, DeleteParams, PostParams};
#[allow(unused_imports)]
pub use kube_sandbox::testing::*;
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

/// Creates the DaemonSet `name` in `ns` (one busybox container) on the nodes of the pool
/// named after `ns`, for the simulator to roll out and daemonset-wait steps to wait for.
pub async fn create_daemonset(client: &kube::Client, ns: &str, name: &str) {
    Api::<k8s_openapi::api::apps::v1::DaemonSet>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &daemonset(name, "busybox:1.36", ns))
        .await
        .expect("create DaemonSet");
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
