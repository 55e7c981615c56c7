//! The pure part of authentication and authorization: which action a route needs, the
//! bearer token of a header, and what a TokenReview or SubjectAccessReview answer means.

use super::config::AuthConfig;
use axum::http::{HeaderValue, Method, StatusCode};
use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReviewStatus};

/// What a request asks to do, and so which permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read the status or the event stream.
    Read,
    /// Start, retry or trigger a run.
    Start,
    /// Abort the running step.
    Abort,
    /// Roll the registry pivot back.
    Rollback,
    /// An internal route: an allow-listed service account only.
    Internal,
}

/// Routes open to anyone: probes and metrics scrapes carry no token.
pub const OPEN_ROUTES: &[&str] = &["/healthz", "/readyz", "/metrics"];
/// The live page and its assets: they hold no data, so a browser loads them without a
/// token; every call the page makes for data goes through the authorized routes.
pub const PAGE_ROUTES: &[&str] = &["/", "/app.js", "/app.css"];
/// Prefix of the routes only allow-listed service accounts may call.
const INTERNAL_PREFIX: &str = "/api/v1/internal/";

/// The action a request to the route `path` (the router's matched path) with `method`
/// needs; `None` for the open routes.
pub fn action_for(method: &Method, path: &str) -> Option<Action> {
    if OPEN_ROUTES.contains(&path) || PAGE_ROUTES.contains(&path) {
        return None;
    }
    if path.starts_with(INTERNAL_PREFIX) {
        return Some(Action::Internal);
    }
    if method == Method::GET || method == Method::HEAD {
        return Some(Action::Read);
    }
    if path.ends_with("/abort") {
        Some(Action::Abort)
    } else if path.ends_with("/rollback") {
        Some(Action::Rollback)
    } else {
        Some(Action::Start)
    }
}

/// Why a request is not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer <token>` header, or a malformed one.
    #[error("this route needs an `Authorization: Bearer <token>` header{}", detail_suffix(.0))]
    MissingBearer(String),
    /// The API server did not authenticate the token (invalid or expired).
    #[error("the bearer token is not valid (invalid or expired){}", detail_suffix(.0))]
    InvalidToken(String),
    /// The user lacks the permission the route needs.
    #[error(
        "user {user:?} may not {verb} {resource} in namespace {namespace:?}{}",
        detail_suffix(.reason)
    )]
    Forbidden {
        /// The authenticated username.
        user: String,
        /// The verb needed.
        verb: String,
        /// `resource.group`.
        resource: String,
        /// The namespace asked about.
        namespace: String,
        /// The authorizer's reason, when it gave one.
        reason: String,
    },
    /// An internal route called by someone not in the allow list. The answer never lists
    /// the allow list: that would tell any caller which service account to go after.
    #[error(
        "{user:?} is not a service account allowed to call the internal routes; the service's operator lists them in --internal-callers"
    )]
    UnauthorizedSa {
        /// The authenticated username.
        user: String,
    },
    /// The API server cannot answer: nothing is known about the token.
    #[error("cannot check the bearer token: {0}")]
    Unavailable(String),
    /// Too many reviews of credentials not known to authenticate ([`super::limits`]):
    /// nothing is known about this one yet.
    #[error(
        "too many requests with credentials this service does not know yet {scope}; retry in {retry_after} s"
    )]
    RateLimited {
        /// Seconds to wait (the `Retry-After` header).
        retry_after: u64,
        /// Which bucket ran dry: from this address, or in all.
        scope: String,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl AuthError {
    /// The stable kebab-case code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingBearer(_) => "missing-bearer",
            AuthError::InvalidToken(_) => "invalid-token",
            AuthError::Forbidden { .. } => "forbidden",
            AuthError::UnauthorizedSa { .. } => "unauthorized-sa",
            AuthError::Unavailable(_) => "unavailable",
            AuthError::RateLimited { .. } => "rate-limited",
        }
    }

    /// The HTTP status: 401, 403, 429 past the review limits, or 503 when the API server
    /// could not be asked.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::MissingBearer(_) | AuthError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            AuthError::Forbidden { .. } | AuthError::UnauthorizedSa { .. } => StatusCode::FORBIDDEN,
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// Whether the answer may be reused for the same token: every definite answer, never
    /// an outage or a limit.
    pub fn is_definite(&self) -> bool {
        !matches!(
            self,
            AuthError::Unavailable(_) | AuthError::RateLimited { .. }
        )
    }
}

