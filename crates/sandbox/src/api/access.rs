//! Authentication and authorization of requests: bearer token → user through the token
//! table or the tokens TokenRequest issued, then RBAC over the Role/Binding objects in the
//! store ([`crate::access_control`]).

use super::meta;
use super::route::ResourcePath;
use super::store::{ListOptions, Store};
use crate::access_control::{
    self, Attributes, Decision, IssuedTokens, RbacRules, TokenRejected, TokenTable, UserInfo,
};
use axum::http::{HeaderMap, Method, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::borrow::Cow;
use std::time::Duration;

/// Username of the always-valid admin token.
pub const ADMIN_USER: &str = "sandbox-admin";

/// How requests are authenticated.
pub struct Access {
    /// Known tokens (the admin token included); `None` = auth off, every request is admin.
    pub tokens: Option<TokenTable>,
    /// Tokens TokenReview answers from: the configured ones plus the admin token, even with
    /// auth off.
    pub reviewable: TokenTable,
    /// Service-account tokens the TokenRequest API issued; good for requests (when auth is
    /// on) and TokenReviews alike.
    pub issued: IssuedTokens,
    /// The shortest lifetime a TokenRequest may ask for.
    pub min_token_expiration: Duration,
    /// The user of every request while auth is off.
    admin: UserInfo,
}

/// The admin user: in `system:masters`, so RBAC always allows it.
pub fn admin_user() -> UserInfo {
    UserInfo::new(ADMIN_USER, [access_control::MASTERS_GROUP.to_string()])
}

impl Access {
    /// Token tables for `configured` plus the admin token; TokenRequests may ask for
    /// lifetimes from `min_token_expiration` up.
    pub fn new(
        configured: Option<TokenTable>,
        admin_token: &str,
        min_token_expiration: Duration,
    ) -> Self {
        let with_admin = |mut t: TokenTable| {
            t.insert(admin_token, admin_user());
            t
        };
        Access {
            reviewable: with_admin(configured.clone().unwrap_or_default()),
            tokens: configured.map(with_admin),
            issued: IssuedTokens::default(),
            min_token_expiration,
            admin: admin_user(),
        }
    }

    /// The user behind an issued service-account token for `audiences` (empty: the API
    /// server's) and the audiences it is good for; `None` when no TokenRequest issued it.
    pub fn issued_user(
        &self,
        store: &Store,
        token: &str,
        audiences: &[String],
    ) -> Option<Result<(UserInfo, Vec<String>), TokenRejected>> {
        let claims = self.issued.lookup(token)?;
        let current_uid = store
            .registry()
            .lookup("", "v1", "serviceaccounts")
            .and_then(|kind| {
                store
                    .get(&kind, Some(&claims.namespace), &claims.service_account)
                    .ok()
            })
            .map(|sa| meta::uid_of(&sa).to_owned());
        Some(claims.check(jiff::Timestamp::now(), current_uid.as_deref(), audiences))
    }

    /// The user of a request, or `None` when auth is on and the bearer token is missing,
    /// unknown, expired or its ServiceAccount gone (401).
    pub fn authenticate(&self, headers: &HeaderMap, store: &Store) -> Option<Cow<'_, UserInfo>> {
        let Some(tokens) = &self.tokens else {
            return Some(Cow::Borrowed(&self.admin));
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)?;
        match tokens.authenticate(token) {
            Some(user) => Some(Cow::Owned(user)),
            None => match self.issued_user(store, token, &[])? {
                Ok((user, _)) => Some(Cow::Owned(user)),
                Err(why) => {
                    tracing::debug!(%why, "issued service-account token refused");
                    None
                }
            },
        }
    }
}

/// The API verb of a resource request (kube-apiserver's RequestInfoFactory).
pub fn verb(method: &Method, rp: &ResourcePath, watching: bool) -> &'static str {
    match (method.as_str(), rp.name.is_some()) {
        ("GET", _) if watching => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "",
    }
}

