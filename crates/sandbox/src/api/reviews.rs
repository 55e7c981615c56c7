//! TokenReview, SubjectAccessReview and their "self" forms (`kubectl auth whoami`,
//! `kubectl auth can-i`): create-only, answered from the same token table, issued
//! service-account tokens and RBAC rules the server itself uses, never stored
//! (authentication.k8s.io/v1, authorization.k8s.io/v1).

use super::access::{self, Access};
use super::errors::{ApiError, Cause};
use super::store::Store;
use crate::auth::{API_SERVER_AUDIENCE, Attributes, Decision, UserInfo};
use serde_json::{Value, json};

fn reviewed(mut body: Value, api_version: &str, kind: &str, status: Value) -> Value {
    body["apiVersion"] = json!(api_version);
    body["kind"] = json!(kind);
    if !body.get("metadata").is_some_and(Value::is_object) {
        body["metadata"] = json!({});
    }
    body["metadata"]["creationTimestamp"] = Value::Null;
    body["status"] = status;
    body
}

/// Answers a TokenReview: `status.authenticated` and the user behind `spec.token`, from the
/// token table or, for a token the TokenRequest API issued, only while it has not expired,
/// is for the audiences asked about and its ServiceAccount still exists.
pub fn token_review(access: &Access, store: &Store, body: Value) -> Result<Value, ApiError> {
    let token = body
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if token.is_empty() {
        return Err(ApiError::invalid_kind(
            "TokenReview",
            "authentication.k8s.io",
            "",
            vec![Cause::required("spec.token", "token must be set")],
        ));
    }
    let asked = body
        .pointer("/spec/audiences")
        .cloned()
        .unwrap_or(json!([]));
    let authenticated = |user: UserInfo, audiences: Value| {
        json!({
            "authenticated": true,
            "user": {"username": user.username, "uid": user.uid, "groups": user.groups},
            "audiences": audiences,
        })
    };
    let refused = |why: &str| json!({"authenticated": false, "user": {}, "error": why});
    let wanted: Vec<String> = serde_json::from_value(asked).unwrap_or_default();
    let status = match access.reviewable.authenticate(token) {
        // Static tokens know no audience: kube-apiserver takes them as the API server's
        // own, so a review for other audiences refuses them.
        Some(user) => match api_server_audiences(&wanted) {
            Some(audiences) => authenticated(user, json!(audiences)),
            None => refused("invalid bearer token"),
        },
        None => match access.issued_user(store, token, &wanted) {
            Some(Ok((user, audiences))) => authenticated(user, json!(audiences)),
            Some(Err(why)) => refused(&format!("[invalid bearer token, {why}]")),
            None => refused("invalid bearer token"),
        },
    };
    Ok(reviewed(
        body,
        "authentication.k8s.io/v1",
        "TokenReview",
        status,
    ))
}

/// The audiences asked about (none: the API server's) that are the API server's, `None`
/// when there are none.
fn api_server_audiences(wanted: &[String]) -> Option<Vec<String>> {
    if wanted.is_empty() {
        return Some(vec![API_SERVER_AUDIENCE.to_owned()]);
    }
    let ours: Vec<String> = wanted
        .iter()
        .filter(|a| *a == API_SERVER_AUDIENCE)
        .cloned()
        .collect();
    (!ours.is_empty()).then_some(ours)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The action a (Self)SubjectAccessReview asks about.
fn attributes_of(kind: &str, spec: &Value) -> Result<Attributes, ApiError> {
    if let Some(r) = spec.get("resourceAttributes") {
        let opt = |p: &str| Some(str_at(r, p).to_string()).filter(|s| !s.is_empty());
        Ok(Attributes {
            verb: str_at(r, "/verb").to_string(),
            api_group: str_at(r, "/group").to_string(),
            resource: str_at(r, "/resource").to_string(),
            subresource: opt("/subresource"),
            namespace: opt("/namespace"),
            name: opt("/name"),
            path: None,
        })
    } else if let Some(n) = spec.get("nonResourceAttributes") {
        Ok(Attributes::non_resource(
            str_at(n, "/verb"),
            str_at(n, "/path"),
        ))
    } else {
        Err(ApiError::invalid_kind(
            kind,
            "authorization.k8s.io",
            "",
            vec![Cause::invalid(
                "spec.resourceAttributes",
                "null",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )],
        ))
    }
}

fn access_status(store: &Store, user: &UserInfo, attrs: &Attributes) -> Value {
    match access::decide(store, user, attrs) {
        Decision::Allow => json!({"allowed": true, "reason": "allowed by RBAC"}),
        Decision::Deny { reason } => json!({"allowed": false, "reason": reason}),
    }
}

/// Answers a SubjectAccessReview: RBAC's decision for `spec.user`/`spec.groups` doing the
/// resource or non-resource action described.
pub fn subject_access_review(store: &Store, body: Value) -> Result<Value, ApiError> {
    const KIND: &str = "SubjectAccessReview";
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let user = UserInfo {
        username: str_at(&spec, "/user").to_string(),
        uid: str_at(&spec, "/uid").to_string(),
        groups: spec
            .get("groups")
            .and_then(Value::as_array)
            .map(|g| {
                g.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
    };
    let status = access_status(store, &user, &attributes_of(KIND, &spec)?);
    Ok(reviewed(body, "authorization.k8s.io/v1", KIND, status))
}

/// Answers a SelfSubjectAccessReview: the same decision for the requesting user.
pub fn self_subject_access_review(
    store: &Store,
    user: &UserInfo,
    body: Value,
) -> Result<Value, ApiError> {
    const KIND: &str = "SelfSubjectAccessReview";
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = access_status(store, user, &attributes_of(KIND, &spec)?);
    Ok(reviewed(body, "authorization.k8s.io/v1", KIND, status))
}

/// Answers a SelfSubjectReview: who the requesting user is.
pub fn self_subject_review(user: &UserInfo, body: Value) -> Value {
    let status =
        json!({"userInfo": {"username": user.username, "uid": user.uid, "groups": user.groups}});
    reviewed(
        body,
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        status,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::kinds::Registry;
    use crate::auth::TokenTable;

    #[test]
    fn token_review_answers_from_the_table() {
        let store = Store::new(Registry::new(&[]), 10);
        let access = Access::new(
            Some(TokenTable::parse("t1=alice:dev").unwrap()),
            "adm",
            crate::auth::MIN_TOKEN_EXPIRATION,
        );
        let ok = token_review(&access, &store, json!({"spec": {"token": "t1"}})).unwrap();
        assert_eq!(ok["status"]["authenticated"], true);
        assert_eq!(ok["status"]["user"]["username"], "alice");
        let bad = token_review(&access, &store, json!({"spec": {"token": "nope"}})).unwrap();
        assert_eq!(bad["status"]["authenticated"], false);
        assert_eq!(
            token_review(&access, &store, json!({}))
                .unwrap_err()
                .code
                .as_u16(),
            422
        );
    }

    #[test]
    fn subject_access_review_uses_rbac() {
        let store = Store::new(Registry::new(&[]), 10);
        let sar = json!({"spec": {"user": "bob", "groups": ["system:masters"],
            "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "x"}}});
        assert_eq!(
            subject_access_review(&store, sar).unwrap()["status"]["allowed"],
            true
        );
        let sar = json!({"spec": {"user": "bob", "resourceAttributes": {"verb": "get", "resource": "pods"}}});
        assert_eq!(
            subject_access_review(&store, sar).unwrap()["status"]["allowed"],
            false
        );
    }
}
