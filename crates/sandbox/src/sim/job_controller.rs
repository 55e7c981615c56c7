//! The Job controller: a kube-runtime controller over Jobs and the pods they own, carrying out
//! what [`reconcile_job`] decides.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use super::job::{FINALIZER_TRACKING, JobAction, LABEL_CONTROLLER_UID, reconcile_job};
use super::nodes::NodeRegistry;
use super::watched::QuickBackoff;
use super::{SimError, api_error, is_not_found, pod_state, scoped};

/// Characters of generated name suffixes, as the API server's `generateName` uses.
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

struct Ctx {
    client: Client,
    nodes: Arc<NodeRegistry>,
}

/// Runs the Job controller until the task is aborted.
pub async fn run(client: Client, namespace: Option<String>, nodes: Arc<NodeRegistry>) {
    let jobs: Api<Job> = scoped(&client, namespace.as_deref());
    let pods: Api<Pod> = scoped(&client, namespace.as_deref());
    let orphans = release_orphans(client.clone(), namespace.clone());
    let ctx = Arc::new(Ctx { client, nodes });
    let controller = Controller::new(jobs, watcher::Config::default())
        .trigger_backoff(QuickBackoff::default())
        .owns(pods, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()));
    tokio::join!(controller, orphans);
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, SimError> {
    let ns = job.metadata.namespace.as_deref().unwrap_or_default();
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    // A fresh list, not a watch cache: a pod created by the previous pass must be seen, or
    // a second pod would run.
    let pods = pods_api
        .list(&ListParams::default().labels(&format!("{LABEL_CONTROLLER_UID}={uid}")))
        .await
        .map_err(api_error(format!("list the pods of job {ns}/{name}")))?
        .items;
    let mut next = Action::await_change();
    for action in reconcile_job(&job, &pods, Timestamp::now()) {
        match action {
            JobAction::CreatePod(mut pod) => {
                pod.metadata.name = Some(pod_name(name));
                if let Some(spec) = pod.spec.as_mut() {
                    spec.node_name = ctx.nodes.pick();
                }
                pods_api
                    .create(&PostParams::default(), &pod)
                    .await
                    .map_err(api_error(format!("create a pod for job {ns}/{name}")))?;
            }
            JobAction::DeletePod(pod) => {
                match pods_api
                    .delete(&pod, &DeleteParams::default().grace_period(0))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(api_error(format!("delete pod {ns}/{pod}"))(e)),
                }
            }
            JobAction::WriteStatus(status) => {
                let mut updated = (*job).clone();
                updated.status = Some(*status);
                // The full object carries the resourceVersion read: a stale pass gets a
                // Conflict and runs again on fresh state instead of overwriting.
                jobs_api
                    .replace_status(name, &PostParams::default(), &updated)
                    .await
                    .map_err(api_error(format!("write the status of job {ns}/{name}")))?;
            }
            JobAction::RequeueAfter(d) => next = Action::requeue(d),
        }
    }
    // The status now counts every pod that has ended or is going: they are let go.
    for pod in pods.iter().filter(|p| is_done(p)) {
        release(&pods_api, pod).await?;
    }
    Ok(next)
}

/// Whether the pod has ended or is being deleted, so its Job counts it once and for all.
fn is_done(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        || matches!(pod_state::phase(pod), "Succeeded" | "Failed")
}

/// Takes the tracking finalizer off `pod`, if it has it; a pod gone meanwhile is fine.
async fn release(api: &Api<Pod>, pod: &Pod) -> Result<(), SimError> {
    let finalizers = pod.metadata.finalizers.as_deref().unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER_TRACKING) {
        return Ok(());
    }
    let kept: Vec<&String> = finalizers
        .iter()
        .filter(|f| *f != FINALIZER_TRACKING)
        .collect();
    let name = pod_state::name(pod);
    // The resourceVersion makes it a compare-and-swap: a finalizer added meanwhile stays.
    let patch = serde_json::json!({"metadata": {
        "finalizers": kept,
        "resourceVersion": pod.metadata.resource_version,
    }});
    match api
        .patch(
            name,
            &super::manager("sandbox-job-controller"),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(api_error(format!(
            "remove the tracking finalizer of pod {name}"
        ))(e)),
    }
}

/// Lets go of the pods of Jobs that are gone (deleted with their pods, or orphaning them),
/// as the real controller does for orphaned pods, until the task is aborted.
async fn release_orphans(client: Client, namespace: Option<String>) {
    let pods: Api<Pod> = scoped(&client, namespace.as_deref());
    let mut events = std::pin::pin!(
        watcher(pods, watcher::Config::default())
            .default_backoff()
            .applied_objects()
    );
    while let Some(event) = events.next().await {
        let Ok(pod) = event else { continue };
        let tracked = pod
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER_TRACKING);
        if !tracked || !is_done(&pod) {
            continue;
        }
        let Some(owner) = pod_state::controller_uid(&pod).map(str::to_owned) else {
            continue;
        };
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let job_name = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.uid == owner)
            .map(|o| o.name.clone())
            .unwrap_or_default();
        let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
        let orphaned = match jobs.get_opt(&job_name).await {
            Ok(job) => job.is_none_or(|j| j.metadata.uid.as_deref() != Some(owner.as_str())),
            Err(error) => {
                tracing::debug!(%error, "job controller could not read a pod's Job");
                false
            }
        };
        if orphaned {
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            if let Err(error) = release(&api, &pod).await {
                tracing::debug!(%error, "job controller retries an orphan's release later");
            }
        }
    }
}

/// `<job>-<5 random characters>`, the job name cut so the whole stays a valid name.
fn pod_name(job: &str) -> String {
    let prefix: String = job.chars().take(57).collect();
    let suffix: String = (0..5)
        .map(|_| char::from(SUFFIX_ALPHABET[rand::random_range(0..SUFFIX_ALPHABET.len())]))
        .collect();
    format!("{prefix}-{suffix}")
}

fn error_policy(job: Arc<Job>, error: &SimError, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(job = job.metadata.name.as_deref().unwrap_or_default(), %error, "job controller retries");
    Action::requeue(Duration::from_millis(200))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_are_job_dash_five() {
        let n = pod_name("step");
        assert_eq!(n.len(), "step-".len() + 5);
        assert!(n.starts_with("step-"));
        assert!(n[5..].bytes().all(|b| SUFFIX_ALPHABET.contains(&b)));
        assert_eq!(pod_name(&"x".repeat(80)).len(), 63);
    }
}
