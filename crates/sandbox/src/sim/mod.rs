//! The cluster simulator: controllers that act only through the Kubernetes API, so they run
//! as well against a real API server that has no kubelet or controller-manager.
//!
//! - `job_controller` runs Jobs ([`job`] decides), one pod per attempt;
//! - `kubelet` moves pods bound to simulated nodes through their phases ([`lifecycle`]
//!   decides, [`behaviour`] reads what the pod's template asks for);
//! - `nodes` keeps the simulated Node objects;
//! - `daemonset_controller` runs one pod per node per DaemonSet ([`daemonset`] decides);
//! - [`scheduler`] binds pending pods to the simulated nodes, in the node-only mode where
//!   a cluster's own Job and DaemonSet controllers create the pods ([`Controllers`]);
//! - [`watched`] is the paced watch every controller reads through, open to controllers of
//!   the system under test (such as a node agent) that run beside these.

pub mod behaviour;
pub mod bench;
pub mod daemonset;
mod daemonset_controller;
pub mod job;
mod job_controller;
mod kubelet;
pub mod kubelet_http;
pub mod lifecycle;
mod nodes;
pub mod pod_state;
pub mod scheduler;
pub mod watched;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use kubelet_http::KubeletEndpoint;
use nodes::{NodeManager, NodeRegistry};

pub use nodes::{LABEL_POOL, TAINT_NOT_READY};

/// Which controllers the simulator runs besides its nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Controllers {
    /// Its own Job and DaemonSet controllers, which create their pods already bound to a
    /// simulated node (an API server with no controller-manager, such as the sandbox).
    #[default]
    All,
    /// Its DaemonSet controller only: something else, acting through the API, finishes the
    /// Jobs and no Job pod is made.
    DaemonSets,
    /// The nodes only, on a cluster whose own Job and DaemonSet controllers create the pods:
    /// the simulator binds them (as the scheduler does), runs them (as kubelets do), keeps
    /// its Nodes' heartbeats and removes their `not-ready` taint once Ready (as the node
    /// lifecycle controller does). It writes no Job or DaemonSet status.
    NodesOnly,
}

/// What the simulator runs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Namespace watched for Jobs, DaemonSets and pods; `None`: all namespaces.
    pub namespace: Option<String>,
    /// Number of nodes at start. Job pods are bound to these nodes in turn: without nodes
    /// they stay Pending, as on a cluster with no schedulable node.
    pub nodes: usize,
    /// Node pool: nodes are named `<pool>-<n>` and labelled [`LABEL_POOL`]`=<pool>`.
    pub pool: String,
    /// Run time of a pod whose template does not say.
    pub default_run: Duration,
    /// The controllers that run besides the nodes.
    pub controllers: Controllers,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            namespace: None,
            nodes: 3,
            pool: "sim".into(),
            default_run: Duration::from_millis(50),
            controllers: Controllers::All,
        }
    }
}

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// An API call failed.
    #[error("simulator could not {action}: {source}")]
    Api {
        /// What the simulator was doing.
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The node is not one of the simulator's.
    #[error("node {0:?} is not a simulated node")]
    UnknownNode(String),
    /// Waiting on an object's watch failed.
    #[error("simulator could not watch {what}: {source}")]
    Wait {
        /// The object waited for.
        what: String,
        /// The watch's error.
        #[source]
        source: kube::runtime::wait::Error,
    },
    /// The configuration cannot work.
    #[error("invalid simulator configuration: {0}")]
    Config(String),
}

/// A running simulator.
pub struct Simulator {
    nodes: NodeManager,
    tasks: Vec<JoinHandle<()>>,
    kubelet_endpoint: KubeletEndpoint,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Creates the nodes and starts every controller on `client`.
    pub async fn start(client: Client, cfg: SimConfig) -> Result<Simulator, SimError> {
        validate(&cfg)?;
        let registry = Arc::new(NodeRegistry::new(&cfg.pool));
        let kubelet_endpoint = KubeletEndpoint::start(client.clone(), cfg.default_run).await?;
        let nodes = NodeManager::new(
            client.clone(),
            cfg.namespace.clone(),
            registry.clone(),
            kubelet_endpoint.port(),
        );
        if let Err(err) = nodes.ensure(cfg.nodes).await {
            kubelet_endpoint.shutdown().await;
            return Err(err);
        }
        let ns = cfg.namespace.clone();
        let mut tasks = vec![tokio::spawn(kubelet::run(
            client.clone(),
            ns.clone(),
            registry.clone(),
            cfg.default_run,
        ))];
        if cfg.controllers == Controllers::NodesOnly {
            tasks.push(tokio::spawn(scheduler::run(
                client.clone(),
                ns.clone(),
                registry.clone(),
            )));
            tasks.push(tokio::spawn(nodes.clone().heartbeat()));
        } else {
            tasks.push(tokio::spawn(daemonset_controller::run(
                client.clone(),
                ns.clone(),
                registry.clone(),
            )));
        }
        if cfg.controllers == Controllers::All {
            tasks.push(tokio::spawn(job_controller::run(
                client.clone(),
                ns.clone(),
                registry.clone(),
            )));
        }
        Ok(Simulator {
            nodes,
            tasks,
            kubelet_endpoint,
        })
    }

    /// Adds a Ready node `<pool>-<n>` and returns its name.
    pub async fn add_node(&self) -> Result<String, SimError> {
        self.nodes.add().await
    }

    /// Deletes a simulated node and the pods bound to it.
    pub async fn delete_node(&self, name: &str) -> Result<(), SimError> {
        self.nodes.delete(name).await
    }

    /// Replaces a node by a new one with a new name (as a cloud replaces a machine) and returns
    /// the new name.
    pub async fn replace_node(&self, name: &str) -> Result<String, SimError> {
        self.nodes.delete(name).await?;
        self.nodes.add().await
    }

    /// Stops every controller; the objects they made stay in the API.
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            // An aborted task answers Err(cancelled), which is the expected end here.
            let _ = task.await;
        }
        self.kubelet_endpoint.shutdown().await;
    }
}

/// Rejects a configuration that cannot work, naming the field.
fn validate(cfg: &SimConfig) -> Result<(), SimError> {
    // Node names are `<pool>-<n>` and pod names of DaemonSets are derived from nothing
    // longer, so 40 characters leave room within the 63 of a label.
    if !is_dns_label(&cfg.pool) || cfg.pool.len() > 40 {
        return Err(SimError::Config(format!(
            "pool {:?} must be a DNS-1123 label of at most 40 characters",
            cfg.pool
        )));
    }
    Ok(())
}

/// An API over `namespace`, or over all namespaces.
pub fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Wraps a client error with what the simulator was doing.
pub fn api_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> SimError {
    let action = action.into();
    move |source| SimError::Api { action, source }
}

/// Write parameters naming the simulator's field manager.
pub fn manager(name: &str) -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(name.to_owned()),
        ..Default::default()
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configurations_are_named() {
        assert!(validate(&SimConfig::default()).is_ok());
        let long = SimConfig {
            pool: "p".repeat(41),
            ..SimConfig::default()
        };
        assert!(validate(&long).unwrap_err().to_string().contains("pool"));
    }

    #[test]
    fn pool_names_are_dns_labels() {
        assert!(is_dns_label("sim"));
        assert!(is_dns_label("pool-2"));
        for bad in ["", "-a", "a-", "Pool", "a.b"] {
            assert!(!is_dns_label(bad), "{bad:?}");
        }
    }
}
