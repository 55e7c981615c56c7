//! Transitions of the cutover state machine: pure functions from one status data map to the
//! next. Each checks its precondition against the map it is applied to (the fresh one, after
//! a conflict) and is idempotent, so a write whose answer was lost can be applied again.

use super::model::{
    KEY_CUTOVER_ATTEMPT, KEY_PHASE, KEY_TRIGGER, KEY_TRIGGERED_BY, Phase, STEP_ATTEMPT, StatusData,
    StepResult, StepRow, get, get_u32, set,
};
use super::output::{FIGURES, StepOutputs, output_key, output_prefix};
use super::rollback_transition::{
    KEY_REQUESTED_AT, KEY_REQUESTED_BY, RollbackRefused, forget_node_acks,
};
use crate::contract::{key, registries};
use crate::sanitize::{self, Lines};

/// How `lastError` of an aborted step begins, followed by who aborted it.
pub const ABORTED_BY_PREFIX: &str = "aborted by ";

/// What started an attempt of the cutover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `POST /cutover` or the console's start route.
    Api,
    /// The chart's in-cluster trigger route.
    InternalTrigger,
    /// The first operator login.
    FirstLogin,
    /// `POST /cutover/retry`.
    Retry,
}

impl Trigger {
    /// The string written under `cutoverTrigger`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Api => "api",
            Trigger::InternalTrigger => "internal-trigger",
            Trigger::FirstLogin => "first-login",
            Trigger::Retry => "retry",
        }
    }
}

/// One change of the status ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Start the cutover (from idle), or retry it (from failed) when `retry` is set.
    Start {
        /// RFC 3339 time of the request.
        at: String,
        /// What asked for it.
        trigger: Trigger,
        /// Who asked for it.
        by: String,
        /// Steps in the plan.
        total_steps: usize,
        /// Whether a failed cutover may be resumed by this start.
        retry: bool,
    },
    /// A step's attempt begins: its Job (or DaemonSet) is named before it is created.
    StepStarted {
        /// Step name.
        step: String,
        /// 0-based position in the plan.
        index: usize,
        /// Steps in the plan.
        total_steps: usize,
        /// Attempt number, from 1.
        attempt: u32,
        /// The Job, or the DaemonSet of a daemonset-wait step.
        job_name: String,
        /// RFC 3339 time.
        at: String,
    },
    /// `registriesYamlActive=v2`: the registry-pivot DaemonSet follows it.
    RegistriesV2,
    /// A step's attempt succeeded.
    StepSucceeded {
        /// Step name.
        step: String,
        /// 0-based position in the plan.
        index: usize,
        /// Steps in the plan.
        total_steps: usize,
        /// The attempt that succeeded.
        attempt: u32,
        /// What it reported (its termination message), recorded as `step.<name>.output.*`.
        outputs: StepOutputs,
        /// RFC 3339 time.
        at: String,
    },
    /// A step's attempt failed: the cutover stops there until retried.
    StepFailed {
        /// Step name.
        step: String,
        /// The attempt that failed.
        attempt: u32,
        /// A reason a person can act on.
        reason: String,
        /// RFC 3339 time.
        at: String,
    },
    /// Someone stopped the running cutover.
    Abort {
        /// The step that was running, or would have run next.
        step: String,
        /// Who aborted it.
        by: String,
        /// RFC 3339 time.
        at: String,
    },
    /// The runner cannot go on (the step ConfigMaps turned invalid mid-run): the cutover
    /// fails with `reason`, on `step` when one is concerned.
    Halt {
        /// The step concerned, if any.
        step: Option<String>,
        /// A reason a person can act on.
        reason: String,
        /// RFC 3339 time.
        at: String,
    },
    /// The first operator login ever: recorded once; later logins change nothing.
    FirstOperatorLogin {
        /// The operator's name.
        operator: String,
        /// RFC 3339 time.
        at: String,
    },
    /// Every step is done.
    Completed {
        /// Steps in the plan.
        total_steps: usize,
        /// RFC 3339 time.
        at: String,
    },
}

