//! The service's configuration, from flags and the contract's environment variables.

use crate::auth::AuthConfig;
use crate::events::EventsConfig;
use crate::http::HttpConfig;
use crate::http::server::ServerConfig;
use crate::render::RenderConfig;
use crate::runner::RunnerConfig;
use crate::step::StepPolicy;
use std::net::SocketAddr;
use std::time::Duration;

/// How one replica of the service runs.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Namespace of the steps, the status ConfigMap, the Lease and the Jobs.
    pub namespace: String,
    /// Name of the status ConfigMap.
    pub status_configmap: String,
    /// Name of the Lease that elects the runner.
    pub lease_name: String,
    /// This replica's identity in the Lease.
    pub identity: String,
    /// How long a Lease holder keeps it without renewing.
    pub lease_duration: Duration,
    /// How the Jobs are rendered, and the step deadline.
    pub render: RenderConfig,
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Address the probes (`/healthz`, `/readyz`, `/metrics`) listen on besides the API's;
    /// `None`: the API port only.
    pub probe_listen: Option<SocketAddr>,
    /// How long one HTTP request may take.
    pub request_timeout: Duration,
    /// How long one request to the Kubernetes API may take (watches excepted).
    pub kube_request_timeout: Duration,
    /// How the HTTP port treats its clients: timeouts, caps, TLS.
    pub http: ServerConfig,
    /// Who may call the HTTP API. Off in [`ServiceConfig::new`] (embedding, tests, the
    /// demo); `serve` turns it on unless `--auth=false`.
    pub auth: AuthConfig,
    /// Whether the first operator login starts an idle cutover.
    pub auto_fire: bool,
    /// The live event stream's buffers and keep-alive.
    pub events: EventsConfig,
    /// What a step's PodSpec may ask for. Unrestricted in [`ServiceConfig::new`]
    /// (embedding, tests, benches: their step ConfigMaps are trusted); `serve` defaults to
    /// [`StepPolicy::default`], `restricted` and the chart's step service account.
    pub step_policy: StepPolicy,
    /// Forward authentication of the console's session cookie; `None`: bearer tokens only.
    pub forward_auth: Option<crate::auth::ForwardAuthConfig>,
    /// The tether report's settings; `None` (in [`ServiceConfig::new`]): no report, the
    /// route answers that it is off.
    pub tethers: Option<crate::tethers::TetherConfig>,
    /// Whether the last step's success needs a synced report without gating tethers
    /// (`completion.requireNoTethers`); off in [`ServiceConfig::new`].
    pub require_no_tethers: bool,
}

impl ServiceConfig {
    /// Defaults for `namespace`, with a random identity.
    pub fn new(namespace: &str) -> Self {
        ServiceConfig {
            namespace: namespace.to_owned(),
            status_configmap: crate::contract::DEFAULT_STATUS_CONFIGMAP.to_owned(),
            lease_name: crate::contract::DEFAULT_LEASE.to_owned(),
            identity: format!("catalyst-cutover-{}", uuid::Uuid::new_v4().simple()),
            lease_duration: Duration::from_secs(15),
            render: RenderConfig::default(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            probe_listen: None,
            request_timeout: Duration::from_secs(30),
            kube_request_timeout: crate::request_timeout::DEFAULT_REQUEST_TIMEOUT,
            http: ServerConfig::default(),
            auth: AuthConfig::disabled(),
            auto_fire: true,
            events: EventsConfig::default(),
            step_policy: StepPolicy::unrestricted(),
            forward_auth: None,
            tethers: None,
            require_no_tethers: false,
        }
    }

    /// The record Lease (`<lease_name>-record`): the cutover's durable record, and the
    /// direction the registry-pivot agents follow.
    pub fn record_lease(&self) -> String {
        crate::contract::record_lease(&self.lease_name)
    }

    /// The share of the configuration the HTTP routes read.
    pub fn http_config(&self) -> HttpConfig {
        HttpConfig {
            namespace: self.namespace.clone(),
            step_policy: self.step_policy.clone(),
            request_timeout: self.request_timeout,
            auto_fire: self.auto_fire,
            http: self.http.clone(),
            events: self.events.clone(),
        }
    }

    /// The share of the configuration the runner reads.
    pub fn runner_config(&self) -> RunnerConfig {
        RunnerConfig {
            namespace: self.namespace.clone(),
            step_policy: self.step_policy.clone(),
        }
    }
}
