//! The cutover routes: start, retry, abort and status. Writes go through the status store
//! (optimistic concurrency decides races: of a hundred concurrent starts exactly one
//! applies); reads come from the watch-fed caches, and the status body is serialized once
//! per status version and plan ([`BodyCache`]).

use super::HttpContext;
use super::caller::Caller;
use super::error::ApiError;
use super::tether_signals::count_of;
use crate::runner::job;
use crate::status::model::{Phase, StatusData};
use crate::status::{
    Rejected, StatusBody, StoreError, TetherCount, Transition, Trigger, now_rfc3339,
};
use crate::step::{DiscoverError, PlanState, StepPlan};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, PoisonError};

/// The optional body of `POST /cutover` and of the console's start route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// Resume a failed cutover from its failed step instead of answering 409; absent: no
    /// on `POST /cutover`, yes on the console's start route.
    #[serde(default, deserialize_with = "present_bool")]
    pub retry: Option<bool>,
}

/// A boolean that, when the key is there, must be one: `"retry": null` is refused like any
/// other value that is not `true` or `false` (absent is [`None`] through `default`).
fn present_bool<'de, D: serde::Deserializer<'de>>(value: D) -> Result<Option<bool>, D::Error> {
    bool::deserialize(value).map(Some)
}

/// The answer of start and retry: what happened, and the status after it.
#[derive(Debug, Serialize)]
pub struct StartResponse {
    /// `started`, `retried` or `cutover-already-complete`.
    pub outcome: &'static str,
    /// The status body.
    #[serde(flatten)]
    pub status: StatusBody,
}

/// `POST /cutover`: a failed cutover is resumed only when asked (`{"retry": true}`).
pub async fn start(
    State(ctx): State<Arc<HttpContext>>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<StartResponse>), ApiError> {
    let request: StartRequest = super::body::optional_json_object(&body)?;
    begin(&ctx, &caller, Trigger::Api, request.retry.unwrap_or(false)).await
}

/// `POST /api/v1/sovereign/cutover/start`, the admin console's start. The console sends
/// `{}` to start and to re-trigger, and its backend treats `{}` on a failed cutover as an
/// operator retry: here too, a body without `retry` resumes a failed cutover from its
/// failed step (as `POST /cutover/retry`); `{"retry": false}` keeps the 409.
pub async fn console_start(
    State(ctx): State<Arc<HttpContext>>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<StartResponse>), ApiError> {
    let request: StartRequest = super::body::optional_json_object(&body)?;
    let retry = request.retry.unwrap_or(true);
    let trigger = if retry && Phase::of(&cached_data(&ctx)?) == Phase::Failed {
        Trigger::Retry
    } else {
        Trigger::Api
    };
    begin(&ctx, &caller, trigger, retry).await
}

/// `POST /cutover/retry`.
pub async fn retry(
    State(ctx): State<Arc<HttpContext>>,
    caller: Caller,
) -> Result<(StatusCode, Json<StartResponse>), ApiError> {
    let phase = Phase::of(&cached_data(&ctx)?);
    // After a rollback there is no failed step to resume: `POST /cutover` starts again.
    if matches!(
        phase,
        Phase::Idle | Phase::RolledBack | Phase::RollbackFailed
    ) {
        return Err(ApiError::NotFailed {
            phase: phase.as_str(),
        });
    }
    begin(&ctx, &caller, Trigger::Retry, true).await
}

