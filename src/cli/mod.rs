//! The `catalyst-cutover` command line: one module per subcommand.

mod agent;
mod args;
#[cfg(feature = "sandbox")]
mod demo;
mod exit;
mod http_args;
mod migrate;
mod operator_args;
mod plan;
mod policy_args;
#[cfg(feature = "sandbox")]
mod sandbox;
mod serve;
mod session_args;
mod status;
mod table;
mod tether_args;
mod tethers;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// What `--version` prints after the name: the crate version and the git revision the
/// binary was built from (`build.rs`), so that an image's binary names its source.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("CATALYST_CUTOVER_REVISION"),
    ")"
);

/// catalyst-cutover: moves a Sovereign onto its own Harbor and Gitea.
#[derive(Debug, Parser)]
#[command(name = "catalyst-cutover", version = VERSION, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the registry-pivot agent of one node (the registry-pivot DaemonSet's pods).
    Agent(agent::AgentArgs),
    /// Whether the agent is ready: its ready file exists (the DaemonSet's readiness probe;
    /// the image has no shell).
    #[command(hide = true)]
    AgentReady(agent::ReadyArgs),
    /// Run the whole cutover on the embedded sandbox and show it live.
    #[cfg(feature = "sandbox")]
    Demo(demo::DemoArgs),
    /// Print the Jobs the cutover would run, as YAML, without running anything.
    Plan(plan::PlanArgs),
    /// Serve the HTTP API and run the cutover when triggered (one runner per cluster).
    Serve(Box<serve::ServeArgs>),
    /// Bring the status ConfigMap to the latest schema version.
    Migrate(migrate::MigrateArgs),
    /// Print the cutover's status from its status ConfigMap (no service needed); the exit
    /// code says where it stands.
    Status(status::StatusArgs),
    /// List every reference the cluster still holds to an upstream host (no service
    /// needed); the exit code says whether any are left.
    Tethers(tethers::TethersArgs),
    /// Run the embedded Kubernetes API server until interrupted.
    #[cfg(feature = "sandbox")]
    Sandbox(sandbox::SandboxArgs),
}

/// Parses the command line, runs the subcommand and maps its outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        #[cfg(feature = "sandbox")]
        Command::Demo(_) => crate::telemetry::init_with("warn"),
        _ => crate::telemetry::init(),
    }
    match cli.command {
        #[cfg(feature = "sandbox")]
        Command::Demo(args) => demo::run(args),
        Command::Agent(args) => agent::run(args),
        Command::AgentReady(args) => agent::ready(&args),
        Command::Plan(args) => plan::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::Migrate(args) => migrate::run(args),
        Command::Status(args) => status::run(args),
        Command::Tethers(args) => tethers::run(args),
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) => sandbox::main(args),
    }
}
