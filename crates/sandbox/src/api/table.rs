//! Server-side printing: `meta.k8s.io/v1` Tables for `kubectl get`, with the columns
//! kube-apiserver's printers give the served kinds (pkg/printers/internalversion/printers.go).

use super::history::StoredObject;
use super::kinds::KindInfo;
use super::meta;
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};
use std::sync::Arc;

/// Whether the client asked for a Table (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept
                .split(',')
                .next()
                .is_some_and(|first| first.contains("as=Table"))
        })
}

/// kubectl's age format (k8s.io/apimachinery/pkg/util/duration.HumanDuration).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let minutes = s / 60;
    if minutes < 10 {
        return match s % 60 {
            0 => format!("{minutes}m"),
            r => format!("{minutes}m{r}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = s / 3600;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            d => format!("{}y{d}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn since(time: &str) -> String {
    match time.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

fn age(obj: &Value) -> String {
    since(s(obj, "/metadata/creationTimestamp"))
}

/// `kubectl get events` columns, for core/v1 and events.k8s.io/v1 field names alike.
fn event_cells(obj: &Value) -> Vec<Value> {
    let first = |pointers: &[&str]| {
        pointers
            .iter()
            .map(|p| s(obj, p))
            .find(|v| !v.is_empty())
            .unwrap_or_default()
            .to_string()
    };
    let last_seen = first(&[
        "/series/lastObservedTime",
        "/lastTimestamp",
        "/deprecatedLastTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]);
    let object = format!(
        "{}/{}",
        first(&["/involvedObject/kind", "/regarding/kind"]).to_lowercase(),
        first(&["/involvedObject/name", "/regarding/name"])
    );
    vec![
        json!(since(&last_seen)),
        json!(s(obj, "/type")),
        json!(s(obj, "/reason")),
        json!(object),
        json!(first(&["/message", "/note"])),
    ]
}

fn s<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn n(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or_default()
}

fn count(obj: &Value, pointer: &str) -> usize {
    match obj.pointer(pointer) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

fn condition_true(obj: &Value, kind: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

/// Column names (and types) per kind, then the cells of one object.
fn columns(kind: &KindInfo) -> &'static [(&'static str, &'static str)] {
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "ConfigMap") => &[("Name", "string"), ("Data", "integer"), ("Age", "string")],
        ("", "Secret") => &[
            ("Name", "string"),
            ("Type", "string"),
            ("Data", "integer"),
            ("Age", "string"),
        ],
        ("", "Pod") => &[
            ("Name", "string"),
            ("Ready", "string"),
            ("Status", "string"),
            ("Restarts", "string"),
            ("Age", "string"),
        ],
        ("", "Node") => &[("Name", "string"), ("Status", "string"), ("Age", "string")],
        ("", "Namespace") => &[("Name", "string"), ("Status", "string"), ("Age", "string")],
        ("batch", "Job") => &[
            ("Name", "string"),
            ("Status", "string"),
            ("Completions", "string"),
            ("Age", "string"),
        ],
        ("apps", "DaemonSet") => &[
            ("Name", "string"),
            ("Desired", "integer"),
            ("Current", "integer"),
            ("Ready", "integer"),
            ("Up-to-date", "integer"),
            ("Available", "integer"),
            ("Age", "string"),
        ],
        ("coordination.k8s.io", "Lease") => {
            &[("Name", "string"), ("Holder", "string"), ("Age", "string")]
        }
        (_, "Event") => &[
            ("Last Seen", "string"),
            ("Type", "string"),
            ("Reason", "string"),
            ("Object", "string"),
            ("Message", "string"),
        ],
        _ => &[("Name", "string"), ("Age", "string")],
    }
}

fn job_status(obj: &Value) -> &'static str {
    if condition_true(obj, "Complete") {
        "Complete"
    } else if condition_true(obj, "Failed") {
        "Failed"
    } else if obj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        "Suspended"
    } else {
        "Running"
    }
}

fn pod_cells(obj: &Value) -> Vec<Value> {
    let statuses = obj
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    let ready = statuses
        .into_iter()
        .flatten()
        .filter(|c| c["ready"] == true)
        .count();
    let restarts: i64 = statuses
        .into_iter()
        .flatten()
        .filter_map(|c| c["restartCount"].as_i64())
        .sum();
    let mut reason = match s(obj, "/status/reason") {
        "" => s(obj, "/status/phase").to_string(),
        r => r.to_string(),
    };
    // As printPod: the last container with a waiting or terminated state names the status.
    for c in statuses.into_iter().flatten().rev() {
        let waiting = s(c, "/state/waiting/reason");
        let terminated = c.pointer("/state/terminated");
        if !waiting.is_empty() {
            reason = waiting.to_string();
            break;
        }
        if let Some(t) = terminated {
            reason = match (s(t, "/reason"), n(t, "/signal"), n(t, "/exitCode")) {
                ("", 0, code) => format!("ExitCode:{code}"),
                ("", signal, _) => format!("Signal:{signal}"),
                (r, _, _) => r.to_string(),
            };
            break;
        }
    }
    let status = if obj.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating".to_string()
    } else {
        reason
    };
    vec![
        json!(format!("{ready}/{}", count(obj, "/spec/containers"))),
        json!(status),
        json!(restarts.to_string()),
    ]
}

fn cells(kind: &KindInfo, obj: &Value) -> Vec<Value> {
    if kind.kind == "Event" {
        return event_cells(obj);
    }
    let mut out = vec![json!(meta::name_of(obj))];
    let middle = match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "ConfigMap") => vec![json!(count(obj, "/data") + count(obj, "/binaryData"))],
        ("", "Secret") => vec![json!(s(obj, "/type")), json!(count(obj, "/data"))],
        ("", "Pod") => pod_cells(obj),
        ("", "Node") => {
            let ready = if condition_true(obj, "Ready") {
                "Ready"
            } else {
                "NotReady"
            };
            vec![json!(ready)]
        }
        ("", "Namespace") => vec![json!(s(obj, "/status/phase"))],
        ("batch", "Job") => vec![
            json!(job_status(obj)),
            json!(format!(
                "{}/{}",
                n(obj, "/status/succeeded"),
                obj.pointer("/spec/completions")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            )),
        ],
        ("apps", "DaemonSet") => [
            "desiredNumberScheduled",
            "currentNumberScheduled",
            "numberReady",
            "updatedNumberScheduled",
            "numberAvailable",
        ]
        .iter()
        .map(|f| json!(n(obj, &format!("/status/{f}"))))
        .collect(),
        ("coordination.k8s.io", "Lease") => vec![json!(s(obj, "/spec/holderIdentity"))],
        _ => Vec::new(),
    };
    out.extend(middle);
    out.push(json!(age(obj)));
    out
}

