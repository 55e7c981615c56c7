//! Drives a preflight run: each preflight step of the plan runs as a Job named apart from the
//! cutover's (`preflight-<step>-r<run>`), one after the other and every one of them (a failed
//! check does not hide the next step's), each outcome recorded as it comes. The run goes on
//! in its own task when the request that began it has been answered.

use super::report::{Change, KEY_RESULT, KEY_RUN, Refused, Report, RunResult};
use super::store::{PreflightStore, StoreError};
use super::work::{Work, WorkSender};
use super::{COMPONENT, CONFIGMAP};
use crate::contract;
use crate::render::JobRenderer;
use crate::render::preflight_job_name;
use crate::runner::watches::{JobWatch, RunWatches};
use crate::runner::{StepOutcome, job};
use crate::status::model::{get, get_u32};
use crate::status::now_rfc3339;
use crate::step::{Step, StepPlan};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::Api;
use std::sync::Arc;
use std::time::Duration;

/// Time a preflight Job gets past its deadline before the run gives up on it itself.
const DEADLINE_GRACE: Duration = Duration::from_secs(60);

/// How a request found its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// It began run `0`, which now runs in its own task.
    New(u32),
    /// Run `0` was under way already: the request follows it.
    Joined(u32),
}

impl Started {
    /// The run's number.
    pub fn run(self) -> u32 {
        match self {
            Started::New(run) | Started::Joined(run) => run,
        }
    }
}

/// What a preflight run's Jobs need of the runner's share, and nothing more: not its Lease
/// signal, its plan hand-off or its metrics (the routes hold [`Preflights`]).
struct Runs {
    client: kube::Client,
    namespace: String,
    renderer: Arc<JobRenderer>,
    jobs: JobWatch,
    /// Where a run's drive goes: a task of the service's.
    work: WorkSender,
}

/// Preflight runs in the service's namespace.
#[derive(Clone)]
pub struct Preflights {
    ctx: Arc<Runs>,
    store: PreflightStore,
}

impl Preflights {
    /// Preflight runs in `namespace`, their Jobs rendered by the runner's `renderer` and
    /// followed through its Job watch `jobs`, each run driven by a task `work` takes.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        renderer: Arc<JobRenderer>,
        jobs: JobWatch,
        work: WorkSender,
    ) -> Self {
        let store = PreflightStore::new(client.clone(), namespace);
        let ctx = Arc::new(Runs {
            client,
            namespace: namespace.to_owned(),
            renderer,
            jobs,
            work,
        });
        Preflights { ctx, store }
    }

    /// Begins a run of `plan`'s preflight steps (in order) for `by`, or joins the one under
    /// way. A run older than every step's deadline together counts as abandoned.
    pub async fn start_or_join(&self, plan: &StepPlan, by: &str) -> Result<Started, StoreError> {
        let steps: Vec<Step> = plan.iter().filter(|s| s.is_preflight()).cloned().collect();
        let limit = self.time_limit(&steps);
        let stale_before = jiff::SignedDuration::try_from(limit)
            .ok()
            .and_then(|limit| jiff::Timestamp::now().checked_sub(limit).ok())
            .unwrap_or(jiff::Timestamp::MIN)
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let begin = Change::Begin {
            at: now_rfc3339(),
            by: by.to_owned(),
            steps: steps.iter().map(|s| s.name.as_str().to_owned()).collect(),
            stale_before,
        };
        match self.store.apply(&begin).await {
            Ok(data) => {
                let run = get_u32(&data, KEY_RUN);
                tracing::info!(run, by, steps = steps.len(), "preflight run began");
                // The run's Job watch, opened once (it also follows the plan's DaemonSets).
                let watches =
                    RunWatches::open(&self.ctx.client, &self.ctx.namespace, plan, &self.ctx.jobs);
                let driven = self.ctx.work.send(Work::Run(Box::pin(drive(
                    self.ctx.clone(),
                    self.store.clone(),
                    watches,
                    steps,
                    run,
                ))));
                if driven.is_err() {
                    // The run stays `running` until it goes stale; a later request then
                    // begins another.
                    tracing::warn!(
                        run,
                        "the service is stopping; preflight run {run} is not driven"
                    );
                }
                Ok(Started::New(run))
            }
            Err(StoreError::Refused(Refused::Running { run })) => Ok(Started::Joined(run)),
            Err(err) => Err(err),
        }
    }

    /// The longest a run of `steps` can take: every step's deadline and grace together.
    pub fn time_limit(&self, steps: &[Step]) -> Duration {
        steps
            .iter()
            .map(|s| self.ctx.renderer.config().deadline_for(s) + DEADLINE_GRACE)
            .sum()
    }

    /// The latest run's report once run `run` has ended, or as it stands after `wait`.
    pub async fn report_after(&self, run: u32, wait: Duration) -> Result<Report, StoreError> {
        let api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &self.ctx.namespace);
        let ended = move |cm: Option<&ConfigMap>| {
            cm.and_then(|cm| cm.data.as_ref()).is_none_or(|d| {
                get_u32(d, KEY_RUN) != run || get(d, KEY_RESULT) != RunResult::Running.as_str()
            })
        };
        // Either way the report is read afresh: a watch error or the wait's end only means
        // the run is still under way, which the report says.
        let _ = tokio::time::timeout(
            wait,
            kube::runtime::wait::await_condition(api, CONFIGMAP, ended),
        )
        .await;
        Ok(Report::read(&self.store.read().await?))
    }

    /// The latest run's report, without waiting.
    pub async fn latest(&self) -> Result<Report, StoreError> {
        Ok(Report::read(&self.store.read().await?))
    }
}

