//! HTTP request metrics by route template and known method (never the raw path or a
//! made-up method, so label sets stay bounded) and the `/metrics` route.

use super::HttpContext;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;

/// Counts the request and times it to its response head.
pub async fn track(State(ctx): State<Arc<HttpContext>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(crate::metrics::UNMATCHED_ROUTE, |p| p.as_str())
        .to_owned();
    let method = crate::metrics::method_label(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    ctx.metrics.http_request(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// `GET /metrics`: the text exposition.
pub async fn metrics(State(ctx): State<Arc<HttpContext>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        ctx.metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::{router, spec_tests::offline_context};
    use axum::body::Body;
    use axum::http::{Method, Request};
    use tower::ServiceExt;

    async fn exposition_lines(app: &axum::Router) -> usize {
        let response = app
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8_lossy(&body).lines().count()
    }

    #[tokio::test]
    async fn made_up_methods_and_paths_do_not_grow_the_exposition() {
        let app = router(offline_context());
        // One request of each kind first (and a scrape), so that every label set the flood
        // can reach exists before counting.
        for (method, path) in [
            ("XGROW0", "/cutover"),
            ("XGROW0", "/metrics"),
            ("XGROW0", "/nowhere0"),
        ] {
            let request = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).unwrap())
                .uri(path)
                .body(Body::empty())
                .unwrap();
            app.clone().oneshot(request).await.unwrap();
        }
        exposition_lines(&app).await;
        let before = exposition_lines(&app).await;
        for n in 1..500 {
            for path in ["/cutover", "/metrics", &format!("/nowhere{n}")] {
                let request = Request::builder()
                    .method(Method::from_bytes(format!("XGROW{n}").as_bytes()).unwrap())
                    .uri(path)
                    .body(Body::empty())
                    .unwrap();
                app.clone().oneshot(request).await.unwrap();
            }
        }
        let after = exposition_lines(&app).await;
        assert_eq!(before, after, "1,497 made-up requests grew the exposition");
    }
}
