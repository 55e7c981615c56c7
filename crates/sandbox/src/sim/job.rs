//! The Job controller's decisions, as a pure function of a Job, its pods and the time.
//!
//! Modelled on the kube-controller-manager Job controller (pkg/controller/job/job_controller.go,
//! Kubernetes 1.31+) for the case the cutover uses: parallelism 1, completions 1, NonIndexed.
//! Simplifications, each because the cutover never depends on the difference:
//! - the `batch.kubernetes.io/job-tracking` finalizer is put on every pod and taken off once
//!   a pass has counted the pod (no `uncountedTerminatedPods` bookkeeping:
//!   `status.failed`/`succeeded` never go down, so a counted pod stays counted);
//! - no exponential back-off delay before a failed pod is replaced (the real controller
//!   waits 10 s, 20 s, ...): the simulator exists to make runs fast;
//! - no pod failure policy, success policy, `ttlSecondsAfterFinished` or `status.terminating`.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use super::pod_state::{self, PodState};

/// Pod annotation: the 0-based attempt a Job pod stands for, read by the simulated kubelet to
/// apply `SANDBOX_SIM_FAIL_ATTEMPTS`.
pub const ANNOTATION_ATTEMPT: &str = "sandbox.catalyst.openova.io/attempt";

/// Finalizer the Job controller puts on its pods until their end is counted in the Job's
/// status.
pub const FINALIZER_TRACKING: &str = "batch.kubernetes.io/job-tracking";

/// Label keys the real Job controller puts on its pods.
pub const LABEL_JOB_NAME: &str = "batch.kubernetes.io/job-name";
/// See [`LABEL_JOB_NAME`].
pub const LABEL_CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
/// Legacy label, still written by the real controller.
pub const LABEL_LEGACY_JOB_NAME: &str = "job-name";
/// Legacy label, still written by the real controller.
pub const LABEL_LEGACY_CONTROLLER_UID: &str = "controller-uid";

/// Condition types, reasons and messages as the real controller writes them.
pub mod cond {
    /// Terminal success.
    pub const COMPLETE: &str = "Complete";
    /// Terminal failure.
    pub const FAILED: &str = "Failed";
    /// Success decided; pods are being cleaned up.
    pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
    /// Failure decided; pods are being cleaned up.
    pub const FAILURE_TARGET: &str = "FailureTarget";
    /// `spec.suspend` is (or was) true.
    pub const SUSPENDED: &str = "Suspended";
    /// Reason of the success conditions.
    pub const REASON_COMPLETIONS_REACHED: &str = "CompletionsReached";
    /// Message of the success conditions.
    pub const MESSAGE_COMPLETIONS_REACHED: &str = "Reached expected number of succeeded pods";
    /// Reason of a failure by too many failed pods.
    pub const REASON_BACKOFF_LIMIT: &str = "BackoffLimitExceeded";
    /// Message of [`REASON_BACKOFF_LIMIT`].
    pub const MESSAGE_BACKOFF_LIMIT: &str = "Job has reached the specified backoff limit";
    /// Reason of a failure by `activeDeadlineSeconds`.
    pub const REASON_DEADLINE: &str = "DeadlineExceeded";
    /// Message of [`REASON_DEADLINE`].
    pub const MESSAGE_DEADLINE: &str = "Job was active longer than specified deadline";
    /// Reason of `Suspended=True`.
    pub const REASON_SUSPENDED: &str = "JobSuspended";
    /// Message of `Suspended=True`.
    pub const MESSAGE_SUSPENDED: &str = "Job suspended";
    /// Reason of `Suspended=False`.
    pub const REASON_RESUMED: &str = "JobResumed";
    /// Message of `Suspended=False`.
    pub const MESSAGE_RESUMED: &str = "Job resumed";
}

/// Default `spec.backoffLimit` of the API server.
const DEFAULT_BACKOFF_LIMIT: i32 = 6;

/// One thing the shell must do for a Job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobAction {
    /// Create this pod; its name is left empty for the shell to fill (`<job>-<random5>`).
    CreatePod(Box<Pod>),
    /// Delete the named pod.
    DeletePod(String),
    /// Write this status through `jobs/status`.
    WriteStatus(Box<JobStatus>),
    /// Look at the Job again after this long (the deadline).
    RequeueAfter(Duration),
}

