//! "Am I sovereign?": every reference the cluster still holds to an upstream host, kept
//! current from watch-fed caches.

pub mod model;

pub use model::{Tether, TetherKind, TetherReport, UnseenSource};
