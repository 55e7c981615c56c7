//! `GET /cutover/steps/{step}/logs`: a step's log. A running step's comes from its Job's pod
//! (followed with `follow=true`, lines sent as the pod writes them); a finished step's from
//! the pod while it exists, then from the tail kept when the step ended. The headers say
//! which: `X-Log-Source` (`pod` or `kept`), `X-Log-Pod`, and for a kept tail
//! `X-Log-Truncated`.
//!
//! The Job read is the one the step and its attempt determine (a `jobName` written into the
//! status by hand is ignored, as the abort ignores it), and only its pods that carry every
//! label the cutover gives its Jobs' pods: whoever may edit ConfigMaps cannot point a reader
//! at another pod's log. A live log is sent line by line, each line capped at
//! [`MAX_LINE_BYTES`], bytes that are not UTF-8 replaced.

use super::HttpContext;
use super::error::ApiError;
use crate::contract;
use crate::retry::is_status;
use crate::status::model::{KEY_CUTOVER_ATTEMPT, StatusData, StepRow, get, get_u32};
use crate::step::{StepKind, StepName};
use crate::steplog::kept::first_container;
use crate::steplog::{CappedLines, LogSource, MAX_LINE_BYTES, TailKeeper, newest_pod, source};
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, LogParams};
use serde::Deserialize;
use std::sync::Arc;

/// Header naming where the log came from: `pod` or `kept`.
pub const HEADER_SOURCE: &str = "x-log-source";
/// Header naming the pod the log is (or was) read from.
pub const HEADER_POD: &str = "x-log-pod";
/// Header of a kept tail: `true` when the log was longer than the tail.
pub const HEADER_TRUNCATED: &str = "x-log-truncated";

/// The query of `GET /cutover/steps/{step}/logs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Keep the response open and send the running step's lines as they come.
    #[serde(default)]
    pub follow: bool,
}

