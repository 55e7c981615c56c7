//! [`JobRenderer`]: the handlebars template, loaded once, applied to each step and attempt.

use super::{RenderConfig, job_name};
use crate::contract::{
    COMPONENT_JOB, LABEL_COMPONENT, LABEL_JOB_ATTEMPT, LABEL_JOB_STEP, LABEL_PART_OF, PART_OF,
};
use crate::step::{Step, normalize_restart_policy};
use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason,
};
use k8s_openapi::api::batch::v1::Job;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The template's file name, in [`RenderConfig::template_dir`] or the built-in `templates/`.
pub const TEMPLATE_FILE: &str = "job.yaml.hbs";

/// The template shipped with the binary.
const BUILT_IN: &str = include_str!("../../templates/job.yaml.hbs");

/// Why a Job could not be rendered; each names the template it comes from.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The operator's template could not be read.
    #[error("cannot read template {path}: {source}")]
    Read {
        /// The template file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The template is not valid handlebars.
    #[error("template {template} does not parse: {source}")]
    Parse {
        /// The template file.
        template: String,
        /// Handlebars' error, with line and column.
        #[source]
        source: Box<handlebars::TemplateError>,
    },
    /// Rendering failed, e.g. a variable the template names does not exist (strict mode).
    #[error("template {template} does not render: {source}")]
    Render {
        /// The template file.
        template: String,
        /// Handlebars' error, with line and column.
        #[source]
        source: Box<handlebars::RenderError>,
    },
    /// The rendered text is not YAML of a batch/v1 Job.
    #[error("template {template} renders an invalid Job: {message}")]
    InvalidJob {
        /// The template file.
        template: String,
        /// What is wrong, with line and column in the rendered text.
        message: String,
    },
    /// The rendered Job lacks a name, namespace or label the engine relies on.
    #[error("template {template} must render {field} as {expected:?}, got {got:?}")]
    Contract {
        /// The template file.
        template: String,
        /// The field, e.g. `metadata.labels["cutover.openova.io/step"]`.
        field: String,
        /// The value the engine needs.
        expected: String,
        /// The value rendered, if any.
        got: Option<String>,
    },
    /// The step's data could not be turned into template data.
    #[error("cannot pass the step to template {template}: {source}")]
    Data {
        /// The template file.
        template: String,
        /// The serialization error.
        #[source]
        source: serde_json::Error,
    },
}

/// Renders steps into Jobs with one loaded template.
#[derive(Debug)]
pub struct JobRenderer {
    cfg: RenderConfig,
    registry: Handlebars<'static>,
    /// The template's path, or `built-in templates/job.yaml.hbs`, for error messages.
    template: String,
}

impl JobRenderer {
    /// Loads and compiles the template (strict mode, no HTML escaping) from
    /// `cfg.template_dir`, or the built-in one.
    pub fn new(cfg: RenderConfig) -> Result<Self, RenderError> {
        let (template, source) = match &cfg.template_dir {
            Some(dir) => {
                let path = dir.join(TEMPLATE_FILE);
                let text = std::fs::read_to_string(&path).map_err(|source| RenderError::Read {
                    path: path.clone(),
                    source,
                })?;
                (path.display().to_string(), text)
            }
            None => (
                format!("built-in templates/{TEMPLATE_FILE}"),
                BUILT_IN.to_owned(),
            ),
        };
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        registry.register_helper("json", Box::new(json_helper));
        registry
            .register_template_string(&template, source)
            .map_err(|source| RenderError::Parse {
                template: template.clone(),
                source: Box::new(source),
            })?;
        Ok(JobRenderer {
            cfg,
            registry,
            template,
        })
    }

    /// The settings this renderer applies.
    pub fn config(&self) -> &RenderConfig {
        &self.cfg
    }

