//! `catalyst-cutover migrate`: brings the status ConfigMap to the latest schema (the
//! service also does this at start-up) and says what it applied.

use super::args::{TargetArgs, connect};
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
    super::exit::run("migrate", migrate(&args))
}

async fn migrate(args: &MigrateArgs) -> Result<(), String> {
    let client = connect(args.target.kubeconfig.as_deref()).await?;
    let store = StatusStore::new(
        client,
        &args.target.namespace,
        &args.target.status_configmap,
        StatusCache::new(),
    );
    let applied = crate::service::run::migrate(&store)
        .await
        .map_err(|e| e.to_string())?;
    let (namespace, name) = (&args.target.namespace, &args.target.status_configmap);
    let latest = crate::migrate::latest_version();
    if applied.is_empty() {
        println!("ConfigMap {namespace}/{name} is already at schema version {latest}");
    } else {
        let list: Vec<String> = applied.iter().map(u32::to_string).collect();
        println!(
            "ConfigMap {namespace}/{name}: applied migrations {}; now at schema version {latest}",
            list.join(", ")
        );
    }
    Ok(())
}
