//! The proxy itself: accepts plain HTTP on loopback and forwards each request through a
//! `kube::Client` built from the upstream's config, so the upstream's TLS and credentials
//! apply whatever the upstream is (the sandbox or a real cluster).

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures::StreamExt;
use http::{HeaderMap, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::answer;
use super::decide::{Action, decide, is_watch, watch_cut_at};
use super::handle::{ConnectionGuard, Faults};

/// Name of the cluster, user and context in [`FaultProxy::kubeconfig`].
const KUBECONFIG_NAME: &str = "faults";
/// How often an open watch stream looks again at the cut setting, so a change applies soon.
const RECHECK: Duration = Duration::from_millis(100);
/// Largest request body forwarded; Kubernetes objects are far smaller.
const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;

/// Headers that belong to one hop of a connection and must not be forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [header::HeaderName; 8] = [
    header::CONNECTION,
    header::HOST,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// A proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// No client could be built from the upstream's config.
    #[error("cannot build a client for the upstream API server: {0}")]
    Upstream(#[source] kube::Error),
    /// The loopback listener could not be opened.
    #[error("cannot listen on 127.0.0.1: {0}")]
    Listen(#[source] std::io::Error),
}

/// A fault-injecting reverse proxy in front of a Kubernetes API server, on `127.0.0.1:<port>`.
///
/// Requests without an `Authorization` header are sent with the upstream config's credentials;
/// a request that brings its own is forwarded with it instead (and without the upstream
/// config's credentials, client certificates included), so per-user authentication and RBAC
/// still apply behind the proxy.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    namespace: String,
    faults: Faults,
    accept: JoinHandle<()>,
}

/// The clients a request may be forwarded with.
struct Upstream {
    faults: Faults,
    with_credentials: kube::Client,
    caller_credentials: kube::Client,
}

impl FaultProxy {
    /// Starts a proxy in front of the server `upstream` points at, with no fault in force.
    pub async fn start(upstream: kube::Config) -> Result<FaultProxy, FaultError> {
        let mut config = upstream;
        // Upstream errors must reach the caller as they are, not be retried away here.
        config.default_retry = false;
        let namespace = config.default_namespace.clone();
        let mut caller_config = config.clone();
        caller_config.auth_info = AuthInfo::default();
        let upstream = Arc::new(Upstream {
            faults: Faults::new(),
            with_credentials: kube::Client::try_from(config).map_err(FaultError::Upstream)?,
            caller_credentials: kube::Client::try_from(caller_config)
                .map_err(FaultError::Upstream)?,
        });
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(FaultError::Listen)?;
        let addr = listener.local_addr().map_err(FaultError::Listen)?;
        let faults = upstream.faults.clone();
        let accept = tokio::spawn(accept_loop(listener, upstream));
        tracing::debug!(%addr, "fault proxy listening");
        Ok(FaultProxy {
            addr,
            namespace,
            faults,
            accept,
        })
    }

    /// The proxy's base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig whose current context (`faults`) points at the proxy over plain HTTP,
    /// with no credentials of its own and the upstream config's default namespace.
    pub fn kubeconfig(&self) -> Kubeconfig {
        Kubeconfig {
            clusters: vec![NamedCluster {
                name: KUBECONFIG_NAME.to_owned(),
                cluster: Some(Cluster {
                    server: Some(self.url()),
                    ..Cluster::default()
                }),
                ..NamedCluster::default()
            }],
            auth_infos: vec![NamedAuthInfo {
                name: KUBECONFIG_NAME.to_owned(),
                auth_info: Some(AuthInfo::default()),
                ..NamedAuthInfo::default()
            }],
            contexts: vec![NamedContext {
                name: KUBECONFIG_NAME.to_owned(),
                context: Some(Context {
                    cluster: KUBECONFIG_NAME.to_owned(),
                    user: Some(KUBECONFIG_NAME.to_owned()),
                    namespace: Some(self.namespace.clone()),
                    ..Context::default()
                }),
                ..NamedContext::default()
            }],
            current_context: Some(KUBECONFIG_NAME.to_owned()),
            ..Kubeconfig::default()
        }
    }

    /// The handle that changes this proxy's faults while it runs.
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }

    /// Stops accepting and drops every open connection.
    pub async fn shutdown(self) {
        self.accept.abort();
        self.faults.drop_connections().await;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: Arc<Upstream>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Watch events are small writes; Nagle would hold each one back until the
                // client's delayed ACK of the one before (up to 40 ms on Linux).
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "fault proxy cannot set TCP_NODELAY");
                }
                // Registered before the task runs, so a restart right now drops it too.
                let guard = upstream.faults.connection();
                tokio::spawn(serve_connection(stream, guard, upstream.clone()));
            }
            Err(error) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(%error, "fault proxy cannot accept a connection");
                tokio::time::sleep(RECHECK).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, mut guard: ConnectionGuard, upstream: Arc<Upstream>) {
    let service = service_fn(move |request| {
        let upstream = upstream.clone();
        async move { Ok::<_, Infallible>(handle(&upstream, request).await) }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "fault proxy connection ended with an error");
            }
        }
        () = guard.dropped() => {}
    }
}