/// Decides what to do for `job`, given every pod it owns and the time.
pub fn reconcile_job(job: &Job, pods: &[Pod], now: Timestamp) -> Vec<JobAction> {
    let Some(spec) = job.spec.as_ref() else {
        return Vec::new();
    };
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let owned: Vec<&Pod> = pods
        .iter()
        .filter(|p| pod_state::controller_uid(p) == Some(uid))
        .collect();
    let active: Vec<&Pod> = owned
        .iter()
        .copied()
        .filter(|p| pod_state::state(p) == PodState::Active)
        .collect();
    let terminating = owned
        .iter()
        .filter(|p| pod_state::state(p) == PodState::Terminating)
        .count();
    let count = |s: PodState| owned.iter().filter(|p| pod_state::state(p) == s).count();
    let old = job.status.clone().unwrap_or_default();
    let mut status = old.clone();
    status.failed = Some(old.failed.unwrap_or(0).max(count(PodState::Failed) as i32));
    status.succeeded = Some(
        old.succeeded
            .unwrap_or(0)
            .max(count(PodState::Succeeded) as i32),
    );
    let mut conditions = old.conditions.clone().unwrap_or_default();
    let mut actions = Vec::new();
    let mut remaining_active = active.clone();

    let finished = is_true(&conditions, cond::COMPLETE) || is_true(&conditions, cond::FAILED);
    if finished {
        delete_active(&mut actions, &mut remaining_active);
    } else if spec.suspend == Some(true) {
        delete_active(&mut actions, &mut remaining_active);
        set_condition(
            &mut conditions,
            cond::SUSPENDED,
            true,
            cond::REASON_SUSPENDED,
            cond::MESSAGE_SUSPENDED,
            now,
        );
    } else {
        if is_true(&conditions, cond::SUSPENDED) {
            // Resuming restarts the activeDeadlineSeconds clock, as the real controller does.
            set_condition(
                &mut conditions,
                cond::SUSPENDED,
                false,
                cond::REASON_RESUMED,
                cond::MESSAGE_RESUMED,
                now,
            );
            status.start_time = Some(Time(now));
        }
        let start = status.start_time.get_or_insert(Time(now)).0;
        let deadline = spec
            .active_deadline_seconds
            .map(|s| start + jiff::SignedDuration::from_secs(s));

        let decided = is_true(&conditions, cond::SUCCESS_CRITERIA_MET)
            || is_true(&conditions, cond::FAILURE_TARGET);
        if !decided {
            let restarts: i32 = if on_failure(job) {
                active.iter().map(|p| pod_state::restarts(p)).sum()
            } else {
                0
            };
            let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
            let past_backoff = status.failed.unwrap_or(0) > backoff_limit
                || (on_failure(job)
                    && if backoff_limit == 0 {
                        restarts > 0
                    } else {
                        restarts >= backoff_limit
                    });
            if status.succeeded.unwrap_or(0) >= 1 {
                set_condition(
                    &mut conditions,
                    cond::SUCCESS_CRITERIA_MET,
                    true,
                    cond::REASON_COMPLETIONS_REACHED,
                    cond::MESSAGE_COMPLETIONS_REACHED,
                    now,
                );
            } else if past_backoff {
                set_condition(
                    &mut conditions,
                    cond::FAILURE_TARGET,
                    true,
                    cond::REASON_BACKOFF_LIMIT,
                    cond::MESSAGE_BACKOFF_LIMIT,
                    now,
                );
            } else if deadline.is_some_and(|d| now >= d) {
                set_condition(
                    &mut conditions,
                    cond::FAILURE_TARGET,
                    true,
                    cond::REASON_DEADLINE,
                    cond::MESSAGE_DEADLINE,
                    now,
                );
            }
        }

        // A decided Job gets its terminal condition once no pod of it is still terminating,
        // including the ones deleted now.
        let terminal = match condition(&conditions, cond::FAILURE_TARGET) {
            Some(target) if target.status == "True" => Some((
                cond::FAILED,
                target.reason.clone().unwrap_or_default(),
                target.message.clone().unwrap_or_default(),
            )),
            _ if is_true(&conditions, cond::SUCCESS_CRITERIA_MET) => Some((
                cond::COMPLETE,
                cond::REASON_COMPLETIONS_REACHED.to_owned(),
                cond::MESSAGE_COMPLETIONS_REACHED.to_owned(),
            )),
            _ => None,
        };
        if let Some((ty, reason, message)) = terminal {
            let deleting = remaining_active.len();
            delete_active(&mut actions, &mut remaining_active);
            if terminating + deleting == 0 {
                set_condition(&mut conditions, ty, true, &reason, &message, now);
                if ty == cond::COMPLETE {
                    status.completion_time = Some(Time(now));
                }
            }
        } else {
            if active.is_empty() {
                let attempt = status.failed.unwrap_or(0);
                actions.push(JobAction::CreatePod(Box::new(pod_for(job, attempt))));
            }
            if let Some(d) = deadline {
                let wait = d.duration_since(now).unsigned_abs();
                actions.push(JobAction::RequeueAfter(wait));
            }
        }
    }

    let created = actions
        .iter()
        .filter(|a| matches!(a, JobAction::CreatePod(_)))
        .count();
    status.active = Some((remaining_active.len() + created) as i32);
    status.ready = Some(
        remaining_active
            .iter()
            .filter(|p| pod_state::is_ready(p))
            .count() as i32,
    );
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    if status != old {
        actions.push(JobAction::WriteStatus(Box::new(status)));
    }
    actions
}

