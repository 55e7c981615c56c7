//! The rollback of the registry pivot: its status keys and its pure transitions.
//! Only the registry pivot is undone: `registriesYamlActive=rollback` tells every node's
//! agent to restore the registry files it saved before the pivot. The Gitea and Flux
//! changes stay, because reverting them would need the upstream, which may be what broke.
//!
//! Every key is a project-owned extension of the contract's status table: all strings,
//! written with the same optimistic concurrency as [`super::Transition`]s.

use super::model::{KEY_PHASE, Phase, StatusData, get, set};
use crate::contract::{key, registries};

/// Who asked for the latest rollback (the Kubernetes username).
pub const KEY_REQUESTED_BY: &str = "rollbackRequestedBy";
/// When the latest rollback was asked for (RFC 3339).
pub const KEY_REQUESTED_AT: &str = "rollbackRequestedAt";
/// Why, in the operator's words.
pub const KEY_REASON: &str = "rollbackReason";
/// The phase the cutover was in when the rollback was first asked for.
pub const KEY_FROM_PHASE: &str = "rollbackFromPhase";
/// When the wait for the nodes' acknowledgements gives up (RFC 3339).
pub const KEY_DEADLINE: &str = "rollbackDeadline";
/// The registry-pivot DaemonSet(s) whose nodes must acknowledge, comma-separated.
pub const KEY_DAEMONSETS: &str = "rollbackDaemonSets";
/// When the rollback ended, rolled back or failed (RFC 3339); `""` while it runs.
pub const KEY_FINISHED_AT: &str = "rollbackFinishedAt";
/// The nodes that acknowledged `rolled-back` when it ended, comma-separated.
pub const KEY_ACKNOWLEDGED_NODES: &str = "rollbackAcknowledgedNodes";
/// The current nodes that had not acknowledged when it failed, comma-separated.
pub const KEY_PENDING_NODES: &str = "rollbackPendingNodes";
/// Why the rollback failed, for a person; `""` otherwise.
pub const KEY_ERROR: &str = "rollbackError";

/// How long the runner waits for the nodes' acknowledgements unless the request says.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
/// The longest wait a request may ask for.
pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The `confirm` value a rollback request must carry.
pub const CONFIRMATION: &str = "rollback-registry-pivot";
/// What a rollback undoes, as the response and the frames say it.
pub const UNDOES: &str = "the registry pivot: registriesYamlActive=rollback makes every node's \
registry-pivot agent restore the registries.yaml and hosts.toml files it saved before the pivot";
/// What a rollback leaves alone, as the response and the frames say it.
pub const LEAVES_ALONE: &str = "the Gitea and Flux changes stay (the local Gitea mirror and \
the Flux sources pointing at it): reverting them would need the upstream, which may be what \
is broken";

/// One change of the status ConfigMap made by a rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackTransition {
    /// An operator asked to undo the registry pivot.
    Requested {
        /// Who (the Kubernetes username).
        by: String,
        /// Why.
        reason: String,
        /// RFC 3339 time of the request.
        at: String,
        /// RFC 3339 time at which the wait for acknowledgements gives up.
        deadline: String,
        /// The DaemonSet(s) whose nodes must acknowledge.
        daemonsets: Vec<String>,
    },
    /// Every current node acknowledged `rolled-back`.
    Finished {
        /// The `rollbackRequestedAt` of the rollback this ends.
        request: String,
        /// The nodes that acknowledged.
        nodes: Vec<String>,
        /// RFC 3339 time.
        at: String,
    },
    /// The deadline passed with nodes that had not acknowledged.
    Failed {
        /// The `rollbackRequestedAt` of the rollback this ends.
        request: String,
        /// The nodes that had not acknowledged.
        pending: Vec<String>,
        /// Why, for a person.
        reason: String,
        /// RFC 3339 time.
        at: String,
    },
}

/// What a rollback request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackOutcome {
    /// A rollback began.
    Started,
    /// A failed rollback began again, for the nodes that have not acknowledged yet.
    Restarted,
    /// A rollback was already under way: nothing changed.
    InProgress,
    /// The pivot was already rolled back: nothing changed.
    AlreadyRolledBack,
    /// The transition ended the rollback (or had already).
    Ended,
}

impl RollbackOutcome {
    /// The `outcome` field of the response.
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackOutcome::Started => "rollback-started",
            RollbackOutcome::Restarted => "rollback-restarted",
            RollbackOutcome::InProgress => "rollback-in-progress",
            RollbackOutcome::AlreadyRolledBack => "already-rolled-back",
            RollbackOutcome::Ended => "rollback-ended",
        }
    }
}

