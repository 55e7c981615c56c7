//! When a DaemonSet's nodes acknowledged a value of the registry-pivot handshake: the
//! DaemonSet is fully rolled out at its current generation, and every node that runs a
//! current, ready pod of it now has acknowledged (`v2` for a daemonset-wait step,
//! `rolled-back` for a rollback). Acknowledgements are looked up per node that runs such a
//! pod, never counted as keys, so stale keys of replaced nodes cannot satisfy the wait
//! (contract defect 4).

use crate::contract::{key, registries};
use crate::pivot::{Directive, ack};
use crate::status::model::{StatusData, get};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use std::borrow::Borrow;
use std::collections::BTreeSet;

/// The DaemonSet annotation holding the template generation its pods are labelled with.
const ANNOTATION_TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";
/// The pod label the DaemonSet controller sets to the template generation.
const LABEL_TEMPLATE_GENERATION: &str = "pod-template-generation";

/// Where a DaemonSet's registry pivot stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// Every current, ready pod's node acknowledged `v2`.
    Done {
        /// The nodes that acknowledged.
        nodes: BTreeSet<String>,
    },
    /// Still waiting, and why (for logs and the step's failure reason at its deadline).
    Waiting(String),
}

/// Where the acknowledgement of one value by a DaemonSet's current nodes stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acks {
    /// The DaemonSet is rolled out and every node running a current, ready pod of it
    /// acknowledged.
    Done {
        /// The nodes that acknowledged.
        nodes: BTreeSet<String>,
    },
    /// Still waiting.
    Waiting {
        /// Why, for logs and failure reasons.
        reason: String,
        /// The nodes running a current pod of the DaemonSet (ready or not) that have not
        /// acknowledged: the ones to name when the wait gives up.
        pending: BTreeSet<String>,
    },
}

/// The acknowledgements of `directive` that `leases` hold, as the status keys that display
/// them (`node.<n>.registriesYaml`): the `data` [`acknowledgements`] counts. Pure.
pub fn ack_data<L: Borrow<Lease>>(leases: &[L], directive: &Directive) -> StatusData {
    ack::acked_nodes(leases, directive)
        .into_iter()
        .map(|node| {
            (
                key::node_registries_yaml(&node),
                directive.direction.ack_value().to_owned(),
            )
        })
        .collect()
}

/// Makes the status `data` show `directive` and its acknowledgements `acks` (of
/// [`ack_data`]): `registriesYamlActive` its direction, each node that acknowledged its
/// value, and no other node that value (whoever wrote it there). Pure.
pub fn mirror_node_acks(data: &mut StatusData, acks: &StatusData, directive: &Directive) {
    let value = directive.direction.ack_value();
    data.insert(
        key::REGISTRIES_YAML_ACTIVE.to_owned(),
        directive.direction.as_str().to_owned(),
    );
    data.retain(|k, v| !registries::is_node_ack(k) || v != value || acks.contains_key(k));
    for (k, v) in acks {
        data.insert(k.clone(), v.clone());
    }
}

/// Evaluates the rollout of `ds` with its `pods` against the acknowledgements `data`. Pure.
pub fn evaluate<P: Borrow<Pod>>(ds: &DaemonSet, pods: &[P], data: &StatusData) -> Rollout {
    match acknowledgements(ds, pods, data, registries::V2) {
        Acks::Done { nodes } => Rollout::Done { nodes },
        Acks::Waiting { reason, .. } => Rollout::Waiting(reason),
    }
}

