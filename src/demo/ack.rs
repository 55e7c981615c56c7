//! The registry-pivot agent's decision: which nodes owe an acknowledgement, and of what.

use std::collections::{BTreeMap, BTreeSet};

use crate::contract::{key, registries};

/// The acknowledgements due, as `(node, value)`: every node in `ready_nodes` (nodes running a
/// ready pod of the agent's DaemonSet) outside `never_ack` whose `node.<node>.registriesYaml`
/// is not yet what `registriesYamlActive` asks for: `v2` for `v2`, `rolled-back` for
/// `rollback` (the agent restored the files it saved before the pivot).
///
/// `v1` (as installed) changes nothing on any node, ever. `data` is `None` when the status
/// ConfigMap could not be read or does not exist; a missing, empty or unknown
/// `registriesYamlActive` is no instruction either: the nodes stay as they are.
pub fn due_acks(
    data: Option<&BTreeMap<String, String>>,
    ready_nodes: &BTreeSet<String>,
    never_ack: &BTreeSet<String>,
) -> Vec<(String, String)> {
    let Some(data) = data else {
        return Vec::new();
    };
    let ack = match data.get(key::REGISTRIES_YAML_ACTIVE).map(|v| v.trim()) {
        Some(registries::V2) => registries::V2,
        Some(registries::ROLLBACK) => registries::ROLLED_BACK,
        _ => return Vec::new(),
    };
    ready_nodes
        .iter()
        .filter(|node| !never_ack.contains(*node))
        .filter(|node| {
            data.get(&key::node_registries_yaml(node))
                .map(String::as_str)
                != Some(ack)
        })
        .map(|node| (node.clone(), ack.to_owned()))
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
    fn v1_changes_nothing_on_any_node() {
        let d = data(&[
            ("registriesYamlActive", "v1"),
            ("node.a.registriesYaml", "v2"),
            ("node.b.registriesYaml", "rolled-back"),
        ]);
        assert!(due_acks(Some(&d), &set(&["a", "b", "c"]), &set(&[])).is_empty());
    }

    #[test]
    fn rollback_is_acknowledged_rolled_back_by_every_ready_node() {
        let d = data(&[
            ("registriesYamlActive", "rollback"),
            ("node.a.registriesYaml", "v2"),
            ("node.b.registriesYaml", "rolled-back"),
        ]);
        assert_eq!(
            due_acks(Some(&d), &set(&["a", "b", "c", "d"]), &set(&["d"])),
            vec![
                ("a".into(), "rolled-back".into()),
                ("c".into(), "rolled-back".into())
            ]
        );
    }

    #[test]
    fn failed_empty_or_unknown_reads_are_never_v1() {
        let switched = data(&[("node.a.registriesYaml", "v2")]);
        let nodes = set(&["a"]);
        assert!(due_acks(None, &nodes, &set(&[])).is_empty());
        assert!(due_acks(Some(&switched), &nodes, &set(&[])).is_empty());
        for bad in ["", "v3", "V2", "rolled-back", "Rollback"] {
            let mut d = switched.clone();
            d.insert("registriesYamlActive".into(), bad.into());
            assert!(due_acks(Some(&d), &nodes, &set(&[])).is_empty(), "{bad:?}");
        }
    }
}
