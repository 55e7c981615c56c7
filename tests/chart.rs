//! The Helm chart under `chart/`, rendered and linted by Helm itself (`helm template`,
//! `helm lint --strict`): [`helm`] finds it as `$HELM`, else `shared/k8s/bin/helm` beside
//! an ancestor of this checkout (the project's `../shared`), else `helm` on PATH, and fails
//! naming how to get one. The checks then run over the rendered manifests: the contract's
//! step format, the status ConfigMap, RBAC (derived from the scripts and the service's code,
//! then checked with SubjectAccessReviews), NetworkPolicies, images, the values schema and
//! the step scripts (`sh -n` and ShellCheck).

#[path = "chart/cluster.rs"]
mod cluster;
mod common;
#[path = "chart/later_steps.rs"]
mod later_steps;
#[path = "chart/live.rs"]
mod live;
#[path = "chart/standins.rs"]
mod standins;
#[path = "chart/steps.rs"]
mod steps;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use catalyst_cutover::contract::{self, key};
use catalyst_cutover::status::model::{KEY_SCHEMA_VERSION, initial_data};
use catalyst_cutover::step::{StepKind, load_dir, parse_plan};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube_sandbox::access_control::{Attributes, RbacRules, UserInfo, authorize};
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// The release namespace the renders assume.
const NAMESPACE: &str = "catalyst";
/// The release name the renders use.
const RELEASE: &str = "bp-self-sovereign-cutover";
/// The image the plain files under steps/ and hooks/ name, which the chart swaps
/// for the one the values choose (templates/_helpers.tpl).
const SHIPPED_IMAGE: &str = "docker.io/alpine/k8s:1.33.4";
/// The eleven steps, in order.
const STEPS: [&str; 11] = common::CHART_STEPS;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("chart")
}

fn read(rel: &str) -> String {
    fs::read_to_string(chart().join(rel)).unwrap_or_else(|e| panic!("chart/{rel}: {e}"))
}

/// `appVersion` in `Chart.yaml`: what `.Chart.AppVersion` renders.
fn app_version() -> String {
    let chart: Yaml = serde_yaml::from_str(&read("Chart.yaml")).expect("Chart.yaml parses");
    chart["appVersion"]
        .as_str()
        .expect("Chart.yaml has a string appVersion")
        .to_owned()
}

fn default_values() -> Json {
    serde_yaml::from_str(&read("values.yaml")).expect("values.yaml parses")
}

/// Chart files matching `dir/*suffix`, sorted.
fn glob(pattern: &str) -> Vec<String> {
    let (dir, file) = pattern.rsplit_once('/').expect("glob has a directory");
    let suffix = file
        .strip_prefix('*')
        .unwrap_or_else(|| panic!("unsupported glob {pattern}"));
    let mut out: Vec<String> = fs::read_dir(chart().join(dir))
        .unwrap_or_else(|e| panic!("chart/{dir}: {e}"))
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .into_string()
                .expect("utf-8 name")
        })
        .filter(|name| name.ends_with(suffix))
        .map(|name| format!("{dir}/{name}"))
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------
// Helm.
// ---------------------------------------------------------------------------------------

/// Where Helm is: `$HELM`; else `shared/k8s/bin/helm` beside an ancestor of this checkout;
/// else `helm` on PATH. Without one the chart cannot be checked, so the test fails.
fn helm() -> PathBuf {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        if let Some(path) = std::env::var_os("HELM") {
            return PathBuf::from(path);
        }
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR"));
        let beside = checkout
            .ancestors()
            .skip(1)
            .map(|dir| dir.join("shared/k8s/bin/helm"))
            .find(|path| path.is_file());
        let on_path = || {
            std::env::var_os("PATH")
                .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .map(|dir| dir.join("helm"))
                .find(|path| path.is_file())
        };
        beside.or_else(on_path).unwrap_or_else(|| {
            panic!(
                "no Helm to render the chart with: set HELM=/path/to/helm, or keep \
                 ../shared/k8s/bin/helm beside this checkout, or install Helm 3 on PATH \
                 (https://helm.sh/docs/intro/install/, e.g. `curl -fsSL \
                 https://raw.githubusercontent.com/helm/helm/main/scripts/get-helm-3 | bash`)"
            )
        })
    })
    .clone()
}

/// Runs `helm ARGS -f VALUES` and returns whether it succeeded and what it printed.
fn helm_with(args: &[&str], values: &Json) -> (bool, String) {
    let file = std::env::temp_dir().join(format!("chart-values-{}.json", uuid::Uuid::new_v4()));
    fs::write(&file, values.to_string()).expect("write values");
    let output = Command::new(helm())
        .args(args)
        .arg("-f")
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", helm().display()));
    fs::remove_file(&file).ok();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// `helm template` of the chart with `values`: its output, or why Helm refused.
fn template(values: &Json) -> Result<String, String> {
    template_in(values, NAMESPACE)
}

/// `helm template` of the chart with `values` for release namespace `namespace`.
fn template_in(values: &Json, namespace: &str) -> Result<String, String> {
    let chart = chart();
    let chart = chart.to_str().expect("utf-8 path");
    let (ok, text) = helm_with(
        &["template", RELEASE, chart, "--namespace", namespace],
        values,
    );
    if ok { Ok(text) } else { Err(text) }
}

/// Every manifest Helm renders with `values`, each with its template (`templates/x.yaml`).
fn render(values: &Json) -> Vec<(String, Yaml)> {
    render_in(values, NAMESPACE)
}

/// Every manifest Helm renders with `values` for release namespace `namespace`.
fn render_in(values: &Json, namespace: &str) -> Vec<(String, Yaml)> {
    let text =
        template_in(values, namespace).unwrap_or_else(|e| panic!("helm template failed:\n{e}"));
    let source_prefix = format!("# Source: {RELEASE}/");
    let mut out = Vec::new();
    for doc in split_documents(&text) {
        let source = doc
            .lines()
            .find_map(|line| line.strip_prefix(&source_prefix))
            .unwrap_or("?")
            .to_owned();
        let yaml: Yaml = serde_yaml::from_str(&doc)
            .unwrap_or_else(|e| panic!("{source} renders invalid YAML: {e}\n{doc}"));
        if !yaml.is_null() {
            out.push((source, yaml));
        }
    }
    out
}

/// The render of the default values (rendered once).
fn default_docs() -> Vec<(String, Yaml)> {
    static DOCS: OnceLock<Vec<(String, Yaml)>> = OnceLock::new();
    DOCS.get_or_init(|| render(&default_values())).clone()
}

/// The render with every option on (rendered once).
fn all_on_docs() -> Vec<(String, Yaml)> {
    static DOCS: OnceLock<Vec<(String, Yaml)>> = OnceLock::new();
    DOCS.get_or_init(|| render(&all_on_values())).clone()
}

/// Splits rendered text at `---` lines, as Helm does.
fn split_documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let doc = docs.last_mut().expect("at least one document");
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs
}

/// Values with every optional part switched on.
fn all_on_values() -> Json {
    let mut values = default_values();
    values["autoTrigger"]["enabled"] = Json::Bool(true);
    values["credentials"]["create"] = Json::Bool(true);
    values["image"]["digest"] = Json::String(format!("sha256:{}", "a".repeat(64)));
    for (image, digit) in [("tools", "b"), ("hook", "d")] {
        values["images"][image]["repository"] = Json::from(format!("registry.example/{image}"));
        values["images"][image]["digest"] = Json::String(format!("sha256:{}", digit.repeat(64)));
    }
    values["harbor"]["proxyCachePublic"] = Json::Bool(true);
    values["vclusterPivot"]["helmReleases"] = Json::from(vec![
        format!("{VCLUSTER_NAMESPACE}/team-a"),
        format!("{VCLUSTER_NAMESPACE}/team-b"),
    ]);
    values["crossplanePivot"]["packagePullSecret"] = Json::from("harbor-pull");
    values
}

fn kind(doc: &Yaml) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn name(doc: &Yaml) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

fn find<'a>(docs: &'a [(String, Yaml)], k: &str, n: &str) -> &'a Yaml {
    docs.iter()
        .map(|(_, doc)| doc)
        .find(|doc| kind(doc) == k && name(doc) == n)
        .unwrap_or_else(|| panic!("the chart installs no {k} {n}"))
}

fn typed<T: serde::de::DeserializeOwned>(doc: &Yaml) -> T {
    serde_yaml::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} {} does not parse: {e}", kind(doc), name(doc)))
}

fn step_configmaps(docs: &[(String, Yaml)]) -> Vec<ConfigMap> {
    docs.iter()
        .filter(|(_, doc)| {
            kind(doc) == "ConfigMap" && name(doc).starts_with(contract::STEP_CONFIGMAP_PREFIX)
        })
        .map(|(_, doc)| typed(doc))
        .collect()
}

fn label<'a>(cm: &'a ConfigMap, key: &str) -> Option<&'a str> {
    cm.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn pod_spec_of(cm: &ConfigMap) -> Option<PodSpec> {
    let text = cm.data.as_ref()?.get(contract::DATA_POD_SPEC)?;
    Some(serde_yaml::from_str(text).unwrap_or_else(|e| {
        panic!(
            "{}: podSpec is no PodSpec: {e}",
            cm.metadata.name.as_deref().unwrap_or("?")
        )
    }))
}

