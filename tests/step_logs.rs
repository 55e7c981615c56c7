//! Every step's log over real HTTP (`GET /cutover/steps/{step}/logs`): read from the step's
//! pod while it exists, from the tail kept in a ConfigMap per run and step once the Job and
//! its pods are gone, the older runs' tails deleted when a new run starts, and the route
//! authorized like `GET /cutover`. Runs against the sandbox, or unchanged against
//! `CUTOVER_TEST_KUBECONFIG`.

mod common;

use catalyst_cutover::auth::AuthConfig;
use catalyst_cutover::contract::{self, DEFAULT_STATUS_CONFIGMAP};
use catalyst_cutover::service::Service;
use catalyst_cutover::steplog::MAX_TAIL_BYTES;
use catalyst_cutover::steplog::kept::{COMPONENT_STEP_LOG, LABEL_RUN};
use common::{Env, create_service_account, grant, job_step, request_token, role, token_of};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::wait::await_condition;
use serde_json::Value;
use std::time::Duration;

/// Hang guard for one wait, not a speed assertion.
const GUARD: Duration = Duration::from_secs(60);

/// What the step-log tests ask of their environment.
impl Env {
    async fn service(&self, auth: AuthConfig) -> Service {
        let mut config = self.service_config();
        // The failing step fails after two pods: a real Job controller backs off 10 s before
        // the second (and 20, 40 s before more).
        config.render.backoff_limit = 1;
        config.auth = auth;
        self.ready_service(config).await
    }

    /// Waits until ConfigMap `name` exists, and returns it.
    async fn wait_configmap(&self, name: &str) -> ConfigMap {
        tokio::time::timeout(
            GUARD,
            await_condition(self.configmaps(), name, |cm: Option<&ConfigMap>| {
                cm.is_some()
            }),
        )
        .await
        .expect("the ConfigMap appears in time")
        .expect("watch")
        .expect("the ConfigMap")
    }

    /// The names of the kept tails of run `run`.
    async fn kept_of_run(&self, run: u32) -> Vec<String> {
        let selector = format!(
            "{}={COMPONENT_STEP_LOG},{LABEL_RUN}={run}",
            contract::LABEL_COMPONENT
        );
        self.configmaps()
            .list(&ListParams::default().labels(&selector))
            .await
            .expect("list kept tails")
            .items
            .into_iter()
            .filter_map(|cm| cm.metadata.name)
            .collect()
    }

