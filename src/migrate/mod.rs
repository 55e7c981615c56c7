//! Ordered, declarative migrations of the status ConfigMap's schema (`migrations/*.yaml`,
//! embedded at build time). Each migration only fills in keys; applying them twice changes
//! nothing, and the version reached is recorded as `schemaVersion`.

use crate::status::model::{KEY_PHASE, KEY_SCHEMA_VERSION, Phase, STEP_ATTEMPT, StatusData, get};
use serde::Deserialize;
use std::sync::OnceLock;

/// The migration files, in order. A unit test checks this list against `migrations/`.
const SOURCES: &[(&str, &str)] = &[
    (
        "0001-adopt-earlier-implementation.yaml",
        include_str!("../../migrations/0001-adopt-earlier-implementation.yaml"),
    ),
    (
        "0002-step-attempts.yaml",
        include_str!("../../migrations/0002-step-attempts.yaml"),
    ),
];

/// One migration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// The schema version this migration brings the ConfigMap to.
    pub version: u32,
    /// What it is for.
    pub description: String,
    /// Its operations, applied in order.
    pub operations: Vec<Operation>,
}

/// One declarative operation.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Operation {
    /// Sets `key` to `value` when the key is absent.
    Default {
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// Sets `key` to the value of `from` when `key` is absent or empty.
    CopyIfAbsent {
        /// Key.
        key: String,
        /// Source key.
        from: String,
    },
    /// Writes `cutoverPhase` from the earlier keys when absent.
    DerivePhase,
    /// Writes `step.<name>.attempt = 1` for every started row without an attempt.
    StepAttempts,
}

/// A migration file that does not parse: a build defect, reported with the file's name.
#[derive(Debug, thiserror::Error)]
#[error("migration {file}: {source}")]
pub struct MigrationError {
    file: &'static str,
    #[source]
    source: serde_yaml::Error,
}

/// The parsed migrations, in ascending version order.
pub fn migrations() -> Result<&'static [Migration], &'static MigrationError> {
    static PARSED: OnceLock<Result<Vec<Migration>, MigrationError>> = OnceLock::new();
    PARSED
        .get_or_init(|| {
            let mut all = SOURCES
                .iter()
                .map(|(file, text)| {
                    serde_yaml::from_str::<Migration>(text)
                        .map_err(|source| MigrationError { file, source })
                })
                .collect::<Result<Vec<_>, _>>()?;
            all.sort_by_key(|m| m.version);
            Ok(all)
        })
        .as_ref()
        .map(Vec::as_slice)
}

/// The schema version a fully migrated ConfigMap carries.
pub fn latest_version() -> u32 {
    migrations()
        .ok()
        .and_then(|all| all.last())
        .map(|m| m.version)
        .unwrap_or(0)
}

/// The schema version `data` records (0 when never migrated).
pub fn version_of(data: &StatusData) -> u32 {
    get(data, KEY_SCHEMA_VERSION).trim().parse().unwrap_or(0)
}

/// Applies every migration newer than the recorded version and records the version reached.
/// Returns the versions applied.
pub fn migrate(data: &mut StatusData) -> Result<Vec<u32>, &'static MigrationError> {
    let from = version_of(data);
    let mut applied = Vec::new();
    for m in migrations()?.iter().filter(|m| m.version > from) {
        for op in &m.operations {
            op.apply(data);
        }
        data.insert(KEY_SCHEMA_VERSION.to_owned(), m.version.to_string());
        applied.push(m.version);
    }
    Ok(applied)
}

impl Operation {
    fn apply(&self, data: &mut StatusData) {
        match self {
            Operation::Default { key, value } => {
                data.entry(key.clone()).or_insert_with(|| value.clone());
            }
            Operation::CopyIfAbsent { key, from } => {
                let source = get(data, from).to_owned();
                if get(data, key).is_empty() && !source.is_empty() {
                    data.insert(key.clone(), source);
                }
            }
            Operation::DerivePhase => {
                if !data.contains_key(KEY_PHASE) {
                    let phase = Phase::derive(data);
                    data.insert(KEY_PHASE.to_owned(), phase.as_str().to_owned());
                }
            }
            Operation::StepAttempts => {
                let started: Vec<String> = data
                    .keys()
                    .filter_map(|k| k.strip_prefix("step.")?.strip_suffix(".startedAt"))
                    .filter(|step| !get(data, &format!("step.{step}.startedAt")).is_empty())
                    .map(str::to_owned)
                    .collect();
                for step in started {
                    data.entry(crate::contract::key::step(&step, STEP_ATTEMPT))
                        .or_insert_with(|| "1".to_owned());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn earlier() -> StatusData {
        [
            ("cutoverComplete", "false"),
            ("cutoverStartedAt", "2026-01-01T00:00:00Z"),
            ("currentStep", "harbor-prewarm"),
            ("currentStepIndex", "2"),
            ("totalSteps", "5"),
            ("step.gitea-mirror.result", "success"),
            ("step.gitea-mirror.startedAt", "2026-01-01T00:00:00Z"),
            ("step.harbor-prewarm.result", "running"),
            ("step.harbor-prewarm.startedAt", "2026-01-01T00:01:00Z"),
            ("step.harbor-prewarm.jobName", "cutover-harbor-prewarm"),
            ("node.n1.registriesYaml", "v1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn embedded_list_matches_the_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".yaml"))
            .collect();
        files.sort();
        let embedded: Vec<&str> = SOURCES.iter().map(|(f, _)| *f).collect();
        assert_eq!(files, embedded);
        let versions: Vec<u32> = migrations().unwrap().iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=versions.len() as u32).collect::<Vec<_>>());
    }

    #[test]
    fn adopts_the_earlier_implementation_without_losing_a_key() {
        let before = earlier();
        let mut data = before.clone();
        let applied = migrate(&mut data).unwrap();
        assert_eq!(applied, vec![1, 2]);
        for (k, v) in &before {
            assert_eq!(data.get(k), Some(v), "key {k} changed");
        }
        assert_eq!(
            get(&data, "cutoverLastAttemptStartedAt"),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(get(&data, "cutoverPhase"), "running");
        assert_eq!(get(&data, "step.harbor-prewarm.attempt"), "1");
        assert_eq!(get(&data, "registriesYamlActive"), "v1");
        assert_eq!(version_of(&data), latest_version());
    }

    #[test]
    fn running_twice_changes_nothing() {
        let mut data = earlier();
        migrate(&mut data).unwrap();
        let once = data.clone();
        assert!(migrate(&mut data).unwrap().is_empty());
        assert_eq!(once, data);
    }

    #[test]
    fn the_last_migration_reaches_the_schema_the_status_code_speaks() {
        assert_eq!(latest_version(), crate::status::model::SCHEMA_VERSION);
    }

    #[test]
    fn the_initial_configmap_is_already_migrated() {
        let mut data = crate::status::model::initial_data();
        let before = data.clone();
        assert!(migrate(&mut data).unwrap().is_empty());
        assert_eq!(before, data);
    }
}
