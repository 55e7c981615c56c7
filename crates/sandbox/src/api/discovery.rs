//! Discovery documents: `/version`, `/api`, `/apis`, and each group version's resources.

use super::kinds::{KindInfo, Registry};
use serde_json::{Value, json};

/// The Kubernetes version the sandbox reports (the kubectl on this machine is v1.32).
pub const KUBE_MINOR: &str = "32";

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0-catalyst-sandbox"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

/// `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(registry: &Registry, group: &str) -> Value {
    let versions: Vec<Value> = registry
        .group_versions()
        .into_iter()
        .filter(|(g, _)| g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

/// `/apis`: every named group.
pub fn groups(registry: &Registry) -> Value {
    let mut names: Vec<String> = Vec::new();
    for (g, _) in registry.group_versions() {
        if !g.is_empty() && !names.contains(&g) {
            names.push(g);
        }
    }
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": names.iter().map(|g| group_entry(registry, g)).collect::<Vec<_>>(),
    })
}

/// `/apis/<group>`, or `None` when the group is not served.
pub fn group(registry: &Registry, group: &str) -> Option<Value> {
    if group.is_empty() || !registry.group_versions().iter().any(|(g, _)| g == group) {
        return None;
    }
    let mut entry = group_entry(registry, group);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Some(entry)
}

fn resource_entries(kind: &KindInfo) -> Vec<Value> {
    let mut main = json!({
        "name": kind.plural,
        "singularName": kind.singular,
        "namespaced": kind.namespaced,
        "kind": kind.kind,
        "verbs": kind.verbs(),
    });
    if !kind.short_names.is_empty() {
        main["shortNames"] = json!(kind.short_names);
    }
    if kind.custom {
        main["categories"] = json!(["all"]);
    }
    let sub = |name: &str, verbs: &[&str]| {
        json!({
            "name": format!("{}/{name}", kind.plural),
            "singularName": "",
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": verbs,
        })
    };
    let mut out = vec![main];
    if kind.has_status {
        out.push(sub("status", &["get", "patch", "update"]));
    }
    if kind.has_log {
        out.push(sub("log", &["get"]));
    }
    if kind.has_token {
        out.push(json!({
            "name": format!("{}/token", kind.plural),
            "singularName": "",
            "namespaced": kind.namespaced,
            "group": "authentication.k8s.io",
            "version": "v1",
            "kind": "TokenRequest",
            "verbs": ["create"],
        }));
    }
    out
}

/// `/api/v1` or `/apis/<group>/<version>`, or `None` when not served.
pub fn resources(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<_> = registry
        .kinds()
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": kinds.iter().flat_map(|k| resource_entries(k)).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::crd::flux_and_cilium_kinds;

    #[test]
    fn lists_groups_and_resources() {
        let r = Registry::new(&flux_and_cilium_kinds());
        let g = groups(&r);
        let names: Vec<&str> = g["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"batch") && names.contains(&"cilium.io"));
        let core = resources(&r, "", "v1").unwrap();
        let rs: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(
            rs.contains(&"pods/log") && rs.contains(&"pods/status") && rs.contains(&"configmaps")
        );
        let token = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "serviceaccounts/token")
            .unwrap();
        assert_eq!(
            (&token["kind"], &token["group"], &token["verbs"]),
            (
                &json!("TokenRequest"),
                &json!("authentication.k8s.io"),
                &json!(["create"])
            )
        );
        assert!(resources(&r, "batch", "v2").is_none());
        assert_eq!(
            group(&r, "apps").unwrap()["preferredVersion"]["version"],
            "v1"
        );
    }
}
