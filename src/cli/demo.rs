//! `catalyst-cutover demo`: the whole cutover on one laptop. It starts the sandbox (API
//! server and simulator), installs the chart's step ConfigMaps from the chart's own files
//! and a registry-pivot DaemonSet for each daemonset-wait step (its simulated pods run the
//! agent's own code on temporary directories), starts the service, triggers the cutover through the
//! service's HTTP API, shows each step live, and prints the final status ConfigMap.

use super::args::{parse_duration, shutdown_signal};
use super::table::Display;
use crate::contract::{DEFAULT_NAMESPACE, DEFAULT_STATUS_CONFIGMAP};
use crate::demo::{Sandbox, SandboxOptions};
use crate::service::{Service, ServiceConfig};
use crate::status::StatusBody;
use crate::status::model::{Phase, StatusData};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The chart directory of the source tree the binary was built from.
const CHART_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/chart");

/// Arguments of `demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// The chart whose steps/ files are installed [default: the source tree's chart/].
    #[arg(long, value_name = "DIR")]
    chart: Option<PathBuf>,
    /// Simulated nodes.
    #[arg(long, value_name = "N", default_value_t = 3)]
    nodes: usize,
    /// How long each simulated step pod runs.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "400ms")]
    step_time: Duration,
    /// Keep the sandbox and the service up after the cutover (for curl and kubectl) until
    /// Ctrl-C.
    #[arg(long)]
    serve: bool,
    /// Address of the service's HTTP API (port 0 picks a free one; the URL is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to write the sandbox's kubeconfig [default: a file in the temp directory].
    #[arg(long, value_name = "FILE")]
    kubeconfig_out: Option<PathBuf>,
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error("{path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error(transparent)]
    Load(#[from] crate::step::LoadError),
    #[error(transparent)]
    Sandbox(#[from] crate::demo::SandboxError),
    #[error(transparent)]
    ApiServer(#[from] kube_sandbox::api::ApiServerError),
    #[error(transparent)]
    Service(#[from] crate::service::StartError),
    #[error("the sandbox refused {what}: {source}")]
    Kube { what: String, source: kube::Error },
    #[error("cannot trigger the cutover at {url}: {message}")]
    Trigger { url: String, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the cutover failed at step {step:?}: {reason}")]
    Failed { step: String, reason: String },
}

impl super::exit::Failure for DemoError {}

/// Runs `demo`: 0 when the cutover completes, 1 otherwise.
pub fn run(args: DemoArgs) -> ExitCode {
    super::exit::run("demo", demo(args))
}

async fn demo(args: DemoArgs) -> Result<(), DemoError> {
    let chart = args
        .chart
        .clone()
        .unwrap_or_else(|| PathBuf::from(CHART_DIR));
    let steps = crate::step::load_dir(&chart.join("steps"))?;
    // Validate before starting anything: a broken chart reports itself, nothing half-done.
    let plan = crate::step::parse_plan(&steps).map_err(|report| DemoError::Manifest {
        path: chart.join("steps"),
        message: report.to_string(),
    })?;
    let names: Vec<String> = plan.iter().map(|s| s.name.as_str().to_owned()).collect();

    let sandbox = Sandbox::start(SandboxOptions {
        api: kube_sandbox::api::ApiServerConfig {
            custom_resource_definitions: kube_sandbox::api::flux_and_cilium_crds(),
            ..Default::default()
        },
        nodes: args.nodes,
        default_run: args.step_time,
        ..SandboxOptions::default()
    })
    .await?;
    let kubeconfig = sandbox.api().kubeconfig(sandbox.api().admin_token());
    let kubeconfig_path = args
        .kubeconfig_out
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("catalyst-cutover-demo.kubeconfig"));
    let yaml = serde_yaml::to_string(&kubeconfig).map_err(|e| DemoError::Manifest {
        path: kubeconfig_path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&kubeconfig_path, yaml).map_err(|source| DemoError::Write {
        path: kubeconfig_path.clone(),
        source,
    })?;
    let client = sandbox.api().admin_client().await?;
    install(
        &client,
        &steps,
        &crate::http::pivot_rollback::daemonsets_of(&plan),
    )
    .await?;

    let kube_config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| DemoError::Trigger {
            url: sandbox.api().url(),
            message: e.to_string(),
        })?;
    let mut config = ServiceConfig::new(DEFAULT_NAMESPACE);
    // The chart's steps meet the default policy that `serve` enforces.
    config.step_policy = crate::step::StepPolicy::default();
    config.listen = args.listen;
    let service = Service::start(kube_config, config).await?;
    let base = service.url();
    println!("sandbox API server  {}", sandbox.api().url());
    println!("kubeconfig          {}", kubeconfig_path.display());
    println!("catalyst-cutover    {base}");
    println!();

    service.ready().await;
    let progress = tokio::spawn(show_progress(client.clone(), names));
    trigger(&base).await?;
    let outcome = progress.await.unwrap_or(None);

    let cm = Api::<ConfigMap>::namespaced(client, DEFAULT_NAMESPACE)
        .get(DEFAULT_STATUS_CONFIGMAP)
        .await
        .map_err(|source| DemoError::Kube {
            what: "a read of the status ConfigMap".to_owned(),
            source,
        })?;
    println!();
    println!("# kubectl get configmap {DEFAULT_STATUS_CONFIGMAP} -n {DEFAULT_NAMESPACE} -o yaml");
    print!("{}", status_yaml(&cm));

    let result = match outcome {
        Some(data) if Phase::of(&data) == Phase::Complete => Ok(()),
        Some(data) => Err(DemoError::Failed {
            step: crate::status::model::get(&data, crate::contract::key::FAILED_STEP).to_owned(),
            reason: crate::status::model::get(&data, crate::contract::key::LAST_ERROR).to_owned(),
        }),
        None => Err(DemoError::Failed {
            step: String::new(),
            reason: "the status watch ended".to_owned(),
        }),
    };
    if args.serve {
        println!();
        println!("Serving until Ctrl-C. Try:");
        println!("  {base}/   (the live page, in a browser)");
        println!("  curl -s {base}/cutover");
        println!(
            "  kubectl --kubeconfig {} -n {DEFAULT_NAMESPACE} get jobs,configmaps",
            kubeconfig_path.display()
        );
        shutdown_signal().await;
    }
    service.shutdown().await;
    sandbox.shutdown().await;
    result
}

/// Creates the namespace, the step ConfigMaps and the registry-pivot manifests.
async fn install(
    client: &kube::Client,
    steps: &[ConfigMap],
    daemonset_names: &[String],
) -> Result<(), DemoError> {
    let kube_err = |what: String| move |source| DemoError::Kube { what, source };
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": DEFAULT_NAMESPACE}}))
            .map_err(|e| DemoError::Manifest {
                path: PathBuf::from(DEFAULT_NAMESPACE),
                message: e.to_string(),
            })?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .map_err(kube_err(format!("namespace {DEFAULT_NAMESPACE}")))?;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), DEFAULT_NAMESPACE);
    for cm in steps {
        let name = cm.metadata.name.clone().unwrap_or_default();
        configmaps
            .create(&PostParams::default(), cm)
            .await
            .map_err(kube_err(format!("step ConfigMap {name}")))?;
    }
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), DEFAULT_NAMESPACE);
    for name in daemonset_names {
        let ds = agent_daemonset(name).map_err(|e| DemoError::Manifest {
            path: PathBuf::from(format!("DaemonSet {name}")),
            message: e.to_string(),
        })?;
        daemonsets
            .create(&PostParams::default(), &ds)
            .await
            .map_err(kube_err(format!("the registry-pivot DaemonSet {name}")))?;
    }
    Ok(())
}

