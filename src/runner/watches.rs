//! The watches a step's end is seen through, open before the step starts, never a
//! list-then-watch per step: the cutover's Jobs and their pods (whose termination messages
//! hold a step's outputs), watched for the replica's whole life (so a run's first step does
//! not wait for a list either, and a run costs the API server no request for it), and the
//! DaemonSet of each `daemonset-wait` step with its pods, watched
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

/// The cutover's Jobs and their pods in the namespace, as two reflectors see them.
#[derive(Clone)]
pub struct JobWatch {
    store: Store<Job>,
    changes: watch::Receiver<()>,
    pods: Store<Pod>,
    pod_changes: watch::Receiver<()>,
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
        let (pods, pod_writer) = reflector::store::<Pod>();
        let (pod_tx, pod_changes) = watch::channel(());
        let api: Api<Job> = Api::namespaced(client.clone(), namespace);
        let pod_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let watch = JobWatch {
            store,
            changes,
            pods,
            pod_changes,
            namespace: namespace.to_owned(),
        };
        let follow = async move {
            tokio::join!(
                follow_labelled(api, writer, tx),
                follow_labelled(pod_api, pod_writer, pod_tx)
            );
        };
        (watch, follow)
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

    /// The held pods labelled with Job `name`'s name (whether they are its own is the
    /// reader's to check).
    pub fn pods_of(&self, name: &str) -> Vec<Pod> {
        self.pods
            .state()
            .into_iter()
            .filter(|pod| {
                pod.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(contract::LABEL_JOB_NAME))
                    .is_some_and(|job| job == name)
            })
            .map(|pod| (*pod).clone())
            .collect()
    }

    /// A receiver woken after every change of the held pods.
    pub fn pod_changes(&self) -> watch::Receiver<()> {
        self.pod_changes.clone()
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

/// Feeds a reflector with every Job (or pod) labelled with a step (whatever else a template
/// sets, a Job the runner creates or adopts, and its pod template, carry that label), and
/// wakes followers once each change is in the store.
async fn follow_labelled<K>(api: Api<K>, writer: reflector::store::Writer<K>, tx: watch::Sender<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
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
            Err(err) => {
                tracing::warn!(kind = K::kind(&()).as_ref(), error = %err, "watch error; retrying");
            }
        }
    }
}
