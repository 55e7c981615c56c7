//! Forward authentication of session cookies, as ingress-nginx's `auth-url` and
//! oauth2-proxy do it: a request with a `Cookie` header and no bearer token is
//! authenticated by `GET <url>` carrying that `Cookie` header and nothing else of the
//! request; a 2xx answer names the user (`X-Auth-Request-User`) and their groups
//! (`X-Auth-Request-Groups`, comma-separated), and the same SubjectAccessReview as for a
//! token decides what they may do. Answers are cached under a hash of the cookie, and the
//! calls share the bound on reviews in flight with the token reviews. The cookie is never
//! logged, kept or shown.

use super::cache::DecisionCache;
use super::caller::Caller;
use super::decision::AuthError;
use super::origin::Origin;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use k8s_openapi::api::authentication::v1::UserInfo;
use std::time::Duration;

/// Cookie headers longer than this are refused without asking the forward-auth URL.
pub const MAX_COOKIE_BYTES: usize = 8 * 1024;
/// The header naming the user, as oauth2-proxy and ingress-nginx send it.
pub const DEFAULT_USER_HEADER: &str = "x-auth-request-user";
/// The header listing the user's groups.
pub const DEFAULT_GROUPS_HEADER: &str = "x-auth-request-groups";

/// How session cookies are checked.
#[derive(Debug, Clone)]
pub struct ForwardAuthConfig {
    /// The URL asked (`GET`) with the request's cookie: the console backend's session check.
    pub url: reqwest::Url,
    /// The answer's header naming the user.
    pub user_header: HeaderName,
    /// The answer's header listing the user's groups.
    pub groups_header: HeaderName,
    /// How long the URL may take to answer.
    pub timeout: Duration,
    /// The origins a cookie-authenticated request that changes something may come from;
    /// empty: the request's own host.
    pub allowed_origins: Vec<Origin>,
}

impl ForwardAuthConfig {
    /// Forward authentication to `url` (plain `http://`: the session check is a call inside
    /// the cluster, as ingress-nginx's `auth-url` usually is) with the default headers.
    pub fn new(url: &str) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url.trim())
            .map_err(|e| format!("--forward-auth-url {url:?} is not a URL: {e}"))?;
        if parsed.scheme() != "http" || parsed.host_str().is_none() {
            return Err(format!(
                "--forward-auth-url {url:?} must be an http:// URL of the console backend's \
                 session check inside the cluster (e.g. http://catalyst-api.catalyst.svc:8080/api/v1/auth/check)"
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("--forward-auth-url must not carry credentials".to_owned());
        }
        Ok(ForwardAuthConfig {
            url: parsed,
            user_header: HeaderName::from_static(DEFAULT_USER_HEADER),
            groups_header: HeaderName::from_static(DEFAULT_GROUPS_HEADER),
            timeout: Duration::from_secs(3),
            allowed_origins: Vec::new(),
        })
    }
}

/// Why a session is not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The forward-auth URL refused the session (401/403), or the cookie is too large.
    #[error("the session is not valid (signed out or expired): {0}; sign in to the console again")]
    InvalidSession(String),
    /// The forward-auth URL could not be asked: nothing is known about the session.
    #[error("cannot check the session: {0}")]
    Unavailable(String),
    /// A cookie-authenticated request that changes something, from another site.
    #[error("refused as a cross-site request: {0}")]
    CrossSite(String),
    /// The user is known; the SubjectAccessReview (or the internal routes' rule) decided.
    #[error(transparent)]
    Auth(AuthError),
}

impl SessionError {
    /// The stable kebab-case code.
    pub fn code(&self) -> &'static str {
        match self {
            SessionError::InvalidSession(_) => "invalid-session",
            SessionError::Unavailable(_) => "auth-unavailable",
            SessionError::CrossSite(_) => "cross-site",
            SessionError::Auth(err) => err.code(),
        }
    }

    /// The HTTP status: 401, 403, or 503 (never 401: a signed-in operator must not be told
    /// to sign in because the session check is down).
    pub fn status(&self) -> StatusCode {
        match self {
            SessionError::InvalidSession(_) => StatusCode::UNAUTHORIZED,
            SessionError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            SessionError::CrossSite(_) => StatusCode::FORBIDDEN,
            SessionError::Auth(err) => err.status(),
        }
    }

    /// Whether the answer may be reused for the same cookie: every definite one.
    pub fn is_definite(&self) -> bool {
        match self {
            SessionError::Unavailable(_) => false,
            SessionError::Auth(err) => err.is_definite(),
            SessionError::InvalidSession(_) | SessionError::CrossSite(_) => true,
        }
    }
}

/// The session checker an [`Authenticator`](super::Authenticator) holds when forward authentication is on.
pub struct Sessions {
    pub(super) config: ForwardAuthConfig,
    http: reqwest::Client,
    pub(super) cache: DecisionCache<Result<Caller, SessionError>>,
}

impl Sessions {
    /// The checker of `config`'s sessions, keeping its answers in `cache`.
    pub fn new(
        config: ForwardAuthConfig,
        cache: DecisionCache<Result<Caller, SessionError>>,
    ) -> Result<Sessions, String> {
        let http = reqwest::Client::builder()
            // A login redirect is an answer (not signed in), never a page to fetch; a proxy
            // from the environment must not see the cookie.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| format!("cannot build the forward-auth client: {e}"))?;
        Ok(Sessions {
            config,
            http,
            cache,
        })
    }

