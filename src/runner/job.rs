//! A `job` step: create the attempt's Job (or adopt the one that exists), follow it with a
//! watch to a terminal condition, and explain a failure with the Job's condition and the
//! failed pod's termination message.

use super::StepOutcome;
use super::watches::JobWatch;
use crate::contract;
use crate::retry::{Backoff, is_status, is_transient};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions, PropagationPolicy};

/// Where a Job stands, read from its conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Not terminal yet.
    Running,
    /// `Complete` (or the earlier `SuccessCriteriaMet`).
    Succeeded,
    /// `Failed` (or the earlier `FailureTarget`), with the condition's reason and message.
    Failed {
        /// e.g. `BackoffLimitExceeded`, `DeadlineExceeded`.
        reason: String,
        /// The condition's message.
        message: String,
    },
}

/// Reads a Job's state from its status conditions. Pure.
pub fn job_state(job: &Job) -> JobState {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let holds = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    if holds("Complete")
        .or_else(|| holds("SuccessCriteriaMet"))
        .is_some()
    {
        return JobState::Succeeded;
    }
    match holds("Failed").or_else(|| holds("FailureTarget")) {
        Some(c) => JobState::Failed {
            reason: c.reason.clone().unwrap_or_else(|| "Failed".to_owned()),
            message: c.message.clone().unwrap_or_default(),
        },
        None => JobState::Running,
    }
}

/// Whether `job` carries the labels the cutover gives its Jobs of `component` (the
/// cutover's, or a preflight run's) for `step`, so that neither adopting nor deleting it can
/// touch someone else's Job. Pure.
pub fn belongs_to(job: &Job, component: &str, step: &str) -> bool {
    let labels = job.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    label(contract::LABEL_PART_OF) == Some(contract::PART_OF)
        && label(contract::LABEL_COMPONENT) == Some(component)
        && label(contract::LABEL_JOB_STEP) == Some(step)
}

/// Creates `job` unless a Job of that name exists, and returns whether it was adopted.
/// Exactly once per attempt: the name is deterministic, so a second create answers 409.
pub async fn ensure(api: &Api<Job>, job: &Job, step: &str, resume: bool) -> Result<bool, String> {
    let name = job.metadata.name.clone().unwrap_or_default();
    // An existing Job is ours only if it carries the component the rendered one does.
    let component = job
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(contract::LABEL_COMPONENT))
        .map_or(contract::COMPONENT_JOB, String::as_str);
    let mut backoff = Backoff::new();
    loop {
        if resume {
            match api.get_opt(&name).await {
                Ok(Some(existing)) => return adopt(existing, component, step),
                Ok(None) => {}
                Err(err) if is_transient(&err) => {
                    backoff.wait().await;
                    continue;
                }
                Err(err) => return Err(format!("could not read Job {name}: {err}")),
            }
        }
        match api.create(&PostParams::default(), job).await {
            Ok(_) => {
                tracing::info!(job = %name, "created the Job");
                return Ok(false);
            }
            Err(err) if is_status(&err, 409) => match api.get_opt(&name).await {
                Ok(Some(existing)) => return adopt(existing, component, step),
                Ok(None) => continue,
                Err(err) if is_transient(&err) => backoff.wait().await,
                Err(err) => return Err(format!("could not read Job {name}: {err}")),
            },
            Err(err) if is_transient(&err) => {
                tracing::warn!(job = %name, error = %err, "Job create failed; retrying");
                backoff.wait().await;
            }
            Err(err) => return Err(format!("the API server refused Job {name}: {err}")),
        }
    }
}

fn adopt(existing: Job, component: &str, step: &str) -> Result<bool, String> {
    let name = existing.metadata.name.clone().unwrap_or_default();
    if belongs_to(&existing, component, step) {
        tracing::info!(job = %name, "adopted the existing Job of this attempt");
        Ok(true)
    } else {
        Err(format!(
            "Job {name} already exists but is not the cutover's Job of step {step} (labels \
             {}={}, {}={}, {}={step}); delete or rename it",
            contract::LABEL_PART_OF,
            contract::PART_OF,
            contract::LABEL_COMPONENT,
            component,
            contract::LABEL_JOB_STEP
        ))
    }
}

/// Follows Job `name` through the run's Job watch (already open) until it is terminal, and
/// says how it ended.
pub async fn follow(jobs: &JobWatch, pods: &Api<Pod>, name: &str) -> StepOutcome {
    let mut changes = jobs.changes();
    let mut seen = false;
    loop {
        // Marked seen before the store is read: a change landing in between wakes the wait.
        changes.borrow_and_update();
        match jobs.get(name) {
            Some(job) => {
                seen = true;
                match job_state(&job) {
                    JobState::Running => {}
                    JobState::Succeeded => return StepOutcome::Succeeded,
                    JobState::Failed { reason, message } => {
                        let pod_message = failed_pod_message(pods, name).await;
                        return StepOutcome::Failed(explain(name, &reason, &message, pod_message));
                    }
                }
            }
            None if seen => {
                return StepOutcome::Failed(format!("Job {name} was deleted before it finished"));
            }
            None => {}
        }
        if changes.changed().await.is_err() {
            return StepOutcome::Failed(format!("the watch of Job {name} ended"));
        }
    }
}

