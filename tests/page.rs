//! The live page at `GET /`, in a real browser: Debian's `chromium`, driven through
//! `chromedriver` (WebDriver) against the service, the cluster simulator running the steps'
//! Jobs. Runs against the sandbox, or unchanged against a real cluster when
//! `CUTOVER_TEST_KUBECONFIG` is set.
//!
//! Without `chromedriver` on the PATH (or in `CHROMEDRIVER`) these tests fail and say what
//! to install; they never pass silently. `CUTOVER_SCREENSHOT=1` writes `docs/page.png`, a
//! screenshot of the page during a run.

mod common;

use catalyst_cutover::auth::{AuthConfig, ForwardAuthConfig};
use catalyst_cutover::service::{Service, ServiceConfig};
use catalyst_cutover::tethers::TetherConfig;
use common::session::{Answer, Backend, grant_group};
use common::{CHART_STEPS, Env, create_service_account, grant, job_step, request_token, token_of};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Hang guard of a service's start-up: some 600 polls, 20 ms apart.
const READY_GUARD: Duration = Duration::from_secs(12);
/// Hang guard for one wait on the page, not a speed assertion.
const GUARD: Duration = Duration::from_secs(120);
/// What to install when the browser is missing.
const INSTALL: &str = "apt-get install -y chromium chromium-driver";
/// The step that fails on its first attempt, and its termination message.
const FAILING: &str = "harbor-prewarm";
const FAILURE: &str = "harbor answered 503 for library/nginx:1.27";

/// A `chromedriver` this test started, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `CHROMEDRIVER`, or `chromedriver` on the PATH.
fn chromedriver_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMEDRIVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("chromedriver"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromedriver is not installed: the live page's browser tests need Debian's \
                 chromium and its WebDriver (`{INSTALL}`), or CHROMEDRIVER naming a chromedriver"
            )
        })
}

/// Starts chromedriver on a free local port and waits until it answers.
async fn start_driver() -> Driver {
    let binary = chromedriver_binary();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(&binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}); `{INSTALL}`", binary.display()));
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{}/status", driver.url)).send().await
            && r.status() == 200
        {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver never answered on {}", driver.url);
}

/// A headless chromium session.
async fn browser(driver: &Driver) -> Client {
    let mut options = json!({
        "args": [
            "--headless=new",
            // Root in a container has no user namespaces for chromium's sandbox.
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1280,1200",
        ]
    });
    if let Some(binary) = std::env::var_os("CHROMIUM").filter(|b| !b.is_empty()) {
        options["binary"] = json!(binary.to_string_lossy());
    }
    let capabilities = json!({"browserName": "chrome", "goog:chromeOptions": options});
    let Value::Object(capabilities) = capabilities else {
        unreachable!("a JSON object");
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("no chromium session ({e}); is chromium installed? `{INSTALL}`"))
}

/// The browser of a test, and the chromedriver it drives.
struct Page {
    _driver: Driver,
    browser: Client,
}

/// A cluster with the chart's eleven steps as simulated Jobs (`FAILING` fails its first
/// attempts), the simulator, and a browser.
async fn page_env() -> (Env, Page) {
    let driver = start_driver().await;
    let steps = CHART_STEPS.iter().enumerate().map(|(index, name)| {
        let mut env = vec![("SANDBOX_SIM_RUN_MS", "400")];
        if *name == FAILING {
            env.extend([
                ("SANDBOX_SIM_OUTCOME", "fail"),
                ("SANDBOX_SIM_FAIL_ATTEMPTS", "4"),
                ("SANDBOX_SIM_MESSAGE", FAILURE),
            ]);
        }
        job_step(index + 1, name, &env)
    });
    let env = Env::builder().steps(steps).start().await;
    let browser = browser(&driver).await;
    let page = Page {
        _driver: driver,
        browser,
    };
    (env, page)
}

/// What the page's tests ask of their environment.
impl Env {
    /// A ServiceAccount `name`, bound to `role` when given, and its token.
    async fn user(&self, name: &str, role: Option<ClusterRole>) -> String {
        let client = self.cluster.client();
        create_service_account(&client, self.ns(), name).await;
        if let Some(role) = role {
            grant(&client, self.ns(), name, role).await;
        }
        token_of(
            &request_token(&client, self.ns(), name, None)
                .await
                .expect("token"),
        )
    }

