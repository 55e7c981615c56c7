//! The simulated nodes: Node objects in the API, and the in-memory registry the other
//! controllers read (so a pod bound to a node just created is never mistaken for a foreign
//! one while a watch catches up).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

use super::daemonset::NodeInfo;
use super::{SimError, api_error, is_not_found, scoped};

/// Node label naming the simulated pool.
pub const LABEL_POOL: &str = "sandbox.catalyst.openova.io/pool";
/// Node creations in flight at once when a pool is created.
const PARALLEL_CREATES: usize = 32;
/// The taint a node is registered with until it is Ready (kube-apiserver's
/// TaintNodesByCondition admission adds it; the node lifecycle controller removes it).
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// How often each node reports its Ready condition, as a kubelet's status update does.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// Standard node label carrying the node's name.
const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";

/// The node set, and its ordered list once asked for.
#[derive(Debug, Default)]
struct Nodes {
    by_name: BTreeMap<String, NodeInfo>,
    list: Option<Arc<[NodeInfo]>>,
}

/// The simulated nodes, shared by the controllers.
#[derive(Debug)]
pub struct NodeRegistry {
    pool: String,
    nodes: Mutex<Nodes>,
    next_index: AtomicUsize,
    round_robin: AtomicUsize,
    changed: watch::Sender<u64>,
}

