//! The authentication middleware: every route but the open ones needs a bearer token the
//! API server authenticates, or (with forward authentication) a session cookie the
//! console's session check vouches for, and the permission its action needs; the
//! [`Caller`] goes into the request's extensions for the routes to read. A
//! cookie-authenticated request that changes something must come from an allowed origin.
//! Tokens and cookies are never logged. Every answer of such a route carries
//! `Cache-Control: no-store` (it is one caller's view, and may be theirs alone). With
//! authentication off, a POST must still declare a JSON body: a web page of any site can
//! make a browser post `text/plain` or a form, never `application/json`, without the
//! service's consent.

use super::HttpContext;
use super::caller::{Caller, ClientAddr};
use super::error::ApiError;
use crate::auth::{Action, SessionError, action_for, origin};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Lets the request through with its [`Caller`], or answers 401, 403, 415, 429 or 503.
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
    if !ctx.auth.enabled()
        && req.method() == Method::POST
        && let Err(err) = json_declared(req.headers())
    {
        return err.into_response();
    }
    let ClientAddr(source) = ClientAddr::of(req.extensions());
    let mut response = match check(&ctx, action, req.method(), req.headers(), source).await {
        Ok(caller) => {
            tracing::debug!(user = %caller.username, "authenticated");
            req.extensions_mut().insert::<Caller>(caller);
            next.run(req).await
        }
        Err(err) => {
            tracing::info!(code = err.code(), %route, reason = %err, "request refused");
            let bearer_refused =
                matches!(err, ApiError::Auth(_)) && err.status() == StatusCode::UNAUTHORIZED;
            let mut response = err.into_response();
            if bearer_refused {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whether the request declares a JSON body (`application/json`, parameters allowed).
fn json_declared(headers: &HeaderMap) -> Result<(), ApiError> {
    let got = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let essence = got.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType { got })
    }
}

/// The caller of a request from `source` with `method` and `headers` asking for `action`:
/// by its bearer token when it has one (or when no session can be checked), else by its
/// session cookie, which a request that changes something may only use from an allowed
/// origin.
pub async fn check(
    ctx: &HttpContext,
    action: Action,
    method: &Method,
    headers: &HeaderMap,
    source: Option<std::net::IpAddr>,
) -> Result<Caller, ApiError> {
    let bearer = headers.get(header::AUTHORIZATION);
    let session = ctx.auth.sessions().filter(|_| bearer.is_none());
    match (session, headers.contains_key(header::COOKIE)) {
        (Some(sessions), true) => {
            origin::same_site(method, headers, &sessions.allowed_origins)
                .map_err(SessionError::CrossSite)?;
            let cookie = cookie(headers).map_err(SessionError::InvalidSession)?;
            Ok(ctx.auth.check_session(action, &cookie, source).await?)
        }
        _ => Ok(ctx.auth.check(action, headers, source).await?),
    }
}

/// The request's cookies as one `Cookie` header (HTTP/2 clients may split it).
fn cookie(headers: &HeaderMap) -> Result<String, String> {
    let parts = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.to_str().map(str::trim))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "the Cookie header is not visible ASCII".to_owned())?;
    Ok(parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_json_body_is_declared() {
        let with = |value: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            }
            json_declared(&headers)
        };
        for ok in ["application/json", "Application/JSON; charset=utf-8"] {
            assert!(with(Some(ok)).is_ok(), "{ok}");
        }
        for refused in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonp"),
        ] {
            let err = with(refused).unwrap_err();
            assert_eq!(
                (err.code(), err.status().as_u16()),
                ("unsupported-media-type", 415)
            );
        }
    }
}
