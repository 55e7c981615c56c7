//! What the authorization checks ask for, who may call the internal routes, and how many
//! reviews unknown credentials may cost.

use std::num::NonZeroU32;
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
    /// internal routes; [`service_account_username`] makes them from either form.
    pub internal_service_accounts: Vec<String>,
    /// The audiences a token must be valid for, sent in each TokenReview's
    /// `spec.audiences`; empty: the API server's own (any service-account token).
    pub audiences: Vec<String>,
    /// How long an answer, a refusal included, is reused.
    pub cache_ttl: Duration,
    /// How many answers are kept at most; past it the least recently used goes.
    pub cache_capacity: usize,
    /// How many TokenReviews and SubjectAccessReviews may be in flight at once, so that a
    /// flood of made-up tokens (each a cache miss) cannot become a flood of reviews.
    pub review_concurrency: usize,
    /// How many reviews credentials not known to authenticate may cost.
    pub limits: ReviewLimits,
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
            audiences: Vec::new(),
            cache_ttl: Duration::from_secs(10),
            cache_capacity: 4096,
            review_concurrency: 8,
            limits: ReviewLimits::default(),
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

/// The username the API server gives a service account's tokens, from `<ns>:<name>` or
/// `system:serviceaccount:<ns>:<name>`; anything else (a user, a group, a typo) is refused,
/// so that a wrong `--internal-callers` stops the service at start-up instead of refusing
/// every internal call with 403.
pub fn service_account_username(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let short = raw.strip_prefix(SERVICE_ACCOUNT_PREFIX).unwrap_or(raw);
    match short.split(':').collect::<Vec<_>>()[..] {
        // `system:<x>` is Kubernetes' own users and groups (system:masters, ...), never
        // the short form of a service account.
        [namespace, name]
            if namespace != "system" && is_dns_label(namespace) && is_dns_subdomain(name) =>
        {
            Ok(format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"))
        }
        _ => Err(format!(
            "{raw:?} is not a service account: write <namespace>:<name> or \
             system:serviceaccount:<namespace>:<name>, e.g. catalyst:catalyst-api"
        )),
    }
}

/// What the API server puts before `<ns>:<name>` in a service account's username.
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// A namespace name: an RFC 1123 label.
fn is_dns_label(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&s.len())
        && s.chars().all(|c| alnum(c) || c == '-')
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// A service account name: an RFC 1123 subdomain.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// How many reviews unknown credentials may cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewLimits {
    /// The longest credential reviewed; a longer one is 401 without a review (a
    /// service-account token is ~1 KiB; the API server would take megabytes).
    pub max_credential_bytes: usize,
    /// Reviews of unknown credentials per second, the whole replica together.
    pub per_second: NonZeroU32,
    /// Reviews of unknown credentials at once before the rate applies.
    pub burst: NonZeroU32,
    /// Reviews of unknown credentials per second from one client address.
    pub per_source_per_second: NonZeroU32,
    /// Reviews of unknown credentials at once from one client address.
    pub per_source_burst: NonZeroU32,
    /// How long a credential that authenticated stays known, its reviews never limited.
    pub known_for: Duration,
    /// How many known credentials are kept at most; past it the least recently used goes.
    pub known_capacity: usize,
}

impl Default for ReviewLimits {
    fn default() -> Self {
        let n = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        ReviewLimits {
            max_credential_bytes: 8 * 1024,
            per_second: n(20),
            burst: n(40),
            per_source_per_second: n(5),
            per_source_burst: n(10),
            known_for: Duration::from_secs(3600),
            known_capacity: 4096,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_callers_in_either_form() {
        for (raw, username) in [
            (
                "catalyst:catalyst-api",
                "system:serviceaccount:catalyst:catalyst-api",
            ),
            (
                " system:serviceaccount:catalyst:catalyst-api ",
                "system:serviceaccount:catalyst:catalyst-api",
            ),
            ("ns-1:sa.v2", "system:serviceaccount:ns-1:sa.v2"),
        ] {
            assert_eq!(
                service_account_username(raw).as_deref(),
                Ok(username),
                "{raw}"
            );
        }
        for bad in [
            "",
            "catalyst-api",
            "alice",
            "system:serviceaccount:catalyst",
            "system:serviceaccounts:catalyst",
            "system:masters",
            "catalyst:catalyst-api:extra",
            "Catalyst:api",
            "catalyst:",
            ":api",
            "catalyst:-api",
        ] {
            let err = service_account_username(bad).unwrap_err();
            assert!(err.contains("<namespace>:<name>"), "{bad:?}: {err}");
        }
    }
}
