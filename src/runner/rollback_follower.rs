//! The rollback runner: while the status says `rolling-back`, the leader follows the
//! registry-pivot DaemonSet(s), their pods and the status ConfigMap with watches until every
//! node running a current, ready pod acknowledged `rolled-back` (the same count as a
//! daemonset-wait step's, [`super::rollout`]), or the rollback's deadline passes; then it
//! records the end. What to do is [`decide`]d purely; the deadline lives in the status, so a
//! runner that takes over keeps the operator's bound.

use super::RunnerContext;
use super::rollout::{Acks, ack_data, acknowledgements};
use crate::contract::registries;
use crate::pivot::{Direction, Directive};
use crate::status::model::{Phase, StatusData};
use crate::status::rollback_transition::{RollbackRecord, RollbackTransition};
use crate::status::{Rejected, StoreError, rfc3339};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// What the rollback runner does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every current node acknowledged: record `rolled-back`.
    Finish {
        /// The nodes that acknowledged.
        nodes: Vec<String>,
    },
    /// The deadline passed: record `rollback-failed`, naming the nodes.
    Fail {
        /// The nodes that had not acknowledged.
        pending: Vec<String>,
        /// Why, for a person.
        reason: String,
    },
    /// Keep following, at most until `until`.
    Wait {
        /// Why.
        reason: String,
        /// The deadline.
        until: jiff::Timestamp,
    },
}

/// What the watches show: the DaemonSets by name and every pod of the namespace, once both
/// caches are synced.
pub struct Observed<'a> {
    /// The DaemonSets found, by name.
    pub daemonsets: &'a BTreeMap<String, DaemonSet>,
    /// The pods, as the watch's cache shares them.
    pub pods: &'a [Arc<Pod>],
}

/// Decides the rollback's next move at `now`; `observed` is `None` until the watches have
/// synced. Pure.
pub fn decide(
    record: &RollbackRecord,
    observed: Option<&Observed<'_>>,
    data: &StatusData,
    now: jiff::Timestamp,
) -> Decision {
    let deadline = deadline_of(record);
    let (reason, pending) = match observed {
        None => (
            "the registry-pivot DaemonSet and its pods are not read yet".to_owned(),
            BTreeSet::new(),
        ),
        Some(_) if record.daemon_sets.is_empty() => {
            return Decision::Fail {
                pending: Vec::new(),
                reason: "the rollback names no registry-pivot DaemonSet to follow".to_owned(),
            };
        }
        Some(observed) => {
            let mut done = BTreeSet::new();
            let mut pending = BTreeSet::new();
            let mut reasons = Vec::new();
            for name in &record.daemon_sets {
                match observed.daemonsets.get(name) {
                    None => reasons.push(format!("DaemonSet {name} not found")),
                    Some(ds) => {
                        match acknowledgements(ds, observed.pods, data, registries::ROLLED_BACK) {
                            Acks::Done { nodes } => done.extend(nodes),
                            Acks::Waiting {
                                reason,
                                pending: waiting,
                            } => {
                                reasons.push(reason);
                                pending.extend(waiting);
                            }
                        }
                    }
                }
            }
            if reasons.is_empty() {
                return Decision::Finish {
                    nodes: done.into_iter().collect(),
                };
            }
            (reasons.join("; "), pending)
        }
    };
    if now < deadline {
        return Decision::Wait {
            reason,
            until: deadline,
        };
    }
    let nodes: Vec<String> = pending.into_iter().collect();
    let who = if nodes.is_empty() {
        String::new()
    } else {
        format!("nodes {} did not acknowledge; ", nodes.join(", "))
    };
    Decision::Fail {
        reason: format!(
            "the registry pivot was not rolled back by {}: {who}{reason}",
            rfc3339(deadline)
        ),
        pending: nodes,
    }
}