/// The authorization attributes of a resource request whose `fieldSelector` parameter is
/// `field_selector` (`""` when absent).
pub fn attributes(
    method: &Method,
    rp: &ResourcePath,
    watching: bool,
    field_selector: &str,
) -> Attributes {
    let mut attrs = Attributes::resource(
        verb(method, rp, watching),
        rp.group.clone(),
        rp.plural.clone(),
    );
    attrs.namespace = rp.namespace.clone();
    // A namespace is its own namespace for authorization (RequestInfo sets it from the name).
    if rp.plural == "namespaces" && rp.group.is_empty() {
        attrs.namespace.clone_from(&rp.name);
    }
    attrs.name.clone_from(&rp.name);
    // A list or watch of a collection that selects one name exactly is authorized for that
    // name, so a Role with `resourceNames` allows it (RequestInfoFactory, since 1.11).
    if attrs.name.is_none() && matches!(attrs.verb.as_str(), "list" | "watch") {
        attrs.name = selected_name(field_selector);
    }
    attrs.subresource.clone_from(&rp.subresource);
    attrs
}

/// The name a field selector requires exactly: its first `metadata.name=` or `==` term,
/// when that name is a valid path segment (fields.Selector's RequiresExactMatch and
/// path.IsValidPathSegmentName). Pure.
pub fn selected_name(field_selector: &str) -> Option<String> {
    let name = field_selector.split(',').find_map(|term| {
        let (field, value) = term.split_once("==").or_else(|| {
            term.split_once('=')
                .filter(|(field, _)| !field.ends_with('!'))
        })?;
        (field.trim() == "metadata.name").then(|| value.trim())
    })?;
    let valid = !matches!(name, "" | "." | "..") && !name.contains(['/', '%']);
    valid.then(|| name.to_owned())
}

