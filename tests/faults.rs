//! The fault proxy in front of a real API server (the sandbox, or the cluster named by
//! CUTOVER_TEST_KUBECONFIG), driven through kube::Client like any controller.

mod common;

use std::future::Future;
use std::time::Duration;

use common::{TestCluster, api_status};
use futures::{Stream, StreamExt};
use http::{Request, StatusCode, header};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, PostParams, WatchParams};
use kube::config::KubeConfigOptions;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config, ResourceExt};
use kube_sandbox::faults::FaultProxy;

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