/// `GET /cutover/steps/{step}/logs`.
pub async fn logs(
    State(ctx): State<Arc<HttpContext>>,
    Path(step): Path<String>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let data = super::status::cached_data(&ctx)?;
    let name = known_step(&ctx, &data, &step)?;
    let mut row = StepRow::read(&data, name.as_str());
    if !row.job_name.is_empty() && !crate::runner::decide::may_name(name.as_str(), &row) {
        row.job_name = crate::render::job_name(&name, row.attempt);
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    match source(&row) {
        LogSource::NotStarted => Err(ApiError::StepNotStarted {
            step: name.as_str().to_owned(),
        }),
        LogSource::Running { job } => match job_pod(&pods, &job, &name).await? {
            JobPod::Ours(pod) => pod_log(&pods, &pod, &job, query.follow).await,
            JobPod::Foreign => Err(not_ours(&name, &job)),
            JobPod::None => Err(ApiError::StepLogPending {
                step: name.as_str().to_owned(),
                detail: format!("Job {job} has no pod yet"),
            }),
        },
        LogSource::Finished { job } => {
            if let JobPod::Ours(pod) = job_pod(&pods, &job, &name).await? {
                match pod_log(&pods, &pod, &job, query.follow).await {
                    // The pod went between the list and the read: its kept tail answers.
                    Err(ApiError::StepLogNotFound { .. }) => {}
                    answer => return answer,
                }
            }
            kept_log(&ctx, &data, &name, &job).await
        }
    }
}

/// The step named `raw` if the plan or the status knows it, else 404 `step-not-found`. A
/// daemonset-wait step has no pod of its own: 404 `step-log-not-found`, saying where to look.
fn known_step(ctx: &HttpContext, data: &StatusData, raw: &str) -> Result<StepName, ApiError> {
    let plan = super::status::ready_plan(ctx);
    let not_found = || ApiError::StepNotFound {
        step: raw.to_owned(),
        known: plan
            .as_ref()
            .map(|p| p.iter().map(|s| s.name.as_str().to_owned()).collect())
            .unwrap_or_default(),
    };
    let name = StepName::new(raw).map_err(|_| not_found())?;
    let planned = plan
        .as_ref()
        .and_then(|p| p.iter().find(|s| s.name == name).cloned());
    if let Some(step) = &planned
        && let StepKind::DaemonSetWait { daemonset } = &step.kind
    {
        return Err(ApiError::StepLogNotFound {
            step: name.as_str().to_owned(),
            detail: format!(
                "a daemonset-wait step runs no pod of its own; the nodes' agents log in the pods of DaemonSet {daemonset}"
            ),
        });
    }
    let prefix = format!("step.{}.", name.as_str());
    let recorded = data.keys().any(|k| k.starts_with(&prefix));
    if planned.is_none() && !recorded {
        return Err(not_found());
    }
    Ok(name)
}

/// What holds the log of `job`: its newest pod that carries the cutover's labels for the
/// step, or only pods that do not (someone else's), or no pod at all.
enum JobPod {
    Ours(Box<Pod>),
    Foreign,
    None,
}

/// The newest of `job`'s pods that is the cutover's pod of `step`.
async fn job_pod(pods: &Api<Pod>, job: &str, step: &StepName) -> Result<JobPod, ApiError> {
    let params = ListParams::default().labels(&format!("{}={job}", contract::LABEL_JOB_NAME));
    let list = pods
        .list(&params)
        .await
        .map_err(|e| ApiError::Upstream(format!("cannot list the pods of Job {job}: {e}")))?;
    let ours: Vec<Pod> = list
        .items
        .iter()
        .filter(|pod| is_step_pod(pod, step))
        .cloned()
        .collect();
    Ok(match newest_pod(&ours) {
        Some(pod) => JobPod::Ours(Box::new(pod.clone())),
        None if !list.items.is_empty() => JobPod::Foreign,
        None => JobPod::None,
    })
}

/// 404 for a Job whose pods are not the cutover's pods of `step`: never read.
fn not_ours(step: &StepName, job: &str) -> ApiError {
    ApiError::StepLogNotFound {
        step: step.as_str().to_owned(),
        detail: format!(
            "the pods named for Job {job} lack the labels the cutover gives the pods of step {}; they are not read",
            step.as_str()
        ),
    }
}

/// Whether `pod` carries every label the cutover gives the pods of `step`'s Jobs. Pure.
fn is_step_pod(pod: &Pod, step: &StepName) -> bool {
    let labels = pod.labels();
    let label = |key: &str| labels.get(key).map(String::as_str);
    label(contract::LABEL_PART_OF) == Some(contract::PART_OF)
        && label(contract::LABEL_COMPONENT) == Some(contract::COMPONENT_JOB)
        && label(contract::LABEL_JOB_STEP) == Some(step.as_str())
}

/// The log of `pod`'s step container, streamed line by line.
async fn pod_log(
    pods: &Api<Pod>,
    pod: &Pod,
    job: &str,
    follow: bool,
) -> Result<Response, ApiError> {
    let name = pod.name_any();
    let step = || {
        pod.labels()
            .get(contract::LABEL_JOB_STEP)
            .cloned()
            .unwrap_or_default()
    };
    // kube-apiserver answers a pod on no node yet with an empty log and 200, not an error:
    // followed, that would be a stream that ends at once, before the pod ever ran.
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_none_or(str::is_empty)
    {
        return Err(ApiError::StepLogPending {
            step: step(),
            detail: format!("pod {name} of Job {job} is not on a node yet"),
        });
    }
    let Some(container) = first_container(pod) else {
        return Err(ApiError::StepLogPending {
            step: step(),
            detail: format!("pod {name} of Job {job} names no container"),
        });
    };
    let params = LogParams {
        container: Some(container),
        follow,
        ..LogParams::default()
    };
    let reader = match pods.log_stream(&name, &params).await {
        Ok(reader) => reader,
        Err(err) if is_status(&err, 404) => {
            return Err(ApiError::StepLogNotFound {
                step: step(),
                detail: format!("pod {name} of Job {job} is gone"),
            });
        }
        // The API server answers 400 while the container has not started.
        Err(err) if is_status(&err, 400) => {
            return Err(ApiError::StepLogPending {
                step: step(),
                detail: format!("pod {name} of Job {job} has not started its container: {err}"),
            });
        }
        Err(err) => {
            return Err(ApiError::Upstream(format!(
                "cannot read the log of pod {name}: {err}"
            )));
        }
    };
    let mut response = Body::from_stream(capped_lines(reader)).into_response();
    text_headers(&mut response, "pod", &name);
    Ok(response)
}

/// The lines of `reader`, each capped at [`MAX_LINE_BYTES`], bytes that are not UTF-8
/// replaced; only a failed read ends them early. Read a line's worth at a time
/// (`read_until` through a `take`), so that a line without end costs no more memory.
fn capped_lines(
    reader: impl AsyncBufRead + Send + Unpin + 'static,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
    async_stream::try_stream! {
        let mut reader = reader;
        let mut lines = CappedLines::new(MAX_LINE_BYTES);
        let mut piece = Vec::new();
        loop {
            piece.clear();
            let read = (&mut reader)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut piece)
                .await?;
            if read == 0 {
                break;
            }
            let mut rest = piece.as_slice();
            while !rest.is_empty() {
                let (line, used) = lines.feed(rest);
                rest = &rest[used..];
                if let Some(line) = line {
                    yield Bytes::from(line);
                }
            }
        }
        if let Some(line) = lines.finish() {
            yield Bytes::from(line);
        }
    }
}

/// The tail kept when the step ended, else 404 `step-log-not-found`.
async fn kept_log(
    ctx: &HttpContext,
    data: &StatusData,
    step: &StepName,
    job: &str,
) -> Result<Response, ApiError> {
    let run = match get(
        data,
        &contract::key::step(step.as_str(), KEY_CUTOVER_ATTEMPT),
    )
    .parse::<u32>()
    {
        Ok(run) => run,
        Err(_) => get_u32(data, KEY_CUTOVER_ATTEMPT),
    };
    let keeper = TailKeeper::new(ctx.client.clone(), &ctx.config.namespace, ctx.store.name());
    let kept = keeper.read(step, run).await.map_err(|e| {
        ApiError::Upstream(format!(
            "cannot read the kept log of step {}: {e}",
            step.as_str()
        ))
    })?;
    let Some(kept) = kept else {
        return Err(ApiError::StepLogNotFound {
            step: step.as_str().to_owned(),
            detail: format!(
                "the pods of Job {job} are gone and no tail of its log was kept for run {run} (a newer run deletes the older runs' tails)"
            ),
        });
    };
    let mut response = kept.log.into_response();
    text_headers(&mut response, "kept", &kept.pod);
    if let Ok(value) = HeaderValue::from_str(&kept.truncated.to_string()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(HEADER_TRUNCATED), value);
    }
    Ok(response)
}

fn text_headers(response: &mut Response, from: &'static str, pod: &str) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        HeaderName::from_static(HEADER_SOURCE),
        HeaderValue::from_static(from),
    );
    if let Ok(value) = HeaderValue::from_str(pod) {
        headers.insert(HeaderName::from_static(HEADER_POD), value);
    }
}
