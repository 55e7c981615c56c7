//! The operator surface's costs, printed rather than asserted:
//! - 10,000 authorized GETs from one user: Kubernetes API requests behind them (target ≤ 10);
//! - 1,000 concurrent event-stream clients (run by this binary in a child process): extra
//!   resident memory of the service (target ≤ 30 MiB) and, over a run of three steps, how
//!   long after each transition is written every client sees its frame (target ≤ 50 ms).
//!
//! `cargo bench --bench operator`.

mod common;

use catalyst_cutover::auth::AuthConfig;
use catalyst_cutover::contract;
use catalyst_cutover::events::{FramePhase, derive};
use catalyst_cutover::service::{Service, ServiceConfig};
use futures::future::join_all;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube_sandbox::api::ApiServer;
use kube_sandbox::sim::{SimConfig, Simulator};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NS: &str = "bench";
const TOKEN: &str = "bench-operator-token";
const GETS: usize = 10_000;
const GET_CLIENTS: usize = 16;
const SSE_CLIENTS: usize = 1_000;
/// Job steps of the run the event-stream clients follow.
const STEPS: usize = 3;
/// Environment variable that turns this binary into the event-stream client swarm.
const CLIENT_MODE: &str = "CATALYST_CUTOVER_BENCH_SSE_ADDR";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn setup() -> (ApiServer, Simulator, Service) {
    let (server, client, kube_config) = common::sandbox(
        NS,
        TOKEN,
        "catalyst-cutover-operator",
        &["get", "create", "delete"],
    )
    .await;
    for n in 1..=STEPS {
        let step: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": format!("cutover-step-0{n}-s{n}"), "labels": {
                contract::LABEL_PART_OF: contract::PART_OF,
                contract::LABEL_COMPONENT: contract::COMPONENT_STEP,
                contract::LABEL_STEP_ORDER: n.to_string()}},
            "data": {contract::DATA_STEP_NAME: format!("s{n}"),
                     contract::DATA_POD_SPEC: "containers:\n- name: s\n  image: busybox\n"}
        }))
        .unwrap();
        Api::<ConfigMap>::namespaced(client.clone(), NS)
            .create(&PostParams::default(), &step)
            .await
            .expect("step");
    }
    let sim = Simulator::start(
        client,
        SimConfig {
            namespace: Some(NS.to_owned()),
            nodes: 1,
            pool: NS.to_owned(),
            default_run: Duration::from_millis(50),
            controllers: kube_sandbox::sim::Controllers::All,
        },
    )
    .await
    .expect("simulator");
    let mut config = ServiceConfig::new(NS);
    config.auth = AuthConfig::enabled();
    // The bench's thousand clients are one user at one address: lift the per-caller and
    // per-address shares so that what is measured is the replica's cost per stream.
    config.http.max_event_streams_per_caller = SSE_CLIENTS;
    config.http.max_connections_per_source = 2 * SSE_CLIENTS;
    let service = Service::start(kube_config, config).await.expect("service");
    common::wait_ready(&service.url()).await;
    (server, sim, service)
}

/// TokenReviews and SubjectAccessReviews made so far: the `create` requests of an idle
/// service.
fn reviews(exposition: &str) -> u64 {
    exposition
        .lines()
        .filter(|l| l.starts_with("catalyst_cutover_kube_api_requests_total{verb=\"create\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn authorized_gets(service: &Service) {
    let metrics = service.context().metrics.clone();
    let before = metrics.kube_requests_total();
    let reviews_before = reviews(&metrics.encode());
    let url = format!("{}/cutover", service.url());
    let remaining = Arc::new(AtomicUsize::new(GETS));
    let started = Instant::now();
    let workers = (0..GET_CLIENTS).map(|_| {
        let (url, remaining) = (url.clone(), remaining.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut ok = 0usize;
            while remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                let r = http.get(&url).bearer_auth(TOKEN).send().await;
                if r.is_ok_and(|r| r.status() == 200) {
                    ok += 1;
                }
            }
            ok
        })
    });
    let ok: usize = join_all(workers)
        .await
        .into_iter()
        .map(|r| r.unwrap_or(0))
        .sum();
    let elapsed = started.elapsed();
    let requests = metrics.kube_requests_total() - before;
    let reviews = reviews(&metrics.encode()) - reviews_before;
    println!(
        "authorized GETs: {ok}/{GETS} answered 200 in {:.2}s ({:.0}/s); Kubernetes API requests meanwhile: {requests}, of which TokenReviews and SubjectAccessReviews: {reviews} (target <= 10; the rest is the Lease)",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64()
    );
}

