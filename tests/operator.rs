//! The operator surface over real HTTP: bearer tokens checked by the API server's TokenReview
//! and SubjectAccessReview against RBAC objects the tests create (the chart's ClusterRole
//! `catalyst-cutover-operator` among them), tokens that expire, the internal routes, the
//! first-login auto-fire, the live event stream, Kubernetes Events and `/metrics`.
//!
//! Runs against the sandbox, or unchanged against a real cluster when
//! `CUTOVER_TEST_KUBECONFIG` is set: each test has a namespace of its own, its users are
//! ServiceAccounts there, their tokens come from the TokenRequest API and their rights from
//! RoleBindings. Only the expired-token test needs a token shorter-lived than kube-apiserver
//! grants (10 minutes at least); where the API server refuses one, it says so and returns.

mod common;

use catalyst_cutover::auth::AuthConfig;
use catalyst_cutover::contract::DEFAULT_STATUS_CONFIGMAP;
use catalyst_cutover::service::{Service, ServiceConfig};
use common::{
    Env, create_service_account, grant, job_step, request_token, role, sleep_until, token_of,
};
use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use kube::config::KubeConfigOptions;
use kube_sandbox::api::ApiServerConfig;
use kube_sandbox::faults::FaultProxy;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Hang guard of a service's start-up: some 600 polls, 20 ms apart.
const READY_GUARD: Duration = Duration::from_secs(12);
/// Hang guard for one cutover, not a speed assertion.
const GUARD: Duration = Duration::from_secs(60);
/// Bearer tokens of the test's ServiceAccounts, from the TokenRequest API.
struct Tokens {
    /// `alice`: bound to the chart's operator role.
    alice: String,
    /// `bob`: no role.
    bob: String,
    /// `reader`: `get` on cutovers only.
    reader: String,
    /// `console`: the console backend, allow-listed for the internal routes.
    console: String,
    /// `other`: a service account that is not allow-listed.
    other: String,
}

/// A cluster with service accounts alice (operator role), bob (no role), reader (get only),
/// console and other, `steps` job steps in the test's namespace, and the simulator; the
/// service accounts' tokens.
async fn operator_env(steps: usize, sandbox: ApiServerConfig) -> (Env, Tokens) {
    let env = Env::builder()
        .sandbox(sandbox)
        .steps((1..=steps).map(|order| job_step(order, &format!("step-{order}"), &[])))
        .start()
        .await;
    let (client, ns) = (env.client(), env.ns().to_owned());
    let mut issued = Vec::new();
    for name in ["alice", "bob", "reader", "console", "other"] {
        create_service_account(&client, &ns, name).await;
        let answer = request_token(&client, &ns, name, None)
            .await
            .expect("token request");
        issued.push(token_of(&answer));
    }
    let [alice, bob, reader, console, other] = <[String; 5]>::try_from(issued).unwrap();
    grant(&client, &ns, "alice", common::chart_operator_role()).await;
    grant(&client, &ns, "reader", role("cutover-reader", &["get"])).await;
    let tokens = Tokens {
        alice,
        bob,
        reader,
        console,
        other,
    };
    (env, tokens)
}

/// What the operator surface's tests ask of their environment.
impl Env {
    fn config(&self) -> ServiceConfig {
        let mut config = self.service_config();
        config.auth = AuthConfig {
            internal_service_accounts: vec![format!("system:serviceaccount:{}:console", self.ns())],
            ..AuthConfig::enabled()
        };
        config
    }

    /// The service, talking to the cluster with the test's (admin) credentials.
    async fn service(&self, config: ServiceConfig) -> Service {
        self.service_on(self.cluster.config().await, config).await
    }

    /// The service, talking to the API server `kube_config` names.
    async fn service_on(&self, kube_config: kube::Config, config: ServiceConfig) -> Service {
        let service = Service::start(kube_config, config)
            .await
            .expect("start service");
        wait_ready(&service.url()).await;
        service
    }

    async fn job_count(&self) -> usize {
        Api::<Job>::namespaced(self.client(), self.ns())
            .list(&ListParams::default())
            .await
            .expect("jobs")
            .items
            .len()
    }
}

