//! The registry-pivot agents: for each node running a ready pod of the agent DaemonSet,
//! follow `registriesYamlActive` in the status ConfigMap and, after the configured delay,
//! acknowledge with a JSON merge patch of `node.<node>.registriesYaml`, as [`due_acks`]
//! decides.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::Patch;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};

use super::ack::due_acks;
use super::{SimError, api_error, pod_state, scoped};
use crate::contract::key;

/// Field manager of the agents' writes.
const MANAGER: &str = "sandbox-registry-pivot";
/// Wait before an acknowledgement that failed is tried again.
const RETRY: Duration = Duration::from_millis(200);

/// What the agents need.
pub struct AgentParams {
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

/// An acknowledgement whose delay has passed (`done == false`) or whose write finished.
struct Due {
    node: String,
    value: String,
    done: Option<Result<(), SimError>>,
}

/// Runs the agents until the task is aborted.
pub async fn run(mut params: AgentParams) {
    let (cm_ns, cm_name) = params.status_configmap.clone();
    let cms: Api<ConfigMap> = Api::namespaced(params.client.clone(), &cm_ns);
    let (cm_store, cm_writer) = reflector::store::<ConfigMap>();
    let cm_events = reflector::reflector(
        cm_writer,
        watcher(
            cms.clone(),
            watcher::Config::default().fields(&format!("metadata.name={cm_name}")),
        ),
    )
    .default_backoff()
    .map(|_| ());
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let pod_events = reflector::reflector(
        pod_writer,
        watcher(
            scoped(&params.client, params.namespace.as_deref()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map(|_| ());
    let mut events = stream::select(cm_events.boxed(), pod_events.boxed());
    let (due_tx, mut due_rx) = mpsc::unbounded_channel::<Due>();
    // Acknowledgements waiting for their delay or being written, by node, with the value.
    let mut scheduled: HashMap<String, String> = HashMap::new();

    loop {
        tokio::select! {
            event = events.next() => if event.is_none() { return },
            changed = params.never_ack.changed() => if changed.is_err() { return },
            Some(due) = due_rx.recv() => {
                match due.done {
                    None => {
                        // The delay passed: write if the node still owes exactly this.
                        let still = current_due(&cm_store, &pod_store, &params)
                            .contains(&(due.node.clone(), due.value.clone()));
                        if still {
                            tokio::spawn(acknowledge(cms.clone(), cm_name.clone(), due, due_tx.clone()));
                            continue;
                        }
                        scheduled.remove(&due.node);
                    }
                    Some(Ok(())) => {
                        scheduled.remove(&due.node);
                    }
                    Some(Err(error)) => {
                        tracing::debug!(node = %due.node, %error, "registry-pivot ack retries");
                        schedule(RETRY, due.node, due.value, &due_tx);
                        continue;
                    }
                }
            }
        }
        for (node, value) in current_due(&cm_store, &pod_store, &params) {
            if scheduled.get(&node) == Some(&value) {
                continue;
            }
            scheduled.insert(node.clone(), value.clone());
            schedule(params.ack_delay, node, value, &due_tx);
        }
    }
}

fn schedule(delay: Duration, node: String, value: String, tx: &mpsc::UnboundedSender<Due>) {
    let tx = tx.clone();
    tokio::spawn(async move {
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
        .patch(&cm_name, &super::manager(MANAGER), &Patch::Merge(&patch))
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

/// The acknowledgements due now, from the stores.
fn current_due(
    cm_store: &Store<ConfigMap>,
    pod_store: &Store<Pod>,
    params: &AgentParams,
) -> Vec<(String, String)> {
    let (_, cm_name) = &params.status_configmap;
    let cm = cm_store.find(|cm| cm.metadata.name.as_deref() == Some(cm_name.as_str()));
    let data: Option<BTreeMap<String, String>> = cm.map(|cm| cm.data.clone().unwrap_or_default());
    let ready_nodes: BTreeSet<String> = pod_store
        .state()
        .iter()
        .filter(|p| runs_agent(p, &params.daemonset) && pod_state::is_ready(p))
        .filter(|p| pod_state::state(p) == pod_state::PodState::Active)
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
