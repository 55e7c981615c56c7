//! The Helm chart under `chart/`, checked without Helm (which this project cannot install).
//!
//! The templates may use only the expressions [`Renderer`] understands (the allow list in
//! `chart/README.md`); the renderer rejects everything else, so rendering every template
//! here proves both that the templates stay trivial and what Helm will install. The checks
//! then run over the rendered manifests: the contract's step format, the status ConfigMap,
//! RBAC, pinned images, the values schema and the step scripts (`sh -n` and ShellCheck).

#[path = "chart/cluster.rs"]
mod cluster;
mod common;
#[path = "chart/standins.rs"]
mod standins;
#[path = "chart/steps.rs"]
mod steps;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use catalyst_cutover::contract::{self, key};
use catalyst_cutover::sandbox::auth::{Attributes, RbacRules, UserInfo, authorize};
use catalyst_cutover::status::model::KEY_SCHEMA_VERSION;
use catalyst_cutover::status::store::initial_data;
use catalyst_cutover::step::{StepKind, load_dir, parse_plan};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// The release namespace the renders assume.
const NAMESPACE: &str = "catalyst";
/// The one tools image (kubectl, git, curl, jq) of the steps, the agent and the hook.
const TOOLS_IMAGE: &str = "docker.io/alpine/k8s:1.33.4";
/// The eight steps, in order.
const STEPS: [&str; 8] = common::CHART_STEPS;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("chart")
}

fn read(rel: &str) -> String {
    fs::read_to_string(chart().join(rel)).unwrap_or_else(|e| panic!("chart/{rel}: {e}"))
}

fn default_values() -> Json {
    serde_yaml::from_str(&read("values.yaml")).expect("values.yaml parses")
}

/// Chart files matching `dir/*suffix`, the only glob shape the templates use, sorted.
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
// The renderer of the allowed template subset.
// ---------------------------------------------------------------------------------------

/// A lexed piece of a template: text, or the inside of one `{{ }}` action.
enum Token {
    Text(String),
    Action(String),
}

/// A parsed template.
enum Node {
    Text(String),
    Action(String),
    If(String, Vec<Node>, Vec<Node>),
    Range(String, Vec<Node>),
}

/// Splits a template into text and actions, applying `{{-` / `-}}` whitespace trimming.
fn lex(src: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[open + 2..];
        let close = after.find("}}").expect("every {{ has its }}");
        let mut inner = &after[..close];
        if let Some(stripped) = inner.strip_prefix("- ") {
            text = text.trim_end();
            inner = stripped;
        }
        trim_next = false;
        if let Some(stripped) = inner.strip_suffix(" -") {
            trim_next = true;
            inner = stripped;
        }
        out.push(Token::Text(text.to_owned()));
        out.push(Token::Action(inner.trim().to_owned()));
        rest = &after[close + 2..];
    }
    out.push(Token::Text(if trim_next {
        rest.trim_start().to_owned()
    } else {
        rest.to_owned()
    }));
    out
}

/// Parses tokens up to an `else` / `end` (returned) or the end of input.
fn parse(tokens: &mut impl Iterator<Item = Token>) -> (Vec<Node>, Option<String>) {
    let mut nodes = Vec::new();
    while let Some(token) = tokens.next() {
        match token {
            Token::Text(text) => nodes.push(Node::Text(text)),
            Token::Action(a) if a.starts_with("/*") && a.ends_with("*/") => {}
            Token::Action(a) if a == "end" || a == "else" => return (nodes, Some(a)),
            Token::Action(a) if a.starts_with("if ") => {
                let (then, end) = parse(tokens);
                let otherwise = match end.as_deref() {
                    Some("else") => {
                        let (otherwise, end) = parse(tokens);
                        assert_eq!(end.as_deref(), Some("end"), "`if {}` has no end", &a[3..]);
                        otherwise
                    }
                    Some("end") => Vec::new(),
                    _ => panic!("`{a}` has no end"),
                };
                nodes.push(Node::If(a[3..].to_owned(), then, otherwise));
            }
            Token::Action(a) if a.starts_with("range ") => {
                let (body, end) = parse(tokens);
                assert_eq!(end.as_deref(), Some("end"), "`{a}` has no end");
                nodes.push(Node::Range(a[6..].to_owned(), body));
            }
            Token::Action(a) => nodes.push(Node::Action(a)),
        }
    }
    (nodes, None)
}

