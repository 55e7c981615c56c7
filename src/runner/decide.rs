//! What the runner does next, as pure functions of the plan, the status and the transitions
//! it holds back: which step attempt comes next, what it writes before and after running it,
//! and which Job (or DaemonSet) it runs.

use super::StepOutcome;
use crate::contract::key;
use crate::render::job_name;
use crate::status::Transition;
use crate::status::model::{KEY_CUTOVER_ATTEMPT, Phase, StatusData, StepResult, StepRow, get};
use crate::step::{StepKind, StepName, StepPlan};

/// Whether the Job (or DaemonSet) a running row names is one the runner may adopt: the name
/// its step and attempt determine, or, on a first attempt, the `cutover-<step>` the earlier
/// implementation named its Jobs (migration 2 records such a row as attempt 1). A name put
/// there by hand is ignored, so that no other Job is ever adopted or deleted through it; a
/// Job must carry the cutover's labels besides. DaemonSet names are checked by the engine
/// against the plan instead. Pure.
pub fn may_name(step: &str, row: &StepRow) -> bool {
    let Ok(name) = StepName::new(step) else {
        return false;
    };
    let legacy = row.attempt == 1 && row.job_name == format!("cutover-{step}");
    !row.job_name.is_empty() && (row.job_name == job_name(&name, row.attempt) || legacy)
}

/// The runner's next move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The cutover is not running: nothing to do until someone starts or retries it.
    Wait,
    /// Run step `index`: a fresh `attempt`, or resume the attempt its row says is running.
    Run {
        /// 0-based position in the plan.
        index: usize,
        /// Attempt number.
        attempt: u32,
        /// Whether the attempt was already recorded as running (a resume after a restart or
        /// a failover): its Job is adopted and its idempotent writes are redone.
        resume: bool,
        /// The Job (or DaemonSet) the running row names, when resuming.
        recorded_job: Option<String>,
    },
    /// Every step is done: record completion.
    Complete,
    /// The status cannot be acted on (a hand edit left a step at the last possible
    /// attempt): the cutover fails at that step with `reason`.
    Halt {
        /// 0-based position in the plan.
        index: usize,
        /// A reason a person can act on.
        reason: String,
    },
}

/// Paces the runner's loop: the same decision taken again on the same status made no
/// progress (a hand edit the runner cannot act on, a step cancelled as soon as it starts),
/// so it waits with a growing backoff instead of spinning; any change starts over.
#[derive(Default)]
pub struct Stall {
    last: Option<(Next, u64)>,
    backoff: Option<crate::retry::Backoff>,
}

impl Stall {
    /// Waits before acting on `decision` when it repeats the last one on the same `view`.
    pub async fn pace(&mut self, decision: &Next, view: &StatusData) {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let fingerprint = BuildHasherDefault::<DefaultHasher>::default().hash_one(view);
        let repeated = self
            .last
            .as_ref()
            .is_some_and(|(last, seen)| last == decision && *seen == fingerprint);
        self.last = Some((decision.clone(), fingerprint));
        if repeated {
            tracing::debug!(
                ?decision,
                "the same decision on the same status; backing off"
            );
            self.backoff
                .get_or_insert_with(crate::retry::Backoff::new)
                .wait()
                .await;
        } else {
            self.backoff = None;
        }
    }
}

/// Decides the next move for the steps named `steps` (in execution order), of which the
/// first `preflights` are preflight steps.
pub fn next(steps: &[&str], preflights: usize, data: &StatusData) -> Next {
    if Phase::of(data) != Phase::Running {
        return Next::Wait;
    }
    for (index, step) in steps.iter().enumerate() {
        let row = StepRow::read(data, step);
        if index < preflights && !of_this_attempt(data, step) {
            // A preflight proves nothing about a later attempt: it runs again, anew.
            return fresh_attempt(index, step, &row);
        }
        match row.result {
            StepResult::Success | StepResult::Skipped => continue,
            StepResult::Running => {
                let recorded_job = may_name(step, &row).then_some(row.job_name);
                return Next::Run {
                    index,
                    attempt: row.attempt,
                    resume: true,
                    recorded_job,
                };
            }
            StepResult::Failed | StepResult::Pending => return fresh_attempt(index, step, &row),
        }
    }
    Next::Complete
}

