//! The admin console's cutover card against the service, as the console really calls it:
//! its session cookie and no `Authorization` header (its event stream is an EventSource),
//! `POST .../start` with `{}` to start and to re-trigger, `cutover-status` frames whose
//! message it parses as the status map, `state` only `tethered` or `sovereign`. A small
//! HTTP server in the test stands in for the console backend's session check (the
//! forward-auth URL): it is the outside party. Runs against the sandbox, or unchanged
//! against a real cluster when `CUTOVER_TEST_KUBECONFIG` is set.

mod common;

use catalyst_cutover::auth::{AuthConfig, ForwardAuthConfig};
use catalyst_cutover::contract::DEFAULT_STATUS_CONFIGMAP;
use catalyst_cutover::service::{Service, ServiceConfig};
use common::session::{Answer, Backend, grant_group};
use common::{Env, REGISTRY_PIVOT, TestCluster, daemonset_step, job_step};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::sync::mpsc;

/// A hang guard for one wait, not a speed assertion.
const GUARD: Duration = Duration::from_secs(90);
const READY_GUARD: Duration = Duration::from_secs(12);
/// The step that fails until the operator fixes it.
const FAILING: &str = "flux-gitrepository-patch";
/// The console's session cookies, as the stand-in backend knows them.
const OPERATOR: &str = "catalyst_session=operator-session; theme=dark";
const READER: &str = "catalyst_session=reader-session";
const STRANGER: &str = "catalyst_session=stranger-session";
const SIGNED_OUT: &str = "catalyst_session=expired";
/// A session the stand-in answers with 500.
const BROKEN: &str = "catalyst_session=backend-bug";

// --- the cluster ------------------------------------------------------------------------

/// Four steps (two Jobs, the registry pivot, `FAILING` failing) on two nodes with the
/// registry-pivot agents, the operators' group granted the chart's operator role and the
/// readers' group `get` only; the stand-in backend that names them.
async fn console_env() -> (Env, Backend) {
    let fail = [
        ("SANDBOX_SIM_OUTCOME", "fail"),
        ("SANDBOX_SIM_FAIL_ATTEMPTS", "99"),
        (
            "SANDBOX_SIM_MESSAGE",
            "the GitRepository is owned by another controller",
        ),
    ];
    let env = Env::builder()
        .nodes(2)
        .registry_pivot()
        .steps([
            job_step(1, "gitea-mirror", &[]),
            job_step(2, "harbor-projects", &[]),
            daemonset_step(3, REGISTRY_PIVOT),
            job_step(4, FAILING, &fail),
        ])
        .start()
        .await;
    let (client, ns) = (env.client(), env.ns().to_owned());
    let (operators, readers) = (format!("{ns}-operators"), format!("{ns}-readers"));
    let backend = Backend::start(vec![
        (
            OPERATOR.to_owned(),
            Answer::User("console:alice".to_owned(), format!("{operators},everyone")),
        ),
        (
            READER.to_owned(),
            Answer::User("console:rita".to_owned(), readers.clone()),
        ),
        (
            STRANGER.to_owned(),
            Answer::User("console:sam".to_owned(), String::new()),
        ),
        (BROKEN.to_owned(), Answer::Status(500)),
    ])
    .await;
    grant_group(
        &client,
        &ns,
        &format!("{ns}-operators"),
        common::chart_operator_role(),
    )
    .await;
    grant_group(
        &client,
        &ns,
        &format!("{ns}-readers"),
        common::role("cutover-reader", &["get"]),
    )
    .await;
    (env, backend)
}

/// What the console's tests ask of their environment.
impl Env {
    /// The service, authenticating bearer tokens and, through the stand-in, sessions.
    async fn service(&self, forward_auth_url: &str) -> Service {
        let mut config = self.service_config();
        config.auth = AuthConfig::enabled();
        config.forward_auth = Some(ForwardAuthConfig::new(forward_auth_url).expect("the URL"));
        let service = self.start_service(config).await;
        common::wait_ready(&service.url(), READY_GUARD).await;
        service
    }

    /// Replaces `FAILING` by a step that succeeds, as an operator fixing the cause would.
    async fn fix_failing_step(&self) {
        let api: Api<ConfigMap> = Api::namespaced(self.cluster.client(), self.ns());
        let mut cm = job_step(4, FAILING, &[]);
        let name = cm.metadata.name.clone().unwrap_or_default();
        let current = api.get(&name).await.expect("the step");
        cm.metadata.resource_version = current.metadata.resource_version;
        api.replace(&name, &PostParams::default(), &cm)
            .await
            .expect("replace the step");
    }
}

// --- the console's calls ----------------------------------------------------------------

/// A request as the console's browser makes it: the session cookie, no Authorization.
fn console(method: reqwest::Method, url: String, cookie: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(method, url)
        .header("cookie", cookie)
}

