//! A reflector store kept current by a task of its own, with a wake-up on every change.
//!
//! A controller loop that waits on API calls must not stop reading its watches meanwhile: the
//! server would drop the lagging watch (410 Gone) and every store would relist.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt;
use kube::Api;
use kube::Resource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};

/// A store fed by a watch, and the signal raised after each change is applied to it.
pub struct Watched<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    /// The objects, as of the last event applied.
    pub store: Store<K>,
    task: JoinHandle<()>,
}

impl<K: Resource + 'static> Drop for Watched<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn drop(&mut self) {
        // The feeding task lives exactly as long as its store's owner.
        self.task.abort();
    }
}

/// Starts watching `api` into a store; `changed` is notified after each event is applied (a
/// notification given while nobody waits is kept), and may be shared so several stores wake
/// one loop.
pub fn watched<K>(api: Api<K>, config: watcher::Config, changed: Arc<Notify>) -> Watched<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store::<K>();
    let task = tokio::spawn(
        reflector::reflector(writer, watcher(api, config))
            .backoff(QuickBackoff::default())
            .for_each(move |_| {
                changed.notify_one();
                futures::future::ready(())
            }),
    );
    Watched { store, task }
}

/// Shortest pause after a pass over a store.
const MIN_PAUSE: Duration = Duration::from_millis(5);

/// Pauses after a pass over a whole store that began at `started`, for twice its cost: a loop
/// woken by every change then keeps to a third of a core while thousands of objects change,
/// and each pass covers the changes of the pause.
pub async fn pace(started: Instant) {
    tokio::time::sleep(MIN_PAUSE.max(started.elapsed() * 2)).await;
}

/// Watch retry delays: 50 ms doubling to 2 s, back to 50 ms after a success. kube's default
/// (800 ms to 30 s, reset after two quiet minutes) suits a fleet of real controllers; a
/// simulator behind a flaky connection should pick up again as soon as the server answers.
#[derive(Debug, Clone, Copy)]
pub struct QuickBackoff {
    next: Duration,
}

impl QuickBackoff {
    const FIRST: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(2);
}

impl Default for QuickBackoff {
    fn default() -> Self {
        QuickBackoff { next: Self::FIRST }
    }
}

impl Iterator for QuickBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(delay)
    }
}

impl Backoff for QuickBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_backoff_doubles_to_its_cap_and_resets() {
        let mut b = QuickBackoff::default();
        let delays: Vec<u128> = b.by_ref().take(8).map(|d| d.as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(50)));
    }
}
