//! The event-stream frames (contract: `event: <phase>` + `data: {time, phase, level,
//! message, step?, jobName?}`), derived from two successive states of the status ConfigMap.
//! Pure: a watch may coalesce several writes into one change, so the derivation compares
//! whole rows and emits every frame the difference implies, in execution order. A change
//! that ends or changes a run (its phase or its attempt) ends with a `cutover-status`
//! snapshot, the one frame the admin console reads the run's outcome from.

use crate::contract::key;
use crate::status::model::{Phase, StatusData, StepResult, StepRow, get};
use crate::status::transition::ABORTED_BY_PREFIX;
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

/// The frames that lead from `prev` to `next`: cutover start first, then each step in
/// `order` (steps only found in the data follow), then the cutover's end. `now` dates
/// frames whose transition recorded no time.
pub fn derive(prev: &StatusData, next: &StatusData, order: &[String], now: &str) -> Vec<Frame> {
    let mut frames = Vec::new();
    let (before, after) = (Phase::of(prev), Phase::of(next));
    let new_attempt = get(prev, key::CUTOVER_LAST_ATTEMPT_STARTED_AT)
        != get(next, key::CUTOVER_LAST_ATTEMPT_STARTED_AT)
        && !get(next, key::CUTOVER_LAST_ATTEMPT_STARTED_AT).is_empty();
    if new_attempt || (before != Phase::Running && after == Phase::Running) {
        let at = or_now(get(next, key::CUTOVER_LAST_ATTEMPT_STARTED_AT), now);
        let total = get(next, key::TOTAL_STEPS);
        let by = get(next, crate::status::model::KEY_TRIGGERED_BY);
        let trigger = get(next, crate::status::model::KEY_TRIGGER);
        let first = get(prev, key::CUTOVER_STARTED_AT).is_empty() && before == Phase::Idle;
        let (phase, verb) = if first {
            (FramePhase::CutoverStarted, "started")
        } else if before.is_rollback() {
            (
                FramePhase::CutoverStarted,
                "started again after the registry pivot was rolled back",
            )
        } else {
            (FramePhase::CutoverRetried, "retried")
        };
        frames.push(Frame::cutover(
            at,
            phase,
            Level::Info,
            format!("cutover {verb} by {by:?} ({trigger}), {total} steps"),
        ));
    }
    for step in step_names(next, order) {
        frames.extend(step_frames(&step, prev, next, now));
    }
    if after != before || new_attempt {
        let failed_step = get(next, key::FAILED_STEP);
        let last_error = get(next, key::LAST_ERROR);
        match after {
            Phase::Complete => frames.push(Frame::cutover(
                or_now(get(next, key::CUTOVER_FINISHED_AT), now),
                FramePhase::CutoverCompleted,
                Level::Info,
                format!(
                    "cutover complete: {} steps succeeded",
                    get(next, key::TOTAL_STEPS)
                ),
            )),
            Phase::Failed if last_error.starts_with(ABORTED_BY_PREFIX) => {
                let mut frame = Frame::cutover(
                    or_now(&StepRow::read(next, failed_step).finished_at, now),
                    FramePhase::CutoverAborted,
                    Level::Warn,
                    format!("cutover {last_error} at step {failed_step:?}"),
                );
                frame.step = Some(failed_step.to_owned()).filter(|s| !s.is_empty());
                frames.push(frame);
            }
            Phase::Failed if failed_step.is_empty() => frames.push(Frame::cutover(
                now,
                FramePhase::CutoverFailed,
                Level::Error,
                format!("cutover failed: {last_error}"),
            )),
            phase if phase.is_rollback() => {
                frames.extend(super::rollback::frame(phase, next, now));
            }
            _ => {}
        }
        let order: Vec<&str> = order.iter().map(String::as_str).collect();
        let plan = (!order.is_empty()).then_some(order.as_slice());
        frames.push(Frame::snapshot(now, StatusBody::build(next, plan)));
    }
    frames
}

