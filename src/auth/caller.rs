//! Who is calling: what authentication concludes, for the HTTP layer to put into a
//! request's extensions and the routes to record as who started or aborted a cutover.

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