/// The status as the held-back transitions `pending` will leave it once written, with
/// those transitions; when one no longer applies to `data` (someone aborted, another runner
/// moved on) they are all dropped and `data` stands as read.
pub fn replay(data: StatusData, pending: Vec<Transition>) -> (StatusData, Vec<Transition>) {
    let mut view = data.clone();
    if pending.iter().all(|t| t.apply(&mut view).is_ok()) {
        (view, pending)
    } else {
        (data, Vec::new())
    }
}

/// What the runner writes, and then runs, for one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// Written first, as one write: the held-back transitions, then the decision's own.
    pub writes: Vec<Transition>,
    /// The step attempt to run once the writes applied.
    pub run: Option<StepAttempt>,
}

/// One attempt of a step, as the runner runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepAttempt {
    /// 0-based position in the plan.
    pub index: usize,
    /// Step name.
    pub step: String,
    /// Steps in the plan.
    pub total_steps: usize,
    /// Attempt number.
    pub attempt: u32,
    /// Whether the attempt was recorded as running before (its Job is adopted).
    pub resume: bool,
    /// The Job to create or adopt, or the DaemonSet of a daemonset-wait step.
    pub target: String,
}

/// How the end of a step attempt is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Held back and written with the next write (the next step's start), which saves a
    /// write per step; replayed onto every status read until then.
    HoldBack(Transition),
    /// Written at once: the cutover stops here.
    Write(Transition),
    /// Nothing: the status stopped showing the attempt running (an abort wrote it).
    Nothing,
}

impl StepAttempt {
    /// How `outcome` of this attempt at `at` is recorded.
    pub fn record(&self, outcome: StepOutcome, at: &str) -> Record {
        match outcome {
            StepOutcome::Succeeded(outputs) => Record::HoldBack(Transition::StepSucceeded {
                step: self.step.clone(),
                index: self.index,
                total_steps: self.total_steps,
                attempt: self.attempt,
                outputs,
                at: at.to_owned(),
            }),
            StepOutcome::Failed(reason) => Record::Write(Transition::StepFailed {
                step: self.step.clone(),
                attempt: self.attempt,
                reason,
                at: at.to_owned(),
            }),
            StepOutcome::Cancelled => Record::Nothing,
        }
    }
}

/// The writes and the run of `decision` on `plan`, after the held-back `pending`; new
/// transitions are stamped `at`. A step's Job is the one its running row names when that
/// may be adopted, else the one its step and attempt determine; a daemonset-wait step runs
/// its DaemonSet and writes `registriesYamlActive=v2` on every attempt and every resume, so
/// a pivot lost in a crash is redone.
pub fn act(plan: &StepPlan, decision: Next, pending: Vec<Transition>, at: &str) -> Action {
    let total_steps = plan.len();
    let mut writes = pending;
    let named = |index: usize| plan.steps()[index].name.as_str().to_owned();
    let run = match decision {
        Next::Wait => None,
        Next::Halt { index, reason } => {
            writes.push(Transition::Halt {
                step: Some(named(index)),
                reason,
                at: at.to_owned(),
            });
            None
        }
        Next::Complete => {
            writes.push(Transition::Completed {
                total_steps,
                at: at.to_owned(),
            });
            None
        }
        Next::Run {
            index,
            attempt,
            resume,
            recorded_job,
        } => {
            let step = &plan.steps()[index];
            let target = match &step.kind {
                StepKind::Job { .. } | StepKind::Preflight { .. } => {
                    recorded_job.unwrap_or_else(|| job_name(&step.name, attempt))
                }
                StepKind::DaemonSetWait { daemonset } => daemonset.clone(),
            };
            if !resume {
                writes.push(Transition::StepStarted {
                    step: named(index),
                    index,
                    total_steps,
                    attempt,
                    job_name: target.clone(),
                    at: at.to_owned(),
                });
            }
            if matches!(step.kind, StepKind::DaemonSetWait { .. }) {
                writes.push(Transition::RegistriesV2);
            }
            Some(StepAttempt {
                index,
                step: named(index),
                total_steps,
                attempt,
                resume,
                target,
            })
        }
    };
    Action { writes, run }
}

