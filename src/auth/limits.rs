//! What a caller the service does not know yet can make it do, bounded: a credential longer
//! than [`ReviewLimits::max_credential_bytes`] is refused unread, reviews for credentials
//! not seen to authenticate lately are rate-limited (token buckets, one for the whole
//! replica and one per client address), and each caller holds at most so many event
//! streams ([`StreamQuota`]).
//!
//! Everything here is keyed by what any authenticator can give: the hash of a credential
//! (a bearer token, or a session cookie) and the caller's identity (its username), so that
//! every way in shares the same limits.

use super::cache::TokenHash;
use super::config::ReviewLimits;
use super::decision::AuthError;
use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use lru::LruCache;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Refuses a credential longer than `max` bytes, before anything else reads it.
pub fn credential_size(credential: &str, max: usize) -> Result<(), AuthError> {
    if credential.len() > max {
        return Err(AuthError::InvalidToken(format!(
            "the credential is {} bytes, more than the {max} this service reviews",
            credential.len()
        )));
    }
    Ok(())
}

/// Per-source buckets kept before the idle ones are dropped.
const SOURCES_KEPT: usize = 4096;

/// The token buckets of [`ReviewLimits`] and the credentials known to authenticate.
pub struct ReviewLimiter {
    global: DefaultDirectRateLimiter,
    per_source: DefaultKeyedRateLimiter<IpAddr>,
    known: Mutex<LruCache<TokenHash, Instant>>,
    known_for: Duration,
}

impl ReviewLimiter {
    /// Full buckets, nothing known.
    pub fn new(limits: &ReviewLimits) -> Self {
        let quota =
            |rate: NonZeroU32, burst: NonZeroU32| Quota::per_second(rate).allow_burst(burst);
        ReviewLimiter {
            global: DefaultDirectRateLimiter::direct(quota(limits.per_second, limits.burst)),
            per_source: DefaultKeyedRateLimiter::hashmap(quota(
                limits.per_source_per_second,
                limits.per_source_burst,
            )),
            known: Mutex::new(LruCache::new(
                NonZeroUsize::new(limits.known_capacity).unwrap_or(NonZeroUsize::MIN),
            )),
            known_for: limits.known_for,
        }
    }

    /// Whether a review of `credential` from `source` may be sent now: always for a known
    /// credential, else when both the address's bucket and the replica's have a token;
    /// otherwise 429 with how long to wait.
    pub fn admit(&self, credential: &TokenHash, source: Option<IpAddr>) -> Result<(), AuthError> {
        if self.is_known(credential) {
            return Ok(());
        }
        if let Some(ip) = source {
            if self.per_source.len() > SOURCES_KEPT {
                self.per_source.retain_recent();
            }
            if let Err(not_until) = self.per_source.check_key(&ip) {
                let wait = not_until.wait_time_from(self.per_source.clock().now());
                return Err(rate_limited(wait, "from this address"));
            }
        }
        self.global.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.global.clock().now());
            rate_limited(wait, "in all")
        })
    }

    /// Records that `credential` authenticated: its reviews are no longer limited.
    pub fn remember(&self, credential: TokenHash) {
        self.known.lock().put(credential, Instant::now());
    }

    /// Records that `credential` no longer authenticates.
    pub fn forget(&self, credential: &TokenHash) {
        self.known.lock().pop(credential);
    }

    fn is_known(&self, credential: &TokenHash) -> bool {
        let mut known = self.known.lock();
        match known.get(credential) {
            Some(at) if at.elapsed() < self.known_for => true,
            Some(_) => {
                known.pop(credential);
                false
            }
            None => false,
        }
    }
}

fn rate_limited(wait: Duration, scope: &str) -> AuthError {
    // Whole seconds, as `Retry-After` takes them, never 0 (that invites an instant retry).
    let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    AuthError::RateLimited {
        retry_after: retry_after.max(1),
        scope: scope.to_owned(),
    }
}

