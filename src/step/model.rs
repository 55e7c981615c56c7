//! The typed steps: [`Step`], [`StepKind`], [`StepMode`] and the ordered [`StepPlan`].

use super::StepName;
use k8s_openapi::api::core::v1::PodSpec;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// How a step runs (label `bp.openova.io/cutover-mode`; absent means [`StepMode::Job`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StepMode {
    /// The step's PodSpec runs as a Job.
    #[default]
    Job,
    /// No Job: the engine flips `registriesYamlActive` and waits for a DaemonSet's nodes.
    DaemonSetWait,
    /// A read-only check run as a Job before every changing step, on every start and retry.
    Preflight,
}

/// A mode label value other than `job` or `daemonset-wait`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode {0:?}: expected \"job\", \"daemonset-wait\" or \"preflight\"")]
pub struct UnknownStepMode(pub String);

impl StepMode {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            StepMode::Job => "job",
            StepMode::DaemonSetWait => "daemonset-wait",
            StepMode::Preflight => "preflight",
        }
    }
}

impl fmt::Display for StepMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepMode {
    type Err = UnknownStepMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "job" => Ok(StepMode::Job),
            "daemonset-wait" => Ok(StepMode::DaemonSetWait),
            "preflight" => Ok(StepMode::Preflight),
            other => Err(UnknownStepMode(other.to_owned())),
        }
    }
}

/// What a step does, with the data its mode needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StepKind {
    /// Run the PodSpec as a Job (`restartPolicy` already defaulted to `Never`).
    Job {
        /// The step's PodSpec, exactly as the ConfigMap gives it apart from `restartPolicy`.
        pod_spec: Box<PodSpec>,
    },
    /// Flip `registriesYamlActive=v2` and wait for this DaemonSet's nodes to acknowledge.
    DaemonSetWait {
        /// The DaemonSet's name, in the steps' namespace.
        daemonset: String,
    },
    /// Run the PodSpec as a Job that checks and changes nothing; it runs before every
    /// changing step of each attempt, so a run whose preconditions fail changes nothing.
    Preflight {
        /// The step's PodSpec, as for [`StepKind::Job`].
        pod_spec: Box<PodSpec>,
    },
}

/// One validated step.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Step {
    /// Position in the plan (label `bp.openova.io/cutover-order`), unique within a plan.
    pub order: i64,
    /// The step's name (`stepName`).
    pub name: StepName,
    /// The ConfigMap the step comes from; its PodSpec may mount it.
    pub configmap: String,
    /// What the step does.
    pub kind: StepKind,
}

impl Step {
    /// The step's mode, as its label says.
    pub fn mode(&self) -> StepMode {
        match self.kind {
            StepKind::Job { .. } => StepMode::Job,
            StepKind::DaemonSetWait { .. } => StepMode::DaemonSetWait,
            StepKind::Preflight { .. } => StepMode::Preflight,
        }
    }

    /// Whether the step is a preflight (runs first, changes nothing).
    pub fn is_preflight(&self) -> bool {
        matches!(self.kind, StepKind::Preflight { .. })
    }

    /// The PodSpec of a step that runs as a Job (job and preflight steps).
    pub fn pod_spec(&self) -> Option<&PodSpec> {
        match &self.kind {
            StepKind::Job { pod_spec } | StepKind::Preflight { pod_spec } => Some(pod_spec),
            StepKind::DaemonSetWait { .. } => None,
        }
    }
}

/// A validated, non-empty list of steps in execution order: every preflight step first, then
/// the others; within each group ascending `order`, ties broken by ConfigMap name. Only [`parse_plan`](super::parse_plan) and
/// [`discover`](super::discover) build one, so a plan is always valid as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    steps: Vec<Step>,
}

impl StepPlan {
    /// Orders `steps`; the caller has validated them.
    pub(super) fn new(mut steps: Vec<Step>) -> Self {
        steps.sort_by(|a, b| {
            (!a.is_preflight(), a.order, &a.configmap).cmp(&(
                !b.is_preflight(),
                b.order,
                &b.configmap,
            ))
        });
        StepPlan { steps }
    }

