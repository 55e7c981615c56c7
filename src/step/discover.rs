//! [`discover`]: the step plan as the cluster holds it.

use super::parse::{into_plan, label_field, parse_steps};
use super::{Step, StepKind, StepPlan, StepPolicy, StepProblem, StepReport};
use crate::contract::{LABEL_STEP_DAEMONSET, STEP_SELECTOR};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use std::collections::BTreeSet;

/// Why the steps could not be discovered.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// The API server could not be asked.
    #[error("cannot {action} in namespace {namespace}: {source}")]
    Kube {
        /// What was being done, e.g. `list step ConfigMaps`.
        action: String,
        /// The namespace asked.
        namespace: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The steps are invalid.
    #[error(transparent)]
    Invalid(#[from] StepReport),
    /// The steps come from a chart older than the service runs.
    #[error(transparent)]
    BelowFloor(#[from] super::chart::BelowFloor),
}

/// Lists the step ConfigMaps of `namespace` by the contract's selector, refuses them when
/// they come from a chart below the policy's floor, validates them,
/// checks every job step's PodSpec against `policy` and that every daemonset-wait step's
/// DaemonSet exists; every problem is in one report.
pub async fn discover(
    client: &kube::Client,
    namespace: &str,
    policy: &StepPolicy,
) -> Result<StepPlan, DiscoverError> {
    let kube_err = |action: &str| {
        let namespace = namespace.to_owned();
        let action = action.to_owned();
        move |source| DiscoverError::Kube {
            action,
            namespace,
            source,
        }
    };
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let list = configmaps
        .list(&ListParams::default().labels(STEP_SELECTOR))
        .await
        .map_err(kube_err("list step ConfigMaps"))?;
    super::chart::check(&list.items, &policy.min_chart_version)?;
    let (steps, mut problems) = parse_steps(&list.items);
    problems.extend(policy.check_steps(&steps));

    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    let mut missing = BTreeSet::new();
    for name in waited_daemonsets(&steps) {
        let found = daemonsets
            .get_opt(name)
            .await
            .map_err(kube_err(&format!("get DaemonSet {name}")))?;
        if found.is_none() {
            missing.insert(name.to_owned());
        }
    }
    problems.extend(missing_daemonset_problems(&steps, &missing, namespace));
    Ok(into_plan(steps, problems)?)
}

/// The DaemonSets the daemonset-wait steps wait for, each once.
fn waited_daemonsets(steps: &[Step]) -> BTreeSet<&str> {
    steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::DaemonSetWait { daemonset } => Some(daemonset.as_str()),
            StepKind::Job { .. } | StepKind::Preflight { .. } => None,
        })
        .collect()
}

/// One problem per daemonset-wait step whose DaemonSet is in `missing`.
fn missing_daemonset_problems(
    steps: &[Step],
    missing: &BTreeSet<String>,
    namespace: &str,
) -> Vec<StepProblem> {
    steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::DaemonSetWait { daemonset } if missing.contains(daemonset) => {
                Some(StepProblem {
                    configmap: Some(s.configmap.clone()),
                    field: Some(label_field(LABEL_STEP_DAEMONSET)),
                    message: format!(
                        "DaemonSet {daemonset} does not exist in namespace {namespace} \
                         (the label names it, or else the ConfigMap name minus cutover-step-NN-)"
                    ),
                })
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::StepName;

    fn wait(cm: &str, ds: &str) -> Step {
        Step {
            order: 1,
            name: StepName::new(cm).unwrap(),
            configmap: cm.to_owned(),
            kind: StepKind::DaemonSetWait {
                daemonset: ds.to_owned(),
            },
        }
    }

    #[test]
    fn names_each_step_whose_daemonset_is_missing() {
        let steps = [wait("a", "ds-1"), wait("b", "ds-2"), wait("c", "ds-1")];
        assert_eq!(
            waited_daemonsets(&steps).into_iter().collect::<Vec<_>>(),
            ["ds-1", "ds-2"]
        );
        let missing = BTreeSet::from(["ds-1".to_owned()]);
        let problems = missing_daemonset_problems(&steps, &missing, "catalyst");
        let cms: Vec<_> = problems
            .iter()
            .map(|p| p.configmap.as_deref().unwrap())
            .collect();
        assert_eq!(cms, ["a", "c"]);
        assert_eq!(
            problems[0].field.as_deref(),
            Some(r#"metadata.labels["bp.openova.io/cutover-daemonset"]"#)
        );
        assert!(
            problems[0]
                .message
                .contains("DaemonSet ds-1 does not exist in namespace catalyst")
        );
    }
}
