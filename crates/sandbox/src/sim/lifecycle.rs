//! The simulated kubelet's decisions: the next status of a pod bound to a simulated node.
//!
//! Run-to-completion pods (restartPolicy Never / OnFailure) go Pending → Running (ready) →
//! Succeeded / Failed after their run time; OnFailure turns a failure into a container
//! restart in the same pod. Long-running pods (restartPolicy Always, e.g. DaemonSet pods)
//! go Running, then Ready after their run time, unless their outcome is `fail` or `hang`,
//! in which case they never become ready.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, Pod,
    PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::behaviour::{Behaviour, Outcome};
use super::job::ANNOTATION_ATTEMPT;
use super::pod_state;

/// What the kubelet does next for one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum KubeletStep {
    /// Write this status through `pods/status`; look again after `then` if set.
    Write {
        /// The new status.
        status: Box<PodStatus>,
        /// When the pod needs the kubelet again.
        then: Option<Duration>,
        /// Whether this write starts a container run (the shell records the start).
        starts_run: bool,
    },
    /// Nothing to write yet; look again after this long.
    Wait(Duration),
    /// The pod is being deleted: finish the deletion, as a kubelet does once containers stop.
    Remove,
    /// Nothing left to do.
    Idle,
}

/// Decides the next step for `pod`. `run_started` is when its current container run began, as
/// the shell recorded it; without it the (second-precision) `startedAt` of the status is used.
pub fn next_step(
    pod: &Pod,
    behaviour: &Behaviour,
    run_started: Option<Timestamp>,
    now: Timestamp,
) -> KubeletStep {
    if pod.metadata.deletion_timestamp.is_some() {
        return KubeletStep::Remove;
    }
    if matches!(pod_state::phase(pod), "Succeeded" | "Failed") {
        return KubeletStep::Idle;
    }
    match deadline_left(pod, now) {
        None => lifecycle_step(pod, behaviour, run_started, now),
        Some(left) if left.is_zero() => write(deadline_exceeded(pod, now), None),
        Some(left) => within(lifecycle_step(pod, behaviour, run_started, now), left),
    }
}

/// What is left of the pod's `activeDeadlineSeconds`, counted from `status.startTime` as a
/// kubelet counts it; `None` without a deadline or before the pod started.
fn deadline_left(pod: &Pod, now: Timestamp) -> Option<Duration> {
    let seconds = pod.spec.as_ref()?.active_deadline_seconds?;
    let start = pod.status.as_ref()?.start_time.as_ref()?.0;
    let ends = start
        .checked_add(jiff::SignedDuration::from_secs(seconds))
        .ok()?;
    Some(Duration::try_from(ends.duration_since(now)).unwrap_or(Duration::ZERO))
}

/// `step`, looking at the pod again no later than `left` from now unless it has ended.
fn within(step: KubeletStep, left: Duration) -> KubeletStep {
    match step {
        KubeletStep::Wait(d) => KubeletStep::Wait(d.min(left)),
        KubeletStep::Idle => KubeletStep::Wait(left),
        KubeletStep::Write {
            status,
            then,
            starts_run,
        } => {
            let ended = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
            let then = if ended {
                then
            } else {
                Some(then.map_or(left, |d| d.min(left)))
            };
            KubeletStep::Write {
                status,
                then,
                starts_run,
            }
        }
        KubeletStep::Remove => KubeletStep::Remove,
    }
}

/// The status a kubelet writes when a pod outlives its `activeDeadlineSeconds`: its
/// containers killed, the pod Failed with reason `DeadlineExceeded`.
fn deadline_exceeded(pod: &Pod, now: Timestamp) -> PodStatus {
    let killed = ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 137,
            reason: Some("Error".into()),
            started_at: running_since(pod).map(Time),
            finished_at: Some(Time(now)),
            ..Default::default()
        }),
        ..Default::default()
    };
    PodStatus {
        reason: Some("DeadlineExceeded".into()),
        message: Some("Pod was active on the node longer than the specified deadline".into()),
        ..ended(pod, "Failed", "PodFailed", &killed, now)
    }
}

