//! When the tails are kept: a little after their step ends, or when the run stops, one at a
//! time, so that keeping them stays off the cutover's critical path.
//!
//! Keeping a tail costs the API server a pod list, a `pods/log` read through the kubelet and
//! a ConfigMap create. Sent the moment a step ends, those land on the same API server, and
//! the same etcd, as the next step's status write and Job create, and on the real plane
//! they slowed both by several milliseconds per step. A step's pod stays until its Job's TTL
//! (a day by default), so a second's wait loses nothing: with real Jobs the tail is kept
//! while the next Job runs; with instant ones, once the run is over.

use super::TailKeeper;
use crate::step::StepName;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// How long after its step ended a tail is kept, unless the run stops first.
pub const KEEP_DELAY: Duration = Duration::from_secs(1);

/// One piece of work of the queue.
#[derive(Debug)]
enum Work {
    /// Delete the tails of every run but this one.
    Clean { run: u32 },
    /// Keep the tail of `job`'s log for `step` in `run`.
    Keep {
        step: StepName,
        run: u32,
        job: String,
    },
}

/// The tail keeping of one run. Dropping it (the run stopped, or the Lease was lost) keeps
/// what is still queued at once; the work never outlives it by more than that.
#[derive(Debug)]
pub struct KeepQueue {
    work: mpsc::UnboundedSender<(Instant, Work)>,
    // Dropped with the queue: the worker then stops waiting out the delay.
    _run_over: oneshot::Sender<()>,
}

impl KeepQueue {
    /// Starts the worker that keeps tails through `keeper`, each `delay` after it was queued.
    pub fn start(keeper: TailKeeper, delay: Duration) -> KeepQueue {
        let (work, queued) = mpsc::unbounded_channel();
        let (run_over, over) = oneshot::channel();
        tokio::spawn(drain(keeper, delay, queued, over));
        KeepQueue {
            work,
            _run_over: run_over,
        }
    }

    /// Deletes the tails of every run but `run` (a new run keeps only its own).
    pub fn clean_other_runs(&self, run: u32) {
        self.push(Work::Clean { run });
    }

    /// Keeps the tail of `job`'s log for `step` in run `run`.
    pub fn keep(&self, step: StepName, run: u32, job: String) {
        self.push(Work::Keep { step, run, job });
    }

    fn push(&self, work: Work) {
        // The worker only ends after this queue is dropped.
        let _ = self.work.send((Instant::now(), work));
    }
}

async fn drain(
    keeper: TailKeeper,
    delay: Duration,
    mut queued: mpsc::UnboundedReceiver<(Instant, Work)>,
    mut over: oneshot::Receiver<()>,
) {
    let mut run_over = false;
    while let Some((at, work)) = queued.recv().await {
        if !run_over {
            tokio::select! {
                () = tokio::time::sleep_until(at + delay) => {}
                _ = &mut over => run_over = true,
            }
        }
        match work {
            Work::Clean { run } => keeper.clean_retrying(run).await,
            Work::Keep { step, run, job } => keeper.keep_retrying(&step, run, &job).await,
        }
    }
}
