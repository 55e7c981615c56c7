//! The cluster the step scripts run against, with a namespace of their own: the
//! `CUTOVER_TEST_KUBECONFIG` cluster when set, else a sandbox that serves, besides its
//! builtins and the Flux and Cilium kinds, the workload kinds the steps read (Deployment,
//! StatefulSet, CronJob), which the sandbox does not have as builtins.

use catalyst_cutover::sandbox::api::{
    ApiServer, ApiServerConfig, CustomResourceKind, flux_and_cilium_kinds,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A cluster and the namespace of one test.
pub struct Cluster {
    server: Option<ApiServer>,
    client: kube::Client,
    kubeconfig: Kubeconfig,
    namespace: String,
}

fn workload_kind(group: &str, kind: &str, plural: &str) -> CustomResourceKind {
    CustomResourceKind {
        group: group.to_owned(),
        version: "v1".to_owned(),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
        namespaced: true,
    }
}

impl Cluster {
    pub async fn start() -> Cluster {
        let (server, kubeconfig) = match std::env::var(crate::common::ENV_KUBECONFIG) {
            Ok(path) if !path.is_empty() => {
                (None, Kubeconfig::read_from(&path).expect("kubeconfig"))
            }
            _ => {
                let mut custom_resources = flux_and_cilium_kinds();
                custom_resources.extend([
                    workload_kind("apps", "Deployment", "deployments"),
                    workload_kind("apps", "StatefulSet", "statefulsets"),
                    workload_kind("batch", "CronJob", "cronjobs"),
                ]);
                let config = ApiServerConfig {
                    custom_resources,
                    ..ApiServerConfig::default()
                };
                let server = ApiServer::start(config).await.expect("start sandbox");
                let kubeconfig = server.kubeconfig(server.admin_token());
                (Some(server), kubeconfig)
            }
        };
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &KubeConfigOptions::default())
                .await
                .expect("client config");
        let client = kube::Client::try_from(config).expect("client");
        let namespace = format!("chart-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))
                .expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        Cluster {
            server,
            client,
            kubeconfig,
            namespace,
        }
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn kubeconfig(&self) -> &Kubeconfig {
        &self.kubeconfig
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