/// Every PodSpec the chart ships: workloads' templates and the steps' `podSpec` data.
fn pod_specs(docs: &[(String, Yaml)]) -> Vec<(String, PodSpec)> {
    let mut out = Vec::new();
    for (_, doc) in docs {
        let what = format!("{} {}", kind(doc), name(doc));
        match kind(doc) {
            "Deployment" => out.push((
                what,
                typed::<Deployment>(doc)
                    .spec
                    .unwrap()
                    .template
                    .spec
                    .unwrap(),
            )),
            "DaemonSet" => out.push((
                what,
                typed::<DaemonSet>(doc).spec.unwrap().template.spec.unwrap(),
            )),
            "Job" => out.push((what, typed::<Job>(doc).spec.unwrap().template.spec.unwrap())),
            "ConfigMap" => {
                if let Some(spec) = pod_spec_of(&typed(doc)) {
                    out.push((what, spec));
                }
            }
            _ => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The templates.
// ---------------------------------------------------------------------------------------

#[test]
fn helm_lint_strict_passes_with_the_default_values_and_every_option_on() {
    let chart = chart();
    let chart = chart.to_str().expect("utf-8 path");
    for values in [default_values(), all_on_values()] {
        let (ok, text) = helm_with(&["lint", chart, "--strict"], &values);
        assert!(ok, "helm lint --strict:\n{text}");
    }
}

#[test]
fn the_status_configmap_is_created_on_first_install_only() {
    // `helm template` has no cluster, so its `lookup` finds nothing: a first install.
    assert!(
        default_docs()
            .iter()
            .any(|(_, doc)| name(doc) == contract::DEFAULT_STATUS_CONFIGMAP),
        "a first install creates the status ConfigMap"
    );
    // On an upgrade the same `lookup` finds it, and the template renders nothing.
    let template = read("templates/status-configmap.yaml");
    assert!(
        template.contains(
            r#"{{- if not (lookup "v1" "ConfigMap" .Release.Namespace "self-sovereign-cutover-status") }}"#
        ),
        "an upgrade must not reset the status ConfigMap"
    );
}

/// Namespaced objects Helm puts outside the release's namespace: only the step runner's
/// Roles and their bindings, in the namespaces the steps touch (Flux's, the console's, the
/// egress test's, the listed HelmRepositories', the gitea token Secret's, the listed
/// vcluster HelmReleases').
fn outside_the_release(doc: &Yaml, values: &Json) -> bool {
    let mut touched: Vec<&str> = [
        &values["flux"]["namespace"],
        &values["catalystApi"]["namespace"],
        &values["egressBlock"]["watchNamespace"],
    ]
    .into_iter()
    .filter_map(Json::as_str)
    .collect();
    touched.extend(
        values["flux"]["helmRepositories"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str()?.split_once('/').map(|(ns, _)| ns)),
    );
    touched.extend(values["giteaToken"]["secretNamespace"].as_str());
    touched.extend(
        values["vclusterPivot"]["helmReleases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str()?.split_once('/').map(|(ns, _)| ns)),
    );
    matches!(kind(doc), "Role" | "RoleBinding")
        && name(doc).starts_with("cutover-runner-")
        && doc["metadata"]["namespace"]
            .as_str()
            .is_some_and(|ns| touched.contains(&ns))
}

#[test]
fn rendered_manifests_parse_as_their_kinds_in_the_release_namespace() {
    let mut console = all_on_values();
    console["catalystApi"]["namespace"] = Json::from("console");
    for values in [default_values(), all_on_values(), console] {
        for (template, doc) in render(&values) {
            assert!(
                doc["metadata"]["namespace"].is_null() || outside_the_release(&doc, &values),
                "{template}: {} {} sets a namespace; Helm installs into the release's",
                kind(&doc),
                name(&doc)
            );
            match kind(&doc) {
                "ConfigMap" => drop(typed::<ConfigMap>(&doc)),
                "Secret" => drop(typed::<Secret>(&doc)),
                "ServiceAccount" => drop(typed::<ServiceAccount>(&doc)),
                "Service" => drop(typed::<Service>(&doc)),
                "Deployment" => drop(typed::<Deployment>(&doc)),
                "DaemonSet" => drop(typed::<DaemonSet>(&doc)),
                "Job" => drop(typed::<Job>(&doc)),
                "Role" => drop(typed::<Role>(&doc)),
                "ClusterRole" => drop(typed::<ClusterRole>(&doc)),
                "RoleBinding" => drop(typed::<RoleBinding>(&doc)),
                "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(&doc)),
                "NetworkPolicy" => drop(typed::<NetworkPolicy>(&doc)),
                other => panic!("{template}: unexpected kind {other}"),
            }
        }
    }
}

#[test]
fn a_default_install_runs_nothing_but_the_service_and_the_dormant_agent() {
    let docs = default_docs();
    let workloads: BTreeSet<(String, String)> = docs
        .iter()
        .filter(|(_, doc)| {
            [
                "Deployment",
                "DaemonSet",
                "StatefulSet",
                "Job",
                "Pod",
                "CronJob",
            ]
            .contains(&kind(doc))
        })
        .map(|(_, doc)| (kind(doc).to_owned(), name(doc).to_owned()))
        .collect();
    let expected = BTreeSet::from([
        ("DaemonSet".to_owned(), "registry-pivot".to_owned()),
        ("Deployment".to_owned(), "catalyst-cutover".to_owned()),
    ]);
    assert_eq!(workloads, expected);

    let all_on = all_on_docs();
    let hook = typed::<Job>(find(&all_on, "Job", "catalyst-cutover-trigger"));
    let annotations = hook.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations.get("helm.sh/hook").map(String::as_str),
        Some("post-install")
    );
}

#[test]
fn the_service_runs_two_probed_replicas_configured_for_its_namespace_and_callers() {
    let docs = default_docs();
    let deployment: Deployment = typed(find(&docs, "Deployment", "catalyst-cutover"));
    let spec = deployment.spec.expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let pod_labels = spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default();
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("catalyst-cutover")
    );
    let container = &pod.containers[0];
    let probe_path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(
        probe_path(&container.readiness_probe).as_deref(),
        Some("/readyz")
    );
    assert_eq!(
        probe_path(&container.liveness_probe).as_deref(),
        Some("/healthz")
    );
    let env: BTreeMap<String, String> = container
        .env
        .iter()
        .flatten()
        .map(|e| {
            let from_field = e
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| format!("fieldRef {}", f.field_path));
            (
                e.name.clone(),
                e.value.clone().or(from_field).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(env[contract::ENV_NAMESPACE], "fieldRef metadata.namespace");
    assert_eq!(
        env[contract::ENV_STATUS_CONFIGMAP],
        contract::DEFAULT_STATUS_CONFIGMAP
    );
    assert_eq!(env["POD_NAME"], "fieldRef metadata.name");
    assert_eq!(
        env["CATALYST_CUTOVER_INTERNAL_CALLERS"],
        format!(
            "system:serviceaccount:{NAMESPACE}:catalyst-cutover-trigger,system:serviceaccount:catalyst:catalyst-api"
        )
    );
    let service: Service = typed(find(&docs, "Service", "catalyst-cutover"));
    let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
    assert!(!selector.is_empty());
    for (k, v) in &selector {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "the Service selects the service's pods"
        );
    }
}

#[test]
fn the_service_port_is_capped_and_serves_https_from_a_secret_when_given_one() {
    let container = |values: Json| {
        let docs = render(&values);
        let deployment: Deployment = typed(find(&docs, "Deployment", "catalyst-cutover"));
        let pod = deployment
            .spec
            .and_then(|s| s.template.spec)
            .expect("pod spec");
        (pod.containers[0].clone(), pod.volumes.unwrap_or_default())
    };
    let env = |c: &k8s_openapi::api::core::v1::Container| -> BTreeMap<String, String> {
        c.env
            .iter()
            .flatten()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect()
    };
    let schemes = |c: &k8s_openapi::api::core::v1::Container| {
        [&c.readiness_probe, &c.liveness_probe].map(|p| {
            p.as_ref()
                .and_then(|p| p.http_get.as_ref())
                .and_then(|h| h.scheme.clone())
        })
    };

    let (plain, volumes) = container(default_values());
    let plain_env = env(&plain);
    assert_eq!(plain_env["CATALYST_CUTOVER_MAX_CONNECTIONS"], "2048");
    assert_eq!(plain_env["CATALYST_CUTOVER_MAX_EVENT_STREAMS"], "1024");
    assert_eq!(plain_env["CATALYST_CUTOVER_HEADER_READ_TIMEOUT"], "10s");
    // Safe defaults: only tokens issued for the service, a short first-byte timeout, a
    // per-address and a per-caller cap, streams of a finite lifetime.
    assert_eq!(
        plain_env["CATALYST_CUTOVER_AUTH_AUDIENCES"],
        "catalyst-cutover"
    );
    assert_eq!(plain_env["CATALYST_CUTOVER_FIRST_BYTE_TIMEOUT"], "2s");
    assert_eq!(
        plain_env["CATALYST_CUTOVER_MAX_CONNECTIONS_PER_SOURCE"],
        "1024"
    );
    assert_eq!(
        plain_env["CATALYST_CUTOVER_MAX_EVENT_STREAMS_PER_CALLER"],
        "8"
    );
    assert_eq!(plain_env["CATALYST_CUTOVER_EVENT_STREAM_LIFETIME"], "30m");
    // The probes have a port of their own, which the service listens on.
    assert_eq!(plain_env["CATALYST_CUTOVER_PROBE_LISTEN"], "0.0.0.0:8081");
    let probe_ports = [&plain.readiness_probe, &plain.liveness_probe].map(|p| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .map(|h| h.port.clone())
    });
    let named = Some(IntOrString::String("probes".to_owned()));
    assert_eq!(probe_ports, [named.clone(), named]);
    assert!(
        plain
            .ports
            .iter()
            .flatten()
            .any(|p| p.name.as_deref() == Some("probes") && p.container_port == 8081),
        "{:?}",
        plain.ports
    );
    assert!(!plain_env.contains_key("CATALYST_CUTOVER_TLS_CERT_FILE"));
    assert_eq!(schemes(&plain), [None, None]);
    assert!(volumes.is_empty());

    let mut values = default_values();
    values["http"]["tlsSecretName"] = Json::String("cutover-tls".to_owned());
    values["authAudiences"] = serde_json::json!(["catalyst-cutover", "other"]);
    let (tls, volumes) = container(values);
    let tls_env = env(&tls);
    assert_eq!(
        tls_env["CATALYST_CUTOVER_AUTH_AUDIENCES"],
        "catalyst-cutover,other"
    );
    let mount = &tls.volume_mounts.clone().unwrap_or_default()[0];
    assert_eq!(
        tls_env["CATALYST_CUTOVER_TLS_CERT_FILE"],
        format!("{}/tls.crt", mount.mount_path)
    );
    assert_eq!(
        tls_env["CATALYST_CUTOVER_TLS_KEY_FILE"],
        format!("{}/tls.key", mount.mount_path)
    );
    assert_eq!(mount.read_only, Some(true));
    let volume = volumes
        .iter()
        .find(|v| v.name == mount.name)
        .expect("volume");
    assert_eq!(
        volume
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref()),
        Some("cutover-tls")
    );
    let https = Some("HTTPS".to_owned());
    assert_eq!(schemes(&tls), [https.clone(), https]);
}

#[test]
fn the_auto_trigger_hook_calls_with_a_token_for_the_services_audience() {
    let docs = render(&all_on_values());
    let job: Job = typed(find(&docs, "Job", "catalyst-cutover-trigger"));
    let pod = job.spec.and_then(|s| s.template.spec).expect("pod spec");
    let audiences: Vec<String> = pod
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| s.service_account_token.as_ref())
        .map(|t| t.audience.clone().unwrap_or_default())
        .collect();
    assert_eq!(audiences, ["catalyst-cutover"]);
    // A service that would refuse the hook's token is refused at install instead.
    let mut values = all_on_values();
    values["authAudiences"] = serde_json::json!([]);
    let err = template(&values).expect_err("the hook without its audience");
    assert!(err.contains("authAudiences"), "{err}");
}

// ---------------------------------------------------------------------------------------
// The contract.
// ---------------------------------------------------------------------------------------

