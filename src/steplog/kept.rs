//! The tail of a step's log kept when the step ends, in a ConfigMap per run and step owned
//! by the status ConfigMap (so it goes with it), labelled with the run so that a new run
//! finds the earlier runs' tails by label and deletes each by name. Saving runs beside the
//! cutover (see [`super::queue`]): it never delays the next step, and a failed save loses
//! only that tail (logged), never the cutover.

use super::source::newest_pod;
use super::tail::{MAX_TAIL_BYTES, Tail};
use crate::contract;
use crate::retry::{Backoff, is_status, is_transient};
use crate::status::StatusCache;
use crate::step::StepName;
use futures::AsyncReadExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, Preconditions};
use kube::{Client, Resource, ResourceExt};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// `app.kubernetes.io/component` of a kept log tail.
pub const COMPONENT_STEP_LOG: &str = "cutover-step-log";
/// Label naming the run (the status's `cutoverAttempt`) a kept tail belongs to.
pub const LABEL_RUN: &str = "cutover.openova.io/run";
/// Data key: the log's tail.
pub const DATA_LOG: &str = "log";
/// Data key: `"true"` when the log was longer than the tail.
pub const DATA_TRUNCATED: &str = "truncated";
/// Data key: the Job that ran the step.
pub const DATA_JOB: &str = "job";
/// Data key: the pod the log was read from.
pub const DATA_POD: &str = "pod";
/// Data key: the container the log was read from.
pub const DATA_CONTAINER: &str = "container";
/// Longest ConfigMap name (a DNS-1123 subdomain).
const MAX_NAME_LEN: usize = 253;
/// Attempts at saving a tail before giving up on it.
const SAVE_TRIES: usize = 5;

/// The ConfigMap keeping `step`'s log tail of run `run`: `<status>-log-r<run>-<step>`.
/// A status name so long that the whole would not be a valid name is cut and followed by a
/// short hash of it, so two such names still differ. Pure.
pub fn configmap_name(status: &str, run: u32, step: &StepName) -> String {
    let tail = format!("-log-r{run}-{}", step.as_str());
    if status.len() + tail.len() <= MAX_NAME_LEN {
        return format!("{status}{tail}");
    }
    let hash = hex::encode(Sha256::digest(status.as_bytes()));
    let hash = &hash[..8];
    let room = MAX_NAME_LEN - tail.len() - hash.len() - 1;
    // A ConfigMap name is ASCII, so any cut is a character boundary; a cut ending in '-' or
    // '.' would not be a valid name.
    let head = status[..room.min(status.len())].trim_end_matches(['-', '.']);
    format!("{head}-{hash}{tail}")
}

/// The label selector of every kept tail of runs other than `run`.
pub fn other_runs_selector(run: u32) -> String {
    format!(
        "{}={},{}={COMPONENT_STEP_LOG},{LABEL_RUN}!={run}",
        contract::LABEL_PART_OF,
        contract::PART_OF,
        contract::LABEL_COMPONENT,
    )
}

/// One kept tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptLog {
    /// The step.
    pub step: StepName,
    /// The run (`cutoverAttempt`) it ran in.
    pub run: u32,
    /// The Job that ran it.
    pub job: String,
    /// The pod the log was read from.
    pub pod: String,
    /// The container the log was read from.
    pub container: String,
    /// The last bytes of the log, cut on a character boundary.
    pub log: String,
    /// Whether the log was longer than `log`.
    pub truncated: bool,
}

