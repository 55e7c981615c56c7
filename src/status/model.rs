//! A typed view of the status ConfigMap's data map: phase, step rows and counters, parsed
//! once from the strings the contract fixes.

use crate::contract::key;
use crate::sanitize::{self, Lines};
use std::collections::BTreeMap;
use std::fmt;

/// The status ConfigMap's data: every value is a string (contract).
pub type StatusData = BTreeMap<String, String>;

/// Key of the cutover's phase. Not written by the earlier implementation: when absent the
/// phase is derived from the contract keys (see [`Phase::of`]).
pub const KEY_PHASE: &str = "cutoverPhase";
/// Key of what started the latest attempt (`api`, `internal-trigger`, `first-login`, ...).
pub const KEY_TRIGGER: &str = "cutoverTrigger";
/// Key of the identity that started the latest attempt.
pub const KEY_TRIGGERED_BY: &str = "cutoverTriggeredBy";
/// Key of the schema version the migrations brought the ConfigMap to.
pub const KEY_SCHEMA_VERSION: &str = "schemaVersion";
/// The schema version this code reads and writes: what a new status ConfigMap is created
/// at, and what the last of the migrations (`crate::migrate`, a layer above) brings an older
/// one to. A unit test of the migrations holds the two equal.
pub const SCHEMA_VERSION: u32 = 2;
/// Per-step field: the attempt number of the step's latest Job.
pub const STEP_ATTEMPT: &str = "attempt";
/// Key counting the cutover's starts and retries (1 after the first start). A preflight
/// row counts only for the attempt of the cutover it ran in (per-step field of the same
/// name), so every start and retry runs the preflights again.
pub const KEY_CUTOVER_ATTEMPT: &str = "cutoverAttempt";

/// Where the cutover as a whole stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Never started.
    Idle,
    /// Started and neither failed nor complete: the leader runs (or resumes) it.
    Running,
    /// A step failed; stays so until someone retries.
    Failed,
    /// Every step succeeded.
    Complete,
    /// An operator asked to undo the registry pivot; the runner follows the nodes'
    /// acknowledgements (see [`super::rollback_transition`]).
    RollingBack,
    /// Every current node acknowledged the rollback of the registry pivot.
    RolledBack,
    /// The rollback's deadline passed before every current node acknowledged it.
    RollbackFailed,
}

