//! The authentication middleware: every route but the open ones needs a bearer token the
//! API server authenticates, and the permission its action needs; the [`Caller`] goes into
//! the request's extensions for the routes to read. Tokens are never logged.

use super::HttpContext;
use super::caller::Caller;
use super::error::ApiError;
use crate::auth::action_for;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Lets the request through with its [`Caller`], or answers 401, 403 or 503.
pub async fn require(
    State(ctx): State<Arc<HttpContext>>,
    mut req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let Some(action) = action_for(req.method(), &route) else {
        return next.run(req).await;
    };
    match ctx
        .auth
        .check(action, req.headers().get(header::AUTHORIZATION))
        .await
    {
        Ok(caller) => {
            tracing::debug!(user = %caller.username, "authenticated");
            req.extensions_mut().insert::<Caller>(caller);
            next.run(req).await
        }
        Err(err) => {
            tracing::info!(code = err.code(), %route, reason = %err, "request refused");
            let unauthorized = err.status() == StatusCode::UNAUTHORIZED;
            let mut response = ApiError::Auth(err).into_response();
            if unauthorized {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}