/// The failure reason recorded in `lastError`: the condition, and the pod's own words.
pub fn explain(job: &str, reason: &str, message: &str, pod: Option<(String, String)>) -> String {
    let mut text = format!("Job {job} failed ({reason})");
    if !message.is_empty() {
        text.push_str(": ");
        text.push_str(message.trim_end_matches('.'));
    }
    if let Some((pod, termination)) = pod {
        text.push_str(&format!("; pod {pod}: {}", termination.trim()));
    }
    text
}

/// The newest failed pod of the Job with a termination message, if any.
async fn failed_pod_message(pods: &Api<Pod>, job: &str) -> Option<(String, String)> {
    let params = ListParams::default().labels(&format!("{}={job}", contract::LABEL_JOB_NAME));
    let list = match pods.list(&params).await {
        Ok(list) => list,
        Err(err) => {
            tracing::warn!(job, error = %err, "could not list the Job's pods");
            return None;
        }
    };
    let mut failed: Vec<&Pod> = list
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
        .collect();
    failed.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
    failed.iter().rev().find_map(|pod| {
        let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
        let message = statuses.iter().find_map(|c| {
            let terminated = c.state.as_ref()?.terminated.as_ref()?;
            terminated.message.clone().filter(|m| !m.trim().is_empty())
        })?;
        Some((pod.metadata.name.clone().unwrap_or_default(), message))
    })
}

/// Deletes Job `name` of `step` and its pods (background propagation), only when it is the
/// cutover's Job of `component` for that step, and only the very object looked at: the delete carries its
/// UID as a precondition, so a Job recreated under the name meanwhile is left alone. A Job
/// already gone is fine.
pub async fn delete(jobs: &Api<Job>, name: &str, component: &str, step: &str) {
    let job = match jobs.get_opt(name).await {
        Ok(Some(job)) => job,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(job = %name, error = %err, "could not read the Job to delete it");
            return;
        }
    };
    if !belongs_to(&job, component, step) {
        tracing::warn!(job = %name, step, "not deleting a Job that is not the cutover's Job of this step");
        return;
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: job.metadata.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match jobs.delete(name, &params).await {
        Ok(_) => tracing::info!(job = %name, "deleted the Job"),
        Err(err) if is_status(&err, 404) => {}
        Err(err) if is_status(&err, 409) => {
            tracing::warn!(job = %name, "the Job was replaced before it could be deleted; left alone");
        }
        Err(err) => tracing::warn!(job = %name, error = %err, "could not delete the Job"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};

    fn job(conditions: &[(&str, &str, &str)]) -> Job {
        Job {
            status: Some(JobStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s, r)| JobCondition {
                            type_: (*t).into(),
                            status: (*s).into(),
                            reason: Some((*r).into()),
                            message: Some("Job has reached the specified backoff limit".into()),
                            ..JobCondition::default()
                        })
                        .collect(),
                ),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn terminal_conditions() {
        assert_eq!(job_state(&job(&[])), JobState::Running);
        assert_eq!(
            job_state(&job(&[("Complete", "True", "")])),
            JobState::Succeeded
        );
        assert_eq!(
            job_state(&job(&[(
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached"
            )])),
            JobState::Succeeded
        );
        assert!(matches!(
            job_state(&job(&[("FailureTarget", "True", "BackoffLimitExceeded")])),
            JobState::Failed { reason, .. } if reason == "BackoffLimitExceeded"
        ));
        assert_eq!(
            job_state(&job(&[("Failed", "False", "x")])),
            JobState::Running
        );
    }

    #[test]
    fn only_a_job_with_every_cutover_label_belongs_to_a_step() {
        let labelled = |pairs: &[(&str, &str)]| Job {
            metadata: kube::api::ObjectMeta {
                labels: Some(
                    pairs
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Job::default()
        };
        let all = [
            (contract::LABEL_PART_OF, contract::PART_OF),
            (contract::LABEL_COMPONENT, contract::COMPONENT_JOB),
            (contract::LABEL_JOB_STEP, "a"),
        ];
        let job = contract::COMPONENT_JOB;
        assert!(belongs_to(&labelled(&all), job, "a"));
        assert!(!belongs_to(&labelled(&all), job, "b"));
        assert!(!belongs_to(&labelled(&all), "cutover-preflight", "a"));
        assert!(!belongs_to(&labelled(&all[1..]), job, "a"));
        assert!(!belongs_to(
            &labelled(&[(contract::LABEL_JOB_STEP, "a")]),
            job,
            "a"
        ));
    }

    #[test]
    fn explanation_names_the_job_reason_and_pod() {
        let text = explain(
            "cutover-harbor-prewarm-a1",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
            Some((
                "cutover-harbor-prewarm-a1-x7k2p".into(),
                "3 images failed\n".into(),
            )),
        );
        assert_eq!(
            text,
            "Job cutover-harbor-prewarm-a1 failed (BackoffLimitExceeded): Job has reached the specified backoff limit; pod cutover-harbor-prewarm-a1-x7k2p: 3 images failed"
        );
    }
}
