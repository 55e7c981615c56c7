//! The HTTP port against floods and hostile defaults, over real TCP on loopback: silent
//! connections closed after the first-byte timeout, capped per address, and making way for
//! a client that speaks when every slot is taken, while the probe port answers; tokens past 8 KiB refused without a review; reviews of made-up tokens
//! rate-limited (429 with Retry-After) while a known token goes on; event streams capped
//! per caller and closed once their caller's ServiceAccount is deleted; `no-store` on
//! authenticated answers; with authentication off, POSTs that do not declare JSON refused.
//! The figures under load are the bench's (`benches/floods.rs`).
//!
//! Runs against the sandbox, or unchanged against a real cluster when
//! `CUTOVER_TEST_KUBECONFIG` is set: its users are ServiceAccounts of the test's namespace,
//! with tokens from the TokenRequest API.

mod common;

use catalyst_cutover::auth::AuthConfig;
use catalyst_cutover::service::{Service, ServiceConfig};
use common::{TestCluster, create_service_account, grant, request_token, role, token_of};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams};
use serde_json::Value;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Hang guard of one wait, not a speed assertion.
const GUARD: Duration = Duration::from_secs(60);

async fn start(cluster: &TestCluster, config: ServiceConfig) -> Service {
    let service = Service::start(cluster.config().await, config)
        .await
        .expect("start service");
    common::wait_ready(&service.url(), GUARD).await;
    service
}

/// A ServiceAccount `name` of the test's namespace with `verbs` on cutovers, and its token.
async fn user(cluster: &TestCluster, name: &str, verbs: &[&str]) -> String {
    let client = cluster.client();
    let ns = cluster.namespace();
    create_service_account(&client, ns, name).await;
    grant(&client, ns, name, role(&format!("floods-{name}"), verbs)).await;
    token_of(
        &request_token(&client, ns, name, None)
            .await
            .expect("token request"),
    )
}

/// A connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback address");
    socket.connect(to).await.expect("connect")
}

/// Waits until the server closes `conn` (a read of 0 bytes, or a reset); how long it took.
async fn closed_after(conn: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 512];
    tokio::time::timeout(GUARD, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection");
    started.elapsed()
}