async fn handle(upstream: &Upstream, request: Request<Incoming>) -> Response<Body> {
    let state = upstream.faults.current();
    match decide(&state, Instant::now(), rand::random::<f64>()) {
        Action::Unavailable { retry_after } => return answer::unavailable(retry_after),
        Action::Fail { delay, status } => {
            tokio::time::sleep(delay).await;
            return answer::injected_error(status);
        }
        Action::Forward { delay } => tokio::time::sleep(delay).await,
    }
    forward(upstream, request).await
}

/// Sends a request on to the upstream and streams its answer back.
async fn forward(upstream: &Upstream, request: Request<Incoming>) -> Response<Body> {
    let watch = is_watch(request.uri().path(), request.uri().query());
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(Body::new(body), MAX_REQUEST_BODY).await {
        Ok(body) => body,
        Err(error) => {
            return answer::proxy_failure(
                StatusCode::BAD_REQUEST,
                format!("the fault proxy could not read the request body: {error}"),
            );
        }
    };
    let client = if parts.headers.contains_key(header::AUTHORIZATION) {
        &upstream.caller_credentials
    } else {
        &upstream.with_credentials
    };
    // Relative, as kube::Client wants it: its base-URI layer prefixes the upstream's URL.
    let uri = parts
        .uri
        .path_and_query()
        .cloned()
        .map_or_else(|| Uri::from_static("/"), Uri::from);
    upstream.faults.count_request();
    let mut forward = Request::new(kube::client::Body::from(body));
    *forward.method_mut() = parts.method;
    *forward.headers_mut() = end_to_end(parts.headers);
    *forward.uri_mut() = uri.clone();
    let response = match client.send(forward).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(%error, %uri, "fault proxy upstream request failed");
            return answer::proxy_failure(
                StatusCode::BAD_GATEWAY,
                format!("the fault proxy could not reach the upstream: {error}"),
            );
        }
    };
    let (mut parts, body) = response.into_parts();
    parts.headers = end_to_end(parts.headers);
    let body = Body::new(body);
    let body = if watch {
        cut_when_due(body, upstream.faults.clone())
    } else {
        body
    };
    Response::from_parts(parts, body)
}

fn end_to_end(mut headers: HeaderMap) -> HeaderMap {
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers
}

/// The watch stream was cut on purpose.
#[derive(Debug, thiserror::Error)]
#[error("watch stream cut by the fault proxy")]
struct WatchCut;

enum Next {
    Chunk(Option<Result<bytes::Bytes, axum::Error>>),
    Tick,
}

/// Passes a watch stream through until the cut setting says it has run long enough, then
/// breaks it off with an error, so the client sees its connection drop mid-stream.
fn cut_when_due(body: Body, faults: Faults) -> Body {
    let started = Instant::now();
    let mut data = body.into_data_stream();
    Body::from_stream(async_stream::stream! {
        loop {
            let due = watch_cut_at(faults.current().cut_watches_every, started);
            let recheck = Instant::now() + RECHECK;
            let wake = due.map_or(recheck, |due| due.min(recheck));
            let next = tokio::select! {
                chunk = data.next() => Next::Chunk(chunk),
                () = tokio::time::sleep_until(wake) => Next::Tick,
            };
            match next {
                Next::Chunk(Some(chunk)) => yield chunk,
                Next::Chunk(None) => break,
                Next::Tick if due.is_some_and(|due| due <= Instant::now()) => {
                    yield Err(axum::Error::new(WatchCut));
                    break;
                }
                Next::Tick => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ApiServer, ApiServerConfig};
    use kube::config::KubeConfigOptions;

    #[tokio::test]
    async fn counts_forwarded_requests_but_not_injected_errors() {
        let server = ApiServer::start(ApiServerConfig::default()).await.unwrap();
        let upstream = kube::Config::from_custom_kubeconfig(
            server.kubeconfig(server.admin_token()),
            &KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        let proxy = FaultProxy::start(upstream).await.unwrap();
        let url = format!("{}/api/v1/namespaces", proxy.url());
        let get = || async { reqwest::get(&url).await.unwrap().status() };

        assert_eq!(proxy.faults().requests(), 0);
        assert!(get().await.is_success());
        assert!(get().await.is_success());
        assert_eq!(proxy.faults().requests(), 2);

        proxy
            .faults()
            .set_error_rate(1.0, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(get().await, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(proxy.faults().requests(), 2);

        proxy.shutdown().await;
        server.shutdown().await;
    }
}
