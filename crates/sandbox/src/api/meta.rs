//! Pure object preparation: the server-owned metadata and the status/spec split that each
//! kind's registry strategy applies on create and update in kube-apiserver.

use super::kinds::{GenerationPolicy, KindInfo};
use serde_json::{Map, Value, json};

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The resource itself: status is kept from the stored object.
    Main,
    /// The `/status` subresource: only status changes.
    Status,
}

/// RFC 3339 seconds, as metav1.Time serializes.
pub fn now_rfc3339() -> String {
    rfc3339(jiff::Timestamp::now())
}

/// `t` in RFC 3339 seconds, as metav1.Time serializes.
pub fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `metadata.name` (empty when absent).
pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `metadata.resourceVersion` (empty when absent).
pub fn resource_version_of(obj: &Value) -> &str {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `metadata.uid` (empty when absent).
pub fn uid_of(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The object's `metadata` map, created when missing.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// Letters kube-apiserver's name generator draws from (no vowels, no look-alikes).
const GENERATE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Five random characters for `generateName`.
fn random_suffix() -> String {
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| GENERATE_ALPHABET[*b as usize % GENERATE_ALPHABET.len()] as char)
        .collect()
}

/// Fills what the server owns on create; `rv` is the resourceVersion the object will carry.
pub fn prepare_create(kind: &KindInfo, obj: &mut Value, namespace: Option<&str>) {
    obj["apiVersion"] = json!(kind.api_version());
    obj["kind"] = json!(kind.kind);
    let meta = metadata_mut(obj);
    let has_name = meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if !has_name && let Some(prefix) = meta.get("generateName").and_then(Value::as_str) {
        let name = format!("{prefix}{}", random_suffix());
        meta.insert("name".into(), json!(name));
    }
    match namespace {
        Some(ns) => meta.insert("namespace".into(), json!(ns)),
        None => meta.remove("namespace"),
    };
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    for server_owned in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "resourceVersion",
    ] {
        meta.remove(server_owned);
    }
    if kind.generation == GenerationPolicy::None {
        meta.remove("generation");
    } else {
        meta.insert("generation".into(), json!(1));
    }
    reset_status_on_create(kind, obj);
}

/// Each strategy's PrepareForCreate decides what status a new object starts with.
fn reset_status_on_create(kind: &KindInfo, obj: &mut Value) {
    if !kind.has_status || kind.kind == "Node" {
        return;
    }
    let Some(o) = obj.as_object_mut() else { return };
    o.remove("status");
    if kind.custom {
        return;
    }
    match kind.kind.as_str() {
        "Pod" => {
            o.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": "BestEffort"}),
            );
        }
        "Namespace" => {
            o.insert("status".into(), json!({"phase": "Active"}));
        }
        _ => {
            o.insert("status".into(), json!({}));
        }
    }
}

