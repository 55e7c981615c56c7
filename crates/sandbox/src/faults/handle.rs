//! The run-time handle on a proxy's faults, and the bookkeeping of its open connections that
//! lets a "restart" drop them all at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::StatusCode;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::decide::{FaultState, sanitize_rate};

/// Changes a running [`super::FaultProxy`]'s faults; clones share them.
#[derive(Debug, Clone)]
pub struct Faults {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<FaultState>,
    connections: Mutex<Generation>,
    requests: AtomicU64,
}

/// The connections accepted since the last restart: each holds a clone of `alive` and
/// watches `dropped`, so a restart can tell them all to go and then wait until they have.
#[derive(Debug)]
struct Generation {
    dropped: watch::Sender<bool>,
    alive: mpsc::Sender<()>,
    all_gone: mpsc::Receiver<()>,
}

impl Default for Generation {
    fn default() -> Self {
        let (alive, all_gone) = mpsc::channel(1);
        Generation {
            dropped: watch::Sender::new(false),
            alive,
            all_gone,
        }
    }
}

/// What a connection holds while it is open: its restart signal and its share of the
/// generation's liveness.
#[derive(Debug)]
pub struct ConnectionGuard {
    dropped: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

impl ConnectionGuard {
    /// Resolves when the connection must be dropped.
    pub async fn dropped(&mut self) {
        // A closed channel means the proxy itself is gone: drop the connection too.
        let _ = self.dropped.wait_for(|dropped| *dropped).await;
    }
}

impl Faults {
    /// A handle with no fault in force and no connection yet.
    pub(super) fn new() -> Self {
        Faults {
            shared: Arc::default(),
        }
    }

    /// Adds `latency` before every request is answered.
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// Answers a share `rate` (0 to 1; out-of-range values are clamped, NaN is 0) of requests
    /// with `status` instead of forwarding them. 429 answers carry `Retry-After` and 500
    /// answers an `InternalError` Status, like kube-apiserver's.
    pub fn set_error_rate(&self, rate: f64, status: StatusCode) {
        let mut state = self.state();
        state.error_rate = sanitize_rate(rate);
        state.error_status = status;
    }

    /// Cuts every watch stream once it has been open for `every` (None: never). Streams that
    /// are already open follow the new setting too.
    pub fn cut_watches_every(&self, every: Option<Duration>) {
        self.state().cut_watches_every = every;
    }

    /// Acts out a server restart: every open connection and stream is dropped at once, and
    /// every request is answered 503 `ServiceUnavailable` for `down_for`. Returns once the
    /// open connections are gone (not when the down time is over).
    pub async fn restart(&self, down_for: Duration) {
        self.state().down_until = Some(Instant::now() + down_for);
        self.drop_connections().await;
    }

    /// Removes every fault, ending a restart's down time early.
    pub fn clear(&self) {
        *self.state() = FaultState::default();
    }

    /// How many requests the proxy has forwarded upstream since it started (a watch counts
    /// once, however many events it streams; requests answered by an injected fault do not
    /// count). Benchmarks read it to count the API requests of the client behind the proxy.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Counts one request forwarded upstream.
    pub(super) fn count_request(&self) {
        self.shared.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The faults in force now.
    pub fn current(&self) -> FaultState {
        self.state().clone()
    }

    /// Registers a newly accepted connection.
    pub(super) fn connection(&self) -> ConnectionGuard {
        let generation = self.generation();
        ConnectionGuard {
            dropped: generation.dropped.subscribe(),
            _alive: generation.alive.clone(),
        }
    }

    /// Drops every open connection and waits until they are gone.
    pub(super) async fn drop_connections(&self) {
        let old = std::mem::take(&mut *self.generation());
        let Generation {
            dropped,
            alive,
            mut all_gone,
        } = old;
        dropped.send_replace(true);
        drop(alive);
        // `None` once every connection of the old generation has dropped its sender.
        while all_gone.recv().await.is_some() {}
    }

    fn state(&self) -> MutexGuard<'_, FaultState> {
        // The state is plain data, always consistent, so a panic elsewhere does not spoil it.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn generation(&self) -> MutexGuard<'_, Generation> {
        self.shared
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_shared_between_clones_and_cleared() {
        let faults = Faults::new();
        let other = faults.clone();
        other.set_latency(Duration::from_millis(50));
        other.set_error_rate(2.0, StatusCode::TOO_MANY_REQUESTS);
        other.cut_watches_every(Some(Duration::from_secs(1)));
        let state = faults.current();
        assert_eq!(state.latency, Duration::from_millis(50));
        assert_eq!(state.error_rate, 1.0);
        assert_eq!(state.error_status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(state.cut_watches_every, Some(Duration::from_secs(1)));
        faults.clear();
        assert_eq!(other.current(), FaultState::default());
    }

    #[test]
    fn forwarded_requests_are_counted_across_clones_and_survive_clear() {
        let faults = Faults::new();
        assert_eq!(faults.requests(), 0);
        let other = faults.clone();
        other.count_request();
        faults.count_request();
        faults.clear();
        assert_eq!(other.requests(), 2);
    }

    #[tokio::test]
    async fn restart_signals_open_connections_and_waits_for_them() {
        let faults = Faults::new();
        let mut guard = faults.connection();
        let held = tokio::spawn(async move {
            guard.dropped().await;
        });
        faults.restart(Duration::from_secs(60)).await;
        held.await.unwrap();
        assert!(faults.current().down_until.is_some());
        // Connections accepted after the restart belong to a new generation.
        let fresh = faults.connection();
        assert!(!*fresh.dropped.borrow());
    }

    #[tokio::test]
    async fn restart_without_connections_returns_at_once() {
        let faults = Faults::new();
        faults.restart(Duration::ZERO).await;
        faults.restart(Duration::ZERO).await;
    }
}
