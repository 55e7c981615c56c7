//! What the operator-surface benches share: the sandbox with one bearer-token user bound to
//! a role on cutovers in the bench's namespace, and the wait for a service to be ready.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{Api, PostParams};
use kube::config::KubeConfigOptions;
use kube_sandbox::access_control::{TokenTable, UserInfo};
use kube_sandbox::api::{ApiServer, ApiServerConfig};
use serde_json::json;
use std::time::Duration;

/// The user `token` authenticates as.
pub const USER: &str = "operator";

/// The sandbox, where `token` authenticates [`USER`], namespace `ns` exists, and ClusterRole
/// `role` (`verbs` on cutovers) is bound to the user in `ns`; its admin client and the kube
/// config a service uses.
pub async fn sandbox(
    ns: &str,
    token: &str,
    role: &str,
    verbs: &[&str],
) -> (ApiServer, kube::Client, kube::Config) {
    let mut tokens = TokenTable::default();
    tokens.insert(token, UserInfo::new(USER, Vec::new()));
    let server = ApiServer::start(ApiServerConfig {
        tokens: Some(tokens),
        ..ApiServerConfig::default()
    })
    .await
    .expect("sandbox");
    let client = server.admin_client().await.expect("client");
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
    let cluster_role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": role},
        "rules": [{"apiGroups": ["catalyst.openova.io"], "resources": ["cutovers"],
                   "verbs": verbs}]
    }))
    .unwrap();
    Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &cluster_role)
        .await
        .expect("role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": USER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding");
    let kube_config = kube::Config::from_custom_kubeconfig(
        server.kubeconfig(server.admin_token()),
        &KubeConfigOptions::default(),
    )
    .await
    .expect("kube config");
    (server, client, kube_config)
}

/// Waits until the service at `base` answers `/readyz` with 200 (at most 30 s).
pub async fn wait_ready(base: &str) {
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the service is not ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
