//! Kubernetes Events (events.k8s.io/v1) on the status ConfigMap, one per frame, so that
//! `kubectl describe cm self-sovereign-cutover-status` tells the story. A replica tells the
//! transitions it wrote itself (a start on any replica, the steps on the leader): each is
//! written by exactly one replica, so each is told exactly once, leader or not.

use super::derive::derive;
use super::frames::{Frame, FramePhase, Level};
use crate::sanitize::{self, Lines};
use crate::status::store::Write;
use crate::status::{StatusStore, now_rfc3339};
use crate::step::StepSource;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use std::sync::Arc;
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio::time::{Duration, Instant};

/// The reporting controller's name on every Event.
pub const CONTROLLER: &str = "catalyst-cutover";
/// Kubernetes caps an Event's note at 1 kB.
const NOTE_LIMIT: usize = 1024;
/// How long the status writes must pause before their Events are sent. A runner moving
/// from one step to the next writes every few milliseconds; Events sent meanwhile would
/// compete with its next status write and Job create at the API server, delaying the step.
const QUIET: Duration = Duration::from_millis(100);
/// The longest an Event waits for that pause.
const MAX_DEFER: Duration = Duration::from_secs(1);

/// The `reason` (PascalCase, as `kubectl describe` shows it) and `action` of a frame.
pub fn reason_and_action(phase: FramePhase) -> (&'static str, &'static str) {
    match phase {
        FramePhase::CutoverStarted => ("CutoverStarted", "Start"),
        FramePhase::CutoverRetried => ("CutoverRetried", "Retry"),
        FramePhase::CutoverStepStarted => ("StepStarted", "RunStep"),
        FramePhase::CutoverStepFinished => ("StepSucceeded", "RunStep"),
        FramePhase::CutoverStepFailed => ("StepFailed", "RunStep"),
        FramePhase::CutoverAborted => ("CutoverAborted", "Abort"),
        FramePhase::CutoverFailed => ("CutoverFailed", "Halt"),
        FramePhase::CutoverCompleted => ("CutoverCompleted", "Complete"),
        FramePhase::CutoverRollbackStarted => ("RegistryRollbackStarted", "Rollback"),
        FramePhase::CutoverRolledBack => ("RegistryRolledBack", "Rollback"),
        FramePhase::CutoverRollbackFailed => ("RegistryRollbackFailed", "Rollback"),
        FramePhase::CutoverStatus => ("CutoverStatus", "Report"),
        FramePhase::CutoverStreamLagged => ("StreamLagged", "Report"),
        FramePhase::CutoverTethers => ("TethersChanged", "Report"),
    }
}

/// The Event telling `frame`; `job` references the step's Job so that two steps' Events
/// are never merged into one series. Its note carries no control or bidirectional-formatting
/// character (the frame may quote the status, which anyone who may edit ConfigMaps can
/// write), since `kubectl describe` prints it to a terminal.
pub fn event_of(frame: &Frame, job: Option<ObjectReference>) -> Event {
    let (reason, action) = reason_and_action(frame.phase);
    let mut note = sanitize::recorded(&frame.message, Lines::Keep).into_owned();
    if note.len() > NOTE_LIMIT {
        let mut cut = NOTE_LIMIT - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    Event {
        type_: match frame.level {
            Level::Info => EventType::Normal,
            Level::Warn | Level::Error => EventType::Warning,
        },
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: job,
    }
}

/// Records, as Events on the status ConfigMap, the frames of every write `store` makes,
/// until the future is dropped; they are sent once the writes pause (see [`QUIET`]). A
/// failed write is logged, never retried: Events are a courtesy, the status ConfigMap is
/// the record.
pub async fn record(store: StatusStore, steps: StepSource, client: kube::Client, identity: String) {
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: CONTROLLER.to_owned(),
            instance: Some(identity),
        },
    );
    let namespace = store.namespace().to_owned();
    let name = store.name().to_owned();
    let mut writes = store.writes();
    loop {
        let Some(first) = next_write(&mut writes).await else {
            return;
        };
        let flush_by = Instant::now() + MAX_DEFER;
        let mut batch = vec![first];
        let mut closed = false;
        loop {
            let wait = QUIET.min(flush_by.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(wait, next_write(&mut writes)).await {
                Ok(Some(write)) => batch.push(write),
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        for write in batch {
            let order = steps.names().unwrap_or_default();
            let regarding = ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("ConfigMap".to_owned()),
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                uid: store
                    .cache()
                    .configmap()
                    .and_then(|cm| cm.metadata.uid.clone()),
                ..ObjectReference::default()
            };
            // The snapshots are for the event stream's clients: the Events already tell each
            // transition, and a snapshot's note would be the status map cut at 1 kB.
            let frames = derive(&write.before, &write.after, &order, &now_rfc3339())
                .into_iter()
                .filter(|frame| frame.phase != FramePhase::CutoverStatus);
            for frame in frames {
                let job = frame.job_name.as_ref().map(|job| ObjectReference {
                    api_version: Some("batch/v1".to_owned()),
                    kind: Some("Job".to_owned()),
                    name: Some(job.clone()),
                    namespace: Some(namespace.clone()),
                    ..ObjectReference::default()
                });
                let event = event_of(&frame, job);
                if let Err(err) = recorder.publish(&event, &regarding).await {
                    tracing::warn!(error = %err, reason = %event.reason, "cannot record a Kubernetes Event");
                }
            }
        }
        if closed {
            return;
        }
    }
}

/// The next write, past any the recorder fell behind on; `None` once the store is gone.
async fn next_write(writes: &mut Receiver<Arc<Write>>) -> Option<Arc<Write>> {
    loop {
        match writes.recv().await {
            Ok(write) => return Some(write),
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "the Event recorder fell behind; Events were skipped"
                );
            }
            Err(RecvError::Closed) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_typed_by_level_and_notes_bounded() {
        let mut frame = Frame::cutover(
            "2026-11-23T10:00:00Z",
            FramePhase::CutoverStepFailed,
            Level::Error,
            "é".repeat(2000),
        );
        frame.step = Some("a".into());
        let event = event_of(&frame, None);
        assert_eq!(event.type_, EventType::Warning);
        assert_eq!(event.reason, "StepFailed");
        assert!(event.note.unwrap().len() <= NOTE_LIMIT);
        let ok = Frame::cutover(
            "t",
            FramePhase::CutoverCompleted,
            Level::Info,
            "done".into(),
        );
        assert_eq!(event_of(&ok, None).type_, EventType::Normal);
    }

    #[test]
    fn event_notes_carry_no_control_or_bidi_character() {
        let frame = Frame::cutover(
            "t",
            FramePhase::CutoverStepFailed,
            Level::Error,
            "boom\u{1b}[2K\rcutover complete \u{202e}\u{200b}\nnext".into(),
        );
        assert_eq!(
            event_of(&frame, None).note.unwrap(),
            "boom\u{fffd}[2K\u{fffd}cutover complete \u{fffd}\u{fffd}\nnext"
        );
    }
}