fn all_of<T: DeserializeOwned>(store: &Store, group: &str, plural: &str) -> Vec<T> {
    let Some(kind) = store.registry().lookup(group, "v1", plural) else {
        return Vec::new();
    };
    store
        .list(&kind, None, &ListOptions::default())
        .map(|page| {
            page.items
                .iter()
                .filter_map(|o| serde_json::from_value((**o).clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The RBAC objects currently stored.
pub fn rbac_rules(store: &Store) -> RbacRules {
    const RBAC: &str = "rbac.authorization.k8s.io";
    RbacRules {
        roles: all_of(store, RBAC, "roles"),
        cluster_roles: all_of(store, RBAC, "clusterroles"),
        role_bindings: all_of(store, RBAC, "rolebindings"),
        cluster_role_bindings: all_of(store, RBAC, "clusterrolebindings"),
    }
}

/// What kube-apiserver's bootstrap ClusterRole `system:basic-user` grants every
/// authenticated user: asking who they are and what they may do.
fn basic_user_may(attrs: &Attributes) -> bool {
    attrs.verb == "create"
        && matches!(
            (attrs.api_group.as_str(), attrs.resource.as_str()),
            ("authentication.k8s.io", "selfsubjectreviews")
                | ("authorization.k8s.io", "selfsubjectaccessreviews")
        )
}

/// RBAC's decision for `user` doing `attrs` against the stored rules.
pub fn decide(store: &Store, user: &UserInfo, attrs: &Attributes) -> Decision {
    if user.in_group(access_control::MASTERS_GROUP) || basic_user_may(attrs) {
        return Decision::Allow;
    }
    access_control::authorize(user, attrs, &rbac_rules(store))
}

/// The 401 answer.
pub fn unauthorized() -> (StatusCode, Value) {
    (
        StatusCode::UNAUTHORIZED,
        serde_json::to_value(access_control::unauthorized_status()).unwrap_or_default(),
    )
}

/// The 403 answer for a denied request.
pub fn forbidden(user: &UserInfo, attrs: &Attributes, reason: &str) -> (StatusCode, Value) {
    (
        StatusCode::FORBIDDEN,
        serde_json::to_value(access_control::forbidden_status(user, attrs, reason))
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::kinds::Registry;
    use crate::api::route::{Target, resolve};
    use crate::api::token_request;
    use serde_json::json;

    fn rp(path: &str) -> ResourcePath {
        match resolve(path) {
            Target::Resource(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn verbs_and_attributes_follow_request_info() {
        let cm = rp("/api/v1/namespaces/ns/configmaps/x");
        assert_eq!(verb(&Method::GET, &cm, false), "get");
        assert_eq!(verb(&Method::GET, &cm, true), "watch");
        assert_eq!(
            verb(
                &Method::DELETE,
                &rp("/api/v1/namespaces/ns/configmaps"),
                false
            ),
            "deletecollection"
        );
        let a = attributes(
            &Method::GET,
            &rp("/api/v1/namespaces/ns/pods/p/log"),
            false,
            "",
        );
        assert_eq!(
            (a.namespace.as_deref(), a.subresource.as_deref()),
            (Some("ns"), Some("log"))
        );
        let ns = attributes(&Method::DELETE, &rp("/api/v1/namespaces/team"), false, "");
        assert_eq!(ns.namespace.as_deref(), Some("team"));
    }

    #[test]
    fn a_list_or_watch_selecting_one_name_is_authorized_for_that_name() {
        let all = rp("/apis/apps/v1/namespaces/ns/daemonsets");
        let named = |verb: &Method, watching: bool, selector: &str| {
            attributes(verb, &all, watching, selector).name
        };
        let one = Some("registry-pivot".to_owned());
        assert_eq!(
            named(&Method::GET, false, "metadata.name=registry-pivot"),
            one
        );
        assert_eq!(
            named(&Method::GET, true, "metadata.name==registry-pivot"),
            one
        );
        assert_eq!(
            named(
                &Method::GET,
                true,
                "metadata.namespace=ns,metadata.name=registry-pivot"
            ),
            one
        );
        for not_one in [
            "",
            "metadata.name!=registry-pivot",
            "metadata.name=a/b",
            "metadata.name=..",
        ] {
            assert_eq!(named(&Method::GET, false, not_one), None, "{not_one}");
        }
        // A deletecollection is never narrowed to a name.
        assert_eq!(
            named(&Method::DELETE, false, "metadata.name=registry-pivot"),
            None
        );
    }

    #[test]
    fn tokens_authenticate_and_auth_off_is_admin() {
        let store = Store::new(Registry::new(&[]), 10);
        let mut headers = HeaderMap::new();
        let off = Access::new(None, "adm", access_control::MIN_TOKEN_EXPIRATION);
        assert_eq!(
            off.authenticate(&headers, &store).unwrap().username,
            ADMIN_USER
        );
        let on = Access::new(
            Some(TokenTable::parse("t1=alice:dev").unwrap()),
            "adm",
            access_control::MIN_TOKEN_EXPIRATION,
        );
        assert!(on.authenticate(&headers, &store).is_none());
        headers.insert(header::AUTHORIZATION, "Bearer t1".parse().unwrap());
        assert_eq!(on.authenticate(&headers, &store).unwrap().username, "alice");
        headers.insert(header::AUTHORIZATION, "Bearer adm".parse().unwrap());
        assert!(
            on.authenticate(&headers, &store)
                .unwrap()
                .in_group(access_control::MASTERS_GROUP)
        );
        assert!(off.reviewable.authenticate("adm").is_some());
    }

    #[test]
    fn issued_tokens_authenticate_while_their_service_account_lives() {
        let (store, sa_kind) = token_request::tests::store_with_service_account();
        let access = Access::new(
            Some(TokenTable::default()),
            "adm",
            access_control::MIN_TOKEN_EXPIRATION,
        );
        let answer = token_request::create(&store, &access, &sa_kind, "ns", "sa", &json!({}));
        let token = answer.unwrap()["status"]["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        let user = access.authenticate(&headers, &store).unwrap();
        assert_eq!(user.username, "system:serviceaccount:ns:sa");
        store
            .delete(&sa_kind, Some("ns"), "sa", &Default::default())
            .unwrap();
        assert!(access.authenticate(&headers, &store).is_none());
        assert!(matches!(
            access.issued_user(&store, &token, &[]),
            Some(Err(TokenRejected::ServiceAccountGone { .. }))
        ));
    }

    #[test]
    fn token_requests_are_create_on_the_token_subresource() {
        let a = attributes(
            &Method::POST,
            &rp("/api/v1/namespaces/ns/serviceaccounts/runner/token"),
            false,
            "",
        );
        assert_eq!(
            (
                a.verb.as_str(),
                a.resource.as_str(),
                a.subresource.as_deref(),
                a.name.as_deref()
            ),
            ("create", "serviceaccounts", Some("token"), Some("runner"))
        );
    }
}
