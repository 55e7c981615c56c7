//! What a simulated pod does, read from the environment of its first container.

use std::time::Duration;

use k8s_openapi::api::core::v1::PodSpec;

/// Env var: how long the container runs, in milliseconds.
pub const ENV_RUN_MS: &str = "SANDBOX_SIM_RUN_MS";
/// Env var: `succeed`, `fail` or `hang`.
pub const ENV_OUTCOME: &str = "SANDBOX_SIM_OUTCOME";
/// Env var: the first N attempts fail, whatever the outcome says.
pub const ENV_FAIL_ATTEMPTS: &str = "SANDBOX_SIM_FAIL_ATTEMPTS";
/// Env var: the termination message the container writes (to its `terminationMessagePath`),
/// reported whatever its exit code, as a kubelet reports it.
pub const ENV_MESSAGE: &str = "SANDBOX_SIM_MESSAGE";
/// Env var: the termination message of a succeeding container (what a step reports, as the
/// chart's steps write their outputs on success and their reason on failure).
pub const ENV_OUTPUT: &str = "SANDBOX_SIM_OUTPUT";
/// Env var: the text the container "prints" (served by the pod `/log` endpoint).
pub const ENV_LOG: &str = "SANDBOX_SIM_LOG";
/// Env var: the container prints its log text this many times (a long log from a PodSpec
/// that must stay small).
pub const ENV_LOG_REPEAT: &str = "SANDBOX_SIM_LOG_REPEAT";

/// How an attempt ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0.
    Succeed,
    /// Exit code 1 with the termination message.
    Fail,
    /// Runs until deleted.
    Hang,
}

/// The behaviour of a simulated pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    /// Time from Running to the end of the attempt (or to Ready for long-running pods).
    pub run: Duration,
    /// What happens when `run` has elapsed.
    pub outcome: Outcome,
    /// Attempts `0..fail_attempts` fail whatever `outcome` says.
    pub fail_attempts: u32,
    /// Termination message of an attempt.
    pub message: Option<String>,
    /// Termination message of a successful attempt.
    pub output: Option<String>,
    /// Log text of the container.
    pub log: Option<String>,
}

impl Behaviour {
    /// Reads the behaviour from the first container's literal env values. Values that do not
    /// parse fall back to the defaults, because a simulated pod must still run; the kubelet
    /// logs them.
    pub fn from_spec(spec: Option<&PodSpec>, default_run: Duration) -> (Self, Vec<String>) {
        let mut problems = Vec::new();
        let env = |key: &str| -> Option<String> {
            spec?
                .containers
                .first()?
                .env
                .as_ref()?
                .iter()
                .find(|e| e.name == key)
                .and_then(|e| e.value.clone())
        };
        let run = match env(ENV_RUN_MS).map(|v| v.trim().parse::<u64>()) {
            Some(Ok(ms)) => Duration::from_millis(ms),
            Some(Err(_)) => {
                problems.push(format!("{ENV_RUN_MS} is not a number of milliseconds"));
                default_run
            }
            None => default_run,
        };
        let outcome = match env(ENV_OUTCOME).as_deref().map(str::trim) {
            None | Some("succeed") => Outcome::Succeed,
            Some("fail") => Outcome::Fail,
            Some("hang") => Outcome::Hang,
            Some(other) => {
                problems.push(format!(
                    "{ENV_OUTCOME}={other:?} is not one of succeed, fail, hang"
                ));
                Outcome::Succeed
            }
        };
        let fail_attempts = match env(ENV_FAIL_ATTEMPTS).map(|v| v.trim().parse::<u32>()) {
            Some(Ok(n)) => n,
            Some(Err(_)) => {
                problems.push(format!("{ENV_FAIL_ATTEMPTS} is not a count"));
                0
            }
            None => 0,
        };
        let repeat = match env(ENV_LOG_REPEAT).map(|v| v.trim().parse::<usize>()) {
            Some(Ok(n)) => n,
            Some(Err(_)) => {
                problems.push(format!("{ENV_LOG_REPEAT} is not a count"));
                1
            }
            None => 1,
        };
        let behaviour = Behaviour {
            run,
            outcome,
            fail_attempts,
            message: env(ENV_MESSAGE),
            output: env(ENV_OUTPUT),
            log: env(ENV_LOG).map(|log| log.repeat(repeat)),
        };
        (behaviour, problems)
    }

