//! A `daemonset-wait` step: with `registriesYamlActive=v2` written (by the engine, on every
//! attempt and every resume), evaluate the DaemonSet, its pods and the status ConfigMap,
//! all followed by watches the run opened before its first step, until [`evaluate`] says
//! every current node acknowledged. The last acknowledgement is thus seen one watch event
//! after it is written.

use super::StepOutcome;
use super::rollout::{Rollout, evaluate};
use crate::status::StatusCache;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::core::{ParseExpressionError, Selector};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::watch;

type PodStream = Pin<Box<dyn futures::Stream<Item = ()> + Send>>;

/// A DaemonSet and the pods its selector matches, as the watches hold them now.
#[derive(Clone, Default)]
pub struct DaemonSetView {
    /// The DaemonSet (`None` while it does not exist or before the first event).
    pub daemonset: Option<Arc<DaemonSet>>,
    /// The pods matching its selector.
    pub pods: Vec<Arc<Pod>>,
}

/// Waits until the DaemonSet of `view` is rolled out and acknowledged. The caller bounds it
/// with the step's deadline; `progress` holds why it is still waiting, for the failure
/// reason.
pub async fn wait(
    mut view: watch::Receiver<DaemonSetView>,
    status: StatusCache,
    name: &str,
    progress: &watch::Sender<String>,
) -> StepOutcome {
    let mut status_rx = status.subscribe();
    loop {
        let current = view.borrow_and_update().clone();
        let data = status_rx
            .borrow_and_update()
            .configmap
            .as_ref()
            .and_then(|cm| cm.data.clone())
            .unwrap_or_default();
        match &current.daemonset {
            Some(ds) => match evaluate(ds, &current.pods, &data) {
                Rollout::Done { nodes } => {
                    tracing::info!(daemonset = %name, nodes = nodes.len(), "every node is on registries v2");
                    return StepOutcome::Succeeded(crate::status::StepOutputs::default());
                }
                Rollout::Waiting(reason) => {
                    progress.send_if_modified(|p| {
                        if *p == reason {
                            false
                        } else {
                            tracing::debug!(daemonset = %name, %reason, "waiting");
                            *p = reason;
                            true
                        }
                    });
                }
            },
            None => {
                progress.send_replace(format!("DaemonSet {name} not found"));
            }
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

/// Follows DaemonSet `name` and the pods its selector matches (re-selected when the
/// selector changes) into `view`, until the future is dropped.
pub async fn follow(
    daemonsets: Api<DaemonSet>,
    pods: Api<Pod>,
    name: String,
    view: watch::Sender<DaemonSetView>,
) {
    let ds_stream = watcher::watch_object(daemonsets, &name).backoff(crate::retry::watch_backoff());
    futures::pin_mut!(ds_stream);
    let mut pod_store: Option<(String, Store<Pod>, PodStream)> = None;
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

fn follow_pods(pods: Api<Pod>, selector: String) -> (String, Store<Pod>, PodStream) {
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
