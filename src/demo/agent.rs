//! The registry-pivot agents: for each node running a ready pod of the agent DaemonSet,
//! follow `registriesYamlActive` in the status ConfigMap and, after the configured delay,
//! acknowledge with a JSON merge patch of `node.<node>.registriesYaml`, as [`due_acks`]
//! decides. They run beside the sandbox's simulator, as a client of the API like it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::Patch;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use kube_sandbox::sim::watched::{Watched, pace, watched};
use kube_sandbox::sim::{SimError, api_error, manager, pod_state, scoped};

use super::ack::due_acks;
use crate::contract::key;

/// Field manager of the agents' writes.
const MANAGER: &str = "sandbox-registry-pivot";
/// Wait before an acknowledgement that failed is tried again.
const RETRY: Duration = Duration::from_millis(200);

/// The simulated registry-pivot agents.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Namespace of the DaemonSet's pods; `None`: all namespaces.
    pub namespace: Option<String>,
    /// Name of the DaemonSet whose ready pods run the agent.
    pub daemonset: String,
    /// `(namespace, name)` of the status ConfigMap the agents follow.
    pub status_configmap: (String, String),
    /// Time between a node seeing `registriesYamlActive` change and its acknowledgement.
    pub ack_delay: Duration,
    /// Nodes that never acknowledge.
    pub never_ack: BTreeSet<String>,
}

/// The running agents.
#[derive(Debug)]
pub struct Agents {
    never_ack: watch::Sender<BTreeSet<String>>,
    task: JoinHandle<()>,
}

impl Agents {
    /// Starts the agents of every node, writing with `client`.
    pub fn start(client: Client, cfg: AgentConfig) -> Agents {
        let (never_ack, never_ack_rx) = watch::channel(cfg.never_ack);
        let task = tokio::spawn(run(AgentParams {
            client,
            namespace: cfg.namespace,
            daemonset: cfg.daemonset,
            status_configmap: cfg.status_configmap,
            ack_delay: cfg.ack_delay,
            never_ack: never_ack_rx,
        }));
        Agents { never_ack, task }
    }

    /// Makes `node` acknowledge again (`never == false`) or never (`true`).
    pub fn set_never_ack(&self, node: &str, never: bool) {
        self.never_ack.send_modify(|set| {
            if never {
                set.insert(node.to_owned());
            } else {
                set.remove(node);
            }
        });
    }

    /// Stops the agents; what they wrote stays in the API.
    pub async fn shutdown(self) {
        self.task.abort();
        // An aborted task answers Err(cancelled), which is the expected end here.
        let _ = self.task.await;
    }
}

/// What the agents' loop needs.
struct AgentParams {
    /// The client the agents write with.
    pub client: Client,
    /// Namespace of the DaemonSet's pods; `None`: all namespaces.
    pub namespace: Option<String>,
    /// Name of the DaemonSet whose ready pods run the agent.
    pub daemonset: String,
    /// `(namespace, name)` of the status ConfigMap.
    pub status_configmap: (String, String),
    /// Delay before each acknowledgement.
    pub ack_delay: Duration,
    /// Nodes that never acknowledge, changed at run time.
    pub never_ack: watch::Receiver<BTreeSet<String>>,
}

/// An acknowledgement whose delay has passed (`done: None`) or whose write finished.
struct Due {
    node: String,
    value: String,
    done: Option<Result<(), SimError>>,
}

