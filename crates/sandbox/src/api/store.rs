//! The object store: every object as JSON, one cluster-wide resourceVersion, the change
//! history and the live change feed. Handlers stay thin over these functions.

use super::crd;
use super::errors::StatusError;
use super::history::{Change, EventType, History, StoredObject};
use super::kinds::{KindInfo, Registry};
use super::meta::{self, Part};
use super::selectors::Selectors;
use super::{defaults, encoding, validation};
use parking_lot::{RwLock, RwLockWriteGuard};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use tokio::sync::broadcast;

/// `(namespace, name)`; namespace is `""` for cluster-scoped objects.
type ObjKey = (String, String);

/// How dependents are treated when their owner is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents are deleted after the owner.
    Background,
    /// Dependents are deleted before the owner.
    Foreground,
    /// Dependents lose their ownerReference and stay.
    Orphan,
}

impl Propagation {
    /// Parses `propagationPolicy`.
    pub fn parse(s: &str) -> Result<Self, StatusError> {
        match s {
            "Background" => Ok(Propagation::Background),
            "Foreground" => Ok(Propagation::Foreground),
            "Orphan" => Ok(Propagation::Orphan),
            other => Err(StatusError::bad_request(format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
            ))),
        }
    }

    /// The default of a kind: batch/v1 Jobs orphan their pods unless told otherwise
    /// (pkg/registry/batch/job/strategy.go DefaultGarbageCollectionPolicy).
    fn default_for(kind: &KindInfo) -> Self {
        if kind.group == "batch" && kind.kind == "Job" {
            Propagation::Orphan
        } else {
            Propagation::Background
        }
    }
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `propagationPolicy`; `None` takes the kind's default.
    pub propagation: Option<Propagation>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// What a delete did.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// The object is gone; this was its last state.
    Gone(Arc<StoredObject>),
    /// Finalizers hold the object; it now carries a deletionTimestamp.
    Pending(Arc<StoredObject>),
}

/// Options of a list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Label and field selectors.
    pub selectors: Selectors,
    /// `limit` (0 or `None` = everything).
    pub limit: Option<usize>,
    /// `continue` token from a previous page.
    pub continue_token: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    /// The list's resourceVersion.
    pub resource_version: u64,
    /// The objects, ordered by namespace and name.
    pub items: Vec<Arc<StoredObject>>,
    /// Token for the next page.
    pub continue_token: Option<String>,
    /// How many objects the next pages hold.
    pub remaining: Option<usize>,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFrom {
    /// Synthetic ADDED events for the current objects, then live changes.
    Now,
    /// Changes strictly after this resourceVersion.
    After(u64),
}

/// A watch's starting point: the events to send first and the live feed after them.
pub struct WatchStart {
    /// Events to send before live ones (history replay, or synthetic ADDED).
    pub initial: Vec<Arc<Change>>,
    /// Live changes committed after `resource_version`.
    pub live: broadcast::Receiver<Arc<Change>>,
    /// The resourceVersion `initial` brings the watcher to.
    pub resource_version: u64,
}

struct Collection {
    kind: Arc<KindInfo>,
    key: Arc<str>,
    objects: BTreeMap<ObjKey, Arc<StoredObject>>,
    /// The oldest resourceVersion a watch of this kind may start from: kube-apiserver's watch
    /// cache of a resource holds events only after the list it began with (the API server's
    /// start for a built-in kind, its definition for a custom one), so an older version is
    /// answered 410 however much history etcd still holds.
    watch_from: u64,
}

struct Inner {
    rv: u64,
    collections: HashMap<Arc<str>, Collection>,
    history: History,
}

/// The store of all objects.
pub struct Store {
    inner: RwLock<Inner>,
    feed: broadcast::Sender<Arc<Change>>,
    /// Replaced whole when a CustomResourceDefinition comes, changes or goes.
    registry: RwLock<Arc<Registry>>,
}

