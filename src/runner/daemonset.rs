//! A `daemonset-wait` step: with the agents directed to `v2` (in the record Lease, by the
//! service only, on every attempt and every resume), evaluate the DaemonSet, its pods and
//! the nodes' acknowledgement Leases, all followed by watches the run opened before its
//! first step, until [`evaluate`] says every current node acknowledged this very directive.
//! The last acknowledgement is thus seen one watch event after it is written. The status
//! ConfigMap's `node.<n>.registriesYaml` keys only display what the Leases say: what a
//! ConfigMap writer puts there counts for nothing.

use super::StepOutcome;
use super::rollout::{Rollout, ack_data, evaluate, mirror_node_acks};
use crate::contract::pivot;
use crate::pivot::Directive;
use crate::status::StatusStore;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::core::{ParseExpressionError, Selector};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::watch;

/// A stream that yields once a reflector has taken in a change.
type Changes = Pin<Box<dyn futures::Stream<Item = ()> + Send>>;

/// A DaemonSet and the pods its selector matches, as the watches hold them now.
#[derive(Clone, Default)]
pub struct DaemonSetView {
    /// The DaemonSet (`None` while it does not exist or before the first event).
    pub daemonset: Option<Arc<DaemonSet>>,
    /// The pods matching its selector.
    pub pods: Vec<Arc<Pod>>,
    /// The nodes' acknowledgement Leases in the namespace.
    pub acks: Vec<Arc<Lease>>,
}

/// Waits until the DaemonSet of `view` is rolled out and every current node acknowledged
/// `directive`, mirroring the acknowledgements into the status for display. The caller
/// bounds it with the step's deadline; `progress` holds why it is still waiting, for the
/// failure reason.
pub async fn wait(
    mut view: watch::Receiver<DaemonSetView>,
    store: &StatusStore,
    directive: &Directive,
    name: &str,
    progress: &watch::Sender<String>,
) -> StepOutcome {
    let mut status_rx = store.cache().subscribe();
    loop {
        let current = view.borrow_and_update().clone();
        status_rx.borrow_and_update();
        let acks = ack_data(&current.acks, directive);
        // Why it still waits is known before the mirror's write, which a loaded API server
        // may hold until the deadline: the failure must name the nodes, not say nothing.
        let rollout = match &current.daemonset {
            Some(ds) => evaluate(ds, &current.pods, &acks),
            None => Rollout::Waiting(format!("DaemonSet {name} not found")),
        };
        if let Rollout::Waiting(reason) = &rollout {
            progress.send_if_modified(|p| {
                if p == reason {
                    false
                } else {
                    tracing::debug!(daemonset = %name, %reason, "waiting");
                    reason.clone_into(p);
                    true
                }
            });
        }
        mirror(store, &acks, directive).await;
        if let Rollout::Done { nodes } = rollout {
            tracing::info!(daemonset = %name, nodes = nodes.len(), "every node is on registries v2");
            return StepOutcome::Succeeded(crate::status::StepOutputs::default());
        }
        tokio::select! {
            changed = view.changed() => if changed.is_err() {
                return StepOutcome::Failed(format!("the watch of DaemonSet {name} ended"));
            },
            changed = status_rx.changed() => if changed.is_err() {
                return StepOutcome::Failed("the status cache closed".to_owned());
            },
        }
    }
}

/// Shows `directive` and its acknowledgements in the status ConfigMap when it shows
/// something else; a failed write is shown again at the next change.
pub async fn mirror(store: &StatusStore, acks: &crate::status::StatusData, directive: &Directive) {
    let shown = store
        .cache()
        .configmap()
        .and_then(|cm| cm.data.clone())
        .unwrap_or_default();
    let mut wanted = shown.clone();
    mirror_node_acks(&mut wanted, acks, directive);
    if wanted == shown {
        return;
    }
    let result = store
        .update(|data| {
            mirror_node_acks(data, acks, directive);
            Ok(())
        })
        .await;
    if let Err(err) = result {
        tracing::warn!(error = %err, "cannot show the nodes' acknowledgements in the status");
    }
}

