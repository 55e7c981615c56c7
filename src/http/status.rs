//! The status the routes answer: `GET /cutover` (and the console's status route) from the
//! watch-fed caches, no API request, serialized once per status version, plan and tether
//! figures ([`super::body_cache::BodyCache`]); and the status body every route that changes
//! the status answers with.

use super::HttpContext;
use super::error::ApiError;
use super::tether_signals::count_of;
use crate::status::StatusBody;
use crate::status::model::StatusData;
use crate::step::{PlanState, StepPlan};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// `GET /cutover` (and the console's status route): from the cache, no API request, and
/// serialized only when the status, the plan or the tether figures changed since the last
/// GET.
pub async fn status(State(ctx): State<Arc<HttpContext>>) -> Result<Response, ApiError> {
    // Unsynced: 503, as every route that reads the cache answers.
    cached_data(&ctx)?;
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

/// The status data of the watch-fed cache, or 503 until it is synced.
pub fn cached_data(ctx: &HttpContext) -> Result<StatusData, ApiError> {
    Ok(ctx.starts.seen()?)
}