/// Why a rollback transition does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackRefused {
    /// A cutover runs: its steps would race the rollback.
    #[error("a cutover is in progress (step {current_step:?}); abort it first")]
    CutoverRunning {
        /// The step running now, `""` between steps.
        current_step: String,
    },
    /// The registry pivot was never signalled: there is nothing to undo.
    #[error(
        "the cutover is {phase} and registriesYamlActive is {active:?}: the registry pivot was never signalled, there is nothing to roll back"
    )]
    NothingToRollBack {
        /// The phase found.
        phase: Phase,
        /// `registriesYamlActive` found.
        active: String,
    },
    /// The end of a rollback that is no longer the one running.
    #[error("the rollback requested at {request:?} is not running (the cutover is {phase})")]
    NotRollingBack {
        /// The rollback the transition is about.
        request: String,
        /// The phase found.
        phase: Phase,
    },
}

impl RollbackTransition {
    /// Applies the transition to `data` in place, or says why it does not apply (leaving
    /// `data` untouched). Applying it twice changes nothing the second time.
    pub fn apply(&self, data: &mut StatusData) -> Result<RollbackOutcome, RollbackRefused> {
        let phase = Phase::of(data);
        match self {
            RollbackTransition::Requested {
                by,
                reason,
                at,
                deadline,
                daemonsets,
            } => {
                let outcome = match phase {
                    Phase::Running => {
                        return Err(RollbackRefused::CutoverRunning {
                            current_step: get(data, key::CURRENT_STEP).to_owned(),
                        });
                    }
                    Phase::RollingBack => return Ok(RollbackOutcome::InProgress),
                    Phase::RolledBack => return Ok(RollbackOutcome::AlreadyRolledBack),
                    // The nodes that acknowledged the failed attempt did roll back: their
                    // acknowledgements stand, and only the others are waited for again.
                    Phase::RollbackFailed => RollbackOutcome::Restarted,
                    Phase::Idle | Phase::Complete | Phase::Failed => {
                        let active = get(data, key::REGISTRIES_YAML_ACTIVE);
                        if phase == Phase::Idle || active != registries::V2 {
                            return Err(RollbackRefused::NothingToRollBack {
                                phase,
                                active: active.to_owned(),
                            });
                        }
                        // Acknowledgements of the pivot, and of any earlier rollback, say
                        // nothing about this one: only fresh `rolled-back` ones count.
                        forget_node_acks(data);
                        set(data, KEY_FROM_PHASE, phase.as_str());
                        RollbackOutcome::Started
                    }
                };
                set(data, KEY_PHASE, Phase::RollingBack.as_str());
                set(data, key::REGISTRIES_YAML_ACTIVE, registries::ROLLBACK);
                set(data, key::CUTOVER_COMPLETE, "false");
                set(data, KEY_REQUESTED_BY, by);
                set(data, KEY_REQUESTED_AT, at);
                set(data, KEY_REASON, reason);
                set(data, KEY_DEADLINE, deadline);
                set(data, KEY_DAEMONSETS, &daemonsets.join(","));
                set(data, KEY_FINISHED_AT, "");
                set(data, KEY_ACKNOWLEDGED_NODES, "");
                set(data, KEY_PENDING_NODES, "");
                set(data, KEY_ERROR, "");
                Ok(outcome)
            }
            RollbackTransition::Finished { request, nodes, at } => {
                if !ends(data, phase, request, Phase::RolledBack)? {
                    return Ok(RollbackOutcome::Ended);
                }
                set(data, KEY_PHASE, Phase::RolledBack.as_str());
                set(data, KEY_FINISHED_AT, at);
                set(data, KEY_ACKNOWLEDGED_NODES, &nodes.join(","));
                set(data, KEY_PENDING_NODES, "");
                set(data, KEY_ERROR, "");
                Ok(RollbackOutcome::Ended)
            }
            RollbackTransition::Failed {
                request,
                pending,
                reason,
                at,
            } => {
                if !ends(data, phase, request, Phase::RollbackFailed)? {
                    return Ok(RollbackOutcome::Ended);
                }
                set(data, KEY_PHASE, Phase::RollbackFailed.as_str());
                set(data, KEY_FINISHED_AT, at);
                set(data, KEY_ACKNOWLEDGED_NODES, &acknowledged(data).join(","));
                set(data, KEY_PENDING_NODES, &pending.join(","));
                set(data, KEY_ERROR, reason);
                Ok(RollbackOutcome::Ended)
            }
        }
    }
}

/// Whether the rollback requested at `request` may end in `target`: `Ok(false)` when it
/// already has (a replayed write), `Ok(true)` when it is running.
fn ends(
    data: &StatusData,
    phase: Phase,
    request: &str,
    target: Phase,
) -> Result<bool, RollbackRefused> {
    let same = get(data, KEY_REQUESTED_AT) == request;
    match phase {
        Phase::RollingBack if same => Ok(true),
        found if found == target && same => Ok(false),
        found => Err(RollbackRefused::NotRollingBack {
            request: request.to_owned(),
            phase: found,
        }),
    }
}

