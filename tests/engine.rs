//! The cutover engine over real HTTP: the service under test talks to a Kubernetes API (the
//! sandbox, or `CUTOVER_TEST_KUBECONFIG`), the simulator runs the Jobs and the DaemonSet as
//! an API client, and the test drives the service through its own HTTP API.

mod common;

use catalyst_cutover::contract::{self, DEFAULT_STATUS_CONFIGMAP};
use catalyst_cutover::demo::AgentConfig;
use catalyst_cutover::pivot::{Direction, Directive, ack, files};
use catalyst_cutover::service::{Service, ServiceConfig};
use common::{Env, EnvBuilder, daemonset_step, job_step, step_cm};
use futures::future::join_all;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::KubeConfigOptions;
use kube::runtime::wait::await_condition;
use kube_sandbox::access_control::TokenTable;
use kube_sandbox::api::ApiServerConfig;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Upper bound for one cutover in these tests: a hang guard, not a speed assertion.
const GUARD: Duration = Duration::from_secs(60);
const DAEMONSET: &str = common::REGISTRY_PIVOT;

/// The engine's environment: `nodes` simulated nodes with the registry-pivot DaemonSet
/// rolled out on them and its agents.
fn engine_env(nodes: usize) -> EnvBuilder {
    Env::builder().nodes(nodes).registry_pivot()
}

/// What the engine's tests ask of their environment.
impl Env {
    /// The simulated nodes of this test, as the API lists them.
    async fn nodes(&self) -> Vec<String> {
        let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client());
        let selector = format!("sandbox.catalyst.openova.io/pool={}", self.ns());
        let mut names: Vec<String> = api
            .list(&ListParams::default().labels(&selector))
            .await
            .expect("nodes")
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        names.sort();
        names
    }

    fn config_for(&self, identity: &str) -> ServiceConfig {
        let mut config = self.service_config();
        config.identity = identity.to_owned();
        // A failing step fails after two pods: a real Job controller backs off 10 s before
        // the second (and 20, 40 s before more), which the tests need not wait for.
        config.render.backoff_limit = 1;
        config
    }

    async fn service(&self, identity: &str) -> Service {
        self.start_service(self.config_for(identity)).await
    }

    /// The names of the Jobs in the test's namespace.
    async fn job_names(&self) -> BTreeSet<String> {
        Api::<Job>::namespaced(self.client(), self.ns())
            .list(&ListParams::default())
            .await
            .expect("list Jobs")
            .items
            .into_iter()
            .filter_map(|j| j.metadata.name)
            .collect()
    }

    /// Waits until Job `name` exists.
    async fn wait_preflight_job(&self, name: &str) {
        let api: Api<Job> = Api::namespaced(self.client(), self.ns());
        tokio::time::timeout(
            GUARD,
            await_condition(api, name, |job: Option<&Job>| job.is_some()),
        )
        .await
        .expect("the Job appears in time")
        .expect("watch");
    }

    /// Jobs per step label in this namespace.
    async fn jobs_by_step(&self) -> BTreeMap<String, Vec<String>> {
        let api: Api<Job> = Api::namespaced(self.client(), self.ns());
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for job in api.list(&ListParams::default()).await.expect("jobs").items {
            let labels = job.metadata.labels.clone().unwrap_or_default();
            let step = labels
                .get(contract::LABEL_JOB_STEP)
                .cloned()
                .unwrap_or_default();
            out.entry(step)
                .or_default()
                .push(job.metadata.name.unwrap_or_default());
        }
        out
    }
}

/// What the simulated gitea-mirror reports in its termination message.
const MIRROR_OUTPUT: &str =
    r#"{"mirroredCommitSHA": "4f2a9c0d1e3b5a7968f0e1d2c3b4a5968778695a", "branches": "3"}"#;
/// What the simulated harbor-projects reports in its termination message.
const PROJECTS_OUTPUT: &str = r#"{"harborProjectCount": "4"}"#;

/// The chart's eleven steps, with the simulator's default behaviour for every Job; steps 01
/// and 02 report what the chart's scripts report.
fn chart_steps() -> Vec<ConfigMap> {
    vec![
        job_step(1, "gitea-mirror", &[("SANDBOX_SIM_OUTPUT", MIRROR_OUTPUT)]),
        job_step(
            2,
            "harbor-projects",
            &[("SANDBOX_SIM_OUTPUT", PROJECTS_OUTPUT)],
        ),
        job_step(3, "harbor-prewarm", &[]),
        daemonset_step(4, "registry-pivot"),
        job_step(5, "flux-gitrepository-patch", &[]),
        job_step(6, "helmrepository-patches", &[]),
        job_step(7, "catalyst-api-env-patch", &[]),
        job_step(8, "egress-block-test", &[]),
        job_step(9, "gitea-token-mint", &[]),
        job_step(10, "vcluster-registry-pivot", &[]),
        job_step(11, "crossplane-provider-pivot", &[]),
    ]
}

const STEPS: [&str; 11] = common::CHART_STEPS;
/// The Job steps among them: all but the daemonset-wait registry-pivot.
const JOB_STEPS: usize = STEPS.len() - 1;

