//! The HTTP port under floods, measured on loopback against the sandbox, printed rather than
//! asserted (README, "Security model"):
//! - connections: 5,000 silent connections from one address (127.0.0.2), then 200 new
//!   silent ones a second for 30 s, while a legitimate client (127.0.0.1, a new connection
//!   per request) reads `GET /cutover` 20 times a second and the kubelet's stand-in probes
//!   `/healthz` on the probe port 10 times a second. Goals: `GET /cutover` ≥ 99% with p99
//!   under 100 ms, `/healthz` 100%.
//! - reviews: 20,000 distinct made-up bearer tokens from 16 connections at once, each from
//!   an address of its own (127.0.0.2 to 127.0.0.17, so the replica-wide bucket is what
//!   holds), and 300 requests with distinct 380 KB tokens, while the legitimate client reads
//!   with its good token. Figures: TokenReviews sent per second (goal ≤ the configured rate, 20/s with a
//!   burst of 40), bytes of tokens sent to the API server, the client's success rate.
//!
//! - the same connection flood from 50 addresses (`connections-spread`), each under the
//!   per-address cap, where only the first-byte timeout holds.
//!
//! `cargo bench --bench floods [connections|connections-spread|reviews]`. Every loop is bounded by a count or a
//! deadline, and everything stays on loopback. The connection flood holds ~11,000 sockets
//! in this one process (both ends of each live connection): it needs `ulimit -n` of 16,384
//! at least, and says so when the limit is lower.

mod common;

use catalyst_cutover::auth::AuthConfig;
use catalyst_cutover::service::{Service, ServiceConfig};
use futures::future::join_all;
use kube_sandbox::api::ApiServer;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};

const NS: &str = "floods";
const TOKEN: &str = "floods-operator-token";
const SILENT: usize = 5_000;
const NEW_PER_SECOND: u64 = 200;
const FLOOD: Duration = Duration::from_secs(30);
const BOGUS_TOKENS: usize = 20_000;
const BIG_TOKENS: usize = 300;
const BIG_TOKEN_BYTES: usize = 380 * 1024;
const FLOOD_CONNECTIONS: usize = 16;
/// The file descriptors the connection flood needs.
const FDS_NEEDED: u64 = 16_384;
/// One legitimate request's deadline: past it, it counts as failed.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// The address the floods come from; the legitimate clients use 127.0.0.1.
fn attacker() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], 0))
}

async fn setup() -> (ApiServer, Service) {
    let (server, _, kube_config) = common::sandbox(NS, TOKEN, "floods-reader", &["get"]).await;
    let mut config = ServiceConfig::new(NS);
    config.auth = AuthConfig::enabled();
    config.probe_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let service = Service::start(kube_config, config).await.expect("service");
    common::wait_ready(&service.url()).await;
    (server, service)
}

/// Where the probes go: the probe port when the service has one.
fn probe_base(service: &Service) -> String {
    match service.probe_addr() {
        Some(addr) => format!("http://{addr}"),
        None => service.url(),
    }
}

/// A client that opens a new connection for every request, as a client behind a load
/// balancer or a kubelet probe does.
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(REQUEST_DEADLINE)
        .build()
        .expect("client")
}

/// Outcomes of one legitimate client: successes, failures, each success's latency.
#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    latencies: Vec<Duration>,
}