/// A frame's identity across processes: its kind and step.
fn frame_key(phase: &str, step: Option<&str>) -> String {
    format!("{phase}/{}", step.unwrap_or("-"))
}

/// Connects a minimal SSE client; reports `connected` once it has its snapshot and resolves
/// with the wall-clock time (ns) it saw each frame of the run, until `cutover-completed`.
async fn sse_client(
    addr: std::net::SocketAddr,
    connected: Arc<AtomicUsize>,
) -> Option<Vec<(String, u128)>> {
    let mut socket = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!(
        "GET /cutover/events HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {TOKEN}\r\naccept: text/event-stream\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.ok()?;
    let mut pending = String::new();
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    loop {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        let at = wall_nanos();
        pending.push_str(&String::from_utf8_lossy(&buf[..n]));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let Ok(frame) = serde_json::from_str::<serde_json::Value>(data) else {
                continue;
            };
            let phase = frame["phase"].as_str().unwrap_or_default();
            if phase == FramePhase::CutoverStatus.as_str() {
                connected.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            seen.push((frame_key(phase, frame["step"].as_str()), at));
            if phase == FramePhase::CutoverCompleted.as_str() {
                return Some(seen);
            }
        }
    }
}

/// Runs the event-stream clients in a child process (this binary, in client mode), so that
/// the resident memory measured here is the service's alone.
async fn event_stream_fan_out(service: &Service) {
    use std::io::BufRead;
    let rss_before = rss_kib();
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .env(CLIENT_MODE, service.addr().to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("client process");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    while rx.recv().await.is_some_and(|line| line != "connected") {}
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_connected = rss_kib();
    // When each transition's write was acknowledged by the API server, by the frames it makes.
    let mut writes = service.context().store.writes();
    let written = tokio::spawn(async move {
        let mut at = std::collections::HashMap::new();
        while let Ok(write) = writes.recv().await {
            let now = wall_nanos();
            let order: Vec<String> = (1..=STEPS).map(|n| format!("s{n}")).collect();
            let frames = derive(&write.before, &write.after, &order, "");
            for frame in &frames {
                at.entry(frame_key(frame.phase.as_str(), frame.step.as_deref()))
                    .or_insert(now);
            }
            if frames
                .iter()
                .any(|f| f.phase == FramePhase::CutoverCompleted)
            {
                return at;
            }
        }
        at
    });
    let started = reqwest::Client::new()
        .post(format!("{}/cutover", service.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("start");
    assert_eq!(started.status(), 202);
    let mut received = Vec::new();
    while let Some(line) = rx.recv().await {
        let mut words = line.split(' ');
        if let (Some("recv"), Some(key), Some(Ok(at))) = (
            words.next(),
            words.next(),
            words.next().map(str::parse::<u128>),
        ) {
            received.push((key.to_owned(), at));
        }
    }
    let _ = child.wait();
    let written = written.await.expect("writes");
    let mut latencies: Vec<f64> = received
        .iter()
        .filter_map(|(key, at)| Some(at.saturating_sub(*written.get(key)?) as f64 / 1e6))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "{SSE_CLIENTS} event-stream clients (in a child process): the service's extra RSS {:.1} MiB (target <= 30 MiB)",
        (rss_connected.saturating_sub(rss_before)) as f64 / 1024.0
    );
    println!(
        "a run of {STEPS} steps ({} transitions) seen by every client: {} frames received ({} expected); from each transition's write to a client's receipt: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target <= 50 ms)",
        written.len(),
        latencies.len(),
        written.len() * SSE_CLIENTS,
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
}

fn wall_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Client mode: connects the clients to the address in [`CLIENT_MODE`], prints
/// `connected` once all have their snapshot, then `recv <frame> <wall-clock ns>` for every
/// frame each client saw.
async fn clients(addr: std::net::SocketAddr) {
    let connected = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..SSE_CLIENTS)
        .map(|_| tokio::spawn(sse_client(addr, connected.clone())))
        .collect();
    while connected.load(Ordering::SeqCst) < SSE_CLIENTS {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("connected");
    for (key, at) in join_all(clients)
        .await
        .into_iter()
        .filter_map(|r| r.ok().flatten())
        .flatten()
    {
        println!("recv {key} {at}");
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(addr) = std::env::var(CLIENT_MODE) {
        runtime.block_on(clients(addr.parse().expect("address")));
        return;
    }
    runtime.block_on(async {
        let (server, sim, service) = setup().await;
        authorized_gets(&service).await;
        event_stream_fan_out(&service).await;
        service.kill();
        sim.shutdown().await;
        server.shutdown().await;
    });
}