async fn wait_ready(base: &str) {
    common::wait_ready(base, READY_GUARD).await;
}

/// Sends `method path` with an optional bearer token and JSON body.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let response = req.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    call(
        &reqwest::Client::new(),
        reqwest::Method::GET,
        format!("{base}{path}"),
        token,
        None,
    )
    .await
}

async fn post(base: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    call(
        &reqwest::Client::new(),
        reqwest::Method::POST,
        format!("{base}{path}"),
        token,
        body,
    )
    .await
}

/// The samples of a text exposition, checked line by line: every line is a `# HELP`,
/// `# TYPE`, `# UNIT` or `# EOF` comment, or `name{labels} value` with a number.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    assert!(
        text.trim_end().ends_with("# EOF"),
        "exposition ends with # EOF"
    );
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                ["HELP ", "TYPE ", "UNIT ", "EOF"]
                    .iter()
                    .any(|p| comment.starts_with(p)),
                "bad comment line {line:?}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unclosed labels in {line:?}");
        }
        samples.insert(series.to_owned(), value);
    }
    samples
}

async fn metrics(base: &str) -> BTreeMap<String, f64> {
    parse_metrics(get(base, "/metrics", None).await.1.as_str().expect("text"))
}

fn sum(samples: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test]
async fn tokens_are_authenticated_and_authorized() {
    let (env, t) = operator_env(1, ApiServerConfig::default()).await;
    let service = env.service(env.config()).await;
    let base = service.url();
    let http = reqwest::Client::new();

    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(&base, path, None).await.0, 200, "{path} is open");
    }
    let (code, body) = get(&base, "/cutover", None).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (401, Some("missing-bearer"))
    );
    // The token alone, without `Bearer `, is no bearer token either.
    for header in [
        "Basic YWxpY2U6cHc=",
        "Bearer",
        "Bearer two words",
        t.alice.as_str(),
    ] {
        let response = http
            .get(format!("{base}/cutover"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{header:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "missing-bearer", "{header:?}");
    }
    let (code, body) = get(&base, "/cutover", Some("not-a-token")).await;
    assert_eq!((code, body["error"].as_str()), (401, Some("invalid-token")));
    assert!(!body["detail"].as_str().unwrap().contains("not-a-token"));

    let (code, body) = get(&base, "/cutover", Some(&t.bob)).await;
    assert_eq!((code, body["error"].as_str()), (403, Some("forbidden")));
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("bob")
            && detail.contains("get")
            && detail.contains("cutovers.catalyst.openova.io"),
        "{detail}"
    );

    assert_eq!(get(&base, "/cutover", Some(&t.reader)).await.0, 200);
    assert_eq!(
        get(&base, "/api/v1/sovereign/cutover/status", Some(&t.alice))
            .await
            .0,
        200
    );
    let (code, body) = post(&base, "/cutover", Some(&t.reader), None).await;
    assert_eq!(code, 403);
    assert!(
        body["detail"].as_str().unwrap().contains("create"),
        "{body}"
    );
    let (code, body) = post(&base, "/cutover/abort", Some(&t.reader), None).await;
    assert!(
        code == 403 && body["detail"].as_str().unwrap().contains("delete"),
        "{body}"
    );

    for (who, token) in [("alice", &t.alice), ("other", &t.other)] {
        let (code, body) = post(&base, "/api/v1/internal/cutover/trigger", Some(token), None).await;
        assert_eq!(
            (code, body["error"].as_str()),
            (403, Some("unauthorized-sa")),
            "{who}"
        );
    }
    let (code, body) = post(
        &base,
        "/api/v1/internal/cutover/trigger",
        Some(&t.console),
        None,
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let data = env.wait_phase(&["complete"]).await;
    assert_eq!(data["cutoverTrigger"], "internal-trigger");
    assert!(data["cutoverTriggeredBy"].ends_with(":console"));
    let (code, body) = post(&base, "/cutover", Some(&t.alice), None).await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (200, Some("cutover-already-complete"))
    );

    // Authorization answers are cached by token hash: many reads cost no review.
    let reviews = |samples: &BTreeMap<String, f64>| {
        sum(
            samples,
            "catalyst_cutover_kube_api_requests_total{verb=\"create\"",
        )
    };
    // The cutover's Kubernetes Events (creates too) go out within a second of its last
    // status write: let them all go first, so that only reviews count below.
    let mut before = reviews(&metrics(&base).await);
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = reviews(&metrics(&base).await);
        if now == before {
            break;
        }
        before = now;
    }
    let reads = (0..200).map(|_| get(&base, "/cutover", Some(&t.reader)));
    assert!(join_all(reads).await.iter().all(|(code, _)| *code == 200));
    let after = reviews(&metrics(&base).await);
    assert!(
        after - before <= 2.0,
        "200 cached reads made {} reviews",
        after - before
    );
    env.stop(service).await;
}