/// Whether every node that runs a current, ready pod of `ds` now acknowledged `value`
/// (`node.<n>.registriesYaml`), the DaemonSet being rolled out at its current generation.
/// Pure; `pods` may be owned or shared (the reflector's `Arc`s), never cloned.
pub fn acknowledgements<P: Borrow<Pod>>(
    ds: &DaemonSet,
    pods: &[P],
    data: &StatusData,
    value: &str,
) -> Acks {
    let name = ds.metadata.name.as_deref().unwrap_or("");
    let generation = ds.metadata.generation.unwrap_or(0);
    let template_generation = ds
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_TEMPLATE_GENERATION).cloned())
        .unwrap_or_else(|| generation.to_string());
    let uid = ds.metadata.uid.as_deref();
    let current: Vec<&Pod> = pods
        .iter()
        .map(Borrow::borrow)
        .filter(|pod| owned_by(pod, uid))
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            pod.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_TEMPLATE_GENERATION))
                .is_none_or(|g| *g == template_generation)
        })
        .collect();
    let unacknowledged = |nodes: &mut dyn Iterator<Item = &Pod>| -> BTreeSet<String> {
        nodes
            .filter_map(|pod| pod.spec.as_ref()?.node_name.clone())
            .filter(|node| get(data, &key::node_registries_yaml(node)) != value)
            .collect()
    };
    let waiting = |reason: String| Acks::Waiting {
        reason,
        pending: unacknowledged(&mut current.iter().copied()),
    };
    let Some(status) = ds.status.as_ref() else {
        return waiting(format!("DaemonSet {name} has no status yet"));
    };
    let observed = status.observed_generation.unwrap_or(0);
    if observed < generation {
        return waiting(format!(
            "DaemonSet {name} controller has observed generation {observed}, not {generation}"
        ));
    }
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    if desired == 0 {
        return waiting(format!("DaemonSet {name} schedules no pods"));
    }
    if updated < desired || status.number_ready < desired {
        return waiting(format!(
            "DaemonSet {name}: {updated} of {desired} pods updated, {} ready",
            status.number_ready
        ));
    }
    let nodes: BTreeSet<String> = current
        .iter()
        .filter(|pod| is_ready(pod))
        .filter_map(|pod| pod.spec.as_ref()?.node_name.clone())
        .collect();
    if nodes.len() < usize::try_from(desired).unwrap_or(0) {
        return waiting(format!(
            "DaemonSet {name}: {} of {desired} current pods seen ready",
            nodes.len()
        ));
    }
    let pending = unacknowledged(&mut current.iter().copied().filter(|pod| is_ready(pod)));
    if pending.is_empty() {
        Acks::Done { nodes }
    } else {
        let list: Vec<&str> = pending.iter().map(String::as_str).collect();
        Acks::Waiting {
            reason: format!(
                "nodes that have not acknowledged registries {value}: {}",
                list.join(", ")
            ),
            pending,
        }
    }
}

