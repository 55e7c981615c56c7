//! The DaemonSet controller's decisions, as a pure function of a DaemonSet, the simulated
//! nodes and the pods it owns.
//!
//! Modelled on pkg/controller/daemon of kube-controller-manager: one pod per eligible node,
//! pods labelled `controller-revision-hash` (the template's hash) and `pod-template-generation`
//! so updated pods are recognised, RollingUpdate honouring `maxUnavailable` (no surge), and
//! OnDelete leaving old pods alone. Simplifications: eligibility is `nodeSelector` only
//! (simulated nodes carry no taints), no ControllerRevision objects, and pods get
//! `spec.nodeName` directly instead of a node-affinity term for a scheduler to resolve.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::pod_state::{self, PodState};

/// Label: hash of the pod template a DaemonSet pod was created from.
pub const LABEL_REVISION_HASH: &str = "controller-revision-hash";
/// Label: the DaemonSet generation a pod was created at.
pub const LABEL_TEMPLATE_GENERATION: &str = "pod-template-generation";

/// A simulated node as the DaemonSet controller needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
}

/// What the shell must do for one DaemonSet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DaemonSetPlan {
    /// Pods to create (fully named: the name is derived from node and template, so a create
    /// repeated before the watch shows the first one answers AlreadyExists).
    pub create: Vec<Pod>,
    /// Pods to delete, by name.
    pub delete: Vec<String>,
    /// The status to write through `daemonsets/status`, when it changed.
    pub status: Option<DaemonSetStatus>,
}

/// The hash of a pod template, as written in [`LABEL_REVISION_HASH`].
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))[..10].to_owned()
}

/// Decides what to do for `ds` over `nodes`, given the pods (the function keeps those `ds`
/// controls).
pub fn reconcile_daemonset<P: Borrow<Pod>>(
    ds: &DaemonSet,
    nodes: &[NodeInfo],
    pods: &[P],
) -> DaemonSetPlan {
    let Some(spec) = ds.spec.as_ref() else {
        return DaemonSetPlan::default();
    };
    let uid = ds.metadata.uid.as_deref().unwrap_or_default();
    let hash = template_hash(&spec.template);
    let selector = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.clone())
        .unwrap_or_default();
    let eligible: BTreeSet<&str> = nodes
        .iter()
        .filter(|n| selector.iter().all(|(k, v)| n.labels.get(k) == Some(v)))
        .map(|n| n.name.as_str())
        .collect();
    let existing: BTreeSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();

    let mut plan = DaemonSetPlan::default();
    let mut by_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    let mut misscheduled = BTreeSet::new();
    let owned = pods
        .iter()
        .map(Borrow::borrow)
        .filter(|p| pod_state::controller_uid(p) == Some(uid));
    for pod in owned {
        match pod_state::state(pod) {
            PodState::Terminating => {}
            PodState::Failed | PodState::Succeeded => plan.delete.push(pod_state::name(pod).into()),
            PodState::Active => {
                let node = pod_state::node_name(pod).unwrap_or_default();
                if eligible.contains(node) {
                    by_node.entry(node).or_default().push(pod);
                } else {
                    if existing.contains(node) {
                        misscheduled.insert(node);
                    }
                    plan.delete.push(pod_state::name(pod).into());
                }
            }
        }
    }
    let is_updated = |p: &Pod| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_REVISION_HASH))
            == Some(&hash)
    };

    // One pod per node: keep the best (updated first, then ready), delete duplicates.
    let mut kept: BTreeMap<&str, &Pod> = BTreeMap::new();
    for (node, mut list) in by_node {
        list.sort_by_key(|p| (!is_updated(p), !pod_state::is_ready(p), pod_state::name(p)));
        for extra in &list[1..] {
            plan.delete.push(pod_state::name(extra).into());
        }
        kept.insert(node, list[0]);
    }

    let desired = eligible.len() as i32;
    let ready = kept.values().filter(|p| pod_state::is_ready(p)).count() as i32;
    let updated = kept.values().filter(|p| is_updated(p)).count() as i32;
    let generation = ds.metadata.generation.unwrap_or(0);

    for node in &eligible {
        if !kept.contains_key(node) {
            plan.create.push(pod_for(ds, node, &hash, generation));
        }
    }
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if rolling {
        let max_unavailable = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.as_ref())
            .map_or(1, |m| scaled(m, desired))
            .max(1);
        let mut budget = max_unavailable - (desired - ready);
        for pod in kept.values().filter(|p| !is_updated(p)) {
            if !pod_state::is_ready(pod) {
                plan.delete.push(pod_state::name(pod).into());
            } else if budget > 0 {
                budget -= 1;
                plan.delete.push(pod_state::name(pod).into());
            }
        }
    }

    let old = ds.status.clone().unwrap_or_default();
    let status = DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: kept.len() as i32,
        updated_number_scheduled: Some(updated),
        number_ready: ready,
        number_available: Some(ready),
        number_unavailable: Some(desired - ready),
        number_misscheduled: misscheduled.len() as i32,
        observed_generation: Some(generation),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
    };
    if ds.status.as_ref() != Some(&status) {
        plan.status = Some(status);
    }
    plan
}