impl KeptLog {
    /// The ConfigMap holding it in `namespace`, owned by the status ConfigMap `owner`. Pure.
    pub fn to_configmap(&self, namespace: &str, owner: &ConfigMap) -> ConfigMap {
        let status_name = owner.name_any();
        let labels = BTreeMap::from([
            (
                contract::LABEL_PART_OF.to_owned(),
                contract::PART_OF.to_owned(),
            ),
            (
                contract::LABEL_COMPONENT.to_owned(),
                COMPONENT_STEP_LOG.to_owned(),
            ),
            (
                contract::LABEL_JOB_STEP.to_owned(),
                self.step.as_str().to_owned(),
            ),
            (LABEL_RUN.to_owned(), self.run.to_string()),
        ]);
        let data = BTreeMap::from([
            (DATA_LOG.to_owned(), self.log.clone()),
            (DATA_TRUNCATED.to_owned(), self.truncated.to_string()),
            (DATA_JOB.to_owned(), self.job.clone()),
            (DATA_POD.to_owned(), self.pod.clone()),
            (DATA_CONTAINER.to_owned(), self.container.clone()),
        ]);
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(configmap_name(&status_name, self.run, &self.step)),
                namespace: Some(namespace.to_owned()),
                labels: Some(labels),
                owner_references: owner.controller_owner_ref(&()).map(|mut r| {
                    // Owned, not controlled: nothing reconciles these ConfigMaps.
                    r.controller = None;
                    r.block_owner_deletion = None;
                    vec![r]
                }),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        }
    }

    /// The kept tail in `cm`, if it is one for `step` and `run`. Pure.
    pub fn from_configmap(cm: &ConfigMap, step: &StepName, run: u32) -> Option<KeptLog> {
        let labels = cm.metadata.labels.as_ref()?;
        let label = |k: &str| labels.get(k).map(String::as_str);
        if label(contract::LABEL_COMPONENT) != Some(COMPONENT_STEP_LOG)
            || label(contract::LABEL_JOB_STEP) != Some(step.as_str())
            || label(LABEL_RUN) != Some(run.to_string().as_str())
        {
            return None;
        }
        let data = cm.data.as_ref()?;
        let field = |k: &str| data.get(k).cloned().unwrap_or_default();
        Some(KeptLog {
            step: step.clone(),
            run,
            job: field(DATA_JOB),
            pod: field(DATA_POD),
            container: field(DATA_CONTAINER),
            log: field(DATA_LOG),
            truncated: field(DATA_TRUNCATED) == "true",
        })
    }
}

/// Why a tail could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    /// The Job has no pod left to read.
    #[error("Job {0} has no pod to read the log of")]
    NoPod(String),
    /// The pod names no container.
    #[error("pod {0} has no container")]
    NoContainer(String),
    /// The status ConfigMap to own the tail is gone.
    #[error("the status ConfigMap {0} is gone")]
    NoStatus(String),
    /// An API call failed.
    #[error("could not {action}: {source}")]
    Api {
        /// What was being done.
        action: &'static str,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Reading the log's stream failed.
    #[error("could not read the log of pod {pod}: {source}")]
    Read {
        /// The pod.
        pod: String,
        /// The stream's error.
        #[source]
        source: std::io::Error,
    },
}

impl KeepError {
    fn is_transient(&self) -> bool {
        match self {
            KeepError::Api { source, .. } => is_transient(source),
            KeepError::Read { .. } => true,
            _ => false,
        }
    }
}

/// Keeps and reads the step log tails of one status ConfigMap.
#[derive(Clone)]
pub struct TailKeeper {
    client: Client,
    namespace: String,
    status: String,
    status_cache: Option<StatusCache>,
}

impl std::fmt::Debug for TailKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailKeeper")
            .field("namespace", &self.namespace)
            .field("status", &self.status)
            .finish()
    }
}

impl TailKeeper {
    /// The keeper of the tails of status ConfigMap `status` in `namespace`.
    pub fn new(client: Client, namespace: &str, status: &str) -> Self {
        TailKeeper {
            client,
            namespace: namespace.to_owned(),
            status: status.to_owned(),
            status_cache: None,
        }
    }

