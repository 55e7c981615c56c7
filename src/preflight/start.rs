//! The one way a cutover starts, whoever asks: `POST /cutover`, the console's start and
//! `POST /cutover/retry`, the chart's trigger, a first operator login, and the auto-fire's
//! gate once its preflight passed. Every start is decided by the [`Transition::Start`] it
//! writes (tried first on the status its caller saw, then written with optimistic
//! concurrency), is refused when the status shows no cutover but the durable record says
//! one started (a lost status), and needs the plan as the cluster holds it now, validated in
//! full (each daemonset-wait step's DaemonSet included). The validated plan is handed to this
//! replica's runner for the attempt the transition makes, and a held auto-fire goes in the
//! same write. The callers differ only in what they answer.

use super::gate;
use crate::status::model::{KEY_CUTOVER_ATTEMPT, Phase, StatusData, get_u32, rows};
use crate::status::{
    Rejected, StatusStore, StepResult, StoreError, Transition, Trigger, now_rfc3339,
};
use crate::step::{DiscoverError, PlanHandoff, StepPlan, StepPolicy};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::time::Instant;

/// Who asks for a start, and whether it may resume a failed cutover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRequest {
    /// What asks.
    pub trigger: Trigger,
    /// Who asks (recorded as `cutoverTriggeredBy`).
    pub by: String,
    /// Whether a failed cutover is resumed from its failed step rather than refused.
    pub retry: bool,
}

/// What the start's transition says of a status. Pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The start applies, and makes this attempt (`cutoverAttempt`).
    Start {
        /// The attempt.
        attempt: u32,
    },
    /// Nothing is left to do: answered, not refused.
    AlreadyComplete,
}

/// Whether `start` applies to `data`, and the attempt it makes there: the transition itself
/// decides and counts, on a copy. The step count `start` carries changes nothing of it.
pub fn decide(data: &StatusData, start: &Transition) -> Result<Decision, Rejected> {
    let mut after = data.clone();
    match start.apply(&mut after) {
        Ok(()) => Ok(Decision::Start {
            attempt: attempt_of(&after),
        }),
        Err(Rejected::AlreadyComplete) => Ok(Decision::AlreadyComplete),
        Err(refused) => Err(refused),
    }
}

/// Whether a start on `data` must ask the durable record first: only a status that shows
/// no cutover can be a lost one.
pub fn may_be_lost(data: &StatusData) -> bool {
    Phase::of(data) == Phase::Idle
}

/// The attempt a start wrote in `data`.
fn attempt_of(data: &StatusData) -> u32 {
    get_u32(data, KEY_CUTOVER_ATTEMPT)
}

/// Whether a start with `retry` resumed a failed cutover: a step row of `data` (written by
/// the start, which keeps the rows) failed.
pub fn resumed(retry: bool, data: &StatusData) -> bool {
    retry && rows(data).any(|(_, row)| row.result == StepResult::Failed)
}

/// The status shows no cutover, but the durable record says one started: the status was
/// deleted or recreated, and the service does not start the cutover over on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the status ConfigMap shows no cutover, but the record (Lease {record}) says one started at {started_at}{}; \
     the status was deleted or recreated, and the cutover is not run again on its own. \
     Confirm with `kubectl -n {namespace} get lease {name} -o yaml`; only if every step must really run \
     again, delete that Lease (`kubectl -n {namespace} delete lease {name}`, beyond the edit role) and start again",
    finished_at.as_deref().map(|f| format!(" and finished at {f}")).unwrap_or_default()
)]
pub struct StatusLost {
    /// `namespace/name` of the record Lease.
    pub record: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// When the recorded cutover started.
    pub started_at: String,
    /// When it finished, if it did.
    pub finished_at: Option<String>,
}

