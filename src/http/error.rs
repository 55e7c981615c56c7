//! The HTTP API's errors: each a stable kebab-case code, an HTTP status and a detail a
//! person can act on, answered as `{"error": "<code>", "detail": "..."}` (contract).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer of the HTTP API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A run is already under way.
    #[error("a cutover is already in progress{}", step_suffix(.current_step))]
    InProgress {
        /// The step running now.
        current_step: String,
    },
    /// The cutover failed and the request did not ask to retry.
    #[error(
        "the cutover failed at step {step:?}: {reason}; POST /cutover/retry (or POST /cutover with {{\"retry\": true}}) resumes it from that step"
    )]
    Failed {
        /// The failed step.
        step: String,
        /// Its reason.
        reason: String,
    },
    /// The status ConfigMap shows no cutover, but the durable record says one started: the
    /// status was deleted or recreated, and the service will not start over on its own.
    #[error(transparent)]
    StatusLost(crate::preflight::StatusLost),
    /// Retry asked for a cutover that has not failed.
    #[error("the cutover is {phase}; only a failed cutover can be retried")]
    NotFailed {
        /// The phase found.
        phase: &'static str,
    },
    /// Abort asked for a cutover that is not running.
    #[error("the cutover is {phase}; only a running cutover can be aborted")]
    NotRunning {
        /// The phase found.
        phase: &'static str,
    },
    /// The registry pivot was rolled back and an automatic trigger asked to start again.
    #[error("{0}")]
    RolledBack(String),
    /// A rollback of the registry pivot is under way.
    #[error(
        "the registry pivot is being rolled back (requested by {by:?} at {at}); wait until it ends (GET /cutover), then start again"
    )]
    RollbackInProgress {
        /// Who asked for the rollback.
        by: String,
        /// When.
        at: String,
    },
    /// A rollback was asked for but the registry pivot never happened.
    #[error("{0}")]
    NothingToRollBack(String),
    /// A rollback request without the explicit confirmation.
    #[error(
        "a rollback must be confirmed: send {{\"confirm\": \"{confirmation}\", \"reason\": \"...\"}}{}",
        paren_suffix(.detail)
    )]
    RollbackNotConfirmed {
        /// The confirmation expected.
        confirmation: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A rollback request without a usable reason.
    #[error("a rollback needs a reason for the record: {0}")]
    RollbackReasonRequired(String),
    /// No daemonset-wait step names the registry-pivot DaemonSet whose nodes would
    /// acknowledge a rollback.
    #[error(
        "no daemonset-wait step in namespace {namespace} names the registry-pivot DaemonSet, so no node could acknowledge a rollback: {detail}"
    )]
    NoRegistryPivot {
        /// Namespace searched.
        namespace: String,
        /// What was found instead.
        detail: String,
    },
    /// No step ConfigMaps match the contract's selector.
    #[error("no step ConfigMaps labelled {selector} in namespace {namespace}")]
    NoStepsFound {
        /// Namespace searched.
        namespace: String,
        /// The selector.
        selector: &'static str,
    },
    /// The step ConfigMaps come from a chart older than the service runs; nothing was
    /// started. The body also carries `observedVersion` and `minChartVersion`.
    #[error(transparent)]
    ChartBelowFloor(crate::step::chart::BelowFloor),
    /// The step ConfigMaps do not validate; nothing was started.
    #[error("the step ConfigMaps are invalid; nothing was started:\n{report}")]
    InvalidSteps {
        /// Every problem, each naming the ConfigMap and the field.
        report: String,
    },
    /// The request body is not what the route accepts.
    #[error("invalid request body: {0}")]
    BadRequest(String),
    /// The query string is not what the route accepts.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// `GET /cutover/preflight?run=<n>` for a run that is not the latest one.
    #[error(
        "preflight run {asked} is not the latest recorded run (that is run {latest}); GET /cutover/preflight without `run` begins a new one"
    )]
    PreflightRunNotFound {
        /// The run asked for.
        asked: u32,
        /// The latest run (0: none yet).
        latest: u32,
    },
    /// `GET /cutover/steps/{step}/logs` for a step neither the plan nor the status knows.
    #[error("no step {step:?} in the cutover{}", known_suffix(.known))]
    StepNotFound {
        /// The name asked for.
        step: String,
        /// The plan's steps, in execution order.
        known: Vec<String>,
    },
    /// A step's log asked for before the step ran in this cutover.
    #[error(
        "step {step:?} has not run yet, so it has no log; GET /cutover shows where the cutover stands"
    )]
    StepNotStarted {
        /// The step.
        step: String,
    },
    /// The step runs, but its pod has no log to read yet.
    #[error("step {step:?} has no log yet ({detail}); retry in a moment")]
    StepLogPending {
        /// The step.
        step: String,
        /// Why.
        detail: String,
    },
    /// The step ran, but neither its pod nor a kept tail of its log is left.
    #[error("no log of step {step:?} is left: {detail}")]
    StepLogNotFound {
        /// The step.
        step: String,
        /// Why.
        detail: String,
    },
    /// The caches are not synced yet, or the API server cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// The replica serves as many connections as it may; another replica, or this one a
    /// moment later, answers.
    #[error(
        "this replica serves at most {limit} connections at once; retry shortly (the limit is --max-connections)"
    )]
    TooManyConnections {
        /// The cap.
        limit: usize,
    },
    /// The replica has as many event streams open as it may.
    #[error(
        "this replica serves at most {limit} event streams at once; retry shortly or poll GET /cutover (the limit is --max-event-streams)"
    )]
    TooManyEventStreams {
        /// The cap.
        limit: usize,
    },
    /// The caller holds as many event streams as one caller may; other callers are not
    /// affected.
    #[error(
        "you hold {limit} event streams of this replica already, the most one caller may; close one, or poll GET /cutover (the limit is --max-event-streams-per-caller)"
    )]
    TooManyCallerEventStreams {
        /// The cap per caller.
        limit: usize,
    },
    /// A POST whose body is not declared JSON: with authentication off, the one thing that
    /// keeps a web page of another site from posting to the service through a browser.
    #[error(
        "a POST must carry `Content-Type: application/json` (its body may be empty); got {got:?}"
    )]
    UnsupportedMediaType {
        /// The Content-Type sent, `""` when none.
        got: String,
    },
    /// The API server refused a request the service made.
    #[error("the Kubernetes API refused the request: {0}")]
    Upstream(String),
    /// The request is not authenticated or not authorized (401, 403), or its token could
    /// not be checked (503).
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// A session cookie that is not valid (401), cannot be checked (503), or was sent
    /// cross-site (403); or its user's permission (as [`ApiError::Auth`]).
    #[error(transparent)]
    Session(#[from] crate::auth::SessionError),
}

