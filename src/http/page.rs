//! The live page at `GET /`: one HTML document, its script and its stylesheet, all
//! embedded in the binary (clusters are air-gapped: nothing is fetched from another
//! origin, and the `Content-Security-Policy` enforces that in the browser). The page holds
//! no data, so it is served without a token; the data comes from the authorized routes
//! (`/cutover`, `/cutover/events`, `/cutover/permissions`), called with the operator's
//! bearer token.

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::IntoResponse;

/// The document: markup only, no inline script or style (the policy allows neither).
const INDEX_HTML: &str = include_str!("page/index.html");
/// The page's script: renders the status, follows the event stream, runs the actions.
const APP_JS: &str = include_str!("page/app.js");
/// The page's stylesheet.
const APP_CSS: &str = include_str!("page/app.css");

/// Everything from this origin only, no inline code, no plugins, no framing, no form
/// posts elsewhere: the page works the same on an air-gapped cluster as anywhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The headers every page asset is served with.
fn headers(content_type: &'static str) -> [(HeaderName, HeaderValue); 5] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        // An upgraded service serves a new page: the browser asks again each time.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ]
}

/// `GET /`: the page.
pub async fn index() -> impl IntoResponse {
    (headers("text/html; charset=utf-8"), INDEX_HTML)
}

/// `GET /app.js`: the page's script.
pub async fn script() -> impl IntoResponse {
    (headers("text/javascript; charset=utf-8"), APP_JS)
}

/// `GET /app.css`: the page's stylesheet.
pub async fn stylesheet() -> impl IntoResponse {
    (headers("text/css; charset=utf-8"), APP_CSS)
}

#[cfg(test)]
mod tests {
    use super::super::{router, spec_tests::offline_context};
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn every_asset_is_served_without_a_token_under_the_policy() {
        let app = router(offline_context());
        for (path, kind) in [
            ("/", "text/html"),
            ("/app.js", "text/javascript"),
            ("/app.css", "text/css"),
        ] {
            let response = app
                .clone()
                .oneshot(Request::builder().uri(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{path}");
            let headers = response.headers();
            assert!(
                headers[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with(kind)
            );
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
    }

    #[test]
    fn the_document_loads_nothing_from_another_origin_and_nothing_inline() {
        let lower = INDEX_HTML.to_ascii_lowercase();
        for remote in ["http:", "https:", "//"] {
            for attribute in ["src=\"", "href=\""] {
                assert!(
                    !lower.contains(&format!("{attribute}{remote}")),
                    "{attribute}{remote} in index.html"
                );
            }
        }
        assert!(!lower.contains("<script>"), "inline script");
        assert!(!lower.contains("<style"), "inline style");
        assert!(!lower.contains(" style=\""), "inline style attribute");
        assert!(!lower.contains(" onclick="), "inline handler");
        assert!(
            !APP_JS.contains("innerHTML"),
            "the script builds nodes, never markup"
        );
    }
}