async fn post(base: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    // With authentication off a POST must still declare JSON (see the security model).
    let mut req = client
        .post(format!("{base}{path}"))
        .header("content-type", "application/json");
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("POST");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let resp = reqwest::get(format!("{base}{path}")).await.expect("GET");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// Waits until the service's caches are synced.
async fn ready(base: &str) {
    common::wait_ready(base, GUARD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_runs_the_charts_eleven_steps_and_records_every_key_and_output() {
    let env = engine_env(3).start().await;
    env.add_steps(chart_steps()).await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;

    let (code, body) = post(&base, "/cutover", None).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["outcome"], "started");
    let data = env.wait_phase(&["complete", "failed"]).await;

    assert_eq!(data["cutoverPhase"], "complete", "{data:#?}");
    assert_eq!(data["cutoverComplete"], "true");
    assert_eq!(data["progressPercent"], "100");
    assert_eq!(data["totalSteps"], "11");
    assert_eq!(data["currentStep"], "");
    assert_eq!(data["failedStep"], "");
    assert_eq!(data["lastError"], "");
    assert_eq!(data["registriesYamlActive"], "v2");
    for key in [
        "cutoverStartedAt",
        "cutoverFinishedAt",
        "cutoverLastAttemptStartedAt",
    ] {
        assert!(
            data[key].parse::<jiff::Timestamp>().is_ok(),
            "{key}: {:?}",
            data[key]
        );
    }
    for step in STEPS {
        assert_eq!(data[&format!("step.{step}.result")], "success", "{step}");
        assert_eq!(data[&format!("step.{step}.attempt")], "1", "{step}");
        assert!(!data[&format!("step.{step}.startedAt")].is_empty());
        assert!(!data[&format!("step.{step}.finishedAt")].is_empty());
    }
    assert_eq!(data["step.registry-pivot.jobName"], DAEMONSET);
    assert_eq!(data["step.gitea-mirror.jobName"], "cutover-gitea-mirror-a1");
    for node in env.nodes().await {
        assert_eq!(data[&format!("node.{node}.registriesYaml")], "v2", "{node}");
    }
    let jobs = env.jobs_by_step().await;
    assert_eq!(jobs.len(), JOB_STEPS, "{jobs:?}");
    assert!(jobs.values().all(|j| j.len() == 1), "{jobs:?}");
    // What steps 01 and 02 reported, under each step and, for the console, at the top.
    let sha = "4f2a9c0d1e3b5a7968f0e1d2c3b4a5968778695a";
    assert_eq!(data["step.gitea-mirror.output.mirroredCommitSHA"], sha);
    assert_eq!(data["step.gitea-mirror.output.branches"], "3");
    assert_eq!(data["step.harbor-projects.output.harborProjectCount"], "4");
    assert_eq!(data["mirroredCommitSHA"], sha);
    assert_eq!(data["harborProjectCount"], "4");
    let outputs = data.keys().filter(|k| k.contains(".output.")).count();
    assert_eq!(outputs, 3, "only what was reported: {data:#?}");

    let (code, body) = get(&base, "/cutover").await;
    assert_eq!(code, 200);
    assert_eq!(body["state"], "sovereign");
    let names: Vec<&str> = body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, STEPS, "steps in execution order");
    assert_eq!(body["mirroredCommitSHA"], sha);
    assert_eq!(body["harborProjectCount"], 4);
    assert_eq!(body["raw"]["mirroredCommitSHA"], sha);

    let (code, body) = post(&base, "/cutover", None).await;
    assert_eq!(code, 200);
    assert_eq!(body["outcome"], "cutover-already-complete");

    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_stays_failed_with_its_reason_until_retried() {
    let env = engine_env(1).start().await;
    env.add_steps(vec![
        job_step(1, "first", &[]),
        job_step(
            2,
            "second",
            &[
                ("SANDBOX_SIM_OUTCOME", "fail"),
                ("SANDBOX_SIM_FAIL_ATTEMPTS", "4"),
                (
                    "SANDBOX_SIM_MESSAGE",
                    "harbor answered 503 for library/nginx",
                ),
            ],
        ),
        job_step(3, "third", &[]),
    ])
    .await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;
    assert_eq!(post(&base, "/cutover", None).await.0, 202);
    let data = env.wait_phase(&["failed", "complete"]).await;
    assert_eq!(data["cutoverPhase"], "failed");
    assert_eq!(data["failedStep"], "second");
    assert!(
        data.get("step.doomed.result").is_none_or(String::is_empty),
        "the runner died before the step: {data:#?}"
    );
    assert_eq!(data["step.second.result"], "failed");
    let error = &data["lastError"];
    assert!(error.contains("cutover-second-a1"), "{error}");
    assert!(error.contains("BackoffLimitExceeded"), "{error}");
    assert!(
        error.contains("harbor answered 503 for library/nginx"),
        "{error}"
    );

    let (code, body) = post(&base, "/cutover", None).await;
    assert_eq!(code, 409);
    assert_eq!(body["error"], "cutover-failed");
    assert!(body["detail"].as_str().unwrap().contains("second"));
    assert_eq!(
        env.status().await["lastError"],
        *error,
        "a refused start keeps the reason"
    );

    // The operator fixes the cause (here: the step itself), then retries.
    let api: Api<ConfigMap> = Api::namespaced(env.client(), env.ns());
    api.replace("cutover-step-02-second", &PostParams::default(), &{
        let mut cm = job_step(2, "second", &[]);
        cm.metadata.resource_version = api
            .get("cutover-step-02-second")
            .await
            .unwrap()
            .metadata
            .resource_version;
        cm
    })
    .await
    .unwrap();
    let (code, body) = post(&base, "/cutover/retry", None).await;
    assert_eq!(code, 202, "{body}");
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "complete", "{data:#?}");
    assert_eq!(data["step.second.attempt"], "2");
    assert_eq!(data["step.second.jobName"], "cutover-second-a2");
    assert_eq!(data["step.first.attempt"], "1", "earlier success kept");
    let jobs = env.jobs_by_step().await;
    assert_eq!(jobs["first"].len(), 1);
    assert_eq!(jobs["second"].len(), 2);

    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_deletes_the_running_job_and_names_who_aborted() {
    let env = engine_env(1).start().await;
    env.add_steps(vec![
        job_step(1, "stuck", &[("SANDBOX_SIM_OUTCOME", "hang")]),
        job_step(2, "never", &[]),
    ])
    .await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;
    assert_eq!(
        post(&base, "/cutover/abort", None).await.0,
        409,
        "nothing to abort"
    );
    assert_eq!(post(&base, "/cutover", None).await.0, 202);
    env.wait_step("stuck", "running").await;
    let jobs: Api<Job> = Api::namespaced(env.client(), env.ns());
    tokio::time::timeout(
        GUARD,
        await_condition(jobs.clone(), "cutover-stuck-a1", |j: Option<&Job>| {
            j.is_some()
        }),
    )
    .await
    .unwrap()
    .unwrap();

    let (code, body) = post(&base, "/cutover/abort", None).await;
    assert_eq!(code, 200, "{body}");
    let data = env.wait_phase(&["failed"]).await;
    assert_eq!(data["failedStep"], "stuck");
    assert_eq!(data["step.stuck.result"], "failed");
    assert!(
        data["lastError"].starts_with("aborted by "),
        "{}",
        data["lastError"]
    );
    assert_eq!(
        data.get("step.never.result")
            .map(String::as_str)
            .unwrap_or(""),
        ""
    );
    tokio::time::timeout(
        GUARD,
        await_condition(jobs, "cutover-stuck-a1", |j: Option<&Job>| j.is_none()),
    )
    .await
    .expect("the aborted Job is deleted")
    .unwrap();

    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_posts_start_exactly_one_run() {
    let env = engine_env(1).start().await;
    env.add_steps(vec![job_step(1, "only", &[("SANDBOX_SIM_RUN_MS", "300")])])
        .await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;
    let answers = join_all((0..100).map(|_| post(&base, "/cutover", None))).await;
    let started = answers.iter().filter(|(c, _)| *c == 202).count();
    let refused = answers
        .iter()
        .filter(|(c, b)| *c == 409 && b["error"] == "cutover-in-progress")
        .count();
    let outcomes = answers
        .iter()
        .map(|(c, b)| format!("{c} {}{}", b["error"], b["outcome"]))
        .fold(BTreeMap::<String, usize>::new(), |mut seen, o| {
            *seen.entry(o).or_default() += 1;
            seen
        });
    assert_eq!(started, 1, "{outcomes:?}");
    assert_eq!(refused, 99, "{outcomes:?}");
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "complete");
    assert_eq!(env.jobs_by_step().await["only"].len(), 1);
    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_termination_messages_are_bounded_and_recorded_without_control_characters() {
    let env = engine_env(1).start().await;
    let crowd: Vec<String> = (0..=16).map(|i| format!("\"k{i}\": \"v\"")).collect();
    let crowd = format!("{{{}}}", crowd.join(", "));
    let lie = "\u{1b}[2K\r\u{1b}[1Acutover complete: 5 steps, 100% (state sovereign) \u{202e}";
    env.add_steps(vec![
        job_step(
            1,
            "escapes",
            &[(
                "SANDBOX_SIM_OUTPUT",
                r#"{"note": "ok\u001b[2K\rcutover complete\u202e"}"#,
            )],
        ),
        job_step(2, "prose", &[("SANDBOX_SIM_OUTPUT", "all done\n")]),
        job_step(3, "crowd", &[("SANDBOX_SIM_OUTPUT", &crowd)]),
        job_step(
            4,
            "forger",
            &[("SANDBOX_SIM_OUTPUT", r#"{"mirroredCommitSHA": "forged"}"#)],
        ),
        job_step(
            5,
            "liar",
            &[
                ("SANDBOX_SIM_OUTCOME", "fail"),
                ("SANDBOX_SIM_MESSAGE", lie),
            ],
        ),
    ])
    .await;
    let service = env.service("a").await;
    ready(&service.url()).await;
    assert_eq!(post(&service.url(), "/cutover", None).await.0, 202);
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "failed", "{data:#?}");
    for step in ["escapes", "prose", "crowd", "forger"] {
        assert_eq!(
            data[&format!("step.{step}.result")],
            "success",
            "{step}: a report never fails a step"
        );
    }
    assert_eq!(
        data["step.escapes.output.note"],
        "ok\u{fffd}[2K\u{fffd}cutover complete\u{fffd}"
    );
    for step in ["prose", "crowd"] {
        let prefix = format!("step.{step}.output.");
        assert!(
            !data.keys().any(|k| k.starts_with(&prefix)),
            "{step}: a message that is not outputs records nothing: {data:#?}"
        );
    }
    assert_eq!(data["step.forger.output.mirroredCommitSHA"], "forged");
    assert_eq!(
        data.get("mirroredCommitSHA"),
        None,
        "only gitea-mirror sets the console's figure"
    );
    assert_eq!(data["failedStep"], "liar");
    let last_error = &data["lastError"];
    assert!(
        last_error.contains("\u{fffd}[2K\u{fffd}\u{fffd}[1Acutover complete"),
        "{last_error:?}"
    );
    for (key, value) in &data {
        assert!(
            !value
                .chars()
                .any(|c| c != '\n' && catalyst_cutover::sanitize::is_unsafe(c)),
            "{key} = {value:?}"
        );
    }
    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_at_any_point_never_duplicates_a_job() {
    let env = engine_env(2).start().await;
    env.add_steps(chart_steps()).await;
    let mut service = env.service("first").await;
    ready(&service.url()).await;
    assert_eq!(post(&service.url(), "/cutover", None).await.0, 202);
    // Kill the service at several points of the run, each time starting a fresh replica
    // that must resume from the status ConfigMap.
    for (i, step) in [
        "harbor-projects",
        "registry-pivot",
        "helmrepository-patches",
    ]
    .iter()
    .enumerate()
    {
        env.wait_step(step, "running").await;
        service.kill();
        service = env.service(&format!("restart-{i}")).await;
    }
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "complete", "{data:#?}");
    let jobs = env.jobs_by_step().await;
    assert_eq!(jobs.len(), JOB_STEPS, "{jobs:?}");
    for (step, names) in &jobs {
        assert_eq!(names.len(), 1, "step {step} ran more than once: {names:?}");
    }
    for step in STEPS {
        assert_eq!(data[&format!("step.{step}.result")], "success", "{step}");
        assert_eq!(data[&format!("step.{step}.attempt")], "1", "{step}");
    }
    assert_eq!(
        data["mirroredCommitSHA"], "4f2a9c0d1e3b5a7968f0e1d2c3b4a5968778695a",
        "a resumed run still records what each step reported"
    );
    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_finished_while_the_service_was_down_is_recorded() {
    let env = engine_env(1).start().await;
    env.add_steps(vec![
        job_step(1, "slow", &[("SANDBOX_SIM_RUN_MS", "400")]),
        job_step(2, "after", &[]),
    ])
    .await;
    let service = env.service("a").await;
    ready(&service.url()).await;
    assert_eq!(post(&service.url(), "/cutover", None).await.0, 202);
    env.wait_step("slow", "running").await;
    let jobs: Api<Job> = Api::namespaced(env.client(), env.ns());
    tokio::time::timeout(
        GUARD,
        await_condition(jobs.clone(), "cutover-slow-a1", |j: Option<&Job>| {
            j.is_some()
        }),
    )
    .await
    .unwrap()
    .unwrap();
    service.kill();
    let complete = |job: Option<&Job>| {
        job.and_then(|j| j.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Complete" && c.status == "True")
            })
    };
    tokio::time::timeout(GUARD, await_condition(jobs, "cutover-slow-a1", complete))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        env.status().await["step.slow.result"],
        "running",
        "nobody recorded it yet"
    );

    let service = env.service("b").await;
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "complete");
    assert_eq!(env.jobs_by_step().await["slow"].len(), 1);
    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_one_runner_and_fail_over() {
    let env = engine_env(1).start().await;
    let steps: Vec<ConfigMap> = (1..=4)
        .map(|i| job_step(i, &format!("s{i}"), &[("SANDBOX_SIM_RUN_MS", "150")]))
        .collect();
    env.add_steps(steps).await;
    let a = env.service("replica-a").await;
    let b = env.service("replica-b").await;
    ready(&a.url()).await;
    ready(&b.url()).await;
    // Start through the replica that may not lead: the leader picks it up from the status.
    let (code, _) = post(&b.url(), "/cutover", None).await;
    assert_eq!(code, 202);
    let (code, body) = post(&a.url(), "/cutover", None).await;
    assert_eq!(code, 409, "{body}");
    env.wait_step("s2", "running").await;

    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.client(), env.ns());
    let holder = leases
        .get("catalyst-cutover")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    let survivor = if holder == "replica-a" {
        a.kill();
        b
    } else {
        b.kill();
        a
    };
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "complete", "{data:#?}");
    let jobs = env.jobs_by_step().await;
    assert!(jobs.values().all(|j| j.len() == 1), "{jobs:?}");
    // Once idle, the survivor releases the Lease it took over.
    let released = |l: Option<&k8s_openapi::api::coordination::v1::Lease>| {
        l.and_then(|l| l.spec.as_ref())
            .is_some_and(|s| s.holder_identity.is_none())
    };
    tokio::time::timeout(
        GUARD,
        await_condition(leases.clone(), "catalyst-cutover", released),
    )
    .await
    .expect("an idle service holds no Lease")
    .unwrap();
    let lease = leases.get("catalyst-cutover").await.unwrap().spec.unwrap();
    assert_eq!(
        lease.lease_transitions,
        Some(2),
        "the survivor took the Lease over"
    );
    survivor.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_writer_loses_no_transition_and_no_key_of_its_own() {
    let env = engine_env(1).start().await;
    let steps: Vec<ConfigMap> = (1..=5)
        .map(|i| job_step(i, &format!("s{i}"), &[]))
        .collect();
    env.add_steps(steps).await;
    let service = env.service("a").await;
    ready(&service.url()).await;
    let api: Api<ConfigMap> = Api::namespaced(env.client(), env.ns());
    let writer = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            loop {
                let patch =
                    json!({"data": {format!("node.writer-{}.registriesYaml", n % 50): "v1"}});
                let _ = api
                    .patch(
                        DEFAULT_STATUS_CONFIGMAP,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await;
                n += 1;
                tokio::task::yield_now().await;
            }
        })
    };
    assert_eq!(post(&service.url(), "/cutover", None).await.0, 202);
    let data = env.wait_phase(&["complete", "failed"]).await;
    writer.abort();
    assert_eq!(data["cutoverPhase"], "complete");
    for i in 1..=5 {
        assert_eq!(data[&format!("step.s{i}.result")], "success");
        assert!(!data[&format!("step.s{i}.finishedAt")].is_empty());
    }
    assert!(
        data.keys().any(|k| k.starts_with("node.writer-")),
        "writer's keys kept"
    );
    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_wait_ignores_stale_acks_and_follows_a_replaced_node() {
    let env = engine_env(2).start().await;
    env.add_steps(vec![
        daemonset_step(1, "registry-pivot"),
        job_step(2, "after", &[]),
    ])
    .await;
    let nodes = env.nodes().await;
    let stuck = nodes[0].clone();
    env.agents().set_never_ack(&stuck, true);
    // A stale acknowledgement of a node that no longer exists must not count.
    let api: Api<ConfigMap> = Api::namespaced(env.client(), env.ns());
    let service = env.service("a").await;
    ready(&service.url()).await;
    api.patch(
        DEFAULT_STATUS_CONFIGMAP,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"node.gone-node.registriesYaml": "v2"}})),
    )
    .await
    .unwrap();
    assert_eq!(post(&service.url(), "/cutover", None).await.0, 202);
    env.wait_step("registry-pivot", "running").await;
    let other = format!("node.{}.registriesYaml", nodes[1]);
    let cond = move |cm: Option<&ConfigMap>| {
        cm.and_then(|c| c.data.as_ref())
            .and_then(|d| d.get(&other))
            .is_some_and(|v| v == "v2")
    };
    tokio::time::timeout(
        GUARD,
        await_condition(api.clone(), DEFAULT_STATUS_CONFIGMAP, cond),
    )
    .await
    .unwrap()
    .unwrap();
    let data = env.status().await;
    assert_eq!(
        data["step.registry-pivot.result"], "running",
        "one node has not acknowledged"
    );
    assert_eq!(data["registriesYamlActive"], "v2");

    // The stuck node is replaced: the new node must acknowledge before the step completes.
    let replacement = env.sim.add_node().await.expect("add node");
    env.sim.delete_node(&stuck).await.expect("delete node");
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "complete", "{data:#?}");
    assert_eq!(
        data.get(&format!("node.{replacement}.registriesYaml"))
            .map(String::as_str),
        Some("v2")
    );
    assert_eq!(data.get(&format!("node.{stuck}.registriesYaml")), None);
    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_steps_start_nothing_and_every_problem_is_reported() {
    let env = engine_env(1).start().await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;
    let (code, body) = post(&base, "/cutover", None).await;
    assert_eq!(code, 424, "{body}");
    assert_eq!(body["error"], "no-steps-found");

    let mut no_order = job_step(1, "no-order", &[]);
    no_order
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .remove(contract::LABEL_STEP_ORDER);
    let mut bad_mode = job_step(2, "bad-mode", &[]);
    bad_mode
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(contract::LABEL_STEP_MODE.to_owned(), "cronjob".to_owned());
    let mut always = job_step(3, "always", &[]);
    always.data.as_mut().unwrap().insert(
        contract::DATA_POD_SPEC.to_owned(),
        "restartPolicy: Always\ncontainers: [{name: x, image: alpine:3.20}]\n".to_owned(),
    );
    let mut unparsable = job_step(4, "unparsable", &[]);
    unparsable.data.as_mut().unwrap().insert(
        contract::DATA_POD_SPEC.to_owned(),
        "containers: [\n  - {".to_owned(),
    );
    let mut no_containers = job_step(5, "no-containers", &[]);
    no_containers.data.as_mut().unwrap().insert(
        contract::DATA_POD_SPEC.to_owned(),
        "containers: []\n".to_owned(),
    );
    let duplicate = job_step(5, "duplicate-order", &[]);
    let mut missing_ds = daemonset_step(6, "pivot");
    missing_ds.metadata.labels.as_mut().unwrap().insert(
        contract::LABEL_STEP_DAEMONSET.to_owned(),
        "no-such-ds".to_owned(),
    );
    let mut ds_with_pod = daemonset_step(7, "pivot-with-pod");
    ds_with_pod.data.as_mut().unwrap().insert(
        contract::DATA_POD_SPEC.to_owned(),
        "containers: [{name: x, image: alpine:3.20}]\n".to_owned(),
    );
    let mut bad_name = job_step(8, "x", &[]);
    bad_name.data.as_mut().unwrap().insert(
        contract::DATA_STEP_NAME.to_owned(),
        "Not A Valid Name!".to_owned(),
    );
    let mut word_order = job_step(9, "word-order", &[]);
    word_order
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(contract::LABEL_STEP_ORDER.to_owned(), "ninth".to_owned());
    let mut no_name = job_step(10, "no-name", &[]);
    no_name
        .data
        .as_mut()
        .unwrap()
        .remove(contract::DATA_STEP_NAME);
    let mut same_name = job_step(11, "same-name", &[]);
    same_name
        .data
        .as_mut()
        .unwrap()
        .insert(contract::DATA_STEP_NAME.to_owned(), "no-order".to_owned());
    let mut no_pod_spec = job_step(12, "no-pod-spec", &[]);
    no_pod_spec
        .data
        .as_mut()
        .unwrap()
        .remove(contract::DATA_POD_SPEC);
    env.add_steps(vec![
        word_order,
        no_name,
        same_name,
        no_pod_spec,
        no_order,
        bad_mode,
        always,
        unparsable,
        no_containers,
        duplicate,
        missing_ds,
        ds_with_pod,
        bad_name,
    ])
    .await;
    let status_before = env.status().await;
    let (code, body) = post(&base, "/cutover", None).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["error"], "invalid-steps");
    let detail = body["detail"].as_str().unwrap();
    for needle in [
        "cutover-step-01-no-order",
        "cutover-step-02-bad-mode",
        "cutover-step-03-always",
        "cutover-step-04-unparsable",
        "cutover-step-05-no-containers",
        "cutover-step-05-duplicate-order",
        "cutover-step-06-pivot",
        "no-such-ds",
        "cutover-step-07-pivot-with-pod",
        "cutover-step-08-x",
        "cutover-step-09-word-order",
        "cutover-step-10-no-name",
        "duplicate stepName \"no-order\"",
        "cutover-step-12-no-pod-spec",
        "line 3 column 1",
    ] {
        assert!(detail.contains(needle), "report lacks {needle}:\n{detail}");
    }
    assert!(env.jobs_by_step().await.is_empty(), "no Job created");
    assert_eq!(env.status().await, status_before, "status untouched");
    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_watches_and_an_api_server_restart_mid_step_do_not_derail_the_run() {
    use kube_sandbox::faults::FaultProxy;
    let env = engine_env(2).start().await;
    let mut steps = vec![
        job_step(1, "before", &[("SANDBOX_SIM_RUN_MS", "300")]),
        job_step(2, "during", &[("SANDBOX_SIM_RUN_MS", "1500")]),
    ];
    steps.push(daemonset_step(3, "registry-pivot"));
    steps.push(job_step(4, "after", &[("SANDBOX_SIM_RUN_MS", "300")]));
    env.add_steps(steps).await;
    let proxy = FaultProxy::start(env.cluster.config().await)
        .await
        .expect("proxy");
    let faults = proxy.faults();
    let through_proxy =
        kube::Config::from_custom_kubeconfig(proxy.kubeconfig(), &KubeConfigOptions::default())
            .await
            .expect("proxy kube config");
    let service = Service::start(through_proxy, env.config_for("a"))
        .await
        .expect("service");
    ready(&service.url()).await;
    faults.cut_watches_every(Some(Duration::from_millis(300)));
    assert_eq!(post(&service.url(), "/cutover", None).await.0, 202);
    env.wait_step("during", "running").await;
    faults.restart(Duration::from_secs(1)).await;
    faults.set_error_rate(0.2, http::StatusCode::INTERNAL_SERVER_ERROR);
    env.wait_step("registry-pivot", "running").await;
    faults.set_error_rate(0.0, http::StatusCode::INTERNAL_SERVER_ERROR);
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "complete", "{data:#?}");
    let jobs = env.jobs_by_step().await;
    assert!(jobs.values().all(|j| j.len() == 1), "{jobs:?}");
    for step in ["before", "during", "registry-pivot", "after"] {
        assert_eq!(data[&format!("step.{step}.result")], "success", "{step}");
    }
    faults.clear();
    service.shutdown().await;
    proxy.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_the_earlier_implementations_status_and_resumes_it() {
    let env = engine_env(1).start().await;
    env.add_steps(vec![
        job_step(1, "gitea-mirror", &[]),
        job_step(2, "harbor-projects", &[]),
        job_step(3, "harbor-prewarm", &[]),
    ])
    .await;
    // What the earlier implementation left behind when it crashed mid-step a minute ago: no
    // phase, no schemaVersion, no attempts, a stale totalSteps and a `running` row.
    let minute_ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let earlier: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": DEFAULT_STATUS_CONFIGMAP, "labels": {
            contract::LABEL_COMPONENT: contract::COMPONENT_STATUS}},
        "data": {
            "cutoverComplete": "false",
            "cutoverStartedAt": "2026-01-01T00:00:00Z",
            "currentStep": "harbor-projects",
            "currentStepIndex": "1",
            "totalSteps": "5",
            "progressPercent": "20",
            "registriesYamlActive": "v1",
            "step.gitea-mirror.result": "success",
            "step.gitea-mirror.startedAt": "2026-01-01T00:00:00Z",
            "step.gitea-mirror.finishedAt": "2026-01-01T00:01:00Z",
            "step.gitea-mirror.jobName": "cutover-gitea-mirror",
            "step.harbor-projects.result": "running",
            "step.harbor-projects.startedAt": minute_ago,
            "step.harbor-projects.jobName": "cutover-harbor-projects",
            "operatorNote": "kept"
        }
    }))
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(env.client(), env.ns());
    api.create(&PostParams::default(), &earlier).await.unwrap();

    let service = env.service("a").await;
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "complete", "{data:#?}");
    assert_eq!(data["schemaVersion"], "2");
    assert_eq!(
        data["cutoverStartedAt"], "2026-01-01T00:00:00Z",
        "first start kept"
    );
    assert_eq!(data["operatorNote"], "kept", "no key lost");
    assert_eq!(data["totalSteps"], "3", "stale totalSteps corrected");
    assert_eq!(
        data["step.gitea-mirror.jobName"], "cutover-gitea-mirror",
        "done step untouched"
    );
    assert_eq!(
        data["step.harbor-projects.jobName"], "cutover-harbor-projects",
        "resumed under its recorded Job"
    );
    let jobs = env.jobs_by_step().await;
    assert!(
        !jobs.contains_key("gitea-mirror"),
        "a finished step is not run again"
    );
    assert_eq!(
        jobs["harbor-projects"],
        vec!["cutover-harbor-projects".to_owned()]
    );
    service.shutdown().await;

    // `catalyst-cutover migrate` against the same cluster: nothing left to do.
    let kubeconfig = env.kubeconfig_file();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_catalyst-cutover"))
        .args(["migrate", "--namespace", env.ns(), "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("already at schema version 2"), "{stdout}");
    let _ = std::fs::remove_file(kubeconfig);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_has_a_deadline() {
    let env = engine_env(2).start().await;
    env.add_steps(vec![job_step(
        1,
        "hangs",
        &[("SANDBOX_SIM_OUTCOME", "hang")],
    )])
    .await;
    let mut config = env.config_for("a");
    config.render.step_deadline = Duration::from_secs(1);
    let service = Service::start(env.cluster.config().await, config.clone())
        .await
        .unwrap();
    ready(&service.url()).await;
    assert_eq!(post(&service.url(), "/cutover", None).await.0, 202);
    let data = env.wait_phase(&["failed", "complete"]).await;
    assert_eq!(data["failedStep"], "hangs");
    assert!(
        data["lastError"].contains("DeadlineExceeded"),
        "{}",
        data["lastError"]
    );
    service.shutdown().await;

    // A daemonset-wait step whose node never acknowledges fails at its deadline, naming it.
    let api: Api<ConfigMap> = Api::namespaced(env.client(), env.ns());
    api.delete("cutover-step-01-hangs", &Default::default())
        .await
        .unwrap();
    api.delete(DEFAULT_STATUS_CONFIGMAP, &Default::default())
        .await
        .unwrap();
    // Starting over on purpose: the operator also removes the cutover's durable record,
    // without which a lost status answers 409 status-lost.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.client(), env.ns());
    leases
        .delete(
            &format!("{}-record", config.lease_name),
            &Default::default(),
        )
        .await
        .unwrap();
    env.add_steps(vec![daemonset_step(1, "registry-pivot")])
        .await;
    let silent = env.nodes().await[0].clone();
    env.agents().set_never_ack(&silent, true);
    // Long enough that a loaded machine (CI: 2 cores, every suite at once) has seen the
    // nodes before it passes; the reason must then name the silent one.
    config.render.step_deadline = Duration::from_secs(3);
    let service = Service::start(env.cluster.config().await, config)
        .await
        .unwrap();
    ready(&service.url()).await;
    assert_eq!(post(&service.url(), "/cutover", None).await.0, 202);
    let data = env.wait_phase(&["failed", "complete"]).await;
    assert_eq!(data["failedStep"], "registry-pivot");
    let error = &data["lastError"];
    assert!(
        error.contains("within 3s") && error.contains(&silent),
        "{error}"
    );
    service.shutdown().await;
    env.cleanup().await;
}

/// Reads `serve`'s log lines into `lines` until one satisfies `done`.
async fn log_until(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    lines: &mut Vec<Value>,
    done: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        let Ok(Some(line)) = tokio::time::timeout(GUARD, rx.recv()).await else {
            panic!("serve logged nothing more in time; so far: {lines:#?}");
        };
        let json: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        lines.push(json.clone());
        if done(&json) {
            return json;
        }
    }
}

/// `serve` as it runs in a cluster, its stderr a pipe, authenticating callers: JSON lines;
/// every line of a step's work names the run, the step, the attempt and the Job; every
/// request line its request id; probes stay out of the info log; no bearer token, good or
/// bad, ever shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_json_lines_naming_the_step_and_the_request() {
    const BAD_TOKEN: &str = "a-bearer-token-that-must-not-be-logged";
    let env = engine_env(1).start().await;
    env.add_steps(vec![job_step(1, "logged", &[]), daemonset_step(2, "pivot")])
        .await;
    common::create_service_account(&env.client(), env.ns(), "operator").await;
    common::grant(
        &env.client(),
        env.ns(),
        "operator",
        common::role("cutover-log-test-operator", &["get", "create"]),
    )
    .await;
    let token = common::token_of(
        &common::request_token(&env.client(), env.ns(), "operator", None)
            .await
            .expect("token request"),
    );
    let kubeconfig = env.kubeconfig_file();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_catalyst-cutover"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--probe-listen",
            "127.0.0.1:0",
        ])
        .arg("--namespace")
        .arg(env.ns())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        // The simulator's bare test PodSpecs meet no Pod Security level; this test is
        // about logs.
        .args([
            "--step-policy",
            "privileged",
            "--step-service-accounts",
            "*",
        ])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let message = |line: &Value| line["fields"]["message"].as_str().unwrap_or("").to_owned();
    let mut lines = Vec::new();
    let serving = log_until(&mut rx, &mut lines, |l| {
        message(l) == "catalyst-cutover is serving"
    })
    .await;
    let url = format!("http://{}", serving["fields"]["addr"].as_str().unwrap());
    ready(&url).await;
    let client = reqwest::Client::new();
    let refused = client
        .post(format!("{url}/cutover"))
        .bearer_auth(BAD_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let started = client
        .post(format!("{url}/cutover"))
        .bearer_auth(&token)
        .header("x-request-id", "from-the-test")
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    log_until(&mut rx, &mut lines, |l| {
        message(l) == "every step succeeded; completing the cutover"
    })
    .await;
    assert_eq!(
        env.wait_phase(&["complete", "failed"]).await["cutoverPhase"],
        "complete"
    );
    assert_eq!(
        client
            .get(format!("{url}/cutover"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    log_until(&mut rx, &mut lines, |l| {
        l["span"]["name"] == "http"
            && l["span"]["method"] == "GET"
            && l["span"]["path"] == "/cutover"
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(kubeconfig);
    let all = serde_json::to_string(&lines).unwrap();

    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
    }
    let in_step = |step: &str, text: &str| {
        lines
            .iter()
            .find(|l| {
                l["span"]["name"] == "step" && l["span"]["step"] == step && message(l) == text
            })
            .unwrap_or_else(|| panic!("no {text:?} line in step {step}'s span: {all}"))
            .clone()
    };
    let status = env.status().await;
    for (step, text, job) in [
        ("logged", "created the Job", "cutover-logged-a1"),
        ("logged", "step succeeded", "cutover-logged-a1"),
        ("pivot", "every node is on registries v2", DAEMONSET),
        ("pivot", "step succeeded", DAEMONSET),
    ] {
        let line = in_step(step, text);
        assert_eq!(line["span"]["job"], job, "{line}");
        assert_eq!(line["span"]["attempt"], 1, "{line}");
        assert_eq!(
            line["span"]["run"].as_str(),
            Some(status["cutoverLastAttemptStartedAt"].as_str()),
            "{line}"
        );
    }
    let answered: Vec<&Value> = lines.iter().filter(|l| message(l) == "answered").collect();
    assert!(
        answered
            .iter()
            .any(|l| l["span"]["request_id"] == "from-the-test"
                && l["span"]["path"] == "/cutover"
                && l["fields"]["status"] == 202),
        "{all}"
    );
    for line in &answered {
        assert!(
            line["span"]["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{line}"
        );
        if line["level"] == "INFO" {
            assert_ne!(line["span"]["path"], "/readyz", "probes log at debug level");
        }
    }
    assert!(
        !all.contains(BAD_TOKEN),
        "a refused bearer token reached the log"
    );
    assert!(!all.contains(&token), "a bearer token reached the log");
    env.cleanup().await;
}

/// A `preflight` step ConfigMap whose pod behaves as `env` tells the simulator.
fn preflight_step(order: u32, name: &str, env: &[(&str, &str)]) -> ConfigMap {
    let mut cm = job_step(order, name, env);
    cm.metadata
        .labels
        .get_or_insert_default()
        .insert(contract::LABEL_STEP_MODE.to_owned(), "preflight".to_owned());
    cm
}

/// The names of the status body's steps, in the order the body lists them.
fn body_step_names(body: &Value) -> Vec<String> {
    body["steps"]
        .as_array()
        .expect("steps[]")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_preflight_starts_no_changing_step_and_a_retry_runs_every_preflight_anew() {
    let env = engine_env(1).start().await;
    let checks = "preflight: Gitea at https://gitea.example answered 401: fix GITEA_USERNAME/GITEA_PASSWORD\n\
                  preflight: Harbor at https://harbor.example answered 403: give HARBOR_USERNAME the project admin role";
    env.add_steps(vec![
        job_step(1, "first", &[]),
        daemonset_step(2, "pivot"),
        job_step(3, "last", &[]),
        // Preflights run first whatever their order, in their own order.
        preflight_step(
            9,
            "reach",
            &[
                ("SANDBOX_SIM_OUTCOME", "fail"),
                ("SANDBOX_SIM_FAIL_ATTEMPTS", "4"),
                ("SANDBOX_SIM_MESSAGE", checks),
            ],
        ),
        preflight_step(0, "creds", &[]),
    ])
    .await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;
    assert_eq!(post(&base, "/cutover", None).await.0, 202);
    let data = env.wait_phase(&["failed", "complete"]).await;
    assert_eq!(data["cutoverPhase"], "failed", "{data:#?}");
    assert_eq!(data["failedStep"], "reach");
    assert_eq!(data["totalSteps"], "5");
    assert_eq!(data["step.creds.result"], "success");
    assert_eq!(data["step.reach.jobName"], "cutover-reach-a1");
    for line in checks.lines() {
        assert!(
            data["lastError"].contains(line),
            "{line}\n{}",
            data["lastError"]
        );
    }
    for changing in ["first", "pivot", "last"] {
        assert_eq!(
            data.get(&format!("step.{changing}.result"))
                .map(String::as_str)
                .unwrap_or(""),
            "",
            "{changing} started"
        );
    }
    assert_eq!(data["registriesYamlActive"], "v1", "the pivot never began");
    let jobs = env.jobs_by_step().await;
    assert_eq!(
        jobs.keys().map(String::as_str).collect::<Vec<_>>(),
        ["creds", "reach"],
        "only the preflights ran"
    );
    let (code, body) = get(&base, "/cutover").await;
    assert_eq!(code, 200);
    assert_eq!(
        body_step_names(&body),
        ["creds", "reach", "first", "pivot", "last"]
    );

    // The operator fixes the cause, then retries: every preflight runs again, anew.
    let api: Api<ConfigMap> = Api::namespaced(env.client(), env.ns());
    let name = "cutover-step-09-reach";
    let mut fixed = preflight_step(9, "reach", &[]);
    fixed.metadata.resource_version = api.get(name).await.unwrap().metadata.resource_version;
    api.replace(name, &PostParams::default(), &fixed)
        .await
        .unwrap();
    let (code, body) = post(&base, "/cutover/retry", None).await;
    assert_eq!(code, 202, "{body}");
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "complete", "{data:#?}");
    assert_eq!(
        data["step.creds.attempt"], "2",
        "the passed preflight ran again"
    );
    assert_eq!(data["step.creds.jobName"], "cutover-creds-a2");
    assert_eq!(data["step.reach.jobName"], "cutover-reach-a2");
    assert_eq!(data["step.first.attempt"], "1");
    assert_eq!(data["progressPercent"], "100");
    let jobs = env.jobs_by_step().await;
    assert_eq!(jobs["creds"].len(), 2);
    assert_eq!(jobs["first"].len(), 1);

    service.shutdown().await;
    env.cleanup().await;
}

/// The service's Kubernetes API requests with `verb` so far, from its own metrics.
fn requests_with_verb(service: &Service, verb: &str) -> u64 {
    let label = format!("verb=\"{verb}\"");
    service
        .context()
        .metrics
        .encode()
        .lines()
        .filter(|l| {
            l.starts_with("catalyst_cutover_kube_api_requests_total{") && l.contains(&label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_end_is_seen_through_watches_opened_once_per_run() {
    let env = engine_env(3).start().await;
    env.add_steps(chart_steps()).await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;

    let lists_before = requests_with_verb(&service, "list");
    let (code, body) = post(&base, "/cutover", None).await;
    assert_eq!(code, 202, "{body}");
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "complete", "{data:#?}");
    let lists = requests_with_verb(&service, "list") - lists_before;

    // The plan, the Jobs, the DaemonSet and its pods are listed once each when the run
    // starts; a list (then a watch) per Job step would make it at least one per step. Apart
    // from those, keeping each ended Job step's log tail lists that Job's pods once, off the
    // runner's path (spawned, so some may not have happened yet). A runner listing the plan
    // the start has just validated would list it twice.
    let job_steps = JOB_STEPS;
    let followed = lists.saturating_sub(job_steps as u64);
    assert!(
        followed < job_steps as u64,
        "{lists} lists for {job_steps} job steps: each step re-lists what it follows"
    );
    // The plan, the DaemonSet, its pods and the acknowledgement Leases: four lists; one more
    // is allowed for a watch the API server ends early (kube-runtime's watcher lists again,
    // as it must), seen once in a full suite on the plane with the real controllers.
    assert!(
        followed <= 5,
        "{lists} lists: the plan, the DaemonSet, its pods and the acknowledgement Leases, \
         each listed once (one re-list allowed), and at most one pod list per Job step's log tail"
    );
    let jobs = env.jobs_by_step().await;
    assert!(jobs.values().all(|j| j.len() == 1), "{jobs:?}");

    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_preflight_runs_only_the_preflights_apart_from_the_cutover() {
    let env = engine_env(1).start().await;
    let checks = "preflight: Gitea refuses GITEA_USERNAME: fix the Secret\n\
                  preflight: DaemonSet registry-pivot is not rolled out on every node";
    env.add_steps(vec![
        job_step(1, "first", &[]),
        preflight_step(0, "creds", &[]),
        preflight_step(
            9,
            "reach",
            &[
                ("SANDBOX_SIM_OUTCOME", "fail"),
                ("SANDBOX_SIM_FAIL_ATTEMPTS", "4"),
                ("SANDBOX_SIM_MESSAGE", checks),
            ],
        ),
    ])
    .await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;
    let status_before = env.status().await;

    // A GET starts nothing: no run yet, no Job.
    let (code, report) = get(&base, "/cutover/preflight?wait=1").await;
    assert_eq!(
        (code, report["run"].as_u64(), report["result"].as_str()),
        (200, Some(0), Some("none")),
        "{report}"
    );
    assert_eq!(env.job_names().await, BTreeSet::new());

    let (code, report) = post(&base, "/cutover/preflight?wait=25", None).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["run"], 1);
    assert_eq!(report["result"], "failed");
    let steps = report["steps"].as_array().expect("steps");
    let rows: Vec<(&str, &str, &str)> = steps
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap(),
                s["result"].as_str().unwrap(),
                s["jobName"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("creds", "success", "preflight-creds-r1"),
            ("reach", "failed", "preflight-reach-r1")
        ]
    );
    assert_eq!(
        steps[1]["checks"],
        json!(checks.lines().collect::<Vec<_>>())
    );

    // Recorded apart: the cutover's status is untouched, its steps never ran.
    assert_eq!(env.status().await, status_before);
    assert_eq!(
        env.job_names().await,
        BTreeSet::from([
            "preflight-creds-r1".to_owned(),
            "preflight-reach-r1".to_owned()
        ])
    );
    let recorded: Api<ConfigMap> = Api::namespaced(env.client(), env.ns());
    let recorded = recorded
        .get("self-sovereign-cutover-preflight")
        .await
        .expect("the run's own ConfigMap");
    assert_eq!(recorded.data.unwrap_or_default()["result"], "failed");

    // Bad input, and a run that is not the latest.
    let (code, body) = post(&base, "/cutover/preflight?wait=soon", None).await;
    assert_eq!((code, body["error"].as_str()), (400, Some("invalid-query")));
    let (code, body) = get(&base, "/cutover/preflight?run=7").await;
    assert_eq!(
        (code, body["error"].as_str()),
        (404, Some("preflight-run-not-found"))
    );

    // Fixed, asked again: a new run, which passes; the cutover still has not started.
    let api: Api<ConfigMap> = Api::namespaced(env.client(), env.ns());
    let name = "cutover-step-09-reach";
    let mut fixed = preflight_step(9, "reach", &[]);
    fixed.metadata.resource_version = api.get(name).await.unwrap().metadata.resource_version;
    api.replace(name, &PostParams::default(), &fixed)
        .await
        .unwrap();
    let (code, report) = post(&base, "/cutover/preflight?wait=25", None).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(
        (report["run"].as_u64(), report["result"].as_str()),
        (Some(2), Some("passed"))
    );
    let (code, latest) = get(&base, "/cutover/preflight").await;
    assert_eq!(
        (code, &latest),
        (200, &report),
        "the GET answers the latest run"
    );
    assert_eq!(
        env.status().await["cutoverPhase"],
        status_before["cutoverPhase"]
    );

    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_preflight_answers_202_while_the_run_goes_on_and_joins_it() {
    let env = engine_env(1).start().await;
    env.add_steps(vec![
        job_step(1, "first", &[]),
        preflight_step(0, "slow", &[("SANDBOX_SIM_OUTCOME", "hang")]),
    ])
    .await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;

    let (code, report) = post(&base, "/cutover/preflight?wait=0", None).await;
    assert_eq!(code, 202, "{report}");
    assert_eq!(
        (report["run"].as_u64(), report["result"].as_str()),
        (Some(1), Some("running"))
    );
    // A second request joins the run under way instead of beginning another.
    let (code, report) = post(&base, "/cutover/preflight?wait=0", None).await;
    assert_eq!((code, report["run"].as_u64()), (202, Some(1)));
    let (code, report) = get(&base, "/cutover/preflight?run=1&wait=0").await;
    assert_eq!((code, report["result"].as_str()), (202, Some("running")));
    env.wait_preflight_job("preflight-slow-r1").await;

    service.shutdown().await;
    env.cleanup().await;
}

/// While a cutover runs, a new preflight run is refused (its Jobs would run beside the
/// cutover's), and the GET still answers, starting nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_preflight_run_begins_while_a_cutover_runs() {
    let env = engine_env(1).start().await;
    env.add_steps(vec![
        job_step(1, "stuck", &[("SANDBOX_SIM_OUTCOME", "hang")]),
        preflight_step(0, "check", &[]),
    ])
    .await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;
    assert_eq!(post(&base, "/cutover", None).await.0, 202);
    wait_status_key(&env, "currentStep", "stuck").await;
    let before = env.job_names().await;
    let (code, body) = post(&base, "/cutover/preflight?wait=0", None).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (409, Some("cutover-in-progress")),
        "{body}"
    );
    let (code, report) = get(&base, "/cutover/preflight").await;
    assert_eq!(code, 200, "{report}");
    assert!(
        env.job_names()
            .await
            .iter()
            .all(|name| !name.starts_with("preflight-") || before.contains(name)),
        "no preflight Job made mid-run"
    );
    service.shutdown().await;
    env.cleanup().await;
}

/// Waits until the status says `key` is `value`.
async fn wait_status_key(env: &Env, key: &str, value: &str) -> BTreeMap<String, String> {
    let (k, v) = (key.to_owned(), value.to_owned());
    env.wait_status(&format!("{key} = {value}"), move |d| {
        d.get(&k).is_some_and(|x| *x == v)
    })
    .await
}

const LOGIN: &str = "/api/v1/internal/cutover/operator-login";
const HELD_CHECK: &str = "preflight: Harbor refuses HARBOR_USERNAME: fix the Secret";

/// A changing step and a preflight that fails with [`HELD_CHECK`].
fn held_steps() -> Vec<ConfigMap> {
    vec![
        job_step(1, "first", &[]),
        preflight_step(
            0,
            "reach",
            &[
                ("SANDBOX_SIM_OUTCOME", "fail"),
                ("SANDBOX_SIM_FAIL_ATTEMPTS", "4"),
                ("SANDBOX_SIM_MESSAGE", HELD_CHECK),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_fire_holds_on_a_failed_preflight_and_a_later_login_tries_again() {
    let env = engine_env(1).start().await;
    env.add_steps(held_steps()).await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;

    let (code, body) = post(&base, LOGIN, Some(json!({"operator": "alice"}))).await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (202, Some("auto-fire-preflight-started")),
        "{body}"
    );
    let data = wait_status_key(&env, "autoFire", "held").await;
    assert_eq!(data["cutoverPhase"], "idle", "nothing started: {data:#?}");
    assert_eq!(data["autoFireReason"], HELD_CHECK);
    assert_eq!(data["firstOperatorLogin"], "alice");
    assert!(!data.contains_key("step.first.result"));
    let jobs = env.jobs_by_step().await;
    assert_eq!(
        jobs.keys().collect::<Vec<_>>(),
        ["reach"],
        "only the preflight ran"
    );
    assert!(jobs["reach"][0].starts_with("preflight-"), "{jobs:?}");

    // Fixed; the next login tries again, and this time the cutover starts.
    let api: Api<ConfigMap> = Api::namespaced(env.client(), env.ns());
    let name = "cutover-step-00-reach";
    let mut fixed = preflight_step(0, "reach", &[]);
    fixed.metadata.resource_version = api.get(name).await.unwrap().metadata.resource_version;
    api.replace(name, &PostParams::default(), &fixed)
        .await
        .unwrap();
    let (code, body) = post(&base, LOGIN, Some(json!({"operator": "bob"}))).await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (202, Some("auto-fire-preflight-started")),
        "{body}"
    );
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "complete", "{data:#?}");
    assert_eq!(data["cutoverTrigger"], "first-login");
    assert_eq!(data["cutoverTriggeredBy"], "bob");
    assert_eq!(data["firstOperatorLogin"], "alice", "recorded once");
    assert!(!data.contains_key("autoFire") && !data.contains_key("autoFireReason"));

    let (code, body) = post(&base, LOGIN, Some(json!({"operator": "carol"}))).await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (200, Some("already-recorded"))
    );
    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_start_after_a_held_auto_fire_starts_and_runs_the_preflight_first() {
    let env = engine_env(1).start().await;
    env.add_steps(held_steps()).await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;
    assert_eq!(
        post(&base, LOGIN, Some(json!({"operator": "alice"})))
            .await
            .0,
        202
    );
    wait_status_key(&env, "autoFire", "held").await;

    let (code, body) = post(&base, "/cutover", None).await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (202, Some("started")),
        "{body}"
    );
    let data = env.wait_phase(&["failed", "complete"]).await;
    assert_eq!(data["failedStep"], "reach", "{data:#?}");
    assert!(
        data["lastError"].contains(HELD_CHECK),
        "{}",
        data["lastError"]
    );
    assert!(
        !data.contains_key("step.first.result"),
        "no changing step started"
    );
    assert!(
        !data.contains_key("autoFire"),
        "a start makes the held auto-fire moot"
    );
    service.shutdown().await;
    env.cleanup().await;
}

/// Every start meets the same refusal by the same rule, whoever asks: here the registry-pivot
/// DaemonSet a daemonset-wait step waits for is gone. The auto-fire's gate (whose preflight
/// passed while the DaemonSet went), `POST /cutover`, the chart's trigger and a later login
/// all refuse to start; the routes answer the refusal, and the gate and the login (which
/// report, and cannot be refused) hold the auto-fire with it as the reason, word for word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_start_meets_a_missing_registry_pivot_daemonset_with_the_same_rule() {
    let env = engine_env(1).start().await;
    env.add_steps(vec![
        preflight_step(0, "reach", &[("SANDBOX_SIM_RUN_MS", "2000")]),
        job_step(1, "first", &[]),
        daemonset_step(2, "registry-pivot"),
    ])
    .await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;

    let (code, body) = post(&base, LOGIN, Some(json!({"operator": "alice"}))).await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (202, Some("auto-fire-preflight-started")),
        "{body}"
    );
    // The gate listed the steps (the DaemonSet was there) and its preflight runs: now the
    // DaemonSet goes, and the gate's start, once the preflight passed, meets its absence.
    env.wait_preflight_job("preflight-reach-r1").await;
    Api::<DaemonSet>::namespaced(env.client(), env.ns())
        .delete(DAEMONSET, &Default::default())
        .await
        .expect("someone deletes the DaemonSet");
    let data = wait_status_key(&env, "autoFire", "held").await;
    let reason = data["autoFireReason"].clone();
    let missing = format!("DaemonSet {DAEMONSET} does not exist");
    assert!(reason.contains(&missing), "{reason}");
    assert_eq!(data["cutoverPhase"], "idle", "{data:#?}");

    for route in ["/cutover", "/api/v1/internal/cutover/trigger"] {
        let (code, body) = post(&base, route, None).await;
        assert_eq!(
            (code, body["error"].as_str()),
            (422, Some("invalid-steps")),
            "{route}: {body}"
        );
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(reason.trim()), "{route}: {detail}");
    }

    // A later login tries the held auto-fire again, and meets the same refusal before any
    // preflight runs: the login is answered, the auto-fire held with the same reason.
    let (code, body) = post(&base, LOGIN, Some(json!({"operator": "bob"}))).await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (200, Some("auto-fire-held")),
        "{body}"
    );
    let data = env.status().await;
    assert_eq!(data["autoFire"], "held");
    assert_eq!(
        data["autoFireReason"], reason,
        "the same rule, the same words"
    );
    assert_eq!(data["cutoverPhase"], "idle");
    assert_eq!(data["firstOperatorLogin"], "alice", "recorded once");
    assert_eq!(
        env.jobs_by_step().await.keys().collect::<Vec<_>>(),
        ["reach"],
        "only the first preflight ran"
    );
    service.shutdown().await;
    env.cleanup().await;
}

// ---- Hostile input: step and status ConfigMaps anyone with `edit` writes.

/// A podSpec of about 210 KB whose aliases expand to about 400 MB.
fn alias_bomb() -> String {
    let chunk = "laugh".repeat(40_000);
    let aliases = vec!["*a"; 2_000].join(", ");
    format!("x: &a [\"{chunk}\"]\ny: [{aliases}]\ncontainers: [{{name: main, image: alpine}}]\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_bombs_and_pod_specs_beyond_the_policy_start_nothing() {
    let env = engine_env(1).start().await;
    let bomb = step_cm(1, "bomb", "job", Some(alias_bomb()));
    let privileged = step_cm(
        2,
        "root",
        "job",
        Some(
            "hostPID: true\ncontainers:\n- name: main\n  image: alpine\n  securityContext: {privileged: true}\nvolumes:\n- {name: host, hostPath: {path: /}}\n".to_owned(),
        ),
    );
    let small_bomb = step_cm(
        3,
        "laughs",
        "job",
        Some("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\ncontainers: [{name: main, image: alpine}]\n".to_owned()),
    );
    env.add_steps(vec![bomb, privileged, small_bomb]).await;
    let mut config = env.config_for("a");
    config.step_policy = catalyst_cutover::step::StepPolicy::default();
    let service = Service::start(env.cluster.config().await, config)
        .await
        .expect("start service");
    let base = service.url();
    ready(&base).await;

    let (code, body) = post(&base, "/cutover", None).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["error"], "invalid-steps");
    let detail = body["detail"].as_str().unwrap_or_default();
    for needle in [
        "ConfigMap cutover-step-01-bomb, data.podSpec: 208057 bytes, more than the 65536",
        "ConfigMap cutover-step-03-laughs, data.podSpec: YAML anchor at line 1 column 4: anchors and aliases are not allowed",
        "ConfigMap cutover-step-02-root, data.podSpec.hostPID",
        "ConfigMap cutover-step-02-root, data.podSpec.volumes[0].hostPath",
        "ConfigMap cutover-step-02-root, data.podSpec.containers[0].securityContext.privileged",
        "ConfigMap cutover-step-02-root, data.podSpec.serviceAccountName: service account \"default\" is not allowed",
    ] {
        assert!(detail.contains(needle), "missing {needle:?} in\n{detail}");
    }
    assert_eq!(env.status().await["cutoverPhase"], "idle");
    assert!(env.jobs_by_step().await.is_empty(), "nothing started");

    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_edited_rows_neither_loop_nor_reach_other_jobs() {
    let env = engine_env(1).start().await;
    env.add_steps(vec![
        job_step(1, "stuck", &[("SANDBOX_SIM_OUTCOME", "hang")]),
        job_step(2, "never", &[]),
    ])
    .await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;
    assert_eq!(post(&base, "/cutover", None).await.0, 202);
    env.wait_step("stuck", "running").await;
    let jobs: Api<Job> = Api::namespaced(env.client(), env.ns());
    let ours = tokio::time::timeout(
        GUARD,
        await_condition(jobs.clone(), "cutover-stuck-a1", |j: Option<&Job>| {
            j.is_some()
        }),
    )
    .await
    .unwrap()
    .unwrap()
    .and_then(|j| j.metadata.uid)
    .expect("the step's Job");
    let innocent: Job = serde_json::from_value(json!({
        "metadata": {"name": "innocent"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "x", "image": "busybox:1.36"}]}}}
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &innocent)
        .await
        .expect("someone else's Job");

    // What a person with `edit` might type: attempt 0 and another Job's name.
    let status: Api<ConfigMap> = Api::namespaced(env.client(), env.ns());
    let edit = json!({"data": {"step.stuck.attempt": "0", "step.stuck.jobName": "innocent"}});
    status
        .patch(
            DEFAULT_STATUS_CONFIGMAP,
            &PatchParams::default(),
            &Patch::Merge(&edit),
        )
        .await
        .expect("hand edit");
    // A window for a loop to show itself (the old engine deleted and recreated the Job
    // hundreds of times a second); nothing below depends on how long it is.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let now = jobs
        .get("cutover-stuck-a1")
        .await
        .expect("the step's Job is still there");
    assert_eq!(
        now.metadata.uid.as_deref(),
        Some(ours.as_str()),
        "not recreated"
    );

    let (code, body) = post(&base, "/cutover/abort", None).await;
    assert_eq!(code, 200, "{body}");
    env.wait_phase(&["failed"]).await;
    tokio::time::timeout(
        GUARD,
        await_condition(jobs.clone(), "cutover-stuck-a1", |j: Option<&Job>| {
            j.is_none()
        }),
    )
    .await
    .expect("the abort stops the step's own Job")
    .unwrap();
    assert!(
        jobs.get_opt("innocent").await.unwrap().is_some(),
        "a Job named by hand is never deleted"
    );

    // The last possible attempt: a retry must fail with a reason, not overflow.
    let edit = json!({"data": {"step.stuck.attempt": "4294967295"}});
    status
        .patch(
            DEFAULT_STATUS_CONFIGMAP,
            &PatchParams::default(),
            &Patch::Merge(&edit),
        )
        .await
        .expect("hand edit");
    let (code, body) = post(&base, "/cutover/retry", None).await;
    assert_eq!(code, 202, "{body}");
    env.wait_step("stuck", "failed").await;
    let data = env.wait_phase(&["failed"]).await;
    assert!(
        data["lastError"].contains("the last there can be"),
        "{}",
        data["lastError"]
    );

    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_status_never_starts_the_cutover_over() {
    let env = engine_env(1).start().await;
    env.add_steps(vec![job_step(1, "only", &[])]).await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;
    assert_eq!(post(&base, "/cutover", None).await.0, 202);
    let done = env.wait_phase(&["complete"]).await;

    let status: Api<ConfigMap> = Api::namespaced(env.client(), env.ns());
    status
        .delete(DEFAULT_STATUS_CONFIGMAP, &Default::default())
        .await
        .expect("someone deletes the status");
    // The cache follows the deletion; until then the start would answer 200 complete.
    let (code, body) = loop {
        let (code, body) = post(&base, "/cutover", None).await;
        if code != 200 {
            break (code, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error"], "status-lost");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("kubectl"),
        "{body}"
    );
    assert!(
        env.jobs_by_step().await["only"].len() == 1,
        "nothing ran again"
    );

    // A replica starting now rebuilds the status from the record: complete, nodes on v2.
    service.shutdown().await;
    let service = env.service("b").await;
    let rebuilt = env.status().await;
    assert_eq!(rebuilt["cutoverPhase"], "complete", "{rebuilt:#?}");
    assert_eq!(rebuilt["registriesYamlActive"], "v2");
    assert_eq!(rebuilt["cutoverStartedAt"], done["cutoverStartedAt"]);
    let base = service.url();
    ready(&base).await;
    let (code, body) = post(&base, "/cutover", None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["outcome"], "cutover-already-complete");

    // An operator starts over on purpose, as the 409 says: the status and the record go.
    // The new run is noted in the record, so losing its status is caught again.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.client(), env.ns());
    let record = format!("{}-record", env.config_for("b").lease_name);
    leases.delete(&record, &Default::default()).await.unwrap();
    status
        .delete(DEFAULT_STATUS_CONFIGMAP, &Default::default())
        .await
        .expect("the operator deletes the status");
    let (code, body) = loop {
        let (code, body) = post(&base, "/cutover", None).await;
        if code != 200 {
            break (code, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, 202, "{body}");
    let again = env.wait_phase(&["complete"]).await;
    let noted = leases.get(&record).await.unwrap().metadata.annotations;
    let noted = noted.unwrap_or_default();
    assert_eq!(
        noted.get("cutover.openova.io/started-at"),
        Some(&again["cutoverStartedAt"]),
        "{noted:?}"
    );

    service.shutdown().await;
    env.cleanup().await;
}

// --- Rollback of the registry pivot ---

/// A two-step plan: the registry pivot, then a Job.
fn pivot_then_job() -> Vec<ConfigMap> {
    vec![
        daemonset_step(1, "registry-pivot"),
        job_step(2, "after", &[]),
    ]
}

/// A rollback request body with the confirmation, a reason and a wait.
fn rollback_body(reason: &str, timeout_seconds: u64) -> Value {
    json!({"confirm": "rollback-registry-pivot", "reason": reason, "timeoutSeconds": timeout_seconds})
}

/// Polls `check` until it holds; a hang guard, not a speed assertion.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + GUARD;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a Kubernetes Event with `reason` was recorded in the test's namespace.
async fn has_event(env: &Env, reason: &str) -> bool {
    let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(env.client(), env.ns());
    api.list(&ListParams::default())
        .await
        .expect("events")
        .items
        .iter()
        .any(|e| e.reason.as_deref() == Some(reason))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_of_a_complete_cutover_waits_for_every_node_and_records_who_when_why() {
    let env = engine_env(2).start().await;
    env.add_steps(pivot_then_job()).await;
    let nodes = env.nodes().await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;
    let (code, body) = post(&base, "/cutover/rollback", Some(rollback_body("early", 60))).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (409, Some("nothing-to-roll-back")),
        "{body}"
    );
    assert_eq!(post(&base, "/cutover", None).await.0, 202);
    let complete = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(complete["cutoverPhase"], "complete", "{complete:#?}");

    for (bad, code) in [
        (None, "rollback-not-confirmed"),
        (
            Some(json!({"reason": "harbor down"})),
            "rollback-not-confirmed",
        ),
        (
            Some(json!({"confirm": "yes", "reason": "harbor down"})),
            "rollback-not-confirmed",
        ),
        (
            Some(json!({"confirm": "rollback-registry-pivot"})),
            "rollback-reason-required",
        ),
        (
            Some(json!({"confirm": "rollback-registry-pivot", "reason": "  "})),
            "rollback-reason-required",
        ),
        (Some(json!(["rollback-registry-pivot"])), "bad-request"),
    ] {
        let (status, body) = post(&base, "/cutover/rollback", bad.clone()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(code)),
            "{bad:?}: {body}"
        );
    }
    assert_eq!(
        env.status().await,
        complete,
        "a refused rollback changes nothing"
    );

    let (code, body) = post(
        &base,
        "/api/v1/sovereign/cutover/rollback",
        Some(rollback_body("harbor lost its disk", 60)),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["outcome"], "rollback-started");
    assert_eq!(body["state"], "tethered");
    assert_eq!(body["phase"], "rolling-back");
    assert!(
        body["rollback"]["leavesAlone"]
            .as_str()
            .is_some_and(|s| s.contains("Gitea and Flux changes stay")),
        "{body}"
    );
    let data = env.wait_phase(&["rolled-back", "rollback-failed"]).await;
    assert_eq!(data["cutoverPhase"], "rolled-back", "{data:#?}");
    assert_eq!(data["registriesYamlActive"], "rollback");
    assert_eq!(data["cutoverComplete"], "false");
    for node in &nodes {
        assert_eq!(data[&format!("node.{node}.registriesYaml")], "rolled-back");
    }
    assert_eq!(data["rollbackRequestedBy"], "system:anonymous");
    assert_eq!(data["rollbackReason"], "harbor lost its disk");
    assert_eq!(data["rollbackFromPhase"], "complete");
    assert_eq!(data["rollbackDaemonSets"], DAEMONSET);
    assert_eq!(data["rollbackAcknowledgedNodes"], nodes.join(","));
    assert_eq!(data["rollbackPendingNodes"], "");
    assert!(!data["rollbackRequestedAt"].is_empty() && !data["rollbackFinishedAt"].is_empty());
    assert_eq!(
        data["step.after.result"], "success",
        "the other steps' rows (Gitea, Flux) are left as they were"
    );

    let (code, body) = post(&base, "/cutover/rollback", Some(rollback_body("again", 60))).await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (200, Some("already-rolled-back"))
    );
    assert_eq!(
        env.status().await,
        data,
        "a second rollback changes nothing"
    );
    let (code, status) = get(&base, "/cutover").await;
    assert_eq!(code, 200);
    assert_eq!(status["state"], "tethered");
    assert_eq!(status["rollback"]["requestedBy"], "system:anonymous");

    eventually("the RegistryRolledBack Event", || {
        has_event(&env, "RegistryRolledBack")
    })
    .await;
    assert!(has_event(&env, "RegistryRollbackStarted").await);
    eventually("the rollback metrics", || async {
        let text = reqwest::get(format!("{base}/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .unwrap_or_default();
        text.contains("catalyst_cutover_rollbacks_total{result=\"rolled-back\"} 1")
            && text.contains("catalyst_cutover_phase{phase=\"rolled-back\"} 1")
    })
    .await;
    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_acknowledges_the_rollback_is_named_and_a_second_request_finishes_it() {
    let env = engine_env(2).start().await;
    env.add_steps(pivot_then_job()).await;
    let nodes = env.nodes().await;
    let silent = nodes[1].clone();
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;
    assert_eq!(post(&base, "/cutover", None).await.0, 202);
    assert_eq!(
        env.wait_phase(&["complete", "failed"]).await["cutoverPhase"],
        "complete"
    );

    env.agents().set_never_ack(&silent, true);
    let (code, body) = post(
        &base,
        "/cutover/rollback",
        Some(rollback_body("harbor down", 2)),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let data = env.wait_phase(&["rolled-back", "rollback-failed"]).await;
    assert_eq!(data["cutoverPhase"], "rollback-failed", "{data:#?}");
    assert_eq!(data["rollbackPendingNodes"], silent);
    assert_eq!(data["rollbackAcknowledgedNodes"], nodes[0]);
    assert!(
        data["rollbackError"].contains(&silent),
        "{}",
        data["rollbackError"]
    );
    let (_, status) = get(&base, "/cutover").await;
    assert_eq!(status["rollback"]["pendingNodes"], json!([silent]));
    assert_eq!(status["state"], "tethered");
    eventually("the RegistryRollbackFailed Event", || {
        has_event(&env, "RegistryRollbackFailed")
    })
    .await;

    // The node is fixed: asking again waits for it, keeping the other node's acknowledgement.
    env.agents().set_never_ack(&silent, false);
    let (code, body) = post(
        &base,
        "/cutover/rollback",
        Some(rollback_body("node fixed", 60)),
    )
    .await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (202, Some("rollback-restarted")),
        "{body}"
    );
    let data = env.wait_phase(&["rolled-back", "rollback-failed"]).await;
    assert_eq!(data["cutoverPhase"], "rolled-back", "{data:#?}");
    assert_eq!(data["rollbackReason"], "node fixed");
    assert_eq!(data["rollbackPendingNodes"], "");
    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_is_refused_while_a_cutover_runs_and_undoes_a_failed_one() {
    let env = engine_env(1).start().await;
    env.add_steps(vec![
        daemonset_step(1, "registry-pivot"),
        job_step(2, "stuck", &[("SANDBOX_SIM_OUTCOME", "hang")]),
    ])
    .await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;
    assert_eq!(post(&base, "/cutover", None).await.0, 202);
    env.wait_step("stuck", "running").await;
    let before = env.status().await;
    let (code, body) = post(
        &base,
        "/cutover/rollback",
        Some(rollback_body("harbor down", 60)),
    )
    .await;
    assert_eq!(
        (code, body["error"].as_str()),
        (409, Some("cutover-in-progress")),
        "{body}"
    );
    assert_eq!(
        env.status().await["registriesYamlActive"],
        before["registriesYamlActive"]
    );

    assert_eq!(post(&base, "/cutover/abort", None).await.0, 200);
    env.wait_phase(&["failed"]).await;
    let (code, body) = post(
        &base,
        "/cutover/rollback",
        Some(rollback_body("harbor down", 60)),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let data = env.wait_phase(&["rolled-back", "rollback-failed"]).await;
    assert_eq!(data["cutoverPhase"], "rolled-back", "{data:#?}");
    assert_eq!(data["rollbackFromPhase"], "failed");
    assert_eq!(data["failedStep"], "stuck", "the failure stays on record");
    let (code, body) = post(&base, "/cutover/retry", None).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (409, Some("cutover-not-failed")),
        "after a rollback a start runs again, a retry has nothing to resume"
    );
    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_again_after_a_rollback_pivots_again_and_counts_only_fresh_acks() {
    let env = engine_env(2).start().await;
    env.add_steps(pivot_then_job()).await;
    let nodes = env.nodes().await;
    let silent = nodes[1].clone();
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;
    assert_eq!(post(&base, "/cutover", None).await.0, 202);
    assert_eq!(
        env.wait_phase(&["complete", "failed"]).await["cutoverPhase"],
        "complete"
    );
    let (code, _) = post(
        &base,
        "/cutover/rollback",
        Some(rollback_body("harbor down", 60)),
    )
    .await;
    assert_eq!(code, 202);
    assert_eq!(
        env.wait_phase(&["rolled-back", "rollback-failed"]).await["cutoverPhase"],
        "rolled-back"
    );

    // A stale `v2` (a late write from before the rollback) must not count for the new pivot.
    env.agents().set_never_ack(&silent, true);
    let api: Api<ConfigMap> = Api::namespaced(env.client(), env.ns());
    let stale_key = format!("node.{silent}.registriesYaml");
    api.patch(
        DEFAULT_STATUS_CONFIGMAP,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {stale_key.clone(): "v2"}})),
    )
    .await
    .expect("stale ack");
    let (code, body) = post(&base, "/cutover", None).await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (202, Some("started")),
        "{body}"
    );
    let other = format!("node.{}.registriesYaml", nodes[0]);
    let cond = move |cm: Option<&ConfigMap>| {
        cm.and_then(|c| c.data.as_ref())
            .and_then(|d| d.get(&other))
            .is_some_and(|v| v == "v2")
    };
    tokio::time::timeout(
        GUARD,
        await_condition(api.clone(), DEFAULT_STATUS_CONFIGMAP, cond),
    )
    .await
    .expect("the other node pivots again")
    .expect("watch");
    let data = env.status().await;
    assert_eq!(data["registriesYamlActive"], "v2");
    assert_eq!(data["step.registry-pivot.result"], "running", "{data:#?}");
    assert_eq!(data["step.registry-pivot.attempt"], "2");
    assert_eq!(data.get(&stale_key), None, "the stale v2 was forgotten");

    env.agents().set_never_ack(&silent, false);
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "complete", "{data:#?}");
    for node in &nodes {
        assert_eq!(data[&format!("node.{node}.registriesYaml")], "v2");
    }
    let jobs = env.jobs_by_step().await;
    let mut after = jobs.get("after").cloned().unwrap_or_default();
    after.sort();
    assert_eq!(
        after,
        ["cutover-after-a1", "cutover-after-a2"],
        "every step ran again"
    );
    service.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_whose_runner_dies_is_finished_by_the_next_one() {
    let env = engine_env(2).start().await;
    env.add_steps(pivot_then_job()).await;
    let nodes = env.nodes().await;
    let a = env.service("a").await;
    ready(&a.url()).await;
    assert_eq!(post(&a.url(), "/cutover", None).await.0, 202);
    assert_eq!(
        env.wait_phase(&["complete", "failed"]).await["cutoverPhase"],
        "complete"
    );
    env.agents().set_never_ack(&nodes[0], true);
    let (code, _) = post(
        &a.url(),
        "/cutover/rollback",
        Some(rollback_body("harbor down", 600)),
    )
    .await;
    assert_eq!(code, 202);
    let other = format!("node.{}.registriesYaml", nodes[1]);
    let api: Api<ConfigMap> = Api::namespaced(env.client(), env.ns());
    let cond = move |cm: Option<&ConfigMap>| {
        cm.and_then(|c| c.data.as_ref())
            .and_then(|d| d.get(&other))
            .is_some_and(|v| v == "rolled-back")
    };
    tokio::time::timeout(GUARD, await_condition(api, DEFAULT_STATUS_CONFIGMAP, cond))
        .await
        .expect("one node rolled back")
        .expect("watch");
    a.kill();

    let b = env.service("b").await;
    ready(&b.url()).await;
    env.agents().set_never_ack(&nodes[0], false);
    let data = env.wait_phase(&["rolled-back", "rollback-failed"]).await;
    assert_eq!(data["cutoverPhase"], "rolled-back", "{data:#?}");
    assert_eq!(data["rollbackAcknowledgedNodes"], nodes.join(","));
    b.shutdown().await;
    env.cleanup().await;
}

/// A `serve` process for `env` (its stderr lines, JSON or not, sent to the receiver), with
/// `vars` set in its environment.
fn serve_process(
    env: &Env,
    kubeconfig: &std::path::Path,
    vars: &[(&str, &str)],
) -> (
    std::process::Child,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_catalyst-cutover"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--probe-listen",
            "127.0.0.1:0",
        ])
        .args(["--lease-duration", "2s"])
        // Who may call it is the operator suite's business; this one is about the process.
        .arg("--auth=false")
        .arg("--namespace")
        .arg(env.ns())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "--step-policy",
            "privileged",
            "--step-service-accounts",
            "*",
        ])
        .env("RUST_LOG", "info")
        .envs(vars.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// Reads a `serve` process's stderr until its "serving" line, and returns its base URL.
async fn serving_url(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    loop {
        let Ok(Some(line)) = tokio::time::timeout(GUARD, rx.recv()).await else {
            panic!("serve never said it was serving");
        };
        let Ok(json) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if json["fields"]["message"] == "catalyst-cutover is serving" {
            let addr = json["fields"]["addr"].as_str().expect("addr");
            return format!("http://{addr}");
        }
    }
}

/// A runner task that dies (here a panic, which only the debug builds' fault hook can
/// cause) ends `serve` with a non-zero exit, so the Deployment restarts the pod, instead of
/// leaving a replica that leads with no runner; the Lease is released on the way out, and
/// the restarted process takes over and completes the cutover with one Job per step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exits_non_zero_when_its_runner_dies_and_its_restart_completes_the_run() {
    let env = engine_env(1).start().await;
    env.add_steps(vec![job_step(1, "first", &[]), job_step(2, "doomed", &[])])
        .await;
    let kubeconfig = env.kubeconfig_file();
    let (mut child, mut rx) = serve_process(
        &env,
        &kubeconfig,
        &[(
            catalyst_cutover::runner::fault_hook::PANIC_AT_STEP,
            "doomed",
        )],
    );
    let url = serving_url(&mut rx).await;
    ready(&url).await;
    assert_eq!(post(&url, "/cutover", None).await.0, 202);
    let exited = tokio::time::timeout(GUARD, tokio::task::spawn_blocking(move || child.wait()))
        .await
        .expect("serve exited once its runner died")
        .expect("join")
        .expect("wait for serve");
    assert_eq!(exited.code(), Some(1), "{exited:?}");
    let mut said = Vec::new();
    while let Ok(line) = rx.try_recv() {
        said.push(line);
    }
    let said = said.join("\n");
    assert!(
        said.contains("the replica cannot go on; exiting") && said.contains("panicked"),
        "{said}"
    );
    let data = env.status().await;
    assert_eq!(data["cutoverPhase"], "running", "{data:#?}");
    assert!(
        data.get("step.doomed.result").is_none_or(String::is_empty),
        "the runner died before the step: {data:#?}"
    );
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.client(), env.ns());
    let holder = leases
        .get("catalyst-cutover")
        .await
        .expect("the election Lease")
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(holder, None, "the dying replica released the Lease");

    let (mut restarted, mut rx) = serve_process(&env, &kubeconfig, &[]);
    serving_url(&mut rx).await;
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "complete", "{data:#?}");
    let jobs = env.jobs_by_step().await;
    assert_eq!(jobs["first"], ["cutover-first-a1"]);
    assert_eq!(jobs["doomed"], ["cutover-doomed-a1"]);
    let _ = restarted.kill();
    let _ = restarted.wait();
    let _ = std::fs::remove_file(kubeconfig);
    env.cleanup().await;
}

