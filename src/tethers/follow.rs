//! The running report: every source fed by its watch into one index, the report rebuilt
//! and published (when it changed) at most every [`SETTLE`] after a change.

use super::config::TetherConfig;
use super::error::TetherError;
use super::handle::Tethers;
use super::index::Source;
use super::model::TetherReport;
use super::sources::{Mode, Shared, feed, index_of, read};
use crate::status::now_rfc3339;
use std::time::Duration;

/// How long a burst of changes (a re-list, a rollout) settles before the report is rebuilt.
const SETTLE: Duration = Duration::from_millis(50);

/// Starts the report of `config`: the handle, and the future that watches every source
/// and publishes each change, to be spawned (it never ends; dropping it stops the
/// watches). With no upstream host configured, the report is disabled, saying so.
pub fn start(
    client: kube::Client,
    config: TetherConfig,
) -> (Tethers, impl Future<Output = ()> + Send + 'static) {
    let enabled = !config.upstream_hosts.iter().all(|h| h.trim().is_empty());
    let tethers = if enabled {
        Tethers::fixed(TetherReport::default())
    } else {
        Tethers::disabled(&TetherError::NoUpstreamHosts.to_string())
    };
    let handle = tethers.clone();
    let driver = async move {
        if !enabled {
            return std::future::pending().await;
        }
        let shared = Shared::new(index_of(&config));
        let watches = Source::ALL.map(|source| {
            feed(
                client.clone(),
                config.clone(),
                source,
                &shared,
                Mode::Follow,
            )
        });
        let publish = async {
            loop {
                handle.publish(read(&shared, |i| i.report(&now_rfc3339())));
                shared.changed().await;
                tokio::time::sleep(SETTLE).await;
            }
        };
        futures::join!(futures::future::join_all(watches), publish);
    };
    (tethers, driver)
}

/// Lists every source once and reports what it found, as the running report would (the
/// CLI's `tethers`, which needs no running service).
pub async fn snapshot(
    client: kube::Client,
    config: &TetherConfig,
) -> Result<TetherReport, TetherError> {
    if config.upstream_hosts.iter().all(|h| h.trim().is_empty()) {
        return Err(TetherError::NoUpstreamHosts);
    }
    let shared = Shared::new(index_of(config));
    let lists =
        Source::ALL.map(|source| feed(client.clone(), config.clone(), source, &shared, Mode::Once));
    futures::future::join_all(lists).await;
    Ok(read(&shared, |i| i.report(&now_rfc3339())))
}
