//! The completion gate (`completion.requireNoTethers`): the last step's success stands only
//! on a synced report with no tether of a kind the cutover pivots. [`decide`] is the pure
//! decision; [`CompletionGate`] the narrow handle the runner asks through.

use super::handle::Tethers;
use super::model::TetherReport;
use std::time::Duration;

/// How many tethers a failure names; the count says how many there are in all.
const NAMED: usize = 3;
/// How long gating tethers may take to clear after the last step (a watch's delay behind
/// the step's own patch) before the cutover fails on them.
const SETTLE: Duration = Duration::from_secs(5);

/// What the report says of completing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No gating tether: complete.
    Pass,
    /// The report has not listed every source yet, and which: wait for it.
    Unsynced(String),
    /// Gating tethers remain: the reason names the first few and the count.
    Tethered(String),
}

/// The verdict of `report`. Pure.
pub fn decide(report: &TetherReport) -> Verdict {
    if !report.synced {
        let unseen: Vec<String> = report
            .unseen
            .iter()
            .map(|u| format!("{} ({})", u.source, u.reason))
            .collect();
        return Verdict::Unsynced(format!(
            "the tether report has not listed every source yet: {}",
            unseen.join("; ")
        ));
    }
    let gating: Vec<_> = report.gating().collect();
    if gating.is_empty() {
        return Verdict::Pass;
    }
    let named: Vec<String> = gating
        .iter()
        .take(NAMED)
        .map(|t| {
            let object = match &t.namespace {
                Some(ns) => format!("{ns}/{}", t.name),
                None => t.name.clone(),
            };
            format!(
                "{} {object} {} = {} ({})",
                t.kind.as_str(),
                t.field,
                t.value,
                t.host
            )
        })
        .collect();
    let more = gating.len().saturating_sub(NAMED);
    Verdict::Tethered(format!(
        "{} tether(s) still point upstream: {}{} (GET /cutover/tethers lists them; fix them and retry)",
        gating.len(),
        named.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    ))
}

/// The runner's question: may the cutover complete?
#[derive(Debug, Clone)]
pub struct CompletionGate {
    tethers: Tethers,
    required: bool,
}

impl CompletionGate {
    /// A gate on `tethers` when `required` (`completion.requireNoTethers`), else open.
    pub fn new(tethers: Tethers, required: bool) -> Self {
        CompletionGate { tethers, required }
    }

    /// A gate that never holds completion.
    pub fn open() -> Self {
        CompletionGate::new(Tethers::disabled("no completion gate"), false)
    }

    /// `Ok` when the cutover may complete; otherwise why not. Waits up to `within` for an
    /// unsynced report to sync, and a little for gating tethers to clear.
    pub async fn check(&self, within: Duration) -> Result<(), String> {
        if !self.required {
            return Ok(());
        }
        let mut reports = self.tethers.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        let mut settle_until: Option<tokio::time::Instant> = None;
        loop {
            let (until, why) = match decide(&reports.borrow_and_update()) {
                Verdict::Pass => return Ok(()),
                Verdict::Unsynced(why) => {
                    (deadline, format!("{why} (within {}s)", within.as_secs()))
                }
                Verdict::Tethered(why) => {
                    let settle =
                        *settle_until.get_or_insert_with(|| tokio::time::Instant::now() + SETTLE);
                    (settle.min(deadline), why)
                }
            };
            let changed = tokio::time::timeout_at(until, reports.changed()).await;
            if !matches!(changed, Ok(Ok(()))) {
                return Err(why);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tethers::model::{Tether, TetherKind, UnseenSource};

    fn tether(kind: TetherKind, name: &str) -> Tether {
        Tether {
            kind,
            namespace: Some("flux-system".into()),
            name: name.into(),
            field: "spec.url".into(),
            value: "https://github.com/x".into(),
            host: "github.com".into(),
            since: "T0".into(),
        }
    }

    fn report(synced: bool, tethers: Vec<Tether>) -> TetherReport {
        TetherReport {
            count: tethers.len(),
            synced,
            unseen: Vec::new(),
            tethers,
        }
    }

    #[test]
    fn only_a_synced_report_without_gating_tethers_passes() {
        assert_eq!(decide(&report(true, Vec::new())), Verdict::Pass);
        let non_gating = vec![
            tether(TetherKind::CrossplaneProvider, "aws"),
            tether(TetherKind::ContainerUrl, "deployment/console"),
            tether(TetherKind::Vcluster, "vc"),
        ];
        assert_eq!(decide(&report(true, non_gating)), Verdict::Pass);
        let mut unsynced = report(false, Vec::new());
        unsynced.unseen.push(UnseenSource {
            source: "pods".into(),
            reason: "not listed yet".into(),
        });
        assert_eq!(
            decide(&unsynced),
            Verdict::Unsynced(
                "the tether report has not listed every source yet: pods (not listed yet)".into()
            )
        );
    }

    #[test]
    fn a_failure_names_the_first_few_and_the_count() {
        let many: Vec<Tether> = (0..5)
            .map(|i| tether(TetherKind::HelmRepository, &format!("r{i}")))
            .chain([tether(TetherKind::CrossplaneProvider, "aws")])
            .collect();
        let Verdict::Tethered(why) = decide(&report(true, many)) else {
            panic!("gating tethers fail");
        };
        assert!(why.starts_with("5 tether(s) still point upstream: helm-repository flux-system/r0 spec.url = https://github.com/x (github.com); "), "{why}");
        assert!(
            why.contains("r2") && !why.contains("r3") && why.contains("and 2 more"),
            "{why}"
        );
        assert!(!why.contains("aws"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_gate_waits_for_a_sync_and_a_clearing_within_its_time() {
        let tethers = Tethers::fixed(report(false, Vec::new()));
        let gate = CompletionGate::new(tethers.clone(), true);
        let late = tethers.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            late.publish(report(true, vec![tether(TetherKind::GitRepository, "g")]));
            tokio::time::sleep(Duration::from_secs(1)).await;
            late.publish(report(true, Vec::new()));
        });
        assert_eq!(gate.check(Duration::from_secs(60)).await, Ok(()));

        tethers.publish(report(true, vec![tether(TetherKind::GitRepository, "g")]));
        let err = gate.check(Duration::from_secs(60)).await.unwrap_err();
        assert!(err.contains("git-repository flux-system/g"), "{err}");

        tethers.publish(report(false, Vec::new()));
        let err = gate.check(Duration::from_secs(30)).await.unwrap_err();
        assert!(
            err.contains("not listed every source") && err.contains("30s"),
            "{err}"
        );
        assert_eq!(
            CompletionGate::new(tethers, false)
                .check(Duration::ZERO)
                .await,
            Ok(())
        );
        assert_eq!(CompletionGate::open().check(Duration::ZERO).await, Ok(()));
    }
}
