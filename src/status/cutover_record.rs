//! The durable record of a cutover, kept outside the status ConfigMap.
//!
//! The status ConfigMap can be deleted or recreated by anyone with `edit` in the namespace.
//! Recreated as new (`idle`, `registriesYamlActive=v1`), it would let the next start run the
//! whole cutover again. So the service also notes when a cutover started and finished in the
//! annotations of a dedicated, never-held coordination.k8s.io Lease (`<lease>-record`):
//! Kubernetes' built-in `edit` role grants no access to Leases, so whoever can delete the
//! status cannot erase the record; it has no owner, so nothing garbage-collects it; and the
//! service already has the RBAC to write Leases. The record only ever grows: a value once
//! noted is never erased by the service.
//!
//! When the record is written matters, because a start is refused when the status shows no
//! cutover but the record shows one (the status was lost):
//! - a start (of the first run, a retry, or a run after a rollback) is noted right *after*
//!   the status write that tells it: so a record that shows a start means the status showed
//!   it before, and a status read after the record that shows none was lost. Noted ahead, a
//!   start not yet written was indistinguishable from a lost status, and concurrent starts
//!   that lost the race were refused as `status-lost` (and each would have written the
//!   record in vain).
//! - everything else (a completion, a new direction to the agents, and the start a status
//!   already shows, should the writer of its start have died before noting it) is noted
//!   *ahead* of the status write that tells it, so a status never shows it while its record
//!   lacks it. Noted after, from the watch, a status deleted right after completing was
//!   rebuilt from a record that had only the start, and the cutover came back failed: the
//!   real API server delivers a watch event well after the write, the sandbox at once.
//!
//! With the record, a lost status is rebuilt instead of started over: a finished cutover
//! comes back complete (and `registriesYamlActive=v2`, so no node moves), or rolled back
//! (`registriesYamlActive=rollback`) when the record's last word to the agents was an
//! operator's rollback, so a lost status never re-pivots nodes an operator moved back; an
//! unfinished one comes back failed with a reason, so nothing runs until an operator
//! retries it. The record follows the status's phase and notes every rollback, so a status
//! lost while the cutover ran again after a rollback comes back failed, saying so (never
//! complete on the strength of the run the rollback undid).
//!
//! This module is the record's pure model: what it says ([`CutoverRecord`]), how a status
//! and the Lease's annotations map to it, and the status rebuilt from it. The Lease itself
//! is read and written by [`super::record_lease`].

use super::model::{KEY_PHASE, Phase, StatusData, get, initial_data};
use super::rollback_transition::KEY_REQUESTED_AT;
use crate::contract::{key, pivot, registries};
use crate::pivot::{Direction, Directive};
use std::collections::BTreeMap;

/// Annotation of the record Lease: when the first cutover started (RFC 3339).
pub const ANNOTATION_STARTED_AT: &str = "cutover.openova.io/started-at";
/// Annotation of the record Lease: when the cutover completed (RFC 3339).
pub const ANNOTATION_FINISHED_AT: &str = "cutover.openova.io/finished-at";
/// Annotation of the record Lease: the direction the registry-pivot agents follow (`v2` or
/// `rollback`). Never taken from the status ConfigMap (which anyone with `edit` may write):
/// only the service's own transitions that give a direction write it
/// ([`RecordKeeper::direct`](super::RecordKeeper::direct)), and `registriesYamlActive` displays it.
pub const ANNOTATION_REGISTRIES: &str = pivot::ANNOTATION_DIRECTION;
/// Annotation of the record Lease: when the direction last changed; the agents'
/// acknowledgements answer the direction of that time.
pub const ANNOTATION_REGISTRIES_SINCE: &str = pivot::ANNOTATION_DIRECTION_SINCE;
/// Annotation of the record Lease: the status's latest phase other than `idle`; follows the
/// status.
pub const ANNOTATION_PHASE: &str = "cutover.openova.io/phase";
/// Annotation of the record Lease: when the latest rollback of the registry pivot was asked
/// for (RFC 3339); follows the status.
pub const ANNOTATION_ROLLED_BACK_AT: &str = "cutover.openova.io/rollback-requested-at";
/// Annotation of the record Lease: when the latest attempt of the cutover started (RFC
/// 3339); follows the status.
pub const ANNOTATION_ATTEMPT_STARTED_AT: &str = "cutover.openova.io/attempt-started-at";