impl ApiError {
    /// Whether this is an authentication or authorization answer that holds (a refusal),
    /// rather than an outage or a limit that a later try may pass.
    pub fn is_definite_refusal(&self) -> bool {
        match self {
            ApiError::Auth(err) => err.is_definite(),
            ApiError::Session(err) => err.is_definite(),
            _ => false,
        }
    }

    /// Why the step ConfigMaps of `namespace` start nothing: none found (424), or the
    /// problems of `report` (422).
    pub fn invalid_plan(report: &crate::step::StepReport, namespace: &str) -> ApiError {
        if report.found_no_steps() {
            ApiError::NoStepsFound {
                namespace: namespace.to_owned(),
                selector: crate::contract::STEP_SELECTOR,
            }
        } else {
            ApiError::InvalidSteps {
                report: report.to_string(),
            }
        }
    }
}

/// A status write: a transition that does not apply is answered as such; otherwise the API
/// server refused it (502), or the service is stopping (503, another replica answers).
impl From<crate::status::StoreError> for ApiError {
    fn from(err: crate::status::StoreError) -> Self {
        match err {
            crate::status::StoreError::Rejected(rejected) => rejected.into(),
            crate::status::StoreError::Interrupted => ApiError::Unavailable(err.to_string()),
            other => ApiError::Upstream(other.to_string()),
        }
    }
}

/// A transition that does not apply to the status.
impl From<crate::status::Rejected> for ApiError {
    fn from(rejected: crate::status::Rejected) -> Self {
        use crate::status::Rejected;
        match rejected {
            Rejected::InProgress { current_step } => ApiError::InProgress { current_step },
            Rejected::Failed { step, error } => ApiError::Failed {
                step,
                reason: error,
            },
            Rejected::NotRunning { phase } => ApiError::NotRunning {
                phase: phase.as_str(),
            },
            Rejected::RolledBack { .. } => ApiError::RolledBack(rejected.to_string()),
            Rejected::RollingBack { by, at } => ApiError::RollbackInProgress { by, at },
            Rejected::Rollback(refused) => refused.into(),
            Rejected::AlreadyComplete | Rejected::StaleAttempt { .. } => ApiError::InProgress {
                current_step: String::new(),
            },
        }
    }
}