#[test]
fn eleven_step_configmaps_follow_the_contract() {
    let docs = default_docs();
    let steps = step_configmaps(&docs);
    assert_eq!(
        steps.len(),
        STEPS.len() + 1,
        "the preflight and eleven step ConfigMaps"
    );
    let settings = find(&docs, "ConfigMap", "cutover-settings");

    for (index, cm) in steps.iter().enumerate() {
        // The preflight is step 00; the eleven follow from 01.
        let order = index;
        let slug = index
            .checked_sub(1)
            .map_or(common::CHART_PREFLIGHT, |i| STEPS[i]);
        let cm_name = cm.metadata.name.as_deref().unwrap_or_default();
        assert_eq!(
            cm_name,
            format!("{}{order:02}-{slug}", contract::STEP_CONFIGMAP_PREFIX)
        );
        assert_eq!(
            label(cm, contract::LABEL_PART_OF),
            Some(contract::PART_OF),
            "{cm_name}"
        );
        assert_eq!(
            label(cm, contract::LABEL_COMPONENT),
            Some(contract::COMPONENT_STEP),
            "{cm_name}"
        );
        assert_eq!(
            label(cm, contract::LABEL_STEP_ORDER),
            Some(order.to_string().as_str()),
            "{cm_name}"
        );
        let data = cm.data.clone().unwrap_or_default();
        assert_eq!(
            data.get(contract::DATA_STEP_NAME).map(String::as_str),
            Some(slug),
            "{cm_name}"
        );

        if slug == "registry-pivot" {
            assert_eq!(label(cm, contract::LABEL_STEP_MODE), Some("daemonset-wait"));
            assert_eq!(
                label(cm, contract::LABEL_STEP_DAEMONSET),
                Some("registry-pivot")
            );
            assert!(
                !data.contains_key(contract::DATA_POD_SPEC),
                "{cm_name} has a podSpec"
            );
            find(&docs, "DaemonSet", "registry-pivot");
            continue;
        }
        let mode = if slug == common::CHART_PREFLIGHT {
            "preflight"
        } else {
            "job"
        };
        assert_eq!(
            label(cm, contract::LABEL_STEP_MODE),
            Some(mode),
            "{cm_name}"
        );
        let spec = pod_spec_of(cm).unwrap_or_else(|| panic!("{cm_name} has no podSpec"));
        assert!(!spec.containers.is_empty(), "{cm_name}: no container");
        assert_ne!(spec.restart_policy.as_deref(), Some("Always"), "{cm_name}");
        assert_eq!(
            spec.service_account_name.as_deref(),
            Some("cutover-runner"),
            "{cm_name}"
        );
        let container = &spec.containers[0];
        assert_eq!(
            container.command.as_deref(),
            Some(["sh".to_owned(), "/scripts/run.sh".to_owned()].as_slice()),
            "{cm_name}"
        );
        assert!(data.contains_key("run.sh"), "{cm_name}: no run.sh");
        let mounts_own_configmap = spec
            .volumes
            .iter()
            .flatten()
            .any(|volume| volume.config_map.as_ref().map(|c| c.name.as_str()) == Some(cm_name));
        assert!(
            mounts_own_configmap,
            "{cm_name}: the PodSpec does not mount its own ConfigMap"
        );
        let env_from: Vec<String> = container
            .env_from
            .iter()
            .flatten()
            .filter_map(|source| {
                source
                    .config_map_ref
                    .as_ref()
                    .map(|r| format!("cm/{}", r.name))
                    .or_else(|| {
                        source
                            .secret_ref
                            .as_ref()
                            .map(|r| format!("secret/{}", r.name))
                    })
            })
            .collect();
        assert_eq!(
            env_from,
            ["cm/cutover-settings", "secret/cutover-credentials"],
            "{cm_name}"
        );
        assert!(
            !data.values().any(|text| text.contains("{{")),
            "{cm_name}: step files hold no template expressions"
        );
    }
    assert!(settings["data"].as_mapping().is_some_and(|m| !m.is_empty()));
}