/// The token of an `Authorization` header: the scheme `Bearer` (any case), one space or
/// more, and a non-empty token of visible ASCII.
pub fn bearer(header: Option<&HeaderValue>) -> Result<&str, AuthError> {
    let header = header.ok_or_else(|| AuthError::MissingBearer(String::new()))?;
    let value = header
        .to_str()
        .map_err(|_| AuthError::MissingBearer("the header is not visible ASCII".to_owned()))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| AuthError::MissingBearer("the header is not `Bearer <token>`".to_owned()))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingBearer(format!(
            "the scheme is {scheme:?}, not Bearer"
        )));
    }
    let token = token.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(AuthError::MissingBearer(
            "the bearer token is empty or contains spaces".to_owned(),
        ));
    }
    Ok(token)
}

/// The user a TokenReview answer authenticates, or why it does not. With `audiences`
/// (the service's own, sent in the review's `spec.audiences`), the token must be valid for
/// one of them: an answer whose `status.audiences` names none of them is refused, as
/// Kubernetes' webhook token authenticator (and so kube-rbac-proxy) does, so an API server
/// or webhook that ignores the audiences asked for cannot let a token for another
/// service in.
pub fn authenticated(
    status: Option<&TokenReviewStatus>,
    audiences: &[String],
) -> Result<UserInfo, AuthError> {
    let status = status.ok_or_else(|| {
        AuthError::Unavailable("the TokenReview came back without a status".to_owned())
    })?;
    if status.authenticated != Some(true) {
        return Err(AuthError::InvalidToken(
            status.error.clone().unwrap_or_default(),
        ));
    }
    let granted = status.audiences.as_deref().unwrap_or_default();
    if !audiences.is_empty() && !granted.iter().any(|a| audiences.contains(a)) {
        return Err(AuthError::InvalidToken(format!(
            "the token is not for this service: its audiences {granted:?} include none of {audiences:?}"
        )));
    }
    match &status.user {
        Some(user) if user.username.as_deref().is_some_and(|u| !u.is_empty()) => Ok(user.clone()),
        _ => Err(AuthError::InvalidToken(
            "the token authenticates no username".to_owned(),
        )),
    }
}

/// The resource attributes `action` needs in `namespace`; `None` for internal routes,
/// which an allow list decides.
pub fn attributes(
    config: &AuthConfig,
    action: Action,
    namespace: &str,
) -> Option<ResourceAttributes> {
    let verb = match action {
        Action::Read => &config.read_verb,
        Action::Start => &config.start_verb,
        Action::Abort => &config.abort_verb,
        Action::Rollback => &config.rollback_verb,
        Action::Internal => return None,
    };
    Some(ResourceAttributes {
        group: Some(config.group.clone()),
        resource: Some(config.resource.clone()),
        verb: Some(verb.clone()),
        namespace: Some(namespace.to_owned()),
        ..ResourceAttributes::default()
    })
}

/// What a SubjectAccessReview answer for `user` asking `attrs` means.
pub fn authorized(
    user: &str,
    attrs: &ResourceAttributes,
    status: Option<&SubjectAccessReviewStatus>,
) -> Result<(), AuthError> {
    let status = status.ok_or_else(|| {
        AuthError::Unavailable("the SubjectAccessReview came back without a status".to_owned())
    })?;
    if status.allowed && status.denied != Some(true) {
        return Ok(());
    }
    let field = |f: &Option<String>| f.clone().unwrap_or_default();
    let group = field(&attrs.group);
    let resource = if group.is_empty() {
        field(&attrs.resource)
    } else {
        format!("{}.{group}", field(&attrs.resource))
    };
    let reason = [&status.reason, &status.evaluation_error]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    Err(AuthError::Forbidden {
        user: user.to_owned(),
        verb: field(&attrs.verb),
        resource,
        namespace: field(&attrs.namespace),
        reason,
    })
}

