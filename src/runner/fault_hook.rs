//! A deliberate runner panic, for the end-to-end test that `serve` exits when its runner
//! dies. No input reaches a panic in the runner (that is the point of its error handling),
//! so the test has to cause one: `CATALYST_CUTOVER_PANIC_AT_STEP=<step>` makes the runner
//! panic as it is about to run that step. Only debug builds (what `cargo test` builds) read
//! the variable; release builds, the container image's included, ignore it.

/// The variable naming the step at which the runner panics (debug builds only).
pub const PANIC_AT_STEP: &str = "CATALYST_CUTOVER_PANIC_AT_STEP";

/// Panics when [`PANIC_AT_STEP`] names `step` in a debug build; does nothing otherwise.
pub fn before_step(step: &str) {
    if cfg!(debug_assertions) && std::env::var(PANIC_AT_STEP).is_ok_and(|named| named == step) {
        panic!("{PANIC_AT_STEP} made the runner panic before step {step}");
    }
}
