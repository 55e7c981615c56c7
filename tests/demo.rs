//! `catalyst-cutover demo`, as a newcomer runs it: the chart's eleven steps on the embedded
//! sandbox, triggered through the service's HTTP API, exit 0 on completion.

mod common;

use std::process::Command;

#[test]
fn demo_runs_the_charts_eleven_steps_to_completion() {
    let kubeconfig =
        std::env::temp_dir().join(format!("demo-test-{}.kubeconfig", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_catalyst-cutover"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--step-time",
            "50ms",
            "--kubeconfig-out",
        ])
        .arg(&kubeconfig)
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains(&format!(
            "cutover complete: {} steps, 100% (state sovereign)",
            common::CHART_STEPS.len() + 1
        )),
        "{stdout}"
    );
    // The preflight is shown first, before the first changing step starts.
    let preflight = stdout.find("preflight").expect("the preflight is shown");
    let first_change = stdout
        .find(common::CHART_STEPS[0])
        .expect("step 1 is shown");
    assert!(preflight < first_change, "{stdout}");
    for step in std::iter::once(common::CHART_PREFLIGHT).chain(common::CHART_STEPS) {
        assert!(
            stdout.contains(&format!("step.{step}.result: success")),
            "{step}\n{stdout}"
        );
    }
    assert!(stdout.contains("cutoverComplete: 'true'"), "{stdout}");
    let written = std::fs::read_to_string(&kubeconfig).expect("kubeconfig written");
    assert!(written.contains("server: http://127.0.0.1:"));
    let _ = std::fs::remove_file(kubeconfig);
}

#[test]
fn demo_with_a_broken_chart_starts_nothing_and_names_the_problem() {
    let dir = std::env::temp_dir().join(format!("demo-bad-chart-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("steps")).unwrap();
    std::fs::write(
        dir.join("steps/01.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cutover-step-01-x\n  labels:\n    app.kubernetes.io/part-of: self-sovereign-cutover\n    app.kubernetes.io/component: cutover-step\n    bp.openova.io/cutover-order: one\ndata:\n  stepName: x\n  podSpec: 'containers: []'\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_catalyst-cutover"))
        .args(["demo", "--listen", "127.0.0.1:0", "--chart"])
        .arg(&dir)
        .output()
        .expect("run demo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cutover-step-01-x"), "{stderr}");
    assert!(stderr.contains("bp.openova.io/cutover-order"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