    fn configmaps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The same keeper, taking the status ConfigMap that owns each tail from `cache` (its
    /// watch) rather than from a GET per tail.
    pub fn with_status_cache(mut self, cache: StatusCache) -> Self {
        self.status_cache = Some(cache);
        self
    }

    /// Tries the save of `job`'s tail for `step` in run `run` again while `saved` (the
    /// last try's outcome) failed in a way that may pass, up to [`SAVE_TRIES`] tries in all;
    /// a tail that cannot be kept is logged and lost, never the cutover.
    async fn retry_keep(
        &self,
        step: &StepName,
        run: u32,
        job: &str,
        mut saved: Result<(), KeepError>,
    ) {
        let mut backoff = Backoff::new();
        for _ in 1..SAVE_TRIES {
            match saved {
                Err(err) if err.is_transient() => {
                    backoff.wait().await;
                    saved = self.keep(step, run, job).await;
                }
                _ => break,
            }
        }
        if let Err(err) = saved {
            tracing::warn!(step = %step.as_str(), run, %job, error = %err, "the step's log tail is not kept");
        }
    }

    /// The status ConfigMap the tails belong to: the cache's, when it holds it (its UID is
    /// all the owner reference needs), else read.
    async fn owner(&self) -> Result<ConfigMap, KeepError> {
        if let Some(cm) = self
            .status_cache
            .as_ref()
            .and_then(StatusCache::configmap)
            .filter(|cm| cm.metadata.uid.is_some())
        {
            return Ok((*cm).clone());
        }
        match self.configmaps().get_opt(&self.status).await {
            Ok(Some(owner)) => Ok(owner),
            Ok(None) => Err(KeepError::NoStatus(self.status.clone())),
            Err(source) => Err(KeepError::Api {
                action: "read the status ConfigMap",
                source,
            }),
        }
    }

    /// Saves the tails of `tails` (step, run, Job), the pods of all their Jobs listed in one
    /// request; a tail whose save fails in a way that may pass is tried again on its own.
    /// Failures are logged, never returned: a lost tail never stops the cutover.
    pub async fn keep_all(&self, tails: &[(StepName, u32, String)]) {
        let jobs: Vec<&str> = tails.iter().map(|(_, _, job)| job.as_str()).collect();
        let selector = format!("{} in ({})", contract::LABEL_JOB_NAME, jobs.join(","));
        let listed = self
            .pods()
            .list(&ListParams::default().labels(&selector))
            .await;
        for (step, run, job) in tails {
            let saved = match &listed {
                Ok(pods) => {
                    let of_job: Vec<Pod> = pods
                        .items
                        .iter()
                        .filter(|p| p.labels().get(contract::LABEL_JOB_NAME) == Some(job))
                        .cloned()
                        .collect();
                    self.keep_from(step, *run, job, &of_job).await
                }
                // Each lists its own Job's pods instead.
                Err(_) => self.keep(step, *run, job).await,
            };
            self.retry_keep(step, *run, job, saved).await;
        }
    }

    async fn keep(&self, step: &StepName, run: u32, job: &str) -> Result<(), KeepError> {
        let pods = self
            .pods()
            .list(&ListParams::default().labels(&format!("{}={job}", contract::LABEL_JOB_NAME)))
            .await
            .map_err(|source| KeepError::Api {
                action: "list the Job's pods",
                source,
            })?;
        self.keep_from(step, run, job, &pods.items).await
    }

    /// Saves the tail of `job`'s log for `step` in run `run`, read from the newest of `pods`
    /// (the Job's).
    async fn keep_from(
        &self,
        step: &StepName,
        run: u32,
        job: &str,
        pods: &[Pod],
    ) -> Result<(), KeepError> {
        let api = |action| move |source| KeepError::Api { action, source };
        let pod = newest_pod(pods).ok_or_else(|| KeepError::NoPod(job.to_owned()))?;
        let pod_name = pod.name_any();
        let container =
            first_container(pod).ok_or_else(|| KeepError::NoContainer(pod_name.clone()))?;
        let params = LogParams {
            container: Some(container.clone()),
            ..LogParams::default()
        };
        let mut reader = self
            .pods()
            .log_stream(&pod_name, &params)
            .await
            .map_err(api("read the pod's log"))?;
        let mut tail = Tail::new(MAX_TAIL_BYTES);
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let read = reader
                .read(&mut chunk)
                .await
                .map_err(|source| KeepError::Read {
                    pod: pod_name.clone(),
                    source,
                })?;
            if read == 0 {
                break;
            }
            tail.push(&chunk[..read]);
        }
        let (log, truncated) = tail.finish();
        let owner = self.owner().await?;
        let kept = KeptLog {
            step: step.clone(),
            run,
            job: job.to_owned(),
            pod: pod_name,
            container,
            log,
            truncated,
        };
        let cm = kept.to_configmap(&self.namespace, &owner);
        match self.configmaps().create(&PostParams::default(), &cm).await {
            Ok(_) => {
                tracing::debug!(step = %step.as_str(), run, bytes = kept.log.len(), truncated, "step log tail kept");
                Ok(())
            }
            // Kept already, by a runner that ended the same step before this one took over.
            Err(err) if is_status(&err, 409) => Ok(()),
            Err(source) => Err(KeepError::Api {
                action: "create the log tail's ConfigMap",
                source,
            }),
        }
    }

    /// The tail kept for `step` in run `run`, if any.
    pub async fn read(&self, step: &StepName, run: u32) -> Result<Option<KeptLog>, kube::Error> {
        let name = configmap_name(&self.status, run, step);
        let cm = self.configmaps().get_opt(&name).await?;
        Ok(cm.and_then(|cm| KeptLog::from_configmap(&cm, step, run)))
    }

    /// Deletes the tails of every run but `run`, retrying what may pass: a new run starts
    /// with only its own logs kept. Each is deleted by name, only as it was listed (its UID
    /// and resourceVersion as preconditions): the service holds no `deletecollection`, and
    /// a ConfigMap relabelled or replaced since the list is left alone.
    pub async fn clean_retrying(&self, run: u32) {
        let mut backoff = Backoff::new();
        for _ in 0..SAVE_TRIES {
            match self.clean(run).await {
                Ok(deleted) => {
                    tracing::debug!(run, deleted, "log tails of earlier runs deleted");
                    return;
                }
                Err(err) if is_transient(&err) => backoff.wait().await,
                Err(err) => {
                    tracing::warn!(run, error = %err, "the log tails of earlier runs stay");
                    return;
                }
            }
        }
    }

