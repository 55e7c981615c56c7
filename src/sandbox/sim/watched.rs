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
    /// Notified after each event is applied; a notification given while nobody waits is kept.
    pub changed: Arc<Notify>,
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

/// Starts watching `api` into a store; `changed` is shared, so several stores can wake one
/// loop.
pub fn watched<K>(api: Api<K>, config: watcher::Config, changed: Arc<Notify>) -> Watched<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store::<K>();
    let notify = changed.clone();
    let task = tokio::spawn(
        reflector::reflector(writer, watcher(api, config))
            .default_backoff()
            .for_each(move |_| {
                notify.notify_one();
                futures::future::ready(())
            }),
    );
    Watched {
        store,
        changed,
        task,
    }
}

/// Shortest pause after a pass over a store.
const MIN_PAUSE: Duration = Duration::from_millis(5);

/// Pauses after a pass over a whole store that began at `started`, for twice its cost: a loop
/// woken by every change then keeps to a third of a core while thousands of objects change,
/// and each pass covers the changes of the pause.
pub async fn pace(started: Instant) {
    tokio::time::sleep(MIN_PAUSE.max(started.elapsed() * 2)).await;
}