    /// The steps in execution order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// How many steps the plan has (`totalSteps`).
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Always false for a plan built by this module; present because [`len`](Self::len) is.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The steps in execution order.
    pub fn iter(&self) -> std::slice::Iter<'_, Step> {
        self.steps.iter()
    }

    /// How many preflight steps lead the plan.
    pub fn preflight_count(&self) -> usize {
        self.steps.iter().take_while(|s| s.is_preflight()).count()
    }

    /// The 0-based position of the step called `name` (`currentStepIndex`).
    pub fn position(&self, name: &StepName) -> Option<usize> {
        self.steps.iter().position(|s| &s.name == name)
    }

    /// A stable hex SHA-256 of the whole plan (orders, names, ConfigMaps, modes, PodSpecs),
    /// so a runner can tell that the steps changed between two reads.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        for step in &self.steps {
            // Serializing plain data (strings, numbers, BTreeMaps) cannot fail; a failure
            // would only drop that step's detail from the hash, never panic.
            let json = serde_json::to_vec(step).unwrap_or_default();
            hasher.update((json.len() as u64).to_be_bytes());
            hasher.update(&json);
        }
        hex::encode(hasher.finalize())
    }
}

impl<'a> IntoIterator for &'a StepPlan {
    type Item = &'a Step;
    type IntoIter = std::slice::Iter<'a, Step>;
    fn into_iter(self) -> Self::IntoIter {
        self.steps.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_step(order: i64, name: &str, configmap: &str) -> Step {
        Step {
            order,
            name: StepName::new(name).unwrap(),
            configmap: configmap.to_owned(),
            kind: StepKind::DaemonSetWait {
                daemonset: "ds".to_owned(),
            },
        }
    }

    #[test]
    fn mode_round_trips_and_rejects_unknown() {
        for mode in [StepMode::Job, StepMode::DaemonSetWait, StepMode::Preflight] {
            assert_eq!(mode.as_str().parse::<StepMode>(), Ok(mode));
        }
        assert_eq!(
            "Job".parse::<StepMode>(),
            Err(UnknownStepMode("Job".into()))
        );
        assert_eq!(StepMode::default(), StepMode::Job);
    }

    #[test]
    fn plan_orders_by_order_then_configmap() {
        let plan = StepPlan::new(vec![
            wait_step(2, "c", "cm-c"),
            wait_step(1, "b", "cm-b"),
            wait_step(1, "a", "cm-a"),
        ]);
        let names: Vec<_> = plan.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(plan.len(), 3);
        assert_eq!(plan.position(&StepName::new("c").unwrap()), Some(2));
        assert_eq!((&plan).into_iter().count(), 3);
    }

    fn preflight_step(order: i64, name: &str) -> Step {
        Step {
            order,
            name: StepName::new(name).unwrap(),
            configmap: format!("cm-{name}"),
            kind: StepKind::Preflight {
                pod_spec: Box::default(),
            },
        }
    }

    #[test]
    fn preflights_run_first_in_their_own_order() {
        let plan = StepPlan::new(vec![
            wait_step(1, "change", "cm-change"),
            preflight_step(9, "late-check"),
            preflight_step(2, "early-check"),
        ]);
        let names: Vec<_> = plan.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["early-check", "late-check", "change"]);
        assert_eq!(plan.preflight_count(), 2);
        assert_eq!(plan.steps()[0].mode(), StepMode::Preflight);
        assert!(plan.steps()[0].pod_spec().is_some());
        assert!(plan.steps()[2].pod_spec().is_none());
    }

    #[test]
    fn fingerprint_is_stable_and_sensitive() {
        let a = StepPlan::new(vec![wait_step(1, "a", "cm-a"), wait_step(2, "b", "cm-b")]);
        let same = StepPlan::new(vec![wait_step(2, "b", "cm-b"), wait_step(1, "a", "cm-a")]);
        let other = StepPlan::new(vec![wait_step(1, "a", "cm-a"), wait_step(3, "b", "cm-b")]);
        assert_eq!(a.fingerprint(), same.fingerprint());
        assert_ne!(a.fingerprint(), other.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
    }
}