    /// The Job of `step`'s `attempt` in `namespace`. Fails for a daemonset-wait step, which
    /// runs no Job.
    pub fn render(&self, step: &Step, attempt: u32, namespace: &str) -> Result<Job, RenderError> {
        let Some(pod_spec) = step.pod_spec() else {
            return Err(RenderError::InvalidJob {
                template: self.template.clone(),
                message: format!("step {} is daemonset-wait and runs no Job", step.name),
            });
        };
        let mut pod_spec = pod_spec.clone();
        normalize_restart_policy(&mut pod_spec);
        let name = job_name(&step.name, attempt);
        let labels = job_labels(step, attempt);
        let deadline = i64::try_from(self.cfg.deadline_for(step).as_secs()).unwrap_or(i64::MAX);
        let pod_spec = serde_json::to_value(&pod_spec).map_err(|source| RenderError::Data {
            template: self.template.clone(),
            source,
        })?;
        let data = serde_json::json!({
            "name": name,
            "namespace": namespace,
            "step": step.name.as_str(),
            "attempt": attempt,
            "order": step.order,
            "configmap": step.configmap,
            "labels": labels,
            "backoffLimit": self.cfg.backoff_limit,
            "ttlSecondsAfterFinished": self.cfg.ttl_seconds_after_finished,
            "activeDeadlineSeconds": deadline,
            "podSpec": pod_spec,
        });
        let text = self
            .registry
            .render(&self.template, &data)
            .map_err(|source| RenderError::Render {
                template: self.template.clone(),
                source: Box::new(source),
            })?;
        let job: Job = serde_yaml::from_str(&text).map_err(|err| RenderError::InvalidJob {
            template: self.template.clone(),
            message: err.to_string(),
        })?;
        self.check(&job, &name, namespace, &labels)?;
        Ok(job)
    }

    /// The engine finds and adopts Jobs by name and labels, so an operator's template must
    /// keep them.
    fn check(
        &self,
        job: &Job,
        name: &str,
        namespace: &str,
        labels: &BTreeMap<&str, String>,
    ) -> Result<(), RenderError> {
        let violation =
            |field: String, expected: &str, got: Option<&String>| RenderError::Contract {
                template: self.template.clone(),
                field,
                expected: expected.to_owned(),
                got: got.cloned(),
            };
        if job.metadata.name.as_deref() != Some(name) {
            return Err(violation(
                "metadata.name".into(),
                name,
                job.metadata.name.as_ref(),
            ));
        }
        if job.metadata.namespace.as_deref() != Some(namespace) {
            let got = job.metadata.namespace.as_ref();
            return Err(violation("metadata.namespace".into(), namespace, got));
        }
        let pod_labels = job
            .spec
            .as_ref()
            .and_then(|spec| spec.template.metadata.as_ref())
            .and_then(|meta| meta.labels.as_ref());
        for (where_, rendered) in [
            ("metadata.labels", job.metadata.labels.as_ref()),
            ("spec.template.metadata.labels", pod_labels),
        ] {
            for (key, value) in labels {
                let got = rendered.and_then(|l| l.get(*key));
                if got != Some(value) {
                    return Err(violation(format!("{where_}[\"{key}\"]"), value, got));
                }
            }
        }
        Ok(())
    }
}

/// The contract's labels of a step's Job and its pods.
fn job_labels(step: &Step, attempt: u32) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        (LABEL_PART_OF, PART_OF.to_owned()),
        (LABEL_COMPONENT, COMPONENT_JOB.to_owned()),
        (LABEL_JOB_STEP, step.name.as_str().to_owned()),
        (LABEL_JOB_ATTEMPT, attempt.to_string()),
    ])
}