/// The status ConfigMap deleted while the cutover runs again after a rollback comes back
/// failed, saying so, with no direction for the nodes: never complete with `v2` on the
/// strength of the run the rollback undid. A retry then pivots the nodes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_lost_while_the_cutover_runs_again_after_a_rollback_is_rebuilt_failed() {
    let env = engine_env(2).start().await;
    env.add_steps(pivot_then_job()).await;
    let nodes = env.nodes().await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;
    assert_eq!(post(&base, "/cutover", None).await.0, 202);
    assert_eq!(
        env.wait_phase(&["complete", "failed"]).await["cutoverPhase"],
        "complete"
    );
    let (code, _) = post(
        &base,
        "/cutover/rollback",
        Some(rollback_body("harbor down", 60)),
    )
    .await;
    assert_eq!(code, 202);
    let rolled_back = env.wait_phase(&["rolled-back", "rollback-failed"]).await;
    assert_eq!(rolled_back["cutoverPhase"], "rolled-back");
    // One node stays silent, so the second pivot is still waiting when the status goes.
    env.agents().set_never_ack(&nodes[1], true);
    assert_eq!(post(&base, "/cutover", None).await.0, 202);
    env.wait_step("registry-pivot", "running").await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.client(), env.ns());
    eventually("the record noting the run after the rollback", || async {
        let annotations = leases
            .get_opt("catalyst-cutover-record")
            .await
            .expect("read the record")
            .and_then(|l| l.metadata.annotations)
            .unwrap_or_default();
        annotations
            .get("cutover.openova.io/phase")
            .map(String::as_str)
            == Some("running")
            && annotations.get("cutover.openova.io/rollback-requested-at")
                == rolled_back.get("rollbackRequestedAt")
    })
    .await;
    service.shutdown().await;
    let status: Api<ConfigMap> = Api::namespaced(env.client(), env.ns());
    status
        .delete(DEFAULT_STATUS_CONFIGMAP, &Default::default())
        .await
        .expect("someone deletes the status");

    let service = env.service("b").await;
    let rebuilt = env.status().await;
    assert_eq!(rebuilt["cutoverPhase"], "failed", "{rebuilt:#?}");
    assert_eq!(rebuilt["cutoverComplete"], "false");
    assert_eq!(
        rebuilt["registriesYamlActive"], "",
        "no node is told to move"
    );
    assert_eq!(
        rebuilt["rollbackRequestedAt"],
        rolled_back["rollbackRequestedAt"]
    );
    assert!(
        rebuilt["lastError"].contains("rolled back"),
        "{}",
        rebuilt["lastError"]
    );
    let base = service.url();
    ready(&base).await;
    let (code, body) = post(&base, "/cutover", None).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (409, Some("cutover-failed")),
        "{body}"
    );

    env.agents().set_never_ack(&nodes[1], false);
    assert_eq!(post(&base, "/cutover/retry", None).await.0, 202);
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "complete", "{data:#?}");
    for node in &nodes {
        assert_eq!(data[&format!("node.{node}.registriesYaml")], "v2");
    }
    service.shutdown().await;
    env.cleanup().await;
}