/// Why a transition does not apply to the current status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// A run is already under way.
    #[error("a cutover is already in progress (step {current_step:?})")]
    InProgress {
        /// The step running now, `""` between steps.
        current_step: String,
    },
    /// Nothing left to do.
    #[error("the cutover is already complete")]
    AlreadyComplete,
    /// The cutover failed and the request did not ask to retry.
    #[error("the cutover failed at step {step:?}: {error}")]
    Failed {
        /// The failed step.
        step: String,
        /// Its reason.
        error: String,
    },
    /// The transition needs another phase (an abort while nothing runs, a step while
    /// the cutover was aborted meanwhile).
    #[error("the cutover is {phase}, not running")]
    NotRunning {
        /// The phase found.
        phase: Phase,
    },
    /// The registry pivot was rolled back: only an operator's start runs the cutover again,
    /// never an automatic trigger.
    #[error(
        "the registry pivot was rolled back by {by:?} at {at}; only an operator's POST /cutover starts the cutover again"
    )]
    RolledBack {
        /// Who rolled it back.
        by: String,
        /// When.
        at: String,
    },
    /// A rollback of the registry pivot is under way: a start would race it.
    #[error("a rollback of the registry pivot requested by {by:?} at {at} is under way")]
    RollingBack {
        /// Who requested it.
        by: String,
        /// When.
        at: String,
    },
    /// A rollback transition does not apply.
    #[error(transparent)]
    Rollback(#[from] RollbackRefused),
    /// The step's row belongs to another attempt than the one this transition is about.
    #[error("step {step:?} is at attempt {found} with result {result:?}, not attempt {expected}")]
    StaleAttempt {
        /// Step name.
        step: String,
        /// The attempt the transition is about.
        expected: u32,
        /// The attempt in the map.
        found: u32,
        /// The row's result.
        result: &'static str,
    },
}

