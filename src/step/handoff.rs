//! The plan a start has just listed and validated, handed to this replica's runner so that
//! the run of that very attempt begins without listing the steps a second time (two round
//! trips before its first step).

use super::StepPlan;
use parking_lot::Mutex;
use std::time::{Duration, Instant};

/// How old a handed plan may be when the runner takes it. The runner takes it as soon as
/// it holds the Lease, well within this; one older (a runner elected much later, on a resume)
/// lists the steps afresh, as it would without a hand-off.
const FRESH_FOR: Duration = Duration::from_secs(5);

/// One slot holding the latest start's plan, keyed by that start's attempt number
/// (`cutoverAttempt`, which every start increments); a plan is taken at most once.
#[derive(Default)]
pub struct PlanHandoff {
    slot: Mutex<Option<Handed>>,
}

struct Handed {
    attempt: String,
    at: Instant,
    plan: StepPlan,
}

impl PlanHandoff {
    /// Offers `plan`, validated for attempt `attempt`, replacing any earlier.
    pub fn offer(&self, attempt: &str, plan: StepPlan) {
        *self.slot.lock() = Some(Handed {
            attempt: attempt.to_owned(),
            at: Instant::now(),
            plan,
        });
    }

    /// The plan offered for `attempt` within [`FRESH_FOR`], once. Empties the slot either
    /// way: a plan not taken by its own attempt's first run is of no later use.
    pub fn take(&self, attempt: &str) -> Option<StepPlan> {
        take_if(self.slot.lock().take(), attempt, Instant::now())
    }
}

/// The plan of `handed` when it is `attempt`'s and fresh at `now`. Pure.
fn take_if(handed: Option<Handed>, attempt: &str, now: Instant) -> Option<StepPlan> {
    handed
        .filter(|h| !attempt.is_empty() && h.attempt == attempt)
        .filter(|h| now.saturating_duration_since(h.at) <= FRESH_FOR)
        .map(|h| h.plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn plan() -> StepPlan {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cutover-step-01-a", "labels": {
                contract::LABEL_PART_OF: contract::PART_OF,
                contract::LABEL_COMPONENT: contract::COMPONENT_STEP,
                contract::LABEL_STEP_ORDER: "1",
            }},
            "data": {"stepName": "a", "podSpec": "containers:\n- name: c\n  image: busybox\n"}
        }))
        .expect("a valid step ConfigMap");
        super::super::parse_plan(&[cm]).expect("a valid plan")
    }

    fn handed(attempt: &str, at: Instant) -> Option<Handed> {
        Some(Handed {
            attempt: attempt.to_owned(),
            at,
            plan: plan(),
        })
    }

    #[test]
    fn only_the_same_fresh_attempt_takes_the_plan() {
        let now = Instant::now();
        let t = "3";
        assert!(take_if(handed(t, now), t, now).is_some());
        assert!(take_if(handed(t, now), "4", now).is_none());
        assert!(take_if(handed("", now), "", now).is_none());
        assert!(
            take_if(
                handed(t, now),
                t,
                now + FRESH_FOR + Duration::from_millis(1)
            )
            .is_none()
        );
        assert!(take_if(None, t, now).is_none());
    }

    #[test]
    fn a_plan_is_taken_once() {
        let handoff = PlanHandoff::default();
        let t = "3";
        handoff.offer(t, plan());
        assert!(handoff.take(t).is_some());
        assert!(
            handoff.take(t).is_none(),
            "a second run of the attempt lists afresh"
        );
        handoff.offer(t, plan());
        assert!(handoff.take("other").is_none());
        assert!(
            handoff.take(t).is_none(),
            "a mismatched take empties the slot"
        );
    }
}
