//! [`RenderConfig`]: the Job settings an operator may change.

use crate::step::Step;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of the rendered Jobs; the defaults are the contract's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderConfig {
    /// The Job's `backoffLimit`.
    pub backoff_limit: i32,
    /// The Job's `ttlSecondsAfterFinished`.
    pub ttl_seconds_after_finished: i32,
    /// A step's deadline unless its PodSpec sets a longer `activeDeadlineSeconds`.
    pub step_deadline: Duration,
    /// A directory holding the operator's `job.yaml.hbs`; `None` uses the built-in template.
    pub template_dir: Option<PathBuf>,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            backoff_limit: 3,
            ttl_seconds_after_finished: 86_400,
            step_deadline: Duration::from_secs(15 * 60),
            template_dir: None,
        }
    }
}

impl RenderConfig {
    /// The deadline of `step`: [`step_deadline`](Self::step_deadline), or the PodSpec's
    /// `activeDeadlineSeconds` when that is longer (whole seconds, at least one).
    pub fn deadline_for(&self, step: &Step) -> Duration {
        let configured = self.step_deadline.max(Duration::from_secs(1));
        let from_pod = step.pod_spec().and_then(|p| p.active_deadline_seconds);
        let from_pod = from_pod
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs);
        from_pod.map_or(configured, |pod| pod.max(configured))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::{StepKind, StepName};
    use k8s_openapi::api::core::v1::PodSpec;

    fn job_step(active_deadline_seconds: Option<i64>) -> Step {
        Step {
            order: 1,
            name: StepName::new("a").unwrap(),
            configmap: "cm".into(),
            kind: StepKind::Job {
                pod_spec: Box::new(PodSpec {
                    active_deadline_seconds,
                    ..PodSpec::default()
                }),
            },
        }
    }

    #[test]
    fn defaults_are_the_contracts() {
        let cfg = RenderConfig::default();
        assert_eq!(cfg.backoff_limit, 3);
        assert_eq!(cfg.ttl_seconds_after_finished, 86_400);
        assert_eq!(cfg.step_deadline, Duration::from_secs(900));
        assert_eq!(cfg.template_dir, None);
    }

    #[test]
    fn pod_deadline_only_ever_lengthens() {
        let cfg = RenderConfig::default();
        assert_eq!(cfg.deadline_for(&job_step(None)), Duration::from_secs(900));
        assert_eq!(
            cfg.deadline_for(&job_step(Some(60))),
            Duration::from_secs(900)
        );
        assert_eq!(
            cfg.deadline_for(&job_step(Some(3600))),
            Duration::from_secs(3600)
        );
        assert_eq!(
            cfg.deadline_for(&job_step(Some(-5))),
            Duration::from_secs(900)
        );
        let wait = Step {
            kind: StepKind::DaemonSetWait {
                daemonset: "ds".into(),
            },
            ..job_step(None)
        };
        assert_eq!(cfg.deadline_for(&wait), Duration::from_secs(900));
    }
}
