//! The record Lease (`<lease>-record`) that keeps the [`CutoverRecord`]: read (one read
//! shared by concurrent checks) and extended with optimistic concurrency, and kept up with the
//! status cache. Why the record is a Lease, and when it is written, is in
//! [`super::cutover_record`].

use super::cutover_record::CutoverRecord;
use crate::pivot::{Direction, Directive};
use crate::retry::{Backoff, is_status};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use std::sync::Arc;
use std::time::Instant;

/// Reads and extends the record Lease.
#[derive(Clone)]
pub struct RecordKeeper {
    api: Api<Lease>,
    name: String,
    /// The latest shared read and when it began.
    shared: Arc<tokio::sync::Mutex<Option<(Instant, CutoverRecord)>>>,
    /// What this replica knows the record holds at least (it wrote or read it), so that a
    /// hundred concurrent starts note the start once; held while noting, so they queue.
    known: Arc<tokio::sync::Mutex<CutoverRecord>>,
    /// The Lease as this replica last wrote or read it (`Some(None)`: found missing). A note
    /// is written over it, its resourceVersion the precondition, so a note costs one
    /// request rather than a read and a write; a 409 or 404 means someone else wrote or
    /// deleted it since, and the note starts again from a fresh read.
    last: Arc<parking_lot::Mutex<Option<Option<Lease>>>>,
}

impl RecordKeeper {
    /// The keeper of Lease `name` (`<election lease>-record`).
    pub fn new(api: Api<Lease>, name: &str) -> Self {
        RecordKeeper {
            api,
            name: name.to_owned(),
            shared: Arc::default(),
            known: Arc::default(),
            last: Arc::default(),
        }
    }

