//! PATCH bodies: JSON merge patch, JSON patch (RFC 6902, `test` included) and strategic
//! merge patch, answered like k8s.io/apiserver/pkg/endpoints/handlers/patch.go.

use super::errors::ApiError;
use super::kinds::KindInfo;
use super::smp;
use axum::http::StatusCode;
use serde_json::{Value, json};

/// The patch formats, by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`
    Merge,
    /// `application/json-patch+json`
    Json,
    /// `application/strategic-merge-patch+json`
    Strategic,
}

/// Message of the 415 answered to server-side apply.
pub const APPLY_UNSUPPORTED: &str = "server-side apply (application/apply-patch+yaml) is not supported by the catalyst-cutover sandbox: it does not track managed fields; use a merge, JSON or strategic merge patch";

impl PatchType {
    /// Reads the Content-Type of a PATCH request.
    pub fn from_content_type(ct: &str) -> Result<Self, ApiError> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Err(ApiError::unsupported_media_type(APPLY_UNSUPPORTED))
            }
            other => Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other:?})"
            ))),
        }
    }
}

/// Applies a patch body to the stored object.
pub fn apply(
    kind: &KindInfo,
    patch_type: PatchType,
    current: &Value,
    body: &[u8],
) -> Result<Value, ApiError> {
    match patch_type {
        PatchType::Merge => {
            let patch: Value =
                serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
            if !patch.is_object() {
                return Err(ApiError::bad_request("invalid JSON Patch"));
            }
            let mut out = current.clone();
            json_patch::merge(&mut out, &patch);
            Ok(out)
        }
        PatchType::Json => {
            let ops: json_patch::Patch =
                serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
            let mut out = current.clone();
            // kube-apiserver answers any failed operation (a failed `test` included) with a
            // generic 422 whose message does not carry the cause (patch.go, jsonPatcher).
            json_patch::patch(&mut out, &ops).map_err(|_| ApiError {
                code: StatusCode::UNPROCESSABLE_ENTITY,
                reason: "Invalid",
                message: "the server rejected our request due to an error in our request".into(),
                details: Some(json!({})),
            })?;
            Ok(out)
        }
        PatchType::Strategic => {
            // Custom resources have no patch strategies: kube-apiserver lists the types it takes.
            if kind.custom {
                return Err(ApiError::unsupported_media_type(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                ));
            }
            let patch: Value =
                serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
            smp::apply(current, &patch).map_err(ApiError::bad_request)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::kinds::Registry;

    #[test]
    fn merge_json_and_refusals() {
        let r = Registry::new(&crate::api::crd::flux_and_cilium_kinds());
        let cm = r.lookup("", "v1", "configmaps").unwrap();
        let cur = json!({"metadata": {"name": "x", "resourceVersion": "5"}, "data": {"a": "1", "b": "2"}});
        let out = apply(
            &cm,
            PatchType::Merge,
            &cur,
            br#"{"data": {"a": null, "c": "3"}}"#,
        )
        .unwrap();
        assert_eq!(out["data"], json!({"b": "2", "c": "3"}));
        let ok = br#"[{"op":"test","path":"/data/a","value":"1"},{"op":"replace","path":"/data/a","value":"9"}]"#;
        assert_eq!(
            apply(&cm, PatchType::Json, &cur, ok).unwrap()["data"]["a"],
            "9"
        );
        let stale = br#"[{"op":"test","path":"/data/a","value":"0"},{"op":"replace","path":"/data/a","value":"9"}]"#;
        assert_eq!(
            apply(&cm, PatchType::Json, &cur, stale)
                .unwrap_err()
                .code
                .as_u16(),
            422
        );
        let hr = r
            .lookup("helm.toolkit.fluxcd.io", "v2", "helmreleases")
            .unwrap();
        assert_eq!(
            apply(&hr, PatchType::Strategic, &cur, b"{}")
                .unwrap_err()
                .code
                .as_u16(),
            415
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml")
                .unwrap_err()
                .code
                .as_u16(),
            415
        );
    }
}
