//! What kube-apiserver's Go types do to an object on its way through storage: a field tagged
//! `omitempty` that holds its zero value (`0`, `false`, `""`, an empty map or list) is not
//! written, a pointer field keeps its zero, a field without `omitempty` is always written, and
//! a struct-typed field is always written (`{}`, or `null` for an unset `metav1.Time`).
//! Measured against kube-apiserver v1.28 (`tests/conformance.rs` holds each class).

use super::kinds::KindInfo;
use serde_json::{Map, Value};

/// Map-typed fields (Go `map[string]...` with `omitempty`): dropped when empty.
const MAP_FIELDS: &[&str] = &[
    "labels",
    "annotations",
    "data",
    "binaryData",
    "stringData",
    "nodeSelector",
    "matchLabels",
    "limits",
    "requests",
    "capacity",
    "allocatable",
];

/// List-typed fields written even when empty (no `omitempty` in their Go tag); every other
/// list of the builtin kinds is dropped when empty.
const ALWAYS_WRITTEN_LISTS: &[&str] = &["containers", "rules", "verbs"];

/// A field written whatever it holds: when absent, it appears with this value.
#[derive(Clone, Copy)]
enum Always {
    /// An unset `metav1.Time` or `MicroTime`.
    Null,
    /// A struct.
    Object,
    /// An `int32` without `omitempty`.
    Zero,
    /// A `string` without `omitempty`.
    Empty,
}

impl Always {
    fn value(self) -> Value {
        match self {
            Always::Null => Value::Null,
            Always::Object => Value::Object(Map::new()),
            Always::Zero => Value::from(0),
            Always::Empty => Value::from(""),
        }
    }
}

/// Scalar `omitempty` value fields of a PodSpec, relative to it.
const POD_SPEC_OMIT_ZERO: &[&str] = &[
    "nodeName",
    "serviceAccountName",
    "serviceAccount",
    "hostname",
    "subdomain",
    "priorityClassName",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "containers[].workingDir",
    "containers[].stdin",
    "containers[].stdinOnce",
    "containers[].tty",
    "initContainers[].workingDir",
];

/// Fields of a PodSpec always written, relative to it.
const POD_SPEC_ALWAYS: &[(&str, Always)] = &[
    ("containers[].resources", Always::Object),
    ("initContainers[].resources", Always::Object),
];

/// Scalar `omitempty` value fields of a PodStatus, relative to the Pod.
const POD_STATUS_OMIT_ZERO: &[&str] = &[
    "status.phase",
    "status.message",
    "status.reason",
    "status.hostIP",
    "status.podIP",
    "status.nominatedNodeName",
    "status.qosClass",
    "status.conditions[].reason",
    "status.conditions[].message",
    "status.containerStatuses[].containerID",
    "status.containerStatuses[].state.terminated.signal",
    "status.containerStatuses[].state.terminated.reason",
    "status.containerStatuses[].state.terminated.message",
    "status.containerStatuses[].state.terminated.containerID",
    "status.containerStatuses[].state.waiting.reason",
    "status.containerStatuses[].state.waiting.message",
];

/// Scalar `omitempty` value fields per kind (besides those of the pod specs it holds).
fn omit_zero(kind: &KindInfo) -> &'static [&'static str] {
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Pod") => POD_STATUS_OMIT_ZERO,
        ("batch", "Job") => &[
            "status.active",
            "status.succeeded",
            "status.failed",
            "status.completedIndexes",
            "status.conditions[].reason",
            "status.conditions[].message",
        ],
        ("apps", "DaemonSet") => &[
            "status.observedGeneration",
            "status.updatedNumberScheduled",
            "status.numberAvailable",
            "status.numberUnavailable",
        ],
        ("apps", "Deployment") => &[
            "status.observedGeneration",
            "status.replicas",
            "status.updatedReplicas",
            "status.readyReplicas",
            "status.availableReplicas",
            "status.unavailableReplicas",
        ],
        ("", "Event") => &["count", "action"],
        ("", "Node") => &["spec.unschedulable", "spec.podCIDR"],
        _ => &[],
    }
}

/// Fields always written per kind (besides those of the pod specs it holds).
fn always(kind: &KindInfo) -> &'static [(&'static str, Always)] {
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("apps", "DaemonSet") => &[
            ("status.currentNumberScheduled", Always::Zero),
            ("status.numberMisscheduled", Always::Zero),
            ("status.desiredNumberScheduled", Always::Zero),
            ("status.numberReady", Always::Zero),
        ],
        ("", "Event") => &[
            ("source", Always::Object),
            ("firstTimestamp", Always::Null),
            ("lastTimestamp", Always::Null),
            ("eventTime", Always::Null),
            ("reportingComponent", Always::Empty),
            ("reportingInstance", Always::Empty),
        ],
        _ => &[],
    }
}

