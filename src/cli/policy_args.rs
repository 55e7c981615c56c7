//! `--step-policy`, `--step-service-accounts` and `--min-chart-version`: what a step's
//! PodSpec may ask for and which chart's steps are run, shared by `serve` (which refuses to
//! start violating steps) and `plan` (which reports them).

use crate::step::chart::MIN_CHART_VERSION;
use crate::step::{DEFAULT_STEP_SERVICE_ACCOUNT, PodSecurityLevel, StepPolicy};

/// The step policy flags.
#[derive(Debug, Clone, clap::Args)]
pub struct StepPolicyArgs {
    /// The Pod Security Standards level every step's PodSpec must meet: restricted,
    /// baseline or privileged. Anything below restricted is a deliberate widening: whoever
    /// may write ConfigMaps in the namespace may then run pods that level allows.
    #[arg(
        long,
        value_name = "LEVEL",
        env = "CATALYST_CUTOVER_STEP_POLICY",
        default_value = "restricted"
    )]
    pub step_policy: PodSecurityLevel,
    /// The service accounts a step may run as (comma-separated; `*` allows any).
    #[arg(long, value_name = "NAMES", env = "CATALYST_CUTOVER_STEP_SERVICE_ACCOUNTS",
          value_delimiter = ',', default_value = DEFAULT_STEP_SERVICE_ACCOUNT)]
    pub step_service_accounts: Vec<String>,
    /// The oldest chart (SemVer, as in its `helm.sh/chart` label) whose step ConfigMaps are
    /// run; older ones are refused with 412 `cutover-chart-below-floor`. Lower it only to
    /// run steps of an older release this build was not made for (`0.0.0`: any).
    #[arg(long, value_name = "VERSION", env = "CATALYST_CUTOVER_MIN_CHART_VERSION",
          default_value = MIN_CHART_VERSION)]
    pub min_chart_version: semver::Version,
}

impl StepPolicyArgs {
    /// The policy these flags ask for.
    pub fn policy(&self) -> StepPolicy {
        let names: Vec<String> = self
            .step_service_accounts
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        StepPolicy {
            level: self.step_policy,
            service_accounts: (!names.iter().any(|n| n == "*")).then_some(names),
            min_chart_version: self.min_chart_version.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        policy: StepPolicyArgs,
    }

    fn policy(args: &[&str]) -> StepPolicy {
        let mut argv = vec!["t"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().policy.policy()
    }

    #[test]
    fn restricted_and_the_step_runner_by_default_widened_only_explicitly() {
        assert_eq!(policy(&[]), StepPolicy::default());
        let wide = policy(&[
            "--step-policy",
            "baseline",
            "--step-service-accounts",
            "a, b",
        ]);
        assert_eq!(wide.level, PodSecurityLevel::Baseline);
        assert_eq!(
            wide.service_accounts,
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(
            policy(&["--step-service-accounts", "*"]).service_accounts,
            None
        );
        assert!(Cli::try_parse_from(["t", "--step-policy", "root"]).is_err());
        assert_eq!(
            policy(&["--min-chart-version", "0.0.0"]).min_chart_version,
            semver::Version::new(0, 0, 0)
        );
        assert!(Cli::try_parse_from(["t", "--min-chart-version", "1.2"]).is_err());
    }
}
