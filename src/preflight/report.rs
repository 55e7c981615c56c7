//! The preflight ConfigMap's data as a typed [`Report`], and the pure [`Change`]s a run
//! makes to it. Each change checks the run it belongs to, so a run that was superseded (a
//! newer one began after it went stale) can no longer write.

use crate::contract::key;
use crate::status::model::{StatusData, get, get_u32};
use serde::Serialize;

/// Key: the number of the latest run (1 for the first).
pub const KEY_RUN: &str = "run";
/// Key: `running`, `passed` or `failed`.
pub const KEY_RESULT: &str = "result";
/// Key: when the run began.
pub const KEY_STARTED_AT: &str = "startedAt";
/// Key: when it ended.
pub const KEY_FINISHED_AT: &str = "finishedAt";
/// Key: who asked for it.
pub const KEY_TRIGGERED_BY: &str = "triggeredBy";
/// Key: the run's preflight steps, comma-separated, in execution order.
pub const KEY_STEPS: &str = "steps";
/// Per-step field: the failure, as the cutover's `lastError` would give it.
pub const STEP_MESSAGE: &str = "message";

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunResult {
    /// No run was ever made, or the plan has no preflight step.
    None,
    /// Steps are still running.
    Running,
    /// Every preflight step succeeded.
    Passed,
    /// At least one failed.
    Failed,
}

impl RunResult {
    /// The string under [`KEY_RESULT`].
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::None => "",
            RunResult::Running => "running",
            RunResult::Passed => "passed",
            RunResult::Failed => "failed",
        }
    }

    fn parse(value: &str) -> RunResult {
        match value {
            "running" => RunResult::Running,
            "passed" => RunResult::Passed,
            "failed" => RunResult::Failed,
            _ => RunResult::None,
        }
    }
}

/// One preflight step of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// `""` (not started yet), `running`, `success` or `failed`.
    pub result: String,
    /// The step's Job in this run.
    pub job_name: String,
    /// When it started.
    pub started_at: String,
    /// When it ended.
    pub finished_at: String,
    /// Why it failed, whole.
    pub message: String,
    /// Each failed check: the lines of the failed pod's termination message.
    pub checks: Vec<String>,
}

/// The latest run, as the ConfigMap records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The run's number; 0 when there was none.
    pub run: u32,
    /// Where it stands.
    pub result: RunResult,
    /// When it began.
    pub started_at: String,
    /// When it ended.
    pub finished_at: String,
    /// Who asked for it.
    pub triggered_by: String,
    /// Its preflight steps, in execution order.
    pub steps: Vec<StepReport>,
}

impl Report {
    /// Reads the report from the ConfigMap's data.
    pub fn read(data: &StatusData) -> Report {
        let steps = get(data, KEY_STEPS)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|name| {
                let field = |f: &str| get(data, &key::step(name, f)).to_owned();
                let message = field(STEP_MESSAGE);
                StepReport {
                    name: name.to_owned(),
                    result: field(key::STEP_RESULT),
                    job_name: field(key::STEP_JOB_NAME),
                    started_at: field(key::STEP_STARTED_AT),
                    finished_at: field(key::STEP_FINISHED_AT),
                    checks: checks_of(&message),
                    message,
                }
            })
            .collect();
        Report {
            run: get_u32(data, KEY_RUN),
            result: RunResult::parse(get(data, KEY_RESULT)),
            started_at: get(data, KEY_STARTED_AT).to_owned(),
            finished_at: get(data, KEY_FINISHED_AT).to_owned(),
            triggered_by: get(data, KEY_TRIGGERED_BY).to_owned(),
            steps,
        }
    }

    /// Every failed check of the run, one per line, for a status or a log.
    pub fn failed_checks(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|s| s.result == "failed")
            .flat_map(|s| s.checks.iter().cloned())
            .collect()
    }
}

/// The failed checks in a step's failure reason: the lines of the pod's termination message
/// (after `; pod <name>: `, see [`crate::runner::job::explain`]), else the reason itself.
pub fn checks_of(message: &str) -> Vec<String> {
    let termination = message
        .find("; pod ")
        .and_then(|at| {
            let rest = &message[at + "; pod ".len()..];
            rest.find(": ").map(|colon| &rest[colon + 2..])
        })
        .unwrap_or(message);
    termination
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One change of the preflight ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new run of `steps` begins, unless one is running that began at `stale_before` or
    /// later (an older one is taken as abandoned by a replica that went away).
    Begin {
        /// RFC 3339 time.
        at: String,
        /// Who asked.
        by: String,
        /// The preflight steps, in execution order.
        steps: Vec<String>,
        /// RFC 3339 time before which a running run counts as abandoned.
        stale_before: String,
    },
    /// A step of `run` starts with Job `job_name`.
    StepStarted {
        /// The run.
        run: u32,
        /// The step.
        step: String,
        /// Its Job.
        job_name: String,
        /// RFC 3339 time.
        at: String,
    },
    /// A step of `run` ended: `message` is empty when it succeeded.
    StepEnded {
        /// The run.
        run: u32,
        /// The step.
        step: String,
        /// Why it failed; empty when it succeeded.
        message: String,
        /// RFC 3339 time.
        at: String,
    },
    /// Every step of `run` ended: the run passed unless one failed.
    Finished {
        /// The run.
        run: u32,
        /// RFC 3339 time.
        at: String,
    },
}

/// Why a change does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A run is under way (and not stale): join it instead.
    #[error("preflight run {run} is under way")]
    Running {
        /// Its number.
        run: u32,
    },
    /// The change is about a run that is no longer the latest one.
    #[error("preflight run {run} was superseded by run {latest}")]
    Superseded {
        /// The change's run.
        run: u32,
        /// The latest run.
        latest: u32,
    },
}

