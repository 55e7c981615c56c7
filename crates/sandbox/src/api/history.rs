//! Watch events and the bounded history that watches resume from.

use bytes::Bytes;
use serde_json::Value;
use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

/// One stored version of an object, serialized to JSON at most once however many GETs,
/// lists and watchers send it.
#[derive(Debug)]
pub struct StoredObject {
    value: Value,
    json: OnceLock<Bytes>,
}

impl StoredObject {
    /// Wraps a version for sharing.
    pub fn new(value: Value) -> Arc<Self> {
        Arc::new(StoredObject {
            value,
            json: OnceLock::new(),
        })
    }

    /// The JSON text of the object.
    pub fn json(&self) -> &Bytes {
        self.json
            .get_or_init(|| Bytes::from(serde_json::to_vec(&self.value).unwrap_or_default()))
    }
}

impl Deref for StoredObject {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.value
    }
}

/// The `type` of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// `ADDED`
    Added,
    /// `MODIFIED`
    Modified,
    /// `DELETED`
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change, shared by every watcher that sees it.
#[derive(Debug)]
pub struct Change {
    /// The resourceVersion the change committed at.
    pub rv: u64,
    /// The resource's storage key (`configmaps`, `jobs.batch`).
    pub resource: Arc<str>,
    /// The object's namespace (`""` for cluster-scoped kinds).
    pub namespace: String,
    /// What happened.
    pub kind: EventType,
    /// The object after the change (its last state for a deletion).
    pub object: Arc<StoredObject>,
    /// The object before the change, for watchers whose selector it leaves or enters.
    pub old: Option<Arc<StoredObject>>,
}

impl Change {
    /// A change record.
    pub fn new(
        rv: u64,
        resource: Arc<str>,
        namespace: String,
        kind: EventType,
        object: Arc<StoredObject>,
        old: Option<Arc<StoredObject>>,
    ) -> Self {
        Change {
            rv,
            resource,
            namespace,
            kind,
            object,
            old,
        }
    }
}

/// The last `limit` changes; older resourceVersions are "compacted" and answer 410.
#[derive(Debug)]
pub struct History {
    changes: VecDeque<Arc<Change>>,
    limit: usize,
    compacted: u64,
}

impl History {
    /// An empty history that keeps `limit` changes (at least one).
    pub fn new(limit: usize, start_rv: u64) -> Self {
        History {
            changes: VecDeque::new(),
            limit: limit.max(1),
            compacted: start_rv,
        }
    }

    /// Records a change, dropping the oldest beyond the limit.
    pub fn push(&mut self, change: Arc<Change>) {
        self.changes.push_back(change);
        while self.changes.len() > self.limit {
            if let Some(old) = self.changes.pop_front() {
                self.compacted = old.rv;
            }
        }
    }

    /// The newest resourceVersion that is no longer resumable from (changes after it are kept).
    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    /// Changes strictly after `rv`, or `None` when some of them were already dropped.
    pub fn since(&self, rv: u64) -> Option<impl Iterator<Item = &Arc<Change>>> {
        if rv < self.compacted {
            return None;
        }
        let start = self.changes.partition_point(|c| c.rv <= rv);
        Some(self.changes.range(start..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(rv: u64) -> Arc<Change> {
        Arc::new(Change::new(
            rv,
            "configmaps".into(),
            "ns".into(),
            EventType::Added,
            StoredObject::new(json!({})),
            None,
        ))
    }

    #[test]
    fn resumes_strictly_after_and_expires_compacted_versions() {
        let mut h = History::new(3, 10);
        for rv in 11..=15 {
            h.push(change(rv));
        }
        assert_eq!(h.compacted(), 12);
        assert!(h.since(11).is_none());
        let rvs: Vec<u64> = h.since(12).unwrap().map(|c| c.rv).collect();
        assert_eq!(rvs, vec![13, 14, 15]);
        assert_eq!(h.since(14).unwrap().count(), 1);
        assert_eq!(h.since(15).unwrap().count(), 0);
    }
}
