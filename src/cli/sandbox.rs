//! `catalyst-cutover sandbox`: runs the sandbox API server until interrupted and writes a
//! kubeconfig that `kubectl` and the service accept.

use crate::demo::{Sandbox, SandboxError, SandboxOptions};
use kube_sandbox::access_control::{MIN_TOKEN_EXPIRATION, TokenTable};
use kube_sandbox::api::ApiServerConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `catalyst-cutover sandbox`.
#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Where to write the kubeconfig (admin token).
    #[arg(long)]
    pub kubeconfig_out: PathBuf,
    /// Number of simulated nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Bearer tokens `TOKEN=USER[:GROUP[+GROUP...]],...`; turns on authentication and RBAC
    /// (the kubeconfig written keeps the admin token). Implies `--tls`: kubectl sends tokens
    /// only over HTTPS.
    #[arg(long, value_parser = TokenTable::parse)]
    pub token: Option<TokenTable>,
    /// Serve HTTPS with a certificate from a CA made at start-up (the kubeconfig carries it).
    #[arg(long)]
    pub tls: bool,
    /// Run the API server alone, without the simulator: a cluster with no kubelet and no
    /// controllers, as the test suite expects of `CUTOVER_TEST_KUBECONFIG`.
    #[arg(long)]
    pub no_simulator: bool,
    /// The shortest lifetime, in seconds, a TokenRequest
    /// (`serviceaccounts/<name>/token`, `kubectl create token`) may ask for; kube-apiserver
    /// refuses less than 600.
    #[arg(long, default_value_t = MIN_TOKEN_EXPIRATION.as_secs())]
    pub min_token_expiration_seconds: u64,
}

/// Why the sandbox command failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxCliError {
    /// The API server or the simulator did not start.
    #[error(transparent)]
    Start(#[from] SandboxError),
    /// The kubeconfig could not be serialized.
    #[error("cannot serialize the kubeconfig: {0}")]
    Serialize(#[from] serde_yaml::Error),
    /// The kubeconfig could not be written.
    #[error("cannot write the kubeconfig to {path}: {source}")]
    Write {
        /// The file asked for.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Waiting for Ctrl-C failed.
    #[error("cannot wait for Ctrl-C: {0}")]
    Signal(std::io::Error),
}

/// Runs the sandbox (API server and simulator) until Ctrl-C.
pub async fn run(args: SandboxArgs) -> Result<(), SandboxCliError> {
    let sandbox = Sandbox::start(SandboxOptions {
        api: ApiServerConfig {
            listen: args.listen,
            tls: args.tls || args.token.is_some(),
            tokens: args.token,
            min_token_expiration: Duration::from_secs(args.min_token_expiration_seconds),
            ..ApiServerConfig::default()
        },
        nodes: args.nodes,
        simulator: !args.no_simulator,
        ..SandboxOptions::default()
    })
    .await?;
    let server = sandbox.api();
    let kubeconfig = serde_yaml::to_string(&server.kubeconfig(server.admin_token()))?;
    // Written whole, then renamed into place, so whoever waits for the file reads it entire.
    let partial = args.kubeconfig_out.with_extension("partial");
    let write_err = |source| SandboxCliError::Write {
        path: args.kubeconfig_out.clone(),
        source,
    };
    tokio::fs::write(&partial, kubeconfig)
        .await
        .map_err(write_err)?;
    tokio::fs::rename(&partial, &args.kubeconfig_out)
        .await
        .map_err(write_err)?;
    tracing::info!(
        url = %server.url(),
        kubeconfig = %args.kubeconfig_out.display(),
        nodes = args.nodes,
        "sandbox running; press Ctrl-C to stop"
    );
    let waited = tokio::signal::ctrl_c()
        .await
        .map_err(SandboxCliError::Signal);
    sandbox.shutdown().await;
    waited
}

/// Entry point from the command line.
pub fn main(args: SandboxArgs) -> ExitCode {
    super::exit::run("sandbox", run(args))
}

impl super::exit::Failure for SandboxCliError {}
