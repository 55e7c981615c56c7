//! The cutover routes that change it: start, retry and abort. A start goes through the one
//! start ([`Starts`](crate::preflight::Starts)), as every other start does; the write's
//! optimistic concurrency decides races (of a hundred concurrent starts exactly one
//! applies).

use super::HttpContext;
use super::caller::Caller;
use super::error::ApiError;
use super::status::{body, cached_data};
use crate::preflight::{StartOutcome, StartRequest as Start};
use crate::runner::job;
use crate::status::model::{Phase, StatusData};
use crate::status::{StatusBody, Transition, Trigger, now_rfc3339};
use crate::step::PlanState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

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
    let seen = cached_data(ctx)?;
    let request = Start {
        trigger,
        by: caller.username.clone(),
        retry,
    };
    let (code, outcome, data) = match ctx.starts.start(&seen, request).await? {
        StartOutcome::Started { resumed, data, .. } => (
            StatusCode::ACCEPTED,
            if resumed { "retried" } else { "started" },
            data,
        ),
        StartOutcome::AlreadyComplete { data } => {
            (StatusCode::OK, "cutover-already-complete", data)
        }
        // A plain start keeps nothing out of its write: no such answer exists.
        StartOutcome::Skipped { answer, .. } => match answer {},
    };
    Ok((
        code,
        Json(StartResponse {
            outcome,
            status: body(ctx, &data),
        }),
    ))
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
    let (data, ()) = result?;
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
}
