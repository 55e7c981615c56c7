//! The `catalyst-cutover` command line: one module per subcommand.

mod sandbox;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// catalyst-cutover: moves a Sovereign onto its own Harbor and Gitea.
#[derive(Debug, Parser)]
#[command(name = "catalyst-cutover", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the embedded Kubernetes API server until interrupted.
    Sandbox(sandbox::SandboxArgs),
}

/// Parses the command line, runs the subcommand and maps its outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init();
    match cli.command {
        Command::Sandbox(args) => sandbox::main(args),
    }
}