#[test]
fn every_setting_a_script_needs_is_provided() {
    let docs = all_on_docs();
    let mut provided: BTreeSet<String> = ["cutover-settings", "cutover-credentials"]
        .iter()
        .flat_map(|n| {
            let doc = docs
                .iter()
                .map(|(_, doc)| doc)
                .find(|doc| name(doc) == *n)
                .unwrap_or_else(|| panic!("no {n}"));
            let data = if kind(doc) == "Secret" {
                &doc["stringData"]
            } else {
                &doc["data"]
            };
            data.as_mapping()
                .expect("a data map")
                .keys()
                .map(|k| k.as_str().expect("string key").to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    for (_, spec) in pod_specs(&docs) {
        for container in &spec.containers {
            provided.extend(container.env.iter().flatten().map(|e| e.name.clone()));
        }
    }
    for (origin, script) in scripts(&docs) {
        let mut joined = script.replace("\\\n", " ");
        joined.push('\n');
        for line in joined.lines() {
            if let Some(names) = line.trim().strip_prefix("need ") {
                for needed in names.split_whitespace() {
                    assert!(
                        provided.contains(needed),
                        "{origin} needs {needed}, which nothing provides"
                    );
                }
            }
        }
    }
}

#[test]
fn the_status_configmap_is_kept_and_seeded_with_the_contract_keys() {
    let docs = default_docs();
    let cm = typed::<ConfigMap>(find(&docs, "ConfigMap", contract::DEFAULT_STATUS_CONFIGMAP));
    let annotations = cm.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get(contract::ANNOTATION_RESOURCE_POLICY)
            .map(String::as_str),
        Some("keep")
    );
    assert_eq!(
        label(&cm, contract::LABEL_COMPONENT),
        Some(contract::COMPONENT_STATUS)
    );
    let data = cm.data.unwrap_or_default();
    let expected = [
        (key::CUTOVER_COMPLETE, "false"),
        (key::CUTOVER_STARTED_AT, ""),
        (key::CUTOVER_FINISHED_AT, ""),
        (key::CUTOVER_LAST_ATTEMPT_STARTED_AT, ""),
        (key::CURRENT_STEP, ""),
        (key::CURRENT_STEP_INDEX, "0"),
        (key::TOTAL_STEPS, "0"),
        (key::PROGRESS_PERCENT, "0"),
        (key::FAILED_STEP, ""),
        (key::LAST_ERROR, ""),
        (key::REGISTRIES_YAML_ACTIVE, "v1"),
    ];
    for (k, v) in expected {
        assert_eq!(data.get(k).map(String::as_str), Some(v), "status key {k}");
    }
}

#[test]
fn the_engine_reads_the_chart_steps_as_the_eleven_step_plan() {
    let configmaps = load_dir(&chart().join("steps")).expect("the step files load");
    let plan = parse_plan(&configmaps).unwrap_or_else(|report| panic!("{report}"));
    let names: Vec<&str> = plan.iter().map(|step| step.name.as_str()).collect();
    assert_eq!(names, [&[common::CHART_PREFLIGHT][..], &STEPS[..]].concat());
    for step in plan.iter() {
        match &step.kind {
            StepKind::DaemonSetWait { daemonset } => {
                assert_eq!(
                    (step.name.as_str(), daemonset.as_str()),
                    ("registry-pivot", "registry-pivot")
                );
            }
            StepKind::Job { pod_spec } | StepKind::Preflight { pod_spec } => {
                assert_eq!(
                    pod_spec.restart_policy.as_deref(),
                    Some("Never"),
                    "{}",
                    step.name.as_str()
                );
            }
        }
    }
}

#[test]
fn the_chart_seeds_the_status_the_service_would_create() {
    let docs = default_docs();
    let cm = typed::<ConfigMap>(find(&docs, "ConfigMap", contract::DEFAULT_STATUS_CONFIGMAP));
    let mut expected = initial_data();
    // The service records the schema version itself after running its migrations.
    expected.remove(KEY_SCHEMA_VERSION);
    assert_eq!(cm.data.unwrap_or_default(), expected);
}

// ---------------------------------------------------------------------------------------
// RBAC.
// ---------------------------------------------------------------------------------------

/// Every rule of every Role and ClusterRole, with its role's kind and name.
#[test]
fn every_step_names_its_chart_version_and_passes_the_service_floor() {
    use catalyst_cutover::step::chart::{LABEL_HELM_CHART, check, default_floor};
    let steps = step_configmaps(&default_docs());
    let chart_field = |field: &str| {
        read("Chart.yaml")
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .unwrap_or_else(|| panic!("Chart.yaml {field}"))
    };
    let (chart_name, chart_version) = (chart_field("name:"), chart_field("version:"));
    for cm in &steps {
        assert_eq!(
            label(cm, LABEL_HELM_CHART),
            Some(format!("{chart_name}-{chart_version}").as_str()),
            "{:?}",
            cm.metadata.name
        );
    }
    assert_eq!(check(&steps, &default_floor()), Ok(()));
    let above = semver::Version::parse(&chart_version)
        .map(|v| semver::Version::new(v.major, v.minor + 1, 0))
        .expect("SemVer");
    assert!(
        check(&steps, &above).is_err(),
        "a higher floor refuses them"
    );
}

#[test]
fn the_console_sign_in_is_wired_from_the_values() {
    let env_of = |docs: &[(String, Yaml)]| -> BTreeMap<String, String> {
        let deployment: Deployment = typed(find(docs, "Deployment", "catalyst-cutover"));
        let pod = deployment.spec.and_then(|s| s.template.spec).expect("pod");
        pod.containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    };
    let service_egress = |docs: &[(String, Yaml)]| -> usize {
        let policy: NetworkPolicy = typed(find(docs, "NetworkPolicy", "catalyst-cutover"));
        policy.spec.and_then(|s| s.egress).map_or(0, |e| e.len())
    };
    let defaults = default_docs();
    let env = env_of(&defaults);
    assert!(
        !env.contains_key("CATALYST_CUTOVER_FORWARD_AUTH_URL"),
        "off by default"
    );
    assert!(
        !env.contains_key("CATALYST_CUTOVER_MIN_CHART_VERSION"),
        "the built-in floor"
    );
    assert_eq!(service_egress(&defaults), 1, "the API server only");

    let mut values = default_values();
    let url = "http://catalyst-api.catalyst.svc:8080/api/v1/auth/check";
    values["auth"]["forwardAuth"]["url"] = Json::from(url);
    values["auth"]["allowedOrigins"] = serde_json::json!(["https://console.example.org"]);
    values["minChartVersion"] = Json::from("0.1.0");
    let docs = render(&values);
    let env = env_of(&docs);
    assert_eq!(env["CATALYST_CUTOVER_FORWARD_AUTH_URL"], url);
    assert_eq!(
        env["CATALYST_CUTOVER_FORWARD_AUTH_USER_HEADER"],
        "X-Auth-Request-User"
    );
    assert_eq!(
        env["CATALYST_CUTOVER_ALLOWED_ORIGINS"],
        "https://console.example.org"
    );
    assert_eq!(env["CATALYST_CUTOVER_MIN_CHART_VERSION"], "0.1.0");
    assert_eq!(
        service_egress(&docs),
        3,
        "the API server, DNS and the console backend"
    );

    let mut bad = default_values();
    bad["auth"]["forwardAuth"]["url"] = Json::from("https://console.example.org/check");
    assert!(
        template(&bad).is_err(),
        "the schema takes http:// URLs only"
    );
}

fn rules(docs: &[(String, Yaml)]) -> Vec<(String, PolicyRule)> {
    let mut out = Vec::new();
    for (_, doc) in docs {
        let found = match kind(doc) {
            "Role" => typed::<Role>(doc).rules,
            "ClusterRole" => typed::<ClusterRole>(doc).rules,
            _ => continue,
        };
        let role = format!("{} {}", kind(doc), name(doc));
        out.extend(found.into_iter().flatten().map(|rule| (role.clone(), rule)));
    }
    out
}

#[test]
fn no_rbac_rule_combines_create_with_resource_names() {
    let rules = rules(&all_on_docs());
    assert!(!rules.is_empty());
    for (role, rule) in &rules {
        let named = rule.resource_names.as_ref().is_some_and(|n| !n.is_empty());
        assert!(
            !(named && rule.verbs.iter().any(|v| v == "create" || v == "*")),
            "{role}: a create rule with resourceNames never matches: {rule:?}"
        );
    }
}

/// The console's namespace in the RBAC renders: not the release's, so a grant that is not
/// scoped to it shows.
const CONSOLE_NAMESPACE: &str = "console";
/// The namespace of the provisioning's git token Secret (step 09) in the RBAC renders.
const TOKEN_NAMESPACE: &str = "provisioning";
/// The namespace of the vclusters' HelmReleases (step 10) when every option is on.
const VCLUSTER_NAMESPACE: &str = "tenants";

/// The values of the RBAC renders: every option on, the console and the token's Secret in
/// namespaces of their own.
fn rbac_values() -> Json {
    let mut values = all_on_values();
    values["catalystApi"]["namespace"] = Json::from(CONSOLE_NAMESPACE);
    values["giteaToken"]["secretNamespace"] = Json::from(TOKEN_NAMESPACE);
    values
}

/// The chart's RBAC as the sandbox's authorizer reads it, namespaced objects in the
/// release's namespace unless the chart names another, plus `alice` bound to the operator
/// ClusterRole.
fn installed_rbac() -> RbacRules {
    installed_rbac_with(&rbac_values())
}

/// As [`installed_rbac`], rendered with `values`.
fn installed_rbac_with(values: &Json) -> RbacRules {
    let mut rbac = RbacRules::default();
    for (_, doc) in render(values) {
        let namespace = Some(
            doc["metadata"]["namespace"]
                .as_str()
                .unwrap_or(NAMESPACE)
                .to_owned(),
        );
        match kind(&doc) {
            "Role" => {
                let mut role: Role = typed(&doc);
                role.metadata.namespace = namespace;
                rbac.roles.push(role);
            }
            "RoleBinding" => {
                let mut binding: RoleBinding = typed(&doc);
                binding.metadata.namespace = namespace;
                rbac.role_bindings.push(binding);
            }
            "ClusterRole" => rbac.cluster_roles.push(typed(&doc)),
            "ClusterRoleBinding" => rbac.cluster_role_bindings.push(typed(&doc)),
            _ => {}
        }
    }
    rbac.cluster_role_bindings.push(typed(
        &serde_yaml::from_str::<Yaml>(
            "metadata: {name: operators}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: catalyst-cutover-operator}\nsubjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]",
        )
        .expect("binding"),
    ));
    rbac
}

/// `verb group/resource[/subresource] [namespace/]name`, e.g. `patch apps/deployments catalyst/catalyst-api`
/// or `list helm.toolkit.fluxcd.io/helmreleases` (cluster-wide).
fn request(call: &str) -> Attributes {
    let mut words = call.split_whitespace();
    let (verb, what) = (words.next().expect("verb"), words.next().expect("resource"));
    let (group, resource) = what.split_once('/').expect("group/resource");
    let (resource, subresource) = match resource.split_once('/') {
        Some((resource, sub)) => (resource, Some(sub.to_owned())),
        None => (resource, None),
    };
    let mut attrs = Attributes::resource(verb, group, resource);
    attrs.subresource = subresource;
    if let Some(target) = words.next() {
        attrs = match target.split_once('/') {
            Some((namespace, "*")) => attrs.in_namespace(namespace),
            Some((namespace, name)) => attrs.in_namespace(namespace).named(name),
            None => attrs.named(target),
        };
    }
    attrs
}

fn allowed(rbac: &RbacRules, username: &str, call: &str) -> bool {
    authorize(&UserInfo::new(username, Vec::new()), &request(call), rbac).is_allowed()
}

/// `(username, call)` pairs in the form [`request`] reads.
type Calls = Vec<(String, String)>;

fn sa(name: &str) -> String {
    format!("system:serviceaccount:{NAMESPACE}:{name}")
}

/// The calls each step's script makes, from its kubectl commands (checked against the
/// scripts by [`each_step_declares_the_calls_its_kubectl_commands_make`]).
fn step_calls() -> BTreeMap<&'static str, Vec<String>> {
    let console = |verb: &str| format!("{verb} apps/deployments {CONSOLE_NAMESPACE}/catalyst-api");
    let token = |verb: &str| format!("{verb} /secrets {TOKEN_NAMESPACE}/catalyst-git-token");
    let vcluster = |verb: &str, name: &str| {
        format!("{verb} helm.toolkit.fluxcd.io/helmreleases {VCLUSTER_NAMESPACE}/{name}")
    };
    BTreeMap::from([
        (
            "preflight",
            vec![
                "get source.toolkit.fluxcd.io/gitrepositories flux-system/openova".to_owned(),
                format!("get apps/daemonsets {NAMESPACE}/registry-pivot"),
                token("get"),
                vcluster("get", "team-a"),
                vcluster("get", "team-b"),
                "list apps/statefulsets".to_owned(),
                "list apps/deployments".to_owned(),
                "list pkg.crossplane.io/providers".to_owned(),
            ],
        ),
        ("gitea-mirror", vec![]),
        ("harbor-projects", vec![]),
        (
            "harbor-prewarm",
            vec![
                "list apps/deployments".to_owned(),
                "list apps/statefulsets".to_owned(),
                "list apps/daemonsets".to_owned(),
                "list batch/cronjobs".to_owned(),
            ],
        ),
        (
            "flux-gitrepository-patch",
            vec![
                "get source.toolkit.fluxcd.io/gitrepositories flux-system/openova".to_owned(),
                "patch source.toolkit.fluxcd.io/gitrepositories flux-system/openova".to_owned(),
            ],
        ),
        (
            "helmrepository-patches",
            vec![
                "list source.toolkit.fluxcd.io/helmrepositories".to_owned(),
                // kubectl patch reads the object first.
                "get source.toolkit.fluxcd.io/helmrepositories platform/openova".to_owned(),
                "patch source.toolkit.fluxcd.io/helmrepositories platform/openova".to_owned(),
                // annotate: read, then patch.
                "get source.toolkit.fluxcd.io/gitrepositories flux-system/openova".to_owned(),
                "patch source.toolkit.fluxcd.io/gitrepositories flux-system/openova".to_owned(),
            ],
        ),
        (
            "catalyst-api-env-patch",
            // get, patch, and `rollout status` (a list and watch of that one Deployment).
            vec![
                console("get"),
                console("patch"),
                console("list"),
                console("watch"),
            ],
        ),
        (
            "egress-block-test",
            vec![
                "list source.toolkit.fluxcd.io/gitrepositories".to_owned(),
                "list source.toolkit.fluxcd.io/helmrepositories".to_owned(),
                "list source.toolkit.fluxcd.io/helmcharts".to_owned(),
                "list helm.toolkit.fluxcd.io/helmreleases".to_owned(),
                "list kustomize.toolkit.fluxcd.io/kustomizations".to_owned(),
                // kubectl patch reads each object first.
                "get source.toolkit.fluxcd.io/gitrepositories platform/openova".to_owned(),
                "patch source.toolkit.fluxcd.io/gitrepositories platform/openova".to_owned(),
                "get source.toolkit.fluxcd.io/helmrepositories platform/openova".to_owned(),
                "patch source.toolkit.fluxcd.io/helmrepositories platform/openova".to_owned(),
                "get source.toolkit.fluxcd.io/helmcharts platform/platform-openova".to_owned(),
                "patch source.toolkit.fluxcd.io/helmcharts platform/platform-openova".to_owned(),
                "create cilium.io/ciliumclusterwidenetworkpolicies".to_owned(),
                "get cilium.io/ciliumclusterwidenetworkpolicies cutover-egress-block".to_owned(),
                "delete cilium.io/ciliumclusterwidenetworkpolicies cutover-egress-block".to_owned(),
            ],
        ),
        ("gitea-token-mint", vec![token("get"), token("patch")]),
        (
            "vcluster-registry-pivot",
            vec![
                "list apps/statefulsets".to_owned(),
                "list apps/deployments".to_owned(),
                vcluster("get", "team-a"),
                vcluster("patch", "team-a"),
                vcluster("get", "team-b"),
                vcluster("patch", "team-b"),
            ],
        ),
        (
            "crossplane-provider-pivot",
            vec![
                "list pkg.crossplane.io/providers".to_owned(),
                "get pkg.crossplane.io/providers provider-aws-s3".to_owned(),
                "patch pkg.crossplane.io/providers provider-aws-s3".to_owned(),
            ],
        ),
    ])
}

/// The calls each identity makes (and must be allowed), and calls it must not be allowed.
fn expected_calls() -> (Calls, Calls) {
    let (runner, agent, service) = (
        sa("cutover-runner"),
        sa("registry-pivot"),
        sa("catalyst-cutover"),
    );
    let mut allowed: Calls = step_calls()
        .into_values()
        .flatten()
        .map(|call| (runner.clone(), call))
        .collect();
    let fixed: [(&str, &[&str]); 3] = [
        (
            // src/pivot/: the record Lease followed by name (watcher::watch_object: a list and
            // a watch with a metadata.name field selector), acknowledgements created.
            &agent,
            &[
                "get coordination.k8s.io/leases catalyst/catalyst-cutover-record",
                "list coordination.k8s.io/leases catalyst/catalyst-cutover-record",
                "watch coordination.k8s.io/leases catalyst/catalyst-cutover-record",
                "create coordination.k8s.io/leases catalyst/*",
            ],
        ),
        (
            // src/: step, status and preflight ConfigMaps (service/steps.rs,
            // status/cache.rs, status/store.rs, preflight/store.rs), Jobs (runner/job.rs),
            // pods (runner/job.rs, runner/daemonset.rs), the Lease (runner/lease.rs) and the
            // record (status/cutover_record.rs), the DaemonSet
            // (runner/daemonset.rs), Events (events/kube_events.rs), reviews (auth/review.rs).
            &service,
            &[
                "list /configmaps catalyst/*",
                "watch /configmaps catalyst/*",
                "get /configmaps catalyst/self-sovereign-cutover-status",
                "update /configmaps catalyst/self-sovereign-cutover-status",
                "update /configmaps catalyst/self-sovereign-cutover-preflight",
                "create /configmaps catalyst/*",
                "create batch/jobs catalyst/*",
                "get batch/jobs catalyst/cutover-gitea-mirror-a1",
                "list batch/jobs catalyst/cutover-gitea-mirror-a1",
                "watch batch/jobs catalyst/cutover-gitea-mirror-a1",
                "delete batch/jobs catalyst/cutover-gitea-mirror-a1",
                "list /pods catalyst/*",
                "watch /pods catalyst/*",
                // steplog/: a step's log, and its tail kept (create), the earlier runs'
                // tails listed by label and deleted by name.
                "get /pods/log catalyst/cutover-gitea-mirror-a1-x",
                "delete /configmaps catalyst/self-sovereign-cutover-status-log-r1-gitea-mirror",
                "create coordination.k8s.io/leases catalyst/*",
                "get coordination.k8s.io/leases catalyst/catalyst-cutover",
                "update coordination.k8s.io/leases catalyst/catalyst-cutover",
                "get coordination.k8s.io/leases catalyst/catalyst-cutover-record",
                "update coordination.k8s.io/leases catalyst/catalyst-cutover-record",
                // runner/daemonset.rs: the agents' acknowledgement Leases, by label.
                "list coordination.k8s.io/leases catalyst/*",
                "watch coordination.k8s.io/leases catalyst/*",
                // step/discover.rs: it exists; runner/: its rollout, watched by name.
                "get apps/daemonsets catalyst/registry-pivot",
                "list apps/daemonsets catalyst/registry-pivot",
                "watch apps/daemonsets catalyst/registry-pivot",
                "create events.k8s.io/events catalyst/*",
                "patch events.k8s.io/events catalyst/x.123",
                "create authentication.k8s.io/tokenreviews",
                "create authorization.k8s.io/subjectaccessreviews",
                // tethers/sources.rs: the tether report's cluster-wide watches
                // (tethers.clusterWide), each a list and a watch.
                "list /pods",
                "watch /pods",
                "list /nodes",
                "watch /nodes",
                "list source.toolkit.fluxcd.io/gitrepositories",
                "watch source.toolkit.fluxcd.io/gitrepositories",
                "list source.toolkit.fluxcd.io/helmrepositories",
                "watch source.toolkit.fluxcd.io/helmrepositories",
                "list source.toolkit.fluxcd.io/ocirepositories",
                "watch source.toolkit.fluxcd.io/ocirepositories",
                "list helm.toolkit.fluxcd.io/helmreleases",
                "watch helm.toolkit.fluxcd.io/helmreleases",
                "list pkg.crossplane.io/providers",
                "watch pkg.crossplane.io/providers",
            ],
        ),
        (
            "alice",
            &[
                "get catalyst.openova.io/cutovers",
                "create catalyst.openova.io/cutovers",
                "delete catalyst.openova.io/cutovers",
                // A rollback of the registry pivot has a verb of its own, granted apart.
                "rollback catalyst.openova.io/cutovers",
            ],
        ),
    ];
    allowed.extend(
        fixed
            .iter()
            .flat_map(|(user, calls)| calls.iter().map(|c| ((*user).to_owned(), (*c).to_owned()))),
    );
    let denied: [(&str, &[&str]); 4] = [
        (
            &runner,
            &[
                "create apps/deployments catalyst/*",
                "patch apps/deployments console/other",
                // The console backend only in the console's namespace.
                "patch apps/deployments catalyst/catalyst-api",
                "watch apps/deployments",
                "get apps/deployments catalyst/x",
                "delete cilium.io/ciliumclusterwidenetworkpolicies other",
                "patch cilium.io/ciliumclusterwidenetworkpolicies cutover-egress-block",
                "patch source.toolkit.fluxcd.io/ocirepositories flux-system/x",
                "patch source.toolkit.fluxcd.io/buckets flux-system/x",
                "patch helm.toolkit.fluxcd.io/helmreleases flux-system/x",
                "get /secrets catalyst/cutover-credentials",
                "list /nodes",
                // 09: the one Secret, in its namespace only, never read wholesale.
                "get /secrets provisioning/other",
                "get /secrets catalyst/catalyst-git-token",
                "list /secrets provisioning/*",
                "create /secrets provisioning/*",
                // 10: only the listed vcluster HelmReleases.
                "patch helm.toolkit.fluxcd.io/helmreleases tenants/other",
                "patch helm.toolkit.fluxcd.io/helmreleases flux-system/team-a",
                "watch apps/statefulsets",
                "patch apps/statefulsets tenants/team-a",
                // 11: Providers are only pivoted, never made or removed.
                "create pkg.crossplane.io/providers",
                "delete pkg.crossplane.io/providers provider-aws-s3",
                "patch pkg.crossplane.io/configurations x",
            ],
        ),
        (
            &agent,
            &[
                // Nothing of a ConfigMap: its direction and settings are not there.
                "get /configmaps catalyst/cutover-settings",
                "get /configmaps catalyst/self-sovereign-cutover-status",
                "patch /configmaps catalyst/self-sovereign-cutover-status",
                "update /configmaps catalyst/self-sovereign-cutover-status",
                "list /configmaps catalyst/*",
                // It cannot change the service's direction, nor any other Lease.
                "update coordination.k8s.io/leases catalyst/catalyst-cutover-record",
                "patch coordination.k8s.io/leases catalyst/catalyst-cutover-record",
                "delete coordination.k8s.io/leases catalyst/catalyst-cutover-record",
                "update coordination.k8s.io/leases catalyst/catalyst-cutover",
                "list coordination.k8s.io/leases catalyst/*",
            ],
        ),
        (
            &service,
            &[
                "update /configmaps catalyst/cutover-step-01-gitea-mirror",
                "patch /configmaps catalyst/self-sovereign-cutover-status",
                // RBAC cannot bound a deletecollection by label.
                "deletecollection /configmaps catalyst/*",
                "list /configmaps other/*",
                "get /secrets catalyst/cutover-credentials",
                // The tether report reads, never gets one by name nor writes.
                "get /nodes n1",
                "get /pods other/x",
                "patch source.toolkit.fluxcd.io/gitrepositories flux-system/x",
                "get helm.toolkit.fluxcd.io/helmreleases flux-system/x",
                "patch pkg.crossplane.io/providers x",
                "create /events catalyst/*",
                "update coordination.k8s.io/leases catalyst/other",
                "list apps/daemonsets catalyst/*",
                "update batch/jobs catalyst/x",
            ],
        ),
        ("alice", &["update catalyst.openova.io/cutovers"]),
    ];
    let denied = denied
        .iter()
        .flat_map(|(user, calls)| calls.iter().map(|c| ((*user).to_owned(), (*c).to_owned())))
        .collect();
    (allowed, denied)
}

/// The ServiceAccount (or operator) each role is bound to.
fn bound_roles(rbac: &RbacRules) -> BTreeMap<String, String> {
    let user = |subject: &k8s_openapi::api::rbac::v1::Subject| match subject.kind.as_str() {
        "ServiceAccount" => format!(
            "system:serviceaccount:{}:{}",
            subject.namespace.as_deref().unwrap_or_default(),
            subject.name
        ),
        _ => subject.name.clone(),
    };
    let mut out = BTreeMap::new();
    for binding in &rbac.role_bindings {
        for subject in binding.subjects.iter().flatten() {
            let role = format!(
                "Role {}/{}",
                binding.metadata.namespace.as_deref().unwrap_or_default(),
                binding.role_ref.name
            );
            out.insert(role, user(subject));
        }
    }
    for binding in &rbac.cluster_role_bindings {
        for subject in binding.subjects.iter().flatten() {
            out.insert(
                format!("ClusterRole {}", binding.role_ref.name),
                user(subject),
            );
        }
    }
    out
}

/// Whether `rule` (of a Role in `namespace`, or a ClusterRole) covers `call`.
fn covers(rule: &PolicyRule, namespace: Option<&str>, call: &str) -> bool {
    let attrs = request(call);
    let resource = match &attrs.subresource {
        Some(sub) => format!("{}/{sub}", attrs.resource),
        None => attrs.resource.clone(),
    };
    let names = rule.resource_names.clone().unwrap_or_default();
    rule.verbs.contains(&attrs.verb)
        && rule
            .api_groups
            .iter()
            .flatten()
            .any(|g| *g == attrs.api_group)
        && rule.resources.iter().flatten().any(|r| *r == resource)
        && (names.is_empty() || attrs.name.as_ref().is_some_and(|n| names.contains(n)))
        && namespace.is_none_or(|ns| attrs.namespace.as_deref() == Some(ns))
}

#[test]
fn each_identity_may_make_exactly_the_calls_its_scripts_and_code_make() {
    let rbac = installed_rbac();
    let (allowed_calls, denied_calls) = expected_calls();
    for (user, call) in &allowed_calls {
        assert!(allowed(&rbac, user, call), "{user} may not `{call}`");
    }
    for (user, call) in &denied_calls {
        assert!(!allowed(&rbac, user, call), "{user} must not `{call}`");
    }
    // Exactly: every verb on every resource of every rule is a call someone makes.
    let bound = bound_roles(&rbac);
    let roles = rbac
        .roles
        .iter()
        .map(|r| {
            (
                format!(
                    "Role {}/{}",
                    r.metadata.namespace.as_deref().unwrap_or_default(),
                    r.metadata.name.as_deref().unwrap_or_default()
                ),
                r.metadata.namespace.clone(),
                r.rules.clone().unwrap_or_default(),
            )
        })
        .chain(rbac.cluster_roles.iter().map(|r| {
            (
                format!(
                    "ClusterRole {}",
                    r.metadata.name.as_deref().unwrap_or_default()
                ),
                None,
                r.rules.clone().unwrap_or_default(),
            )
        }));
    for (role, namespace, rules) in roles {
        let user = bound
            .get(&role)
            .unwrap_or_else(|| panic!("{role} is bound to nobody"));
        for rule in rules {
            for verb in &rule.verbs {
                for resource in rule.resources.iter().flatten() {
                    let single = PolicyRule {
                        verbs: vec![verb.clone()],
                        resources: Some(vec![resource.clone()]),
                        ..rule.clone()
                    };
                    let used = allowed_calls
                        .iter()
                        .any(|(u, call)| u == user && covers(&single, namespace.as_deref(), call));
                    assert!(
                        used,
                        "{role} grants {verb} {resource}, which no code path of {user} calls: {rule:?}"
                    );
                }
            }
        }
    }
}

/// Where the values name the objects, the runner may touch those alone: the HelmRepositories
/// flux.helmRepositories lists (step 06), the Flux objects of egressBlock.watchNamespace only
/// (step 08); what no value can name (the workloads 03 lists, the HelmRepositories 06 lists to
/// find those upstream) stays cluster-wide, as chart/README.md says.
#[test]
fn the_runner_is_confined_to_what_the_values_name() {
    let mut values = rbac_values();
    values["flux"]["helmRepositories"] = serde_json::json!(["platform/openova", "apps/charts"]);
    values["egressBlock"]["watchNamespace"] = Json::from("platform");
    let rbac = installed_rbac_with(&values);
    let runner = sa("cutover-runner");
    for call in [
        "get source.toolkit.fluxcd.io/helmrepositories platform/openova",
        "patch source.toolkit.fluxcd.io/helmrepositories platform/openova",
        "patch source.toolkit.fluxcd.io/helmrepositories apps/charts",
        "list source.toolkit.fluxcd.io/helmrepositories",
        "list source.toolkit.fluxcd.io/gitrepositories platform/*",
        "patch source.toolkit.fluxcd.io/gitrepositories platform/platform",
        "list helm.toolkit.fluxcd.io/helmreleases platform/*",
        "list kustomize.toolkit.fluxcd.io/kustomizations platform/*",
        "patch source.toolkit.fluxcd.io/gitrepositories flux-system/openova",
        "list apps/deployments",
    ] {
        assert!(allowed(&rbac, &runner, call), "the runner may not `{call}`");
    }
    for call in [
        "patch source.toolkit.fluxcd.io/helmrepositories apps/other",
        "get source.toolkit.fluxcd.io/helmrepositories apps/other",
        "patch source.toolkit.fluxcd.io/helmrepositories elsewhere/openova",
        "patch source.toolkit.fluxcd.io/gitrepositories elsewhere/x",
        "patch source.toolkit.fluxcd.io/gitrepositories flux-system/other",
        "list source.toolkit.fluxcd.io/gitrepositories",
        "list helm.toolkit.fluxcd.io/helmreleases",
        "list helm.toolkit.fluxcd.io/helmreleases elsewhere/*",
        "patch helm.toolkit.fluxcd.io/helmreleases platform/x",
    ] {
        assert!(
            !allowed(&rbac, &runner, call),
            "the runner must not `{call}`"
        );
    }
}

/// The API verbs a kubectl subcommand makes.
fn kubectl_verbs(command: &str) -> &'static [&'static str] {
    match command {
        "get" => &["get", "list"],
        // kubectl reads the object before it patches it.
        "patch" => &["get", "patch"],
        "annotate" => &["get", "list", "patch"],
        "create" => &["create"],
        "delete" => &["get", "delete"],
        "rollout" => &["get", "list", "watch"],
        // Discovery: open to every authenticated identity (system:discovery), no rule needed.
        "api-resources" => &[],
        other => panic!("a step script runs `kubectl {other}`, which this test does not know"),
    }
}

