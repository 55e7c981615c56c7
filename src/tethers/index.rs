//! The tether index: pure state fed by each source's applies, deletes and re-lists (the
//! records of [`super::records`]), from which the report is built. The cross-references are
//! resolved at build time: a HelmRelease is tethered by its chart source's URL, an image is
//! covered by a mirror only on a node that acknowledged the current pivot, so an
//! acknowledgement or a source that changes changes the report at once.

use super::hosts::{UpstreamHosts, image_registry};
use super::model::{Tether, TetherKind, TetherReport, UnseenSource};
use super::records::{Entry, ObjectKey, Reference};
use crate::pivot::{Direction, Directive, ack};
use k8s_openapi::api::coordination::v1::Lease;
use std::collections::{BTreeMap, BTreeSet};

/// A kind of object the report watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The record and acknowledgement Leases of the service's namespace.
    Leases,
    /// The cluster's nodes.
    Nodes,
    /// Every pod.
    Pods,
    /// Flux GitRepositories.
    GitRepositories,
    /// Flux HelmRepositories.
    HelmRepositories,
    /// Flux OCIRepositories.
    OciRepositories,
    /// Flux HelmReleases.
    HelmReleases,
    /// Crossplane Providers.
    Providers,
}

impl Source {
    /// Every source.
    pub const ALL: [Source; 8] = [
        Source::Leases,
        Source::Nodes,
        Source::Pods,
        Source::GitRepositories,
        Source::HelmRepositories,
        Source::OciRepositories,
        Source::HelmReleases,
        Source::Providers,
    ];

    /// Its name in the report (`resource.group`).
    pub fn name(self) -> &'static str {
        match self {
            Source::Leases => "leases.coordination.k8s.io",
            Source::Nodes => "nodes",
            Source::Pods => "pods",
            Source::GitRepositories => "gitrepositories.source.toolkit.fluxcd.io",
            Source::HelmRepositories => "helmrepositories.source.toolkit.fluxcd.io",
            Source::OciRepositories => "ocirepositories.source.toolkit.fluxcd.io",
            Source::HelmReleases => "helmreleases.helm.toolkit.fluxcd.io",
            Source::Providers => "providers.pkg.crossplane.io",
        }
    }

    /// The API group and kind of a custom resource source, found by discovery; `None` for
    /// the built-in ones.
    pub fn custom(self) -> Option<(&'static str, &'static str)> {
        match self {
            Source::Leases | Source::Nodes | Source::Pods => None,
            Source::GitRepositories => Some(("source.toolkit.fluxcd.io", "GitRepository")),
            Source::HelmRepositories => Some(("source.toolkit.fluxcd.io", "HelmRepository")),
            Source::OciRepositories => Some(("source.toolkit.fluxcd.io", "OCIRepository")),
            Source::HelmReleases => Some(("helm.toolkit.fluxcd.io", "HelmRelease")),
            Source::Providers => Some(("pkg.crossplane.io", "Provider")),
        }
    }

    /// Whether reading it takes the cluster-wide rights (`tethers.clusterWide`).
    pub fn cluster_wide(self) -> bool {
        self != Source::Leases
    }

    /// The source of a HelmRelease's chart, by the kind Flux writes in its reference.
    fn of_chart_kind(kind: &str) -> Option<Source> {
        match kind {
            "GitRepository" => Some(Source::GitRepositories),
            "HelmRepository" => Some(Source::HelmRepositories),
            "OCIRepository" => Some(Source::OciRepositories),
            _ => None,
        }
    }

    /// The tether kind of an upstream URL or package it holds.
    fn tether_kind(self) -> Option<TetherKind> {
        match self {
            Source::GitRepositories => Some(TetherKind::GitRepository),
            Source::HelmRepositories => Some(TetherKind::HelmRepository),
            Source::OciRepositories => Some(TetherKind::OciRepository),
            Source::Providers => Some(TetherKind::CrossplaneProvider),
            _ => None,
        }
    }
}

/// Where the watch of one source stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    /// Not listed yet.
    Listing,
    /// Listed at least once: the index holds what it has.
    Listed,
    /// The kind is not served by this cluster (not installed).
    NotInstalled,
    /// Not read by configuration, and why.
    Off(String),
    /// Never listed: the last list failed, with this reason (forbidden, unreachable).
    Failing(String),
}

impl SourceState {
    /// Whether the report is complete as to this source (listed, or nothing to list).
    fn settled(&self) -> bool {
        matches!(
            self,
            SourceState::Listed | SourceState::NotInstalled | SourceState::Off(_)
        )
    }

