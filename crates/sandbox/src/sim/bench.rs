//! Capacity figure of the simulator: how long a DaemonSet over many simulated nodes takes to
//! settle. Called by `benches/sandbox.rs`; works against any API server.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{Container, Namespace, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::PostParams;
use kube::runtime::wait::await_condition;
use kube::{Api, Client};

use super::{SimConfig, SimError, Simulator, api_error};

/// Figures of one DaemonSet settling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettleFigures {
    /// Simulated nodes.
    pub nodes: usize,
    /// Time to create the nodes and start the controllers.
    pub start: Duration,
    /// Time from creating the DaemonSet to every node running a ready, current pod with
    /// `observedGeneration` caught up.
    pub settle: Duration,
}

/// Starts a simulator with `nodes` nodes in `namespace` (created if missing; pool `bench`),
/// creates a DaemonSet and times it until its status shows every node ready and updated.
pub async fn daemonset_settle(
    client: Client,
    namespace: &str,
    nodes: usize,
) -> Result<SettleFigures, SimError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(api_error(format!("create namespace {namespace}"))(e)),
    }
    let started = Instant::now();
    let sim = Simulator::start(
        client.clone(),
        SimConfig {
            namespace: Some(namespace.to_owned()),
            nodes,
            pool: "bench".into(),
            default_run: Duration::ZERO,
            controllers: crate::sim::Controllers::All,
        },
    )
    .await?;
    let start = started.elapsed();

    let labels = [("app".to_owned(), "bench".to_owned())];
    let ds = DaemonSet {
        metadata: ObjectMeta {
            name: Some("bench".into()),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels.clone().into()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.into()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "agent".into(),
                        image: Some("registry-pivot:bench".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    };
    let api: Api<DaemonSet> = Api::namespaced(client, namespace);
    let settling = Instant::now();
    api.create(&PostParams::default(), &ds)
        .await
        .map_err(api_error("create the bench daemonset"))?;
    let want = i32::try_from(nodes).unwrap_or(i32::MAX);
    let settled = await_condition(api, "bench", move |ds: Option<&DaemonSet>| {
        ds.is_some_and(|ds| {
            let s = ds.status.clone().unwrap_or_default();
            s.observed_generation == ds.metadata.generation
                && s.desired_number_scheduled == want
                && s.updated_number_scheduled == Some(want)
                && s.number_ready == want
        })
    })
    .await;
    let settle = settling.elapsed();
    sim.shutdown().await;
    settled.map_err(|source| SimError::Wait {
        what: format!("daemonset {namespace}/bench"),
        source,
    })?;
    Ok(SettleFigures {
        nodes,
        start,
        settle,
    })
}