#[test]
fn each_step_declares_the_calls_its_kubectl_commands_make() {
    let declared = step_calls();
    let docs = default_docs();
    for cm in step_configmaps(&docs) {
        let data = cm.data.clone().unwrap_or_default();
        let Some(step) = data.get(contract::DATA_STEP_NAME) else {
            continue;
        };
        let Some(script) = data.get("run.sh") else {
            continue;
        };
        // The kubectl subcommand of every call: the first word after `kubectl` and its flags.
        let mut derived: BTreeSet<&str> = BTreeSet::new();
        for line in script.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let mut words = line
                .split_whitespace()
                .skip_while(|w| *w != "kubectl")
                .skip(1);
            let mut command = None;
            while let Some(word) = words.next() {
                if word == "-n" {
                    words.next();
                } else if !word.starts_with('-') {
                    // A wrapper (`gitrepo get`, `deployment patch`) passes its verb in
                    // quoted; those are counted below.
                    command = Some(word).filter(|w| !w.starts_with('"'));
                    break;
                }
            }
            if let Some(command) = command {
                derived.extend(kubectl_verbs(command));
            }
        }
        for wrapped in [
            "gitrepo get",
            "gitrepo patch",
            "gitrepo annotate",
            "deployment get",
            "deployment patch",
        ] {
            if script.contains(wrapped) {
                derived.extend(kubectl_verbs(wrapped.split_once(' ').unwrap_or_default().1));
            }
        }
        let calls = declared
            .get(step.as_str())
            .unwrap_or_else(|| panic!("step {step} declares no calls"));
        let verbs: BTreeSet<&str> = calls
            .iter()
            .map(|call| call.split_whitespace().next().unwrap_or_default())
            .collect();
        for verb in &verbs {
            assert!(
                derived.contains(verb),
                "{step} is granted `{verb}`, which no kubectl command of its script makes"
            );
        }
        let spec = pod_spec_of(&cm).unwrap_or_else(|| panic!("{step} has no podSpec"));
        if derived.is_empty() {
            assert!(
                calls.is_empty(),
                "{step} runs no kubectl but declares {calls:?}"
            );
            assert_eq!(
                spec.automount_service_account_token,
                Some(false),
                "{step} calls no API: its pod must not mount a token"
            );
        } else {
            assert!(
                !calls.is_empty(),
                "{step} runs kubectl but declares no call"
            );
            assert_ne!(
                spec.automount_service_account_token,
                Some(false),
                "{step} needs its token"
            );
        }
    }
}

