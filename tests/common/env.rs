//! The cutover suites' test environment: a cluster with a namespace of its own, step
//! ConfigMaps in it, the simulator and, for the registry pivot, its DaemonSet and agents;
//! and the service started against it. One builder for every suite:
//! `Env::builder().nodes(2).steps(steps).registry_pivot().start().await`.

use super::{TestCluster, controllers, create_daemonset, step_cm, wait_ready};
use catalyst_cutover::contract::{self, DEFAULT_STATUS_CONFIGMAP};
use catalyst_cutover::demo::{AgentConfig, Agents};
use catalyst_cutover::service::{Service, ServiceConfig};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::runtime::wait::await_condition;
use kube_sandbox::api::ApiServerConfig;
use kube_sandbox::sim::{SimConfig, Simulator};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// Hang guard of one wait (a rollout, a phase, the service's readiness): not a speed
/// assertion.
pub const GUARD: Duration = Duration::from_secs(60);

/// The DaemonSet of the registry-pivot agents, and the step that waits for it.
pub const REGISTRY_PIVOT: &str = "registry-pivot";

/// A `daemonset-wait` step `name` at `order` waiting for the [`REGISTRY_PIVOT`] DaemonSet.
pub fn daemonset_step(order: u32, name: &str) -> ConfigMap {
    let mut cm = step_cm(order, name, "daemonset-wait", None);
    cm.metadata.labels.get_or_insert_default().insert(
        contract::LABEL_STEP_DAEMONSET.to_owned(),
        REGISTRY_PIVOT.to_owned(),
    );
    cm
}

/// What [`Env::start`](EnvBuilder::start) sets up.
pub struct EnvBuilder {
    sandbox: ApiServerConfig,
    nodes: usize,
    steps: Vec<ConfigMap>,
    registry_pivot: bool,
}

impl EnvBuilder {
    /// Configures the sandbox (unused on a real cluster).
    pub fn sandbox(mut self, sandbox: ApiServerConfig) -> Self {
        self.sandbox = sandbox;
        self
    }

    /// How many simulated nodes (default 1).
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// Step ConfigMaps created before the simulator starts.
    pub fn steps(mut self, steps: impl IntoIterator<Item = ConfigMap>) -> Self {
        self.steps.extend(steps);
        self
    }

    /// The registry-pivot DaemonSet on the test's nodes and its agents, rolled out before
    /// the test goes on, as on a cluster the chart installed.
    pub fn registry_pivot(mut self) -> Self {
        self.registry_pivot = true;
        self
    }

    /// Starts the cluster (its Jobs finish after 20 ms unless a step's env says otherwise).
    pub async fn start(self) -> Env {
        if std::env::var_os("RUST_LOG").is_some() {
            catalyst_cutover::telemetry::init();
        }
        let cluster = TestCluster::start_with(self.sandbox).await;
        let (client, ns) = (cluster.client(), cluster.namespace().to_owned());
        if self.registry_pivot {
            create_daemonset(&client, &ns, REGISTRY_PIVOT).await;
        }
        // The steps exist before the simulator runs, as the chart installs them.
        create_steps(&client, &ns, self.steps).await;
        let sim = start_simulator(&client, &ns, self.nodes).await;
        let agents = self.registry_pivot.then(|| {
            Agents::start(
                client,
                AgentConfig {
                    namespace: Some(ns.clone()),
                    daemonset: REGISTRY_PIVOT.to_owned(),
                    record_lease: (ns.clone(), ServiceConfig::new(&ns).record_lease()),
                    ack_delay: Duration::from_millis(20),
                    never_ack: BTreeSet::new(),
                    settings: AgentConfig::demo_settings(),
                },
            )
        });
        let env = Env {
            cluster,
            sim,
            agents,
        };
        if env.agents.is_some() {
            env.wait_rolled_out(self.nodes).await;
        }
        env
    }
}

/// Creates `steps` in the test's namespace of `cluster`, then starts the simulator there
/// with one node (for a suite that sets its cluster up itself).
pub async fn steps_on_one_node(cluster: &TestCluster, steps: &[ConfigMap]) -> Simulator {
    let (client, ns) = (cluster.client(), cluster.namespace());
    create_steps(&client, ns, steps.iter().cloned()).await;
    start_simulator(&client, ns, 1).await
}

/// The simulator on `nodes` nodes of the pool named after `ns`, its Jobs finishing after
/// 20 ms unless a step's env says otherwise.
async fn start_simulator(client: &kube::Client, ns: &str, nodes: usize) -> Simulator {
    Simulator::start(
        client.clone(),
        SimConfig {
            namespace: Some(ns.to_owned()),
            nodes,
            pool: ns.to_owned(),
            default_run: Duration::from_millis(20),
            controllers: controllers(),
        },
    )
    .await
    .expect("start simulator")
}

async fn create_steps(client: &kube::Client, ns: &str, steps: impl IntoIterator<Item = ConfigMap>) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for cm in steps {
        api.create(&PostParams::default(), &cm)
            .await
            .expect("create step");
    }
}

fn kubeconfig_path(ns: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{ns}.kubeconfig"))
}

/// A test's cluster, its simulator and, with [`EnvBuilder::registry_pivot`], the agents.
pub struct Env {
    /// The cluster and the test's namespace.
    pub cluster: TestCluster,
    /// The simulator playing the test's nodes (and, but on a real-controller plane, the Job
    /// and DaemonSet controllers).
    pub sim: Simulator,
    agents: Option<Agents>,
}