    /// Asks the forward-auth URL about `cookie`.
    pub(super) async fn ask(&self, cookie: &str) -> Result<UserInfo, SessionError> {
        let url = &self.config.url;
        let answer = self
            .http
            .get(url.clone())
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await;
        match answer {
            Ok(response) => {
                let verdict = verdict(response.status(), response.headers(), &self.config);
                if let Err(SessionError::Unavailable(why)) = &verdict {
                    tracing::warn!(%url, reason = %why, "the forward-auth URL gave no usable answer");
                }
                verdict
            }
            Err(err) => {
                // reqwest's error names the URL, never the request's headers.
                tracing::warn!(%url, error = %err, "the forward-auth URL cannot be asked");
                Err(SessionError::Unavailable(if err.is_timeout() {
                    format!(
                        "the console's session check did not answer within {:?}; retry shortly",
                        self.config.timeout
                    )
                } else {
                    "the console's session check cannot be reached; retry shortly".to_owned()
                }))
            }
        }
    }
}

/// What the forward-auth URL's answer (`status`, `headers`) means.
fn verdict(
    status: StatusCode,
    headers: &HeaderMap,
    config: &ForwardAuthConfig,
) -> Result<UserInfo, SessionError> {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(SessionError::InvalidSession(format!(
            "the console's session check answered {}",
            status.as_u16()
        )));
    }
    if status.is_redirection() {
        return Err(SessionError::InvalidSession(format!(
            "the console's session check answered {} (a sign-in redirect)",
            status.as_u16()
        )));
    }
    if !status.is_success() {
        return Err(SessionError::Unavailable(format!(
            "the console's session check answered {}; retry shortly",
            status.as_u16()
        )));
    }
    let text = |name: &HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let user = text(&config.user_header).ok_or_else(|| {
        SessionError::Unavailable(format!(
            "the console's session check answered {} without a {} header naming the user \
             (--forward-auth-user-header)",
            status.as_u16(),
            config.user_header
        ))
    })?;
    let groups: Vec<String> = text(&config.groups_header)
        .map(|g| {
            g.split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(UserInfo {
        username: Some(user.to_owned()),
        groups: (!groups.is_empty()).then_some(groups),
        ..UserInfo::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ForwardAuthConfig {
        ForwardAuthConfig::new("http://console.catalyst.svc:8080/auth").unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn only_a_plain_in_cluster_url_is_taken() {
        assert!(ForwardAuthConfig::new("http://catalyst-api.catalyst.svc/check").is_ok());
        for bad in [
            "",
            "catalyst-api",
            "https://console.example.org/check",
            "http://u:p@x/",
        ] {
            assert!(ForwardAuthConfig::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn answers_mean_a_user_a_signed_out_session_or_an_outage() {
        let c = config();
        let ok = verdict(
            StatusCode::OK,
            &headers(&[
                ("x-auth-request-user", "alice"),
                ("x-auth-request-groups", "ops, ,admins"),
            ]),
            &c,
        )
        .unwrap();
        assert_eq!(ok.username.as_deref(), Some("alice"));
        assert_eq!(ok.groups, Some(vec!["ops".to_owned(), "admins".to_owned()]));
        let no_groups = verdict(
            StatusCode::NO_CONTENT,
            &headers(&[("x-auth-request-user", "bob")]),
            &c,
        );
        assert_eq!(no_groups.unwrap().groups, None);

        for refused in [401, 403, 302] {
            let err =
                verdict(StatusCode::from_u16(refused).unwrap(), &headers(&[]), &c).unwrap_err();
            assert_eq!(
                (err.code(), err.status()),
                ("invalid-session", StatusCode::UNAUTHORIZED),
                "{refused}"
            );
        }
        for outage in [500, 502, 503, 404] {
            let err =
                verdict(StatusCode::from_u16(outage).unwrap(), &headers(&[]), &c).unwrap_err();
            assert_eq!(
                (err.code(), err.status()),
                ("auth-unavailable", StatusCode::SERVICE_UNAVAILABLE),
                "{outage}"
            );
            assert!(!err.is_definite());
        }
        let nameless = verdict(
            StatusCode::OK,
            &headers(&[("x-auth-request-user", " ")]),
            &c,
        )
        .unwrap_err();
        assert_eq!(nameless.code(), "auth-unavailable");
    }

    #[test]
    fn renamed_headers_are_read() {
        let c = ForwardAuthConfig {
            user_header: HeaderName::from_static("x-forwarded-user"),
            groups_header: HeaderName::from_static("x-forwarded-groups"),
            ..config()
        };
        let user = verdict(
            StatusCode::OK,
            &headers(&[
                ("x-forwarded-user", "carol"),
                ("x-forwarded-groups", "ops"),
                ("x-auth-request-user", "mallory"),
            ]),
            &c,
        )
        .unwrap();
        assert_eq!(user.username.as_deref(), Some("carol"));
        assert_eq!(user.groups, Some(vec!["ops".to_owned()]));
    }
}