/// The rollback's deadline: as recorded, else the default wait from its request.
fn deadline_of(record: &RollbackRecord) -> jiff::Timestamp {
    record.deadline.parse().unwrap_or_else(|_| {
        record
            .requested_at
            .parse::<jiff::Timestamp>()
            .ok()
            .and_then(|at| {
                at.checked_add(crate::status::rollback_transition::DEFAULT_TIMEOUT)
                    .ok()
            })
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    })
}

/// Follows every rollback while this replica leads, until the future is dropped.
pub async fn lead(ctx: Arc<RunnerContext>) {
    let mut leading = ctx.leading.clone();
    let mut status = ctx.store.cache().subscribe();
    loop {
        let wanted = *leading.borrow_and_update()
            && status.borrow_and_update().phase() == Phase::RollingBack;
        if !wanted {
            tokio::select! {
                changed = leading.changed() => if changed.is_err() { return },
                changed = status.changed() => if changed.is_err() { return },
            }
            continue;
        }
        let mut leads = ctx.leading.clone();
        let lost = async move { leads.wait_for(|leads| !*leads).await.is_ok() };
        tokio::select! {
            result = follow(&ctx) => match result {
                // Ended, or nothing to follow: the next status decides.
                Ok(()) => if status.changed().await.is_err() { return },
                Err(err) => {
                    tracing::error!(error = %err, "the rollback runner cannot write the status ConfigMap; retrying in 5s");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            },
            _ = lost => {
                tracing::warn!("no longer the leader; the rollback runner stops");
            }
        }
    }
}

type Events = std::pin::Pin<Box<dyn futures::Stream<Item = ()> + Send>>;

/// Follows the rollback under way until it ends; returns only then, or on a refused write.
async fn follow(ctx: &RunnerContext) -> Result<(), StoreError> {
    let ns = &ctx.config.namespace;
    let Some(first) = current(ctx) else {
        return Ok(());
    };
    // The DaemonSets are watched by name: the chart grants the service nothing more.
    let ds_api = Api::<DaemonSet>::namespaced(ctx.client.clone(), ns);
    let ds_streams = first.daemon_sets.iter().map(|name| {
        let name = name.clone();
        watcher::watch_object(ds_api.clone(), &name)
            .backoff(crate::retry::watch_backoff())
            .filter_map(move |event| {
                let name = name.clone();
                async move {
                    match event {
                        Ok(found) => Some((name, found)),
                        Err(err) => {
                            tracing::warn!(daemonset = %name, error = %err, "rollback DaemonSet watch error; retrying");
                            None
                        }
                    }
                }
            })
            .boxed()
    });
    let mut ds_events = futures::stream::select_all(ds_streams);
    let (pods, mut pod_events) = reflect(Api::<Pod>::namespaced(ctx.client.clone(), ns));
    // Each DaemonSet as last seen (`None`: absent); a name is missing until its watch spoke.
    let mut seen: BTreeMap<String, Option<DaemonSet>> = BTreeMap::new();
    let (acks, mut ack_events) =
        super::daemonset::follow_acks(Api::<Lease>::namespaced(ctx.client.clone(), ns));
    let mut status = ctx.store.cache().subscribe();
    let mut told = String::new();
    // The rollback the record Lease directs (the status only displays it): read again
    // whenever the status changes until it is one.
    let mut directive: Option<Directive> = None;
    let mut status_changed = true;
    loop {
        status.borrow_and_update();
        let Some(record) = current(ctx) else {
            return Ok(());
        };
        if status_changed && directive.is_none() {
            directive = rollback_directive(ctx).await;
        }
        status_changed = false;
        let synced = is_synced(&pods)
            && is_synced(&acks)
            && first.daemon_sets.iter().all(|name| seen.contains_key(name));
        let by_name: BTreeMap<String, DaemonSet> = seen
            .iter()
            .filter_map(|(name, ds)| Some((name.clone(), ds.clone()?)))
            .collect();
        let pod_list: Vec<Arc<Pod>> = if synced { pods.state() } else { Vec::new() };
        let observed = Observed {
            daemonsets: &by_name,
            pods: &pod_list,
        };
        let data = match &directive {
            Some(directive) => {
                let data = ack_data(&acks.state(), directive);
                super::daemonset::mirror(&ctx.store, &data, directive).await;
                data
            }
            None => StatusData::new(),
        };
        let decision = decide(
            &record,
            synced.then_some(&observed),
            &data,
            jiff::Timestamp::now(),
        );
        let until = match decision {
            Decision::Finish { nodes } => {
                tracing::info!(nodes = nodes.len(), by = %record.requested_by, "every node rolled the registry pivot back");
                let end = RollbackTransition::Finished {
                    request: record.requested_at.clone(),
                    nodes,
                    at: crate::status::now_rfc3339(),
                };
                return conclude(ctx, end).await;
            }
            Decision::Fail { pending, reason } => {
                tracing::warn!(pending = %pending.join(","), %reason, "the registry pivot rollback failed");
                let end = RollbackTransition::Failed {
                    request: record.requested_at.clone(),
                    pending,
                    reason,
                    at: crate::status::now_rfc3339(),
                };
                return conclude(ctx, end).await;
            }
            Decision::Wait { reason, until } => {
                if reason != told {
                    tracing::debug!(%reason, "rollback waiting");
                    told = reason;
                }
                until
            }
        };
        let left = Duration::try_from(until.duration_since(jiff::Timestamp::now()))
            .unwrap_or(Duration::ZERO);
        tokio::select! {
            Some((name, found)) = ds_events.next() => {
                seen.insert(name, found);
            },
            _ = pod_events.next() => {},
            _ = ack_events.next() => status_changed = true,
            changed = status.changed() => {
                if changed.is_err() { return Ok(()) }
                status_changed = true;
            },
            () = tokio::time::sleep(left) => {},
        }
    }
}

/// The rollback the record Lease directs the agents to, `None` while it directs none (a
/// status that says `rolling-back` without the service's word was written by someone else:
/// no node moves, and the rollback fails at its deadline).
async fn rollback_directive(ctx: &RunnerContext) -> Option<Directive> {
    let record = ctx.store.record()?;
    match record.directive().await {
        Ok(Some(d)) if d.direction == Direction::Rollback => Some(d),
        Ok(_) => {
            tracing::warn!(record = %record.describe(), "the status says rolling-back but the record directs no rollback: no node is told to move");
            None
        }
        Err(err) => {
            tracing::warn!(record = %record.describe(), error = %err, "cannot read the agents' direction; trying again at the next status change");
            None
        }
    }
}

/// The rollback under way, `None` once the status no longer says `rolling-back`.
fn current(ctx: &RunnerContext) -> Option<RollbackRecord> {
    let data = ctx
        .store
        .cache()
        .configmap()?
        .data
        .clone()
        .unwrap_or_default();
    if Phase::of(&data) != Phase::RollingBack {
        return None;
    }
    let record = RollbackRecord::read(&data);
    if record.is_none() {
        // Someone wrote the phase by hand: without a request there is nothing to follow.
        tracing::warn!("the status says rolling-back but records no rollback request");
    }
    record
}

/// Writes the end of the rollback; one that no longer applies (another runner ended it,
/// or it was asked for again) is not an error.
async fn conclude(ctx: &RunnerContext, end: RollbackTransition) -> Result<(), StoreError> {
    let result = ctx
        .store
        .update(|data| end.apply(data).map_err(Rejected::from))
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(StoreError::Rejected(rejected)) => {
            tracing::info!(%rejected, "the rollback's end no longer applies");
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// A watch-fed cache of every `K` of `api`, and the stream that feeds it (a unit per change).
fn reflect<K>(api: Api<K>) -> (Store<K>, Events)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let stream = watcher(api, watcher::Config::default())
        .backoff(crate::retry::watch_backoff())
        .reflect(writer)
        .filter_map(|event| async move {
            if let Err(err) = event {
                tracing::warn!(error = %err, "rollback watch error; retrying");
            }
            Some(())
        });
    (reader, Box::pin(stream))
}

/// Whether the watch behind `store` delivered its first complete list.
fn is_synced<K>(store: &Store<K>) -> bool
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store.wait_until_ready().now_or_never().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::model::data_of;
    use k8s_openapi::api::apps::v1::DaemonSetStatus;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    const REQUESTED: &str = "2026-11-28T09:00:00Z";
    const DEADLINE: &str = "2026-11-28T09:10:00Z";

    fn record(daemonsets: &[&str]) -> RollbackRecord {
        let mut data = data_of(&[
            ("rollbackRequestedAt", REQUESTED),
            ("rollbackRequestedBy", "alice"),
            ("rollbackDeadline", DEADLINE),
        ]);
        data.insert("rollbackDaemonSets".into(), daemonsets.join(","));
        RollbackRecord::read(&data).unwrap()
    }

    fn ds(ready: i32) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("registry-pivot".into()),
                uid: Some("uid".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(DaemonSetStatus {
                observed_generation: Some(1),
                desired_number_scheduled: 2,
                updated_number_scheduled: Some(2),
                number_ready: ready,
                ..DaemonSetStatus::default()
            }),
        }
    }

    fn pod(node: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                owner_references: Some(vec![OwnerReference {
                    uid: "uid".into(),
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
                    status: "True".into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn finishes_when_every_current_node_rolled_back() {
        let dss = BTreeMap::from([("registry-pivot".to_owned(), ds(2))]);
        let pods = [Arc::new(pod("n1")), Arc::new(pod("n2"))];
        let observed = Observed {
            daemonsets: &dss,
            pods: &pods,
        };
        let data = data_of(&[
            ("node.n1.registriesYaml", "rolled-back"),
            ("node.n2.registriesYaml", "rolled-back"),
            ("node.gone.registriesYaml", "v2"),
        ]);
        assert_eq!(
            decide(
                &record(&["registry-pivot"]),
                Some(&observed),
                &data,
                at(REQUESTED)
            ),
            Decision::Finish {
                nodes: vec!["n1".into(), "n2".into()]
            }
        );
    }

    #[test]
    fn waits_until_the_deadline_then_names_the_silent_node() {
        let dss = BTreeMap::from([("registry-pivot".to_owned(), ds(2))]);
        let pods = [Arc::new(pod("n1")), Arc::new(pod("n2"))];
        let observed = Observed {
            daemonsets: &dss,
            pods: &pods,
        };
        let data = data_of(&[
            ("node.n1.registriesYaml", "rolled-back"),
            ("node.n2.registriesYaml", "v2"),
        ]);
        let r = record(&["registry-pivot"]);
        assert!(matches!(
            decide(&r, Some(&observed), &data, at(REQUESTED)),
            Decision::Wait { until, .. } if until == at(DEADLINE)
        ));
        match decide(&r, Some(&observed), &data, at(DEADLINE)) {
            Decision::Fail { pending, reason } => {
                assert_eq!(pending, ["n2"]);
                assert!(reason.contains("nodes n2 did not acknowledge"), "{reason}");
                assert!(reason.contains(DEADLINE), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_daemonset_or_unsynced_watches_fail_only_at_the_deadline() {
        let none = BTreeMap::new();
        let observed = Observed {
            daemonsets: &none,
            pods: &[],
        };
        let r = record(&["registry-pivot"]);
        let data = StatusData::new();
        assert!(matches!(
            decide(&r, Some(&observed), &data, at(REQUESTED)),
            Decision::Wait { .. }
        ));
        assert!(matches!(
            decide(&r, None, &data, at(REQUESTED)),
            Decision::Wait { .. }
        ));
        assert!(matches!(
            decide(&r, Some(&observed), &data, at(DEADLINE)),
            Decision::Fail { reason, .. } if reason.contains("registry-pivot not found")
        ));
        assert!(matches!(
            decide(&record(&[]), Some(&observed), &data, at(REQUESTED)),
            Decision::Fail { .. }
        ));
    }
}