    /// Why the source is unseen; `None` when it is seen.
    fn unseen(&self, source: Source) -> Option<String> {
        match self {
            SourceState::Listed => None,
            SourceState::Listing => Some("not listed yet".to_owned()),
            SourceState::NotInstalled => Some(UnseenSource::not_installed(source.name()).reason),
            SourceState::Off(why) | SourceState::Failing(why) => Some(why.clone()),
        }
    }
}

/// What the index needs to know of the configuration.
#[derive(Debug, Clone, Default)]
pub struct IndexSettings {
    /// The upstream hosts.
    pub hosts: UpstreamHosts,
    /// The registries the agents mirror.
    pub mirrored: BTreeSet<String>,
}

/// The identity of one tether: the same reference of the same object, however many pods
/// hold it.
type TetherId = (TetherKind, Option<String>, String, String, String);

/// The tether index of one cluster.
#[derive(Debug, Default)]
pub struct Index {
    settings: IndexSettings,
    states: BTreeMap<Source, SourceState>,
    entries: BTreeMap<Source, BTreeMap<ObjectKey, Entry>>,
    since: BTreeMap<TetherId, String>,
}

impl Index {
    /// An empty index, every source listing.
    pub fn new(settings: IndexSettings) -> Self {
        Index {
            settings,
            states: Source::ALL
                .iter()
                .map(|s| (*s, SourceState::Listing))
                .collect(),
            ..Index::default()
        }
    }

    /// The settings.
    pub fn settings(&self) -> &IndexSettings {
        &self.settings
    }

    /// Records where `source`'s watch stands. A failure of a source listed before keeps
    /// what it had (the watch re-lists on its own); only a source never listed is unseen.
    pub fn set_state(&mut self, source: Source, state: SourceState) {
        let current = self.states.entry(source).or_insert(SourceState::Listing);
        if matches!(state, SourceState::Failing(_)) && *current == SourceState::Listed {
            return;
        }
        if !matches!(state, SourceState::Listed | SourceState::Failing(_)) {
            self.entries.remove(&source);
        }
        *current = state;
    }

    /// An object of `source` was added or changed; `entry` `None`: it holds nothing the
    /// report needs (any record of it is dropped). Whether the index changed: a pod's
    /// status update or a Lease's renewal changes no record.
    pub fn apply(&mut self, source: Source, key: ObjectKey, entry: Option<Entry>) -> bool {
        match entry {
            Some(entry) => {
                let objects = self.entries.entry(source).or_default();
                if objects.get(&key) == Some(&entry) {
                    return false;
                }
                objects.insert(key, entry);
                true
            }
            None => self.delete(source, &key),
        }
    }

    /// An object of `source` was deleted; whether the index held a record of it.
    pub fn delete(&mut self, source: Source, key: &ObjectKey) -> bool {
        self.entries
            .get_mut(&source)
            .is_some_and(|objects| objects.remove(key).is_some())
    }

    /// `source` was listed anew: `objects` are all it holds now.
    pub fn reset(&mut self, source: Source, objects: Vec<(ObjectKey, Option<Entry>)>) {
        let fresh = objects
            .into_iter()
            .filter_map(|(key, entry)| Some((key, entry?)))
            .collect();
        self.entries.insert(source, fresh);
        self.states.insert(source, SourceState::Listed);
    }

    fn objects(&self, source: Source) -> impl Iterator<Item = (&ObjectKey, &Entry)> {
        self.entries.get(&source).into_iter().flatten()
    }

    /// The pivot directive of the record Lease, if any.
    fn directive(&self) -> Option<&Directive> {
        self.objects(Source::Leases).find_map(|(_, e)| match e {
            Entry::Directive(d) => d.as_ref(),
            _ => None,
        })
    }

    /// The nodes that acknowledged the current pivot to `v2` (none before a pivot or
    /// after a rollback).
    fn acked_nodes(&self) -> BTreeSet<String> {
        let Some(directive) = self.directive().filter(|d| d.direction == Direction::V2) else {
            return BTreeSet::new();
        };
        let leases: Vec<&Lease> = self
            .objects(Source::Leases)
            .filter_map(|(_, e)| match e {
                Entry::Ack(lease) => Some(lease.as_ref()),
                _ => None,
            })
            .collect();
        ack::acked_nodes(&leases, directive)
    }

