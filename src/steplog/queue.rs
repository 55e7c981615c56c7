//! When the tails are kept: a little after their step ends, or when the run stops, a batch
//! at a time, so that keeping them stays off the cutover's critical path.
//!
//! Keeping a tail costs the API server a pod list, a `pods/log` read through the kubelet and
//! a ConfigMap create. Sent the moment a step ends, those land on the same API server, and
//! the same etcd, as the next step's status write and Job create, and on the real plane
//! they slowed both by several milliseconds per step. A step's pod stays until its Job's TTL
//! (a day by default), so a second's wait loses nothing: with real Jobs the tail is kept
//! while the next Job runs; with instant ones, once the run is over, all of them behind one
//! pod list.

use super::TailKeeper;
use crate::step::StepName;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// How long after its step ended a tail is kept, unless the run stops first.
pub const KEEP_DELAY: Duration = Duration::from_secs(1);

/// One piece of work of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        tokio::spawn(drain(delay, queued, over, move |batch| {
            let keeper = keeper.clone();
            async move { perform(&keeper, batch).await }
        }));
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

/// Does `batch` through `keeper`: the cleaning first, then every tail behind one pod list.
async fn perform(keeper: &TailKeeper, batch: Vec<Work>) {
    let mut tails = Vec::new();
    for work in batch {
        match work {
            Work::Clean { run } => keeper.clean_retrying(run).await,
            Work::Keep { step, run, job } => tails.push((step, run, job)),
        }
    }
    if !tails.is_empty() {
        keeper.keep_all(&tails).await;
    }
}

/// Hands `work` each batch of queued work that is due: what has waited `delay` since it was
/// queued, or everything once the run is over (`over` resolves), until the queue is gone.
async fn drain<F, Fut>(
    delay: Duration,
    mut queued: mpsc::UnboundedReceiver<(Instant, Work)>,
    mut over: oneshot::Receiver<()>,
    mut work: F,
) where
    F: FnMut(Vec<Work>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut run_over = false;
    let mut next: Option<(Instant, Work)> = None;
    loop {
        let Some((at, first)) = (match next.take() {
            Some(held) => Some(held),
            None => queued.recv().await,
        }) else {
            return;
        };
        if !run_over {
            tokio::select! {
                () = tokio::time::sleep_until(at + delay) => {}
                _ = &mut over => run_over = true,
            }
        }
        let mut batch = vec![first];
        while let Ok((at, more)) = queued.try_recv() {
            if run_over || at + delay <= Instant::now() {
                batch.push(more);
            } else {
                next = Some((at, more));
                break;
            }
        }
        work(batch).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn keep(step: &str) -> Work {
        Work::Keep {
            step: StepName::new(step).unwrap(),
            run: 1,
            job: format!("cutover-{step}-a1"),
        }
    }

    /// One batch handed out, and when.
    type Batch = (Duration, Vec<Work>);

    /// A drain under test: its queue, the end of its run, and each batch it handed out with
    /// the paused clock's time since it started.
    struct Recording {
        queue: mpsc::UnboundedSender<(Instant, Work)>,
        over: oneshot::Sender<()>,
        batches: Arc<Mutex<Vec<Batch>>>,
        task: tokio::task::JoinHandle<()>,
    }

    fn recording(delay: Duration) -> Recording {
        let (queue, rx) = mpsc::unbounded_channel();
        let (over, over_rx) = oneshot::channel();
        let batches = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let log = batches.clone();
        let task = tokio::spawn(drain(delay, rx, over_rx, move |batch| {
            log.lock().unwrap().push((start.elapsed(), batch));
            async {}
        }));
        Recording {
            queue,
            over,
            batches,
            task,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn work_waits_its_delay_and_what_is_due_together_goes_in_one_batch() {
        let delay = Duration::from_secs(1);
        let Recording {
            queue: tx,
            over: _over,
            batches: seen,
            task,
        } = recording(delay);
        tx.send((Instant::now(), keep("a"))).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.send((Instant::now(), keep("b"))).unwrap();
        tokio::time::sleep(Duration::from_millis(900)).await;
        // At 1.0 s "a" was due and "b" was not; "b" follows at 1.3 s.
        assert_eq!(seen.lock().unwrap().len(), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                (Duration::from_secs(1), vec![keep("a")]),
                (Duration::from_millis(1300), vec![keep("b")]),
            ]
        );
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn once_the_run_is_over_everything_queued_goes_at_once() {
        let Recording {
            queue: tx,
            over,
            batches: seen,
            task,
        } = recording(Duration::from_secs(60));
        tx.send((Instant::now(), Work::Clean { run: 2 })).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx.send((Instant::now(), keep("a"))).unwrap();
        tx.send((Instant::now(), keep("b"))).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(seen.lock().unwrap().is_empty(), "nothing is due yet");
        drop(over);
        drop(tx);
        task.await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![(
                Duration::from_millis(20),
                vec![Work::Clean { run: 2 }, keep("a"), keep("b")]
            )]
        );
    }
}
