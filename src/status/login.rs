//! What a report of an operator login answers. The first login ever is recorded once; with
//! auto-fire on, it also starts an idle cutover (the write is `preflight::gate::login`'s,
//! the start `preflight::start`'s).

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
    /// The first login was recorded (or a held auto-fire tried again), but the start was
    /// refused as any start would be (a lost status, invalid steps, a missing DaemonSet):
    /// the status says why (`autoFire=held`, `autoFireReason`) and a later login tries again.
    AutoFireHeld,
}