    async fn service(&self, config: ServiceConfig) -> Service {
        let service = self.start_service(config).await;
        common::wait_ready(&service.url(), READY_GUARD).await;
        service
    }

    /// Replaces step `name` by one that succeeds, as an operator fixing the cause would.
    async fn fix_step(&self, name: &str) {
        self.replace_step(name, &[("SANDBOX_SIM_RUN_MS", "2000")])
            .await;
    }

    /// Replaces step `name` by one whose simulated pod has `env`.
    async fn replace_step(&self, name: &str, env: &[(&str, &str)]) {
        let api: Api<ConfigMap> = Api::namespaced(self.cluster.client(), self.ns());
        let order = CHART_STEPS.iter().position(|s| *s == name).expect("a step") + 1;
        let mut cm = job_step(order, name, env);
        let current = api
            .get(cm.metadata.name.as_deref().unwrap_or_default())
            .await
            .expect("step");
        cm.metadata.resource_version = current.metadata.resource_version;
        api.replace(
            cm.metadata.name.as_deref().unwrap_or_default(),
            &PostParams::default(),
            &cm,
        )
        .await
        .expect("replace step");
    }

    /// Closes the browser, then stops `service` and the environment.
    async fn close(self, tab: Page, service: Service) {
        let _ = tab.browser.close().await;
        self.stop(service).await;
    }
}