/// How many event streams each caller holds open, at most `limit` each.
#[derive(Debug)]
pub struct StreamQuota {
    open: Mutex<HashMap<String, usize>>,
    limit: usize,
}

impl StreamQuota {
    /// No stream open; `limit` per caller (at least 1).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(StreamQuota {
            open: Mutex::default(),
            limit: limit.max(1),
        })
    }

    /// The most streams one caller may hold.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A slot for one more stream of `caller`, unless it holds `limit` already.
    pub fn take(self: &Arc<Self>, caller: &str) -> Option<StreamSlot> {
        let mut open = self.open.lock();
        let count = open.entry(caller.to_owned()).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            quota: self.clone(),
            caller: caller.to_owned(),
        })
    }
}

/// One open event stream of a caller; given back when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    quota: Arc<StreamQuota>,
    caller: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.quota.open.lock();
        if let Some(count) = open.get_mut(&self.caller) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u32, burst: u32, per_source: u32) -> ReviewLimits {
        let n = |n| NonZeroU32::new(n).unwrap();
        ReviewLimits {
            per_second: n(rate),
            burst: n(burst),
            per_source_per_second: n(per_source),
            per_source_burst: n(per_source),
            ..ReviewLimits::default()
        }
    }

    #[test]
    fn a_long_credential_is_refused_unread() {
        assert!(credential_size(&"a".repeat(8192), 8192).is_ok());
        let err = credential_size(&"a".repeat(8193), 8192).unwrap_err();
        assert_eq!(err.code(), "invalid-token");
        assert_eq!(err.status(), 401);
        assert!(!err.to_string().contains("aaaa"), "never echoed: {err}");
    }

    #[test]
    fn unknown_credentials_share_the_buckets_and_known_ones_skip_them() {
        let limiter = ReviewLimiter::new(&limits(1, 3, 2));
        let (a, b) = (
            Some(IpAddr::from([10, 0, 0, 1])),
            Some(IpAddr::from([10, 0, 0, 2])),
        );
        let token = |n: usize| TokenHash::of(&format!("bogus-{n}"));
        assert!(limiter.admit(&token(0), a).is_ok());
        assert!(limiter.admit(&token(1), a).is_ok());
        let err = limiter.admit(&token(2), a).unwrap_err();
        assert_eq!((err.code(), err.status().as_u16()), ("rate-limited", 429));
        assert!(matches!(err, AuthError::RateLimited { retry_after, .. } if retry_after >= 1));
        assert!(err.to_string().contains("from this address"), "{err}");
        // Another address has its own bucket, but the replica's is shared.
        assert!(limiter.admit(&token(3), b).is_ok());
        let err = limiter.admit(&token(4), b).unwrap_err();
        assert!(err.to_string().contains("in all"), "{err}");
        // A credential that authenticated before passes whatever the flood did.
        let good = TokenHash::of("good");
        limiter.remember(good);
        for _ in 0..100 {
            assert!(limiter.admit(&good, a).is_ok());
        }
        limiter.forget(&good);
        assert!(limiter.admit(&good, a).is_err());
    }

    #[test]
    fn a_known_credential_is_forgotten_after_its_time() {
        let limiter = ReviewLimiter::new(&ReviewLimits {
            known_for: Duration::ZERO,
            ..limits(1, 1, 1)
        });
        let good = TokenHash::of("good");
        limiter.remember(good);
        assert!(limiter.admit(&good, None).is_ok(), "the bucket's one token");
        assert!(limiter.admit(&good, None).is_err(), "no longer known");
    }

    #[test]
    fn streams_are_counted_per_caller_and_given_back() {
        let quota = StreamQuota::new(2);
        let first = quota.take("alice").unwrap();
        let _second = quota.take("alice").unwrap();
        assert!(quota.take("alice").is_none());
        let _bob = quota.take("bob").expect("another caller is not affected");
        drop(first);
        assert!(quota.take("alice").is_some());
    }
}
