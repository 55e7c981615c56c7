//! The simulated agents' decision: which nodes owe an acknowledgement of the service's
//! directive.

use crate::pivot::Directive;
use std::collections::BTreeSet;

/// The nodes that owe an acknowledgement of `directive`: every node in `ready_nodes` (nodes
/// running a ready pod of the agent's DaemonSet) outside `never_ack` and not in `acked`
/// (those whose acknowledgement Lease of this directive exists).
///
/// No directive (the record Lease is missing, unreadable, says `v1`, empty or unknown) is
/// no instruction: the nodes stay as they are.
pub fn due_acks(
    directive: Option<&Directive>,
    ready_nodes: &BTreeSet<String>,
    acked: &BTreeSet<String>,
    never_ack: &BTreeSet<String>,
) -> Vec<String> {
    if directive.is_none() {
        return Vec::new();
    }
    ready_nodes
        .iter()
        .filter(|node| !never_ack.contains(*node) && !acked.contains(*node))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pivot::Direction;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn ready_nodes_that_have_not_acknowledged_owe_it_unless_silenced() {
        let d = Directive {
            direction: Direction::V2,
            since: "T1".into(),
        };
        assert_eq!(
            due_acks(
                Some(&d),
                &set(&["a", "b", "c", "d"]),
                &set(&["a"]),
                &set(&["d"])
            ),
            vec!["b".to_owned(), "c".to_owned()]
        );
    }

    #[test]
    fn no_directive_moves_no_node() {
        assert!(due_acks(None, &set(&["a"]), &set(&[]), &set(&[])).is_empty());
    }
}
