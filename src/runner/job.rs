//! A `job` step: create the attempt's Job (or adopt the one that exists), follow it with a
//! watch to a terminal condition, read a success's outputs from its pod's termination
//! message, and explain a failure with the Job's condition and the failed pod's
//! termination message.

use super::StepOutcome;
use super::watches::JobWatch;
use crate::contract;
use crate::retry::{Backoff, is_status, is_transient};
use crate::sanitize::{self, Lines};
use crate::status::StepOutputs;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions, PropagationPolicy};
use std::time::Duration;

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
                    JobState::Succeeded => {
                        return StepOutcome::Succeeded(outputs_of(jobs, pods, &job).await);
                    }
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

/// The failure reason recorded in `lastError`: the condition, and the pod's own words, with
/// every control or bidirectional-formatting character they hold replaced (line breaks
/// stay: the preflight reports one failed check per line).
pub fn explain(job: &str, reason: &str, message: &str, pod: Option<(String, String)>) -> String {
    let mut text = format!("Job {job} failed ({reason})");
    if !message.is_empty() {
        text.push_str(": ");
        text.push_str(message.trim_end_matches('.'));
    }
    if let Some((pod, termination)) = pod {
        text.push_str(&format!("; pod {pod}: {}", termination.trim()));
    }
    sanitize::recorded(&text, Lines::Keep).into_owned()
}

/// How long the pod watch may trail the Job watch: the Job controller counts a pod as
/// succeeded only once its status says so, so the pod's end is at the API server already.
const POD_WATCH_LAG: Duration = Duration::from_secs(5);

/// What the succeeded Job `job` reported: the outputs in its own pod's termination message
/// (see [`reporting_pod`]), read from the pod watch, or from one list when the watch has
/// not shown that pod in time; none, with a warning, when they cannot be read or are not
/// outputs. The step succeeded either way: its outputs are a report, not its work.
async fn outputs_of(jobs: &JobWatch, pods: &Api<Pod>, job: &Job) -> StepOutputs {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let mut changes = jobs.pod_changes();
    let lag = tokio::time::sleep(POD_WATCH_LAG);
    tokio::pin!(lag);
    let message = loop {
        changes.borrow_and_update();
        if let Some(pod) = reporting_pod(job, &jobs.pods_of(name)) {
            break termination_message(&pod);
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { lag.as_mut().await },
            () = &mut lag => {
                let params = ListParams::default().labels(&format!("{}={name}", contract::LABEL_JOB_NAME));
                match pods.list(&params).await {
                    Ok(list) => break reporting_pod(job, &list.items).and_then(|pod| termination_message(&pod)),
                    Err(err) => {
                        tracing::warn!(job = name, error = %err, "could not list the Job's pods; its outputs are not recorded");
                        return StepOutputs::default();
                    }
                }
            }
        }
    };
    let Some(message) = message else {
        return StepOutputs::default();
    };
    StepOutputs::parse(&message).unwrap_or_else(|err| {
        tracing::warn!(job = name, error = %err, "the step's termination message holds no outputs; nothing recorded");
        StepOutputs::default()
    })
}

/// The newest succeeded pod that is `job`'s own: labelled with its name, its step and the
/// cutover, and controlled by its UID. Anyone who may create pods could label one like the
/// Job's; only the Job controller's pods point at the Job as their controller. Pure.
pub fn reporting_pod(job: &Job, pods: &[Pod]) -> Option<Pod> {
    let name = job.metadata.name.as_deref()?;
    let uid = job.metadata.uid.as_deref()?;
    let step = job
        .metadata
        .labels
        .as_ref()?
        .get(contract::LABEL_JOB_STEP)?;
    let own = |pod: &&Pod| {
        let labels = pod.metadata.labels.as_ref();
        let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
        let controlled = pod.metadata.owner_references.iter().flatten().any(|o| {
            o.controller == Some(true) && o.kind == "Job" && o.name == name && o.uid == uid
        });
        controlled
            && label(contract::LABEL_JOB_NAME) == Some(name)
            && label(contract::LABEL_JOB_STEP) == Some(step.as_str())
            && label(contract::LABEL_PART_OF) == Some(contract::PART_OF)
            && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
    };
    let mine: Vec<Pod> = pods.iter().filter(own).cloned().collect();
    crate::steplog::newest_pod(&mine).cloned()
}