/// The directive the service's record Lease gives the agents now.
async fn directive(env: &Env) -> Option<Directive> {
    let leases: Api<Lease> = Api::namespaced(env.client(), env.ns());
    let record = leases
        .get_opt(&env.config_for("x").record_lease())
        .await
        .expect("read the record Lease");
    Directive::of_lease(record.as_ref())
}

/// The nodes whose acknowledgement Lease of `directive` exists.
async fn acked(env: &Env, directive: &Directive) -> BTreeSet<String> {
    let leases: Api<Lease> = Api::namespaced(env.client(), env.ns());
    let list = leases
        .list(&ListParams::default().labels(contract::pivot::ACK_SELECTOR))
        .await
        .expect("list acknowledgements");
    ack::acked_nodes(&list.items, directive)
}

/// Whether `node`'s files are the pivot's, pointing at the agents' own registry.
fn pivoted(env: &Env, node: &str) -> bool {
    let settings = AgentConfig::demo_settings();
    let paths = env.agents().node_paths(node);
    settings.upstreams.iter().all(|u| {
        std::fs::read_to_string(paths.certs_dir.join(u.as_str()).join("hosts.toml")).ok()
            == Some(files::hosts_toml(&settings, u))
    }) && std::fs::read_to_string(&paths.registries_yaml).ok()
        == Some(files::registries_yaml(&settings))
}

