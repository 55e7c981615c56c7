//! The RBAC authorizer, a faithful port of kube-apiserver's:
//! rule matching from `pkg/apis/rbac/v1/evaluation_helpers.go` (`VerbMatches`,
//! `APIGroupMatches`, `ResourceMatches`, `ResourceNameMatches`, `NonResourceURLMatches`),
//! `RuleAllows` and the deny reason from `plugin/pkg/auth/authorizer/rbac/rbac.go`, and
//! binding resolution from `pkg/registry/rbac/validation/rule.go` (`VisitRulesFor`,
//! `GetRoleReferenceRules`, `appliesToUser`). The `system:masters` short cut is the privileged
//! group authorizer that kube-apiserver puts in front of RBAC.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::attributes::Attributes;
use super::token::{MASTERS_GROUP, UserInfo};

/// Matches every verb, group, resource or non-resource URL.
const ALL: &str = "*";

/// The RBAC objects a decision is made against.
#[derive(Debug, Clone, Default)]
pub struct RbacRules {
    /// Namespaced roles.
    pub roles: Vec<Role>,
    /// Cluster roles. Aggregated cluster roles are read by their `rules`, as upstream, where a
    /// controller fills those in.
    pub cluster_roles: Vec<ClusterRole>,
    /// Namespaced bindings.
    pub role_bindings: Vec<RoleBinding>,
    /// Cluster-wide bindings.
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
}

/// The outcome of [`authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The request may go ahead.
    Allow,
    /// The request is forbidden.
    Deny {
        /// What the authorizer adds to the 403 message after `: `, empty when it has nothing
        /// to add (upstream's usual case), e.g. `RBAC: role.rbac.authorization.k8s.io "x" not
        /// found` when a binding that applies names a missing role.
        reason: String,
    },
}

impl Decision {
    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// Decides whether `user` may do what `attrs` describe under `rbac`: members of
/// `system:masters` always may; anyone else needs a rule, reached through a ClusterRoleBinding
/// or through a RoleBinding in the request's namespace, that matches the request.
pub fn authorize(user: &UserInfo, attrs: &Attributes, rbac: &RbacRules) -> Decision {
    if user.in_group(MASTERS_GROUP) {
        return Decision::Allow;
    }
    let namespace = attrs.namespace_str();
    // Upstream visits ClusterRoleBindings first, then the RoleBindings of the namespace.
    let cluster = rbac
        .cluster_role_bindings
        .iter()
        .map(|b| (b.subjects.as_deref(), &b.role_ref, ""));
    let namespaced = rbac
        .role_bindings
        .iter()
        .filter(|b| !namespace.is_empty() && b.metadata.namespace.as_deref() == Some(namespace))
        .map(|b| (b.subjects.as_deref(), &b.role_ref, namespace));
    let mut errors = Vec::new();
    for (subjects, role_ref, binding_namespace) in cluster.chain(namespaced) {
        if !applies_to(user, subjects, binding_namespace) {
            continue;
        }
        match role_rules(rbac, role_ref, binding_namespace) {
            Ok(rules) if rules.iter().any(|rule| rule_allows(attrs, rule)) => {
                return Decision::Allow;
            }
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    Decision::Deny {
        reason: deny_reason(&errors),
    }
}

/// Upstream: `RBAC: ` + the aggregate of the resolution errors, whose text is the single
/// error, or the distinct errors joined by `, ` in brackets.
fn deny_reason(errors: &[String]) -> String {
    let mut distinct: Vec<&str> = Vec::new();
    for e in errors {
        if !distinct.contains(&e.as_str()) {
            distinct.push(e);
        }
    }
    match distinct.as_slice() {
        [] => String::new(),
        [one] => format!("RBAC: {one}"),
        many => format!("RBAC: [{}]", many.join(", ")),
    }
}

/// The rules a binding's roleRef points at; a Role is looked up in the binding's namespace
/// (so a ClusterRoleBinding to a Role never resolves), a ClusterRole cluster-wide, which is
/// how a RoleBinding to a ClusterRole grants its rules in the binding's namespace only.
fn role_rules<'a>(
    rbac: &'a RbacRules,
    role_ref: &RoleRef,
    binding_namespace: &str,
) -> Result<&'a [PolicyRule], String> {
    match role_ref.kind.as_str() {
        "Role" => rbac
            .roles
            .iter()
            .find(|r| {
                !binding_namespace.is_empty()
                    && r.metadata.namespace.as_deref() == Some(binding_namespace)
                    && r.metadata.name.as_deref() == Some(role_ref.name.as_str())
            })
            .map(|r| r.rules.as_deref().unwrap_or_default())
            .ok_or_else(|| {
                format!(
                    "role.rbac.authorization.k8s.io {:?} not found",
                    role_ref.name
                )
            }),
        "ClusterRole" => rbac
            .cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(role_ref.name.as_str()))
            .map(|r| r.rules.as_deref().unwrap_or_default())
            .ok_or_else(|| {
                format!(
                    "clusterrole.rbac.authorization.k8s.io {:?} not found",
                    role_ref.name
                )
            }),
        other => Err(format!("unsupported role reference kind: {other:?}")),
    }
}

