//! Live events: the contract's event-stream frames ([`frames`]), derived purely from
//! successive status snapshots ([`derive`], a rollback's in [`rollback_frames`]), so every
//! replica sees every transition whoever wrote it (and the tether report's `cutover-tethers`
//! frames, which each replica derives from its own report); a broadcaster with ids and a
//! replay buffer ([`hub`]); and the Kubernetes Events the leader records on the status
//! ConfigMap ([`kube_events`]).

pub mod derive;
pub mod frames;
pub mod hub;
pub mod kube_events;
pub mod rollback_frames;

pub use derive::derive;
pub use frames::{Frame, FramePhase, Level};
pub use hub::{EventHub, Numbered, Subscription};

use std::time::Duration;

/// The live event stream's settings.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Frames kept for clients reconnecting with `Last-Event-ID`.
    pub replay: usize,
    /// Frames a client may fall behind before it is dropped.
    pub lag: usize,
    /// Interval of the keep-alive comments.
    pub keep_alive: Duration,
    /// Whether the leader records a Kubernetes Event per frame on the status ConfigMap.
    pub kubernetes_events: bool,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            replay: 1024,
            lag: 256,
            keep_alive: Duration::from_secs(15),
            kubernetes_events: true,
        }
    }
}