    /// The outcome of attempt number `attempt` (0-based).
    pub fn outcome_of(&self, attempt: u32) -> Outcome {
        if attempt < self.fail_attempts {
            Outcome::Fail
        } else {
            self.outcome
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, EnvVar};

    fn spec(env: &[(&str, &str)]) -> PodSpec {
        PodSpec {
            containers: vec![Container {
                name: "main".into(),
                env: Some(
                    env.iter()
                        .map(|(k, v)| EnvVar {
                            name: (*k).into(),
                            value: Some((*v).into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn defaults_succeed_after_default_run() {
        let (b, problems) = Behaviour::from_spec(Some(&spec(&[])), Duration::from_millis(50));
        assert_eq!(b.run, Duration::from_millis(50));
        assert_eq!(b.outcome, Outcome::Succeed);
        assert_eq!(b.fail_attempts, 0);
        assert!(problems.is_empty());
        let (b, _) = Behaviour::from_spec(None, Duration::from_millis(7));
        assert_eq!(b.run, Duration::from_millis(7));
    }

    #[test]
    fn reads_every_variable() {
        let s = spec(&[
            (ENV_RUN_MS, "120"),
            (ENV_OUTCOME, "fail"),
            (ENV_FAIL_ATTEMPTS, "2"),
            (ENV_MESSAGE, "boom"),
            (ENV_OUTPUT, r#"{"done":"yes"}"#),
            (ENV_LOG, "line 1\nline 2"),
        ]);
        let (b, problems) = Behaviour::from_spec(Some(&s), Duration::ZERO);
        assert!(problems.is_empty());
        assert_eq!(b.run, Duration::from_millis(120));
        assert_eq!(b.outcome, Outcome::Fail);
        assert_eq!(b.message.as_deref(), Some("boom"));
        assert_eq!(b.output.as_deref(), Some(r#"{"done":"yes"}"#));
        assert_eq!(b.log.as_deref(), Some("line 1\nline 2"));
        let repeated = spec(&[(ENV_LOG, "ab\n"), (ENV_LOG_REPEAT, "3")]);
        let (b, _) = Behaviour::from_spec(Some(&repeated), Duration::ZERO);
        assert_eq!(b.log.as_deref(), Some("ab\nab\nab\n"));
        let (hang, _) = Behaviour::from_spec(Some(&spec(&[(ENV_OUTCOME, "hang")])), Duration::ZERO);
        assert_eq!(hang.outcome, Outcome::Hang);
    }

    #[test]
    fn first_attempts_fail() {
        let (b, _) = Behaviour::from_spec(Some(&spec(&[(ENV_FAIL_ATTEMPTS, "2")])), Duration::ZERO);
        assert_eq!(b.outcome_of(0), Outcome::Fail);
        assert_eq!(b.outcome_of(1), Outcome::Fail);
        assert_eq!(b.outcome_of(2), Outcome::Succeed);
    }

    #[test]
    fn bad_values_are_reported_and_defaulted() {
        let s = spec(&[
            (ENV_RUN_MS, "soon"),
            (ENV_OUTCOME, "explode"),
            (ENV_FAIL_ATTEMPTS, "-1"),
        ]);
        let (b, problems) = Behaviour::from_spec(Some(&s), Duration::from_millis(5));
        assert_eq!(b.run, Duration::from_millis(5));
        assert_eq!(b.outcome, Outcome::Succeed);
        assert_eq!(b.fail_attempts, 0);
        assert_eq!(problems.len(), 3);
        assert!(problems[1].contains("explode"));
    }
}