fn applies_to(user: &UserInfo, subjects: Option<&[Subject]>, namespace: &str) -> bool {
    subjects
        .unwrap_or_default()
        .iter()
        .any(|s| applies_to_user(user, s, namespace))
}

fn applies_to_user(user: &UserInfo, subject: &Subject, namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.username == subject.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            // Upstream defaults the subject's namespace to the binding's, so RoleBindings may
            // name service accounts of their own namespace unqualified.
            let sa_namespace = match subject.namespace.as_deref() {
                Some(ns) if !ns.is_empty() => ns,
                _ => namespace,
            };
            !sa_namespace.is_empty()
                && user.service_account_parts() == Some((sa_namespace, subject.name.as_str()))
        }
        _ => false,
    }
}

fn rule_allows(attrs: &Attributes, rule: &PolicyRule) -> bool {
    if !verb_matches(rule, &attrs.verb) {
        return false;
    }
    match attrs.path.as_deref() {
        Some(path) => non_resource_url_matches(rule, path),
        None => {
            api_group_matches(rule, &attrs.api_group)
                && resource_matches(rule, &attrs.combined_resource(), attrs.subresource_str())
                && resource_name_matches(rule, attrs.name_str())
        }
    }
}

fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == ALL || v == verb)
}

fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    rule.api_groups
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|g| g == ALL || g == group)
}

fn resource_matches(rule: &PolicyRule, combined: &str, subresource: &str) -> bool {
    rule.resources
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|r| {
            r == ALL
                || r == combined
                || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
        })
}

/// A rule with resourceNames matches only requests naming one of them, so it never matches
/// a create, list or collection watch, which have no name.
fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => names.iter().any(|n| n == name),
    }
}

fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|url| {
            url == ALL
                || url == path
                || (url.ends_with('*') && path.starts_with(url.trim_end_matches('*')))
        })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: strings(verbs),
            api_groups: Some(strings(groups)),
            resources: Some(strings(resources)),
            ..PolicyRule::default()
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: namespace.map(str::to_owned),
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        }
    }

    fn role(namespace: &str, name: &str, rules: Vec<PolicyRule>) -> Role {
        Role {
            metadata: meta(Some(namespace), name),
            rules: Some(rules),
        }
    }

    fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
        ClusterRole {
            metadata: meta(None, name),
            rules: Some(rules),
            ..ClusterRole::default()
        }
    }

    fn subject(kind: &str, name: &str, namespace: Option<&str>) -> Subject {
        Subject {
            kind: kind.to_owned(),
            name: name.to_owned(),
            namespace: namespace.map(str::to_owned),
            api_group: None,
        }
    }

    fn role_ref(kind: &str, name: &str) -> RoleRef {
        RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
        }
    }

    fn role_binding(namespace: &str, subjects: Vec<Subject>, to: RoleRef) -> RoleBinding {
        RoleBinding {
            metadata: meta(Some(namespace), "binding"),
            role_ref: to,
            subjects: Some(subjects),
        }
    }

    fn cluster_role_binding(subjects: Vec<Subject>, to: RoleRef) -> ClusterRoleBinding {
        ClusterRoleBinding {
            metadata: meta(None, "binding"),
            role_ref: to,
            subjects: Some(subjects),
        }
    }

    fn alice() -> UserInfo {
        UserInfo::new("alice", vec!["dev".to_owned()])
    }

    fn allowed(user: &UserInfo, attrs: &Attributes, rbac: &RbacRules) -> bool {
        authorize(user, attrs, rbac).is_allowed()
    }

    /// Alice bound in namespace `team` to a Role holding `rules`.
    fn alice_with(rules: Vec<PolicyRule>) -> RbacRules {
        RbacRules {
            roles: vec![role("team", "r", rules)],
            role_bindings: vec![role_binding(
                "team",
                vec![subject("User", "alice", None)],
                role_ref("Role", "r"),
            )],
            ..RbacRules::default()
        }
    }

    fn get_pod(name: &str) -> Attributes {
        Attributes::resource("get", "", "pods")
            .in_namespace("team")
            .named(name)
    }

    #[test]
    fn nothing_is_allowed_without_bindings() {
        let decision = authorize(&alice(), &get_pod("p"), &RbacRules::default());
        assert_eq!(
            decision,
            Decision::Deny {
                reason: String::new()
            }
        );
    }

    #[test]
    fn masters_are_always_allowed() {
        let admin = UserInfo::new("root", vec![MASTERS_GROUP.to_owned()]);
        assert!(allowed(&admin, &get_pod("p"), &RbacRules::default()));
        assert!(allowed(
            &admin,
            &Attributes::non_resource("get", "/anything"),
            &RbacRules::default()
        ));
    }

    #[test]
    fn verbs_groups_and_resources_must_all_match() {
        let rbac = alice_with(vec![rule(&["get", "list"], &[""], &["pods"])]);
        assert!(allowed(&alice(), &get_pod("p"), &rbac));
        let list = Attributes::resource("list", "", "pods").in_namespace("team");
        assert!(allowed(&alice(), &list, &rbac));
        let delete = Attributes::resource("delete", "", "pods")
            .in_namespace("team")
            .named("p");
        assert!(!allowed(&alice(), &delete, &rbac));
        let jobs = Attributes::resource("get", "batch", "pods")
            .in_namespace("team")
            .named("p");
        assert!(!allowed(&alice(), &jobs, &rbac));
        let cms = Attributes::resource("get", "", "configmaps")
            .in_namespace("team")
            .named("p");
        assert!(!allowed(&alice(), &cms, &rbac));
    }

    #[test]
    fn wildcards_match_everything_of_their_kind() {
        let rbac = alice_with(vec![rule(&["*"], &["*"], &["*"])]);
        let attrs = Attributes::resource("deletecollection", "batch", "jobs").in_namespace("team");
        assert!(allowed(&alice(), &attrs, &rbac));
        assert!(allowed(
            &alice(),
            &get_pod("p").with_subresource("log"),
            &rbac
        ));
    }

    #[test]
    fn subresources_need_their_own_rule() {
        let rbac = alice_with(vec![rule(&["get"], &[""], &["pods"])]);
        assert!(!allowed(
            &alice(),
            &get_pod("p").with_subresource("log"),
            &rbac
        ));
        let rbac = alice_with(vec![rule(&["get"], &[""], &["pods/log"])]);
        assert!(allowed(
            &alice(),
            &get_pod("p").with_subresource("log"),
            &rbac
        ));
        assert!(!allowed(&alice(), &get_pod("p"), &rbac));
        assert!(!allowed(
            &alice(),
            &get_pod("p").with_subresource("status"),
            &rbac
        ));
    }

    #[test]
    fn star_slash_subresource_matches_that_subresource_of_any_resource() {
        let rbac = alice_with(vec![rule(&["get"], &["*"], &["*/status"])]);
        let job_status = Attributes::resource("get", "batch", "jobs")
            .in_namespace("team")
            .named("j")
            .with_subresource("status");
        assert!(allowed(&alice(), &job_status, &rbac));
        assert!(!allowed(&alice(), &get_pod("p"), &rbac));
        assert!(!allowed(
            &alice(),
            &get_pod("p").with_subresource("log"),
            &rbac
        ));
        // `*/status` is no prefix pattern: a longer subresource ending in "status" misses.
        assert!(!allowed(
            &alice(),
            &get_pod("p").with_subresource("xstatus"),
            &rbac
        ));
    }

    #[test]
    fn resource_names_match_only_named_requests() {
        let mut named = rule(&["get", "list", "create", "update"], &[""], &["configmaps"]);
        named.resource_names = Some(strings(&["status"]));
        let rbac = alice_with(vec![named]);
        let cm = |verb: &str| Attributes::resource(verb, "", "configmaps").in_namespace("team");
        assert!(allowed(&alice(), &cm("get").named("status"), &rbac));
        assert!(allowed(&alice(), &cm("update").named("status"), &rbac));
        assert!(!allowed(&alice(), &cm("get").named("other"), &rbac));
        assert!(!allowed(&alice(), &cm("list"), &rbac));
        assert!(!allowed(&alice(), &cm("create"), &rbac));
        // An empty list restricts nothing.
        let mut empty = rule(&["list"], &[""], &["configmaps"]);
        empty.resource_names = Some(Vec::new());
        assert!(allowed(&alice(), &cm("list"), &alice_with(vec![empty])));
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_trailing_star() {
        let urls = PolicyRule {
            verbs: strings(&["get"]),
            non_resource_urls: Some(strings(&["/healthz", "/apis/*"])),
            ..PolicyRule::default()
        };
        let rbac = RbacRules {
            cluster_roles: vec![cluster_role("urls", vec![urls])],
            cluster_role_bindings: vec![cluster_role_binding(
                vec![subject("Group", "dev", None)],
                role_ref("ClusterRole", "urls"),
            )],
            ..RbacRules::default()
        };
        let get = |path: &str| Attributes::non_resource("get", path);
        assert!(allowed(&alice(), &get("/healthz"), &rbac));
        assert!(!allowed(&alice(), &get("/healthz/ready"), &rbac));
        assert!(allowed(&alice(), &get("/apis/"), &rbac));
        assert!(allowed(&alice(), &get("/apis/batch/v1"), &rbac));
        assert!(!allowed(&alice(), &get("/apis"), &rbac));
        assert!(!allowed(
            &alice(),
            &Attributes::non_resource("post", "/healthz"),
            &rbac
        ));
        // Resource rules never grant non-resource URLs and the other way round.
        let everything = alice_with(vec![rule(&["*"], &["*"], &["*"])]);
        assert!(!allowed(&alice(), &get("/healthz"), &everything));
        let star = PolicyRule {
            verbs: strings(&["*"]),
            non_resource_urls: Some(strings(&["*"])),
            ..PolicyRule::default()
        };
        let urls_only = RbacRules {
            cluster_roles: vec![cluster_role("all-urls", vec![star])],
            cluster_role_bindings: vec![cluster_role_binding(
                vec![subject("User", "alice", None)],
                role_ref("ClusterRole", "all-urls"),
            )],
            ..RbacRules::default()
        };
        assert!(allowed(&alice(), &get("/metrics"), &urls_only));
        assert!(!allowed(&alice(), &get_pod("p"), &urls_only));
    }

    #[test]
    fn role_binding_to_cluster_role_grants_only_in_its_namespace() {
        let rbac = RbacRules {
            cluster_roles: vec![cluster_role(
                "pod-reader",
                vec![rule(&["get"], &[""], &["pods"])],
            )],
            role_bindings: vec![role_binding(
                "team",
                vec![subject("User", "alice", None)],
                role_ref("ClusterRole", "pod-reader"),
            )],
            ..RbacRules::default()
        };
        assert!(allowed(&alice(), &get_pod("p"), &rbac));
        let elsewhere = Attributes::resource("get", "", "pods")
            .in_namespace("other")
            .named("p");
        assert!(!allowed(&alice(), &elsewhere, &rbac));
        let cluster_wide = Attributes::resource("get", "", "pods").named("p");
        assert!(!allowed(&alice(), &cluster_wide, &rbac));
    }

    #[test]
    fn cluster_role_binding_grants_everywhere() {
        let rbac = RbacRules {
            cluster_roles: vec![cluster_role(
                "node-reader",
                vec![rule(&["list"], &[""], &["nodes", "pods"])],
            )],
            cluster_role_bindings: vec![cluster_role_binding(
                vec![subject("User", "alice", None)],
                role_ref("ClusterRole", "node-reader"),
            )],
            ..RbacRules::default()
        };
        assert!(allowed(
            &alice(),
            &Attributes::resource("list", "", "nodes"),
            &rbac
        ));
        assert!(allowed(
            &alice(),
            &Attributes::resource("list", "", "pods").in_namespace("any"),
            &rbac
        ));
    }

    #[test]
    fn a_role_is_looked_up_in_its_bindings_namespace() {
        let rbac = RbacRules {
            roles: vec![role("other", "r", vec![rule(&["get"], &[""], &["pods"])])],
            role_bindings: vec![role_binding(
                "team",
                vec![subject("User", "alice", None)],
                role_ref("Role", "r"),
            )],
            ..RbacRules::default()
        };
        assert_eq!(
            authorize(&alice(), &get_pod("p"), &rbac),
            Decision::Deny {
                reason: r#"RBAC: role.rbac.authorization.k8s.io "r" not found"#.to_owned()
            }
        );
    }

    #[test]
    fn missing_roles_of_applying_bindings_are_the_deny_reason() {
        let rbac = RbacRules {
            role_bindings: vec![
                role_binding(
                    "team",
                    vec![subject("User", "alice", None)],
                    role_ref("ClusterRole", "gone"),
                ),
                role_binding(
                    "team",
                    vec![subject("Group", "dev", None)],
                    role_ref("ClusterRole", "gone"),
                ),
                role_binding(
                    "team",
                    vec![subject("User", "alice", None)],
                    role_ref("Role", "missing"),
                ),
                role_binding(
                    "team",
                    vec![subject("User", "bob", None)],
                    role_ref("Role", "not-for-alice"),
                ),
            ],
            cluster_role_bindings: vec![cluster_role_binding(
                vec![subject("User", "alice", None)],
                role_ref("Role", "r"),
            )],
            ..RbacRules::default()
        };
        let reason = match authorize(&alice(), &get_pod("p"), &rbac) {
            Decision::Deny { reason } => reason,
            Decision::Allow => panic!("allowed"),
        };
        assert_eq!(
            reason,
            r#"RBAC: [role.rbac.authorization.k8s.io "r" not found, clusterrole.rbac.authorization.k8s.io "gone" not found, role.rbac.authorization.k8s.io "missing" not found]"#
        );
        let odd_kind = RbacRules {
            cluster_role_bindings: vec![cluster_role_binding(
                vec![subject("User", "alice", None)],
                role_ref("Policy", "x"),
            )],
            ..RbacRules::default()
        };
        assert_eq!(
            authorize(&alice(), &get_pod("p"), &odd_kind),
            Decision::Deny {
                reason: r#"RBAC: unsupported role reference kind: "Policy""#.to_owned()
            }
        );
    }

    #[test]
    fn groups_match_by_membership() {
        let rbac = RbacRules {
            roles: vec![role("team", "r", vec![rule(&["get"], &[""], &["pods"])])],
            role_bindings: vec![role_binding(
                "team",
                vec![subject("Group", "system:authenticated", None)],
                role_ref("Role", "r"),
            )],
            ..RbacRules::default()
        };
        assert!(allowed(&alice(), &get_pod("p"), &rbac));
        let unauthenticated = UserInfo {
            username: "system:anonymous".to_owned(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".to_owned()],
        };
        assert!(!allowed(&unauthenticated, &get_pod("p"), &rbac));
    }

    #[test]
    fn service_accounts_match_by_namespace_and_name() {
        let runner = UserInfo::service_account("team", "runner");
        let bound = |subject: Subject| RbacRules {
            roles: vec![role("team", "r", vec![rule(&["get"], &[""], &["pods"])])],
            role_bindings: vec![role_binding("team", vec![subject], role_ref("Role", "r"))],
            ..RbacRules::default()
        };
        let explicit = bound(subject("ServiceAccount", "runner", Some("team")));
        assert!(allowed(&runner, &get_pod("p"), &explicit));
        // The namespace defaults to the binding's.
        let implicit = bound(subject("ServiceAccount", "runner", None));
        assert!(allowed(&runner, &get_pod("p"), &implicit));
        let other_ns = bound(subject("ServiceAccount", "runner", Some("elsewhere")));
        assert!(!allowed(&runner, &get_pod("p"), &other_ns));
        let other_name = bound(subject("ServiceAccount", "other", Some("team")));
        assert!(!allowed(&runner, &get_pod("p"), &other_name));
        // A plain user with the same name is no service account.
        let impostor = UserInfo::new("runner", Vec::new());
        assert!(!allowed(&impostor, &get_pod("p"), &explicit));
        // Service-account groups, by namespace or all of them.
        for group in ["system:serviceaccounts:team", "system:serviceaccounts"] {
            assert!(allowed(
                &runner,
                &get_pod("p"),
                &bound(subject("Group", group, None))
            ));
            assert!(!allowed(
                &alice(),
                &get_pod("p"),
                &bound(subject("Group", group, None))
            ));
        }
        let other_team = UserInfo::service_account("other", "runner");
        let team_group = bound(subject("Group", "system:serviceaccounts:team", None));
        assert!(!allowed(&other_team, &get_pod("p"), &team_group));
    }

    #[test]
    fn unqualified_service_account_in_cluster_binding_matches_nobody() {
        let rbac = RbacRules {
            cluster_roles: vec![cluster_role("c", vec![rule(&["get"], &[""], &["pods"])])],
            cluster_role_bindings: vec![cluster_role_binding(
                vec![subject("ServiceAccount", "runner", None)],
                role_ref("ClusterRole", "c"),
            )],
            ..RbacRules::default()
        };
        let runner = UserInfo::service_account("team", "runner");
        assert!(!allowed(&runner, &get_pod("p"), &rbac));
    }

    #[test]
    fn unknown_subject_kinds_and_missing_subjects_match_nobody() {
        let mut rbac = alice_with(vec![rule(&["get"], &[""], &["pods"])]);
        rbac.role_bindings[0].subjects = Some(vec![subject("Robot", "alice", None)]);
        assert!(!allowed(&alice(), &get_pod("p"), &rbac));
        rbac.role_bindings[0].subjects = None;
        assert!(!allowed(&alice(), &get_pod("p"), &rbac));
    }

    #[test]
    fn role_bindings_of_other_namespaces_do_not_count() {
        let mut rbac = alice_with(vec![rule(&["get"], &[""], &["pods"])]);
        rbac.roles
            .push(role("other", "r", vec![rule(&["get"], &[""], &["pods"])]));
        rbac.role_bindings[0].metadata.namespace = Some("other".to_owned());
        assert!(!allowed(&alice(), &get_pod("p"), &rbac));
    }
}
