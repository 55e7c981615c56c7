//! The shell that asks the API server: a TokenReview for who the caller is (for the
//! service's audiences), a SubjectAccessReview for what they may do, answers cached by
//! [`DecisionCache`] and at most `review_concurrency` reviews in flight: made-up tokens
//! each miss the cache, and without the bound each would be one more request to the API
//! server at once. Reviews of tokens not known to authenticate are also rate-limited
//! ([`ReviewLimiter`]), so a flood of them costs the API server a few reviews a second and
//! never delays a token that authenticated before.

use super::cache::{DecisionCache, TokenHash};
use super::caller::Caller;
use super::config::AuthConfig;
use super::decision::{self, Action, AuthError};
use super::forward::{ForwardAuthConfig, MAX_COOKIE_BYTES, SessionError, Sessions};
use super::limits::{ReviewLimiter, credential_size};
use axum::http::{HeaderMap, header};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The cached answer of one (token, action): the caller, or a definite refusal.
type Answer = Result<Caller, AuthError>;

/// Authenticates and authorizes requests with the service's own client.
pub struct Authenticator {
    client: kube::Client,
    config: AuthConfig,
    namespace: String,
    cache: DecisionCache<Answer>,
    reviews: Semaphore,
    limiter: ReviewLimiter,
    metrics: Arc<crate::metrics::Metrics>,
    /// Session cookies checked by forward authentication, when it is configured.
    sessions: Option<Sessions>,
}

impl Authenticator {
    /// An authenticator asking about resources in `namespace`, counting its reviews in
    /// flight in `metrics`.
    pub fn new(
        client: kube::Client,
        config: AuthConfig,
        namespace: &str,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let cache = DecisionCache::new(config.cache_ttl, config.cache_capacity);
        let reviews = Semaphore::new(config.review_concurrency.max(1));
        let limiter = ReviewLimiter::new(&config.limits);
        Authenticator {
            client,
            config,
            namespace: namespace.to_owned(),
            cache,
            reviews,
            limiter,
            metrics,
            sessions: None,
        }
    }

    /// Whether requests need a token.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The caller of a request with `headers` from `source` (the client's address, when
    /// known) asking for `action`.
    pub async fn check(
        &self,
        action: Action,
        headers: &HeaderMap,
        source: Option<IpAddr>,
    ) -> Result<Caller, AuthError> {
        if !self.config.enabled {
            return Ok(Caller::anonymous());
        }
        let token = decision::bearer(headers.get(header::AUTHORIZATION))?;
        credential_size(token, self.config.limits.max_credential_bytes)?;
        let hash = TokenHash::of(token);
        let answer =
            self.cache
                .get_or_try((hash, action), || async {
                    // A refusal by the limits is not an answer about the token: not kept.
                    self.limiter.admit(&hash, source)?;
                    // Nothing closes the semaphore; should it ever be, the caller gets a 503,
                    // never an unchecked pass.
                    let _permit = self.reviews.acquire().await.map_err(|_| {
                        AuthError::Unavailable("token reviews are closed".to_owned())
                    })?;
                    let _in_flight = self.metrics.auth_review();
                    match self.review(token, &hash, action).await {
                        Err(err) if !err.is_definite() => Err(err),
                        answer => Ok(answer),
                    }
                })
                .await;
        answer.and_then(|answer| answer)
    }

    async fn review(&self, token: &str, hash: &TokenHash, action: Action) -> Answer {
        let user = match self.authenticate(token).await {
            Ok(user) => {
                self.limiter.remember(*hash);
                user
            }
            Err(err) => {
                if err.is_definite() {
                    self.limiter.forget(hash);
                }
                return Err(err);
            }
        };
        self.authorize(&user, action).await
    }

    /// What `user` (authenticated by a token or a session) may do: the SubjectAccessReview
    /// of `action`, or the allow list for the internal routes.
    async fn authorize(&self, user: &UserInfo, action: Action) -> Answer {
        let username = user.username.clone().unwrap_or_default();
        match decision::attributes(&self.config, action, &self.namespace) {
            None => decision::internal_caller(&username, &self.config.internal_service_accounts)?,
            Some(attrs) => {
                let review = SubjectAccessReview {
                    spec: SubjectAccessReviewSpec {
                        user: user.username.clone(),
                        groups: user.groups.clone(),
                        uid: user.uid.clone(),
                        extra: user.extra.clone(),
                        resource_attributes: Some(attrs.clone()),
                        ..SubjectAccessReviewSpec::default()
                    },
                    ..SubjectAccessReview::default()
                };
                let answer = Api::<SubjectAccessReview>::all(self.client.clone())
                    .create(&PostParams::default(), &review)
                    .await
                    .map_err(|err| unavailable("SubjectAccessReview", &err))?;
                decision::authorized(&username, &attrs, answer.status.as_ref())?;
            }
        }
        tracing::debug!(user = %username, ?action, "authorized");
        Ok(Caller { username })
    }

