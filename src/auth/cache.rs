//! A bounded, short-lived cache of authentication answers, keyed by a SHA-256 of the token
//! (the token itself is never kept) and the action. Concurrent requests with the same key
//! share one lookup, so a burst of requests from one console costs one review. When full,
//! the least recently used answer goes, one at a time: a flood of made-up tokens never
//! empties the cache of the answers the console and operators keep using.

use super::decision::Action;
use lru::LruCache;
use sha2::{Digest, Sha256};
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// The SHA-256 of a bearer token: what the cache keys on instead of the token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Hashes `token`.
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", hex::encode(&self.0[..4]))
    }
}

type Slot<V> = Arc<OnceCell<V>>;
type Key = (TokenHash, Action);
type Entries<V> = LruCache<Key, (Instant, Slot<V>)>;

/// Answers of type `V` per (token hash, action), each reused for `ttl`, at most `capacity`
/// kept.
pub struct DecisionCache<V> {
    entries: Mutex<Entries<V>>,
    ttl: Duration,
}

impl<V: Clone> DecisionCache<V> {
    /// An empty cache.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        DecisionCache {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
            ttl,
        }
    }

    /// The answer for `key`, computed by `lookup` when there is no fresh one. An `Err` from
    /// `lookup` is returned and not kept, so the next request asks again.
    pub async fn get_or_try<E, F, Fut>(&self, key: Key, lookup: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let slot = self.slot(key, Instant::now());
        slot.get_or_try_init(lookup).await.cloned()
    }

    /// The slot of `key` at `now`: the fresh one, or a new empty one that replaces an
    /// expired one or, when the cache is full, the least recently used.
    fn slot(&self, key: Key, now: Instant) -> Slot<V> {
        let mut entries = match self.entries.lock() {
            Ok(entries) => entries,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((born, slot)) = entries.get(&key)
            && now.saturating_duration_since(*born) < self.ttl
        {
            return slot.clone();
        }
        let slot = Slot::default();
        entries.push(key, (now, slot.clone()));
        slot
    }

    /// How many answers are kept.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether no answer is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn the_key_is_a_hash_never_the_token() {
        let token = "eyJhbGciOiJSUzI1NiJ9.secret-part";
        let hash = TokenHash::of(token);
        assert_eq!(hash, TokenHash::of(token));
        assert_ne!(hash, TokenHash::of("another"));
        let shown = format!("{hash:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.len() < 24, "only a short prefix is shown: {shown}");
    }

    #[test]
    fn slots_are_reused_until_they_expire_and_bounded() {
        let cache: DecisionCache<u8> = DecisionCache::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        let a = (TokenHash::of("a"), Action::Read);
        let first = cache.slot(a, t0);
        assert!(Arc::ptr_eq(
            &first,
            &cache.slot(a, t0 + Duration::from_secs(9))
        ));
        assert!(!Arc::ptr_eq(
            &first,
            &cache.slot(a, t0 + Duration::from_secs(10))
        ));
        let other_action = cache.slot((TokenHash::of("a"), Action::Start), t0);
        assert!(
            !Arc::ptr_eq(&first, &other_action),
            "actions are kept apart"
        );
        cache.slot((TokenHash::of("b"), Action::Read), t0);
        assert!(cache.len() <= 2);
    }

    #[test]
    fn a_full_cache_evicts_the_least_recently_used_one_at_a_time() {
        let cache: DecisionCache<u8> = DecisionCache::new(Duration::from_secs(10), 3);
        let t0 = Instant::now();
        let key = |t: &str| (TokenHash::of(t), Action::Read);
        let console = cache.slot(key("console"), t0);
        let a = cache.slot(key("a"), t0);
        let b = cache.slot(key("b"), t0);
        // The console asks again: now `a` is the least recently used.
        cache.slot(key("console"), t0);
        cache.slot(key("c"), t0);
        assert_eq!(cache.len(), 3, "never cleared wholesale");
        assert!(Arc::ptr_eq(&console, &cache.slot(key("console"), t0)));
        assert!(Arc::ptr_eq(&b, &cache.slot(key("b"), t0)));
        assert!(!Arc::ptr_eq(&a, &cache.slot(key("a"), t0)), "a was evicted");
        for n in 0..100 {
            cache.slot(key(&format!("flood-{n}")), t0);
            assert_eq!(cache.len(), 3);
        }
    }

    #[tokio::test]
    async fn concurrent_lookups_share_one_and_errors_are_not_kept() {
        let cache: Arc<DecisionCache<u32>> =
            Arc::new(DecisionCache::new(Duration::from_secs(60), 16));
        let calls = Arc::new(AtomicUsize::new(0));
        let key = (TokenHash::of("t"), Action::Read);
        let failed: Result<u32, &str> = cache.get_or_try(key, || async { Err("down") }).await;
        assert_eq!(failed, Err("down"));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_try(key, || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, &str>(7)
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(7));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
