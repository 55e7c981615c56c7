//! The authentication middleware: every route but the open ones needs a bearer token the
//! API server authenticates, and the permission its action needs; the [`Caller`] goes into
//! the request's extensions for the routes to read. Tokens are never logged. Every answer
//! of such a route carries `Cache-Control: no-store` (it is one caller's view, and may be
//! theirs alone). With authentication off, a POST must still declare a JSON body: a web
//! page of any site can make a browser post `text/plain` or a form, never
//! `application/json`, without the service's consent.

use super::HttpContext;
use super::caller::{Caller, ClientAddr};
use super::error::ApiError;
use crate::auth::action_for;
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
    let mut response = match ctx.auth.check(action, req.headers(), source).await {
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
