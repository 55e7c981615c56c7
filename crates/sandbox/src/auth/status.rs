//! The `metav1.Status` bodies kube-apiserver answers 401 and 403 with, word for word, so
//! clients and tests see the sandbox fail the way a real cluster does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusDetails};

use super::attributes::Attributes;
use super::token::UserInfo;

/// The message of a 403, as kube-apiserver builds it: `forbiddenMessage` and `Forbidden` in
/// `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go`, wrapped by
/// `NewForbidden` in `staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go`. E.g.
/// `pods "p" is forbidden: User "alice" cannot get resource "pods/log" in API group "" in the
/// namespace "team"`, or `forbidden: User "alice" cannot get path "/metrics"`. A non-empty
/// `reason` (see [`super::Decision::Deny`]) is appended after `: `.
pub fn forbidden_message(user: &UserInfo, attrs: &Attributes, reason: &str) -> String {
    let what = match attrs.path.as_deref() {
        Some(path) => format!(
            "User {:?} cannot {} path {path:?}",
            user.username, attrs.verb
        ),
        None => {
            let scope = match attrs.namespace_str() {
                "" => "at the cluster scope".to_owned(),
                ns => format!("in the namespace {ns:?}"),
            };
            format!(
                "User {:?} cannot {} resource {:?} in API group {:?} {scope}",
                user.username,
                attrs.verb,
                attrs.combined_resource(),
                attrs.api_group
            )
        }
    };
    // Upstream escapes these so the text is safe to show in HTML; the reason is left as is.
    let what = what
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let err = match reason {
        "" => what,
        reason => format!("{what}: {reason}"),
    };
    let group_resource = match (attrs.is_resource_request(), attrs.api_group.as_str()) {
        (false, _) => String::new(),
        (true, "") => attrs.resource.clone(),
        (true, group) => format!("{}.{group}", attrs.resource),
    };
    match (group_resource.as_str(), attrs.name_str()) {
        ("", _) => format!("forbidden: {err}"),
        (gr, "") => format!("{gr} is forbidden: {err}"),
        (gr, name) => format!("{gr} {name:?} is forbidden: {err}"),
    }
}

/// The whole 403 body: reason `Forbidden`, details naming group, resource (as `kind`, which
/// upstream fills with the resource) and name.
pub fn forbidden_status(user: &UserInfo, attrs: &Attributes, reason: &str) -> Status {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let resource_request = attrs.is_resource_request();
    Status {
        code: Some(403),
        details: Some(StatusDetails {
            group: non_empty(&attrs.api_group).filter(|_| resource_request),
            kind: non_empty(&attrs.resource).filter(|_| resource_request),
            name: non_empty(attrs.name_str()).filter(|_| resource_request),
            ..StatusDetails::default()
        }),
        message: Some(forbidden_message(user, attrs, reason)),
        reason: Some("Forbidden".to_owned()),
        status: Some("Failure".to_owned()),
        ..Status::default()
    }
}

/// The 401 body for a missing or unknown bearer token (`Unauthorized` in
/// `staging/src/k8s.io/apiserver/pkg/endpoints/filters/authentication.go`).
pub fn unauthorized_status() -> Status {
    Status {
        code: Some(401),
        message: Some("Unauthorized".to_owned()),
        reason: Some("Unauthorized".to_owned()),
        status: Some("Failure".to_owned()),
        ..Status::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserInfo {
        UserInfo::new("alice", Vec::new())
    }

    #[test]
    fn named_namespaced_resource() {
        let attrs = Attributes::resource("get", "", "pods")
            .in_namespace("team")
            .named("p");
        assert_eq!(
            forbidden_message(&alice(), &attrs, ""),
            r#"pods "p" is forbidden: User "alice" cannot get resource "pods" in API group "" in the namespace "team""#
        );
    }

    #[test]
    fn collection_in_a_group() {
        let attrs = Attributes::resource("list", "batch", "jobs").in_namespace("team");
        assert_eq!(
            forbidden_message(&alice(), &attrs, ""),
            r#"jobs.batch is forbidden: User "alice" cannot list resource "jobs" in API group "batch" in the namespace "team""#
        );
    }

    #[test]
    fn cluster_scoped_resource() {
        let attrs = Attributes::resource("list", "", "nodes");
        assert_eq!(
            forbidden_message(&alice(), &attrs, ""),
            r#"nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope"#
        );
    }

    #[test]
    fn subresource_is_named_with_its_resource() {
        let sa = UserInfo::service_account("team", "runner");
        let attrs = Attributes::resource("get", "", "pods")
            .in_namespace("team")
            .named("p")
            .with_subresource("log");
        assert_eq!(
            forbidden_message(&sa, &attrs, ""),
            r#"pods "p" is forbidden: User "system:serviceaccount:team:runner" cannot get resource "pods/log" in API group "" in the namespace "team""#
        );
    }

    #[test]
    fn non_resource_path() {
        let attrs = Attributes::non_resource("get", "/metrics");
        assert_eq!(
            forbidden_message(&alice(), &attrs, ""),
            r#"forbidden: User "alice" cannot get path "/metrics""#
        );
    }

    #[test]
    fn reason_is_appended_and_markup_escaped() {
        let user = UserInfo::new("<b>&", Vec::new());
        let attrs = Attributes::resource("get", "", "pods")
            .in_namespace("team")
            .named("p");
        assert_eq!(
            forbidden_message(
                &user,
                &attrs,
                r#"RBAC: role.rbac.authorization.k8s.io "r" not found"#
            ),
            r#"pods "p" is forbidden: User "&lt;b&gt;&amp;" cannot get resource "pods" in API group "" in the namespace "team": RBAC: role.rbac.authorization.k8s.io "r" not found"#
        );
    }

    #[test]
    fn forbidden_body_matches_the_real_servers() {
        let attrs = Attributes::resource("create", "batch", "jobs")
            .in_namespace("team")
            .named("j");
        let body = serde_json::to_value(forbidden_status(&alice(), &attrs, "")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": r#"jobs.batch "j" is forbidden: User "alice" cannot create resource "jobs" in API group "batch" in the namespace "team""#,
                "reason": "Forbidden",
                "details": {"name": "j", "group": "batch", "kind": "jobs"},
                "code": 403
            })
        );
        let path = Attributes::non_resource("get", "/metrics");
        let body = serde_json::to_value(forbidden_status(&alice(), &path, "")).unwrap();
        assert_eq!(body["details"], serde_json::json!({}));
    }

    #[test]
    fn unauthorized_body_matches_the_real_servers() {
        let body = serde_json::to_value(unauthorized_status()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "Unauthorized",
                "reason": "Unauthorized",
                "code": 401
            })
        );
    }
}
