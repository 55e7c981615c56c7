//! The simulator, end to end through the API: Jobs and their pods, nodes, DaemonSets and the
//! registry-pivot agents. Runs against the sandbox, or a real cluster when
//! `CUTOVER_TEST_KUBECONFIG` is set (there the simulator is the only kubelet and controller).
//!
//! Expected Job conditions, reasons and messages are those of the Kubernetes Job controller,
//! pkg/controller/job/job_controller.go (1.31+: SuccessCriteriaMet / FailureTarget precede
//! Complete / Failed); DaemonSet status fields as pkg/controller/daemon fills them.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use catalyst_cutover::contract::pivot;
use catalyst_cutover::demo::{AgentConfig, Agents};
use catalyst_cutover::pivot::{Direction, Directive, ack};
use common::TestCluster;
use futures::StreamExt;
use http::StatusCode;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::config::KubeConfigOptions;
use kube::runtime::reflector;
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::runtime::watcher;
use kube_sandbox::api::LOG_ANNOTATION;
use kube_sandbox::faults::FaultProxy;
use kube_sandbox::sim::daemonset::LABEL_REVISION_HASH;
use kube_sandbox::sim::job::{ANNOTATION_ATTEMPT, LABEL_CONTROLLER_UID, LABEL_JOB_NAME};
use kube_sandbox::sim::pod_state;
use kube_sandbox::sim::{LABEL_POOL, SimConfig, Simulator};
use serde_json::{Value, json};

/// Guard against a hung test; no assertion depends on it.
const PATIENCE: Duration = Duration::from_secs(60);
const AGENT_DS: &str = "registry-pivot";
/// The service's record Lease, whose annotations direct the agents.
const RECORD: &str = "catalyst-cutover-record";

async fn start(tc: &TestCluster) -> Simulator {
    let ns = tc.namespace().to_owned();
    Simulator::start(
        tc.client(),
        SimConfig {
            namespace: Some(ns.clone()),
            nodes: 3,
            // A pool per test keeps tests apart on a shared real cluster.
            pool: ns.clone(),
            default_run: Duration::from_millis(20),
            controllers: common::controllers(),
        },
    )
    .await
    .expect("start simulator")
}

/// The registry-pivot agents of the test's nodes, writing with `client`; the nodes
/// `<ns>-<n>` of `never_ack` never acknowledge.
fn start_agents(tc: &TestCluster, client: kube::Client, never_ack: &[&str]) -> Agents {
    let ns = tc.namespace().to_owned();
    Agents::start(
        client,
        AgentConfig {
            namespace: Some(ns.clone()),
            daemonset: AGENT_DS.into(),
            record_lease: (ns.clone(), RECORD.into()),
            settings: AgentConfig::demo_settings(),
            ack_delay: Duration::from_millis(20),
            never_ack: never_ack.iter().map(|n| format!("{ns}-{n}")).collect(),
        },
    )
}

/// Stops the simulator and removes what it made outside the test's namespace (its nodes), so
/// a shared real cluster is left as found.
async fn finish(sim: Simulator, tc: TestCluster) {
    sim.shutdown().await;
    let nodes: Api<Node> = Api::all(tc.client());
    let pool = format!("{LABEL_POOL}={}", tc.namespace());
    if let Ok(list) = nodes.list(&ListParams::default().labels(&pool)).await {
        for node in list.items.iter().filter_map(|n| n.metadata.name.as_deref()) {
            // Best effort, as the namespace's deletion in `cleanup` is.
            let _ = nodes.delete(node, &DeleteParams::default()).await;
        }
    }
    tc.cleanup().await;
}

async fn wait_for<K>(api: &Api<K>, name: &str, cond: impl Condition<K>) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::time::timeout(PATIENCE, await_condition(api.clone(), name, cond))
        .await
        .unwrap_or_else(|_| panic!("gave up waiting on {name}"))
        .expect("watch")
        .unwrap_or_else(|| panic!("{name} is gone"))
}

fn job_condition(ty: &'static str) -> impl Condition<Job> {
    move |job: Option<&Job>| {
        job.and_then(|j| j.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == ty && c.status == "True"))
    }
}

