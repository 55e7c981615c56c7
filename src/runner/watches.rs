//! The watches a step's end is seen through, open before the step starts, never a
//! list-then-watch per step: the cutover's Jobs, watched for the replica's whole life (so a
//! run's first step does not wait for a list either, and a run costs the API server no
//! request for it), and the DaemonSet of each `daemonset-wait` step with its pods, watched
//! from before a run's first step until the [`RunWatches`] is dropped (the run stops, or
//! the Lease is lost).

use super::daemonset::{self, DaemonSetView};
use crate::contract;
use crate::step::{StepKind, StepPlan};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The cutover's Jobs in the namespace, as one reflector sees them.
#[derive(Clone)]
pub struct JobWatch {
    store: Store<Job>,
    changes: watch::Receiver<()>,
    namespace: String,
}

impl JobWatch {
    /// The watch of the cutover's Jobs in `namespace`, and the future that feeds it (to be
    /// run for the replica's life).
    pub fn follow(
        client: &kube::Client,
        namespace: &str,
    ) -> (
        JobWatch,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (store, writer) = reflector::store::<Job>();
        let (tx, changes) = watch::channel(());
        let api: Api<Job> = Api::namespaced(client.clone(), namespace);
        let watch = JobWatch {
            store,
            changes,
            namespace: namespace.to_owned(),
        };
        (watch, follow_jobs(api, writer, tx))
    }

    /// Job `name` as the watch holds it now.
    pub fn get(&self, name: &str) -> Option<Arc<Job>> {
        self.store
            .get(&ObjectRef::new(name).within(&self.namespace))
    }

    /// A receiver woken after every change of the held Jobs.
    pub fn changes(&self) -> watch::Receiver<()> {
        self.changes.clone()
    }
}

/// The open watches of one run.
pub struct RunWatches {
    client: kube::Client,
    namespace: String,
    jobs: JobWatch,
    daemonsets: BTreeMap<String, watch::Receiver<DaemonSetView>>,
    // Dropping the set aborts every watch task.
    tasks: JoinSet<()>,
}

impl RunWatches {
    /// Follows the Jobs through `jobs`, and opens one DaemonSet watch per `daemonset-wait`
    /// step of `plan`. Returns at once: the watches list and sync in the background while
    /// the first step is being recorded.
    pub fn open(
        client: &kube::Client,
        namespace: &str,
        plan: &StepPlan,
        jobs: &JobWatch,
    ) -> RunWatches {
        let mut watches = RunWatches {
            client: client.clone(),
            namespace: namespace.to_owned(),
            jobs: jobs.clone(),
            daemonsets: BTreeMap::new(),
            tasks: JoinSet::new(),
        };
        for step in plan.iter() {
            if let StepKind::DaemonSetWait { daemonset } = &step.kind {
                watches.daemonset(daemonset);
            }
        }
        watches
    }

    /// The Jobs.
    pub fn jobs(&self) -> &JobWatch {
        &self.jobs
    }

    /// DaemonSet `name` with its pods, opening its watch if this run has none yet.
    pub fn daemonset(&mut self, name: &str) -> watch::Receiver<DaemonSetView> {
        if let Some(view) = self.daemonsets.get(name) {
            return view.clone();
        }
        let (tx, rx) = watch::channel(DaemonSetView::default());
        let daemonsets: Api<DaemonSet> = Api::namespaced(self.client.clone(), &self.namespace);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        self.tasks.spawn(daemonset::follow(
            daemonsets,
            pods,
            leases,
            name.to_owned(),
            tx,
        ));
        self.daemonsets.insert(name.to_owned(), rx.clone());
        rx
    }
}

/// Feeds the Job reflector with every Job labelled with a step (whatever else a template
/// sets, a Job the runner creates or adopts carries that label), and wakes followers once
/// each change is in the store.
async fn follow_jobs(api: Api<Job>, writer: reflector::store::Writer<Job>, tx: watch::Sender<()>) {
    let config = watcher::Config::default().labels(contract::LABEL_JOB_STEP);
    let stream = watcher(api, config)
        .backoff(crate::retry::watch_backoff())
        .reflect(writer);
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            // A (re)list is swapped into the store at once on InitDone.
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Ok(_) => tx.send_replace(()),
            Err(err) => tracing::warn!(error = %err, "Job watch error; retrying"),
        }
    }
}
