//! `POST /cutover/rollback` (and the console's `/api/v1/sovereign/cutover/rollback`): an
//! explicit, confirmed and recorded way back for the registry pivot. The request is checked
//! here and written as a [`RollbackTransition`]; the runner then follows the nodes'
//! acknowledgements ([`crate::runner::rollback_follower`]). Only the registry pivot is undone.

use super::HttpContext;
use super::caller::Caller;
use super::error::ApiError;
use super::status::{body, cached_data};
use crate::contract::{key, registries};
use crate::sanitize::{self, Lines};
use crate::status::model::{Phase, StatusData, get};
use crate::status::rollback_transition::{
    CONFIRMATION, DEFAULT_TIMEOUT, MAX_TIMEOUT, RollbackOutcome, RollbackRecord, RollbackTransition,
};
use crate::status::{StatusBody, rfc3339};
use crate::step::{DiscoverError, PlanState, StepKind, StepPlan};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The longest reason recorded: the status ConfigMap is read by people and the console.
pub const MAX_REASON_CHARS: usize = 1024;

/// The body of a rollback request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RollbackRequest {
    /// Must be exactly [`CONFIRMATION`].
    #[serde(default)]
    pub confirm: Option<String>,
    /// Why, for the record.
    #[serde(default)]
    pub reason: Option<String>,
    /// How long to wait for every current node's acknowledgement (default 600). A JSON
    /// number, as JSON Schema's `integer` is: `60.0` is as whole as `60`.
    #[serde(default)]
    pub timeout_seconds: Option<serde_json::Number>,
}

/// A request that passed [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The reason, trimmed.
    pub reason: String,
    /// The wait for acknowledgements.
    pub timeout: Duration,
}

/// Checks a rollback request: the confirmation, a reason, a bounded wait. Pure.
pub fn validate(request: &RollbackRequest) -> Result<Validated, ApiError> {
    let confirm_detail = match request.confirm.as_deref() {
        Some(CONFIRMATION) => None,
        None => Some("confirm is missing".to_owned()),
        Some(other) => Some(format!("confirm is {other:?}")),
    };
    if let Some(detail) = confirm_detail {
        return Err(ApiError::RollbackNotConfirmed {
            confirmation: CONFIRMATION,
            detail,
        });
    }
    let reason = request.reason.as_deref().unwrap_or("").trim();
    if reason.is_empty() {
        return Err(ApiError::RollbackReasonRequired(
            "reason is missing or empty".to_owned(),
        ));
    }
    let chars = reason.chars().count();
    if chars > MAX_REASON_CHARS {
        return Err(ApiError::RollbackReasonRequired(format!(
            "reason is {chars} characters long, more than {MAX_REASON_CHARS}"
        )));
    }
    // Escape sequences and bidirectional overrides would reach the terminals of whoever
    // reads the status or the Events.
    if let Some((at, c)) = sanitize::first_unsafe(reason, Lines::Keep) {
        return Err(ApiError::RollbackReasonRequired(format!(
            "reason holds the control or formatting character {} at character {at}; only \
             printable text and newlines are recorded",
            sanitize::code_point(c)
        )));
    }
    let timeout = match &request.timeout_seconds {
        None => DEFAULT_TIMEOUT,
        Some(number) => {
            let max = MAX_TIMEOUT.as_secs_f64();
            match number.as_f64() {
                Some(s) if s.fract() != 0.0 => {
                    return Err(ApiError::BadRequest(format!(
                        "timeoutSeconds must be a whole number of seconds, not {number}"
                    )));
                }
                Some(s) if (1.0..=max).contains(&s) => Duration::from_secs_f64(s),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "timeoutSeconds must be from 1 to {max}, not {number}"
                    )));
                }
            }
        }
    };
    Ok(Validated {
        reason: reason.to_owned(),
        timeout,
    })
}

