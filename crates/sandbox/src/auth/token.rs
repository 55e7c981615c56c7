//! Bearer tokens and the users they stand for.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// The group whose members every request is allowed for (kube-apiserver's privileged group).
pub const MASTERS_GROUP: &str = "system:masters";
/// The group kube-apiserver adds to every authenticated user.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The group of every service account.
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// Prefix of a service account's username: `system:serviceaccount:<namespace>:<name>`.
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

/// Who made a request, as authentication found it (authentication.k8s.io `UserInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    /// The username, e.g. `alice` or `system:serviceaccount:catalyst:cutover`.
    pub username: String,
    /// A unique id; the sandbox has no user objects, so it is derived from the username.
    pub uid: String,
    /// Every group the user is in, including the ones authentication adds.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user with the given groups; `system:authenticated` and, for a service-account
    /// username, `system:serviceaccounts` and `system:serviceaccounts:<ns>` are added the way
    /// kube-apiserver's authenticators add them.
    pub fn new(username: impl Into<String>, groups: impl IntoIterator<Item = String>) -> Self {
        let username = username.into();
        let mut user = UserInfo {
            uid: username.clone(),
            username,
            groups: groups.into_iter().collect(),
        };
        user.add_implied_groups();
        user
    }

    /// The user of service account `name` in `namespace`.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self::new(
            format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}"),
            Vec::new(),
        )
    }

    /// `(namespace, name)` when the username is a service account's.
    pub fn service_account_parts(&self) -> Option<(&str, &str)> {
        let rest = self.username.strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)?;
        let (namespace, name) = rest.split_once(':')?;
        (!namespace.is_empty() && !name.is_empty() && !name.contains(':'))
            .then_some((namespace, name))
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    fn add_implied_groups(&mut self) {
        let mut implied = Vec::new();
        if let Some((namespace, _)) = self.service_account_parts() {
            implied.push(SERVICE_ACCOUNTS_GROUP.to_owned());
            implied.push(format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}"));
        }
        implied.push(AUTHENTICATED_GROUP.to_owned());
        for group in implied {
            if !self.in_group(&group) {
                self.groups.push(group);
            }
        }
    }
}

/// A token spec entry that could not be read. Entries are named by their 1-based position
/// and never echo the token, which is a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenSpecError {
    /// The entry has no `=` between token and user.
    #[error("token entry {entry}: expected TOKEN=USER[:GROUP[+GROUP...]], found no '='")]
    MissingEquals {
        /// 1-based position of the entry.
        entry: usize,
    },
    /// The token before `=` is empty.
    #[error("token entry {entry}: the token before '=' is empty")]
    EmptyToken {
        /// 1-based position of the entry.
        entry: usize,
    },
    /// The user after `=` is empty or malformed.
    #[error("token entry {entry}: invalid user {user:?}: {why}")]
    BadUser {
        /// 1-based position of the entry.
        entry: usize,
        /// The user text as given.
        user: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A group in the `+`-joined list is empty.
    #[error("token entry {entry} (user {user:?}): empty group name in {groups:?}")]
    EmptyGroup {
        /// 1-based position of the entry.
        entry: usize,
        /// The entry's username.
        user: String,
        /// The group list as given.
        groups: String,
    },
    /// The same token appears in an earlier entry.
    #[error(
        "token entry {entry} (user {user:?}): the same token is already given in entry {first}"
    )]
    DuplicateToken {
        /// 1-based position of the entry.
        entry: usize,
        /// The entry's username.
        user: String,
        /// 1-based position of the earlier entry with that token.
        first: usize,
    },
}

/// Static bearer tokens and their users, like kube-apiserver's `--token-auth-file`.
///
/// Tokens are kept only as SHA-256 digests and looked up by digest, so how long a lookup takes
/// depends on the digest, never on how much of a guessed token matches a real one.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    users: HashMap<[u8; 32], UserInfo>,
}

