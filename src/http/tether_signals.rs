//! What the tether report tells beyond its own route: the figures the status body carries,
//! the gauges of `/metrics` and the `cutover-tethers` frames of the event stream, all from
//! the report's watch (a scrape or a GET asks the API server nothing).

use crate::events::{EventHub, Frame};
use crate::metrics::Metrics;
use crate::status::{TetherCount, now_rfc3339};
use crate::tethers::{TetherKind, TetherReport};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The least time between two `cutover-tethers` frames: a rollout replacing many pods moves
/// the count many times a second, and each client would get every step of it. The changes
/// meanwhile are folded into the next frame (the watch keeps only the latest report).
pub const FRAME_GAP: Duration = Duration::from_millis(250);

/// The figures of `report`, as the status body and the frames carry them. Pure.
pub fn count_of(report: &TetherReport) -> TetherCount {
    TetherCount {
        count: report.tethers.len(),
        gating: report.gating().count(),
        synced: report.synced,
        unseen_sources: report.blind_spots().count(),
    }
}

/// How many tethers of each kind `report` holds, every kind named (in [`TetherKind::ALL`]'s
/// order), in one pass. Pure.
pub fn per_kind(report: &TetherReport) -> [(&'static str, usize); TetherKind::ALL.len()] {
    let mut counts = TetherKind::ALL.map(|kind| (kind.as_str(), 0));
    for tether in &report.tethers {
        if let Some(at) = TetherKind::ALL.iter().position(|k| *k == tether.kind) {
            counts[at].1 += 1;
        }
    }
    counts
}

/// The frame that tells the change from `last` (the figures of the previous frame, or of
/// the first report seen) to `now`, if any: the first report is the baseline, told by the
/// status body and not as news. Pure.
pub fn news(last: Option<TetherCount>, now: TetherCount, time: &str) -> Option<Frame> {
    let last = last?;
    (last != now).then(|| Frame::tethers(time, now, Some(last.count)))
}

/// Follows the report until its sender goes: every change sets the gauges, and each change
/// of its figures becomes a frame, at most one per [`FRAME_GAP`].
pub async fn follow(
    mut reports: watch::Receiver<Arc<TetherReport>>,
    events: EventHub,
    metrics: Arc<Metrics>,
) {
    let mut last = None;
    loop {
        let report = reports.borrow_and_update().clone();
        let blind = report.blind_spots().count();
        metrics.set_tethers(per_kind(&report), report.synced, blind);
        let now = count_of(&report);
        if let Some(frame) = news(last, now, &now_rfc3339()) {
            events.publish_frame(frame);
        }
        last = Some(now);
        if reports.changed().await.is_err() {
            return;
        }
        tokio::time::sleep(FRAME_GAP).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tethers::{Tether, UnseenSource};

    fn tether(kind: TetherKind, name: &str) -> Tether {
        Tether {
            kind,
            namespace: Some("apps".to_owned()),
            name: name.to_owned(),
            field: "spec.url".to_owned(),
            value: "https://github.com/x/y".to_owned(),
            host: "github.com".to_owned(),
            since: "2026-11-23T12:00:00Z".to_owned(),
        }
    }

    fn report(tethers: Vec<Tether>) -> TetherReport {
        TetherReport {
            count: tethers.len(),
            synced: true,
            unseen: Vec::new(),
            tethers,
        }
    }

    #[test]
    fn every_kind_is_counted_and_named_even_at_zero() {
        let r = report(vec![
            tether(TetherKind::Image, "a"),
            tether(TetherKind::Image, "b"),
            tether(TetherKind::Vcluster, "c"),
        ]);
        let counts = per_kind(&r);
        assert_eq!(counts.len(), TetherKind::ALL.len());
        assert!(counts.contains(&("image", 2)));
        assert!(counts.contains(&("vcluster", 1)));
        assert!(counts.contains(&("git-repository", 0)));
        assert_eq!(
            count_of(&r),
            TetherCount {
                count: 3,
                gating: 2,
                synced: true,
                unseen_sources: 0
            }
        );
    }

    #[test]
    fn the_first_report_is_the_baseline_and_only_a_change_is_news() {
        let unsynced = count_of(&TetherReport::default());
        assert!(news(None, unsynced, "t").is_none());
        assert!(news(Some(unsynced), unsynced, "t").is_none());
        let planted = count_of(&report(vec![tether(TetherKind::GitRepository, "a")]));
        let frame = news(Some(unsynced), planted, "t").expect("synced with one tether");
        assert_eq!(frame.tethers, Some(planted));
        let fixed = count_of(&report(Vec::new()));
        let frame = news(Some(planted), fixed, "t").expect("fixed");
        assert_eq!(frame.message, "no tethers to upstream hosts, was 1");
        let mut blind = report(Vec::new());
        blind.unseen.push(UnseenSource {
            source: "pods".to_owned(),
            reason: "forbidden".to_owned(),
        });
        assert!(
            news(Some(fixed), count_of(&blind), "t").is_some(),
            "a source lost is news even at the same count"
        );
        let mut absent = report(Vec::new());
        absent
            .unseen
            .push(UnseenSource::not_installed("providers.pkg.crossplane.io"));
        assert_eq!(
            count_of(&absent).unseen_sources,
            0,
            "a kind not installed hides nothing"
        );
    }

    #[tokio::test]
    async fn the_follower_sets_the_gauges_and_publishes_changes() {
        let metrics = Arc::new(Metrics::new());
        let events = EventHub::new(16, 16, metrics.clone());
        let (tx, rx) = watch::channel(Arc::new(TetherReport::default()));
        let mut frames = events.receiver();
        let follower = tokio::spawn(follow(rx, events.clone(), metrics.clone()));
        // The follower has taken its baseline once the gauges exist.
        tokio::time::timeout(Duration::from_secs(10), async {
            while !metrics
                .encode()
                .contains("catalyst_cutover_tethers{kind=\"image\"} 0")
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the baseline in time");
        tx.send_replace(Arc::new(report(vec![tether(TetherKind::Image, "a")])));
        let frame = tokio::time::timeout(Duration::from_secs(10), frames.recv())
            .await
            .expect("a frame in time")
            .expect("a frame");
        assert_eq!(frame.frame.phase.as_str(), "cutover-tethers");
        let text = metrics.encode();
        assert!(
            text.contains("catalyst_cutover_tethers{kind=\"image\"} 1"),
            "{text}"
        );
        assert!(text.contains("catalyst_cutover_tethers{kind=\"vcluster\"} 0"));
        assert!(text.contains("catalyst_cutover_tethers_synced 1"));
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), follower)
            .await
            .expect("the follower ends with its sender")
            .expect("no panic");
    }
}
