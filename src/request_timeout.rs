//! A tower layer on the service's Kubernetes client that bounds every request but watches.
//!
//! kube-client sets no timeout on ordinary requests, so a request to an API server that
//! accepts it and never answers hangs forever: a status write stalls the cutover behind a
//! leader that looks healthy. Watches are exempt: they are meant to stay open, and the
//! watcher restarts them itself. The bound covers the answer's body too, which kube reads
//! after the headers.

use crate::metrics::kube_layer::verb;
use futures::future::BoxFuture;
use http::{Request, Response};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service};
use tower_http::timeout::DeadlineBody;

/// The default bound of one request: a Lease renewal must fail well within the renew
/// deadline, and no ordinary request to a healthy API server takes this long.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A request that did not finish within its bound.
#[derive(Debug, thiserror::Error)]
#[error("the Kubernetes API did not answer {method} {path} within {timeout:?}")]
pub struct RequestTimedOut {
    method: http::Method,
    path: String,
    timeout: Duration,
}

/// Bounds every request but watches to `timeout`, headers and body together.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeoutLayer {
    timeout: Duration,
}

impl RequestTimeoutLayer {
    /// A layer bounding requests to `timeout`.
    pub fn new(timeout: Duration) -> Self {
        RequestTimeoutLayer { timeout }
    }
}

impl<S> Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTimeout {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service of [`RequestTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct RequestTimeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S, B, RB> Service<Request<B>> for RequestTimeout<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<DeadlineBody<RB>>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let bound = (verb(req.method(), req.uri()) != "watch").then_some(self.timeout);
        let timed_out = RequestTimedOut {
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            timeout: self.timeout,
        };
        let response = self.inner.call(req);
        Box::pin(async move {
            let Some(bound) = bound else {
                let response = response.await.map_err(Into::into)?;
                return Ok(response.map(|body| DeadlineBody::new(Duration::MAX, body)));
            };
            let deadline = Instant::now() + bound;
            match tokio::time::timeout_at(deadline, response).await {
                Ok(response) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    Ok(response
                        .map_err(Into::into)?
                        .map(|body| DeadlineBody::new(left, body)))
                }
                Err(_) => Err(Box::new(timed_out) as BoxError),
            }
        })
    }
}
