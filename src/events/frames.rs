//! The event-stream frame (contract: `event: <phase>` + `data: {time, phase, level,
//! message, step?, jobName?}`): its kinds, its levels and its data.

use crate::status::model::Phase;
use crate::status::{StatusBody, TetherCount};
use serde::Serialize;

/// The kind of a frame: its `event:` line and its `phase` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FramePhase {
    /// A first attempt of the cutover began.
    CutoverStarted,
    /// A failed cutover was retried.
    CutoverRetried,
    /// A step's attempt began.
    CutoverStepStarted,
    /// A step's attempt succeeded (or was skipped).
    CutoverStepFinished,
    /// A step's attempt failed.
    CutoverStepFailed,
    /// Someone aborted the cutover.
    CutoverAborted,
    /// The cutover cannot go on, with no step to blame.
    CutoverFailed,
    /// Every step succeeded.
    CutoverCompleted,
    /// An operator asked to roll the registry pivot back.
    CutoverRollbackStarted,
    /// Every current node rolled the registry pivot back.
    CutoverRolledBack,
    /// The rollback's deadline passed before every current node acknowledged it.
    CutoverRollbackFailed,
    /// The status snapshot: sent on connect and after every change that ends or changes a
    /// run.
    CutoverStatus,
    /// The last frame to a client too slow to keep up; the stream closes after it.
    CutoverStreamLagged,
    /// The number of tethers (references to upstream hosts) changed, or the report
    /// synced: not derived from the status, and not for the admin console.
    CutoverTethers,
}

impl FramePhase {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FramePhase::CutoverStarted => "cutover-started",
            FramePhase::CutoverRetried => "cutover-retried",
            FramePhase::CutoverStepStarted => "cutover-step-started",
            FramePhase::CutoverStepFinished => "cutover-step-finished",
            FramePhase::CutoverStepFailed => "cutover-step-failed",
            FramePhase::CutoverAborted => "cutover-aborted",
            FramePhase::CutoverFailed => "cutover-failed",
            FramePhase::CutoverCompleted => "cutover-completed",
            FramePhase::CutoverRollbackStarted => "cutover-rollback-started",
            FramePhase::CutoverRolledBack => "cutover-rolled-back",
            FramePhase::CutoverRollbackFailed => "cutover-rollback-failed",
            FramePhase::CutoverStatus => "cutover-status",
            FramePhase::CutoverStreamLagged => "cutover-stream-lagged",
            FramePhase::CutoverTethers => "cutover-tethers",
        }
    }

    /// The `result` label of the rollback counter a frame of this kind counts under, if any.
    pub fn rollback_result(self) -> Option<&'static str> {
        match self {
            FramePhase::CutoverRollbackStarted => Some("requested"),
            FramePhase::CutoverRolledBack => Some("rolled-back"),
            FramePhase::CutoverRollbackFailed => Some("failed"),
            _ => None,
        }
    }
}

/// How serious a frame is: `info`, `warn` or `error`, the levels the admin console knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Progress.
    Info,
    /// Needs attention (an abort, a lagging client).
    Warn,
    /// A failure.
    Error,
}

/// One frame's data.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Frame {
    /// RFC 3339 time of the transition.
    pub time: String,
    /// The kind.
    pub phase: FramePhase,
    /// How serious.
    pub level: Level,
    /// What happened, for a person; on a `cutover-status` frame, the status ConfigMap's
    /// data as a JSON object of strings (the admin console parses it).
    pub message: String,
    /// The step concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The step's Job (or DaemonSet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// The status body, steps in execution order: on `cutover-status` frames only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Box<StatusBody>>,
    /// The tether report's figures: on `cutover-tethers` frames only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tethers: Option<TetherCount>,
}

impl Frame {
    /// A frame about the cutover as a whole.
    pub fn cutover(time: &str, phase: FramePhase, level: Level, message: String) -> Frame {
        Frame {
            time: time.to_owned(),
            phase,
            level,
            message,
            step: None,
            job_name: None,
            status: None,
            tethers: None,
        }
    }

    /// The `cutover-tethers` frame of `now`'s figures; `before`, the count of the previous
    /// frame, when there was one. A warning while any tether gates completion.
    pub fn tethers(time: &str, now: TetherCount, before: Option<usize>) -> Frame {
        let level = if now.gating > 0 {
            Level::Warn
        } else {
            Level::Info
        };
        let mut message = match now.count {
            0 => "no tethers to upstream hosts".to_owned(),
            1 => "1 tether to an upstream host".to_owned(),
            n => format!("{n} tethers to upstream hosts"),
        };
        if now.count > 0 {
            message.push_str(&format!(" ({} gating completion)", now.gating));
        }
        if let Some(before) = before.filter(|b| *b != now.count) {
            message.push_str(&format!(", was {before}"));
        }
        if !now.synced {
            message.push_str("; not every source has listed yet");
        }
        if now.unseen_sources > 0 {
            message.push_str(&format!("; {} sources cannot be seen", now.unseen_sources));
        }
        Frame {
            tethers: Some(now),
            ..Frame::cutover(time, FramePhase::CutoverTethers, level, message)
        }
    }

    /// The `cutover-status` snapshot of `status`: its `message` is the status ConfigMap's
    /// data (`status.raw`) as JSON, its level that of the phase.
    pub fn snapshot(time: &str, status: StatusBody) -> Frame {
        let level = match Phase::of(&status.raw) {
            Phase::Failed | Phase::RollbackFailed => Level::Error,
            _ => Level::Info,
        };
        // A map of strings always serializes; the fallback only keeps the frame valid JSON.
        let message = serde_json::to_string(&status.raw).unwrap_or_else(|_| "{}".to_owned());
        Frame {
            status: Some(Box::new(status)),
            ..Frame::cutover(time, FramePhase::CutoverStatus, level, message)
        }
    }
}
