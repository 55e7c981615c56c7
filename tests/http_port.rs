//! The HTTP port under hostile clients: slow headers, connection and event-stream floods,
//! event-stream clients that stop reading, made-up bearer tokens, tokens for another
//! audience, HTTPS, and the internal routes' allow list. Each test runs against the
//! sandbox or, through CUTOVER_TEST_KUBECONFIG, a real API server.

mod common;

use catalyst_cutover::auth::AuthConfig;
use catalyst_cutover::http::server::TlsFiles;
use catalyst_cutover::service::{Service, ServiceConfig};
use catalyst_cutover::status::StatusData;
use common::{TestCluster, create_service_account, grant, role, token_of};
use k8s_openapi::api::authentication::v1::{
    TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use kube_sandbox::faults::FaultProxy;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough for any machine; the tests wait for events, never for a duration.
const PATIENCE: Duration = Duration::from_secs(60);

async fn start(cluster: &TestCluster, config: ServiceConfig) -> Service {
    start_on(cluster.config().await, config).await
}

async fn start_on(kube_config: kube::Config, config: ServiceConfig) -> Service {
    let service = Service::start(kube_config, config)
        .await
        .expect("start service");
    tokio::time::timeout(PATIENCE, service.ready())
        .await
        .expect("service ready");
    service
}

/// A sample of the service's own metrics, read in-process (no connection of its own).
fn gauge(service: &Service, name: &str) -> f64 {
    service
        .context()
        .metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing"))
}

/// Polls `check` until it holds, for at most [`PATIENCE`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Sends `request` on a new connection and reads until the server closes it; `None` when
/// the server never closes within [`PATIENCE`].
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> Option<String> {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}

/// A token of ServiceAccount `sa` for `audiences` (empty: the API server's).
async fn token_for(client: &kube::Client, ns: &str, sa: &str, audiences: &[&str]) -> String {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let answer = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .expect("token request");
    token_of(&answer)
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let cluster = TestCluster::start().await;
    let mut config = ServiceConfig::new(cluster.namespace());
    config.http.header_read_timeout = Duration::from_millis(500);
    let service = start(&cluster, config).await;
    // Headers begun and never ended, as a slowloris client does.
    let answer = exchange(service.addr(), b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
    assert!(answer.is_some(), "the connection was kept open");
    // A whole request is still answered.
    let answer = exchange(
        service.addr(),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    service.shutdown().await;
    cluster.cleanup().await;
}

#[tokio::test]
async fn connections_past_the_cap_get_503_too_many_connections() {
    let cluster = TestCluster::start().await;
    let mut config = ServiceConfig::new(cluster.namespace());
    config.http.max_connections = 2;
    config.http.header_read_timeout = PATIENCE * 2;
    let service = start(&cluster, config).await;
    let addr = service.addr();
    // Held by clients that began a request: a connection that has sent nothing would make
    // way for a new one (tests/floods.rs).
    let mut held = [
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    for conn in &mut held {
        conn.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    }
    // The accept loop may still be taking the two held connections: ask until refused.
    let mut refused = String::new();
    for _ in 0..100 {
        refused = exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("a refused connection is answered and closed");
        if refused.starts_with("HTTP/1.1 503") {
            break;
        }
    }
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    let body: Value = serde_json::from_str(refused.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"], "too-many-connections");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("--max-connections")
    );
    drop(held);
    let mut answer = String::new();
    for _ in 0..100 {
        answer = exchange(
            addr,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("answered");
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    service.shutdown().await;
    cluster.cleanup().await;
}

#[tokio::test]
async fn event_streams_past_the_cap_get_503_too_many_event_streams() {
    let cluster = TestCluster::start().await;
    let mut config = ServiceConfig::new(cluster.namespace());
    config.http.max_event_streams = 1;
    let service = start(&cluster, config).await;
    let url = format!("{}/cutover/events", service.url());
    let first = reqwest::get(&url).await.unwrap();
    assert_eq!(first.status(), 200);
    let (code, body) = get(&url, None).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (503, Some("too-many-event-streams"))
    );
    drop(first);
    eventually("the closed stream's slot is free", || {
        gauge(&service, "catalyst_cutover_sse_subscribers") == 0.0
    })
    .await;
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
    service.shutdown().await;
    cluster.cleanup().await;
}

#[tokio::test]
async fn an_event_stream_client_that_stops_reading_is_dropped() {
    let cluster = TestCluster::start().await;
    let mut config = ServiceConfig::new(cluster.namespace());
    config.http.write_timeout = Duration::from_millis(500);
    // No frame is ever dropped for lagging: only the write timeout can end this stream.
    config.events.lag = 100_000;
    config.events.kubernetes_events = false;
    let service = start(&cluster, config).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(service.addr()).await.unwrap();
    stuck
        .write_all(b"GET /cutover/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    eventually("the stream is open", || {
        gauge(&service, "catalyst_cutover_sse_subscribers") == 1.0
    })
    .await;
    // About 20 MB of frames, far more than the socket buffers and hyper's hold, while the
    // client reads nothing.
    let hub = &service.context().events;
    let names: Vec<String> = (0..50)
        .map(|n| format!("s{n}-{}", "x".repeat(200)))
        .collect();
    let mut data = StatusData::new();
    for round in 0..800 {
        let result = if round % 2 == 0 { "running" } else { "success" };
        for name in &names {
            data.insert(format!("step.{name}.result"), result.to_owned());
        }
        hub.publish(data.clone(), &names);
    }
    eventually("the stuck client is dropped", || {
        gauge(&service, "catalyst_cutover_sse_subscribers") == 0.0
    })
    .await;
    drop(stuck);
    service.shutdown().await;
    cluster.cleanup().await;
}

#[tokio::test]
async fn https_when_given_a_certificate() {
    use tokio_rustls::rustls::{self, pki_types::ServerName};
    let cluster = TestCluster::start().await;
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let dir = std::env::temp_dir().join(format!("ct-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = TlsFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    std::fs::write(&files.cert, certified.cert.pem()).unwrap();
    std::fs::write(&files.key, certified.signing_key.serialize_pem()).unwrap();

    let mut broken = ServiceConfig::new(cluster.namespace());
    broken.http.tls = Some(TlsFiles {
        cert: files.key.clone(),
        key: files.key.clone(),
    });
    let err = Service::start(cluster.config().await, broken)
        .await
        .err()
        .expect("a key is not a certificate");
    assert!(err.to_string().contains("tls.key"), "{err}");

    let mut config = ServiceConfig::new(cluster.namespace());
    config.http.tls = Some(files);
    let service = start(&cluster, config).await;
    assert!(service.url().starts_with("https://"));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(service.addr()).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let plain = exchange(
        service.addr(),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap_or_default();
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
    service.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    cluster.cleanup().await;
}

#[tokio::test]
async fn a_static_token_reviewed_for_another_audience_is_refused() {
    let cluster = TestCluster::start().await;
    let token = cluster
        .kubeconfig()
        .auth_infos
        .iter()
        .find_map(|a| a.auth_info.as_ref()?.token.clone())
        .expect("the test cluster's kubeconfig holds a bearer token");
    let review = |audiences: Option<Vec<String>>| {
        let api: Api<TokenReview> = Api::all(cluster.client());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(secrecy::ExposeSecret::expose_secret(&token).to_owned()),
                audiences,
            },
            ..TokenReview::default()
        };
        async move {
            api.create(&PostParams::default(), &review)
                .await
                .expect("token review")
                .status
                .expect("status")
        }
    };
    let own = review(None).await;
    assert_eq!(own.authenticated, Some(true));
    let api_audiences = own.audiences.clone().unwrap_or_default();
    assert!(!api_audiences.is_empty(), "{own:?}");
    let other = review(Some(vec!["catalyst-cutover".to_owned()])).await;
    assert_ne!(other.authenticated, Some(true), "{other:?}");
    let both = review(Some(
        [vec!["catalyst-cutover".to_owned()], api_audiences.clone()].concat(),
    ))
    .await;
    assert_eq!(both.authenticated, Some(true));
    assert_eq!(both.audiences.unwrap_or_default(), api_audiences);
    cluster.cleanup().await;
}

#[tokio::test]
async fn tokens_must_be_for_the_services_audiences() {
    let cluster = TestCluster::start().await;
    let (client, ns) = (cluster.client(), cluster.namespace().to_owned());
    create_service_account(&client, &ns, "console").await;
    grant(&client, &ns, "console", role("cutover-reader", &["get"])).await;
    let ours = token_for(&client, &ns, "console", &["catalyst-cutover"]).await;
    let api_server = token_for(&client, &ns, "console", &[]).await;
    let vault = token_for(&client, &ns, "console", &["vault"]).await;
    let mut config = ServiceConfig::new(&ns);
    config.auth = AuthConfig {
        audiences: vec!["catalyst-cutover".to_owned()],
        ..AuthConfig::enabled()
    };
    let service = start(&cluster, config).await;
    let url = format!("{}/cutover", service.url());
    // The grant reaches the authorizer's cache in its own time.
    let mut code = 0;
    for _ in 0..500 {
        code = get(&url, Some(&ours)).await.0;
        if code == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(code, 200, "a token for the service's audience");
    for (token, what) in [
        (&api_server, "the API server's"),
        (&vault, "another service's"),
    ] {
        let (code, body) = get(&url, Some(token)).await;
        assert_eq!(
            (code, body["error"].as_str()),
            (401, Some("invalid-token")),
            "a token for {what} audience: {body}"
        );
    }
    service.shutdown().await;
    cluster.cleanup().await;
}

#[tokio::test]
async fn the_internal_routes_refuse_without_naming_who_is_allowed() {
    let cluster = TestCluster::start().await;
    let (client, ns) = (cluster.client(), cluster.namespace().to_owned());
    create_service_account(&client, &ns, "intruder").await;
    let token = token_for(&client, &ns, "intruder", &[]).await;
    let mut config = ServiceConfig::new(&ns);
    config.auth = AuthConfig {
        internal_service_accounts: vec![format!("system:serviceaccount:{ns}:console-backend")],
        ..AuthConfig::enabled()
    };
    let service = start(&cluster, config).await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/internal/cutover/trigger", service.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized-sa");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("intruder"), "{detail}");
    assert!(!detail.contains("console-backend"), "{detail}");
    service.shutdown().await;
    cluster.cleanup().await;
}

#[tokio::test]
async fn made_up_tokens_are_reviewed_a_few_at_a_time() {
    let cluster = TestCluster::start().await;
    let proxy = FaultProxy::start(cluster.config().await)
        .await
        .expect("fault proxy");
    // Each review takes a while, so that unbounded look-ups would pile up.
    proxy.faults().set_latency(Duration::from_millis(50));
    let proxied = kube::Config::from_custom_kubeconfig(
        proxy.kubeconfig(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let mut config = ServiceConfig::new(cluster.namespace());
    // The rate limits (tests/floods.rs) let the whole flood through here: what is measured
    // is the bound on reviews in flight.
    let plenty = std::num::NonZeroU32::new(1000).unwrap();
    config.auth = AuthConfig {
        review_concurrency: 3,
        limits: catalyst_cutover::auth::ReviewLimits {
            per_second: plenty,
            burst: plenty,
            per_source_per_second: plenty,
            per_source_burst: plenty,
            ..Default::default()
        },
        ..AuthConfig::enabled()
    };
    let service = Arc::new(start_on(proxied, config).await);
    let url = format!("{}/cutover", service.url());
    let flood: Vec<_> = (0..60)
        .map(|n| {
            let url = url.clone();
            tokio::spawn(async move { get(&url, Some(&format!("made-up-{n}"))).await.0 })
        })
        .collect();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (service, done) = (service.clone(), done.clone());
        tokio::spawn(async move {
            let mut most = 0.0f64;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                most = most.max(gauge(&service, "catalyst_cutover_auth_reviews_in_flight"));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            most
        })
    };
    for request in flood {
        assert_eq!(request.await.unwrap(), 401);
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let most = watcher.await.unwrap();
    assert!(
        (1.0..=3.0).contains(&most),
        "at most 3 reviews in flight, saw {most}"
    );
    let Ok(service) = Arc::try_unwrap(service) else {
        panic!("the service is shared still");
    };
    service.shutdown().await;
    proxy.shutdown().await;
    cluster.cleanup().await;
}

/// Kubernetes API creates the service has made (TokenReviews among them).
fn creates(service: &Service) -> f64 {
    service
        .context()
        .metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("catalyst_cutover_kube_api_requests_total{verb=\"create\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_refused_token_is_reviewed_once_while_its_answer_is_cached() {
    let cluster = TestCluster::start().await;
    let mut config = ServiceConfig::new(cluster.namespace());
    config.auth = AuthConfig {
        cache_ttl: PATIENCE * 10,
        ..AuthConfig::enabled()
    };
    config.events.kubernetes_events = false;
    let service = start(&cluster, config).await;
    let url = format!("{}/cutover", service.url());
    let before = creates(&service);
    for _ in 0..20 {
        let (code, body) = get(&url, Some("made-up-and-repeated")).await;
        assert_eq!((code, body["error"].as_str()), (401, Some("invalid-token")));
    }
    assert_eq!(
        creates(&service) - before,
        1.0,
        "one TokenReview for 20 requests"
    );
    service.shutdown().await;
    cluster.cleanup().await;
}

#[test]
fn serve_refuses_an_internal_caller_that_is_not_a_service_account() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_catalyst-cutover"))
        .args([
            "serve",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
            "--internal-callers",
            "catalyst:catalyst-api,alice",
        ])
        .env_remove("CATALYST_CUTOVER_INTERNAL_CALLERS")
        .output()
        .expect("run catalyst-cutover");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--internal-callers: \"alice\" is not a service account"),
        "{stderr}"
    );
}
