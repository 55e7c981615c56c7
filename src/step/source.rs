//! The watch-fed step plan: step ConfigMaps followed by a reflector and parsed once per
//! change, so routes that need the plan (the status body's step order, start validation)
//! cost no API request and no parsing.

use super::{StepPlan, StepReport, parse_plan};
use crate::contract;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector;
use kube::runtime::watcher;
use std::sync::Arc;
use tokio::sync::watch;

/// The step plan as the step ConfigMaps say now.
#[derive(Debug, Clone)]
pub enum PlanState {
    /// The first list has not arrived.
    Unsynced,
    /// Valid steps.
    Ready(Arc<StepPlan>),
    /// Invalid (or no) steps, with every problem.
    Invalid(Arc<StepReport>),
}

/// A cheap handle on the latest [`PlanState`].
#[derive(Clone)]
pub struct StepSource {
    rx: watch::Receiver<PlanState>,
}

impl StepSource {
    /// Starts following the step ConfigMaps of `namespace`; the returned future drives the
    /// watch and must be spawned.
    pub fn follow(
        client: kube::Client,
        namespace: &str,
    ) -> (StepSource, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = watch::channel(PlanState::Unsynced);
        let api: Api<ConfigMap> = Api::namespaced(client, namespace);
        let (reader, writer) = reflector::store::<ConfigMap>();
        let config = watcher::Config::default().labels(contract::STEP_SELECTOR);
        let driver = async move {
            let stream = watcher(api, config)
                .backoff(crate::retry::watch_backoff())
                .reflect(writer);
            futures::pin_mut!(stream);
            let mut synced = false;
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => synced = true,
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "step ConfigMap watch error; retrying");
                        continue;
                    }
                }
                if synced {
                    let configmaps: Vec<ConfigMap> =
                        reader.state().iter().map(|cm| (**cm).clone()).collect();
                    let state = match parse_plan(&configmaps) {
                        Ok(plan) => PlanState::Ready(Arc::new(plan)),
                        Err(report) => PlanState::Invalid(Arc::new(report)),
                    };
                    tx.send_replace(state);
                }
            }
        };
        (StepSource { rx }, driver)
    }

    /// A receiver woken on every change of the plan.
    pub fn subscribe(&self) -> watch::Receiver<PlanState> {
        self.rx.clone()
    }

    /// The latest state.
    pub fn current(&self) -> PlanState {
        self.rx.borrow().clone()
    }

    /// Whether the first list has arrived.
    pub fn synced(&self) -> bool {
        !matches!(*self.rx.borrow(), PlanState::Unsynced)
    }

    /// The step names in execution order, when the plan is valid.
    pub fn names(&self) -> Option<Vec<String>> {
        match &*self.rx.borrow() {
            PlanState::Ready(plan) => {
                Some(plan.iter().map(|s| s.name.as_str().to_owned()).collect())
            }
            _ => None,
        }
    }
}
