//! The registry-pivot agents of the simulated nodes: for each node running a ready pod of
//! the agent DaemonSet, follow the service's directive in its record Lease and, after the
//! configured delay, do what the real agent does ([`crate::pivot::agent::follow`]: the same
//! files, written under a temporary directory per node, and the same acknowledgement
//! Lease), as [`due_acks`] decides. They run beside the sandbox's simulator, as a client of
//! the API like it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use kube_sandbox::sim::watched::{Watched, pace, watched};
use kube_sandbox::sim::{pod_state, scoped};

use super::ack::due_acks;
use crate::contract::pivot;
use crate::pivot::agent::{AgentError, follow};
use crate::pivot::{Directive, NodePaths, PivotSettings, ack};

/// Wait before an acknowledgement that failed is tried again.
const RETRY: Duration = Duration::from_millis(200);

/// The simulated registry-pivot agents.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Namespace of the DaemonSet's pods; `None`: all namespaces.
    pub namespace: Option<String>,
    /// Name of the DaemonSet whose ready pods run the agent.
    pub daemonset: String,
    /// `(namespace, name)` of the service's record Lease the agents follow; their
    /// acknowledgements go to its namespace.
    pub record_lease: (String, String),
    /// Time between a node seeing a new directive and its acknowledgement.
    pub ack_delay: Duration,
    /// Nodes that never acknowledge (nor write their files).
    pub never_ack: BTreeSet<String>,
    /// What the agents write.
    pub settings: PivotSettings,
}

impl AgentConfig {
    /// The settings of the demo's agents: a local Harbor that only the files name.
    pub fn demo_settings() -> PivotSettings {
        let host = |h: &str| {
            h.parse()
                .unwrap_or_else(|_| unreachable!("a valid host: {h}"))
        };
        PivotSettings {
            registry: host("harbor.sandbox.local"),
            insecure: false,
            ca_file: None,
            upstreams: ["docker.io", "ghcr.io", "quay.io", "registry.k8s.io"]
                .into_iter()
                .map(host)
                .collect(),
            pull: None,
        }
    }
}

/// The running agents.
#[derive(Debug)]
pub struct Agents {
    never_ack: watch::Sender<BTreeSet<String>>,
    root: PathBuf,
    task: JoinHandle<()>,
}

impl Agents {
    /// Starts the agents of every node, writing with `client`.
    pub fn start(client: Client, cfg: AgentConfig) -> Agents {
        let (never_ack, never_ack_rx) = watch::channel(cfg.never_ack);
        let root =
            std::env::temp_dir().join(format!("registry-pivot-nodes-{}", uuid::Uuid::new_v4()));
        let task = tokio::spawn(run(AgentParams {
            client,
            namespace: cfg.namespace,
            daemonset: cfg.daemonset,
            record_lease: cfg.record_lease,
            ack_delay: cfg.ack_delay,
            never_ack: never_ack_rx,
            settings: cfg.settings,
            root: root.clone(),
        }));
        Agents {
            never_ack,
            root,
            task,
        }
    }

    /// Where `node`'s files are (a temporary directory of its own).
    pub fn node_paths(&self, node: &str) -> NodePaths {
        node_paths(&self.root, node)
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

    /// Stops the agents and removes the nodes' files; what they wrote stays in the API.
    pub async fn shutdown(self) {
        self.task.abort();
        // An aborted task answers Err(cancelled), which is the expected end here.
        let _ = self.task.await;
        if let Err(err) = tokio::fs::remove_dir_all(&self.root).await
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.root.display(), error = %err, "cannot remove the simulated nodes' files");
        }
    }
}

fn node_paths(root: &Path, node: &str) -> NodePaths {
    NodePaths::under(&root.join(node))
}

/// What the agents' loop needs.
struct AgentParams {
    /// The client the agents write with.
    pub client: Client,
    /// Namespace of the DaemonSet's pods; `None`: all namespaces.
    pub namespace: Option<String>,
    /// Name of the DaemonSet whose ready pods run the agent.
    pub daemonset: String,
    /// `(namespace, name)` of the record Lease.
    pub record_lease: (String, String),
    /// Delay before each acknowledgement.
    pub ack_delay: Duration,
    /// Nodes that never acknowledge, changed at run time.
    pub never_ack: watch::Receiver<BTreeSet<String>>,
    /// What the agents write.
    pub settings: PivotSettings,
    /// Where the nodes' files are.
    pub root: PathBuf,
}

/// An acknowledgement whose delay has passed (`done: None`) or whose write finished.
struct Due {
    node: String,
    value: Directive,
    done: Option<Result<(), AgentError>>,
}

