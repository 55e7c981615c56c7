//! `catalyst-cutover serve`: one replica of the service, until SIGTERM or Ctrl-C.

use super::args::{RenderArgs, TargetArgs, kube_config, parse_duration, shutdown_signal};
use super::http_args::HttpArgs;
use super::operator_args::OperatorArgs;
use super::policy_args::StepPolicyArgs;
use super::session_args::SessionArgs;
use super::tether_args::TetherArgs;
use crate::service::{Service, ServiceConfig};
use clap::ArgAction;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Address the HTTP API listens on.
    #[arg(
        long,
        value_name = "ADDR",
        env = "CATALYST_CUTOVER_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    listen: SocketAddr,
    /// Address the probes (/healthz, /readyz, /metrics) listen on, a port of their own that
    /// no flood of the API port can starve.
    #[arg(
        long,
        value_name = "ADDR",
        env = "CATALYST_CUTOVER_PROBE_LISTEN",
        default_value = "0.0.0.0:8081"
    )]
    probe_listen: SocketAddr,
    /// This replica's identity in the Lease [default: $POD_NAME, else a random one].
    #[arg(long, value_name = "ID", env = "POD_NAME")]
    identity: Option<String>,
    /// Name of the Lease that elects the one runner.
    #[arg(long, value_name = "NAME", default_value = crate::contract::DEFAULT_LEASE)]
    lease_name: String,
    /// How long the leader keeps the Lease without renewing it.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "15s")]
    lease_duration: Duration,
    /// How long one request to the Kubernetes API may take before it counts as failed
    /// (watches are exempt).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    kube_request_timeout: Duration,
    #[command(flatten)]
    render: RenderArgs,
    #[command(flatten)]
    operator: OperatorArgs,
    #[command(flatten)]
    policy: StepPolicyArgs,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    session: SessionArgs,
    #[command(flatten)]
    tethers: TetherArgs,
    /// Complete the cutover only on a synced tether report with no tether of a kind the
    /// cutover pivots (the chart's completion.requireNoTethers); else the last step fails
    /// naming them.
    #[arg(long, value_name = "BOOL", env = "CATALYST_CUTOVER_REQUIRE_NO_TETHERS",
          default_value_t = false, action = ArgAction::Set)]
    require_no_tethers: bool,
}

impl ServeArgs {
    /// The service configuration these flags ask for, or what is wrong with them.
    pub fn config(&self) -> Result<ServiceConfig, String> {
        let mut config = ServiceConfig::new(&self.target.namespace);
        config.status_configmap = self.target.status_configmap.clone();
        config.listen = self.listen;
        config.probe_listen = Some(self.probe_listen);
        if let Some(identity) = &self.identity {
            config.identity = identity.clone();
        }
        config.lease_name = self.lease_name.clone();
        config.lease_duration = self.lease_duration;
        config.kube_request_timeout = self.kube_request_timeout;
        config.render = self.render.config();
        self.operator.apply(&mut config)?;
        config.http = self.http.config();
        config.step_policy = self.policy.policy();
        config.forward_auth = self.session.config()?;
        config.tethers = Some(
            self.tethers
                .config(&config.namespace, &config.record_lease()),
        );
        config.require_no_tethers = self.require_no_tethers;
        if self.require_no_tethers
            && self
                .tethers
                .upstream_hosts
                .iter()
                .all(|h| h.trim().is_empty())
        {
            return Err(
                "--require-no-tethers needs the upstream hosts (--tether-upstream-host): without them nothing is a tether".to_owned(),
            );
        }
        Ok(config)
    }
}

/// Runs `serve`: 0 after a graceful shutdown, 1 when the service cannot start.
pub fn run(args: ServeArgs) -> ExitCode {
    super::exit::run("serve", serve(args))
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let config = args.config()?;
    let kube_config = kube_config(args.target.kubeconfig.as_deref()).await?;
    let mut service = Service::start(kube_config, config)
        .await
        .map_err(|e| e.to_string())?;
    tokio::select! {
        () = shutdown_signal() => {}
        died = service.died() => {
            // Exit so that the Deployment restarts the pod; the Lease is released
            // on the way out, so another replica takes over at once.
            tracing::error!(error = %died, "the replica cannot go on; exiting");
            service.shutdown().await;
            return Err(died.to_string());
        }
    }
    tracing::info!("shutting down");
    service.shutdown().await;
    Ok(())
}
