//! Test harness: a cluster per test binary run, a fresh namespace per test.
//!
//! By default every test starts its own sandbox API server. With `CUTOVER_TEST_KUBECONFIG`
//! set to a kubeconfig file, tests run against that cluster instead, unchanged.

#![allow(dead_code)]

use catalyst_cutover::sandbox::api::{ApiServer, ApiServerConfig};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// The chart's eight steps, in execution order.
pub const CHART_STEPS: [&str; 8] = [
    "gitea-mirror",
    "harbor-projects",
    "harbor-prewarm",
    "registry-pivot",
    "flux-gitrepository-patch",
    "helmrepository-patches",
    "catalyst-api-env-patch",
    "egress-block-test",
];

/// Environment variable naming a kubeconfig of a real cluster to test against.
pub const ENV_KUBECONFIG: &str = "CUTOVER_TEST_KUBECONFIG";

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

    /// Best-effort: deletes the namespace and stops the sandbox.
    pub async fn cleanup(self) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.namespace, &DeleteParams::default())
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
