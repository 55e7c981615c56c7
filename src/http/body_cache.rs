//! The serialized status body of the latest status version, plan and tether figures, so
//! that a busy console's GETs serialize nothing.

use crate::status::TetherCount;
use crate::step::StepPlan;
use axum::body::Bytes;
use k8s_openapi::api::core::v1::ConfigMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The last serialized status body, keyed by the identity of the cached status ConfigMap
/// and of the plan it was built with, and by the tether figures it carries. The status
/// cache and the step source publish a new `Arc` for every change, so identity stands for
/// version; holding both `Arc`s keeps their addresses from being reused by a later version.
/// The figures are compared by value: a report that changed without changing them (a
/// tether's value edited) leaves the body as it was.
pub struct BodyCache {
    last: Mutex<Option<CachedBody>>,
}

struct CachedBody {
    configmap: Arc<ConfigMap>,
    plan: Option<Arc<StepPlan>>,
    tethers: TetherCount,
    json: Bytes,
}

impl CachedBody {
    fn is_for(
        &self,
        configmap: &Arc<ConfigMap>,
        plan: Option<&Arc<StepPlan>>,
        tethers: TetherCount,
    ) -> bool {
        Arc::ptr_eq(&self.configmap, configmap)
            && self.tethers == tethers
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

    /// The body of `configmap`, `plan` and `tethers`: the cached one when it is theirs,
    /// else `build`'s, which is cached in its place. `build` runs without the lock held.
    pub fn get_or_build<E>(
        &self,
        configmap: &Arc<ConfigMap>,
        plan: Option<&Arc<StepPlan>>,
        tethers: TetherCount,
        build: impl FnOnce() -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        if let Some(cached) = self.lock().as_ref()
            && cached.is_for(configmap, plan, tethers)
        {
            return Ok(cached.json.clone());
        }
        let json = build()?;
        *self.lock() = Some(CachedBody {
            configmap: configmap.clone(),
            plan: plan.cloned(),
            tethers,
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
                .get_or_build(cm, plan, no_tethers(), || {
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

    fn no_tethers() -> TetherCount {
        TetherCount {
            count: 0,
            gating: 0,
            synced: true,
            unseen_sources: 0,
        }
    }

    #[test]
    fn a_changed_tether_count_is_never_served_stale() {
        let cache = BodyCache::new();
        let cm = Arc::new(ConfigMap::default());
        let get = |tethers: TetherCount, body: &'static str| {
            cache
                .get_or_build(&cm, None, tethers, || {
                    Ok::<_, Infallible>(Bytes::from_static(body.as_bytes()))
                })
                .unwrap()
        };
        let planted = TetherCount {
            count: 1,
            gating: 1,
            ..no_tethers()
        };
        assert_eq!(get(no_tethers(), "none"), "none");
        assert_eq!(get(planted, "one"), "one");
        assert_eq!(get(planted, "rebuilt"), "one", "the same figures: cached");
        assert_eq!(get(no_tethers(), "none again"), "none again");
        let blind = TetherCount {
            unseen_sources: 1,
            ..no_tethers()
        };
        assert_eq!(get(blind, "blind"), "blind");
    }

    #[test]
    fn a_failed_build_caches_nothing() {
        let cache = BodyCache::new();
        let cm = Arc::new(ConfigMap::default());
        assert!(
            cache
                .get_or_build(&cm, None, no_tethers(), || Err("no"))
                .is_err()
        );
        let built = cache.get_or_build(&cm, None, no_tethers(), || {
            Ok::<_, &str>(Bytes::from_static(b"{}"))
        });
        assert_eq!(built.unwrap(), "{}");
    }
}
