//! The small record the index keeps of each object: only the references to upstream hosts
//! (values cut to [`MAX_VALUE`] characters, at most [`MAX_REFS`] per object), never the
//! object. Pure: a watched object in, its record out.

use super::hosts::{UpstreamHosts, image_registry};
use crate::contract::{LABEL_COMPONENT, pivot};
use crate::pivot::Directive;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DynamicObject;
use serde_json::Value;

/// The longest value a record keeps, in characters; longer ones are cut, marked `…`.
pub const MAX_VALUE: usize = 512;
/// The most references one object's record keeps.
pub const MAX_REFS: usize = 64;

/// The pod label the Deployment controller puts on a ReplicaSet's pods, and ends the
/// ReplicaSet's name with.
const LABEL_POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// An object of a source, by namespace (none for cluster-scoped ones) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The namespace; `None` for a cluster-scoped object.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// The key of an object with `meta`; `None` when it has no name.
    pub fn of(meta: &ObjectMeta) -> Option<ObjectKey> {
        Some(ObjectKey {
            namespace: meta.namespace.clone(),
            name: meta.name.clone()?,
        })
    }
}

/// One reference to an upstream host within an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The field path.
    pub field: String,
    /// The value (cut to [`MAX_VALUE`]).
    pub value: String,
    /// The upstream host it names.
    pub host: String,
}

impl Reference {
    fn new(field: String, value: &str, host: &str) -> Self {
        Reference {
            field,
            value: bounded(value),
            host: host.to_owned(),
        }
    }
}

/// What one container-bearing pod holds: its owning controller, its node, its upstream
/// images and the upstream URLs of its containers' env values, args and commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    /// The controller reported in its place, as `kind/name` (`deployment/api`), or
    /// `pod/<name>` for a pod no controller owns.
    pub owner: String,
    /// The node it is bound to, if any: its images are mirrored only if that node
    /// acknowledged the pivot.
    pub node: Option<String>,
    /// Images from upstream hosts.
    pub images: Vec<Reference>,
    /// URLs naming upstream hosts.
    pub urls: Vec<Reference>,
}

/// Where a HelmRelease's chart comes from: a source of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartSource {
    /// The field naming it (`spec.chart.spec.sourceRef` or `spec.chartRef`).
    pub field: String,
    /// The source's kind as Flux writes it (`HelmRepository`, `OCIRepository`, …).
    pub kind: String,
    /// The source object.
    pub key: ObjectKey,
}

/// What a HelmRelease holds: where its chart comes from and, for a vcluster chart, the
/// registry its images come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRecord {
    /// The chart's source, if it names one.
    pub chart: Option<ChartSource>,
    /// For a vcluster: its `defaultImageRegistry`, when it (or the default in its place)
    /// is an upstream host.
    pub vcluster: Option<Reference>,
}

/// What the index keeps of one object.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// The record Lease: the pivot directive it holds, if any.
    Directive(Option<Directive>),
    /// An acknowledgement Lease, cut to its name and annotations.
    Ack(Box<Lease>),
    /// A node.
    Node,
    /// A pod with upstream references.
    Pod(PodRecord),
    /// A Flux source or Crossplane Provider whose URL or package is upstream.
    Upstream(Reference),
    /// A HelmRelease.
    Release(ReleaseRecord),
}

/// `value` cut to [`MAX_VALUE`] characters.
pub fn bounded(value: &str) -> String {
    match value.char_indices().nth(MAX_VALUE) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_owned(),
    }
}

/// The entry of a Lease of the service's namespace: the record Lease's directive, an
/// acknowledgement, or nothing.
pub fn lease(lease: &Lease, record_lease: &str) -> Option<Entry> {
    let meta = &lease.metadata;
    if meta.name.as_deref() == Some(record_lease) {
        return Some(Entry::Directive(Directive::of_lease(Some(lease))));
    }
    let is_ack = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_COMPONENT))
        .is_some_and(|c| c == pivot::COMPONENT_ACK);
    is_ack.then(|| {
        let keep = [
            pivot::ANNOTATION_ACK_NODE,
            pivot::ANNOTATION_ACK_VALUE,
            pivot::ANNOTATION_ACK_SINCE,
        ];
        Entry::Ack(Box::new(Lease {
            metadata: ObjectMeta {
                name: meta.name.clone(),
                annotations: meta.annotations.as_ref().map(|a| {
                    a.iter()
                        .filter(|(k, _)| keep.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), bounded(v)))
                        .collect()
                }),
                ..ObjectMeta::default()
            },
            spec: None,
        }))
    })
}

