//! Authentication and authorization for the sandbox API server, kept pure so the rules can be
//! tested without a server: bearer tokens resolve to a [`UserInfo`] through a [`TokenTable`],
//! and [`authorize`] decides a request's [`Attributes`] against typed RBAC objects exactly as
//! kube-apiserver's RBAC authorizer does. Service-account tokens from the TokenRequest API are
//! kept in [`IssuedTokens`] and judged by [`BoundToken::check`]. [`forbidden_status`] and
//! [`unauthorized_status`] build the bodies the real server answers with.

mod attributes;
mod bound_token;
mod rbac;
mod status;
mod token;

pub use attributes::Attributes;
pub use bound_token::{
    API_SERVER_AUDIENCE, BoundToken, DEFAULT_TOKEN_EXPIRATION_SECONDS, IssuedTokens, LifetimeError,
    MAX_TOKEN_EXPIRATION_SECONDS, MIN_TOKEN_EXPIRATION, TokenRejected, token_lifetime,
};
pub use rbac::{Decision, RbacRules, authorize};
pub use status::{forbidden_message, forbidden_status, unauthorized_status};
pub use token::{
    AUTHENTICATED_GROUP, MASTERS_GROUP, SERVICE_ACCOUNT_USER_PREFIX, SERVICE_ACCOUNTS_GROUP,
    TokenSpecError, TokenTable, UserInfo,
};