/// Whether `user` is an allow-listed service account.
pub fn internal_caller(user: &str, allowed: &[String]) -> Result<(), AuthError> {
    if allowed.iter().any(|a| a == user) {
        Ok(())
    } else {
        Err(AuthError::UnauthorizedSa {
            user: user.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn routes_map_to_actions() {
        assert_eq!(action_for(&Method::GET, "/healthz"), None);
        assert_eq!(action_for(&Method::GET, "/readyz"), None);
        assert_eq!(action_for(&Method::GET, "/metrics"), None);
        for asset in ["/", "/app.js", "/app.css"] {
            assert_eq!(
                action_for(&Method::GET, asset),
                None,
                "{asset} holds no data"
            );
        }
        assert_eq!(
            action_for(&Method::GET, "/cutover/permissions"),
            Some(Action::Read)
        );
        assert_eq!(action_for(&Method::GET, "/cutover"), Some(Action::Read));
        assert_eq!(
            action_for(&Method::POST, "/cutover/preflight"),
            Some(Action::Start),
            "a preflight run creates Jobs: it needs what a start needs"
        );
        assert_eq!(
            action_for(&Method::GET, "/cutover/preflight"),
            Some(Action::Read),
            "reading the latest result starts nothing"
        );
        assert_eq!(
            action_for(&Method::GET, "/api/v1/sovereign/cutover/events"),
            Some(Action::Read)
        );
        assert_eq!(action_for(&Method::POST, "/cutover"), Some(Action::Start));
        assert_eq!(
            action_for(&Method::POST, "/cutover/retry"),
            Some(Action::Start)
        );
        assert_eq!(
            action_for(&Method::POST, "/cutover/abort"),
            Some(Action::Abort)
        );
        assert_eq!(
            action_for(&Method::POST, "/api/v1/internal/cutover/trigger"),
            Some(Action::Internal)
        );
        for rollback in ["/cutover/rollback", "/api/v1/sovereign/cutover/rollback"] {
            assert_eq!(action_for(&Method::POST, rollback), Some(Action::Rollback));
        }
        let config = AuthConfig::enabled();
        let attrs = attributes(&config, Action::Rollback, "catalyst").unwrap();
        assert_eq!(attrs.verb.as_deref(), Some("rollback"));
        assert_eq!(attrs.resource.as_deref(), Some("cutovers"));
    }

    #[test]
    fn bearer_header_forms() {
        assert_eq!(bearer(Some(&header("Bearer abc.def"))), Ok("abc.def"));
        assert_eq!(bearer(Some(&header("bearer  abc"))), Ok("abc"));
        for bad in [
            "",
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            "Bearer a b",
            "abc",
        ] {
            let err = bearer(Some(&header(bad))).unwrap_err();
            assert_eq!(err.code(), "missing-bearer", "{bad:?}");
            assert!(
                !err.to_string().contains("dXNlcjpwYXNz"),
                "no credential echoed"
            );
        }
        assert_eq!(bearer(None).unwrap_err().status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn token_review_answers() {
        let user = UserInfo {
            username: Some("alice".into()),
            ..UserInfo::default()
        };
        let ok = TokenReviewStatus {
            authenticated: Some(true),
            user: Some(user.clone()),
            ..TokenReviewStatus::default()
        };
        assert_eq!(authenticated(Some(&ok), &[]), Ok(user));
        let expired = TokenReviewStatus {
            authenticated: Some(false),
            error: Some("token has expired".into()),
            ..TokenReviewStatus::default()
        };
        let err = authenticated(Some(&expired), &[]).unwrap_err();
        assert_eq!(
            (err.code(), err.status()),
            ("invalid-token", StatusCode::UNAUTHORIZED)
        );
        assert!(err.to_string().contains("expired"));
        let nameless = TokenReviewStatus {
            authenticated: Some(true),
            ..TokenReviewStatus::default()
        };
        assert_eq!(
            authenticated(Some(&nameless), &[]).unwrap_err().code(),
            "invalid-token"
        );
        let none = authenticated(None, &[]).unwrap_err();
        assert_eq!(none.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!none.is_definite());
    }

    #[test]
    fn a_token_for_another_audience_is_refused() {
        let ours = ["catalyst-cutover".to_owned()];
        let answer = |audiences: Option<Vec<&str>>| TokenReviewStatus {
            authenticated: Some(true),
            user: Some(UserInfo {
                username: Some("alice".into()),
                ..UserInfo::default()
            }),
            audiences: audiences.map(|a| a.into_iter().map(str::to_owned).collect()),
            ..TokenReviewStatus::default()
        };
        assert!(authenticated(Some(&answer(Some(vec!["catalyst-cutover"]))), &ours).is_ok());
        assert!(authenticated(Some(&answer(Some(vec!["x", "catalyst-cutover"]))), &ours).is_ok());
        for refused in [
            None,
            Some(vec![]),
            Some(vec!["https://kubernetes.default.svc"]),
        ] {
            let err = authenticated(Some(&answer(refused.clone())), &ours).unwrap_err();
            assert_eq!(err.code(), "invalid-token", "{refused:?}");
            assert!(err.to_string().contains("catalyst-cutover"), "{err}");
        }
        assert!(
            authenticated(Some(&answer(None)), &[]).is_ok(),
            "no audiences configured: any token the API server authenticates"
        );
    }

    #[test]
    fn access_review_answers_name_user_and_permission() {
        let config = AuthConfig::enabled();
        let attrs = attributes(&config, Action::Abort, "catalyst").unwrap();
        assert_eq!(attrs.verb.as_deref(), Some("delete"));
        assert_eq!(attributes(&config, Action::Internal, "catalyst"), None);
        let allowed = SubjectAccessReviewStatus {
            allowed: true,
            ..SubjectAccessReviewStatus::default()
        };
        assert_eq!(authorized("bob", &attrs, Some(&allowed)), Ok(()));
        let denied = SubjectAccessReviewStatus {
            allowed: false,
            reason: Some("no RBAC policy matched".into()),
            ..SubjectAccessReviewStatus::default()
        };
        let err = authorized("bob", &attrs, Some(&denied)).unwrap_err();
        assert_eq!(
            (err.code(), err.status()),
            ("forbidden", StatusCode::FORBIDDEN)
        );
        let text = err.to_string();
        for part in [
            "\"bob\"",
            "delete",
            "cutovers.catalyst.openova.io",
            "catalyst",
            "no RBAC",
        ] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
        let explicit_deny = SubjectAccessReviewStatus {
            allowed: true,
            denied: Some(true),
            ..SubjectAccessReviewStatus::default()
        };
        assert!(authorized("bob", &attrs, Some(&explicit_deny)).is_err());
    }

    #[test]
    fn internal_routes_need_an_allow_listed_service_account() {
        let allowed = vec!["system:serviceaccount:catalyst:trigger".to_owned()];
        assert_eq!(
            internal_caller("system:serviceaccount:catalyst:trigger", &allowed),
            Ok(())
        );
        let err = internal_caller("system:serviceaccount:catalyst:other", &allowed).unwrap_err();
        assert_eq!(
            (err.code(), err.status()),
            ("unauthorized-sa", StatusCode::FORBIDDEN)
        );
        assert!(err.is_definite());
        let detail = err.to_string();
        assert!(
            !detail.contains("catalyst:trigger"),
            "the allow list is not shown to the caller: {detail}"
        );
    }
}