/// Starts (or retries) a run for `caller`; shared by every start route and trigger.
pub async fn begin(
    ctx: &HttpContext,
    caller: &Caller,
    trigger: Trigger,
    retry: bool,
) -> Result<(StatusCode, Json<StartResponse>), ApiError> {
    let data = cached_data(ctx)?;
    let start = |total_steps| Transition::Start {
        at: now_rfc3339(),
        trigger,
        by: caller.username.clone(),
        total_steps,
        retry,
    };
    // The transition itself says whether a start applies, dry-run on the cached status
    // before the steps are read: the step count changes nothing of that decision.
    match start(0).apply(&mut data.clone()) {
        Ok(()) => {}
        Err(Rejected::AlreadyComplete) => return Ok(already_complete(ctx, &data)),
        Err(r) => return Err(rejected(r)),
    }
    // Both are reads: made side by side, a start waits for one round trip, not two. The
    // record's answer goes first, as when they were made one after the other.
    let lost = async {
        if Phase::of(&data) == Phase::Idle {
            refuse_lost_status(ctx).await
        } else {
            Ok(())
        }
    };
    let (lost, plan) = tokio::join!(lost, validated_plan(ctx));
    lost?;
    let plan = plan?;
    let transition = start(plan.len());
    // Offered before the write, keyed by the attempt number the write makes: the runner may
    // begin the moment the write lands, while this request is still noting the start in the
    // record. A write that lands on a status moved on meanwhile makes another number, whose
    // runner lists the steps itself; a start refused leaves a plan as fresh as any.
    let attempt = crate::status::model::get_u32(&data, crate::status::model::KEY_CUTOVER_ATTEMPT)
        .saturating_add(1);
    ctx.handoff.offer(&attempt.to_string(), plan);
    // A start makes a held auto-fire moot: its keys go in the same write.
    let started = ctx
        .store
        .update(|data| {
            transition.apply(data)?;
            crate::preflight::gate::clear(data);
            Ok(())
        })
        .await;
    match started {
        Ok((data, ())) => {
            tracing::info!(trigger = trigger.as_str(), by = %caller.username, retry, "cutover started");
            let outcome = if retry && data_had_failure(&data) {
                "retried"
            } else {
                "started"
            };
            Ok((
                StatusCode::ACCEPTED,
                Json(StartResponse {
                    outcome,
                    status: body(ctx, &data),
                }),
            ))
        }
        Err(StoreError::Rejected(Rejected::AlreadyComplete)) => {
            Ok(already_complete(ctx, &cached_data(ctx)?))
        }
        Err(StoreError::Rejected(r)) => Err(rejected(r)),
        Err(err) => Err(ApiError::store(err)),
    }
}

/// 409 `status-lost` when the status shows no cutover but the durable record says one
/// started: a deleted or recreated status never starts the cutover over on its own.
///
/// The cached status the caller saw idle may predate the record: a concurrent start may
/// have written its status and then its record since. A start is noted in the record only
/// after its status write, so the status read again after the record shows that start
/// unless the status was lost; only then is it refused as lost (a start that lost the race
/// goes on and is answered by the status write's optimistic concurrency).
pub(crate) async fn refuse_lost_status(ctx: &HttpContext) -> Result<(), ApiError> {
    let Some(record) = ctx.store.record() else {
        return Ok(());
    };
    let noted = record.read_shared().await.map_err(|err| {
        ApiError::Unavailable(format!(
            "cannot read the cutover record (Lease {}): {err}",
            record.describe()
        ))
    })?;
    let Some(started_at) = noted.started_at else {
        return Ok(());
    };
    let status = ctx.store.read_fresh().await.map_err(|err| {
        ApiError::Unavailable(format!(
            "cannot read the status ConfigMap {}/{}: {err}",
            ctx.store.namespace(),
            ctx.store.name()
        ))
    })?;
    let shown = status.and_then(|cm| cm.data.as_ref().map(Phase::of));
    if shown.is_some_and(|phase| phase != Phase::Idle) {
        return Ok(());
    }
    Err(ApiError::StatusLost {
        record: record.describe(),
        namespace: ctx.config.namespace.clone(),
        name: format!("{}-record", ctx.config.lease_name),
        started_at,
        finished_at: noted.finished_at,
    })
}

/// Whether a step row of `data` failed: a retry resumes the cutover from it.
fn data_had_failure(data: &StatusData) -> bool {
    crate::status::model::rows(data).any(|(_, row)| row.result == crate::status::StepResult::Failed)
}

