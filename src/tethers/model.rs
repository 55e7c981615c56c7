//! What a tether is: one reference the cluster still holds to an upstream host, and the
//! report of all of them. Pure data, shared by the report's route, page, CLI, metrics,
//! event stream and the completion gate.

use serde::{Deserialize, Serialize};

/// The kind of object (or part of one) that holds a tether.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TetherKind {
    /// A Flux `GitRepository`'s `spec.url`.
    GitRepository,
    /// A Flux `HelmRepository`'s `spec.url`.
    HelmRepository,
    /// A Flux `OCIRepository`'s `spec.url`.
    OciRepository,
    /// A Flux `HelmRelease` whose chart comes from an upstream source.
    HelmRelease,
    /// A workload's container image from an upstream registry no node mirror covers.
    Image,
    /// A container's env value or argument holding an upstream git or registry URL.
    ContainerUrl,
    /// A Crossplane `Provider`'s package.
    CrossplaneProvider,
    /// A vcluster's registry setting.
    Vcluster,
    /// A node whose registry-pivot agent has not acknowledged the pivot.
    UnackedNode,
}

impl TetherKind {
    /// Every kind, in the order reports, pages and metrics list them.
    pub const ALL: [TetherKind; 9] = [
        TetherKind::GitRepository,
        TetherKind::HelmRepository,
        TetherKind::OciRepository,
        TetherKind::HelmRelease,
        TetherKind::Image,
        TetherKind::ContainerUrl,
        TetherKind::CrossplaneProvider,
        TetherKind::Vcluster,
        TetherKind::UnackedNode,
    ];

    /// The kind's name in JSON, metrics labels and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            TetherKind::GitRepository => "git-repository",
            TetherKind::HelmRepository => "helm-repository",
            TetherKind::OciRepository => "oci-repository",
            TetherKind::HelmRelease => "helm-release",
            TetherKind::Image => "image",
            TetherKind::ContainerUrl => "container-url",
            TetherKind::CrossplaneProvider => "crossplane-provider",
            TetherKind::Vcluster => "vcluster",
            TetherKind::UnackedNode => "unacked-node",
        }
    }

    /// Whether the cutover pivots this kind (Flux sources, mirrored images, the agents'
    /// acknowledgements), so that `completion.requireNoTethers` gates on it; the others
    /// are reported, never gating.
    pub fn gates(self) -> bool {
        matches!(
            self,
            TetherKind::GitRepository
                | TetherKind::HelmRepository
                | TetherKind::OciRepository
                | TetherKind::HelmRelease
                | TetherKind::Image
                | TetherKind::UnackedNode
        )
    }
}

/// One reference to an upstream host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tether {
    /// What holds it.
    pub kind: TetherKind,
    /// The holding object's namespace; `None` for cluster-scoped objects (nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The holding object's name (for images: the owning controller's, e.g. a Deployment's).
    pub name: String,
    /// The field path within the object, e.g. `spec.url` or
    /// `spec.template.spec.containers[api].image`.
    pub field: String,
    /// The value found there.
    pub value: String,
    /// The upstream host it names.
    pub host: String,
    /// Since when the report has seen it (RFC 3339).
    pub since: String,
}

/// A source of tethers the report cannot see, and why (no rights, the kind is not
/// installed, its watch has not synced): the report says so rather than show nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnseenSource {
    /// The source, e.g. `gitrepositories.source.toolkit.fluxcd.io` or `pods`.
    pub source: String,
    /// Why it is not seen.
    pub reason: String,
}

impl UnseenSource {
    /// The entry of a source whose kind the cluster does not serve (its CRD is not
    /// installed).
    pub fn not_installed(source: &str) -> UnseenSource {
        UnseenSource {
            source: source.to_owned(),
            reason: format!("{source} is not served by this cluster (not installed)"),
        }
    }

    /// Whether the source is unseen only because its kind is not installed: nothing of it
    /// can exist, so it hides no tether (the surfaces say so, and do not count it as
    /// blindness).
    pub fn is_not_installed(&self) -> bool {
        *self == UnseenSource::not_installed(&self.source)
    }
}

/// Every tether the cluster holds now, as `GET /cutover/tethers` serves it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TetherReport {
    /// `tethers.len()`.
    pub count: usize,
    /// Whether every source's watch has listed once: before that, an empty list means
    /// "not known yet", not "none".
    pub synced: bool,
    /// The sources it cannot see.
    pub unseen: Vec<UnseenSource>,
    /// One entry per reference, ordered by kind, namespace, name and field.
    pub tethers: Vec<Tether>,
}

impl TetherReport {
    /// The number of tethers of `kind`.
    pub fn count_of(&self, kind: TetherKind) -> usize {
        self.tethers.iter().filter(|t| t.kind == kind).count()
    }

    /// The tethers that gate completion.
    pub fn gating(&self) -> impl Iterator<Item = &Tether> {
        self.tethers.iter().filter(|t| t.kind.gates())
    }

    /// The sources that may hold tethers the report cannot see (no rights, a failing
    /// list), leaving out the kinds that are not installed.
    pub fn blind_spots(&self) -> impl Iterator<Item = &UnseenSource> {
        self.unseen.iter().filter(|u| !u.is_not_installed())
    }
}