/// The resources of the Kubernetes APIs the service's code uses (`Api<Kind>` in src/, the
/// kube event recorder); the embedded sandbox and the local-only CLIs left out.
fn service_resources() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("read src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("sandbox") && !path.ends_with("cli") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let resource_of = |kind: &str| match kind {
        "ConfigMap" => "configmaps",
        "Job" => "jobs",
        "Pod" => "pods",
        "Lease" => "leases",
        "DaemonSet" => "daemonsets",
        "TokenReview" => "tokenreviews",
        "SubjectAccessReview" => "subjectaccessreviews",
        "Recorder" => "events",
        "Node" => "nodes",
        other => panic!("the service uses Api<{other}>: add it here and to the chart's RBAC"),
    };
    let mut out = BTreeSet::new();
    for file in files {
        let text = fs::read_to_string(&file).expect("read source");
        // Test modules may build objects of any kind; only the code before them counts.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (i, _) in code
            .match_indices("Api<")
            .chain(code.match_indices("Api::<"))
        {
            let rest = &code[i..];
            let kind: String = rest[rest.find('<').unwrap_or(0) + 1..]
                .chars()
                .take_while(|c| c.is_alphanumeric())
                .collect();
            // A one-letter name is a type parameter (`fn reflect<K>(api: Api<K>)`): its
            // callers name the kinds.
            if kind.len() > 1
                && kind.chars().next().is_some_and(char::is_uppercase)
                && kind != "DynamicObject"
            {
                out.insert(resource_of(&kind).to_owned());
            }
        }
        // The tether report's custom kinds, watched as DynamicObjects found by discovery.
        if code.contains("Api::all_with(") && file.ends_with("tethers/sources.rs") {
            out.extend(
                catalyst_cutover::tethers::index::Source::ALL
                    .iter()
                    .filter(|s| s.custom().is_some())
                    .filter_map(|s| s.name().split('.').next())
                    .map(str::to_owned),
            );
        }
        if code.contains("Recorder::new") {
            out.insert(resource_of("Recorder").to_owned());
        }
        // A pod's log is a subresource of its own (`pods/log`).
        if code.contains(".log_stream(") || code.contains(".logs(") {
            out.insert("pods/log".to_owned());
        }
    }
    out
}

#[test]
fn the_service_is_granted_exactly_the_apis_its_code_uses() {
    let rbac = installed_rbac();
    let service = sa("catalyst-cutover");
    let bound = bound_roles(&rbac);
    let role_rules = rbac.roles.iter().filter_map(|r| {
        let role = format!(
            "Role {}/{}",
            r.metadata.namespace.as_deref().unwrap_or_default(),
            r.metadata.name.as_deref().unwrap_or_default()
        );
        (bound.get(&role) == Some(&service)).then(|| r.rules.clone().unwrap_or_default())
    });
    let cluster_rules = rbac.cluster_roles.iter().filter_map(|r| {
        let role = format!(
            "ClusterRole {}",
            r.metadata.name.as_deref().unwrap_or_default()
        );
        (bound.get(&role) == Some(&service)).then(|| r.rules.clone().unwrap_or_default())
    });
    let granted: BTreeSet<String> = role_rules
        .chain(cluster_rules)
        .flatten()
        .flat_map(|rule| rule.resources.unwrap_or_default())
        .collect();
    assert_eq!(granted, service_resources());
}

/// The same calls as SubjectAccessReviews through the API, with the chart's RBAC objects
/// created in the cluster under test (the sandbox, or `CUTOVER_TEST_KUBECONFIG`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_identity_passes_subject_access_reviews_through_the_api() {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, PostParams};
    let cluster = common::TestCluster::start().await;
    let client = cluster.client();
    let create = PostParams::default();
    let rbac = installed_rbac();
    let namespaces: BTreeSet<&str> = rbac
        .roles
        .iter()
        .filter_map(|r| r.metadata.namespace.as_deref())
        .chain([NAMESPACE])
        .collect();
    for namespace in namespaces {
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))
                .expect("namespace");
        // A shared cluster may have it already.
        let _ = Api::<Namespace>::all(client.clone())
            .create(&create, &ns)
            .await;
    }
    for role in &rbac.roles {
        let namespace = role.metadata.namespace.as_deref().unwrap_or(NAMESPACE);
        common::create_or_replace(&Api::<Role>::namespaced(client.clone(), namespace), role).await;
    }
    for binding in &rbac.role_bindings {
        let namespace = binding.metadata.namespace.as_deref().unwrap_or(NAMESPACE);
        common::create_or_replace(
            &Api::<RoleBinding>::namespaced(client.clone(), namespace),
            binding,
        )
        .await;
    }
    for role in &rbac.cluster_roles {
        common::create_or_replace(&Api::<ClusterRole>::all(client.clone()), role).await;
    }
    for binding in &rbac.cluster_role_bindings {
        common::create_or_replace(&Api::<ClusterRoleBinding>::all(client.clone()), binding).await;
    }
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let review = |user: String, call: String| {
        let reviews = reviews.clone();
        async move {
            let attrs = request(&call);
            let spec = SubjectAccessReviewSpec {
                user: Some(user.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(attrs.verb.clone()),
                    group: Some(attrs.api_group.clone()),
                    resource: Some(attrs.resource.clone()),
                    subresource: attrs.subresource.clone(),
                    namespace: attrs.namespace.clone(),
                    name: attrs.name.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            };
            let answer = reviews
                .create(
                    &PostParams::default(),
                    &SubjectAccessReview {
                        spec,
                        ..SubjectAccessReview::default()
                    },
                )
                .await
                .expect("SubjectAccessReview");
            answer.status.is_some_and(|s| s.allowed)
        }
    };
    let (allowed_calls, denied_calls) = expected_calls();
    for (user, call) in allowed_calls {
        assert!(
            review(user.clone(), call.clone()).await,
            "{user} may not `{call}`"
        );
    }
    for (user, call) in denied_calls {
        assert!(
            !review(user.clone(), call.clone()).await,
            "{user} must not `{call}`"
        );
    }
    cluster.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// Images.
// ---------------------------------------------------------------------------------------

/// Pinned: a digest, or an exact tag that is not `latest`.
fn pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    matches!(last.split_once(':'), Some((_, tag)) if !tag.is_empty() && tag != "latest")
}

