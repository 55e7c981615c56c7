//! What the authorization checks ask for, and who may call the internal routes.

use std::time::Duration;

/// How requests are authenticated and authorized.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Whether requests need a bearer token at all.
    pub enabled: bool,
    /// API group of the SubjectAccessReview's resource attributes.
    pub group: String,
    /// Resource of the SubjectAccessReview's resource attributes.
    pub resource: String,
    /// Verb the read routes need.
    pub read_verb: String,
    /// Verb start, retry and trigger need.
    pub start_verb: String,
    /// Verb abort needs.
    pub abort_verb: String,
    /// Verb a rollback of the registry pivot needs: a verb of its own, so that who may
    /// stop a stuck step need not be allowed to change every node's registries.
    pub rollback_verb: String,
    /// Service-account usernames (`system:serviceaccount:<ns>:<name>`) allowed on the
    /// internal routes.
    pub internal_service_accounts: Vec<String>,
    /// How long an answer is reused.
    pub cache_ttl: Duration,
    /// How many answers are kept at most.
    pub cache_capacity: usize,
}

impl AuthConfig {
    /// Authentication and authorization on, with the default resource attributes
    /// (`cutovers.catalyst.openova.io`: `get`, `create`, `delete`, `rollback`) and no internal caller.
    pub fn enabled() -> Self {
        AuthConfig {
            enabled: true,
            group: "catalyst.openova.io".to_owned(),
            resource: "cutovers".to_owned(),
            read_verb: "get".to_owned(),
            start_verb: "create".to_owned(),
            abort_verb: "delete".to_owned(),
            rollback_verb: "rollback".to_owned(),
            internal_service_accounts: Vec::new(),
            cache_ttl: Duration::from_secs(10),
            cache_capacity: 4096,
        }
    }

    /// Every request allowed, as `system:anonymous` (tests, the demo).
    pub fn disabled() -> Self {
        AuthConfig {
            enabled: false,
            ..AuthConfig::enabled()
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig::enabled()
    }
}
