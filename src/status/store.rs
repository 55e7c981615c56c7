//! Writes transitions into the status ConfigMap with optimistic concurrency: read, apply the
//! pure transition, replace with the read resourceVersion, and on a conflict read again and
//! re-apply. Transient API errors are retried with backoff; the transitions are idempotent,
//! so a write whose answer was lost is applied again safely.

use super::cache::StatusCache;
use super::cutover_record::CutoverRecord;
use super::model::{StatusData, initial_data};
use super::record_lease::RecordKeeper;
use super::transition::{Rejected, Transition};
use crate::contract::{self, key};
use crate::pivot::Direction;
use crate::retry::{Backoff, is_status, is_transient};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;

/// What can go wrong writing the status ConfigMap.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The transition does not apply to the status as it is now.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// The API server refused the request for a reason retrying cannot fix.
    #[error("the API server refused to write ConfigMap {namespace}/{name}: {source}")]
    Refused {
        /// Namespace.
        namespace: String,
        /// ConfigMap name.
        name: String,
        /// The refusal.
        #[source]
        source: kube::Error,
    },
    /// The durable record could not be extended ahead of the write, so the write was not made.
    #[error("the API server refused to extend the cutover record (Lease {record}): {source}")]
    Record {
        /// `namespace/name` of the record Lease.
        record: String,
        /// The refusal.
        #[source]
        source: kube::Error,
    },
    /// The process is stopping: the write's task was cancelled with the runtime.
    #[error("the service is stopping; the status write may or may not have been made")]
    Interrupted,
}

/// One write this replica made: the data before and after it.
#[derive(Debug)]
pub struct Write {
    /// The data the transitions were applied to.
    pub before: StatusData,
    /// The data written.
    pub after: StatusData,
}

/// The direction a status write gives the registry-pivot agents: the one its own
/// transitions set `registriesYamlActive` to (the pivot, an operator's rollback). What the
/// status held before (which anyone with `edit` may have written) gives none: it is in
/// `before` and `after` alike. Pure.
pub fn directed(before: &StatusData, after: &StatusData) -> Option<Direction> {
    let value = |d: &StatusData| {
        d.get(key::REGISTRIES_YAML_ACTIVE)
            .cloned()
            .unwrap_or_default()
    };
    let now = value(after);
    (now != value(before))
        .then(|| Direction::parse(&now))
        .flatten()
}

/// What a write to the record ahead of a status write (`what`, for the log) answered: its
/// value, `None` when it failed for a reason that passes (the status write waits and starts
/// again), or the error that stops the status write.
fn ahead<T>(
    record: &RecordKeeper,
    result: Result<T, kube::Error>,
    what: &str,
) -> Result<Option<T>, StoreError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) if is_transient(&err) => {
            tracing::warn!(record = %record.describe(), error = %err, "cannot {what} before a status write; retrying");
            Ok(None)
        }
        Err(source) => Err(StoreError::Record {
            record: record.describe(),
            source,
        }),
    }
}

/// The writer of the status ConfigMap.
#[derive(Clone)]
pub struct StatusStore {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    cache: StatusCache,
    writes: tokio::sync::broadcast::Sender<std::sync::Arc<Write>>,
    record: Option<RecordKeeper>,
}

impl StatusStore {
    /// A store for ConfigMap `name` in `namespace`; `cache` is fed by the store's own writes
    /// as well as by its watch.
    pub fn new(client: kube::Client, namespace: &str, name: &str, cache: StatusCache) -> Self {
        StatusStore {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            cache,
            writes: tokio::sync::broadcast::Sender::new(256),
            record: None,
        }
    }

    /// The same store, rebuilding a lost status ConfigMap from `record` instead of creating
    /// it as new.
    pub fn with_record(mut self, record: RecordKeeper) -> Self {
        self.record = Some(record);
        self
    }

    /// The durable record of the cutover, when the store keeps one.
    pub fn record(&self) -> Option<&RecordKeeper> {
        self.record.as_ref()
    }

