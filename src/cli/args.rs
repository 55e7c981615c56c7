//! Flags and helpers shared by the subcommands: the Job settings and the cluster
//! connection.

use crate::contract::{
    DEFAULT_NAMESPACE, DEFAULT_STATUS_CONFIGMAP, ENV_NAMESPACE, ENV_STATUS_CONFIGMAP,
};
use crate::render::RenderConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Job settings, shared by every subcommand that renders Jobs.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderArgs {
    /// Directory holding an operator's job.yaml.hbs [default: the built-in template].
    #[arg(long, value_name = "DIR")]
    pub template_dir: Option<PathBuf>,
    /// The Jobs' backoffLimit.
    #[arg(long, value_name = "N", default_value_t = RenderConfig::default().backoff_limit,
          value_parser = clap::value_parser!(i32).range(0..))]
    pub backoff_limit: i32,
    /// The Jobs' ttlSecondsAfterFinished.
    #[arg(long, value_name = "SECONDS",
          default_value_t = RenderConfig::default().ttl_seconds_after_finished,
          value_parser = clap::value_parser!(i32).range(0..))]
    pub ttl_seconds: i32,
    /// A step's deadline unless its PodSpec sets a longer activeDeadlineSeconds, e.g. 15m,
    /// 1h30m, 900s, PT15M or bare seconds [default: 15m].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub step_deadline: Option<Duration>,
}

impl RenderArgs {
    /// The renderer settings these flags ask for.
    pub fn config(&self) -> RenderConfig {
        let defaults = RenderConfig::default();
        RenderConfig {
            backoff_limit: self.backoff_limit,
            ttl_seconds_after_finished: self.ttl_seconds,
            step_deadline: self.step_deadline.unwrap_or(defaults.step_deadline),
            template_dir: self.template_dir.clone(),
        }
    }
}

/// A positive duration: jiff's friendly (`15m`, `1h 30m`) or ISO 8601 (`PT15M`) form, or bare
/// seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let parsed = match raw.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => raw
            .parse::<jiff::SignedDuration>()
            .map_err(|err| format!("{raw:?} is not a duration such as 15m or 1h30m: {err}"))?
            .try_into()
            .map_err(|_| format!("{raw:?} is negative"))?,
    };
    if parsed.is_zero() {
        return Err(format!("{raw:?} is zero: a step needs time to run"));
    }
    Ok(parsed)
}

/// A client for the cluster of `kubeconfig`, or of the inferred configuration ($KUBECONFIG,
/// ~/.kube/config or the in-cluster service account).
pub async fn connect(kubeconfig: Option<&Path>) -> Result<kube::Client, String> {
    crate::service::client::build(
        kube_config(kubeconfig).await?,
        crate::request_timeout::DEFAULT_REQUEST_TIMEOUT,
        None,
    )
    .map_err(|err| err.to_string())
}

/// The client configuration of `kubeconfig`, or the inferred one.
pub async fn kube_config(kubeconfig: Option<&Path>) -> Result<kube::Config, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|err| format!("{}: {err}", path.display()))?;
            let options = kube::config::KubeConfigOptions::default();
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|err| format!("{}: {err}", path.display()))?
        }
        None => kube::Config::infer().await.map_err(|err| err.to_string())?,
    };
    Ok(config)
}

/// Where the service's objects live, shared by `serve` and `migrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Kubeconfig of the cluster [default: $KUBECONFIG, ~/.kube/config or the in-cluster
    /// service account].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the steps, the status ConfigMap, the Lease and the Jobs.
    #[arg(short = 'n', long, value_name = "NS", env = ENV_NAMESPACE, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Name of the status ConfigMap.
    #[arg(long, value_name = "NAME", env = ENV_STATUS_CONFIGMAP, default_value = DEFAULT_STATUS_CONFIGMAP)]
    pub status_configmap: String,
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes sends before it kills a pod).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_friendly_iso_or_seconds() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("PT2M"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        for bad in ["", "soon", "-5m", "0s", "0"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
