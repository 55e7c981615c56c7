//! Leader election over a coordination.k8s.io/v1 Lease, so exactly one replica in the whole
//! cluster runs the cutover while the others serve reads and take over when it dies. The
//! decision (acquire, renew, wait) is a pure function of the Lease and the clock; the async
//! shell only reads and writes it with optimistic concurrency.

use crate::retry::is_status;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use std::time::Duration;
use tokio::sync::watch;

/// How a replica takes part in the election.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod name in a cluster).
    pub identity: String,
    /// How long a holder keeps the Lease without renewing it.
    pub duration: Duration,
    /// How often the holder renews, and others re-check.
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// Defaults in the spirit of client-go's leader election (15 s lease, renew well before).
    pub fn new(name: &str, identity: &str) -> Self {
        LeaseConfig {
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(4),
        }
    }
}

/// What to do with the Lease as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAction {
    /// No Lease yet: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Its holder let it expire (or released it): take it over.
    TakeOver,
    /// Someone else holds it and it is fresh.
    Follow {
        /// The holder.
        holder: String,
    },
}

/// Decides what to do with `lease` at `now` (as microseconds since the epoch). Pure.
pub fn decide(lease: Option<&Lease>, identity: &str, now: jiff::Timestamp) -> LeaseAction {
    let Some(lease) = lease else {
        return LeaseAction::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == identity {
        return LeaseAction::Renew;
    }
    if holder.is_empty() {
        return LeaseAction::TakeOver;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15).max(1));
    let renewed = spec.renew_time.or(spec.acquire_time).map(|t| t.0);
    match renewed {
        Some(renewed) if renewed + jiff::SignedDuration::from_secs(duration) > now => {
            LeaseAction::Follow { holder }
        }
        _ => LeaseAction::TakeOver,
    }
}

/// The Lease after `action` by `cfg.identity` at `now`.
fn held(mut lease: Lease, action: &LeaseAction, cfg: &LeaseConfig, now: jiff::Timestamp) -> Lease {
    let mut spec = lease.spec.take().unwrap_or_default();
    if *action != LeaseAction::Renew {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.holder_identity = Some(cfg.identity.clone());
    spec.lease_duration_seconds = Some(i32::try_from(cfg.duration.as_secs()).unwrap_or(15));
    spec.renew_time = Some(MicroTime(now));
    lease.spec = Some(spec);
    lease
}

/// Runs the election until the future is dropped, publishing whether this replica leads.
/// Replicas only contend while `wanted` is true (the cutover is running): an idle service
/// holds no Lease and makes no request for it. Leadership is given up locally as soon as a
/// renewal has not succeeded within the lease duration, before another replica may take
/// it over.
pub async fn elect(
    api: Api<Lease>,
    cfg: LeaseConfig,
    leading: watch::Sender<bool>,
    mut wanted: watch::Receiver<bool>,
) {
    let mut held: Option<Lease> = None;
    let mut last_renewed: Option<tokio::time::Instant> = None;
    loop {
        if !*wanted.borrow_and_update() {
            if held.take().is_some() || *leading.borrow() {
                leading.send_replace(false);
                release(&api, &cfg).await;
                tracing::info!(lease = %cfg.name, "nothing to run; released the lease");
            }
            last_renewed = None;
            if wanted.changed().await.is_err() {
                return;
            }
            continue;
        }
        match try_once(&api, &cfg, held.take(), jiff::Timestamp::now()).await {
            Ok(Some(lease)) => {
                if !*leading.borrow() {
                    tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became the leader");
                }
                held = Some(lease);
                last_renewed = Some(tokio::time::Instant::now());
                leading.send_replace(true);
            }
            Ok(None) => {
                if *leading.borrow() {
                    tracing::warn!(lease = %cfg.name, "lost the lease to another replica");
                }
                last_renewed = None;
                leading.send_replace(false);
            }
            Err(err) => {
                tracing::warn!(lease = %cfg.name, error = %err, "lease request failed");
                let safe = cfg.duration.saturating_sub(cfg.renew_every);
                if last_renewed.is_some_and(|at| at.elapsed() >= safe) {
                    tracing::warn!(lease = %cfg.name, "could not renew in time; stepping down");
                    leading.send_replace(false);
                    last_renewed = None;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(cfg.renew_every) => {}
            changed = wanted.changed() => if changed.is_err() { return },
        }
    }
}

/// One round: returns the Lease as we wrote it when we hold it afterwards. `cached` is the
/// Lease of our last successful write, so a renewal costs one request, not two; a conflict
/// means someone else wrote it, and the round reads it afresh.
async fn try_once(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    cached: Option<Lease>,
    now: jiff::Timestamp,
) -> Result<Option<Lease>, kube::Error> {
    let mut cached = cached;
    loop {
        let from_cache = cached.is_some();
        let current = match cached.take() {
            Some(lease) => Some(lease),
            None => api.get_opt(&cfg.name).await?,
        };
        let action = decide(current.as_ref(), &cfg.identity, now);
        let result = match (&action, current) {
            (LeaseAction::Follow { .. }, _) => return Ok(None),
            (LeaseAction::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(cfg.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec::default()),
                };
                api.create(
                    &PostParams::default(),
                    &held(lease, &LeaseAction::Create, cfg, now),
                )
                .await
            }
            (_, Some(lease)) => {
                api.replace(
                    &cfg.name,
                    &PostParams::default(),
                    &held(lease, &action, cfg, now),
                )
                .await
            }
        };
        match result {
            Ok(lease) => return Ok(Some(lease)),
            Err(err) if is_status(&err, 409) && from_cache => continue,
            Err(err) if is_status(&err, 409) => return Ok(None),
            Err(err) => return Err(err),
        }
    }
}

/// Gives the Lease up at shutdown so another replica takes over at once instead of
/// waiting for it to expire. Best effort: a failure only delays the takeover.
pub async fn release(api: &Api<Lease>, cfg: &LeaseConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    if let Err(err) = api.replace(&cfg.name, &PostParams::default(), &lease).await {
        tracing::warn!(lease = %cfg.name, error = %err, "could not release the lease");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: i64, duration: i32) -> Lease {
        let now = jiff::Timestamp::now();
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(
                    now - jiff::SignedDuration::from_secs(renewed_secs_ago),
                )),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn decisions() {
        let now = jiff::Timestamp::now();
        assert_eq!(decide(None, "a", now), LeaseAction::Create);
        assert_eq!(
            decide(Some(&lease(Some("a"), 1, 15)), "a", now),
            LeaseAction::Renew
        );
        assert_eq!(
            decide(Some(&lease(Some("b"), 1, 15)), "a", now),
            LeaseAction::Follow { holder: "b".into() }
        );
        assert_eq!(
            decide(Some(&lease(Some("b"), 16, 15)), "a", now),
            LeaseAction::TakeOver
        );
        assert_eq!(
            decide(Some(&lease(None, 1, 15)), "a", now),
            LeaseAction::TakeOver
        );
    }

    #[test]
    fn takeover_counts_a_transition_and_renewal_does_not() {
        let cfg = LeaseConfig::new("l", "a");
        let now = jiff::Timestamp::now();
        let taken = held(lease(Some("b"), 30, 15), &LeaseAction::TakeOver, &cfg, now);
        let spec = taken.spec.clone().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(1));
        let renewed = held(taken, &LeaseAction::Renew, &cfg, now);
        assert_eq!(renewed.spec.unwrap().lease_transitions, Some(1));
    }
}
