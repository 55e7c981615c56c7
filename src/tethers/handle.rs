//! [`Tethers`]: a cheap handle on the latest tether report, for the route, the page, the
//! metrics, the event stream and the completion gate.

use super::model::{TetherReport, UnseenSource};
use std::sync::Arc;
use tokio::sync::watch;

/// The latest tether report and each change of it.
#[derive(Clone)]
pub struct Tethers {
    tx: Arc<watch::Sender<Arc<TetherReport>>>,
}

impl std::fmt::Debug for Tethers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let report = self.report();
        f.debug_struct("Tethers")
            .field("count", &report.count)
            .field("synced", &report.synced)
            .finish()
    }
}

impl Tethers {
    /// A handle whose report is `report` until [`Tethers::publish`] replaces it.
    pub fn fixed(report: TetherReport) -> Self {
        Tethers {
            tx: Arc::new(watch::Sender::new(Arc::new(report))),
        }
    }

    /// The handle of a replica that runs no tether report: synced, no tether, and one
    /// unseen source saying why, so no reader takes it for "sovereign".
    pub fn disabled(reason: &str) -> Self {
        Tethers::fixed(TetherReport {
            synced: true,
            unseen: vec![UnseenSource {
                source: "*".to_owned(),
                reason: reason.to_owned(),
            }],
            ..TetherReport::default()
        })
    }

    /// The report now.
    pub fn report(&self) -> Arc<TetherReport> {
        self.tx.borrow().clone()
    }

    /// A receiver of the report, told of every change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<TetherReport>> {
        self.tx.subscribe()
    }

    /// Replaces the report when it differs; whether it did.
    pub fn publish(&self, report: TetherReport) -> bool {
        self.tx.send_if_modified(|current| {
            if **current == report {
                false
            } else {
                *current = Arc::new(report);
                true
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_hear_of_changes_only() {
        let tethers = Tethers::fixed(TetherReport::default());
        let mut rx = tethers.subscribe();
        assert!(!tethers.publish(TetherReport::default()));
        assert!(!rx.has_changed().unwrap_or(true));
        let synced = TetherReport {
            synced: true,
            ..TetherReport::default()
        };
        assert!(tethers.publish(synced.clone()));
        rx.changed().await.unwrap();
        assert_eq!(**rx.borrow(), synced);
        assert_eq!(*tethers.clone().report(), synced);
        let off = Tethers::disabled("off");
        assert!(off.report().synced && off.report().unseen[0].reason == "off");
    }
}