/// The frames of one step's row changing from `prev` to `next`.
fn step_frames(step: &str, prev: &StatusData, next: &StatusData, now: &str) -> Vec<Frame> {
    let (p, n) = (StepRow::read(prev, step), StepRow::read(next, step));
    if p == n || n.result == StepResult::Pending {
        return Vec::new();
    }
    let frame = |time: &str, phase, level, message: String| Frame {
        time: or_now(time, now).to_owned(),
        phase,
        level,
        message,
        step: Some(step.to_owned()),
        job_name: Some(n.job_name.clone()).filter(|j| !j.is_empty()),
        status: None,
        tethers: None,
    };
    let mut frames = Vec::new();
    let began = n.attempt > p.attempt || n.started_at != p.started_at;
    if began {
        frames.push(frame(
            &n.started_at,
            FramePhase::CutoverStepStarted,
            Level::Info,
            format!(
                "step {step:?} started (attempt {}, {})",
                n.attempt.max(1),
                n.job_name
            ),
        ));
    }
    if !began && n.result == p.result {
        return frames;
    }
    match n.result {
        StepResult::Success | StepResult::Skipped => frames.push(frame(
            &n.finished_at,
            FramePhase::CutoverStepFinished,
            Level::Info,
            format!("step {step:?} {}", n.result.as_str()),
        )),
        StepResult::Failed => frames.push(frame(
            &n.finished_at,
            FramePhase::CutoverStepFailed,
            Level::Error,
            format!("step {step:?} failed: {}", get(next, key::LAST_ERROR)),
        )),
        StepResult::Running | StepResult::Pending => {}
    }
    frames
}

/// `order`, then any step with a row in `data` that `order` lacks (sorted by name).
fn step_names(data: &StatusData, order: &[String]) -> Vec<String> {
    let mut names: Vec<String> = order.to_vec();
    let mut extra: Vec<String> = crate::status::model::row_names(data)
        .filter(|s| !order.iter().any(|o| o == s))
        .map(str::to_owned)
        .collect();
    extra.sort();
    extra.dedup();
    names.extend(extra);
    names
}