/// Queues the deletion of every pod in `remaining`, leaving it empty.
fn delete_active(actions: &mut Vec<JobAction>, remaining: &mut Vec<&Pod>) {
    for pod in remaining.drain(..) {
        actions.push(JobAction::DeletePod(pod_state::name(pod).to_owned()));
    }
}

fn on_failure(job: &Job) -> bool {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure")
}

/// The pod of attempt `attempt` of `job`, as the real controller builds it from the template.
fn pod_for(job: &Job, attempt: i32) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let template: PodTemplateSpec = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels: BTreeMap<String, String> = tmeta.labels.unwrap_or_default();
    for key in [LABEL_JOB_NAME, LABEL_LEGACY_JOB_NAME] {
        labels.insert(key.into(), name.clone());
    }
    for key in [LABEL_CONTROLLER_UID, LABEL_LEGACY_CONTROLLER_UID] {
        labels.insert(key.into(), uid.clone());
    }
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(ANNOTATION_ATTEMPT.into(), attempt.to_string());
    Pod {
        metadata: ObjectMeta {
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name,
                uid,
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            finalizers: Some(vec![FINALIZER_TRACKING.into()]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn condition<'a>(conditions: &'a [JobCondition], ty: &str) -> Option<&'a JobCondition> {
    conditions.iter().find(|c| c.type_ == ty)
}

/// Whether the Job carries condition `ty` with status True.
pub fn is_true(conditions: &[JobCondition], ty: &str) -> bool {
    condition(conditions, ty).is_some_and(|c| c.status == "True")
}

fn set_condition(
    conditions: &mut Vec<JobCondition>,
    ty: &str,
    value: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let status = if value { "True" } else { "False" };
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == ty) {
        if c.status != status {
            c.status = status.into();
            c.reason = Some(reason.into());
            c.message = Some(message.into());
            c.last_probe_time = Some(Time(now));
            c.last_transition_time = Some(Time(now));
        }
        return;
    }
    conditions.push(JobCondition {
        type_: ty.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{
        Container, ContainerStatus, PodCondition, PodSpec, PodStatus,
    };

    const UID: &str = "job-uid";

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn job(f: impl FnOnce(&mut JobSpec)) -> Job {
        let mut spec = JobSpec {
            backoff_limit: Some(1),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some([("app".to_string(), "x".to_string())].into()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![Container {
                        name: "main".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        };
        f(&mut spec);
        Job {
            metadata: ObjectMeta {
                name: Some("step".into()),
                namespace: Some("ns".into()),
                uid: Some(UID.into()),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    fn pod(name: &str, phase: &str, ready: bool, restarts: i32) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                owner_references: Some(vec![OwnerReference {
                    uid: UID.into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                container_statuses: Some(vec![ContainerStatus {
                    restart_count: restarts,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    /// A Job after its first pass at t(0): one pod asked for, startTime written.
    fn started(f: impl FnOnce(&mut JobSpec)) -> Job {
        let mut j = job(f);
        let first = reconcile_job(&j, &[], t(0));
        apply(&mut j, &first);
        j
    }

    /// Applies the status writes of `actions` to `job`, as the API server would.
    fn apply(job: &mut Job, actions: &[JobAction]) {
        for a in actions {
            if let JobAction::WriteStatus(s) = a {
                job.status = Some((**s).clone());
            }
        }
    }

    fn status(actions: &[JobAction]) -> JobStatus {
        actions
            .iter()
            .find_map(|a| match a {
                JobAction::WriteStatus(s) => Some((**s).clone()),
                _ => None,
            })
            .expect("a status write")
    }

    fn conds(s: &JobStatus) -> Vec<(String, String, String)> {
        s.conditions
            .iter()
            .flatten()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn new_job_gets_one_labelled_owned_pod_and_a_start_time() {
        let j = job(|_| {});
        let actions = reconcile_job(&j, &[], t(0));
        let JobAction::CreatePod(p) = &actions[0] else {
            panic!("{actions:?}")
        };
        let labels = p.metadata.labels.clone().unwrap();
        assert_eq!(labels[LABEL_JOB_NAME], "step");
        assert_eq!(labels[LABEL_LEGACY_JOB_NAME], "step");
        assert_eq!(labels[LABEL_CONTROLLER_UID], UID);
        assert_eq!(labels[LABEL_LEGACY_CONTROLLER_UID], UID);
        assert_eq!(labels["app"], "x");
        assert_eq!(
            p.metadata.annotations.clone().unwrap()[ANNOTATION_ATTEMPT],
            "0"
        );
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.controller,
                owner.block_owner_deletion
            ),
            ("Job", Some(true), Some(true))
        );
        assert_eq!(p.metadata.namespace.as_deref(), Some("ns"));
        assert!(p.metadata.name.is_none());
        let s = status(&actions);
        assert_eq!(s.active, Some(1));
        assert_eq!(s.start_time, Some(Time(t(0))));
    }

    #[test]
    fn running_pod_is_not_duplicated_and_ready_is_counted() {
        let j = started(|_| {});
        let actions = reconcile_job(&j, &[pod("step-a", "Running", true, 0)], t(1));
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert_eq!(status(&actions).ready, Some(1));
        let mut j2 = j.clone();
        apply(&mut j2, &actions);
        assert!(reconcile_job(&j2, &[pod("step-a", "Running", true, 0)], t(2)).is_empty());
    }

    #[test]
    fn success_writes_success_criteria_met_then_complete() {
        let mut j = started(|_| {});
        let actions = reconcile_job(&j, &[pod("step-a", "Succeeded", false, 0)], t(5));
        let s = status(&actions);
        assert_eq!(
            conds(&s),
            vec![
                (
                    "SuccessCriteriaMet".into(),
                    "True".into(),
                    "CompletionsReached".into()
                ),
                (
                    "Complete".into(),
                    "True".into(),
                    "CompletionsReached".into()
                ),
            ]
        );
        assert_eq!(
            (s.succeeded, s.active, s.failed),
            (Some(1), Some(0), Some(0))
        );
        assert_eq!(s.completion_time, Some(Time(t(5))));
        apply(&mut j, &actions);
        assert!(reconcile_job(&j, &[pod("step-a", "Succeeded", false, 0)], t(6)).is_empty());
    }

    #[test]
    fn failures_beyond_backoff_limit_fail_the_job() {
        let mut j = started(|_| {});
        // backoffLimit 1: the first failure is retried with attempt 1.
        let one = [pod("step-a", "Failed", false, 0)];
        let actions = reconcile_job(&j, &one, t(1));
        let JobAction::CreatePod(p) = &actions[0] else {
            panic!("{actions:?}")
        };
        assert_eq!(
            p.metadata.annotations.clone().unwrap()[ANNOTATION_ATTEMPT],
            "1"
        );
        apply(&mut j, &actions);
        let two = [one[0].clone(), pod("step-b", "Failed", false, 0)];
        let actions = reconcile_job(&j, &two, t(2));
        assert!(!actions.iter().any(|a| matches!(a, JobAction::CreatePod(_))));
        let s = status(&actions);
        assert_eq!(s.failed, Some(2));
        let failed = condition(s.conditions.as_deref().unwrap(), cond::FAILED).unwrap();
        assert_eq!(failed.reason.as_deref(), Some(cond::REASON_BACKOFF_LIMIT));
        assert_eq!(failed.message.as_deref(), Some(cond::MESSAGE_BACKOFF_LIMIT));
        assert!(is_true(
            s.conditions.as_ref().unwrap(),
            cond::FAILURE_TARGET
        ));
        assert_eq!(s.completion_time, None);
    }

    #[test]
    fn on_failure_restarts_count_toward_backoff_limit() {
        let mut j = started(|s| {
            s.backoff_limit = Some(2);
            s.template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
        });
        let a = reconcile_job(&j, &[pod("step-a", "Running", false, 1)], t(1));
        assert!(!a.iter().any(|a| matches!(a, JobAction::DeletePod(_))));
        apply(&mut j, &a);
        let a = reconcile_job(&j, &[pod("step-a", "Running", false, 2)], t(2));
        assert!(a.contains(&JobAction::DeletePod("step-a".into())));
        let s = status(&a);
        assert!(is_true(
            s.conditions.as_ref().unwrap(),
            cond::FAILURE_TARGET
        ));
        // The pod is still being deleted in this pass: Failed waits for it to go.
        apply(&mut j, &a);
        let a = reconcile_job(&j, &[], t(3));
        assert!(is_true(
            status(&a).conditions.as_ref().unwrap(),
            cond::FAILED
        ));
    }

    #[test]
    fn deadline_deletes_the_pod_then_fails() {
        let mut j = job(|s| s.active_deadline_seconds = Some(10));
        let a = reconcile_job(&j, &[], t(0));
        assert!(a.contains(&JobAction::RequeueAfter(Duration::from_secs(10))));
        apply(&mut j, &a);
        let running = [pod("step-a", "Running", true, 0)];
        let a = reconcile_job(&j, &running, t(4));
        assert!(a.contains(&JobAction::RequeueAfter(Duration::from_secs(6))));
        let a = reconcile_job(&j, &running, t(10));
        assert!(a.contains(&JobAction::DeletePod("step-a".into())));
        let s = status(&a);
        assert_eq!(s.active, Some(0));
        assert!(!is_true(s.conditions.as_ref().unwrap(), cond::FAILED));
        apply(&mut j, &a);
        let s = status(&reconcile_job(&j, &[], t(11)));
        let failed = condition(s.conditions.as_deref().unwrap(), cond::FAILED).unwrap();
        assert_eq!(failed.reason.as_deref(), Some(cond::REASON_DEADLINE));
        assert_eq!(failed.message.as_deref(), Some(cond::MESSAGE_DEADLINE));
    }

    #[test]
    fn terminating_pod_delays_the_terminal_condition() {
        let j = started(|s| s.active_deadline_seconds = Some(1));
        let mut p = pod("step-a", "Running", true, 0);
        p.metadata.deletion_timestamp = Some(Time(t(1)));
        let a = reconcile_job(&j, &[p], t(2));
        let s = status(&a);
        assert!(is_true(
            s.conditions.as_ref().unwrap(),
            cond::FAILURE_TARGET
        ));
        assert!(!is_true(s.conditions.as_ref().unwrap(), cond::FAILED));
    }

    #[test]
    fn suspend_deletes_pods_and_resume_restarts_the_clock() {
        let mut j = job(|s| s.suspend = Some(true));
        let a = reconcile_job(&j, &[pod("step-a", "Running", true, 0)], t(0));
        assert!(a.contains(&JobAction::DeletePod("step-a".into())));
        assert!(!a.iter().any(|a| matches!(a, JobAction::CreatePod(_))));
        let s = status(&a);
        assert_eq!(
            conds(&s),
            vec![("Suspended".into(), "True".into(), "JobSuspended".into())]
        );
        assert_eq!(s.active, Some(0));
        apply(&mut j, &a);
        j.spec.as_mut().unwrap().suspend = Some(false);
        let a = reconcile_job(&j, &[], t(30));
        assert!(matches!(a[0], JobAction::CreatePod(_)));
        let s = status(&a);
        assert_eq!(
            conds(&s),
            vec![("Suspended".into(), "False".into(), "JobResumed".into())]
        );
        assert_eq!(s.start_time, Some(Time(t(30))));
    }

    #[test]
    fn finished_job_does_nothing_more() {
        let mut j = job(|_| {});
        j.status = Some(JobStatus {
            conditions: Some(vec![JobCondition {
                type_: "Failed".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            active: Some(0),
            ready: Some(0),
            failed: Some(2),
            succeeded: Some(0),
            ..Default::default()
        });
        assert!(reconcile_job(&j, &[], t(0)).is_empty());
    }

    #[test]
    fn pods_of_other_owners_are_ignored() {
        let j = job(|_| {});
        let mut other = pod("other", "Running", true, 0);
        other.metadata.owner_references.as_mut().unwrap()[0].uid = "else".into();
        let a = reconcile_job(&j, &[other], t(0));
        assert!(matches!(a[0], JobAction::CreatePod(_)));
    }
}