impl Phase {
    /// The string written under [`KEY_PHASE`].
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Running => "running",
            Phase::Failed => "failed",
            Phase::Complete => "complete",
            Phase::RollingBack => "rolling-back",
            Phase::RolledBack => "rolled-back",
            Phase::RollbackFailed => "rollback-failed",
        }
    }

    /// Every phase, for gauges and documentation.
    pub const ALL: [Phase; 7] = [
        Phase::Idle,
        Phase::Running,
        Phase::Failed,
        Phase::Complete,
        Phase::RollingBack,
        Phase::RolledBack,
        Phase::RollbackFailed,
    ];

    /// Whether a runner has work in this phase (replicas contend for the Lease only then).
    pub fn needs_runner(self) -> bool {
        matches!(self, Phase::Running | Phase::RollingBack)
    }

    /// Whether the registry pivot was rolled back, or is being rolled back.
    pub fn is_rollback(self) -> bool {
        matches!(
            self,
            Phase::RollingBack | Phase::RolledBack | Phase::RollbackFailed
        )
    }

    /// Reads the phase: the explicit key when it holds a known value, otherwise derived
    /// from the keys the earlier implementation wrote, so an adopted ConfigMap has a phase.
    pub fn of(data: &StatusData) -> Phase {
        let explicit = match get(data, KEY_PHASE) {
            "idle" => Some(Phase::Idle),
            "running" => Some(Phase::Running),
            "failed" => Some(Phase::Failed),
            "complete" => Some(Phase::Complete),
            "rolling-back" => Some(Phase::RollingBack),
            "rolled-back" => Some(Phase::RolledBack),
            "rollback-failed" => Some(Phase::RollbackFailed),
            _ => None,
        };
        explicit.unwrap_or_else(|| Phase::derive(data))
    }

    /// The phase as the earlier implementation's keys imply it.
    pub fn derive(data: &StatusData) -> Phase {
        if get(data, key::CUTOVER_COMPLETE) == "true" {
            Phase::Complete
        } else if !get(data, key::FAILED_STEP).is_empty() {
            Phase::Failed
        } else if !get(data, key::CURRENT_STEP).is_empty() {
            Phase::Running
        } else {
            Phase::Idle
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one step, as `step.<name>.result` holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepResult {
    /// `""`: not started.
    Pending,
    /// `running`.
    Running,
    /// `success`.
    Success,
    /// `failed`.
    Failed,
    /// `skipped`.
    Skipped,
}

impl StepResult {
    /// The contract string.
    pub fn as_str(self) -> &'static str {
        match self {
            StepResult::Pending => "",
            StepResult::Running => "running",
            StepResult::Success => "success",
            StepResult::Failed => "failed",
            StepResult::Skipped => "skipped",
        }
    }

    /// Parses the contract string; anything unknown counts as not started, so a row the
    /// engine does not understand is run again rather than silently taken as done.
    pub fn parse(value: &str) -> StepResult {
        match value {
            "running" => StepResult::Running,
            "success" => StepResult::Success,
            "failed" => StepResult::Failed,
            "skipped" => StepResult::Skipped,
            _ => StepResult::Pending,
        }
    }

    /// Whether the step needs no more work.
    pub fn is_done(self) -> bool {
        matches!(self, StepResult::Success | StepResult::Skipped)
    }
}

/// One step's row: the `step.<name>.*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRow {
    /// `result`.
    pub result: StepResult,
    /// `startedAt`, `""` when never started.
    pub started_at: String,
    /// `finishedAt`, `""` while running or never run.
    pub finished_at: String,
    /// `jobName`: the Job of the latest attempt, or the DaemonSet.
    pub job_name: String,
    /// The latest attempt; 0 when never started, at least 1 once started. Rows of the
    /// earlier implementation carry no attempt: a started row without one counts as
    /// attempt 1, and so does a started row whose attempt a hand edit made 0 or garbage.
    pub attempt: u32,
}

impl StepRow {
    /// Reads the row of `step` from the data map, normalised: whatever a hand edit wrote,
    /// a started row has an attempt of at least 1.
    pub fn read(data: &StatusData, step: &str) -> StepRow {
        let field = |f: &str| get(data, &key::step(step, f)).to_owned();
        let started_at = field(key::STEP_STARTED_AT);
        let result = StepResult::parse(&field(key::STEP_RESULT));
        let raw_attempt = field(STEP_ATTEMPT);
        let recorded = raw_attempt.trim().parse::<u32>().ok();
        let started = !(result == StepResult::Pending && started_at.is_empty());
        let attempt = match recorded {
            Some(n) if started => n.max(1),
            Some(n) => n,
            None if started => 1,
            None => 0,
        };
        StepRow {
            result,
            started_at,
            finished_at: field(key::STEP_FINISHED_AT),
            job_name: field(key::STEP_JOB_NAME),
            attempt,
        }
    }
}

/// The names of the steps that have a row in `data` (a `step.<name>.result` key), in key
/// order.
pub fn row_names(data: &StatusData) -> impl Iterator<Item = &str> {
    data.keys()
        .filter_map(|k| k.strip_prefix("step.")?.strip_suffix(".result"))
}

/// Every step row in `data`, with its step's name, in key order.
pub fn rows(data: &StatusData) -> impl Iterator<Item = (&str, StepRow)> {
    row_names(data).map(|name| (name, StepRow::read(data, name)))
}

/// A value of the map, `""` when absent.
pub fn get<'a>(data: &'a StatusData, key: &str) -> &'a str {
    data.get(key).map(String::as_str).unwrap_or("")
}

/// An integer value of the map, 0 when absent or not an integer.
pub fn get_u32(data: &StatusData, key: &str) -> u32 {
    get(data, key).trim().parse().unwrap_or(0)
}

