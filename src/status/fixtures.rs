//! Transitions of a two-step cutover, for the tests of everything that follows the status
//! (transitions, event frames, the login route).

use super::model::StatusData;
use super::transition::{Transition, Trigger};

/// When attempts start.
pub const T0: &str = "2026-11-23T10:00:00Z";
/// When they end.
pub const T1: &str = "2026-11-23T10:01:00Z";

/// Start by alice through the API.
pub fn start(retry: bool) -> Transition {
    Transition::Start {
        at: T0.into(),
        trigger: Trigger::Api,
        by: "alice".into(),
        total_steps: 2,
        retry,
    }
}

/// `step` (at `index`) starts `attempt` with Job `cutover-<step>-a<attempt>`.
pub fn started(step: &str, index: usize, attempt: u32) -> Transition {
    Transition::StepStarted {
        step: step.into(),
        index,
        total_steps: 2,
        attempt,
        job_name: format!("cutover-{step}-a{attempt}"),
        at: T0.into(),
    }
}

/// `step`'s `attempt` succeeds.
pub fn succeeded(step: &str, index: usize, attempt: u32) -> Transition {
    Transition::StepSucceeded {
        step: step.into(),
        index,
        total_steps: 2,
        attempt,
        outputs: crate::status::StepOutputs::default(),
        at: T1.into(),
    }
}

/// `step`'s `attempt` fails with `BackoffLimitExceeded`.
pub fn failed(step: &str, attempt: u32) -> Transition {
    Transition::StepFailed {
        step: step.into(),
        attempt,
        reason: "BackoffLimitExceeded".into(),
        at: T1.into(),
    }
}

/// The cutover completes.
pub fn completed() -> Transition {
    Transition::Completed {
        total_steps: 2,
        at: T1.into(),
    }
}

/// `data` with `ts` applied in order (each must apply).
pub fn applied(data: &StatusData, ts: &[Transition]) -> StatusData {
    let mut next = data.clone();
    for t in ts {
        t.apply(&mut next).expect("the transition applies");
    }
    next
}
