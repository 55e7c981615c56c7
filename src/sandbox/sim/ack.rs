//! The registry-pivot agent's decision: which nodes owe an acknowledgement, and of what.

use std::collections::{BTreeMap, BTreeSet};

use crate::contract::key;

/// The two registry configurations a node can run.
const V1: &str = "v1";
const V2: &str = "v2";

/// The acknowledgements due, as `(node, value)`: every node in `ready_nodes` (nodes running a
/// ready pod of the agent's DaemonSet) outside `never_ack` whose
/// `node.<node>.registriesYaml` differs from `registriesYamlActive`.
///
/// `data` is `None` when the status ConfigMap could not be read or does not exist; a missing,
/// empty or unknown `registriesYamlActive` is no instruction either: none of these is ever
/// taken as `v1`, which would roll every node back. `v1` is acknowledged only by nodes that
/// had acknowledged something, i.e. nodes going back.
pub fn due_acks(
    data: Option<&BTreeMap<String, String>>,
    ready_nodes: &BTreeSet<String>,
    never_ack: &BTreeSet<String>,
) -> Vec<(String, String)> {
    let Some(data) = data else {
        return Vec::new();
    };
    let active = match data.get(key::REGISTRIES_YAML_ACTIVE).map(|v| v.trim()) {
        Some(v @ (V1 | V2)) => v,
        _ => return Vec::new(),
    };
    ready_nodes
        .iter()
        .filter(|node| !never_ack.contains(*node))
        .filter(|node| {
            let acked = data
                .get(&key::node_registries_yaml(node))
                .map(String::as_str);
            match active {
                V2 => acked != Some(V2),
                _ => acked.is_some_and(|a| a != V1),
            }
        })
        .map(|node| (node.clone(), active.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn v2_is_acknowledged_by_ready_nodes_that_have_not_yet() {
        let d = data(&[
            ("registriesYamlActive", "v2"),
            ("node.a.registriesYaml", "v2"),
            ("node.b.registriesYaml", "v1"),
        ]);
        let due = due_acks(Some(&d), &set(&["a", "b", "c"]), &set(&[]));
        assert_eq!(
            due,
            vec![("b".into(), "v2".into()), ("c".into(), "v2".into())]
        );
    }

    #[test]
    fn never_ack_nodes_stay_silent() {
        let d = data(&[("registriesYamlActive", "v2")]);
        assert_eq!(
            due_acks(Some(&d), &set(&["a", "b"]), &set(&["a"])),
            vec![("b".into(), "v2".into())]
        );
    }

    #[test]
    fn going_back_to_v1_is_acknowledged_only_by_switched_nodes() {
        let d = data(&[
            ("registriesYamlActive", "v1"),
            ("node.a.registriesYaml", "v2"),
            ("node.b.registriesYaml", "v1"),
        ]);
        assert_eq!(
            due_acks(Some(&d), &set(&["a", "b", "c"]), &set(&[])),
            vec![("a".into(), "v1".into())]
        );
    }

    #[test]
    fn failed_empty_or_unknown_reads_are_never_v1() {
        let switched = data(&[("node.a.registriesYaml", "v2")]);
        let nodes = set(&["a"]);
        assert!(due_acks(None, &nodes, &set(&[])).is_empty());
        assert!(due_acks(Some(&switched), &nodes, &set(&[])).is_empty());
        for bad in ["", "v3", "V2"] {
            let mut d = switched.clone();
            d.insert("registriesYamlActive".into(), bad.into());
            assert!(due_acks(Some(&d), &nodes, &set(&[])).is_empty(), "{bad:?}");
        }
    }
}