/// A new attempt of step `index` after its row's, or a halt when a hand edit left the row
/// at the last attempt there can be (checked arithmetic, never an overflow).
fn fresh_attempt(index: usize, step: &str, row: &StepRow) -> Next {
    match row.attempt.checked_add(1) {
        Some(attempt) => Next::Run {
            index,
            attempt,
            resume: false,
            recorded_job: None,
        },
        None => Next::Halt {
            index,
            reason: format!(
                "step {step} is at attempt {}, the last there can be: the status ConfigMap was \
                 edited by hand; reset step.{step}.attempt to retry",
                row.attempt
            ),
        },
    }
}

/// Whether `step`'s row was written in the cutover's current attempt (start or retry).
fn of_this_attempt(data: &StatusData, step: &str) -> bool {
    let current = get(data, KEY_CUTOVER_ATTEMPT);
    !current.is_empty() && get(data, &key::step(step, KEY_CUTOVER_ATTEMPT)) == current
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract;
    use crate::status::StepOutputs;
    use crate::status::fixtures::{T0, T1, start, started, succeeded};
    use k8s_openapi::api::core::v1::ConfigMap;

    /// A Job step `mirror`, then the daemonset-wait step `registry-pivot`.
    fn plan() -> StepPlan {
        let step = |order: &str, labels: serde_json::Value, data: serde_json::Value| {
            let mut labels = labels;
            labels[contract::LABEL_STEP_ORDER] = order.into();
            serde_json::from_value::<ConfigMap>(serde_json::json!({
                "metadata": {"name": format!("cutover-step-0{order}-s"), "labels": labels},
                "data": data,
            }))
            .unwrap()
        };
        let job = step(
            "1",
            serde_json::json!({}),
            serde_json::json!({
                contract::DATA_STEP_NAME: "mirror",
                contract::DATA_POD_SPEC: "containers:\n- name: s\n  image: busybox\n",
            }),
        );
        let pivot = step(
            "2",
            serde_json::json!({
                contract::LABEL_STEP_MODE: "daemonset-wait",
                contract::LABEL_STEP_DAEMONSET: "registry-pivot-agent",
            }),
            serde_json::json!({contract::DATA_STEP_NAME: "registry-pivot"}),
        );
        crate::step::parse_plan(&[job, pivot]).unwrap()
    }

    fn run(index: usize, attempt: u32, resume: bool, recorded_job: Option<&str>) -> Next {
        Next::Run {
            index,
            attempt,
            resume,
            recorded_job: recorded_job.map(str::to_owned),
        }
    }

    #[test]
    fn a_fresh_job_attempt_records_the_job_its_step_and_attempt_name() {
        let action = act(&plan(), run(0, 3, false, None), Vec::new(), T0);
        let target = job_name(&StepName::new("mirror").unwrap(), 3);
        assert_eq!(
            action.writes,
            vec![Transition::StepStarted {
                step: "mirror".into(),
                index: 0,
                total_steps: 2,
                attempt: 3,
                job_name: target.clone(),
                at: T0.into(),
            }]
        );
        let attempt = action.run.unwrap();
        assert_eq!((attempt.target, attempt.resume), (target, false));
    }

    #[test]
    fn a_resumed_job_attempt_adopts_the_recorded_job_and_writes_nothing() {
        let action = act(
            &plan(),
            run(0, 2, true, Some("cutover-mirror")),
            Vec::new(),
            T0,
        );
        assert!(action.writes.is_empty());
        assert_eq!(action.run.unwrap().target, "cutover-mirror");
        let action = act(&plan(), run(0, 2, true, None), Vec::new(), T0);
        assert_eq!(
            action.run.unwrap().target,
            job_name(&StepName::new("mirror").unwrap(), 2),
            "a name that may not be adopted is replaced by the determined one"
        );
    }

    #[test]
    fn the_registry_flip_is_written_on_every_attempt_and_every_resume_of_the_pivot() {
        let fresh = act(&plan(), run(1, 1, false, None), Vec::new(), T0);
        assert!(matches!(
            fresh.writes.as_slice(),
            [Transition::StepStarted { job_name, .. }, Transition::RegistriesV2]
                if job_name == "registry-pivot-agent"
        ));
        let resumed = act(&plan(), run(1, 1, true, Some("whatever")), Vec::new(), T0);
        assert_eq!(resumed.writes, vec![Transition::RegistriesV2]);
        assert_eq!(resumed.run.unwrap().target, "registry-pivot-agent");
    }

    #[test]
    fn held_back_transitions_lead_the_next_write() {
        let held = succeeded("mirror", 0, 1);
        let action = act(&plan(), run(1, 1, false, None), vec![held.clone()], T1);
        assert_eq!(action.writes.first(), Some(&held));
        assert_eq!(action.writes.len(), 3);
        let done = act(&plan(), Next::Complete, vec![held.clone()], T1);
        assert_eq!(
            done.writes,
            vec![
                held,
                Transition::Completed {
                    total_steps: 2,
                    at: T1.into()
                }
            ]
        );
        assert_eq!(done.run, None);
    }

    #[test]
    fn a_halt_names_its_step() {
        let action = act(
            &plan(),
            Next::Halt {
                index: 1,
                reason: "edited".into(),
            },
            Vec::new(),
            T1,
        );
        assert_eq!(
            action.writes,
            vec![Transition::Halt {
                step: Some("registry-pivot".into()),
                reason: "edited".into(),
                at: T1.into(),
            }]
        );
    }

    #[test]
    fn a_success_is_held_back_a_failure_written_a_cancellation_not_recorded() {
        let attempt = act(&plan(), run(0, 1, false, None), Vec::new(), T0)
            .run
            .unwrap();
        assert_eq!(
            attempt.record(StepOutcome::Succeeded(StepOutputs::default()), T1),
            Record::HoldBack(Transition::StepSucceeded {
                step: "mirror".into(),
                index: 0,
                total_steps: 2,
                attempt: 1,
                outputs: StepOutputs::default(),
                at: T1.into(),
            })
        );
        assert!(matches!(
            attempt.record(StepOutcome::Failed("exit 1".into()), T1),
            Record::Write(Transition::StepFailed { reason, attempt: 1, .. }) if reason == "exit 1"
        ));
        assert_eq!(attempt.record(StepOutcome::Cancelled, T1), Record::Nothing);
    }

    #[test]
    fn replayed_transitions_show_in_the_view_until_one_no_longer_applies() {
        let mut data = StatusData::new();
        for t in [start(false), started("a", 0, 1)] {
            t.apply(&mut data).unwrap();
        }
        let held = vec![succeeded("a", 0, 1)];
        let (view, kept) = replay(data.clone(), held.clone());
        assert_eq!(kept, held);
        assert_eq!(get(&view, "step.a.result"), "success");

        // Someone aborted the step meanwhile: its success no longer applies.
        Transition::Abort {
            step: "a".into(),
            by: "bob".into(),
            at: T1.into(),
        }
        .apply(&mut data)
        .unwrap();
        let (view, kept) = replay(data.clone(), held);
        assert!(kept.is_empty());
        assert_eq!(view, data);
    }

    fn data(pairs: &[(&str, &str)]) -> StatusData {
        let mut d = crate::status::model::data_of(pairs);
        d.insert("cutoverPhase".into(), "running".into());
        d
    }

    #[test]
    fn idle_failed_and_complete_wait() {
        let mut d = data(&[]);
        for phase in ["idle", "failed", "complete"] {
            d.insert("cutoverPhase".into(), phase.into());
            assert_eq!(next(&["a"], 0, &d), Next::Wait);
        }
    }

    #[test]
    fn first_unfinished_step_runs_next() {
        let d = data(&[("step.a.result", "success"), ("step.a.attempt", "1")]);
        assert_eq!(
            next(&["a", "b"], 0, &d),
            Next::Run {
                index: 1,
                attempt: 1,
                resume: false,
                recorded_job: None
            }
        );
    }

    #[test]
    fn running_row_is_resumed_with_its_job() {
        let d = data(&[
            ("step.a.result", "running"),
            ("step.a.attempt", "2"),
            ("step.a.jobName", "cutover-a-a2"),
        ]);
        assert_eq!(
            next(&["a", "b"], 0, &d),
            Next::Run {
                index: 0,
                attempt: 2,
                resume: true,
                recorded_job: Some("cutover-a-a2".into())
            }
        );
    }

    #[test]
    fn a_running_row_edited_to_attempt_zero_resumes_attempt_one() {
        let d = data(&[
            ("step.a.result", "running"),
            ("step.a.attempt", "0"),
            ("step.a.jobName", "cutover-a-a1"),
        ]);
        assert_eq!(
            next(&["a"], 0, &d),
            Next::Run {
                index: 0,
                attempt: 1,
                resume: true,
                recorded_job: Some("cutover-a-a1".into())
            }
        );
    }

    #[test]
    fn a_hand_written_job_name_is_not_adopted() {
        for job in ["kube-proxy", "cutover-a-a1", "cutover-b-a2"] {
            let d = data(&[
                ("step.a.result", "running"),
                ("step.a.attempt", "2"),
                ("step.a.jobName", job),
            ]);
            assert!(
                matches!(
                    next(&["a"], 0, &d),
                    Next::Run {
                        recorded_job: None,
                        attempt: 2,
                        ..
                    }
                ),
                "{job}"
            );
        }
    }

    #[test]
    fn the_last_attempt_halts_instead_of_overflowing() {
        let d = data(&[
            ("step.a.result", "failed"),
            ("step.a.attempt", "4294967295"),
        ]);
        assert!(matches!(next(&["a"], 0, &d), Next::Halt { index: 0, .. }));
    }

    #[test]
    fn failed_row_after_retry_gets_a_new_attempt() {
        let d = data(&[("step.a.result", "failed"), ("step.a.attempt", "1")]);
        assert!(matches!(
            next(&["a"], 0, &d),
            Next::Run {
                attempt: 2,
                resume: false,
                ..
            }
        ));
    }

    #[test]
    fn a_pending_row_of_an_earlier_attempt_gets_a_new_attempt() {
        // What a start after a rollback leaves: results cleared, attempts kept.
        let d = data(&[("step.a.result", ""), ("step.a.attempt", "1")]);
        assert_eq!(
            next(&["a", "b"], 0, &d),
            Next::Run {
                index: 0,
                attempt: 2,
                resume: false,
                recorded_job: None
            }
        );
    }

    #[test]
    fn preflights_run_again_on_every_attempt_of_the_cutover() {
        let mut d = data(&[
            ("cutoverAttempt", "2"),
            ("step.check.result", "success"),
            ("step.check.attempt", "1"),
            ("step.check.cutoverAttempt", "1"),
            ("step.change.result", "failed"),
            ("step.change.attempt", "1"),
            ("step.change.cutoverAttempt", "1"),
        ]);
        assert_eq!(
            next(&["check", "change"], 1, &d),
            Next::Run {
                index: 0,
                attempt: 2,
                resume: false,
                recorded_job: None
            },
            "the retry re-runs the preflight that passed before"
        );
        d.insert("step.check.cutoverAttempt".into(), "2".into());
        d.insert("step.check.attempt".into(), "2".into());
        assert!(matches!(
            next(&["check", "change"], 1, &d),
            Next::Run {
                index: 1,
                attempt: 2,
                ..
            }
        ));
        d.insert("step.check.result".into(), "running".into());
        assert!(matches!(
            next(&["check", "change"], 1, &d),
            Next::Run {
                index: 0,
                attempt: 2,
                resume: true,
                ..
            }
        ));
    }

    #[test]
    fn all_done_completes() {
        let d = data(&[("step.a.result", "success"), ("step.b.result", "skipped")]);
        assert_eq!(next(&["a", "b"], 0, &d), Next::Complete);
    }
}
