//! The operator surface over real HTTP: bearer tokens checked by the sandbox's TokenReview
//! and SubjectAccessReview against RBAC objects the tests create (the chart's ClusterRole
//! `catalyst-cutover-operator` among them), the internal routes, the
//! first-login auto-fire, the live event stream, Kubernetes Events and `/metrics`.
//!
//! These tests need users with known tokens, so they always run on the embedded sandbox
//! (started with a token table), not on `CUTOVER_TEST_KUBECONFIG`.

use catalyst_cutover::auth::AuthConfig;
use catalyst_cutover::contract::{self, DEFAULT_STATUS_CONFIGMAP};
use catalyst_cutover::sandbox::api::{ApiServer, ApiServerConfig};
use catalyst_cutover::sandbox::auth::{TokenTable, UserInfo};
use catalyst_cutover::sandbox::sim::{AgentConfig, SimConfig, Simulator};
use catalyst_cutover::service::{Service, ServiceConfig};
use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use kube::config::KubeConfigOptions;
use kube::runtime::wait::await_condition;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Hang guard for one cutover, not a speed assertion.
const GUARD: Duration = Duration::from_secs(60);
/// The ClusterRole the chart ships for operators.
const OPERATOR_ROLE: &str = "catalyst-cutover-operator";
const ALICE: &str = "alice-token";
const BOB: &str = "bob-token";
const READER: &str = "reader-token";
const CONSOLE_SA: &str = "console-sa-token";
const OTHER_SA: &str = "other-sa-token";

struct Env {
    server: ApiServer,
    ns: String,
    sim: Simulator,
}

impl Env {
    /// A sandbox with users alice (operator role), bob (no role), reader (get only) and two
    /// service accounts, a namespace with `steps` job steps, and the simulator.
    async fn start(steps: usize) -> Env {
        if std::env::var_os("RUST_LOG").is_some() {
            catalyst_cutover::telemetry::init();
        }
        let ns = format!("op-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let mut tokens = TokenTable::default();
        tokens.insert(ALICE, UserInfo::new("alice", Vec::new()));
        tokens.insert(BOB, UserInfo::new("bob", Vec::new()));
        tokens.insert(READER, UserInfo::new("reader", Vec::new()));
        tokens.insert(CONSOLE_SA, UserInfo::service_account(&ns, "console"));
        tokens.insert(OTHER_SA, UserInfo::service_account(&ns, "other"));
        let server = ApiServer::start(ApiServerConfig {
            tokens: Some(tokens),
            ..ApiServerConfig::default()
        })
        .await
        .expect("start sandbox");
        let client = server.admin_client().await.expect("admin client");
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace");
        grant(&client, &ns, "alice", chart_operator_role()).await;
        grant(&client, &ns, "reader", role("cutover-reader", &["get"])).await;
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        for order in 1..=steps {
            api.create(&PostParams::default(), &step(order))
                .await
                .expect("step");
        }
        let sim = Simulator::start(
            client,
            SimConfig {
                namespace: Some(ns.clone()),
                nodes: 1,
                pool: ns.clone(),
                status_configmap: Some((ns.clone(), DEFAULT_STATUS_CONFIGMAP.to_owned())),
                agent: AgentConfig {
                    daemonset: None,
                    ack_delay: Duration::from_millis(10),
                    never_ack: BTreeSet::new(),
                },
                default_run: Duration::from_millis(20),
            },
        )
        .await
        .expect("simulator");
        Env { server, ns, sim }
    }

    fn config(&self) -> ServiceConfig {
        let mut config = ServiceConfig::new(&self.ns);
        config.lease_duration = Duration::from_secs(2);
        config.auth = AuthConfig {
            internal_service_accounts: vec![format!("system:serviceaccount:{}:console", self.ns)],
            ..AuthConfig::enabled()
        };
        config
    }

    async fn service(&self, config: ServiceConfig) -> Service {
        let kube_config = kube::Config::from_custom_kubeconfig(
            self.server.kubeconfig(self.server.admin_token()),
            &KubeConfigOptions::default(),
        )
        .await
        .expect("kube config");
        let service = Service::start(kube_config, config)
            .await
            .expect("start service");
        wait_ready(&service.url()).await;
        service
    }

    async fn client(&self) -> kube::Client {
        self.server.admin_client().await.expect("admin client")
    }

    async fn wait_phase(&self, phase: &str) -> BTreeMap<String, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client().await, &self.ns);
        let want = phase.to_owned();
        let cond = move |cm: Option<&ConfigMap>| {
            cm.and_then(|cm| cm.data.as_ref())
                .and_then(|d| d.get("cutoverPhase"))
                .is_some_and(|p| *p == want)
        };
        tokio::time::timeout(
            GUARD,
            await_condition(api.clone(), DEFAULT_STATUS_CONFIGMAP, cond),
        )
        .await
        .expect("phase reached in time")
        .expect("watch");
        api.get(DEFAULT_STATUS_CONFIGMAP)
            .await
            .expect("status")
            .data
            .unwrap_or_default()
    }

    async fn job_count(&self) -> usize {
        Api::<Job>::namespaced(self.client().await, &self.ns)
            .list(&ListParams::default())
            .await
            .expect("jobs")
            .items
            .len()
    }

    async fn stop(self, service: Service) {
        service.shutdown().await;
        self.sim.shutdown().await;
        self.server.shutdown().await;
    }
}

