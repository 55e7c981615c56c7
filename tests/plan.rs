//! `catalyst-cutover plan`: the built binary against directories of step manifests, and
//! against a cluster.

mod common;

use k8s_openapi::api::batch::v1::Job;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A step script full of go-template braces that must reach the pod untouched.
const SCRIPT: &str = r#"kubectl get cm x -o go-template='{{ .metadata.name }}' && echo "{{{x}}}""#;

/// A fresh directory that removes itself.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("cutover-plan-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn write(&self, file: &str, text: &str) {
        let path = self.0.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A job step ConfigMap; `spec_line` goes into the PodSpec before its containers.
fn job_step(order: u32, slug: &str, spec_line: &str) -> String {
    let script = serde_json::to_string(SCRIPT).unwrap();
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: cutover-step-{order:02}-{slug}
  labels:
    app.kubernetes.io/part-of: self-sovereign-cutover
    app.kubernetes.io/component: cutover-step
    bp.openova.io/cutover-order: "{order}"
data:
  stepName: {slug}
  run.sh: |
    echo hello
  podSpec: |
    {spec_line}
    containers:
    - name: main
      image: alpine:3.20
      command: [sh, -c, {script}]
"#
    )
}

fn wait_step(order: u32, slug: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: cutover-step-{order:02}-{slug}
  labels:
    app.kubernetes.io/part-of: self-sovereign-cutover
    app.kubernetes.io/component: cutover-step
    bp.openova.io/cutover-order: "{order}"
    bp.openova.io/cutover-mode: daemonset-wait
data:
  stepName: {slug}
"#
    )
}

fn plan(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_catalyst-cutover"));
    cmd.arg("plan").arg("--from-dir").arg(dir).args(args);
    cmd.env_remove("CATALYST_CUTOVER_NAMESPACE");
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().unwrap()
}

fn parse_jobs(stdout: &[u8]) -> Vec<Job> {
    let text = std::str::from_utf8(stdout).unwrap();
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .filter(|value| !value.is_null())
        .map(|value| serde_yaml::from_value(value).unwrap())
        .collect()
}

#[test]
fn good_steps_print_their_jobs_in_order() {
    let dir = TempDir::new();
    dir.write(
        "03-c.yaml",
        &job_step(3, "flux-patch", "activeDeadlineSeconds: 7200"),
    );
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n";
    dir.write(
        "01-a.yaml",
        &format!("{}---\n{secret}", job_step(1, "gitea-mirror", "")),
    );
    dir.write("nested/02-b.yml", &wait_step(2, "registry-pivot"));

    let args = ["--backoff-limit", "5", "--step-deadline", "20m"];
    let out = plan(&dir.0, &args, &[("CATALYST_CUTOVER_NAMESPACE", "from-env")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wait_line = "# step 2/3 registry-pivot (ConfigMap cutover-step-02-registry-pivot, order 2): \
                     daemonset-wait, no Job: sets registriesYamlActive=v2, then waits for DaemonSet \
                     registry-pivot";
    assert!(stdout.contains(wait_line), "{stdout}");

    let jobs = parse_jobs(&out.stdout);
    let names: Vec<_> = jobs
        .iter()
        .map(|j| j.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, ["cutover-gitea-mirror-a1", "cutover-flux-patch-a1"]);
    for job in &jobs {
        assert_eq!(job.metadata.namespace.as_deref(), Some("from-env"));
        let labels = job.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["app.kubernetes.io/component"], "cutover-job");
        assert_eq!(labels["cutover.openova.io/attempt"], "1");
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(5));
        assert_eq!(spec.ttl_seconds_after_finished, Some(86_400));
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.containers[0].command.as_ref().unwrap()[2], SCRIPT);
    }
    let deadlines: Vec<_> = jobs
        .iter()
        .map(|j| j.spec.as_ref().unwrap().active_deadline_seconds)
        .collect();
    assert_eq!(deadlines, [Some(1200), Some(7200)]);

    let env = [("CATALYST_CUTOVER_NAMESPACE", "from-env")];
    let flag = plan(&dir.0, &["--namespace", "from-flag"], &env);
    assert!(flag.status.success());
    assert_eq!(
        parse_jobs(&flag.stdout)[0].metadata.namespace.as_deref(),
        Some("from-flag")
    );
}

