//! Service-account tokens issued through the TokenRequest API
//! (`serviceaccounts/<name>/token`), judged as kube-apiserver judges bound tokens: good until
//! their expiration, for their audiences, and only while the ServiceAccount they were issued
//! for still exists with the same uid.

use super::token::{UserInfo, digest};
use jiff::Timestamp;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// kube-apiserver's floor for `spec.expirationSeconds` ("may not specify a duration less than
/// 10 minutes").
pub const MIN_TOKEN_EXPIRATION: Duration = Duration::from_secs(600);
/// The lifetime of a TokenRequest that sets no `spec.expirationSeconds`.
pub const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 3600;
/// kube-apiserver's ceiling for `spec.expirationSeconds`: 2^32 seconds.
pub const MAX_TOKEN_EXPIRATION_SECONDS: i64 = 1 << 32;
/// The audience of tokens that name none, and of requests to the API server itself.
pub const API_SERVER_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";
/// Issued tokens this long past their expiration are forgotten (they would be refused anyway).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Why a requested `spec.expirationSeconds` is refused; the text is the field cause's detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifetimeError {
    /// Below the server's minimum.
    #[error("may not specify a duration less than {}", describe(*minimum))]
    TooShort {
        /// The server's minimum.
        minimum: Duration,
    },
    /// Above 2^32 seconds.
    #[error("may not specify a duration larger than 2^32 seconds")]
    TooLong,
}

/// `10 minutes`, `1 minute`, `5 seconds`: a minimum as kube-apiserver words it.
fn describe(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 60, secs % 60) {
        (1, 0) => "1 minute".to_owned(),
        (m, 0) if m > 1 => format!("{m} minutes"),
        _ if secs == 1 => "1 second".to_owned(),
        _ => format!("{secs} seconds"),
    }
}

/// The lifetime in seconds a TokenRequest gets: `requested`, or the default when unset,
/// checked against `minimum` and 2^32 seconds.
pub fn token_lifetime(requested: Option<i64>, minimum: Duration) -> Result<i64, LifetimeError> {
    let seconds = requested.unwrap_or(DEFAULT_TOKEN_EXPIRATION_SECONDS);
    let floor = i64::try_from(minimum.as_secs()).unwrap_or(i64::MAX);
    if seconds < floor {
        return Err(LifetimeError::TooShort { minimum });
    }
    if seconds > MAX_TOKEN_EXPIRATION_SECONDS {
        return Err(LifetimeError::TooLong);
    }
    Ok(seconds)
}

/// What an issued token stands for: the claims kube-apiserver signs into a bound token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundToken {
    /// Namespace of the ServiceAccount.
    pub namespace: String,
    /// Name of the ServiceAccount.
    pub service_account: String,
    /// uid of the ServiceAccount when the token was issued.
    pub uid: String,
    /// Who the token is for.
    pub audiences: Vec<String>,
    /// The first instant the token is no longer good (whole seconds, as `exp`).
    pub expires_at: Timestamp,
}

/// Why an issued token no longer authenticates; the text follows kube-apiserver's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejected {
    /// Past its expiration.
    #[error("service account token has expired")]
    Expired,
    /// Issued for other audiences than the ones asked about.
    #[error("token audiences {token:?} is invalid for the target audiences {wanted:?}")]
    WrongAudience {
        /// The token's audiences.
        token: Vec<String>,
        /// The audiences the review asked for.
        wanted: Vec<String>,
    },
    /// Its ServiceAccount was deleted.
    #[error("serviceaccounts \"{name}\" not found")]
    ServiceAccountGone {
        /// The ServiceAccount's name.
        name: String,
    },
    /// Its ServiceAccount was deleted and created again.
    #[error("service account UID ({current}) does not match claim ({claimed})")]
    ServiceAccountReplaced {
        /// uid of the ServiceAccount now.
        current: String,
        /// uid the token was issued for.
        claimed: String,
    },
}

impl BoundToken {
    /// The user and the audiences it is good for at `now`, given the uid of the
    /// ServiceAccount of that name now (`None`: there is none) and the audiences wanted
    /// (empty: the API server's).
    pub fn check(
        &self,
        now: Timestamp,
        current_uid: Option<&str>,
        wanted: &[String],
    ) -> Result<(UserInfo, Vec<String>), TokenRejected> {
        if now >= self.expires_at {
            return Err(TokenRejected::Expired);
        }
        let wanted = if wanted.is_empty() {
            vec![API_SERVER_AUDIENCE.to_owned()]
        } else {
            wanted.to_vec()
        };
        let audiences: Vec<String> = wanted
            .iter()
            .filter(|a| self.audiences.contains(a))
            .cloned()
            .collect();
        if audiences.is_empty() {
            return Err(TokenRejected::WrongAudience {
                token: self.audiences.clone(),
                wanted,
            });
        }
        match current_uid {
            None => Err(TokenRejected::ServiceAccountGone {
                name: self.service_account.clone(),
            }),
            Some(current) if current != self.uid => Err(TokenRejected::ServiceAccountReplaced {
                current: current.to_owned(),
                claimed: self.uid.clone(),
            }),
            Some(_) => {
                let mut user = UserInfo::service_account(&self.namespace, &self.service_account);
                user.uid.clone_from(&self.uid);
                Ok((user, audiences))
            }
        }
    }
}