/// `{{json value}}`: the value as compact JSON, which is valid YAML, so data (and any `{{ }}`
/// inside it) is emitted verbatim and never interpreted. In strict mode a missing variable is
/// an error naming it.
fn json_helper(
    h: &Helper<'_>,
    registry: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let param = h
        .param(0)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("json", 0))?;
    if registry.strict_mode() && param.is_value_missing() {
        return Err(RenderErrorReason::MissingVariable(param.relative_path().cloned()).into());
    }
    out.write(&param.value().to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::{StepKind, parse_plan};
    use k8s_openapi::api::core::v1::ConfigMap;

    const SCRIPT: &str = "echo {{ .metadata.name }} {{{x}}} '{{json name}}' \"quoted\"\n\ttab: yes";

    fn step(pod_spec_extra: &str) -> Step {
        let mut pod_spec = format!(
            "{pod_spec_extra}containers:\n- name: main\n  image: alpine:3.20\n  command: [sh, -c]\n  args: [{}]\n",
            serde_json::to_string(SCRIPT).unwrap()
        );
        pod_spec.push_str("  env:\n  - {name: ON, value: \"on\"}\n");
        let mut data = BTreeMap::new();
        data.insert("stepName".to_owned(), "gitea-mirror".to_owned());
        data.insert("podSpec".to_owned(), pod_spec);
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("cutover-step-01-gitea-mirror".into()),
                labels: Some(BTreeMap::from([(
                    "bp.openova.io/cutover-order".to_owned(),
                    "1".to_owned(),
                )])),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        parse_plan(&[cm]).unwrap().steps()[0].clone()
    }

    fn temp_template(text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cutover-tpl-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(TEMPLATE_FILE), text).unwrap();
        dir
    }

    /// A renderer of `text`; the template is read at construction, so its file can go.
    fn renderer_with(text: &str) -> Result<JobRenderer, RenderError> {
        let dir = temp_template(text);
        let renderer = JobRenderer::new(RenderConfig {
            template_dir: Some(dir.clone()),
            ..Default::default()
        });
        std::fs::remove_dir_all(dir).unwrap();
        renderer
    }

    #[test]
    fn renders_the_contract_job_with_the_pod_spec_untouched() {
        let renderer = JobRenderer::new(RenderConfig::default()).unwrap();
        let job = renderer.render(&step(""), 7, "catalyst").unwrap();
        assert_eq!(
            job.metadata.name.as_deref(),
            Some("cutover-gitea-mirror-a7")
        );
        assert_eq!(job.metadata.namespace.as_deref(), Some("catalyst"));
        let expected = BTreeMap::from([
            (
                "app.kubernetes.io/part-of".to_owned(),
                "self-sovereign-cutover".to_owned(),
            ),
            (
                "app.kubernetes.io/component".to_owned(),
                "cutover-job".to_owned(),
            ),
            (
                "cutover.openova.io/step".to_owned(),
                "gitea-mirror".to_owned(),
            ),
            ("cutover.openova.io/attempt".to_owned(), "7".to_owned()),
        ]);
        assert_eq!(job.metadata.labels.as_ref(), Some(&expected));
        let spec = job.spec.unwrap();
        assert_eq!(
            spec.template.metadata.unwrap().labels.as_ref(),
            Some(&expected)
        );
        assert_eq!(spec.backoff_limit, Some(3));
        assert_eq!(spec.ttl_seconds_after_finished, Some(86_400));
        assert_eq!(spec.active_deadline_seconds, Some(900));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let container = &pod.containers[0];
        assert_eq!(container.args.as_deref(), Some(&[SCRIPT.to_owned()][..]));
        assert_eq!(
            container.env.as_ref().unwrap()[0].value.as_deref(),
            Some("on")
        );
    }

    #[test]
    fn config_and_longer_pod_deadline_apply() {
        let renderer = JobRenderer::new(RenderConfig {
            backoff_limit: 0,
            ttl_seconds_after_finished: 60,
            step_deadline: std::time::Duration::from_secs(120),
            template_dir: None,
        })
        .unwrap();
        let spec = renderer.render(&step(""), 1, "ns").unwrap().spec.unwrap();
        assert_eq!(
            (spec.backoff_limit, spec.ttl_seconds_after_finished),
            (Some(0), Some(60))
        );
        assert_eq!(spec.active_deadline_seconds, Some(120));
        let longer = step("activeDeadlineSeconds: 7200\nrestartPolicy: OnFailure\n");
        let spec = renderer.render(&longer, 1, "ns").unwrap().spec.unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(7200));
        assert_eq!(
            spec.template.spec.unwrap().restart_policy.as_deref(),
            Some("OnFailure")
        );
    }

    #[test]
    fn template_dir_overrides_the_built_in() {
        let custom = BUILT_IN.replace("backoffLimit: {{json backoffLimit}}", "backoffLimit: 9");
        let job = renderer_with(&custom)
            .unwrap()
            .render(&step(""), 1, "ns")
            .unwrap();
        assert_eq!(job.spec.unwrap().backoff_limit, Some(9));
    }

    #[test]
    fn missing_template_file_names_the_path() {
        let dir = std::env::temp_dir().join(format!("cutover-none-{}", uuid::Uuid::new_v4()));
        let err = JobRenderer::new(RenderConfig {
            template_dir: Some(dir),
            ..RenderConfig::default()
        })
        .unwrap_err();
        assert!(matches!(err, RenderError::Read { .. }), "{err}");
        assert!(err.to_string().contains(TEMPLATE_FILE), "{err}");
    }

    #[test]
    fn missing_variable_is_an_error_naming_template_and_variable() {
        let bad = BUILT_IN.replace("{{json ttlSecondsAfterFinished}}", "{{json ttlSeconds}}");
        let err = renderer_with(&bad)
            .unwrap()
            .render(&step(""), 1, "ns")
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, RenderError::Render { .. }), "{text}");
        assert!(
            text.contains(TEMPLATE_FILE) && text.contains("ttlSeconds"),
            "{text}"
        );

        let bare = BUILT_IN.replace("{{json backoffLimit}}", "{{backoff}}");
        let err = renderer_with(&bare)
            .unwrap()
            .render(&step(""), 1, "ns")
            .unwrap_err();
        assert!(err.to_string().contains("backoff"), "{err}");
    }

    #[test]
    fn unparsable_template_names_the_file() {
        let err = renderer_with("{{#if name}}unclosed").unwrap_err();
        assert!(matches!(err, RenderError::Parse { .. }), "{err}");
        assert!(err.to_string().contains(TEMPLATE_FILE), "{err}");
    }

    #[test]
    fn invalid_yaml_or_not_a_job_is_an_error_naming_the_template() {
        let bad_yaml = BUILT_IN.replace("kind: Job", "kind: [Job");
        let err = renderer_with(&bad_yaml)
            .unwrap()
            .render(&step(""), 1, "ns")
            .unwrap_err();
        assert!(matches!(err, RenderError::InvalidJob { .. }), "{err}");
        assert!(err.to_string().contains(TEMPLATE_FILE) && err.to_string().contains("line"));

        let not_job = BUILT_IN.replace("kind: Job", "kind: Pod");
        let err = renderer_with(&not_job)
            .unwrap()
            .render(&step(""), 1, "ns")
            .unwrap_err();
        assert!(matches!(err, RenderError::InvalidJob { .. }), "{err}");
    }

    #[test]
    fn a_template_that_drops_the_contract_labels_is_refused() {
        let no_pod_labels = BUILT_IN.replace(
            "    metadata:\n      labels: {{json labels}}\n",
            "    metadata:\n      labels: {}\n",
        );
        assert_ne!(no_pod_labels, BUILT_IN);
        let err = renderer_with(&no_pod_labels)
            .unwrap()
            .render(&step(""), 1, "ns")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("spec.template.metadata.labels[\"app.kubernetes.io/"),
            "{err}"
        );
        let renamed = BUILT_IN.replace("name: {{json name}}", "name: fixed");
        let err = renderer_with(&renamed)
            .unwrap()
            .render(&step(""), 1, "ns")
            .unwrap_err();
        assert!(matches!(err, RenderError::Contract { ref field, .. } if field == "metadata.name"));
    }

    #[test]
    fn daemonset_wait_steps_run_no_job() {
        let wait = Step {
            kind: StepKind::DaemonSetWait {
                daemonset: "ds".into(),
            },
            ..step("")
        };
        let err = JobRenderer::new(RenderConfig::default())
            .unwrap()
            .render(&wait, 1, "ns");
        assert!(err.unwrap_err().to_string().contains("daemonset-wait"));
    }
}