/// Issue 27: whoever may only write ConfigMaps (the built-in `edit` role may) cannot steer
/// the registry-pivot agents (a `rollback`, a foreign registry) nor forge their
/// acknowledgements: the agents follow the service's record Lease, the wait counts only
/// the agents' Leases, and the status ConfigMap only displays both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_writers_neither_steer_the_nodes_nor_finish_the_wait() {
    // Authentication and RBAC on, as on a real cluster.
    let rbac = ApiServerConfig {
        tokens: Some(TokenTable::default()),
        ..ApiServerConfig::default()
    };
    let env = engine_env(2).sandbox(rbac).start().await;
    env.add_steps(pivot_then_job()).await;
    let nodes = env.nodes().await;
    let (steady, silent) = (nodes[0].clone(), nodes[1].clone());
    env.agents().set_never_ack(&silent, true);
    let writer = common::configmap_writer(&env.cluster, "cm-writer").await;
    let as_writer: Api<ConfigMap> = Api::namespaced(writer.clone(), env.ns());
    let forge = |data: Value| {
        let as_writer = as_writer.clone();
        async move {
            as_writer
                .patch(
                    DEFAULT_STATUS_CONFIGMAP,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "data": data })),
                )
                .await
                .expect("a ConfigMap writer patches the status");
        }
    };
    // The settings the old agent read its registry from, pointed elsewhere.
    let settings: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "cutover-settings"},
        "data": {"HARBOR_REGISTRY": "harbor.attacker.example", "UPSTREAM_REGISTRIES": "docker.io"},
    }))
    .unwrap();
    as_writer
        .create(&PostParams::default(), &settings)
        .await
        .expect("a ConfigMap writer writes the settings");
    // Neither the direction nor an acknowledgement can be written with ConfigMap rights.
    let as_writer_leases: Api<Lease> = Api::namespaced(writer.clone(), env.ns());
    let forged_ack = ack::lease(
        &silent,
        &Directive {
            direction: Direction::V2,
            since: "2026-01-01T00:00:00Z".into(),
        },
    );
    let refused = as_writer_leases
        .create(&PostParams::default(), &forged_ack)
        .await
        .expect_err("no Lease for a ConfigMap writer");
    assert_eq!(common::api_status(refused).code, 403);

    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;
    assert_eq!(post(&base, "/cutover", None).await.0, 202);
    let v2 = tokio::time::timeout(GUARD, async {
        loop {
            if let Some(d) = directive(&env).await
                && acked(&env, &d).await.contains(&steady)
            {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the steady node acknowledges the pivot");
    assert_eq!(v2.direction, Direction::V2);

    // While the step waits for the silent node: a forged acknowledgement of it, and a
    // rollback, written into the status ConfigMap.
    let forged_key = format!("node.{silent}.registriesYaml");
    forge(json!({ forged_key.clone(): "v2", "registriesYamlActive": "rollback" })).await;
    // The service shows the truth again (its correction is the proof it looked)...
    let api: Api<ConfigMap> = Api::namespaced(env.client(), env.ns());
    let shows_truth = {
        let forged_key = forged_key.clone();
        move |cm: Option<&ConfigMap>| {
            cm.and_then(|c| c.data.as_ref()).is_some_and(|d| {
                !d.contains_key(&forged_key)
                    && d.get("registriesYamlActive").map(String::as_str) == Some("v2")
            })
        }
    };
    tokio::time::timeout(
        GUARD,
        await_condition(api.clone(), DEFAULT_STATUS_CONFIGMAP, shows_truth),
    )
    .await
    .expect("the service corrects the display")
    .expect("watch");
    // ...and the wait did not finish on the forged acknowledgement.
    let data = env.status().await;
    assert_eq!(data["step.registry-pivot.result"], "running", "{data:#?}");
    assert_eq!(
        directive(&env).await,
        Some(v2.clone()),
        "no rollback was directed"
    );
    assert!(pivoted(&env, &steady), "the steady node keeps the pivot");
    assert!(
        !env.agents().node_paths(&silent).registries_yaml.exists(),
        "the silent node's files are untouched"
    );

    env.agents().set_never_ack(&silent, false);
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "complete", "{data:#?}");
    assert!(
        pivoted(&env, &silent),
        "the local Harbor, never the ConfigMap's registry"
    );

    // After the cutover: `rollback` and forged `rolled-back` acknowledgements.
    forge(json!({
        "registriesYamlActive": "rollback",
        format!("node.{steady}.registriesYaml"): "rolled-back",
        forged_key.clone(): "rolled-back",
    }))
    .await;
    // A node that joins now follows the service's direction: the pivot, not a rollback.
    let joined = env.sim.replace_node(&steady).await.expect("replace a node");
    tokio::time::timeout(GUARD, async {
        while !acked(&env, &v2).await.contains(&joined) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the new node pivots");
    assert!(
        pivoted(&env, &joined) && pivoted(&env, &silent),
        "no node rolled back"
    );
    let rollback = Directive {
        direction: Direction::Rollback,
        since: v2.since.clone(),
    };
    assert!(acked(&env, &rollback).await.is_empty());
    assert_eq!(
        directive(&env).await,
        Some(v2),
        "the direction is still the pivot"
    );
    service.shutdown().await;
    env.cleanup().await;
}

/// Issue 27: a `running` status replayed into the ConfigMap after an operator's rollback is
/// no run the service started: the pivot step refuses to direct `v2`, so no node moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_running_status_never_pivots_the_nodes_over_a_rollback() {
    let rbac = ApiServerConfig {
        tokens: Some(TokenTable::default()),
        ..ApiServerConfig::default()
    };
    let env = engine_env(2).sandbox(rbac).start().await;
    env.add_steps(pivot_then_job()).await;
    let nodes = env.nodes().await;
    env.agents().set_never_ack(&nodes[1], true);
    let writer = common::configmap_writer(&env.cluster, "cm-writer").await;
    let service = env.service("a").await;
    let base = service.url();
    ready(&base).await;
    assert_eq!(post(&base, "/cutover", None).await.0, 202);
    common::eventually("the first node pivots", || async {
        let Some(d) = directive(&env).await else {
            return false;
        };
        acked(&env, &d).await.contains(&nodes[0])
    })
    .await;
    // The status while the pivot step waited: what a ConfigMap writer replays later.
    let running = env.status().await;
    assert_eq!(running["step.registry-pivot.result"], "running");
    env.agents().set_never_ack(&nodes[1], false);
    assert_eq!(
        env.wait_phase(&["complete", "failed"]).await["cutoverPhase"],
        "complete"
    );
    let (code, _) = post(
        &base,
        "/cutover/rollback",
        Some(rollback_body("harbor down", 60)),
    )
    .await;
    assert_eq!(code, 202);
    assert_eq!(
        env.wait_phase(&["rolled-back", "rollback-failed"]).await["cutoverPhase"],
        "rolled-back"
    );
    let rollback = directive(&env).await.expect("a direction");
    assert_eq!(rollback.direction, Direction::Rollback);

    let as_writer: Api<ConfigMap> = Api::namespaced(writer, env.ns());
    let mut replayed = as_writer
        .get(DEFAULT_STATUS_CONFIGMAP)
        .await
        .expect("a ConfigMap writer reads the status");
    replayed.data = Some(running);
    as_writer
        .replace(DEFAULT_STATUS_CONFIGMAP, &PostParams::default(), &replayed)
        .await
        .expect("a ConfigMap writer replays the running status");
    let data = env.wait_phase(&["failed", "complete"]).await;
    assert_eq!(data["cutoverPhase"], "failed", "{data:#?}");
    assert!(
        data["lastError"].contains("rolled back at"),
        "{}",
        data["lastError"]
    );
    assert_eq!(directive(&env).await, Some(rollback), "still the rollback");
    for node in &nodes {
        let paths = env.agents().node_paths(node);
        assert!(!paths.registries_yaml.exists(), "{node} stays rolled back");
    }
    service.shutdown().await;
    env.cleanup().await;
}
