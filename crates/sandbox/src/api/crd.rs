//! CustomResourceDefinitions (apiextensions.k8s.io/v1): what a definition serves, the status
//! the apiextensions controllers give it, and the structural schema its objects are pruned
//! and validated against (k8s.io/apiextensions-apiserver pkg/apiserver/schema).

use super::errors::Cause;
use super::kinds::CustomResourceKind;
use serde_json::{Map, Value, json};

/// The storage key of the definitions themselves.
pub const RESOURCE: &str = "customresourcedefinitions.apiextensions.k8s.io";

/// The Flux and Cilium definitions a Sovereign has (as `serde_json` objects), cut down to the
/// fields the chart's steps read and write: for `demo` only. They lack the real schemas'
/// patterns, `oneOf` and CEL rules, which the sandbox does not apply either; the chart's
/// tests install the real definitions (`../shared/crds`) and are judged on a real API server.
pub fn flux_and_cilium_crds() -> Vec<Value> {
    let list: Value = serde_yaml::from_str(include_str!("crds/flux-and-cilium.yaml"))
        .unwrap_or_else(|e| unreachable!("the embedded definitions are valid YAML: {e}"));
    list.get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The kinds of [`flux_and_cilium_crds`], for unit tests of the registry's users.
#[cfg(test)]
pub fn flux_and_cilium_kinds() -> Vec<CustomResourceKind> {
    flux_and_cilium_crds()
        .iter()
        .flat_map(|c| served_kinds(c).unwrap_or_default())
        .collect()
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The kinds a definition serves (one per served version), or why it is invalid, with the
/// messages of ValidateCustomResourceDefinition.
pub fn served_kinds(crd: &Value) -> Result<Vec<CustomResourceKind>, Vec<Cause>> {
    let mut causes = Vec::new();
    let group = text(crd, "/spec/group");
    let plural = text(crd, "/spec/names/plural");
    let kind = text(crd, "/spec/names/kind");
    let scope = text(crd, "/spec/scope");
    for (field, value) in [
        ("spec.group", group),
        ("spec.names.plural", plural),
        ("spec.names.kind", kind),
    ] {
        if value.is_empty() {
            causes.push(Cause::required(field, ""));
        }
    }
    if !group.is_empty() && !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        ));
    }
    let name = text(crd, "/metadata/name");
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if !matches!(scope, "Namespaced" | "Cluster") {
        causes.push(Cause::not_supported(
            "spec.scope",
            scope,
            &["Cluster", "Namespaced"],
        ));
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if storage != 1 {
        causes.push(Cause::invalid_json(
            "spec.versions",
            &json!(versions),
            "must have exactly one version marked as storage version",
        ));
    }
    if !causes.is_empty() {
        return Err(causes);
    }
    let short_names: Vec<String> = crd
        .pointer("/spec/names/shortNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    Ok(versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        .map(|v| CustomResourceKind {
            group: group.to_owned(),
            version: text(v, "/name").to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            namespaced: scope == "Namespaced",
            has_status: v.pointer("/subresources/status").is_some(),
            short_names: short_names.clone(),
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
        })
        .collect())
}

/// Defaults and status of a definition, as kube-apiserver's defaulting and the
/// apiextensions naming and establishing controllers leave it once its names are accepted.
pub fn establish(crd: &mut Value, now: &str) {
    let Some(o) = crd.as_object_mut() else { return };
    let spec = o.entry("spec").or_insert_with(|| json!({}));
    if spec.get("conversion").is_none() {
        spec["conversion"] = json!({"strategy": "None"});
    }
    let mut names = spec.get("names").cloned().unwrap_or_else(|| json!({}));
    if names.get("singular").is_none()
        && let Some(kind) = names.get("kind").and_then(Value::as_str)
    {
        names["singular"] = json!(kind.to_lowercase());
    }
    if names.get("listKind").is_none()
        && let Some(kind) = names.get("kind").and_then(Value::as_str)
    {
        names["listKind"] = json!(format!("{kind}List"));
    }
    spec["names"] = names.clone();
    let storage: Vec<Value> = spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| v.get("name").cloned())
        .collect();
    let previous = o.get("status").cloned().unwrap_or_else(|| json!({}));
    let since = |ty: &str| {
        previous
            .get("conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now))
    };
    let mut stored: Vec<Value> = previous
        .get("storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for v in storage {
        if !stored.contains(&v) {
            stored.push(v);
        }
    }
    o.insert(
        "status".into(),
        json!({
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "lastTransitionTime": since("NamesAccepted"),
                 "reason": "NoConflicts", "message": "no conflicts found"},
                {"type": "Established", "status": "True", "lastTransitionTime": since("Established"),
                 "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
            ],
            "acceptedNames": names,
            "storedVersions": stored,
        }),
    );
}

/// The fields of an object's root that the server owns whatever the schema says.
const ROOT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// [`prune`] on a whole custom object: `apiVersion`, `kind` and `metadata` are the server's.
pub fn prune_object(schema: &Value, obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let kept: Vec<(String, Value)> = ROOT_FIELDS
        .iter()
        .filter_map(|k| map.remove(*k).map(|v| ((*k).to_owned(), v)))
        .collect();
    prune(schema, obj);
    if let Some(map) = obj.as_object_mut() {
        map.extend(kept);
    }
}

/// [`validate`] on a whole custom object, past `apiVersion`, `kind` and `metadata`.
pub fn validate_object(schema: &Value, obj: &Value, causes: &mut Vec<Cause>) {
    let Some(map) = obj.as_object() else { return };
    let mut body = map.clone();
    body.retain(|k, _| !ROOT_FIELDS.contains(&k.as_str()));
    let mut root = schema.clone();
    if let Some(required) = root.get_mut("required").and_then(Value::as_array_mut) {
        required.retain(|r| !ROOT_FIELDS.iter().any(|f| r == f));
    }
    validate(&root, &Value::Object(body), "", causes);
}

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

