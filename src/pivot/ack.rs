//! A node's acknowledgement: a Lease the agent creates once per directive, named after the
//! node and the directive, never updated. The agent's ServiceAccount needs only `create` on
//! Leases for it: a create never overwrites an existing object, so the agent cannot change
//! the service's Leases (the record it follows among them), and a ConfigMap writer cannot
//! create a Lease at all.

use super::direction::Directive;
use crate::contract::{LABEL_COMPONENT, LABEL_PART_OF, PART_OF, pivot};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// Name prefix of acknowledgement Leases.
const PREFIX: &str = "registry-pivot-ack-";

/// The name of `node`'s acknowledgement of `directive`: a digest, so that any node name
/// fits, and so that an acknowledgement of an earlier directive never answers a later one.
/// Pure.
pub fn name(node: &str, directive: &Directive) -> String {
    let mut digest = Sha256::new();
    for part in [
        node,
        directive.direction.ack_value(),
        directive.since.as_str(),
    ] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    format!("{PREFIX}{}", &hex::encode(digest.finalize())[..24])
}

/// `node`'s acknowledgement of `directive`, to be created. Pure.
pub fn lease(node: &str, directive: &Directive) -> Lease {
    let labels = [
        (LABEL_PART_OF, PART_OF),
        (LABEL_COMPONENT, pivot::COMPONENT_ACK),
    ];
    let annotations = [
        (pivot::ANNOTATION_ACK_NODE, node),
        (pivot::ANNOTATION_ACK_VALUE, directive.direction.ack_value()),
        (pivot::ANNOTATION_ACK_SINCE, directive.since.as_str()),
    ];
    let map = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    };
    Lease {
        metadata: ObjectMeta {
            name: Some(name(node, directive)),
            labels: map(&labels),
            annotations: map(&annotations),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_owned()),
            ..LeaseSpec::default()
        }),
    }
}

/// The node `lease` acknowledges `directive` for, if it is such an acknowledgement: its
/// name and every annotation must agree. Pure.
pub fn node_of<'a>(lease: &'a Lease, directive: &Directive) -> Option<&'a str> {
    let annotations = lease.metadata.annotations.as_ref()?;
    let node = annotations.get(pivot::ANNOTATION_ACK_NODE)?;
    let agrees = annotations
        .get(pivot::ANNOTATION_ACK_VALUE)
        .map(String::as_str)
        == Some(directive.direction.ack_value())
        && annotations.get(pivot::ANNOTATION_ACK_SINCE) == Some(&directive.since)
        && lease.metadata.name.as_deref() == Some(name(node, directive).as_str());
    agrees.then_some(node.as_str())
}

/// The nodes that acknowledged `directive` among `leases`. Pure.
pub fn acked_nodes<L: std::borrow::Borrow<Lease>>(
    leases: &[L],
    directive: &Directive,
) -> BTreeSet<String> {
    leases
        .iter()
        .filter_map(|l| node_of(l.borrow(), directive).map(str::to_owned))
        .collect()
}

/// Creates `node`'s acknowledgement of `directive`; one that exists already is the same
/// answer given before.
pub async fn acknowledge(
    api: &Api<Lease>,
    node: &str,
    directive: &Directive,
) -> Result<(), kube::Error> {
    match api
        .create(&PostParams::default(), &lease(node, directive))
        .await
    {
        Ok(_) => Ok(()),
        Err(err) if crate::retry::is_status(&err, 409) => Ok(()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pivot::Direction;

    fn directive(direction: Direction, since: &str) -> Directive {
        Directive {
            direction,
            since: since.into(),
        }
    }

    #[test]
    fn an_acknowledgement_answers_one_directive_of_one_node() {
        let v2 = directive(Direction::V2, "T1");
        let a = lease("node-a", &v2);
        assert_eq!(node_of(&a, &v2), Some("node-a"));
        assert_eq!(
            node_of(&a, &directive(Direction::V2, "T3")),
            None,
            "a later pivot"
        );
        assert_eq!(node_of(&a, &directive(Direction::Rollback, "T1")), None);
        let long = "n".repeat(253);
        assert!(name(&long, &v2).len() <= 63);
        assert_ne!(name("node-a", &v2), name("node-b", &v2));
    }

    #[test]
    fn a_lease_whose_name_or_annotations_disagree_is_no_acknowledgement() {
        let v2 = directive(Direction::V2, "T1");
        let mut renamed = lease("node-a", &v2);
        renamed.metadata.name = Some(name("node-b", &v2));
        let mut claimed = lease("node-a", &v2);
        claimed
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(pivot::ANNOTATION_ACK_NODE.into(), "node-b".into());
        let other = lease("node-c", &v2);
        assert_eq!(
            acked_nodes(&[renamed, claimed, other], &v2),
            BTreeSet::from(["node-c".to_owned()])
        );
    }
}
