//! [`load_dir`]: step ConfigMaps from manifest files, such as the chart's `chart/steps/`.

use crate::contract::{COMPONENT_STEP, LABEL_COMPONENT, LABEL_PART_OF, PART_OF};
use k8s_openapi::api::core::v1::ConfigMap;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Why manifest files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A directory or file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path at fault.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A document is not valid YAML, or a ConfigMap document is not a valid ConfigMap.
    #[error("{path}: document {document}: {message}")]
    Yaml {
        /// The file at fault.
        path: PathBuf,
        /// The 1-based document in the file.
        document: usize,
        /// serde_yaml's message, with line and column within the file.
        message: String,
    },
}

/// Reads every `*.yaml` / `*.yml` file under `dir`, recursively and in path order, and returns
/// the ConfigMaps that carry the step selector labels, in that order.
///
/// Files may hold several documents; documents of other kinds (and ConfigMaps without the step
/// labels) are skipped, so a directory of mixed manifests works. Any file that is not valid
/// YAML is an error naming the file, since a step hidden in it would silently go missing.
pub fn load_dir(dir: &Path) -> Result<Vec<ConfigMap>, LoadError> {
    let mut files = Vec::new();
    collect_yaml_files(dir, &mut files)?;
    files.sort();
    let mut steps = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        steps.extend(step_configmaps(&path, &text)?);
    }
    Ok(steps)
}

fn collect_yaml_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io_err = |source| LoadError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        if path.is_dir() {
            collect_yaml_files(&path, files)?;
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            files.push(path);
        }
    }
    Ok(())
}

/// The step ConfigMaps among the documents of one file.
fn step_configmaps(path: &Path, text: &str) -> Result<Vec<ConfigMap>, LoadError> {
    let mut found = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let yaml_err = |err: serde_yaml::Error| LoadError::Yaml {
            path: path.to_owned(),
            document: index + 1,
            message: err.to_string(),
        };
        let value = serde_yaml::Value::deserialize(document).map_err(yaml_err)?;
        let is_configmap = value.get("apiVersion").and_then(|v| v.as_str()) == Some("v1")
            && value.get("kind").and_then(|v| v.as_str()) == Some("ConfigMap");
        if !is_configmap {
            continue;
        }
        let cm: ConfigMap = serde_yaml::from_value(value).map_err(yaml_err)?;
        let labels = cm.metadata.labels.as_ref();
        let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
        if label(LABEL_PART_OF) == Some(PART_OF) && label(LABEL_COMPONENT) == Some(COMPONENT_STEP) {
            found.push(cm);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_doc(name: &str) -> String {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    \
             app.kubernetes.io/part-of: self-sovereign-cutover\n    \
             app.kubernetes.io/component: cutover-step\ndata:\n  stepName: {name}\n"
        )
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cutover-load-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_step_configmaps_recursively_and_skips_the_rest() {
        let dir = temp_dir();
        let other_cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n";
        let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n";
        std::fs::write(
            dir.join("b.yaml"),
            format!("{}---\n{secret}---\n{other_cm}---\n", step_doc("b")),
        )
        .unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/c.yml"), step_doc("c")).unwrap();
        std::fs::write(dir.join("a.yaml"), step_doc("a")).unwrap();
        std::fs::write(dir.join("notes.txt"), "not: [yaml").unwrap();
        let names: Vec<_> = load_dir(&dir)
            .unwrap()
            .into_iter()
            .map(|cm| cm.metadata.name.unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn invalid_yaml_names_file_and_document() {
        let dir = temp_dir();
        std::fs::write(
            dir.join("x.yaml"),
            format!("{}---\nkey: [unclosed\n", step_doc("a")),
        )
        .unwrap();
        let err = load_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("x.yaml: document 2:"), "{err}");
        assert!(err.contains("line"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_directory_is_an_io_error() {
        let err = load_dir(Path::new("/nonexistent/cutover-steps")).unwrap_err();
        assert!(matches!(err, LoadError::Io { .. }), "{err}");
    }
}