/// Where a kind holds a PodSpec.
fn pod_spec_paths(kind: &KindInfo) -> &'static [&'static str] {
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Pod") => &["spec"],
        ("batch", "Job") | ("apps", "DaemonSet" | "Deployment" | "ReplicaSet" | "StatefulSet") => {
            &["spec.template.spec"]
        }
        ("batch", "CronJob") => &["spec.jobTemplate.spec.template.spec"],
        _ => &[],
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Calls `f` on every object that holds the last segment of `path` (`a.b[].c`: `[]` walks
/// each element of a list), with that segment.
fn each_parent(value: &mut Value, path: &str, f: &mut dyn FnMut(&mut Map<String, Value>, &str)) {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let Some(map) = value.as_object_mut() else {
        return;
    };
    let (name, list) = match head.strip_suffix("[]") {
        Some(n) => (n, true),
        None => (head, false),
    };
    let Some(rest) = rest else {
        f(map, name);
        return;
    };
    let Some(child) = map.get_mut(name) else {
        return;
    };
    if list {
        for item in child.as_array_mut().into_iter().flatten() {
            each_parent(item, rest, f);
        }
    } else {
        each_parent(child, rest, f);
    }
}

fn omit_zero_at(obj: &mut Value, path: &str) {
    each_parent(obj, path, &mut |map, field| {
        if map.get(field).is_some_and(is_zero) {
            map.remove(field);
        }
    });
}

fn always_at(obj: &mut Value, path: &str, value: Always) {
    each_parent(obj, path, &mut |map, field| {
        if !map.contains_key(field) {
            map.insert(field.to_owned(), value.value());
        }
    });
}

/// Drops empty maps and lists everywhere in `value`, but for lists written even when empty.
fn drop_empty_collections(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, v| match v {
                Value::Object(m) => !(m.is_empty() && MAP_FIELDS.contains(&k.as_str())),
                Value::Array(a) => !a.is_empty() || ALWAYS_WRITTEN_LISTS.contains(&k.as_str()),
                _ => true,
            });
            map.values_mut().for_each(drop_empty_collections);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_empty_collections),
        _ => {}
    }
}

/// Rewrites a builtin object as kube-apiserver would store and answer it.
pub fn apply(kind: &KindInfo, obj: &mut Value) {
    if kind.custom {
        return;
    }
    drop_empty_collections(obj);
    for path in omit_zero(kind) {
        omit_zero_at(obj, path);
    }
    for (path, value) in always(kind) {
        always_at(obj, path, *value);
    }
    for spec in pod_spec_paths(kind) {
        for field in POD_SPEC_OMIT_ZERO {
            omit_zero_at(obj, &format!("{spec}.{field}"));
        }
        for (field, value) in POD_SPEC_ALWAYS {
            always_at(obj, &format!("{spec}.{field}"), *value);
        }
        // An embedded ObjectMeta writes its zero creationTimestamp as null.
        if let Some(template) = spec.strip_suffix(".spec") {
            always_at(
                obj,
                &format!("{template}.metadata.creationTimestamp"),
                Always::Null,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::kinds::Registry;
    use serde_json::json;

    #[test]
    fn value_zeros_go_pointer_zeros_and_required_fields_stay() {
        let r = Registry::new(&[]);
        let job = r.lookup("batch", "v1", "jobs").unwrap();
        let mut j = json!({"spec": {"suspend": false, "template": {"spec": {"containers": [{"name": "c"}]}}},
            "status": {"active": 0, "ready": 0, "succeeded": 1, "failed": 0, "terminating": 0,
                       "completedIndexes": "", "uncountedTerminatedPods": {}}});
        apply(&job, &mut j);
        assert_eq!(
            j["status"],
            json!({"ready": 0, "succeeded": 1, "terminating": 0, "uncountedTerminatedPods": {}})
        );
        assert_eq!(j["spec"]["suspend"], json!(false));
        assert_eq!(
            j["spec"]["template"]["metadata"]["creationTimestamp"],
            Value::Null
        );
        assert_eq!(
            j["spec"]["template"]["spec"]["containers"][0]["resources"],
            json!({})
        );

        let ds = r.lookup("apps", "v1", "daemonsets").unwrap();
        let mut d =
            json!({"status": {"updatedNumberScheduled": 0, "numberReady": 2, "collisionCount": 0}});
        apply(&ds, &mut d);
        assert_eq!(
            d["status"],
            json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                   "numberReady": 2, "collisionCount": 0})
        );
    }

    #[test]
    fn empty_maps_and_lists_go_but_structs_and_containers_stay() {
        let r = Registry::new(&[]);
        let cm = r.lookup("", "v1", "configmaps").unwrap();
        let mut c = json!({"metadata": {"name": "c", "labels": {}, "finalizers": []}, "data": {},
                           "immutable": false});
        apply(&cm, &mut c);
        assert_eq!(c, json!({"metadata": {"name": "c"}, "immutable": false}));

        let pod = r.lookup("", "v1", "pods").unwrap();
        let mut p = json!({"spec": {"containers": [], "securityContext": {}, "volumes": [{"name": "v", "emptyDir": {}}]},
                           "status": {"phase": "Running", "podIP": "", "conditions": [],
                                      "containerStatuses": [{"ready": false, "restartCount": 0, "imageID": "", "lastState": {}}]}});
        apply(&pod, &mut p);
        assert_eq!(p["spec"]["containers"], json!([]));
        assert_eq!(p["spec"]["securityContext"], json!({}));
        assert_eq!(p["spec"]["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(
            p["status"],
            json!({"phase": "Running", "containerStatuses": [{"ready": false, "restartCount": 0, "imageID": "", "lastState": {}}]})
        );
    }
}
