//! Kinds served in one API version but stored in another, as kube-apiserver does for
//! events.k8s.io/v1 Events (stored as core/v1 Events, so `kubectl get events` shows what
//! `kube::runtime::events::Recorder` writes). Field mapping: pkg/apis/events/v1/conversion.go.

use super::history::StoredObject;
use super::kinds::{KindInfo, Registry};
use serde_json::{Value, json};
use std::sync::Arc;

/// (core/v1 name, events.k8s.io/v1 name) of the renamed Event fields.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// The kind a request addresses and the kind its objects are stored as.
#[derive(Debug, Clone)]
pub struct View {
    /// The kind of the request's API version.
    pub api: Arc<KindInfo>,
    /// The kind the store keeps (the same unless converted).
    pub storage: Arc<KindInfo>,
}

impl View {
    /// The view of `kind`.
    pub fn of(registry: &Registry, kind: &Arc<KindInfo>) -> View {
        let storage = if kind.group == "events.k8s.io" && kind.kind == "Event" {
            registry.lookup("", "v1", "events")
        } else {
            None
        };
        View {
            api: kind.clone(),
            storage: storage.unwrap_or_else(|| kind.clone()),
        }
    }

    fn converts(&self) -> bool {
        !Arc::ptr_eq(&self.api, &self.storage)
    }

    /// A request body, as the store keeps it.
    pub fn inbound(&self, obj: Value) -> Value {
        if self.converts() {
            rename(obj, &self.storage, false)
        } else {
            obj
        }
    }

    /// A stored object, as the request's API version shows it.
    pub fn outbound(&self, obj: &Arc<StoredObject>) -> Arc<StoredObject> {
        if self.converts() {
            StoredObject::new(self.outbound_value(Value::clone(obj)))
        } else {
            obj.clone()
        }
    }

    /// [`Self::outbound`] for a plain value.
    pub fn outbound_value(&self, obj: Value) -> Value {
        if self.converts() {
            rename(obj, &self.api, true)
        } else {
            obj
        }
    }

    /// A field selector in the request's terms, in the store's terms.
    pub fn field_selector(&self, spec: &str) -> String {
        if !self.converts() {
            return spec.to_string();
        }
        spec.split(',')
            .map(|req| {
                EVENT_FIELDS
                    .iter()
                    .find_map(|(core, api)| {
                        req.trim_start()
                            .strip_prefix(api)
                            .filter(|rest| rest.starts_with(['.', '=', '!']))
                            .map(|rest| format!("{core}{rest}"))
                    })
                    .unwrap_or_else(|| req.to_string())
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Renames the Event fields to their events.k8s.io names (`to_api`) or back to core ones,
/// and stamps `to`'s apiVersion and kind.
fn rename(mut obj: Value, to: &KindInfo, to_api: bool) -> Value {
    if let Some(m) = obj.as_object_mut() {
        for (core, api) in EVENT_FIELDS {
            let (from, into) = if to_api { (core, api) } else { (api, core) };
            if let Some(v) = m.remove(*from) {
                m.insert(into.to_string(), v);
            }
        }
        m.insert("apiVersion".into(), json!(to.api_version()));
        m.insert("kind".into(), json!(to.kind));
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_v1_are_stored_as_core_events() {
        let r = Registry::new(&[]);
        let ev = r.lookup("events.k8s.io", "v1", "events").unwrap();
        let view = View::of(&r, &ev);
        let stored = view.inbound(json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "regarding": {"name": "j"}, "note": "hi", "reason": "Started"}));
        assert_eq!(stored["involvedObject"]["name"], "j");
        assert_eq!(stored["message"], "hi");
        assert_eq!(stored["apiVersion"], "v1");
        let shown = view.outbound(&StoredObject::new(stored));
        assert_eq!(shown["regarding"]["name"], "j");
        assert_eq!(shown["apiVersion"], "events.k8s.io/v1");
        assert_eq!(
            view.field_selector("regarding.name=j,reason=Started"),
            "involvedObject.name=j,reason=Started"
        );
        let cm = r.lookup("", "v1", "configmaps").unwrap();
        assert!(Arc::ptr_eq(&View::of(&r, &cm).storage, &cm));
    }
}
