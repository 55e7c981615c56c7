//! Fields of a manifest that its typed form does not know.
//!
//! k8s-openapi ignores unknown fields when deserializing, and the engine creates Jobs from
//! the typed PodSpec, so a misspelt or too-new field would vanish without a word. Comparing
//! the written YAML with the typed value serialized back finds them, as the API server's
//! strict field validation would.

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// Paths (relative, e.g. `containers[0].imagePullPolicyy`) of the fields set in `written`
/// that `typed` (the same document deserialized and serialized back) lacks. Null values
/// are not fields that are set.
pub(super) fn unknown_fields(written: &Yaml, typed: &Json) -> Vec<String> {
    let mut found = Vec::new();
    walk(written, typed, String::new(), &mut found);
    found
}

fn walk(written: &Yaml, typed: &Json, path: String, found: &mut Vec<String>) {
    match (written, typed) {
        (Yaml::Mapping(map), Json::Object(object)) => {
            for (key, value) in map {
                if value.is_null() {
                    continue;
                }
                let key = match key {
                    Yaml::String(key) => key.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                };
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match object.get(&key) {
                    Some(typed) => walk(value, typed, child, found),
                    None => found.push(child),
                }
            }
        }
        (Yaml::Sequence(items), Json::Array(typed)) => {
            for (i, (item, typed)) in items.iter().zip(typed).enumerate() {
                walk(item, typed, format!("{path}[{i}]"), found);
            }
        }
        (Yaml::Tagged(tagged), _) => walk(&tagged.value, typed, path, found),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn unknown(yaml: &str) -> Vec<String> {
        let written: Yaml = serde_yaml::from_str(yaml).unwrap();
        let spec: PodSpec = serde_yaml::from_str(yaml).unwrap();
        unknown_fields(&written, &serde_json::to_value(&spec).unwrap())
    }

    #[test]
    fn a_complete_pod_spec_has_no_unknown_fields() {
        let yaml = r#"
restartPolicy: ""
serviceAccountName: runner
securityContext: {}
nodeSelector: {kubernetes.io/os: linux}
activeDeadlineSeconds: 60
hostNetwork: false
tolerations: null
containers:
- name: main
  image: alpine
  args: []
  env: [{name: A, value: ""}, {name: B, valueFrom: {configMapKeyRef: {name: x, key: y}}}]
  resources: {limits: {cpu: 1, memory: 64Mi}}
  ports: [{containerPort: 80}]
  livenessProbe: {httpGet: {path: /, port: http}}
volumes:
- name: scripts
  configMap: {name: cm, defaultMode: 493, items: [{key: run.sh, path: run.sh}]}
- name: tmp
  emptyDir: {}
"#;
        assert_eq!(unknown(yaml), Vec::<String>::new());
    }

    #[test]
    fn misspelt_fields_are_found_with_their_paths() {
        let yaml = r#"
restartPolicyy: Never
containers:
- name: main
  image: alpine
- name: side
  image: alpine
  imagePullPolicyy: Always
  env: [{name: A, vaule: x}]
volumes: [{name: v, configMap: {nmae: cm}}]
"#;
        assert_eq!(
            unknown(yaml),
            [
                "restartPolicyy",
                "containers[1].imagePullPolicyy",
                "containers[1].env[0].vaule",
                "volumes[0].configMap.nmae"
            ]
        );
    }
}
