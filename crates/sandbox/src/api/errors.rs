//! API errors, answered as `metav1.Status` bodies with the reason, code and details
//! kube-apiserver sends (k8s.io/apimachinery/pkg/api/errors/errors.go).

use super::kinds::KindInfo;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One field problem of an Invalid answer (`details.causes[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, ...
    pub reason: &'static str,
    /// JSON path of the field, e.g. `metadata.name`.
    pub field: String,
    /// The message without the field prefix.
    pub message: String,
}

impl Cause {
    /// `Invalid value: "<value>": <detail>`.
    pub fn invalid(field: impl Into<String>, value: &str, detail: &str) -> Self {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {}: {detail}", json!(value)),
        }
    }

    /// `Required value` (with an optional detail).
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message,
        }
    }

    /// `Unsupported value: "<value>": supported values: "a", "b"`.
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| json!(s).to_string()).collect();
        Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                json!(value),
                list.join(", ")
            ),
        }
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Cause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {detail}"),
        }
    }

    /// `Too long: may not be more than <max> bytes`.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Cause {
            reason: "FieldValueTooLong",
            field: field.into(),
            message: format!("Too long: may not be more than {max} bytes"),
        }
    }

    /// A FieldValueInvalid cause whose value is an arbitrary JSON value (`field is immutable`).
    pub fn invalid_json(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {}: {detail}", go_value(value)),
        }
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(field: impl Into<String>, value: &str) -> Self {
        Cause {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {}", json!(value)),
        }
    }

    /// `Not found: <value>`.
    pub fn not_found(field: impl Into<String>, value: &str) -> Self {
        Cause {
            reason: "FieldValueNotFound",
            field: field.into(),
            message: format!("Not found: {}", json!(value)),
        }
    }

    fn full(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// Renders a value roughly as Go's `%#v` of an unstructured field does for messages.
fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => json!(s).to_string(),
        // Labels and other string maps print as Go's `map[string]string{"k":"v"}`.
        Value::Object(m) if m.values().all(Value::is_string) => {
            let pairs: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", json!(k), v))
                .collect();
            format!("map[string]string{{{}}}", pairs.join(", "))
        }
        Value::Object(_) | Value::Array(_) => "{...}".to_string(),
        other => other.to_string(),
    }
}

/// An error answered as a `metav1.Status`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code, also `code` in the body.
    pub code: StatusCode,
    /// `reason` in the body.
    pub reason: &'static str,
    /// `message` in the body.
    pub message: String,
    /// `details` in the body, when the real server sends one.
    pub details: Option<Value>,
}

fn details(kind: &KindInfo, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": kind.plural});
    if !kind.group.is_empty() {
        d["group"] = json!(kind.group);
    }
    d
}

impl ApiError {
    /// 404 `configmaps "x" not found`.
    pub fn not_found(kind: &KindInfo, name: &str) -> Self {
        ApiError {
            code: StatusCode::NOT_FOUND,
            reason: "NotFound",
            message: format!("{} \"{name}\" not found", kind.qualified_resource()),
            details: Some(details(kind, name)),
        }
    }

    /// 409 `configmaps "x" already exists`.
    pub fn already_exists(kind: &KindInfo, name: &str) -> Self {
        ApiError {
            code: StatusCode::CONFLICT,
            reason: "AlreadyExists",
            message: format!("{} \"{name}\" already exists", kind.qualified_resource()),
            details: Some(details(kind, name)),
        }
    }

    /// 409 Conflict on a stale resourceVersion.
    pub fn conflict(kind: &KindInfo, name: &str) -> Self {
        Self::conflict_with(
            kind,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 Conflict with a specific cause.
    pub fn conflict_with(kind: &KindInfo, name: &str, why: &str) -> Self {
        ApiError {
            code: StatusCode::CONFLICT,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                kind.qualified_resource()
            ),
            details: Some(details(kind, name)),
        }
    }

    /// 422 Invalid with one cause per field.
    pub fn invalid(kind: &KindInfo, name: &str, causes: Vec<Cause>) -> Self {
        Self::invalid_kind(&kind.kind, &kind.group, name, causes)
    }

    /// 422 Invalid for a kind given by name and group.
    pub fn invalid_kind(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> Self {
        let summary = match causes.as_slice() {
            [one] => one.full(),
            many => format!(
                "[{}]",
                many.iter().map(Cause::full).collect::<Vec<_>>().join(", ")
            ),
        };
        let mut d = json!({
            "name": name,
            "kind": kind,
            "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
        });
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            d["group"] = json!(group);
            format!("{kind}.{group}")
        };
        ApiError {
            code: StatusCode::UNPROCESSABLE_ENTITY,
            reason: "Invalid",
            message: format!("{qualified} \"{name}\" is invalid: {summary}"),
            details: Some(d),
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            code: StatusCode::BAD_REQUEST,
            reason: "BadRequest",
            message: message.into(),
            details: None,
        }
    }

    /// 404 for a path that serves nothing.
    pub fn no_route() -> Self {
        ApiError {
            code: StatusCode::NOT_FOUND,
            reason: "NotFound",
            message: "the server could not find the requested resource".into(),
            details: Some(json!({})),
        }
    }

    /// 405 for a verb a resource does not serve.
    pub fn method_not_supported(kind: &KindInfo, verb: &str) -> Self {
        ApiError {
            code: StatusCode::METHOD_NOT_ALLOWED,
            reason: "MethodNotAllowed",
            message: format!(
                "{verb} is not supported on resources of kind \"{}\"",
                kind.qualified_resource()
            ),
            details: Some(json!({"group": kind.group, "kind": kind.plural})),
        }
    }

    /// 410 Expired, for watches and continue tokens older than the history.
    pub fn expired(message: impl Into<String>) -> Self {
        ApiError {
            code: StatusCode::GONE,
            reason: "Expired",
            message: message.into(),
            details: None,
        }
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        ApiError {
            code: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            reason: "UnsupportedMediaType",
            message: message.into(),
            details: None,
        }
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError {
            code: StatusCode::INTERNAL_SERVER_ERROR,
            reason: "InternalError",
            message: format!("Internal error occurred: {message}"),
            details: Some(json!({"causes": [{"message": message}]})),
        }
    }

    /// 403 Forbidden with the given message (authorization, terminating namespaces).
    pub fn forbidden(kind: &KindInfo, name: &str, message: String) -> Self {
        ApiError {
            code: StatusCode::FORBIDDEN,
            reason: "Forbidden",
            message,
            details: Some(details(kind, name)),
        }
    }

    /// The `metav1.Status` body.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.status().to_string();
        (
            self.code,
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::kinds::Registry;

    #[test]
    fn bodies_match_kube_apiserver() {
        let r = Registry::new(&[]);
        let cm = r.lookup("", "v1", "configmaps").unwrap();
        let job = r.lookup("batch", "v1", "jobs").unwrap();
        assert_eq!(
            ApiError::already_exists(&cm, "x").message,
            "configmaps \"x\" already exists"
        );
        let nf = ApiError::not_found(&job, "j").status();
        assert_eq!(nf["message"], "jobs.batch \"j\" not found");
        assert_eq!(
            nf["details"],
            json!({"name": "j", "group": "batch", "kind": "jobs"})
        );
        assert_eq!(nf["code"], 404);
        let inv = ApiError::invalid(
            &job,
            "j",
            vec![Cause::not_supported(
                "spec.template.spec.restartPolicy",
                "Always",
                &["OnFailure", "Never"],
            )],
        );
        assert_eq!(
            inv.message,
            "Job.batch \"j\" is invalid: spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        );
    }
}