/// The tokens issued so far, kept as SHA-256 digests like [`super::TokenTable`]'s.
#[derive(Debug, Default)]
pub struct IssuedTokens {
    tokens: Mutex<HashMap<[u8; 32], BoundToken>>,
}

impl IssuedTokens {
    /// A new random token standing for `claims`; tokens long expired at `now` are forgotten.
    pub fn issue(&self, claims: BoundToken, now: Timestamp) -> String {
        let token = format!(
            "sandbox-sa.{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let forget_before = now - FORGET_AFTER;
        tokens.retain(|_, t| t.expires_at > forget_before);
        tokens.insert(digest(&token), claims);
        token
    }

    /// The claims of an issued token, if it was issued here.
    pub fn lookup(&self, token: &str) -> Option<BoundToken> {
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens.get(&digest(token)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn claims() -> BoundToken {
        BoundToken {
            namespace: "ns".into(),
            service_account: "console".into(),
            uid: "uid-1".into(),
            audiences: vec![API_SERVER_AUDIENCE.into()],
            expires_at: at(600),
        }
    }

    #[test]
    fn lifetimes_default_and_respect_the_bounds() {
        assert_eq!(token_lifetime(None, MIN_TOKEN_EXPIRATION), Ok(3600));
        assert_eq!(token_lifetime(Some(600), MIN_TOKEN_EXPIRATION), Ok(600));
        let short = token_lifetime(Some(599), MIN_TOKEN_EXPIRATION).unwrap_err();
        assert_eq!(
            short.to_string(),
            "may not specify a duration less than 10 minutes"
        );
        assert_eq!(token_lifetime(Some(2), Duration::from_secs(1)), Ok(2));
        assert_eq!(
            token_lifetime(Some(0), Duration::from_secs(1))
                .unwrap_err()
                .to_string(),
            "may not specify a duration less than 1 second"
        );
        assert_eq!(
            token_lifetime(Some(-5), Duration::from_secs(90))
                .unwrap_err()
                .to_string(),
            "may not specify a duration less than 90 seconds"
        );
        assert_eq!(
            token_lifetime(Some(MAX_TOKEN_EXPIRATION_SECONDS + 1), MIN_TOKEN_EXPIRATION),
            Err(LifetimeError::TooLong)
        );
    }

    #[test]
    fn a_token_is_good_until_its_expiration() {
        let (user, audiences) = claims().check(at(599), Some("uid-1"), &[]).unwrap();
        assert_eq!(user.username, "system:serviceaccount:ns:console");
        assert_eq!(user.uid, "uid-1");
        assert!(user.in_group("system:serviceaccounts:ns"));
        assert_eq!(audiences, [API_SERVER_AUDIENCE]);
        assert_eq!(
            claims().check(at(600), Some("uid-1"), &[]),
            Err(TokenRejected::Expired)
        );
    }

    #[test]
    fn a_token_dies_with_its_service_account() {
        assert_eq!(
            claims().check(at(1), None, &[]).unwrap_err().to_string(),
            "serviceaccounts \"console\" not found"
        );
        assert!(matches!(
            claims().check(at(1), Some("uid-2"), &[]),
            Err(TokenRejected::ServiceAccountReplaced { .. })
        ));
    }

    #[test]
    fn a_token_is_only_for_its_audiences() {
        let other = ["https://vault".to_owned()];
        assert!(matches!(
            claims().check(at(1), Some("uid-1"), &other),
            Err(TokenRejected::WrongAudience { .. })
        ));
        let both = ["https://vault".to_owned(), API_SERVER_AUDIENCE.to_owned()];
        let (_, audiences) = claims().check(at(1), Some("uid-1"), &both).unwrap();
        assert_eq!(audiences, [API_SERVER_AUDIENCE]);
    }

    #[test]
    fn issued_tokens_are_looked_up_by_digest_and_long_expired_ones_forgotten() {
        let issued = IssuedTokens::default();
        let old = issued.issue(claims(), at(0));
        let fresh = issued.issue(claims(), at(0));
        assert_ne!(old, fresh);
        assert_eq!(issued.lookup(&old), Some(claims()));
        assert_eq!(issued.lookup("sandbox-sa.unknown"), None);
        let later = issued.issue(claims(), at(600 + 3601));
        assert_eq!(issued.lookup(&old), None);
        assert!(issued.lookup(&later).is_some());
    }
}
