//! A minimal OpenAPI v3 surface: enough for kubectl to learn that PATCH takes
//! `fieldValidation` (cli-runtime query_param_verifier_v3.go), so it validates server-side
//! and needs no schemas. The sandbox accepts unknown fields; it does not validate schemas.

use super::kinds::{KindInfo, Registry};
use serde_json::{Map, Value, json};

/// The document's hash parameter: the documents only change with the kinds served.
const HASH: &str = "sandbox";

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: where each group version's document lives.
pub fn index(registry: &Registry) -> Value {
    let paths: Map<String, Value> = registry
        .group_versions()
        .into_iter()
        .map(|(g, v)| {
            let p = gv_path(&g, &v);
            let url = format!("/openapi/v3/{p}?hash={HASH}");
            (p, json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

fn patch_path(kind: &KindInfo) -> (String, Value) {
    let base = format!("/{}", gv_path(&kind.group, &kind.version));
    let path = if kind.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", kind.plural)
    } else {
        format!("{base}/{}/{{name}}", kind.plural)
    };
    let op = json!({
        "patch": {
            "operationId": format!("patch{}", kind.kind),
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": kind.group, "version": kind.version, "kind": kind.kind},
            "parameters": [
                {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                {"name": "force", "in": "query", "schema": {"type": "boolean"}}
            ],
            "responses": {"200": {"description": "OK"}}
        }
    });
    (path, op)
}

/// `/openapi/v3/<group-version path>`, or `None` when not served.
pub fn group_version(registry: &Registry, gv: &str) -> Option<Value> {
    let kinds: Vec<_> = registry
        .kinds()
        .iter()
        .filter(|k| gv_path(&k.group, &k.version) == gv && !k.create_only)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let paths: Map<String, Value> = kinds.iter().map(|k| patch_path(k)).collect();
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}}
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertises_field_validation_on_patch() {
        let r = Registry::new(&[]);
        assert_eq!(
            index(&r)["paths"]["apis/batch/v1"]["serverRelativeURL"],
            "/openapi/v3/apis/batch/v1?hash=sandbox"
        );
        let doc = group_version(&r, "api/v1").unwrap();
        let op = &doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "ConfigMap");
        assert!(group_version(&r, "apis/nope/v1").is_none());
    }
}
