//! Strategic merge patch for the builtin kinds (k8s.io/apimachinery/pkg/util/strategicpatch),
//! with the merge keys of the k8s.io/api fields the sandbox serves, looked up by field name.

use serde_json::{Map, Value};

/// How a list field merges: by the key of its elements, as a set of primitives, or replaced.
enum ListStrategy {
    MergeKey(&'static str),
    PrimitiveSet,
    Replace,
}

/// `patchMergeKey` / `patchStrategy` of the list fields in the served builtins.
fn strategy(field: &str) -> ListStrategy {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => ListStrategy::MergeKey("name"),
        "volumeMounts" => ListStrategy::MergeKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeKey("devicePath"),
        "ports" => ListStrategy::MergeKey("containerPort"),
        "conditions" | "addresses" => ListStrategy::MergeKey("type"),
        "ownerReferences" => ListStrategy::MergeKey("uid"),
        "hostAliases" => ListStrategy::MergeKey("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeKey("topologyKey"),
        "taints" => ListStrategy::MergeKey("key"),
        "finalizers" => ListStrategy::PrimitiveSet,
        _ => ListStrategy::Replace,
    }
}

const DIRECTIVE: &str = "$patch";
const DELETE_FROM_PRIMITIVE: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const RETAIN_KEYS: &str = "$retainKeys";

/// Applies a strategic merge patch to `original`.
pub fn apply(original: &Value, patch: &Value) -> Result<Value, String> {
    let patch = patch
        .as_object()
        .ok_or_else(|| "strategic merge patch body must be a JSON object".to_string())?;
    let mut out = original.as_object().cloned().unwrap_or_default();
    merge_map(&mut out, patch)?;
    Ok(Value::Object(out))
}

fn merge_map(target: &mut Map<String, Value>, patch: &Map<String, Value>) -> Result<(), String> {
    match patch.get(DIRECTIVE).and_then(Value::as_str) {
        Some("replace") => {
            *target = without_directives(patch);
            return Ok(());
        }
        Some("delete") => {
            target.clear();
            return Ok(());
        }
        Some(other) => return Err(format!("Unknown patch type: {other}")),
        None => {}
    }
    if let Some(keep) = patch.get(RETAIN_KEYS).and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        target.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, pv) in patch {
        if key == DIRECTIVE || key == RETAIN_KEYS || key.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE) {
            if let (Some(Value::Array(list)), Some(drop)) = (target.get_mut(field), pv.as_array()) {
                list.retain(|v| !drop.contains(v));
            }
            continue;
        }
        match pv {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(pm) => match target.get_mut(key) {
                Some(Value::Object(tm)) => merge_map(tm, pm)?,
                _ => {
                    if pm.get(DIRECTIVE).and_then(Value::as_str) != Some("delete") {
                        target.insert(key.clone(), Value::Object(without_directives(pm)));
                    } else {
                        target.remove(key);
                    }
                }
            },
            Value::Array(pl) => {
                let merged = match target.get(key) {
                    Some(Value::Array(tl)) => merge_list(key, tl, pl)?,
                    _ => strip_list(pl),
                };
                target.insert(key.clone(), Value::Array(merged));
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
    Ok(())
}

fn without_directives(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A list taken as a whole: directive elements dropped.
fn strip_list(list: &[Value]) -> Vec<Value> {
    list.iter()
        .filter(|v| v.get(DIRECTIVE).is_none())
        .cloned()
        .collect()
}

fn merge_list(field: &str, target: &[Value], patch: &[Value]) -> Result<Vec<Value>, String> {
    if patch
        .iter()
        .any(|v| v.get(DIRECTIVE).and_then(Value::as_str) == Some("replace"))
    {
        return Ok(strip_list(patch));
    }
    match strategy(field) {
        ListStrategy::Replace => Ok(strip_list(patch)),
        ListStrategy::PrimitiveSet => {
            let mut out = target.to_vec();
            for v in patch {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(out)
        }
        ListStrategy::MergeKey(mk) => {
            let mut out = target.to_vec();
            for pv in patch {
                let Some(pm) = pv.as_object() else {
                    return Err(format!(
                        "{field}: element of a merging list must be an object"
                    ));
                };
                let key = pm.get(mk).ok_or_else(|| {
                    format!("map: {pv} does not contain declared merge key: {mk}")
                })?;
                let pos = out.iter().position(|t| t.get(mk) == Some(key));
                let delete = pm.get(DIRECTIVE).and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => {
                        if let Some(tm) = out[i].as_object_mut() {
                            merge_map(tm, pm)?;
                        }
                    }
                    (None, false) => out.push(Value::Object(without_directives(pm))),
                }
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_by_key_and_honours_directives() {
        let pod = json!({"metadata": {"finalizers": ["a"], "labels": {"x": "1"}},
            "spec": {"containers": [{"name": "c", "image": "i:1", "env": [{"name": "A", "value": "1"}]}],
                     "tolerations": [{"key": "t1"}]}});
        let patch = json!({"metadata": {"finalizers": ["b"], "labels": {"x": null, "y": "2"}},
            "spec": {"containers": [{"name": "c", "env": [{"name": "B", "value": "2"}]}, {"name": "d", "image": "j"}],
                     "tolerations": [{"key": "t2"}]}});
        let out = apply(&pod, &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(out["metadata"]["labels"], json!({"y": "2"}));
        assert_eq!(out["spec"]["containers"][0]["image"], "i:1");
        assert_eq!(
            out["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(out["spec"]["containers"][1]["name"], "d");
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "t2"}]));

        let del = json!({"spec": {"containers": [{"name": "c", "$patch": "delete"}]},
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}});
        let out = apply(&pod, &del).unwrap();
        assert_eq!(out["spec"]["containers"], json!([]));
        assert_eq!(out["metadata"]["finalizers"], json!([]));

        let rep = json!({"metadata": {"labels": {"$patch": "replace", "z": "3"}}});
        assert_eq!(
            apply(&pod, &rep).unwrap()["metadata"]["labels"],
            json!({"z": "3"})
        );
    }
}