fn or_now<'a>(time: &'a str, now: &'a str) -> &'a str {
    if time.is_empty() { now } else { time }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Transition;
    use crate::status::fixtures::{T0, T1, applied as apply, completed, start, started, succeeded};

    const NOW: &str = "2026-11-23T12:00:00Z";
    /// The frames of a two-step run seen transition by transition, in order.
    const TWO_STEP_RUN: [&str; 8] = [
        "cutover-started",
        "cutover-status",
        "cutover-step-started",
        "cutover-step-finished",
        "cutover-step-started",
        "cutover-step-finished",
        "cutover-completed",
        "cutover-status",
    ];

    fn order() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    fn phases(frames: &[Frame]) -> Vec<&'static str> {
        frames.iter().map(|f| f.phase.as_str()).collect()
    }

    #[test]
    fn one_frame_per_transition_in_order() {
        let mut data = StatusData::new();
        let mut all = Vec::new();
        for ts in [
            vec![start(false)],
            vec![started("a", 0, 1)],
            vec![succeeded("a", 0, 1)],
            vec![started("b", 1, 1)],
            vec![succeeded("b", 1, 1)],
            vec![completed()],
        ] {
            let next = apply(&data, &ts);
            all.extend(derive(&data, &next, &order(), NOW));
            data = next;
        }
        assert_eq!(phases(&all), TWO_STEP_RUN);
        assert_eq!(all[2].job_name.as_deref(), Some("cutover-a-a1"));
        assert_eq!(all[2].time, T0);
        assert_eq!(all[3].time, T1);
        let last = all.last().expect("frames");
        let shown: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&last.message).expect("the message is the status map");
        assert_eq!(
            shown.get("cutoverComplete").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            shown,
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        );
        let status = last.status.as_ref().expect("the snapshot carries the body");
        assert_eq!((status.state, status.steps.len()), ("sovereign", 2));
        assert!(derive(&data, &data, &order(), NOW).is_empty());
    }

    #[test]
    fn a_coalesced_change_yields_every_frame() {
        let prev = StatusData::new();
        let next = apply(
            &prev,
            &[
                start(false),
                started("a", 0, 1),
                succeeded("a", 0, 1),
                started("b", 1, 1),
                succeeded("b", 1, 1),
                completed(),
            ],
        );
        // One change: one snapshot, at its end.
        let coalesced: Vec<&str> = TWO_STEP_RUN
            .into_iter()
            .enumerate()
            .filter(|&(n, _)| n != 1)
            .map(|(_, phase)| phase)
            .collect();
        assert_eq!(phases(&derive(&prev, &next, &order(), NOW)), coalesced);
    }

    #[test]
    fn failure_retry_and_abort() {
        let running = apply(&StatusData::new(), &[start(false), started("a", 0, 1)]);
        let failed = apply(
            &running,
            &[Transition::StepFailed {
                step: "a".into(),
                attempt: 1,
                reason: "BackoffLimitExceeded: exit 1".into(),
                at: T1.into(),
            }],
        );
        let frames = derive(&running, &failed, &order(), NOW);
        assert_eq!(phases(&frames), ["cutover-step-failed", "cutover-status"]);
        assert_eq!(frames[0].level, Level::Error);
        assert_eq!(
            frames[1].level,
            Level::Error,
            "the snapshot of a failed run"
        );
        assert!(frames[1].message.contains(r#""failedStep":"a""#));
        assert!(frames[0].message.contains("BackoffLimitExceeded"));

        let retried = apply(&failed, &[start(true), started("a", 0, 2)]);
        let mut retried_later = retried.clone();
        retried_later.insert(key::CUTOVER_LAST_ATTEMPT_STARTED_AT.into(), T1.into());
        let frames = derive(&failed, &retried_later, &order(), NOW);
        assert_eq!(
            phases(&frames),
            ["cutover-retried", "cutover-step-started", "cutover-status"]
        );

        let aborted = apply(
            &retried,
            &[Transition::Abort {
                step: "a".into(),
                by: "bob".into(),
                at: T1.into(),
            }],
        );
        let frames = derive(&retried, &aborted, &order(), NOW);
        assert_eq!(
            phases(&frames),
            ["cutover-step-failed", "cutover-aborted", "cutover-status"]
        );
        assert!(frames[1].message.contains("aborted by bob"));
        assert_eq!(frames[1].level, Level::Warn);
        let json = serde_json::to_value(&frames[1]).unwrap();
        assert_eq!(
            json["level"], "warn",
            "the console's levels: info, warn, error"
        );
    }

    #[test]
    fn halt_without_a_step_and_unknown_steps() {
        let running = apply(&StatusData::new(), &[start(false)]);
        let halted = apply(
            &running,
            &[Transition::Halt {
                step: None,
                reason: "no steps".into(),
                at: T1.into(),
            }],
        );
        let frames = derive(&running, &halted, &order(), NOW);
        assert_eq!(phases(&frames), ["cutover-failed", "cutover-status"]);
        assert_eq!(frames[0].time, NOW);
        let with_z = apply(&running, &[started("z", 0, 1)]);
        let frames = derive(&running, &with_z, &order(), NOW);
        assert_eq!(
            frames[0].step.as_deref(),
            Some("z"),
            "steps outside the plan still show"
        );
    }

    #[test]
    fn frame_data_is_the_contract_shape() {
        let running = apply(&StatusData::new(), &[start(false)]);
        let next = apply(&running, &[started("a", 0, 1)]);
        let frame = &derive(&running, &next, &order(), NOW)[0];
        let json = serde_json::to_value(frame).unwrap();
        assert_eq!(json["phase"], "cutover-step-started");
        assert_eq!(json["level"], "info");
        assert_eq!(json["jobName"], "cutover-a-a1");
        assert_eq!(json["step"], "a");
        assert!(json["time"].is_string() && json["message"].is_string());
        let start_frame = &derive(&StatusData::new(), &running, &order(), NOW)[0];
        let json = serde_json::to_value(start_frame).unwrap();
        assert!(json.get("step").is_none() && json.get("jobName").is_none());
    }

    #[test]
    fn a_tether_frame_says_the_count_and_what_changed_in_the_contract_shape() {
        let count = |count, gating| TetherCount {
            count,
            gating,
            synced: true,
            unseen_sources: 0,
        };
        let frame = Frame::tethers(NOW, count(3, 2), Some(1));
        assert_eq!(frame.level, Level::Warn);
        assert_eq!(
            frame.message,
            "3 tethers to upstream hosts (2 gating completion), was 1"
        );
        let json = serde_json::to_value(&frame).unwrap();
        assert_eq!(json["phase"], "cutover-tethers");
        assert_eq!(json["tethers"]["count"], 3);
        assert!(json.get("status").is_none() && json.get("step").is_none());
        let cleared = Frame::tethers(NOW, count(0, 0), Some(3));
        assert_eq!(cleared.level, Level::Info);
        assert_eq!(cleared.message, "no tethers to upstream hosts, was 3");
        let ungated = Frame::tethers(NOW, count(1, 0), None);
        assert_eq!(ungated.level, Level::Info);
        let blind = Frame::tethers(
            NOW,
            TetherCount {
                synced: false,
                unseen_sources: 2,
                ..count(0, 0)
            },
            None,
        );
        assert_eq!(
            blind.message,
            "no tethers to upstream hosts; not every source has listed yet; 2 sources cannot be seen"
        );
        let step = &derive(
            &StatusData::new(),
            &apply(&StatusData::new(), &[start(false)]),
            &order(),
            NOW,
        )[0];
        assert!(serde_json::to_value(step).unwrap().get("tethers").is_none());
    }
}
