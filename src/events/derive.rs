//! The event-stream frames ([`Frame`]) derived from two successive states of the status
//! ConfigMap. Pure: a watch may coalesce several writes into one change, so the derivation
//! compares whole rows and emits every frame the difference implies, in execution order. A
//! change that ends or changes a run (its phase or its attempt) ends with a `cutover-status`
//! snapshot, the one frame the admin console reads the run's outcome from.

use super::frames::{Frame, FramePhase, Level};
use crate::contract::key;
use crate::status::StatusBody;
use crate::status::model::{Phase, StatusData, StepResult, StepRow, get};
use crate::status::transition::ABORTED_BY_PREFIX;

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
                frames.extend(super::rollback_frames::frame(phase, next, now));
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
}