/// `maxUnavailable` as a count: an integer, or a percentage of `total` rounded up.
fn scaled(value: &IntOrString, total: i32) -> i32 {
    match value {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<i64>().ok())
            .map_or(1, |p| ((p * i64::from(total) + 99) / 100) as i32),
    }
}

fn pod_for(ds: &DaemonSet, node: &str, hash: &str, generation: i64) -> Pod {
    let name = ds.metadata.name.clone().unwrap_or_default();
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(LABEL_REVISION_HASH.into(), hash.into());
    labels.insert(LABEL_TEMPLATE_GENERATION.into(), generation.to_string());
    let mut spec = template.spec.unwrap_or_default();
    spec.node_name = Some(node.into());
    let suffix = &hex::encode(Sha256::digest(format!("{node}/{hash}")))[..10];
    let prefix: String = name.chars().take(52).collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{}-{suffix}", prefix.trim_end_matches('-'))),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "DaemonSet".into(),
                name,
                uid: ds.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
    };
    use k8s_openapi::api::core::v1::{Container, PodCondition, PodSpec, PodStatus};

    const NONE: &[Pod] = &[];

    fn ds(image: &str) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("pivot".into()),
                namespace: Some("ns".into()),
                uid: Some("ds-uid".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(DaemonSetSpec {
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "pivot".to_string())].into()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "agent".into(),
                            image: Some(image.into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn nodes(n: usize) -> Vec<NodeInfo> {
        (0..n)
            .map(|i| NodeInfo {
                name: format!("pool-{i}"),
                labels: [("pool".to_string(), "pool".to_string())].into(),
            })
            .collect()
    }

    fn ready(mut pod: Pod, ready: bool) -> Pod {
        pod.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        pod
    }

    /// The pods `d` creates over `n` nodes, running and ready.
    fn running(d: &DaemonSet, n: usize) -> Vec<Pod> {
        reconcile_daemonset(d, &nodes(n), NONE)
            .create
            .into_iter()
            .map(|p| ready(p, true))
            .collect()
    }

    #[test]
    fn one_pod_per_node_with_labels_owner_and_node() {
        let d = ds("a");
        let plan = reconcile_daemonset(&d, &nodes(3), NONE);
        assert_eq!(plan.create.len(), 3);
        let p = &plan.create[0];
        assert_eq!(pod_state::node_name(p), Some("pool-0"));
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["app"], "pivot");
        assert_eq!(labels[LABEL_TEMPLATE_GENERATION], "1");
        assert_eq!(
            labels[LABEL_REVISION_HASH],
            template_hash(&d.spec.as_ref().unwrap().template)
        );
        assert!(p.metadata.name.as_ref().unwrap().starts_with("pivot-"));
        assert_eq!(pod_state::controller_uid(p), Some("ds-uid"));
        let names: BTreeSet<_> = plan.create.iter().map(pod_state::name).collect();
        assert_eq!(names.len(), 3);
        let s = plan.status.unwrap();
        assert_eq!(
            (
                s.desired_number_scheduled,
                s.current_number_scheduled,
                s.number_ready
            ),
            (3, 0, 0)
        );
        assert_eq!(s.observed_generation, Some(1));
    }

    #[test]
    fn settled_daemonset_reports_full_status_and_then_nothing() {
        let mut d = ds("a");
        let pods = running(&d, 2);
        let plan = reconcile_daemonset(&d, &nodes(2), &pods);
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        let s = plan.status.unwrap();
        assert_eq!(
            (
                s.desired_number_scheduled,
                s.current_number_scheduled,
                s.updated_number_scheduled,
                s.number_ready,
                s.number_available
            ),
            (2, 2, Some(2), 2, Some(2))
        );
        d.status = Some(s);
        assert_eq!(
            reconcile_daemonset(&d, &nodes(2), &pods),
            DaemonSetPlan::default()
        );
    }

    #[test]
    fn template_change_rolls_one_node_at_a_time() {
        let d = ds("a");
        let pods = running(&d, 3);
        let mut d2 = ds("b");
        d2.metadata.generation = Some(2);
        let plan = reconcile_daemonset(&d2, &nodes(3), &pods);
        assert_eq!(plan.delete.len(), 1, "maxUnavailable 1");
        assert!(plan.create.is_empty());
        let s = plan.status.unwrap();
        assert_eq!(
            (s.updated_number_scheduled, s.observed_generation),
            (Some(0), Some(2))
        );

        let mut d3 = ds("b");
        d3.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDaemonSet {
                max_unavailable: Some(IntOrString::String("100%".into())),
                ..Default::default()
            }),
        });
        assert_eq!(reconcile_daemonset(&d3, &nodes(3), &pods).delete.len(), 3);
        let mut on_delete = ds("b");
        on_delete.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
        assert!(
            reconcile_daemonset(&on_delete, &nodes(3), &pods)
                .delete
                .is_empty()
        );
    }

    #[test]
    fn pods_on_gone_or_unselected_nodes_are_deleted() {
        let d = ds("a");
        let pods = running(&d, 3);
        let plan = reconcile_daemonset(&d, &nodes(2), &pods);
        assert_eq!(plan.delete, vec![pod_state::name(&pods[2]).to_string()]);
        let mut picky = ds("a");
        picky
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .node_selector = Some([("pool".to_string(), "other".to_string())].into());
        let plan = reconcile_daemonset(&picky, &nodes(1), NONE);
        assert!(plan.create.is_empty());
        assert_eq!(plan.status.unwrap().desired_number_scheduled, 0);
    }

    #[test]
    fn failed_and_duplicate_pods_are_replaced() {
        let d = ds("a");
        let created = reconcile_daemonset(&d, &nodes(1), NONE).create;
        let mut failed = created[0].clone();
        failed.status = Some(PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        });
        let plan = reconcile_daemonset(&d, &nodes(1), &[failed]);
        assert_eq!((plan.create.len(), plan.delete.len()), (1, 1));
        let mut dup = ready(created[0].clone(), false);
        dup.metadata.name = Some("pivot-dup".into());
        let plan = reconcile_daemonset(&d, &nodes(1), &[ready(created[0].clone(), true), dup]);
        assert_eq!(plan.delete, vec!["pivot-dup".to_string()]);
    }

    #[test]
    fn percent_is_rounded_up() {
        assert_eq!(scaled(&IntOrString::String("10%".into()), 5), 1);
        assert_eq!(scaled(&IntOrString::String("50%".into()), 5), 3);
        assert_eq!(scaled(&IntOrString::Int(2), 5), 2);
    }
}