fn job_json(name: &str, restart: &str, env: &[(&str, &str)], extra: Value) -> Job {
    let env: Vec<Value> = env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let mut spec = json!({
        "backoffLimit": 1,
        "template": {
            "metadata": {"labels": {"app": "sim-test"}},
            "spec": {
                "restartPolicy": restart,
                "containers": [{"name": "main", "image": "busybox:1.36", "env": env}]
            }
        }
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

/// Whether the Job controller that moves the Jobs writes the interim conditions
/// `SuccessCriteriaMet` and `FailureTarget` before `Complete` / `Failed`: the simulator's own
/// models 1.31+, where kube-controller-manager began to; a cluster's real one (the plane in
/// ../shared/k8s runs 1.28) does as its version does.
async fn interim_conditions(tc: &TestCluster) -> bool {
    if !common::real_controllers() {
        return true;
    }
    let version = tc
        .client()
        .apiserver_version()
        .await
        .expect("server version");
    let minor: u32 = version
        .minor
        .trim_end_matches('+')
        .parse()
        .expect("numeric minor version");
    version.major == "1" && minor >= 31
}

fn conditions_of(job: &Job) -> Vec<JobCondition> {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
}

fn find<'a>(conds: &'a [JobCondition], ty: &str) -> &'a JobCondition {
    conds
        .iter()
        .find(|c| c.type_ == ty)
        .unwrap_or_else(|| panic!("no {ty} condition in {conds:?}"))
}

async fn pods_of(tc: &TestCluster, job: &Job) -> Vec<Pod> {
    let uid = job.metadata.uid.as_deref().unwrap();
    let mut pods = Api::<Pod>::namespaced(tc.client(), tc.namespace())
        .list(&ListParams::default().labels(&format!("{LABEL_CONTROLLER_UID}={uid}")))
        .await
        .unwrap()
        .items;
    // In creation order: a real Job controller writes no attempt annotation, and creates
    // each replacement seconds after the last (its back-off); the sandbox's annotation orders
    // pods made within one second.
    pods.sort_by_key(|p| {
        (
            p.metadata.creation_timestamp.clone().map(|t| t.0),
            p.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_ATTEMPT).cloned()),
        )
    });
    pods
}

fn terminated(pod: &Pod) -> ContainerStateTerminated {
    pod_state::first_container_state(pod)
        .and_then(|s| s.terminated.clone())
        .expect("terminated container")
}

#[tokio::test]
async fn job_succeeds_with_labelled_owned_pod_and_log() {
    let tc = TestCluster::start().await;
    let sim = start(&tc).await;
    let jobs: Api<Job> = Api::namespaced(tc.client(), tc.namespace());
    let log = "mirroring gitea\ndone";
    jobs.create(
        &PostParams::default(),
        &job_json("ok", "Never", &[("SANDBOX_SIM_LOG", log)], json!({})),
    )
    .await
    .unwrap();
    let job = wait_for(&jobs, "ok", job_condition("Complete")).await;
    let conds = conditions_of(&job);
    let types: Vec<&str> = conds.iter().map(|c| c.type_.as_str()).collect();
    // 1.31 added the interim condition and the reason of `Complete`.
    let (want, reason) = if interim_conditions(&tc).await {
        (
            &["SuccessCriteriaMet", "Complete"][..],
            Some("CompletionsReached"),
        )
    } else {
        (&["Complete"][..], None)
    };
    assert_eq!(types, want);
    assert_eq!(find(&conds, "Complete").reason.as_deref(), reason);
    let status = job.status.clone().unwrap();
    // kube-apiserver omits the zero counts (Go `omitempty` on value fields).
    assert_eq!(
        (status.succeeded, status.failed, status.active),
        (Some(1), None, None)
    );
    assert!(status.start_time.is_some() && status.completion_time.is_some());

    let pods = pods_of(&tc, &job).await;
    assert_eq!(pods.len(), 1);
    let pod = &pods[0];
    let name = pod.metadata.name.as_deref().unwrap();
    assert!(
        name.starts_with("ok-") && name.len() == "ok-".len() + 5,
        "{name}"
    );
    let labels = pod.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[LABEL_JOB_NAME], "ok");
    assert_eq!(labels["job-name"], "ok");
    assert_eq!(labels["controller-uid"], job.metadata.uid.clone().unwrap());
    assert_eq!(labels["app"], "sim-test");
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Job", "ok"));
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    assert!(
        pod.spec
            .as_ref()
            .unwrap()
            .node_name
            .as_ref()
            .unwrap()
            .starts_with(tc.namespace())
    );
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    let term = terminated(pod);
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (0, Some("Completed"))
    );
    assert_eq!(
        pod.metadata.annotations.as_ref().unwrap()[LOG_ANNOTATION],
        log
    );
    if tc.sandbox().is_some() {
        let served = Api::<Pod>::namespaced(tc.client(), tc.namespace())
            .logs(name, &LogParams::default())
            .await
            .unwrap();
        assert_eq!(served, log);
    }
    finish(sim, tc).await;
}

