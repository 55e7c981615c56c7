//! The tether report's flags (the chart's `tethers.*`, `upstream.registries`,
//! `vclusterPivot.registry` and `completion.requireNoTethers` values), shared by `serve`
//! and the one-off report.

use crate::tethers::TetherConfig;
use clap::ArgAction;

/// What counts as upstream, what the agents mirror, and what the report may read.
#[derive(Debug, Clone, clap::Args)]
pub struct TetherArgs {
    /// An upstream host: a reference to it (or to a subdomain of it) is a tether. Repeat
    /// the flag, or separate hosts with commas. None: the tether report is off.
    #[arg(
        long = "tether-upstream-host",
        value_name = "HOST",
        env = "CATALYST_CUTOVER_TETHER_UPSTREAM_HOSTS",
        value_delimiter = ','
    )]
    pub upstream_hosts: Vec<String>,
    /// A registry the registry-pivot agents mirror (their --upstream): its images are no
    /// tether on a node that acknowledged the current pivot. Repeatable, or comma-separated.
    #[arg(
        long = "mirrored-registry",
        value_name = "HOST",
        env = "CATALYST_CUTOVER_MIRRORED_REGISTRIES",
        value_delimiter = ','
    )]
    pub mirrored_registries: Vec<String>,
    /// Read Pods, Nodes, Flux and Crossplane objects cluster-wide (the chart's tethers
    /// ClusterRole); `false`: the report names them as unseen.
    #[arg(long, value_name = "BOOL", env = "CATALYST_CUTOVER_TETHERS_CLUSTER_WIDE",
          default_value_t = true, action = ArgAction::Set)]
    pub tethers_cluster_wide: bool,
    /// The nodes whose registry-pivot agents must acknowledge the pivot, as a label
    /// selector (the agent DaemonSet's nodes) [default: every node].
    #[arg(
        long,
        value_name = "SELECTOR",
        env = "CATALYST_CUTOVER_TETHER_NODE_SELECTOR"
    )]
    pub tether_node_selector: Option<String>,
    /// Where a vcluster's images come from when its HelmRelease sets no
    /// defaultImageRegistry (the chart's vclusterPivot.registry).
    #[arg(long, value_name = "HOST", env = "CATALYST_CUTOVER_VCLUSTER_REGISTRY")]
    pub vcluster_registry: Option<String>,
}

impl TetherArgs {
    /// The report's settings, for the record Lease `record_lease` of `namespace`.
    pub fn config(&self, namespace: &str, record_lease: &str) -> TetherConfig {
        TetherConfig {
            upstream_hosts: self.upstream_hosts.clone(),
            mirrored_registries: self.mirrored_registries.clone(),
            cluster_wide: self.tethers_cluster_wide,
            node_selector: self
                .tether_node_selector
                .clone()
                .filter(|s| !s.trim().is_empty()),
            vcluster_registry: self
                .vcluster_registry
                .clone()
                .filter(|r| !r.trim().is_empty()),
            ..TetherConfig::new(namespace, record_lease)
        }
    }
}