impl Tally {
    fn report(&mut self, what: &str) {
        self.latencies.sort();
        let total = self.ok + self.failed;
        let percent = 100.0 * self.ok as f64 / total.max(1) as f64;
        let p99 = self
            .latencies
            .get((self.latencies.len() * 99 / 100).min(self.latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default();
        let p50 = self
            .latencies
            .get(self.latencies.len() / 2)
            .copied()
            .unwrap_or_default();
        println!(
            "  {what}: {}/{total} succeeded ({percent:.2}%), p50 {:.1} ms, p99 {:.1} ms",
            self.ok,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}

/// Sends `GET url` every `every` until `until` or `stop`, with `token` when given.
async fn legit(
    url: String,
    token: Option<&str>,
    every: Duration,
    until: Instant,
    stop: Arc<AtomicBool>,
) -> Tally {
    let http = fresh_connections();
    let mut tally = Tally::default();
    let mut tick = tokio::time::interval(every);
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let mut request = http.get(&url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let started = Instant::now();
        match request.send().await {
            Ok(response) if response.status() == 200 => {
                tally.ok += 1;
                tally.latencies.push(started.elapsed());
            }
            _ => tally.failed += 1,
        }
    }
    tally
}

/// A TCP connection from `from` that will never send a byte.
async fn silent(from: SocketAddr, to: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(from).ok()?;
    tokio::time::timeout(Duration::from_secs(1), socket.connect(to))
        .await
        .ok()?
        .ok()
}

fn raise_fd_limit() {
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    assert!(
        limit >= FDS_NEEDED,
        "the connection flood needs `ulimit -n {FDS_NEEDED}` at least (this shell has {limit}); raise it and run again"
    );
}

/// The attacker's `n`th connection comes from one of `addresses` addresses, in turn.
fn source(n: usize, addresses: usize) -> SocketAddr {
    let k = n % addresses;
    SocketAddr::from(([127, 0, 1 + (k / 250) as u8, 2 + (k % 250) as u8], 0))
}

async fn connections(addresses: usize) {
    raise_fd_limit();
    let (server, service) = setup().await;
    let api = service.addr();
    println!(
        "connection flood: {SILENT} silent connections from {addresses} address(es), then {NEW_PER_SECOND}/s for {FLOOD:?}"
    );
    let mut held = VecDeque::new();
    let opened_at = Instant::now();
    let opened = join_all((0..SILENT).map(|n| silent(source(n, addresses), api))).await;
    let first_wave = opened.iter().flatten().count();
    held.extend(opened.into_iter().flatten().map(|c| (Instant::now(), c)));
    println!(
        "  opened {first_wave} of {SILENT} in {:.1} s",
        opened_at.elapsed().as_secs_f64()
    );
    let until = Instant::now() + FLOOD;
    let reader = tokio::spawn(legit(
        format!("{}/cutover", service.url()),
        Some(TOKEN),
        Duration::from_millis(50),
        until,
        Arc::default(),
    ));
    let prober = tokio::spawn(legit(
        format!("{}/healthz", probe_base(&service)),
        None,
        Duration::from_millis(100),
        until,
        Arc::default(),
    ));
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / NEW_PER_SECOND));
    let mut more = 0u64;
    while Instant::now() < until {
        tick.tick().await;
        if let Some(c) = silent(source(more as usize, addresses), api).await {
            more += 1;
            held.push_back((Instant::now(), c));
        }
        // The attacker keeps its newest ten seconds' worth: its own descriptors are bounded.
        while held
            .front()
            .is_some_and(|(at, _)| at.elapsed() > Duration::from_secs(10) && held.len() > SILENT)
        {
            held.pop_front();
        }
    }
    println!("  opened {more} more during the flood");
    reader
        .await
        .expect("reader")
        .report("GET /cutover (API port)");
    prober.await.expect("prober").report(&format!(
        "GET /healthz ({})",
        if service.probe_addr().is_some() {
            "probe port"
        } else {
            "API port: this build has no probe port"
        }
    ));
    drop(held);
    service.kill();
    drop(server);
}

async fn reviews() {
    let (server, service) = setup().await;
    let base = service.url();
    let metrics = service.context().metrics.clone();
    println!(
        "review flood: {BOGUS_TOKENS} made-up tokens over {FLOOD_CONNECTIONS} connections from as many addresses, then {BIG_TOKENS} tokens of {} KB",
        BIG_TOKEN_BYTES / 1024
    );
    // The good token is known before the flood, as the console's is.
    let http = reqwest::Client::new();
    let warm = http
        .get(format!("{base}/cutover"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("warm-up");
    assert_eq!(warm.status(), 200, "the good token reads");
    let before = metrics.kube_requests_total();
    let started = Instant::now();
    let statuses: Arc<Vec<(u16, AtomicU64)>> = Arc::new(
        [0u16, 200, 401, 429, 431, 503]
            .into_iter()
            .map(|code| (code, AtomicU64::new(0)))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(legit(
        format!("{base}/cutover"),
        Some(TOKEN),
        Duration::from_millis(50),
        Instant::now() + Duration::from_secs(600),
        stop.clone(),
    ));
    let workers = (0..FLOOD_CONNECTIONS).map(|worker| {
        let (base, statuses) = (base.clone(), statuses.clone());
        async move {
            let http = reqwest::Client::builder()
                .local_address(std::net::IpAddr::from([127, 0, 0, 2 + worker as u8]))
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            for n in (worker..BOGUS_TOKENS).step_by(FLOOD_CONNECTIONS) {
                let code = http
                    .get(format!("{base}/cutover"))
                    .bearer_auth(format!("bogus-{n}-{}", "x".repeat(800)))
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16());
                count(&statuses, code);
            }
        }
    });
    join_all(workers).await;
    let bogus_secs = started.elapsed().as_secs_f64();
    let bogus_reviews = metrics.kube_requests_total() - before;
    let big_started = Instant::now();
    let before_big = metrics.kube_requests_total();
    let big = "y".repeat(BIG_TOKEN_BYTES);
    let attacker_http = reqwest::Client::builder()
        .local_address(attacker().ip())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    for n in 0..BIG_TOKENS {
        let code = attacker_http
            .get(format!("{base}/cutover"))
            .bearer_auth(format!("{n}-{big}"))
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        count(&statuses, code);
    }
    let big_reviews = metrics.kube_requests_total() - before_big;
    let big_secs = big_started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    println!(
        "  {BOGUS_TOKENS} made-up tokens in {bogus_secs:.1} s: {bogus_reviews} API requests (reviews), {:.1}/s",
        bogus_reviews as f64 / bogus_secs
    );
    println!(
        "  {BIG_TOKENS} big tokens in {big_secs:.1} s: {big_reviews} API requests meanwhile (the legitimate client's own re-reviews included)"
    );
    let answers: Vec<String> = statuses
        .iter()
        .filter(|(_, n)| n.load(Ordering::Relaxed) > 0)
        .map(|(code, n)| format!("{code}: {}", n.load(Ordering::Relaxed)))
        .collect();
    println!(
        "  the attacker's answers (0 = no answer): {}",
        answers.join(", ")
    );
    reader
        .await
        .expect("reader")
        .report("GET /cutover with the good token, during the flood");
    service.kill();
    drop(server);
}

fn count(statuses: &[(u16, AtomicU64)], code: u16) {
    let slot = statuses
        .iter()
        .find(|(c, _)| *c == code)
        .unwrap_or(&statuses[0]);
    slot.1.fetch_add(1, Ordering::Relaxed);
}

#[tokio::main]
async fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if wants("reviews") {
        reviews().await;
    }
    if wants("connections") {
        connections(1).await;
    }
    // The same flood spread over 50 addresses, each under the per-address cap: what holds
    // then is the first-byte timeout alone.
    if wants("connections-spread") {
        connections(50).await;
    }
}
