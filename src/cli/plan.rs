//! `catalyst-cutover plan`: the Jobs a cutover would run, as YAML, without running anything.

use super::args::{RenderArgs, connect};
use super::policy_args::StepPolicyArgs;
use crate::contract::{DEFAULT_NAMESPACE, ENV_NAMESPACE, key::REGISTRIES_YAML_ACTIVE};
use crate::render::{JobRenderer, RenderError};
use crate::step::{
    DiscoverError, LoadError, StepKind, StepPlan, StepReport, discover, load_dir, parse_plan,
};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code of invalid steps (the validation report is on stderr).
const EXIT_INVALID_STEPS: u8 = 2;

/// Arguments of `plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Read the step ConfigMaps from the *.yaml / *.yml manifests under DIR (recursively)
    /// instead of a cluster.
    #[arg(long, value_name = "DIR", conflicts_with = "kubeconfig")]
    from_dir: Option<PathBuf>,
    /// Kubeconfig of the cluster to read the steps from [default: $KUBECONFIG,
    /// ~/.kube/config or the in-cluster service account].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the step ConfigMaps and of the Jobs.
    #[arg(long, value_name = "NS", env = ENV_NAMESPACE, default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    #[command(flatten)]
    render: RenderArgs,
    #[command(flatten)]
    policy: StepPolicyArgs,
}

/// Why `plan` failed.
#[derive(Debug, thiserror::Error)]
enum PlanError {
    #[error(transparent)]
    Invalid(#[from] StepReport),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Discover(DiscoverError),
    #[error("cannot connect to the cluster: {0}")]
    Connect(String),
    #[error("cannot write the plan: {0}")]
    Write(#[from] std::io::Error),
}

impl From<DiscoverError> for PlanError {
    fn from(err: DiscoverError) -> Self {
        match err {
            DiscoverError::Invalid(report) => PlanError::Invalid(report),
            other => PlanError::Discover(other),
        }
    }
}

/// Runs `plan`: 0 with the Jobs on stdout, 2 with the validation report on stderr when the
/// steps are invalid, 1 on any other failure.
pub fn run(args: PlanArgs) -> ExitCode {
    super::exit::run("plan", plan(&args))
}

impl super::exit::Failure for PlanError {
    fn exit_code(&self) -> ExitCode {
        match self {
            PlanError::Invalid(_) => ExitCode::from(EXIT_INVALID_STEPS),
            _ => ExitCode::FAILURE,
        }
    }
}

async fn plan(args: &PlanArgs) -> Result<(), PlanError> {
    let renderer = JobRenderer::new(args.render.config())?;
    let steps = match &args.from_dir {
        Some(dir) => {
            let plan = parse_plan(&load_dir(dir)?)?;
            let problems = args.policy.policy().check_steps(plan.steps());
            if !problems.is_empty() {
                return Err(PlanError::Invalid(StepReport { problems }));
            }
            plan
        }
        None => {
            let client = connect(args.kubeconfig.as_deref())
                .await
                .map_err(PlanError::Connect)?;
            discover(&client, &args.namespace, &args.policy.policy()).await?
        }
    };
    // Everything is rendered before anything is printed: a failure prints no partial plan.
    let text = render_plan(&renderer, &steps, &args.namespace)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// The plan as a YAML stream: a comment line per step, then its Job (attempt 1) as a document;
/// a daemonset-wait step is only its comment, since it runs no Job.
fn render_plan(
    renderer: &JobRenderer,
    plan: &StepPlan,
    namespace: &str,
) -> Result<String, PlanError> {
    const ATTEMPT: u32 = 1;
    let total = plan.len();
    let mut out = format!(
        "# catalyst-cutover plan: {total} step{} in namespace {namespace}, attempt {ATTEMPT}, \
         fingerprint {}\n",
        if total == 1 { "" } else { "s" },
        plan.fingerprint()
    );
    for (index, step) in plan.iter().enumerate() {
        let head = format!(
            "# step {}/{total} {} (ConfigMap {}, order {})",
            index + 1,
            step.name,
            step.configmap,
            step.order
        );
        match &step.kind {
            StepKind::Job { .. } | StepKind::Preflight { .. } => {
                let job = renderer.render(step, ATTEMPT, namespace)?;
                let yaml = serde_yaml::to_string(&job).map_err(|err| {
                    PlanError::Write(std::io::Error::new(std::io::ErrorKind::InvalidData, err))
                })?;
                let name = job.metadata.name.unwrap_or_default();
                let role = if step.is_preflight() {
                    "preflight (changes nothing; runs first on every start and retry), "
                } else {
                    ""
                };
                let _ = write!(out, "{head}: {role}Job {name}\n---\n{yaml}");
            }
            StepKind::DaemonSetWait { daemonset } => {
                let _ = writeln!(
                    out,
                    "{head}: daemonset-wait, no Job: sets {REGISTRIES_YAML_ACTIVE}=v2, then waits \
                     for DaemonSet {daemonset} to roll out and every node running it to acknowledge v2"
                );
            }
        }
    }
    Ok(out)
}