/// `POST /cutover/abort`: records the running step failed, naming who aborted it; the
/// runner sees it and stops, and the Job is deleted here too so it stops even while no
/// runner is up.
pub async fn abort(
    State(ctx): State<Arc<HttpContext>>,
    caller: Caller,
) -> Result<Json<StatusBody>, ApiError> {
    let names = ctx.steps.names().unwrap_or_default();
    let result = ctx
        .store
        .update(|data| {
            Transition::Abort {
                step: current_or_next_step(data, &names),
                by: caller.username.clone(),
                at: now_rfc3339(),
            }
            .apply(data)
        })
        .await;
    let data = match result {
        Ok((data, ())) => data,
        Err(StoreError::Rejected(Rejected::NotRunning { phase })) => {
            return Err(ApiError::NotRunning {
                phase: phase.as_str(),
            });
        }
        Err(StoreError::Rejected(r)) => return Err(rejected(r)),
        Err(err) => return Err(ApiError::store(err)),
    };
    let failed = crate::status::model::get(&data, crate::contract::key::FAILED_STEP).to_owned();
    let row = crate::status::StepRow::read(&data, &failed);
    let is_job_step = match ctx.steps.current() {
        PlanState::Ready(plan) => plan
            .iter()
            .any(|s| s.name.as_str() == failed && s.pod_spec().is_some()),
        _ => true,
    };
    // Only the Job this step and attempt determine: a jobName edited by hand names no Job
    // the abort may delete, so the determined one is stopped instead.
    let target = if crate::runner::decide::may_name(&failed, &row) {
        Some(row.job_name.clone())
    } else {
        crate::step::StepName::new(&failed)
            .ok()
            .map(|name| crate::render::job_name(&name, row.attempt))
    };
    if let Some(target) = target.filter(|_| is_job_step && row.attempt > 0) {
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
        job::delete(&jobs, &target, crate::contract::COMPONENT_JOB, &failed).await;
    }
    tracing::warn!(by = %caller.username, step = %failed, "cutover aborted");
    Ok(Json(body(&ctx, &data)))
}