/// Annotation of the record Lease: when the service's own transition last started a run of
/// the cutover (a start or a retry; RFC 3339), noted ahead of that status write and never
/// taken from a status: a `running` phase someone wrote into the status ConfigMap is no run
/// the service started, and never pivots a node.
pub const ANNOTATION_RUN_STARTED_AT: &str = "cutover.openova.io/run-started-at";

/// What the record says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutoverRecord {
    /// When the first cutover started.
    pub started_at: Option<String>,
    /// When the cutover completed.
    pub finished_at: Option<String>,
    /// The direction the agents follow: `v2` or `rollback`.
    pub registries: Option<String>,
    /// When that direction was given.
    pub registries_since: Option<String>,
    /// When the service's own transition last started a run.
    pub run_started_at: Option<String>,
    /// The status's latest phase other than `idle`.
    pub phase: Option<String>,
    /// When the latest rollback of the registry pivot was asked for.
    pub rolled_back_at: Option<String>,
    /// When the latest attempt of the cutover started.
    pub attempt_started_at: Option<String>,
}

impl CutoverRecord {
    /// What a status says about the cutover, for the record. Pure.
    pub fn of(data: &StatusData) -> CutoverRecord {
        let value = |k: &str| Some(get(data, k).to_owned()).filter(|v| !v.is_empty());
        let phase = Phase::of(data);
        CutoverRecord {
            started_at: (phase != Phase::Idle)
                .then(|| value(key::CUTOVER_STARTED_AT))
                .flatten(),
            finished_at: (phase == Phase::Complete)
                .then(|| value(key::CUTOVER_FINISHED_AT).or_else(|| value(key::CUTOVER_STARTED_AT)))
                .flatten(),
            // The direction is the service's word, never a status's (see ANNOTATION_REGISTRIES).
            registries: None,
            registries_since: None,
            run_started_at: None,
            phase: (phase != Phase::Idle).then(|| phase.as_str().to_owned()),
            rolled_back_at: value(KEY_REQUESTED_AT),
            attempt_started_at: (phase != Phase::Idle)
                .then(|| value(key::CUTOVER_LAST_ATTEMPT_STARTED_AT))
                .flatten(),
        }
    }