impl Transition {
    /// Applies the transition to `data` in place, or says why it does not apply (leaving
    /// `data` untouched). Applying it twice changes nothing the second time.
    pub fn apply(&self, data: &mut StatusData) -> Result<(), Rejected> {
        let phase = Phase::of(data);
        match self {
            Transition::Start {
                at,
                trigger,
                by,
                total_steps,
                retry,
            } => {
                match phase {
                    Phase::Idle => {}
                    Phase::Failed if *retry => {}
                    Phase::RolledBack | Phase::RollbackFailed => {
                        if !matches!(trigger, Trigger::Api | Trigger::Retry) {
                            return Err(Rejected::RolledBack {
                                by: get(data, KEY_REQUESTED_BY).to_owned(),
                                at: get(data, KEY_REQUESTED_AT).to_owned(),
                            });
                        }
                        run_again(data);
                    }
                    Phase::Running => {
                        return Err(Rejected::InProgress {
                            current_step: get(data, key::CURRENT_STEP).to_owned(),
                        });
                    }
                    Phase::RollingBack => {
                        return Err(Rejected::RollingBack {
                            by: get(data, KEY_REQUESTED_BY).to_owned(),
                            at: get(data, KEY_REQUESTED_AT).to_owned(),
                        });
                    }
                    Phase::Complete => return Err(Rejected::AlreadyComplete),
                    Phase::Failed => {
                        return Err(Rejected::Failed {
                            step: get(data, key::FAILED_STEP).to_owned(),
                            error: get(data, key::LAST_ERROR).to_owned(),
                        });
                    }
                }
                if get(data, key::CUTOVER_STARTED_AT).is_empty() {
                    set(data, key::CUTOVER_STARTED_AT, at);
                }
                set(data, key::CUTOVER_LAST_ATTEMPT_STARTED_AT, at);
                let attempt = get_u32(data, KEY_CUTOVER_ATTEMPT).saturating_add(1);
                set(data, KEY_CUTOVER_ATTEMPT, &attempt.to_string());
                set(data, KEY_PHASE, Phase::Running.as_str());
                set(data, key::CUTOVER_COMPLETE, "false");
                set(data, key::FAILED_STEP, "");
                set(data, key::LAST_ERROR, "");
                set(data, key::CURRENT_STEP, "");
                set(data, key::TOTAL_STEPS, &total_steps.to_string());
                set(data, KEY_TRIGGER, trigger.as_str());
                set(data, KEY_TRIGGERED_BY, &one_line(by));
                Ok(())
            }
            Transition::StepStarted {
                step,
                index,
                total_steps,
                attempt,
                job_name,
                at,
            } => {
                require_running(phase)?;
                let row = StepRow::read(data, step);
                if row.result == StepResult::Running && row.attempt == *attempt {
                    return Ok(());
                }
                if row.attempt >= *attempt {
                    return Err(stale(step, *attempt, &row));
                }
                set(data, key::CURRENT_STEP, step);
                set(data, key::CURRENT_STEP_INDEX, &index.to_string());
                set(data, key::TOTAL_STEPS, &total_steps.to_string());
                set(data, key::PROGRESS_PERCENT, &percent(*index, *total_steps));
                set_step(data, step, key::STEP_RESULT, StepResult::Running.as_str());
                set_step(data, step, key::STEP_STARTED_AT, at);
                set_step(data, step, key::STEP_FINISHED_AT, "");
                set_step(data, step, key::STEP_JOB_NAME, job_name);
                set_step(data, step, STEP_ATTEMPT, &attempt.to_string());
                let cutover_attempt = get(data, KEY_CUTOVER_ATTEMPT).to_owned();
                set_step(data, step, KEY_CUTOVER_ATTEMPT, &cutover_attempt);
                // Outputs belong to the attempt that reported them.
                clear_outputs(data, step);
                Ok(())
            }
            Transition::RegistriesV2 => {
                require_running(phase)?;
                // After a rollback, the nodes' acknowledgements are of the rollback (or
                // stale ones of the earlier pivot): only fresh `v2` ones may count.
                if get(data, key::REGISTRIES_YAML_ACTIVE) == registries::ROLLBACK {
                    forget_node_acks(data);
                }
                set(data, key::REGISTRIES_YAML_ACTIVE, registries::V2);
                Ok(())
            }
            Transition::StepSucceeded {
                step,
                index,
                total_steps,
                attempt,
                outputs,
                at,
            } => {
                if ends(data, phase, step, *attempt, StepResult::Success)? {
                    return Ok(());
                }
                record_outputs(data, step, outputs);
                set_step(data, step, key::STEP_RESULT, StepResult::Success.as_str());
                set_step(data, step, key::STEP_FINISHED_AT, at);
                set(data, key::CURRENT_STEP, "");
                set(data, key::CURRENT_STEP_INDEX, &index.to_string());
                set(
                    data,
                    key::PROGRESS_PERCENT,
                    &percent(index + 1, *total_steps),
                );
                Ok(())
            }
            Transition::StepFailed {
                step,
                attempt,
                reason,
                at,
            } => {
                if ends(data, phase, step, *attempt, StepResult::Failed)? {
                    return Ok(());
                }
                fail(data, step, reason, at);
                Ok(())
            }
            Transition::Abort { step, by, at } => {
                require_running(phase)?;
                let reason = format!("{ABORTED_BY_PREFIX}{}", one_line(by));
                fail(data, step, &reason, at);
                Ok(())
            }
            Transition::Halt { step, reason, at } => {
                require_running(phase)?;
                match step {
                    Some(step) => fail(data, step, reason, at),
                    None => {
                        set(data, KEY_PHASE, Phase::Failed.as_str());
                        set(data, key::FAILED_STEP, "");
                        set(data, key::LAST_ERROR, reason);
                        set(data, key::CURRENT_STEP, "");
                    }
                }
                Ok(())
            }
            Transition::FirstOperatorLogin { operator, at } => {
                if get(data, key::FIRST_OPERATOR_LOGIN).is_empty() {
                    set(data, key::FIRST_OPERATOR_LOGIN, &one_line(operator));
                    set(data, key::FIRST_OPERATOR_LOGIN_AT, at);
                }
                Ok(())
            }
            Transition::Completed { total_steps, at } => {
                if phase == Phase::Complete {
                    return Ok(());
                }
                require_running(phase)?;
                set(data, KEY_PHASE, Phase::Complete.as_str());
                set(data, key::CUTOVER_COMPLETE, "true");
                set(data, key::CUTOVER_FINISHED_AT, at);
                set(data, key::CURRENT_STEP, "");
                set(data, key::TOTAL_STEPS, &total_steps.to_string());
                set(data, key::PROGRESS_PERCENT, "100");
                Ok(())
            }
        }
    }
}

/// A start after a rollback runs every step again: each row goes back to not started,
/// keeping its attempt so the next attempt's Job gets a name of its own.
fn run_again(data: &mut StatusData) {
    let rows: Vec<String> = super::model::row_names(data).map(str::to_owned).collect();
    for step in rows {
        let attempt = StepRow::read(data, &step).attempt;
        set_step(data, &step, STEP_ATTEMPT, &attempt.to_string());
        for field in [
            key::STEP_RESULT,
            key::STEP_STARTED_AT,
            key::STEP_FINISHED_AT,
            key::STEP_JOB_NAME,
        ] {
            set_step(data, &step, field, "");
        }
    }
    set(data, key::CUTOVER_FINISHED_AT, "");
    set(data, key::CURRENT_STEP_INDEX, "0");
    set(data, key::PROGRESS_PERCENT, "0");
}