fn owned_by(pod: &Pod, uid: Option<&str>) -> bool {
    let Some(uid) = uid else { return true };
    pod.metadata
        .owner_references
        .as_ref()
        .is_some_and(|refs| refs.iter().any(|r| r.uid == uid))
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetStatus;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use std::collections::BTreeMap;

    fn ds(generation: i64, observed: i64, desired: i32, updated: i32, ready: i32) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("registry-pivot".into()),
                uid: Some("ds-uid".into()),
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(DaemonSetStatus {
                observed_generation: Some(observed),
                desired_number_scheduled: desired,
                current_number_scheduled: desired,
                updated_number_scheduled: Some(updated),
                number_ready: ready,
                ..DaemonSetStatus::default()
            }),
        }
    }

    fn pod(node: &str, generation: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("registry-pivot-{node}")),
                labels: Some(BTreeMap::from([(
                    LABEL_TEMPLATE_GENERATION.to_owned(),
                    generation.to_owned(),
                )])),
                owner_references: Some(vec![OwnerReference {
                    uid: "ds-uid".into(),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    fn acks(nodes: &[&str]) -> StatusData {
        nodes
            .iter()
            .map(|n| (format!("node.{n}.registriesYaml"), "v2".to_owned()))
            .collect()
    }

    #[test]
    fn only_lease_acknowledgements_of_this_directive_count_and_the_status_shows_them() {
        use crate::pivot::Direction;
        let now = Directive {
            direction: Direction::V2,
            since: "T3".into(),
        };
        let earlier = Directive {
            since: "T1".into(),
            ..now.clone()
        };
        let leases = [ack::lease("n1", &now), ack::lease("n2", &earlier)];
        let counted = ack_data(&leases, &now);
        assert_eq!(counted, acks(&["n1"]), "n2 answered an earlier pivot");
        let pods = [pod("n1", "2", true), pod("n2", "2", true)];
        assert_eq!(
            evaluate(&ds(2, 2, 2, 2, 2), &pods, &counted),
            Rollout::Waiting("nodes that have not acknowledged registries v2: n2".into())
        );
        // Forged keys in the status: shown no longer, counted never.
        let mut shown = acks(&["n2", "ghost"]);
        shown.insert("node.n3.registriesYaml".into(), "rolled-back".into());
        shown.insert("registriesYamlActive".into(), "rollback".into());
        mirror_node_acks(&mut shown, &counted, &now);
        let mut expected = acks(&["n1"]);
        expected.insert("node.n3.registriesYaml".into(), "rolled-back".into());
        expected.insert("registriesYamlActive".into(), "v2".into());
        assert_eq!(shown, expected);
    }

    #[test]
    fn done_when_every_current_ready_node_acknowledged() {
        let pods = [pod("n1", "2", true), pod("n2", "2", true)];
        assert!(matches!(
            evaluate(&ds(2, 2, 2, 2, 2), &pods, &acks(&["n1", "n2"])),
            Rollout::Done { nodes } if nodes.len() == 2
        ));
    }

    #[test]
    fn unobserved_generation_or_partial_rollout_waits() {
        let pods = [pod("n1", "2", true), pod("n2", "2", true)];
        let all = acks(&["n1", "n2"]);
        assert!(matches!(
            evaluate(&ds(3, 2, 2, 2, 2), &pods, &all),
            Rollout::Waiting(_)
        ));
        assert!(matches!(
            evaluate(&ds(2, 2, 2, 1, 2), &pods, &all),
            Rollout::Waiting(_)
        ));
        assert!(matches!(
            evaluate(&ds(2, 2, 2, 2, 1), &pods, &all),
            Rollout::Waiting(_)
        ));
    }

    #[test]
    fn stale_acknowledgement_of_a_replaced_node_does_not_count() {
        let pods = [pod("n1", "2", true), pod("n3", "2", true)];
        let data = acks(&["n1", "n2"]);
        assert_eq!(
            evaluate(&ds(2, 2, 2, 2, 2), &pods, &data),
            Rollout::Waiting("nodes that have not acknowledged registries v2: n3".into())
        );
    }

    #[test]
    fn old_generation_and_unready_pods_do_not_count() {
        let pods = [pod("n1", "1", true), pod("n2", "2", false)];
        assert!(matches!(
            evaluate(&ds(2, 2, 2, 2, 2), &pods, &acks(&["n1", "n2"])),
            Rollout::Waiting(_)
        ));
    }

    #[test]
    fn v1_acknowledgement_is_not_v2() {
        let pods = [pod("n1", "2", true)];
        let mut data = acks(&[]);
        data.insert("node.n1.registriesYaml".into(), "v1".into());
        assert!(matches!(
            evaluate(&ds(2, 2, 1, 1, 1), &pods, &data),
            Rollout::Waiting(_)
        ));
    }

    #[test]
    fn any_value_is_followed_and_the_pending_nodes_are_named() {
        let pods = [pod("n1", "2", true), pod("n2", "2", true)];
        let mut data = acks(&["n1", "n2"]);
        data.insert("node.n1.registriesYaml".into(), "rolled-back".into());
        assert_eq!(
            acknowledgements(&ds(2, 2, 2, 2, 2), &pods, &data, "rolled-back"),
            Acks::Waiting {
                reason: "nodes that have not acknowledged registries rolled-back: n2".into(),
                pending: BTreeSet::from(["n2".to_owned()]),
            }
        );
        data.insert("node.n2.registriesYaml".into(), "rolled-back".into());
        assert!(matches!(
            acknowledgements(&ds(2, 2, 2, 2, 2), &pods, &data, "rolled-back"),
            Acks::Done { nodes } if nodes.len() == 2
        ));
    }

    #[test]
    fn a_node_whose_pod_is_not_ready_is_named_while_the_rollout_waits() {
        let pods = [pod("n1", "2", true), pod("n2", "2", false)];
        let mut data = StatusData::new();
        data.insert("node.n1.registriesYaml".into(), "rolled-back".into());
        match acknowledgements(&ds(2, 2, 2, 2, 1), &pods, &data, "rolled-back") {
            Acks::Waiting { reason, pending } => {
                assert!(reason.contains("1 ready"), "{reason}");
                assert_eq!(pending, BTreeSet::from(["n2".to_owned()]));
            }
            done => panic!("{done:?}"),
        }
    }
}