impl TokenTable {
    /// Reads the CLI spec `TOKEN=USER[:GROUP[+GROUP...]]`, entries joined by `,`, e.g.
    /// `t1=alice:dev,t2=admin:system:masters+ops`. The username ends at the first `:`, except
    /// that `system:<x>` names and service accounts (`system:serviceaccount:<ns>:<name>`) are
    /// read whole, so `t3=system:serviceaccount:catalyst:cutover:ops` is that service account
    /// in group `ops`. An empty spec is an empty table.
    pub fn parse(spec: &str) -> Result<Self, TokenSpecError> {
        let mut table = TokenTable::default();
        let mut first_entry: HashMap<[u8; 32], usize> = HashMap::new();
        let entries = spec.split(',').map(str::trim).filter(|e| !e.is_empty());
        for (index, text) in entries.enumerate() {
            let entry = index + 1;
            let (token, user_spec) = text
                .split_once('=')
                .ok_or(TokenSpecError::MissingEquals { entry })?;
            let token = token.trim();
            if token.is_empty() {
                return Err(TokenSpecError::EmptyToken { entry });
            }
            let user = parse_user(entry, user_spec.trim())?;
            let digest = digest(token);
            if let Some(&first) = first_entry.get(&digest) {
                return Err(TokenSpecError::DuplicateToken {
                    entry,
                    user: user.username,
                    first,
                });
            }
            first_entry.insert(digest, entry);
            table.users.insert(digest, user);
        }
        Ok(table)
    }

    /// Adds (or replaces) a token; the user gets the groups authentication implies
    /// (see [`UserInfo::new`]).
    pub fn insert(&mut self, token: impl Into<String>, user: UserInfo) {
        let UserInfo {
            username,
            uid,
            groups,
        } = user;
        let mut user = UserInfo::new(username, groups);
        if !uid.is_empty() {
            user.uid = uid;
        }
        self.users.insert(digest(&token.into()), user);
    }

    /// The user a bearer token stands for, if any.
    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.users.get(&digest(token)).cloned()
    }

    /// How many tokens the table holds.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the table holds no token.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// The SHA-256 of a token: the only form in which tokens are kept.
