//! The `catalyst-cutover` binary: a thin shell over [`catalyst_cutover::cli`].

fn main() -> std::process::ExitCode {
    catalyst_cutover::cli::main()
}
