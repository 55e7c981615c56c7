//! What the runner does next, as a pure function of the plan's step names and the status.

use crate::contract::key;
use crate::render::job_name;
use crate::status::model::{KEY_CUTOVER_ATTEMPT, Phase, StatusData, StepResult, StepRow, get};
use crate::step::StepName;

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
