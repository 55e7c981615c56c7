//! The error answers the proxy makes up, shaped like kube-apiserver's own `metav1.Status`
//! bodies (`NewTooManyRequests`, `NewInternalError`, `NewServiceUnavailable` in
//! `staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go`) so clients take them for the
//! real thing.

use std::time::Duration;

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

use super::decide::retry_after_seconds;

/// What injected errors say caused them.
const INJECTED: &str = "injected by the fault proxy";

/// The answer for an injected error of `status`.
pub fn injected_error(status: StatusCode) -> Response<Body> {
    match status {
        StatusCode::TOO_MANY_REQUESTS => {
            let body = failure(
                status,
                "TooManyRequests",
                "Too many requests, please try again later.".to_owned(),
                StatusDetails {
                    retry_after_seconds: Some(1),
                    ..StatusDetails::default()
                },
            );
            with_retry_after(respond(status, &body), 1)
        }
        StatusCode::INTERNAL_SERVER_ERROR => {
            let body = failure(
                status,
                "InternalError",
                format!("Internal error occurred: {INJECTED}"),
                StatusDetails {
                    causes: Some(vec![StatusCause {
                        message: Some(INJECTED.to_owned()),
                        ..StatusCause::default()
                    }]),
                    ..StatusDetails::default()
                },
            );
            respond(status, &body)
        }
        other => {
            let text = other.canonical_reason().unwrap_or("error");
            proxy_failure(other, format!("{text}: {INJECTED}"))
        }
    }
}

/// The answer while the "server" is restarting, `left` before it is back.
pub fn unavailable(left: Duration) -> Response<Body> {
    let seconds = retry_after_seconds(left);
    let body = failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        format!("the server is currently unable to handle the request: restarting ({INJECTED})"),
        StatusDetails {
            retry_after_seconds: Some(i32::try_from(seconds).unwrap_or(i32::MAX)),
            ..StatusDetails::default()
        },
    );
    with_retry_after(respond(StatusCode::SERVICE_UNAVAILABLE, &body), seconds)
}

/// The answer when the proxy itself fails a request: `code` 400 for a request it could not
/// read, 502 for an upstream it could not reach.
pub fn proxy_failure(code: StatusCode, message: String) -> Response<Body> {
    let body = Status {
        code: Some(i32::from(code.as_u16())),
        message: Some(message),
        status: Some("Failure".to_owned()),
        ..Status::default()
    };
    respond(code, &body)
}

fn failure(code: StatusCode, reason: &str, message: String, details: StatusDetails) -> Status {
    Status {
        code: Some(i32::from(code.as_u16())),
        details: Some(details),
        message: Some(message),
        reason: Some(reason.to_owned()),
        status: Some("Failure".to_owned()),
        ..Status::default()
    }
}

fn respond(code: StatusCode, status: &Status) -> Response<Body> {
    // Serializing a Status of plain strings and numbers cannot fail; an empty body would
    // still carry the status code.
    let json = serde_json::to_vec(status).unwrap_or_default();
    let mut response = Response::new(Body::from(json));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn with_retry_after(mut response: Response<Body>, seconds: u64) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn json(response: Response<Body>) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn too_many_requests_says_when_to_retry() {
        let response = injected_error(StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body = json(response).await;
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["reason"], "TooManyRequests");
        assert_eq!(body["code"], 429);
        assert_eq!(body["details"]["retryAfterSeconds"], 1);
    }

    #[tokio::test]
    async fn internal_error_is_a_status() {
        let response = injected_error(StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = json(response).await;
        assert_eq!(body["reason"], "InternalError");
        assert_eq!(body["code"], 500);
        assert_eq!(
            body["message"],
            "Internal error occurred: injected by the fault proxy"
        );
    }

    #[tokio::test]
    async fn other_codes_keep_their_code() {
        let response = injected_error(StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(json(response).await["code"], 504);
    }

    #[tokio::test]
    async fn unavailable_counts_down_the_restart() {
        let response = unavailable(Duration::from_millis(2500));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        let body = json(response).await;
        assert_eq!(body["reason"], "ServiceUnavailable");
        assert_eq!(body["details"]["retryAfterSeconds"], 3);
    }
}