/// Drops every field the structural schema does not name (unless it preserves unknown
/// fields there), as the apiextensions-apiserver's pruning does on every write.
pub fn prune(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if let Some(properties) = properties {
                if !preserves_unknown(schema) {
                    map.retain(|k, _| properties.contains_key(k));
                }
                for (k, v) in map.iter_mut() {
                    if let Some(s) = properties.get(k) {
                        prune(s, v);
                    }
                }
            } else if let Some(additional) = additional {
                for v in map.values_mut() {
                    prune(additional, v);
                }
            } else if !preserves_unknown(schema)
                && schema.get("type").and_then(Value::as_str) == Some("object")
            {
                map.clear();
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for v in items {
                    prune(s, v);
                }
            }
        }
        _ => {}
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Type, required-field and enum problems of `value` at `path`, with the messages of the
/// OpenAPI schema validator (kube-openapi's validate package).
pub fn validate(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let got = json_type(value);
        let fits = got == want || (want == "number" && got == "integer");
        if !fits {
            causes.push(Cause {
                reason: "FieldValueTypeInvalid",
                field: path.to_owned(),
                message: format!(
                    "Invalid value: \"{got}\": {path} in body must be of type {want}: \"{got}\""
                ),
            });
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let supported: Vec<String> = allowed.iter().map(Value::to_string).collect();
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: path.to_owned(),
            message: format!(
                "Unsupported value: {value}: supported values: {}",
                supported.join(", ")
            ),
        });
    }
    match value {
        Value::Object(map) => validate_map(schema, map, path, causes),
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    validate(s, v, &format!("{path}[{i}]"), causes);
                }
            }
        }
        _ => {}
    }
}

fn validate_map(schema: &Value, map: &Map<String, Value>, path: &str, causes: &mut Vec<Cause>) {
    let properties = schema.get("properties").and_then(Value::as_object);
    for (k, v) in map {
        let sub = properties
            .and_then(|p| p.get(k))
            .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
        if let Some(sub) = sub {
            validate(sub, v, &join(path, k), causes);
        }
    }
    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !map.contains_key(required) {
            causes.push(Cause::required(join(path, required), ""));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_definitions_serve_the_flux_and_cilium_kinds() {
        let crds = flux_and_cilium_crds();
        let kinds: Vec<String> = crds
            .iter()
            .flat_map(|c| served_kinds(c).unwrap())
            .map(|k| format!("{}/{}/{}", k.group, k.version, k.plural))
            .collect();
        assert!(kinds.contains(&"source.toolkit.fluxcd.io/v1/gitrepositories".to_owned()));
        assert!(kinds.contains(&"cilium.io/v2/ciliumclusterwidenetworkpolicies".to_owned()));
        assert_eq!(kinds.len(), 9);
    }

    #[test]
    fn a_definition_needs_its_names_and_one_storage_version() {
        let crd = json!({"metadata": {"name": "xs.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "xs", "kind": "X"},
                     "versions": [{"name": "v1", "served": true, "storage": false}]}});
        let causes = served_kinds(&crd).unwrap_err();
        assert_eq!(causes[0].field, "spec.versions");
        let mut ok = crd.clone();
        ok["spec"]["versions"][0]["storage"] = json!(true);
        assert_eq!(served_kinds(&ok).unwrap()[0].plural, "xs");
        let mut misnamed = ok.clone();
        misnamed["metadata"]["name"] = json!("ys.example.com");
        assert_eq!(
            served_kinds(&misnamed).unwrap_err()[0].message,
            "Invalid value: \"ys.example.com\": must be spec.names.plural+\".\"+spec.group"
        );
    }

    #[test]
    fn establishing_accepts_the_names_and_records_the_storage_version() {
        let mut crd = json!({"spec": {"names": {"plural": "xs", "kind": "X"},
            "versions": [{"name": "v1", "served": true, "storage": true}]}});
        establish(&mut crd, "2026-01-01T00:00:00Z");
        assert_eq!(crd["status"]["acceptedNames"]["listKind"], "XList");
        assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
        assert_eq!(crd["status"]["conditions"][1]["type"], "Established");
        assert_eq!(crd["spec"]["conversion"]["strategy"], "None");
    }

    #[test]
    fn pruning_keeps_only_what_the_schema_names() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"url": {"type": "string"},
                "values": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}}});
        let mut obj = json!({"spec": {"url": "u", "bogus": 1, "values": {"any": {"thing": 1}},
            "labels": {"a": "b"}}, "other": true});
        prune(&schema, &mut obj);
        assert_eq!(
            obj,
            json!({"spec": {"url": "u", "values": {"any": {"thing": 1}}, "labels": {"a": "b"}}})
        );
    }

    #[test]
    fn validation_reports_types_enums_and_required_fields() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "required": ["url"], "properties": {"interval": {"type": "string"},
            "status": {"type": "string", "enum": ["True", "False"]}}}}});
        let mut causes = Vec::new();
        validate(
            &schema,
            &json!({"spec": {"interval": 5, "status": "Maybe"}}),
            "",
            &mut causes,
        );
        let messages: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            messages,
            [
                "spec.interval: Invalid value: \"integer\": spec.interval in body must be of type string: \"integer\"",
                "spec.status: Unsupported value: \"Maybe\": supported values: \"True\", \"False\"",
                "spec.url: Required value",
            ]
        );
    }
}