/// Namespaces the NamespaceLifecycle admission plugin never lets go.
const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// The first resourceVersion; any positive start works, a non-trivial one catches clients
/// that assume versions start small.
const START_RV: u64 = 1000;
/// Live-feed capacity; a watcher that falls further behind is ended with 410 and relists.
const FEED_CAPACITY: usize = 16 * 1024;

fn storage_key(kind: &KindInfo) -> Arc<str> {
    kind.resource_key()
}

fn obj_key(kind: &KindInfo, ns: Option<&str>, name: &str) -> ObjKey {
    let ns = if kind.namespaced {
        ns.unwrap_or_default()
    } else {
        ""
    };
    (ns.to_string(), name.to_string())
}

fn encode_continue(rv: u64, last: &ObjKey) -> String {
    hex::encode(json!({"rv": rv, "ns": last.0, "name": last.1}).to_string())
}

fn decode_continue(token: &str) -> Result<(u64, ObjKey), StatusError> {
    let bad = || StatusError::bad_request(format!("continue key is not valid: {token}"));
    let bytes = hex::decode(token).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rv = v["rv"].as_u64().ok_or_else(bad)?;
    let ns = v["ns"].as_str().ok_or_else(bad)?.to_string();
    let name = v["name"].as_str().ok_or_else(bad)?.to_string();
    Ok((rv, (ns, name)))
}

/// The 410 of kube-apiserver's watch cache for a resourceVersion older than its history;
/// `oldest` is the oldest version a watch may start from (the cache's `oldest-1`).
pub fn too_old(rv: u64, oldest: u64) -> StatusError {
    StatusError::expired(format!("too old resource version: {rv} ({oldest})"))
}

fn owner_uids(obj: &Value) -> impl Iterator<Item = &str> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
}

fn finalizers_pending(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// A uid precondition (from DeleteOptions or the body of a write) that the stored object must
/// meet; empty means none.
fn check_uid(
    kind: &KindInfo,
    name: &str,
    want: Option<&str>,
    current: &Value,
) -> Result<(), StatusError> {
    match want.filter(|u| !u.is_empty()) {
        Some(uid) if uid != meta::uid_of(current) => Err(StatusError::conflict_with(
            kind,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta::uid_of(current)
            ),
        )),
        _ => Ok(()),
    }
}

