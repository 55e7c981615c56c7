//! One version for the crate, the chart's `appVersion` and the image tag the chart deploys
//! by default, and a `--version` that names the revision the binary was built from.

use std::path::Path;
use std::process::Command;

use serde_yaml::Value as Yaml;

fn chart_file(name: &str) -> Yaml {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("chart")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_chart_app_version_and_the_default_image_tag_are_the_crate_version() {
    assert_eq!(
        chart_file("Chart.yaml")["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "Chart.yaml appVersion must be the crate version (Cargo.toml)"
    );
    // An empty tag renders `.Chart.AppVersion` (tests/chart.rs renders it); any other
    // default would be a second place to bump.
    assert_eq!(
        chart_file("values.yaml")["image"]["tag"].as_str(),
        Some(""),
        "values.yaml image.tag must stay empty so that the chart's appVersion is the tag"
    );
}

#[test]
fn the_chart_version_floor_ships_beside_the_chart_version() {
    use catalyst_cutover::step::chart::{MIN_CHART_VERSION, SHIPPED_CHART_VERSION};
    assert_eq!(
        chart_file("Chart.yaml")["version"].as_str(),
        Some(SHIPPED_CHART_VERSION),
        "Chart.yaml version must be step::chart::SHIPPED_CHART_VERSION: bump them (and, \
         when this release's steps need it, MIN_CHART_VERSION) together"
    );
    let version = |v: &str| semver::Version::parse(v).expect("a SemVer version");
    assert!(
        version(MIN_CHART_VERSION) <= version(SHIPPED_CHART_VERSION),
        "the floor is above the chart this build ships"
    );
}

#[test]
fn version_prints_the_crate_version_and_the_build_revision() {
    let output = Command::new(env!("CARGO_BIN_EXE_catalyst-cutover"))
        .arg("--version")
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{output:?}");
    let revision = env!("CATALYST_CUTOVER_REVISION");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!(
            "catalyst-cutover {} (revision {revision})\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    // build.rs found the checkout (or was told its revision): a commit id, not the
    // fallback, whenever the tests run from a git clone.
    if Path::new(env!("CARGO_MANIFEST_DIR")).join(".git").exists() {
        let commit = revision.strip_suffix("-dirty").unwrap_or(revision);
        assert!(
            commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "`{revision}` is not a commit id"
        );
    }
}