impl Env {
    /// One node, no steps, no registry pivot, the default sandbox.
    pub fn builder() -> EnvBuilder {
        EnvBuilder {
            sandbox: ApiServerConfig::default(),
            nodes: 1,
            steps: Vec::new(),
            registry_pivot: false,
        }
    }

    /// The test's namespace.
    pub fn ns(&self) -> &str {
        self.cluster.namespace()
    }

    /// An admin client of the cluster.
    pub fn client(&self) -> kube::Client {
        self.cluster.client()
    }

    /// The ConfigMaps of the test's namespace.
    pub fn configmaps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client(), self.ns())
    }

    /// The registry-pivot agents; panics for an environment built without them.
    pub fn agents(&self) -> &Agents {
        self.agents
            .as_ref()
            .expect("the environment was built with .registry_pivot()")
    }

    /// Creates `steps` in the test's namespace.
    pub async fn add_steps(&self, steps: impl IntoIterator<Item = ConfigMap>) {
        create_steps(&self.client(), self.ns(), steps).await;
    }

    /// The service's configuration for this namespace, its leader lease 2 s long so that a
    /// test of a takeover need not wait for the default.
    pub fn service_config(&self) -> ServiceConfig {
        let mut config = ServiceConfig::new(self.ns());
        config.lease_duration = Duration::from_secs(2);
        config
    }

    /// The service started with `config`, talking to the cluster with the test's (admin)
    /// credentials; not yet waited for.
    pub async fn start_service(&self, config: ServiceConfig) -> Service {
        Service::start(self.cluster.config().await, config)
            .await
            .expect("start service")
    }

    /// As [`Self::start_service`], once it answers `/readyz` (its caches are synced).
    pub async fn ready_service(&self, config: ServiceConfig) -> Service {
        let service = self.start_service(config).await;
        wait_ready(&service.url(), GUARD).await;
        service
    }

    /// The status ConfigMap's data.
    pub async fn status(&self) -> BTreeMap<String, String> {
        self.configmaps()
            .get(DEFAULT_STATUS_CONFIGMAP)
            .await
            .expect("status ConfigMap")
            .data
            .unwrap_or_default()
    }

    /// Waits (through a watch) until the status ConfigMap's data satisfies `check`; what
    /// it then holds.
    pub async fn wait_status(
        &self,
        what: &str,
        check: impl Fn(&BTreeMap<String, String>) -> bool + Send + 'static,
    ) -> BTreeMap<String, String> {
        let cond =
            move |cm: Option<&ConfigMap>| cm.and_then(|cm| cm.data.as_ref()).is_some_and(&check);
        tokio::time::timeout(
            GUARD,
            await_condition(self.configmaps(), DEFAULT_STATUS_CONFIGMAP, cond),
        )
        .await
        .unwrap_or_else(|_| panic!("never: {what}"))
        .expect("watch the status ConfigMap");
        self.status().await
    }

    /// Waits until the status ConfigMap's phase is one of `phases`; the status then.
    pub async fn wait_phase(&self, phases: &[&str]) -> BTreeMap<String, String> {
        let want: Vec<String> = phases.iter().map(|p| (*p).to_owned()).collect();
        self.wait_status(&format!("phase {phases:?}"), move |d| {
            d.get("cutoverPhase").is_some_and(|p| want.contains(p))
        })
        .await
    }

    /// Waits until step `step`'s row says `result`.
    pub async fn wait_step(&self, step: &str, result: &str) {
        let (key, want) = (format!("step.{step}.result"), result.to_owned());
        self.wait_status(&format!("{key} = {result}"), move |d| {
            d.get(&key).is_some_and(|r| *r == want)
        })
        .await;
    }

    /// The cluster's kubeconfig in a file of the test's own, for the binary's
    /// `--kubeconfig`; written whole (through a rename) at each call, so that a binary
    /// still reading it never sees it half-written.
    pub fn kubeconfig_file(&self) -> PathBuf {
        let path = kubeconfig_path(self.ns());
        let partial = path.with_extension(uuid::Uuid::new_v4().simple().to_string());
        let yaml = serde_yaml::to_string(self.cluster.kubeconfig()).expect("kubeconfig");
        std::fs::write(&partial, yaml).expect("write kubeconfig");
        std::fs::rename(&partial, &path).expect("move kubeconfig into place");
        path
    }

    /// Waits until the registry-pivot DaemonSet has `nodes` pods updated and ready.
    async fn wait_rolled_out(&self, nodes: usize) {
        let want = i32::try_from(nodes).expect("node count");
        // Real controllers take a moment to create, and the simulator to bind and run, the
        // pods.
        let rolled_out = move |ds: Option<&DaemonSet>| {
            want == 0
                || ds.and_then(|d| d.status.as_ref()).is_some_and(|s| {
                    s.desired_number_scheduled == want
                        && s.updated_number_scheduled == Some(want)
                        && s.number_ready == want
                })
        };
        let daemonsets: Api<DaemonSet> = Api::namespaced(self.client(), self.ns());
        tokio::time::timeout(
            GUARD,
            await_condition(daemonsets, REGISTRY_PIVOT, rolled_out),
        )
        .await
        .expect("the DaemonSet rolls out")
        .expect("watch the DaemonSet");
    }

    /// Stops `service`, then the environment.
    pub async fn stop(self, service: Service) {
        service.shutdown().await;
        self.cleanup().await;
    }

    /// Stops the agents and the simulator, and deletes the test's namespace.
    pub async fn cleanup(self) {
        let _ = std::fs::remove_file(kubeconfig_path(self.ns()));
        if let Some(agents) = self.agents {
            agents.shutdown().await;
        }
        self.sim.shutdown().await;
        self.cluster.cleanup().await;
    }
}
