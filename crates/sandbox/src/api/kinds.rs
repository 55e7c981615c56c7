//! The registry of kinds the sandbox serves: builtins plus custom resources given at start-up.

use std::sync::Arc;

/// When `metadata.generation` moves, as each kind's registry strategy decides in kube-apiserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationPolicy {
    /// The kind carries no generation (ConfigMap, Secret, Namespace, ...).
    None,
    /// Bumped when `spec` changes (Job, DaemonSet, Pod).
    Spec,
    /// Custom resources: bumped on any change outside `metadata` and `status`.
    AllButMetadataAndStatus,
}

/// A custom resource kind, served as JSON as one served version of a
/// CustomResourceDefinition says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomResourceKind {
    /// API group, e.g. `source.toolkit.fluxcd.io`.
    pub group: String,
    /// API version within the group, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `GitRepository`.
    pub kind: String,
    /// Plural resource name, e.g. `gitrepositories`.
    pub plural: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether the version has a `/status` subresource.
    pub has_status: bool,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// The version's structural schema (`openAPIV3Schema`), if any.
    pub schema: Option<serde_json::Value>,
}

/// Everything the server needs to know about one resource.
#[derive(Debug, Clone)]
pub struct KindInfo {
    /// API group, `""` for core.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `ConfigMap`.
    pub kind: String,
    /// Plural resource name, e.g. `configmaps`.
    pub plural: String,
    /// Lower-case singular name.
    pub singular: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether `/status` exists (and main writes keep status).
    pub has_status: bool,
    /// Whether `/log` exists (pods).
    pub has_log: bool,
    /// Whether `/token` exists (serviceaccounts: the TokenRequest API).
    pub has_token: bool,
    /// How generation moves.
    pub generation: GenerationPolicy,
    /// Create-only virtual kinds (TokenReview, SubjectAccessReview): answered, never stored.
    pub create_only: bool,
    /// Custom resources: strategic merge patch is refused for them.
    pub custom: bool,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// Custom resources: the structural schema objects are pruned and validated against.
    pub schema: Option<Arc<serde_json::Value>>,
    /// `configmaps` or `jobs.batch`: the storage key, made once.
    resource_key: Arc<str>,
}

/// `v1` for the core group, `group/version` for the others.
pub fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

fn resource_key(group: &str, plural: &str) -> Arc<str> {
    if group.is_empty() {
        plural.into()
    } else {
        format!("{plural}.{group}").into()
    }
}

impl KindInfo {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        api_version(&self.group, &self.version)
    }

    /// `configmaps` or `jobs.batch`, as error messages name the resource.
    pub fn qualified_resource(&self) -> &str {
        &self.resource_key
    }

    /// [`Self::qualified_resource`], shared.
    pub fn resource_key(&self) -> Arc<str> {
        self.resource_key.clone()
    }

    /// Verbs listed in discovery.
    pub fn verbs(&self) -> Vec<&'static str> {
        if self.create_only {
            vec!["create"]
        } else {
            vec![
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    has_status: bool,
    generation: GenerationPolicy,
    short_names: &'static [&'static str],
}

const fn builtin(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    has_status: bool,
    generation: GenerationPolicy,
    short_names: &'static [&'static str],
) -> Builtin {
    Builtin {
        group,
        version: "v1",
        kind,
        plural,
        namespaced,
        has_status,
        generation,
        short_names,
    }
}

use GenerationPolicy::{None as NoGen, Spec};

#[rustfmt::skip]
const BUILTINS: &[Builtin] = &[
    builtin("", "Namespace", "namespaces", false, true, NoGen, &["ns"]),
    builtin("", "ConfigMap", "configmaps", true, false, NoGen, &["cm"]),
    builtin("", "Secret", "secrets", true, false, NoGen, &[]),
    builtin("", "Pod", "pods", true, true, Spec, &["po"]),
    builtin("", "Node", "nodes", false, true, NoGen, &["no"]),
    builtin("", "Event", "events", true, false, NoGen, &["ev"]),
    builtin("", "ServiceAccount", "serviceaccounts", true, false, NoGen, &["sa"]),
    builtin("", "Service", "services", true, true, NoGen, &["svc"]),
    builtin("apps", "DaemonSet", "daemonsets", true, true, Spec, &["ds"]),
    builtin("apps", "Deployment", "deployments", true, true, Spec, &["deploy"]),
    builtin("apps", "ReplicaSet", "replicasets", true, true, Spec, &["rs"]),
    builtin("apps", "StatefulSet", "statefulsets", true, true, Spec, &["sts"]),
    builtin("batch", "Job", "jobs", true, true, Spec, &[]),
    builtin("batch", "CronJob", "cronjobs", true, true, Spec, &["cj"]),
    builtin("apiextensions.k8s.io", "CustomResourceDefinition", "customresourcedefinitions", false, true, Spec, &["crd", "crds"]),
    builtin("coordination.k8s.io", "Lease", "leases", true, false, NoGen, &[]),
    builtin("events.k8s.io", "Event", "events", true, false, NoGen, &["ev"]),
    builtin("networking.k8s.io", "NetworkPolicy", "networkpolicies", true, false, Spec, &["netpol"]),
    builtin("rbac.authorization.k8s.io", "Role", "roles", true, false, NoGen, &[]),
    builtin("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", false, false, NoGen, &[]),
    builtin("rbac.authorization.k8s.io", "RoleBinding", "rolebindings", true, false, NoGen, &[]),
    builtin("rbac.authorization.k8s.io", "ClusterRoleBinding", "clusterrolebindings", false, false, NoGen, &[]),
    builtin("authentication.k8s.io", "TokenReview", "tokenreviews", false, false, NoGen, &[]),
    builtin("authentication.k8s.io", "SelfSubjectReview", "selfsubjectreviews", false, false, NoGen, &[]),
    builtin("authorization.k8s.io", "SubjectAccessReview", "subjectaccessreviews", false, false, NoGen, &[]),
    builtin("authorization.k8s.io", "SelfSubjectAccessReview", "selfsubjectaccessreviews", false, false, NoGen, &[]),
];