impl Inner {
    /// The stored object, or 404.
    fn current(
        &mut self,
        kind: &KindInfo,
        key: &ObjKey,
        name: &str,
    ) -> Result<Arc<StoredObject>, StatusError> {
        self.collection(kind)?
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| StatusError::not_found(kind, name))
    }

    fn collection(&mut self, kind: &KindInfo) -> Result<&mut Collection, StatusError> {
        self.collections
            .get_mut(&*storage_key(kind))
            .ok_or_else(|| {
                StatusError::internal(format!("no storage for {}", kind.qualified_resource()))
            })
    }

    /// Assigns the next resourceVersion, records the change and returns it for the feed.
    fn commit(
        &mut self,
        resource: &Arc<str>,
        kind: EventType,
        mut object: Value,
        old: Option<Arc<StoredObject>>,
    ) -> Arc<Change> {
        self.rv += 1;
        meta::metadata_mut(&mut object)
            .insert("resourceVersion".into(), json!(self.rv.to_string()));
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let change = Arc::new(Change::new(
            self.rv,
            resource.clone(),
            namespace,
            kind,
            StoredObject::new(object),
            old,
        ));
        self.history.push(change.clone());
        change
    }

    fn store(&mut self, change: &Arc<Change>) {
        let key = (
            change.namespace.clone(),
            meta::name_of(&change.object).to_string(),
        );
        if let Some(c) = self.collections.get_mut(&change.resource) {
            if change.kind == EventType::Deleted {
                c.objects.remove(&key);
            } else {
                c.objects.insert(key, change.object.clone());
            }
        }
    }

    fn apply(
        &mut self,
        resource: &Arc<str>,
        kind: EventType,
        object: Value,
        old: Option<Arc<StoredObject>>,
    ) -> Arc<Change> {
        let change = self.commit(resource, kind, object, old);
        self.store(&change);
        change
    }

    /// Deletes one object and, per `propagation`, its dependents; returns every change.
    fn delete_cascade(
        &mut self,
        kind: &Arc<KindInfo>,
        key: &ObjKey,
        propagation: Propagation,
        changes: &mut Vec<Arc<Change>>,
    ) -> Option<Deleted> {
        let resource = storage_key(kind);
        let current = self.collections.get(&resource)?.objects.get(key)?.clone();
        if finalizers_pending(&current) {
            if current.pointer("/metadata/deletionTimestamp").is_some() {
                return Some(Deleted::Pending(current));
            }
            let mut marked = (*current).clone();
            let m = meta::metadata_mut(&mut marked);
            m.insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            let change = self.apply(&resource, EventType::Modified, marked, Some(current));
            changes.push(change.clone());
            return Some(Deleted::Pending(change.object.clone()));
        }
        let uid = meta::uid_of(&current).to_string();
        if propagation == Propagation::Foreground {
            self.handle_dependents(&uid, propagation, changes);
        }
        if kind.kind == "Namespace" {
            self.delete_namespace_contents(&key.1, changes);
        }
        let change = self.apply(
            &resource,
            EventType::Deleted,
            (*current).clone(),
            Some(current),
        );
        changes.push(change.clone());
        if propagation != Propagation::Foreground {
            self.handle_dependents(&uid, propagation, changes);
        }
        Some(Deleted::Gone(change.object.clone()))
    }

    /// Garbage collection: dependents of `owner_uid` are deleted, or orphaned.
    fn handle_dependents(
        &mut self,
        owner_uid: &str,
        propagation: Propagation,
        changes: &mut Vec<Arc<Change>>,
    ) {
        if owner_uid.is_empty() {
            return;
        }
        let dependents: Vec<(Arc<KindInfo>, ObjKey, Arc<StoredObject>)> = self
            .collections
            .values()
            .flat_map(|c| {
                c.objects
                    .iter()
                    .filter(|(_, o)| owner_uids(o).any(|u| u == owner_uid))
                    .map(|(k, o)| (c.kind.clone(), k.clone(), o.clone()))
            })
            .collect();
        for (kind, key, obj) in dependents {
            if propagation == Propagation::Orphan {
                let mut orphan = (*obj).clone();
                if let Some(refs) = orphan
                    .pointer_mut("/metadata/ownerReferences")
                    .and_then(Value::as_array_mut)
                {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
                    if refs.is_empty()
                        && let Some(m) = orphan.get_mut("metadata").and_then(Value::as_object_mut)
                    {
                        m.remove("ownerReferences");
                    }
                }
                changes.push(self.apply(
                    &storage_key(&kind),
                    EventType::Modified,
                    orphan,
                    Some(obj),
                ));
            } else {
                self.delete_cascade(&kind, &key, Propagation::Background, changes);
            }
        }
    }

    fn delete_namespace_contents(&mut self, ns: &str, changes: &mut Vec<Arc<Change>>) {
        let doomed: Vec<(Arc<str>, Arc<StoredObject>)> = self
            .collections
            .values()
            .filter(|c| c.kind.namespaced)
            .flat_map(|c| {
                let start = (ns.to_string(), String::new());
                c.objects
                    .range(start..)
                    .take_while(|((o_ns, _), _)| o_ns == ns)
                    .map(|(_, o)| (c.key.clone(), o.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (resource, obj) in doomed {
            changes.push(self.apply(&resource, EventType::Deleted, (*obj).clone(), Some(obj)));
        }
    }
}

impl Store {
    /// An empty store for the registry's kinds, keeping `history_limit` changes.
    pub fn new(registry: Registry, history_limit: usize) -> Self {
        let collections = registry
            .kinds()
            .iter()
            .map(|k| {
                let key = storage_key(k);
                (
                    key.clone(),
                    Collection {
                        kind: k.clone(),
                        key,
                        objects: BTreeMap::new(),
                        watch_from: START_RV,
                    },
                )
            })
            .collect();
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        Store {
            inner: RwLock::new(Inner {
                rv: START_RV,
                collections,
                history: History::new(history_limit, START_RV),
            }),
            feed,
            registry: RwLock::new(Arc::new(registry)),
        }
    }

    /// The kinds served now.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.read().clone()
    }

    /// Serves what the CustomResourceDefinitions among `changes` define, as the
    /// apiextensions-apiserver does once a definition is established: new kinds get storage,
    /// and a deleted definition takes its objects with it. Called with the write lock held.
    fn sync_definitions(&self, inner: &mut Inner, changes: &[Arc<Change>]) {
        for change in changes.iter().filter(|c| &*c.resource == crd::RESOURCE) {
            let group = change
                .object
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let plural = change
                .object
                .pointer("/spec/names/plural")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let kinds = match change.kind {
                EventType::Deleted => Vec::new(),
                _ => crd::served_kinds(&change.object).unwrap_or_default(),
            };
            let mut registry = self.registry.write();
            let next = registry.with_definition(group, plural, &kinds);
            let key: Arc<str> = format!("{plural}.{group}").into();
            match kinds.first() {
                None => {
                    inner.collections.remove(&key);
                }
                Some(_) => {
                    let served = next
                        .kinds()
                        .iter()
                        .find(|k| k.custom && k.group == group && k.plural == plural)
                        .cloned();
                    if let Some(kind) = served {
                        inner
                            .collections
                            .entry(key.clone())
                            .and_modify(|c| c.kind = kind.clone())
                            .or_insert_with(|| Collection {
                                kind,
                                key,
                                objects: BTreeMap::new(),
                                watch_from: change.rv,
                            });
                    }
                }
            }
            *registry = Arc::new(next);
        }
    }

    /// The newest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner.read().rv
    }

    /// Ends a write: serves what its definitions define, publishes its changes, then lets
    /// the write lock go (held until the changes are sent, so watchers see them in
    /// resourceVersion order).
    fn commit(&self, mut inner: RwLockWriteGuard<'_, Inner>, changes: Vec<Arc<Change>>) {
        self.sync_definitions(&mut inner, &changes);
        self.publish(changes);
    }

    /// Sends changes to live watchers; called with the write lock held so that watchers see
    /// changes in resourceVersion order.
    fn publish(&self, changes: Vec<Arc<Change>>) {
        for c in changes {
            // No receivers is normal: nobody is watching.
            let _ = self.feed.send(c);
        }
    }

    /// One object.
    pub fn get(
        &self,
        kind: &KindInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Arc<StoredObject>, StatusError> {
        let inner = self.inner.read();
        inner
            .collections
            .get(&*storage_key(kind))
            .and_then(|c| c.objects.get(&obj_key(kind, ns, name)))
            .cloned()
            .ok_or_else(|| StatusError::not_found(kind, name))
    }

    /// A page of objects in `ns` (or everywhere) that pass the selectors.
    pub fn list(
        &self,
        kind: &KindInfo,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListPage, StatusError> {
        let inner = self.inner.read();
        let (list_rv, after) = match &opts.continue_token {
            Some(t) => {
                let (rv, last) = decode_continue(t)?;
                if rv < inner.history.compacted() {
                    return Err(StatusError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    ));
                }
                (rv, Some(last))
            }
            None => (inner.rv, None),
        };
        let Some(c) = inner.collections.get(&*storage_key(kind)) else {
            return Err(StatusError::not_found(kind, ""));
        };
        let lower = match &after {
            Some(k) => Bound::Excluded(k.clone()),
            None => match ns.filter(|_| kind.namespaced) {
                Some(ns) => Bound::Included((ns.to_string(), String::new())),
                None => Bound::Unbounded,
            },
        };
        let ns_filter = ns.filter(|_| kind.namespaced);
        let matching = c
            .objects
            .range((lower, Bound::Unbounded))
            .take_while(|((o_ns, _), _)| ns_filter.is_none_or(|n| n == o_ns))
            .filter(|(_, o)| opts.selectors.matches(o));
        let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let (mut items, mut last, mut remaining) = (Vec::new(), None, 0usize);
        for (k, o) in matching {
            if items.len() < limit {
                items.push(o.clone());
                last = Some(k);
            } else {
                remaining += 1;
            }
        }
        let (continue_token, remaining) = match last {
            Some(last) if remaining > 0 => (Some(encode_continue(list_rv, last)), Some(remaining)),
            _ => (None, None),
        };
        Ok(ListPage {
            resource_version: list_rv,
            items,
            continue_token,
            remaining,
        })
    }

    fn check_namespace(
        inner: &Inner,
        kind: &KindInfo,
        ns: Option<&str>,
    ) -> Result<(), StatusError> {
        if !kind.namespaced {
            return Ok(());
        }
        let ns = ns.unwrap_or_default();
        let found = inner
            .collections
            .get("namespaces")
            .and_then(|c| c.objects.get(&(String::new(), ns.to_string())));
        match found {
            None => {
                let ns_kind = inner.collections.get("namespaces").map(|c| c.kind.clone());
                Err(match ns_kind {
                    Some(k) => StatusError::not_found(&k, ns),
                    None => StatusError::internal("namespaces are not served"),
                })
            }
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                Err(StatusError::forbidden(
                    kind,
                    "",
                    format!(
                        "{} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        kind.qualified_resource()
                    ),
                ))
            }
            Some(_) => Ok(()),
        }
    }

    /// Creates an object; `ns` is the namespace of the request path.
    pub fn create(
        &self,
        kind: &Arc<KindInfo>,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Arc<StoredObject>, StatusError> {
        if !obj.is_object() {
            return Err(StatusError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        if !meta::resource_version_of(&obj).is_empty() {
            return Err(StatusError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let ns = ns.filter(|_| kind.namespaced);
        if let Some(body_ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str)
            && !body_ns.is_empty()
            && ns.is_some_and(|n| n != body_ns)
        {
            return Err(StatusError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta::prepare_create(kind, &mut obj, ns);
        defaults::apply(kind, &mut obj);
        encoding::apply(kind, &mut obj);
        let name = meta::name_of(&obj).to_string();
        let causes = validation::validate(kind, &obj, None);
        if !causes.is_empty() {
            return Err(StatusError::invalid(kind, &name, causes));
        }
        defaults::after_validation(kind, &mut obj);
        let mut inner = self.inner.write();
        Self::check_namespace(&inner, kind, ns)?;
        let key = obj_key(kind, ns, &name);
        let resource = storage_key(kind);
        if inner.collection(kind)?.objects.contains_key(&key) {
            return Err(StatusError::already_exists(kind, &name));
        }
        if dry_run {
            return Ok(StoredObject::new(obj));
        }
        let change = inner.apply(&resource, EventType::Added, obj, None);
        let out = change.object.clone();
        let changes = vec![change];
        self.commit(inner, changes);
        Ok(out)
    }

    /// Replaces an object (PUT), honouring a resourceVersion precondition in the body.
    pub fn update(
        &self,
        kind: &Arc<KindInfo>,
        ns: Option<&str>,
        name: &str,
        obj: Value,
        part: Part,
        dry_run: bool,
    ) -> Result<Arc<StoredObject>, StatusError> {
        if !obj.is_object() {
            return Err(StatusError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        self.modify(kind, ns, name, part, dry_run, |_| Ok(obj))
    }

    /// Read-modify-write under the store lock: `f` turns the stored object into the new one
    /// (a patch, or a replacement). A resourceVersion in the result that differs from the
    /// stored one is a conflict, so clients can compare-and-swap.
    pub fn modify(
        &self,
        kind: &Arc<KindInfo>,
        ns: Option<&str>,
        name: &str,
        part: Part,
        dry_run: bool,
        f: impl FnOnce(&Value) -> Result<Value, StatusError>,
    ) -> Result<Arc<StoredObject>, StatusError> {
        let ns = ns.filter(|_| kind.namespaced);
        let key = obj_key(kind, ns, name);
        let mut inner = self.inner.write();
        let resource = storage_key(kind);
        let old = inner.current(kind, &key, name)?;
        let new = f(&old)?;
        if !new.is_object() {
            // A JSON patch may replace the whole document with anything.
            return Err(StatusError::bad_request(format!(
                "the updated {} \"{name}\" is not a JSON object",
                kind.kind
            )));
        }
        let body_name = meta::name_of(&new);
        if !body_name.is_empty() && body_name != name {
            return Err(StatusError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if let (Some(want), Some(body_ns)) = (
            ns,
            new.pointer("/metadata/namespace").and_then(Value::as_str),
        ) && !body_ns.is_empty()
            && body_ns != want
        {
            return Err(StatusError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let body_rv = meta::resource_version_of(&new);
        if !body_rv.is_empty() && body_rv != meta::resource_version_of(&old) {
            return Err(StatusError::conflict(kind, name));
        }
        check_uid(kind, name, Some(meta::uid_of(&new)), &old)?;
        let mut next = meta::prepare_update(kind, &old, new, part);
        meta::metadata_mut(&mut next).insert(
            "resourceVersion".into(),
            json!(meta::resource_version_of(&old)),
        );
        defaults::apply(kind, &mut next);
        encoding::apply(kind, &mut next);
        let causes = validation::validate(kind, &next, Some(&old));
        if !causes.is_empty() {
            return Err(StatusError::invalid(kind, name, causes));
        }
        defaults::after_validation(kind, &mut next);
        if meta::same_content(&old, &next) {
            return Ok(old);
        }
        if dry_run {
            return Ok(StoredObject::new(next));
        }
        let finished =
            next.pointer("/metadata/deletionTimestamp").is_some() && !finalizers_pending(&next);
        let kind_of_change = if finished {
            EventType::Deleted
        } else {
            EventType::Modified
        };
        let mut changes = vec![inner.apply(&resource, kind_of_change, next, Some(old))];
        let out = changes[0].object.clone();
        if finished {
            inner.handle_dependents(meta::uid_of(&out), Propagation::Background, &mut changes);
        }
        self.commit(inner, changes);
        Ok(out)
    }

    /// Deletes an object with garbage collection of its dependents.
    pub fn delete(
        &self,
        kind: &Arc<KindInfo>,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, StatusError> {
        let ns = ns.filter(|_| kind.namespaced);
        let key = obj_key(kind, ns, name);
        let mut inner = self.inner.write();
        let current = inner.current(kind, &key, name)?;
        if kind.kind == "Namespace" && IMMORTAL_NAMESPACES.contains(&name) {
            return Err(StatusError::forbidden(
                kind,
                name,
                format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"),
            ));
        }
        check_uid(kind, name, opts.uid.as_deref(), &current)?;
        if let Some(rv) = opts
            .resource_version
            .as_deref()
            .filter(|rv| *rv != meta::resource_version_of(&current))
        {
            return Err(StatusError::conflict_with(
                kind,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta::resource_version_of(&current)
                ),
            ));
        }
        if opts.dry_run {
            return Ok(Deleted::Gone(current));
        }
        let propagation = opts
            .propagation
            .unwrap_or_else(|| Propagation::default_for(kind));
        let mut changes = Vec::new();
        let outcome = inner
            .delete_cascade(kind, &key, propagation, &mut changes)
            .ok_or_else(|| StatusError::not_found(kind, name))?;
        self.commit(inner, changes);
        Ok(outcome)
    }

    /// Starts a watch on `kind` in `ns` (or everywhere).
    pub fn watch(
        &self,
        kind: &KindInfo,
        ns: Option<&str>,
        selectors: &Selectors,
        from: WatchFrom,
    ) -> Result<WatchStart, StatusError> {
        let inner = self.inner.read();
        let resource = storage_key(kind);
        let ns = ns.filter(|_| kind.namespaced);
        let live = self.feed.subscribe();
        let initial = match from {
            WatchFrom::After(rv) => {
                let oldest = inner
                    .collections
                    .get(&resource)
                    .map_or(0, |c| c.watch_from)
                    .max(inner.history.compacted());
                inner
                    .history
                    .since(rv)
                    .filter(|_| rv >= oldest)
                    .ok_or_else(|| too_old(rv, oldest))?
                    .filter(|c| c.resource == resource && ns.is_none_or(|n| n == c.namespace))
                    .cloned()
                    .collect()
            }
            WatchFrom::Now => {
                let c = inner
                    .collections
                    .get(&resource)
                    .ok_or_else(|| StatusError::not_found(kind, ""))?;
                c.objects
                    .iter()
                    .filter(|((o_ns, _), o)| ns.is_none_or(|n| n == o_ns) && selectors.matches(o))
                    .map(|((o_ns, _), o)| {
                        Arc::new(Change::new(
                            inner.rv,
                            resource.clone(),
                            o_ns.clone(),
                            EventType::Added,
                            o.clone(),
                            None,
                        ))
                    })
                    .collect()
            }
        };
        Ok(WatchStart {
            initial,
            live,
            resource_version: inner.rv,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::selectors::LabelSelector;

    fn setup() -> (Store, Arc<KindInfo>, Arc<KindInfo>) {
        let store = Store::new(Registry::new(&[]), 100);
        let ns = store.registry().lookup("", "v1", "namespaces").unwrap();
        let cm = store.registry().lookup("", "v1", "configmaps").unwrap();
        store
            .create(&ns, None, json!({"metadata": {"name": "a"}}), false)
            .unwrap();
        (store, ns, cm)
    }

    #[test]
    fn create_get_conflict_and_noop_update() {
        let (store, _, cm) = setup();
        let o = store
            .create(
                &cm,
                Some("a"),
                json!({"metadata": {"name": "x"}, "data": {"k": "v"}}),
                false,
            )
            .unwrap();
        let rv = meta::resource_version_of(&o).to_string();
        let again = store.create(&cm, Some("a"), json!({"metadata": {"name": "x"}}), false);
        assert_eq!(again.unwrap_err().reason, "AlreadyExists");
        let same = store
            .update(&cm, Some("a"), "x", (*o).clone(), Part::Main, false)
            .unwrap();
        assert_eq!(
            meta::resource_version_of(&same),
            rv,
            "no-op update keeps the version"
        );
        let mut changed = (*o).clone();
        changed["data"]["k"] = json!("w");
        let new = store
            .update(&cm, Some("a"), "x", changed.clone(), Part::Main, false)
            .unwrap();
        assert_ne!(meta::resource_version_of(&new), rv);
        let stale = store.update(&cm, Some("a"), "x", changed, Part::Main, false);
        assert_eq!(stale.unwrap_err().reason, "Conflict");
        let missing_ns = store.create(&cm, Some("nope"), json!({"metadata": {"name": "x"}}), false);
        assert_eq!(
            missing_ns.unwrap_err().message,
            "namespaces \"nope\" not found"
        );
    }

    #[test]
    fn a_patch_that_replaces_the_document_is_refused() {
        let (store, _, cm) = setup();
        store
            .create(&cm, Some("a"), json!({"metadata": {"name": "x"}}), false)
            .unwrap();
        let err = store
            .modify(&cm, Some("a"), "x", Part::Main, false, |_| Ok(json!(5)))
            .unwrap_err();
        assert_eq!(err.code.as_u16(), 400);
    }

    #[test]
    fn list_pages_and_selects() {
        let (store, _, cm) = setup();
        for i in 0..5 {
            let labels = json!({"i": i.to_string(), "even": (i % 2 == 0).to_string()});
            store
                .create(
                    &cm,
                    Some("a"),
                    json!({"metadata": {"name": format!("c{i}"), "labels": labels}}),
                    false,
                )
                .unwrap();
        }
        let mut opts = ListOptions {
            limit: Some(2),
            ..Default::default()
        };
        let p1 = store.list(&cm, Some("a"), &opts).unwrap();
        assert_eq!(p1.items.len(), 2);
        assert_eq!(p1.remaining, Some(3));
        opts.continue_token = p1.continue_token.clone();
        let p2 = store.list(&cm, Some("a"), &opts).unwrap();
        assert_eq!(meta::name_of(&p2.items[0]), "c2");
        opts.selectors.labels = LabelSelector::parse("even=true").unwrap();
        opts.limit = None;
        opts.continue_token = None;
        assert_eq!(store.list(&cm, None, &opts).unwrap().items.len(), 3);
    }

    #[test]
    fn continue_tokens_expire_with_the_history() {
        let store = Store::new(Registry::new(&[]), 2);
        let ns = store.registry().lookup("", "v1", "namespaces").unwrap();
        let cm = store.registry().lookup("", "v1", "configmaps").unwrap();
        store
            .create(&ns, None, json!({"metadata": {"name": "a"}}), false)
            .unwrap();
        for i in 0..3 {
            store
                .create(
                    &cm,
                    Some("a"),
                    json!({"metadata": {"name": format!("c{i}")}}),
                    false,
                )
                .unwrap();
        }
        let mut opts = ListOptions {
            limit: Some(1),
            ..Default::default()
        };
        opts.continue_token = store.list(&cm, Some("a"), &opts).unwrap().continue_token;
        assert!(store.list(&cm, Some("a"), &opts).is_ok());
        for i in 3..6 {
            store
                .create(
                    &cm,
                    Some("a"),
                    json!({"metadata": {"name": format!("c{i}")}}),
                    false,
                )
                .unwrap();
        }
        let gone = store.list(&cm, Some("a"), &opts).unwrap_err();
        assert_eq!((gone.code.as_u16(), gone.reason), (410, "Expired"));
    }

    #[test]
    fn namespace_deletion_removes_contents_and_history_expires() {
        let store = Store::new(Registry::new(&[]), 3);
        let ns = store.registry().lookup("", "v1", "namespaces").unwrap();
        let cm = store.registry().lookup("", "v1", "configmaps").unwrap();
        store
            .create(&ns, None, json!({"metadata": {"name": "a"}}), false)
            .unwrap();
        let first = store.resource_version();
        for i in 0..3 {
            store
                .create(
                    &cm,
                    Some("a"),
                    json!({"metadata": {"name": format!("c{i}")}}),
                    false,
                )
                .unwrap();
        }
        store
            .delete(&ns, None, "a", &DeleteOptions::default())
            .unwrap();
        assert!(store.get(&cm, Some("a"), "c0").is_err());
        let err = store
            .watch(&cm, None, &Selectors::default(), WatchFrom::After(first))
            .err()
            .unwrap();
        assert_eq!(err.code.as_u16(), 410);
    }

    #[test]
    fn a_kind_is_watchable_only_from_its_definition_on() {
        let (store, _, cm) = setup();
        let crds = store
            .registry()
            .lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .unwrap();
        let before = store.resource_version();
        let defined = store
            .create(
                &crds,
                None,
                json!({"metadata": {"name": "widgets.example.com"}, "spec": {
                    "group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "widgets", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object",
                            "x-kubernetes-preserve-unknown-fields": true}}}]}}),
                false,
            )
            .unwrap();
        let defined_at: u64 = meta::resource_version_of(&defined).parse().unwrap();
        let widgets = store
            .registry()
            .lookup("example.com", "v1", "widgets")
            .unwrap();
        let watch = |kind, rv| store.watch(kind, None, &Selectors::default(), WatchFrom::After(rv));
        let gone = watch(&widgets, before).err().unwrap();
        assert_eq!((gone.code.as_u16(), gone.reason), (410, "Expired"));
        assert_eq!(
            gone.message,
            format!("too old resource version: {before} ({defined_at})")
        );
        assert!(watch(&widgets, defined_at).is_ok());
        assert!(
            watch(&cm, before).is_ok(),
            "a built-in kind keeps its history"
        );
    }
}