/// The controller a pod is reported under: a ReplicaSet's pod under its Deployment (the
/// ReplicaSet's name is the Deployment's and `-<pod-template-hash>`: no ReplicaSet is
/// looked up), any other controller as itself, a pod without one as itself.
pub fn owner(meta: &ObjectMeta) -> String {
    let controller = meta
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|r| r.controller == Some(true));
    let Some(controller) = controller else {
        return format!("pod/{}", meta.name.as_deref().unwrap_or_default());
    };
    let hash = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_POD_TEMPLATE_HASH));
    if controller.kind == "ReplicaSet"
        && let Some(deployment) = hash.and_then(|h| {
            controller
                .name
                .strip_suffix(h.as_str())
                .and_then(|n| n.strip_suffix('-'))
        })
        && !deployment.is_empty()
    {
        return format!("deployment/{deployment}");
    }
    format!(
        "{}/{}",
        controller.kind.to_ascii_lowercase(),
        controller.name
    )
}

/// The record of a pod, or `None` when it holds no upstream reference.
pub fn pod(pod: &Pod, hosts: &UpstreamHosts) -> Option<Entry> {
    let spec = pod.spec.as_ref()?;
    let owner = owner(&pod.metadata);
    let prefix = if owner.starts_with("pod/") {
        "spec"
    } else {
        "spec.template.spec"
    };
    let mut images = Vec::new();
    let mut urls = Vec::new();
    let lists = [
        ("initContainers", spec.init_containers.as_deref()),
        ("containers", Some(spec.containers.as_slice())),
    ];
    for (list, containers) in lists {
        for c in containers.unwrap_or_default() {
            let at = format!("{prefix}.{list}[{}]", c.name);
            if let Some(image) = &c.image
                && let Some(host) = hosts.of_image(image)
                && images.len() < MAX_REFS
            {
                images.push(Reference::new(format!("{at}.image"), image, host));
            }
            container_urls(c, &at, hosts, &mut urls);
        }
    }
    if images.is_empty() && urls.is_empty() {
        return None;
    }
    Some(Entry::Pod(PodRecord {
        owner,
        node: spec.node_name.clone(),
        images,
        urls,
    }))
}

fn container_urls(c: &Container, at: &str, hosts: &UpstreamHosts, urls: &mut Vec<Reference>) {
    let env = c.env.as_deref().unwrap_or_default().iter().filter_map(|e| {
        e.value
            .as_deref()
            .map(|v| (format!("{at}.env[{}]", e.name), v))
    });
    let args = c
        .args
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("{at}.args[{i}]"), a.as_str()));
    let command = c
        .command
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("{at}.command[{i}]"), a.as_str()));
    for (field, value) in env.chain(args).chain(command) {
        if urls.len() >= MAX_REFS {
            return;
        }
        if let Some(host) = hosts.of_text(value) {
            urls.push(Reference::new(field, value, host));
        }
    }
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The record of a Flux source (`spec.url`), or `None` when its URL is not upstream.
pub fn flux_source(obj: &DynamicObject, hosts: &UpstreamHosts) -> Option<Entry> {
    let url = text(&obj.data, "/spec/url")?;
    let host = hosts.of_text(url)?;
    Some(Entry::Upstream(Reference::new(
        "spec.url".to_owned(),
        url,
        host,
    )))
}

/// The record of a Crossplane Provider (`spec.package`, an image reference), or `None`
/// when its package is not upstream.
pub fn provider(obj: &DynamicObject, hosts: &UpstreamHosts) -> Option<Entry> {
    let package = text(&obj.data, "/spec/package")?;
    let host = hosts.of_image(package)?;
    Some(Entry::Upstream(Reference::new(
        "spec.package".to_owned(),
        package,
        host,
    )))
}

