//! "Am I sovereign?": every reference the cluster still holds to an upstream host, kept
//! current from watch-fed caches.
//!
//! [`hosts`] says which upstream host a value names, [`records`] what the index keeps of
//! each object, [`index`] the pure state those records feed and the report built from it,
//! [`sources`] the watches that feed it, [`follow`] the running report behind the
//! [`Tethers`] handle, [`gate`] the completion gate's decision.

pub mod config;
pub mod error;
pub mod follow;
pub mod gate;
pub mod handle;
pub mod hosts;
pub mod index;
pub mod model;
pub mod records;
pub mod sources;

pub use config::TetherConfig;
pub use error::TetherError;
pub use follow::{snapshot, start};
pub use gate::CompletionGate;
pub use handle::Tethers;
pub use model::{Tether, TetherKind, TetherReport, UnseenSource};
