//! `catalyst-cutover status`, the binary itself, against the sandbox (or unchanged against
//! `CUTOVER_TEST_KUBECONFIG`): it reads the status ConfigMap through the Kubernetes API with
//! the kubeconfig it is given, prints the demo's table or the JSON of `GET /cutover`,
//! `--watch` follows a run to its end, and every exit code is covered.

mod common;

use catalyst_cutover::auth::AuthConfig;
use catalyst_cutover::contract::DEFAULT_STATUS_CONFIGMAP;
use catalyst_cutover::service::Service;
use common::{Env, job_step};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::wait::await_condition;
use serde_json::Value;
use std::process::Output;
use std::time::Duration;
use tokio::process::Command;

/// Hang guard for one wait, not a speed assertion.
const GUARD: Duration = Duration::from_secs(60);

/// What the status CLI's tests ask of their environment.
impl Env {
    async fn service(&self) -> Service {
        let mut config = self.service_config();
        // A failing step fails after two pods: a real Job controller backs off 10 s before
        // the second (and 20, 40 s before more).
        config.render.backoff_limit = 1;
        config.auth = AuthConfig::disabled();
        let service = self.ready_service(config).await;
        // The service creates the status ConfigMap as it starts; the CLI reads it.
        let has_status = |cm: Option<&ConfigMap>| cm.is_some();
        tokio::time::timeout(
            GUARD,
            await_condition(self.configmaps(), DEFAULT_STATUS_CONFIGMAP, has_status),
        )
        .await
        .expect("status ConfigMap in time")
        .expect("watch");
        service
    }