pub(super) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Splits `USER[:GROUPS]`, keeping `system:` and service-account usernames whole.
fn parse_user(entry: usize, spec: &str) -> Result<UserInfo, TokenSpecError> {
    let bad = |why| TokenSpecError::BadUser {
        entry,
        user: spec.to_owned(),
        why,
    };
    let segments_in_name = if spec.starts_with(SERVICE_ACCOUNT_USER_PREFIX) {
        4
    } else if spec.starts_with("system:") {
        2
    } else {
        1
    };
    let mut parts = spec.splitn(segments_in_name + 1, ':');
    let name_parts: Vec<&str> = parts.by_ref().take(segments_in_name).collect();
    if name_parts.len() < segments_in_name || name_parts.iter().any(|p| p.is_empty()) {
        return Err(bad(if segments_in_name == 4 {
            "a service account is system:serviceaccount:<namespace>:<name>"
        } else {
            "the username is empty"
        }));
    }
    let username = name_parts.join(":");
    let groups = match parts.next() {
        None => Vec::new(),
        Some(list) => {
            let groups: Vec<String> = list.split('+').map(|g| g.trim().to_owned()).collect();
            if groups.iter().any(String::is_empty) {
                return Err(TokenSpecError::EmptyGroup {
                    entry,
                    user: username,
                    groups: list.to_owned(),
                });
            }
            groups
        }
    };
    Ok(UserInfo::new(username, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(user: &UserInfo) -> Vec<&str> {
        user.groups.iter().map(String::as_str).collect()
    }

    #[test]
    fn parses_users_with_and_without_groups() {
        let table = TokenTable::parse("t1=alice:dev, t2=bob ,t3=root:system:masters+ops").unwrap();
        assert_eq!(table.len(), 3);
        let alice = table.authenticate("t1").unwrap();
        assert_eq!(alice.username, "alice");
        assert_eq!(groups(&alice), ["dev", AUTHENTICATED_GROUP]);
        let bob = table.authenticate("t2").unwrap();
        assert_eq!(groups(&bob), [AUTHENTICATED_GROUP]);
        let root = table.authenticate("t3").unwrap();
        assert_eq!(root.username, "root");
        assert_eq!(groups(&root), [MASTERS_GROUP, "ops", AUTHENTICATED_GROUP]);
        assert!(table.authenticate("t4").is_none());
        assert!(table.authenticate("").is_none());
        assert!(table.authenticate("t1 ").is_none());
    }

    #[test]
    fn service_account_usernames_are_kept_whole_and_get_their_groups() {
        let table = TokenTable::parse(
            "sa=system:serviceaccount:catalyst:cutover,sa2=system:serviceaccount:ns:x:ops",
        )
        .unwrap();
        let sa = table.authenticate("sa").unwrap();
        assert_eq!(sa.username, "system:serviceaccount:catalyst:cutover");
        assert_eq!(sa.service_account_parts(), Some(("catalyst", "cutover")));
        assert_eq!(
            groups(&sa),
            [
                SERVICE_ACCOUNTS_GROUP,
                "system:serviceaccounts:catalyst",
                AUTHENTICATED_GROUP
            ]
        );
        let sa2 = table.authenticate("sa2").unwrap();
        assert_eq!(sa2.username, "system:serviceaccount:ns:x");
        assert!(sa2.in_group("ops"));
    }

    #[test]
    fn system_usernames_keep_their_prefix() {
        let table = TokenTable::parse("k=system:kube-scheduler:system:masters").unwrap();
        let user = table.authenticate("k").unwrap();
        assert_eq!(user.username, "system:kube-scheduler");
        assert!(user.in_group(MASTERS_GROUP));
    }

    #[test]
    fn empty_spec_is_an_empty_table() {
        assert!(TokenTable::parse("").unwrap().is_empty());
        assert!(TokenTable::parse(" , ").unwrap().is_empty());
    }

    #[test]
    fn bad_entries_are_named_without_echoing_the_token() {
        let err = TokenTable::parse("t1=alice,secret-token").unwrap_err();
        assert_eq!(err, TokenSpecError::MissingEquals { entry: 2 });
        assert!(!err.to_string().contains("secret-token"));
        assert_eq!(
            TokenTable::parse("=alice").unwrap_err(),
            TokenSpecError::EmptyToken { entry: 1 }
        );
        assert!(matches!(
            TokenTable::parse("t1=").unwrap_err(),
            TokenSpecError::BadUser { entry: 1, .. }
        ));
        assert!(matches!(
            TokenTable::parse("t1=:dev").unwrap_err(),
            TokenSpecError::BadUser { entry: 1, .. }
        ));
        let err = TokenTable::parse("t1=system:serviceaccount:ns").unwrap_err();
        assert!(
            err.to_string()
                .contains("system:serviceaccount:<namespace>:<name>")
        );
        assert_eq!(
            TokenTable::parse("t1=a,t2=bob:dev+").unwrap_err(),
            TokenSpecError::EmptyGroup {
                entry: 2,
                user: "bob".into(),
                groups: "dev+".into()
            }
        );
        let err = TokenTable::parse("dup-secret=a,x=b,dup-secret=c").unwrap_err();
        assert_eq!(
            err,
            TokenSpecError::DuplicateToken {
                entry: 3,
                user: "c".into(),
                first: 1
            }
        );
        assert!(!err.to_string().contains("dup-secret"));
    }

    #[test]
    fn insert_adds_implied_groups_and_keeps_a_given_uid() {
        let mut table = TokenTable::default();
        table.insert(
            "admin",
            UserInfo {
                username: "sandbox-admin".into(),
                uid: "u-1".into(),
                groups: vec![MASTERS_GROUP.into()],
            },
        );
        let admin = table.authenticate("admin").unwrap();
        assert_eq!(admin.uid, "u-1");
        assert_eq!(groups(&admin), [MASTERS_GROUP, AUTHENTICATED_GROUP]);
        table.insert("sa", UserInfo::service_account("ns", "runner"));
        let sa = table.authenticate("sa").unwrap();
        assert_eq!(sa.uid, "system:serviceaccount:ns:runner");
        assert!(sa.in_group("system:serviceaccounts:ns"));
        assert_eq!(sa.groups.len(), 3);
    }

    #[test]
    fn malformed_service_account_names_are_plain_users() {
        let user = UserInfo::new("system:serviceaccount:ns", Vec::new());
        assert_eq!(user.service_account_parts(), None);
        assert!(!user.in_group(SERVICE_ACCOUNTS_GROUP));
        let user = UserInfo::new("system:serviceaccount:ns:a:b", Vec::new());
        assert_eq!(user.service_account_parts(), None);
    }
}
