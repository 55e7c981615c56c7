//! `GET /cutover/preflight`: runs the plan's preflight steps as a run of their own (recorded
//! in the ConfigMap `self-sovereign-cutover-preflight`, never in the cutover's status) and
//! answers with each check's result.
//!
//! The request waits for the run up to `wait` seconds (default 20, at most the request
//! timeout less a margin): 200 with the results once it ended, else 202 with the run as it
//! stands. `?run=<n>` then follows run `n` without beginning another; a request without
//! `run` joins the run under way, if any, or begins a new one.

use super::HttpContext;
use super::caller::Caller;
use super::error::ApiError;
use crate::preflight::{Report, RunResult, StoreError};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// How long a request waits for its run when it does not say.
const DEFAULT_WAIT: Duration = Duration::from_secs(20);
/// The most `wait` may ask for (`openapi.yaml` says so); the request timeout bounds it more.
const MAX_WAIT_SECONDS: u64 = 3600;
/// Left of the request timeout for reading and answering after the wait.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

/// The query of `GET /cutover/preflight`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreflightQuery {
    /// Seconds to wait for the run to end.
    pub wait: Option<u64>,
    /// Follow this run (from an earlier 202) instead of beginning one; runs count from 1.
    pub run: Option<NonZeroU32>,
}

/// `GET /cutover/preflight`.
pub async fn preflight(
    State(ctx): State<Arc<HttpContext>>,
    caller: Caller,
    query: Result<Query<PreflightQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<Report>), ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    if query.wait.is_some_and(|w| w > MAX_WAIT_SECONDS) {
        return Err(ApiError::InvalidQuery(format!(
            "wait: at most {MAX_WAIT_SECONDS} seconds"
        )));
    }
    let wait = bounded_wait(query.wait, ctx.config.request_timeout);
    let preflights = ctx.preflights.clone();
    let run = match query.run {
        Some(run) => run.get(),
        None => {
            let plan = super::cutover::validated_plan(&ctx).await?;
            if plan.preflight_count() == 0 {
                return Ok((StatusCode::OK, Json(no_preflight())));
            }
            preflights
                .start_or_join(&plan, &caller.username)
                .await
                .map_err(store_error)?
                .run()
        }
    };
    let report = preflights
        .report_after(run, wait)
        .await
        .map_err(store_error)?;
    if report.run != run {
        return Err(ApiError::PreflightRunNotFound {
            asked: run,
            latest: report.run,
        });
    }
    let code = if report.result == RunResult::Running {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(report)))
}

/// The wait asked for, or the default, never so long that the request times out.
fn bounded_wait(asked: Option<u64>, request_timeout: Duration) -> Duration {
    let most = request_timeout.saturating_sub(ANSWER_MARGIN);
    asked.map_or(DEFAULT_WAIT, Duration::from_secs).min(most)
}

/// The answer for a plan without preflight steps: nothing to check.
fn no_preflight() -> Report {
    Report {
        run: 0,
        result: RunResult::None,
        started_at: String::new(),
        finished_at: String::new(),
        triggered_by: String::new(),
        steps: Vec::new(),
    }
}

fn store_error(err: StoreError) -> ApiError {
    ApiError::Upstream(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_bounded_by_the_request_timeout() {
        let timeout = Duration::from_secs(30);
        assert_eq!(bounded_wait(None, timeout), DEFAULT_WAIT);
        assert_eq!(bounded_wait(Some(3), timeout), Duration::from_secs(3));
        assert_eq!(bounded_wait(Some(0), timeout), Duration::ZERO);
        assert_eq!(bounded_wait(Some(3600), timeout), Duration::from_secs(25));
        assert_eq!(bounded_wait(None, Duration::from_secs(2)), Duration::ZERO);
    }
}
