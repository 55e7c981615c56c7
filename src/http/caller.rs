//! Who is calling: the authentication layer puts a [`Caller`] into the request's
//! extensions; routes read it to record who started or aborted a cutover.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::convert::Infallible;

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The Kubernetes username (`system:serviceaccount:ns:name` for service accounts).
    pub username: String,
}

impl Caller {
    /// The caller when authentication is off.
    pub fn anonymous() -> Self {
        Caller {
            username: "system:anonymous".to_owned(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(Caller::anonymous))
    }
}
