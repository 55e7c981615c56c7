//! `serve` flags for the operator surface: authentication, the internal callers and the
//! first-login auto-fire.

use crate::auth::AuthConfig;
use crate::service::ServiceConfig;
use clap::ArgAction;

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
    /// Service accounts (`system:serviceaccount:<ns>:<name>`, comma-separated) allowed on
    /// the internal routes.
    #[arg(
        long,
        value_name = "USERS",
        env = "CATALYST_CUTOVER_INTERNAL_CALLERS",
        value_delimiter = ','
    )]
    pub internal_callers: Vec<String>,
    /// Start an idle cutover on the first operator login.
    #[arg(long, value_name = "BOOL", env = "CATALYST_CUTOVER_AUTO_FIRE", default_value_t = true,
          action = ArgAction::Set)]
    pub auto_fire: bool,
}

impl OperatorArgs {
    /// Writes these settings into `config`.
    pub fn apply(&self, config: &mut ServiceConfig) {
        config.auth = AuthConfig {
            enabled: self.auth,
            group: self.auth_group.clone(),
            resource: self.auth_resource.clone(),
            internal_service_accounts: self
                .internal_callers
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            ..AuthConfig::enabled()
        };
        config.auto_fire = self.auto_fire;
    }
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
        Cli::parse_from(["x"]).operator.apply(&mut config);
        assert!(config.auth.enabled && config.auto_fire);
        assert!(config.auth.internal_service_accounts.is_empty());
        let cli = Cli::parse_from([
            "x",
            "--auth=false",
            "--auto-fire",
            "false",
            "--internal-callers",
            "system:serviceaccount:a:b, system:serviceaccount:a:c",
        ]);
        cli.operator.apply(&mut config);
        assert!(!config.auth.enabled && !config.auto_fire);
        assert_eq!(
            config.auth.internal_service_accounts,
            ["system:serviceaccount:a:b", "system:serviceaccount:a:c"]
        );
    }
}