    pub(super) fn from_annotations(
        annotations: Option<&BTreeMap<String, String>>,
    ) -> CutoverRecord {
        let value = |k: &str| {
            annotations
                .and_then(|a| a.get(k))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        CutoverRecord {
            started_at: value(ANNOTATION_STARTED_AT),
            finished_at: value(ANNOTATION_FINISHED_AT),
            registries: value(ANNOTATION_REGISTRIES),
            registries_since: value(ANNOTATION_REGISTRIES_SINCE),
            run_started_at: value(ANNOTATION_RUN_STARTED_AT),
            phase: value(ANNOTATION_PHASE),
            rolled_back_at: value(ANNOTATION_ROLLED_BACK_AT),
            attempt_started_at: value(ANNOTATION_ATTEMPT_STARTED_AT),
        }
    }

    /// Writes what the record says into the record Lease's `annotations`; what it does not
    /// say is left as it is (the record only grows).
    pub(super) fn annotate(&self, annotations: &mut BTreeMap<String, String>) {
        for (k, v) in [
            (ANNOTATION_STARTED_AT, &self.started_at),
            (ANNOTATION_FINISHED_AT, &self.finished_at),
            (ANNOTATION_REGISTRIES, &self.registries),
            (ANNOTATION_REGISTRIES_SINCE, &self.registries_since),
            (ANNOTATION_RUN_STARTED_AT, &self.run_started_at),
            (ANNOTATION_PHASE, &self.phase),
            (ANNOTATION_ROLLED_BACK_AT, &self.rolled_back_at),
            (ANNOTATION_ATTEMPT_STARTED_AT, &self.attempt_started_at),
        ] {
            if let Some(v) = v {
                annotations.insert(k.to_owned(), v.clone());
            }
        }
    }

    /// The record with what `newer` adds: the first start is kept; everything else follows
    /// the newer value where it names one (a fresh status names none, so it erases
    /// nothing). Pure.
    pub fn merged(&self, newer: &CutoverRecord) -> CutoverRecord {
        let follow = |old: &Option<String>, new: &Option<String>| new.clone().or(old.clone());
        CutoverRecord {
            started_at: self.started_at.clone().or_else(|| newer.started_at.clone()),
            finished_at: follow(&self.finished_at, &newer.finished_at),
            registries: follow(&self.registries, &newer.registries),
            registries_since: follow(&self.registries_since, &newer.registries_since),
            run_started_at: follow(&self.run_started_at, &newer.run_started_at),
            phase: follow(&self.phase, &newer.phase),
            rolled_back_at: follow(&self.rolled_back_at, &newer.rolled_back_at),
            attempt_started_at: follow(&self.attempt_started_at, &newer.attempt_started_at),
        }
    }

    /// The directive the agents follow by this record. Pure.
    pub fn directive(&self) -> Option<Directive> {
        Some(Directive {
            direction: Direction::parse(self.registries.as_deref()?)?,
            since: self.registries_since.clone()?,
        })
    }

    /// Whether the pivot step may direct the agents to `v2`: only in a run the service itself
    /// started (a `running` status written by someone else is none), and never over an
    /// operator's rollback given after that run started. Pure; the error says why, for the
    /// step's failure reason.
    pub fn may_pivot(&self, record_name: &str) -> Result<(), String> {
        let Some(started) = self.run_started_at.as_deref() else {
            return Err(format!(
                "no run of the cutover started by the service is on record (Lease \
                 {record_name}): a running status it did not write pivots no node; start or \
                 retry the cutover (POST /cutover, POST /cutover/retry)"
            ));
        };
        let Some(rollback) = self
            .directive()
            .filter(|d| d.direction == Direction::Rollback)
        else {
            return Ok(());
        };
        let time = |t: &str| t.parse::<jiff::Timestamp>().ok();
        match (time(started), time(&rollback.since)) {
            (Some(run), Some(rolled_back)) if run > rolled_back => Ok(()),
            _ => Err(format!(
                "the registry pivot was rolled back at {} and no run of the cutover was started \
                 since (Lease {record_name}): start the cutover again (POST /cutover) to pivot \
                 the nodes again",
                rollback.since
            )),
        }
    }

    /// The recorded phase, when the record names a known one.
    fn last_phase(&self) -> Option<Phase> {
        let noted = self.phase.as_deref()?;
        Phase::ALL.into_iter().find(|p| p.as_str() == noted)
    }

    /// Whether the cutover was running again, or had failed again, after a rollback: the
    /// run the rollback undid no longer tells how it stands.
    fn rerun_after_rollback(&self) -> bool {
        self.rolled_back_at.is_some()
            && matches!(self.last_phase(), Some(Phase::Running | Phase::Failed))
    }

    /// The record with the fields it lacks taken from `other`, and none it holds changed.
    /// Pure.
    pub fn filled(&self, other: &CutoverRecord) -> CutoverRecord {
        self.merged(&other.merged(self))
    }

    /// Whether a cutover ever started.
    pub fn started(&self) -> bool {
        self.started_at.is_some()
    }

    /// Whether a status write from `before` to `after` starts a run of the cutover (the
    /// first, a retry, or one after a rollback): its record is noted right after the write,
    /// every other write's ahead of it (see the module documentation). Pure.
    pub fn starts(before: &StatusData, after: &StatusData) -> bool {
        Phase::of(after) == Phase::Running && Phase::of(before) != Phase::Running
    }

    /// Whether `wanted` must be written to a record known to hold at least `self`: when it
    /// tells something the record may lack. The start the record holds is never lost (the
    /// record only grows), but another replica may have changed the rest since this one
    /// last noted it, so a write that `changes` it is always noted. Pure.
    pub fn lacks(&self, wanted: &CutoverRecord, changes: bool) -> bool {
        changes || self.merged(wanted) != *self
    }

    /// Whether a status write from `before` to `after` tells the record something new
    /// besides a start: a completion, a direction to the agents. Pure.
    pub fn changes(before: &StatusData, after: &StatusData) -> bool {
        let told = |data| CutoverRecord {
            started_at: None,
            ..CutoverRecord::of(data)
        };
        let was = told(before);
        was.merged(&told(after)) != was
    }

    /// The status to recreate a lost status ConfigMap with, given this record and where the
    /// record lives (for the reason a person reads). Pure.
    pub fn rebuilt_status(&self, record_name: &str) -> StatusData {
        let mut data = initial_data();
        let Some(started) = &self.started_at else {
            return data;
        };
        let mut set = |k: &str, v: &str| {
            data.insert(k.to_owned(), v.to_owned());
        };
        set(key::CUTOVER_STARTED_AT, started);
        set(key::CUTOVER_LAST_ATTEMPT_STARTED_AT, started);
        if let Some(rolled_back_at) = self.rolled_back_at.as_deref()
            && self.rerun_after_rollback()
        {
            let attempt = self.attempt_started_at.as_deref().unwrap_or(started);
            set(KEY_PHASE, Phase::Failed.as_str());
            set(key::CUTOVER_LAST_ATTEMPT_STARTED_AT, attempt);
            set(KEY_REQUESTED_AT, rolled_back_at);
            set(
                key::LAST_ERROR,
                &format!(
                    "the status ConfigMap was lost while the cutover ran again (from {attempt}) \
                     after the registry pivot was rolled back (asked for at {rolled_back_at}; \
                     the record is Lease {record_name}); where each node's registries stand is \
                     unknown, so none is told to move, and nothing runs until an operator \
                     retries it (POST /cutover/retry), which pivots the nodes again and waits \
                     for each one's acknowledgement"
                ),
            );
            set(key::REGISTRIES_YAML_ACTIVE, "");
            return data;
        }
        match &self.finished_at {
            Some(finished) if self.registries.as_deref() == Some(registries::ROLLBACK) => {
                set(KEY_PHASE, Phase::RolledBack.as_str());
                set(key::CUTOVER_FINISHED_AT, finished);
                set(key::REGISTRIES_YAML_ACTIVE, registries::ROLLBACK);
            }
            Some(finished) => {
                set(KEY_PHASE, Phase::Complete.as_str());
                set(key::CUTOVER_COMPLETE, "true");
                set(key::CUTOVER_FINISHED_AT, finished);
                set(key::PROGRESS_PERCENT, "100");
                set(key::REGISTRIES_YAML_ACTIVE, "v2");
            }
            None => {
                set(KEY_PHASE, Phase::Failed.as_str());
                set(
                    key::LAST_ERROR,
                    &format!(
                        "the status ConfigMap was lost after a cutover started at {started} (the \
                         record is Lease {record_name}); nothing runs again until an operator \
                         retries it (POST /cutover/retry), which runs every step again"
                    ),
                );
                // Unknown whether the nodes were pivoted: empty keeps them as they are.
                set(key::REGISTRIES_YAML_ACTIVE, "");
            }
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::model::data_of;

    #[test]
    fn the_lease_annotations_say_what_the_record_says_and_keep_the_rest() {
        let record = CutoverRecord {
            started_at: Some("t1".into()),
            registries: Some("v2".into()),
            phase: Some("running".into()),
            ..CutoverRecord::default()
        };
        let mut annotations = BTreeMap::from([
            (ANNOTATION_FINISHED_AT.to_owned(), "t0".to_owned()),
            ("someone.else/note".to_owned(), "kept".to_owned()),
        ]);
        record.annotate(&mut annotations);
        assert_eq!(annotations["someone.else/note"], "kept");
        assert_eq!(
            CutoverRecord::from_annotations(Some(&annotations)),
            CutoverRecord {
                finished_at: Some("t0".into()),
                ..record.clone()
            },
            "what the record does not say stays as the Lease held it"
        );
        assert_eq!(
            CutoverRecord::from_annotations(None),
            CutoverRecord::default()
        );
    }

    #[test]
    fn the_record_notes_start_and_finish_and_never_forgets() {
        let running = data_of(&[("cutoverPhase", "running"), ("cutoverStartedAt", "T1")]);
        let started = CutoverRecord::of(&running);
        assert_eq!(started.started_at.as_deref(), Some("T1"));
        assert_eq!(started.finished_at, None);
        let idle = CutoverRecord::of(&initial_data());
        assert_eq!(idle, CutoverRecord::default());
        assert_eq!(
            started.merged(&idle),
            started,
            "a fresh status erases nothing"
        );
        let done = data_of(&[
            ("cutoverPhase", "complete"),
            ("cutoverStartedAt", "T2"),
            ("cutoverFinishedAt", "T3"),
        ]);
        let both = started.merged(&CutoverRecord::of(&done));
        assert_eq!(
            both.started_at.as_deref(),
            Some("T1"),
            "the first start stays"
        );
        assert_eq!(both.finished_at.as_deref(), Some("T3"));
    }

    #[test]
    fn a_start_is_noted_after_its_write_and_everything_else_before() {
        let idle = initial_data();
        let running = data_of(&[("cutoverPhase", "running"), ("cutoverStartedAt", "T1")]);
        let failed = data_of(&[("cutoverPhase", "failed"), ("cutoverStartedAt", "T1")]);
        let complete = data_of(&[
            ("cutoverPhase", "complete"),
            ("cutoverStartedAt", "T1"),
            ("cutoverFinishedAt", "T2"),
            ("registriesYamlActive", "v2"),
        ]);
        let rolled_back = data_of(&[
            ("cutoverPhase", "rolled-back"),
            ("cutoverStartedAt", "T1"),
            ("cutoverFinishedAt", "T2"),
            ("registriesYamlActive", "rollback"),
        ]);
        for (before, after) in [
            (&idle, &running),
            (&failed, &running),
            (&rolled_back, &running),
        ] {
            assert!(CutoverRecord::starts(before, after));
        }
        for (before, after) in [
            (&running, &running),
            (&running, &complete),
            (&complete, &rolled_back),
            (&idle, &idle),
        ] {
            assert!(!CutoverRecord::starts(before, after));
        }

        let nothing = CutoverRecord::default();
        let started = CutoverRecord::of(&running);
        assert!(nothing.lacks(&started, false), "a start is noted");
        let later_start = data_of(&[("cutoverPhase", "running"), ("cutoverStartedAt", "T9")]);
        assert!(
            !started.lacks(&CutoverRecord::of(&later_start), false),
            "once"
        );
        assert!(
            started.lacks(
                &CutoverRecord::of(&complete),
                CutoverRecord::changes(&running, &complete)
            ),
            "a completion is noted"
        );
        let done = CutoverRecord::of(&complete);
        assert!(!done.lacks(&done, CutoverRecord::changes(&complete, &complete)));
        assert!(
            done.lacks(
                &CutoverRecord::of(&rolled_back),
                CutoverRecord::changes(&complete, &rolled_back)
            ),
            "a rollback is noted"
        );
        assert!(
            done.lacks(
                &CutoverRecord::of(&complete),
                CutoverRecord::changes(&rolled_back, &complete)
            ),
            "turning the direction back is noted even when this replica last noted v2"
        );
    }

    /// `record` with the direction the service gave the agents.
    fn told(record: CutoverRecord, direction: &str, since: &str) -> CutoverRecord {
        CutoverRecord {
            registries: Some(direction.into()),
            registries_since: Some(since.into()),
            ..record
        }
    }

    #[test]
    fn only_a_run_the_service_started_after_the_latest_rollback_may_pivot() {
        let forged = CutoverRecord::of(&data_of(&[
            ("cutoverPhase", "running"),
            ("cutoverStartedAt", "2026-01-01T00:00:00Z"),
            ("cutoverLastAttemptStartedAt", "2026-01-01T00:00:00Z"),
        ]));
        assert_eq!(forged.run_started_at, None, "a status starts no run");
        assert!(forged.may_pivot("ns/r").unwrap_err().contains("no run"));
        let started = CutoverRecord {
            run_started_at: Some("2026-01-01T00:00:01.5Z".into()),
            ..CutoverRecord::default()
        };
        assert_eq!(started.may_pivot("ns/r"), Ok(()));
        let rolled_back = told(started.clone(), "rollback", "2026-01-01T00:00:02Z");
        let refused = rolled_back.may_pivot("ns/r").unwrap_err();
        assert!(
            refused.contains("rolled back at 2026-01-01T00:00:02Z"),
            "{refused}"
        );
        let again = CutoverRecord {
            run_started_at: Some("2026-01-01T00:00:02.000001Z".into()),
            ..rolled_back
        };
        assert_eq!(
            again.may_pivot("ns/r"),
            Ok(()),
            "a run started after the rollback"
        );
        assert_eq!(
            told(started, "v2", "2026-01-01T00:00:09Z").may_pivot("r"),
            Ok(())
        );
    }

    #[test]
    fn the_direction_is_never_taken_from_a_status() {
        let forged = data_of(&[
            ("cutoverPhase", "complete"),
            ("cutoverStartedAt", "T1"),
            ("registriesYamlActive", "rollback"),
        ]);
        let held = told(CutoverRecord::default(), "v2", "T1");
        assert_eq!(CutoverRecord::of(&forged).registries, None);
        let noted = held.merged(&CutoverRecord::of(&forged));
        assert_eq!(noted.directive().map(|d| d.direction), Some(Direction::V2));
        assert_eq!(
            held.filled(&CutoverRecord::of(&forged)).registries,
            held.registries
        );
    }

    #[test]
    fn filling_gaps_changes_nothing_the_record_holds() {
        let held = told(
            CutoverRecord::of(&data_of(&[
                ("cutoverPhase", "rolled-back"),
                ("cutoverStartedAt", "T1"),
            ])),
            "rollback",
            "T3",
        );
        let older = told(
            CutoverRecord::of(&data_of(&[
                ("cutoverPhase", "complete"),
                ("cutoverStartedAt", "T0"),
                ("cutoverFinishedAt", "T2"),
            ])),
            "v2",
            "T1",
        );
        let filled = held.filled(&older);
        assert_eq!(filled.started_at.as_deref(), Some("T1"));
        assert_eq!(filled.finished_at.as_deref(), Some("T2"), "a gap is filled");
        assert_eq!(filled.registries.as_deref(), Some("rollback"));
        assert_eq!(CutoverRecord::default().filled(&older), older);
    }

    #[test]
    fn a_lost_status_is_rebuilt_never_started_over() {
        assert_eq!(CutoverRecord::default().rebuilt_status("r"), initial_data());
        let finished = CutoverRecord {
            started_at: Some("T1".into()),
            finished_at: Some("T2".into()),
            registries: Some("v2".into()),
            ..CutoverRecord::default()
        }
        .rebuilt_status("ns/r");
        assert_eq!(Phase::of(&finished), Phase::Complete);
        assert_eq!(finished["registriesYamlActive"], "v2");
        assert_eq!(finished["cutoverFinishedAt"], "T2");
        let unfinished = CutoverRecord {
            started_at: Some("T1".into()),
            ..CutoverRecord::default()
        }
        .rebuilt_status("ns/r");
        assert_eq!(Phase::of(&unfinished), Phase::Failed);
        assert_eq!(unfinished["registriesYamlActive"], "", "no node is moved");
        assert!(unfinished["lastError"].contains("Lease ns/r"));
    }

    #[test]
    fn a_lost_status_after_a_rollback_never_pivots_the_nodes_again() {
        let complete = data_of(&[
            ("cutoverPhase", "complete"),
            ("cutoverStartedAt", "T1"),
            ("cutoverFinishedAt", "T2"),
            ("registriesYamlActive", "v2"),
        ]);
        let mut record = told(
            CutoverRecord::default().merged(&CutoverRecord::of(&complete)),
            "v2",
            "T1",
        );
        assert_eq!(record.registries.as_deref(), Some("v2"));
        let rolled_back = data_of(&[
            ("cutoverPhase", "rolled-back"),
            ("cutoverStartedAt", "T1"),
            ("cutoverFinishedAt", "T2"),
            ("registriesYamlActive", "rollback"),
        ]);
        record = told(
            record.merged(&CutoverRecord::of(&rolled_back)),
            "rollback",
            "T3",
        );
        assert_eq!(
            record.merged(&CutoverRecord::of(&initial_data())),
            record,
            "a fresh status (v1) changes no direction"
        );
        let rebuilt = record.rebuilt_status("ns/r");
        assert_eq!(Phase::of(&rebuilt), Phase::RolledBack);
        assert_eq!(rebuilt["registriesYamlActive"], "rollback");
    }

    /// The status of each moment of a cutover that is rolled back and run again.
    fn history() -> [StatusData; 5] {
        let complete = [
            ("cutoverPhase", "complete"),
            ("cutoverStartedAt", "T1"),
            ("cutoverLastAttemptStartedAt", "T1"),
            ("cutoverFinishedAt", "T2"),
            ("registriesYamlActive", "v2"),
        ];
        let rolled_back = [
            ("cutoverPhase", "rolled-back"),
            ("cutoverStartedAt", "T1"),
            ("cutoverLastAttemptStartedAt", "T1"),
            ("cutoverFinishedAt", "T2"),
            ("registriesYamlActive", "rollback"),
            ("rollbackRequestedAt", "T3"),
        ];
        // `run_again` empties the finish time and keeps the rollback's keys.
        let rerun = [
            ("cutoverPhase", "running"),
            ("cutoverStartedAt", "T1"),
            ("cutoverLastAttemptStartedAt", "T4"),
            ("cutoverFinishedAt", ""),
            ("registriesYamlActive", "rollback"),
            ("rollbackRequestedAt", "T3"),
        ];
        let mut pivoted = rerun;
        pivoted[4] = ("registriesYamlActive", "v2");
        let mut done = pivoted;
        done[0] = ("cutoverPhase", "complete");
        done[3] = ("cutoverFinishedAt", "T5");
        [
            data_of(&complete),
            data_of(&rolled_back),
            data_of(&rerun),
            data_of(&pivoted),
            data_of(&done),
        ]
    }

    fn recorded(statuses: &[StatusData]) -> CutoverRecord {
        statuses
            .iter()
            .fold(CutoverRecord::default(), |record, data| {
                record.merged(&CutoverRecord::of(data))
            })
    }

    #[test]
    fn a_status_lost_while_the_cutover_runs_again_after_a_rollback_comes_back_failed_saying_so() {
        let [complete, rolled_back, rerun, pivoted, done] = history();
        for upto in [
            vec![complete.clone(), rolled_back.clone(), rerun],
            vec![complete.clone(), rolled_back.clone(), pivoted],
        ] {
            let record = recorded(&upto);
            assert_eq!(record.finished_at.as_deref(), Some("T2"));
            let rebuilt = record.rebuilt_status("ns/r");
            assert_eq!(Phase::of(&rebuilt), Phase::Failed, "{rebuilt:#?}");
            assert_eq!(rebuilt["cutoverComplete"], "false");
            assert_eq!(
                rebuilt["registriesYamlActive"], "",
                "no node is told to move"
            );
            assert_eq!(rebuilt["cutoverStartedAt"], "T1");
            assert_eq!(rebuilt["cutoverLastAttemptStartedAt"], "T4");
            assert_eq!(rebuilt["rollbackRequestedAt"], "T3");
            let error = &rebuilt["lastError"];
            assert!(
                error.contains("ran again (from T4)")
                    && error.contains("rolled back (asked for at T3")
                    && error.contains("Lease ns/r")
                    && error.contains("POST /cutover/retry"),
                "{error}"
            );
        }
        let record = recorded(&[complete, rolled_back, done]);
        let rebuilt = record.rebuilt_status("ns/r");
        assert_eq!(Phase::of(&rebuilt), Phase::Complete);
        assert_eq!(
            rebuilt["cutoverFinishedAt"], "T5",
            "the run that completed last"
        );
        assert_eq!(rebuilt["registriesYamlActive"], "v2");
    }

    #[test]
    fn a_record_without_the_phase_rebuilds_as_before() {
        let old = CutoverRecord {
            started_at: Some("T1".into()),
            finished_at: Some("T2".into()),
            registries: Some("v2".into()),
            rolled_back_at: Some("T3".into()),
            ..CutoverRecord::default()
        };
        assert_eq!(Phase::of(&old.rebuilt_status("r")), Phase::Complete);
    }
}