/// Why a start did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The status cache has not synced yet.
    #[error("the status cache is not synced yet; retry in a moment")]
    NotSynced,
    /// The start's transition does not apply to the status.
    #[error(transparent)]
    Rejected(Rejected),
    /// The status was lost (see [`StatusLost`]).
    #[error(transparent)]
    StatusLost(StatusLost),
    /// The durable record could not be read, so a lost status cannot be ruled out.
    #[error("cannot read the cutover record (Lease {record}): {source}")]
    Record {
        /// `namespace/name` of the record Lease.
        record: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The status could not be read again after the record.
    #[error("cannot read the status ConfigMap {namespace}/{name}: {source}")]
    Status {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The steps cannot be read, are invalid, or come from a chart below the floor.
    #[error("{source}")]
    Steps {
        /// The namespace of the steps.
        namespace: String,
        /// Why (shared by the concurrent starts that asked at once).
        #[source]
        source: Arc<DiscoverError>,
    },
    /// The status write failed for another reason than its transition.
    #[error(transparent)]
    Store(StoreError),
}

impl StartError {
    /// Whether a later try without anyone's change would be refused again (a lost status,
    /// invalid steps, a transition that does not apply), rather than an outage that may pass.
    pub fn is_refusal(&self) -> bool {
        match self {
            StartError::Rejected(_) | StartError::StatusLost(_) => true,
            StartError::Steps { source, .. } => !matches!(**source, DiscoverError::Kube { .. }),
            StartError::NotSynced
            | StartError::Record { .. }
            | StartError::Status { .. }
            | StartError::Store(_) => false,
        }
    }
}

impl From<StoreError> for StartError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Rejected(rejected) => StartError::Rejected(rejected),
            other => StartError::Store(other),
        }
    }
}

/// A start that passed its checks, to be written by [`Starts::commit`].
#[derive(Debug)]
pub struct Ready {
    request: StartRequest,
    at: String,
    plan: StepPlan,
}

impl Ready {
    /// The plan the start validated.
    pub fn plan(&self) -> &StepPlan {
        &self.plan
    }
}

/// What [`Starts::prepare`] found.
#[derive(Debug)]
pub enum Prepared {
    /// The start may be written.
    Ready(Ready),
    /// The cutover is complete: nothing to start.
    AlreadyComplete,
}

/// What the caller's own change in a start's write says of the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then<T, N> {
    /// The start goes in the write; `T` answers the caller.
    Start(T),
    /// The start stays out of it; `N` answers the caller.
    Skip(N),
}

/// What a start did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome<T, N> {
    /// The cutover started (or resumed) with this attempt.
    Started {
        /// The attempt the transition made.
        attempt: u32,
        /// Whether it resumed a failed cutover.
        resumed: bool,
        /// The status written.
        data: StatusData,
        /// What the caller's own change answered.
        answer: T,
    },
    /// The caller's own change kept the start out of its write.
    Skipped {
        /// The status written (or found unchanged).
        data: StatusData,
        /// What the caller's own change answered.
        answer: N,
    },
    /// The cutover is complete: nothing started.
    AlreadyComplete {
        /// The status as last seen.
        data: StatusData,
    },
}

/// One shared discovery: when it began, and what it found.
type Discovery = (Instant, Result<StepPlan, Arc<DiscoverError>>);

/// The start operation of one replica: what every start reads and writes.
#[derive(Clone)]
pub struct Starts {
    client: kube::Client,
    namespace: String,
    step_policy: StepPolicy,
    record_lease: String,
    store: StatusStore,
    handoff: Arc<PlanHandoff>,
    discovery: Arc<tokio::sync::Mutex<Option<Discovery>>>,
}

