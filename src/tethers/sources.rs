//! The I/O of each source: a kube-runtime watcher (the built-in kinds typed, Flux and
//! Crossplane kinds as `DynamicObject`s found by discovery) whose events become records of
//! the index, object by object: no reflector store, so no whole Pod outlives its event.
//! The same code lists each source once for a snapshot.

use super::config::TetherConfig;
use super::index::{Index, Source, SourceState};
use super::records::{self, Entry, ObjectKey};
use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Resource;
use kube::api::{Api, ApiResource};
use kube::core::DynamicObject;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// How often a kind that is not installed is looked for again (a CRD installed later).
const REDISCOVER: Duration = Duration::from_secs(60);
/// How soon a discovery that failed (the API server unreachable) is tried again.
const RETRY_DISCOVERY: Duration = Duration::from_secs(5);

/// The index the sources feed, and the signal that it changed.
pub struct Shared {
    index: Mutex<Index>,
    changed: Notify,
}

impl Shared {
    /// Shares `index`.
    pub fn new(index: Index) -> Self {
        Shared {
            index: Mutex::new(index),
            changed: Notify::new(),
        }
    }

    /// Changes the index and signals it.
    pub fn update(&self, change: impl FnOnce(&mut Index)) {
        self.change(|index| {
            change(index);
            true
        });
    }

    /// Changes the index, and signals it when `change` says it changed anything.
    pub fn change(&self, change: impl FnOnce(&mut Index) -> bool) {
        let changed = change(&mut self.index.lock().unwrap_or_else(|p| p.into_inner()));
        if changed {
            self.changed.notify_one();
        }
    }

    /// Resolves after the next change (or at once, if one came since the last wait).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// Whether a source is watched for good, or listed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Until dropped, re-listing on errors with the watch backoff.
    Follow,
    /// One list, then return.
    Once,
}

/// What turns one source's objects into records.
struct Recorder {
    config: TetherConfig,
    hosts: super::hosts::UpstreamHosts,
}

impl Recorder {
    fn lease(&self, lease: &Lease) -> Option<Entry> {
        records::lease(lease, &self.config.record_lease)
    }

    fn dynamic(&self, source: Source, obj: &DynamicObject) -> Option<Entry> {
        match source {
            Source::HelmReleases => {
                records::helm_release(obj, &self.hosts, self.config.vcluster_registry.as_deref())
            }
            Source::Providers => records::provider(obj, &self.hosts),
            _ => records::flux_source(obj, &self.hosts),
        }
    }
}

/// Feeds `shared` from `source` in `mode`; in [`Mode::Follow`] it never returns.
pub async fn feed(
    client: kube::Client,
    config: TetherConfig,
    source: Source,
    shared: &Shared,
    mode: Mode,
) {
    if source.cluster_wide() && !config.cluster_wide {
        shared.update(|i| {
            i.set_state(
                source,
                SourceState::Off(
                    "cluster-wide reads are off (tethers.clusterWide=false): not watched"
                        .to_owned(),
                ),
            )
        });
        if mode == Mode::Follow {
            std::future::pending::<()>().await;
        }
        return;
    }
    let recorder = Recorder {
        hosts: read(shared, |i| i.settings().hosts.clone()),
        config,
    };
    match source {
        Source::Leases => {
            let api: Api<Lease> = Api::namespaced(client, &recorder.config.namespace);
            run(api, source, shared, mode, None, |l| recorder.lease(l)).await;
        }
        Source::Nodes => {
            let api: Api<Node> = Api::all(client);
            let selector = recorder.config.node_selector.clone();
            run(api, source, shared, mode, selector, |_| Some(Entry::Node)).await;
        }
        Source::Pods => {
            let api: Api<Pod> = Api::all(client);
            let hosts = recorder.hosts.clone();
            run(api, source, shared, mode, None, |p| records::pod(p, &hosts)).await;
        }
        _ => loop {
            let pause = match discover(&client, source).await {
                Ok(resource) => {
                    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
                    run(api, source, shared, mode, None, |o| {
                        recorder.dynamic(source, o)
                    })
                    .await;
                    REDISCOVER
                }
                Err(state) => {
                    let pause = if state == SourceState::NotInstalled {
                        REDISCOVER
                    } else {
                        RETRY_DISCOVERY
                    };
                    shared.update(|i| i.set_state(source, state));
                    pause
                }
            };
            if mode == Mode::Once {
                return;
            }
            tokio::time::sleep(pause).await;
        },
    }
}