    /// Every write this store makes from now on, once it has succeeded. Each transition is
    /// written by exactly one replica, so what a replica tells from its own writes (the
    /// Kubernetes Events) is told once cluster-wide.
    pub fn writes(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<Write>> {
        self.writes.subscribe()
    }

    /// The namespace of the status ConfigMap.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The name of the status ConfigMap.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cache this store feeds.
    pub fn cache(&self) -> &StatusCache {
        &self.cache
    }

    /// Applies `transitions` in order as one write and returns the data written. Either all
    /// apply or none is written. Retries conflicts and transient errors until it succeeds,
    /// is rejected, or is refused; the caller bounds it by dropping the future.
    pub async fn apply(&self, transitions: &[Transition]) -> Result<StatusData, StoreError> {
        let (data, ()) = self
            .update(|data| {
                for t in transitions {
                    t.apply(data)?;
                }
                Ok(())
            })
            .await?;
        Ok(data)
    }

    /// Applies an arbitrary pure change with the same guarantees as [`StatusStore::apply`],
    /// and returns the data written with what the change answered on the data it was last
    /// applied to (a conflict re-applies it to the fresh data).
    pub async fn update<F, T>(&self, change: F) -> Result<(StatusData, T), StoreError>
    where
        F: Fn(&mut StatusData) -> Result<T, Rejected>,
    {
        let mut backoff = Backoff::new();
        let mut current = match self.cache.configmap() {
            Some(cm) => cm,
            None => self.read_or_create(&mut backoff).await?,
        };
        loop {
            let before = current.data.clone().unwrap_or_default();
            let mut data = before.clone();
            let answer = change(&mut data)?;
            if data == before {
                return Ok((data, answer));
            }
            if let Some((record, direction)) = self.record.as_ref().zip(directed(&before, &data)) {
                let given = ahead(record, record.direct(direction).await, "direct the agents")?;
                let Some(directive) = given else {
                    backoff.wait().await;
                    continue;
                };
                tracing::info!(direction = direction.as_str(), since = %directive.since, "gave the registry-pivot agents their direction");
            }
            let starts = CutoverRecord::starts(&before, &data);
            let changes = CutoverRecord::changes(&before, &data);
            if let Some(record) = self.record.as_ref().filter(|_| starts)
                && ahead(
                    record,
                    record.note_run_start().await,
                    "note the run's start",
                )?
                .is_none()
            {
                backoff.wait().await;
                continue;
            }
            if let Some(record) = self.record.as_ref().filter(|_| !starts) {
                let noted = record.note_if_new(&CutoverRecord::of(&data), changes).await;
                if ahead(record, noted, "note the cutover in its record")?.is_none() {
                    backoff.wait().await;
                    continue;
                }
            }
            let mut next = (*current).clone();
            next.data = Some(data.clone());
            // The request runs in its own task: a caller dropped while it is in flight (a
            // runner whose Lease went at that moment) must not leave a write the API server
            // made unannounced, or no frame, Event or metric would ever tell it.
            let attempt = tokio::spawn(self.clone().write_once(next, before, data.clone()));
            let written = match attempt.await {
                Ok(written) => written,
                Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
                Err(_) => return Err(StoreError::Interrupted),
            };
            match written {
                Ok(()) => {
                    if starts {
                        self.note_start(&data, changes).await;
                    }
                    return Ok((data, answer));
                }
                Err(err) if is_status(&err, 409) => {
                    tracing::debug!(configmap = %self.name, "status write conflict; re-reading");
                }
                Err(err) if is_status(&err, 404) => {
                    tracing::warn!(configmap = %self.name, "status ConfigMap vanished; recreating");
                }
                Err(err) if is_transient(&err) => {
                    tracing::warn!(configmap = %self.name, error = %err, "status write failed; retrying");
                    backoff.wait().await;
                }
                Err(source) => return Err(self.refused(source)),
            }
            current = self.read_or_create(&mut backoff).await?;
        }
    }

    /// Notes the start that `written` shows, right after its write (see the record's module
    /// documentation for why not before). One attempt: the write is made either way, and a
    /// note that fails now is made ahead of the next status write, or by the record's
    /// follower.
    async fn note_start(&self, written: &StatusData, changes: bool) {
        let Some(record) = &self.record else { return };
        if let Err(err) = record
            .note_if_new(&CutoverRecord::of(written), changes)
            .await
        {
            tracing::warn!(record = %record.describe(), error = %err, "cannot note the cutover's start in its record now; the next status write notes it");
        }
    }

    /// The status ConfigMap as the API server holds it now (`None` when there is none), also
    /// offered to the cache.
    pub async fn read_fresh(&self) -> Result<Option<std::sync::Arc<ConfigMap>>, kube::Error> {
        match self.api.get_opt(&self.name).await? {
            Some(cm) => {
                self.cache.offer(cm.clone());
                Ok(Some(std::sync::Arc::new(cm)))
            }
            None => Ok(None),
        }
    }

    /// One replace with the resource version read; on success the cache and the writes'
    /// subscribers hear of it.
    async fn write_once(
        self,
        next: ConfigMap,
        before: StatusData,
        after: StatusData,
    ) -> Result<(), kube::Error> {
        let written = self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await?;
        self.cache.offer(written);
        let _ = self
            .writes
            .send(std::sync::Arc::new(Write { before, after }));
        Ok(())
    }

    /// Reads the ConfigMap from the API server, creating it as the chart would when missing.
    pub async fn read_or_create(
        &self,
        backoff: &mut Backoff,
    ) -> Result<std::sync::Arc<ConfigMap>, StoreError> {
        loop {
            let result = match self.api.get_opt(&self.name).await {
                Ok(Some(cm)) => Ok(cm),
                Ok(None) => match self.recreated().await {
                    Ok(configmap) => {
                        match self.api.create(&PostParams::default(), &configmap).await {
                            Ok(cm) => {
                                tracing::info!(configmap = %self.name, "created the status ConfigMap");
                                Ok(cm)
                            }
                            Err(err) if is_status(&err, 409) => continue,
                            Err(err) => Err(err),
                        }
                    }
                    Err(err) => Err(err),
                },
                Err(err) => Err(err),
            };
            match result {
                Ok(cm) => {
                    self.cache.offer(cm);
                    if let Some(cm) = self.cache.configmap() {
                        return Ok(cm);
                    }
                }
                Err(err) if is_transient(&err) => {
                    tracing::warn!(configmap = %self.name, error = %err, "status read failed; retrying");
                    backoff.wait().await;
                }
                Err(source) => return Err(self.refused(source)),
            }
        }
    }

    /// The status ConfigMap to create when there is none: as the chart installs it, unless
    /// the record says a cutover started, in which case the status was lost and is rebuilt
    /// from the record (never started over). A record that cannot be read is an error, not
    /// an empty record.
    async fn recreated(&self) -> Result<ConfigMap, kube::Error> {
        let Some(record) = &self.record else {
            return Ok(initial_configmap(&self.name));
        };
        let noted = record.read().await?;
        if noted.started() {
            tracing::warn!(
                configmap = %self.name,
                record = %record.describe(),
                started_at = ?noted.started_at,
                finished_at = ?noted.finished_at,
                "the status ConfigMap is gone but the record says a cutover started; rebuilding it from the record"
            );
        }
        let mut configmap = initial_configmap(&self.name);
        configmap.data = Some(noted.rebuilt_status(&record.describe()));
        Ok(configmap)
    }

    fn refused(&self, source: kube::Error) -> StoreError {
        StoreError::Refused {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }
}

/// The status ConfigMap as the chart creates it.
pub fn initial_configmap(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([
                (
                    contract::LABEL_PART_OF.to_owned(),
                    contract::PART_OF.to_owned(),
                ),
                (
                    contract::LABEL_COMPONENT.to_owned(),
                    contract::COMPONENT_STATUS.to_owned(),
                ),
            ])),
            annotations: Some(BTreeMap::from([(
                contract::ANNOTATION_RESOURCE_POLICY.to_owned(),
                "keep".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(initial_data()),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::model::data_of;

    #[test]
    fn only_a_write_that_changes_the_direction_gives_one() {
        let v1 = data_of(&[("registriesYamlActive", "v1")]);
        let v2 = data_of(&[("registriesYamlActive", "v2")]);
        let rollback = data_of(&[("registriesYamlActive", "rollback")]);
        assert_eq!(directed(&v1, &v2), Some(Direction::V2));
        assert_eq!(directed(&v2, &rollback), Some(Direction::Rollback));
        // A value someone wrote into the status is in both sides of every later write.
        assert_eq!(directed(&rollback, &rollback), None);
        assert_eq!(directed(&v2, &v1), None, "v1 is no direction");
        assert_eq!(
            directed(&v1, &data_of(&[("registriesYamlActive", "v3")])),
            None
        );
    }
}