/// Runs `script` (a function body returning a value) in the page.
async fn eval(browser: &Client, script: &str) -> Value {
    browser
        .execute(script, Vec::new())
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Waits until `script` returns true in the page; `what` names the wait in a failure,
/// which shows the page's summary and connection line.
async fn until(browser: &Client, what: &str, script: &str) {
    let waited = tokio::time::timeout(GUARD, async {
        loop {
            if eval(browser, script).await == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    if waited.is_err() {
        let seen = eval(
            browser,
            "return document.getElementById('summary').textContent + ' | ' + \
             document.getElementById('connection').textContent + ' | ' + \
             document.getElementById('action-result').textContent + ' | ' + \
             document.getElementById('tether-summary').textContent",
        )
        .await;
        panic!("the page never showed {what}; it shows: {seen}");
    }
}

/// The step rows: name, result (`pending` when not started) and attempt, in page order.
async fn rows(browser: &Client) -> Vec<(String, String, String)> {
    let rows = eval(
        browser,
        "return [...document.querySelectorAll('#step-rows tr')].map(r => \
         [r.querySelector('th').textContent, r.dataset.result, r.querySelector('.attempt').textContent])",
    )
    .await;
    serde_json::from_value(rows).expect("rows")
}

/// Whether element `id` is shown.
async fn shown(browser: &Client, id: &str) -> bool {
    eval(
        browser,
        &format!("return !document.getElementById('{id}').hidden"),
    )
    .await
        == Value::Bool(true)
}

/// Signs in through the page's token dialog.
async fn sign_in(browser: &Client, token: &str) {
    until(
        browser,
        "the sign-in dialog",
        "return document.getElementById('login').open",
    )
    .await;
    browser
        .find(Locator::Id("token"))
        .await
        .expect("token field")
        .send_keys(token)
        .await
        .expect("type the token");
    browser
        .find(Locator::Id("login-ok"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("sign in");
}

/// Presses `key` once.
async fn press(browser: &Client, key: Key) {
    let actions = KeyActions::new("keyboard".to_owned())
        .then(KeyAction::Down { value: key.into() })
        .then(KeyAction::Up { value: key.into() });
    browser.perform_actions(actions).await.expect("key press");
}

/// The id of the focused element.
async fn focused(browser: &Client) -> String {
    eval(
        browser,
        "return document.activeElement ? document.activeElement.id : ''",
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

/// Whether every step row shows `result`.
fn all_rows(result: &str) -> String {
    format!(
        "const rows = [...document.querySelectorAll('#step-rows tr')]; \
         return rows.length === {} && rows.every(r => r.dataset.result === '{result}')",
        CHART_STEPS.len()
    )
}

fn phase_is(phase: &str) -> String {
    format!("return document.getElementById('summary').dataset.phase === '{phase}'")
}

fn row_is(step: &str, result: &str) -> String {
    format!(
        "const r = [...document.querySelectorAll('#step-rows tr')] \
           .find(r => r.dataset.step === '{step}'); \
         return !!r && r.dataset.result === '{result}'"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_a_run_shows_the_failure_and_retry_resumes_it() {
    let (env, tab) = page_env().await;
    let alice = env.user("alice", Some(common::chart_operator_role())).await;
    let mut config = ServiceConfig::new(env.ns());
    config.auth = AuthConfig::enabled();
    // The failing step fails after two pods: a real Job controller backs off 10 s before
    // the second (and 20, 40 s before more).
    config.render.backoff_limit = 1;
    config.lease_duration = Duration::from_secs(2);
    let service = env.service(config).await;
    let base = service.url();
    let b = &tab.browser;
    b.goto(&format!("{base}/")).await.expect("open the page");

    // Authentication is on: the page asks for a token and keeps it in this tab only.
    sign_in(b, &alice).await;
    until(b, "the eleven steps, none started", &all_rows("pending")).await;
    let names: Vec<String> = rows(b).await.into_iter().map(|r| r.0).collect();
    assert_eq!(names, CHART_STEPS, "steps in execution order");
    let stored = eval(
        b,
        "return [sessionStorage.getItem('catalyst-cutover-token'), localStorage.length]",
    )
    .await;
    assert_eq!(stored, json!([alice, 0]));
    until(
        b,
        "the Start button",
        "return !document.getElementById('start').hidden",
    )
    .await;
    assert!(!shown(b, "retry").await && !shown(b, "abort").await);

    // By keyboard: Tab reaches Start, Enter asks to confirm with the focus on Cancel (Enter
    // alone starts nothing), Tab reaches the confirmation.
    for _ in 0..10 {
        if focused(b).await == "start" {
            break;
        }
        press(b, Key::Tab).await;
    }
    assert_eq!(focused(b).await, "start", "Start is reachable by Tab");
    let ring = eval(
        b,
        "const s = getComputedStyle(document.activeElement); \
         return [s.outlineStyle, s.outlineWidth]",
    )
    .await;
    assert_ne!(ring[0], "none", "the focus is visible: {ring}");
    assert_ne!(ring[1], "0px", "the focus is visible: {ring}");
    press(b, Key::Enter).await;
    until(
        b,
        "the confirmation",
        "return document.getElementById('confirm').open",
    )
    .await;
    assert_eq!(focused(b).await, "confirm-cancel");
    press(b, Key::Tab).await;
    assert_eq!(focused(b).await, "confirm-ok");
    press(b, Key::Enter).await;

    // Live, without a reload: the steps move as the simulator runs them, up to the failure.
    until(
        b,
        "the first step succeeded",
        &row_is(CHART_STEPS[0], "success"),
    )
    .await;
    until(b, "the failed cutover", &phase_is("failed")).await;
    let seen = rows(b).await;
    assert_eq!(seen[0].1, "success");
    assert_eq!(seen[1].1, "success");
    assert_eq!(
        seen[2],
        (FAILING.to_owned(), "failed".to_owned(), "1".to_owned())
    );
    assert!(seen[3..].iter().all(|r| r.1 == "pending"), "{seen:?}");
    let error = eval(
        b,
        &format!(
            "return document.querySelector('#step-rows tr[data-step=\"{FAILING}\"] pre.error').textContent + '\\n' + \
             document.getElementById('last-error').textContent"
        ),
    )
    .await;
    let error = error.as_str().unwrap_or_default();
    assert!(error.contains(FAILURE), "{error}");
    assert!(error.contains("cutover-harbor-prewarm-a1"), "{error}");
    // Readable without colour: each state is a word and a symbol; updates are announced.
    let states = eval(
        b,
        "return [...document.querySelectorAll('#step-rows td.state')].map(td => \
         td.firstChild.textContent + td.childNodes[1].textContent)",
    )
    .await;
    let mut expected = vec!["✔ succeeded", "✔ succeeded", "✘ failed"];
    expected.resize(CHART_STEPS.len(), "○ pending");
    assert_eq!(states, json!(expected));
    let live = eval(
        b,
        "return ['summary', 'events', 'action-result'] \
         .map(id => document.getElementById(id).getAttribute('aria-live'))",
    )
    .await;
    assert_eq!(live, json!(["polite", "polite", "polite"]));
    let navigations = eval(
        b,
        "return performance.getEntriesByType('navigation').length",
    )
    .await;
    assert_eq!(navigations, json!(1), "one page load, updated in place");
    until(
        b,
        "the Retry button",
        "return !document.getElementById('retry').hidden",
    )
    .await;
    assert!(!shown(b, "start").await && !shown(b, "abort").await);

    // The operator fixes the cause, then retries from the page (with the token).
    env.fix_step(FAILING).await;
    b.find(Locator::Id("retry"))
        .await
        .expect("retry")
        .click()
        .await
        .expect("click retry");
    until(
        b,
        "the confirmation",
        "return document.getElementById('confirm').open",
    )
    .await;
    b.find(Locator::Id("confirm-ok"))
        .await
        .expect("confirm")
        .click()
        .await
        .expect("confirm retry");
    until(
        b,
        "the retried step running",
        &format!(
            "{} || document.getElementById('summary').dataset.phase === 'complete'",
            row_is(FAILING, "running")
        ),
    )
    .await;
    if std::env::var("CUTOVER_SCREENSHOT").is_ok_and(|v| v == "1") {
        assert!(
            eval(b, &row_is(FAILING, "running")).await == Value::Bool(true),
            "the run ended before the screenshot could show it running"
        );
        let png = b.screenshot().await.expect("screenshot");
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/page.png");
        std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/docs")).expect("docs/");
        std::fs::write(path, png).expect("write docs/page.png");
    }
    until(b, "the completed cutover", &phase_is("complete")).await;
    until(b, "every step succeeded", &all_rows("success")).await;
    let seen = rows(b).await;
    assert_eq!(seen[2].2, "2", "the retried step ran a second attempt");
    assert_eq!(seen[0].2, "1", "the earlier successes are kept");
    assert!(!shown(b, "retry").await && !shown(b, "start").await);

    // Nothing came from another origin, and the policy would have refused it.
    let foreign = eval(
        b,
        "const origin = location.origin + '/'; \
         const names = performance.getEntriesByType('resource').map(e => e.name); \
         return [names.filter(n => !n.startsWith(origin)), names.length]",
    )
    .await;
    assert_eq!(foreign[0], json!([]), "requests to another origin");
    assert!(foreign[1].as_u64().unwrap_or(0) >= 3, "{foreign}");
    let page = reqwest::get(format!("{base}/")).await.expect("GET /");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");

    env.close(tab, service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_resumes_with_last_event_id_when_the_service_drops_it() {
    let (env, tab) = page_env().await;
    env.fix_step(FAILING).await;
    let mut config = ServiceConfig::new(env.ns());
    config.lease_duration = Duration::from_secs(2);
    // The service closes every stream after a second: the page must reconnect, several
    // times during the run, and resume where it was.
    config.http.event_stream_lifetime = Some(Duration::from_secs(1));
    let service = env.service(config).await;
    let base = service.url();
    let b = &tab.browser;
    b.goto(&format!("{base}/")).await.expect("open the page");
    until(b, "the eleven steps", &all_rows("pending")).await;
    until(
        b,
        "a live stream",
        "return document.getElementById('connection').dataset.state === 'live'",
    )
    .await;
    let started = reqwest::Client::new()
        .post(format!("{base}/cutover"))
        .header("content-type", "application/json")
        .send()
        .await
        .expect("start");
    assert_eq!(started.status(), 202);
    until(b, "the completed cutover", &phase_is("complete")).await;
    until(b, "every step succeeded", &all_rows("success")).await;

    let seen = eval(
        b,
        "const c = document.getElementById('connection').dataset; \
         const all = [...document.querySelectorAll('#events li')]; \
         const frames = all.filter(li => li.dataset.event !== 'cutover-status'); \
         return {reconnects: Number(c.reconnects || 0), resumed: Number(c.resumed || 0), \
                 ids: all.map(li => Number(li.dataset.id)).filter(id => id > 0), \
                 events: frames.map(li => li.dataset.event)}",
    )
    .await;
    assert!(seen["reconnects"].as_u64().unwrap_or(0) >= 1, "{seen}");
    assert!(
        seen["resumed"].as_u64().unwrap_or(0) >= 1,
        "a reconnected stream replayed frames instead of a snapshot: {seen}"
    );
    let mut ids: Vec<u64> = serde_json::from_value(seen["ids"].clone()).expect("ids");
    // A snapshot on connect carries the id of the frame before it.
    ids.dedup();
    let first = ids.first().copied().unwrap_or(0);
    let contiguous: Vec<u64> = (first..first + ids.len() as u64).collect();
    assert_eq!(
        ids, contiguous,
        "no frame missed or repeated across the drops"
    );
    let events: Vec<String> = serde_json::from_value(seen["events"].clone()).expect("events");
    let finished = events
        .iter()
        .filter(|e| *e == "cutover-step-finished")
        .count();
    assert_eq!(finished, CHART_STEPS.len(), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("cutover-completed"));

    env.close(tab, service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buttons_follow_what_the_caller_may_do() {
    let (env, tab) = page_env().await;
    let alice = env.user("alice", Some(common::chart_operator_role())).await;
    let reader = env
        .user("reader", Some(common::role("cutover-reader", &["get"])))
        .await;
    let bob = env.user("bob", None).await;
    let mut config = ServiceConfig::new(env.ns());
    config.auth = AuthConfig::enabled();
    let service = env.service(config).await;
    let base = service.url();

    let permissions = |token: Option<String>| {
        let url = format!("{base}/cutover/permissions");
        async move {
            let mut request = reqwest::Client::new().get(url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.expect("permissions");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }
    };
    let (status, body) = permissions(Some(alice.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            &body["start"],
            &body["retry"],
            &body["abort"],
            &body["rollback"]
        ),
        (&json!(true), &json!(true), &json!(true), &json!(true))
    );
    assert_eq!(body["authentication"], json!(true));
    let (status, body) = permissions(Some(reader.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            &body["start"],
            &body["retry"],
            &body["abort"],
            &body["rollback"]
        ),
        (&json!(false), &json!(false), &json!(false), &json!(false))
    );
    assert!(
        body["user"]
            .as_str()
            .unwrap_or_default()
            .ends_with(":reader")
    );
    let (status, body) = permissions(Some(bob)).await;
    assert_eq!((status, &body["error"]), (403, &json!("forbidden")));
    let (status, body) = permissions(None).await;
    assert_eq!((status, &body["error"]), (401, &json!("missing-bearer")));
    let (status, body) = permissions(Some("not-a-token".to_owned())).await;
    assert_eq!((status, &body["error"]), (401, &json!("invalid-token")));

    // A reader sees the steps and no action at all.
    let b = &tab.browser;
    b.goto(&format!("{base}/")).await.expect("open the page");
    sign_in(b, &reader).await;
    until(b, "the eleven steps", &all_rows("pending")).await;
    until(
        b,
        "the permissions applied",
        "return document.getElementById('actions').dataset.permissions === 'loaded'",
    )
    .await;
    for button in ["start", "retry", "abort"] {
        assert!(!shown(b, button).await, "{button} shown to a reader");
    }

    env.close(tab, service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_is_confirmed_and_stops_the_running_step() {
    let (env, tab) = page_env().await;
    env.replace_step(CHART_STEPS[0], &[("SANDBOX_SIM_OUTCOME", "hang")])
        .await;
    let alice = env.user("alice", Some(common::chart_operator_role())).await;
    let mut config = ServiceConfig::new(env.ns());
    config.auth = AuthConfig::enabled();
    let service = env.service(config).await;
    let base = service.url();
    let b = &tab.browser;
    b.goto(&format!("{base}/")).await.expect("open the page");
    sign_in(b, &alice).await;
    until(b, "the eleven steps", &all_rows("pending")).await;
    let started = reqwest::Client::new()
        .post(format!("{base}/cutover"))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("start");
    assert_eq!(started.status(), 202);
    until(
        b,
        "the first step running",
        &row_is(CHART_STEPS[0], "running"),
    )
    .await;
    until(
        b,
        "the Abort button",
        "return !document.getElementById('abort').hidden",
    )
    .await;
    assert!(!shown(b, "start").await && !shown(b, "retry").await);

    // Cancelled, nothing happens; Escape cancels as well.
    let abort = || async {
        b.find(Locator::Id("abort"))
            .await
            .expect("abort")
            .click()
            .await
            .expect("click abort");
        until(
            b,
            "the confirmation",
            "return document.getElementById('confirm').open",
        )
        .await;
    };
    abort().await;
    b.find(Locator::Id("confirm-cancel"))
        .await
        .expect("cancel")
        .click()
        .await
        .expect("cancel");
    abort().await;
    press(b, Key::Escape).await;
    until(
        b,
        "the confirmation closed",
        "return !document.getElementById('confirm').open",
    )
    .await;
    let answer = reqwest::Client::new()
        .get(format!("{base}/cutover"))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("status")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(
        answer["phase"], "running",
        "a cancelled abort aborts nothing"
    );

    abort().await;
    b.find(Locator::Id("confirm-ok"))
        .await
        .expect("confirm")
        .click()
        .await
        .expect("confirm abort");
    until(b, "the aborted cutover", &phase_is("failed")).await;
    until(b, "the aborted step", &row_is(CHART_STEPS[0], "failed")).await;
    let error = eval(
        b,
        "return document.getElementById('last-error').textContent",
    )
    .await;
    assert!(
        error.as_str().unwrap_or_default().contains(":alice"),
        "the reason names who aborted: {error}"
    );
    assert!(!shown(b, "abort").await);
    assert!(shown(b, "retry").await);

    env.close(tab, service).await;
}

/// Clicks the button `id`, then confirms in the dialog.
async fn click_and_confirm(browser: &Client, id: &str) {
    for button in [id, "confirm-ok"] {
        browser
            .find(Locator::Id(button))
            .await
            .unwrap_or_else(|e| panic!("{button}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {button}: {e}"));
        if button == id {
            until(
                browser,
                "the confirmation",
                "return document.getElementById('confirm').open",
            )
            .await;
        }
    }
}

/// Issue 27 §6 and the console's sign-in: steps named after the page's own element ids
/// each keep their row (no id is built from a step name), and an operator signed in to the
/// console opens the page with its session cookie, no token pasted, and acts from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_named_after_the_pages_ids_keep_their_rows_under_a_console_session() {
    let driver = start_driver().await;
    let names = ["rows", "step-rows", "summary", "abort", "events"];
    let steps = names.iter().enumerate().map(|(index, name)| {
        let env: &[(&str, &str)] = if index == 0 {
            &[("SANDBOX_SIM_OUTCOME", "hang")]
        } else {
            &[]
        };
        job_step(index + 1, name, env)
    });
    let env = Env::builder().steps(steps).start().await;
    let ns = env.ns().to_owned();
    let operators = format!("{ns}-operators");
    let cookie = "catalyst_session=page-operator";
    let backend = Backend::start(vec![(
        cookie.to_owned(),
        Answer::User("console:olga".to_owned(), operators.clone()),
    )])
    .await;
    grant_group(
        &env.client(),
        &ns,
        &operators,
        common::chart_operator_role(),
    )
    .await;
    let mut config = ServiceConfig::new(&ns);
    config.auth = AuthConfig::enabled();
    config.forward_auth = Some(ForwardAuthConfig::new(&backend.url).expect("URL"));
    let service = env.service(config).await;
    let base = service.url();
    let b = &browser(&driver).await;

    // Signed in to the console: its session cookie is in the browser.
    b.goto(&format!("{base}/")).await.expect("open the page");
    eval(
        b,
        &format!("document.cookie = '{cookie}; path=/'; return true"),
    )
    .await;
    b.goto(&format!("{base}/")).await.expect("reopen the page");
    let every_row = format!(
        "const rows = [...document.querySelectorAll('#step-rows tr')]; \
         return rows.length === {} && rows.map(r => r.dataset.step).join() === '{}'",
        names.len(),
        names.join(",")
    );
    until(b, "a row per step", &every_row).await;
    let seen: Vec<String> = rows(b).await.into_iter().map(|r| r.0).collect();
    assert_eq!(seen, names, "each step its own row, in order");
    until(
        b,
        "the Start button",
        "return !document.getElementById('start').hidden",
    )
    .await;
    let dialog = eval(
        b,
        "return [document.getElementById('login').open, sessionStorage.length]",
    )
    .await;
    assert_eq!(dialog, json!([false, 0]), "no token asked for or kept");

    // Start from the page, with the session: the step named `rows` runs and Abort shows.
    click_and_confirm(b, "start").await;
    until(b, "the step named rows running", &row_is("rows", "running")).await;
    until(
        b,
        "the Abort button",
        "return !document.getElementById('abort').hidden",
    )
    .await;
    let table = eval(
        b,
        "const body = document.getElementById('step-rows'); \
         return [body.tagName, body.children.length, \
                 document.getElementById('summary').tagName]",
    )
    .await;
    assert_eq!(table, json!(["TBODY", names.len(), "P"]));
    click_and_confirm(b, "abort").await;
    until(b, "the aborted cutover", &phase_is("failed")).await;
    let error = eval(
        b,
        "return document.getElementById('last-error').textContent",
    )
    .await;
    assert!(
        error.as_str().unwrap_or_default().contains("console:olga"),
        "the session's user aborted: {error}"
    );

    let _ = b.clone().close().await;
    env.stop(service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_tether_appears_live_grouped_by_kind_and_goes_when_fixed() {
    let (env, tab) = page_env().await;
    // A host of this test's own: other tests' objects on a shared cluster are no tethers.
    let host = format!("{}.upstream.test", env.ns());
    let mut config = ServiceConfig::new(env.ns());
    let mut tethers = TetherConfig::new(env.ns(), &config.record_lease());
    tethers.upstream_hosts = vec![host.clone()];
    config.tethers = Some(tethers);
    let service = env.service(config).await;
    let b = &tab.browser;
    b.goto(&format!("{}/", service.url()))
        .await
        .expect("open the page");
    let count_is = |n: u64| {
        format!("return document.getElementById('tether-summary').dataset.count === '{n}'")
    };
    until(
        b,
        "a synced tether report",
        "return ['none', 'tethered'].includes(document.getElementById('tether-summary').dataset.state)",
    )
    .await;
    // Whatever else the cluster holds (its nodes' agents, say) stays as it is.
    let before = eval(
        b,
        "return Number(document.getElementById('tether-summary').dataset.count)",
    )
    .await
    .as_u64()
    .expect("a count");
    until(
        b,
        "a live stream",
        "return document.getElementById('connection').dataset.state === 'live'",
    )
    .await;

    // A value that would be markup if the page built markup from it.
    let value = format!("https://{host}/openova/platform?<img src=x id=planted-markup>");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "console-backend"},
        "spec": {"containers": [{"name": "app", "image": "registry.local/app:1",
                                 "env": [{"name": "REPO", "value": value}]}]}
    }))
    .expect("pod");
    let pods: Api<Pod> = Api::namespaced(env.client(), env.ns());
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("plant");
    // The object is the pod's owner, or the pod itself when it has none.
    let ns = env.ns();
    let row = format!(
        "[...document.querySelectorAll('.tether-group[data-kind=\"container-url\"] tr.tether')] \
         .find(r => r.dataset.object.startsWith('{ns}/') && r.dataset.object.endsWith('console-backend'))"
    );
    until(b, "the planted tether", &format!("return !!{row}")).await;
    until(b, "the count grown by one", &count_is(before + 1)).await;
    let shown = eval(
        b,
        &format!(
            "const r = {row}; return {{cells: [...r.children].map(c => c.textContent), \
             markup: !!document.getElementById('planted-markup'), \
             frames: [...document.querySelectorAll('#events li')].filter(li => li.dataset.event === 'cutover-tethers').length}}"
        ),
    )
    .await;
    let object = shown["cells"][0].as_str().unwrap_or_default();
    assert!(object.starts_with(&format!("{ns}/")), "{shown}");
    assert_eq!(shown["cells"][2], value.as_str(), "{shown}");
    assert_eq!(shown["cells"][3], host.as_str(), "{shown}");
    assert_eq!(shown["markup"], false, "the value is text, never markup");
    assert!(shown["frames"].as_u64().unwrap_or(0) >= 1, "{shown}");
    // The same count in the status body, and the gauge of its kind on /metrics.
    let http = reqwest::Client::new();
    let body: Value = http
        .get(format!("{}/cutover", service.url()))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("a status body");
    assert_eq!(body["tethers"]["count"], before + 1, "{}", body["tethers"]);
    assert_eq!(body["state"], "tethered");
    let metrics = http
        .get(format!("{}/metrics", service.url()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("exposition");
    assert!(
        metrics.contains("catalyst_cutover_tethers{kind=\"container-url\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("catalyst_cutover_tethers_synced 1"));

    pods.delete("console-backend", &DeleteParams::default().grace_period(0))
        .await
        .expect("fix");
    until(b, "the tether gone", &format!("return !{row}")).await;
    until(b, "the count as it was", &count_is(before)).await;
    env.close(tab, service).await;
}
