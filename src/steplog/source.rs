//! Where a step's log is read from, decided from its status row alone; and which of a Job's
//! pods holds the step's latest log.

use crate::status::model::{StepResult, StepRow};
use k8s_openapi::api::core::v1::Pod;

/// Where `GET /cutover/steps/{step}/logs` reads a step's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSource {
    /// The step has not run in this cutover: no log exists yet.
    NotStarted,
    /// The step runs: its Job's pod, followed if asked.
    Running {
        /// The Job whose pod logs.
        job: String,
    },
    /// The step ended: its Job's pod while it exists, else the tail kept for its run.
    Finished {
        /// The Job whose pod logged.
        job: String,
    },
}

/// Where the log of a Job-running step with status `row` is. Pure.
pub fn source(row: &StepRow) -> LogSource {
    if row.attempt == 0 || row.job_name.is_empty() {
        return LogSource::NotStarted;
    }
    let job = row.job_name.clone();
    match row.result {
        StepResult::Running => LogSource::Running { job },
        StepResult::Pending => LogSource::NotStarted,
        StepResult::Success | StepResult::Failed | StepResult::Skipped => {
            LogSource::Finished { job }
        }
    }
}

/// The pod holding a Job's latest log: the one created last (a Job that retried has one
/// pod per try), ties broken by name so the choice is stable. Pure.
pub fn newest_pod(pods: &[Pod]) -> Option<&Pod> {
    pods.iter().max_by(|a, b| {
        let key = |p: &Pod| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn row(result: StepResult, job: &str, attempt: u32) -> StepRow {
        StepRow {
            result,
            started_at: if attempt > 0 {
                "2026-01-01T00:00:00Z".into()
            } else {
                String::new()
            },
            finished_at: String::new(),
            job_name: job.into(),
            attempt,
        }
    }

    #[test]
    fn a_step_never_run_has_no_log() {
        assert_eq!(
            source(&row(StepResult::Pending, "", 0)),
            LogSource::NotStarted
        );
        // A row reset by a retry keeps no Job to read.
        assert_eq!(
            source(&row(StepResult::Pending, "cutover-x-a1", 1)),
            LogSource::NotStarted
        );
        assert_eq!(
            source(&row(StepResult::Running, "", 1)),
            LogSource::NotStarted
        );
    }

    #[test]
    fn a_running_step_is_read_from_its_job_and_a_finished_one_also_from_its_kept_tail() {
        let job = "cutover-x-a2".to_owned();
        assert_eq!(
            source(&row(StepResult::Running, &job, 2)),
            LogSource::Running { job: job.clone() }
        );
        for result in [StepResult::Success, StepResult::Failed, StepResult::Skipped] {
            assert_eq!(
                source(&row(result, &job, 2)),
                LogSource::Finished { job: job.clone() }
            );
        }
    }

    fn pod(name: &str, created: Option<&str>) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod.metadata.creation_timestamp = created.map(|c| Time(c.parse().unwrap()));
        pod
    }

    #[test]
    fn the_newest_pod_of_a_job_holds_its_latest_log() {
        assert!(newest_pod(&[]).is_none());
        let pods = [
            pod("b", Some("2026-01-01T00:00:01Z")),
            pod("c", Some("2026-01-01T00:00:03Z")),
            pod("a", Some("2026-01-01T00:00:02Z")),
        ];
        assert_eq!(
            newest_pod(&pods).unwrap().metadata.name.as_deref(),
            Some("c")
        );
        let same = [pod("a", None), pod("b", None)];
        assert_eq!(
            newest_pod(&same).unwrap().metadata.name.as_deref(),
            Some("b")
        );
    }
}