fn fail(data: &mut StatusData, step: &str, reason: &str, at: &str) {
    set_step(data, step, key::STEP_RESULT, StepResult::Failed.as_str());
    set_step(data, step, key::STEP_FINISHED_AT, at);
    set(data, KEY_PHASE, Phase::Failed.as_str());
    set(data, key::FAILED_STEP, step);
    set(data, key::LAST_ERROR, reason);
    set(data, key::CURRENT_STEP, "");
}

/// Whether `attempt` of `step` may end with `result`: `Ok(true)` when it already has (a
/// replayed write), `Ok(false)` when the row shows that attempt running.
fn ends(
    data: &StatusData,
    phase: Phase,
    step: &str,
    attempt: u32,
    result: StepResult,
) -> Result<bool, Rejected> {
    let row = StepRow::read(data, step);
    if row.result == result && row.attempt == attempt {
        return Ok(true);
    }
    require_running(phase)?;
    if row.result != StepResult::Running || row.attempt != attempt {
        return Err(stale(step, attempt, &row));
    }
    Ok(false)
}

fn require_running(phase: Phase) -> Result<(), Rejected> {
    match phase {
        Phase::Running => Ok(()),
        phase => Err(Rejected::NotRunning { phase }),
    }
}

fn stale(step: &str, expected: u32, row: &StepRow) -> Rejected {
    Rejected::StaleAttempt {
        step: step.to_owned(),
        expected,
        found: row.attempt,
        result: row.result.as_str(),
    }
}

fn percent(done: usize, total: usize) -> String {
    (done.saturating_mul(100).checked_div(total).unwrap_or(0)).to_string()
}

/// Replaces `step`'s outputs with `outputs`, and sets the console's figures the step is
/// the source of (a figure it did not report this time is left as it was).
fn record_outputs(data: &mut StatusData, step: &str, outputs: &StepOutputs) {
    clear_outputs(data, step);
    for (name, value) in outputs.iter() {
        set(data, &output_key(step, name), value);
    }
    for (source, name, top) in FIGURES {
        if let (true, Some(value)) = (source == step, outputs.get(name)) {
            set(data, top, value);
        }
    }
}

fn clear_outputs(data: &mut StatusData, step: &str) {
    let prefix = output_prefix(step);
    data.retain(|k, _| !k.starts_with(&prefix));
}

/// A name (of a caller, an operator) as recorded: one line, nothing a terminal acts on.
fn one_line(name: &str) -> String {
    sanitize::recorded(name, Lines::One).into_owned()
}