/// The API resource of a custom source, or its state when it has none.
async fn discover(client: &kube::Client, source: Source) -> Result<ApiResource, SourceState> {
    let Some((group, kind)) = source.custom() else {
        return Err(SourceState::NotInstalled);
    };
    match kube::discovery::group(client, group).await {
        Ok(found) => match found.recommended_kind(kind) {
            Some((resource, _)) => Ok(resource),
            None => Err(SourceState::NotInstalled),
        },
        Err(kube::Error::Discovery(_)) => Err(SourceState::NotInstalled),
        Err(err) => Err(SourceState::Failing(format!(
            "cannot discover {}: {}",
            source.name(),
            records::bounded(&err.to_string())
        ))),
    }
}

/// Why a watch of `source` failed, and whether its kind is gone (a CRD deleted: the
/// source is looked for again).
fn failure(source: Source, err: &watcher::Error) -> (SourceState, bool) {
    let api_error = match err {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => match e {
            kube::Error::Api(status) => Some(status.code),
            _ => None,
        },
        watcher::Error::WatchError(status) => Some(status.code),
        watcher::Error::NoResourceVersion => None,
    };
    let detail = records::bounded(&err.to_string());
    match api_error {
        Some(404) => (SourceState::NotInstalled, true),
        Some(403) => (
            SourceState::Failing(format!(
                "list/watch of {} is forbidden (the tethers ClusterRole, tethers.clusterWide): {detail}",
                source.name()
            )),
            false,
        ),
        _ => (
            SourceState::Failing(format!("cannot list {}: {detail}", source.name())),
            false,
        ),
    }
}

/// Watches (or lists once) `api`, feeding each object's record to `shared`.
async fn run<K>(
    api: Api<K>,
    source: Source,
    shared: &Shared,
    mode: Mode,
    labels: Option<String>,
    record: impl Fn(&K) -> Option<Entry>,
) where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let config = match &labels {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    };
    let stream = watcher(api, config);
    match mode {
        Mode::Follow => {
            consume(
                stream.backoff(crate::retry::watch_backoff()),
                source,
                shared,
                mode,
                record,
            )
            .await
        }
        Mode::Once => consume(stream, source, shared, mode, record).await,
    }
}

async fn consume<K: Resource>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    source: Source,
    shared: &Shared,
    mode: Mode,
    record: impl Fn(&K) -> Option<Entry>,
) {
    futures::pin_mut!(stream);
    let mut relist: Vec<(ObjectKey, Option<Entry>)> = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => relist.clear(),
            Ok(watcher::Event::InitApply(obj)) => {
                if let Some(key) = ObjectKey::of(obj.meta()) {
                    relist.push((key, record(&obj)));
                }
            }
            Ok(watcher::Event::InitDone) => {
                let objects = std::mem::take(&mut relist);
                shared.update(|i| i.reset(source, objects));
                if mode == Mode::Once {
                    return;
                }
            }
            Ok(watcher::Event::Apply(obj)) => {
                if let Some(key) = ObjectKey::of(obj.meta()) {
                    let entry = record(&obj);
                    shared.change(|i| i.apply(source, key, entry));
                }
            }
            Ok(watcher::Event::Delete(obj)) => {
                if let Some(key) = ObjectKey::of(obj.meta()) {
                    shared.change(|i| i.delete(source, &key));
                }
            }
            Err(err) => {
                let (state, gone) = failure(source, &err);
                tracing::warn!(source = source.name(), error = %err, "tether watch error");
                shared.update(|i| i.set_state(source, state));
                if gone || mode == Mode::Once {
                    return;
                }
            }
        }
    }
}

/// The report's settings of the index, from `config`.
pub fn index_of(config: &TetherConfig) -> Index {
    Index::new(super::index::IndexSettings {
        hosts: super::hosts::UpstreamHosts::new(&config.upstream_hosts),
        mirrored: config
            .mirrored_registries
            .iter()
            .map(|r| r.trim().to_ascii_lowercase())
            .filter(|r| !r.is_empty())
            .collect(),
    })
}

/// Reads the index under the lock.
pub fn read<T>(shared: &Shared, f: impl FnOnce(&mut Index) -> T) -> T {
    let mut index = shared.index.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut index)
}