/// Renders templates the way Helm would, for the allow-listed expressions only:
/// `.Values.<path>` (existing in the values) or `join "<separator>" .Values.<path>` (a list
/// of strings), either optionally `| quote`, `.Release.Namespace`, `if .Values.<path>` / `else` / `end`, comments, the `lookup`
/// of the status ConfigMap, `.Files.Get "<file>"` and `range $path, $_ := .Files.Glob
/// "<dir>/*<suffix>"` with `$.Files.Get $path`.
struct Renderer {
    values: Json,
    /// Whether `lookup` finds the status ConfigMap (an upgrade) or not (first install).
    status_exists: bool,
}

impl Renderer {
    fn new(values: Json) -> Self {
        Renderer {
            values,
            status_exists: false,
        }
    }

    fn render_file(&self, rel: &str) -> Result<String, String> {
        let (nodes, end) = parse(&mut lex(&read(rel)).into_iter());
        if let Some(end) = end {
            return Err(format!("{rel}: stray `{end}`"));
        }
        let mut out = String::new();
        self.eval(&nodes, None, &mut out)
            .map_err(|e| format!("{rel}: {e}"))?;
        Ok(out)
    }

    fn eval(&self, nodes: &[Node], path: Option<&str>, out: &mut String) -> Result<(), String> {
        for node in nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Action(a) => out.push_str(&self.expr(a, path)?),
                Node::If(cond, then, otherwise) => {
                    let branch = if self.cond(cond)? { then } else { otherwise };
                    self.eval(branch, path, out)?;
                }
                Node::Range(spec, body) => {
                    let pattern = spec
                        .strip_prefix("$path, $_ := .Files.Glob ")
                        .ok_or_else(|| format!("`range {spec}` is not on the allow list"))?;
                    for file in glob(&unquote(pattern)?) {
                        self.eval(body, Some(&file), out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn expr(&self, a: &str, path: Option<&str>) -> Result<String, String> {
        if a == ".Release.Namespace" {
            return Ok(NAMESPACE.to_owned());
        }
        if a == "$.Files.Get $path" {
            return Ok(read(path.ok_or("`$path` outside a range")?));
        }
        if let Some(file) = a.strip_prefix(".Files.Get ") {
            return Ok(read(&unquote(file)?));
        }
        let (head, pipe) = match a.split_once(" | ") {
            Some((head, pipe)) => (head, Some(pipe)),
            None => (a, None),
        };
        let text = if let Some(rest) = head.strip_prefix("join \"") {
            let (separator, list) = rest
                .split_once("\" ")
                .ok_or_else(|| format!("`{a}`: join needs a quoted separator"))?;
            self.value(list)?
                .as_array()
                .ok_or_else(|| format!("`{a}`: not a list"))?
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("`{a}`: not a list of strings"))?
                .join(separator)
        } else {
            scalar(self.value(head)?).ok_or_else(|| format!("`{a}`: not a scalar"))?
        };
        match pipe {
            None => Ok(text),
            Some("quote") => Ok(serde_json::to_string(&text).expect("a string serializes")),
            Some(other) => Err(format!("`| {other}` is not on the allow list")),
        }
    }

    fn cond(&self, cond: &str) -> Result<bool, String> {
        const STATUS_LOOKUP: &str =
            r#"not (lookup "v1" "ConfigMap" .Release.Namespace "self-sovereign-cutover-status")"#;
        if cond == STATUS_LOOKUP {
            return Ok(!self.status_exists);
        }
        Ok(truthy(self.value(cond)?))
    }

    fn value(&self, expr: &str) -> Result<&Json, String> {
        let path = expr
            .strip_prefix(".Values.")
            .ok_or_else(|| format!("expression `{expr}` is not on the allow list"))?;
        path.split('.').try_fold(&self.values, |v, part| {
            v.get(part)
                .ok_or_else(|| format!("`{expr}` is not in values.yaml"))
        })
    }

    /// Every template rendered and split into its manifests, each with its template's name.
    fn render(&self) -> Vec<(String, Yaml)> {
        let mut out = Vec::new();
        for template in glob("templates/*.yaml") {
            let text = self
                .render_file(&template)
                .unwrap_or_else(|e| panic!("{e}"));
            for doc in split_documents(&text) {
                let yaml: Yaml = serde_yaml::from_str(&doc)
                    .unwrap_or_else(|e| panic!("{template} renders invalid YAML: {e}\n{doc}"));
                if !yaml.is_null() {
                    out.push((template.clone(), yaml));
                }
            }
        }
        out
    }
}

fn unquote(s: &str) -> Result<String, String> {
    serde_json::from_str(s).map_err(|_| format!("`{s}` is not a quoted string"))
}

fn scalar(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64() != Some(0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
    }
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
fn templates_render_with_allowed_expressions_only() {
    for values in [default_values(), all_on_values()] {
        let docs = Renderer::new(values).render();
        assert!(!docs.is_empty());
    }
}

#[test]
fn the_renderer_rejects_expressions_off_the_allow_list() {
    let renderer = Renderer::new(default_values());
    for bad in [
        ".Values.nope",
        "toYaml .Values.resources",
        ".Values.replicas | int",
        "include \"x\" .",
        ".Chart.Version",
    ] {
        assert!(renderer.expr(bad, None).is_err(), "`{bad}` was accepted");
    }
    assert!(renderer.cond("eq .Values.replicas 2").is_err());
}

#[test]
fn the_status_configmap_is_created_on_first_install_only() {
    let has_status = |status_exists| {
        let renderer = Renderer {
            values: default_values(),
            status_exists,
        };
        renderer
            .render()
            .iter()
            .any(|(_, doc)| name(doc) == contract::DEFAULT_STATUS_CONFIGMAP)
    };
    assert!(
        has_status(false),
        "a first install creates the status ConfigMap"
    );
    assert!(
        !has_status(true),
        "an upgrade must not reset the status ConfigMap"
    );
}

#[test]
fn rendered_manifests_parse_as_their_kinds_without_namespaces() {
    for values in [default_values(), all_on_values()] {
        for (template, doc) in Renderer::new(values).render() {
            assert!(
                doc["metadata"]["namespace"].is_null(),
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
                other => panic!("{template}: unexpected kind {other}"),
            }
        }
    }
}

#[test]
fn a_default_install_runs_nothing_but_the_service_and_the_dormant_agent() {
    let docs = Renderer::new(default_values()).render();
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

    let all_on = Renderer::new(all_on_values()).render();
    let hook = typed::<Job>(find(&all_on, "Job", "catalyst-cutover-trigger"));
    let annotations = hook.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations.get("helm.sh/hook").map(String::as_str),
        Some("post-install")
    );
}

#[test]
fn the_service_runs_two_probed_replicas_configured_for_its_namespace_and_callers() {
    let docs = Renderer::new(default_values()).render();
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

// ---------------------------------------------------------------------------------------
// The contract.
// ---------------------------------------------------------------------------------------

#[test]
fn eight_step_configmaps_follow_the_contract() {
    let docs = Renderer::new(default_values()).render();
    let steps = step_configmaps(&docs);
    assert_eq!(steps.len(), STEPS.len(), "eight step ConfigMaps");
    let settings = find(&docs, "ConfigMap", "cutover-settings");

    for (index, cm) in steps.iter().enumerate() {
        let order = index + 1;
        let slug = STEPS[index];
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
        assert_eq!(
            label(cm, contract::LABEL_STEP_MODE),
            Some("job"),
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
    let docs = Renderer::new(all_on_values()).render();
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
    let docs = Renderer::new(default_values()).render();
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
fn the_engine_reads_the_chart_steps_as_the_eight_step_plan() {
    let configmaps = load_dir(&chart().join("steps")).expect("the step files load");
    let plan = parse_plan(&configmaps).unwrap_or_else(|report| panic!("{report}"));
    let names: Vec<&str> = plan.iter().map(|step| step.name.as_str()).collect();
    assert_eq!(names, STEPS);
    for step in plan.iter() {
        match &step.kind {
            StepKind::DaemonSetWait { daemonset } => {
                assert_eq!(
                    (step.name.as_str(), daemonset.as_str()),
                    ("registry-pivot", "registry-pivot")
                );
            }
            StepKind::Job { pod_spec } => {
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
    let docs = Renderer::new(default_values()).render();
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

fn grants(
    rules: &[(String, PolicyRule)],
    role: &str,
    group: &str,
    resource: &str,
    verb: &str,
) -> bool {
    rules.iter().any(|(r, rule)| {
        r == role
            && rule.api_groups.iter().flatten().any(|g| g == group)
            && rule.resources.iter().flatten().any(|x| x == resource)
            && rule.verbs.iter().any(|v| v == verb)
    })
}

#[test]
fn no_rbac_rule_combines_create_with_resource_names() {
    let rules = rules(&Renderer::new(all_on_values()).render());
    assert!(!rules.is_empty());
    for (role, rule) in &rules {
        let named = rule.resource_names.as_ref().is_some_and(|n| !n.is_empty());
        assert!(
            !(named && rule.verbs.iter().any(|v| v == "create" || v == "*")),
            "{role}: a create rule with resourceNames never matches: {rule:?}"
        );
    }
}

#[test]
fn rbac_grants_what_the_service_the_agent_and_operators_need() {
    let rules = rules(&Renderer::new(default_values()).render());
    let service = "Role catalyst-cutover";
    for (group, resource, verbs) in [
        (
            "",
            "configmaps",
            &["get", "list", "watch", "update", "patch", "create"][..],
        ),
        (
            "batch",
            "jobs",
            &["create", "get", "list", "watch", "delete"],
        ),
        ("", "pods", &["get", "list", "watch"]),
        ("", "pods/log", &["get"]),
        (
            "coordination.k8s.io",
            "leases",
            &["get", "create", "update"],
        ),
        ("apps", "daemonsets", &["get", "list", "watch"]),
        ("", "events", &["create", "patch"]),
    ] {
        for verb in verbs {
            assert!(
                grants(&rules, service, group, resource, verb),
                "{service}: {verb} {group}/{resource}"
            );
        }
    }
    for (group, resource, verb) in [
        ("", "nodes", "watch"),
        ("authentication.k8s.io", "tokenreviews", "create"),
        ("authorization.k8s.io", "subjectaccessreviews", "create"),
    ] {
        assert!(grants(
            &rules,
            "ClusterRole catalyst-cutover",
            group,
            resource,
            verb
        ));
    }
    assert!(grants(
        &rules,
        "Role registry-pivot",
        "",
        "configmaps",
        "patch"
    ));

    let operator: Vec<&PolicyRule> = rules
        .iter()
        .filter(|(role, _)| role == "ClusterRole catalyst-cutover-operator")
        .map(|(_, rule)| rule)
        .collect();
    assert_eq!(operator.len(), 1);
    assert_eq!(
        operator[0].api_groups.as_deref(),
        Some(["catalyst.openova.io".to_owned()].as_slice())
    );
    assert_eq!(
        operator[0].resources.as_deref(),
        Some(["cutovers".to_owned()].as_slice())
    );
    assert_eq!(operator[0].verbs, ["get", "create", "delete", "rollback"]);
}

/// The chart's RBAC as the sandbox's authorizer reads it, installed into [`NAMESPACE`], plus
/// `alice` bound to the operator ClusterRole.
fn installed_rbac() -> RbacRules {
    let mut rbac = RbacRules::default();
    for (_, doc) in Renderer::new(all_on_values()).render() {
        match kind(&doc) {
            "Role" => {
                let mut role: Role = typed(&doc);
                role.metadata.namespace = Some(NAMESPACE.to_owned());
                rbac.roles.push(role);
            }
            "RoleBinding" => {
                let mut binding: RoleBinding = typed(&doc);
                binding.metadata.namespace = Some(NAMESPACE.to_owned());
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

/// The calls each identity makes (and must be allowed), and calls it must not be allowed.
fn expected_calls() -> (Calls, Calls) {
    let runner = format!("system:serviceaccount:{NAMESPACE}:cutover-runner");
    let agent = format!("system:serviceaccount:{NAMESPACE}:registry-pivot");
    let service = format!("system:serviceaccount:{NAMESPACE}:catalyst-cutover");
    let allowed_calls: [(&str, &[&str]); 4] = [
        (
            &runner,
            &[
                // 03 harbor-prewarm
                "list apps/deployments",
                "list apps/statefulsets",
                "list apps/daemonsets",
                "list batch/cronjobs",
                // 05 flux-gitrepository-patch
                "get source.toolkit.fluxcd.io/gitrepositories flux-system/flux-system",
                "patch source.toolkit.fluxcd.io/gitrepositories flux-system/flux-system",
                // 06 helmrepository-patches
                "list source.toolkit.fluxcd.io/helmrepositories",
                "patch source.toolkit.fluxcd.io/helmrepositories platform/openova",
                // 07 catalyst-api-env-patch (and its rollout wait)
                "get apps/deployments catalyst/catalyst-api",
                "patch apps/deployments catalyst/catalyst-api",
                "watch apps/deployments catalyst/*",
                // 08 egress-block-test
                "list source.toolkit.fluxcd.io/gitrepositories",
                "list helm.toolkit.fluxcd.io/helmreleases",
                "list kustomize.toolkit.fluxcd.io/kustomizations",
                "get cilium.io/ciliumclusterwidenetworkpolicies cutover-egress-block",
                "create cilium.io/ciliumclusterwidenetworkpolicies",
                "patch cilium.io/ciliumclusterwidenetworkpolicies cutover-egress-block",
                "delete cilium.io/ciliumclusterwidenetworkpolicies cutover-egress-block",
            ],
        ),
        (
            &agent,
            &[
                "get /configmaps catalyst/self-sovereign-cutover-status",
                "patch /configmaps catalyst/self-sovereign-cutover-status",
            ],
        ),
        (
            &service,
            &[
                "list /configmaps catalyst/*",
                "watch /configmaps catalyst/*",
                "get /configmaps catalyst/cutover-step-01-gitea-mirror",
                "update /configmaps catalyst/self-sovereign-cutover-status",
                "patch /configmaps catalyst/self-sovereign-cutover-status",
                "create /configmaps catalyst/*",
                "create batch/jobs catalyst/*",
                "watch batch/jobs catalyst/*",
                "delete batch/jobs catalyst/cutover-gitea-mirror-1",
                "list /pods catalyst/*",
                "get /pods/log catalyst/cutover-gitea-mirror-1-abcde",
                "create coordination.k8s.io/leases catalyst/*",
                "update coordination.k8s.io/leases catalyst/catalyst-cutover",
                "get apps/daemonsets catalyst/registry-pivot",
                "watch /nodes",
                "create authentication.k8s.io/tokenreviews",
                "create authorization.k8s.io/subjectaccessreviews",
                "create /events catalyst/*",
                "patch events.k8s.io/events catalyst/x.123",
            ],
        ),
        (
            "alice",
            &[
                "get catalyst.openova.io/cutovers",
                "create catalyst.openova.io/cutovers",
                "delete catalyst.openova.io/cutovers",
            ],
        ),
    ];
    let allowed = allowed_calls
        .iter()
        .flat_map(|(user, calls)| calls.iter().map(|c| ((*user).to_owned(), (*c).to_owned())))
        .collect();
    let denied = [
        (runner.as_str(), "create apps/deployments catalyst/*"),
        (runner.as_str(), "patch apps/deployments catalyst/other"),
        (
            runner.as_str(),
            "delete cilium.io/ciliumclusterwidenetworkpolicies other",
        ),
        (runner.as_str(), "get /secrets catalyst/cutover-credentials"),
        (agent.as_str(), "get /configmaps catalyst/cutover-settings"),
        (
            agent.as_str(),
            "update /configmaps catalyst/self-sovereign-cutover-status",
        ),
        (
            service.as_str(),
            "update /configmaps catalyst/cutover-step-01-gitea-mirror",
        ),
        (service.as_str(), "list /configmaps other/*"),
        (
            service.as_str(),
            "get /secrets catalyst/cutover-credentials",
        ),
        ("alice", "update catalyst.openova.io/cutovers"),
    ]
    .iter()
    .map(|(user, call)| ((*user).to_owned(), (*call).to_owned()))
    .collect();
    (allowed, denied)
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
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))
            .expect("namespace");
    let _ = Api::<Namespace>::all(client.clone())
        .create(&create, &ns)
        .await;
    let rbac = installed_rbac();
    for role in &rbac.roles {
        common::create_or_replace(&Api::<Role>::namespaced(client.clone(), NAMESPACE), role).await;
    }
    for binding in &rbac.role_bindings {
        common::create_or_replace(
            &Api::<RoleBinding>::namespaced(client.clone(), NAMESPACE),
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

#[test]
fn every_image_is_pinned() {
    for values in [default_values(), all_on_values()] {
        let docs = Renderer::new(values).render();
        let specs = pod_specs(&docs);
        assert!(specs.len() >= 9, "the steps, the agent and the service");
        for (what, spec) in specs {
            for container in spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
            {
                let image = container.image.as_deref().unwrap_or_default();
                assert!(pinned(image), "{what}: image `{image}` is not pinned");
                if !what.starts_with("Deployment") {
                    assert_eq!(image, TOOLS_IMAGE, "{what}: one tools image everywhere");
                }
            }
        }
    }
    // The raw files too, so no `image:` line escapes the rendered view.
    let mut files = glob("steps/*.yaml");
    files.extend(glob("templates/*.yaml"));
    files.extend([
        "daemonset/registry-pivot.yaml".to_owned(),
        "hooks/auto-trigger.yaml".to_owned(),
    ]);
    for file in files {
        for line in read(&file).lines() {
            if let Some(image) = line.trim().strip_prefix("image:") {
                let image = image.trim().trim_matches('"');
                assert!(
                    image.starts_with("{{ .Values.image.repository }}") || pinned(image),
                    "{file}: `{line}`"
                );
            }
        }
    }
    assert!(!pinned("nginx") && !pinned("nginx:latest") && !pinned("registry:5000/nginx"));
    assert!(pinned("registry:5000/nginx:1.27") && pinned("nginx@sha256:abc"));
}

// ---------------------------------------------------------------------------------------
// values.yaml and values.schema.json.
// ---------------------------------------------------------------------------------------

fn schema() -> Json {
    serde_json::from_str(&read("values.schema.json")).expect("values.schema.json parses")
}

/// A small draft-07 validator for the keywords the schema uses (`pattern` is left to Helm).
fn validate(schema: &Json, value: &Json, at: &str, errors: &mut Vec<String>) {
    if let Some(ty) = schema["type"].as_str() {
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            other => panic!("{at}: unknown type {other}"),
        };
        if !ok {
            errors.push(format!("{at}: not a {ty}"));
            return;
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        errors.push(format!("{at}: not one of {options:?}"));
    }
    if let Some(not) = schema.get("not") {
        let mut inner = Vec::new();
        validate(not, value, at, &mut inner);
        if inner.is_empty() {
            errors.push(format!("{at}: must not match {not}"));
        }
    }
    if let Some(c) = schema.get("const")
        && c != value
    {
        errors.push(format!("{at}: must be {c}"));
    }
    if let (Some(min), Some(v)) = (schema["minimum"].as_f64(), value.as_f64())
        && v < min
    {
        errors.push(format!("{at}: below {min}"));
    }
    if let (Some(max), Some(v)) = (schema["maximum"].as_f64(), value.as_f64())
        && v > max
    {
        errors.push(format!("{at}: above {max}"));
    }
    if let (Some(min), Some(s)) = (schema["minLength"].as_u64(), value.as_str())
        && (s.chars().count() as u64) < min
    {
        errors.push(format!("{at}: shorter than {min}"));
    }
    if let Some(items) = value.as_array() {
        if let Some(min) = schema["minItems"].as_u64()
            && (items.len() as u64) < min
        {
            errors.push(format!("{at}: fewer than {min} items"));
        }
        if schema["uniqueItems"] == Json::Bool(true) {
            let unique: BTreeSet<String> = items.iter().map(Json::to_string).collect();
            if unique.len() != items.len() {
                errors.push(format!("{at}: repeated items"));
            }
        }
        for (i, item) in items.iter().enumerate() {
            validate(&schema["items"], item, &format!("{at}[{i}]"), errors);
        }
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let required = required.as_str().expect("required names are strings");
            if !object.contains_key(required) {
                errors.push(format!("{at}.{required}: required"));
            }
        }
        for (k, v) in object {
            match schema["properties"].get(k) {
                Some(property) => validate(property, v, &format!("{at}.{k}"), errors),
                None if schema["additionalProperties"] == Json::Bool(false) => {
                    errors.push(format!("{at}.{k}: not in the schema"));
                }
                None => {}
            }
        }
    }
}

fn errors_of(values: &Json) -> Vec<String> {
    let mut errors = Vec::new();
    validate(&schema(), values, "values", &mut errors);
    errors
}

/// Every object closed (`additionalProperties: false`) and every property typed and described.
fn check_schema_coverage(schema: &Json, at: &str) {
    assert!(schema["type"].is_string(), "{at}: no type");
    if schema["type"] == "object" {
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

#[test]
fn values_validate_against_the_schema() {
    let schema = schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    check_schema_coverage(&schema, "values");
    assert_eq!(errors_of(&default_values()), Vec::<String>::new());
    assert_eq!(errors_of(&all_on_values()), Vec::<String>::new());

    let mut latest = default_values();
    latest["image"]["tag"] = Json::from("latest");
    let mut unknown = default_values();
    unknown["gitea"]["urll"] = Json::from("https://x");
    let mut wrong_type = default_values();
    wrong_type["replicas"] = Json::from("two");
    let mut too_long_hold = default_values();
    too_long_hold["egressBlock"]["holdSeconds"] = Json::from(3600);
    for (what, bad) in [
        ("latest", latest),
        ("unknown key", unknown),
        ("wrong type", wrong_type),
        ("hold", too_long_hold),
    ] {
        assert!(!errors_of(&bad).is_empty(), "{what} passed the schema");
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
    let scripts = scripts(&Renderer::new(all_on_values()).render());
    assert_eq!(
        scripts.len(),
        9,
        "seven step scripts, the agent and the trigger: {:?}",
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
        assert!(script.contains("\nset -eu\n"), "{origin}: no `set -eu`");
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