fn set_step(data: &mut StatusData, step: &str, field: &str, value: &str) {
    set(data, &key::step(step, field), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::status::fixtures::{T0, T1, failed, start, started, succeeded};

    fn run(data: &mut StatusData, ts: &[Transition]) {
        for t in ts {
            t.apply(data).unwrap();
        }
    }

    #[test]
    fn happy_path_sets_every_contract_key() {
        let mut d = StatusData::new();
        run(
            &mut d,
            &[
                start(false),
                started("a", 0, 1),
                succeeded("a", 0, 1),
                started("b", 1, 1),
                Transition::RegistriesV2,
                succeeded("b", 1, 1),
                Transition::Completed {
                    total_steps: 2,
                    at: T1.into(),
                },
            ],
        );
        assert_eq!(get(&d, "cutoverComplete"), "true");
        assert_eq!(get(&d, "cutoverPhase"), "complete");
        assert_eq!(get(&d, "cutoverStartedAt"), T0);
        assert_eq!(get(&d, "cutoverFinishedAt"), T1);
        assert_eq!(get(&d, "progressPercent"), "100");
        assert_eq!(get(&d, "registriesYamlActive"), "v2");
        assert_eq!(get(&d, "step.a.result"), "success");
        assert_eq!(get(&d, "step.b.jobName"), "cutover-b-a1");
        assert_eq!(get(&d, "currentStep"), "");
    }

    fn succeeded_with(step: &str, index: usize, attempt: u32, message: &str) -> Transition {
        Transition::StepSucceeded {
            step: step.into(),
            index,
            total_steps: 2,
            attempt,
            outputs: StepOutputs::parse(message).unwrap(),
            at: T1.into(),
        }
    }

    #[test]
    fn outputs_are_recorded_under_the_step_and_figures_only_from_their_source() {
        let mut d = StatusData::new();
        run(
            &mut d,
            &[
                start(false),
                started("gitea-mirror", 0, 1),
                succeeded_with(
                    "gitea-mirror",
                    0,
                    1,
                    r#"{"mirroredCommitSHA": "abc123", "branches": "2"}"#,
                ),
                started("other", 1, 1),
                // Another step cannot set the console's figures.
                succeeded_with(
                    "other",
                    1,
                    1,
                    r#"{"mirroredCommitSHA": "forged", "harborProjectCount": "99"}"#,
                ),
            ],
        );
        assert_eq!(
            get(&d, "step.gitea-mirror.output.mirroredCommitSHA"),
            "abc123"
        );
        assert_eq!(get(&d, "step.gitea-mirror.output.branches"), "2");
        assert_eq!(get(&d, "mirroredCommitSHA"), "abc123");
        assert_eq!(get(&d, "step.other.output.mirroredCommitSHA"), "forged");
        assert_eq!(get(&d, "harborProjectCount"), "");
    }

    #[test]
    fn a_new_attempt_drops_the_outputs_of_the_last_and_keeps_the_figure_until_replaced() {
        let mut d = StatusData::new();
        run(
            &mut d,
            &[
                start(false),
                started("gitea-mirror", 0, 1),
                succeeded_with(
                    "gitea-mirror",
                    0,
                    1,
                    r#"{"mirroredCommitSHA": "a1", "x": "1"}"#,
                ),
                started("b", 1, 1),
                failed("b", 1),
            ],
        );
        let before = d.clone();
        run(&mut d, &[succeeded_with("gitea-mirror", 0, 1, "{}")]);
        assert_eq!(before, d, "a replayed success changes nothing");
        d.insert("step.gitea-mirror.attempt".into(), "1".into());
        d.insert("step.gitea-mirror.result".into(), "failed".into());
        run(&mut d, &[start(true), started("gitea-mirror", 0, 2)]);
        assert_eq!(get(&d, "step.gitea-mirror.output.x"), "");
        assert_eq!(get(&d, "mirroredCommitSHA"), "a1");
        run(
            &mut d,
            &[succeeded_with(
                "gitea-mirror",
                0,
                2,
                r#"{"mirroredCommitSHA": "b2"}"#,
            )],
        );
        assert_eq!(get(&d, "mirroredCommitSHA"), "b2");
        assert_eq!(get(&d, "step.gitea-mirror.output.x"), "");
    }

    #[test]
    fn what_is_recorded_carries_no_control_or_bidi_character() {
        let ansi = "boom\u{1b}[2K\r\u{1b}[1Acutover complete\u{202e}";
        let mut d = StatusData::new();
        run(
            &mut d,
            &[
                Transition::FirstOperatorLogin {
                    operator: "eve\u{202e}nimda\n".into(),
                    at: T0.into(),
                },
                Transition::Start {
                    at: T0.into(),
                    trigger: Trigger::Api,
                    by: "mallory\u{1b}[8m".into(),
                    total_steps: 2,
                    retry: false,
                },
                started("a", 0, 1),
                Transition::StepFailed {
                    step: "a".into(),
                    attempt: 1,
                    reason: format!("{ansi}\nsecond line"),
                    at: T1.into(),
                },
            ],
        );
        for (k, v) in &d {
            assert!(
                !v.chars().any(|c| c != '\n' && sanitize::is_unsafe(c)),
                "{k} = {v:?}"
            );
        }
        assert_eq!(get(&d, "firstOperatorLogin"), "eve\u{fffd}nimda\u{fffd}");
        assert_eq!(get(&d, "cutoverTriggeredBy"), "mallory\u{fffd}[8m");
        assert!(
            get(&d, "lastError").ends_with("\u{fffd}\nsecond line"),
            "lines stay"
        );
    }

    #[test]
    fn progress_counts_done_steps() {
        let mut d = StatusData::new();
        run(&mut d, &[start(false), started("a", 0, 1)]);
        assert_eq!(get(&d, "progressPercent"), "0");
        assert_eq!(get(&d, "currentStep"), "a");
        run(&mut d, &[succeeded("a", 0, 1)]);
        assert_eq!(get(&d, "progressPercent"), "50");
    }

    #[test]
    fn every_transition_is_idempotent() {
        let steps = [
            start(false),
            started("a", 0, 1),
            Transition::RegistriesV2,
            succeeded("a", 0, 1),
            started("b", 1, 1),
            failed("b", 1),
        ];
        let mut d = StatusData::new();
        for t in &steps {
            t.apply(&mut d).unwrap();
            let before = d.clone();
            if matches!(t, Transition::Start { .. }) {
                continue;
            }
            if t.apply(&mut d).is_ok() {
                assert_eq!(before, d, "{t:?} applied twice changed the map");
            }
        }
        let before = d.clone();
        failed("b", 1).apply(&mut d).unwrap();
        assert_eq!(before, d);
    }

    #[test]
    fn start_is_refused_while_running_complete_or_failed() {
        let mut d = StatusData::new();
        run(&mut d, &[start(false), started("a", 0, 1)]);
        assert_eq!(
            start(false).apply(&mut d),
            Err(Rejected::InProgress {
                current_step: "a".into()
            })
        );
        run(&mut d, &[failed("a", 1)]);
        let before = d.clone();
        assert!(matches!(
            start(false).apply(&mut d),
            Err(Rejected::Failed { step, .. }) if step == "a"
        ));
        assert_eq!(before, d, "a refused start leaves the failure in place");
        run(&mut d, &[start(true)]);
        assert_eq!(Phase::of(&d), Phase::Running);
        assert_eq!(get(&d, "failedStep"), "");
        assert_eq!(get(&d, "step.a.result"), "failed", "row kept until re-run");
    }

    #[test]
    fn retry_starts_a_new_attempt_and_keeps_earlier_successes() {
        let mut d = StatusData::new();
        run(
            &mut d,
            &[
                start(false),
                started("a", 0, 1),
                succeeded("a", 0, 1),
                started("b", 1, 1),
                failed("b", 1),
                start(true),
                started("b", 1, 2),
            ],
        );
        assert_eq!(get(&d, "step.a.result"), "success");
        assert_eq!(get(&d, "step.b.attempt"), "2");
        assert_eq!(get(&d, "cutoverStartedAt"), T0);
        assert_eq!(started("b", 1, 1).apply(&mut d).map_err(|_| ()), Err(()));
    }

    #[test]
    fn every_start_counts_an_attempt_of_the_cutover_that_its_step_rows_record() {
        let mut d = StatusData::new();
        run(&mut d, &[start(false), started("a", 0, 1)]);
        assert_eq!(get(&d, "cutoverAttempt"), "1");
        assert_eq!(get(&d, "step.a.cutoverAttempt"), "1");
        run(&mut d, &[failed("a", 1), start(true), started("a", 0, 2)]);
        assert_eq!(get(&d, "cutoverAttempt"), "2");
        assert_eq!(get(&d, "step.a.cutoverAttempt"), "2");
    }

    #[test]
    fn late_transitions_of_an_aborted_step_are_rejected() {
        let mut d = StatusData::new();
        run(
            &mut d,
            &[
                start(false),
                started("a", 0, 1),
                Transition::Abort {
                    step: "a".into(),
                    by: "bob".into(),
                    at: T1.into(),
                },
            ],
        );
        assert_eq!(get(&d, "lastError"), "aborted by bob");
        assert_eq!(get(&d, "failedStep"), "a");
        let before = d.clone();
        assert!(succeeded("a", 0, 1).apply(&mut d).is_err());
        assert_eq!(before, d);
    }

    #[test]
    fn first_operator_login_is_recorded_once() {
        let login = |who: &str, at: &str| Transition::FirstOperatorLogin {
            operator: who.into(),
            at: at.into(),
        };
        let mut d = StatusData::new();
        run(&mut d, &[login("alice", T0)]);
        assert_eq!(get(&d, "firstOperatorLogin"), "alice");
        assert_eq!(get(&d, "firstOperatorLoginAt"), T0);
        let before = d.clone();
        run(&mut d, &[login("bob", T1), login("alice", T1)]);
        assert_eq!(before, d, "a later login changes nothing");
        assert_eq!(
            Phase::of(&d),
            Phase::Idle,
            "recording a login starts nothing"
        );
    }

    #[test]
    fn abort_needs_a_running_cutover() {
        let mut d = StatusData::new();
        let abort = Transition::Abort {
            step: "a".into(),
            by: "bob".into(),
            at: T1.into(),
        };
        assert_eq!(
            abort.apply(&mut d),
            Err(Rejected::NotRunning { phase: Phase::Idle })
        );
    }

    /// A complete two-step cutover whose registry pivot carol is rolling back.
    fn rolling_back() -> StatusData {
        use crate::status::rollback_transition::RollbackTransition;
        let mut d = StatusData::new();
        run(
            &mut d,
            &[
                start(false),
                started("a", 0, 1),
                succeeded("a", 0, 1),
                started("b", 1, 1),
                Transition::RegistriesV2,
                succeeded("b", 1, 1),
                Transition::Completed {
                    total_steps: 2,
                    at: T1.into(),
                },
            ],
        );
        d.insert("node.n1.registriesYaml".into(), "v2".into());
        RollbackTransition::Requested {
            by: "carol".into(),
            reason: "harbor lost its disk".into(),
            at: T1.into(),
            deadline: T1.into(),
            daemonsets: vec!["registry-pivot".into()],
        }
        .apply(&mut d)
        .unwrap();
        d
    }

    /// A complete two-step cutover whose registry pivot was then rolled back.
    fn rolled_back() -> StatusData {
        use crate::status::rollback_transition::RollbackTransition;
        let mut d = rolling_back();
        d.insert("node.n1.registriesYaml".into(), "rolled-back".into());
        RollbackTransition::Finished {
            request: T1.into(),
            nodes: vec!["n1".into()],
            at: T1.into(),
        }
        .apply(&mut d)
        .unwrap();
        d
    }

    #[test]
    fn a_start_during_a_rollback_is_refused_naming_the_rollback() {
        let mut d = rolling_back();
        let before = d.clone();
        for retry in [false, true] {
            assert_eq!(
                start(retry).apply(&mut d),
                Err(Rejected::RollingBack {
                    by: "carol".into(),
                    at: T1.into()
                })
            );
        }
        assert_eq!(before, d);
    }

    #[test]
    fn a_start_after_a_rollback_runs_every_step_again_with_new_attempts() {
        let mut d = rolled_back();
        assert_eq!(Phase::of(&d), Phase::RolledBack);
        run(&mut d, &[start(false)]);
        assert_eq!(Phase::of(&d), Phase::Running);
        assert_eq!(get(&d, "cutoverStartedAt"), T0, "the first start is kept");
        assert_eq!(get(&d, "cutoverFinishedAt"), "");
        assert_eq!(get(&d, "progressPercent"), "0");
        assert_eq!(get(&d, "step.a.result"), "");
        assert_eq!(get(&d, "step.a.attempt"), "1");
        assert_eq!(
            get(&d, "registriesYamlActive"),
            "rollback",
            "nodes stay back"
        );
        // A pending row at attempt 1: the runner's next attempt of it is a fresh one.
        let row = StepRow::read(&d, "a");
        assert_eq!((row.result, row.attempt), (StepResult::Pending, 1));
        assert_eq!(get(&d, "rollbackRequestedBy"), "carol", "history is kept");
    }

    #[test]
    fn the_pivot_after_a_rollback_counts_only_fresh_acknowledgements() {
        let mut d = rolled_back();
        run(
            &mut d,
            &[start(false), started("a", 0, 2), Transition::RegistriesV2],
        );
        assert_eq!(get(&d, "registriesYamlActive"), "v2");
        assert_eq!(
            get(&d, "node.n1.registriesYaml"),
            "",
            "rolled-back ack forgotten"
        );
        d.insert("node.n1.registriesYaml".into(), "v2".into());
        let before = d.clone();
        run(&mut d, &[Transition::RegistriesV2]);
        assert_eq!(
            before, d,
            "a resumed pivot keeps its fresh acknowledgements"
        );
    }

    #[test]
    fn only_an_operator_starts_again_after_a_rollback() {
        for trigger in [Trigger::InternalTrigger, Trigger::FirstLogin] {
            let mut d = rolled_back();
            let before = d.clone();
            let t = Transition::Start {
                at: T1.into(),
                trigger,
                by: "system:serviceaccount:catalyst:trigger".into(),
                total_steps: 2,
                retry: false,
            };
            assert!(
                matches!(t.apply(&mut d), Err(Rejected::RolledBack { by, .. }) if by == "carol")
            );
            assert_eq!(before, d);
        }
    }
}
