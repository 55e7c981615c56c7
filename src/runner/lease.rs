//! Leader election over a coordination.k8s.io/v1 Lease, so exactly one replica in the whole
//! cluster runs the cutover while the others serve reads and take over when it dies. The
//! decision (acquire, renew, wait) is a pure function of the Lease, of what this replica
//! last observed of it and of the local clock; the async shell only reads and writes it with
//! optimistic concurrency.
//!
//! As in client-go's leader election, expiry is judged by locally observed time: a
//! follower notes when it last saw the holder's record change, and takes over once it has
//! not changed for the Lease duration by its own monotonic clock. It never compares the
//! holder's `renewTime` with its own wall clock, so skewed clocks cannot make two leaders.
//! The holder stops acting once it has not renewed within the renew deadline, which is
//! shorter than the duration: it steps down before any follower may take over.

use crate::retry::is_status;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How a replica takes part in the election.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod name in a cluster).
    pub identity: String,
    /// How long a holder keeps the Lease without renewing it.
    pub duration: Duration,
    /// How long the holder keeps acting without a successful renewal; shorter than
    /// `duration`, so it has stopped before another replica may take over.
    pub renew_deadline: Duration,
    /// How often the holder renews, and others re-check.
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// Defaults of client-go's leader election: a 15 s lease, a 10 s renew deadline.
    pub fn new(name: &str, identity: &str) -> Self {
        LeaseConfig::with_duration(name, identity, Duration::from_secs(15))
    }

    /// A Lease of `duration`, with client-go's proportions: the renew deadline at two
    /// thirds of it, a renewal every quarter.
    pub fn with_duration(name: &str, identity: &str, duration: Duration) -> Self {
        LeaseConfig {
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            renew_deadline: duration * 2 / 3,
            renew_every: duration / 4,
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

/// The parts of a Lease whose change shows its holder is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    holder: String,
    renew_time: Option<MicroTime>,
    acquire_time: Option<MicroTime>,
    transitions: Option<i32>,
    duration_seconds: Option<i32>,
}

impl Record {
    fn of(lease: &Lease) -> Record {
        let spec = lease.spec.clone().unwrap_or_default();
        Record {
            holder: spec.holder_identity.unwrap_or_default(),
            renew_time: spec.renew_time,
            acquire_time: spec.acquire_time,
            transitions: spec.lease_transitions,
            duration_seconds: spec.lease_duration_seconds,
        }
    }
}

/// What this replica last saw of the Lease, and since when (by its own monotonic clock)
/// it has looked that way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    record: Option<Record>,
    since: Instant,
}

impl Observation {
    /// The observation after reading `lease` at `now`: unchanged records keep the time they
    /// were first seen. Pure.
    pub fn after(previous: Option<&Observation>, lease: Option<&Lease>, now: Instant) -> Self {
        let record = lease.map(Record::of);
        match previous {
            Some(previous) if previous.record == record => previous.clone(),
            _ => Observation { record, since: now },
        }
    }
}

