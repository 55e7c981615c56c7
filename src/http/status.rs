//! The status the routes answer: `GET /cutover` (and the console's status route) from the
//! watch-fed caches, no API request, serialized once per status version and plan
//! ([`BodyCache`]); and the status body every route that changes the status answers with.

use super::HttpContext;
use super::error::ApiError;
use crate::status::StatusBody;
use crate::status::model::StatusData;
use crate::step::{PlanState, StepPlan};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::ConfigMap;
use std::sync::{Arc, Mutex, PoisonError};

/// `GET /cutover` (and the console's status route): from the cache, no API request, and
/// serialized only when the status or the plan changed since the last GET.
pub async fn status(State(ctx): State<Arc<HttpContext>>) -> Result<Response, ApiError> {
    // Unsynced: 503, as every route that reads the cache answers.
    cached_data(&ctx)?;
    let Some(configmap) = ctx.store.cache().configmap() else {
        return Ok(Json(body(&ctx, &StatusData::default())).into_response());
    };
    let plan = ready_plan(&ctx);
    let json = ctx
        .bodies
        .get_or_build(&configmap, plan.as_ref(), || {
            let data = configmap.data.clone().unwrap_or_default();
            serde_json::to_vec(&body_with(&data, plan.as_deref())).map(Bytes::from)
        })
        .map_err(|e| ApiError::Unavailable(format!("cannot serialize the status body: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// The status body for `data` with the steps in execution order.
pub fn body(ctx: &HttpContext, data: &StatusData) -> StatusBody {
    body_with(data, ready_plan(ctx).as_deref())
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

/// The last serialized status body, keyed by the identity of the cached status ConfigMap
/// and of the plan it was built with. The status cache and the step source publish a new
/// `Arc` for every change, so identity stands for version; holding both `Arc`s keeps their
/// addresses from being reused by a later version.
pub struct BodyCache {
    last: Mutex<Option<CachedBody>>,
}

struct CachedBody {
    configmap: Arc<ConfigMap>,
    plan: Option<Arc<StepPlan>>,
    json: Bytes,
}

impl CachedBody {
    fn is_for(&self, configmap: &Arc<ConfigMap>, plan: Option<&Arc<StepPlan>>) -> bool {
        Arc::ptr_eq(&self.configmap, configmap)
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

    /// The body of `configmap` and `plan`: the cached one when it is theirs, else `build`'s,
    /// which is cached in its place. `build` runs without the lock held.
    pub fn get_or_build<E>(
        &self,
        configmap: &Arc<ConfigMap>,
        plan: Option<&Arc<StepPlan>>,
        build: impl FnOnce() -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        if let Some(cached) = self.lock().as_ref()
            && cached.is_for(configmap, plan)
        {
            return Ok(cached.json.clone());
        }
        let json = build()?;
        *self.lock() = Some(CachedBody {
            configmap: configmap.clone(),
            plan: plan.cloned(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract;
    use std::cell::Cell;
    use std::convert::Infallible;

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
                .get_or_build(cm, plan, || {
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
}