    /// Deletes every Job of the cutover and their pods, as the Job's TTL would, and waits
    /// until no pod is left.
    async fn delete_jobs_and_pods(&self) {
        let selector = format!("{}={}", contract::LABEL_COMPONENT, contract::COMPONENT_JOB);
        let params = ListParams::default().labels(&selector);
        let jobs: Api<Job> = Api::namespaced(self.cluster.client(), self.ns());
        let background = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        jobs.delete_collection(&background, &params)
            .await
            .expect("delete Jobs");
        let pods: Api<Pod> = Api::namespaced(self.cluster.client(), self.ns());
        tokio::time::timeout(GUARD, async {
            loop {
                // A real cluster's pods are gone once their kubelet confirms; the
                // simulator's kubelet does, and a zero grace period needs no one.
                let _ = pods
                    .delete_collection(&DeleteParams::default().grace_period(0), &params)
                    .await;
                if pods.list(&params).await.expect("pods").items.is_empty() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("the pods go in time");
    }
}

/// A log answer: status, the `X-Log-*` headers, and the body.
struct LogAnswer {
    status: u16,
    source: String,
    truncated: String,
    body: String,
}

impl LogAnswer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

async fn get_log(base: &str, path: &str, token: Option<&str>) -> LogAnswer {
    let mut request = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("GET");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (status, source, truncated) = (
        response.status().as_u16(),
        header("x-log-source"),
        header("x-log-truncated"),
    );
    LogAnswer {
        status,
        source,
        truncated,
        body: response.text().await.expect("body"),
    }
}

/// A block of log lines with characters of two, three and four bytes, printed [`REPEAT`]
/// times: longer than the kept tail, with the cut inside a character for some lengths.
const BLOCK: &str = "line: é€😀 harbor prewarm of library/image\nline: pushed 42 layers\n";
const REPEAT: usize = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_log_tail_survives_its_jobs_and_pods_deletion_until_a_new_run() {
    let log = BLOCK.repeat(REPEAT);
    assert!(log.len() > MAX_TAIL_BYTES);
    let failing = [
        ("SANDBOX_SIM_OUTCOME", "fail"),
        ("SANDBOX_SIM_FAIL_ATTEMPTS", "99"),
        ("SANDBOX_SIM_MESSAGE", "harbor answered 503"),
        ("SANDBOX_SIM_LOG", "second: harbor answered 503\n"),
    ];
    let env = Env::builder()
        .steps(vec![
            job_step(
                1,
                "first",
                &[
                    ("SANDBOX_SIM_LOG", BLOCK),
                    ("SANDBOX_SIM_LOG_REPEAT", &REPEAT.to_string()),
                ],
            ),
            job_step(2, "second", &failing),
        ])
        .start()
        .await;
    let service = env.service(AuthConfig::disabled()).await;
    let base = service.url();
    assert_eq!(common::post_status(&base, "/cutover").await, 202);
    let data = env.wait_phase(&["failed", "complete"]).await;
    assert_eq!(data["cutoverPhase"], "failed", "{data:#?}");

    // While the pods exist, the log is theirs, whole.
    let answer = get_log(&base, "/cutover/steps/first/logs", None).await;
    assert_eq!((answer.status, answer.source.as_str()), (200, "pod"));
    assert_eq!(answer.body, log);

    // Each ended step's tail is kept (off the runner's path: it may come a moment later),
    // owned by the status ConfigMap.
    let status_uid = env
        .configmaps()
        .get(DEFAULT_STATUS_CONFIGMAP)
        .await
        .expect("status")
        .metadata
        .uid;
    for step in ["first", "second"] {
        let kept = env
            .wait_configmap(&format!("{DEFAULT_STATUS_CONFIGMAP}-log-r1-{step}"))
            .await;
        let owners = kept.metadata.owner_references.unwrap_or_default();
        assert_eq!(owners.len(), 1, "{step}");
        assert_eq!(Some(owners[0].uid.clone()), status_uid, "{step}");
        let labels = kept.metadata.labels.unwrap_or_default();
        assert_eq!(labels[contract::LABEL_PART_OF], contract::PART_OF);
        assert_eq!(labels[contract::LABEL_JOB_STEP], step);
    }

    env.delete_jobs_and_pods().await;
    let answer = get_log(&base, "/cutover/steps/first/logs", None).await;
    assert_eq!((answer.status, answer.source.as_str()), (200, "kept"));
    assert_eq!(answer.truncated, "true");
    assert!(answer.body.len() <= MAX_TAIL_BYTES);
    assert!(
        answer.body.len() > MAX_TAIL_BYTES - 4,
        "cut at most one character"
    );
    assert!(log.ends_with(&answer.body));
    let answer = get_log(&base, "/cutover/steps/second/logs", None).await;
    assert_eq!((answer.status, answer.source.as_str()), (200, "kept"));
    assert_eq!(answer.truncated, "false");
    assert_eq!(answer.body, "second: harbor answered 503\n");

    // A retry is a new run: the first run's tails go, the retried step's new tail comes.
    let api = env.configmaps();
    let mut fixed = job_step(2, "second", &[("SANDBOX_SIM_LOG", "second: done\n")]);
    fixed.metadata.resource_version = api
        .get("cutover-step-02-second")
        .await
        .unwrap()
        .metadata
        .resource_version;
    api.replace("cutover-step-02-second", &PostParams::default(), &fixed)
        .await
        .unwrap();
    assert_eq!(common::post_status(&base, "/cutover/retry").await, 202);
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "complete", "{data:#?}");
    env.wait_configmap(&format!("{DEFAULT_STATUS_CONFIGMAP}-log-r2-second"))
        .await;
    tokio::time::timeout(GUARD, async {
        while !env.kept_of_run(1).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the first run's tails are deleted in time");
    env.delete_jobs_and_pods().await;
    let answer = get_log(&base, "/cutover/steps/second/logs", None).await;
    assert_eq!((answer.status, answer.source.as_str()), (200, "kept"));
    assert_eq!(answer.body, "second: done\n");
    // The first step did not run again: its pod and its tail are gone.
    let answer = get_log(&base, "/cutover/steps/first/logs", None).await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(answer.json()["error"], "step-log-not-found");

    env.stop(service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_step_is_404_and_a_step_not_run_yet_409() {
    let env = Env::builder()
        .steps(vec![job_step(1, "only", &[])])
        .start()
        .await;
    let service = env.service(AuthConfig::disabled()).await;
    let base = service.url();
    for step in ["nope", "Not%20A%20Name", "only-not"] {
        let answer = get_log(&base, &format!("/cutover/steps/{step}/logs"), None).await;
        assert_eq!(answer.status, 404, "{step}: {}", answer.body);
        assert_eq!(answer.json()["error"], "step-not-found", "{step}");
        let detail = answer.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(detail.contains("only"), "names the known steps: {detail}");
    }
    let answer = get_log(&base, "/cutover/steps/only/logs", None).await;
    assert_eq!(answer.status, 409, "{}", answer.body);
    assert_eq!(answer.json()["error"], "step-not-started");
    let answer = get_log(&base, "/cutover/steps/only/logs?follow=maybe", None).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json()["error"], "invalid-query");
    env.stop(service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_authorized_like_get_cutover() {
    let env = Env::builder()
        .steps(vec![job_step(1, "only", &[])])
        .start()
        .await;
    let client = env.cluster.client();
    let ns = env.ns().to_owned();
    let mut tokens = Vec::new();
    for name in ["reader", "bob"] {
        create_service_account(&client, &ns, name).await;
        let answer = request_token(&client, &ns, name, None)
            .await
            .expect("token");
        tokens.push(token_of(&answer));
    }
    grant(&client, &ns, "reader", role("cutover-log-reader", &["get"])).await;
    let service = env.service(AuthConfig::enabled()).await;
    let base = service.url();
    let path = "/cutover/steps/only/logs";
    let answer = get_log(&base, path, None).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.json()["error"], "missing-bearer");
    let answer = get_log(&base, path, Some(&tokens[1])).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert_eq!(answer.json()["error"], "forbidden");
    // Past authorization, the route's own answer.
    let answer = get_log(&base, path, Some(&tokens[0])).await;
    assert_eq!(answer.status, 409, "{}", answer.body);
    assert_eq!(answer.json()["error"], "step-not-started");
    env.stop(service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_a_running_steps_log_streams_lines_as_they_come() {
    use futures::StreamExt;
    let lines = "pulling library/nginx\npushed 12 layers\nwaiting for harbor\n";
    let env = Env::builder()
        .steps(vec![job_step(
            1,
            "stuck",
            &[
                ("SANDBOX_SIM_OUTCOME", "hang"),
                ("SANDBOX_SIM_RUN_MS", "600"),
                ("SANDBOX_SIM_LOG", lines),
            ],
        )])
        .start()
        .await;
    let service = env.service(AuthConfig::disabled()).await;
    let base = service.url();
    assert_eq!(common::post_status(&base, "/cutover").await, 202);
    // Until the pod's container runs, the log is not there yet.
    let url = format!("{base}/cutover/steps/stuck/logs?follow=true");
    let response = tokio::time::timeout(GUARD, async {
        loop {
            let response = reqwest::get(&url).await.expect("GET");
            if response.status() == 200 {
                return response;
            }
            let code = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert!(
                code == 409
                    && ["step-not-started", "step-log-pending"]
                        .contains(&body["error"].as_str().unwrap_or_default()),
                "{code} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the log is there in time");
    assert_eq!(response.headers()["x-log-source"], "pod");
    let mut stream = response.bytes_stream();
    let mut received = String::new();
    // The container never ends: every line arrives while the response is still open.
    tokio::time::timeout(GUARD, async {
        while received != lines {
            let chunk = stream
                .next()
                .await
                .unwrap_or_else(|| panic!("the stream ended after {received:?}"))
                .expect("chunk");
            received.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
            assert!(lines.starts_with(&received), "{received:?}");
        }
    })
    .await
    .expect("every line in time");
    // Aborting deletes the Job and its pod: the followed log ends.
    assert_eq!(common::post_status(&base, "/cutover/abort").await, 200);
    let rest = tokio::time::timeout(GUARD, async {
        let mut rest = Vec::new();
        while let Some(chunk) = stream.next().await {
            rest.extend_from_slice(&chunk.unwrap_or_default());
        }
        rest
    })
    .await
    .expect("the stream ends with the pod");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    env.stop(service).await;
}

/// A line longer than 64 KiB is cut with a marker; a `jobName` pointed at another step's
/// Job is ignored (the step's own Job is read); pods that carry the Job's name but not the
/// cutover's labels are never read: 404 `step-log-not-found`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_are_cut_and_only_the_steps_own_pods_are_read() {
    let chunk = "x".repeat(1024);
    let env = Env::builder()
        .steps(vec![
            // 100 KiB without a newline.
            job_step(
                1,
                "long",
                &[
                    ("SANDBOX_SIM_LOG", &chunk),
                    ("SANDBOX_SIM_LOG_REPEAT", "100"),
                ],
            ),
            job_step(
                2,
                "other",
                &[("SANDBOX_SIM_LOG", "other: the database password\n")],
            ),
        ])
        .start()
        .await;
    let service = env.service(AuthConfig::disabled()).await;
    let base = service.url();
    assert_eq!(common::post_status(&base, "/cutover").await, 202);
    let data = env.wait_phase(&["complete", "failed"]).await;
    assert_eq!(data["cutoverPhase"], "complete", "{data:#?}");

    let answer = get_log(&base, "/cutover/steps/long/logs", None).await;
    assert_eq!((answer.status, answer.source.as_str()), (200, "pod"));
    let cut = "x".repeat(64 * 1024);
    assert!(answer.body.starts_with(&cut));
    assert!(
        answer
            .body
            .ends_with(" [catalyst-cutover: line cut at 65536 bytes, 36864 more dropped]\n"),
        "{}",
        &answer.body[cut.len()..]
    );

    // Whoever may edit ConfigMaps points `long`'s jobName at `other`'s Job.
    let forged = serde_json::json!({"data": {"step.long.jobName": "cutover-other-a1"}});
    env.configmaps()
        .patch(
            DEFAULT_STATUS_CONFIGMAP,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&forged),
        )
        .await
        .expect("forge the jobName");
    tokio::time::timeout(GUARD, async {
        loop {
            let status: Value = reqwest::get(format!("{base}/cutover"))
                .await
                .expect("GET")
                .json()
                .await
                .expect("JSON");
            if status["raw"]["step.long.jobName"] == "cutover-other-a1" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the service sees the forged status");
    let answer = get_log(&base, "/cutover/steps/long/logs", None).await;
    assert_eq!(answer.status, 200);
    assert!(answer.body.starts_with(&cut), "long's own log");
    assert!(!answer.body.contains("password"));

    // A pod that carries `long`'s Job name and nothing else of the cutover's, once the
    // step's own pods and its kept tail are gone.
    env.delete_jobs_and_pods().await;
    env.configmaps()
        .delete(
            &format!("{DEFAULT_STATUS_CONFIGMAP}-log-r1-long"),
            &DeleteParams::default(),
        )
        .await
        .expect("delete the kept tail");
    let impostor: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "impostor", "labels": {contract::LABEL_JOB_NAME: "cutover-long-a1"}},
        "spec": {"containers": [{"name": "c", "image": "busybox",
                 "env": [{"name": "SANDBOX_SIM_LOG", "value": "impostor: the database password\n"}]}]}
    }))
    .expect("pod");
    Api::<Pod>::namespaced(env.cluster.client(), env.ns())
        .create(&PostParams::default(), &impostor)
        .await
        .expect("create the impostor");
    let answer = get_log(&base, "/cutover/steps/long/logs", None).await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(answer.json()["error"], "step-log-not-found");
    assert!(!answer.body.contains("password"));
    env.stop(service).await;
}
