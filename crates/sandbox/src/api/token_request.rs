//! The `token` subresource of ServiceAccounts (authentication.k8s.io/v1 TokenRequest),
//! answered as kube-apiserver's TokenREST does: name and namespace in the body must match the
//! URL, the ServiceAccount must exist (404), the lifetime is checked after the lookup (422),
//! and the answer carries `status.token` and `status.expirationTimestamp`. Nothing is stored.

use super::access::Access;
use super::errors::{ApiError, Cause};
use super::kinds::KindInfo;
use super::meta;
use super::store::Store;
use crate::auth::{API_SERVER_AUDIENCE, BoundToken, token_lifetime};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const KIND: &str = "TokenRequest";
const GROUP: &str = "authentication.k8s.io";

fn invalid(name: &str, cause: Cause) -> ApiError {
    ApiError::invalid_kind(KIND, GROUP, name, vec![cause])
}

/// Checks that `metadata.<field>` of the request, when set, is `expected`.
fn must_match(request: &Value, field: &str, expected: &str, name: &str) -> Result<(), ApiError> {
    let given = request
        .pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if given.is_empty() || given == expected {
        return Ok(());
    }
    Err(invalid(
        name,
        Cause::invalid(
            format!("metadata.{field}"),
            given,
            &format!("must match the service account {field} if specified"),
        ),
    ))
}

/// Issues a token for ServiceAccount `name` in `ns` as `request` asks.
pub fn create(
    store: &Store,
    access: &Access,
    sa_kind: &KindInfo,
    ns: &str,
    name: &str,
    request: &Value,
) -> Result<Value, ApiError> {
    if !request.is_object() {
        return Err(ApiError::bad_request(
            "the body of a TokenRequest must be a JSON object",
        ));
    }
    must_match(request, "name", name, name)?;
    must_match(request, "namespace", ns, name)?;
    let sa = store.get(sa_kind, Some(ns), name)?;
    let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
    if spec.get("boundObjectRef").is_some_and(|r| !r.is_null()) {
        return Err(invalid(
            "",
            Cause::forbidden(
                "spec.boundObjectRef",
                "the catalyst-cutover sandbox does not bind tokens to objects",
            ),
        ));
    }
    let requested = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            ApiError::bad_request(format!(
                "spec.expirationSeconds must be an integer, found {v}"
            ))
        })?),
    };
    let seconds = token_lifetime(requested, access.min_token_expiration).map_err(|why| {
        invalid(
            "",
            Cause::invalid_json(
                "spec.expirationSeconds",
                &json!(requested),
                &why.to_string(),
            ),
        )
    })?;
    let audiences: Vec<String> = match spec.get("audiences") {
        Some(Value::Array(list)) if !list.is_empty() => list
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => vec![API_SERVER_AUDIENCE.to_owned()],
    };
    // Whole seconds, as `exp` and metav1.Time carry them: the token expires exactly at the
    // timestamp the answer shows.
    let whole = |t: Result<Timestamp, jiff::Error>| {
        t.map_err(|e| ApiError::internal(format!("cannot compute the token's expiration: {e}")))
    };
    let now = whole(Timestamp::from_second(Timestamp::now().as_second()))?;
    let expires_at = whole(now.checked_add(SignedDuration::from_secs(seconds)))?;
    let token = access.issued.issue(
        BoundToken {
            namespace: ns.to_owned(),
            service_account: name.to_owned(),
            uid: meta::uid_of(&sa).to_owned(),
            audiences: audiences.clone(),
            expires_at,
        },
        now,
    );
    Ok(json!({
        "kind": KIND,
        "apiVersion": format!("{GROUP}/v1"),
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": meta::rfc3339(now)},
        "spec": {"audiences": audiences, "expirationSeconds": seconds, "boundObjectRef": null},
        "status": {"token": token, "expirationTimestamp": meta::rfc3339(expires_at)},
    }))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::api::kinds::Registry;
    use crate::auth::MIN_TOKEN_EXPIRATION;
    use std::sync::Arc;
    use std::time::Duration;

    /// A store with namespace `ns` and ServiceAccount `sa` in it, and the ServiceAccount kind.
    pub(in crate::api) fn store_with_service_account() -> (Store, Arc<KindInfo>) {
        let store = Store::new(Registry::new(&[]), 10);
        let namespaces = store.registry().lookup("", "v1", "namespaces").unwrap();
        store
            .create(
                &namespaces,
                None,
                json!({"metadata": {"name": "ns"}}),
                false,
            )
            .unwrap();
        let kind = store
            .registry()
            .lookup("", "v1", "serviceaccounts")
            .unwrap();
        store
            .create(
                &kind,
                Some("ns"),
                json!({"metadata": {"name": "sa"}}),
                false,
            )
            .unwrap();
        (store, kind)
    }

    fn setup(min: Duration) -> (Store, Access, Arc<KindInfo>) {
        let (store, kind) = store_with_service_account();
        (store, Access::new(None, "adm", min), kind)
    }

    #[test]
    fn issues_a_token_with_the_default_lifetime() {
        let (store, access, kind) = setup(MIN_TOKEN_EXPIRATION);
        let answer = create(&store, &access, &kind, "ns", "sa", &json!({})).unwrap();
        assert_eq!(answer["spec"]["expirationSeconds"], 3600);
        assert_eq!(answer["spec"]["audiences"], json!([API_SERVER_AUDIENCE]));
        let created: Timestamp = answer["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let expires: Timestamp = answer["status"]["expirationTimestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(expires.duration_since(created).as_secs(), 3600);
        let token = answer["status"]["token"].as_str().unwrap();
        let (user, _) = access.issued_user(&store, token, &[]).unwrap().unwrap();
        assert_eq!(user.username, "system:serviceaccount:ns:sa");
    }

    #[test]
    fn refuses_what_kube_apiserver_refuses() {
        let (store, access, kind) = setup(MIN_TOKEN_EXPIRATION);
        let short = json!({"spec": {"expirationSeconds": 60}});
        let missing = create(&store, &access, &kind, "ns", "nobody", &short).unwrap_err();
        assert_eq!(missing.code.as_u16(), 404, "the lookup comes first");
        let err = create(&store, &access, &kind, "ns", "sa", &short).unwrap_err();
        assert_eq!(err.code.as_u16(), 422);
        assert_eq!(
            err.message,
            "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        );
        let named = json!({"metadata": {"name": "other"}});
        let err = create(&store, &access, &kind, "ns", "sa", &named).unwrap_err();
        assert!(err.message.contains("metadata.name"), "{}", err.message);
        let bound = json!({"spec": {"boundObjectRef": {"kind": "Pod", "name": "p"}}});
        assert_eq!(
            create(&store, &access, &kind, "ns", "sa", &bound)
                .unwrap_err()
                .code
                .as_u16(),
            422
        );
        let text = json!({"spec": {"expirationSeconds": "600"}});
        assert_eq!(
            create(&store, &access, &kind, "ns", "sa", &text)
                .unwrap_err()
                .code
                .as_u16(),
            400
        );
    }

    #[test]
    fn a_lowered_minimum_allows_short_lifetimes() {
        let (store, access, kind) = setup(Duration::from_secs(1));
        let answer = create(
            &store,
            &access,
            &kind,
            "ns",
            "sa",
            &json!({"spec": {"expirationSeconds": 2}}),
        )
        .unwrap();
        assert_eq!(answer["spec"]["expirationSeconds"], 2);
    }
}