#[tokio::test]
async fn the_api_server_unreachable_is_503_never_a_verdict() {
    let (env, t) = operator_env(1, ApiServerConfig::default()).await;
    // The service reaches the API server through a proxy, which then goes away.
    let proxy = FaultProxy::start(env.cluster.config().await)
        .await
        .expect("proxy");
    let through_proxy =
        kube::Config::from_custom_kubeconfig(proxy.kubeconfig(), &KubeConfigOptions::default())
            .await
            .expect("proxy kube config");
    let service = env.service_on(through_proxy, env.config()).await;
    let base = service.url();
    proxy.shutdown().await;
    let (code, body) = get(&base, "/cutover", Some(&t.alice)).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    assert_eq!(get(&base, "/cutover", None).await.0, 401);
    service.kill();
    env.cleanup().await;
}

/// A token good when issued is refused once it has expired, never later than the service's
/// auth-cache TTL after its expiration, however busily it was used until then.
#[tokio::test]
async fn an_expired_token_is_refused_once_the_cache_lets_it_go() {
    let (env, _) = operator_env(
        1,
        ApiServerConfig {
            min_token_expiration: Duration::from_secs(1),
            ..ApiServerConfig::default()
        },
    )
    .await;
    let mut config = env.config();
    config.auth.cache_ttl = Duration::from_secs(1);
    let cache_ttl = config.auth.cache_ttl;
    let service = env.service(config).await;
    let base = service.url();
    let client = env.client();
    create_service_account(&client, env.ns(), "brief").await;
    grant(&client, env.ns(), "brief", common::chart_operator_role()).await;
    let answer = match request_token(&client, env.ns(), "brief", Some(4)).await {
        Ok(answer) => answer,
        Err(kube::Error::Api(status)) if status.code == 422 => {
            eprintln!(
                "skipped: this API server refuses a 4-second token ({}); the tokens it grants live 10 minutes at least",
                status.message
            );
            env.stop(service).await;
            return;
        }
        Err(other) => panic!("token request: {other}"),
    };
    let token = token_of(&answer);
    let expires = answer
        .status
        .as_ref()
        .expect("status")
        .expiration_timestamp
        .0;
    let (code, body) = get(&base, "/cutover", Some(&token)).await;
    assert_eq!(code, 200, "{body}");
    // Used until it expires, so the cache holds an answer as late as the token allows.
    while jiff::Timestamp::now() < expires {
        let (code, body) = get(&base, "/cutover", Some(&token)).await;
        assert!(
            code == 200 || body["error"] == "invalid-token",
            "{code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sleep_until(expires + cache_ttl + Duration::from_millis(250)).await;
    let (code, body) = get(&base, "/cutover", Some(&token)).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (401, Some("invalid-token")),
        "{body}"
    );
    assert!(!body["detail"].as_str().unwrap_or_default().contains(&token));
    // The ServiceAccount itself is fine: a fresh token of it is good.
    let fresh = request_token(&client, env.ns(), "brief", Some(600))
        .await
        .expect("fresh token");
    assert_eq!(get(&base, "/cutover", Some(&token_of(&fresh))).await.0, 200);
    env.stop(service).await;
}

#[tokio::test]
async fn a_thousand_concurrent_first_logins_fire_exactly_one_cutover() {
    let (env, t) = operator_env(2, ApiServerConfig::default()).await;
    let service = env.service(env.config()).await;
    let base = service.url();
    let http = reqwest::Client::new();
    let url = format!("{base}/api/v1/internal/cutover/operator-login");
    let (code, body) = post(
        &base,
        "/api/v1/internal/cutover/operator-login",
        Some(&t.other),
        Some(json!({"operator": "x"})),
    )
    .await;
    assert_eq!(
        (code, body["error"].as_str()),
        (403, Some("unauthorized-sa"))
    );
    let (code, _) = post(
        &base,
        "/api/v1/internal/cutover/operator-login",
        Some(&t.console),
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(code, 400);

    let logins = (0..1000).map(|i| {
        call(
            &http,
            reqwest::Method::POST,
            url.clone(),
            Some(&t.console),
            Some(json!({"operator": format!("operator-{i}")})),
        )
    });
    let answers = join_all(logins).await;
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for (code, body) in &answers {
        assert!(*code == 200 || *code == 202, "{code} {body}");
        *outcomes
            .entry(body["outcome"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        outcomes.get("first-login-started-cutover"),
        Some(&1),
        "{outcomes:?}"
    );
    assert_eq!(outcomes.get("already-recorded"), Some(&999), "{outcomes:?}");
    let first = answers
        .iter()
        .find(|(code, _)| *code == 202)
        .map(|(_, b)| b["firstOperatorLogin"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(
        answers
            .iter()
            .all(|(_, b)| b["firstOperatorLogin"] == first.as_str())
    );

    let data = env.wait_phase(&["complete"]).await;
    assert_eq!(data["firstOperatorLogin"], first);
    assert_eq!(data["cutoverTrigger"], "first-login");
    assert_eq!(env.job_count().await, 2, "one run: one Job per step");

    let (code, body) = post(
        &base,
        "/api/v1/internal/cutover/operator-login",
        Some(&t.console),
        Some(json!({"operator": "late"})),
    )
    .await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (200, Some("already-recorded"))
    );
    assert_eq!(
        env.wait_phase(&["complete"]).await,
        data,
        "a later login changes nothing"
    );
    env.stop(service).await;
}

#[tokio::test]
async fn a_first_login_after_completion_fires_nothing() {
    let (env, t) = operator_env(1, ApiServerConfig::default()).await;
    let service = env.service(env.config()).await;
    let base = service.url();
    assert_eq!(post(&base, "/cutover", Some(&t.alice), None).await.0, 202);
    let before = env.wait_phase(&["complete"]).await;
    let (code, body) = post(
        &base,
        "/api/v1/internal/cutover/operator-login",
        Some(&t.console),
        Some(json!({"operator": "alice"})),
    )
    .await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (200, Some("first-login-recorded")),
        "{body}"
    );
    let after = env.wait_phase(&["complete"]).await;
    assert_eq!(after["firstOperatorLogin"], "alice");
    assert_eq!(
        after["cutoverLastAttemptStartedAt"],
        before["cutoverLastAttemptStartedAt"]
    );
    assert_eq!(env.job_count().await, 1);
    env.stop(service).await;
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    event: String,
    id: Option<u64>,
    data: Value,
}

/// Reads events from an SSE response until `stop` says so.
async fn read_events(response: reqwest::Response, stop: impl Fn(&Sse) -> bool) -> Vec<Sse> {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let read = async {
        while let Some(chunk) = body.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut sse = Sse {
                    event: String::new(),
                    id: None,
                    data: Value::Null,
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        sse.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        sse.id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        sse.data = serde_json::from_str(v.trim()).expect("data is JSON");
                    }
                }
                if sse.event.is_empty() {
                    continue;
                }
                let done = stop(&sse);
                events.push(sse);
                if done {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(GUARD, read)
        .await
        .expect("events in time");
    events
}

async fn open_stream(
    base: &str,
    path: &str,
    token: &str,
    last_event_id: Option<u64>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    let response = req.send().await.expect("stream");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    response
}

#[tokio::test]
async fn a_run_is_streamed_recorded_and_measured() {
    let (env, t) = operator_env(3, ApiServerConfig::default()).await;
    let service = env.service(env.config()).await;
    let base = service.url();
    let metrics_before = metrics(&base).await;

    let stream = open_stream(&base, "/cutover/events", &t.alice, None).await;
    let console = open_stream(&base, "/api/v1/sovereign/cutover/events", &t.alice, None).await;
    // A client that never reads: it must not hold up the run or the other clients.
    let mut stalled = tokio::net::TcpStream::connect(service.addr())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stalled,
        format!(
            "GET /cutover/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\r\n",
            t.alice
        )
        .as_bytes(),
    )
    .await
    .unwrap();

    assert_eq!(post(&base, "/cutover", Some(&t.alice), None).await.0, 202);
    // The run's end reaches a client as a snapshot whose message is the status map.
    let is_done = |e: &Sse| {
        e.event == "cutover-status"
            && e.data["message"]
                .as_str()
                .and_then(|m| serde_json::from_str::<Value>(m).ok())
                .is_some_and(|m| m["cutoverComplete"] == "true")
    };
    let (events, console_events) =
        tokio::join!(read_events(stream, is_done), read_events(console, is_done));
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.first(), Some(&"cutover-status"), "{names:?}");
    // Snapshots follow the start and the completion; where the first lands depends on
    // whether the watch coalesced the start with the first step's.
    let transitions: Vec<&str> = names[1..]
        .iter()
        .copied()
        .filter(|n| *n != "cutover-status")
        .collect();
    let mut expected = vec!["cutover-started"];
    for _ in 0..3 {
        expected.extend(["cutover-step-started", "cutover-step-finished"]);
    }
    expected.push("cutover-completed");
    assert_eq!(transitions, expected);
    assert_eq!(
        names.iter().filter(|n| **n == "cutover-status").count(),
        3,
        "on connect, after the start, after the completion: {names:?}"
    );
    assert_eq!(names[names.len() - 2], "cutover-completed");
    assert_eq!(events[0].data["status"]["phase"], "idle");
    let steps: Vec<&str> = events
        .iter()
        .filter(|e| e.event == "cutover-step-started")
        .map(|e| e.data["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["step-1", "step-2", "step-3"]);
    for e in &events[1..] {
        for field in ["time", "phase", "level", "message"] {
            assert!(e.data[field].is_string(), "{field} in {e:?}");
        }
        assert_eq!(e.data["phase"], e.event.as_str());
        assert!(
            ["info", "warn", "error"].contains(&e.data["level"].as_str().unwrap_or_default()),
            "{e:?}"
        );
    }
    let first_step = events
        .iter()
        .find(|e| e.event == "cutover-step-started")
        .expect("a step frame");
    assert!(first_step.data["jobName"].is_string());
    let ids: Vec<u64> = events[1..].iter().map(|e| e.id.expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let console_names: Vec<&str> = console_events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(console_names, names, "every client sees every frame");

    // Reconnecting with Last-Event-ID replays exactly the frames after it.
    let resume_after = ids[2];
    let resumed = read_events(
        open_stream(&base, "/cutover/events", &t.alice, Some(resume_after)).await,
        is_done,
    )
    .await;
    let resumed_ids: Vec<u64> = resumed.iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(resumed_ids, ids[3..].to_vec());
    assert_ne!(resumed[0].event, "cutover-status");

    // Kubernetes Events on the status ConfigMap tell the story (recorded asynchronously
    // by the leader: wait for the last one).
    let reasons = tokio::time::timeout(GUARD, async {
        loop {
            let reasons = event_reasons(&env).await;
            if reasons.contains("CutoverCompleted") {
                return reasons;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the completion Event in time");
    for reason in [
        "CutoverStarted",
        "StepStarted",
        "StepSucceeded",
        "CutoverCompleted",
    ] {
        assert!(
            reasons.contains(reason),
            "{reason} missing from {reasons:?}"
        );
    }

    let after = metrics(&base).await;
    assert_eq!(after["catalyst_cutover_phase{phase=\"complete\"}"], 1.0);
    for step in ["step-1", "step-2", "step-3"] {
        assert_eq!(
            after[&format!(
                "catalyst_cutover_step_results_total{{step=\"{step}\",result=\"success\"}}"
            )],
            1.0
        );
        assert_eq!(
            after[&format!("catalyst_cutover_step_attempts_total{{step=\"{step}\"}}")],
            1.0
        );
    }
    assert_eq!(
        after["catalyst_cutover_orchestration_overhead_seconds_count"],
        2.0
    );
    let requests = "catalyst_cutover_kube_api_requests_total";
    assert!(sum(&after, requests) > sum(&metrics_before, requests));
    assert!(
        sum(
            &after,
            "catalyst_cutover_http_requests_total{route=\"/cutover\",method=\"POST\",code=\"202\"}"
        ) >= 1.0
    );
    assert!(after["catalyst_cutover_sse_subscribers"] >= 1.0);
    drop(stalled);
    env.stop(service).await;
}

/// Schemathesis (PyPI `schemathesis`, command `st`) against `openapi.yaml` and the running
/// service: no server error, no response outside the spec. Skipped when `st` is missing,
/// except in CI (`CI=true`), where it must be installed.
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_spec_violation() {
    let available = std::process::Command::new("st")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        available,
        "schemathesis (`st`) is not installed: `python3 -m pip install schemathesis`, or run \
         `scripts/test`, which installs it"
    );
    let (env, t) = operator_env(2, ApiServerConfig::default()).await;
    let service = env.service(env.config()).await;
    // The operator's routes as alice; the internal ones as the allow-listed service account.
    // The event streams never end; their frames are covered above.
    schemathesis(
        &service.url(),
        &t.alice,
        &["--exclude-path-regex", "events$|internal"],
    )
    .await;
    schemathesis(
        &service.url(),
        &t.console,
        &["--include-path-regex", "internal"],
    )
    .await;
    env.stop(service).await;
}

/// Runs `st run` against the service with `token` and `filter`; fails on any finding.
async fn schemathesis(base: &str, token: &str, filter: &[&str]) {
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    let mut command = std::process::Command::new("st");
    // st keeps a cache in its working directory: not in the source tree.
    command
        .current_dir(std::env::temp_dir())
        .args(["run", spec, "--url", base, "--no-color"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all", "--max-examples", "25", "--workers", "1"])
        .args(filter)
        .arg("--report-dir")
        .arg(std::env::temp_dir().join(format!("schemathesis-{}", uuid::Uuid::new_v4())));
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run st");
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The reasons of the Kubernetes Events regarding the status ConfigMap.
async fn event_reasons(env: &Env) -> BTreeSet<String> {
    Api::<Event>::namespaced(env.client(), env.ns())
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(DEFAULT_STATUS_CONFIGMAP)
        })
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_needs_its_own_verb() {
    let (env, t) = operator_env(1, ApiServerConfig::default()).await;
    let client = env.client();
    create_service_account(&client, env.ns(), "aborter").await;
    let aborter = token_of(
        &request_token(&client, env.ns(), "aborter", None)
            .await
            .expect("token request"),
    );
    grant(
        &client,
        env.ns(),
        "aborter",
        role("cutover-aborter", &["get", "create", "delete"]),
    )
    .await;
    let service = env.service(env.config()).await;
    let base = service.url();
    let body = json!({"confirm": "rollback-registry-pivot", "reason": "harbor down"});
    for path in ["/cutover/rollback", "/api/v1/sovereign/cutover/rollback"] {
        let (code, answer) = post(&base, path, Some(&aborter), Some(body.clone())).await;
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert_eq!(
            (code, answer["error"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );
        assert!(
            detail.contains("rollback") && detail.contains("aborter"),
            "{detail}"
        );
        // The chart's operator role grants it: alice gets past authorization.
        let (code, answer) = post(&base, path, Some(&t.alice), Some(body.clone())).await;
        assert_eq!(
            (code, answer["error"].as_str()),
            (409, Some("nothing-to-roll-back")),
            "{path}: {answer}"
        );
    }
    env.stop(service).await;
}
