//! The status body the HTTP API and the event stream serve (contract: "Status body
//! fields"), built from the status data and the steps in execution order. Pure.

use super::model::{Phase, StatusData, StepRow, get, get_u32};
use super::rollback_transition::RollbackRecord;
use crate::contract::key;
use serde::Serialize;

/// The contract's status body.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusBody {
    /// `sovereign` exactly when the cutover is complete and not rolled back, else
    /// `tethered`: the admin console's parser knows only these two. A rollback (under way,
    /// done or failed) shows in `phase` and `rollback`.
    pub state: &'static str,
    /// `idle`, `running`, `failed`, `complete`, `rolling-back`, `rolled-back` or
    /// `rollback-failed`.
    pub phase: &'static str,
    /// Whether every step succeeded.
    pub cutover_complete: bool,
    /// First start of the cutover.
    pub cutover_started_at: String,
    /// Completion.
    pub cutover_finished_at: String,
    /// Start of the latest attempt.
    pub cutover_last_attempt_started_at: String,
    /// The step running now, `""` when none.
    pub current_step: String,
    /// 0-based index of the current (or last) step.
    pub current_step_index: u32,
    /// Steps in the plan.
    pub total_steps: u32,
    /// 100·done/total.
    pub progress_percent: u32,
    /// The failed step.
    pub failed_step: String,
    /// Why it failed.
    pub last_error: String,
    /// Every step, in execution order.
    pub steps: Vec<StepBody>,
    /// The commit the local Gitea mirrored, as gitea-mirror reported it; absent until then.
    #[serde(rename = "mirroredCommitSHA", skip_serializing_if = "Option::is_none")]
    pub mirrored_commit_sha: Option<String>,
    /// The proxy-cache projects in Harbor, as harbor-projects reported them; absent until
    /// then (or when the report is not a count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub harbor_project_count: Option<u32>,
    /// The latest rollback of the registry pivot, absent when there never was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackRecord>,
    /// How many references to upstream hosts the cluster still holds (the service's tether
    /// report); absent where no report is kept (the `status` command, the snapshots derived
    /// from status changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tethers: Option<TetherCount>,
    /// The whole status map.
    pub raw: StatusData,
}

/// The tether report's figures, as the status body carries them. Plain numbers: the status
/// layer knows nothing of the report itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TetherCount {
    /// Every tether.
    pub count: usize,
    /// The tethers of kinds that gate the cutover's completion.
    pub gating: usize,
    /// Whether every source has listed once: before that, the counts mean "not known yet".
    pub synced: bool,
    /// The sources the report cannot see (no rights, a failing list): their tethers are
    /// not counted. Kinds the cluster does not serve are not among them.
    pub unseen_sources: usize,
}

impl StatusBody {
    /// The body with the tether report's figures.
    pub fn with_tethers(self, tethers: TetherCount) -> StatusBody {
        StatusBody {
            tethers: Some(tethers),
            ..self
        }
    }
}

/// One step of the status body.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepBody {
    /// stepName.
    pub name: String,
    /// `running`, `success`, `failed`, `skipped` or `""`.
    pub result: &'static str,
    /// Start of the latest attempt.
    pub started_at: String,
    /// End of the latest attempt.
    pub finished_at: String,
    /// The Job, or the DaemonSet for daemonset-wait.
    pub job_name: String,
    /// The latest attempt (0 when never run).
    pub attempt: u32,
}

impl StatusBody {
    /// Builds the body. `steps` are the plan's step names in execution order; when the plan
    /// is not available (invalid step ConfigMaps), the rows found in `data` are listed in
    /// the order they started, so the body still tells what happened.
    pub fn build(data: &StatusData, steps: Option<&[&str]>) -> StatusBody {
        let names: Vec<String> = match steps {
            Some(steps) => steps.iter().map(|s| (*s).to_owned()).collect(),
            None => rows_in_start_order(data),
        };
        let phase = Phase::of(data);
        let total = match steps {
            Some(steps) => u32::try_from(steps.len()).unwrap_or(u32::MAX),
            None => get_u32(data, key::TOTAL_STEPS),
        };
        StatusBody {
            state: if phase == Phase::Complete {
                "sovereign"
            } else {
                "tethered"
            },
            phase: phase.as_str(),
            cutover_complete: phase == Phase::Complete,
            cutover_started_at: get(data, key::CUTOVER_STARTED_AT).to_owned(),
            cutover_finished_at: get(data, key::CUTOVER_FINISHED_AT).to_owned(),
            cutover_last_attempt_started_at: get(data, key::CUTOVER_LAST_ATTEMPT_STARTED_AT)
                .to_owned(),
            current_step: get(data, key::CURRENT_STEP).to_owned(),
            current_step_index: get_u32(data, key::CURRENT_STEP_INDEX),
            total_steps: total,
            progress_percent: get_u32(data, key::PROGRESS_PERCENT).min(100),
            failed_step: get(data, key::FAILED_STEP).to_owned(),
            last_error: get(data, key::LAST_ERROR).to_owned(),
            steps: names
                .into_iter()
                .map(|name| {
                    let row = StepRow::read(data, &name);
                    StepBody {
                        result: row.result.as_str(),
                        started_at: row.started_at,
                        finished_at: row.finished_at,
                        job_name: row.job_name,
                        attempt: row.attempt,
                        name,
                    }
                })
                .collect(),
            mirrored_commit_sha: Some(get(data, key::MIRRORED_COMMIT_SHA))
                .filter(|sha| !sha.is_empty())
                .map(str::to_owned),
            harbor_project_count: get(data, key::HARBOR_PROJECT_COUNT).parse().ok(),
            rollback: RollbackRecord::read(data),
            tethers: None,
            raw: data.clone(),
        }
    }
}