#[tokio::test]
async fn failing_job_reaches_backoff_limit_with_termination_message() {
    let tc = TestCluster::start().await;
    let sim = start(&tc).await;
    let jobs: Api<Job> = Api::namespaced(tc.client(), tc.namespace());
    let env = [
        ("SANDBOX_SIM_OUTCOME", "fail"),
        ("SANDBOX_SIM_MESSAGE", "harbor unreachable"),
    ];
    jobs.create(
        &PostParams::default(),
        &job_json("bad", "Never", &env, json!({})),
    )
    .await
    .unwrap();
    let job = wait_for(&jobs, "bad", job_condition("Failed")).await;
    let conds = conditions_of(&job);
    let types: &[&str] = if interim_conditions(&tc).await {
        &["FailureTarget", "Failed"]
    } else {
        &["Failed"]
    };
    for ty in types {
        let c = find(&conds, ty);
        assert_eq!(c.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(
            c.message.as_deref(),
            Some("Job has reached the specified backoff limit")
        );
    }
    let status = job.status.clone().unwrap();
    assert_eq!(
        (status.failed, status.succeeded, status.active),
        (Some(2), None, None),
        "zero counts are omitted"
    );
    assert_eq!(status.completion_time, None);
    let pods = pods_of(&tc, &job).await;
    assert_eq!(pods.len(), 2, "backoffLimit 1: two attempts");
    for pod in &pods {
        assert_eq!(
            pod.status.as_ref().unwrap().phase.as_deref(),
            Some("Failed")
        );
        let term = terminated(pod);
        assert_eq!(
            (
                term.exit_code,
                term.reason.as_deref(),
                term.message.as_deref()
            ),
            (1, Some("Error"), Some("harbor unreachable"))
        );
    }
    finish(sim, tc).await;
}

#[tokio::test]
async fn first_attempts_fail_then_the_job_succeeds() {
    let tc = TestCluster::start().await;
    let sim = start(&tc).await;
    let jobs: Api<Job> = Api::namespaced(tc.client(), tc.namespace());
    let env = [("SANDBOX_SIM_FAIL_ATTEMPTS", "2")];
    jobs.create(
        &PostParams::default(),
        &job_json("retry", "Never", &env, json!({"backoffLimit": 3})),
    )
    .await
    .unwrap();
    let job = wait_for(&jobs, "retry", job_condition("Complete")).await;
    let status = job.status.clone().unwrap();
    assert_eq!((status.failed, status.succeeded), (Some(2), Some(1)));
    let phases: Vec<String> = pods_of(&tc, &job)
        .await
        .iter()
        .map(|p| p.status.as_ref().unwrap().phase.clone().unwrap())
        .collect();
    assert_eq!(phases, ["Failed", "Failed", "Succeeded"]);

    // OnFailure: the failing attempt is a container restart in the same pod (and restarts
    // count against backoffLimit: with 1, one restart would fail the Job).
    jobs.create(
        &PostParams::default(),
        &job_json(
            "restart",
            "OnFailure",
            &[("SANDBOX_SIM_FAIL_ATTEMPTS", "1")],
            json!({"backoffLimit": 3}),
        ),
    )
    .await
    .unwrap();
    let job = wait_for(&jobs, "restart", job_condition("Complete")).await;
    let pods = pods_of(&tc, &job).await;
    assert_eq!(pods.len(), 1);
    let cs = &pods[0]
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert_eq!(cs.restart_count, 1);
    finish(sim, tc).await;
}

#[tokio::test]
async fn hanging_job_fails_at_its_deadline() {
    let tc = TestCluster::start().await;
    let sim = start(&tc).await;
    let jobs: Api<Job> = Api::namespaced(tc.client(), tc.namespace());
    jobs.create(
        &PostParams::default(),
        &job_json(
            "stuck",
            "Never",
            &[("SANDBOX_SIM_OUTCOME", "hang")],
            json!({"activeDeadlineSeconds": 1}),
        ),
    )
    .await
    .unwrap();
    let job = wait_for(&jobs, "stuck", job_condition("Failed")).await;
    let failed = find(&conditions_of(&job), "Failed").clone();
    assert_eq!(failed.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        failed.message.as_deref(),
        Some("Job was active longer than specified deadline")
    );
    assert_eq!(
        job.status.as_ref().unwrap().active,
        None,
        "no pod is active (a zero count is omitted)"
    );
    assert!(
        pods_of(&tc, &job).await.is_empty(),
        "the running pod is deleted"
    );
    finish(sim, tc).await;
}

#[tokio::test]
async fn suspended_job_runs_nothing_until_resumed() {
    let tc = TestCluster::start().await;
    let sim = start(&tc).await;
    let jobs: Api<Job> = Api::namespaced(tc.client(), tc.namespace());
    jobs.create(
        &PostParams::default(),
        &job_json("later", "Never", &[], json!({"suspend": true})),
    )
    .await
    .unwrap();
    let job = wait_for(&jobs, "later", job_condition("Suspended")).await;
    let suspended = find(&conditions_of(&job), "Suspended").clone();
    assert_eq!(suspended.reason.as_deref(), Some("JobSuspended"));
    assert!(pods_of(&tc, &job).await.is_empty());
    jobs.patch(
        "later",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    let job = wait_for(&jobs, "later", job_condition("Complete")).await;
    let resumed = find(&conditions_of(&job), "Suspended").clone();
    assert_eq!(
        (resumed.status.as_str(), resumed.reason.as_deref()),
        ("False", Some("JobResumed"))
    );
    finish(sim, tc).await;
}

#[tokio::test]
async fn deleting_a_job_collects_its_pods() {
    let tc = TestCluster::start().await;
    if tc.sandbox().is_none() {
        // Garbage collection is kube-controller-manager's, which the simulator does not replace.
        return tc.cleanup().await;
    }
    let sim = start(&tc).await;
    let jobs: Api<Job> = Api::namespaced(tc.client(), tc.namespace());
    jobs.create(
        &PostParams::default(),
        &job_json(
            "gone",
            "Never",
            &[("SANDBOX_SIM_OUTCOME", "hang")],
            json!({}),
        ),
    )
    .await
    .unwrap();
    let job = wait_for(&jobs, "gone", |j: Option<&Job>| {
        j.and_then(|j| j.status.as_ref())
            .is_some_and(|s| s.active == Some(1))
    })
    .await;
    let pod = pods_of(&tc, &job).await.pop().expect("a pod");
    jobs.delete("gone", &DeleteParams::background())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(tc.client(), tc.namespace());
    let uid = pod.metadata.uid.clone().unwrap();
    tokio::time::timeout(
        PATIENCE,
        await_condition(
            pods,
            pod.metadata.name.as_deref().unwrap(),
            conditions::is_deleted(&uid),
        ),
    )
    .await
    .expect("pod collected")
    .unwrap();
    finish(sim, tc).await;
}

/// The DaemonSet has caught up with its generation and runs a ready, current pod on `n` nodes.
fn settled(n: i32) -> impl Condition<DaemonSet> {
    move |ds: Option<&DaemonSet>| {
        ds.is_some_and(|ds| {
            let s = ds.status.clone().unwrap_or_default();
            s.observed_generation == ds.metadata.generation
                && s.desired_number_scheduled == n
                && s.current_number_scheduled == n
                && s.updated_number_scheduled == Some(n)
                && s.number_ready == n
                && s.number_available == Some(n)
        })
    }
}

async fn ds_pods(tc: &TestCluster, app: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(tc.client(), tc.namespace())
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
}

/// Waits until the ready pods labelled `app` run on exactly `nodes`.
async fn ready_pods_on(tc: &TestCluster, app: &str, nodes: &BTreeSet<String>) {
    let pods: Api<Pod> = Api::namespaced(tc.client(), tc.namespace());
    let (store, writer) = reflector::store();
    let events = reflector::reflector(
        writer,
        watcher(
            pods,
            watcher::Config::default().labels(&format!("app={app}")),
        ),
    );
    let on_nodes = async {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            event.expect("watch pods");
            let ready: Vec<Pod> = store
                .state()
                .iter()
                .filter(|p| pod_state::is_ready(p))
                .map(|p| (**p).clone())
                .collect();
            if ready.len() == nodes.len() && pod_nodes(&ready) == *nodes {
                return;
            }
        }
    };
    tokio::time::timeout(PATIENCE, on_nodes)
        .await
        .unwrap_or_else(|_| panic!("gave up waiting for {app} pods on {nodes:?}"));
}

fn pod_nodes(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect()
}

#[tokio::test]
async fn daemonset_settles_and_rolls_out_a_new_template() {
    let tc = TestCluster::start().await;
    let sim = start(&tc).await;
    let api: Api<DaemonSet> = Api::namespaced(tc.client(), tc.namespace());
    api.create(
        &PostParams::default(),
        &common::daemonset("fleet", "agent:1", tc.namespace()),
    )
    .await
    .unwrap();
    wait_for(&api, "fleet", settled(3)).await;
    let pods = ds_pods(&tc, "fleet").await;
    assert_eq!(pods.len(), 3);
    assert_eq!(pod_nodes(&pods).len(), 3, "one pod per node");
    let first_hash = pods[0].metadata.labels.as_ref().unwrap()[LABEL_REVISION_HASH].clone();
    for pod in &pods {
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("DaemonSet", Some(true))
        );
    }

    api.patch(
        "fleet",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "agent:2"}]}}}})),
    )
    .await
    .unwrap();
    let ds = wait_for(&api, "fleet", settled(3)).await;
    assert_eq!(ds.status.unwrap().observed_generation, Some(2));
    let pods = ds_pods(&tc, "fleet").await;
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        assert_ne!(
            pod.metadata.labels.as_ref().unwrap()[LABEL_REVISION_HASH],
            first_hash
        );
        assert_eq!(
            pod.spec.as_ref().unwrap().containers[0].image.as_deref(),
            Some("agent:2")
        );
    }
    finish(sim, tc).await;
}