#[test]
fn preflight_steps_are_planned_first_as_jobs_of_their_own() {
    let dir = TempDir::new();
    dir.write("01-a.yaml", &job_step(1, "gitea-mirror", ""));
    let preflight = job_step(5, "preflight", "").replace(
        "    bp.openova.io/cutover-order: \"5\"\n",
        "    bp.openova.io/cutover-order: \"5\"\n    bp.openova.io/cutover-mode: preflight\n",
    );
    dir.write("05-p.yaml", &preflight);
    let out = plan(&dir.0, &[], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let head = "# step 1/2 preflight (ConfigMap cutover-step-05-preflight, order 5): preflight \
                (changes nothing; runs first on every start and retry), Job cutover-preflight-a1";
    assert!(stdout.contains(head), "{stdout}");
    let names: Vec<_> = parse_jobs(&out.stdout)
        .into_iter()
        .map(|j| j.metadata.name.unwrap_or_default())
        .collect();
    assert_eq!(names, ["cutover-preflight-a1", "cutover-gitea-mirror-a1"]);
}

#[test]
fn bad_steps_exit_2_with_a_report_naming_configmap_and_field() {
    let dir = TempDir::new();
    dir.write(
        "01.yaml",
        &job_step(1, "gitea-mirror", "restartPolicy: Always"),
    );
    dir.write("02.yaml", &job_step(1, "Bad_Name", ""));
    dir.write("03.yaml", &job_step(3, "broken", "initContainers: {"));

    let out = plan(&dir.0, &[], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing half-printed");
    for needle in [
        "ConfigMap cutover-step-01-gitea-mirror, data.podSpec.restartPolicy: \"Always\" is not allowed",
        "ConfigMap cutover-step-01-gitea-mirror, metadata.labels[\"bp.openova.io/cutover-order\"]: \
         duplicate order 1",
        "ConfigMap cutover-step-01-Bad_Name, data.stepName: cannot name a Job",
        "ConfigMap cutover-step-03-broken, data.podSpec: not a valid PodSpec",
        "at line 1 column 17 (lines of the podSpec value)",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in\n{stderr}");
    }
}

#[test]
fn an_empty_directory_is_no_steps_and_a_missing_one_an_error() {
    let dir = TempDir::new();
    let out = plan(&dir.0, &[], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no step ConfigMaps"));

    let out = plan(&dir.0.join("missing"), &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn an_operator_template_is_used_and_a_broken_one_refused() {
    let dir = TempDir::new();
    dir.write("steps/01.yaml", &job_step(1, "gitea-mirror", ""));
    let builtin = include_str!("../templates/job.yaml.hbs");
    dir.write(
        "tpl/job.yaml.hbs",
        &builtin.replace("backoffLimit: {{json backoffLimit}}", "backoffLimit: 0"),
    );
    dir.write(
        "bad/job.yaml.hbs",
        &builtin.replace("{{json podSpec}}", "{{json podSpecc}}"),
    );
    let steps = dir.0.join("steps");

    let tpl = dir.0.join("tpl");
    let out = plan(&steps, &["--template-dir", tpl.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        parse_jobs(&out.stdout)[0]
            .spec
            .as_ref()
            .unwrap()
            .backoff_limit,
        Some(0)
    );

    let bad = dir.0.join("bad");
    let out = plan(&steps, &["--template-dir", bad.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bad/job.yaml.hbs") && stderr.contains("podSpecc"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reads_the_steps_of_a_cluster_and_checks_its_daemonsets() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, PostParams};
    let cluster = common::TestCluster::start().await;
    let api: Api<ConfigMap> = Api::namespaced(cluster.client(), cluster.namespace());
    for text in [
        job_step(1, "gitea-mirror", ""),
        wait_step(2, "registry-pivot"),
    ] {
        let cm: ConfigMap = serde_yaml::from_str(&text).unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let kubeconfig = TempDir::new();
    kubeconfig.write(
        "config",
        &serde_yaml::to_string(cluster.kubeconfig()).unwrap(),
    );
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_catalyst-cutover"))
            .args(["plan", "--namespace", cluster.namespace(), "--kubeconfig"])
            .arg(kubeconfig.0.join("config"))
            .output()
            .unwrap()
    };
    let out = tokio::task::block_in_place(run);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cutover-step-02-registry-pivot") && stderr.contains("registry-pivot"),
        "the missing DaemonSet is reported: {stderr}"
    );

    let ds: k8s_openapi::api::apps::v1::DaemonSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "registry-pivot"},
        "spec": {"selector": {"matchLabels": {"app": "p"}}, "template": {
            "metadata": {"labels": {"app": "p"}},
            "spec": {"containers": [{"name": "a", "image": "busybox:1.36"}]}}}
    }))
    .unwrap();
    Api::namespaced(cluster.client(), cluster.namespace())
        .create(&PostParams::default(), &ds)
        .await
        .unwrap();
    let out = tokio::task::block_in_place(run);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jobs = parse_jobs(&out.stdout);
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].metadata.namespace.as_deref(),
        Some(cluster.namespace())
    );
    cluster.cleanup().await;
}