    /// One pass of [`Self::clean_retrying`]: how many tails it deleted.
    async fn clean(&self, run: u32) -> Result<usize, kube::Error> {
        let api = self.configmaps();
        let listed = api
            .list_metadata(&ListParams::default().labels(&other_runs_selector(run)))
            .await?;
        let mut deleted = 0;
        for cm in &listed.items {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: cm.metadata.uid.clone(),
                    resource_version: cm.metadata.resource_version.clone(),
                }),
                ..DeleteParams::default()
            };
            match api.delete(&cm.name_any(), &params).await {
                Ok(_) => deleted += 1,
                // Gone already, or changed since the list (no longer ours to judge).
                Err(err) if is_status(&err, 404) || is_status(&err, 409) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(deleted)
    }
}

/// The container whose log is the step's: the pod's first (the step's own; the PodSpec
/// puts it first).
pub fn first_container(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .containers
        .first()
        .map(|c| c.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str) -> StepName {
        StepName::new(name).unwrap()
    }

    fn is_subdomain(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= MAX_NAME_LEN
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    }

    #[test]
    fn the_name_reads_as_status_run_and_step() {
        assert_eq!(
            configmap_name("self-sovereign-cutover-status", 3, &step("gitea-mirror")),
            "self-sovereign-cutover-status-log-r3-gitea-mirror"
        );
        assert_ne!(
            configmap_name("s", 1, &step("a")),
            configmap_name("s", 2, &step("a"))
        );
    }

    #[test]
    fn the_name_is_valid_for_any_status_name_run_and_step() {
        let long_step = "x".repeat(63);
        for len in [1, 100, 180, 186, 187, 200, 253] {
            let status: String = (0..len)
                .map(|i| if i % 5 == 4 && i + 1 < len { '-' } else { 's' })
                .collect();
            for run in [0, 1, u32::MAX] {
                for s in ["a", long_step.as_str()] {
                    let name = configmap_name(&status, run, &step(s));
                    assert!(is_subdomain(&name), "{name:?}");
                    assert!(name.ends_with(&format!("-log-r{run}-{s}")), "{name}");
                }
            }
        }
        let a = configmap_name(&format!("{}a", "s".repeat(252)), 1, &step("x"));
        let b = configmap_name(&format!("{}b", "s".repeat(252)), 1, &step("x"));
        assert_ne!(a, b);
    }

    fn owner() -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("self-sovereign-cutover-status".into()),
                uid: Some("u-1".into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn kept() -> KeptLog {
        KeptLog {
            step: step("gitea-mirror"),
            run: 2,
            job: "cutover-gitea-mirror-a2".into(),
            pod: "cutover-gitea-mirror-a2-x".into(),
            container: "step".into(),
            log: "done\n".into(),
            truncated: true,
        }
    }

    #[test]
    fn a_kept_tail_is_owned_by_the_status_and_labelled_with_its_run() {
        let cm = kept().to_configmap("catalyst", &owner());
        let owners = cm.metadata.owner_references.clone().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(
            (owners[0].kind.as_str(), owners[0].uid.as_str()),
            ("ConfigMap", "u-1")
        );
        assert_eq!(owners[0].name, "self-sovereign-cutover-status");
        let labels = cm.metadata.labels.clone().unwrap();
        assert_eq!(labels[LABEL_RUN], "2");
        assert_eq!(labels[contract::LABEL_COMPONENT], COMPONENT_STEP_LOG);
        assert_eq!(labels[contract::LABEL_PART_OF], contract::PART_OF);
        assert_eq!(
            KeptLog::from_configmap(&cm, &step("gitea-mirror"), 2),
            Some(kept())
        );
    }

    #[test]
    fn a_configmap_of_another_step_or_run_or_kind_is_not_taken_for_the_tail() {
        let cm = kept().to_configmap("catalyst", &owner());
        assert_eq!(KeptLog::from_configmap(&cm, &step("gitea-mirror"), 1), None);
        assert_eq!(KeptLog::from_configmap(&cm, &step("other"), 2), None);
        let mut plain = cm.clone();
        plain.metadata.labels = None;
        assert_eq!(
            KeptLog::from_configmap(&plain, &step("gitea-mirror"), 2),
            None
        );
    }

    #[test]
    fn cleaning_selects_the_other_runs_tails_only() {
        assert_eq!(
            other_runs_selector(4),
            "app.kubernetes.io/part-of=self-sovereign-cutover,app.kubernetes.io/component=cutover-step-log,cutover.openova.io/run!=4"
        );
    }
}
