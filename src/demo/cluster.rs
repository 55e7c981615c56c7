//! The whole embedded cluster: the API server with the simulator running against it, as
//! `catalyst-cutover sandbox` and `demo` start it, with the registry-pivot agents.

use super::agent::{AgentConfig, Agents};
use crate::contract;
use kube_sandbox::api::{ApiServer, ApiServerConfig, ApiServerError};
use kube_sandbox::sim::{SimConfig, SimError, Simulator};
use std::time::Duration;

/// What to start.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// The API server's configuration.
    pub api: ApiServerConfig,
    /// Simulated nodes.
    pub nodes: usize,
    /// The registry-pivot DaemonSet whose pods acknowledge `registriesYamlActive`.
    pub daemonset: String,
    /// The namespace of the status ConfigMap the agents follow.
    pub namespace: String,
    /// How long a step pod runs when its template says nothing.
    pub default_run: Duration,
    /// Whether to run the simulator; without it the sandbox is an API server with no
    /// kubelet and no controllers, like a real cluster to the tests' own simulators.
    pub simulator: bool,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            api: ApiServerConfig::default(),
            nodes: 3,
            daemonset: "registry-pivot".to_owned(),
            namespace: contract::DEFAULT_NAMESPACE.to_owned(),
            default_run: Duration::from_millis(300),
            simulator: true,
        }
    }
}

/// Why the sandbox did not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The API server did not start.
    #[error(transparent)]
    Api(#[from] ApiServerError),
    /// The simulator did not start.
    #[error(transparent)]
    Sim(#[from] SimError),
}

/// A running API server and simulator.
pub struct Sandbox {
    api: ApiServer,
    sim: Option<(Simulator, Agents)>,
}

impl Sandbox {
    /// Starts the API server, then the simulator as one of its clients.
    pub async fn start(options: SandboxOptions) -> Result<Sandbox, SandboxError> {
        let api = ApiServer::start(options.api).await?;
        if !options.simulator {
            return Ok(Sandbox { api, sim: None });
        }
        let client = api.admin_client().await?;
        let sim = Simulator::start(
            client.clone(),
            SimConfig {
                namespace: None,
                nodes: options.nodes,
                pool: "sandbox".to_owned(),
                default_run: options.default_run,
                controllers: kube_sandbox::sim::Controllers::All,
            },
        )
        .await?;
        let agents = Agents::start(
            client,
            AgentConfig {
                namespace: None,
                daemonset: options.daemonset,
                record_lease: (
                    options.namespace.clone(),
                    contract::record_lease(contract::DEFAULT_LEASE),
                ),
                ack_delay: Duration::from_millis(150),
                never_ack: Default::default(),
                settings: AgentConfig::demo_settings(),
            },
        );
        Ok(Sandbox {
            api,
            sim: Some((sim, agents)),
        })
    }

    /// The API server.
    pub fn api(&self) -> &ApiServer {
        &self.api
    }

    /// The simulator, unless started without one.
    pub fn sim(&self) -> Option<&Simulator> {
        self.sim.as_ref().map(|(sim, _)| sim)
    }

    /// Stops the agents and the simulator, then the API server.
    pub async fn shutdown(self) {
        if let Some((sim, agents)) = self.sim {
            agents.shutdown().await;
            sim.shutdown().await;
        }
        self.api.shutdown().await;
    }
}
