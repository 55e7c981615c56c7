//! The scheduler of the node-only mode: binds each pending pod to a simulated node that fits
//! it, through `pods/binding`, as kube-scheduler does.
//!
//! Fitting is what the pods this simulator meets ask for: `nodeSelector`, required node
//! affinity (label expressions, and the `metadata.name` field term the DaemonSet controller
//! writes), and tolerations of the node's `NoSchedule` / `NoExecute` taints. Among the nodes
//! that fit, pods are spread in turn.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, Node, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference, Pod, Taint,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};

use super::nodes::{LABEL_POOL, NodeRegistry};
use super::watched::QuickBackoff;
use super::{SimError, api_error, pod_state, scoped};

/// How soon a pod that fits no node now is looked at again (a node may become Ready, or
/// lose its `not-ready` taint, without the pod changing).
const UNSCHEDULABLE_RETRY: Duration = Duration::from_millis(100);
/// Pods bound at once.
const CONCURRENCY: u16 = 32;

/// A node as scheduling sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidate {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
}

impl Candidate {
    fn of(node: &Node) -> Candidate {
        Candidate {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default(),
        }
    }
}

/// Whether `pod` may run on `node`: its node selector, its required node affinity and its
/// tolerations of the node's scheduling taints. Pure.
pub fn fits(pod: &Pod, node: &Candidate) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    let terms = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.as_slice());
    // Terms are ORed; an empty list of terms matches nothing, as in kube-scheduler.
    let affinity_ok = terms.is_none_or(|terms| terms.iter().any(|t| term_matches(t, node)));
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let taints_ok = node
        .taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|taint| tolerations.iter().any(|t| tolerates(t, taint)));
    selector_ok && affinity_ok && taints_ok
}

/// A term matches when all its expressions and field expressions do; an empty term matches
/// nothing.
fn term_matches(term: &NodeSelectorTerm, node: &Candidate) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let label_ok = exprs
        .iter()
        .all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)));
    let field_ok = fields.iter().all(|r| {
        let value = (r.key == "metadata.name").then_some(node.name.as_str());
        r.key == "metadata.name" && requirement_matches(r, value)
    });
    label_ok && field_ok
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| values.iter().all(|x| x != v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(number),
                values.first().and_then(|b| number(b)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether `toleration` tolerates `taint`, as `v1.Toleration.ToleratesTaint` decides.
fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let key = toleration.key.as_deref().unwrap_or_default();
    let key_ok = key.is_empty() || key == taint.key;
    let value_ok = match toleration.operator.as_deref().unwrap_or("Equal") {
        // An empty key with Exists tolerates every taint.
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    };
    effect_ok && key_ok && value_ok
}

struct Ctx {
    client: Client,
    registry: Arc<NodeRegistry>,
    nodes: Store<Node>,
}

/// Runs the scheduler until the task is aborted: pods of `namespace` (`None`: all) that have
/// no node go to the simulated nodes of `registry`'s pool that fit them.
pub async fn run(client: Client, namespace: Option<String>, registry: Arc<NodeRegistry>) {
    let node_api: Api<Node> = Api::all(client.clone());
    let (nodes, writer) = reflector::store();
    let pool_nodes =
        watcher::Config::default().labels(&format!("{LABEL_POOL}={}", registry.pool()));
    let node_watch = reflector(writer, watcher(node_api, pool_nodes))
        .default_backoff()
        .touched_objects()
        .for_each(|_| futures::future::ready(()));
    let pods: Api<Pod> = scoped(&client, namespace.as_deref());
    let ctx = Arc::new(Ctx {
        client,
        registry,
        nodes,
    });
    let unbound = watcher::Config::default().fields("spec.nodeName=");
    let controller = Controller::new(pods, unbound)
        .trigger_backoff(QuickBackoff::default())
        .with_config(controller::Config::default().concurrency(CONCURRENCY))
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()));
    tokio::join!(node_watch, controller);
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, SimError> {
    if pod_state::node_name(&pod).is_some() || pod.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let mut candidates: Vec<Candidate> = ctx
        .nodes
        .state()
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .map(|n| Candidate::of(n))
        .filter(|c| ctx.registry.contains(&c.name) && fits(&pod, c))
        .collect();
    if candidates.is_empty() {
        return Ok(Action::requeue(UNSCHEDULABLE_RETRY));
    }
    candidates.sort_by(|a, b| a.name.cmp(&b.name));
    let node = candidates.swap_remove(ctx.registry.turn() % candidates.len());
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod_state::name(&pod);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.name.clone()),
            ..Default::default()
        },
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    match api
        .create_subresource::<Binding, serde_json::Value>(
            "binding",
            name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => {
            tracing::debug!(pod = %name, namespace = %ns, node = %node.name, "pod bound");
            Ok(Action::await_change())
        }
        // Bound meanwhile (409) or gone (404): the watch brings the pod's new state.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(api_error(format!("bind pod {ns}/{name} to {}", node.name))(
            e,
        )),
    }
}

fn error_policy(pod: Arc<Pod>, error: &SimError, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(pod = %pod_state::name(&pod), %error, "scheduler retries");
    Action::requeue(Duration::from_millis(200))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, taints: serde_json::Value) -> Candidate {
        Candidate {
            name: name.into(),
            labels: BTreeMap::from([("zone".to_owned(), "a".to_owned())]),
            taints: serde_json::from_value(taints).unwrap(),
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c"}]);
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn node_selector_and_affinity_choose_nodes() {
        let n = node("n1", json!([]));
        assert!(fits(&pod(json!({})), &n));
        assert!(fits(&pod(json!({"nodeSelector": {"zone": "a"}})), &n));
        assert!(!fits(&pod(json!({"nodeSelector": {"zone": "b"}})), &n));
        // The term the DaemonSet controller writes: the node by name.
        let by_name = |name: &str| {
            pod(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [name]}]}]
                }}}}),
            )
        };
        assert!(fits(&by_name("n1"), &n));
        assert!(!fits(&by_name("n2"), &n));
        let expr = |op: &str| {
            pod(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": op, "values": ["a"]}]}]
                }}}}),
            )
        };
        assert!(fits(&expr("In"), &n));
        assert!(!fits(&expr("NotIn"), &n));
    }

    #[test]
    fn taints_need_tolerations() {
        let tainted = node(
            "n1",
            json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]),
        );
        assert!(!fits(&pod(json!({})), &tainted));
        let tolerating = pod(json!({"tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}
        ]}));
        assert!(fits(&tolerating, &tainted));
        // The NoExecute toleration every pod gets by default does not cover NoSchedule.
        let no_execute = pod(json!({"tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ]}));
        assert!(!fits(&no_execute, &tainted));
        assert!(fits(
            &pod(json!({"tolerations": [{"operator": "Exists"}]})),
            &tainted
        ));
        let soft = node("n2", json!([{"key": "k", "effect": "PreferNoSchedule"}]));
        assert!(fits(&pod(json!({})), &soft));
        let valued = node(
            "n3",
            json!([{"key": "k", "value": "v", "effect": "NoSchedule"}]),
        );
        assert!(fits(
            &pod(json!({"tolerations": [{"key": "k", "value": "v"}]})),
            &valued
        ));
        assert!(!fits(
            &pod(json!({"tolerations": [{"key": "k", "value": "w"}]})),
            &valued
        ));
    }
}
