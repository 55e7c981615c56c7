//! The internal routes, for in-cluster callers whose service account is allow-listed (the
//! authentication layer checks that): the chart's trigger, and the console backend's
//! report of each operator login, whose first ever may fire the cutover.

use super::HttpContext;
use super::caller::Caller;
use super::cutover::{StartResponse, begin, body, cached_data};
use super::error::ApiError;
use crate::contract::key;
use crate::preflight::gate;
use crate::status::model::{Phase, StatusData, get};
use crate::status::{
    LoginOutcome, StatusBody, StoreError, Trigger, login_transitions, now_rfc3339,
};
use crate::step::{PlanState, StepPlan};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Longest operator name accepted, in characters (a Kubernetes username's practical bound).
const MAX_OPERATOR_LEN: usize = 253;

/// `POST /api/v1/internal/cutover/trigger`: starts the cutover as the chart's hook does.
pub async fn trigger(
    State(ctx): State<Arc<HttpContext>>,
    caller: Caller,
) -> Result<(StatusCode, Json<StartResponse>), ApiError> {
    begin(&ctx, &caller, Trigger::InternalTrigger, false).await
}

/// The body of `POST /api/v1/internal/cutover/operator-login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The operator who logged in.
    pub operator: String,
}

/// The answer of the login route.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    /// What this call changed.
    pub outcome: LoginOutcome,
    /// The first operator ever to log in.
    pub first_operator_login: String,
    /// When.
    pub first_operator_login_at: String,
    /// The status after the call.
    pub status: StatusBody,
}

/// `POST /api/v1/internal/cutover/operator-login`.
pub async fn operator_login(
    State(ctx): State<Arc<HttpContext>>,
    caller: Caller,
    body_bytes: Bytes,
) -> Result<(StatusCode, Json<LoginResponse>), ApiError> {
    let request: LoginRequest = super::body::json_object(&body_bytes)?;
    let operator = request.operator.trim();
    if operator.is_empty() || request.operator.chars().count() > MAX_OPERATOR_LEN {
        return Err(ApiError::BadRequest(format!(
            "field `operator` must name the operator (up to {MAX_OPERATOR_LEN} characters, not only spaces)"
        )));
    }
    let cached = cached_data(&ctx)?;
    let held = gate::waiting(&cached);
    if !get(&cached, key::FIRST_OPERATOR_LOGIN).is_empty() && !held {
        return Ok(answer(&ctx, LoginOutcome::AlreadyRecorded, &cached));
    }
    // A status recreated as new after a cutover (the record says one started) is never
    // fired by a login.
    let auto_fire = ctx.config.auto_fire
        && Phase::of(&cached) == Phase::Idle
        && super::cutover::refuse_lost_status(&ctx).await.is_ok();
    let plan = if auto_fire {
        Some(current_plan(&ctx)?)
    } else {
        None
    };
    if plan.as_ref().is_some_and(|p| p.preflight_count() > 0) {
        return gated_fire(&ctx, &caller, operator).await;
    }
    let total_steps = plan.map(|p| p.len());
    let at = now_rfc3339();
    let result = ctx
        .store
        .update(|data| {
            let (outcome, ts) = login_transitions(data, operator, &at, auto_fire, total_steps);
            for t in &ts {
                t.apply(data)?;
            }
            Ok(outcome)
        })
        .await;
    let (data, outcome) = match result {
        Ok(written) => written,
        Err(StoreError::Rejected(r)) => return Err(ApiError::Unavailable(r.to_string())),
        Err(err) => return Err(ApiError::store(err)),
    };
    tracing::info!(operator, by = %caller.username, ?outcome, "operator login reported");
    Ok(answer(&ctx, outcome, &data))
}

/// A login's auto-fire when the plan has preflight steps: record the login and the request,
/// then let the gate run the preflight and start (or hold) the cutover in its own task.
async fn gated_fire(
    ctx: &Arc<HttpContext>,
    caller: &Caller,
    operator: &str,
) -> Result<(StatusCode, Json<LoginResponse>), ApiError> {
    let at = now_rfc3339();
    let data = match ctx
        .store
        .update(|data| gate::request(data, operator, &at))
        .await
    {
        Ok((data, ())) => data,
        Err(StoreError::Rejected(r)) => return Err(ApiError::Unavailable(r.to_string())),
        Err(err) => return Err(ApiError::store(err)),
    };
    if !gate::waiting(&data) {
        // The cutover left idle between the read and the write: nothing to fire.
        return Ok(answer(ctx, LoginOutcome::FirstLoginRecorded, &data));
    }
    tracing::info!(operator, by = %caller.username, "operator login: the auto-fire waits for the preflight");
    tokio::spawn(ctx.preflights.clone().gate_auto_fire(operator.to_owned()));
    Ok(answer(ctx, LoginOutcome::AutoFirePreflightStarted, &data))
}

fn answer(
    ctx: &HttpContext,
    outcome: LoginOutcome,
    data: &StatusData,
) -> (StatusCode, Json<LoginResponse>) {
    let code = match outcome {
        LoginOutcome::FirstLoginStartedCutover | LoginOutcome::AutoFirePreflightStarted => {
            StatusCode::ACCEPTED
        }
        _ => StatusCode::OK,
    };
    (
        code,
        Json(LoginResponse {
            outcome,
            first_operator_login: get(data, key::FIRST_OPERATOR_LOGIN).to_owned(),
            first_operator_login_at: get(data, key::FIRST_OPERATOR_LOGIN_AT).to_owned(),
            status: body(ctx, data),
        }),
    )
}

/// The watch-fed plan, or why the cutover cannot start.
fn current_plan(ctx: &HttpContext) -> Result<Arc<StepPlan>, ApiError> {
    match ctx.steps.current() {
        PlanState::Ready(plan) => Ok(plan),
        PlanState::Invalid(report) => Err(ApiError::invalid_plan(&report, &ctx.config.namespace)),
        PlanState::Unsynced => Err(ApiError::Unavailable(
            "the step ConfigMaps are not synced yet; retry in a moment".to_owned(),
        )),
    }
}