    async fn authenticate(&self, token: &str) -> Result<UserInfo, AuthError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: (!self.config.audiences.is_empty())
                    .then(|| self.config.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|err| unavailable("TokenReview", &err))?;
        decision::authenticated(answer.status.as_ref(), &self.config.audiences)
    }
}

impl Authenticator {
    /// This authenticator, also checking session cookies as `config` says.
    pub fn with_sessions(mut self, config: ForwardAuthConfig) -> Result<Self, String> {
        // Cached as briefly, and as many, as token answers.
        let cache = DecisionCache::new(self.config.cache_ttl, self.config.cache_capacity);
        self.sessions = Some(Sessions::new(config, cache)?);
        Ok(self)
    }

    /// The forward authentication's settings, when it is on and requests need checking.
    pub fn sessions(&self) -> Option<&ForwardAuthConfig> {
        self.sessions
            .as_ref()
            .filter(|_| self.enabled())
            .map(|s| &s.config)
    }

    /// The caller of a request from `source` whose `Cookie` header is `cookie` asking for
    /// `action`. Checks of sessions not seen to be valid lately are rate-limited as token
    /// reviews are.
    pub async fn check_session(
        &self,
        action: Action,
        cookie: &str,
        source: Option<IpAddr>,
    ) -> Result<Caller, SessionError> {
        let Some(sessions) = self.sessions.as_ref().filter(|_| self.enabled()) else {
            return Err(SessionError::Auth(AuthError::MissingBearer(String::new())));
        };
        if action == Action::Internal {
            // The allow list names service accounts; a session names whoever the console
            // says, so it never stands for one.
            return Err(SessionError::Auth(AuthError::MissingBearer(
                "the internal routes take a service account's bearer token, never a session"
                    .to_owned(),
            )));
        }
        if cookie.len() > MAX_COOKIE_BYTES {
            return Err(SessionError::InvalidSession(format!(
                "the Cookie header is longer than {MAX_COOKIE_BYTES} bytes"
            )));
        }
        let hash = TokenHash::of(cookie);
        let answer = sessions
            .cache
            .get_or_try((hash, action), || async {
                // A refusal by the limits is not an answer about the session: not kept.
                self.limiter
                    .admit(&hash, source)
                    .map_err(SessionError::Auth)?;
                let _permit = self.reviews.acquire().await.map_err(|_| {
                    SessionError::Unavailable("session checks are closed".to_owned())
                })?;
                let _in_flight = self.metrics.auth_review();
                let answer = match sessions.ask(cookie).await {
                    Ok(user) => {
                        self.limiter.remember(hash);
                        self.authorize(&user, action)
                            .await
                            .map_err(SessionError::Auth)
                    }
                    Err(err) => {
                        if err.is_definite() {
                            self.limiter.forget(&hash);
                        }
                        Err(err)
                    }
                };
                match answer {
                    Err(err) if !err.is_definite() => Err(err),
                    answer => Ok(answer),
                }
            })
            .await;
        answer.and_then(|answer| answer)
    }
}

/// A review the API server did not answer: the service cannot tell, so 503 (never a
/// verdict on the token). The error text names the review, never the token.
fn unavailable(review: &str, err: &kube::Error) -> AuthError {
    let why = match err {
        kube::Error::Api(status) if status.code == 401 || status.code == 403 => format!(
            "the API server refused the service's {review} ({}); grant its service account create on {}",
            status.code,
            if review == "TokenReview" {
                "tokenreviews.authentication.k8s.io"
            } else {
                "subjectaccessreviews.authorization.k8s.io"
            }
        ),
        kube::Error::Api(status) => format!(
            "the API server answered the {review} with {} {}",
            status.code, status.reason
        ),
        _ => format!("the Kubernetes API server cannot be reached for a {review}"),
    };
    tracing::warn!(review, error = %err, "authentication review failed");
    AuthError::Unavailable(why)
}
