//! What the runner does next, as a pure function of the plan's step names and the status.

use crate::contract::key;
use crate::status::model::{KEY_CUTOVER_ATTEMPT, Phase, StatusData, StepResult, StepRow, get};

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
            return Next::Run {
                index,
                attempt: row.attempt + 1,
                resume: false,
                recorded_job: None,
            };
        }
        match row.result {
            StepResult::Success | StepResult::Skipped => continue,
            StepResult::Running => {
                return Next::Run {
                    index,
                    attempt: row.attempt.max(1),
                    resume: true,
                    recorded_job: Some(row.job_name).filter(|j| !j.is_empty()),
                };
            }
            StepResult::Failed | StepResult::Pending => {
                return Next::Run {
                    index,
                    attempt: row.attempt + 1,
                    resume: false,
                    recorded_job: None,
                };
            }
        }
    }
    Next::Complete
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
