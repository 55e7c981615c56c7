//! `catalyst-cutover migrate`: brings the status ConfigMap to the latest schema (the
//! service also does this at start-up) and says what it applied.

use super::args::{TargetArgs, connect, runtime};
use crate::status::{StatusCache, StatusStore};
use std::process::ExitCode;

/// Arguments of `migrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    target: TargetArgs,
}

/// Runs `migrate`: 0 when the ConfigMap is at the latest schema, 1 otherwise.
pub fn run(args: MigrateArgs) -> ExitCode {
    let result = runtime().map_err(|e| e.to_string()).and_then(|rt| {
        rt.block_on(async {
            let client = connect(args.target.kubeconfig.as_deref()).await?;
            let store = StatusStore::new(
                client,
                &args.target.namespace,
                &args.target.status_configmap,
                StatusCache::new(),
            );
            crate::service::run::migrate(&store)
                .await
                .map_err(|e| e.to_string())
        })
    });
    match result {
        Ok(applied) if applied.is_empty() => {
            println!(
                "ConfigMap {}/{} is already at schema version {}",
                args.target.namespace,
                args.target.status_configmap,
                crate::migrate::latest_version()
            );
            ExitCode::SUCCESS
        }
        Ok(applied) => {
            let list: Vec<String> = applied.iter().map(u32::to_string).collect();
            println!(
                "ConfigMap {}/{}: applied migrations {}; now at schema version {}",
                args.target.namespace,
                args.target.status_configmap,
                list.join(", "),
                crate::migrate::latest_version()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("catalyst-cutover migrate: {err}");
            ExitCode::FAILURE
        }
    }
}
