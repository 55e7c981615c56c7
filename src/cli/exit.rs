//! How every subcommand ends: its work runs on one async runtime, a failure is told on
//! stderr, and the outcome becomes the process's exit code. A reader that went away
//! (`catalyst-cutover status | head`) ends it quietly ([`print_line`]).

use std::fmt::Display;
use std::io::Write;
use std::process::{ExitCode, Termination};

/// A subcommand's failure, as stderr and the exit code tell it.
pub trait Failure: Display {
    /// The process's exit code for this failure: 1 unless the failure has a code of its own.
    fn exit_code(&self) -> ExitCode {
        ExitCode::FAILURE
    }
}

impl Failure for String {}

/// Runs `command`'s `work` on a multi-threaded runtime: the exit code its success reports
/// (0 for `()`), else `catalyst-cutover <command>: <error>` on stderr and the failure's
/// exit code.
pub fn run<T: Termination, E: Failure>(
    command: &str,
    work: impl Future<Output = Result<T, E>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("catalyst-cutover {command}: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(done) => done.report(),
        Err(err) => {
            eprintln!("catalyst-cutover {command}: {err}");
            err.exit_code()
        }
    }
}

/// Prints `line` and a newline on stdout. When the reader has gone (a closed pipe), the
/// process exits at once with 0 and says nothing, as `head` and `grep -q` expect: what
/// was left to print has nobody to read it. `println!` would panic instead.
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(err) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("catalyst-cutover: cannot write to stdout: {err}");
        std::process::exit(1);
    }
}