    /// The report as the index stands at `now` (RFC 3339): each tether's `since` is when
    /// this index first saw it in a report.
    pub fn report(&mut self, now: &str) -> TetherReport {
        let mut found: BTreeMap<TetherId, String> = BTreeMap::new();
        let mut add = |kind: TetherKind, namespace: Option<String>, name: String, r: &Reference| {
            found
                .entry((kind, namespace, name, r.field.clone(), r.value.clone()))
                .or_insert_with(|| r.host.clone());
        };
        let acked = self.acked_nodes();
        for source in [
            Source::GitRepositories,
            Source::HelmRepositories,
            Source::OciRepositories,
            Source::Providers,
        ] {
            let Some(kind) = source.tether_kind() else {
                continue;
            };
            for (key, entry) in self.objects(source) {
                if let Entry::Upstream(r) = entry {
                    add(kind, key.namespace.clone(), key.name.clone(), r);
                }
            }
        }
        for (key, entry) in self.objects(Source::HelmReleases) {
            let Entry::Release(release) = entry else {
                continue;
            };
            if let Some(chart) = &release.chart
                && let Some(source) = Source::of_chart_kind(&chart.kind)
                && let Some(Entry::Upstream(upstream)) =
                    self.entries.get(&source).and_then(|o| o.get(&chart.key))
            {
                let reference = Reference {
                    field: chart.field.clone(),
                    value: format!(
                        "{}/{}/{} ({})",
                        chart.kind,
                        chart.key.namespace.as_deref().unwrap_or_default(),
                        chart.key.name,
                        upstream.value
                    ),
                    host: upstream.host.clone(),
                };
                add(
                    TetherKind::HelmRelease,
                    key.namespace.clone(),
                    key.name.clone(),
                    &reference,
                );
            }
            if let Some(vcluster) = &release.vcluster {
                add(
                    TetherKind::Vcluster,
                    key.namespace.clone(),
                    key.name.clone(),
                    vcluster,
                );
            }
        }
        for (key, entry) in self.objects(Source::Pods) {
            let Entry::Pod(pod) = entry else { continue };
            let on_acked_node = pod.node.as_ref().is_some_and(|n| acked.contains(n));
            for image in &pod.images {
                let mirrored = on_acked_node
                    && image_registry(&image.value)
                        .is_some_and(|r| self.settings.mirrored.contains(&r));
                if !mirrored {
                    add(
                        TetherKind::Image,
                        key.namespace.clone(),
                        pod.owner.clone(),
                        image,
                    );
                }
            }
            for url in &pod.urls {
                add(
                    TetherKind::ContainerUrl,
                    key.namespace.clone(),
                    pod.owner.clone(),
                    url,
                );
            }
        }
        let mirrored_upstreams: Vec<&str> = self
            .settings
            .mirrored
            .iter()
            .filter_map(|r| self.settings.hosts.matching(r))
            .collect();
        let directive = self.directive();
        let unacked = match directive {
            Some(d) if d.direction == Direction::V2 => {
                format!(
                    "no acknowledgement of the registry pivot given at {}",
                    d.since
                )
            }
            Some(_) => "the registry pivot is rolled back".to_owned(),
            None => "no registry pivot directed yet".to_owned(),
        };
        for (key, _) in self.objects(Source::Nodes) {
            if !acked.contains(&key.name) {
                let reference = Reference {
                    field: "registry-pivot acknowledgement".to_owned(),
                    value: unacked.clone(),
                    host: mirrored_upstreams.join(", "),
                };
                add(TetherKind::UnackedNode, None, key.name.clone(), &reference);
            }
        }

        self.since.retain(|id, _| found.contains_key(id));
        let tethers: Vec<Tether> = found
            .into_iter()
            .map(|(id, host)| {
                let since = self
                    .since
                    .entry(id.clone())
                    .or_insert_with(|| now.to_owned())
                    .clone();
                let (kind, namespace, name, field, value) = id;
                Tether {
                    kind,
                    namespace,
                    name,
                    field,
                    value,
                    host,
                    since,
                }
            })
            .collect();
        let unseen = self
            .states
            .iter()
            .filter_map(|(source, state)| {
                Some(UnseenSource {
                    source: source.name().to_owned(),
                    reason: state.unseen(*source)?,
                })
            })
            .collect();
        TetherReport {
            count: tethers.len(),
            synced: self.states.values().all(SourceState::settled),
            unseen,
            tethers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tethers::records::{ChartSource, PodRecord, ReleaseRecord};

    fn settings() -> IndexSettings {
        IndexSettings {
            hosts: UpstreamHosts::new(["github.com", "ghcr.io", "docker.io", "harbor.openova.io"]),
            mirrored: ["docker.io", "ghcr.io", "quay.io"]
                .map(str::to_owned)
                .into(),
        }
    }

    fn key(ns: Option<&str>, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: ns.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    fn reference(field: &str, value: &str, host: &str) -> Reference {
        Reference {
            field: field.into(),
            value: value.into(),
            host: host.into(),
        }
    }

    fn listed() -> Index {
        let mut index = Index::new(settings());
        for s in Source::ALL {
            index.reset(s, Vec::new());
        }
        index
    }

    fn directive() -> Directive {
        Directive {
            direction: Direction::V2,
            since: "T1".into(),
        }
    }

    fn pod(owner: &str, node: Option<&str>, image: &str, host: &str) -> Entry {
        Entry::Pod(PodRecord {
            owner: owner.into(),
            node: node.map(str::to_owned),
            images: vec![reference(
                "spec.template.spec.containers[c].image",
                image,
                host,
            )],
            urls: Vec::new(),
        })
    }

    fn kinds(report: &TetherReport) -> Vec<(TetherKind, &str)> {
        report
            .tethers
            .iter()
            .map(|t| (t.kind, t.name.as_str()))
            .collect()
    }

    #[test]
    fn not_synced_until_every_source_listed_or_absent() {
        let mut index = Index::new(settings());
        let report = index.report("T0");
        assert!(!report.synced);
        assert_eq!(report.unseen.len(), Source::ALL.len());
        for s in Source::ALL {
            index.reset(s, Vec::new());
        }
        index.set_state(Source::Providers, SourceState::NotInstalled);
        index.set_state(
            Source::Pods,
            SourceState::Off("cluster-wide reads are off".into()),
        );
        let report = index.report("T0");
        assert!(report.synced);
        let unseen: Vec<&str> = report.unseen.iter().map(|u| u.source.as_str()).collect();
        assert_eq!(unseen, ["pods", "providers.pkg.crossplane.io"]);
        index.set_state(Source::Nodes, SourceState::Failing("forbidden".into()));
        assert!(
            index.report("T0").synced,
            "a listed source keeps what it had"
        );
        let mut fresh = Index::new(settings());
        fresh.set_state(
            Source::Nodes,
            SourceState::Failing("nodes is forbidden".into()),
        );
        let report = fresh.report("T0");
        assert!(
            report
                .unseen
                .iter()
                .any(|u| u.reason == "nodes is forbidden")
        );
    }

    #[test]
    fn images_are_mirrored_only_on_nodes_that_acknowledged_the_current_pivot() {
        let mut index = listed();
        index.apply(Source::Nodes, key(None, "n1"), Some(Entry::Node));
        index.apply(Source::Nodes, key(None, "n2"), Some(Entry::Node));
        index.apply(
            Source::Pods,
            key(Some("a"), "p1"),
            Some(pod(
                "deployment/api",
                Some("n1"),
                "ghcr.io/x/api:1",
                "ghcr.io",
            )),
        );
        index.apply(
            Source::Pods,
            key(Some("a"), "p2"),
            Some(pod(
                "deployment/api",
                Some("n2"),
                "ghcr.io/x/api:1",
                "ghcr.io",
            )),
        );
        index.apply(
            Source::Pods,
            key(Some("a"), "p3"),
            Some(pod(
                "pod/x",
                Some("n1"),
                "harbor.openova.io/x/y",
                "harbor.openova.io",
            )),
        );
        let before = index.report("T0");
        assert_eq!(
            kinds(&before),
            [
                (TetherKind::Image, "deployment/api"),
                (TetherKind::Image, "pod/x"),
                (TetherKind::UnackedNode, "n1"),
                (TetherKind::UnackedNode, "n2"),
            ],
            "two pods of one Deployment are one tether"
        );
        assert!(before.tethers[2].value.contains("no registry pivot"));
        assert_eq!(before.tethers[2].host, "docker.io, ghcr.io");

        index.apply(
            Source::Leases,
            key(Some("c"), "record"),
            Some(Entry::Directive(Some(directive()))),
        );
        index.apply(
            Source::Leases,
            key(Some("c"), "ack1"),
            Some(Entry::Ack(Box::new(ack::lease("n1", &directive())))),
        );
        let half = index.report("T1");
        assert_eq!(
            kinds(&half),
            [
                (TetherKind::Image, "deployment/api"),
                (TetherKind::Image, "pod/x"),
                (TetherKind::UnackedNode, "n2"),
            ]
        );
        assert_eq!(half.tethers[0].since, "T0", "since: first seen");
        let old = Directive {
            since: "T0".into(),
            ..directive()
        };
        index.apply(
            Source::Leases,
            key(Some("c"), "ack2"),
            Some(Entry::Ack(Box::new(ack::lease("n2", &old)))),
        );
        assert_eq!(
            index.report("T1").count,
            3,
            "an acknowledgement of an earlier pivot is none"
        );
        index.apply(
            Source::Leases,
            key(Some("c"), "ack2"),
            Some(Entry::Ack(Box::new(ack::lease("n2", &directive())))),
        );
        let done = index.report("T2");
        assert_eq!(
            kinds(&done),
            [(TetherKind::Image, "pod/x")],
            "harbor.openova.io has no mirror: its image stays a tether"
        );
        index.apply(
            Source::Leases,
            key(Some("c"), "record"),
            Some(Entry::Directive(Some(Directive {
                direction: Direction::Rollback,
                since: "T3".into(),
            }))),
        );
        let rolled = index.report("T3");
        assert_eq!(rolled.count, 4);
        assert_eq!(rolled.tethers[0].since, "T3", "cleared, then seen anew");
    }

    #[test]
    fn a_helm_release_is_tethered_by_its_sources_url_and_cleared_with_it() {
        let mut index = listed();
        let repo = reference("spec.url", "oci://ghcr.io/charts", "ghcr.io");
        index.apply(
            Source::HelmRepositories,
            key(Some("flux-system"), "charts"),
            Some(Entry::Upstream(repo)),
        );
        let release = |kind: &str| {
            Some(Entry::Release(ReleaseRecord {
                chart: Some(ChartSource {
                    field: "spec.chart.spec.sourceRef".into(),
                    kind: kind.into(),
                    key: key(Some("flux-system"), "charts"),
                }),
                vcluster: None,
            }))
        };
        index.apply(
            Source::HelmReleases,
            key(Some("apps"), "web"),
            release("HelmRepository"),
        );
        index.apply(
            Source::HelmReleases,
            key(Some("apps"), "other"),
            release("GitRepository"),
        );
        let report = index.report("T0");
        assert_eq!(
            kinds(&report),
            [
                (TetherKind::HelmRepository, "charts"),
                (TetherKind::HelmRelease, "web")
            ]
        );
        assert_eq!(
            report.tethers[1].value,
            "HelmRepository/flux-system/charts (oci://ghcr.io/charts)"
        );
        assert_eq!(report.gating().count(), 2);
        index.delete(
            Source::HelmRepositories,
            &key(Some("flux-system"), "charts"),
        );
        assert_eq!(index.report("T1").count, 0);
    }

    #[test]
    fn only_a_changed_record_changes_the_index() {
        let mut index = listed();
        let node = || Some(Entry::Node);
        assert!(index.apply(Source::Nodes, key(None, "n1"), node()));
        assert!(
            !index.apply(Source::Nodes, key(None, "n1"), node()),
            "a status update"
        );
        assert!(
            !index.apply(Source::Leases, key(Some("c"), "runner"), None),
            "a renewal"
        );
        assert!(index.delete(Source::Nodes, &key(None, "n1")));
        assert!(!index.delete(Source::Nodes, &key(None, "n1")));
    }

    #[test]
    fn non_gating_kinds_are_reported_and_a_relist_replaces_what_was_there() {
        let mut index = listed();
        index.apply(
            Source::Providers,
            key(None, "aws"),
            Some(Entry::Upstream(reference(
                "spec.package",
                "xpkg.upbound.io/x:v1",
                "xpkg.upbound.io",
            ))),
        );
        index.apply(
            Source::Pods,
            key(Some("a"), "p"),
            Some(Entry::Pod(PodRecord {
                owner: "deployment/console".into(),
                node: None,
                images: Vec::new(),
                urls: vec![reference(
                    "spec.template.spec.containers[c].env[REPO]",
                    "https://github.com/x",
                    "github.com",
                )],
            })),
        );
        let report = index.report("T0");
        assert_eq!(report.count, 2);
        assert_eq!(report.gating().count(), 0);
        index.reset(Source::Pods, vec![(key(Some("a"), "q"), None)]);
        assert_eq!(
            kinds(&index.report("T1")),
            [(TetherKind::CrossplaneProvider, "aws")]
        );
        index.set_state(Source::Providers, SourceState::NotInstalled);
        assert_eq!(
            index.report("T1").count,
            0,
            "a kind removed takes its records along"
        );
    }
}