/// Decides what to do with `lease`, as observed in `observed`, at local time `now`. Pure.
pub fn decide(
    lease: Option<&Lease>,
    identity: &str,
    observed: &Observation,
    now: Instant,
) -> LeaseAction {
    let Some(lease) = lease else {
        return LeaseAction::Create;
    };
    let record = Record::of(lease);
    if record.holder == identity {
        return LeaseAction::Renew;
    }
    if record.holder.is_empty() {
        return LeaseAction::TakeOver;
    }
    let seconds = record.duration_seconds.unwrap_or(15).max(1).unsigned_abs();
    let unchanged_for = match &observed.record {
        Some(seen) if *seen == record => now.saturating_duration_since(observed.since),
        _ => Duration::ZERO,
    };
    if unchanged_for >= Duration::from_secs(u64::from(seconds)) {
        LeaseAction::TakeOver
    } else {
        LeaseAction::Follow {
            holder: record.holder,
        }
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
/// holds no Lease and makes no request for it. Leadership is given up locally as soon as
/// no renewal has succeeded within the renew deadline, even while a renewal is still in
/// flight, so a hanging API server cannot keep a stale leader acting.
pub async fn elect(
    api: Api<Lease>,
    cfg: LeaseConfig,
    leading: watch::Sender<bool>,
    mut wanted: watch::Receiver<bool>,
) {
    let mut held: Option<Lease> = None;
    let mut observed: Option<Observation> = None;
    // When the last successful write was sent: the Lease counts from no earlier than that.
    let mut renewed_at: Option<Instant> = None;
    loop {
        if !*wanted.borrow_and_update() {
            let last = held.take();
            if last.is_some() || *leading.borrow() {
                leading.send_replace(false);
                release(&api, &cfg, last).await;
                tracing::info!(lease = %cfg.name, "nothing to run; released the lease");
            }
            renewed_at = None;
            if wanted.changed().await.is_err() {
                return;
            }
            continue;
        }
        let sent = Instant::now();
        let round = try_once(&api, &cfg, held.take(), &mut observed);
        let outcome = match renewed_at {
            Some(at) => tokio::select! {
                outcome = round => Some(outcome),
                () = tokio::time::sleep_until(at + cfg.renew_deadline) => None,
            },
            None => Some(round.await),
        };
        match outcome {
            Some(Ok(Some(lease))) => {
                if !*leading.borrow() {
                    tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became the leader");
                }
                held = Some(lease);
                renewed_at = Some(sent);
                leading.send_replace(true);
            }
            Some(Ok(None)) => {
                if *leading.borrow() {
                    tracing::warn!(lease = %cfg.name, "lost the lease to another replica");
                }
                renewed_at = None;
                leading.send_replace(false);
            }
            Some(Err(err)) => {
                tracing::warn!(lease = %cfg.name, error = %err, "lease request failed");
                if renewed_at.is_some_and(|at| at.elapsed() >= cfg.renew_deadline) {
                    step_down(&cfg, &leading);
                    renewed_at = None;
                }
            }
            None => {
                step_down(&cfg, &leading);
                renewed_at = None;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(cfg.renew_every) => {}
            changed = wanted.changed() => if changed.is_err() { return },
        }
    }
}

fn step_down(cfg: &LeaseConfig, leading: &watch::Sender<bool>) {
    tracing::warn!(
        lease = %cfg.name,
        renew_deadline = ?cfg.renew_deadline,
        "could not renew the lease within the renew deadline; stepping down"
    );
    leading.send_replace(false);
}

/// One round: returns the Lease as we wrote it when we hold it afterwards. `cached` is the
/// Lease of our last successful write, so a renewal costs one request, not two; a conflict
/// means someone else wrote it, and the round reads it afresh.
async fn try_once(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    cached: Option<Lease>,
    observed: &mut Option<Observation>,
) -> Result<Option<Lease>, kube::Error> {
    let mut cached = cached;
    loop {
        let from_cache = cached.is_some();
        let current = match cached.take() {
            Some(lease) => Some(lease),
            None => api.get_opt(&cfg.name).await?,
        };
        let now = Instant::now();
        let seen = Observation::after(observed.as_ref(), current.as_ref(), now);
        let action = decide(current.as_ref(), &cfg.identity, &seen, now);
        *observed = Some(seen);
        let stamp = jiff::Timestamp::now();
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
                    &held(lease, &LeaseAction::Create, cfg, stamp),
                )
                .await
            }
            (_, Some(lease)) => {
                api.replace(
                    &cfg.name,
                    &PostParams::default(),
                    &held(lease, &action, cfg, stamp),
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
/// waiting for it to expire. Best effort: a failure only delays the takeover. `last` is the
/// Lease of our last successful write, if known: released over it, it costs one request; a
/// conflict means someone else wrote it since, and it is read afresh.
pub async fn release(api: &Api<Lease>, cfg: &LeaseConfig, last: Option<Lease>) {
    let mut last = last;
    loop {
        let from_memory = last.is_some();
        let mut lease = match last.take() {
            Some(lease) => lease,
            None => match api.get_opt(&cfg.name).await {
                Ok(Some(lease)) => lease,
                _ => return,
            },
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        match api.replace(&cfg.name, &PostParams::default(), &lease).await {
            Ok(_) => return,
            Err(err) if from_memory && is_status(&err, 409) => continue,
            Err(err) => {
                tracing::warn!(lease = %cfg.name, error = %err, "could not release the lease");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Lease held by `holder` whose renewTime is `renewed` seconds after some epoch; the
    /// wall-clock value never matters to the decision, only whether it changes.
    fn lease(holder: Option<&str>, renewed: i64, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(
                    jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(renewed),
                )),
                ..LeaseSpec::default()
            }),
        }
    }

    fn after(previous: Option<&Observation>, lease: &Lease, now: Instant) -> Observation {
        Observation::after(previous, Some(lease), now)
    }

    #[test]
    fn own_missing_and_released_leases() {
        let now = Instant::now();
        let none = Observation::after(None, None, now);
        assert_eq!(decide(None, "a", &none, now), LeaseAction::Create);
        let mine = lease(Some("a"), 1, 15);
        assert_eq!(
            decide(Some(&mine), "a", &after(None, &mine, now), now),
            LeaseAction::Renew
        );
        let released = lease(None, 1, 15);
        assert_eq!(
            decide(Some(&released), "a", &after(None, &released, now), now),
            LeaseAction::TakeOver
        );
    }

    #[test]
    fn expiry_is_judged_by_local_time_since_the_record_last_changed() {
        let t0 = Instant::now();
        // A renewTime far in the past by our wall clock (a holder whose clock lags) is
        // still fresh when we only just saw it.
        let theirs = lease(Some("b"), -1_000_000, 15);
        let seen = after(None, &theirs, t0);
        let follow = LeaseAction::Follow { holder: "b".into() };
        assert_eq!(decide(Some(&theirs), "a", &seen, t0), follow);
        let t14 = t0 + Duration::from_secs(14);
        let seen = after(Some(&seen), &theirs, t14);
        assert_eq!(decide(Some(&theirs), "a", &seen, t14), follow);
        // Renewed at 14 s: the clock starts over, so 16 s is not yet expiry.
        let renewed = lease(Some("b"), -999_990, 15);
        let seen = after(Some(&seen), &renewed, t14);
        let t16 = t0 + Duration::from_secs(16);
        let seen = after(Some(&seen), &renewed, t16);
        assert_eq!(decide(Some(&renewed), "a", &seen, t16), follow);
        // Unchanged for the whole duration: expired.
        let t29 = t14 + Duration::from_secs(15);
        let seen = after(Some(&seen), &renewed, t29);
        assert_eq!(
            decide(Some(&renewed), "a", &seen, t29),
            LeaseAction::TakeOver
        );
    }

    #[test]
    fn a_renew_time_in_the_future_does_not_keep_a_dead_holder() {
        let t0 = Instant::now();
        let ahead = lease(Some("b"), i64::from(i32::MAX), 15);
        let seen = after(None, &ahead, t0);
        let later = t0 + Duration::from_secs(15);
        let seen = after(Some(&seen), &ahead, later);
        assert_eq!(
            decide(Some(&ahead), "a", &seen, later),
            LeaseAction::TakeOver
        );
    }

    #[test]
    fn the_renew_deadline_is_shorter_than_the_lease() {
        let cfg = LeaseConfig::with_duration("l", "a", Duration::from_secs(3));
        assert!(cfg.renew_deadline < cfg.duration);
        assert!(cfg.renew_every < cfg.renew_deadline);
        let default = LeaseConfig::new("l", "a");
        assert_eq!(default.renew_deadline, Duration::from_secs(10));
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
