//! Writes [`Change`]s into the preflight ConfigMap with optimistic concurrency: read, apply
//! the pure change, replace with the read resourceVersion; on a conflict read again. The
//! ConfigMap is created on first use; it holds no contract key and no cache follows it (it
//! is read only when a preflight is asked for).

use super::report::{Change, Refused};
use super::{COMPONENT, CONFIGMAP};
use crate::contract;
use crate::retry::{Backoff, is_status, is_transient};
use crate::status::model::StatusData;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;

/// What can go wrong writing the preflight ConfigMap.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The change does not apply to the ConfigMap as it is now.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The API server refused a request for a reason retrying cannot fix.
    #[error("the API server refused ConfigMap {namespace}/{CONFIGMAP}: {source}")]
    Api {
        /// Namespace.
        namespace: String,
        /// The refusal.
        #[source]
        source: kube::Error,
    },
}

/// The writer of the preflight ConfigMap.
#[derive(Clone)]
pub struct PreflightStore {
    api: Api<ConfigMap>,
    namespace: String,
}

impl PreflightStore {
    /// The store of [`CONFIGMAP`] in `namespace`.
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        PreflightStore {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
        }
    }

    /// The ConfigMap's data (empty when it does not exist yet).
    pub async fn read(&self) -> Result<StatusData, StoreError> {
        let mut backoff = Backoff::new();
        loop {
            match self.api.get_opt(CONFIGMAP).await {
                Ok(cm) => return Ok(cm.and_then(|cm| cm.data).unwrap_or_default()),
                Err(err) if is_transient(&err) => backoff.wait().await,
                Err(source) => return Err(self.refused(source)),
            }
        }
    }

    /// Applies `change` and returns the data written (or found, when it changed nothing).
    pub async fn apply(&self, change: &Change) -> Result<StatusData, StoreError> {
        let mut backoff = Backoff::new();
        loop {
            let current = match self.api.get_opt(CONFIGMAP).await {
                Ok(Some(cm)) => cm,
                Ok(None) => match self.api.create(&PostParams::default(), &initial()).await {
                    Ok(cm) => cm,
                    Err(err) if is_status(&err, 409) => continue,
                    Err(err) if is_transient(&err) => {
                        backoff.wait().await;
                        continue;
                    }
                    Err(source) => return Err(self.refused(source)),
                },
                Err(err) if is_transient(&err) => {
                    backoff.wait().await;
                    continue;
                }
                Err(source) => return Err(self.refused(source)),
            };
            let before = current.data.clone().unwrap_or_default();
            let mut data = before.clone();
            change.apply(&mut data)?;
            if data == before {
                return Ok(data);
            }
            let mut next = current;
            next.data = Some(data.clone());
            match self
                .api
                .replace(CONFIGMAP, &PostParams::default(), &next)
                .await
            {
                Ok(_) => return Ok(data),
                Err(err) if is_status(&err, 409) || is_status(&err, 404) => {}
                Err(err) if is_transient(&err) => backoff.wait().await,
                Err(source) => return Err(self.refused(source)),
            }
        }
    }

    fn refused(&self, source: kube::Error) -> StoreError {
        StoreError::Api {
            namespace: self.namespace.clone(),
            source,
        }
    }
}

/// The ConfigMap as first created: labelled as the cutover's, with no run yet.
fn initial() -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIGMAP.to_owned()),
            labels: Some(BTreeMap::from([
                (
                    contract::LABEL_PART_OF.to_owned(),
                    contract::PART_OF.to_owned(),
                ),
                (contract::LABEL_COMPONENT.to_owned(), COMPONENT.to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        data: Some(StatusData::new()),
        ..ConfigMap::default()
    }
}
