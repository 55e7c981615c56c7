//! Capacity of the sandbox, printed rather than asserted: simple GETs per second with
//! concurrent clients, how many open watches the API server holds while still delivering
//! events, and how long a DaemonSet over 5,000 simulated nodes takes to settle.
//!
//! `cargo bench --bench sandbox` (add `-- --quick` for a shorter run with 500 nodes).

use futures::StreamExt;
use kube_sandbox::api::{ApiServer, ApiServerConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: &[usize] = &[1, 8, 32];
const WATCHES: usize = 1_000;
const NODES: usize = 5_000;
const QUICK_NODES: usize = 500;

async fn seed(server: &ApiServer) -> String {
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/namespaces/default/configmaps", server.url());
    let body = serde_json::json!({"metadata": {"name": "bench"}, "data": {"k": "v"}});
    let response = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("create bench object");
    assert!(
        response.status().is_success(),
        "seed failed: {}",
        response.status()
    );
    format!("{url}/bench")
}

/// Successful requests per second from `clients` concurrent clients, each sending the
/// request `build(client, its index, its request count)` makes until `run_for` is over.
async fn requests_per_second<F>(clients: usize, run_for: Duration, build: F) -> f64
where
    F: Fn(&reqwest::Client, usize, u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + run_for;
    let build = Arc::new(build);
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (build, done) = (build.clone(), done.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let ok = build(&client, i, n)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Merge-patches one object from `clients` concurrent clients: each patch is a write with a
/// new resourceVersion and a watch event.
async fn patches_per_second(url: &str, clients: usize, run_for: Duration) -> f64 {
    let url = url.to_owned();
    requests_per_second(clients, run_for, move |client, i, n| {
        let body = serde_json::json!({"data": {format!("c{i}"): n.to_string()}});
        client
            .patch(&url)
            .header("Content-Type", "application/merge-patch+json")
            .body(body.to_string())
    })
    .await
}

async fn gets_per_second(url: &str, clients: usize, run_for: Duration) -> f64 {
    let url = url.to_owned();
    requests_per_second(clients, run_for, move |client, _, _| client.get(&url)).await
}

/// Opens `n` watches, then changes the object once and times until every watch has seen it.
async fn hold_watches(server: &ApiServer, object_url: &str, n: usize) -> (usize, Duration) {
    let watch_url = format!(
        "{}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={}&timeoutSeconds=120",
        server.url(),
        current_rv(object_url).await
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        match client.get(&watch_url).send().await {
            Ok(r) if r.status().is_success() => streams.push(r.bytes_stream()),
            _ => break,
        }
    }
    let opened = streams.len();
    let started = Instant::now();
    let patch = serde_json::json!({"data": {"k": "changed"}});
    let response = client
        .patch(object_url)
        .header("Content-Type", "application/merge-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .expect("patch");
    assert!(response.status().is_success());
    let waits = streams
        .into_iter()
        .map(|mut s| async move { s.next().await.is_some() });
    let delivered = futures::future::join_all(waits)
        .await
        .into_iter()
        .filter(|d| *d)
        .count();
    assert_eq!(delivered, opened, "every open watch sees the change");
    (opened, started.elapsed())
}

async fn current_rv(object_url: &str) -> String {
    let obj: serde_json::Value = reqwest::get(object_url)
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let run_for = Duration::from_secs(if quick { 1 } else { 5 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let server = ApiServer::start(ApiServerConfig::default())
            .await
            .expect("start sandbox");
        let url = seed(&server).await;
        for &clients in CLIENTS {
            let rate = gets_per_second(&url, clients, run_for).await;
            println!(
                "sandbox GET configmap: {clients:>3} concurrent clients: {rate:>9.0} requests/s"
            );
        }
        let rate = patches_per_second(&url, 8, run_for).await;
        println!("sandbox PATCH configmap:  8 concurrent clients: {rate:>9.0} requests/s");
        let (opened, took) = hold_watches(&server, &url, WATCHES).await;
        println!("sandbox watches: {opened} open; one change reached all of them in {took:?}");
        let nodes = if quick { QUICK_NODES } else { NODES };
        let client = server.admin_client().await.expect("client");
        match kube_sandbox::sim::bench::daemonset_settle(client, "bench", nodes).await {
            Ok(f) => println!(
                "sandbox DaemonSet over {} nodes: nodes up in {:?}, settled in {:?}",
                f.nodes, f.start, f.settle
            ),
            Err(error) => println!("sandbox DaemonSet over {nodes} nodes: failed: {error}"),
        }
        server.shutdown().await;
    });
}