fn custom_kind(c: &CustomResourceKind) -> Arc<KindInfo> {
    Arc::new(KindInfo {
        group: c.group.clone(),
        version: c.version.clone(),
        kind: c.kind.clone(),
        plural: c.plural.clone(),
        singular: c.kind.to_lowercase(),
        namespaced: c.namespaced,
        has_status: c.has_status,
        has_log: false,
        has_token: false,
        generation: GenerationPolicy::AllButMetadataAndStatus,
        create_only: false,
        custom: true,
        short_names: c.short_names.clone(),
        schema: c.schema.clone().map(Arc::new),
        resource_key: resource_key(&c.group, &c.plural),
    })
}

/// The kinds served, looked up by (group, version, plural).
#[derive(Debug, Clone)]
pub struct Registry {
    kinds: Vec<Arc<KindInfo>>,
}

impl Registry {
    /// The builtins plus the given custom resources.
    pub fn new(custom: &[CustomResourceKind]) -> Self {
        let mut kinds: Vec<Arc<KindInfo>> = BUILTINS
            .iter()
            .map(|b| {
                Arc::new(KindInfo {
                    group: b.group.into(),
                    version: b.version.into(),
                    kind: b.kind.into(),
                    plural: b.plural.into(),
                    singular: b.kind.to_lowercase(),
                    namespaced: b.namespaced,
                    has_status: b.has_status,
                    has_log: b.plural == "pods" && b.group.is_empty(),
                    has_token: b.plural == "serviceaccounts" && b.group.is_empty(),
                    generation: b.generation,
                    create_only: b.group.starts_with("authentication.")
                        || b.group.starts_with("authorization."),
                    custom: false,
                    short_names: b.short_names.iter().map(|s| (*s).to_owned()).collect(),
                    schema: None,
                    resource_key: resource_key(b.group, b.plural),
                })
            })
            .collect();
        kinds.extend(custom.iter().map(custom_kind));
        Registry { kinds }
    }

    /// This registry with the custom kinds of `group`/`plural` replaced by `kinds` (none: the
    /// definition was deleted).
    pub fn with_definition(&self, group: &str, plural: &str, kinds: &[CustomResourceKind]) -> Self {
        let mut out: Vec<Arc<KindInfo>> = self
            .kinds
            .iter()
            .filter(|k| !(k.custom && k.group == group && k.plural == plural))
            .cloned()
            .collect();
        out.extend(kinds.iter().map(custom_kind));
        Registry { kinds: out }
    }

    /// The kind served at `group/version/plural`, if any.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<KindInfo>> {
        // A few dozen kinds: a scan costs less than building an owned key per request.
        self.kinds
            .iter()
            .find(|k| k.plural == plural && k.group == group && k.version == version)
            .cloned()
    }

    /// Every kind, in registration order.
    pub fn kinds(&self) -> &[Arc<KindInfo>] {
        &self.kinds
    }

    /// Every (group, version) pair, builtins first, core (`""`) included.
    pub fn group_versions(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for k in &self.kinds {
            let gv = (k.group.clone(), k.version.clone());
            if !out.contains(&gv) {
                out.push(gv);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_builtins_and_custom_resources() {
        let r = Registry::new(&crate::api::crd::flux_and_cilium_kinds());
        let job = r.lookup("batch", "v1", "jobs").unwrap();
        assert_eq!(job.qualified_resource(), "jobs.batch");
        assert_eq!(
            r.lookup("", "v1", "configmaps")
                .unwrap()
                .qualified_resource(),
            "configmaps"
        );
        let hr = r
            .lookup("helm.toolkit.fluxcd.io", "v2", "helmreleases")
            .unwrap();
        assert!(hr.custom && hr.has_status);
        assert!(r.lookup("", "v1", "endpoints").is_none());
        assert!(
            r.group_versions()
                .contains(&("cilium.io".into(), "v2".into()))
        );
        let without = r.with_definition("helm.toolkit.fluxcd.io", "helmreleases", &[]);
        assert!(
            without
                .lookup("helm.toolkit.fluxcd.io", "v2", "helmreleases")
                .is_none()
        );
        assert!(without.lookup("batch", "v1", "jobs").is_some());
    }
}