/// The status line and body of one plain HTTP/1.1 request written to `conn` in two parts,
/// `pause` apart.
async fn slow_request(conn: &mut TcpStream, path: &str, pause: Duration) -> String {
    conn.write_all(format!("GET {path} HTTP/1.1\r\n").as_bytes())
        .await
        .expect("write");
    tokio::time::sleep(pause).await;
    conn.write_all(b"Host: floods\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    tokio::time::timeout(GUARD, conn.read_to_string(&mut answer))
        .await
        .expect("an answer")
        .expect("read");
    answer
}

/// The `create` requests the service made so far: its TokenReviews and SubjectAccessReviews
/// (an idle service creates nothing else).
async fn reviews(base: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .filter(|l| l.starts_with("catalyst_cutover_kube_api_requests_total{verb=\"create\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn get(base: &str, path: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_go_early_and_are_capped_per_address_while_probes_answer() {
    let cluster = TestCluster::start().await;
    let mut config = ServiceConfig::new(cluster.namespace());
    config.probe_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.http.max_connections_per_source = 4;
    // Far above the first-byte timeout: a close in between is the first-byte timeout's.
    config.http.header_read_timeout = Duration::from_secs(30);
    let service = start(&cluster, config.clone()).await;
    let api = service.addr();
    let probes = service.probe_addr().expect("a probe port");

    // The attacker's address holds its share of silent connections; one more is closed at
    // once, unanswered.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from([127, 0, 0, 2], api).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = connect_from([127, 0, 0, 2], api).await;
    let waited = closed_after(&mut refused).await;
    assert!(
        waited < config.http.first_byte_timeout,
        "closed at once, not after {waited:?}"
    );
    // Another address is served meanwhile, and so are the probes on their own port, which
    // serves nothing else.
    let answer = reqwest::get(format!("{}/cutover", service.url()))
        .await
        .expect("GET /cutover");
    assert_eq!(answer.status(), 200);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let answer = reqwest::get(format!("http://{probes}{path}"))
            .await
            .expect("probe");
        assert_eq!(answer.status(), 200, "{path} on the probe port");
    }
    let page = reqwest::get(format!("http://{probes}/cutover"))
        .await
        .expect("GET");
    assert_eq!(page.status(), 404, "the probe port serves no API");

    // A connection that sends nothing is closed after the first-byte timeout, long before
    // the header timeout.
    let waited = closed_after(&mut held[0]).await;
    assert!(
        waited < config.http.header_read_timeout / 2,
        "a silent connection lasted {waited:?}"
    );
    drop(held);
    // A slow client that sent its first byte has the whole header timeout for the rest.
    let mut slow = connect_from([127, 0, 0, 1], api).await;
    let answer = slow_request(
        &mut slow,
        "/healthz",
        config.http.first_byte_timeout + Duration::from_secs(1),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    service.shutdown().await;
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_and_made_up_tokens_cost_few_reviews_and_never_hold_a_known_one_up() {
    let cluster = TestCluster::start().await;
    let reader = user(&cluster, "reader", &["get"]).await;
    let mut config = ServiceConfig::new(cluster.namespace());
    let one = NonZeroU32::MIN;
    let three = NonZeroU32::new(3).expect("3");
    config.auth = AuthConfig::enabled();
    config.auth.limits.per_source_per_second = one;
    config.auth.limits.per_source_burst = three;
    let service = start(&cluster, config).await;
    let base = service.url();

    let known = get(&base, "/cutover", &reader).await;
    assert_eq!(known.status(), 200);
    assert_eq!(known.headers()["cache-control"], "no-store");
    let before = reviews(&base).await;

    // Past 8 KiB: refused without a review.
    let big = get(&base, "/cutover", &"x".repeat(8 * 1024 + 1)).await;
    assert_eq!(big.status(), 401);
    assert_eq!(big.headers()["cache-control"], "no-store");
    let body: Value = big.json().await.expect("JSON");
    assert_eq!(body["error"], "invalid-token");
    assert!(body["detail"].as_str().unwrap_or_default().contains("8192"));
    assert_eq!(reviews(&base).await, before, "no review for a big token");

    // Made-up tokens: the address's burst is reviewed, the rest is 429 with Retry-After,
    // and the known token reads on throughout.
    let mut limited = 0;
    for n in 0..12 {
        let answer = get(&base, "/cutover", &format!("made-up-{n}")).await;
        match answer.status().as_u16() {
            401 => {}
            429 => {
                limited += 1;
                let wait: u64 = answer.headers()["retry-after"]
                    .to_str()
                    .expect("ASCII")
                    .parse()
                    .expect("seconds");
                assert!(wait >= 1);
                let body: Value = answer.json().await.expect("JSON");
                assert_eq!(body["error"], "rate-limited");
            }
            other => panic!("made-up token answered {other}"),
        }
        assert_eq!(get(&base, "/cutover", &reader).await.status(), 200);
    }
    assert!(
        limited >= 8,
        "only {limited} of 12 made-up tokens were limited"
    );
    let spent = reviews(&base).await - before;
    assert!(
        spent <= 12.0 - f64::from(limited),
        "{spent} reviews for {} reviewed tokens",
        12 - limited
    );

    service.shutdown().await;
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped_per_caller_and_end_once_the_caller_is_gone() {
    let cluster = TestCluster::start().await;
    let reader = user(&cluster, "reader", &["get"]).await;
    let operator = user(&cluster, "operator", &["get", "create"]).await;
    let mut config = ServiceConfig::new(cluster.namespace());
    config.auth = AuthConfig::enabled();
    config.auth.cache_ttl = Duration::from_secs(1);
    config.http.max_event_streams_per_caller = 2;
    config.http.event_stream_reauthorize = Duration::from_secs(1);
    let service = start(&cluster, config).await;
    let base = service.url();

    let mut streams = Vec::new();
    for _ in 0..2 {
        let stream = get(&base, "/cutover/events", &reader).await;
        assert_eq!(stream.status(), 200);
        assert_eq!(stream.headers()["cache-control"], "no-store");
        streams.push(stream.bytes_stream());
    }
    let refused = get(&base, "/cutover/events", &reader).await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"], "too-many-event-streams");
    let other = get(&base, "/cutover/events", &operator).await;
    assert_eq!(other.status(), 200, "another caller is not affected");
    let mut other = other.bytes_stream();

    // The reader's ServiceAccount goes: its streams end; the operator's stays.
    Api::<ServiceAccount>::namespaced(cluster.client(), cluster.namespace())
        .delete("reader", &DeleteParams::default())
        .await
        .expect("delete the reader");
    for stream in &mut streams {
        tokio::time::timeout(GUARD, async {
            while let Some(Ok(_)) = stream.next().await {}
        })
        .await
        .expect("the revoked caller's stream ends");
    }
    let still = tokio::time::timeout(Duration::from_secs(3), other.next()).await;
    assert!(
        !matches!(still, Ok(None) | Ok(Some(Err(_)))),
        "the operator's stream went on"
    );
    let gone = get(&base, "/cutover/events", &reader).await;
    assert_eq!(gone.status(), 401);

    service.shutdown().await;
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_authentication_off_a_post_must_declare_json() {
    let cluster = TestCluster::start().await;
    let service = start(&cluster, ServiceConfig::new(cluster.namespace())).await;
    let http = reqwest::Client::new();
    let url = format!("{}/cutover/abort", service.url());
    // What a web page of another site can make a browser send without asking.
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut request = http.post(&url).body("{}");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let answer = request.send().await.expect("POST");
        assert_eq!(answer.status(), 415, "{content_type:?}");
        let body: Value = answer.json().await.expect("JSON");
        assert_eq!(body["error"], "unsupported-media-type");
    }
    // Declared JSON, the request reaches its route (nothing runs: 409 not-running).
    let answer = http
        .post(&url)
        .header("content-type", "application/json")
        .send()
        .await
        .expect("POST");
    assert_eq!(answer.status(), 409);
    service.shutdown().await;
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_slot_is_taken_a_silent_connection_makes_way() {
    let cluster = TestCluster::start().await;
    let mut config = ServiceConfig::new(cluster.namespace());
    config.http.max_connections = 3;
    config.http.first_byte_timeout = Duration::from_secs(30);
    let service = start(&cluster, config).await;
    let api = service.addr();
    // Every slot held by silent connections, from as many addresses.
    let mut held = Vec::new();
    for n in 0..3 {
        held.push(connect_from([127, 0, 0, 2 + n], api).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A client that speaks is served at once, long before any first-byte timeout.
    let mut client = connect_from([127, 0, 0, 1], api).await;
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        slow_request(&mut client, "/healthz", Duration::ZERO),
    )
    .await
    .expect("served while the silent connections wait");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The oldest silent connection made way.
    closed_after(&mut held[0]).await;
    service.shutdown().await;
    cluster.cleanup().await;
}