/// `GET path` with `cookie`: the status code and the JSON body.
async fn get(base: &str, path: &str, cookie: &str) -> (u16, Value) {
    let response = console(reqwest::Method::GET, format!("{base}{path}"), cookie)
        .send()
        .await
        .expect("GET");
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

/// `POST path` with `body` as the console's `fetch` sends it from the service's own page
/// origin (`Origin`, `Content-Type: application/json`).
async fn post(base: &str, path: &str, cookie: &str, body: Value) -> (u16, Value) {
    let response = console(reqwest::Method::POST, format!("{base}{path}"), cookie)
        .header("origin", base)
        .json(&body)
        .send()
        .await
        .expect("POST");
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

/// The card's "Achieve True Sovereignty" button: `POST .../start` with `{}`.
async fn press_the_button(base: &str) -> (u16, Value) {
    post(base, "/api/v1/sovereign/cutover/start", OPERATOR, json!({})).await
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    event: String,
    data: Value,
}

impl Sse {
    /// The status map of a `cutover-status` frame, parsed as the console does
    /// (`JSON.parse(data.message)`).
    fn status_map(&self) -> Option<BTreeMap<String, String>> {
        (self.event == "cutover-status")
            .then(|| self.data["message"].as_str())
            .flatten()
            .map(|m| serde_json::from_str(m).expect("the message is the status map"))
    }
}

/// Opens the event stream as an EventSource does (cookie, `Accept: text/event-stream`,
/// no Authorization) and forwards its events.
async fn event_source(base: &str, cookie: &str) -> mpsc::UnboundedReceiver<Sse> {
    let response = console(
        reqwest::Method::GET,
        format!("{base}/api/v1/sovereign/cutover/events"),
        cookie,
    )
    .header("accept", "text/event-stream")
    .send()
    .await
    .expect("the event stream");
    assert_eq!(response.status(), 200);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut sse = Sse {
                    event: String::new(),
                    data: Value::Null,
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        sse.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        sse.data = serde_json::from_str(v.trim()).expect("data is JSON");
                    }
                }
                if !sse.event.is_empty() && tx.send(sse).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The events until (and with) the first for which `stop` holds.
async fn events_until(
    rx: &mut mpsc::UnboundedReceiver<Sse>,
    what: &str,
    stop: impl Fn(&Sse) -> bool,
) -> Vec<Sse> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(GUARD, async {
        while let Some(sse) = rx.recv().await {
            let done = stop(&sse);
            seen.push(sse);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    let names: Vec<&str> = seen.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(found, Ok(true), "never saw {what}; saw {names:?}");
    for e in &seen {
        let level = e.data["level"].as_str().unwrap_or_default();
        assert!(["info", "warn", "error"].contains(&level), "{e:?}");
    }
    seen
}

fn names(events: &[Sse]) -> Vec<&str> {
    events.iter().map(|e| e.event.as_str()).collect()
}

// --- the tests --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_card_runs_the_whole_cutover_with_its_session_cookie_only() {
    let (env, backend) = console_env().await;
    let service = env.service(&backend.url).await;
    let base = service.url();

    // On mount: the status, tethered.
    let (code, status) = get(&base, "/api/v1/sovereign/cutover/status", OPERATOR).await;
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["state"], "tethered");
    let mut stream = event_source(&base, OPERATOR).await;
    let first = events_until(&mut stream, "the snapshot on connect", |_| true).await;
    assert_eq!(first[0].event, "cutover-status");
    assert!(first[0].status_map().is_some(), "{:?}", first[0]);
    assert_eq!(first[0].data["status"]["state"], "tethered");

    // The button: start with {}; the run goes up to the failing step.
    let (code, body) = press_the_button(&base).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["state"], "tethered");
    let failed = events_until(&mut stream, "a snapshot of the failed run", |e| {
        e.status_map()
            .is_some_and(|m| m.get("failedStep").is_some_and(|s| s == FAILING))
    })
    .await;
    let seen = names(&failed);
    for frame in [
        "cutover-step-started",
        "cutover-step-finished",
        "cutover-step-failed",
    ] {
        assert!(seen.contains(&frame), "{frame} missing from {seen:?}");
    }
    let failure = failed
        .iter()
        .find(|e| e.event == "cutover-step-failed")
        .expect("the failure frame");
    assert_eq!(failure.data["step"], FAILING);
    assert_eq!(failure.data["level"], "error");
    assert!(
        failure.data["message"]
            .as_str()
            .is_some_and(|m| m.contains("owned by another controller")),
        "{failure:?}"
    );
    let (_, status) = get(&base, "/api/v1/sovereign/cutover/status", OPERATOR).await;
    assert_eq!(
        (&status["state"], &status["failedStep"]),
        (&json!("tethered"), &json!(FAILING))
    );

    // The operator fixes the cause and presses the button again: {} resumes the failed
    // cutover from its failed step.
    env.fix_failing_step().await;
    let (code, body) = press_the_button(&base).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["outcome"], "retried");
    let resumed = events_until(&mut stream, "the snapshot of the completed cutover", |e| {
        e.status_map()
            .is_some_and(|m| m.get("cutoverComplete").is_some_and(|c| c == "true"))
    })
    .await;
    let seen = names(&resumed);
    let last_step = seen
        .iter()
        .rposition(|e| *e == "cutover-step-finished")
        .expect("step frames");
    assert_eq!(seen.last(), Some(&"cutover-status"), "{seen:?}");
    assert!(
        last_step < seen.len() - 1,
        "the snapshot follows the last step: {seen:?}"
    );
    let started: Vec<&str> = resumed
        .iter()
        .filter(|e| e.event == "cutover-step-started")
        .filter_map(|e| e.data["step"].as_str())
        .collect();
    assert_eq!(started, [FAILING], "only the failed step ran again");
    let map = resumed.last().and_then(Sse::status_map).expect("the map");
    assert_eq!(
        map.get(&format!("step.{FAILING}.result"))
            .map(String::as_str),
        Some("success")
    );
    let (_, status) = get(&base, "/api/v1/sovereign/cutover/status", OPERATOR).await;
    assert_eq!(status["state"], "sovereign");
    assert_eq!(status["cutoverComplete"], true);

    // A rollback of the registry pivot: the card reads `tethered` again, never another
    // state, and the stream says so live.
    let (code, body) = post(
        &base,
        "/api/v1/sovereign/cutover/rollback",
        OPERATOR,
        json!({"confirm": "rollback-registry-pivot", "reason": "harbor lost its disk", "timeoutSeconds": 60}),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["state"], "tethered");
    events_until(&mut stream, "the snapshot of the rolled-back pivot", |e| {
        e.status_map()
            .is_some_and(|m| m.get("cutoverPhase").is_some_and(|p| p == "rolled-back"))
    })
    .await;
    let (_, status) = get(&base, "/api/v1/sovereign/cutover/status", OPERATOR).await;
    assert_eq!(
        (&status["state"], &status["phase"]),
        (&json!("tethered"), &json!("rolled-back"))
    );
    assert_eq!(
        status["rollback"]["requestedBy"], "console:alice",
        "the session's user is recorded"
    );

    // The session check saw the cookie and nothing else of the browser's requests.
    let calls = backend.calls();
    assert!(!calls.is_empty());
    for call in &calls {
        let sent: BTreeSet<&str> = call.keys().map(String::as_str).collect();
        assert!(sent.contains("cookie"), "{call:?}");
        for never in [
            "origin",
            "content-type",
            "authorization",
            "accept-encoding",
            "user-agent",
        ] {
            assert!(!sent.contains(never), "{never} forwarded: {call:?}");
        }
    }
    env.stop(service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_checked_cached_and_authorized_and_cross_site_writes_refused() {
    let (env, backend) = console_env().await;
    let service = env.service(&backend.url).await;
    let base = service.url();
    let status = "/api/v1/sovereign/cutover/status";
    let start = "/api/v1/sovereign/cutover/start";

    // A good session: answered, and cached (one check for many requests).
    let before = backend.calls().len();
    for _ in 0..5 {
        assert_eq!(get(&base, status, OPERATOR).await.0, 200);
    }
    assert_eq!(backend.calls().len() - before, 1, "answers are cached");

    // Signed out: 401 invalid-session; an oversized cookie is refused without a call.
    let (code, body) = get(&base, status, SIGNED_OUT).await;
    assert_eq!(
        (code, &body["error"]),
        (401, &json!("invalid-session")),
        "{body}"
    );
    let before = backend.calls().len();
    let huge = format!("catalyst_session={}", "x".repeat(9000));
    let (code, body) = get(&base, status, &huge).await;
    assert_eq!(
        (code, &body["error"]),
        (401, &json!("invalid-session")),
        "{body}"
    );
    assert_eq!(
        backend.calls().len(),
        before,
        "no call for an oversized cookie"
    );

    // The check itself failing is 503 auth-unavailable, never a 401.
    let (code, body) = get(&base, status, BROKEN).await;
    assert_eq!(
        (code, &body["error"]),
        (503, &json!("auth-unavailable")),
        "{body}"
    );

    // The SubjectAccessReview still decides: a reader reads and may not start; a signed-in
    // stranger may not even read.
    assert_eq!(get(&base, status, READER).await.0, 200);
    let (code, body) = post(&base, start, READER, json!({})).await;
    assert_eq!((code, &body["error"]), (403, &json!("forbidden")), "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("console:rita")),
        "{body}"
    );
    let (code, body) = get(&base, status, STRANGER).await;
    assert_eq!((code, &body["error"]), (403, &json!("forbidden")), "{body}");
    let (code, body) = get(&base, "/cutover/permissions", READER).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (&body["user"], &body["start"]),
        (&json!("console:rita"), &json!(false))
    );

    // Cross-site: a write with the cookie from another origin, as a form, or with no
    // origin at all is refused before anything is asked.
    let url = format!("{base}{start}");
    let refused = [
        console(reqwest::Method::POST, url.clone(), OPERATOR)
            .header("origin", "https://evil.example")
            .json(&json!({})),
        console(reqwest::Method::POST, url.clone(), OPERATOR)
            .header("origin", &base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("retry=true"),
        console(reqwest::Method::POST, url.clone(), OPERATOR).json(&json!({})),
        console(reqwest::Method::POST, url.clone(), OPERATOR)
            .header("sec-fetch-site", "cross-site")
            .json(&json!({})),
    ];
    for request in refused {
        let response = request.send().await.expect("POST");
        let code = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (code, &body["error"]),
            (403, &json!("cross-site")),
            "{body}"
        );
    }
    let (_, now) = get(&base, status, OPERATOR).await;
    assert_eq!(now["phase"], "idle", "nothing started");

    // Bearer tokens are unchanged: a token wins over the cookie, and none at all is 401.
    let response = console(reqwest::Method::GET, format!("{base}{status}"), OPERATOR)
        .bearer_auth("not-a-token")
        .send()
        .await
        .expect("GET");
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(body["error"], "invalid-token");
    let response = reqwest::get(format!("{base}{status}")).await.expect("GET");
    assert_eq!(response.status(), 401);
    // Internal routes take a service account's token, never a session.
    let (code, body) = post(
        &base,
        "/api/v1/internal/cutover/trigger",
        OPERATOR,
        json!({}),
    )
    .await;
    assert_eq!(
        (code, &body["error"]),
        (401, &json!("missing-bearer")),
        "{body}"
    );
    // The live page's calls from its own origin (Sec-Fetch-Site) pass to the SAR.
    let response = console(
        reqwest::Method::POST,
        format!("{base}/cutover/abort"),
        READER,
    )
    .header("sec-fetch-site", "same-origin")
    .json(&json!({}))
    .send()
    .await
    .expect("POST");
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(body["error"], "forbidden", "{body}");
    service.shutdown().await;

    // The session check down: 503 auth-unavailable for every session.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let service = env.service(&format!("http://{closed}/auth/check")).await;
    let (code, body) = get(&service.url(), status, OPERATOR).await;
    assert_eq!(
        (code, &body["error"]),
        (503, &json!("auth-unavailable")),
        "{body}"
    );
    env.stop(service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_of_a_chart_below_the_floor_start_nothing() {
    let cluster = TestCluster::start().await;
    let ns = cluster.namespace().to_owned();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    for (order, chart) in [
        (1, "bp-self-sovereign-cutover-0.0.9"),
        (2, "bp-self-sovereign-cutover-0.1.0"),
    ] {
        let mut cm = job_step(order, &format!("s{order}"), &[]);
        cm.metadata
            .labels
            .get_or_insert_default()
            .insert("helm.sh/chart".to_owned(), chart.to_owned());
        api.create(&PostParams::default(), &cm).await.expect("step");
    }
    let start = |config: ServiceConfig| {
        let kube = cluster.config();
        async move {
            let service = Service::start(kube.await, config).await.expect("service");
            common::wait_ready(&service.url(), READY_GUARD).await;
            service
        }
    };
    let service = start(ServiceConfig::new(&ns)).await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/sovereign/cutover/start", service.url()))
        .json(&json!({}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 412);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "cutover-chart-below-floor");
    assert_eq!(body["observedVersion"], "0.0.9");
    assert_eq!(
        body["minChartVersion"],
        catalyst_cutover::step::chart::MIN_CHART_VERSION
    );
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("cutover-step-01-s1") && d.contains("--min-chart-version")),
        "{body}"
    );
    let status: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    let data = status
        .get_opt(DEFAULT_STATUS_CONFIGMAP)
        .await
        .expect("status")
        .and_then(|cm| cm.data)
        .unwrap_or_default();
    assert!(
        data.get("cutoverStartedAt").is_none_or(String::is_empty),
        "{data:?}"
    );
    service.shutdown().await;

    // The operator's override lets the older chart's steps run.
    let mut config = ServiceConfig::new(&ns);
    config.step_policy.min_chart_version = semver::Version::new(0, 0, 1);
    let service = start(config).await;
    let code = common::post_status(&service.url(), "/cutover").await;
    assert_eq!(code, 202);
    service.shutdown().await;
    cluster.cleanup().await;
}