impl Starts {
    /// Starts in `namespace`, whose steps `step_policy` checks, whose record is the Lease
    /// `record_lease`, written through `store`, the plan handed to the runner by `handoff`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        step_policy: StepPolicy,
        record_lease: &str,
        store: StatusStore,
        handoff: Arc<PlanHandoff>,
    ) -> Self {
        Starts {
            client,
            namespace: namespace.to_owned(),
            step_policy,
            record_lease: record_lease.to_owned(),
            store,
            handoff,
            discovery: Arc::default(),
        }
    }

    /// The status as the watch-fed cache holds it, or [`StartError::NotSynced`].
    pub fn seen(&self) -> Result<StatusData, StartError> {
        let cache = self.store.cache();
        if !cache.synced() {
            return Err(StartError::NotSynced);
        }
        Ok(cache
            .configmap()
            .and_then(|cm| cm.data.clone())
            .unwrap_or_default())
    }

    /// Starts the cutover for `request` on the status `seen`: [`Starts::prepare`], then
    /// [`Starts::commit`] with no change of the caller's.
    pub async fn start(
        &self,
        seen: &StatusData,
        request: StartRequest,
    ) -> Result<StartOutcome<(), Infallible>, StartError> {
        match self.prepare(seen, request).await? {
            Prepared::Ready(ready) => self.commit(ready, |_| Ok(Then::Start(()))).await,
            Prepared::AlreadyComplete => Ok(StartOutcome::AlreadyComplete { data: seen.clone() }),
        }
    }

    /// Checks a start on the status `seen` (the cache's): whether its transition applies
    /// there (refused before anything is read when it does not), that the status was not
    /// lost, and the plan as the cluster holds it now. The record and the steps are read
    /// side by side; the record's answer goes first.
    pub async fn prepare(
        &self,
        seen: &StatusData,
        request: StartRequest,
    ) -> Result<Prepared, StartError> {
        let at = now_rfc3339();
        let probe = start_of(&request, &at, 0);
        match decide(seen, &probe).map_err(StartError::Rejected)? {
            Decision::AlreadyComplete => return Ok(Prepared::AlreadyComplete),
            Decision::Start { .. } => {}
        }
        let lost = async {
            if may_be_lost(seen) {
                self.refuse_lost_status().await
            } else {
                Ok(())
            }
        };
        let (lost, plan) = tokio::join!(lost, self.plan());
        lost?;
        Ok(Prepared::Ready(Ready {
            request,
            at,
            plan: plan?,
        }))
    }

    /// Writes the start `ready`, after `before` (the caller's own change in the same write,
    /// applied first, to the fresh status on every conflict), which says whether the start
    /// still goes in and answers the caller. The written start forgets a held auto-fire.
    pub async fn commit<T, N>(
        &self,
        ready: Ready,
        before: impl Fn(&mut StatusData) -> Result<Then<T, N>, Rejected>,
    ) -> Result<StartOutcome<T, N>, StartError> {
        let Ready { request, at, plan } = ready;
        let start = start_of(&request, &at, plan.len());
        // Offered before the write, keyed by the attempt the transition makes on the status
        // seen last: the runner may begin the moment the write lands, while this request is
        // still answering. A write that lands on a status moved on meanwhile makes another
        // attempt, whose runner lists the steps itself; a start refused leaves a plan as
        // fresh as any.
        if let Ok(Decision::Start { attempt }) = decide(&self.seen().unwrap_or_default(), &start) {
            self.handoff.offer(&attempt.to_string(), plan);
        }
        let written = self
            .store
            .update(|data| {
                let then = before(data)?;
                if let Then::Start(_) = then {
                    start.apply(data)?;
                    gate::clear(data);
                }
                Ok(then)
            })
            .await;
        match written {
            Ok((data, Then::Start(answer))) => {
                let attempt = attempt_of(&data);
                tracing::info!(trigger = request.trigger.as_str(), by = %request.by, retry = request.retry, attempt, "cutover started");
                Ok(StartOutcome::Started {
                    attempt,
                    resumed: resumed(request.retry, &data),
                    data,
                    answer,
                })
            }
            Ok((data, Then::Skip(answer))) => Ok(StartOutcome::Skipped { data, answer }),
            Err(StoreError::Rejected(Rejected::AlreadyComplete)) => {
                Ok(StartOutcome::AlreadyComplete { data: self.seen()? })
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The plan as the cluster holds it now, validated in full so that invalid steps start
    /// nothing. Concurrent callers share one discovery: one that began after a caller
    /// arrived is as fresh as its own, so a thousand starts at once cost one listing, and no
    /// caller gets an answer older than its request.
    pub async fn plan(&self) -> Result<StepPlan, StartError> {
        let arrived = Instant::now();
        let mut shared = self.discovery.lock().await;
        let found = match shared.as_ref() {
            Some((began, found)) if *began >= arrived => found.clone(),
            _ => {
                let began = Instant::now();
                let found = crate::step::discover(&self.client, &self.namespace, &self.step_policy)
                    .await
                    .map_err(Arc::new);
                *shared = Some((began, found.clone()));
                found
            }
        };
        found.map_err(|source| StartError::Steps {
            namespace: self.namespace.clone(),
            source,
        })
    }

    /// [`StatusLost`] when the status shows no cutover but the durable record says one
    /// started: a deleted or recreated status never starts the cutover over on its own.
    ///
    /// The status the caller saw idle may predate the record: a concurrent start may have
    /// written its status and then its record since. A start is noted in the record only
    /// after its status write, so the status read again after the record shows that start
    /// unless the status was lost; only then is it refused as lost (a start that lost the
    /// race goes on and is answered by the status write's optimistic concurrency).
    async fn refuse_lost_status(&self) -> Result<(), StartError> {
        let Some(record) = self.store.record() else {
            return Ok(());
        };
        let noted = record
            .read_shared()
            .await
            .map_err(|source| StartError::Record {
                record: record.describe(),
                source,
            })?;
        let Some(started_at) = noted.started_at else {
            return Ok(());
        };
        let status = self
            .store
            .read_fresh()
            .await
            .map_err(|source| StartError::Status {
                namespace: self.store.namespace().to_owned(),
                name: self.store.name().to_owned(),
                source,
            })?;
        let shown = status.and_then(|cm| cm.data.as_ref().map(Phase::of));
        if shown.is_some_and(|phase| phase != Phase::Idle) {
            return Ok(());
        }
        Err(StartError::StatusLost(StatusLost {
            record: record.describe(),
            namespace: self.namespace.clone(),
            name: self.record_lease.clone(),
            started_at,
            finished_at: noted.finished_at,
        }))
    }
}

/// The start transition of `request` at `at` for a plan of `total_steps`.
fn start_of(request: &StartRequest, at: &str, total_steps: usize) -> Transition {
    Transition::Start {
        at: at.to_owned(),
        trigger: request.trigger,
        by: request.by.clone(),
        total_steps,
        retry: request.retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::model::data_of;

    const T0: &str = "2026-11-23T10:00:00Z";

    fn start(trigger: Trigger, retry: bool) -> Transition {
        let request = StartRequest {
            trigger,
            by: "alice".to_owned(),
            retry,
        };
        start_of(&request, T0, 3)
    }

    #[test]
    fn the_transition_decides_and_counts_the_attempt() {
        let idle = StatusData::new();
        assert_eq!(
            decide(&idle, &start(Trigger::Api, false)),
            Ok(Decision::Start { attempt: 1 })
        );
        let failed = data_of(&[
            ("cutoverPhase", "failed"),
            ("cutoverAttempt", "4"),
            ("failedStep", "b"),
            ("step.b.result", "failed"),
        ]);
        assert_eq!(
            decide(&failed, &start(Trigger::Retry, true)),
            Ok(Decision::Start { attempt: 5 }),
            "the attempt the write will make, counted by the transition alone"
        );
        assert!(matches!(
            decide(&failed, &start(Trigger::Api, false)),
            Err(Rejected::Failed { step, .. }) if step == "b"
        ));
        let mut written = failed.clone();
        start(Trigger::Retry, true).apply(&mut written).unwrap();
        assert_eq!(attempt_of(&written), 5, "the dry run and the write agree");
        assert!(resumed(true, &written));
        assert!(!resumed(false, &written));
        assert!(!resumed(true, &idle));
    }

    #[test]
    fn every_caller_meets_the_same_refusals() {
        let complete = data_of(&[("cutoverPhase", "complete")]);
        let running = data_of(&[("cutoverPhase", "running"), ("currentStep", "a")]);
        let rolled_back = data_of(&[("cutoverPhase", "rolled-back")]);
        for trigger in [
            Trigger::Api,
            Trigger::InternalTrigger,
            Trigger::FirstLogin,
            Trigger::Retry,
        ] {
            let t = start(trigger, false);
            assert_eq!(decide(&complete, &t), Ok(Decision::AlreadyComplete));
            assert!(
                matches!(decide(&running, &t), Err(Rejected::InProgress { current_step }) if current_step == "a")
            );
            // After a rollback, only an operator's start runs the cutover again.
            let operator = matches!(trigger, Trigger::Api | Trigger::Retry);
            assert_eq!(
                decide(&rolled_back, &t).is_ok(),
                operator,
                "{}",
                trigger.as_str()
            );
        }
    }

    #[test]
    fn only_a_status_that_shows_no_cutover_can_be_a_lost_one() {
        assert!(may_be_lost(&StatusData::new()));
        for phase in ["running", "failed", "complete", "rolled-back"] {
            assert!(
                !may_be_lost(&data_of(&[("cutoverPhase", phase)])),
                "{phase}"
            );
        }
    }

    #[test]
    fn outages_are_not_refusals() {
        let lost = StartError::StatusLost(StatusLost {
            record: "catalyst/r".to_owned(),
            namespace: "catalyst".to_owned(),
            name: "r".to_owned(),
            started_at: T0.to_owned(),
            finished_at: None,
        });
        assert!(lost.is_refusal());
        assert!(lost.to_string().contains("kubectl -n catalyst get lease r"));
        assert!(StartError::Rejected(Rejected::AlreadyComplete).is_refusal());
        assert!(!StartError::NotSynced.is_refusal());
        assert!(!StartError::Store(StoreError::Interrupted).is_refusal());
        let invalid = crate::step::parse_plan(&[]).expect_err("no steps is a report");
        let steps = StartError::Steps {
            namespace: "catalyst".to_owned(),
            source: Arc::new(DiscoverError::Invalid(invalid)),
        };
        assert!(steps.is_refusal());
    }
}
