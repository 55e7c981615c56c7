//! A harness for integration tests against a Kubernetes API server (feature `testing`): a
//! cluster per test with a namespace of its own, by default an embedded [`ApiServer`]; with
//! [`ENV_KUBECONFIG`] set, the cluster that kubeconfig names, so that the same suite runs
//! unchanged against a real control plane. The sandbox's own suites and those of the crates
//! tested against it share it.
//!
//! Test support: a helper panics, naming what failed, where a test could not go on.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use crate::api::{ApiServer, ApiServerConfig};
use crate::sim::Controllers;

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
                    crate::sim::LABEL_POOL,
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
                    "nodeSelector": {crate::sim::LABEL_POOL: pool},
                    "containers": [{"name": "agent", "image": image}]
                }
            }
        }
    }))
    .expect("DaemonSet")
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