/// A rollback transition that does not apply.
impl From<crate::status::rollback_transition::RollbackRefused> for ApiError {
    fn from(refused: crate::status::rollback_transition::RollbackRefused) -> Self {
        use crate::status::rollback_transition::RollbackRefused;
        match refused {
            RollbackRefused::CutoverRunning { current_step } => {
                ApiError::InProgress { current_step }
            }
            other @ (RollbackRefused::NothingToRollBack { .. }
            | RollbackRefused::NotRollingBack { .. }) => {
                ApiError::NothingToRollBack(other.to_string())
            }
        }
    }
}

/// A preflight run's record that could not be written or read. The routes only begin runs
/// (one under way is joined, not refused) and read them, so this is the API server's error,
/// answered 502 as before.
impl From<crate::preflight::StoreError> for ApiError {
    fn from(err: crate::preflight::StoreError) -> Self {
        ApiError::Upstream(err.to_string())
    }
}

/// A start that did not happen: every caller's refusals answer alike.
impl From<crate::preflight::StartError> for ApiError {
    fn from(err: crate::preflight::StartError) -> Self {
        use crate::preflight::StartError;
        use crate::step::DiscoverError;
        match err {
            StartError::Rejected(rejected) => rejected.into(),
            StartError::StatusLost(lost) => ApiError::StatusLost(lost),
            StartError::Store(err) => err.into(),
            StartError::Steps { namespace, source } => match &*source {
                DiscoverError::Invalid(report) => ApiError::invalid_plan(report, &namespace),
                DiscoverError::BelowFloor(floor) => ApiError::ChartBelowFloor(floor.clone()),
                DiscoverError::Kube { .. } => ApiError::Unavailable(source.to_string()),
            },
            StartError::NotSynced | StartError::Record { .. } | StartError::Status { .. } => {
                ApiError::Unavailable(err.to_string())
            }
        }
    }
}

fn paren_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

fn known_suffix(known: &[String]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!("; its steps are {}", known.join(", "))
    }
}

fn step_suffix(step: &str) -> String {
    if step.is_empty() {
        String::new()
    } else {
        format!(" (step {step:?} is running)")
    }
}

