//! The broadcaster: follows the status cache, derives frames from each change (and takes
//! the frames no status change derives, the tether report's), numbers them, keeps the
//! latest in a bounded replay buffer and fans them out on a broadcast channel. Sending never waits for a receiver, so a slow client cannot stall the engine
//! or the other clients: it lags, and its stream is closed.

use super::derive::derive;
use super::frames::Frame;
use crate::metrics::Metrics;
use crate::status::model::{Phase, StatusData, StepRow};
use crate::status::{StatusCache, StepResult, now_rfc3339};
use crate::step::StepSource;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{broadcast, watch};

/// A frame with its stream id.
#[derive(Debug, Clone)]
pub struct Numbered {
    /// Monotonically increasing from 1 within this replica.
    pub id: u64,
    /// The frame.
    pub frame: Frame,
    /// The frame as JSON, serialized once for every client.
    pub json: String,
}

struct State {
    next_id: u64,
    replay: VecDeque<Arc<Numbered>>,
    last: StatusData,
}

/// What a new client starts from.
pub struct Subscription {
    /// The id of the latest frame (0 before any).
    pub head: u64,
    /// The status as of `head`.
    pub data: StatusData,
    /// The frames after the client's `Last-Event-ID`, when the buffer still holds all of
    /// them; `None` when the client is new or missed too much (it needs a snapshot).
    pub replay: Option<Vec<Arc<Numbered>>>,
    /// Every frame after `head`.
    pub receiver: broadcast::Receiver<Arc<Numbered>>,
    /// Turns true when the service shuts down.
    pub closed: watch::Receiver<bool>,
}

/// The shared broadcaster of one replica.
#[derive(Clone)]
pub struct EventHub {
    state: Arc<Mutex<State>>,
    tx: broadcast::Sender<Arc<Numbered>>,
    closed: Arc<watch::Sender<bool>>,
    replay_capacity: usize,
    metrics: Arc<Metrics>,
}

