//! The Job controller: a kube-runtime controller over Jobs and the pods they own, carrying out
//! what [`reconcile_job`] decides.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client};

use super::job::{JobAction, LABEL_CONTROLLER_UID, reconcile_job};
use super::nodes::NodeRegistry;
use super::watched::QuickBackoff;
use super::{SimError, api_error, is_not_found, scoped};

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
    let ctx = Arc::new(Ctx { client, nodes });
    Controller::new(jobs, watcher::Config::default())
        .trigger_backoff(QuickBackoff::default())
        .owns(pods, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
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
    Ok(next)
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
