//! The in-process Kubernetes API server: real HTTP on 127.0.0.1, kube-apiserver semantics for
//! the kinds the cutover touches, reachable by `kube::Client` and `kubectl` via a kubeconfig.

mod access;
mod crd;
mod defaults;
mod discovery;
mod encoding;
mod errors;
mod handlers;
mod history;
mod kinds;
mod kubeconfig;
mod meta;
mod openapi;
mod patch;
mod pod_log;
mod protobuf;
mod reviews;
mod route;
mod selectors;
pub(crate) mod serve;
mod smp;
mod store;
mod table;
pub(crate) mod tls;
mod token_request;
mod validation;
mod view;
mod watch;

pub use access::ADMIN_USER;
pub use crd::flux_and_cilium_crds;
pub use handlers::LOG_ANNOTATION;
pub use kubeconfig::CONTEXT as KUBECONFIG_CONTEXT;

use crate::auth::{MIN_TOKEN_EXPIRATION, TokenTable};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use handlers::App;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How to start the API server.
#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Bearer tokens and their users; `None` turns authentication and authorization off
    /// (every request is the admin). The admin token is always valid either way.
    pub tokens: Option<TokenTable>,
    /// CustomResourceDefinitions installed at start-up (none, as on a new cluster); their
    /// kinds are served beside the builtins, as are those of definitions created later.
    pub custom_resource_definitions: Vec<serde_json::Value>,
    /// How many changes watches can resume from; older resourceVersions answer 410.
    pub history_limit: usize,
    /// Serve HTTPS with a certificate from a CA made at start-up; the kubeconfig carries
    /// the CA.
    pub tls: bool,
    /// The shortest lifetime a TokenRequest may ask for: 10 minutes, as kube-apiserver
    /// enforces; tests lower it to see tokens expire.
    pub min_token_expiration: Duration,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tokens: None,
            custom_resource_definitions: Vec::new(),
            history_limit: 10_000,
            tls: false,
            min_token_expiration: MIN_TOKEN_EXPIRATION,
        }
    }
}

/// Why the API server could not start or hand out a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS material could not be made.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The kubeconfig could not be turned into a client configuration.
    #[error("sandbox kubeconfig rejected: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// The client could not be built.
    #[error("cannot build a client for the sandbox: {0}")]
    Client(#[from] kube::Error),
}

/// Namespaces every cluster starts with.
const INITIAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];
/// Interval of watch bookmarks (kube-apiserver sends them about once a minute).
const BOOKMARK_EVERY: Duration = Duration::from_secs(10);

/// A running API server; dropping it without [`ApiServer::shutdown`] leaves it serving until
/// the runtime stops.
pub struct ApiServer {
    addr: SocketAddr,
    admin_token: String,
    close: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
    ca_pem: Option<String>,
}

impl ApiServer {
    /// Binds, seeds the initial namespaces and serves in the background.
    pub async fn start(cfg: ApiServerConfig) -> Result<ApiServer, ApiServerError> {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ApiServerError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ApiServerError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let store = store::Store::new(kinds::Registry::new(&[]), cfg.history_limit);
        let registry = store.registry();
        if let Some(ns_kind) = registry.lookup("", "v1", "namespaces") {
            for ns in INITIAL_NAMESPACES {
                // Cannot fail: the store is empty and the names are valid.
                let _ = store.create(
                    &ns_kind,
                    None,
                    serde_json::json!({"metadata": {"name": ns}}),
                    false,
                );
            }
        }
        if let Some(crd_kind) =
            registry.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        {
            for crd in cfg.custom_resource_definitions {
                if let Err(e) = store.create(&crd_kind, None, crd, false) {
                    tracing::warn!(error = %e.status(), "a start-up CustomResourceDefinition was refused");
                }
            }
        }
        let admin_token = format!("sandbox-admin-{}", uuid::Uuid::new_v4().simple());
        let (close, closing) = tokio::sync::watch::channel(false);
        let app = Arc::new(App {
            store,
            server_address: addr.to_string(),
            bookmark_every: BOOKMARK_EVERY,
            closing,
            access: access::Access::new(cfg.tokens, &admin_token, cfg.min_token_expiration),
        });
        let router = Router::new()
            .fallback(handlers::handle)
            .with_state(app)
            .layer(DefaultBodyLimit::max(3 * 1024 * 1024));
        let tls = if cfg.tls {
            Some(tls::self_signed(addr.ip())?)
        } else {
            None
        };
        let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
        let task = serve::spawn(listener, router, tls.map(|t| t.acceptor), close.subscribe());
        tracing::info!(%addr, tls = cfg.tls, "sandbox API server listening");
        Ok(ApiServer {
            addr,
            admin_token,
            close,
            task,
            ca_pem,
        })
    }

    /// `http://127.0.0.1:<port>`, or `https://` when serving TLS.
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// PEM of the CA that signed the server certificate, when serving TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A token that is always valid: user `sandbox-admin`, group `system:masters`.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// A kubeconfig for this server with `token`, cluster/user/context named `sandbox`.
    pub fn kubeconfig(&self, token: &str) -> kube::config::Kubeconfig {
        kubeconfig::build(&self.url(), token, self.ca_pem.as_deref())
    }

    /// A client authenticated as the admin.
    pub async fn admin_client(&self) -> Result<kube::Client, ApiServerError> {
        let kc = self.kubeconfig(&self.admin_token);
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Ends open watches, stops accepting and waits for the server to stop.
    pub async fn shutdown(self) {
        let _ = self.close.send(true);
        let _ = self.task.await;
    }
}
