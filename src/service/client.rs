//! The Kubernetes client every part of the service talks through.
//!
//! Built as kube's own `ClientBuilder` builds it (base URI, credentials, extra headers,
//! rustls over hyper's connector, the configuration's connect, read and write timeouts) with
//! one difference: the TCP connections set
//! `TCP_NODELAY`. kube-client 5 leaves Nagle's algorithm on (kube-rs/kube#2056). A request
//! written in two segments on a fresh connection, or on one whose last segment is not yet
//! acknowledged, then waits for the API server's delayed ACK: about 40 ms on Linux. On the
//! real plane, that was a status write in four taking 40–47 ms instead of 2 ms, whenever
//! another request was in flight beside it. kube-apiserver (Go) sets `TCP_NODELAY` on its
//! side by default.

use crate::metrics::{KubeMetricsLayer, Metrics};
use crate::request_timeout::RequestTimeoutLayer;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use std::sync::Arc;
use std::time::Duration;
use tower::{BoxError, ServiceBuilder, ServiceExt};

/// A client for the API server of `config`, with no delay on its connections. Every request
/// but a watch is bounded by `timeout`; each is counted into `metrics` when given.
pub fn build(
    config: kube::Config,
    timeout: Duration,
    metrics: Option<Arc<Metrics>>,
) -> Result<kube::Client, kube::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let service = ServiceBuilder::new()
        .option_layer(metrics.map(KubeMetricsLayer::new))
        .layer(RequestTimeoutLayer::new(timeout))
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .service(hyper.map_err(BoxError::from));
    Ok(kube::Client::new(service, config.default_namespace))
}