/// Removes every node's acknowledgement: the direction of the pivot changed, so what the
/// nodes acknowledged before says nothing about the new direction.
pub fn forget_node_acks(data: &mut StatusData) {
    data.retain(|k, _| !registries::is_node_ack(k));
}

/// The nodes whose acknowledgement is `rolled-back`, sorted.
fn acknowledged(data: &StatusData) -> Vec<String> {
    data.iter()
        .filter(|(_, v)| v.as_str() == registries::ROLLED_BACK)
        .filter_map(|(k, _)| registries::node_of_ack(k).map(str::to_owned))
        .collect()
}

/// The latest rollback as the status records it, for the status body and the runner.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRecord {
    /// Who asked for it.
    pub requested_by: String,
    /// When.
    pub requested_at: String,
    /// Why.
    pub reason: String,
    /// The phase the cutover was in before.
    pub from_phase: String,
    /// When the wait gives up.
    pub deadline: String,
    /// The DaemonSet(s) whose nodes must acknowledge.
    pub daemon_sets: Vec<String>,
    /// When it ended, `""` while it runs.
    pub finished_at: String,
    /// The nodes that acknowledged, once it ended.
    pub acknowledged_nodes: Vec<String>,
    /// The nodes that had not acknowledged, when it failed.
    pub pending_nodes: Vec<String>,
    /// Why it failed.
    pub error: String,
    /// What a rollback undoes.
    pub undoes: &'static str,
    /// What a rollback leaves alone.
    pub leaves_alone: &'static str,
}

impl RollbackRecord {
    /// The latest rollback of `data`, `None` when none was ever asked for.
    pub fn read(data: &StatusData) -> Option<RollbackRecord> {
        let requested_at = get(data, KEY_REQUESTED_AT);
        if requested_at.is_empty() {
            return None;
        }
        let text = |k: &str| get(data, k).to_owned();
        Some(RollbackRecord {
            requested_by: text(KEY_REQUESTED_BY),
            requested_at: requested_at.to_owned(),
            reason: text(KEY_REASON),
            from_phase: text(KEY_FROM_PHASE),
            deadline: text(KEY_DEADLINE),
            daemon_sets: list(get(data, KEY_DAEMONSETS)),
            finished_at: text(KEY_FINISHED_AT),
            acknowledged_nodes: list(get(data, KEY_ACKNOWLEDGED_NODES)),
            pending_nodes: list(get(data, KEY_PENDING_NODES)),
            error: text(KEY_ERROR),
            undoes: UNDOES,
            leaves_alone: LEAVES_ALONE,
        })
    }
}