/// The answer of a rollback request: what happened, and the status after it (its
/// `rollback` object says what is undone and what is left alone).
#[derive(Debug, Serialize)]
pub struct RollbackResponse {
    /// `rollback-started`, `rollback-restarted`, `rollback-in-progress` or
    /// `already-rolled-back`.
    pub outcome: &'static str,
    /// The status body.
    #[serde(flatten)]
    pub status: StatusBody,
}

/// `POST /cutover/rollback`.
pub async fn rollback(
    State(ctx): State<Arc<HttpContext>>,
    caller: Caller,
    body_bytes: Bytes,
) -> Result<(StatusCode, Json<RollbackResponse>), ApiError> {
    let request: RollbackRequest = super::body::optional_json_object(&body_bytes)?;
    let valid = validate(&request)?;
    let cached = cached_data(&ctx)?;
    let daemonsets = if signals_a_new_rollback(&cached) {
        pivot_daemonsets(&ctx).await?
    } else {
        recorded_daemonsets(&cached)
    };
    let now = jiff::Timestamp::now();
    let deadline = now
        .checked_add(valid.timeout)
        .map_err(|e| ApiError::BadRequest(format!("timeoutSeconds: {e}")))?;
    let transition = RollbackTransition::Requested {
        by: caller.username.clone(),
        reason: valid.reason.clone(),
        at: rfc3339(now),
        deadline: rfc3339(deadline),
        daemonsets,
    };
    let (data, outcome) = ctx.store.update(|data| Ok(transition.apply(data)?)).await?;
    tracing::warn!(
        by = %caller.username,
        reason = %valid.reason,
        outcome = outcome.as_str(),
        "registry pivot rollback requested"
    );
    let code = match outcome {
        RollbackOutcome::AlreadyRolledBack => StatusCode::OK,
        _ => StatusCode::ACCEPTED,
    };
    Ok((
        code,
        Json(RollbackResponse {
            outcome: outcome.as_str(),
            status: body(&ctx, &data),
        }),
    ))
}

/// Whether a request would start a rollback from a cutover whose pivot was signalled, so
/// the DaemonSets to follow must be found now; otherwise the transition refuses it or the
/// rollback under way keeps its own.
fn signals_a_new_rollback(data: &StatusData) -> bool {
    matches!(Phase::of(data), Phase::Complete | Phase::Failed)
        && get(data, key::REGISTRIES_YAML_ACTIVE) == registries::V2
}

fn recorded_daemonsets(data: &StatusData) -> Vec<String> {
    RollbackRecord::read(data)
        .map(|record| record.daemon_sets)
        .unwrap_or_default()
}

/// The DaemonSets of the plan's daemonset-wait steps: the registry-pivot agents.
async fn pivot_daemonsets(ctx: &HttpContext) -> Result<Vec<String>, ApiError> {
    let plan = match ctx.steps.current() {
        PlanState::Ready(plan) => plan,
        _ => {
            match crate::step::discover(&ctx.client, &ctx.config.namespace, &ctx.config.step_policy)
                .await
            {
                Ok(plan) => Arc::new(plan),
                Err(DiscoverError::Invalid(report)) => {
                    return Err(ApiError::NoRegistryPivot {
                        namespace: ctx.config.namespace.clone(),
                        detail: format!("the step ConfigMaps are invalid: {report}"),
                    });
                }
                Err(err) => return Err(ApiError::Unavailable(err.to_string())),
            }
        }
    };
    let names = daemonsets_of(&plan);
    if names.is_empty() {
        return Err(ApiError::NoRegistryPivot {
            namespace: ctx.config.namespace.clone(),
            detail: "the plan has no daemonset-wait step".to_owned(),
        });
    }
    Ok(names)
}

