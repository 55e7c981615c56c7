//! Validation where kube-apiserver validates, with its messages
//! (k8s.io/apimachinery/pkg/util/validation and pkg/apis/*/validation).

use super::crd;
use super::errors::Cause;
use super::kinds::KindInfo;
use serde_json::{Value, json};

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.iter().all(|c| alnum(c) || *c == b'-')
        && b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
}

/// Problems of `s` as an RFC 1123 label (namespace names).
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    if !is_label(s) && s.split('.').all(is_label) {
        // A valid subdomain that is not a label: the dots are the problem.
        out.push("must not contain dots".to_string());
    } else if !is_label(s) {
        out.push(format!(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{DNS1123_LABEL_FMT}')"
        ));
    }
    out
}

/// Problems of `s` as an RFC 1123 subdomain (most object names).
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    if !s.split('.').all(is_label) {
        out.push(format!(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{DNS1123_SUBDOMAIN_FMT}')"
        ));
    }
    out
}

/// Checks `metadata.name` (namespaces: label; everything else: subdomain).
fn validate_name(kind: &KindInfo, obj: &Value, causes: &mut Vec<Cause>) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::required(
            "metadata.name",
            "name or generateName is required",
        ));
        return;
    }
    let problems = if kind.kind == "Namespace" {
        dns1123_label(name)
    } else {
        dns1123_subdomain(name)
    };
    causes.extend(
        problems
            .iter()
            .map(|p| Cause::invalid("metadata.name", name, p)),
    );
}

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
/// ConfigMaps and Secrets may not hold more than 1 MiB (core.MaxSecretSize).
pub const MAX_CONFIGMAP_BYTES: usize = 1024 * 1024;
/// Annotations of one object may not exceed 256 KiB (TotalAnnotationSizeLimitB).
pub const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Problems of a label key (`[prefix/]name`), as IsQualifiedName reports them.
pub fn label_key(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            out.push("prefix part must be non-empty".to_string());
        } else {
            out.extend(
                dns1123_subdomain(p)
                    .into_iter()
                    .map(|m| format!("prefix part {m}")),
            );
        }
    }
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
    } else {
        if name.len() > 63 {
            out.push("name part must be no more than 63 characters".to_string());
        }
        if !is_qualified_part(name) {
            out.push(format!(
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{QUALIFIED_NAME_FMT}')"
            ));
        }
    }
    out
}

/// Problems of a label value.
pub fn label_value(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    if value.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    if !value.is_empty() && !is_qualified_part(value) {
        out.push(format!(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '{LABEL_VALUE_FMT}')"
        ));
    }
    out
}

fn validate_labels(labels: Option<&Value>, field: &str, causes: &mut Vec<Cause>) {
    let Some(Value::Object(labels)) = labels else {
        return;
    };
    for (k, v) in labels {
        causes.extend(label_key(k).iter().map(|m| Cause::invalid(field, k, m)));
        match v.as_str() {
            Some(v) => causes.extend(label_value(v).iter().map(|m| Cause::invalid(field, v, m))),
            None => causes.push(Cause::invalid_json(
                field,
                v,
                "label values must be strings",
            )),
        }
    }
}

fn validate_annotations(annotations: Option<&Value>, causes: &mut Vec<Cause>) {
    let Some(Value::Object(annotations)) = annotations else {
        return;
    };
    let mut total = 0usize;
    for (k, v) in annotations {
        causes.extend(
            label_key(&k.to_lowercase())
                .iter()
                .map(|m| Cause::invalid("metadata.annotations", k, m)),
        );
        total += k.len() + v.as_str().map(str::len).unwrap_or_default();
    }
    if total > MAX_ANNOTATION_BYTES {
        causes.push(Cause::too_long(
            "metadata.annotations",
            MAX_ANNOTATION_BYTES,
        ));
    }
}

/// Problems of a ConfigMap data key.
pub fn config_key(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    if key.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        out.push(format!(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '{CONFIG_KEY_FMT}')"
        ));
    }
    match key {
        "." => out.push("must not be '.'".to_string()),
        ".." => out.push("must not be '..'".to_string()),
        k if k.starts_with("..") => out.push("must not start with '..'".to_string()),
        _ => {}
    }
    out
}