/// A data map from literal pairs, for tests.
/// Sets `key` to `value`, leaving the map untouched when it already holds it. Every value
/// the state machine records passes here, so none carries a control or
/// bidirectional-formatting character (a failed pod's words in `lastError`, a caller's name)
/// to whoever reads the status on a terminal; line breaks stay (multi-line reasons).
pub(super) fn set(data: &mut StatusData, key: &str, value: &str) {
    let value = sanitize::recorded(value, Lines::Keep);
    if data.get(key).map(String::as_str) != Some(value.as_ref()) {
        data.insert(key.to_owned(), value.into_owned());
    }
}

/// The status data the chart installs: every contract key with its initial value.
pub fn initial_data() -> StatusData {
    let pairs = [
        (key::CUTOVER_COMPLETE, "false"),
        (key::CUTOVER_STARTED_AT, ""),
        (key::CUTOVER_FINISHED_AT, ""),
        (key::CUTOVER_LAST_ATTEMPT_STARTED_AT, ""),
        (key::CURRENT_STEP, ""),
        (key::CURRENT_STEP_INDEX, "0"),
        (key::TOTAL_STEPS, "0"),
        (key::PROGRESS_PERCENT, "0"),
        (key::FAILED_STEP, ""),
        (key::LAST_ERROR, ""),
        (key::REGISTRIES_YAML_ACTIVE, "v1"),
        (KEY_PHASE, Phase::Idle.as_str()),
    ];
    let mut data: StatusData = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    data.insert(KEY_SCHEMA_VERSION.to_owned(), SCHEMA_VERSION.to_string());
    data
}

#[cfg(test)]
pub fn data_of(pairs: &[(&str, &str)]) -> StatusData {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use data_of as data;

    #[test]
    fn phase_is_derived_from_earlier_keys_when_absent() {
        assert_eq!(Phase::of(&data(&[])), Phase::Idle);
        assert_eq!(
            Phase::of(&data(&[("cutoverComplete", "true")])),
            Phase::Complete
        );
        assert_eq!(
            Phase::of(&data(&[("failedStep", "harbor-prewarm")])),
            Phase::Failed
        );
        assert_eq!(
            Phase::of(&data(&[("currentStep", "gitea-mirror")])),
            Phase::Running
        );
        assert_eq!(
            Phase::of(&data(&[
                ("cutoverPhase", "bogus"),
                ("cutoverComplete", "true")
            ])),
            Phase::Complete
        );
    }

    #[test]
    fn explicit_phase_wins() {
        let d = data(&[("cutoverPhase", "running"), ("failedStep", "x")]);
        assert_eq!(Phase::of(&d), Phase::Running);
    }

    #[test]
    fn step_row_of_earlier_implementation_counts_as_attempt_one() {
        let d = data(&[
            ("step.a.result", "running"),
            ("step.a.startedAt", "2026-01-01T00:00:00Z"),
            ("step.a.jobName", "cutover-a"),
        ]);
        let row = StepRow::read(&d, "a");
        assert_eq!(row.result, StepResult::Running);
        assert_eq!(row.attempt, 1);
        assert_eq!(row.job_name, "cutover-a");
        assert_eq!(StepRow::read(&d, "b").attempt, 0);
    }

    #[test]
    fn hand_edited_attempts_are_normalised() {
        let row = |attempt: &str| {
            StepRow::read(
                &data(&[("step.a.result", "running"), ("step.a.attempt", attempt)]),
                "a",
            )
            .attempt
        };
        assert_eq!(row("0"), 1);
        assert_eq!(row("-3"), 1);
        assert_eq!(row("lots"), 1);
        assert_eq!(row(" 7 "), 7);
        assert_eq!(row("4294967295"), u32::MAX);
        assert_eq!(row("4294967296"), 1);
    }

    #[test]
    fn unknown_result_is_not_done() {
        assert_eq!(StepResult::parse("succeeded"), StepResult::Pending);
        assert!(!StepResult::parse("succeeded").is_done());
        assert!(StepResult::parse("skipped").is_done());
    }
}