/// The next step of a pod that has neither ended nor outlived its deadline.
fn lifecycle_step(
    pod: &Pod,
    behaviour: &Behaviour,
    run_started: Option<Timestamp>,
    now: Timestamp,
) -> KubeletStep {
    let restart_policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let long_running = restart_policy == "Always";
    let restarts = pod_state::restarts(pod);
    let attempt = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_ATTEMPT))
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0)
        + u32::try_from(restarts).unwrap_or(0);
    let outcome = behaviour.outcome_of(attempt);

    match pod_state::phase(pod) {
        "Succeeded" | "Failed" => KubeletStep::Idle,
        "Running" => {
            let started = run_started.or_else(|| running_since(pod)).unwrap_or(now);
            let elapsed = now.duration_since(started).unsigned_abs();
            if elapsed < behaviour.run {
                return KubeletStep::Wait(behaviour.run - elapsed);
            }
            match (long_running, outcome) {
                (_, Outcome::Hang) | (true, Outcome::Fail) => KubeletStep::Idle,
                (true, Outcome::Succeed) if pod_state::is_ready(pod) => KubeletStep::Idle,
                (true, Outcome::Succeed) => write(running(pod, restarts, true, started), None),
                (false, Outcome::Succeed) => write(terminated(pod, 0, behaviour, now), None),
                (false, Outcome::Fail) if restart_policy == "OnFailure" => KubeletStep::Write {
                    status: Box::new(restarted(pod, behaviour, now)),
                    then: Some(behaviour.run),
                    starts_run: true,
                },
                (false, Outcome::Fail) => write(terminated(pod, 1, behaviour, now), None),
            }
        }
        _ => {
            let ends = !long_running || outcome == Outcome::Succeed;
            let ends = ends && !(outcome == Outcome::Hang);
            KubeletStep::Write {
                status: Box::new(running(pod, 0, !long_running, now)),
                then: ends.then_some(behaviour.run),
                starts_run: true,
            }
        }
    }
}

fn write(status: PodStatus, then: Option<Duration>) -> KubeletStep {
    KubeletStep::Write {
        status: Box::new(status),
        then,
        starts_run: false,
    }
}

fn running_since(pod: &Pod) -> Option<Timestamp> {
    pod_state::first_container_state(pod)?
        .running
        .as_ref()?
        .started_at
        .as_ref()
        .map(|t| t.0)
}

fn condition(ty: &str, value: bool, reason: Option<&str>, now: Timestamp) -> PodCondition {
    PodCondition {
        type_: ty.into(),
        status: if value { "True" } else { "False" }.into(),
        reason: reason.map(Into::into),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    }
}

fn base_status(
    pod: &Pod,
    phase: &str,
    ready: bool,
    reason: Option<&str>,
    now: Timestamp,
) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    PodStatus {
        phase: Some(phase.into()),
        start_time: old.start_time.or(Some(Time(now))),
        host_ip: Some("10.0.0.1".into()),
        pod_ip: Some("10.1.0.1".into()),
        conditions: Some(vec![
            condition("PodReadyToStartContainers", true, None, now),
            condition("Initialized", true, reason, now),
            condition("Ready", ready, reason, now),
            condition("ContainersReady", ready, reason, now),
            condition("PodScheduled", true, None, now),
        ]),
        qos_class: old.qos_class.or(Some("BestEffort".into())),
        ..Default::default()
    }
}

fn container_statuses(
    pod: &Pod,
    f: impl Fn(&str, &str, Option<&ContainerStatus>) -> ContainerStatus,
) -> Vec<ContainerStatus> {
    let old = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| {
            let prev = old.iter().find(|o| o.name == c.name);
            f(&c.name, c.image.as_deref().unwrap_or_default(), prev)
        })
        .collect()
}

