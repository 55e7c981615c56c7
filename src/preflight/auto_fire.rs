//! The auto-fire's gate at work, and the preflight layer's background work: a login that
//! asked for the gate ([`super::gate::request`]) hands the operator to [`AutoFire::request`],
//! and the service's task [`serve`] runs the gate:
//! a preflight run of the preflight steps the cluster holds now (not the cached plan, which
//! may lag an operator's fix), then the cutover's start for that operator when it passed,
//! through the one start ([`Starts`]), or the auto-fire held with the reason. Each gate, and
//! each preflight run's drive, runs in a task of [`serve`]'s, so the service's shutdown ends
//! them with it.

use super::gate;
use super::report::RunResult;
use super::run::Preflights;
use super::start::{Prepared, StartError, StartOutcome, StartRequest, Starts, Then};
use super::work::{Work, WorkReceiver, WorkSender};
use crate::status::model::Phase;
use crate::status::{StatusStore, Trigger};
use std::time::Duration;
use tokio::task::JoinSet;

/// How long the gate waits for a report at a time.
const GATE_POLL: Duration = Duration::from_secs(60);

/// Asks the service's task for the auto-fire's gate of a login.
#[derive(Clone)]
pub struct AutoFire {
    work: WorkSender,
}

impl AutoFire {
    /// A handle that sends gates to `work`.
    pub fn new(work: WorkSender) -> Self {
        AutoFire { work }
    }

    /// Asks for the gate of `operator`'s login; false when the service is stopping (the
    /// status keeps `autoFire=preflight`, and the next login tries again).
    pub fn request(&self, operator: &str) -> bool {
        self.work.send(Work::Gate(operator.to_owned())).is_ok()
    }
}

/// What a gate works with.
#[derive(Clone)]
pub struct Gates {
    /// The preflight runs.
    pub preflights: Preflights,
    /// The one start.
    pub starts: Starts,
    /// The status store, for holding the auto-fire.
    pub store: StatusStore,
}

/// Runs each piece of `work` (gates, preflight runs) in a task of its own, for the service's
/// life: aborting this future (the service's shutdown) aborts the work under way with it.
/// `gates` holds a sender itself (its preflight runs drive through it), so it runs until
/// aborted.
pub async fn serve(gates: Gates, mut work: WorkReceiver) {
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            next = work.recv() => match next {
                Some(Work::Gate(operator)) => {
                    running.spawn(gates.clone().run(operator));
                }
                Some(Work::Run(run)) => {
                    running.spawn(run);
                }
                None => break,
            },
            Some(ended) = running.join_next(), if !running.is_empty() => {
                if let Err(err) = ended
                    && err.is_panic()
                {
                    tracing::error!(error = %err, "a preflight task panicked");
                }
            }
        }
    }
}

impl Gates {
    /// The gate of `operator`'s login: runs (or joins) a preflight run, then starts the
    /// cutover when it passed, or holds the auto-fire with the failed checks.
    async fn run(self, operator: String) {
        let plan = match self.starts.plan().await {
            Ok(plan) => plan,
            Err(err) => {
                self.hold(&operator, &err.to_string()).await;
                return;
            }
        };
        let steps: Vec<_> = plan.iter().filter(|s| s.is_preflight()).cloned().collect();
        let limit = self.preflights.time_limit(&steps) + GATE_POLL;
        let began = tokio::time::Instant::now();
        let outcome = match self
            .preflights
            .start_or_join(&plan, &format!("first login of {operator}"))
            .await
        {
            Ok(started) => loop {
                match self.preflights.report_after(started.run(), GATE_POLL).await {
                    Ok(report)
                        if report.run == started.run()
                            && report.result == RunResult::Running
                            && began.elapsed() < limit => {}
                    Ok(report) => break Ok(report),
                    Err(err) => break Err(err.to_string()),
                }
            },
            Err(err) => Err(err.to_string()),
        };
        let reason = match outcome {
            Ok(report) if report.result == RunResult::Passed => {
                tracing::info!(%operator, run = report.run, "preflight passed; the auto-fire starts the cutover");
                match self.fire(&operator).await {
                    Ok(()) => return,
                    Err(err) => err.to_string(),
                }
            }
            Ok(report) if report.result == RunResult::Failed => report.failed_checks().join("\n"),
            Ok(report) => format!(
                "preflight run {} did not end in time ({})",
                report.run,
                report.result.as_str()
            ),
            Err(err) => format!("the preflight could not run: {err}"),
        };
        self.hold(&operator, &reason).await;
    }

    /// Starts the cutover for `operator` if the auto-fire still waits on an idle cutover
    /// (nobody started it meanwhile); the gate's keys go in the same write either way.
    async fn fire(&self, operator: &str) -> Result<(), StartError> {
        let seen = self.starts.seen()?;
        if !gate::waiting(&seen) || Phase::of(&seen) != Phase::Idle {
            return Ok(());
        }
        let request = StartRequest {
            trigger: Trigger::FirstLogin,
            by: operator.to_owned(),
            retry: false,
        };
        let ready = match self.starts.prepare(&seen, request).await? {
            Prepared::Ready(ready) => ready,
            Prepared::AlreadyComplete => return Ok(()),
        };
        let fired = self
            .starts
            .commit(ready, |data| {
                Ok(if gate::fire(data) {
                    Then::Start(())
                } else {
                    Then::Skip(())
                })
            })
            .await?;
        if let StartOutcome::Skipped { .. } = fired {
            tracing::info!(%operator, "the cutover started meanwhile; the auto-fire is moot");
        }
        Ok(())
    }

    /// Holds the auto-fire with `reason` in the status.
    async fn hold(&self, operator: &str, reason: &str) {
        tracing::warn!(%operator, %reason, "the auto-fire is held until a later login or a start");
        let held = self
            .store
            .update(|data| {
                gate::hold(data, reason);
                Ok(())
            })
            .await;
        if let Err(err) = held {
            tracing::warn!(error = %err, "could not record why the auto-fire is held; a later login tries again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::work_channel;
    use crate::render::{JobRenderer, RenderConfig};
    use crate::status::StatusCache;
    use crate::step::StepPolicy;
    use std::sync::Arc;
    use tokio::sync::oneshot;

    /// Gates whose API server is unreachable: the task's life is tested, not the cluster.
    fn offline_gates(work: &WorkSender) -> Gates {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let store = StatusStore::new(client.clone(), "ns", "status", StatusCache::new());
        let renderer = Arc::new(JobRenderer::new(RenderConfig::default()).unwrap());
        let jobs = crate::runner::watches::JobWatch::follow(&client, "ns").0;
        Gates {
            preflights: Preflights::new(client.clone(), "ns", renderer, jobs, work.clone()),
            starts: Starts::new(
                client,
                "ns",
                StepPolicy::unrestricted(),
                "catalyst-cutover-record",
                store.clone(),
                Arc::default(),
            ),
            store,
        }
    }

    #[tokio::test]
    async fn the_work_under_way_ends_with_the_task() {
        let (work, taken) = work_channel();
        let served = tokio::spawn(serve(offline_gates(&work), taken));
        let (began, running) = oneshot::channel::<()>();
        let (alive, ended) = oneshot::channel::<()>();
        let piece = async move {
            let _alive = alive;
            let _ = began.send(());
            std::future::pending::<()>().await
        };
        assert!(work.send(Work::Run(Box::pin(piece))).is_ok());
        running.await.unwrap();
        served.abort();
        let ended = tokio::time::timeout(Duration::from_secs(5), ended).await;
        assert!(
            matches!(ended, Ok(Err(_))),
            "the piece was dropped with the task, not left running"
        );
    }
}