/// The record of a HelmRelease: its chart's source and, for the vcluster chart, its
/// `defaultImageRegistry` (what step 10 pivots) when that, or `vcluster_registry` in
/// its absence, is upstream.
pub fn helm_release(
    obj: &DynamicObject,
    hosts: &UpstreamHosts,
    vcluster_registry: Option<&str>,
) -> Option<Entry> {
    let namespace = obj.metadata.namespace.clone();
    let source = |field: &str, pointer: &str| {
        let kind = text(&obj.data, &format!("{pointer}/kind"))?;
        let name = text(&obj.data, &format!("{pointer}/name"))?;
        let namespace = text(&obj.data, &format!("{pointer}/namespace"))
            .map(str::to_owned)
            .or_else(|| namespace.clone());
        Some(ChartSource {
            field: field.to_owned(),
            kind: bounded(kind),
            key: ObjectKey {
                namespace,
                name: bounded(name),
            },
        })
    };
    let chart = source("spec.chart.spec.sourceRef", "/spec/chart/spec/sourceRef")
        .or_else(|| source("spec.chartRef", "/spec/chartRef"));
    let vcluster = (text(&obj.data, "/spec/chart/spec/chart") == Some("vcluster"))
        .then(|| {
            let field = "spec.values.controlPlane.advanced.defaultImageRegistry".to_owned();
            match text(
                &obj.data,
                "/spec/values/controlPlane/advanced/defaultImageRegistry",
            ) {
                Some(registry) => {
                    let host = hosts.matching(&image_registry(&format!("{registry}/x"))?)?;
                    Some(Reference::new(field, registry, host))
                }
                None => {
                    let registry = vcluster_registry?;
                    let host = hosts.matching(registry)?;
                    Some(Reference::new(
                        field,
                        &format!("(unset: vcluster's images come from {registry})"),
                        host,
                    ))
                }
            }
        })
        .flatten();
    (chart.is_some() || vcluster.is_some())
        .then_some(Entry::Release(ReleaseRecord { chart, vcluster }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVar, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn hosts() -> UpstreamHosts {
        UpstreamHosts::new(["github.com", "ghcr.io", "docker.io", "xpkg.upbound.io"])
    }

    fn controlled(kind: &str, name: &str, hash: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some("p-1".into()),
            namespace: Some("apps".into()),
            labels: hash.map(|h| BTreeMap::from([(LABEL_POD_TEMPLATE_HASH.into(), h.into())])),
            owner_references: Some(vec![OwnerReference {
                kind: kind.into(),
                name: name.into(),
                controller: Some(true),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn pods_are_reported_under_their_controller() {
        assert_eq!(
            owner(&controlled("ReplicaSet", "api-7d9f8", Some("7d9f8"))),
            "deployment/api"
        );
        assert_eq!(
            owner(&controlled("ReplicaSet", "api-7d9f8", Some("other"))),
            "replicaset/api-7d9f8"
        );
        assert_eq!(
            owner(&controlled("ReplicaSet", "-7d9f8", Some("7d9f8"))),
            "replicaset/-7d9f8"
        );
        assert_eq!(
            owner(&controlled("StatefulSet", "db", None)),
            "statefulset/db"
        );
        let mut bare = controlled("Job", "x", None);
        bare.owner_references = None;
        assert_eq!(owner(&bare), "pod/p-1");
    }

    #[test]
    fn a_pod_keeps_only_its_upstream_images_and_urls() {
        let container = |name: &str, image: &str| Container {
            name: name.into(),
            image: Some(image.into()),
            ..Container::default()
        };
        let mut api = container("api", "ghcr.io/openova-io/api:1");
        api.env = Some(vec![
            EnvVar {
                name: "REPO".into(),
                value: Some("https://github.com/openova-io/openova.git".into()),
                ..EnvVar::default()
            },
            EnvVar {
                name: "LOCAL".into(),
                value: Some("https://gitea.local/x".into()),
                ..EnvVar::default()
            },
            EnvVar {
                name: "FROM_SECRET".into(),
                value: None,
                ..EnvVar::default()
            },
        ]);
        api.args = Some(vec![
            "--verbose".into(),
            format!("--pull=oci://ghcr.io/{}", "x".repeat(5000)),
        ]);
        let pod = Pod {
            metadata: controlled("ReplicaSet", "api-h1", Some("h1")),
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                init_containers: Some(vec![container("init", "harbor.local/docker-io/busybox")]),
                containers: vec![api, container("side", "nginx")],
                ..PodSpec::default()
            }),
            status: None,
        };
        let Some(Entry::Pod(record)) = super::pod(&pod, &hosts()) else {
            panic!("a pod with upstream references has a record");
        };
        assert_eq!(record.owner, "deployment/api");
        assert_eq!(record.node.as_deref(), Some("n1"));
        let fields: Vec<&str> = record.images.iter().map(|r| r.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.template.spec.containers[api].image",
                "spec.template.spec.containers[side].image"
            ]
        );
        assert_eq!(record.images[1].host, "docker.io");
        let urls: Vec<(&str, &str)> = record
            .urls
            .iter()
            .map(|r| (r.field.as_str(), r.host.as_str()))
            .collect();
        assert_eq!(
            urls,
            [
                ("spec.template.spec.containers[api].env[REPO]", "github.com"),
                ("spec.template.spec.containers[api].args[1]", "ghcr.io"),
            ]
        );
        assert!(
            record.urls[1].value.chars().count() <= MAX_VALUE + 1,
            "huge values are cut"
        );

        let mut local = pod.clone();
        local.spec = Some(PodSpec {
            containers: vec![container("c", "harbor.local/x/y")],
            ..PodSpec::default()
        });
        assert_eq!(
            super::pod(&local, &hosts()),
            None,
            "nothing upstream, nothing kept"
        );
        let mut empty = pod;
        empty.spec = None;
        assert_eq!(super::pod(&empty, &hosts()), None);
    }

    #[test]
    fn a_pod_with_countless_references_keeps_a_bounded_record() {
        let containers = (0..500)
            .map(|i| Container {
                name: format!("c{i}"),
                image: Some("ghcr.io/x/y".into()),
                args: Some(vec!["https://github.com/x".into(); 10]),
                ..Container::default()
            })
            .collect();
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("big".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers,
                ..PodSpec::default()
            }),
            status: None,
        };
        let Some(Entry::Pod(record)) = super::pod(&pod, &hosts()) else {
            panic!("a record");
        };
        assert_eq!(
            (record.images.len(), record.urls.len()),
            (MAX_REFS, MAX_REFS)
        );
        assert_eq!(record.images[0].field, "spec.containers[c0].image");
    }

    fn dynamic(data: serde_json::Value) -> DynamicObject {
        let mut obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "x/v1", "kind": "X",
            "metadata": {"name": "o", "namespace": "flux-system"}
        }))
        .unwrap();
        obj.data = data;
        obj
    }

    #[test]
    fn flux_sources_and_providers_keep_an_upstream_url_or_package() {
        let h = hosts();
        let git = dynamic(json!({"spec": {"url": "ssh://git@github.com/openova-io/openova"}}));
        assert!(
            matches!(flux_source(&git, &h), Some(Entry::Upstream(r)) if r.host == "github.com" && r.field == "spec.url")
        );
        for odd in [
            json!({}),
            json!({"spec": null}),
            json!({"spec": {"url": 7}}),
            json!({"spec": {"url": "  "}}),
            json!({"spec": {"url": "https://gitea.local/x"}}),
        ] {
            assert_eq!(flux_source(&dynamic(odd.clone()), &h), None, "{odd}");
        }
        let p = dynamic(
            json!({"spec": {"package": "xpkg.upbound.io/crossplane-contrib/provider-aws:v1"}}),
        );
        assert!(
            matches!(provider(&p, &h), Some(Entry::Upstream(r)) if r.host == "xpkg.upbound.io")
        );
        let local =
            dynamic(json!({"spec": {"package": "harbor.local/xpkg-upbound-io/provider-aws:v1"}}));
        assert_eq!(provider(&local, &h), None);
    }

    #[test]
    fn a_helm_release_names_its_chart_source_and_a_vcluster_its_registry() {
        let h = hosts();
        let hr = dynamic(
            json!({"spec": {"chart": {"spec": {"chart": "podinfo", "sourceRef": {"kind": "HelmRepository", "name": "podinfo"}}}}}),
        );
        let Some(Entry::Release(r)) = helm_release(&hr, &h, Some("ghcr.io")) else {
            panic!()
        };
        assert_eq!(
            r.chart,
            Some(ChartSource {
                field: "spec.chart.spec.sourceRef".into(),
                kind: "HelmRepository".into(),
                key: ObjectKey {
                    namespace: Some("flux-system".into()),
                    name: "podinfo".into()
                }
            })
        );
        assert_eq!(r.vcluster, None);
        let by_ref = dynamic(
            json!({"spec": {"chartRef": {"kind": "OCIRepository", "name": "c", "namespace": "other"}}}),
        );
        let Some(Entry::Release(r)) = helm_release(&by_ref, &h, None) else {
            panic!()
        };
        assert_eq!(
            r.chart.map(|c| (c.field, c.key.namespace)),
            Some(("spec.chartRef".into(), Some("other".into())))
        );

        let vc = |values: serde_json::Value| {
            dynamic(
                json!({"spec": {"chart": {"spec": {"chart": "vcluster", "sourceRef": {"kind": "HelmRepository", "name": "loft"}}}, "values": values}}),
            )
        };
        let unset = helm_release(&vc(json!({})), &h, Some("ghcr.io"));
        assert!(
            matches!(unset, Some(Entry::Release(ReleaseRecord { vcluster: Some(r), .. })) if r.host == "ghcr.io" && r.value.starts_with("(unset"))
        );
        let upstream = helm_release(
            &vc(json!({"controlPlane": {"advanced": {"defaultImageRegistry": "ghcr.io"}}})),
            &h,
            Some("ghcr.io"),
        );
        assert!(
            matches!(upstream, Some(Entry::Release(ReleaseRecord { vcluster: Some(r), .. })) if r.value == "ghcr.io")
        );
        let pivoted = helm_release(
            &vc(
                json!({"controlPlane": {"advanced": {"defaultImageRegistry": "harbor.local/ghcr-io"}}}),
            ),
            &h,
            Some("ghcr.io"),
        );
        assert!(matches!(
            pivoted,
            Some(Entry::Release(ReleaseRecord { vcluster: None, .. }))
        ));
        assert_eq!(
            helm_release(&dynamic(json!({"spec": "odd"})), &h, None),
            None
        );
    }
}