/// The ClusterRole `catalyst-cutover-operator` exactly as the chart ships it.
fn chart_operator_role() -> ClusterRole {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/chart/templates/service-rbac.yaml"
    );
    let text = std::fs::read_to_string(path).expect("the chart's service RBAC");
    text.split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<ClusterRole>(doc).ok())
        .find(|role| role.metadata.name.as_deref() == Some(OPERATOR_ROLE))
        .expect("the chart ships ClusterRole catalyst-cutover-operator")
}

/// A ClusterRole `name` with `verbs` on cutovers.catalyst.openova.io.
fn role(name: &str, verbs: &[&str]) -> ClusterRole {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "rules": [{"apiGroups": ["catalyst.openova.io"], "resources": ["cutovers"], "verbs": verbs}]
    }))
    .unwrap()
}

/// Creates `role` and binds it to `user` in `ns` with a RoleBinding.
async fn grant(client: &kube::Client, ns: &str, user: &str, role: ClusterRole) {
    let name = role.metadata.name.clone().unwrap_or_default();
    let _ = Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &role)
        .await;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-{user}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("role binding");
}

fn step(order: usize) -> ConfigMap {
    let name = format!("step-{order}");
    let pod_spec = json!({"containers": [{"name": "step", "image": "busybox:1.36"}]});
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("cutover-step-{order:02}-{name}"),
            "labels": {
                contract::LABEL_PART_OF: contract::PART_OF,
                contract::LABEL_COMPONENT: contract::COMPONENT_STEP,
                contract::LABEL_STEP_ORDER: order.to_string(),
            }
        },
        "data": {
            contract::DATA_STEP_NAME: name,
            contract::DATA_POD_SPEC: serde_yaml::to_string(&pod_spec).unwrap(),
        },
    }))
    .unwrap()
}