/// Runs the agents until the task is aborted.
async fn run(mut params: AgentParams) {
    let (lease_ns, lease_name) = params.record_lease.clone();
    let leases: Api<Lease> = Api::namespaced(params.client.clone(), &lease_ns);
    let changed = Arc::new(Notify::new());
    let record: Watched<Lease> = watched(
        leases.clone(),
        watcher::Config::default().fields(&format!("metadata.name={lease_name}")),
        changed.clone(),
    );
    let acks: Watched<Lease> = watched(
        leases.clone(),
        watcher::Config::default().labels(pivot::ACK_SELECTOR),
        changed.clone(),
    );
    let pods: Watched<Pod> = watched(
        scoped(&params.client, params.namespace.as_deref()),
        watcher::Config::default(),
        changed.clone(),
    );
    let stores = Stores {
        record: &record.store,
        acks: &acks.store,
        pods: &pods.store,
    };
    let (due_tx, mut due_rx) = mpsc::unbounded_channel::<Due>();
    // Acknowledgements waiting for their delay or being written, by node, with the directive.
    let mut scheduled: HashMap<String, Directive> = HashMap::new();
    // The delays and writes in flight: dropped with this loop, so none outlives a shutdown.
    let mut tasks = JoinSet::new();

    loop {
        // Finished tasks report through `due_rx`; their join results only need reaping.
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            () = changed.notified() => {}
            changed = params.never_ack.changed() => if changed.is_err() { return },
            Some(due) = due_rx.recv() => {
                let forget = |scheduled: &mut HashMap<String, Directive>, due: &Due| {
                    if scheduled.get(&due.node) == Some(&due.value) {
                        scheduled.remove(&due.node);
                    }
                };
                match &due.done {
                    None => {
                        // The delay passed: write if the node still owes exactly this.
                        let still = current_due(&stores, &params, Some(&due.node))
                            .contains(&(due.node.clone(), due.value.clone()));
                        if still {
                            let paths = node_paths(&params.root, &due.node);
                            tasks.spawn(acknowledge(leases.clone(), params.settings.clone(), paths, due, due_tx.clone()));
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
        let due = current_due(&stores, &params, None);
        schedule_due(&mut tasks, &due, &mut scheduled, &params, &due_tx);
        pace(started).await;
    }
}

/// Starts the delay of each acknowledgement in `due` not already on its way.
fn schedule_due(
    tasks: &mut JoinSet<()>,
    due: &[(String, Directive)],
    scheduled: &mut HashMap<String, Directive>,
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
    value: Directive,
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
    leases: Api<Lease>,
    settings: PivotSettings,
    paths: NodePaths,
    due: Due,
    tx: mpsc::UnboundedSender<Due>,
) {
    let result = follow(&leases, &due.node, &due.value, &settings, &paths, false).await;
    // The loop has gone when this fails.
    let _ = tx.send(Due {
        done: Some(result),
        ..due
    });
}

/// The agents' view of the API.
struct Stores<'a> {
    record: &'a Store<Lease>,
    acks: &'a Store<Lease>,
    pods: &'a Store<Pod>,
}

/// The acknowledgements due now, from the stores; of node `only` if given.
fn current_due(
    stores: &Stores<'_>,
    params: &AgentParams,
    only: Option<&str>,
) -> Vec<(String, Directive)> {
    let (_, lease_name) = &params.record_lease;
    let lease = stores
        .record
        .find(|l| l.metadata.name.as_deref() == Some(lease_name.as_str()));
    let directive = Directive::of_lease(lease.as_deref());
    let acked = directive
        .as_ref()
        .map(|d| ack::acked_nodes(&stores.acks.state(), d))
        .unwrap_or_default();
    let ready_nodes: BTreeSet<String> = stores
        .pods
        .state()
        .iter()
        .filter(|p| runs_agent(p, &params.daemonset) && pod_state::is_ready(p))
        .filter(|p| pod_state::state(p) == pod_state::PodState::Active)
        .filter(|p| only.is_none() || pod_state::node_name(p) == only)
        .filter_map(|p| pod_state::node_name(p).map(str::to_owned))
        .collect();
    let Some(directive) = directive else {
        return Vec::new();
    };
    due_acks(
        Some(&directive),
        &ready_nodes,
        &acked,
        &params.never_ack.borrow(),
    )
    .into_iter()
    .map(|node| (node, directive.clone()))
    .collect()
}

fn runs_agent(pod: &Pod, daemonset: &str) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.kind == "DaemonSet" && o.name == daemonset)
}
