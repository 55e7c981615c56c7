//! Defaulting as kube-apiserver applies it to the kinds clients read back
//! (pkg/apis/core/v1/defaults.go, pkg/apis/batch/v1/defaults.go, job strategy's selector).

use super::crd;
use super::kinds::KindInfo;
use super::meta;
use serde_json::{Map, Value, json};

fn set_default(obj: &mut Map<String, Value>, key: &str, value: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj.insert(key.to_string(), value);
    }
}

/// PodSpec defaults (SetDefaults_PodSpec and container defaults).
fn pod_spec(spec: &mut Value) {
    let Some(s) = spec.as_object_mut() else {
        return;
    };
    set_default(s, "restartPolicy", json!("Always"));
    set_default(s, "dnsPolicy", json!("ClusterFirst"));
    set_default(s, "schedulerName", json!("default-scheduler"));
    set_default(s, "terminationGracePeriodSeconds", json!(30));
    set_default(s, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        for c in s
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(c) = c.as_object_mut() else { continue };
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            let latest = !image.contains(':') || image.ends_with(":latest");
            set_default(
                c,
                "imagePullPolicy",
                json!(if latest { "Always" } else { "IfNotPresent" }),
            );
            set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
            set_default(c, "terminationMessagePolicy", json!("File"));
        }
    }
}

fn template_spec(obj: &mut Value) {
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        pod_spec(spec);
    }
}

/// The labels and selector the Job strategy generates from the Job's uid.
fn job_selector(obj: &mut Value) {
    let uid = meta::uid_of(obj).to_string();
    let name = meta::name_of(obj).to_string();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) || uid.is_empty() {
        return;
    }
    set_default(
        spec,
        "selector",
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    let Some(template) = spec.get_mut("template").and_then(Value::as_object_mut) else {
        return;
    };
    let tmeta = template.entry("metadata").or_insert_with(|| json!({}));
    let Some(tmeta) = tmeta.as_object_mut() else {
        return;
    };
    let labels = tmeta.entry("labels").or_insert_with(|| json!({}));
    if let Some(labels) = labels.as_object_mut() {
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            // The new job-name label is added only where it is a valid label value, so a
            // long name is reported once (through the legacy label).
            if k == "batch.kubernetes.io/job-name" && name.len() > 63 {
                continue;
            }
            set_default(labels, k, json!(v));
        }
    }
}

fn has_labels(obj: &Value, pointer: &str) -> bool {
    obj.pointer(pointer)
        .and_then(Value::as_object)
        .is_some_and(|l| !l.is_empty())
}

/// Defaults that take effect only when the stored object is decoded again (kube-apiserver
/// defaults on every decode, after validation of the write): a Job without labels shows
/// its template's.
pub fn after_validation(kind: &KindInfo, obj: &mut Value) {
    if (kind.group.as_str(), kind.kind.as_str()) == ("batch", "Job") {
        job_labels_from_template(obj);
    }
}

fn job_labels_from_template(obj: &mut Value) {
    if !has_labels(obj, "/metadata/labels")
        && let Some(labels) = obj.pointer("/spec/template/metadata/labels").cloned()
    {
        meta::metadata_mut(obj).insert("labels".into(), labels);
    }
}

/// Secrets: `stringData` is write-only, merged into `data` as base64; `type` defaults to
/// Opaque (secret strategy PrepareForCreate/Update, SetDefaults_Secret).
fn secret(obj: &mut Value) {
    use base64::Engine;
    let Some(o) = obj.as_object_mut() else { return };
    if o.get("type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        o.insert("type".into(), json!("Opaque"));
    }
    let Some(Value::Object(plain)) = o.remove("stringData") else {
        return;
    };
    let data = o.entry("data").or_insert_with(|| json!({}));
    if let Some(data) = data.as_object_mut() {
        for (k, v) in plain {
            let text = v.as_str().unwrap_or_default();
            data.insert(
                k,
                json!(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
}

/// Applies the kind's defaults in place.
pub fn apply(kind: &KindInfo, obj: &mut Value) {
    if kind.custom {
        if let Some(schema) = &kind.schema {
            crd::prune_object(schema, obj);
        }
        return;
    }
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec);
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            crd::establish(obj, &meta::now_rfc3339());
        }
        ("batch", "CronJob") => {
            if let Some(spec) = obj.pointer_mut("/spec/jobTemplate/spec/template/spec") {
                pod_spec(spec);
            }
        }
        ("batch", "Job") => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                set_default(spec, "parallelism", json!(1));
                set_default(spec, "completions", json!(1));
                set_default(spec, "backoffLimit", json!(6));
                set_default(spec, "completionMode", json!("NonIndexed"));
                set_default(spec, "suspend", json!(false));
            }
            // A Job without labels of its own takes its pod template's (SetDefaults_Job).
            // When the template brought labels, the two are one Go map, so the labels the
            // strategy generates land in both and are validated in both; otherwise the Job
            // gets them only when the stored object is decoded again (`after_validation`).
            let aliased = !has_labels(obj, "/metadata/labels")
                && has_labels(obj, "/spec/template/metadata/labels");
            job_selector(obj);
            if aliased {
                job_labels_from_template(obj);
            }
            template_spec(obj);
        }
        ("", "Secret") => secret(obj),
        ("apps", "DaemonSet") => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                set_default(spec, "revisionHistoryLimit", json!(10));
                set_default(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
                );
            }
            template_spec(obj);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::kinds::Registry;

    #[test]
    fn job_gets_selector_labels_and_pod_defaults() {
        let r = Registry::new(&[]);
        let job = r.lookup("batch", "v1", "jobs").unwrap();
        let mut j = json!({"metadata": {"name": "j", "uid": "u1"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}});
        apply(&job, &mut j);
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(
            j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u1"
        );
        assert_eq!(j["spec"]["template"]["metadata"]["labels"]["job-name"], "j");
        assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            j["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert!(j["spec"].get("manualSelector").is_none());
    }

    #[test]
    fn secret_string_data_becomes_base64_data() {
        let r = Registry::new(&[]);
        let secret = r.lookup("", "v1", "secrets").unwrap();
        let mut s =
            json!({"metadata": {"name": "s"}, "stringData": {"a": "hi"}, "data": {"b": "eA=="}});
        apply(&secret, &mut s);
        assert_eq!(s["data"], json!({"a": "aGk=", "b": "eA=="}));
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
    }
}
