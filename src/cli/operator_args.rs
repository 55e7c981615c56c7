//! `serve` flags for the operator surface: authentication, the internal callers and the
//! first-login auto-fire.

use crate::auth::{AuthConfig, ReviewLimits, service_account_username};
use crate::service::ServiceConfig;
use clap::ArgAction;
use std::num::NonZeroU32;

/// Who may call the service, and whether the first operator login starts the cutover.
#[derive(Debug, Clone, clap::Args)]
pub struct OperatorArgs {
    /// Require a bearer token (TokenReview + SubjectAccessReview) on every route but
    /// /healthz, /readyz and /metrics; `--auth=false` lets everyone in.
    #[arg(long, value_name = "BOOL", env = "CATALYST_CUTOVER_AUTH", default_value_t = true,
          action = ArgAction::Set)]
    pub auth: bool,
    /// API group of the SubjectAccessReview's resource.
    #[arg(long, value_name = "GROUP", default_value_t = AuthConfig::enabled().group)]
    pub auth_group: String,
    /// Resource of the SubjectAccessReview (verbs: get reads, create starts, delete aborts).
    #[arg(long, value_name = "RESOURCE", default_value_t = AuthConfig::enabled().resource)]
    pub auth_resource: String,
    /// Service accounts allowed on the internal routes, comma-separated, each
    /// `<namespace>:<name>` or `system:serviceaccount:<namespace>:<name>`; anything else
    /// stops the service at start-up.
    #[arg(
        long,
        value_name = "ACCOUNTS",
        env = "CATALYST_CUTOVER_INTERNAL_CALLERS",
        value_delimiter = ','
    )]
    pub internal_callers: Vec<String>,
    /// Audiences a bearer token must be valid for (comma-separated), sent in each
    /// TokenReview's spec.audiences [default: the API server's own].
    #[arg(
        long,
        value_name = "AUDIENCES",
        env = "CATALYST_CUTOVER_AUTH_AUDIENCES",
        value_delimiter = ','
    )]
    pub auth_audiences: Vec<String>,
    /// TokenReviews per second for tokens not seen to authenticate lately, the whole
    /// replica together; past it (and --review-burst), 429 with Retry-After. Tokens that
    /// authenticated within the hour are never limited.
    #[arg(long, value_name = "N", env = "CATALYST_CUTOVER_REVIEW_RATE",
          default_value_t = ReviewLimits::default().per_second)]
    pub review_rate: NonZeroU32,
    /// Reviews of unknown tokens the replica may make at once before --review-rate applies.
    #[arg(long, value_name = "N", env = "CATALYST_CUTOVER_REVIEW_BURST",
          default_value_t = ReviewLimits::default().burst)]
    pub review_burst: NonZeroU32,
    /// TokenReviews per second for unknown tokens from one client address.
    #[arg(long, value_name = "N", env = "CATALYST_CUTOVER_REVIEW_RATE_PER_SOURCE",
          default_value_t = ReviewLimits::default().per_source_per_second)]
    pub review_rate_per_source: NonZeroU32,
    /// Reviews of unknown tokens one client address may cause at once.
    #[arg(long, value_name = "N", env = "CATALYST_CUTOVER_REVIEW_BURST_PER_SOURCE",
          default_value_t = ReviewLimits::default().per_source_burst)]
    pub review_burst_per_source: NonZeroU32,
    /// Start an idle cutover on the first operator login.
    #[arg(long, value_name = "BOOL", env = "CATALYST_CUTOVER_AUTO_FIRE", default_value_t = true,
          action = ArgAction::Set)]
    pub auto_fire: bool,
}

impl OperatorArgs {
    /// Writes these settings into `config`, or says which internal caller is not a
    /// service account. Empty items (a trailing comma) are skipped.
    pub fn apply(&self, config: &mut ServiceConfig) -> Result<(), String> {
        let internal_service_accounts = non_empty(&self.internal_callers)
            .map(|caller| {
                service_account_username(caller).map_err(|err| format!("--internal-callers: {err}"))
            })
            .collect::<Result<_, _>>()?;
        config.auth = AuthConfig {
            enabled: self.auth,
            group: self.auth_group.clone(),
            resource: self.auth_resource.clone(),
            internal_service_accounts,
            audiences: non_empty(&self.auth_audiences).map(str::to_owned).collect(),
            limits: ReviewLimits {
                per_second: self.review_rate,
                burst: self.review_burst,
                per_source_per_second: self.review_rate_per_source,
                per_source_burst: self.review_burst_per_source,
                ..ReviewLimits::default()
            },
            ..AuthConfig::enabled()
        };
        config.auto_fire = self.auto_fire;
        Ok(())
    }
}

/// The trimmed, non-empty items of a comma-separated flag.
fn non_empty(items: &[String]) -> impl Iterator<Item = &str> {
    items.iter().map(|s| s.trim()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        operator: OperatorArgs,
    }

    #[test]
    fn defaults_and_overrides() {
        let mut config = ServiceConfig::new("ns");
        Cli::parse_from(["x"]).operator.apply(&mut config).unwrap();
        assert!(config.auth.enabled && config.auto_fire);
        assert!(config.auth.internal_service_accounts.is_empty());
        let cli = Cli::parse_from([
            "x",
            "--auth=false",
            "--auto-fire",
            "false",
            "--internal-callers",
            "system:serviceaccount:a:b, a:c,",
            "--auth-audiences",
            "catalyst-cutover,https://kubernetes.default.svc",
            "--review-rate=3",
            "--review-burst-per-source=2",
        ]);
        cli.operator.apply(&mut config).unwrap();
        assert!(!config.auth.enabled && !config.auto_fire);
        assert_eq!(
            config.auth.internal_service_accounts,
            ["system:serviceaccount:a:b", "system:serviceaccount:a:c"]
        );
        assert_eq!(
            (
                config.auth.limits.per_second.get(),
                config.auth.limits.per_source_burst.get()
            ),
            (3, 2)
        );
        assert!(Cli::try_parse_from(["x", "--review-rate=0"]).is_err());
        assert_eq!(
            config.auth.audiences,
            ["catalyst-cutover", "https://kubernetes.default.svc"]
        );
    }

    #[test]
    fn an_internal_caller_that_is_not_a_service_account_is_refused() {
        let mut config = ServiceConfig::new("ns");
        let cli = Cli::parse_from(["x", "--internal-callers", "catalyst:api,alice"]);
        let err = cli.operator.apply(&mut config).unwrap_err();
        assert!(err.starts_with("--internal-callers: \"alice\""), "{err}");
    }
}