fn validate_config_data(obj: &Value, causes: &mut Vec<Cause>) {
    let mut total = 0usize;
    for section in ["data", "binaryData"] {
        let Some(Value::Object(map)) = obj.get(section) else {
            continue;
        };
        for (k, v) in map {
            let field = format!("{section}[{k}]");
            causes.extend(
                config_key(k)
                    .iter()
                    .map(|m| Cause::invalid(field.clone(), k, m)),
            );
            total += k.len() + v.as_str().map(str::len).unwrap_or_default();
        }
    }
    // Secrets hold base64 in `data`; their limit counts decoded bytes.
    if obj.get("kind").and_then(Value::as_str) == Some("Secret") {
        total = total * 3 / 4;
    }
    if let (Some(Value::Object(data)), Some(Value::Object(bin))) =
        (obj.get("data"), obj.get("binaryData"))
    {
        for k in data.keys().filter(|k| bin.contains_key(*k)) {
            causes.push(Cause::invalid(
                format!("data[{k}]"),
                k,
                "duplicate of key present in binaryData",
            ));
        }
    }
    if total > MAX_CONFIGMAP_BYTES {
        // The whole object is at fault; kube-apiserver prints that root path as `[]`.
        causes.push(Cause::too_long("[]", MAX_CONFIGMAP_BYTES));
    }
}

const ENV_VAR_NAME_FMT: &str = "[-._a-zA-Z][-._a-zA-Z0-9]*";

/// Problems of an environment variable name (IsEnvVarName).
fn env_var_name(name: &str) -> Option<String> {
    let b = name.as_bytes();
    let ok = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_');
    if !b.is_empty() && b.iter().all(ok) && !b[0].is_ascii_digit() {
        return None;
    }
    Some(format!(
        "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '{ENV_VAR_NAME_FMT}')"
    ))
}

/// An integer field that must be at least `min` when set (ValidateNonnegativeField and
/// kin), with apimachinery's messages.
fn int_at_least(obj: Option<&Value>, field: &str, path: String, min: i64, causes: &mut Vec<Cause>) {
    let Some(v) = obj.and_then(|o| o.get(field)).and_then(Value::as_i64) else {
        return;
    };
    if v < min {
        let detail = if min == 0 {
            "must be greater than or equal to 0".to_owned()
        } else {
            format!("must be greater than {}", min - 1)
        };
        causes.push(Cause::invalid_json(path, &json!(v), &detail));
    }
}

/// `volumes` are the names of the pod's valid volumes: a mount of any other is not found.
fn validate_containers(
    spec: Option<&Value>,
    path: &str,
    volumes: &[&str],
    causes: &mut Vec<Cause>,
) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    let Some(list) = containers.filter(|l| !l.is_empty()) else {
        causes.push(Cause::required(format!("{path}.containers"), ""));
        return;
    };
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let at = format!("{path}.containers[{i}]");
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            causes.push(Cause::required(format!("{at}.name"), ""));
        } else if seen.contains(&name) {
            causes.push(Cause::duplicate(format!("{at}.name"), name));
        } else {
            causes.extend(
                dns1123_label(name)
                    .iter()
                    .map(|m| Cause::invalid(format!("{at}.name"), name, m)),
            );
        }
        seen.push(name);
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            causes.push(Cause::required(format!("{at}.image"), ""));
        }
        for (j, e) in c
            .get("env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let env_name = e.get("name").and_then(Value::as_str).unwrap_or_default();
            let field = format!("{at}.env[{j}].name");
            if env_name.is_empty() {
                causes.push(Cause::required(field, ""));
            } else if let Some(m) = env_var_name(env_name) {
                causes.push(Cause::invalid(field, env_name, &m));
            }
        }
        for (j, m) in c
            .get("volumeMounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let mount = m.get("name").and_then(Value::as_str).unwrap_or_default();
            if !volumes.contains(&mount) {
                causes.push(Cause::not_found(
                    format!("{at}.volumeMounts[{j}].name"),
                    mount,
                ));
            }
        }
    }
}

