//! The fault proxy in front of a real API server (the sandbox, or the cluster named by
//! CUTOVER_TEST_KUBECONFIG), driven through kube::Client like any controller.

mod common;

use std::future::Future;
use std::time::Duration;

use catalyst_cutover::contract::{self, DEFAULT_STATUS_CONFIGMAP};
use catalyst_cutover::service::{Service, ServiceConfig};
use common::{TestCluster, api_status, job_step};
use futures::{Stream, StreamExt};
use http::{Method, Request, StatusCode, header};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, PostParams, WatchParams};
use kube::config::KubeConfigOptions;
use kube::runtime::wait::await_condition;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config, ResourceExt};
use kube_sandbox::faults::{FaultProxy, RequestMatch};
use kube_sandbox::sim::{SimConfig, Simulator};
use std::collections::BTreeMap;

/// Longest any step may take before the test counts as hung; a guard, not a measurement.
const HANG: Duration = Duration::from_secs(60);

async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(HANG, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {HANG:?}"))
}

/// A proxy in front of the cluster under test.
async fn proxy_for(cluster: &TestCluster) -> FaultProxy {
    let upstream = cluster.config().await;
    FaultProxy::start(upstream).await.expect("start proxy")
}

/// A client of the proxy; `retry` keeps kube's default retrying of 429/503/504.
async fn proxy_client(proxy: &FaultProxy, retry: bool) -> Client {
    let mut config =
        Config::from_custom_kubeconfig(proxy.kubeconfig(), &KubeConfigOptions::default())
            .await
            .expect("proxy kubeconfig");
    config.default_retry = retry;
    Client::try_from(config).expect("proxy client")
}

fn config_map(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_owned());
    cm.data = Some([("k".to_owned(), name.to_owned())].into());
    cm
}

/// Waits until `stream` ends.
async fn drained<S: Stream + Unpin>(stream: &mut S) {
    while stream.next().await.is_some() {}
}