impl Change {
    /// Applies the change to `data`, or says why not (leaving `data` untouched).
    pub fn apply(&self, data: &mut StatusData) -> Result<(), Refused> {
        let latest = get_u32(data, KEY_RUN);
        let result = RunResult::parse(get(data, KEY_RESULT));
        match self {
            Change::Begin {
                at,
                by,
                steps,
                stale_before,
            } => {
                if result == RunResult::Running
                    && get(data, KEY_STARTED_AT) >= stale_before.as_str()
                {
                    return Err(Refused::Running { run: latest });
                }
                data.retain(|k, _| !k.starts_with("step."));
                set(data, KEY_RUN, &(latest + 1).to_string());
                set(data, KEY_RESULT, RunResult::Running.as_str());
                set(data, KEY_STARTED_AT, at);
                set(data, KEY_FINISHED_AT, "");
                set(data, KEY_TRIGGERED_BY, by);
                set(data, KEY_STEPS, &steps.join(","));
                Ok(())
            }
            Change::StepStarted {
                run,
                step,
                job_name,
                at,
            } => {
                current(*run, latest)?;
                set(data, &key::step(step, key::STEP_RESULT), "running");
                set(data, &key::step(step, key::STEP_JOB_NAME), job_name);
                set(data, &key::step(step, key::STEP_STARTED_AT), at);
                Ok(())
            }
            Change::StepEnded {
                run,
                step,
                message,
                at,
            } => {
                current(*run, latest)?;
                let result = if message.is_empty() {
                    "success"
                } else {
                    "failed"
                };
                set(data, &key::step(step, key::STEP_RESULT), result);
                set(data, &key::step(step, STEP_MESSAGE), message);
                set(data, &key::step(step, key::STEP_FINISHED_AT), at);
                Ok(())
            }
            Change::Finished { run, at } => {
                current(*run, latest)?;
                if result != RunResult::Running {
                    return Ok(());
                }
                let failed = Report::read(data)
                    .steps
                    .iter()
                    .any(|s| s.result != "success");
                let result = if failed {
                    RunResult::Failed
                } else {
                    RunResult::Passed
                };
                set(data, KEY_RESULT, result.as_str());
                set(data, KEY_FINISHED_AT, at);
                Ok(())
            }
        }
    }
}

fn current(run: u32, latest: u32) -> Result<(), Refused> {
    if run == latest {
        Ok(())
    } else {
        Err(Refused::Superseded { run, latest })
    }
}

fn set(data: &mut StatusData, key: &str, value: &str) {
    if data.get(key).map(String::as_str) != Some(value) {
        data.insert(key.to_owned(), value.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-11-23T10:00:00Z";
    const T1: &str = "2026-11-23T10:01:00Z";

    fn begin(at: &str, stale_before: &str) -> Change {
        Change::Begin {
            at: at.into(),
            by: "alice".into(),
            steps: vec!["creds".into(), "reach".into()],
            stale_before: stale_before.into(),
        }
    }

    fn ended(run: u32, step: &str, message: &str) -> Change {
        Change::StepEnded {
            run,
            step: step.into(),
            message: message.into(),
            at: T1.into(),
        }
    }

    #[test]
    fn a_run_passes_only_when_every_step_succeeded() {
        let mut d = StatusData::new();
        begin(T0, T0).apply(&mut d).unwrap();
        let report = Report::read(&d);
        assert_eq!((report.run, report.result), (1, RunResult::Running));
        assert_eq!(report.steps.len(), 2);
        ended(1, "creds", "").apply(&mut d).unwrap();
        let finished = Change::Finished {
            run: 1,
            at: T1.into(),
        };
        let mut early = d.clone();
        finished.apply(&mut early).unwrap();
        assert_eq!(
            Report::read(&early).result,
            RunResult::Failed,
            "a step that never ran is no pass"
        );
        ended(1, "reach", "").apply(&mut d).unwrap();
        finished.apply(&mut d).unwrap();
        assert_eq!(Report::read(&d).result, RunResult::Passed);
    }

    #[test]
    fn a_running_run_is_joined_until_it_goes_stale_then_superseded() {
        let mut d = StatusData::new();
        begin(T0, T0).apply(&mut d).unwrap();
        assert_eq!(
            begin(T1, T0).apply(&mut d),
            Err(Refused::Running { run: 1 })
        );
        begin(T1, T1).apply(&mut d).unwrap();
        assert_eq!(get(&d, KEY_RUN), "2");
        assert_eq!(
            ended(1, "creds", "").apply(&mut d),
            Err(Refused::Superseded { run: 1, latest: 2 })
        );
    }

    #[test]
    fn a_new_run_forgets_the_last_runs_rows() {
        let mut d = StatusData::new();
        begin(T0, T0).apply(&mut d).unwrap();
        ended(1, "creds", "Job x failed").apply(&mut d).unwrap();
        Change::Finished {
            run: 1,
            at: T1.into(),
        }
        .apply(&mut d)
        .unwrap();
        begin(T1, T1).apply(&mut d).unwrap();
        assert!(Report::read(&d).steps.iter().all(|s| s.result.is_empty()));
    }

    #[test]
    fn checks_are_the_lines_of_the_termination_message() {
        let message = "Job preflight-preflight-r1 failed (BackoffLimitExceeded): Job has reached the \
                       specified backoff limit; pod preflight-preflight-r1-x: preflight: Gitea refuses\n\
                       preflight: Harbor refuses\n";
        assert_eq!(
            checks_of(message),
            ["preflight: Gitea refuses", "preflight: Harbor refuses"]
        );
        assert_eq!(
            checks_of("Job x did not finish within the step deadline of 300s"),
            ["Job x did not finish within the step deadline of 300s"]
        );
        assert!(checks_of("").is_empty());
    }
}
