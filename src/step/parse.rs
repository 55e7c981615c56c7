//! Validation of step ConfigMaps into a [`StepPlan`], reporting every problem at once.

use super::unknown::unknown_fields;
use super::{Step, StepKind, StepMode, StepName, StepPlan};
use crate::contract::{
    DATA_POD_SPEC, DATA_STEP_NAME, LABEL_STEP_DAEMONSET, LABEL_STEP_MODE, LABEL_STEP_ORDER,
    STEP_CONFIGMAP_PREFIX,
};
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec};
use std::collections::BTreeMap;
use std::fmt;

/// One thing wrong with the steps.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepProblem {
    /// The ConfigMap at fault; `None` for a problem of the plan as a whole or of a ConfigMap
    /// without a name.
    pub configmap: Option<String>,
    /// The field at fault, e.g. `data.podSpec` or `metadata.labels["bp.openova.io/cutover-order"]`;
    /// `None` for a problem of the plan as a whole.
    pub field: Option<String>,
    /// What is wrong, for a person.
    pub message: String,
}

impl StepProblem {
    fn at(configmap: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        StepProblem {
            configmap: Some(configmap.to_owned()),
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for StepProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.configmap, &self.field) {
            (Some(cm), Some(field)) => write!(f, "ConfigMap {cm}, {field}: {}", self.message),
            (Some(cm), None) => write!(f, "ConfigMap {cm}: {}", self.message),
            (None, Some(field)) => write!(f, "{field}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// The plan-wide problem of a namespace without step ConfigMaps.
const NO_STEPS: &str = "no step ConfigMaps found: a cutover needs at least one step";

/// Every problem found in a set of step ConfigMaps; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct StepReport {
    /// The problems, plan-wide ones first, then by ConfigMap name.
    pub problems: Vec<StepProblem>,
}

impl StepReport {
    /// Whether the report says there are no steps at all (as opposed to invalid ones).
    pub fn found_no_steps(&self) -> bool {
        self.problems
            .iter()
            .any(|p| p.configmap.is_none() && p.field.is_none() && p.message == NO_STEPS)
    }
}

impl fmt::Display for StepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid cutover steps ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// Validates step ConfigMaps (already selected by the step labels) into a plan, or reports
/// every problem at once.
pub fn parse_plan(configmaps: &[ConfigMap]) -> Result<StepPlan, StepReport> {
    let (steps, problems) = parse_steps(configmaps);
    into_plan(steps, problems)
}

/// The plan when there are no problems, else the report.
pub(super) fn into_plan(
    steps: Vec<Step>,
    mut problems: Vec<StepProblem>,
) -> Result<StepPlan, StepReport> {
    if problems.is_empty() {
        return Ok(StepPlan::new(steps));
    }
    // Stable sort keeps each ConfigMap's problems in field order; `None` sorts first.
    problems.sort_by(|a, b| a.configmap.cmp(&b.configmap));
    Err(StepReport { problems })
}

/// Every step that is valid on its own, and every problem, including plan-wide ones.
pub(super) fn parse_steps(configmaps: &[ConfigMap]) -> (Vec<Step>, Vec<StepProblem>) {
    let mut problems = Vec::new();
    if configmaps.is_empty() {
        problems.push(StepProblem {
            configmap: None,
            field: None,
            message: NO_STEPS.to_owned(),
        });
    }
    let mut steps = Vec::new();
    let mut orders: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let mut names: BTreeMap<StepName, Vec<String>> = BTreeMap::new();
    for (index, cm) in configmaps.iter().enumerate() {
        let Some(cm_name) = cm.metadata.name.as_deref().filter(|n| !n.is_empty()) else {
            problems.push(StepProblem {
                configmap: None,
                field: Some("metadata.name".to_owned()),
                message: format!("step ConfigMap #{} has no name", index + 1),
            });
            continue;
        };
        let parsed = parse_one(cm_name, cm, &mut problems);
        if let Some(order) = parsed.order {
            orders.entry(order).or_default().push(cm_name.to_owned());
        }
        if let Some(name) = &parsed.name {
            names
                .entry(name.clone())
                .or_default()
                .push(cm_name.to_owned());
        }
        if let (Some(order), Some(name), Some(kind)) = (parsed.order, parsed.name, parsed.kind) {
            steps.push(Step {
                order,
                name,
                configmap: cm_name.to_owned(),
                kind,
            });
        }
    }
    let order_field = label_field(LABEL_STEP_ORDER);
    for (order, cms) in orders.iter().filter(|(_, cms)| cms.len() > 1) {
        for cm in cms {
            let others = others(cms, cm);
            problems.push(StepProblem::at(
                cm,
                &order_field,
                format!("duplicate order {order}: also used by {others}"),
            ));
        }
    }
    let name_field = format!("data.{DATA_STEP_NAME}");
    for (name, cms) in names.iter().filter(|(_, cms)| cms.len() > 1) {
        for cm in cms {
            let others = others(cms, cm);
            problems.push(StepProblem::at(
                cm,
                &name_field,
                format!("duplicate stepName \"{name}\": also used by {others}"),
            ));
        }
    }
    (steps, problems)
}

/// The parts of one ConfigMap that are valid on their own.
struct Parsed {
    order: Option<i64>,
    name: Option<StepName>,
    kind: Option<StepKind>,
}

fn parse_one(cm_name: &str, cm: &ConfigMap, problems: &mut Vec<StepProblem>) -> Parsed {
    let label = |key: &str| cm.metadata.labels.as_ref().and_then(|l| l.get(key));
    let datum = |key: &str| cm.data.as_ref().and_then(|d| d.get(key));

    let order = match label(LABEL_STEP_ORDER) {
        None => {
            problems.push(StepProblem::at(
                cm_name,
                label_field(LABEL_STEP_ORDER),
                "missing: every step needs an integer order",
            ));
            None
        }
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(order) => Some(order),
            Err(_) => {
                problems.push(StepProblem::at(
                    cm_name,
                    label_field(LABEL_STEP_ORDER),
                    format!("{raw:?} is not an integer"),
                ));
                None
            }
        },
    };

    let mode = match label(LABEL_STEP_MODE) {
        None => Some(StepMode::Job),
        Some(raw) => match raw.parse::<StepMode>() {
            Ok(mode) => Some(mode),
            Err(err) => {
                problems.push(StepProblem::at(
                    cm_name,
                    label_field(LABEL_STEP_MODE),
                    err.to_string(),
                ));
                None
            }
        },
    };

    let name_field = format!("data.{DATA_STEP_NAME}");
    let name = match datum(DATA_STEP_NAME) {
        None => {
            problems.push(StepProblem::at(cm_name, &name_field, "missing"));
            None
        }
        Some(raw) => match StepName::new(raw) {
            Ok(name) => Some(name),
            Err(err) => {
                problems.push(StepProblem::at(
                    cm_name,
                    &name_field,
                    format!("cannot name a Job, a label value and a status key: {err}"),
                ));
                None
            }
        },
    };

    let pod_field = format!("data.{DATA_POD_SPEC}");
    let pod_spec = datum(DATA_POD_SPEC).and_then(|raw| parse_pod_spec(cm_name, raw, problems));
    let kind = match mode {
        Some(mode @ (StepMode::Job | StepMode::Preflight)) => {
            match (datum(DATA_POD_SPEC), pod_spec) {
                (None, _) => {
                    problems.push(StepProblem::at(
                        cm_name,
                        &pod_field,
                        format!("missing: a {mode} step needs a PodSpec"),
                    ));
                    None
                }
                (Some(_), Some(pod_spec)) if mode == StepMode::Preflight => {
                    Some(StepKind::Preflight {
                        pod_spec: Box::new(pod_spec),
                    })
                }
                (Some(_), Some(pod_spec)) => Some(StepKind::Job {
                    pod_spec: Box::new(pod_spec),
                }),
                (Some(_), None) => None,
            }
        }
        Some(StepMode::DaemonSetWait) => {
            if datum(DATA_POD_SPEC).is_some() {
                problems.push(StepProblem::at(
                    cm_name,
                    &pod_field,
                    "present, but a daemonset-wait step runs no Job: remove it",
                ));
            }
            daemonset_name(
                cm_name,
                label(LABEL_STEP_DAEMONSET).map(String::as_str),
                problems,
            )
            .map(|daemonset| StepKind::DaemonSetWait { daemonset })
        }
        None => None,
    };
    Parsed { order, name, kind }
}

/// Parses, checks and normalizes a step PodSpec; problems are recorded, not returned.
fn parse_pod_spec(cm_name: &str, raw: &str, problems: &mut Vec<StepProblem>) -> Option<PodSpec> {
    let field = format!("data.{DATA_POD_SPEC}");
    let mut spec: PodSpec = match serde_yaml::from_str(raw) {
        Ok(spec) => spec,
        Err(err) => {
            // serde_yaml's message carries the line and column, counted within the value.
            let within = if err.location().is_some() {
                " (lines of the podSpec value)"
            } else {
                ""
            };
            problems.push(StepProblem::at(
                cm_name,
                field,
                format!("not a valid PodSpec: {err}{within}"),
            ));
            return None;
        }
    };
    let before = problems.len();
    // The value parsed as a PodSpec above, so it parses as plain YAML too.
    let written = serde_yaml::from_str::<serde_yaml::Value>(raw).unwrap_or_default();
    let typed = serde_json::to_value(&spec).unwrap_or_default();
    for path in unknown_fields(&written, &typed) {
        problems.push(StepProblem::at(
            cm_name,
            format!("{field}.{path}"),
            "unknown field: a PodSpec has no such field, so it would be dropped (misspelt?)",
        ));
    }
    if spec.containers.is_empty() {
        problems.push(StepProblem::at(
            cm_name,
            format!("{field}.containers"),
            "empty: a step needs at least one container",
        ));
    }
    for (i, container) in spec.containers.iter().enumerate() {
        if container
            .image
            .as_deref()
            .is_none_or(|image| image.trim().is_empty())
        {
            problems.push(StepProblem::at(
                cm_name,
                format!("{field}.containers[{i}].image"),
                format!("missing for container {:?}", container.name),
            ));
        }
    }
    match spec.restart_policy.as_deref() {
        None | Some("" | "Never" | "OnFailure") => {}
        Some(other) => problems.push(StepProblem::at(
            cm_name,
            format!("{field}.restartPolicy"),
            format!("{other:?} is not allowed for a Job: use Never (the default) or OnFailure"),
        )),
    }
    normalize_restart_policy(&mut spec);
    (problems.len() == before).then_some(spec)
}

/// An empty or absent `restartPolicy` becomes `Never`, as the contract says.
pub(crate) fn normalize_restart_policy(spec: &mut PodSpec) {
    if spec.restart_policy.as_deref().is_none_or(str::is_empty) {
        spec.restart_policy = Some("Never".to_owned());
    }
}

/// The DaemonSet of a daemonset-wait step: its label, else the ConfigMap name minus
/// `cutover-step-NN-`.
fn daemonset_name(
    cm_name: &str,
    label: Option<&str>,
    problems: &mut Vec<StepProblem>,
) -> Option<String> {
    let field = label_field(LABEL_STEP_DAEMONSET);
    if let Some(label) = label {
        if label.trim().is_empty() {
            problems.push(StepProblem::at(
                cm_name,
                field,
                "empty: name the DaemonSet to wait for",
            ));
            return None;
        }
        return Some(label.trim().to_owned());
    }
    let derived = cm_name
        .strip_prefix(STEP_CONFIGMAP_PREFIX)
        .and_then(|rest| {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            (digits > 0).then(|| &rest[digits..])
        })
        .and_then(|rest| rest.strip_prefix('-'))
        .filter(|slug| !slug.is_empty());
    if derived.is_none() {
        problems.push(StepProblem::at(
            cm_name,
            field,
            format!(
                "missing, and the ConfigMap name does not follow {STEP_CONFIGMAP_PREFIX}NN-<daemonset>: \
                 set the label to the DaemonSet to wait for"
            ),
        ));
    }
    derived.map(str::to_owned)
}

/// `metadata.labels["<key>"]`, the field name of a label in reports.
pub(super) fn label_field(key: &str) -> String {
    format!("metadata.labels[\"{key}\"]")
}

/// The other ConfigMaps of a duplicate group, for a message; a ConfigMap given twice (the
/// same manifest in two files) is its own duplicate.
fn others(cms: &[String], me: &str) -> String {
    let others: Vec<_> = cms.iter().filter(|c| c.as_str() != me).cloned().collect();
    if others.is_empty() {
        format!("another ConfigMap named {me} (given twice)")
    } else {
        others.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step ConfigMap from YAML, as a chart file would hold it.
    fn cm(yaml: &str) -> ConfigMap {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn job_cm(name: &str, order: &str, step: &str) -> ConfigMap {
        cm(&format!(
            r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  labels:
    bp.openova.io/cutover-order: "{order}"
data:
  stepName: "{step}"
  podSpec: |
    containers:
    - name: main
      image: alpine:3.20
      command: ["sh", "-c", "echo {{{{ .metadata.name }}}}"]
"#
        ))
    }

    fn preflight_cm(name: &str, order: &str, step: &str) -> ConfigMap {
        let mut cm = job_cm(name, order, step);
        cm.metadata
            .labels
            .get_or_insert_default()
            .insert(LABEL_STEP_MODE.into(), "preflight".into());
        cm
    }

    #[test]
    fn preflight_steps_need_a_pod_spec_and_lead_the_plan() {
        let plan = parse_plan(&[
            job_cm("cutover-step-01-change", "1", "change"),
            preflight_cm("cutover-step-00-preflight", "0", "check"),
        ])
        .unwrap();
        let modes: Vec<_> = plan.iter().map(|s| (s.name.as_str(), s.mode())).collect();
        assert_eq!(
            modes,
            [("check", StepMode::Preflight), ("change", StepMode::Job)]
        );
        let mut bare = preflight_cm("cutover-step-00-preflight", "0", "check");
        bare.data.as_mut().unwrap().remove(DATA_POD_SPEC);
        let report = parse_plan(&[bare]).unwrap_err();
        assert_eq!(
            report.problems[0].message,
            "missing: a preflight step needs a PodSpec"
        );
    }

    #[test]
    fn a_preflight_shares_the_orders_of_the_plan() {
        let report = parse_plan(&[
            job_cm("cutover-step-01-change", "1", "change"),
            preflight_cm("cutover-step-01-check", "1", "check"),
        ])
        .unwrap_err();
        assert_eq!(report.problems.len(), 2, "{report}");
        assert!(report.problems[0].message.starts_with("duplicate order 1"));
    }

    fn wait_cm(name: &str, order: &str, step: &str, daemonset_label: Option<&str>) -> ConfigMap {
        let label = daemonset_label
            .map(|d| format!("\n    bp.openova.io/cutover-daemonset: \"{d}\""))
            .unwrap_or_default();
        cm(&format!(
            r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  labels:
    bp.openova.io/cutover-order: "{order}"
    bp.openova.io/cutover-mode: daemonset-wait{label}
data:
  stepName: {step}
"#
        ))
    }

    fn problems(cms: &[ConfigMap]) -> Vec<StepProblem> {
        parse_plan(cms).unwrap_err().problems
    }

    fn has(problems: &[StepProblem], cm: &str, field: &str, needle: &str) -> bool {
        problems.iter().any(|p| {
            p.configmap.as_deref() == Some(cm)
                && p.field.as_deref() == Some(field)
                && p.message.contains(needle)
        })
    }

    #[test]
    fn happy_path_orders_steps_and_defaults_restart_policy() {
        let plan = parse_plan(&[
            job_cm("cutover-step-03-c", "3", "c"),
            wait_cm(
                "cutover-step-02-registry-pivot",
                "2",
                " registry-pivot ",
                None,
            ),
            job_cm("cutover-step-01-a", "1", "a"),
            wait_cm("cutover-step-04-x", "4", "d", Some("my-ds")),
        ])
        .unwrap();
        let names: Vec<_> = plan.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "registry-pivot", "c", "d"]);
        assert_eq!(plan.steps()[0].configmap, "cutover-step-01-a");
        assert_eq!(plan.steps()[0].mode(), StepMode::Job);
        let StepKind::Job { pod_spec } = &plan.steps()[0].kind else {
            panic!("job step")
        };
        assert_eq!(pod_spec.restart_policy.as_deref(), Some("Never"));
        let script = pod_spec.containers[0].command.as_ref().unwrap()[2].as_str();
        assert_eq!(script, "echo {{ .metadata.name }}");
        assert_eq!(
            plan.steps()[1].kind,
            StepKind::DaemonSetWait {
                daemonset: "registry-pivot".into()
            }
        );
        assert_eq!(
            plan.steps()[3].kind,
            StepKind::DaemonSetWait {
                daemonset: "my-ds".into()
            }
        );
    }

    #[test]
    fn no_steps_at_all() {
        let report = parse_plan(&[]).unwrap_err();
        assert_eq!(report.problems.len(), 1);
        assert_eq!(report.problems[0].configmap, None);
        assert!(report.to_string().contains("no step ConfigMaps"));
    }

    #[test]
    fn order_missing_or_not_an_integer() {
        let mut missing = job_cm("cm-a", "1", "a");
        missing
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(LABEL_STEP_ORDER);
        let field = label_field(LABEL_STEP_ORDER);
        let p = problems(&[missing, job_cm("cm-b", "two", "b")]);
        assert!(has(&p, "cm-a", &field, "missing"), "{p:#?}");
        assert!(
            has(&p, "cm-b", &field, "\"two\" is not an integer"),
            "{p:#?}"
        );
    }

    #[test]
    fn duplicate_order_names_both_configmaps() {
        let field = label_field(LABEL_STEP_ORDER);
        let p = problems(&[job_cm("cm-a", "1", "a"), job_cm("cm-b", "1", "b")]);
        assert!(has(&p, "cm-a", &field, "also used by cm-b"), "{p:#?}");
        assert!(has(&p, "cm-b", &field, "also used by cm-a"), "{p:#?}");
    }

    #[test]
    fn the_same_configmap_twice() {
        let p = problems(&[job_cm("cm-a", "1", "a"), job_cm("cm-a", "1", "a")]);
        assert!(
            has(&p, "cm-a", "data.stepName", "another ConfigMap named cm-a"),
            "{p:#?}"
        );
    }

    #[test]
    fn unknown_mode() {
        let mut c = job_cm("cm-a", "1", "a");
        c.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(LABEL_STEP_MODE.into(), "cron".into());
        let p = problems(&[c]);
        assert!(
            has(
                &p,
                "cm-a",
                &label_field(LABEL_STEP_MODE),
                "unknown mode \"cron\""
            ),
            "{p:#?}"
        );
    }

    #[test]
    fn step_name_missing_duplicate_or_invalid() {
        let mut missing = job_cm("cm-a", "1", "a");
        missing.data.as_mut().unwrap().remove(DATA_STEP_NAME);
        let p = problems(&[
            missing,
            job_cm("cm-b", "2", "same"),
            job_cm("cm-c", "3", "same"),
            job_cm("cm-d", "4", "Not_A_Label"),
            job_cm("cm-e", "5", "  "),
            job_cm("cm-f", "6", &"x".repeat(64)),
        ]);
        let f = "data.stepName";
        assert!(has(&p, "cm-a", f, "missing"), "{p:#?}");
        assert!(
            has(
                &p,
                "cm-b",
                f,
                "duplicate stepName \"same\": also used by cm-c"
            ),
            "{p:#?}"
        );
        assert!(has(&p, "cm-c", f, "also used by cm-b"), "{p:#?}");
        assert!(has(&p, "cm-d", f, "not a DNS-1123 label"), "{p:#?}");
        assert!(has(&p, "cm-e", f, "empty"), "{p:#?}");
        assert!(has(&p, "cm-f", f, "at most 63"), "{p:#?}");
    }

    #[test]
    fn pod_spec_missing_for_job_or_present_for_daemonset_wait() {
        let mut no_spec = job_cm("cm-a", "1", "a");
        no_spec.data.as_mut().unwrap().remove(DATA_POD_SPEC);
        let mut wait_with_spec = wait_cm("cutover-step-02-ds", "2", "b", None);
        wait_with_spec
            .data
            .as_mut()
            .unwrap()
            .insert(DATA_POD_SPEC.into(), "containers: []".into());
        let p = problems(&[no_spec, wait_with_spec]);
        assert!(has(&p, "cm-a", "data.podSpec", "missing"), "{p:#?}");
        assert!(
            has(&p, "cutover-step-02-ds", "data.podSpec", "present"),
            "{p:#?}"
        );
    }

    #[test]
    fn unparsable_pod_spec_reports_line_and_column() {
        let mut c = job_cm("cm-a", "1", "a");
        let spec = "containers:\n- name: main\n  image: [unclosed\n";
        c.data
            .as_mut()
            .unwrap()
            .insert(DATA_POD_SPEC.into(), spec.into());
        let mut wrong_type = job_cm("cm-b", "2", "b");
        let spec = "containers:\n- name: main\n  image: x\n  command: 42\n";
        wrong_type
            .data
            .as_mut()
            .unwrap()
            .insert(DATA_POD_SPEC.into(), spec.into());
        let p = problems(&[c, wrong_type]);
        assert!(has(&p, "cm-a", "data.podSpec", "line 3 column"), "{p:#?}");
        assert!(has(&p, "cm-b", "data.podSpec", "line 4 column"), "{p:#?}");
    }

    #[test]
    fn unknown_pod_spec_fields_are_reported() {
        let mut c = job_cm("cm-a", "1", "a");
        let spec = "restartPolicyy: Always\ncontainers:\n- name: main\n  image: alpine\n";
        c.data
            .as_mut()
            .unwrap()
            .insert(DATA_POD_SPEC.into(), spec.into());
        let p = problems(&[c]);
        assert!(
            has(&p, "cm-a", "data.podSpec.restartPolicyy", "unknown field"),
            "{p:#?}"
        );
    }

    #[test]
    fn no_containers_or_no_image() {
        let mut empty = job_cm("cm-a", "1", "a");
        empty
            .data
            .as_mut()
            .unwrap()
            .insert(DATA_POD_SPEC.into(), "containers: []".into());
        let mut no_image = job_cm("cm-b", "2", "b");
        let spec = "containers:\n- name: main\n";
        no_image
            .data
            .as_mut()
            .unwrap()
            .insert(DATA_POD_SPEC.into(), spec.into());
        let p = problems(&[empty, no_image]);
        assert!(
            has(&p, "cm-a", "data.podSpec.containers", "at least one"),
            "{p:#?}"
        );
        assert!(
            has(&p, "cm-b", "data.podSpec.containers[0].image", "missing"),
            "{p:#?}"
        );
    }

    #[test]
    fn restart_policy_always_is_rejected_and_on_failure_kept() {
        let spec = |policy: &str| {
            format!("restartPolicy: {policy}\ncontainers:\n- name: main\n  image: alpine\n")
        };
        let mut always = job_cm("cm-a", "1", "a");
        always
            .data
            .as_mut()
            .unwrap()
            .insert(DATA_POD_SPEC.into(), spec("Always"));
        let p = problems(&[always]);
        assert!(has(
            &p,
            "cm-a",
            "data.podSpec.restartPolicy",
            "\"Always\" is not allowed"
        ));

        let mut on_failure = job_cm("cm-b", "1", "b");
        on_failure
            .data
            .as_mut()
            .unwrap()
            .insert(DATA_POD_SPEC.into(), spec("OnFailure"));
        let mut empty = job_cm("cm-c", "2", "c");
        empty
            .data
            .as_mut()
            .unwrap()
            .insert(DATA_POD_SPEC.into(), spec("\"\""));
        let plan = parse_plan(&[on_failure, empty]).unwrap();
        let policies: Vec<_> = plan
            .iter()
            .map(|s| s.pod_spec().unwrap().restart_policy.clone().unwrap())
            .collect();
        assert_eq!(policies, ["OnFailure", "Never"]);
    }

    #[test]
    fn daemonset_name_that_cannot_be_derived() {
        let p = problems(&[
            wait_cm("registry-pivot", "1", "a", None),
            wait_cm("cutover-step-02-", "2", "b", None),
            wait_cm("cutover-step-03-x", "3", "c", Some(" ")),
        ]);
        let f = label_field(LABEL_STEP_DAEMONSET);
        assert!(has(&p, "registry-pivot", &f, "does not follow"), "{p:#?}");
        assert!(has(&p, "cutover-step-02-", &f, "does not follow"), "{p:#?}");
        assert!(has(&p, "cutover-step-03-x", &f, "empty"), "{p:#?}");
    }

    #[test]
    fn unnamed_configmap() {
        let mut c = job_cm("x", "1", "a");
        c.metadata.name = None;
        let p = problems(&[c]);
        assert_eq!(p[0].field.as_deref(), Some("metadata.name"));
        assert!(p[0].message.contains("#1"));
    }

    #[test]
    fn every_problem_at_once_in_a_readable_report() {
        let mut no_order = job_cm("cm-b", "1", "b");
        no_order
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(LABEL_STEP_ORDER);
        no_order
            .data
            .as_mut()
            .unwrap()
            .insert(DATA_POD_SPEC.into(), "containers: []".into());
        let report = parse_plan(&[job_cm("cm-a", "x", "A"), no_order]).unwrap_err();
        assert_eq!(report.problems.len(), 4, "{report}");
        let text = report.to_string();
        assert!(text.starts_with("invalid cutover steps (4 problems):\n  - ConfigMap cm-a, "));
        assert!(
            text.contains("ConfigMap cm-b, data.podSpec.containers: empty"),
            "{text}"
        );
    }
}