/// `GET /cutover` (and the console's status route): from the cache, no API request, and
/// serialized only when the status, the plan or the tether figures changed since the last
/// GET.
pub async fn status(State(ctx): State<Arc<HttpContext>>) -> Result<Response, ApiError> {
    if !ctx.store.cache().synced() {
        return Err(not_synced());
    }
    let Some(configmap) = ctx.store.cache().configmap() else {
        return Ok(Json(body(&ctx, &StatusData::default())).into_response());
    };
    let plan = ready_plan(&ctx);
    let tethers = count_of(&ctx.tethers.report());
    let json = ctx
        .bodies
        .get_or_build(&configmap, plan.as_ref(), tethers, || {
            let data = configmap.data.clone().unwrap_or_default();
            let body = body_with(&data, plan.as_deref()).with_tethers(tethers);
            serde_json::to_vec(&body).map(Bytes::from)
        })
        .map_err(|e| ApiError::Unavailable(format!("cannot serialize the status body: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// The status body for `data` with the steps in execution order and the tether figures.
pub fn body(ctx: &HttpContext, data: &StatusData) -> StatusBody {
    body_with(data, ready_plan(ctx).as_deref()).with_tethers(count_of(&ctx.tethers.report()))
}

fn body_with(data: &StatusData, plan: Option<&StepPlan>) -> StatusBody {
    let names: Option<Vec<&str>> = plan.map(|p| p.iter().map(|s| s.name.as_str()).collect());
    StatusBody::build(data, names.as_deref())
}

pub(crate) fn ready_plan(ctx: &HttpContext) -> Option<Arc<StepPlan>> {
    match ctx.steps.current() {
        PlanState::Ready(plan) => Some(plan),
        _ => None,
    }
}

/// The last serialized status body, keyed by the identity of the cached status ConfigMap
/// and of the plan it was built with, and by the tether figures it carries. The status
/// cache and the step source publish a new `Arc` for every change, so identity stands for
/// version; holding both `Arc`s keeps their addresses from being reused by a later version.
/// The figures are compared by value: a report that changed without changing them (a
/// tether's value edited) leaves the body as it was.
pub struct BodyCache {
    last: Mutex<Option<CachedBody>>,
}

struct CachedBody {
    configmap: Arc<ConfigMap>,
    plan: Option<Arc<StepPlan>>,
    tethers: TetherCount,
    json: Bytes,
}

impl CachedBody {
    fn is_for(
        &self,
        configmap: &Arc<ConfigMap>,
        plan: Option<&Arc<StepPlan>>,
        tethers: TetherCount,
    ) -> bool {
        Arc::ptr_eq(&self.configmap, configmap)
            && self.tethers == tethers
            && match (&self.plan, plan) {
                (Some(held), Some(plan)) => Arc::ptr_eq(held, plan),
                (None, None) => true,
                _ => false,
            }
    }
}

impl BodyCache {
    /// An empty cache.
    pub const fn new() -> Self {
        BodyCache {
            last: Mutex::new(None),
        }
    }

    /// The body of `configmap`, `plan` and `tethers`: the cached one when it is theirs,
    /// else `build`'s, which is cached in its place. `build` runs without the lock held.
    pub fn get_or_build<E>(
        &self,
        configmap: &Arc<ConfigMap>,
        plan: Option<&Arc<StepPlan>>,
        tethers: TetherCount,
        build: impl FnOnce() -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        if let Some(cached) = self.lock().as_ref()
            && cached.is_for(configmap, plan, tethers)
        {
            return Ok(cached.json.clone());
        }
        let json = build()?;
        *self.lock() = Some(CachedBody {
            configmap: configmap.clone(),
            plan: plan.cloned(),
            tethers,
            json: json.clone(),
        });
        Ok(json)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<CachedBody>> {
        // A plain memo: a panic elsewhere leaves it consistent.
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for BodyCache {
    fn default() -> Self {
        BodyCache::new()
    }
}

fn not_synced() -> ApiError {
    ApiError::Unavailable("the status cache is not synced yet; retry in a moment".to_owned())
}

/// The status data of the watch-fed cache, or 503 until it is synced.
pub fn cached_data(ctx: &HttpContext) -> Result<StatusData, ApiError> {
    if !ctx.store.cache().synced() {
        return Err(not_synced());
    }
    Ok(ctx
        .store
        .cache()
        .configmap()
        .and_then(|cm| cm.data.clone())
        .unwrap_or_default())
}

fn already_complete(ctx: &HttpContext, data: &StatusData) -> (StatusCode, Json<StartResponse>) {
    (
        StatusCode::OK,
        Json(StartResponse {
            outcome: "cutover-already-complete",
            status: body(ctx, data),
        }),
    )
}

/// The answer to a transition that does not apply.
pub fn rejected(r: Rejected) -> ApiError {
    match r {
        Rejected::InProgress { current_step } => ApiError::InProgress { current_step },
        Rejected::Failed { step, error } => ApiError::Failed {
            step,
            reason: error,
        },
        Rejected::NotRunning { phase } => ApiError::NotRunning {
            phase: phase.as_str(),
        },
        Rejected::RolledBack { .. } => ApiError::RolledBack(r.to_string()),
        Rejected::RollingBack { by, at } => ApiError::RollbackInProgress { by, at },
        Rejected::Rollback(refused) => super::rollback::refused(refused),
        Rejected::AlreadyComplete | Rejected::StaleAttempt { .. } => ApiError::InProgress {
            current_step: String::new(),
        },
    }
}

/// The plan as the cluster holds it now, validated in full (DaemonSets included) so that
/// invalid steps start nothing.
pub(crate) async fn validated_plan(ctx: &HttpContext) -> Result<StepPlan, ApiError> {
    match crate::step::discover(&ctx.client, &ctx.config.namespace, &ctx.config.step_policy).await {
        Ok(plan) => Ok(plan),
        Err(DiscoverError::Invalid(report)) => {
            Err(ApiError::invalid_plan(&report, &ctx.config.namespace))
        }
        Err(DiscoverError::BelowFloor(floor)) => Err(ApiError::ChartBelowFloor(floor)),
        Err(err) => Err(ApiError::Unavailable(err.to_string())),
    }
}

/// The step an abort stops: the one running, or the first not done.
fn current_or_next_step(data: &StatusData, names: &[String]) -> String {
    let current = crate::status::model::get(data, crate::contract::key::CURRENT_STEP);
    if !current.is_empty() {
        return current.to_owned();
    }
    names
        .iter()
        .find(|n| !crate::status::StepRow::read(data, n).result.is_done())
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract;
    use std::cell::Cell;
    use std::convert::Infallible;

    #[test]
    fn a_start_body_takes_retry_as_a_boolean_or_not_at_all() {
        let parse = |body: &str| serde_json::from_str::<StartRequest>(body).map(|r| r.retry);
        assert_eq!(parse("{}").unwrap(), None);
        assert_eq!(parse(r#"{"retry": true}"#).unwrap(), Some(true));
        assert_eq!(parse(r#"{"retry": false}"#).unwrap(), Some(false));
        for refused in [
            r#"{"retry": null}"#,
            r#"{"retry": "yes"}"#,
            r#"{"other": 1}"#,
        ] {
            assert!(parse(refused).is_err(), "{refused}");
        }
    }

    fn plan(step: &str) -> Arc<StepPlan> {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": format!("cutover-step-01-{step}"),
                "labels": {contract::LABEL_STEP_ORDER: "1"},
            },
            "data": {
                contract::DATA_STEP_NAME: step,
                contract::DATA_POD_SPEC: "containers:\n- name: s\n  image: busybox\n",
            },
        }))
        .unwrap();
        Arc::new(crate::step::parse_plan(&[cm]).unwrap())
    }

    #[test]
    fn body_is_built_once_per_status_version_and_plan() {
        let cache = BodyCache::new();
        let builds = Cell::new(0);
        let get = |cm: &Arc<ConfigMap>, plan: Option<&Arc<StepPlan>>| {
            cache
                .get_or_build(cm, plan, no_tethers(), || {
                    builds.set(builds.get() + 1);
                    Ok::<_, Infallible>(Bytes::from(builds.get().to_string()))
                })
                .unwrap()
        };
        let (v1, v2) = (
            Arc::new(ConfigMap::default()),
            Arc::new(ConfigMap::default()),
        );
        let (a, b) = (plan("a"), plan("b"));

        assert_eq!(get(&v1, Some(&a)), "1");
        assert_eq!(get(&v1, Some(&a)), "1");
        // A new status version, another plan, no plan, a republished plan: each rebuilds.
        assert_eq!(get(&v2, Some(&a)), "2");
        assert_eq!(get(&v2, Some(&b)), "3");
        assert_eq!(get(&v2, None), "4");
        assert_eq!(get(&v2, None), "4");
        assert_eq!(get(&v2, Some(&plan("b"))), "5");
        assert_eq!(builds.get(), 5);
    }

    fn no_tethers() -> TetherCount {
        TetherCount {
            count: 0,
            gating: 0,
            synced: true,
            unseen_sources: 0,
        }
    }

    #[test]
    fn a_changed_tether_count_is_never_served_stale() {
        let cache = BodyCache::new();
        let cm = Arc::new(ConfigMap::default());
        let get = |tethers: TetherCount, body: &'static str| {
            cache
                .get_or_build(&cm, None, tethers, || {
                    Ok::<_, Infallible>(Bytes::from_static(body.as_bytes()))
                })
                .unwrap()
        };
        let planted = TetherCount {
            count: 1,
            gating: 1,
            ..no_tethers()
        };
        assert_eq!(get(no_tethers(), "none"), "none");
        assert_eq!(get(planted, "one"), "one");
        assert_eq!(get(planted, "rebuilt"), "one", "the same figures: cached");
        assert_eq!(get(no_tethers(), "none again"), "none again");
        let blind = TetherCount {
            unseen_sources: 1,
            ..no_tethers()
        };
        assert_eq!(get(blind, "blind"), "blind");
    }

    #[test]
    fn only_a_failed_step_row_makes_a_start_a_retry() {
        let data = |pairs: &[(&str, &str)]| crate::status::model::data_of(pairs);
        assert!(data_had_failure(&data(&[
            ("step.a.result", "success"),
            ("step.b.result", "failed"),
        ])));
        assert!(!data_had_failure(&data(&[("step.a.result", "success")])));
        // A key that only ends like a row's (a hand edit, another tool's note) is no step.
        assert!(!data_had_failure(&data(&[("notes.result", "failed")])));
    }

    #[test]
    fn a_failed_build_caches_nothing() {
        let cache = BodyCache::new();
        let cm = Arc::new(ConfigMap::default());
        assert!(
            cache
                .get_or_build(&cm, None, no_tethers(), || Err("no"))
                .is_err()
        );
        let built = cache.get_or_build(&cm, None, no_tethers(), || {
            Ok::<_, &str>(Bytes::from_static(b"{}"))
        });
        assert_eq!(built.unwrap(), "{}");
    }
}
