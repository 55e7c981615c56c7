//! `catalyst-cutover agent`: the registry-pivot agent of one node (the `registry-pivot`
//! DaemonSet runs it). Its settings are its own flags, set in the DaemonSet's spec from the
//! chart's values, never read from a ConfigMap; its direction is the service's record Lease.

use super::args::{connect, parse_duration, shutdown_signal};
use crate::contract::DEFAULT_NAMESPACE;
use crate::pivot::agent::{AgentConfig, run as run_agent};
use crate::pivot::{Host, NodePaths, PivotSettings};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// Kubeconfig of the cluster [default: the in-cluster service account].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the service's record Lease and of the acknowledgements.
    #[arg(long, value_name = "NS", env = "POD_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// This node's name.
    #[arg(long, value_name = "NODE", env = "NODE_NAME")]
    node: String,
    /// The service's record Lease, whose annotations give the direction.
    #[arg(long, value_name = "NAME",
          default_value_t = crate::contract::record_lease(crate::contract::DEFAULT_LEASE))]
    record_lease: String,
    /// The local Harbor's registry, host[:port].
    #[arg(long, value_name = "HOST")]
    registry: Host,
    /// Speak plain HTTP to the registry (test clusters only).
    #[arg(long)]
    insecure: bool,
    /// The CA of the registry's certificate, as a path on the node (mounted at the same
    /// path in the agent's container for its own check).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<String>,
    /// An upstream registry to point at its proxy-cache project (repeat for each).
    #[arg(long = "upstream", value_name = "HOST", required = true)]
    upstreams: Vec<Host>,
    /// The node's registries.yaml.
    #[arg(long, value_name = "FILE", default_value = "/host/registries.yaml")]
    registries_yaml: PathBuf,
    /// containerd's hosts directory (certs.d).
    #[arg(long, value_name = "DIR", default_value = "/host/certs.d")]
    certs_dir: PathBuf,
    /// Where the node's own files are kept for a rollback.
    #[arg(long, value_name = "DIR", default_value = "/host/state")]
    state_dir: PathBuf,
    /// Created once the record Lease has been read (the readiness probe's file).
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
    /// How often an unfinished direction is tried again.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    recheck: Duration,
}

impl AgentArgs {
    /// The agent's configuration; the pull credential comes from the environment, which the
    /// DaemonSet fills from the credentials Secret only.
    fn config(&self) -> AgentConfig {
        let pull = std::env::var("HARBOR_PULL_USERNAME")
            .ok()
            .filter(|u| !u.is_empty())
            .map(|user| {
                let password = std::env::var("HARBOR_PULL_PASSWORD").unwrap_or_default();
                (user, password.into())
            });
        AgentConfig {
            namespace: self.namespace.clone(),
            node: self.node.clone(),
            record_lease: self.record_lease.clone(),
            settings: PivotSettings {
                registry: self.registry.clone(),
                insecure: self.insecure,
                ca_file: self.ca_file.clone(),
                upstreams: self.upstreams.clone(),
                pull,
            },
            paths: NodePaths {
                registries_yaml: self.registries_yaml.clone(),
                certs_dir: self.certs_dir.clone(),
                state_dir: self.state_dir.clone(),
            },
            ready_file: self.ready_file.clone(),
            recheck: self.recheck,
        }
    }
}

/// Runs `agent` until SIGTERM or Ctrl-C: 0 then, 1 when it cannot connect.
pub fn run(args: AgentArgs) -> ExitCode {
    super::exit::run("agent", async move {
        let config = args.config();
        if config.node.is_empty() {
            return Err("--node (NODE_NAME) is empty".to_owned());
        }
        let client = connect(args.kubeconfig.as_deref()).await?;
        tokio::select! {
            () = run_agent(client, config) => Err("the record Lease's watch ended".to_owned()),
            () = shutdown_signal() => Ok(()),
        }
    })
}

/// Arguments of `agent-ready`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReadyArgs {
    /// The agent's `--ready-file`.
    file: PathBuf,
}

/// 0 when the agent has read the record Lease (its ready file exists), 1 otherwise.
pub fn ready(args: &ReadyArgs) -> ExitCode {
    if args.file.exists() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
