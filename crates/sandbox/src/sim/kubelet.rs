//! The simulated kubelet of every simulated node: a controller over pods that writes their
//! status through `pods/status`, as [`lifecycle`](super::lifecycle) decides.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client};

use super::behaviour::Behaviour;
use super::job::{ANNOTATION_ATTEMPT, LABEL_CONTROLLER_UID};
use super::lifecycle::{KubeletStep, next_step};
use super::nodes::NodeRegistry;
use super::watched::QuickBackoff;
use super::{SimError, api_error, is_not_found, pod_state, scoped};
use crate::api::LOG_ANNOTATION;

/// Field manager of the kubelet's writes.
const MANAGER: &str = "sandbox-kubelet";
/// Pods handled at once; bounds the burst of status writes when thousands of pods start.
const CONCURRENCY: u16 = 64;

struct Kubelet {
    client: Client,
    nodes: Arc<NodeRegistry>,
    default_run: Duration,
    /// Start of each pod's current container run, by pod uid, at full precision (the API
    /// keeps whole seconds). Entries go once the pod needs no more timing.
    runs: Mutex<HashMap<String, Timestamp>>,
}

impl Kubelet {
    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Timestamp>> {
        // The map holds plain timestamps: one left by a panicking holder is still valid.
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs the kubelet until the task is aborted.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    nodes: Arc<NodeRegistry>,
    default_run: Duration,
) {
    let pods: Api<Pod> = scoped(&client, namespace.as_deref());
    let ctx = Arc::new(Kubelet {
        client,
        nodes,
        default_run,
        runs: Mutex::new(HashMap::new()),
    });
    Controller::new(pods, watcher::Config::default())
        .trigger_backoff(QuickBackoff::default())
        .with_config(controller::Config::default().concurrency(CONCURRENCY))
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Kubelet>) -> Result<Action, SimError> {
    if !pod_state::node_name(&pod).is_some_and(|n| ctx.nodes.contains(n)) {
        return Ok(Action::await_change());
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod_state::name(&pod);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let started = ctx.runs().get(&uid).copied();
    if started.is_some() && pod_state::phase(&pod) != "Running" {
        // The cache has not caught up with the start written earlier; its event will come.
        return Ok(Action::await_change());
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let (behaviour, problems) = Behaviour::from_spec(pod.spec.as_ref(), ctx.default_run);
    let mut current = if behaviour.fail_attempts > 0 {
        with_attempt(&api, pod.clone()).await?
    } else {
        pod.clone()
    };
    loop {
        let known = ctx.runs().get(&uid).copied();
        let now = Timestamp::now();
        let action = match next_step(&current, &behaviour, known, now) {
            KubeletStep::Write {
                status,
                then,
                starts_run,
            } => {
                if starts_run && pod_state::phase(&current) != "Running" {
                    for problem in &problems {
                        tracing::warn!(pod = %name, namespace = %ns, %problem, "simulated pod behaviour");
                    }
                    write_log(&api, &current, &behaviour).await?;
                }
                let patch = serde_json::json!({ "status": status });
                let written = api
                    .patch_status(name, &super::manager(MANAGER), &Patch::Merge(&patch))
                    .await
                    .map_err(api_error(format!("write the status of pod {ns}/{name}")))?;
                if starts_run {
                    ctx.runs().insert(uid.clone(), now);
                } else if then.is_none() {
                    ctx.runs().remove(&uid);
                }
                match then {
                    // Nothing to wait for: go on from the object just written rather than
                    // from a cache that does not show the write yet.
                    Some(d) if d.is_zero() => {
                        let mut written = written;
                        // Keep the attempt number worked out above (not in the API).
                        if let Some(attempt) = attempt_of(&current) {
                            written
                                .metadata
                                .annotations
                                .get_or_insert_with(Default::default)
                                .entry(ANNOTATION_ATTEMPT.to_owned())
                                .or_insert(attempt);
                        }
                        current = Arc::new(written);
                        continue;
                    }
                    Some(d) => Action::requeue(d),
                    None => Action::await_change(),
                }
            }
            KubeletStep::Wait(d) => Action::requeue(d),
            KubeletStep::Remove => {
                ctx.runs().remove(&uid);
                match api
                    .delete(name, &DeleteParams::default().grace_period(0))
                    .await
                {
                    Ok(_) => Action::await_change(),
                    Err(e) if is_not_found(&e) => Action::await_change(),
                    Err(e) => return Err(api_error(format!("finish deleting pod {ns}/{name}"))(e)),
                }
            }
            KubeletStep::Idle => {
                ctx.runs().remove(&uid);
                Action::await_change()
            }
        };
        return Ok(action);
    }
}

/// `pod`, with its attempt number among its Job's pods when the Job controller that made it
/// did not write one (a cluster's own controller): the count of the Job's pods that failed.
/// A pod of no Job, or one that has ended, is left as it is.
async fn with_attempt(api: &Api<Pod>, pod: Arc<Pod>) -> Result<Arc<Pod>, SimError> {
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_ATTEMPT));
    let job = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == "Job");
    let (false, Some(job)) = (annotated, job) else {
        return Ok(pod);
    };
    if matches!(pod_state::phase(&pod), "Succeeded" | "Failed") {
        return Ok(pod);
    }
    let siblings = api
        .list(&ListParams::default().labels(&format!("{LABEL_CONTROLLER_UID}={}", job.uid)))
        .await
        .map_err(api_error(format!("list the pods of job {}", job.name)))?;
    let failed = siblings
        .items
        .iter()
        .filter(|p| p.metadata.uid != pod.metadata.uid && pod_state::phase(p) == "Failed")
        .count();
    let mut annotated = (*pod).clone();
    annotated
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ANNOTATION_ATTEMPT.to_owned(), failed.to_string());
    Ok(Arc::new(annotated))
}

fn attempt_of(pod: &Pod) -> Option<String> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_ATTEMPT)
        .cloned()
}

/// Writes the container's log text where the sandbox's `/log` reads it.
async fn write_log(api: &Api<Pod>, pod: &Pod, behaviour: &Behaviour) -> Result<(), SimError> {
    let Some(log) = behaviour.log.as_deref() else {
        return Ok(());
    };
    let present = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LOG_ANNOTATION))
        .is_some_and(|v| v == log);
    if present {
        return Ok(());
    }
    let name = pod_state::name(pod);
    let patch = serde_json::json!({ "metadata": { "annotations": { LOG_ANNOTATION: log } } });
    api.patch(name, &super::manager(MANAGER), &Patch::Merge(&patch))
        .await
        .map_err(api_error(format!("write the log of pod {name}")))?;
    Ok(())
}

fn error_policy(pod: Arc<Pod>, error: &SimError, _ctx: Arc<Kubelet>) -> Action {
    tracing::debug!(pod = %pod_state::name(&pod), %error, "kubelet retries");
    Action::requeue(Duration::from_millis(200))
}
