//! The frames of a registry-pivot rollback (`cutover-rollback-started`,
//! `cutover-rolled-back`, `cutover-rollback-failed`), from the status it reached. Pure.

use super::frames::{Frame, FramePhase, Level};
use crate::status::model::{Phase, StatusData};
use crate::status::rollback_transition::{LEAVES_ALONE, RollbackRecord};

/// The frame telling that the status reached rollback `phase`; `None` for other phases or a
/// status that records no rollback request.
pub fn frame(phase: Phase, data: &StatusData, now: &str) -> Option<Frame> {
    let record = RollbackRecord::read(data)?;
    let or_now = |t: &str| if t.is_empty() { now } else { t }.to_owned();
    let frame = match phase {
        Phase::RollingBack => Frame::cutover(
            &record.requested_at,
            FramePhase::CutoverRollbackStarted,
            Level::Warn,
            format!(
                "registry pivot rollback requested by {:?}: {}; only the registry pivot is undone, {LEAVES_ALONE}",
                record.requested_by, record.reason
            ),
        ),
        Phase::RolledBack => Frame::cutover(
            &or_now(&record.finished_at),
            FramePhase::CutoverRolledBack,
            Level::Warn,
            format!(
                "registry pivot rolled back on {} node(s) ({}), as requested by {:?}",
                record.acknowledged_nodes.len(),
                record.acknowledged_nodes.join(", "),
                record.requested_by
            ),
        ),
        Phase::RollbackFailed => Frame::cutover(
            &or_now(&record.finished_at),
            FramePhase::CutoverRollbackFailed,
            Level::Error,
            format!(
                "registry pivot rollback failed: {}; POST /cutover/rollback again once the node(s) are fixed",
                record.error
            ),
        ),
        Phase::Idle | Phase::Running | Phase::Failed | Phase::Complete => return None,
    };
    Some(frame)
}

#[cfg(test)]
mod tests {
    use crate::events::derive;
    use crate::status::Transition;
    use crate::status::fixtures::{applied, completed, start, started, succeeded};
    use crate::status::model::StatusData;
    use crate::status::rollback_transition::RollbackTransition;

    const NOW: &str = "2026-11-28T12:00:00Z";
    const AT: &str = "2026-11-28T11:00:00Z";

    fn phases(prev: &StatusData, next: &StatusData) -> Vec<&'static str> {
        derive(prev, next, &["a".into(), "b".into()], NOW)
            .iter()
            .map(|f| f.phase.as_str())
            .collect()
    }

    fn apply(data: &StatusData, t: RollbackTransition) -> StatusData {
        let mut next = data.clone();
        t.apply(&mut next).expect("the rollback transition applies");
        next
    }

    #[test]
    fn a_rollback_tells_its_start_and_end_and_a_new_start_is_a_start() {
        let complete = applied(
            &StatusData::new(),
            &[
                start(false),
                started("a", 0, 1),
                succeeded("a", 0, 1),
                started("b", 1, 1),
                Transition::RegistriesV2,
                succeeded("b", 1, 1),
                completed(),
            ],
        );
        let rolling = apply(
            &complete,
            RollbackTransition::Requested {
                by: "alice".into(),
                reason: "harbor down".into(),
                at: AT.into(),
                deadline: NOW.into(),
                daemonsets: vec!["registry-pivot".into()],
            },
        );
        let frames = derive(&complete, &rolling, &[], NOW);
        assert_eq!(frames.len(), 2, "the frame, then the snapshot");
        assert_eq!(frames[1].phase.as_str(), "cutover-status");
        assert_eq!(frames[0].phase.as_str(), "cutover-rollback-started");
        assert_eq!(frames[0].time, AT);
        assert!(frames[0].message.contains("Gitea and Flux changes stay"));

        let failed = apply(
            &rolling,
            RollbackTransition::Failed {
                request: AT.into(),
                pending: vec!["n3".into()],
                reason: "nodes n3 did not acknowledge".into(),
                at: NOW.into(),
            },
        );
        assert_eq!(
            phases(&rolling, &failed),
            ["cutover-rollback-failed", "cutover-status"]
        );
        let again = apply(
            &failed,
            RollbackTransition::Requested {
                by: "bob".into(),
                reason: "n3 fixed".into(),
                at: NOW.into(),
                deadline: NOW.into(),
                daemonsets: vec!["registry-pivot".into()],
            },
        );
        assert_eq!(
            phases(&failed, &again),
            ["cutover-rollback-started", "cutover-status"]
        );
        let done = apply(
            &again,
            RollbackTransition::Finished {
                request: NOW.into(),
                nodes: vec!["n1".into(), "n3".into()],
                at: NOW.into(),
            },
        );
        let frames = derive(&again, &done, &[], NOW);
        assert_eq!(frames[0].phase.as_str(), "cutover-rolled-back");
        assert!(frames[0].message.contains("n1, n3"));
        let snapshot = frames.last().expect("a snapshot ends the change");
        let shown: StatusData = serde_json::from_str(&snapshot.message).expect("the status map");
        assert_eq!(
            shown, done,
            "the snapshot's message is the status ConfigMap's data"
        );
        assert_eq!(
            snapshot.status.as_ref().map(|s| s.state),
            Some("tethered"),
            "rolled back is tethered"
        );
        assert!(phases(&done, &done).is_empty(), "no change, no frame");

        let restarted = applied(&done, &[start(false)]);
        let frames = derive(&done, &restarted, &[], NOW);
        assert_eq!(frames[0].phase.as_str(), "cutover-started");
        assert!(frames[0].message.contains("started again"));
    }
}