/// The image values a pod spec of the chart takes: the service's, or one of `images`.
fn image_values<'a>(values: &'a Json, what: &str) -> &'a Json {
    // The registry-pivot agent is `catalyst-cutover agent`, from the service's image.
    if what.starts_with("Deployment") || what.starts_with("DaemonSet") {
        &values["image"]
    } else if what.starts_with("Job") {
        &values["images"]["hook"]
    } else {
        &values["images"]["tools"]
    }
}

#[test]
fn every_image_comes_from_the_values_and_is_pinned() {
    for values in [default_values(), all_on_values()] {
        let specs = pod_specs(&render(&values));
        assert!(specs.len() >= 9, "the steps, the agent and the service");
        for (what, spec) in specs {
            let wanted = image_values(&values, &what);
            let reference = match wanted["digest"].as_str().unwrap_or_default() {
                "" => format!(
                    "{}:{}",
                    wanted["repository"].as_str().unwrap_or_default(),
                    // The service's empty tag is the chart's appVersion.
                    wanted["tag"]
                        .as_str()
                        .filter(|tag| !tag.is_empty())
                        .map_or_else(app_version, str::to_owned)
                ),
                digest => format!(
                    "{}@{digest}",
                    wanted["repository"].as_str().unwrap_or_default()
                ),
            };
            for container in spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
            {
                let image = container.image.as_deref().unwrap_or_default();
                assert!(pinned(image), "{what}: image `{image}` is not pinned");
                assert_eq!(image, reference, "{what}: not the image the values choose");
            }
        }
    }
    // The plain files name exactly the image the chart swaps, so none escapes the values.
    let mut files = glob("steps/*.yaml");
    files.push("hooks/auto-trigger.yaml".to_owned());
    for file in files {
        for line in read(&file).lines() {
            if let Some(image) = line.trim().strip_prefix("image:") {
                assert_eq!(image.trim(), SHIPPED_IMAGE, "{file}: `{line}`");
            }
        }
    }
    assert!(
        read("templates/_helpers.tpl").contains(&format!("image: {SHIPPED_IMAGE}")),
        "templates/_helpers.tpl swaps another image than the files name"
    );
    assert!(!pinned("nginx") && !pinned("nginx:latest") && !pinned("registry:5000/nginx"));
    assert!(pinned("registry:5000/nginx:1.27") && pinned("nginx@sha256:abc"));
}

// ---------------------------------------------------------------------------------------
// values.yaml and values.schema.json.
// ---------------------------------------------------------------------------------------

fn schema() -> Json {
    serde_json::from_str(&read("values.schema.json")).expect("values.schema.json parses")
}

/// Every object closed (`additionalProperties: false`) and every property typed and described.
fn check_schema_coverage(schema: &Json, at: &str) {
    assert!(schema["type"].is_string(), "{at}: no type");
    if schema["type"] == "object" && schema["additionalProperties"].is_object() {
        // A map (label selectors): every value typed.
        check_schema_coverage(&schema["additionalProperties"], &format!("{at}{{}}"));
    } else if schema["type"] == "object" {
        assert_eq!(
            schema["additionalProperties"],
            Json::Bool(false),
            "{at}: open object"
        );
        for (k, property) in schema["properties"].as_object().expect("properties") {
            assert!(
                property["description"].is_string(),
                "{at}.{k}: no description"
            );
            check_schema_coverage(property, &format!("{at}.{k}"));
        }
    }
    if schema["type"] == "array" {
        check_schema_coverage(&schema["items"], &format!("{at}[]"));
    }
}

/// `values` with the value at `path` (dot-separated) replaced.
fn with(path: &str, value: Json) -> Json {
    let mut values = default_values();
    let mut at = &mut values;
    for part in path.split('.') {
        at = &mut at[part];
    }
    *at = value;
    values
}

#[test]
fn helm_refuses_values_off_the_schema() {
    let schema = schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    check_schema_coverage(&schema, "values");
    for values in [default_values(), all_on_values()] {
        if let Err(e) = template(&values) {
            panic!("valid values refused:\n{e}");
        }
    }
    let mut unknown = default_values();
    unknown["gitea"]["urll"] = Json::from("https://x");
    let bad = [
        ("latest", with("image.tag", Json::from("latest"))),
        (
            "latest tools",
            with("images.tools.tag", Json::from("latest")),
        ),
        (
            "short digest",
            with("images.tools.digest", Json::from("sha256:abc")),
        ),
        ("unknown key", unknown),
        ("wrong type", with("replicas", Json::from("two"))),
        ("hold", with("egressBlock.holdSeconds", Json::from(3600))),
        // Values that reach the scripts, the root agent's above all: no glob, quote,
        // command substitution or line break gets through.
        (
            "glob registry",
            with("upstream.registries", Json::from(vec!["docker.io", "*"])),
        ),
        (
            "quote in registry",
            with("harbor.registry", Json::from("harbor\"; rm -rf /; \"")),
        ),
        (
            "path in registry",
            with("upstream.registries", Json::from(vec!["ghcr.io/x"])),
        ),
        (
            "command in url",
            with("gitea.url", Json::from("https://$(id).example")),
        ),
        (
            "space in url",
            with("harbor.url", Json::from("https://h.example /x")),
        ),
        ("line in author", with("git.authorName", Json::from("a\nb"))),
        (
            "backtick in author",
            with("git.authorName", Json::from("`id`")),
        ),
        (
            "glob host",
            with("upstream.egressHosts", Json::from(vec!["*.github.com"])),
        ),
        (
            "not a cidr",
            with("upstream.egressCidrs", Json::from(vec!["10.0.0.0/8;x"])),
        ),
        (
            "unknown kind",
            with("flux.readyKinds", Json::from("secrets")),
        ),
        (
            "namespace",
            with("catalystApi.namespace", Json::from("Console")),
        ),
        ("branch", with("gitea.branch", Json::from("main;x"))),
        (
            "platform",
            with("prewarm.platforms", Json::from(vec!["linux amd64"])),
        ),
        (
            "console namespace",
            with("networkPolicy.consoleNamespaces", Json::from(vec!["a b"])),
        ),
    ];
    for (what, values) in bad {
        assert!(template(&values).is_err(), "{what} passed the schema");
    }
}

/// The defaults name the seed platform's Flux objects: its GitRepository `flux-system/openova`
/// and its bootstrap-kit under `clusters/_template/bootstrap-kit` (the seed chart's own steps
/// 05 and 06 name both).
#[test]
fn the_defaults_name_the_seed_platforms_gitrepository_and_bootstrap_kit() {
    let docs = default_docs();
    let settings: ConfigMap = typed(find(&docs, "ConfigMap", "cutover-settings"));
    let data = settings.data.unwrap_or_default();
    for (key, value) in [
        ("FLUX_NAMESPACE", "flux-system"),
        ("FLUX_GITREPOSITORY", "openova"),
        (
            "FLUX_BOOTSTRAP_KIT_PATH",
            "clusters/_template/bootstrap-kit",
        ),
    ] {
        assert_eq!(data.get(key).map(String::as_str), Some(value), "{key}");
    }
}

/// Values that reach the real Flux and Cilium schemas (`../shared/crds`): what those reject
/// is refused when the chart renders, not by the API server in the middle of a step. Step 08
/// puts `upstream.egressCidrs` in a CiliumClusterwideNetworkPolicy's `toCIDRSet` (`format:
/// cidr`: an address and a prefix no longer than it); step 05 puts the Gitea clone URL in
/// the GitRepository's `spec.url` (`^(http|https|ssh)://.*$`).
#[test]
fn values_the_real_flux_and_cilium_schemas_reject_are_refused_at_render_time() {
    let refused = [
        (
            "prefix past /32",
            with("upstream.egressCidrs", Json::from(vec!["10.0.0.0/33"])),
        ),
        (
            "bare address",
            with("upstream.egressCidrs", Json::from(vec!["10.0.0.1"])),
        ),
        (
            "octet past 255",
            with("upstream.egressCidrs", Json::from(vec!["10.0.0.256/32"])),
        ),
        (
            "prefix past /128",
            with("upstream.egressCidrs", Json::from(vec!["2001:db8::/129"])),
        ),
        (
            "bare IPv6 address",
            with("upstream.egressCidrs", Json::from(vec!["2001:db8::1"])),
        ),
        (
            "clone URL without a scheme",
            with(
                "gitea.repoUrl",
                Json::from("gitea.example.org/openova/platform.git"),
            ),
        ),
        (
            "Gitea URL without a scheme",
            with("gitea.url", Json::from("gitea.example.org")),
        ),
        (
            "upstream without a scheme",
            with(
                "upstream.repoUrl",
                Json::from("github.com/openova-io/openova.git"),
            ),
        ),
    ];
    for (what, values) in refused {
        let refusal = template(&values)
            .err()
            .unwrap_or_else(|| panic!("{what} passed the schema"));
        assert!(
            refusal.contains("values don't meet the specifications of the schema"),
            "{what}: {refusal}"
        );
    }
    let accepted = with(
        "upstream.egressCidrs",
        Json::from(vec![
            "10.0.0.0/8",
            "192.168.1.1/32",
            "0.0.0.0/0",
            "2001:db8::/32",
            "::/0",
        ]),
    );
    if let Err(e) = template(&accepted) {
        panic!("valid CIDRs refused:\n{e}");
    }
}

// ---------------------------------------------------------------------------------------
// The scripts.
// ---------------------------------------------------------------------------------------

/// Every shell script the chart ships (ConfigMap data keys ending in `.sh`).
fn scripts(docs: &[(String, Yaml)]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (_, doc) in docs.iter().filter(|(_, doc)| kind(doc) == "ConfigMap") {
        let cm: ConfigMap = typed(doc);
        let cm_name = cm.metadata.name.unwrap_or_default();
        for (k, v) in cm.data.unwrap_or_default() {
            if k.ends_with(".sh") {
                out.insert(format!("{cm_name}-{k}"), v);
            }
        }
    }
    out
}