async fn wait_ready(base: &str) {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("service never became ready");
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
    let env = Env::start(1).await;
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
    for header in [
        "Basic YWxpY2U6cHc=",
        "Bearer",
        "Bearer two words",
        "alice-token",
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

    let (code, body) = get(&base, "/cutover", Some(BOB)).await;
    assert_eq!((code, body["error"].as_str()), (403, Some("forbidden")));
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("bob")
            && detail.contains("get")
            && detail.contains("cutovers.catalyst.openova.io"),
        "{detail}"
    );

    assert_eq!(get(&base, "/cutover", Some(READER)).await.0, 200);
    assert_eq!(
        get(&base, "/api/v1/sovereign/cutover/status", Some(ALICE))
            .await
            .0,
        200
    );
    let (code, body) = post(&base, "/cutover", Some(READER), None).await;
    assert_eq!(code, 403);
    assert!(
        body["detail"].as_str().unwrap().contains("create"),
        "{body}"
    );
    let (code, body) = post(&base, "/cutover/abort", Some(READER), None).await;
    assert!(
        code == 403 && body["detail"].as_str().unwrap().contains("delete"),
        "{body}"
    );

    for token in [ALICE, OTHER_SA] {
        let (code, body) = post(&base, "/api/v1/internal/cutover/trigger", Some(token), None).await;
        assert_eq!(
            (code, body["error"].as_str()),
            (403, Some("unauthorized-sa")),
            "{token}"
        );
    }
    let (code, body) = post(
        &base,
        "/api/v1/internal/cutover/trigger",
        Some(CONSOLE_SA),
        None,
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let data = env.wait_phase("complete").await;
    assert_eq!(data["cutoverTrigger"], "internal-trigger");
    assert!(data["cutoverTriggeredBy"].ends_with(":console"));
    let (code, body) = post(&base, "/cutover", Some(ALICE), None).await;
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
    let before = reviews(&metrics(&base).await);
    let reads = (0..200).map(|_| get(&base, "/cutover", Some(READER)));
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
    let env = Env::start(1).await;
    let service = env.service(env.config()).await;
    let base = service.url();
    let Env { server, sim, .. } = env;
    sim.shutdown().await;
    server.shutdown().await;
    let (code, body) = get(&base, "/cutover", Some(ALICE)).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    assert_eq!(get(&base, "/cutover", None).await.0, 401);
    service.kill();
}

#[tokio::test]
async fn a_thousand_concurrent_first_logins_fire_exactly_one_cutover() {
    let env = Env::start(2).await;
    let service = env.service(env.config()).await;
    let base = service.url();
    let http = reqwest::Client::new();
    let url = format!("{base}/api/v1/internal/cutover/operator-login");
    let (code, body) = post(
        &base,
        "/api/v1/internal/cutover/operator-login",
        Some(OTHER_SA),
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
        Some(CONSOLE_SA),
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(code, 400);

    let logins = (0..1000).map(|i| {
        call(
            &http,
            reqwest::Method::POST,
            url.clone(),
            Some(CONSOLE_SA),
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

    let data = env.wait_phase("complete").await;
    assert_eq!(data["firstOperatorLogin"], first);
    assert_eq!(data["cutoverTrigger"], "first-login");
    assert_eq!(env.job_count().await, 2, "one run: one Job per step");

    let (code, body) = post(
        &base,
        "/api/v1/internal/cutover/operator-login",
        Some(CONSOLE_SA),
        Some(json!({"operator": "late"})),
    )
    .await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (200, Some("already-recorded"))
    );
    assert_eq!(
        env.wait_phase("complete").await,
        data,
        "a later login changes nothing"
    );
    env.stop(service).await;
}

#[tokio::test]
async fn a_first_login_after_completion_fires_nothing() {
    let env = Env::start(1).await;
    let service = env.service(env.config()).await;
    let base = service.url();
    assert_eq!(post(&base, "/cutover", Some(ALICE), None).await.0, 202);
    let before = env.wait_phase("complete").await;
    let (code, body) = post(
        &base,
        "/api/v1/internal/cutover/operator-login",
        Some(CONSOLE_SA),
        Some(json!({"operator": "alice"})),
    )
    .await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (200, Some("first-login-recorded")),
        "{body}"
    );
    let after = env.wait_phase("complete").await;
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

async fn open_stream(base: &str, path: &str, last_event_id: Option<u64>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(ALICE);
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
    let env = Env::start(3).await;
    let service = env.service(env.config()).await;
    let base = service.url();
    let metrics_before = metrics(&base).await;

    let stream = open_stream(&base, "/cutover/events", None).await;
    let console = open_stream(&base, "/api/v1/sovereign/cutover/events", None).await;
    // A client that never reads: it must not hold up the run or the other clients.
    let mut stalled = tokio::net::TcpStream::connect(service.addr())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stalled,
        format!("GET /cutover/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ALICE}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();

    assert_eq!(post(&base, "/cutover", Some(ALICE), None).await.0, 202);
    let is_done = |e: &Sse| e.event == "cutover-completed";
    let (events, console_events) =
        tokio::join!(read_events(stream, is_done), read_events(console, is_done));
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    let mut expected = vec!["cutover-status", "cutover-started"];
    for _ in 0..3 {
        expected.extend(["cutover-step-started", "cutover-step-finished"]);
    }
    expected.push("cutover-completed");
    assert_eq!(names, expected);
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
    }
    assert!(events[2].data["jobName"].is_string());
    let ids: Vec<u64> = events[1..].iter().map(|e| e.id.expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let console_names: Vec<&str> = console_events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(console_names, names, "every client sees every frame");

    // Reconnecting with Last-Event-ID replays exactly the frames after it.
    let resume_after = ids[2];
    let resumed = read_events(
        open_stream(&base, "/cutover/events", Some(resume_after)).await,
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
    if !available {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "schemathesis (`pip install schemathesis`) is required in CI"
        );
        eprintln!("skipped: schemathesis (`st`) is not installed");
        return;
    }
    let env = Env::start(2).await;
    let service = env.service(env.config()).await;
    // The operator's routes as alice; the internal ones as the allow-listed service account.
    // The event streams never end; their frames are covered above.
    schemathesis(
        &service.url(),
        ALICE,
        &["--exclude-path-regex", "events$|internal"],
    )
    .await;
    schemathesis(
        &service.url(),
        CONSOLE_SA,
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
    Api::<Event>::namespaced(env.client().await, &env.ns)
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
