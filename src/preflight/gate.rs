//! The auto-fire's gate: a first operator login starts the cutover only once its preflight
//! passed. While the preflight runs the status says `autoFire=preflight`; when it fails,
//! `autoFire=held` with the failed checks in `autoFireReason`, the cutover stays idle, and a
//! later login (or an explicit start) tries again. Pure changes of the status data.

use crate::status::model::{Phase, StatusData, get};
use crate::status::{Rejected, Transition};

/// Status key: `preflight` while an auto-fire waits for its preflight, `held` once the
/// preflight failed; absent otherwise.
pub const KEY_AUTO_FIRE: &str = "autoFire";
/// Status key: why the auto-fire is held, one failed check per line.
pub const KEY_AUTO_FIRE_REASON: &str = "autoFireReason";
/// [`KEY_AUTO_FIRE`] while the preflight runs.
pub const PENDING: &str = "preflight";
/// [`KEY_AUTO_FIRE`] once the preflight failed.
pub const HELD: &str = "held";

/// Whether an auto-fire waits for its preflight or was held back by it.
pub fn waiting(data: &StatusData) -> bool {
    matches!(get(data, KEY_AUTO_FIRE), PENDING | HELD)
}

/// A login asks for the auto-fire: its preflight is about to run. The first operator login
/// is recorded (once, as always).
pub fn request(data: &mut StatusData, operator: &str, at: &str) -> Result<(), Rejected> {
    Transition::FirstOperatorLogin {
        operator: operator.to_owned(),
        at: at.to_owned(),
    }
    .apply(data)?;
    if Phase::of(data) == Phase::Idle {
        data.insert(KEY_AUTO_FIRE.to_owned(), PENDING.to_owned());
        data.remove(KEY_AUTO_FIRE_REASON);
    }
    Ok(())
}

/// The preflight passed: whether the start still goes in this write (the cutover is idle
/// and the auto-fire still waits: nobody started it meanwhile); the gate's keys go either way.
pub fn fire(data: &mut StatusData) -> bool {
    let go = Phase::of(data) == Phase::Idle && waiting(data);
    clear(data);
    go
}

/// What a login report's write did, before the auto-fire's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Login {
    /// It recorded the first operator login ever.
    pub first: bool,
    /// The auto-fire's start goes in the same write: the cutover is idle, and this is the
    /// first login or an auto-fire held earlier is tried again.
    pub fires: bool,
}

/// A login report: records the first operator login (once), and says whether the
/// auto-fire's start may go in the same write, so concurrent reports fire exactly one run.
/// A cutover that has started or finished is never fired by a login.
pub fn login(data: &mut StatusData, operator: &str, at: &str) -> Result<Login, Rejected> {
    let first = get(data, crate::contract::key::FIRST_OPERATOR_LOGIN).is_empty();
    let tried_again = waiting(data);
    Transition::FirstOperatorLogin {
        operator: operator.to_owned(),
        at: at.to_owned(),
    }
    .apply(data)?;
    Ok(Login {
        first,
        fires: (first || tried_again) && Phase::of(data) == Phase::Idle,
    })
}

/// The preflight failed: the auto-fire is held with `reason`, unless the cutover started
/// meanwhile.
pub fn hold(data: &mut StatusData, reason: &str) {
    if Phase::of(data) == Phase::Idle && waiting(data) {
        data.insert(KEY_AUTO_FIRE.to_owned(), HELD.to_owned());
        data.insert(KEY_AUTO_FIRE_REASON.to_owned(), reason.to_owned());
    }
}

/// Forgets the gate (a start of any kind makes it moot).
pub fn clear(data: &mut StatusData) {
    data.remove(KEY_AUTO_FIRE);
    data.remove(KEY_AUTO_FIRE_REASON);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Trigger;

    const T0: &str = "2026-11-23T10:00:00Z";

    fn start(by: &str) -> Transition {
        Transition::Start {
            at: T0.into(),
            trigger: Trigger::FirstLogin,
            by: by.into(),
            total_steps: 2,
            retry: false,
        }
    }

    #[test]
    fn a_failed_preflight_holds_the_auto_fire_and_a_later_pass_fires_it() {
        let mut d = StatusData::new();
        request(&mut d, "alice", T0).unwrap();
        assert_eq!(get(&d, "firstOperatorLogin"), "alice");
        assert_eq!(get(&d, KEY_AUTO_FIRE), PENDING);
        hold(&mut d, "preflight: Gitea refuses");
        assert_eq!(get(&d, KEY_AUTO_FIRE), HELD);
        assert_eq!(Phase::of(&d), Phase::Idle, "held: nothing started");
        request(&mut d, "bob", T0).unwrap();
        assert_eq!(get(&d, "firstOperatorLogin"), "alice", "recorded once");
        assert_eq!(get(&d, KEY_AUTO_FIRE_REASON), "", "trying again");
        assert!(fire(&mut d), "the start goes in");
        assert!(!waiting(&d), "the gate's keys go with it");
    }

    #[test]
    fn a_cutover_started_meanwhile_is_neither_started_again_nor_held() {
        let mut d = StatusData::new();
        request(&mut d, "alice", T0).unwrap();
        start("carol").apply(&mut d).unwrap();
        let running = d.clone();
        hold(&mut d, "late failure");
        assert_eq!(d, running);
        assert!(!fire(&mut d), "no second start");
        assert_eq!(get(&d, "cutoverTriggeredBy"), "carol");
        assert!(!waiting(&d));
    }

    #[test]
    fn only_the_first_login_or_a_held_auto_fire_fires_an_idle_cutover() {
        let mut d = StatusData::new();
        let first = login(&mut d, "alice", T0).unwrap();
        assert_eq!(
            first,
            Login {
                first: true,
                fires: true
            }
        );
        assert_eq!(get(&d, "firstOperatorLoginAt"), T0);
        let again = login(&mut d, "bob", T0).unwrap();
        assert_eq!(
            again,
            Login {
                first: false,
                fires: false
            }
        );
        assert_eq!(get(&d, "firstOperatorLogin"), "alice", "recorded once");

        hold(&mut d, "x");
        assert_eq!(get(&d, KEY_AUTO_FIRE), "", "nothing waited: nothing held");
        request(&mut d, "bob", T0).unwrap();
        hold(&mut d, "the DaemonSet is missing");
        assert!(
            login(&mut d, "carol", T0).unwrap().fires,
            "a held one is tried again"
        );
    }

    #[test]
    fn a_started_or_finished_cutover_is_never_fired_by_a_login() {
        for phase in ["running", "failed", "complete", "rolled-back"] {
            let mut d: StatusData = [("cutoverPhase".to_owned(), phase.to_owned())].into();
            let login = login(&mut d, "alice", T0).unwrap();
            assert!(login.first && !login.fires, "{phase}");
            assert_eq!(get(&d, "firstOperatorLogin"), "alice", "{phase}");
        }
    }
}
