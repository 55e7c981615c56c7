//! The first-login decision: what a report of an operator login writes. The first login
//! ever is recorded once; with auto-fire on, it also starts an idle cutover in the same
//! write, so concurrent reports fire exactly one run.

use super::model::{Phase, StatusData, get};
use super::transition::{Transition, Trigger};
use crate::contract::key;
use serde::Serialize;

/// What a login report changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoginOutcome {
    /// The first login was recorded and the cutover started.
    FirstLoginStartedCutover,
    /// The first login was recorded; the cutover was not started (auto-fire off, or it
    /// had already started or finished).
    FirstLoginRecorded,
    /// A first login was recorded before: nothing changed.
    AlreadyRecorded,
    /// The auto-fire waits for a preflight run: the cutover starts if it passes, else the
    /// status says why (`autoFire=held`, `autoFireReason`) and a later login tries again.
    AutoFirePreflightStarted,
}

/// The transitions a login report applies to `data`: none when a first login is recorded
/// already; otherwise the record, and with `auto_fire` on an idle cutover the start too,
/// so that both land in one write and concurrent reports fire exactly one run. A
/// cutover that has started or finished is never fired by a login.
pub fn login_transitions(
    data: &StatusData,
    operator: &str,
    at: &str,
    auto_fire: bool,
    total_steps: Option<usize>,
) -> (LoginOutcome, Vec<Transition>) {
    if !get(data, key::FIRST_OPERATOR_LOGIN).is_empty() {
        return (LoginOutcome::AlreadyRecorded, Vec::new());
    }
    let mut ts = vec![Transition::FirstOperatorLogin {
        operator: operator.to_owned(),
        at: at.to_owned(),
    }];
    match total_steps {
        Some(total_steps) if auto_fire && Phase::of(data) == Phase::Idle => {
            ts.push(Transition::Start {
                at: at.to_owned(),
                trigger: Trigger::FirstLogin,
                by: operator.to_owned(),
                total_steps,
                retry: false,
            });
            (LoginOutcome::FirstLoginStartedCutover, ts)
        }
        _ => (LoginOutcome::FirstLoginRecorded, ts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::status::fixtures::{T0, applied};

    #[test]
    fn first_login_records_and_fires_in_one_write() {
        let (outcome, ts) = login_transitions(&StatusData::new(), "alice", T0, true, Some(8));
        assert_eq!(outcome, LoginOutcome::FirstLoginStartedCutover);
        let data = applied(&StatusData::new(), &ts);
        assert_eq!(get(&data, "firstOperatorLogin"), "alice");
        assert_eq!(get(&data, "firstOperatorLoginAt"), T0);
        assert_eq!(get(&data, "cutoverTrigger"), "first-login");
        assert_eq!(Phase::of(&data), Phase::Running);
        let (outcome, ts) = login_transitions(&data, "bob", T0, true, Some(8));
        assert_eq!((outcome, ts.len()), (LoginOutcome::AlreadyRecorded, 0));
    }

    #[test]
    fn a_started_or_finished_cutover_is_never_fired_by_a_login() {
        for phase in ["running", "failed", "complete"] {
            let data: StatusData = [("cutoverPhase".to_owned(), phase.to_owned())].into();
            let (outcome, ts) = login_transitions(&data, "alice", T0, true, Some(8));
            assert_eq!(outcome, LoginOutcome::FirstLoginRecorded, "{phase}");
            assert!(
                ts.iter().all(|t| !matches!(t, Transition::Start { .. })),
                "{phase}"
            );
        }
    }

    #[test]
    fn auto_fire_off_records_only() {
        let data = StatusData::new();
        let (outcome, ts) = login_transitions(&data, "alice", T0, false, Some(8));
        assert_eq!(outcome, LoginOutcome::FirstLoginRecorded);
        assert_eq!(ts.len(), 1);
    }
}
