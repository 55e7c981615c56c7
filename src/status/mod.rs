//! The status ConfigMap: its typed model, the pure transitions of the cutover state machine
//! (and of a registry-pivot rollback), the body the HTTP API serves, the watch-fed cache reads
//! are served from, the store that writes transitions with optimistic concurrency, and the
//! durable record of a cutover kept in a Lease beside it.

pub mod body;
pub mod cache;
pub mod cutover_record;
#[cfg(test)]
pub mod fixtures;
pub mod login;
pub mod model;
pub mod output;
pub mod record_lease;
pub mod rollback_transition;
pub mod store;
pub mod transition;

pub use body::{StatusBody, TetherCount};
pub use cache::StatusCache;
pub use cutover_record::CutoverRecord;
pub use login::LoginOutcome;
pub use model::{Phase, StatusData, StepResult, StepRow};
pub use output::{OutputError, StepOutputs};
pub use record_lease::RecordKeeper;
pub use store::{StatusStore, StoreError};
pub use transition::{Rejected, Transition, Trigger};

/// Now, as the RFC 3339 UTC string (whole seconds) the status ConfigMap stores.
pub fn now_rfc3339() -> String {
    rfc3339(jiff::Timestamp::now())
}

/// `at` as the RFC 3339 UTC string (whole seconds) the status ConfigMap stores.
pub fn rfc3339(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