/// Builds the object to store from an update of `old` to `new`, keeping what the server owns.
/// Returns the merged object; the caller assigns the resourceVersion.
pub fn prepare_update(kind: &KindInfo, old: &Value, new: Value, part: Part) -> Value {
    let mut out = match part {
        Part::Status => {
            let mut out = old.clone();
            match new.get("status") {
                Some(status) => out["status"] = status.clone(),
                None => {
                    if let Some(o) = out.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            out
        }
        Part::Main => {
            let mut out = new;
            if kind.has_status {
                match old.get("status") {
                    Some(status) => out["status"] = status.clone(),
                    None => {
                        if let Some(o) = out.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            out
        }
    };
    out["apiVersion"] = json!(kind.api_version());
    out["kind"] = json!(kind.kind);
    let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let meta = metadata_mut(&mut out);
    for owned in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(owned) {
            Some(v) => meta.insert(owned.into(), v.clone()),
            None => meta.remove(owned),
        };
    }
    if generation_changes(kind, old, &out)
        && let Some(g) = old_meta.get("generation").and_then(Value::as_i64)
    {
        metadata_mut(&mut out).insert("generation".into(), json!(g + 1));
    }
    out
}

fn generation_changes(kind: &KindInfo, old: &Value, new: &Value) -> bool {
    match kind.generation {
        GenerationPolicy::None => false,
        GenerationPolicy::Spec => old.get("spec") != new.get("spec"),
        GenerationPolicy::AllButMetadataAndStatus => match (old.as_object(), new.as_object()) {
            (Some(o), Some(n)) => {
                !equal_except(o, n, &["metadata", "status", "apiVersion", "kind"])
            }
            _ => old != new,
        },
    }
}

/// Whether two maps are equal but for the keys in `skip`.
fn equal_except(x: &Map<String, Value>, y: &Map<String, Value>, skip: &[&str]) -> bool {
    let kept = |m: &Map<String, Value>| m.keys().filter(|k| !skip.contains(&k.as_str())).count();
    kept(x) == kept(y)
        && x.iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .all(|(k, v)| y.get(k) == Some(v))
}

fn metadata_of<'a>(
    m: &'a Map<String, Value>,
    empty: &'a Map<String, Value>,
) -> &'a Map<String, Value> {
    m.get("metadata")
        .and_then(Value::as_object)
        .unwrap_or(empty)
}

/// Whether two versions of an object differ in anything but their resourceVersion: an update
/// that changes nothing is a no-op on the real server (no new resourceVersion, no event).
/// Compared in place, without copies: this runs on every write.
pub fn same_content(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let empty = Map::new();
    equal_except(a, b, &["metadata"])
        && equal_except(
            metadata_of(a, &empty),
            metadata_of(b, &empty),
            &["resourceVersion", "managedFields"],
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::kinds::Registry;

    #[test]
    fn create_sets_server_fields_and_generation_only_where_the_kind_has_it() {
        let r = Registry::new(&[]);
        let cm = r.lookup("", "v1", "configmaps").unwrap();
        let mut o =
            json!({"metadata": {"generateName": "x-", "generation": 5}, "data": {"a": "b"}});
        prepare_create(&cm, &mut o, Some("ns"));
        assert!(name_of(&o).starts_with("x-") && name_of(&o).len() == 7);
        assert_eq!(o["metadata"]["namespace"], "ns");
        assert!(o["metadata"].get("generation").is_none());
        assert_eq!(o["kind"], "ConfigMap");

        let job = r.lookup("batch", "v1", "jobs").unwrap();
        let mut j = json!({"metadata": {"name": "j"}, "spec": {"a": 1}, "status": {"active": 1}});
        prepare_create(&job, &mut j, Some("ns"));
        assert_eq!(j["metadata"]["generation"], 1);
        assert_eq!(j["status"], json!({}));
    }

    #[test]
    fn same_content_ignores_only_the_resource_version() {
        let a = json!({"metadata": {"name": "x", "resourceVersion": "1"}, "data": {"k": "v"}});
        let b = json!({"metadata": {"name": "x", "resourceVersion": "2"}, "data": {"k": "v"}});
        assert!(same_content(&a, &b));
        let c = json!({"metadata": {"name": "x", "resourceVersion": "2", "labels": {}}, "data": {"k": "v"}});
        assert!(!same_content(&a, &c));
        let d = json!({"metadata": {"name": "x"}, "data": {"k": "w"}});
        assert!(!same_content(&a, &d));
    }

    #[test]
    fn update_bumps_generation_on_spec_change_and_keeps_status() {
        let r = Registry::new(&[]);
        let job = r.lookup("batch", "v1", "jobs").unwrap();
        let old = json!({"metadata": {"name": "j", "uid": "u", "generation": 1}, "spec": {"a": 1}, "status": {"active": 1}});
        let relabel = json!({"metadata": {"name": "j", "labels": {"x": "y"}}, "spec": {"a": 1}, "status": {}});
        let out = prepare_update(&job, &old, relabel, Part::Main);
        assert_eq!(out["metadata"]["generation"], 1);
        assert_eq!(out["metadata"]["uid"], "u");
        assert_eq!(out["status"]["active"], 1);
        let respec = json!({"metadata": {"name": "j"}, "spec": {"a": 2}});
        assert_eq!(
            prepare_update(&job, &old, respec, Part::Main)["metadata"]["generation"],
            2
        );
        let status = json!({"metadata": {"name": "j"}, "spec": {"a": 9}, "status": {"active": 0}});
        let out = prepare_update(&job, &old, status, Part::Status);
        assert_eq!(out["spec"]["a"], 1);
        assert_eq!(out["status"]["active"], 0);
        assert_eq!(out["metadata"]["generation"], 1);
    }
}