impl ApiError {
    /// The stable kebab-case code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InProgress { .. } => "cutover-in-progress",
            ApiError::Failed { .. } => "cutover-failed",
            ApiError::NotFailed { .. } => "cutover-not-failed",
            ApiError::StatusLost(_) => "status-lost",
            ApiError::NotRunning { .. } => "cutover-not-running",
            ApiError::RolledBack(_) => "cutover-rolled-back",
            ApiError::RollbackInProgress { .. } => "rollback-in-progress",
            ApiError::NothingToRollBack(_) => "nothing-to-roll-back",
            ApiError::RollbackNotConfirmed { .. } => "rollback-not-confirmed",
            ApiError::RollbackReasonRequired(_) => "rollback-reason-required",
            ApiError::NoRegistryPivot { .. } => "no-registry-pivot-daemonset",
            ApiError::NoStepsFound { .. } => "no-steps-found",
            ApiError::InvalidSteps { .. } => "invalid-steps",
            ApiError::ChartBelowFloor(_) => "cutover-chart-below-floor",
            ApiError::BadRequest(_) => "bad-request",
            ApiError::InvalidQuery(_) => "invalid-query",
            ApiError::PreflightRunNotFound { .. } => "preflight-run-not-found",
            ApiError::StepNotFound { .. } => "step-not-found",
            ApiError::StepNotStarted { .. } => "step-not-started",
            ApiError::StepLogPending { .. } => "step-log-pending",
            ApiError::StepLogNotFound { .. } => "step-log-not-found",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::TooManyConnections { .. } => "too-many-connections",
            ApiError::TooManyEventStreams { .. } | ApiError::TooManyCallerEventStreams { .. } => {
                "too-many-event-streams"
            }
            ApiError::UnsupportedMediaType { .. } => "unsupported-media-type",
            ApiError::Upstream(_) => "kubernetes-api-error",
            ApiError::Auth(err) => err.code(),
            ApiError::Session(err) => err.code(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InProgress { .. }
            | ApiError::Failed { .. }
            | ApiError::NotFailed { .. }
            | ApiError::StatusLost(_)
            | ApiError::NotRunning { .. }
            | ApiError::RolledBack(_)
            | ApiError::RollbackInProgress { .. }
            | ApiError::NothingToRollBack(_) => StatusCode::CONFLICT,
            ApiError::RollbackNotConfirmed { .. } | ApiError::RollbackReasonRequired(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::NoStepsFound { .. } | ApiError::NoRegistryPivot { .. } => {
                StatusCode::FAILED_DEPENDENCY
            }
            ApiError::InvalidSteps { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::ChartBelowFloor(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::BadRequest(_) | ApiError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::PreflightRunNotFound { .. }
            | ApiError::StepNotFound { .. }
            | ApiError::StepLogNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::StepNotStarted { .. } | ApiError::StepLogPending { .. } => {
                StatusCode::CONFLICT
            }
            ApiError::Unavailable(_)
            | ApiError::TooManyConnections { .. }
            | ApiError::TooManyEventStreams { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyCallerEventStreams { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Auth(err) => err.status(),
            ApiError::Session(err) => err.status(),
        }
    }
}

/// The JSON error body.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// The stable code.
    pub error: &'static str,
    /// What happened and what to do.
    pub detail: String,
    /// `cutover-chart-below-floor`: the lowest chart version among the step ConfigMaps.
    #[serde(rename = "observedVersion", skip_serializing_if = "Option::is_none")]
    pub observed_version: Option<String>,
    /// `cutover-chart-below-floor`: the oldest chart version the service runs.
    #[serde(rename = "minChartVersion", skip_serializing_if = "Option::is_none")]
    pub min_chart_version: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (observed_version, min_chart_version) = match &self {
            ApiError::ChartBelowFloor(floor) => {
                (Some(floor.observed.clone()), Some(floor.min.clone()))
            }
            _ => (None, None),
        };
        let body = ErrorBody {
            error: self.code(),
            detail: self.to_string(),
            observed_version,
            min_chart_version,
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let ApiError::Auth(crate::auth::AuthError::RateLimited { retry_after, .. })
        | ApiError::Session(crate::auth::SessionError::Auth(
            crate::auth::AuthError::RateLimited { retry_after, .. },
        )) = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn report_of(configmaps: &[ConfigMap]) -> crate::step::StepReport {
        match crate::step::parse_plan(configmaps) {
            Ok(_) => panic!("the steps should not validate"),
            Err(report) => report,
        }
    }

    #[test]
    fn a_report_of_no_steps_is_424_and_of_invalid_ones_422() {
        let none = ApiError::invalid_plan(&report_of(&[]), "catalyst");
        assert_eq!(none.code(), "no-steps-found");
        assert_eq!(none.status(), StatusCode::FAILED_DEPENDENCY);
        assert!(none.to_string().contains("catalyst"), "{none}");

        let unnamed: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cutover-step-01-a", "labels": {crate::contract::LABEL_STEP_ORDER: "1"}},
            "data": {},
        }))
        .unwrap_or_default();
        let invalid = ApiError::invalid_plan(&report_of(&[unnamed]), "catalyst");
        assert_eq!(invalid.code(), "invalid-steps");
        assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            invalid.to_string().contains("cutover-step-01-a"),
            "{invalid}"
        );
    }

    #[test]
    fn every_start_refusal_has_one_answer() {
        use crate::preflight::{StartError, StatusLost};
        use crate::status::{Rejected, StoreError};
        use std::sync::Arc;
        let answer = |err: StartError| {
            let api = ApiError::from(err);
            (api.status().as_u16(), api.code())
        };
        let lost = StatusLost {
            record: "catalyst/catalyst-cutover-record".to_owned(),
            namespace: "catalyst".to_owned(),
            name: "catalyst-cutover-record".to_owned(),
            started_at: "2026-11-23T10:00:00Z".to_owned(),
            finished_at: None,
        };
        assert_eq!(answer(StartError::StatusLost(lost)), (409, "status-lost"));
        let failed = Rejected::Failed {
            step: "a".to_owned(),
            error: "e".to_owned(),
        };
        assert_eq!(
            answer(StartError::Rejected(failed.clone())),
            (409, "cutover-failed")
        );
        assert_eq!(
            ApiError::from(StoreError::Rejected(failed)).code(),
            "cutover-failed",
            "a refusal met in the write answers as one met before it"
        );
        let steps = StartError::Steps {
            namespace: "catalyst".to_owned(),
            source: Arc::new(crate::step::DiscoverError::Invalid(report_of(&[]))),
        };
        assert_eq!(answer(steps), (424, "no-steps-found"));
        assert_eq!(answer(StartError::NotSynced), (503, "unavailable"));
        assert_eq!(
            answer(StartError::Store(StoreError::Interrupted)),
            (503, "unavailable")
        );
    }
}