/// Checks the pod's volumes; returns the names of the valid ones.
fn validate_volumes<'a>(
    spec: Option<&'a Value>,
    path: &str,
    causes: &mut Vec<Cause>,
) -> Vec<&'a str> {
    let mut valid = Vec::new();
    for (i, v) in spec
        .and_then(|s| s.get("volumes"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let before = causes.len();
        for (source, key) in [("configMap", "name"), ("secret", "secretName")] {
            if let Some(src) = v.get(source)
                && src
                    .get(key)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                causes.push(Cause::required(
                    format!("{path}.volumes[{i}].{source}.{key}"),
                    "",
                ));
            }
        }
        if causes.len() == before
            && let Some(name) = v.get("name").and_then(Value::as_str)
        {
            valid.push(name);
        }
    }
    valid
}

/// Checks a pod spec at `path` (`spec` or `spec.template.spec`), as ValidatePodSpec does
/// for every pod; the owning kinds narrow restartPolicy further.
fn validate_pod_spec(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let volumes = validate_volumes(spec, path, causes);
    validate_containers(spec, path, &volumes, causes);
    let policy = spec
        .and_then(|s| s.get("restartPolicy"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let field = format!("{path}.restartPolicy");
    if policy.is_empty() {
        causes.push(Cause::required(field, ""));
    } else if !["Always", "OnFailure", "Never"].contains(&policy) {
        causes.push(Cause::not_supported(
            field,
            policy,
            &["Always", "OnFailure", "Never"],
        ));
    }
    if let Some(v) = spec
        .and_then(|s| s.get("activeDeadlineSeconds"))
        .and_then(Value::as_i64)
        && !(1..=i64::from(i32::MAX)).contains(&v)
    {
        causes.push(Cause::invalid_json(
            format!("{path}.activeDeadlineSeconds"),
            &json!(v),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(sa) = spec
        .and_then(|s| s.get("serviceAccountName"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        causes.extend(
            dns1123_subdomain(sa)
                .iter()
                .map(|m| Cause::invalid(format!("{path}.serviceAccountName"), sa, m)),
        );
    }
}

/// A pod template at `path` (`spec.template` of Jobs and DaemonSets): its labels, then
/// its spec.
fn validate_template(template: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    validate_labels(
        template.and_then(|t| t.pointer("/metadata/labels")),
        &format!("{path}.labels"),
        causes,
    );
    validate_pod_spec(
        template.and_then(|t| t.get("spec")),
        &format!("{path}.spec"),
        causes,
    );
}

/// ValidateJobSpec on the JobSpec at `path` (`spec` of a Job, `spec.jobTemplate.spec` of a
/// CronJob): the counts and durations, and a restartPolicy of OnFailure or Never (Always,
/// which an empty one defaults to, is reported as missing).
fn validate_job_spec(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    for field in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        int_at_least(spec, field, format!("{path}.{field}"), 0, causes);
    }
    let template = spec.and_then(|s| s.get("template"));
    validate_template(template, &format!("{path}.template"), causes);
    let policy = template
        .and_then(|t| t.pointer("/spec/restartPolicy"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let field = format!("{path}.template.spec.restartPolicy");
    match policy {
        "OnFailure" | "Never" | "" => {}
        "Always" => causes.push(Cause::required(
            field,
            "valid values: \"OnFailure\", \"Never\"",
        )),
        other => causes.push(Cause::not_supported(field, other, &["OnFailure", "Never"])),
    }
}

/// ValidateLeaseSpec.
fn validate_lease(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec");
    int_at_least(
        spec,
        "leaseDurationSeconds",
        "spec.leaseDurationSeconds".into(),
        1,
        causes,
    );
    int_at_least(
        spec,
        "leaseTransitions",
        "spec.leaseTransitions".into(),
        0,
        causes,
    );
}

/// ConfigMaps and Secrets marked `immutable: true` keep their data and the mark
/// (ValidateConfigMapUpdate / ValidateSecretUpdate).
fn validate_immutable_data(obj: &Value, old: &Value, causes: &mut Vec<Cause>) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if obj.get("immutable").and_then(Value::as_bool) != Some(true) {
        causes.push(Cause::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for section in ["data", "binaryData"] {
        if obj.get(section) != old.get(section) {
            causes.push(Cause::forbidden(
                section,
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

/// What a pod update may change (ValidatePodUpdate).
const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn validate_pod_spec_update(obj: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let (Some(new_spec), Some(old_spec)) = (obj.get("spec"), old.get("spec")) else {
        return;
    };
    let mut masked = new_spec.clone();
    for list in ["containers", "initContainers"] {
        let old_list = old_spec.get(list).and_then(Value::as_array);
        let new_list = masked.get_mut(list).and_then(Value::as_array_mut);
        if let (Some(old_list), Some(new_list)) = (old_list, new_list)
            && old_list.len() == new_list.len()
        {
            for (n, o) in new_list.iter_mut().zip(old_list) {
                if let Some(image) = o.get("image") {
                    n["image"] = image.clone();
                }
            }
        }
    }
    if let Some(m) = masked.as_object_mut() {
        for field in [
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
        ] {
            match old_spec.get(field) {
                Some(v) => m.insert(field.to_string(), v.clone()),
                None => m.remove(field),
            };
        }
    }
    if masked != *old_spec {
        causes.push(Cause::forbidden("spec", POD_UPDATE_FORBIDDEN));
    }
}

/// Whether `labels` satisfy a metav1.LabelSelector (matchLabels and matchExpressions).
fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    let by_labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| get(k) == v.as_str());
    let by_expressions = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e.get("operator").and_then(Value::as_str) {
                Some("In") => get(key).is_some_and(|v| values.contains(&v)),
                Some("NotIn") => get(key).is_none_or(|v| !values.contains(&v)),
                Some("Exists") => get(key).is_some(),
                Some("DoesNotExist") => get(key).is_none(),
                _ => false,
            }
        });
    by_labels && by_expressions
}

/// apps/v1 workloads: a selector is required, must select the template's labels and never
/// changes (ValidateDaemonSet / ValidateDaemonSetUpdate).
fn validate_selector(obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let Some(selector) = obj.pointer("/spec/selector").filter(|s| s.is_object()) else {
        causes.push(Cause::required("spec.selector", ""));
        return;
    };
    let empty = json!({});
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .unwrap_or(&empty);
    if !selector_matches(selector, labels) {
        causes.push(Cause::invalid_json(
            "spec.template.metadata.labels",
            labels,
            "`selector` does not match template `labels`",
        ));
    }
    if let Some(old_selector) = old.and_then(|o| o.pointer("/spec/selector"))
        && old_selector != selector
    {
        causes.push(Cause::invalid_json(
            "spec.selector",
            selector,
            "field is immutable",
        ));
    }
}

fn validate_kind(kind: &KindInfo, obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    if kind.custom {
        if let Some(schema) = &kind.schema {
            crd::validate_object(schema, obj, causes);
        }
        return;
    }
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            if let Err(problems) = crd::served_kinds(obj) {
                causes.extend(problems);
            }
        }
        ("", "ConfigMap" | "Secret") => {
            validate_config_data(obj, causes);
            if let Some(old) = old {
                validate_immutable_data(obj, old, causes);
            }
        }
        ("", "Pod") => match old {
            None => validate_pod_spec(obj.get("spec"), "spec", causes),
            Some(old) => validate_pod_spec_update(obj, old, causes),
        },
        ("coordination.k8s.io", "Lease") => validate_lease(obj, causes),
        ("batch", "CronJob") => {
            validate_job_spec(
                obj.pointer("/spec/jobTemplate/spec"),
                "spec.jobTemplate.spec",
                causes,
            );
        }
        ("batch", "Job") => {
            validate_job_spec(obj.get("spec"), "spec", causes);
            if let Some(old) = old {
                let new_t = obj.pointer("/spec/template");
                if new_t != old.pointer("/spec/template") {
                    causes.push(Cause::invalid_json(
                        "spec.template",
                        new_t.unwrap_or(&Value::Null),
                        "field is immutable",
                    ));
                }
            }
        }
        ("apps", "DaemonSet") => {
            validate_template(obj.pointer("/spec/template"), "spec.template", causes);
            let policy = obj
                .pointer("/spec/template/spec/restartPolicy")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !policy.is_empty() && policy != "Always" {
                causes.push(Cause::not_supported(
                    "spec.template.spec.restartPolicy",
                    policy,
                    &["Always"],
                ));
            }
            validate_selector(obj, old, causes);
        }
        _ => {}
    }
}

/// Every problem of an object about to be stored; `old` is the stored version on update.
pub fn validate(kind: &KindInfo, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_name(kind, obj, &mut causes);
    validate_labels(
        obj.pointer("/metadata/labels"),
        "metadata.labels",
        &mut causes,
    );
    validate_annotations(obj.pointer("/metadata/annotations"), &mut causes);
    validate_kind(kind, obj, old, &mut causes);
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::kinds::Registry;
    use serde_json::json;

    #[test]
    fn names() {
        assert!(dns1123_subdomain("a.b-c").is_empty());
        assert_eq!(dns1123_subdomain("A").len(), 1);
        assert_eq!(
            dns1123_label("a.b"),
            vec!["must not contain dots".to_string()]
        );
        assert_eq!(dns1123_label(&"a".repeat(64)).len(), 1);
        let r = Registry::new(&[]);
        let cm = r.lookup("", "v1", "configmaps").unwrap();
        let c = validate(&cm, &json!({"metadata": {"name": "Bad_Name"}}), None);
        assert_eq!(c[0].field, "metadata.name");
        assert!(
            c[0].message
                .starts_with("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain")
        );
        let c = validate(&cm, &json!({"metadata": {}}), None);
        assert_eq!(
            c[0].message,
            "Required value: name or generateName is required"
        );
    }

    #[test]
    fn pod_updates_only_change_images_and_immutable_configmaps_keep_data() {
        let r = Registry::new(&[]);
        let pod = r.lookup("", "v1", "pods").unwrap();
        let old = json!({"metadata": {"name": "p"}, "spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "a:1"}]}});
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("a:2");
        assert!(validate(&pod, &new, Some(&old)).is_empty());
        new["spec"]["nodeName"] = json!("n1");
        assert_eq!(
            validate(&pod, &new, Some(&old))[0].reason,
            "FieldValueForbidden"
        );

        let cm = r.lookup("", "v1", "configmaps").unwrap();
        let old = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
        let mut new = old.clone();
        new["data"]["a"] = json!("2");
        assert_eq!(validate(&cm, &new, Some(&old))[0].field, "data");
    }

    #[test]
    fn daemonset_selector_must_select_the_template() {
        let r = Registry::new(&[]);
        let ds = r.lookup("apps", "v1", "daemonsets").unwrap();
        let spec = |selector: Value| {
            json!({"metadata": {"name": "d"}, "spec": {"selector": selector, "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}})
        };
        assert!(validate(&ds, &spec(json!({"matchLabels": {"app": "x"}})), None).is_empty());
        let expr =
            json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x", "y"]}]});
        assert!(validate(&ds, &spec(expr), None).is_empty());
        let c = validate(&ds, &spec(json!({"matchLabels": {"app": "y"}})), None);
        assert_eq!(c[0].field, "spec.template.metadata.labels");
        assert_eq!(
            c[0].message,
            "Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`"
        );
        let old = spec(json!({"matchLabels": {"app": "x"}}));
        let moved = spec(json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}));
        assert!(
            validate(&ds, &moved, Some(&old))
                .iter()
                .any(|c| c.field == "spec.selector")
        );
        let mut none = old.clone();
        none["spec"].as_object_mut().unwrap().remove("selector");
        assert_eq!(validate(&ds, &none, None)[0].reason, "FieldValueRequired");
    }

    #[test]
    fn labels_and_config_keys() {
        assert!(label_key("app.kubernetes.io/part-of").is_empty());
        assert_eq!(label_key("bad key").len(), 1);
        assert_eq!(
            label_key("Bad_Prefix/x")[0].split(' ').next(),
            Some("prefix")
        );
        assert!(label_value("").is_empty());
        assert_eq!(label_value("-x").len(), 1);
        assert!(config_key("podSpec").is_empty());
        assert_eq!(config_key("a/b").len(), 1);
        assert_eq!(
            config_key("..x"),
            vec!["must not start with '..'".to_string()]
        );
    }

    #[test]
    fn jobs_need_containers_and_a_batch_restart_policy() {
        let r = Registry::new(&[]);
        let job = r.lookup("batch", "v1", "jobs").unwrap();
        let j = json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"restartPolicy": "Always", "containers": []}}}});
        let c = validate(&job, &j, None);
        let fields: Vec<&str> = c.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.template.spec.containers",
                "spec.template.spec.restartPolicy"
            ]
        );
        assert_eq!(
            c[1].message,
            "Required value: valid values: \"OnFailure\", \"Never\""
        );
        let old = json!({"spec": {"template": {"spec": {}}}});
        assert!(
            validate(&job, &j, Some(&old))
                .iter()
                .any(|c| c.message.ends_with("field is immutable"))
        );
    }
}