impl NodeRegistry {
    /// An empty registry for `pool`.
    pub fn new(pool: &str) -> Self {
        NodeRegistry {
            pool: pool.to_owned(),
            nodes: Mutex::new(Nodes::default()),
            next_index: AtomicUsize::new(0),
            round_robin: AtomicUsize::new(0),
            changed: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Nodes> {
        // A panic while holding this lock leaves the map itself intact.
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `name` is a simulated node.
    pub fn contains(&self, name: &str) -> bool {
        self.lock().by_name.contains_key(name)
    }

    /// Every simulated node, ordered by name (shared: built once per change of the set).
    pub fn snapshot(&self) -> Arc<[NodeInfo]> {
        let mut nodes = self.lock();
        if let Some(list) = &nodes.list {
            return list.clone();
        }
        let list: Arc<[NodeInfo]> = nodes.by_name.values().cloned().collect();
        nodes.list = Some(list.clone());
        list
    }

    /// A node for the next Job pod, taking the nodes in turn; `None` without nodes.
    pub fn pick(&self) -> Option<String> {
        let nodes = self.lock();
        if nodes.by_name.is_empty() {
            return None;
        }
        let i = self.round_robin.fetch_add(1, Ordering::Relaxed) % nodes.by_name.len();
        nodes.by_name.keys().nth(i).cloned()
    }

    /// The pool's name.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// A counter that moves on at every call, to take candidates in turn.
    pub fn turn(&self) -> usize {
        self.round_robin.fetch_add(1, Ordering::Relaxed)
    }

    /// The names of the simulated nodes.
    pub fn names(&self) -> Vec<String> {
        self.lock().by_name.keys().cloned().collect()
    }

    /// A receiver told about every change of the node set.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn insert(&self, name: &str) {
        let labels = node_labels(&self.pool, name);
        {
            let mut nodes = self.lock();
            let info = NodeInfo {
                name: name.to_owned(),
                labels,
            };
            nodes.by_name.insert(name.to_owned(), info);
            nodes.list = None;
        }
        self.changed.send_modify(|v| *v += 1);
    }

    fn remove(&self, name: &str) -> bool {
        let removed = {
            let mut nodes = self.lock();
            nodes.list = None;
            nodes.by_name.remove(name).is_some()
        };
        if removed {
            self.changed.send_modify(|v| *v += 1);
        }
        removed
    }

    fn next_name(&self) -> String {
        let n = self.next_index.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.pool)
    }
}

fn node_labels(pool: &str, name: &str) -> BTreeMap<String, String> {
    [
        (LABEL_POOL, pool),
        (LABEL_HOSTNAME, name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The index `n` of a node named `<pool>-<n>`.
fn index_of(pool: &str, name: &str) -> Option<usize> {
    name.strip_prefix(pool)?.strip_prefix('-')?.parse().ok()
}

/// Creates and deletes the Node objects of one pool.
#[derive(Clone)]
pub struct NodeManager {
    client: Client,
    namespace: Option<String>,
    registry: Arc<NodeRegistry>,
    kubelet_port: u16,
}

impl NodeManager {
    /// A manager for `registry`'s pool; pods bound to a deleted node are looked for in
    /// `namespace` (`None`: all namespaces); every node advertises the simulated kubelet's
    /// endpoint on `kubelet_port`.
    pub fn new(
        client: Client,
        namespace: Option<String>,
        registry: Arc<NodeRegistry>,
        kubelet_port: u16,
    ) -> Self {
        NodeManager {
            client,
            namespace,
            registry,
            kubelet_port,
        }
    }

    /// Adopts the pool's existing nodes (a simulator restarted against the same server), then
    /// creates nodes until there are `count`.
    pub async fn ensure(&self, count: usize) -> Result<(), SimError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let pool = &self.registry.pool;
        let existing = nodes
            .list(&ListParams::default().labels(&format!("{LABEL_POOL}={pool}")))
            .await
            .map_err(api_error("list the pool's nodes"))?;
        for node in &existing.items {
            let name = node.metadata.name.clone().unwrap_or_default();
            if let Some(i) = index_of(pool, &name) {
                self.registry.next_index.fetch_max(i + 1, Ordering::Relaxed);
            }
            // An adopted node points at this simulator's kubelet endpoint, not the last one's.
            let patch = serde_json::json!({ "status": ready_status(self.kubelet_port) });
            let current = nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_error(format!("write the status of node {name}")))?;
            self.clear_not_ready(&current).await?;
            self.registry.insert(&name);
        }
        let missing = count.saturating_sub(existing.items.len());
        let added: Vec<Result<String, SimError>> = stream::iter(0..missing)
            .map(|_| self.add())
            .buffer_unordered(PARALLEL_CREATES)
            .collect()
            .await;
        added.into_iter().try_for_each(|r| r.map(drop))
    }

    /// Creates the next node `<pool>-<n>`, Ready.
    pub async fn add(&self) -> Result<String, SimError> {
        let name = self.registry.next_name();
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(node_labels(&self.registry.pool, &name)),
                ..Default::default()
            },
            spec: None,
            status: Some(ready_status(self.kubelet_port)),
        };
        let created = match nodes.create(&PostParams::default(), &node).await {
            Ok(created) => created,
            Err(e) if is_conflict(&e) => nodes
                .get(&name)
                .await
                .map_err(api_error(format!("read node {name}")))?,
            Err(e) => return Err(api_error(format!("create node {name}"))(e)),
        };
        let ready = created
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let current = if ready {
            created
        } else {
            // A server that drops status on create (as kube-apiserver may) gets it through
            // nodes/status, the way a kubelet reports it.
            let patch = serde_json::json!({ "status": ready_status(self.kubelet_port) });
            nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_error(format!("write the status of node {name}")))?
        };
        self.clear_not_ready(&current).await?;
        self.registry.insert(&name);
        tracing::debug!(node = %name, "simulated node added");
        Ok(name)
    }

    /// Removes the `not-ready` taint from a node that is Ready, as the node lifecycle
    /// controller does: without that, no pod but those tolerating it is scheduled there, and
    /// the DaemonSet controller places no pod. A node without the taint costs no call.
    async fn clear_not_ready(&self, node: &Node) -> Result<(), SimError> {
        let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
        let Some(taints) = taints.filter(|t| t.iter().any(|t| t.key == TAINT_NOT_READY)) else {
            return Ok(());
        };
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let kept: Vec<_> = taints.iter().filter(|t| t.key != TAINT_NOT_READY).collect();
        // The resourceVersion makes this a compare-and-swap: a taint added meanwhile is kept.
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": node.metadata.resource_version },
            "spec": { "taints": kept },
        });
        let nodes: Api<Node> = Api::all(self.client.clone());
        match nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => {
                let fresh = nodes
                    .get(name)
                    .await
                    .map_err(api_error(format!("read node {name}")))?;
                Box::pin(self.clear_not_ready(&fresh)).await
            }
            Err(e) => Err(api_error(format!(
                "remove the not-ready taint of node {name}"
            ))(e)),
        }
    }

    /// Reports every simulated node Ready every ten seconds, as kubelets post their status,
    /// until the task is aborted. A failed report is tried again at the next beat.
    pub async fn heartbeat(self) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.tick().await;
        loop {
            beat.tick().await;
            for name in self.registry.names() {
                let patch = serde_json::json!({ "status": ready_status(self.kubelet_port) });
                if let Err(error) = nodes
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::debug!(node = %name, %error, "node heartbeat failed");
                }
            }
        }
    }

    /// Deletes a simulated node and, as the pod garbage collector does, the pods bound to it.
    /// Unlike PodGC, the pods are not first marked Failed (DisruptionTarget): without the Job
    /// controller's tracking finalizer that mark could not be counted reliably, so a Job whose
    /// pod goes with its node runs a new pod without counting a failure.
    pub async fn delete(&self, name: &str) -> Result<(), SimError> {
        if !self.registry.remove(name) {
            return Err(SimError::UnknownNode(name.to_owned()));
        }
        let nodes: Api<Node> = Api::all(self.client.clone());
        match nodes.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(api_error(format!("delete node {name}"))(e)),
        }
        let pods: Api<Pod> = scoped(&self.client, self.namespace.as_deref());
        let list = pods
            .list(&ListParams::default())
            .await
            .map_err(api_error("list pods"))?;
        let bound = list
            .items
            .iter()
            .filter(|p| super::pod_state::node_name(p) == Some(name));
        for pod in bound {
            let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
            let pod_name = super::pod_state::name(pod);
            let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            match api
                .delete(pod_name, &DeleteParams::default().grace_period(0))
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(api_error(format!("delete pod {ns}/{pod_name}"))(e)),
            }
        }
        tracing::debug!(node = %name, "simulated node deleted");
        Ok(())
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// A Ready node's status. Its only address is the simulated kubelet's `InternalIP`, where
/// an API server reaches its endpoint on `kubelet_port` (kube-apiserver tries a `Hostname`
/// address first, and a node's name does not resolve).
fn ready_status(kubelet_port: u16) -> NodeStatus {
    let now = Time(jiff::Timestamp::now());
    NodeStatus {
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            message: Some("kubelet is posting ready status".into()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(now),
        }]),
        addresses: Some(vec![NodeAddress {
            type_: "InternalIP".into(),
            address: super::kubelet_http::NODE_IP.to_string(),
        }]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            operating_system: "linux".into(),
            kubelet_version: "v1.33.0-sandbox".into(),
            container_runtime_version: "sandbox://1".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_picks_and_notifies() {
        let r = NodeRegistry::new("pool");
        let rx = r.subscribe();
        assert_eq!(r.pick(), None);
        let (a, b) = (r.next_name(), r.next_name());
        assert_eq!((a.as_str(), b.as_str()), ("pool-0", "pool-1"));
        r.insert(&a);
        r.insert(&b);
        assert!(rx.has_changed().unwrap());
        let picks: Vec<_> = (0..3).filter_map(|_| r.pick()).collect();
        assert_eq!(picks, ["pool-0", "pool-1", "pool-0"]);
        assert_eq!(r.snapshot()[0].labels[LABEL_POOL], "pool");
        assert!(r.remove("pool-0"));
        assert!(!r.remove("pool-0"));
        assert!(!r.contains("pool-0") && r.contains("pool-1"));
    }

    #[test]
    fn index_of_parses_only_the_pool() {
        assert_eq!(index_of("pool", "pool-12"), Some(12));
        assert_eq!(index_of("pool", "other-1"), None);
        assert_eq!(index_of("pool", "pool-x"), None);
    }
}
