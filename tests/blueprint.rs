//! The catalog entry `blueprint.yaml` beside the chart: its shape, and its version in
//! lockstep with the chart's and the crate's.

use serde_yaml::Value;
use std::path::Path;

fn yaml(rel: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn text<'a>(doc: &'a Value, path: &[&str]) -> &'a str {
    let mut at = doc;
    for key in path {
        at = &at[*key];
    }
    at.as_str()
        .unwrap_or_else(|| panic!("{} is not a string: {at:?}", path.join(".")))
}

#[test]
fn blueprint_describes_the_chart_for_the_catalog() {
    let bp = yaml("blueprint.yaml");
    assert_eq!(text(&bp, &["apiVersion"]), "catalyst.openova.io/v1alpha1");
    assert_eq!(text(&bp, &["kind"]), "Blueprint");
    let chart = yaml("chart/Chart.yaml");
    assert_eq!(text(&bp, &["metadata", "name"]), text(&chart, &["name"]));
    assert_eq!(
        text(&bp, &["metadata", "labels", "catalyst.openova.io/section"]),
        "pts-2-3-per-sovereign-supporting-services"
    );
    assert_eq!(text(&bp, &["spec", "visibility"]), "unlisted");
    assert_eq!(text(&bp, &["spec", "manifests", "chart"]), "./chart");
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(text(&bp, &["spec", "manifests", "chart"]))
            .join("Chart.yaml")
            .is_file(),
        "manifests.chart names the chart's directory"
    );
    assert!(!text(&bp, &["spec", "card", "title"]).trim().is_empty());
    let summary = text(&bp, &["spec", "card", "summary"]);
    assert!(summary.contains("dormant"), "{summary}");
    let depends: Vec<&str> = bp["spec"]["depends"]
        .as_sequence()
        .expect("spec.depends is a list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(depends, ["bp-gitea", "bp-harbor"]);
}

#[test]
fn blueprint_chart_and_crate_versions_move_in_lockstep() {
    let bp = yaml("blueprint.yaml");
    let chart = yaml("chart/Chart.yaml");
    let crate_version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        text(&bp, &["spec", "version"]),
        crate_version,
        "blueprint.yaml spec.version vs Cargo.toml version"
    );
    assert_eq!(
        text(&chart, &["version"]),
        crate_version,
        "chart/Chart.yaml version vs Cargo.toml version"
    );
}