fn rows_in_start_order(data: &StatusData) -> Vec<String> {
    let mut rows: Vec<(String, String)> = super::model::rows(data)
        .map(|(name, row)| (row.started_at, name.to_owned()))
        .collect();
    rows.sort();
    rows.into_iter().map(|(_, name)| name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::model::data_of as data;

    #[test]
    fn steps_follow_execution_order_not_the_alphabet() {
        let d = data(&[
            ("step.zeta.result", "success"),
            ("step.alpha.result", "running"),
        ]);
        let body = StatusBody::build(&d, Some(&["zeta", "alpha", "mid"]));
        let names: Vec<&str> = body.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha", "mid"]);
        assert_eq!(body.total_steps, 3);
        assert_eq!(body.steps[2].result, "");
    }

    #[test]
    fn without_a_plan_rows_are_listed_by_start_time() {
        let d = data(&[
            ("step.zeta.result", "success"),
            ("step.zeta.startedAt", "2026-01-01T00:00:00Z"),
            ("step.alpha.result", "running"),
            ("step.alpha.startedAt", "2026-01-01T00:05:00Z"),
            ("totalSteps", "8"),
        ]);
        let body = StatusBody::build(&d, None);
        let names: Vec<&str> = body.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha"]);
        assert_eq!(body.total_steps, 8);
    }

    #[test]
    fn complete_is_sovereign_with_numbers_as_numbers() {
        let d = data(&[
            ("cutoverComplete", "true"),
            ("progressPercent", "100"),
            ("currentStepIndex", "7"),
        ]);
        let json = serde_json::to_value(StatusBody::build(&d, Some(&[]))).unwrap();
        assert_eq!(json["state"], "sovereign");
        assert_eq!(json["cutoverComplete"], true);
        assert_eq!(json["progressPercent"], 100);
        assert_eq!(json["currentStepIndex"], 7);
        assert_eq!(json["raw"]["cutoverComplete"], "true");
    }

    #[test]
    fn the_consoles_figures_are_at_the_top_level_once_reported() {
        let none = serde_json::to_value(StatusBody::build(&data(&[]), Some(&[]))).unwrap();
        assert!(none.get("mirroredCommitSHA").is_none());
        assert!(none.get("harborProjectCount").is_none());
        let d = data(&[
            ("mirroredCommitSHA", "0123abc"),
            ("harborProjectCount", "4"),
        ]);
        let json = serde_json::to_value(StatusBody::build(&d, Some(&[]))).unwrap();
        assert_eq!(json["mirroredCommitSHA"], "0123abc");
        assert_eq!(json["harborProjectCount"], 4);
        assert_eq!(json["raw"]["harborProjectCount"], "4");
        let bad = data(&[("harborProjectCount", "many")]);
        let json = serde_json::to_value(StatusBody::build(&bad, Some(&[]))).unwrap();
        assert!(json.get("harborProjectCount").is_none());
    }

    #[test]
    fn a_rollback_is_tethered_with_its_phase_and_record() {
        let d = data(&[
            ("cutoverPhase", "rollback-failed"),
            ("rollbackRequestedAt", "2026-11-28T09:00:00Z"),
            ("rollbackRequestedBy", "alice"),
            ("rollbackPendingNodes", "n3"),
        ]);
        let json = serde_json::to_value(StatusBody::build(&d, Some(&[]))).unwrap();
        assert_eq!(
            json["state"], "tethered",
            "the console knows only two states"
        );
        assert_eq!(json["phase"], "rollback-failed");
        assert_eq!(json["rollback"]["pendingNodes"], serde_json::json!(["n3"]));
        assert_eq!(json["cutoverComplete"], false);
        for phase in ["rolling-back", "rolled-back"] {
            let d = data(&[("cutoverComplete", "true"), ("cutoverPhase", phase)]);
            let json = serde_json::to_value(StatusBody::build(&d, Some(&[]))).unwrap();
            assert_eq!(
                (&json["state"], &json["phase"]),
                (&"tethered".into(), &phase.into())
            );
        }
        let none = serde_json::to_value(StatusBody::build(&data(&[]), Some(&[]))).unwrap();
        assert!(none.get("rollback").is_none());
    }

    #[test]
    fn the_tether_count_is_an_added_field_that_changes_nothing_else() {
        let d = data(&[("cutoverComplete", "true")]);
        let plain = serde_json::to_value(StatusBody::build(&d, Some(&[]))).unwrap();
        assert!(plain.get("tethers").is_none());
        let counted = StatusBody::build(&d, Some(&[])).with_tethers(TetherCount {
            count: 3,
            gating: 2,
            synced: true,
            unseen_sources: 1,
        });
        let mut json = serde_json::to_value(counted).unwrap();
        assert_eq!(
            json["tethers"],
            serde_json::json!({"count": 3, "gating": 2, "synced": true, "unseenSources": 1})
        );
        assert_eq!(
            json["state"], "sovereign",
            "state stays the contract's two words"
        );
        json.as_object_mut().unwrap().remove("tethers");
        assert_eq!(json, plain);
    }
}