/// Follows DaemonSet `name` and the pods its selector matches (re-selected when the
/// selector changes) into `view`, until the future is dropped.
pub async fn follow(
    daemonsets: Api<DaemonSet>,
    pods: Api<Pod>,
    leases: Api<Lease>,
    name: String,
    view: watch::Sender<DaemonSetView>,
) {
    let ds_stream = watcher::watch_object(daemonsets, &name).backoff(crate::retry::watch_backoff());
    futures::pin_mut!(ds_stream);
    let (acks, ack_stream) = follow_acks(leases);
    futures::pin_mut!(ack_stream);
    let mut pod_store: Option<(String, Store<Pod>, Changes)> = None;
    loop {
        let pod_events = async {
            match pod_store.as_mut() {
                Some((_, _, stream)) => stream.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = ds_stream.next() => match event {
                Some(Ok(found)) => {
                    let found = found.map(Arc::new);
                    if let Some(ds) = &found {
                        match selector_of(ds) {
                            Ok(selector) => {
                                if pod_store.as_ref().is_none_or(|(s, _, _)| *s != selector) {
                                    pod_store = Some(follow_pods(pods.clone(), selector));
                                }
                            }
                            // The API server validates selectors, so this is a hand-made
                            // object: following no pods keeps the step waiting, never done.
                            Err(err) => {
                                tracing::warn!(daemonset = %name, error = %err, "the DaemonSet's selector cannot be read; following none of its pods");
                                pod_store = None;
                                view.send_modify(|v| v.pods.clear());
                            }
                        }
                    }
                    view.send_modify(|v| v.daemonset = found);
                }
                Some(Err(err)) => {
                    tracing::warn!(daemonset = %name, error = %err, "DaemonSet watch error; retrying");
                    continue;
                }
                None => return,
            },
            _ = pod_events => {},
            Some(()) = ack_stream.next() => {
                let acks = acks.state();
                view.send_modify(|v| v.acks = acks);
                continue;
            },
        }
        if let Some((_, store, _)) = &pod_store {
            let pods = store.state();
            view.send_modify(|v| v.pods = pods);
        }
    }
}

/// The label selector of `ds`'s pods as the API takes it: `matchLabels` and
/// `matchExpressions` both, so that the watch holds exactly the pods the DaemonSet selects.
/// Pure.
fn selector_of(ds: &DaemonSet) -> Result<String, ParseExpressionError> {
    let selector = ds
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    Ok(Selector::try_from(selector)?.to_string())
}

/// The acknowledgement Leases of the namespace, and the stream that keeps them.
pub fn follow_acks(leases: Api<Lease>) -> (Store<Lease>, Changes) {
    let (reader, writer) = reflector::store::<Lease>();
    let stream = watcher(
        leases,
        watcher::Config::default().labels(pivot::ACK_SELECTOR),
    )
    .backoff(crate::retry::watch_backoff())
    .reflect(writer)
    .filter_map(|event| async move {
        if let Err(err) = &event {
            tracing::warn!(error = %err, "acknowledgement Lease watch error; retrying");
        }
        matches!(
            event,
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone)
        )
        .then_some(())
    });
    (reader, Box::pin(stream))
}

fn follow_pods(pods: Api<Pod>, selector: String) -> (String, Store<Pod>, Changes) {
    let (reader, writer) = reflector::store::<Pod>();
    let stream = watcher(pods, watcher::Config::default().labels(&selector))
        .backoff(crate::retry::watch_backoff())
        .reflect(writer)
        .filter_map(|event| async move {
            if let Err(err) = event {
                tracing::warn!(error = %err, "DaemonSet pod watch error; retrying");
            }
            Some(())
        });
    (selector, reader, Box::pin(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemonset(selector: serde_json::Value) -> DaemonSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "registry-pivot"},
            "spec": {
                "selector": selector,
                "template": {"metadata": {"labels": {"app": "registry-pivot"}}},
            },
        }))
        .unwrap()
    }

    #[test]
    fn the_pod_selector_keeps_match_expressions() {
        let ds = daemonset(serde_json::json!({
            "matchLabels": {"app": "registry-pivot"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["node", "edge"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        }));
        assert_eq!(
            selector_of(&ds).unwrap(),
            "app=registry-pivot,tier in (edge,node),!canary"
        );
    }

    #[test]
    fn a_selector_of_expressions_only_selects_no_foreign_pods() {
        let ds = daemonset(serde_json::json!({
            "matchExpressions": [{"key": "app", "operator": "In", "values": ["registry-pivot"]}],
        }));
        let selector = selector_of(&ds).unwrap();
        assert_eq!(selector, "app in (registry-pivot)");
        assert!(
            !selector.is_empty(),
            "an empty selector would watch every pod"
        );
    }

    #[test]
    fn an_unknown_operator_is_an_error_not_an_empty_selector() {
        let ds = daemonset(serde_json::json!({
            "matchExpressions": [{"key": "app", "operator": "Near", "values": ["x"]}],
        }));
        assert!(selector_of(&ds).is_err());
    }
}