/// Runs every step of `run` and records each outcome, then the run's.
async fn drive(
    ctx: Arc<Runs>,
    store: PreflightStore,
    watches: RunWatches,
    steps: Vec<Step>,
    run: u32,
) {
    for step in &steps {
        let job_name = preflight_job_name(&step.name, run);
        let started = Change::StepStarted {
            run,
            step: step.name.as_str().to_owned(),
            job_name: job_name.clone(),
            at: now_rfc3339(),
        };
        if !record(&store, &started).await {
            return;
        }
        let message = match run_step(&ctx, watches.jobs(), step, run, &job_name).await {
            StepOutcome::Succeeded(_) => String::new(),
            StepOutcome::Failed(reason) => reason,
            StepOutcome::Cancelled => format!("Job {job_name} was stopped before it finished"),
        };
        tracing::info!(run, step = %step.name.as_str(), failed = !message.is_empty(), "preflight step ended");
        let ended = Change::StepEnded {
            run,
            step: step.name.as_str().to_owned(),
            message,
            at: now_rfc3339(),
        };
        if !record(&store, &ended).await {
            return;
        }
    }
    record(
        &store,
        &Change::Finished {
            run,
            at: now_rfc3339(),
        },
    )
    .await;
}

/// Writes `change`; false when the run can no longer write (superseded, or refused).
async fn record(store: &PreflightStore, change: &Change) -> bool {
    match store.apply(change).await {
        Ok(_) => true,
        Err(err) => {
            tracing::warn!(error = %err, "preflight run stops: cannot record its progress");
            false
        }
    }
}

/// Runs one preflight step's Job of `run` to its end or its deadline.
async fn run_step(
    ctx: &Runs,
    watched: &JobWatch,
    step: &Step,
    run: u32,
    job_name: &str,
) -> StepOutcome {
    let ns = &ctx.namespace;
    let mut rendered = match ctx.renderer.render(step, run, ns) {
        Ok(job) => job,
        Err(err) => return StepOutcome::Failed(format!("could not render the Job: {err}")),
    };
    rendered.metadata.name = Some(job_name.to_owned());
    let labels = [
        rendered.metadata.labels.as_mut(),
        rendered
            .spec
            .as_mut()
            .and_then(|s| s.template.metadata.as_mut())
            .and_then(|m| m.labels.as_mut()),
    ];
    for labels in labels.into_iter().flatten() {
        labels.insert(contract::LABEL_COMPONENT.to_owned(), COMPONENT.to_owned());
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    if let Err(reason) = job::ensure(&jobs, &rendered, step.name.as_str(), false).await {
        return StepOutcome::Failed(reason);
    }
    let deadline = ctx.renderer.config().deadline_for(step);
    match tokio::time::timeout(
        deadline + DEADLINE_GRACE,
        job::follow(watched, &pods, job_name),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(_) => {
            job::delete(&jobs, job_name, COMPONENT, step.name.as_str()).await;
            StepOutcome::Failed(format!(
                "Job {job_name} did not finish within the step deadline of {}s",
                deadline.as_secs()
            ))
        }
    }
}
