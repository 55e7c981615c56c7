//! `GET /cutover/permissions`: what the caller may do, so that a client (the live page)
//! offers only the actions that would be let through. Each answer is the authentication
//! layer's own check (TokenReview, then SubjectAccessReview, cached per token), the same
//! one the action's route makes.

use super::HttpContext;
use super::caller::{Caller, ClientAddr};
use super::error::ApiError;
use crate::auth::Action;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use serde::Serialize;
use std::sync::Arc;

/// The answer of `GET /cutover/permissions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Permissions {
    /// The authenticated username (`system:anonymous` with authentication off).
    pub user: String,
    /// Whether requests need a bearer token.
    pub authentication: bool,
    /// `POST /cutover` (start).
    pub start: bool,
    /// `POST /cutover/retry`: needs what a start needs.
    pub retry: bool,
    /// `POST /cutover/abort`.
    pub abort: bool,
    /// `POST /cutover/rollback`.
    pub rollback: bool,
}

/// `GET /cutover/permissions`. The route itself needs what reading the status needs.
pub async fn permissions(
    State(ctx): State<Arc<HttpContext>>,
    caller: Caller,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
) -> Result<Json<Permissions>, ApiError> {
    // Asked as reads: what the caller could do, not a request to do it from this origin.
    let check = |action| super::authenticate::check(&ctx, action, &Method::GET, &headers, source);
    let (start, abort, rollback) = tokio::join!(
        check(Action::Start),
        check(Action::Abort),
        check(Action::Rollback),
    );
    let start = granted(start)?;
    Ok(Json(Permissions {
        user: caller.username,
        authentication: ctx.auth.enabled(),
        start,
        retry: start,
        abort: granted(abort)?,
        rollback: granted(rollback)?,
    }))
}

/// What one check means for a caller the route already authenticated: let through is
/// `true`, refused is `false`; an API server that could not answer is an error (never a
/// guess either way).
pub fn granted<T>(answer: Result<T, ApiError>) -> Result<bool, ApiError> {
    match answer {
        Ok(_) => Ok(true),
        Err(err) if err.status() == StatusCode::FORBIDDEN => Ok(false),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthError;

    #[test]
    fn a_refusal_is_false_and_an_outage_is_an_error() {
        assert_eq!(granted(Ok(())).ok(), Some(true));
        let forbidden = AuthError::Forbidden {
            user: "bob".to_owned(),
            verb: "create".to_owned(),
            resource: "cutovers.catalyst.openova.io".to_owned(),
            namespace: "catalyst".to_owned(),
            reason: String::new(),
        };
        assert_eq!(granted::<()>(Err(forbidden.into())).ok(), Some(false));
        let outage = granted::<()>(Err(AuthError::Unavailable("down".to_owned()).into()));
        assert!(matches!(
            outage,
            Err(ApiError::Auth(AuthError::Unavailable(_)))
        ));
        let expired = granted::<()>(Err(AuthError::InvalidToken(String::new()).into()));
        assert!(matches!(
            expired,
            Err(ApiError::Auth(AuthError::InvalidToken(_)))
        ));
    }
}
