//! The runner's loop on the leader: read the status, decide the next move, record it, run
//! the step, record the outcome. Every decision is re-derived from the status ConfigMap, so
//! a restarted or newly elected runner resumes exactly where the last one stopped.

use super::RunnerContext;
use super::decide::{Next, Record, Stall, act, next, replay};
use super::watches::RunWatches;
use super::{StepOutcome, daemonset, job};
use crate::pivot::{Direction, Directive};
use crate::status::model::{KEY_CUTOVER_ATTEMPT, Phase, StatusData, StepResult, StepRow, get_u32};
use crate::status::{StoreError, Transition, now_rfc3339};
use crate::step::{DiscoverError, Step, StepKind, StepPlan};
use crate::steplog::{KEEP_DELAY, KeepQueue, TailKeeper};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::Instrument;

/// Extra time a Job step gets past its deadline before the runner gives up on it itself:
/// the Job's own `activeDeadlineSeconds` should end it first.
const JOB_DEADLINE_GRACE: Duration = Duration::from_secs(60);

/// Runs the cutover whenever this replica leads, until the future is dropped.
pub async fn lead(ctx: Arc<RunnerContext>) {
    let mut leading = ctx.leading.clone();
    loop {
        while !*leading.borrow_and_update() {
            if leading.changed().await.is_err() {
                return;
            }
        }
        let lost = async {
            loop {
                if leading.changed().await.is_err() || !*leading.borrow() {
                    return;
                }
            }
        };
        tokio::select! {
            result = drive(&ctx) => {
                if let Err(err) = result {
                    tracing::error!(error = %err, "the runner cannot write the status ConfigMap; retrying in 5s");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
            () = lost => {
                // The Lease is given up on purpose once the cutover stops running; only a
                // Lease lost mid-run is news.
                if ctx.store.cache().phase() == Phase::Running {
                    tracing::warn!("no longer the leader; the runner stops");
                } else {
                    tracing::info!("the cutover is not running; the runner stands by");
                }
            }
        }
    }
}

/// Drives the cutover while the status says it runs; returns only on a refused write.
async fn drive(ctx: &RunnerContext) -> Result<(), StoreError> {
    let mut changes = ctx.store.cache().subscribe();
    let mut run: Option<Run> = None;
    let mut pending: Vec<Transition> = Vec::new();
    let mut discover_backoff = crate::retry::Backoff::new();
    let mut stall = Stall::default();
    loop {
        let (view, held) = replay(current_data(ctx).await?, std::mem::take(&mut pending));
        pending = held;
        if Phase::of(&view) != Phase::Running {
            run = None;
            if !pending.is_empty() {
                apply(ctx, std::mem::take(&mut pending)).await?;
                continue;
            }
            let _ = changes.changed().await;
            continue;
        }
        let current = match run {
            Some(ref mut current) => current,
            None => match plan_for_run(ctx, &view).await {
                Ok(found) => {
                    let tails = KeepQueue::start(tail_keeper(ctx), KEEP_DELAY);
                    // A new run keeps only its own step logs; resuming one deletes nothing
                    // of its own. The first run of a status has no earlier run: the tails
                    // of an earlier status were owned by it, and went with it.
                    let attempt = get_u32(&view, KEY_CUTOVER_ATTEMPT);
                    if attempt > 1 {
                        tails.clean_other_runs(attempt);
                    }
                    run.insert(Run {
                        watches: RunWatches::open(
                            &ctx.client,
                            &ctx.config.namespace,
                            &found,
                            &ctx.jobs,
                        ),
                        plan: found,
                        tails,
                    })
                }
                Err(err @ (DiscoverError::Invalid(_) | DiscoverError::BelowFloor(_))) => {
                    let mut ts = std::mem::take(&mut pending);
                    ts.push(Transition::Halt {
                        step: None,
                        reason: format!("the cutover cannot go on: {err}"),
                        at: now_rfc3339(),
                    });
                    apply(ctx, ts).await?;
                    continue;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the steps; retrying");
                    discover_backoff.wait().await;
                    continue;
                }
            },
        };
        let names: Vec<&str> = current.plan.iter().map(|s| s.name.as_str()).collect();
        let decision = next(&names, current.plan.preflight_count(), &view);
        stall.pace(&decision, &view).await;
        if decision == Next::Complete {
            // Logged before the write: once written, the phase change releases the Lease,
            // which may stop this runner before the write's answer is read.
            tracing::info!(
                steps = names.len(),
                "every step succeeded; completing the cutover"
            );
        }
        let action = act(
            &current.plan,
            decision,
            std::mem::take(&mut pending),
            &now_rfc3339(),
        );
        if let Some(run) = &action.run {
            super::fault_hook::before_step(run.step.as_str());
        }
        let applied = apply(ctx, action.writes).await?;
        let Some(attempt) = action.run.filter(|_| applied) else {
            continue;
        };
        let step = &current.plan.steps()[attempt.index];
        tracing::debug!(step = %attempt.step, attempt = attempt.attempt, "step recorded as running");
        let run =
            crate::status::model::get(&view, crate::contract::key::CUTOVER_LAST_ATTEMPT_STARTED_AT);
        let span = tracing::info_span!("step", %run, step = %attempt.step, attempt = attempt.attempt, job = %attempt.target, resume = attempt.resume);
        let outcome = run_step(
            ctx,
            &mut current.watches,
            step,
            attempt.attempt,
            &attempt.target,
            attempt.resume,
        )
        .instrument(span.clone())
        .await;
        let last = attempt.index + 1 == current.plan.steps().len();
        let outcome = if last && matches!(outcome, StepOutcome::Succeeded(_)) {
            complete_gate(ctx, step, attempt.attempt, outcome)
                .instrument(span.clone())
                .await
        } else {
            outcome
        };
        ctx.metrics.step_terminal_seen();
        if step.pod_spec().is_some() {
            current.tails.keep(
                step.name.clone(),
                get_u32(&view, KEY_CUTOVER_ATTEMPT),
                attempt.target.clone(),
            );
        }
        match &outcome {
            StepOutcome::Succeeded(outputs) => {
                tracing::info!(parent: &span, outputs = ?outputs, "step succeeded");
            }
            StepOutcome::Failed(reason) => tracing::warn!(parent: &span, %reason, "step failed"),
            StepOutcome::Cancelled => {
                tracing::warn!(parent: &span, "step stopped: the cutover is no longer running it");
            }
        }
        match attempt.record(outcome, &now_rfc3339()) {
            Record::HoldBack(t) => pending.push(t),
            Record::Write(t) => {
                apply(ctx, vec![t]).await?;
            }
            Record::Nothing => {}
        }
    }
}

/// The keeper of this status ConfigMap's step log tails.
fn tail_keeper(ctx: &RunnerContext) -> TailKeeper {
    TailKeeper::new(ctx.client.clone(), &ctx.config.namespace, ctx.store.name())
        .with_status_cache(ctx.store.cache().clone())
}

/// The plan of the cutover running now, the watches its steps are followed through, and
/// the keeping of their log tails.
struct Run {
    plan: StepPlan,
    watches: RunWatches,
    tails: KeepQueue,
}

/// The plan of a run beginning now: the one a start on this replica has just validated
/// for this very attempt, else the steps listed afresh.
async fn plan_for_run(ctx: &RunnerContext, view: &StatusData) -> Result<StepPlan, DiscoverError> {
    let attempt = crate::status::model::get(view, crate::status::model::KEY_CUTOVER_ATTEMPT);
    match ctx.handoff.take(attempt) {
        Some(plan) => Ok(plan),
        None => {
            crate::step::discover(&ctx.client, &ctx.config.namespace, &ctx.config.step_policy).await
        }
    }
}

/// Applies `ts` as one write; `Ok(false)` when they no longer apply (someone aborted or
/// another runner moved on), which makes the loop re-read and re-decide.
async fn apply(ctx: &RunnerContext, ts: Vec<Transition>) -> Result<bool, StoreError> {
    if ts.is_empty() {
        return Ok(true);
    }
    match ctx.store.apply(&ts).await {
        Ok(_) => Ok(true),
        Err(StoreError::Rejected(rejected)) => {
            tracing::info!(%rejected, "transition no longer applies; re-reading the status");
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

async fn current_data(ctx: &RunnerContext) -> Result<StatusData, StoreError> {
    let cm = match ctx.store.cache().configmap() {
        Some(cm) => cm,
        None => {
            ctx.store
                .read_or_create(&mut crate::retry::Backoff::new())
                .await?
        }
    };
    Ok(cm.data.clone().unwrap_or_default())
}

/// Runs one attempt of `step` until it ends, its deadline passes, or the status says it is
/// no longer running (aborted).
async fn run_step(
    ctx: &RunnerContext,
    watches: &mut RunWatches,
    step: &Step,
    attempt: u32,
    target: &str,
    resume: bool,
) -> StepOutcome {
    let ns = &ctx.config.namespace;
    let step_name = step.name.as_str();
    let deadline = ctx.renderer.config().deadline_for(step);
    let elapsed = elapsed(ctx, step_name);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let cancelled = cancelled(ctx, step_name, attempt);
    match &step.kind {
        StepKind::Job { .. } | StepKind::Preflight { .. } => {
            let work = async {
                let rendered = match ctx.renderer.render(step, attempt, ns) {
                    Ok(mut rendered) => {
                        rendered.metadata.name = Some(target.to_owned());
                        rendered
                    }
                    Err(err) => {
                        return StepOutcome::Failed(format!("could not render the Job: {err}"));
                    }
                };
                if let Err(reason) = job::ensure(&jobs, &rendered, step_name, resume).await {
                    return StepOutcome::Failed(reason);
                }
                ctx.metrics.next_job_created();
                job::follow(watches.jobs(), &pods, target).await
            };
            let limit = (deadline + JOB_DEADLINE_GRACE).saturating_sub(elapsed);
            let outcome = tokio::select! {
                outcome = tokio::time::timeout(limit, work) => match outcome {
                    Ok(outcome) => return outcome,
                    Err(_) => StepOutcome::Failed(format!(
                        "Job {target} did not finish within the step deadline of {}s",
                        deadline.as_secs()
                    )),
                },
                () = cancelled => StepOutcome::Cancelled,
            };
            // A Job that ended on its own stays for inspection (its TTL removes it); one the
            // runner gave up on, or that was aborted, must stop now.
            job::delete(&jobs, target, crate::contract::COMPONENT_JOB, step_name).await;
            outcome
        }
        StepKind::DaemonSetWait { daemonset } => {
            let (progress, why) =
                watch::channel("the agents were not yet directed to v2 in the record".to_owned());
            let view = watches.daemonset(daemonset);
            let work = async {
                // Every attempt and every resume: the status may show `v2` (a display) while
                // the record, the agents' only source, was never told (a lost write).
                match direct_v2(ctx).await {
                    Ok(directive) => {
                        daemonset::wait(view, &ctx.store, &directive, daemonset, &progress).await
                    }
                    Err(reason) => StepOutcome::Failed(reason),
                }
            };
            let limit = deadline.saturating_sub(elapsed);
            tokio::select! {
                outcome = tokio::time::timeout(limit, work) => outcome.unwrap_or_else(|_| {
                    StepOutcome::Failed(format!(
                        "DaemonSet {daemonset} did not switch every node to registries v2 within {}s: {}",
                        deadline.as_secs(),
                        why.borrow().as_str()
                    ))
                }),
                () = cancelled => StepOutcome::Cancelled,
            }
        }
    }
}

/// How long `step` has run, by its recorded start (none recorded: from now).
fn elapsed(ctx: &RunnerContext, step: &str) -> Duration {
    let started = ctx
        .store
        .cache()
        .configmap()
        .and_then(|cm| cm.data.clone())
        .map(|d| StepRow::read(&d, step).started_at)
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .unwrap_or_else(jiff::Timestamp::now);
    jiff::Timestamp::now()
        .duration_since(started)
        .unsigned_abs()
}

/// The last step's `outcome` (a success) as the completion gate lets it stand: failed,
/// naming the tethers, when gating ones remain; asked again on every retry of the step.
/// It waits for an unsynced report within what is left of the step's deadline.
async fn complete_gate(
    ctx: &RunnerContext,
    step: &Step,
    attempt: u32,
    outcome: StepOutcome,
) -> StepOutcome {
    let left = ctx
        .renderer
        .config()
        .deadline_for(step)
        .saturating_sub(elapsed(ctx, step.name.as_str()));
    tokio::select! {
        verdict = ctx.completion.check(left) => match verdict {
            Ok(()) => outcome,
            Err(why) => {
                tracing::warn!(reason = %why, "the completion gate holds the cutover");
                StepOutcome::Failed(format!("the cutover cannot complete: {why}"))
            }
        },
        () = cancelled(ctx, step.name.as_str(), attempt) => StepOutcome::Cancelled,
    }
}

/// Directs the registry-pivot agents to `v2` in the record Lease (idempotent: a direction
/// they have keeps its time, so their acknowledgements stand), retrying transient errors.
async fn direct_v2(ctx: &RunnerContext) -> Result<Directive, String> {
    let Some(record) = ctx.store.record() else {
        return Err(
            "the service keeps no record Lease to direct the registry-pivot agents in".to_owned(),
        );
    };
    let mut backoff = crate::retry::Backoff::new();
    loop {
        let held = match record.read().await {
            Ok(held) => held,
            Err(err) if crate::retry::is_transient(&err) => {
                tracing::warn!(record = %record.describe(), error = %err, "cannot read the record before directing the agents; retrying");
                backoff.wait().await;
                continue;
            }
            Err(err) => {
                return Err(format!(
                    "cannot read the record Lease {}: {err}",
                    record.describe()
                ));
            }
        };
        held.may_pivot(&record.describe())?;
        match record.direct(Direction::V2).await {
            Ok(directive) => return Ok(directive),
            Err(err) if crate::retry::is_transient(&err) => {
                tracing::warn!(record = %record.describe(), error = %err, "cannot direct the agents to v2; retrying");
                backoff.wait().await;
            }
            Err(err) => {
                return Err(format!(
                    "cannot direct the registry-pivot agents to v2 in Lease {}: {err}",
                    record.describe()
                ));
            }
        }
    }
}

/// Resolves when the status no longer shows `step` running at `attempt` (an abort).
async fn cancelled(ctx: &RunnerContext, step: &str, attempt: u32) {
    let mut rx = ctx.store.cache().subscribe();
    loop {
        let still_running = rx.borrow_and_update().configmap.as_ref().is_none_or(|cm| {
            let data = cm.data.clone().unwrap_or_default();
            let row = StepRow::read(&data, step);
            Phase::of(&data) == Phase::Running
                && row.result == StepResult::Running
                && row.attempt == attempt
        });
        if !still_running {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