/// The termination message of `pod`'s step container (its PodSpec's first). Pure.
pub fn termination_message(pod: &Pod) -> Option<String> {
    let container = &pod.spec.as_ref()?.containers.first()?.name;
    let status = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| &c.name == container)?;
    status.state.as_ref()?.terminated.as_ref()?.message.clone()
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

    fn step_job() -> Job {
        let mut job = Job::default();
        job.metadata.name = Some("cutover-gitea-mirror-a1".into());
        job.metadata.uid = Some("uid-1".into());
        job.metadata.labels = Some(
            [(
                contract::LABEL_JOB_STEP.to_owned(),
                "gitea-mirror".to_owned(),
            )]
            .into(),
        );
        job
    }

    /// A pod as the Job controller makes it for `step_job`, ended in `phase` with `message`.
    fn job_pod(name: &str, created: &str, phase: &str, message: &str) -> Pod {
        use k8s_openapi::api::core::v1::{
            Container, ContainerState, ContainerStateTerminated, ContainerStatus, PodSpec,
            PodStatus,
        };
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        pod.metadata.labels = Some(
            [
                (contract::LABEL_JOB_NAME, "cutover-gitea-mirror-a1"),
                (contract::LABEL_JOB_STEP, "gitea-mirror"),
                (contract::LABEL_PART_OF, contract::PART_OF),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        );
        pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: "cutover-gitea-mirror-a1".into(),
            uid: "uid-1".into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
        let container = |name: &str| Container {
            name: name.into(),
            ..Container::default()
        };
        pod.spec = Some(PodSpec {
            containers: vec![container("step"), container("sidecar")],
            ..PodSpec::default()
        });
        let status = |name: &str, message: &str| ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    message: Some(message.into()),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        };
        pod.status = Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: Some(vec![
                status("sidecar", "{\"x\":\"sidecar\"}"),
                status("step", message),
            ]),
            ..PodStatus::default()
        });
        pod
    }

    fn reported(job: &Job, pods: &[Pod]) -> Option<String> {
        termination_message(&reporting_pod(job, pods)?)
    }

    #[test]
    fn outputs_are_read_only_from_the_step_container_of_the_jobs_own_succeeded_pod() {
        let job = step_job();
        let good = job_pod("p1", "2026-01-01T00:00:01Z", "Succeeded", "{\"a\":\"1\"}");
        assert_eq!(
            reported(&job, std::slice::from_ref(&good)).as_deref(),
            Some("{\"a\":\"1\"}")
        );
        // Newer pods that are not the Job's own are never read.
        let mut impostors = Vec::new();
        let mut unowned = job_pod(
            "p2",
            "2026-01-01T00:00:09Z",
            "Succeeded",
            "{\"a\":\"forged\"}",
        );
        unowned.metadata.owner_references = None;
        impostors.push(unowned);
        let mut other_uid = job_pod(
            "p3",
            "2026-01-01T00:00:09Z",
            "Succeeded",
            "{\"a\":\"forged\"}",
        );
        other_uid.metadata.owner_references.as_mut().unwrap()[0].uid = "uid-2".into();
        impostors.push(other_uid);
        let mut not_controller = job_pod(
            "p4",
            "2026-01-01T00:00:09Z",
            "Succeeded",
            "{\"a\":\"forged\"}",
        );
        not_controller.metadata.owner_references.as_mut().unwrap()[0].controller = None;
        impostors.push(not_controller);
        for key in [
            contract::LABEL_JOB_STEP,
            contract::LABEL_PART_OF,
            contract::LABEL_JOB_NAME,
        ] {
            let mut unlabelled = job_pod(
                "p5",
                "2026-01-01T00:00:09Z",
                "Succeeded",
                "{\"a\":\"forged\"}",
            );
            unlabelled.metadata.labels.as_mut().unwrap().remove(key);
            impostors.push(unlabelled);
        }
        impostors.push(job_pod(
            "p6",
            "2026-01-01T00:00:09Z",
            "Failed",
            "{\"a\":\"failed\"}",
        ));
        for impostor in &impostors {
            assert_eq!(
                reported(&job, &[good.clone(), impostor.clone()]).as_deref(),
                Some("{\"a\":\"1\"}"),
                "{:?}",
                impostor.metadata.name
            );
            assert_eq!(reported(&job, std::slice::from_ref(impostor)), None);
        }
        let newer = job_pod("p7", "2026-01-01T00:00:05Z", "Succeeded", "{\"a\":\"2\"}");
        assert_eq!(
            reported(&job, &[good, newer]).as_deref(),
            Some("{\"a\":\"2\"}")
        );
        let mut no_uid = step_job();
        no_uid.metadata.uid = None;
        assert_eq!(reported(&no_uid, &impostors), None);
    }

    #[test]
    fn a_pods_words_reach_last_error_without_control_or_bidi_characters() {
        let text = explain(
            "j",
            "BackoffLimitExceeded",
            "limit\u{1b}[0m",
            Some(("p".into(), "line one\u{1b}[2K\r\nline two \u{202e}".into())),
        );
        assert_eq!(
            text,
            "Job j failed (BackoffLimitExceeded): limit\u{fffd}[0m; pod p: line one\u{fffd}[2K\u{fffd}\nline two \u{fffd}"
        );
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