    /// `namespace/name` of the record, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.api.namespace().unwrap_or_default(), self.name)
    }

    /// The record as the API server holds it (empty when there is none).
    pub async fn read(&self) -> Result<CutoverRecord, kube::Error> {
        let lease = self.api.get_opt(&self.name).await?;
        let record = lease
            .as_ref()
            .map(|lease| CutoverRecord::from_annotations(lease.metadata.annotations.as_ref()))
            .unwrap_or_default();
        *self.last.lock() = Some(lease);
        // What was read becomes what is known: less than this replica noted only when an
        // operator removed the record to start over on purpose, after which every fact of the
        // new run must be noted again. (Knowing less than there is costs one more request.)
        *self.known.lock().await = record.clone();
        Ok(record)
    }

    /// The record for a request's check, with concurrent callers sharing one read: a read
    /// that began after a caller arrived is as fresh as one of its own, so a thousand logins
    /// at once cost one GET, not a thousand behind the API server's latency, and no caller
    /// gets an answer older than its request.
    pub async fn read_shared(&self) -> Result<CutoverRecord, kube::Error> {
        let arrived = Instant::now();
        let mut shared = self.shared.lock().await;
        if let Some((began, record)) = shared.as_ref()
            && *began >= arrived
        {
            return Ok(record.clone());
        }
        let began = Instant::now();
        let record = self.read().await?;
        *shared = Some((began, record.clone()));
        Ok(record)
    }

    /// Notes `wanted` in the record unless the record is known to hold it already (see
    /// [`CutoverRecord::lacks`]).
    pub async fn note_if_new(
        &self,
        wanted: &CutoverRecord,
        changes: bool,
    ) -> Result<(), kube::Error> {
        let mut known = self.known.lock().await;
        if known.lacks(wanted, changes) {
            *known = self.note(wanted).await?;
        }
        Ok(())
    }

    /// Notes what the record lacks of `seen` unless the record is known to hold it.
    async fn fill_gaps(&self, seen: &CutoverRecord) -> Result<(), kube::Error> {
        let mut known = self.known.lock().await;
        if known.filled(seen) != *known {
            *known = self.note_gaps(seen).await?;
        }
        Ok(())
    }

    /// Adds what `newer` says to the record; returns the record written.
    pub async fn note(&self, newer: &CutoverRecord) -> Result<CutoverRecord, kube::Error> {
        self.extend(|held| held.merged(newer)).await
    }

    /// Adds to the record what it lacks of `seen`, changing nothing it holds; returns the
    /// record written.
    pub async fn note_gaps(&self, seen: &CutoverRecord) -> Result<CutoverRecord, kube::Error> {
        self.extend(|held| held.filled(seen)).await
    }

    /// Gives the registry-pivot agents `direction` (now, unless they have it already) and
    /// returns the directive they follow now; only the service's own transitions call it.
    /// The time has the clock's full precision: it tells a pivot from the one before a
    /// rollback even within a second, so that no acknowledgement of one counts for the other.
    pub async fn direct(&self, direction: Direction) -> Result<Directive, kube::Error> {
        let at = jiff::Timestamp::now().to_string();
        let at = at.as_str();
        let mut known = self.known.lock().await;
        let written = self
            .extend(|held| {
                if held.registries.as_deref() == Some(direction.as_str())
                    && held.registries_since.is_some()
                {
                    return held.clone();
                }
                CutoverRecord {
                    registries: Some(direction.as_str().to_owned()),
                    registries_since: Some(at.to_owned()),
                    ..held.clone()
                }
            })
            .await?;
        *known = written.clone();
        Ok(Directive {
            direction,
            since: written.registries_since.unwrap_or_else(|| at.to_owned()),
        })
    }

    /// Notes that the service's own transition starts a run now (ahead of its status write).
    pub async fn note_run_start(&self) -> Result<(), kube::Error> {
        let at = jiff::Timestamp::now().to_string();
        let mut known = self.known.lock().await;
        *known = self
            .extend(|held| CutoverRecord {
                run_started_at: Some(at.clone()),
                ..held.clone()
            })
            .await?;
        Ok(())
    }

    /// The directive the record gives the agents now, read afresh.
    pub async fn directive(&self) -> Result<Option<Directive>, kube::Error> {
        let record = self.read().await?;
        Ok(record.directive())
    }

    /// Writes `wanted(held)` over the record held, retrying conflicts; returns the record
    /// written. Starts from the Lease last seen, read afresh when that turns out stale.
    async fn extend(
        &self,
        wanted: impl Fn(&CutoverRecord) -> CutoverRecord,
    ) -> Result<CutoverRecord, kube::Error> {
        let mut remembered = self.last.lock().take();
        loop {
            let from_memory = remembered.is_some();
            let current = match remembered.take() {
                Some(lease) => lease,
                None => self.api.get_opt(&self.name).await?,
            };
            let held = current
                .as_ref()
                .map(|l| CutoverRecord::from_annotations(l.metadata.annotations.as_ref()))
                .unwrap_or_default();
            let wanted = wanted(&held);
            if wanted == held {
                if from_memory {
                    // Only a fresh read may say that nothing is missing: the record may
                    // have been removed since.
                    continue;
                }
                *self.last.lock() = Some(current);
                return Ok(held);
            }
            let mut lease = current.unwrap_or_else(|| Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec::default()),
            });
            wanted.annotate(lease.metadata.annotations.get_or_insert_default());
            let result = if lease.metadata.resource_version.is_some() {
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            } else {
                self.api.create(&PostParams::default(), &lease).await
            };
            match result {
                Ok(written) => {
                    *self.last.lock() = Some(Some(written));
                    tracing::info!(record = %self.describe(), started_at = ?wanted.started_at, finished_at = ?wanted.finished_at, "noted the cutover in its record");
                    return Ok(wanted);
                }
                Err(err) if is_status(&err, 409) => continue,
                Err(err) if from_memory && is_status(&err, 404) => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// Keeps the record up with the status cache for the replica's life: what the status
    /// shows and the record lacks is noted, also what this service did not write (a status
    /// written by an earlier release, or by hand). It only fills gaps: a snapshot may be
    /// older than what a status write has just noted ahead of itself, and noting it over
    /// that would turn the record back. Every replica runs it; the writes are idempotent and
    /// happen once per fact.
    pub async fn follow(self, cache: super::StatusCache) {
        let mut snapshots = cache.subscribe();
        loop {
            let seen = snapshots
                .borrow_and_update()
                .configmap
                .as_ref()
                .map(|cm| CutoverRecord::of(&cm.data.clone().unwrap_or_default()))
                .unwrap_or_default();
            let mut backoff = Backoff::new();
            while let Err(err) = self.fill_gaps(&seen).await {
                tracing::warn!(record = %self.describe(), error = %err, "cannot note the cutover in its record; retrying");
                backoff.wait().await;
            }
            if snapshots.changed().await.is_err() {
                return;
            }
        }
    }
}
