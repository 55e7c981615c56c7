//! The chart version floor: step ConfigMaps from a chart older than this build supports are
//! refused before anything starts, as the admin console's backend does (412
//! `cutover-chart-below-floor`). The chart's version is read from each step's
//! `helm.sh/chart` label (`<chart name>-<version>`, `+` written `_` as Helm writes it); the
//! lowest one counts. Steps without the label (hand-made, or read from plain files) are not
//! from a chart and are not checked. Pure.

use k8s_openapi::api::core::v1::ConfigMap;
use semver::Version;

/// The version of the chart this build ships with (`chart/Chart.yaml`'s `version`; a test
/// keeps them in lockstep).
pub const SHIPPED_CHART_VERSION: &str = "0.1.0";
/// The oldest chart whose step ConfigMaps this build runs: raised together with
/// [`SHIPPED_CHART_VERSION`] when a release's steps need this build's service, or the
/// service theirs. `--min-chart-version` overrides it.
pub const MIN_CHART_VERSION: &str = "0.1.0";
/// Helm's label naming the chart (and its version) a resource came from.
pub const LABEL_HELM_CHART: &str = "helm.sh/chart";

/// The built-in floor, [`MIN_CHART_VERSION`].
pub fn default_floor() -> Version {
    Version::parse(MIN_CHART_VERSION).unwrap_or(Version::new(0, 0, 0))
}

/// Step ConfigMaps from a chart below the floor, or whose chart version cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "step ConfigMap {configmap} comes from chart {label:?} (version {observed}), older than \
     the oldest chart this service runs ({min}); upgrade the chart to {min} or later, or \
     lower the floor with --min-chart-version (chart value minChartVersion)"
)]
pub struct BelowFloor {
    /// The lowest chart version among the steps (the label's text when it has none).
    pub observed: String,
    /// The floor.
    pub min: String,
    /// The step ConfigMap carrying it.
    pub configmap: String,
    /// Its whole `helm.sh/chart` label.
    pub label: String,
}

/// The version in a `helm.sh/chart` label: the longest suffix after a `-` that is a
/// semantic version, so that chart names with dashes and pre-release versions both read.
pub fn chart_version(label: &str) -> Option<Version> {
    label
        .match_indices('-')
        .find_map(|(at, _)| Version::parse(&label[at + 1..].replace('_', "+")).ok())
}

/// Refuses `configmaps` when the lowest chart version among their `helm.sh/chart` labels
/// is below `floor`; a label without a readable version is refused too.
pub fn check(configmaps: &[ConfigMap], floor: &Version) -> Result<(), BelowFloor> {
    let labelled = configmaps.iter().filter_map(|cm| {
        let label = cm.metadata.labels.as_ref()?.get(LABEL_HELM_CHART)?;
        Some((cm, label, chart_version(label)))
    });
    // An unreadable version sorts first: it is refused before any readable one.
    let lowest = labelled.min_by(|a, b| a.2.cmp(&b.2));
    match lowest {
        Some((cm, label, version)) if version.as_ref().is_none_or(|v| v < floor) => {
            Err(BelowFloor {
                observed: version.map_or_else(|| label.clone(), |v| v.to_string()),
                min: floor.to_string(),
                configmap: cm.metadata.name.clone().unwrap_or_default(),
                label: label.clone(),
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, chart: Option<&str>) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.to_owned());
        if let Some(chart) = chart {
            cm.metadata.labels = Some([(LABEL_HELM_CHART.to_owned(), chart.to_owned())].into());
        }
        cm
    }

    #[test]
    fn versions_read_from_chart_labels() {
        let v = |s: &str| Version::parse(s).unwrap();
        for (label, version) in [
            ("bp-self-sovereign-cutover-0.1.0", v("0.1.0")),
            ("bp-self-sovereign-cutover-1.2.3-rc.1", v("1.2.3-rc.1")),
            ("cutover-2.0.0_build.5", v("2.0.0+build.5")),
            ("x-10.0.1", v("10.0.1")),
        ] {
            assert_eq!(chart_version(label), Some(version), "{label}");
        }
        for bad in ["", "cutover", "cutover-1.2", "cutover-v1.2.3", "0.1.0"] {
            assert_eq!(chart_version(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_lowest_labelled_step_decides() {
        let floor = Version::parse("0.3.0").unwrap();
        let ok = [
            step("cutover-step-01-a", Some("bp-cutover-0.3.0")),
            step("cutover-step-02-b", Some("bp-cutover-1.0.0")),
            step("cutover-step-03-hand-made", None),
        ];
        assert_eq!(check(&ok, &floor), Ok(()));
        assert_eq!(
            check(&[step("s", None)], &floor),
            Ok(()),
            "no chart, no floor"
        );
        let old = [
            step("cutover-step-01-a", Some("bp-cutover-1.0.0")),
            step("cutover-step-02-b", Some("bp-cutover-0.2.9")),
        ];
        let refused = check(&old, &floor).unwrap_err();
        assert_eq!(
            (refused.observed.as_str(), refused.min.as_str()),
            ("0.2.9", "0.3.0")
        );
        assert_eq!(refused.configmap, "cutover-step-02-b");
        let detail = refused.to_string();
        assert!(detail.contains("--min-chart-version"), "{detail}");
        let pre = [step("s", Some("bp-cutover-0.3.0-rc.1"))];
        assert!(
            check(&pre, &floor).is_err(),
            "a pre-release sorts before its release"
        );
    }

    #[test]
    fn an_unreadable_chart_version_is_refused_naming_the_label() {
        let floor = Version::new(0, 0, 0);
        let steps = [
            step("cutover-step-01-a", Some("bp-cutover-1.0.0")),
            step("cutover-step-02-b", Some("bp-cutover-latest")),
        ];
        let refused = check(&steps, &floor).unwrap_err();
        assert_eq!(refused.observed, "bp-cutover-latest");
        assert_eq!(refused.configmap, "cutover-step-02-b");
    }

    #[test]
    fn the_built_in_floor_reads_and_is_not_above_the_shipped_chart() {
        let shipped = Version::parse(SHIPPED_CHART_VERSION).unwrap();
        assert_eq!(default_floor().to_string(), MIN_CHART_VERSION);
        assert!(default_floor() <= shipped);
    }
}
