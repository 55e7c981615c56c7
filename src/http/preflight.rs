//! `POST /cutover/preflight`: runs the plan's preflight steps as a run of their own (recorded
//! in the ConfigMap `self-sovereign-cutover-preflight`, never in the cutover's status) and
//! answers with each check's result. It joins the run under way, if any, or begins a new
//! one; never while a cutover runs (409 `cutover-in-progress`: a preflight's Jobs would run
//! beside the cutover's).
//!
//! The POST waits for the run up to `wait` seconds (default 20, at most the request
//! timeout less a margin): 200 with the results once it ended, else 202 with the run as it
//! stands. `GET /cutover/preflight` starts nothing: it answers the latest run, or with
//! `?run=<n>` run `n`, waiting for it to end up to `wait` seconds (default 0).

use super::HttpContext;
use super::caller::Caller;
use super::error::ApiError;
use crate::contract;
use crate::preflight::{Report, RunResult};
use crate::status::model::{Phase, get};
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

/// The query of `POST /cutover/preflight`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreflightQuery {
    /// Seconds to wait for the run to end.
    pub wait: Option<u64>,
}

/// The query of `GET /cutover/preflight`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// Seconds to wait for the run to end.
    pub wait: Option<u64>,
    /// The run to answer (from an earlier 202) instead of the latest; runs count from 1.
    pub run: Option<NonZeroU32>,
}

/// `POST /cutover/preflight`: begins a run, or joins the one under way.
pub async fn run(
    State(ctx): State<Arc<HttpContext>>,
    caller: Caller,
    query: Result<Query<PreflightQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<Report>), ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let wait = checked_wait(query.wait, DEFAULT_WAIT, ctx.config.request_timeout)?;
    let data = super::status::cached_data(&ctx)?;
    if Phase::of(&data) == Phase::Running {
        return Err(ApiError::InProgress {
            current_step: get(&data, contract::key::CURRENT_STEP).to_owned(),
        });
    }
    let plan = ctx.starts.plan().await?;
    if plan.preflight_count() == 0 {
        return Ok((StatusCode::OK, Json(no_preflight())));
    }
    let run = ctx
        .preflights
        .start_or_join(&plan, &caller.username)
        .await?
        .run();
    answer(&ctx, run, wait).await
}

/// `GET /cutover/preflight`: the latest run (or run `run`), starting nothing.
pub async fn report(
    State(ctx): State<Arc<HttpContext>>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<Report>), ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let wait = checked_wait(query.wait, Duration::ZERO, ctx.config.request_timeout)?;
    let run = match query.run {
        Some(run) => run.get(),
        None => {
            let latest = ctx.preflights.latest().await?;
            if latest.run == 0 || wait.is_zero() {
                return Ok((code_of(&latest), Json(latest)));
            }
            latest.run
        }
    };
    answer(&ctx, run, wait).await
}

/// Run `run`'s report once it ended or `wait` passed: 200 when it ended, else 202; 404 when
/// the latest run is another.
async fn answer(
    ctx: &HttpContext,
    run: u32,
    wait: Duration,
) -> Result<(StatusCode, Json<Report>), ApiError> {
    let report = ctx.preflights.report_after(run, wait).await?;
    if report.run != run {
        return Err(ApiError::PreflightRunNotFound {
            asked: run,
            latest: report.run,
        });
    }
    Ok((code_of(&report), Json(report)))
}

fn code_of(report: &Report) -> StatusCode {
    if report.result == RunResult::Running {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    }
}

/// The wait asked for (refused past [`MAX_WAIT_SECONDS`]), bounded by the request timeout.
fn checked_wait(
    asked: Option<u64>,
    default: Duration,
    request_timeout: Duration,
) -> Result<Duration, ApiError> {
    if asked.is_some_and(|w| w > MAX_WAIT_SECONDS) {
        return Err(ApiError::InvalidQuery(format!(
            "wait: at most {MAX_WAIT_SECONDS} seconds"
        )));
    }
    Ok(bounded_wait(asked, default, request_timeout))
}

/// The wait asked for, or the default, never so long that the request times out.
fn bounded_wait(asked: Option<u64>, default: Duration, request_timeout: Duration) -> Duration {
    let most = request_timeout.saturating_sub(ANSWER_MARGIN);
    asked.map_or(default, Duration::from_secs).min(most)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_bounded_by_the_request_timeout() {
        let timeout = Duration::from_secs(30);
        let wait = |asked, timeout| bounded_wait(asked, DEFAULT_WAIT, timeout);
        assert_eq!(wait(None, timeout), DEFAULT_WAIT);
        assert_eq!(wait(Some(3), timeout), Duration::from_secs(3));
        assert_eq!(wait(Some(0), timeout), Duration::ZERO);
        assert_eq!(wait(Some(3600), timeout), Duration::from_secs(25));
        assert_eq!(wait(None, Duration::from_secs(2)), Duration::ZERO);
        assert_eq!(
            bounded_wait(None, Duration::ZERO, timeout),
            Duration::ZERO,
            "a GET does not wait unless asked"
        );
        assert!(checked_wait(Some(3601), DEFAULT_WAIT, timeout).is_err());
    }
}
