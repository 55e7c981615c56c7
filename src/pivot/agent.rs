//! The agent's thin shell: follow the one record Lease by name, and for each directive it
//! names write the node's files ([`super::files`]), check that the local registry answers
//! (for `v2`) and acknowledge ([`super::ack`]). A failed read, an empty or unknown value,
//! a missing Lease: the node stays as it is (a failed read taken as `v1` would roll every
//! node back). A directive that could not be completed (the registry does not answer yet,
//! a write failed) is tried again every `recheck`.

use super::ack;
use super::direction::{Direction, Directive};
use super::files::{self, NodePaths, PivotSettings};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use std::path::PathBuf;
use std::time::Duration;
use tokio_rustls::rustls;

/// What one node's agent needs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Namespace of the record Lease and of the acknowledgements.
    pub namespace: String,
    /// This node.
    pub node: String,
    /// The record Lease (`<lease>-record`) the service gives its direction in.
    pub record_lease: String,
    /// What to write.
    pub settings: PivotSettings,
    /// Where.
    pub paths: NodePaths,
    /// Created once the Lease has been read (the pod's readiness probe).
    pub ready_file: Option<PathBuf>,
    /// How often an unfinished directive is tried again.
    pub recheck: Duration,
}

/// Why a directive is not (yet) done.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The node's files could not be written.
    #[error("cannot write the node's registry files: {0}")]
    Files(#[from] std::io::Error),
    /// The local registry does not answer; the node is not acknowledged before it does.
    #[error("the local registry {registry} does not answer yet ({detail}); not acknowledging")]
    Unreachable {
        /// The registry's URL.
        registry: String,
        /// What happened.
        detail: String,
    },
    /// The acknowledgement could not be created.
    #[error("cannot acknowledge {value} for node {node}: {source}")]
    Ack {
        /// The node.
        node: String,
        /// What it acknowledges.
        value: &'static str,
        /// The refusal.
        #[source]
        source: kube::Error,
    },
}

/// Follows `directive` on this node: files, then (for `v2`) the registry check, then the
/// acknowledgement. Shared by the agent and the demo's simulated nodes (`check: false`).
pub async fn follow(
    leases: &Api<Lease>,
    node: &str,
    directive: &Directive,
    settings: &PivotSettings,
    paths: &NodePaths,
    check: bool,
) -> Result<(), AgentError> {
    let (d, s, p) = (directive.direction, settings.clone(), paths.clone());
    let changed = tokio::task::spawn_blocking(move || files::apply(d, &s, &p))
        .await
        .map_err(|join| std::io::Error::other(join.to_string()))??;
    for what in changed {
        tracing::info!(node, "{what}");
    }
    if check && directive.direction == Direction::V2 {
        registry_answers(settings).await?;
    }
    ack::acknowledge(leases, node, directive)
        .await
        .map_err(|source| AgentError::Ack {
            node: node.to_owned(),
            value: directive.direction.ack_value(),
            source,
        })?;
    tracing::info!(node, value = directive.direction.ack_value(), since = %directive.since, "acknowledged");
    Ok(())
}

/// Runs the agent until the process stops.
pub async fn run(client: kube::Client, cfg: AgentConfig) {
    let leases: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let stream = watcher::watch_object(leases.clone(), &cfg.record_lease)
        .backoff(crate::retry::watch_backoff());
    futures::pin_mut!(stream);
    tracing::info!(node = %cfg.node, lease = %format!("{}/{}", cfg.namespace, cfg.record_lease), "following the service's direction");
    // The directive last read (`None`: none read yet, or none given), and the one done.
    let mut wanted: Option<Directive> = None;
    let mut done: Option<Directive> = None;
    let mut ready = false;
    let mut recheck = tokio::time::interval(cfg.recheck);
    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(lease)) => {
                    wanted = Directive::of_lease(lease.as_ref());
                    if wanted.is_none() {
                        tracing::info!("no direction (v1, empty, unknown or no record yet): keeping the node as it is");
                    }
                    if !ready {
                        ready = mark_ready(cfg.ready_file.as_ref()).await;
                    }
                }
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "cannot read the record Lease; keeping the node as it is");
                    continue;
                }
                None => return,
            },
            _ = recheck.tick() => {}
        }
        let Some(directive) = wanted.as_ref().filter(|w| done.as_ref() != Some(*w)) else {
            continue;
        };
        match follow(
            &leases,
            &cfg.node,
            directive,
            &cfg.settings,
            &cfg.paths,
            true,
        )
        .await
        {
            Ok(()) => done = Some(directive.clone()),
            Err(err) => {
                tracing::warn!(error = %err, "directive {} not done yet; retrying in {:?}", directive.direction.as_str(), cfg.recheck)
            }
        }
    }
}

async fn mark_ready(file: Option<&PathBuf>) -> bool {
    let Some(file) = file else { return true };
    match tokio::fs::write(file, b"").await {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(file = %file.display(), error = %err, "cannot mark the agent ready");
            false
        }
    }
}

/// Whether the local registry answers its API root (`200`, or `401` asking for the pull
/// credential), trusting the system's roots and the configured CA.
async fn registry_answers(settings: &PivotSettings) -> Result<(), AgentError> {
    let url = format!("{}/v2/", settings.registry_url());
    let unreachable = |detail: String| AgentError::Unreachable {
        registry: settings.registry_url(),
        detail,
    };
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_roots());
    if let Some(ca) = &settings.ca_file {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| unreachable(format!("cannot read the CA {ca}: {e}")))?;
        roots.add_parsable_certificates(certs.flatten());
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unreachable(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, String>(connector);
    let request = http::Request::get(&url)
        .body(String::new())
        .map_err(|e| unreachable(e.to_string()))?;
    let answer = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .map_err(|_| unreachable("no answer within 10s".to_owned()))?
        .map_err(|e| unreachable(e.to_string()))?;
    match answer.status().as_u16() {
        200 | 401 => Ok(()),
        code => Err(unreachable(format!("HTTP {code}"))),
    }
}

fn rustls_native_roots() -> Vec<rustls::pki_types::CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for err in &found.errors {
        tracing::debug!(error = %err, "a system CA certificate could not be loaded");
    }
    found.certs
}
