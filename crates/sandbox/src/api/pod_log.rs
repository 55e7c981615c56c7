//! `pods/{name}/log` as kube-apiserver serves it: the container is checked against the pod,
//! then the request goes to the kubelet of the pod's node, at the node's `InternalIP` and
//! `daemonEndpoints.kubeletEndpoint.Port`, over HTTPS without verifying the kubelet's
//! certificate (what kube-apiserver does when it has no kubelet CA), and the kubelet's answer
//! streams back. A pod on no node, or on a node without a kubelet endpoint, answers with the
//! text of [`LOG_ANNOTATION`] (objects written by hand, which no kubelet runs).

use super::errors::ApiError;
use super::kinds::KindInfo;
use super::store::Store;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

/// Annotation whose text `pods/<name>/log` returns for a pod that no kubelet runs.
pub const LOG_ANNOTATION: &str = "sandbox.catalyst.openova.io/log";
/// The query parameters passed on to the kubelet.
const PASSED_ON: [&str; 3] = ["follow", "tailLines", "limitBytes"];

/// The log of pod `name`.
pub fn pod_log(
    store: &Store,
    kind: &KindInfo,
    ns: Option<&str>,
    name: &str,
    params: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let pod = store.get(kind, ns, name)?;
    let container = container(&pod, name, params.get("container").map(String::as_str))?;
    // kube-apiserver looks the node up first, and words a missing one as a missing pod.
    if let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str)
        && let Some(nodes) = store.registry().lookup("", "v1", "nodes")
        && store.get(&nodes, None, node).is_err()
    {
        return Err(ApiError::not_found(kind, node));
    }
    let Some((address, port)) = kubelet_of(store, &pod) else {
        let text = pod
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(LOG_ANNOTATION))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text).into_response());
    };
    // A kubelet answers 400 for a container that has not started, and kube-apiserver passes
    // its status on; the container's status tells it here before any connection.
    let started = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["name"] == container.as_str()))
        .and_then(|c| c.get("state"))
        .is_some_and(|state| state.get("running").is_some() || state.get("terminated").is_some());
    if !started {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        )));
    }
    let query: Vec<String> = PASSED_ON
        .iter()
        .filter_map(|k| params.get(*k).map(|v| format!("{k}={v}")))
        .collect();
    let path = format!(
        "/containerLogs/{}/{name}/{container}?{}",
        ns.unwrap_or_default(),
        query.join("&")
    );
    let body = async_stream::try_stream! {
        let response = kubelet_get(&address, port, &path).await?;
        let mut data = Body::new(response.into_body()).into_data_stream();
        while let Some(chunk) = data.next().await {
            yield chunk.map_err(std::io::Error::other)?;
        }
    };
    let body: futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>> =
        Box::pin(body);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(body),
    )
        .into_response())
}

/// The container asked for, or the pod's only one; 400 as kube-apiserver answers otherwise.
fn container(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let names: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    match asked {
        Some(asked) if names.contains(&asked) => Ok(asked.to_owned()),
        Some(asked) => Err(ApiError::bad_request(format!(
            "container {asked} is not valid for pod {name}"
        ))),
        None if names.len() == 1 => Ok(names[0].to_owned()),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            names.join(" ")
        ))),
    }
}

/// The `InternalIP` and kubelet port of the pod's node, if it has both.
fn kubelet_of(store: &Store, pod: &Value) -> Option<(String, u16)> {
    let node_name = pod.pointer("/spec/nodeName")?.as_str()?;
    let nodes = store.registry().lookup("", "v1", "nodes")?;
    let node = store.get(&nodes, None, node_name).ok()?;
    let address = node
        .pointer("/status/addresses")?
        .as_array()?
        .iter()
        .find(|a| a["type"] == "InternalIP")?["address"]
        .as_str()?
        .to_owned();
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")?
        .as_u64()?;
    Some((address, u16::try_from(port).ok()?))
}

async fn kubelet_get(
    address: &str,
    port: u16,
    path: &str,
) -> Result<http::Response<hyper::body::Incoming>, std::io::Error> {
    let tcp = tokio::net::TcpStream::connect((address, port)).await?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
        .with_no_client_auth();
    let server = ServerName::try_from(address.to_owned()).map_err(std::io::Error::other)?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(server, tcp)
        .await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(header::HOST, format!("{address}:{port}"))
        .body(Body::empty())
        .map_err(std::io::Error::other)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(std::io::Error::other)?;
    if !response.status().is_success() {
        return Err(std::io::Error::other(format!(
            "kubelet answered {}",
            response.status()
        )));
    }
    Ok(response)
}

/// Accepts the kubelet's certificate unverified (signatures still checked), as
/// kube-apiserver does without `--kubelet-certificate-authority`.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
