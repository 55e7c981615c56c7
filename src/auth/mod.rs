//! Who may do what: bearer tokens authenticated with a TokenReview and authorized with a
//! SubjectAccessReview, both made with the service's own client, the answers cached briefly
//! under a hash of the token (never the token itself). The decisions are pure
//! ([`decision`]); [`Authenticator`] is the thin shell that asks the API server.

pub mod cache;
pub mod caller;
pub mod config;
pub mod decision;
pub mod forward;
pub mod limits;
pub mod origin;
pub mod review;

pub use cache::{DecisionCache, TokenHash};
pub use caller::Caller;
pub use config::{AuthConfig, ReviewLimits, service_account_username};
pub use decision::{Action, AuthError, action_for, bearer};
pub use forward::{ForwardAuthConfig, SessionError};
pub use limits::StreamQuota;
pub use review::Authenticator;