impl EventHub {
    /// A hub keeping `replay_capacity` frames for reconnecting clients and letting a client
    /// fall `lag_capacity` frames behind before it is dropped.
    pub fn new(replay_capacity: usize, lag_capacity: usize, metrics: Arc<Metrics>) -> Self {
        let (tx, _) = broadcast::channel(lag_capacity.max(1));
        EventHub {
            state: Arc::new(Mutex::new(State {
                next_id: 1,
                replay: VecDeque::new(),
                last: StatusData::new(),
            })),
            tx,
            closed: Arc::new(watch::Sender::new(false)),
            replay_capacity: replay_capacity.max(1),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Takes `data` as the state frames are derived from, without frames (the first state
    /// seen: what happened before is history, not news).
    pub fn baseline(&self, data: StatusData) {
        self.metrics.set_phase(Phase::of(&data));
        self.lock().last = data;
    }

    /// Derives the frames from the last state to `next`, numbers and sends them.
    pub fn publish(&self, next: StatusData, order: &[String]) -> Vec<Arc<Numbered>> {
        let mut state = self.lock();
        let frames = derive(&state.last, &next, order, &now_rfc3339());
        self.observe(&state.last, &next, &frames);
        let sent = frames
            .into_iter()
            .map(|frame| self.send(&mut state, frame))
            .collect();
        state.last = next;
        sent
    }

    /// Numbers and sends a frame that no status change derives (the tether report's), in
    /// the same sequence, so that a reconnecting client gets it replayed too.
    pub fn publish_frame(&self, frame: Frame) -> Arc<Numbered> {
        let mut state = self.lock();
        self.send(&mut state, frame)
    }

    fn send(&self, state: &mut State, frame: Frame) -> Arc<Numbered> {
        let json = serde_json::to_string(&frame).unwrap_or_else(|_| "{}".to_owned());
        let numbered = Arc::new(Numbered {
            id: state.next_id,
            frame,
            json,
        });
        state.next_id += 1;
        if state.replay.len() == self.replay_capacity {
            state.replay.pop_front();
        }
        state.replay.push_back(numbered.clone());
        let _ = self.tx.send(numbered.clone());
        numbered
    }

    fn observe(&self, prev: &StatusData, next: &StatusData, frames: &[Frame]) {
        use super::frames::FramePhase;
        self.metrics.set_phase(Phase::of(next));
        for frame in frames {
            if let Some(result) = frame.phase.rollback_result() {
                let pending = crate::status::rollback_transition::RollbackRecord::read(next)
                    .map_or(0, |r| r.pending_nodes.len());
                self.metrics.rollback(result, pending);
            }
            let Some(step) = frame.step.as_deref() else {
                continue;
            };
            match frame.phase {
                FramePhase::CutoverStepStarted => self.metrics.step_started(step),
                FramePhase::CutoverStepFinished | FramePhase::CutoverStepFailed => {
                    let row = StepRow::read(next, step);
                    let result = if row.result == StepResult::Pending {
                        StepRow::read(prev, step).result
                    } else {
                        row.result
                    };
                    self.metrics
                        .step_ended(step, result.as_str(), duration(&row));
                }
                _ => {}
            }
        }
    }

    /// A new client, resuming after `last_event_id` when it gives one.
    pub fn subscribe(&self, last_event_id: Option<u64>) -> Subscription {
        let state = self.lock();
        let receiver = self.tx.subscribe();
        let head = state.next_id - 1;
        let replay = last_event_id.and_then(|last| {
            // An id past the head was given by another replica, or before a restart: this
            // replica cannot tell what the client missed, so it sends a snapshot.
            if last == head {
                return Some(Vec::new());
            }
            if last > head {
                return None;
            }
            let oldest = state.replay.front()?.id;
            (last + 1 >= oldest).then(|| {
                state
                    .replay
                    .iter()
                    .filter(|n| n.id > last)
                    .cloned()
                    .collect()
            })
        });
        Subscription {
            head,
            data: state.last.clone(),
            replay,
            receiver,
            closed: self.closed.subscribe(),
        }
    }

    /// A receiver of every frame from now on (the Kubernetes Event recorder).
    pub fn receiver(&self) -> broadcast::Receiver<Arc<Numbered>> {
        self.tx.subscribe()
    }

    /// Ends every stream (service shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Follows `cache` until the future is dropped, publishing each change with the step
    /// order `steps` gives.
    pub async fn follow(self, cache: StatusCache, steps: StepSource) {
        let mut rx = cache.subscribe();
        let mut baselined = false;
        loop {
            let data = {
                let snap = rx.borrow_and_update();
                snap.configmap
                    .as_ref()
                    .map(|cm| cm.data.clone().unwrap_or_default())
            };
            if let Some(data) = data {
                if baselined {
                    let order = steps.names().unwrap_or_default();
                    self.publish(data, &order);
                } else {
                    self.baseline(data);
                    baselined = true;
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

fn duration(row: &StepRow) -> Option<std::time::Duration> {
    let start: jiff::Timestamp = row.started_at.parse().ok()?;
    let end: jiff::Timestamp = row.finished_at.parse().ok()?;
    end.duration_since(start).try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::fixtures::{applied, completed, start, started, succeeded};

    fn hub(replay: usize) -> EventHub {
        EventHub::new(replay, 64, Arc::new(Metrics::new()))
    }

    /// The states of a one-step run: started, step started, succeeded, complete.
    fn states() -> Vec<StatusData> {
        let mut data = StatusData::new();
        [
            start(false),
            started("a", 0, 1),
            succeeded("a", 0, 1),
            completed(),
        ]
        .into_iter()
        .map(|t| {
            data = applied(&data, &[t]);
            data.clone()
        })
        .collect()
    }

    #[test]
    fn ids_increase_and_replay_resumes_after_last_event_id() {
        let hub = hub(16);
        hub.baseline(StatusData::new());
        let fresh = hub.subscribe(None);
        assert!(fresh.replay.is_none(), "a new client gets a snapshot");
        for s in states() {
            hub.publish(s, &["a".to_owned()]);
        }
        // Six frames: started and its snapshot, step started, step finished, completed and
        // its snapshot.
        let resumed = hub.subscribe(Some(2));
        let ids: Vec<u64> = resumed.replay.unwrap().iter().map(|n| n.id).collect();
        assert_eq!(ids, [3, 4, 5, 6]);
        assert_eq!(resumed.head, 6);
        assert_eq!(hub.subscribe(Some(6)).replay.unwrap().len(), 0);
        assert!(
            hub.subscribe(Some(99)).replay.is_none(),
            "an id from another replica gets a snapshot"
        );
    }

    #[test]
    fn a_published_frame_shares_the_sequence_and_is_replayed() {
        let hub = hub(16);
        hub.baseline(StatusData::new());
        let mut rx = hub.subscribe(None).receiver;
        let tethers = crate::status::TetherCount {
            count: 1,
            gating: 1,
            synced: true,
            unseen_sources: 0,
        };
        let sent = hub.publish_frame(Frame::tethers("2026-11-23T12:00:00Z", tethers, None));
        assert_eq!(sent.id, 1);
        assert_eq!(rx.try_recv().unwrap().id, 1);
        hub.publish(states()[0].clone(), &["a".to_owned()]);
        let replayed = hub.subscribe(Some(0)).replay.unwrap();
        let ids: Vec<u64> = replayed.iter().map(|n| n.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert!(replayed[0].json.contains("\"cutover-tethers\""));
    }

    #[test]
    fn a_gap_past_the_buffer_asks_for_a_snapshot() {
        let hub = hub(2);
        hub.baseline(StatusData::new());
        for s in states() {
            hub.publish(s, &["a".to_owned()]);
        }
        assert!(hub.subscribe(Some(3)).replay.is_none());
        assert_eq!(hub.subscribe(Some(4)).replay.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn receivers_get_frames_and_a_slow_one_lags_without_blocking() {
        let hub = EventHub::new(16, 2, Arc::new(Metrics::new()));
        hub.baseline(StatusData::new());
        let mut slow = hub.subscribe(None).receiver;
        for s in states() {
            hub.publish(s, &["a".to_owned()]);
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }

    #[test]
    fn step_metrics_follow_the_frames() {
        let metrics = Arc::new(Metrics::new());
        let hub = EventHub::new(16, 16, metrics.clone());
        hub.baseline(StatusData::new());
        for s in states() {
            hub.publish(s, &["a".to_owned()]);
        }
        let text = metrics.encode();
        assert!(
            text.contains("catalyst_cutover_step_results_total{step=\"a\",result=\"success\"} 1")
        );
        assert!(text.contains("catalyst_cutover_phase{phase=\"complete\"} 1"));
        assert!(text.contains(
            "catalyst_cutover_step_duration_seconds_sum{step=\"a\",result=\"success\"} 60"
        ));
    }
}