/// A registry-pivot DaemonSet as the chart's runs `catalyst-cutover agent`; the simulator
/// schedules its pods, the demo's agents act for them.
fn agent_daemonset(name: &str) -> Result<DaemonSet, serde_json::Error> {
    let labels = serde_json::json!({
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": crate::contract::PART_OF,
        "app.kubernetes.io/component": "registry-pivot",
    });
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": "registry-pivot",
                    "containers": [{
                        "name": "agent",
                        "image": "ghcr.io/openova-io/catalyst-cutover:demo",
                        "args": ["agent"],
                    }],
                },
            },
        },
    }))
}

/// `POST /cutover` on the service, as an operator would.
async fn trigger(base: &str) -> Result<(), DemoError> {
    let url = format!("{base}/cutover");
    let err = |message: String| DemoError::Trigger {
        url: url.clone(),
        message,
    };
    let response = reqwest::Client::new()
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    match response.status().as_u16() {
        202 => Ok(()),
        code => {
            let body = response.text().await.unwrap_or_default();
            Err(err(format!("HTTP {code}: {body}")))
        }
    }
}

/// Follows the status ConfigMap with a watch and shows each step as it moves; returns the
/// final data once the cutover is complete or failed.
async fn show_progress(client: kube::Client, names: Vec<String>) -> Option<StatusData> {
    let order: Vec<&str> = names.iter().map(String::as_str).collect();
    let api: Api<ConfigMap> = Api::namespaced(client, DEFAULT_NAMESPACE);
    let stream = watcher::watch_object(api, DEFAULT_STATUS_CONFIGMAP);
    futures::pin_mut!(stream);
    let mut display = Display::new(false);
    while let Some(event) = stream.next().await {
        let Ok(Some(cm)) = event else { continue };
        let data = cm.data.unwrap_or_default();
        let body = StatusBody::build(&data, Some(&order));
        display.update(&body);
        if matches!(Phase::of(&data), Phase::Complete | Phase::Failed) {
            display.finish(&body);
            return Some(data);
        }
    }
    None
}

/// The status ConfigMap as `kubectl get -o yaml` would show it, without managed fields.
fn status_yaml(cm: &ConfigMap) -> String {
    let mut cm = cm.clone();
    cm.metadata.managed_fields = None;
    serde_yaml::to_string(&cm).unwrap_or_default()
}
