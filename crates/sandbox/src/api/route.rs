//! Request paths, resolved as k8s.io/apiserver/pkg/endpoints/request/requestinfo.go does.

/// A resource request: `/api/v1/...` or `/apis/<group>/<version>/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// API group (`""` for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural resource name.
    pub plural: String,
    /// Namespace of the request (`None` for cluster-wide).
    pub namespace: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// Subresource (`status`, `log`).
    pub subresource: Option<String>,
    /// The legacy `/watch/` prefix was used.
    pub watch: bool,
}

/// What a path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/version`
    Version,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`
    GroupVersion(String, String),
    /// `/openapi/v3`
    OpenApiIndex,
    /// `/openapi/v3/<api/v1 | apis/group/version>`
    OpenApiGroupVersion(String),
    /// `/healthz`, `/livez`, `/readyz`
    Health,
    /// A resource.
    Resource(ResourcePath),
    /// Anything else.
    Unknown,
}

/// Subresources of a namespace, which are not namespaced resources named `status`.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Resolves a request path.
pub fn resolve(path: &str) -> Target {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    match parts.as_slice() {
        ["version"] => Target::Version,
        ["healthz" | "livez" | "readyz", ..] => Target::Health,
        ["openapi", "v3"] => Target::OpenApiIndex,
        ["openapi", "v3", gv @ ..] => Target::OpenApiGroupVersion(gv.join("/")),
        ["api"] => Target::CoreVersions,
        ["api", v] => Target::GroupVersion(String::new(), v.to_string()),
        ["api", v, rest @ ..] => resource("", v, rest),
        ["apis"] => Target::Groups,
        ["apis", g] => Target::Group(g.to_string()),
        ["apis", g, v] => Target::GroupVersion(g.to_string(), v.to_string()),
        ["apis", g, v, rest @ ..] => resource(g, v, rest),
        _ => Target::Unknown,
    }
}

fn resource(group: &str, version: &str, rest: &[&str]) -> Target {
    let (watch, mut rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        other => (false, other),
    };
    let mut namespace = None;
    if let ["namespaces", ns, tail @ ..] = rest
        && let Some(next) = tail.first()
        && !NAMESPACE_SUBRESOURCES.contains(next)
    {
        namespace = Some(ns.to_string());
        rest = tail;
    }
    match rest {
        [plural, tail @ ..] if tail.len() <= 2 => Target::Resource(ResourcePath {
            group: group.into(),
            version: version.into(),
            plural: plural.to_string(),
            namespace,
            name: tail.first().map(|s| s.to_string()),
            subresource: tail.get(1).map(|s| s.to_string()),
            watch,
        }),
        _ => Target::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match resolve(path) {
            Target::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn resolves_like_request_info() {
        let r = res("/api/v1/namespaces/ns/configmaps/x");
        assert_eq!(
            (r.plural.as_str(), r.namespace.as_deref(), r.name.as_deref()),
            ("configmaps", Some("ns"), Some("x"))
        );
        let r = res("/api/v1/namespaces/ns");
        assert_eq!(
            (r.plural.as_str(), r.namespace, r.name.as_deref()),
            ("namespaces", None, Some("ns"))
        );
        let r = res("/api/v1/namespaces/ns/status");
        assert_eq!(
            (r.name.as_deref(), r.subresource.as_deref()),
            (Some("ns"), Some("status"))
        );
        let r = res("/apis/batch/v1/watch/namespaces/ns/jobs");
        assert!(r.watch && r.group == "batch" && r.name.is_none());
        let r = res("/api/v1/namespaces/ns/pods/p/log");
        assert_eq!(r.subresource.as_deref(), Some("log"));
        assert_eq!(res("/api/v1/nodes").plural, "nodes");
        assert_eq!(
            resolve("/apis/apps/v1"),
            Target::GroupVersion("apps".into(), "v1".into())
        );
        assert_eq!(resolve("/api"), Target::CoreVersions);
        assert_eq!(resolve("/foo"), Target::Unknown);
        assert_eq!(resolve("/openapi/v2"), Target::Unknown);
        assert_eq!(
            resolve("/openapi/v3/apis/batch/v1"),
            Target::OpenApiGroupVersion("apis/batch/v1".into())
        );
    }
}