/// Runs the agents until the task is aborted.
async fn run(mut params: AgentParams) {
    let (cm_ns, cm_name) = params.status_configmap.clone();
    let cms: Api<ConfigMap> = Api::namespaced(params.client.clone(), &cm_ns);
    let changed = Arc::new(Notify::new());
    let status: Watched<ConfigMap> = watched(
        cms.clone(),
        watcher::Config::default().fields(&format!("metadata.name={cm_name}")),
        changed.clone(),
    );
    let pods: Watched<Pod> = watched(
        scoped(&params.client, params.namespace.as_deref()),
        watcher::Config::default(),
        changed.clone(),
    );
    let (cm_store, pod_store) = (&status.store, &pods.store);
    let (due_tx, mut due_rx) = mpsc::unbounded_channel::<Due>();
    // Acknowledgements waiting for their delay or being written, by node, with the value.
    let mut scheduled: HashMap<String, String> = HashMap::new();
    // The delays and writes in flight: dropped with this loop, so none outlives a shutdown.
    let mut tasks = JoinSet::new();

    loop {
        // Finished tasks report through `due_rx`; their join results only need reaping.
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            () = changed.notified() => {}
            changed = params.never_ack.changed() => if changed.is_err() { return },
            Some(due) = due_rx.recv() => {
                let forget = |scheduled: &mut HashMap<String, String>, due: &Due| {
                    if scheduled.get(&due.node) == Some(&due.value) {
                        scheduled.remove(&due.node);
                    }
                };
                match &due.done {
                    None => {
                        // The delay passed: write if the node still owes exactly this.
                        let still = current_due(cm_store, pod_store, &params, Some(&due.node))
                            .contains(&(due.node.clone(), due.value.clone()));
                        if still {
                            tasks.spawn(acknowledge(cms.clone(), cm_name.clone(), due, due_tx.clone()));
                        } else {
                            forget(&mut scheduled, &due);
                        }
                    }
                    // The ConfigMap's event tells whether anything is still owed.
                    Some(Ok(())) => forget(&mut scheduled, &due),
                    Some(Err(error)) => {
                        tracing::debug!(node = %due.node, %error, "registry-pivot ack retries");
                        schedule(&mut tasks, RETRY, due.node, due.value, &due_tx);
                    }
                }
                continue;
            }
        }
        // A look at every node costs the size of the pod store: paced, as the DaemonSet
        // controller's passes are, so one look covers a burst of changes.
        let started = tokio::time::Instant::now();
        let due = current_due(cm_store, pod_store, &params, None);
        schedule_due(&mut tasks, &due, &mut scheduled, &params, &due_tx);
        pace(started).await;
    }
}

/// Starts the delay of each acknowledgement in `due` not already on its way.
fn schedule_due(
    tasks: &mut JoinSet<()>,
    due: &[(String, String)],
    scheduled: &mut HashMap<String, String>,
    params: &AgentParams,
    tx: &mpsc::UnboundedSender<Due>,
) {
    for (node, value) in due {
        if scheduled.get(node) == Some(value) {
            continue;
        }
        scheduled.insert(node.clone(), value.clone());
        schedule(tasks, params.ack_delay, node.clone(), value.clone(), tx);
    }
}

fn schedule(
    tasks: &mut JoinSet<()>,
    delay: Duration,
    node: String,
    value: String,
    tx: &mpsc::UnboundedSender<Due>,
) {
    let tx = tx.clone();
    tasks.spawn(async move {
        tokio::time::sleep(delay).await;
        // The loop has gone when this fails: nothing is left to acknowledge for.
        let _ = tx.send(Due {
            node,
            value,
            done: None,
        });
    });
}

async fn acknowledge(
    cms: Api<ConfigMap>,
    cm_name: String,
    due: Due,
    tx: mpsc::UnboundedSender<Due>,
) {
    let patch = serde_json::json!({
        "data": { key::node_registries_yaml(&due.node): due.value }
    });
    let result = cms
        .patch(&cm_name, &manager(MANAGER), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(api_error(format!(
            "acknowledge {} for node {} in configmap {cm_name}",
            due.value, due.node
        )));
    if result.is_ok() {
        tracing::debug!(node = %due.node, value = %due.value, "registry-pivot acknowledged");
    }
    // The loop has gone when this fails.
    let _ = tx.send(Due {
        done: Some(result),
        ..due
    });
}

/// The acknowledgements due now, from the stores; of node `only` if given.
fn current_due(
    cm_store: &Store<ConfigMap>,
    pod_store: &Store<Pod>,
    params: &AgentParams,
    only: Option<&str>,
) -> Vec<(String, String)> {
    let (_, cm_name) = &params.status_configmap;
    let cm = cm_store.find(|cm| cm.metadata.name.as_deref() == Some(cm_name.as_str()));
    let data: Option<BTreeMap<String, String>> = cm.map(|cm| cm.data.clone().unwrap_or_default());
    let ready_nodes: BTreeSet<String> = pod_store
        .state()
        .iter()
        .filter(|p| runs_agent(p, &params.daemonset) && pod_state::is_ready(p))
        .filter(|p| pod_state::state(p) == pod_state::PodState::Active)
        .filter(|p| only.is_none() || pod_state::node_name(p) == only)
        .filter_map(|p| pod_state::node_name(p).map(str::to_owned))
        .collect();
    due_acks(data.as_ref(), &ready_nodes, &params.never_ack.borrow())
}

fn runs_agent(pod: &Pod, daemonset: &str) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.kind == "DaemonSet" && o.name == daemonset)
}