/// The distinct DaemonSets of `plan`'s daemonset-wait steps, in execution order.
pub fn daemonsets_of(plan: &StepPlan) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for step in plan.iter() {
        if let StepKind::DaemonSetWait { daemonset } = &step.kind
            && !names.contains(daemonset)
        {
            names.push(daemonset.clone());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        confirm: Option<&str>,
        reason: Option<&str>,
        timeout: Option<serde_json::Value>,
    ) -> RollbackRequest {
        RollbackRequest {
            confirm: confirm.map(str::to_owned),
            reason: reason.map(str::to_owned),
            timeout_seconds: timeout.and_then(|t| t.as_number().cloned()),
        }
    }

    #[test]
    fn a_rollback_needs_the_exact_confirmation() {
        for confirm in [None, Some(""), Some("yes"), Some("ROLLBACK-REGISTRY-PIVOT")] {
            let err = validate(&request(confirm, Some("harbor down"), None)).unwrap_err();
            assert_eq!(err.code(), "rollback-not-confirmed", "{confirm:?}");
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
            assert!(err.to_string().contains(CONFIRMATION));
        }
    }

    #[test]
    fn a_rollback_needs_a_reason_of_sane_size() {
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        for reason in [
            None,
            Some(""),
            Some("   "),
            Some(long.as_str()),
            Some("a\u{0}b"),
            Some("a\u{1b}[2Jb"),
            Some("a\rb"),
            Some("a\u{85}b"),
            Some("evil \u{202e}txt.exe"),
            Some("line\u{2028}separator"),
            Some("zero\u{200b}width"),
            Some("isolate \u{2066}x\u{2069}"),
        ] {
            let err = validate(&request(Some(CONFIRMATION), reason, None)).unwrap_err();
            assert_eq!(err.code(), "rollback-reason-required", "{reason:?}");
        }
        let err = validate(&request(Some(CONFIRMATION), Some("ab\u{202e}"), None)).unwrap_err();
        assert!(
            err.to_string().contains("U+202E at character 2"),
            "the refusal says which and where: {err}"
        );
        let ok = validate(&request(Some(CONFIRMATION), Some("  harbor down\n"), None)).unwrap();
        assert_eq!(ok.reason, "harbor down");
        let wide = "é".repeat(MAX_REASON_CHARS);
        assert!(
            validate(&request(Some(CONFIRMATION), Some(&wide), None)).is_ok(),
            "the limit counts characters, as the spec's maxLength does"
        );
        assert_eq!(ok.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn the_wait_is_bounded_and_whole() {
        let over = MAX_TIMEOUT.as_secs() + 1;
        for bad in [
            serde_json::json!(0),
            serde_json::json!(-5),
            serde_json::json!(over),
            serde_json::json!(1.5),
            serde_json::json!(1e300),
        ] {
            let err =
                validate(&request(Some(CONFIRMATION), Some("r"), Some(bad.clone()))).unwrap_err();
            assert_eq!(err.code(), "bad-request", "{bad}");
        }
        for (good, secs) in [
            (serde_json::json!(30), 30),
            (serde_json::json!(2460.0), 2460),
        ] {
            let ok = validate(&request(Some(CONFIRMATION), Some("r"), Some(good))).unwrap();
            assert_eq!(ok.timeout, Duration::from_secs(secs));
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = super::super::body::json_object::<RollbackRequest>(
            br#"{"confirm": "rollback-registry-pivot", "reason": "r", "force": true}"#,
        )
        .unwrap_err();
        assert_eq!(err.code(), "bad-request");
    }

    #[test]
    fn only_a_signalled_pivot_looks_for_daemonsets() {
        let data = |phase: &str, active: &str| {
            crate::status::model::data_of(&[
                ("cutoverPhase", phase),
                ("registriesYamlActive", active),
            ])
        };
        assert!(signals_a_new_rollback(&data("complete", "v2")));
        assert!(signals_a_new_rollback(&data("failed", "v2")));
        assert!(!signals_a_new_rollback(&data("failed", "v1")));
        assert!(!signals_a_new_rollback(&data("running", "v2")));
        assert!(!signals_a_new_rollback(&data("rolling-back", "rollback")));
    }
}
