//! The auto-fire's gate at work: a login that asked for it ([`super::gate::request`]) hands
//! the operator to [`AutoFire::request`], and the service's task [`serve`] runs the gate:
//! a preflight run of the preflight steps the cluster holds now (not the cached plan, which
//! may lag an operator's fix), then the cutover's start for that operator when it passed,
//! through the one start ([`Starts`]), or the auto-fire held with the reason. Each gate runs
//! in a task of [`serve`]'s, so the service's shutdown ends them with it.

use super::gate;
use super::record::RunResult;
use super::run::Preflights;
use super::start::{Prepared, StartError, StartOutcome, StartRequest, Starts, Then};
use crate::status::model::Phase;
use crate::status::{StatusStore, Trigger};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// How long the gate waits for a report at a time.
const GATE_POLL: Duration = Duration::from_secs(60);

/// Asks the service's gate task to run the auto-fire's gate for a login.
#[derive(Debug, Clone)]
pub struct AutoFire {
    requests: mpsc::UnboundedSender<String>,
}

/// The gate task's end of [`AutoFire`].
pub type AutoFireRequests = mpsc::UnboundedReceiver<String>;

impl AutoFire {
    /// A handle, and the requests [`serve`] takes. Unbounded: a request is made only by a
    /// login of an allow-listed service account whose write set `autoFire=preflight`, and
    /// the gates of one plan join one preflight run.
    pub fn channel() -> (AutoFire, AutoFireRequests) {
        let (requests, taken) = mpsc::unbounded_channel();
        (AutoFire { requests }, taken)
    }

    /// Asks for the gate of `operator`'s login; false when the service is stopping (the
    /// status keeps `autoFire=preflight`, and the next login tries again).
    pub fn request(&self, operator: &str) -> bool {
        self.requests.send(operator.to_owned()).is_ok()
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

/// Runs each requested gate in a task of its own, for the service's life: dropping (or
/// aborting) this future aborts the gates under way with it. Ends once every [`AutoFire`]
/// is gone and the last gate has ended.
pub async fn serve(gates: Gates, mut requests: AutoFireRequests) {
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            request = requests.recv() => match request {
                Some(operator) => {
                    running.spawn(gates.clone().run(operator));
                }
                None => break,
            },
            Some(ended) = running.join_next(), if !running.is_empty() => {
                if let Err(err) = ended
                    && err.is_panic()
                {
                    tracing::error!(error = %err, "an auto-fire gate panicked; the next login tries again");
                }
            }
        }
    }
    while running.join_next().await.is_some() {}
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
