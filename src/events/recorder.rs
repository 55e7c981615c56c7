//! Kubernetes Events (events.k8s.io/v1) on the status ConfigMap, one per frame, so that
//! `kubectl describe cm self-sovereign-cutover-status` tells the story. Every replica
//! derives the frames; only the leader records them, so each transition is told once.

use super::frames::{Frame, FramePhase, Level};
use super::hub::EventHub;
use crate::status::StatusCache;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

/// The reporting controller's name on every Event.
pub const CONTROLLER: &str = "catalyst-cutover";
/// Kubernetes caps an Event's note at 1 kB.
const NOTE_LIMIT: usize = 1024;

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
        FramePhase::CutoverStatus => ("CutoverStatus", "Report"),
        FramePhase::CutoverStreamLagged => ("StreamLagged", "Report"),
    }
}

/// The Event telling `frame`; `job` references the step's Job so that two steps' Events
/// are never merged into one series.
pub fn event_of(frame: &Frame, job: Option<ObjectReference>) -> Event {
    let (reason, action) = reason_and_action(frame.phase);
    let mut note = frame.message.clone();
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
            Level::Warning | Level::Error => EventType::Warning,
        },
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: job,
    }
}

/// Records every frame of `hub` as an Event on the status ConfigMap while `leading`, until
/// the future is dropped. A failed write is logged, never retried: Events are a courtesy,
/// the status ConfigMap is the record.
pub async fn record(
    hub: EventHub,
    client: kube::Client,
    cache: StatusCache,
    namespace: String,
    name: String,
    identity: String,
    leading: watch::Receiver<bool>,
) {
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: CONTROLLER.to_owned(),
            instance: Some(identity),
        },
    );
    let mut frames = hub.receiver();
    loop {
        let numbered = match frames.recv().await {
            Ok(numbered) => numbered,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "the Event recorder fell behind; Events were skipped"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if !*leading.borrow() {
            continue;
        }
        let regarding = ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("ConfigMap".to_owned()),
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            uid: cache.configmap().and_then(|cm| cm.metadata.uid.clone()),
            ..ObjectReference::default()
        };
        let job = numbered.frame.job_name.as_ref().map(|job| ObjectReference {
            api_version: Some("batch/v1".to_owned()),
            kind: Some("Job".to_owned()),
            name: Some(job.clone()),
            namespace: Some(namespace.clone()),
            ..ObjectReference::default()
        });
        let event = event_of(&numbered.frame, job);
        if let Err(err) = recorder.publish(&event, &regarding).await {
            tracing::warn!(error = %err, reason = %event.reason, "cannot record a Kubernetes Event");
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
}