    /// `catalyst-cutover status --kubeconfig <test's> -n <test's namespace> <args>`.
    fn status_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_catalyst-cutover"));
        command
            .arg("status")
            .arg("--kubeconfig")
            .arg(self.kubeconfig_file())
            .args(["-n", self.ns()])
            .args(args)
            .env_remove("KUBECONFIG")
            .env_remove("CATALYST_CUTOVER_NAMESPACE")
            .env_remove("CATALYST_CUTOVER_STATUS_CONFIGMAP")
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(GUARD, self.status_command(args).output())
            .await
            .expect("status ends in time")
            .expect("run catalyst-cutover status")
    }

    /// `status --watch` as a table and as JSON, both started on the idle status, then a
    /// start: what each printed once the run ended.
    async fn watch_a_run(&self, service: &Service) -> (Output, Output) {
        let table = self.status_command(&["--watch"]).output();
        let json = self.status_command(&["--watch", "-o", "json"]).output();
        let watchers = tokio::spawn(async move {
            let both = async { tokio::join!(table, json) };
            tokio::time::timeout(GUARD, both).await
        });
        // The watchers' first read happens before the start or after it: both must end.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(common::post_status(&service.url(), "/cutover").await, 202);
        let (table, json) = watchers
            .await
            .expect("watchers")
            .expect("the watchers end with the run");
        (table.expect("table"), json.expect("json"))
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every stdout line as JSON.
fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_a_run_to_its_end_and_exits_0() {
    let slow = [("SANDBOX_SIM_RUN_MS", "300")];
    let env = Env::builder()
        .steps(vec![
            job_step(1, "first", &slow),
            job_step(2, "second", &slow),
        ])
        .start()
        .await;
    let service = env.service().await;
    let (table, json) = env.watch_a_run(&service).await;

    assert_eq!(table.status.code(), Some(0), "{}", stderr(&table));
    let text = stdout(&table);
    for line in ["first", "second"].map(|s| format!("{s:<28} success   cutover-{s}-a1")) {
        assert!(text.contains(&line), "{line:?} in\n{text}");
    }
    assert!(
        text.trim_end()
            .ends_with("cutover complete: 2 steps, 100% (state sovereign)"),
        "{text}"
    );

    assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
    let documents = json_lines(&json);
    assert!(documents.len() >= 2, "a line per change: {documents:#?}");
    let last = documents.last().expect("a document");
    assert_eq!(last["cutoverComplete"], true);
    assert_eq!(last["phase"], "complete");
    let names: Vec<&str> = last["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["first", "second"], "execution order");
    env.stop(service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_3_while_idle_and_running_then_1_once_failed() {
    let env = Env::builder()
        .steps(vec![
            job_step(1, "stuck", &[("SANDBOX_SIM_OUTCOME", "hang")]),
            job_step(2, "never", &[]),
        ])
        .start()
        .await;
    let service = env.service().await;
    let base = service.url();

    let idle = env.run(&[]).await;
    assert_eq!(idle.status.code(), Some(3), "{}", stderr(&idle));
    let text = stdout(&idle);
    assert!(text.contains(&format!("{:<28} pending", "stuck")), "{text}");
    assert!(text.contains(&format!("{:<28} pending", "never")), "{text}");
    assert!(text.contains("no cutover has started"), "{text}");

    assert_eq!(common::post_status(&base, "/cutover").await, 202);
    env.wait_step("stuck", "running").await;
    let running = env.run(&[]).await;
    assert_eq!(running.status.code(), Some(3), "{}", stderr(&running));
    let text = stdout(&running);
    assert!(
        text.contains(&format!("{:<28} running   cutover-stuck-a1", "stuck")),
        "{text}"
    );
    assert!(
        text.contains("cutover running: step stuck (1 of 2)"),
        "{text}"
    );
    let running = env.run(&["-o", "json"]).await;
    assert_eq!(running.status.code(), Some(3));
    let documents = json_lines(&running);
    assert_eq!(documents.len(), 1, "one document without --watch");
    assert_eq!(documents[0]["phase"], "running");
    assert_eq!(documents[0]["currentStep"], "stuck");

    assert_eq!(common::post_status(&base, "/cutover/abort").await, 200);
    env.wait_step("stuck", "failed").await;
    let failed = env.run(&["--watch"]).await;
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    let text = stdout(&failed);
    assert!(
        text.contains("cutover failed at stuck: aborted by"),
        "{text}"
    );
    let failed = env.run(&["-o", "json"]).await;
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(json_lines(&failed)[0]["failedStep"], "stuck");
    env.stop(service).await;
}

/// `catalyst-cutover status | head -0`: the reader is gone before the first line; the
/// command ends quietly with 0 instead of panicking on the closed pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_status_quietly() {
    let env = Env::builder()
        .steps(vec![job_step(1, "only", &[])])
        .start()
        .await;
    let service = env.service().await;
    for args in [&[][..], &["-o", "json"]] {
        let mut child = env
            .status_command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run catalyst-cutover status");
        // The read end closes before the command has read the status, so its first write
        // meets a closed pipe.
        drop(child.stdout.take());
        let output = tokio::time::timeout(GUARD, child.wait_with_output())
            .await
            .expect("status ends in time")
            .expect("status output");
        let err = stderr(&output);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(output.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: quiet, not {err}");
    }
    env.stop(service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_status_is_a_clear_error_with_exit_4_and_bad_usage_2() {
    let env = Env::builder().steps(Vec::new()).start().await;

    // No service has run in this namespace: no status ConfigMap.
    let missing = env.run(&[]).await;
    assert_eq!(missing.status.code(), Some(4));
    let err = stderr(&missing);
    assert!(
        err.contains(&format!(
            "no status ConfigMap \"{DEFAULT_STATUS_CONFIGMAP}\" in namespace \"{}\"",
            env.ns()
        )),
        "{err}"
    );
    assert!(stdout(&missing).is_empty());
    let missing = env.run(&["--watch", "-o", "json"]).await;
    assert_eq!(missing.status.code(), Some(4), "{}", stderr(&missing));

    let nowhere = std::env::temp_dir().join(format!("{}-no-such.kubeconfig", env.ns()));
    let bad = Command::new(env!("CARGO_BIN_EXE_catalyst-cutover"))
        .arg("status")
        .arg("--kubeconfig")
        .arg(&nowhere)
        .output()
        .await
        .expect("run");
    assert_eq!(bad.status.code(), Some(4));
    let err = stderr(&bad);
    assert!(err.contains(&nowhere.display().to_string()), "{err}");

    let garbage = std::env::temp_dir().join(format!("{}-garbage.kubeconfig", env.ns()));
    std::fs::write(&garbage, "this: [is not a kubeconfig").expect("write");
    let bad = Command::new(env!("CARGO_BIN_EXE_catalyst-cutover"))
        .arg("status")
        .arg("--kubeconfig")
        .arg(&garbage)
        .output()
        .await
        .expect("run");
    let _ = std::fs::remove_file(&garbage);
    assert_eq!(bad.status.code(), Some(4), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("no cluster to talk to"),
        "{}",
        stderr(&bad)
    );

    let usage = env.run(&["-o", "yaml"]).await;
    assert_eq!(usage.status.code(), Some(2));
    assert!(stderr(&usage).contains("yaml"), "{}", stderr(&usage));

    env.cleanup().await;
}

/// What a terminal would act on in `text`: anything unsafe but the line breaks.
fn terminal_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| *c != '\n' && catalyst_cutover::sanitize::is_unsafe(*c))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_termination_message_with_escape_sequences_cannot_make_watch_lie() {
    // Erase the line, go up one and print a success over the failure, then reverse the rest.
    let lie = "\u{1b}[2K\r\u{1b}[1Acutover complete: 2 steps, 100% (state sovereign)\u{202e} x";
    let env = Env::builder()
        .steps(vec![
            job_step(1, "first", &[]),
            job_step(
                2,
                "evil",
                &[
                    ("SANDBOX_SIM_OUTCOME", "fail"),
                    ("SANDBOX_SIM_MESSAGE", lie),
                ],
            ),
        ])
        .start()
        .await;
    let service = env.service().await;
    let (table, json) = env.watch_a_run(&service).await;

    assert_eq!(table.status.code(), Some(1), "{}", stderr(&table));
    let text = stdout(&table);
    assert_eq!(terminal_controls(&text), Vec::<char>::new(), "{text:?}");
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(last.starts_with("cutover failed at evil: "), "{text:?}");
    assert!(
        !text.lines().any(|l| l.starts_with("cutover complete")),
        "no line claims success: {text:?}"
    );
    assert_eq!(json.status.code(), Some(1), "{}", stderr(&json));
    assert_eq!(
        terminal_controls(&stdout(&json)),
        Vec::<char>::new(),
        "{}",
        stdout(&json)
    );
    let last = json_lines(&json).pop().expect("a document");
    assert_eq!(last["phase"], "failed");
    assert_eq!(
        terminal_controls(last["lastError"].as_str().unwrap_or("")),
        Vec::<char>::new()
    );

    // Whatever else writes the ConfigMap (the edit role can), the CLI escapes it.
    let api: Api<ConfigMap> = Api::namespaced(env.cluster.client(), env.ns());
    let patch = serde_json::json!({"data": {"lastError": lie, "failedStep": "evil\u{202e}"}});
    api.patch(
        DEFAULT_STATUS_CONFIGMAP,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .expect("patch the status");
    let shown = env.run(&[]).await;
    assert_eq!(shown.status.code(), Some(1), "{}", stderr(&shown));
    let text = stdout(&shown);
    assert_eq!(terminal_controls(&text), Vec::<char>::new(), "{text:?}");
    assert!(
        text.contains(
            "cutover failed at evil\\u{202e}: \\e[2K\\r\\e[1Acutover complete: 2 steps, 100% (state sovereign)\\u{202e} x"
        ),
        "escaped, on one line: {text:?}"
    );
    let shown = env.run(&["-o", "json"]).await;
    assert_eq!(
        terminal_controls(&stdout(&shown)),
        Vec::<char>::new(),
        "{}",
        stdout(&shown)
    );
    assert_eq!(
        json_lines(&shown)[0]["lastError"],
        lie,
        "the JSON still says it all"
    );
    env.stop(service).await;
}
