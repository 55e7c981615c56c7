//! The internal routes, for in-cluster callers whose service account is allow-listed (the
//! authentication layer checks that): the chart's trigger, and the console backend's
//! report of each operator login, whose first ever may fire the cutover.

use super::HttpContext;
use super::caller::Caller;
use super::cutover::{StartResponse, begin};
use super::error::ApiError;
use super::status::{body, cached_data};
use crate::contract::key;
use crate::preflight::{Prepared, StartError, StartOutcome, StartRequest as Start, Then, gate};
use crate::status::model::{Phase, StatusData, get};
use crate::status::{LoginOutcome, StatusBody, Trigger, now_rfc3339};
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
    let at = now_rfc3339();
    if !ctx.config.auto_fire || Phase::of(&cached) != Phase::Idle {
        let (data, login) = ctx
            .store
            .update(|data| gate::login(data, operator, &at))
            .await?;
        return Ok(answer(&ctx, recorded(login), &data));
    }
    let request = Start {
        trigger: Trigger::FirstLogin,
        by: operator.to_owned(),
        retry: false,
    };
    let ready = match ctx.starts.prepare(&cached, request).await {
        Ok(Prepared::Ready(ready)) => ready,
        Ok(Prepared::AlreadyComplete) => {
            let (data, login) = ctx
                .store
                .update(|data| gate::login(data, operator, &at))
                .await?;
            return Ok(answer(&ctx, recorded(login), &data));
        }
        // The login differs from the other starts in its answer only: it reports something
        // that happened, which is recorded whatever the start's fate, and its caller (the
        // console backend) cannot act on a refusal. A refused start (the same refusal any
        // start meets) is held in the status with its reason, where the console and an
        // operator see it, and the next login or an explicit start tries again. An outage
        // records nothing and answers as the other starts do, so the login is reported again.
        Err(err) if err.is_refusal() => return held_back(&ctx, &caller, operator, &err).await,
        Err(err) => return Err(err.into()),
    };
    if ready.plan().preflight_count() > 0 {
        return gated_fire(&ctx, &caller, operator).await;
    }
    let started = ctx
        .starts
        .commit(ready, |data| {
            let login = gate::login(data, operator, &at)?;
            Ok(if login.fires {
                Then::Start(login)
            } else {
                Then::Skip(login)
            })
        })
        .await?;
    let (outcome, data) = match started {
        StartOutcome::Started { data, .. } => (LoginOutcome::FirstLoginStartedCutover, data),
        StartOutcome::Skipped { data, answer } => (recorded(answer), data),
        StartOutcome::AlreadyComplete { data } => (LoginOutcome::FirstLoginRecorded, data),
    };
    tracing::info!(operator, by = %caller.username, ?outcome, "operator login reported");
    Ok(answer(&ctx, outcome, &data))
}

/// What a login that started nothing answers.
fn recorded(login: gate::Login) -> LoginOutcome {
    if login.first {
        LoginOutcome::FirstLoginRecorded
    } else {
        LoginOutcome::AlreadyRecorded
    }
}

/// A login whose auto-fire's start was refused: the login is recorded and the auto-fire held
/// with the refusal, in one write.
async fn held_back(
    ctx: &HttpContext,
    caller: &Caller,
    operator: &str,
    refusal: &StartError,
) -> Result<(StatusCode, Json<LoginResponse>), ApiError> {
    let at = now_rfc3339();
    let reason = refusal.to_string();
    let (data, ()) = ctx
        .store
        .update(|data| {
            gate::request(data, operator, &at)?;
            gate::hold(data, &reason);
            Ok(())
        })
        .await?;
    let outcome = if gate::waiting(&data) {
        LoginOutcome::AutoFireHeld
    } else {
        // The cutover left idle between the read and the write: nothing to hold.
        LoginOutcome::FirstLoginRecorded
    };
    tracing::warn!(operator, by = %caller.username, %reason, "operator login: the auto-fire's start was refused; held");
    Ok(answer(ctx, outcome, &data))
}

/// A login's auto-fire when the plan has preflight steps: record the login and the request,
/// then let the service's gate task run the preflight and start (or hold) the cutover.
async fn gated_fire(
    ctx: &Arc<HttpContext>,
    caller: &Caller,
    operator: &str,
) -> Result<(StatusCode, Json<LoginResponse>), ApiError> {
    let at = now_rfc3339();
    let (data, ()) = ctx
        .store
        .update(|data| gate::request(data, operator, &at))
        .await?;
    if !gate::waiting(&data) {
        // The cutover left idle between the read and the write: nothing to fire.
        return Ok(answer(ctx, LoginOutcome::FirstLoginRecorded, &data));
    }
    if !ctx.auto_fire.request(operator) {
        return Err(ApiError::Unavailable(
            "the service is stopping; the auto-fire waits for the next login".to_owned(),
        ));
    }
    tracing::info!(operator, by = %caller.username, "operator login: the auto-fire waits for the preflight");
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