/// The items of a comma-separated list, trimmed, empty ones dropped.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::model::data_of as data;

    const T0: &str = "2026-11-28T09:00:00Z";
    const T1: &str = "2026-11-28T09:05:00Z";
    const T2: &str = "2026-11-28T09:10:00Z";

    fn request(by: &str, at: &str) -> RollbackTransition {
        RollbackTransition::Requested {
            by: by.into(),
            reason: "harbor is down".into(),
            at: at.into(),
            deadline: T2.into(),
            daemonsets: vec!["registry-pivot".into()],
        }
    }

    fn complete() -> StatusData {
        data(&[
            ("cutoverPhase", "complete"),
            ("cutoverComplete", "true"),
            ("registriesYamlActive", "v2"),
            ("node.a.registriesYaml", "v2"),
            ("node.b.registriesYaml", "v2"),
            ("node.gone.registriesYaml", "rolled-back"),
        ])
    }

    #[test]
    fn a_request_signals_rollback_records_who_and_forgets_every_ack() {
        let mut d = complete();
        assert_eq!(
            request("alice", T0).apply(&mut d),
            Ok(RollbackOutcome::Started)
        );
        assert_eq!(get(&d, "cutoverPhase"), "rolling-back");
        assert_eq!(get(&d, "registriesYamlActive"), "rollback");
        assert_eq!(get(&d, "cutoverComplete"), "false");
        assert_eq!(get(&d, "rollbackRequestedBy"), "alice");
        assert_eq!(get(&d, "rollbackRequestedAt"), T0);
        assert_eq!(get(&d, "rollbackReason"), "harbor is down");
        assert_eq!(get(&d, "rollbackFromPhase"), "complete");
        assert_eq!(get(&d, "rollbackDeadline"), T2);
        assert_eq!(get(&d, "rollbackDaemonSets"), "registry-pivot");
        assert!(
            !d.keys().any(|k| registries::is_node_ack(k)),
            "stale v2 and rolled-back acks must not count: {d:?}"
        );
    }

    #[test]
    fn a_second_request_changes_nothing() {
        let mut d = complete();
        request("alice", T0).apply(&mut d).unwrap();
        d.insert("node.a.registriesYaml".into(), "rolled-back".into());
        let before = d.clone();
        assert_eq!(
            request("bob", T1).apply(&mut d),
            Ok(RollbackOutcome::InProgress)
        );
        assert_eq!(before, d);
        let finished = RollbackTransition::Finished {
            request: T0.into(),
            nodes: vec!["a".into()],
            at: T1.into(),
        };
        finished.apply(&mut d).unwrap();
        let before = d.clone();
        assert_eq!(
            request("bob", T2).apply(&mut d),
            Ok(RollbackOutcome::AlreadyRolledBack)
        );
        assert_eq!(finished.apply(&mut d), Ok(RollbackOutcome::Ended));
        assert_eq!(before, d, "replays change nothing");
        assert_eq!(get(&d, "cutoverPhase"), "rolled-back");
        assert_eq!(get(&d, "rollbackAcknowledgedNodes"), "a");
        assert_eq!(get(&d, "rollbackFinishedAt"), T1);
        assert_eq!(get(&d, "rollbackRequestedBy"), "alice");
    }

    #[test]
    fn refused_while_running_and_when_the_pivot_never_happened() {
        let mut running = data(&[
            ("cutoverPhase", "running"),
            ("currentStep", "harbor-prewarm"),
            ("registriesYamlActive", "v1"),
        ]);
        assert_eq!(
            request("alice", T0).apply(&mut running),
            Err(RollbackRefused::CutoverRunning {
                current_step: "harbor-prewarm".into()
            })
        );
        for phase in ["idle", "failed", "complete"] {
            let mut d = data(&[("cutoverPhase", phase), ("registriesYamlActive", "v1")]);
            let before = d.clone();
            assert!(matches!(
                request("alice", T0).apply(&mut d),
                Err(RollbackRefused::NothingToRollBack { .. })
            ));
            assert_eq!(before, d);
        }
        let mut failed_after_pivot = data(&[
            ("cutoverPhase", "failed"),
            ("failedStep", "egress-block-test"),
            ("registriesYamlActive", "v2"),
        ]);
        assert_eq!(
            request("alice", T0).apply(&mut failed_after_pivot),
            Ok(RollbackOutcome::Started)
        );
        assert_eq!(get(&failed_after_pivot, "rollbackFromPhase"), "failed");
    }

    #[test]
    fn a_failed_rollback_names_its_nodes_and_may_be_asked_for_again() {
        let mut d = complete();
        request("alice", T0).apply(&mut d).unwrap();
        d.insert("node.a.registriesYaml".into(), "rolled-back".into());
        RollbackTransition::Failed {
            request: T0.into(),
            pending: vec!["b".into()],
            reason: "node b did not acknowledge within 60s".into(),
            at: T1.into(),
        }
        .apply(&mut d)
        .unwrap();
        assert_eq!(Phase::of(&d), Phase::RollbackFailed);
        assert_eq!(get(&d, "rollbackPendingNodes"), "b");
        assert_eq!(get(&d, "rollbackAcknowledgedNodes"), "a");
        assert!(get(&d, "rollbackError").contains("node b"));
        assert_eq!(
            request("bob", T2).apply(&mut d),
            Ok(RollbackOutcome::Restarted)
        );
        assert_eq!(get(&d, "rollbackPendingNodes"), "");
        assert_eq!(get(&d, "rollbackRequestedBy"), "bob");
        assert_eq!(get(&d, "rollbackFromPhase"), "complete");
        assert_eq!(
            get(&d, "node.a.registriesYaml"),
            "rolled-back",
            "acks of this rollback stand"
        );
    }

    #[test]
    fn the_end_of_another_rollback_is_refused() {
        let mut d = complete();
        request("alice", T0).apply(&mut d).unwrap();
        let stale = RollbackTransition::Finished {
            request: T1.into(),
            nodes: vec![],
            at: T2.into(),
        };
        let before = d.clone();
        assert!(matches!(
            stale.apply(&mut d),
            Err(RollbackRefused::NotRollingBack { .. })
        ));
        assert_eq!(before, d);
    }

    #[test]
    fn the_record_reads_lists_and_is_absent_before_any_rollback() {
        assert_eq!(RollbackRecord::read(&complete()), None);
        let mut d = complete();
        request("alice", T0).apply(&mut d).unwrap();
        d.insert(KEY_PENDING_NODES.into(), "b, c,".into());
        let record = RollbackRecord::read(&d).unwrap();
        assert_eq!(record.pending_nodes, ["b", "c"]);
        assert_eq!(record.daemon_sets, ["registry-pivot"]);
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["requestedBy"], "alice");
        assert!(json["leavesAlone"].as_str().unwrap().contains("Gitea"));
    }
}
