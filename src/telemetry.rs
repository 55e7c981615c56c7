//! Tracing set-up: JSON lines in a cluster, human-readable on a terminal.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops, so tests may call it freely.
pub fn init() {
    init_with("info");
}

/// Like [`init`], with `default` as the filter when `RUST_LOG` is not set (the demo keeps
/// its terminal for the progress display and logs only warnings).
pub fn init_with(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if std::io::stderr().is_terminal() {
        builder.try_init()
    } else {
        builder.json().try_init()
    };
}
