//! The DaemonSet controller: reflector stores of DaemonSets and pods plus the node registry,
//! and one pass over every DaemonSet after each burst of changes, carrying out what
//! [`reconcile_daemonset`] decides.
//!
//! Not a `kube_runtime::Controller`: a pass reads the pod store, so the trigger must come
//! after the store has the change, which the stable `Controller` API does not offer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt, stream};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::daemonset::{NodeInfo, reconcile_daemonset};
use super::nodes::NodeRegistry;
use super::watched::{Watched, pace, watched};
use super::{SimError, api_error, is_not_found, pod_state, scoped};

/// API calls in flight at once within a pass.
const PARALLEL_CALLS: usize = 32;
/// How long a created pod is trusted to show up in the watch before it is created again.
const EXPECTATION_TTL: Duration = Duration::from_secs(10);
/// Wait before a pass that failed is run again.
const RETRY: Duration = Duration::from_millis(200);

/// Runs the DaemonSet controller until the task is aborted.
pub async fn run(client: Client, namespace: Option<String>, nodes: Arc<NodeRegistry>) {
    let changed = Arc::new(Notify::new());
    let daemonsets: Watched<DaemonSet> = watched(
        scoped(&client, namespace.as_deref()),
        watcher::Config::default(),
        changed.clone(),
    );
    let pods: Watched<Pod> = watched(
        scoped(&client, namespace.as_deref()),
        watcher::Config::default(),
        changed.clone(),
    );
    let mut node_changes = nodes.subscribe();
    let mut controller = DaemonSets {
        client,
        nodes,
        ds_store: daemonsets.store.clone(),
        pod_store: pods.store.clone(),
        expected: HashMap::new(),
    };
    let mut retry_at: Option<Instant> = None;
    loop {
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => futures::future::pending().await,
            }
        };
        // Changes that arrive during a pass leave one wake-up behind: one pass covers them all.
        tokio::select! {
            () = changed.notified() => {}
            changed = node_changes.changed() => if changed.is_err() { return },
            () = retry => {}
        }
        let started = Instant::now();
        let outcome = controller.pass().await;
        pace(started).await;
        retry_at = match outcome {
            Ok(()) => None,
            Err(error) => {
                tracing::debug!(%error, "daemonset controller retries");
                Some(Instant::now() + RETRY)
            }
        };
    }
}

struct DaemonSets {
    client: Client,
    nodes: Arc<NodeRegistry>,
    ds_store: Store<DaemonSet>,
    pod_store: Store<Pod>,
    /// Pods created but not yet seen in the watch, by (namespace, name), with creation time.
    expected: HashMap<(String, String), Instant>,
}

impl DaemonSets {
    /// One pass over every DaemonSet; the first error is returned after the others ran.
    async fn pass(&mut self) -> Result<(), SimError> {
        let synced = self.ds_store.wait_until_ready().now_or_never().is_some()
            && self.pod_store.wait_until_ready().now_or_never().is_some();
        if !synced {
            return Ok(());
        }
        let nodes = self.nodes.snapshot();
        let mut owned: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for pod in self.pod_store.state() {
            if let Some(uid) = pod_state::controller_uid(&pod) {
                owned.entry(uid.to_owned()).or_default().push(pod.clone());
            }
        }
        let now = Instant::now();
        let store = &self.pod_store;
        self.expected.retain(|(ns, name), at| {
            store.get(&ObjectRef::new(name).within(ns)).is_none()
                && now.duration_since(*at) < EXPECTATION_TTL
        });
        let mut result = Ok(());
        for ds in self.ds_store.state() {
            if ds.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let uid = ds.metadata.uid.as_deref().unwrap_or_default();
            let pods = owned.get(uid).map(Vec::as_slice).unwrap_or_default();
            let outcome = self.sync(&ds, &nodes, pods).await;
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }

    async fn sync(
        &mut self,
        ds: &DaemonSet,
        nodes: &[NodeInfo],
        pods: &[Arc<Pod>],
    ) -> Result<(), SimError> {
        let ns = ds.metadata.namespace.as_deref().unwrap_or_default();
        let name = ds.metadata.name.as_deref().unwrap_or_default();
        let mut plan = reconcile_daemonset(ds, nodes, pods);
        plan.create.retain(|p| !self.expected.contains_key(&key(p)));
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);

        let created: Vec<Result<(String, String), SimError>> = stream::iter(plan.create)
            .map(|pod| {
                let api = pods_api.clone();
                async move {
                    let k = key(&pod);
                    match api.create(&PostParams::default(), &pod).await {
                        Ok(_) => Ok(k),
                        // Created by an earlier pass whose event has not arrived yet.
                        Err(kube::Error::Api(s)) if s.code == 409 => Ok(k),
                        Err(e) => Err(api_error(format!(
                            "create pod {ns}/{} for daemonset {ns}/{name}",
                            k.1
                        ))(e)),
                    }
                }
            })
            .buffer_unordered(PARALLEL_CALLS)
            .collect()
            .await;
        let now = Instant::now();
        let mut result = Ok(());
        for outcome in created {
            match outcome {
                Ok(k) => {
                    self.expected.insert(k, now);
                }
                Err(e) => result = Err(e),
            }
        }

        let deleted: Vec<Result<(), SimError>> = stream::iter(plan.delete)
            .map(|pod| {
                let api = pods_api.clone();
                async move {
                    match api
                        .delete(&pod, &DeleteParams::default().grace_period(0))
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(e) if is_not_found(&e) => Ok(()),
                        Err(e) => Err(api_error(format!("delete pod {ns}/{pod}"))(e)),
                    }
                }
            })
            .buffer_unordered(PARALLEL_CALLS)
            .collect()
            .await;
        if let Some(Err(e)) = deleted.into_iter().find(Result::is_err) {
            result = Err(e);
        }

        if let Some(status) = plan.status {
            let mut updated = ds.clone();
            updated.status = Some(status);
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
            // The resourceVersion read guards against writing a status computed from an
            // older generation over a newer one.
            if let Err(e) = api
                .replace_status(name, &PostParams::default(), &updated)
                .await
            {
                result = Err(api_error(format!(
                    "write the status of daemonset {ns}/{name}"
                ))(e));
            }
        }
        result
    }
}

fn key(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod_state::name(pod).to_owned(),
    )
}