fn row(kind: &KindInfo, obj: &Value) -> Value {
    let object = json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    });
    json!({"cells": cells(kind, obj), "object": object})
}

/// A Table of `items`; `list_meta` is the list's metadata (resourceVersion, continue).
pub fn table(kind: &KindInfo, items: &[Arc<StoredObject>], list_meta: Value) -> Value {
    let column_definitions: Vec<Value> = columns(kind)
        .iter()
        .map(|(name, ty)| {
            let format = if *name == "Name" { "name" } else { "" };
            json!({"name": name, "type": ty, "format": format, "description": "", "priority": 0})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": column_definitions,
        "rows": items.iter().map(|o| row(kind, o)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::kinds::Registry;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(3 * 86400), "3d");
    }

    #[test]
    fn pod_status_names_the_container_state() {
        let r = Registry::new(&[]);
        let pod = r.lookup("", "v1", "pods").unwrap();
        let done = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"ready": false, "restartCount": 0,
                "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}});
        assert_eq!(
            cells(&pod, &done)[1..4],
            [json!("0/1"), json!("Completed"), json!("0")]
        );
    }

    #[test]
    fn configmap_and_job_rows() {
        let r = Registry::new(&[]);
        let cm = r.lookup("", "v1", "configmaps").unwrap();
        let t = table(
            &cm,
            &[StoredObject::new(
                json!({"metadata": {"name": "a"}, "data": {"x": "1", "y": "2"}}),
            )],
            json!({}),
        );
        assert_eq!(t["rows"][0]["cells"][0], "a");
        assert_eq!(t["rows"][0]["cells"][1], 2);
        assert_eq!(t["columnDefinitions"][1]["name"], "Data");
        let job = r.lookup("batch", "v1", "jobs").unwrap();
        let done = json!({"metadata": {"name": "j"}, "spec": {"completions": 1},
            "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(cells(&job, &done)[1..3], [json!("Complete"), json!("1/1")]);
        let ev = r.lookup("events.k8s.io", "v1", "events").unwrap();
        let e = json!({"type": "Normal", "reason": "Started", "note": "go",
            "regarding": {"kind": "Job", "name": "j"}, "eventTime": "2020-01-01T00:00:00.000000Z"});
        assert_eq!(
            cells(&ev, &e)[1..],
            [
                json!("Normal"),
                json!("Started"),
                json!("job/j"),
                json!("go")
            ]
        );
    }
}