#[tokio::test]
async fn nodes_are_added_deleted_and_replaced() {
    let tc = TestCluster::start().await;
    let ns = tc.namespace().to_owned();
    let sim = start(&tc).await;
    let nodes: Api<Node> = Api::all(tc.client());
    let pool = nodes
        .list(&ListParams::default().labels(&format!("{LABEL_POOL}={ns}")))
        .await
        .unwrap()
        .items;
    let names: BTreeSet<String> = pool
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let want: BTreeSet<String> = (0..3).map(|i| format!("{ns}-{i}")).collect();
    assert_eq!(names, want);
    for node in &pool {
        let ready = node.status.as_ref().unwrap().conditions.as_ref().unwrap();
        assert!(
            ready
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        );
    }

    let api: Api<DaemonSet> = Api::namespaced(tc.client(), &ns);
    api.create(
        &PostParams::default(),
        &common::daemonset("fleet", "agent:1", tc.namespace()),
    )
    .await
    .unwrap();
    wait_for(&api, "fleet", settled(3)).await;

    let added = sim.add_node().await.unwrap();
    assert_eq!(added, format!("{ns}-3"));
    wait_for(&api, "fleet", settled(4)).await;
    assert!(pod_nodes(&ds_pods(&tc, "fleet").await).contains(&added));

    sim.delete_node(&format!("{ns}-0")).await.unwrap();
    assert!(nodes.get_opt(&format!("{ns}-0")).await.unwrap().is_none());
    wait_for(&api, "fleet", settled(3)).await;

    let replacement = sim.replace_node(&format!("{ns}-1")).await.unwrap();
    assert_eq!(replacement, format!("{ns}-4"));
    // Three nodes before and after: the status alone cannot tell the replacement has been
    // seen, the pods can.
    let expected: BTreeSet<String> = [format!("{ns}-2"), added, replacement].into();
    ready_pods_on(&tc, "fleet", &expected).await;
    wait_for(&api, "fleet", settled(3)).await;

    assert!(sim.delete_node("not-a-sim-node").await.is_err());
    finish(sim, tc).await;
}

