//! The watch-fed copy of the status ConfigMap that reads are served from, so a `GET` costs
//! no API request. Both the watch and the store's own writes feed it; subscribers (the
//! runner, the event stream) are woken on every change.

use super::model::Phase;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use std::sync::Arc;
use tokio::sync::watch;

/// The latest known status ConfigMap (`None` until first read, or while it does not exist).
#[derive(Clone)]
pub struct StatusCache {
    tx: Arc<watch::Sender<Snapshot>>,
}

/// One state of the cache.
#[derive(Clone, Default)]
pub struct Snapshot {
    /// The ConfigMap, if it exists.
    pub configmap: Option<Arc<ConfigMap>>,
    /// Whether the watch has delivered its first state.
    pub synced: bool,
}

impl Snapshot {
    /// The cutover's phase in this state (`idle` while there is no ConfigMap).
    pub fn phase(&self) -> Phase {
        self.configmap
            .as_ref()
            .and_then(|cm| cm.data.as_ref())
            .map_or(Phase::Idle, Phase::of)
    }
}

impl Default for StatusCache {
    fn default() -> Self {
        StatusCache::new()
    }
}

impl StatusCache {
    /// An empty, unsynced cache.
    pub fn new() -> Self {
        StatusCache {
            tx: Arc::new(watch::Sender::new(Snapshot::default())),
        }
    }

    /// The latest ConfigMap.
    pub fn configmap(&self) -> Option<Arc<ConfigMap>> {
        self.tx.borrow().configmap.clone()
    }

    /// The cutover's phase in the latest state.
    pub fn phase(&self) -> Phase {
        self.tx.borrow().phase()
    }

    /// Whether the watch has delivered the first state.
    pub fn synced(&self) -> bool {
        self.tx.borrow().synced
    }

    /// A receiver woken on every change.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.tx.subscribe()
    }

    /// Takes `cm` unless the cache already holds a newer version of it.
    pub fn offer(&self, cm: ConfigMap) {
        self.tx.send_if_modified(|snap| {
            if !is_newer(&cm, snap.configmap.as_deref()) {
                return false;
            }
            snap.configmap = Some(Arc::new(cm));
            true
        });
    }

    fn forget(&self) {
        self.tx.send_if_modified(|snap| {
            let changed = snap.configmap.is_some() || !snap.synced;
            snap.configmap = None;
            snap.synced = true;
            changed
        });
    }

    fn mark_synced(&self) {
        self.tx
            .send_if_modified(|snap| !std::mem::replace(&mut snap.synced, true));
    }

    /// Follows ConfigMap `name` through `api` until the future is dropped; watch errors are
    /// retried with the engine's quick watch backoff ([`crate::retry::watch_backoff`]).
    pub async fn follow(self, api: Api<ConfigMap>, name: String) {
        let stream = watcher::watch_object(api, &name).backoff(crate::retry::watch_backoff());
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            match item {
                Ok(Some(cm)) => {
                    self.offer(cm);
                    self.mark_synced();
                }
                Ok(None) => self.forget(),
                Err(err) => {
                    tracing::warn!(configmap = %name, error = %err, "status watch error; retrying")
                }
            }
        }
    }
}

/// Whether `candidate` is newer than `held`. resourceVersions are opaque, but when both
/// parse as integers (etcd revisions; the sandbox's counter) the larger is newer; otherwise
/// the latest arrival wins.
fn is_newer(candidate: &ConfigMap, held: Option<&ConfigMap>) -> bool {
    let Some(held) = held else { return true };
    let rv = |cm: &ConfigMap| {
        cm.metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
    };
    match (rv(candidate), rv(held)) {
        (Some(c), Some(h)) => c > h || candidate.metadata.uid != held.metadata.uid,
        _ => candidate.metadata.resource_version != held.metadata.resource_version,
    }
}
