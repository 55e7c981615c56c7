//! A tower layer on the service's Kubernetes client that counts requests by verb and
//! status, so `/metrics` shows what the service costs the API server.

use super::Metrics;
use futures::future::BoxFuture;
use http::{Method, Request, Response, Uri};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Counts every request of the client it wraps into [`Metrics`].
#[derive(Clone)]
pub struct KubeMetricsLayer {
    metrics: Arc<Metrics>,
}

impl KubeMetricsLayer {
    /// A layer counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        KubeMetricsLayer { metrics }
    }
}

impl<S> Layer<S> for KubeMetricsLayer {
    type Service = KubeMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KubeMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`KubeMetricsLayer`].
#[derive(Clone)]
pub struct KubeMetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, RB> Service<Request<B>> for KubeMetricsService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let verb = verb(req.method(), req.uri());
        // For whoever wants the sequence of requests (the cutover bench counts them per
        // step); costs nothing unless a subscriber enables this target at trace level.
        tracing::trace!(verb, path = req.uri().path(), "kube request sent");
        let traced = tracing::enabled!(tracing::Level::TRACE)
            .then(|| (req.uri().path().to_owned(), std::time::Instant::now()));
        let metrics = self.metrics.clone();
        let response = self.inner.call(req);
        Box::pin(async move {
            let result = response.await;
            let status = result.as_ref().ok().map(|r| r.status().as_u16());
            metrics.kube_request(verb, status);
            if let Some((path, sent)) = traced {
                tracing::trace!(
                    verb,
                    path,
                    status,
                    micros = sent.elapsed().as_micros() as u64,
                    "kube response received"
                );
            }
            result
        })
    }
}

/// The Kubernetes verb of a request: the method, and for reads whether the path names a
/// collection (`list`), one object (`get`) or asks to `watch`.
pub fn verb(method: &Method, uri: &Uri) -> &'static str {
    match *method {
        Method::POST => return "create",
        Method::PUT => return "update",
        Method::PATCH => return "patch",
        Method::DELETE => return "delete",
        Method::GET | Method::HEAD => {}
        _ => return "other",
    }
    let watching = uri.query().is_some_and(|q| {
        q.split('&')
            .any(|p| p == "watch=true" || p == "watch=1" || p == "watch")
    });
    if watching {
        return "watch";
    }
    match resource_path(uri.path()) {
        Some(rest) if rest.len() == 1 => "list",
        _ => "get",
    }
}

/// The segments of an API path after its group, version and namespace: `["pods", "p",
/// "log"]` of `/api/v1/namespaces/ns/pods/p/log`, `["namespaces"]` of `/api/v1/namespaces`;
/// `None` for a path outside `/api` and `/apis`.
pub fn resource_path(path: &str) -> Option<Vec<&str>> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    Some(rest.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(method: Method, uri: &str) -> &'static str {
        verb(&method, &uri.parse().unwrap())
    }

    #[test]
    fn resource_paths_drop_the_group_version_and_namespace() {
        assert_eq!(
            resource_path("/api/v1/namespaces/ns/pods/p/log"),
            Some(vec!["pods", "p", "log"])
        );
        assert_eq!(
            resource_path("/apis/coordination.k8s.io/v1/namespaces/ns/leases/l"),
            Some(vec!["leases", "l"])
        );
        assert_eq!(
            resource_path("/api/v1/namespaces"),
            Some(vec!["namespaces"])
        );
        assert_eq!(
            resource_path("/api/v1/namespaces/ns"),
            Some(vec!["namespaces", "ns"])
        );
        assert_eq!(resource_path("/version"), None);
    }

    #[test]
    fn verbs_of_kubernetes_paths() {
        assert_eq!(v(Method::GET, "/api/v1/namespaces/ns/configmaps"), "list");
        assert_eq!(v(Method::GET, "/api/v1/namespaces/ns/configmaps/a"), "get");
        assert_eq!(
            v(
                Method::GET,
                "/api/v1/namespaces/ns/configmaps?watch=true&fieldSelector=x"
            ),
            "watch"
        );
        assert_eq!(v(Method::GET, "/api/v1/namespaces"), "list");
        assert_eq!(v(Method::GET, "/api/v1/namespaces/ns"), "get");
        assert_eq!(v(Method::GET, "/apis/batch/v1/namespaces/ns/jobs"), "list");
        assert_eq!(
            v(Method::GET, "/apis/batch/v1/namespaces/ns/jobs/j/status"),
            "get"
        );
        assert_eq!(v(Method::GET, "/api/v1/nodes"), "list");
        assert_eq!(v(Method::GET, "/api/v1/namespaces/ns/pods/p/log"), "get");
        assert_eq!(
            v(Method::POST, "/apis/authentication.k8s.io/v1/tokenreviews"),
            "create"
        );
        assert_eq!(
            v(Method::PUT, "/api/v1/namespaces/ns/configmaps/a"),
            "update"
        );
        assert_eq!(v(Method::PATCH, "/x"), "patch");
        assert_eq!(v(Method::DELETE, "/x"), "delete");
        assert_eq!(v(Method::GET, "/version"), "get");
    }
}
