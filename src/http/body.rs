//! JSON request bodies. serde's derived structs also accept a JSON array of their fields
//! in order (`[true]` for `{"retry": true}`); the API takes objects only, as its spec says.

use super::error::ApiError;
use serde::de::DeserializeOwned;

/// Parses `body` as a JSON object into `T`, or answers 400 naming the problem.
pub fn json_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body must be a JSON object: {e}")))?;
    serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Like [`json_object`], but an empty body means `T::default()`: `curl -X POST` sends none.
/// Whitespace is not empty: it is a JSON document that ends before its value.
pub fn optional_json_object<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        Ok(T::default())
    } else {
        json_object(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Retry {
        #[serde(default)]
        retry: bool,
    }

    #[test]
    fn objects_only() {
        assert!(json_object::<Retry>(br#"{"retry": true}"#).unwrap().retry);
        for bad in [&b"[true]"[..], b"true", b"{\"other\": 1}", b"{"] {
            let err = json_object::<Retry>(bad).unwrap_err();
            assert_eq!(
                err.code(),
                "bad-request",
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn only_an_empty_body_is_absent() {
        assert!(!optional_json_object::<Retry>(b"").unwrap().retry);
        for bad in [&b"\n"[..], b" ", b"\t\r\n"] {
            let err = optional_json_object::<Retry>(bad).unwrap_err();
            assert_eq!(err.code(), "bad-request", "{bad:?}");
        }
    }
}
