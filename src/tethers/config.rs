//! What the tether report watches and what it counts as upstream, from `serve`'s flags (the
//! chart's `tethers.*` and `upstream.registries` values).

/// The tether report's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TetherConfig {
    /// The upstream hosts (`tethers.upstreamHosts`): a reference to one of them (or a
    /// subdomain) is a tether.
    pub upstream_hosts: Vec<String>,
    /// The registries the registry-pivot agents mirror (`upstream.registries`, the agents'
    /// `--upstream`): an image from one of them on a node that acknowledged the current pivot
    /// is pulled through the local Harbor, no tether.
    pub mirrored_registries: Vec<String>,
    /// Whether the cluster-wide reads (Pods, Nodes, Flux, Crossplane) are granted
    /// (`tethers.clusterWide`); off, the report names those sources as unseen.
    pub cluster_wide: bool,
    /// Namespace of the record Lease and the agents' acknowledgement Leases.
    pub namespace: String,
    /// Name of the record Lease, whose annotations hold the current pivot directive.
    pub record_lease: String,
    /// The nodes whose agents must acknowledge the pivot, as a label selector (the
    /// registry-pivot DaemonSet's nodes); `None`: every node.
    pub node_selector: Option<String>,
    /// Where a vcluster's images come from when its HelmRelease sets no
    /// `defaultImageRegistry` (`vclusterPivot.registry`).
    pub vcluster_registry: Option<String>,
}

impl TetherConfig {
    /// Watches everything in the cluster, with the record Lease `record_lease` of `namespace`,
    /// and nothing mirrored or upstream yet.
    pub fn new(namespace: &str, record_lease: &str) -> Self {
        TetherConfig {
            upstream_hosts: Vec::new(),
            mirrored_registries: Vec::new(),
            cluster_wide: true,
            namespace: namespace.to_owned(),
            record_lease: record_lease.to_owned(),
            node_selector: None,
            vcluster_registry: None,
        }
    }
}