/// Waits until a watcher's stream delivers the object `name`, skipping errors it recovers from.
async fn seen_named<S>(seen: &mut S, name: &str)
where
    S: Stream<Item = Result<ConfigMap, watcher::Error>> + Unpin,
{
    bounded(&format!("the watcher seeing {name}"), async {
        loop {
            match seen.next().await {
                Some(Ok(cm)) if cm.name_any() == name => break,
                Some(_) => {}
                None => panic!("the watcher stream ended"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn requests_pass_through_unchanged() {
    let cluster = TestCluster::start().await;
    let proxy = proxy_for(&cluster).await;
    let ns = cluster.namespace();
    let via_proxy: Api<ConfigMap> = Api::namespaced(proxy_client(&proxy, false).await, ns);
    let direct: Api<ConfigMap> = Api::namespaced(cluster.client(), ns);

    let created = via_proxy
        .create(&PostParams::default(), &config_map("through"))
        .await
        .expect("create via proxy");
    let fetched = direct.get("through").await.expect("get directly");
    assert_eq!(created.resource_version(), fetched.resource_version());
    assert_eq!(fetched.data, config_map("through").data);

    proxy.faults().set_latency(Duration::from_millis(50));
    let listed = via_proxy
        .list(&ListParams::default())
        .await
        .expect("list via proxy");
    assert_eq!(listed.items.len(), 1);
    proxy.shutdown().await;
    cluster.cleanup().await;
}

#[tokio::test]
async fn injected_errors_look_like_the_servers_own() {
    let cluster = TestCluster::start().await;
    let proxy = proxy_for(&cluster).await;
    let client = proxy_client(&proxy, false).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), cluster.namespace());
    api.create(&PostParams::default(), &config_map("target"))
        .await
        .expect("create");
    let faults = proxy.faults();

    faults.set_error_rate(1.0, StatusCode::INTERNAL_SERVER_ERROR);
    for _ in 0..3 {
        let status = api_status(api.get("target").await.expect_err("500 injected"));
        assert_eq!(status.code, 500);
        assert_eq!(status.reason, "InternalError");
    }

    faults.set_error_rate(1.0, StatusCode::TOO_MANY_REQUESTS);
    let status = api_status(api.get("target").await.expect_err("429 injected"));
    assert_eq!(status.code, 429);
    assert_eq!(status.reason, "TooManyRequests");
    let path = format!(
        "/api/v1/namespaces/{}/configmaps/target",
        cluster.namespace()
    );
    let raw = client
        .send(
            Request::get(path)
                .body(kube::client::Body::empty())
                .expect("request"),
        )
        .await
        .expect("raw 429");
    assert_eq!(raw.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(raw.headers()[header::RETRY_AFTER], "1");

    faults.clear();
    assert_eq!(
        api.get("target").await.expect("get after clear").name_any(),
        "target"
    );
    proxy.shutdown().await;
    cluster.cleanup().await;
}

#[tokio::test]
async fn cut_watches_end_and_watchers_recover() {
    let cluster = TestCluster::start().await;
    let proxy = proxy_for(&cluster).await;
    let api: Api<ConfigMap> =
        Api::namespaced(proxy_client(&proxy, false).await, cluster.namespace());
    proxy
        .faults()
        .cut_watches_every(Some(Duration::from_millis(300)));

    let version = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("list resourceVersion");
    let mut raw = api
        .watch(&WatchParams::default(), &version)
        .await
        .expect("watch")
        .boxed();
    bounded("the cut of a raw watch", drained(&mut raw)).await;

    // Objects created across many cuts all reach a watcher.
    let mut seen = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    for i in 0..6 {
        let name = format!("cm-{i}");
        api.create(&PostParams::default(), &config_map(&name))
            .await
            .expect("create");
        seen_named(&mut seen, &name).await;
        // Spread the creations over several cut periods.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    proxy.shutdown().await;
    cluster.cleanup().await;
}

#[tokio::test]
async fn restart_drops_streams_answers_503_then_recovers() {
    let cluster = TestCluster::start().await;
    let proxy = proxy_for(&cluster).await;
    let once: Api<ConfigMap> =
        Api::namespaced(proxy_client(&proxy, false).await, cluster.namespace());
    let retrying: Api<ConfigMap> =
        Api::namespaced(proxy_client(&proxy, true).await, cluster.namespace());
    once.create(&PostParams::default(), &config_map("survivor"))
        .await
        .expect("create");
    let mut open = once
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    let mut seen = watcher(once.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    seen_named(&mut seen, "survivor").await;

    proxy.faults().restart(Duration::from_secs(5)).await;
    bounded("the open watch being dropped", drained(&mut open)).await;
    let status = api_status(once.get("survivor").await.expect_err("503 while down"));
    assert_eq!(status.code, 503);
    assert_eq!(status.reason, "ServiceUnavailable");

    // kube's default retry rides out the down time.
    let back = bounded("recovery after the restart", retrying.get("survivor"))
        .await
        .expect("get after the restart");
    assert_eq!(back.name_any(), "survivor");
    assert_eq!(
        once.get("survivor").await.expect("get").name_any(),
        "survivor"
    );
    proxy.shutdown().await;
    cluster.cleanup().await;
}

/// A replica of the service named `identity`, talking to the API server through `config`.
async fn replica(config: kube::Config, ns: &str, identity: &str) -> Service {
    let mut service = ServiceConfig::new(ns);
    service.identity = identity.to_owned();
    service.lease_duration = Duration::from_secs(2);
    // Longer than the renew deadline (two thirds of the Lease), so stepping down cannot
    // be the request timeout's doing; short enough that the hung requests end in the test.
    service.kube_request_timeout = Duration::from_secs(3);
    Service::start(config, service)
        .await
        .expect("start the service")
}

/// Waits until `service`'s leadership is `leading`.
async fn leads(service: &Service, leading: bool) {
    let mut rx = service.leading();
    bounded("the leadership change", rx.wait_for(|l| *l == leading))
        .await
        .expect("the replica is running");
}

/// Waits until the status ConfigMap satisfies `done`, and returns its data.
async fn status_when(
    client: &Client,
    ns: &str,
    done: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cond = move |cm: Option<&ConfigMap>| cm.and_then(|cm| cm.data.as_ref()).is_some_and(&done);
    bounded(
        "the status change",
        await_condition(api.clone(), DEFAULT_STATUS_CONFIGMAP, cond),
    )
    .await
    .expect("watch the status");
    api.get(DEFAULT_STATUS_CONFIGMAP)
        .await
        .expect("status")
        .data
        .unwrap_or_default()
}

/// The value of metric line `name` (with its labels) in `service`'s `/metrics`.
async fn metric(service: &Service, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", service.url()))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Leader A's Lease renewals and status writes start hanging mid-run behind the proxy (the
/// API server accepts them and never answers). A stops acting on its own renew deadline,
/// before B may take the Lease over; A creates no Job after that; B adopts the step A left
/// running and completes the cutover with exactly one Job per step attempt. A's hung
/// requests end through the request timeout, while they are still being swallowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_and_status_writes_hang_stops_before_another_takes_over() {
    let cluster = TestCluster::start().await;
    let ns = cluster.namespace().to_owned();
    let sim = Simulator::start(
        cluster.client(),
        SimConfig {
            namespace: Some(ns.clone()),
            nodes: 1,
            pool: ns.clone(),
            controllers: common::controllers(),
            ..SimConfig::default()
        },
    )
    .await
    .expect("start the simulator");
    let steps = ["s1", "s2", "s3", "s4"];
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    for (i, step) in (1..).zip(steps) {
        cms.create(
            &PostParams::default(),
            &job_step(i, step, &[("SANDBOX_SIM_RUN_MS", "400")]),
        )
        .await
        .expect("create step");
    }
    let proxy = proxy_for(&cluster).await;
    let via_proxy =
        Config::from_custom_kubeconfig(proxy.kubeconfig(), &KubeConfigOptions::default())
            .await
            .expect("proxy kubeconfig");
    let a = replica(via_proxy, &ns, "replica-a").await;
    bounded("A's caches syncing", a.ready()).await;
    let started = reqwest::Client::new()
        .post(format!("{}/cutover", a.url()))
        .header("content-type", "application/json")
        .send()
        .await
        .expect("POST /cutover");
    assert_eq!(started.status(), 202, "{:?}", started.text().await);
    leads(&a, true).await;
    // B starts once A leads, so A is the leader whose requests will hang.
    let b = replica(cluster.config().await, &ns, "replica-b").await;
    status_when(&cluster.client(), &ns, |d| {
        d.get("step.s2.result").is_some_and(|r| r == "running")
    })
    .await;

    let faults = proxy.faults();
    let lease = format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/catalyst-cutover");
    let status = format!("/api/v1/namespaces/{ns}/configmaps/{DEFAULT_STATUS_CONFIGMAP}");
    faults.swallow(RequestMatch::new(&[Method::PUT], &lease), None);
    faults.swallow(
        RequestMatch::new(&[Method::PUT, Method::PATCH], &status),
        None,
    );

    // The moment B leads, A must already have stopped.
    let mut a_leading = a.leading();
    let mut b_leading = b.leading();
    let a_at_takeover = bounded("B taking the Lease over", async {
        b_leading.wait_for(|l| *l).await.expect("B runs");
        *a_leading.borrow_and_update()
    })
    .await;
    assert!(!a_at_takeover, "A still led when B took the Lease over");
    let jobs_by_a = faults.tally(RequestMatch::new(
        &[Method::POST],
        &format!("/apis/batch/v1/namespaces/{ns}/jobs"),
    ));

    let done = status_when(&cluster.client(), &ns, |d| {
        d.get("cutoverPhase")
            .is_some_and(|p| p == "complete" || p == "failed")
    })
    .await;
    assert_eq!(done["cutoverPhase"], "complete", "{done:#?}");
    for step in steps {
        assert_eq!(done[&format!("step.{step}.result")], "success", "{step}");
        assert_eq!(done[&format!("step.{step}.attempt")], "1", "{step}");
    }
    let selector = format!(
        "{}={},{}={}",
        contract::LABEL_PART_OF,
        contract::PART_OF,
        contract::LABEL_COMPONENT,
        contract::COMPONENT_JOB
    );
    let jobs: Api<Job> = Api::namespaced(cluster.client(), &ns);
    let mut by_step: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for job in jobs
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("list Jobs")
        .items
    {
        let step = job
            .labels()
            .get(contract::LABEL_JOB_STEP)
            .cloned()
            .unwrap_or_default();
        by_step.entry(step).or_default().push(job.name_any());
    }
    let expected: BTreeMap<String, Vec<String>> = steps
        .iter()
        .map(|s| ((*s).to_owned(), vec![format!("cutover-{s}-a1")]))
        .collect();
    assert_eq!(by_step, expected, "exactly one Job per step attempt");
    assert_eq!(jobs_by_a.get(), 0, "A created a Job after B took over");
    assert!(!*a.leading().borrow(), "A leads again");

    // Still swallowed: only the request timeout can have ended A's hung writes.
    bounded("A's hung requests timing out", async {
        while metric(
            &a,
            "catalyst_cutover_kube_api_errors_total{verb=\"update\"}",
        )
        .await
            < 1.0
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    faults.stop_swallowing();
    b.shutdown().await;
    a.shutdown().await;
    proxy.shutdown().await;
    sim.shutdown().await;
    cluster.cleanup().await;
}