/// Gives the agents `direction` at `since` in the record Lease, as the service does.
async fn direct(tc: &TestCluster, direction: Direction, since: &str) -> Directive {
    let value = Some((direction.as_str(), since));
    common::direct_agents(&tc.client(), tc.namespace(), RECORD, value).await;
    Directive {
        direction,
        since: since.to_owned(),
    }
}

/// The nodes whose acknowledgement Lease of `directive` exists.
async fn acked_now(tc: &TestCluster, directive: &Directive) -> BTreeSet<String> {
    let leases: Api<Lease> = Api::namespaced(tc.client(), tc.namespace());
    let list = leases
        .list(&ListParams::default().labels(pivot::ACK_SELECTOR))
        .await
        .expect("list acknowledgements");
    ack::acked_nodes(&list.items, directive)
}

/// Waits until every node of `nodes` acknowledged `directive`; returns every node that did.
async fn wait_acked(tc: &TestCluster, nodes: &[String], directive: &Directive) -> BTreeSet<String> {
    let poll = async {
        loop {
            let acked = acked_now(tc, directive).await;
            if nodes.iter().all(|n| acked.contains(n)) {
                return acked;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, poll)
        .await
        .unwrap_or_else(|_| panic!("{nodes:?} never acknowledged {directive:?}"))
}

#[tokio::test]
async fn agents_acknowledge_the_flip_and_follow_replaced_nodes() {
    let tc = TestCluster::start().await;
    let ns = tc.namespace().to_owned();
    let node = |i: usize| format!("{ns}-{i}");
    let sim = start(&tc).await;
    let agents = start_agents(&tc, tc.client(), &["2"]);
    let dss: Api<DaemonSet> = Api::namespaced(tc.client(), &ns);
    dss.create(
        &PostParams::default(),
        &common::daemonset(AGENT_DS, "pivot:1", &ns),
    )
    .await
    .unwrap();
    wait_for(&dss, AGENT_DS, settled(3)).await;
    let hosts = |i: usize| {
        agents
            .node_paths(&node(i))
            .certs_dir
            .join("docker.io/hosts.toml")
    };

    let v2 = direct(&tc, Direction::V2, "T1").await;
    let acked = wait_acked(&tc, &[node(0), node(1)], &v2).await;
    assert!(
        !acked.contains(&node(2)),
        "a never-ack node stays silent: {acked:?}"
    );
    assert!(hosts(0).exists() && !hosts(2).exists());
    agents.set_never_ack(&node(2), false);
    wait_acked(&tc, &[node(0), node(1), node(2)], &v2).await;
    assert!(
        hosts(2).exists(),
        "the agent's own files, under the node's directory"
    );

    let new = sim.replace_node(&node(0)).await.unwrap();
    wait_acked(&tc, std::slice::from_ref(&new), &v2).await;

    // Only the service's rollback direction moves the nodes back; each acknowledges it.
    let rollback = direct(&tc, Direction::Rollback, "T2").await;
    let acked = wait_acked(&tc, &[node(1), node(2), new], &rollback).await;
    assert!(
        !acked.contains(&node(0)),
        "the replaced node is gone: {acked:?}"
    );
    assert!(!hosts(1).exists(), "the node had none before the pivot");
    agents.shutdown().await;
    finish(sim, tc).await;
}

/// The simulator through a fault-injecting proxy (watches cut every 200 ms, one request in
/// five answered 500, then a restart): every controller still converges, and no attempt is
/// run or counted twice.
#[tokio::test]
async fn controllers_converge_through_faults() {
    let tc = TestCluster::start().await;
    let ns = tc.namespace().to_owned();
    let proxy = FaultProxy::start(tc.config().await).await.expect("proxy");
    let through_proxy =
        kube::Config::from_custom_kubeconfig(proxy.kubeconfig(), &KubeConfigOptions::default())
            .await
            .expect("proxy kube config");
    let sim_client = kube::Client::try_from(through_proxy).expect("proxy client");
    let sim = Simulator::start(
        sim_client.clone(),
        SimConfig {
            namespace: Some(ns.clone()),
            nodes: 3,
            pool: ns.clone(),
            default_run: Duration::from_millis(100),
            controllers: common::controllers(),
        },
    )
    .await
    .expect("start simulator");
    let agents = start_agents(&tc, sim_client, &[]);
    let faults = proxy.faults();
    faults.cut_watches_every(Some(Duration::from_millis(200)));
    faults.set_error_rate(0.2, StatusCode::INTERNAL_SERVER_ERROR);

    let v2 = direct(&tc, Direction::V2, "T1").await;
    let dss: Api<DaemonSet> = Api::namespaced(tc.client(), &ns);
    dss.create(
        &PostParams::default(),
        &common::daemonset(AGENT_DS, "pivot:1", &ns),
    )
    .await
    .unwrap();
    let jobs: Api<Job> = Api::namespaced(tc.client(), &ns);
    jobs.create(
        &PostParams::default(),
        &job_json(
            "flaky",
            "Never",
            &[("SANDBOX_SIM_FAIL_ATTEMPTS", "1")],
            json!({"backoffLimit": 3}),
        ),
    )
    .await
    .unwrap();
    faults.restart(Duration::from_millis(500)).await;

    let job = wait_for(&jobs, "flaky", job_condition("Complete")).await;
    let status = job.status.clone().unwrap();
    assert_eq!((status.failed, status.succeeded), (Some(1), Some(1)));
    assert_eq!(pods_of(&tc, &job).await.len(), 2, "one pod per attempt");
    wait_for(&dss, AGENT_DS, settled(3)).await;
    let nodes: Vec<String> = (0..3).map(|i| format!("{ns}-{i}")).collect();
    wait_acked(&tc, &nodes, &v2).await;
    faults.clear();
    agents.shutdown().await;
    finish(sim, tc).await;
    proxy.shutdown().await;
}

/// A simulator stopped mid-run and started again against the same server adopts the pool's
/// nodes (none added twice) and finishes what the first one began: all its state is in the API.
#[tokio::test]
async fn a_restarted_simulator_adopts_nodes_and_finishes_running_jobs() {
    let tc = TestCluster::start().await;
    let ns = tc.namespace().to_owned();
    let first = start(&tc).await;
    let jobs: Api<Job> = Api::namespaced(tc.client(), &ns);
    jobs.create(
        &PostParams::default(),
        &job_json(
            "long",
            "Never",
            &[("SANDBOX_SIM_RUN_MS", "1000")],
            json!({}),
        ),
    )
    .await
    .unwrap();
    // The pod itself, not the Job's `ready` count: a real Job controller batches pod updates
    // for about a second before it writes that.
    let pods: Api<Pod> = Api::namespaced(tc.client(), &ns);
    let running = async {
        loop {
            let listed = pods
                .list(&ListParams::default().labels(&format!("{LABEL_JOB_NAME}=long")))
                .await
                .unwrap()
                .items;
            if listed.iter().any(|p| pod_state::phase(p) == "Running") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, running)
        .await
        .expect("the Job's pod never ran");
    first.shutdown().await;

    let second = start(&tc).await;
    let job = wait_for(&jobs, "long", job_condition("Complete")).await;
    assert_eq!(
        pods_of(&tc, &job).await.len(),
        1,
        "the running pod was adopted"
    );
    let pool = Api::<Node>::all(tc.client())
        .list(&ListParams::default().labels(&format!("{LABEL_POOL}={ns}")))
        .await
        .unwrap();
    assert_eq!(pool.items.len(), 3);
    assert_eq!(
        second.add_node().await.unwrap(),
        format!("{ns}-3"),
        "numbering goes on after the adopted nodes"
    );
    finish(second, tc).await;
}
