//! Why a one-off tether snapshot failed.

/// Why [`super::snapshot`] could not list the cluster.
#[derive(Debug, thiserror::Error)]
pub enum TetherError {
    /// No upstream host is configured: every reference would look sovereign.
    #[error(
        "no upstream hosts are configured (tethers.upstreamHosts): nothing could be called a tether"
    )]
    NoUpstreamHosts,
}