fn shellcheck_available() -> bool {
    Command::new("shellcheck")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn scripts_pass_sh_n_and_shellcheck() {
    let docs = all_on_docs();
    let scripts = scripts(&docs);
    let steps_with_scripts = step_configmaps(&docs)
        .iter()
        .filter(|cm| cm.data.as_ref().is_some_and(|d| d.contains_key("run.sh")))
        .count();
    assert_eq!(
        scripts.len(),
        steps_with_scripts + 1,
        "the step scripts and the trigger (the agent is the binary): {:?}",
        scripts.keys()
    );
    let dir = std::env::temp_dir().join(format!("chart-scripts-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    let with_shellcheck = shellcheck_available();
    if !with_shellcheck {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "shellcheck is not on PATH; CI must install it (.ci/run does)"
        );
        eprintln!("note: shellcheck is not on PATH; only `sh -n` ran (install shellcheck to lint)");
    }
    let mut failures = Vec::new();
    for (origin, script) in &scripts {
        assert!(
            script.starts_with("#!/bin/sh\n"),
            "{origin}: not a POSIX sh script"
        );
        assert!(
            script.contains("\nset -euf\n"),
            "{origin}: no `set -euf` (globbing off)"
        );
        assert!(
            script.contains("STEP_SUPERVISED=1 setsid sh \"$0\""),
            "{origin}: a TERM must stop it at once (it runs as PID 1)"
        );
        let path = dir.join(origin);
        fs::write(&path, script).expect("write script");
        let mut checks = vec![Command::new("sh").arg("-n").arg(&path).output()];
        if with_shellcheck {
            checks.push(
                Command::new("shellcheck")
                    .args(["-s", "sh"])
                    .arg(&path)
                    .output(),
            );
        }
        for output in checks {
            let output = output.expect("the checker runs");
            if !output.status.success() {
                failures.push(format!(
                    "{origin}:\n{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
        }
    }
    fs::remove_dir_all(&dir).ok();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Step 00 preflight runs as `cutover-runner` and needs only reads besides discovery
/// (`kubectl api-resources`, open to every authenticated identity); whether step 08 is on
/// reaches it through a `configMapKeyRef`, which the kubelet resolves.
#[test]
fn rbac_lets_the_preflight_read_what_it_checks() {
    let rbac = installed_rbac();
    let runner = format!("system:serviceaccount:{NAMESPACE}:cutover-runner");
    for call in [
        "get source.toolkit.fluxcd.io/gitrepositories flux-system/openova".to_owned(),
        format!("get apps/daemonsets {NAMESPACE}/registry-pivot"),
    ] {
        assert!(allowed(&rbac, &runner, &call), "{runner}: {call}");
    }
}

// ---------------------------------------------------------------------------------------
// NetworkPolicies.
// ---------------------------------------------------------------------------------------

/// The destinations (values under `networkPolicy`) one policy's egress reaches, by the peers
/// the values give each.
fn egress_destinations(policy: &NetworkPolicy, values: &Json) -> BTreeSet<String> {
    let np = &values["networkPolicy"];
    let rules = policy
        .spec
        .as_ref()
        .and_then(|s| s.egress.clone())
        .unwrap_or_default();
    let mut out = BTreeSet::new();
    for rule in rules {
        let peers = serde_json::to_value(rule.to.unwrap_or_default()).expect("peers");
        let found = ["apiServer", "dns", "gitea", "harbor"]
            .into_iter()
            .find(|dest| np[*dest]["to"] == peers)
            .unwrap_or_else(|| panic!("egress to unknown peers {peers}"));
        out.insert(found.to_owned());
    }
    out
}

#[test]
fn network_policies_let_each_pod_reach_only_what_it_calls() {
    let values = default_values();
    let docs = default_docs();
    let policies: BTreeMap<String, NetworkPolicy> = docs
        .iter()
        .filter(|(_, doc)| kind(doc) == "NetworkPolicy")
        .map(|(_, doc)| (name(doc).to_owned(), typed(doc)))
        .collect();
    // What each step calls besides DNS: the API server iff its script runs kubectl (derived),
    // the local Gitea or Harbor as its script talks to them.
    let talks_to: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("preflight", &["gitea", "harbor"][..]),
        ("gitea-mirror", &["gitea"]),
        ("harbor-projects", &["harbor"]),
        ("harbor-prewarm", &["harbor"]),
        ("flux-gitrepository-patch", &[]),
        ("helmrepository-patches", &["gitea"]),
        ("catalyst-api-env-patch", &[]),
        ("egress-block-test", &[]),
        ("gitea-token-mint", &["gitea"]),
        ("vcluster-registry-pivot", &[]),
        ("crossplane-provider-pivot", &[]),
    ]);
    for cm in step_configmaps(&docs) {
        let data = cm.data.clone().unwrap_or_default();
        let (Some(step), Some(script)) = (data.get(contract::DATA_STEP_NAME), data.get("run.sh"))
        else {
            continue;
        };
        let policy = policies
            .get(&format!("cutover-step-{step}"))
            .unwrap_or_else(|| panic!("no NetworkPolicy for step {step}"));
        let spec = policy.spec.clone().expect("spec");
        assert_eq!(
            spec.pod_selector
                .clone()
                .and_then(|s| s.match_labels)
                .unwrap_or_default(),
            BTreeMap::from([
                (
                    contract::LABEL_COMPONENT.to_owned(),
                    "cutover-job".to_owned()
                ),
                (contract::LABEL_JOB_STEP.to_owned(), step.clone()),
            ]),
            "{step}: selects the step's Job pods"
        );
        assert_eq!(
            spec.policy_types.clone().unwrap_or_default(),
            ["Ingress", "Egress"],
            "{step}: nothing may call a step pod"
        );
        assert!(spec.ingress.unwrap_or_default().is_empty());
        let mut wanted: BTreeSet<String> = ["dns".to_owned()].into();
        if script.contains("kubectl ") {
            wanted.insert("apiServer".to_owned());
        }
        let calls = talks_to
            .get(step.as_str())
            .unwrap_or_else(|| panic!("{step}: what does it talk to?"));
        wanted.extend(calls.iter().map(|d| (*d).to_owned()));
        assert_eq!(egress_destinations(policy, &values), wanted, "{step}");
    }
    let agent = &policies["registry-pivot"];
    assert_eq!(
        egress_destinations(agent, &values),
        ["apiServer", "dns", "harbor"].map(str::to_owned).into()
    );

    let service = policies["catalyst-cutover"].spec.clone().expect("spec");
    assert_eq!(
        egress_destinations(&policies["catalyst-cutover"], &values),
        ["apiServer".to_owned()].into()
    );
    let ingress = service.ingress.unwrap_or_default();
    assert_eq!(ingress.len(), 1);
    let from = serde_json::to_value(ingress[0].from.clone().unwrap_or_default()).expect("from");
    assert_eq!(
        from,
        serde_json::json!([
            {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "cutover-trigger"}}},
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "catalyst"}}},
        ]),
        "the hook and the console's namespaces only"
    );
    // DNS over UDP and TCP, the rest over TCP.
    let dns = serde_json::to_value(&policies["cutover-step-egress-block-test"]).expect("json");
    assert!(
        dns.to_string().contains(r#"{"port":53,"protocol":"UDP"}"#),
        "{dns}"
    );

    // Probe sources and other console namespaces come from the values; all of it goes away
    // on a cluster without a policy engine.
    let mut more = default_values();
    more["networkPolicy"]["consoleNamespaces"] = serde_json::json!(["console", "ops"]);
    more["networkPolicy"]["probeCidrs"] = serde_json::json!(["10.0.0.0/24"]);
    let service = render(&more)
        .into_iter()
        .find(|(_, doc)| kind(doc) == "NetworkPolicy" && name(doc) == "catalyst-cutover")
        .expect("service policy");
    let from = serde_json::to_string(&service.1["spec"]["ingress"][0]["from"]).expect("json");
    for expected in [r#""console""#, r#""ops""#, r#""cidr":"10.0.0.0/24""#] {
        assert!(from.contains(expected), "{expected} not in {from}");
    }
    let mut off = all_on_values();
    off["networkPolicy"]["enabled"] = Json::Bool(false);
    assert!(
        !render(&off)
            .iter()
            .any(|(_, doc)| kind(doc) == "NetworkPolicy"),
        "networkPolicy.enabled=false installs none"
    );
}

#[test]
fn the_service_image_is_the_app_version_unless_a_tag_or_digest_is_set() {
    let image = |values: Json| {
        let docs = render(&values);
        let deployment: Deployment = typed(find(&docs, "Deployment", "catalyst-cutover"));
        let pod = deployment
            .spec
            .and_then(|s| s.template.spec)
            .expect("pod spec");
        pod.containers[0].image.clone().expect("an image")
    };
    let repository = "ghcr.io/openova-io/catalyst-cutover";
    assert_eq!(
        image(default_values()),
        format!("{repository}:{}", app_version())
    );
    let mut tagged = default_values();
    tagged["image"]["tag"] = Json::from("0.9.1");
    assert_eq!(image(tagged), format!("{repository}:0.9.1"));
    let digest = format!("sha256:{}", "a".repeat(64));
    let mut pinned_by_digest = default_values();
    pinned_by_digest["image"]["tag"] = Json::from("0.9.1");
    pinned_by_digest["image"]["digest"] = Json::from(digest.clone());
    assert_eq!(image(pinned_by_digest), format!("{repository}@{digest}"));
}

/// The tether report's values reach `serve` (hosts, the mirrored registries, the cluster-wide
/// switch, vcluster's registry, the completion gate), and `tethers.clusterWide: false`
/// removes its ClusterRole and binding.
#[test]
fn the_tether_report_and_its_gate_are_configured_from_the_values() {
    let env_of = |docs: &[(String, Yaml)]| -> BTreeMap<String, String> {
        live::deployment_env(docs, "catalyst-cutover", NAMESPACE, "catalyst-cutover-0")
            .into_iter()
            .collect()
    };
    let docs = default_docs();
    let env = env_of(&docs);
    assert_eq!(
        env["CATALYST_CUTOVER_TETHER_UPSTREAM_HOSTS"],
        "github.com,ghcr.io,harbor.openova.io,docker.io,xpkg.upbound.io"
    );
    assert_eq!(
        env["CATALYST_CUTOVER_MIRRORED_REGISTRIES"],
        "docker.io,ghcr.io,quay.io,registry.k8s.io"
    );
    assert_eq!(env["CATALYST_CUTOVER_TETHERS_CLUSTER_WIDE"], "true");
    assert_eq!(env["CATALYST_CUTOVER_VCLUSTER_REGISTRY"], "ghcr.io");
    assert_eq!(env["CATALYST_CUTOVER_REQUIRE_NO_TETHERS"], "true");
    let role: ClusterRole = typed(find(&docs, "ClusterRole", "catalyst-cutover-tethers"));
    let verbs: BTreeSet<&str> = role
        .rules
        .iter()
        .flatten()
        .flat_map(|r| r.verbs.iter().map(String::as_str))
        .collect();
    assert_eq!(verbs, BTreeSet::from(["list", "watch"]), "reads only");
    find(&docs, "ClusterRoleBinding", "catalyst-cutover-tethers");

    let mut values = default_values();
    values["tethers"]["clusterWide"] = Json::Bool(false);
    values["completion"]["requireNoTethers"] = Json::Bool(false);
    let docs = render(&values);
    let env = env_of(&docs);
    assert_eq!(env["CATALYST_CUTOVER_TETHERS_CLUSTER_WIDE"], "false");
    assert_eq!(env["CATALYST_CUTOVER_REQUIRE_NO_TETHERS"], "false");
    assert!(
        !docs
            .iter()
            .any(|(_, d)| name(d) == "catalyst-cutover-tethers"),
        "no cluster-wide reads"
    );
    for bad in [
        serde_json::json!({"tethers": {"upstreamHosts": ["not a host"], "clusterWide": true}}),
        serde_json::json!({"completion": {"requireNoTethers": "yes"}}),
    ] {
        let mut values = default_values();
        for (k, v) in bad.as_object().expect("an object") {
            values[k] = v.clone();
        }
        assert!(template(&values).is_err(), "the schema refuses {bad}");
    }
}