fn running(pod: &Pod, restarts: i32, ready: bool, started: Timestamp) -> PodStatus {
    PodStatus {
        container_statuses: Some(container_statuses(pod, |name, image, prev| {
            ContainerStatus {
                name: name.into(),
                image: image.into(),
                image_id: String::new(),
                ready,
                started: Some(true),
                restart_count: restarts,
                last_state: prev.and_then(|p| p.last_state.clone()),
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(Time(started)),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })),
        ..base_status(pod, "Running", ready, None, started)
    }
}

fn terminated_state(pod: &Pod, code: i32, behaviour: &Behaviour, now: Timestamp) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
            message: termination_message(pod, code, behaviour),
            started_at: running_since(pod).map(Time),
            finished_at: Some(Time(now)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The most a kubelet keeps of a log as a termination message (`FallbackToLogsOnError`).
const FALLBACK_LINES: usize = 80;
/// The most bytes of it.
const FALLBACK_BYTES: usize = 2048;

/// What a kubelet reports as the container's termination message: what the container wrote
/// to its `terminationMessagePath` (any exit code: its output when it succeeds, else its
/// message), else, on a failure under `terminationMessagePolicy: FallbackToLogsOnError`, the
/// tail of its log.
fn termination_message(pod: &Pod, code: i32, behaviour: &Behaviour) -> Option<String> {
    let written = match code {
        0 => behaviour.output.as_ref().or(behaviour.message.as_ref()),
        _ => behaviour.message.as_ref(),
    };
    if let Some(written) = written {
        return Some(written.clone());
    }
    let fallback = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.termination_message_policy.as_deref())
        == Some("FallbackToLogsOnError");
    if code == 0 || !fallback {
        return None;
    }
    let log = behaviour.log.as_deref().filter(|l| !l.is_empty())?;
    Some(log_tail(log, FALLBACK_LINES, FALLBACK_BYTES).to_owned())
}

/// The last `lines` lines of `log`, cut to its last `bytes` bytes (at a character boundary).
fn log_tail(log: &str, lines: usize, bytes: usize) -> &str {
    let trimmed = log.strip_suffix('\n').unwrap_or(log);
    let start = trimmed
        .rmatch_indices('\n')
        .nth(lines.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1);
    let mut tail = &log[start..];
    if tail.len() > bytes {
        let mut cut = tail.len() - bytes;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = &tail[cut..];
    }
    tail
}

fn terminated(pod: &Pod, code: i32, behaviour: &Behaviour, now: Timestamp) -> PodStatus {
    let phase = if code == 0 { "Succeeded" } else { "Failed" };
    let state = terminated_state(pod, code, behaviour, now);
    ended(pod, phase, "PodCompleted", &state, now)
}

/// The status of a pod that has ended in `phase`, every container in `state`.
fn ended(
    pod: &Pod,
    phase: &str,
    reason: &str,
    state: &ContainerState,
    now: Timestamp,
) -> PodStatus {
    PodStatus {
        container_statuses: Some(container_statuses(pod, |name, image, prev| {
            ContainerStatus {
                name: name.into(),
                image: image.into(),
                ready: false,
                started: Some(false),
                restart_count: prev.map_or(0, |p| p.restart_count),
                state: Some(state.clone()),
                ..Default::default()
            }
        })),
        ..base_status(pod, phase, false, Some(reason), now)
    }
}

fn restarted(pod: &Pod, behaviour: &Behaviour, now: Timestamp) -> PodStatus {
    let last = terminated_state(pod, 1, behaviour, now);
    PodStatus {
        container_statuses: Some(container_statuses(pod, |name, image, prev| {
            ContainerStatus {
                name: name.into(),
                image: image.into(),
                ready: true,
                started: Some(true),
                restart_count: prev.map_or(0, |p| p.restart_count) + 1,
                last_state: Some(last.clone()),
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(Time(now)),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })),
        ..base_status(pod, "Running", true, None, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(1_800_000_000_000 + ms).unwrap()
    }

    fn pod(policy: &str) -> Pod {
        Pod {
            metadata: ObjectMeta::default(),
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                containers: vec![Container {
                    name: "main".into(),
                    image: Some("busybox".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    fn behaviour(outcome: Outcome, fail_attempts: u32) -> Behaviour {
        Behaviour {
            run: Duration::from_millis(100),
            outcome,
            fail_attempts,
            message: Some("boom".into()),
            output: Some(r#"{"figure":"7"}"#.into()),
            log: None,
        }
    }

    /// Runs the kubelet on `pod` at `now`, applying a status write.
    fn step(pod: &mut Pod, b: &Behaviour, started: Timestamp, now: Timestamp) -> KubeletStep {
        let s = next_step(pod, b, Some(started), now);
        if let KubeletStep::Write { status, .. } = &s {
            pod.status = Some((**status).clone());
        }
        s
    }

    fn terminated_of(pod: &Pod) -> ContainerStateTerminated {
        pod_state::first_container_state(pod)
            .and_then(|s| s.terminated.clone())
            .unwrap()
    }

    #[test]
    fn job_pod_runs_then_succeeds() {
        let mut p = pod("Never");
        let b = behaviour(Outcome::Succeed, 0);
        let s = step(&mut p, &b, t(0), t(0));
        assert!(
            matches!(s, KubeletStep::Write { then: Some(d), starts_run: true, .. } if d == b.run)
        );
        assert_eq!(pod_state::phase(&p), "Running");
        assert!(pod_state::is_ready(&p));
        assert_eq!(
            step(&mut p, &b, t(0), t(40)),
            KubeletStep::Wait(Duration::from_millis(60))
        );
        step(&mut p, &b, t(0), t(100));
        assert_eq!(pod_state::phase(&p), "Succeeded");
        let term = terminated_of(&p);
        assert_eq!(
            (term.exit_code, term.reason.as_deref()),
            (0, Some("Completed"))
        );
        assert_eq!(
            term.message.as_deref(),
            Some(r#"{"figure":"7"}"#),
            "a succeeding container's termination message is its output, not the failure's"
        );
        assert_eq!(step(&mut p, &b, t(0), t(200)), KubeletStep::Idle);
    }

    #[test]
    fn active_deadline_fails_the_pod_as_a_kubelet_does() {
        let mut p = pod("Never");
        p.spec.as_mut().unwrap().active_deadline_seconds = Some(1);
        let b = behaviour(Outcome::Hang, 0);
        // The start's own write brings the pod back; from then on the deadline counts.
        step(&mut p, &b, t(0), t(0));
        assert_eq!(
            step(&mut p, &b, t(0), t(400)),
            KubeletStep::Wait(Duration::from_millis(600))
        );
        step(&mut p, &b, t(0), t(1000));
        assert_eq!(pod_state::phase(&p), "Failed");
        let status = p.status.as_ref().unwrap();
        assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
        assert_eq!(terminated_of(&p).exit_code, 137);
        assert_eq!(step(&mut p, &b, t(0), t(2000)), KubeletStep::Idle);
    }

    #[test]
    fn failed_container_falls_back_to_its_log_when_asked() {
        let mut p = pod("Never");
        p.spec.as_mut().unwrap().containers[0].termination_message_policy =
            Some("FallbackToLogsOnError".into());
        let mut b = behaviour(Outcome::Fail, 0);
        b.message = None;
        b.log = Some("one\ntwo\n".into());
        step(&mut p, &b, t(0), t(0));
        step(&mut p, &b, t(0), t(100));
        assert_eq!(terminated_of(&p).message.as_deref(), Some("one\ntwo\n"));
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(log_tail(&long, 80, 2048).lines().count(), 80);
        assert!(log_tail(&long, 80, 2048).starts_with("line 20\n"));
        assert_eq!(log_tail(&long, 80, 10), "8\nline 99\n");
    }

    #[test]
    fn failing_pod_carries_the_termination_message() {
        let mut p = pod("Never");
        let b = behaviour(Outcome::Fail, 0);
        step(&mut p, &b, t(0), t(0));
        step(&mut p, &b, t(0), t(100));
        assert_eq!(pod_state::phase(&p), "Failed");
        let term = terminated_of(&p);
        assert_eq!(
            (
                term.exit_code,
                term.reason.as_deref(),
                term.message.as_deref()
            ),
            (1, Some("Error"), Some("boom"))
        );
    }

    #[test]
    fn attempt_annotation_selects_fail_attempts() {
        let b = behaviour(Outcome::Succeed, 1);
        let mut first = pod("Never");
        step(&mut first, &b, t(0), t(0));
        step(&mut first, &b, t(0), t(100));
        assert_eq!(pod_state::phase(&first), "Failed");
        let mut second = pod("Never");
        second.metadata.annotations =
            Some([(ANNOTATION_ATTEMPT.to_string(), "1".to_string())].into());
        step(&mut second, &b, t(0), t(0));
        step(&mut second, &b, t(0), t(100));
        assert_eq!(pod_state::phase(&second), "Succeeded");
    }

    #[test]
    fn on_failure_restarts_in_place_then_succeeds() {
        let mut p = pod("OnFailure");
        let b = behaviour(Outcome::Succeed, 1);
        step(&mut p, &b, t(0), t(0));
        let s = step(&mut p, &b, t(0), t(100));
        assert!(matches!(
            s,
            KubeletStep::Write {
                starts_run: true,
                ..
            }
        ));
        assert_eq!(pod_state::phase(&p), "Running");
        assert_eq!(pod_state::restarts(&p), 1);
        assert_eq!(
            step(&mut p, &b, t(100), t(150)),
            KubeletStep::Wait(Duration::from_millis(50))
        );
        step(&mut p, &b, t(100), t(200));
        assert_eq!(pod_state::phase(&p), "Succeeded");
        assert_eq!(pod_state::restarts(&p), 1);
    }

    #[test]
    fn hanging_pod_never_ends() {
        let mut p = pod("Never");
        let b = behaviour(Outcome::Hang, 0);
        let s = step(&mut p, &b, t(0), t(0));
        assert!(matches!(s, KubeletStep::Write { then: None, .. }));
        assert_eq!(step(&mut p, &b, t(0), t(10_000)), KubeletStep::Idle);
        assert_eq!(pod_state::phase(&p), "Running");
    }

    #[test]
    fn long_running_pod_becomes_ready_after_its_run() {
        let mut p = pod("Always");
        let b = behaviour(Outcome::Succeed, 0);
        step(&mut p, &b, t(0), t(0));
        assert!(!pod_state::is_ready(&p));
        step(&mut p, &b, t(0), t(100));
        assert!(pod_state::is_ready(&p));
        assert_eq!(pod_state::phase(&p), "Running");
        assert_eq!(step(&mut p, &b, t(0), t(300)), KubeletStep::Idle);
        let mut stuck = pod("Always");
        let b = behaviour(Outcome::Fail, 0);
        step(&mut stuck, &b, t(0), t(0));
        assert_eq!(step(&mut stuck, &b, t(0), t(300)), KubeletStep::Idle);
        assert!(!pod_state::is_ready(&stuck));
    }

    #[test]
    fn deleted_pod_is_removed() {
        let mut p = pod("Never");
        p.metadata.deletion_timestamp = Some(Time(t(0)));
        assert_eq!(
            next_step(&p, &behaviour(Outcome::Succeed, 0), None, t(0)),
            KubeletStep::Remove
        );
    }
}
