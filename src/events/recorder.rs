//! Kubernetes Events (events.k8s.io/v1) on the status ConfigMap, one per frame, so that
//! `kubectl describe cm self-sovereign-cutover-status` tells the story. Every replica
//! derives the frames; only the leader records them, so each transition is told once.

use super::frames::{Frame, FramePhase, Level};
use super::hub::{EventHub, Numbered};
use crate::status::StatusCache;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
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

/// Whether to record a frame now or hold it: the Lease is held only while a run needs a
/// runner, so the frame that starts a run arrives before anyone leads, and the one that
/// ends it may arrive just after the leader let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// This replica leads, or led a moment ago (the frame is about its own tenure).
    Record,
    /// Nobody here leads: keep the frame; it is recorded if this replica leads soon.
    Hold,
}

/// The gate for a frame, given whether this replica leads and how long ago it stopped.
pub fn gate(leading: bool, since_led: Option<Duration>, grace: Duration) -> Gate {
    if leading || since_led.is_some_and(|d| d <= grace) {
        Gate::Record
    } else {
        Gate::Hold
    }
}

/// Where the Events go and how long frames wait for leadership.
pub struct RecorderConfig {
    /// Namespace of the status ConfigMap.
    pub namespace: String,
    /// Name of the status ConfigMap.
    pub name: String,
    /// This replica's identity (the Events' reporting instance).
    pub identity: String,
    /// How long after losing the Lease frames are still recorded, and how long held frames
    /// wait for this replica to lead.
    pub grace: Duration,
}

/// Records every frame of `hub` as an Event on the status ConfigMap when this replica
/// leads (see [`gate`]), until the future is dropped. A failed write is logged, never
/// retried: Events are a courtesy, the status ConfigMap is the record.
pub async fn record(
    hub: EventHub,
    client: kube::Client,
    cache: StatusCache,
    config: RecorderConfig,
    mut leading: watch::Receiver<bool>,
) {
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: CONTROLLER.to_owned(),
            instance: Some(config.identity.clone()),
        },
    );
    let mut frames = hub.receiver();
    let mut held: VecDeque<(Instant, Arc<Numbered>)> = VecDeque::new();
    let mut stopped_leading: Option<Instant> = None;
    // What this task last took from `leading`: a frame and the Lease's release can both be
    // ready at once, and the frame is still about the tenure the task saw.
    let mut led = false;
    loop {
        let ready: Vec<Arc<Numbered>> = tokio::select! {
            received = frames.recv() => match received {
                Ok(numbered) => {
                    let is_leading = led || *leading.borrow();
                    let since = stopped_leading.map(|at| at.elapsed());
                    match gate(is_leading, since, config.grace) {
                        Gate::Record => vec![numbered],
                        Gate::Hold => {
                            held.retain(|(at, _)| at.elapsed() <= config.grace);
                            if held.len() == HELD_LIMIT {
                                held.pop_front();
                            }
                            held.push_back((Instant::now(), numbered));
                            Vec::new()
                        }
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "the Event recorder fell behind; Events were skipped");
                    Vec::new()
                }
                Err(RecvError::Closed) => return,
            },
            changed = leading.changed() => {
                if changed.is_err() {
                    return;
                }
                let now_leading = *leading.borrow_and_update();
                let was_leading = std::mem::replace(&mut led, now_leading);
                if now_leading {
                    stopped_leading = None;
                    held.drain(..)
                        .filter(|(at, _)| at.elapsed() <= config.grace)
                        .map(|(_, n)| n)
                        .collect()
                } else {
                    if was_leading {
                        stopped_leading = Some(Instant::now());
                    }
                    Vec::new()
                }
            }
        };
        for numbered in ready {
            publish(&recorder, &cache, &config, &numbered).await;
        }
    }
}

/// Most frames held while waiting for leadership.
const HELD_LIMIT: usize = 256;

async fn publish(
    recorder: &Recorder,
    cache: &StatusCache,
    config: &RecorderConfig,
    numbered: &Numbered,
) {
    let regarding = ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("ConfigMap".to_owned()),
        name: Some(config.name.clone()),
        namespace: Some(config.namespace.clone()),
        uid: cache.configmap().and_then(|cm| cm.metadata.uid.clone()),
        ..ObjectReference::default()
    };
    let job = numbered.frame.job_name.as_ref().map(|job| ObjectReference {
        api_version: Some("batch/v1".to_owned()),
        kind: Some("Job".to_owned()),
        name: Some(job.clone()),
        namespace: Some(config.namespace.clone()),
        ..ObjectReference::default()
    });
    let event = event_of(&numbered.frame, job);
    if let Err(err) = recorder.publish(&event, &regarding).await {
        tracing::warn!(error = %err, reason = %event.reason, "cannot record a Kubernetes Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_recorded_by_the_leader_or_held_for_it() {
        let grace = Duration::from_secs(15);
        assert_eq!(gate(true, None, grace), Gate::Record);
        assert_eq!(gate(false, None, grace), Gate::Hold, "nobody led yet: wait");
        assert_eq!(
            gate(false, Some(Duration::from_secs(1)), grace),
            Gate::Record,
            "the leader let go a moment ago: the frame is about its run"
        );
        assert_eq!(
            gate(false, Some(Duration::from_secs(60)), grace),
            Gate::Hold
        );
    }

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
