//! The tether report at scale, printed rather than asserted (issue 26, docs/critical-path.md
//! "Tether report"): 5,000 pods and 500 Flux objects in the cluster, then
//! - memory: the bench process's VmRSS just before the report starts and once it has
//!   synced and settled (its difference is what the report adds: its reflectors' caches,
//!   its index and the report), and VmHWM over the initial lists (the peak). The API
//!   server runs in a process of its own (`catalyst-cutover sandbox`), so none of its
//!   memory is counted. Goal: under 64 MiB added.
//! - latency: from a change (a tether planted: a GitRepository on github.com, a pod from
//!   ghcr.io; a tether fixed: the URL pointed at the local Gitea, the pod deleted) to the
//!   report that shows it, as its watch delivers it. Goal: under 1 s.
//!
//! `cargo bench --bench tethers` (`--profile dev` for a debug build). With
//! `CUTOVER_TEST_KUBECONFIG` it runs against that cluster instead, in namespaces of its own
//! that it deletes at the end. Either way the real Flux definitions are installed first
//! when missing (`../shared/crds`, the set `CUTOVER_TEST_CRDS` names, as the tests do).

// The tests' installer of the real definitions; the bench uses only part of it.
#[allow(dead_code)]
#[path = "../tests/common/crds.rs"]
mod crds;

use catalyst_cutover::tethers::{self, TetherConfig, TetherKind, TetherReport, Tethers};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const PODS: usize = 5_000;
const NAMESPACES: usize = 10;
/// Of every this many pods, one runs an upstream image (a tether) and one carries an
/// upstream URL in its env.
const TETHERED_EVERY: usize = 10;
const FLUX_OBJECTS: usize = 500;
const ROUNDS: usize = 20;
const PARALLEL: usize = 32;
/// Hang guard for one wait, not a speed goal.
const GUARD: Duration = Duration::from_secs(60);
const UPSTREAM: [&str; 5] = [
    "github.com",
    "ghcr.io",
    "harbor.openova.io",
    "docker.io",
    "xpkg.upbound.io",
];

/// The cluster: a sandbox in a child process, or the one of `CUTOVER_TEST_KUBECONFIG`.
struct Cluster {
    client: kube::Client,
    sandbox: Option<Child>,
    prefix: String,
}

async fn cluster() -> Cluster {
    if let Ok(path) = std::env::var("CUTOVER_TEST_KUBECONFIG") {
        let client = client_of(Path::new(&path)).await;
        let prefix = format!("tether-bench-{}", std::process::id());
        return Cluster {
            client,
            sandbox: None,
            prefix,
        };
    }
    let out = std::env::temp_dir().join(format!("tether-bench-{}.kubeconfig", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let child = Command::new(env!("CARGO_BIN_EXE_catalyst-cutover"))
        .args([
            "sandbox",
            "--no-simulator",
            "--nodes",
            "0",
            "--kubeconfig-out",
        ])
        .arg(&out)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("catalyst-cutover sandbox starts");
    let started = Instant::now();
    while !out.exists() {
        assert!(started.elapsed() < GUARD, "the sandbox wrote no kubeconfig");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Cluster {
        client: client_of(&out).await,
        sandbox: Some(child),
        prefix: "tether-bench".to_owned(),
    }
}

async fn client_of(path: &Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("client")
}

fn flux(kind: &str) -> ApiResource {
    let (group, version, plural) = match kind {
        "GitRepository" => ("source.toolkit.fluxcd.io", "v1", "gitrepositories"),
        "HelmRepository" => ("source.toolkit.fluxcd.io", "v1", "helmrepositories"),
        "OCIRepository" => ("source.toolkit.fluxcd.io", "v1", "ocirepositories"),
        _ => ("helm.toolkit.fluxcd.io", "v2", "helmreleases"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn flux_object(kind: &str, name: &str, upstream: bool) -> DynamicObject {
    let ar = flux(kind);
    let host = if upstream {
        "github.com"
    } else {
        "gitea.catalyst.local"
    };
    let spec = match kind {
        "GitRepository" => {
            json!({"url": format!("https://{host}/openova/{name}"), "interval": "10m",
                                  "ref": {"branch": "main"}})
        }
        "HelmRepository" => {
            json!({"url": format!("https://{}/charts", if upstream { "ghcr.io" } else { "harbor.catalyst.local" }),
                                   "interval": "10m"})
        }
        "OCIRepository" => {
            json!({"url": format!("oci://{}/openova/{name}", if upstream { "ghcr.io" } else { "harbor.catalyst.local" }),
                                  "interval": "10m", "ref": {"tag": "latest"}})
        }
        _ => json!({"interval": "10m", "chart": {"spec": {"chart": name, "sourceRef":
                    {"kind": "HelmRepository", "name": if upstream { "h0" } else { "h1" }}}}}),
    };
    let mut object = DynamicObject::new(name, &ar).data(json!({ "spec": spec }));
    object.types = Some(kube::core::TypeMeta {
        api_version: ar.api_version.clone(),
        kind: kind.to_owned(),
    });
    object
}

fn pod(name: &str, n: usize) -> Pod {
    let image = if n.is_multiple_of(TETHERED_EVERY) {
        format!("ghcr.io/openova/app-{}:1.0", n % 50)
    } else {
        format!("harbor.catalyst.local/library/app-{}:1.0", n % 50)
    };
    let repo = if n % TETHERED_EVERY == 1 {
        "https://github.com/openova/config"
    } else {
        "https://gitea.catalyst.local/openova/config"
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": format!("app-{}", n % 50)},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": format!("app-{}-7d9f", n % 50), "uid": format!("00000000-0000-0000-0000-{:012}", n % 50),
                        "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": image,
                                 "env": [{"name": "REPO", "value": repo}]}]}
    }))
    .expect("pod")
}

fn namespace(cluster: &Cluster, n: usize) -> String {
    format!("{}-{n}", cluster.prefix)
}

async fn populate(cluster: &Cluster) {
    let client = &cluster.client;
    // The real Flux definitions (the tests' set, `CUTOVER_TEST_CRDS`), unless installed.
    crds::install_definitions(client).await;
    for n in 0..NAMESPACES {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": namespace(cluster, n)}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace");
    }
    let started = Instant::now();
    futures::stream::iter(0..PODS)
        .map(|n| {
            let api: Api<Pod> =
                Api::namespaced(client.clone(), &namespace(cluster, n % NAMESPACES));
            async move {
                api.create(&PostParams::default(), &pod(&format!("p{n}"), n))
                    .await
                    .expect("pod");
            }
        })
        .buffer_unordered(PARALLEL)
        .collect::<()>()
        .await;
    let kinds = [
        ("HelmRepository", 150),
        ("GitRepository", 150),
        ("OCIRepository", 100),
        ("HelmRelease", 100),
    ];
    let objects: Vec<(&str, usize)> = kinds
        .iter()
        .flat_map(|(kind, count)| (0..*count).map(move |n| (*kind, n)))
        .collect();
    assert_eq!(objects.len(), FLUX_OBJECTS);
    futures::stream::iter(objects)
        .map(|(kind, n)| {
            let ns = namespace(cluster, n % NAMESPACES);
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &flux(kind));
            let name = if kind == "HelmRepository" && n < 2 {
                format!("h{n}")
            } else {
                format!("{}-{n}", kind.to_lowercase())
            };
            async move {
                api.create(
                    &PostParams::default(),
                    &flux_object(kind, &name, n % 2 == 0),
                )
                .await
                .unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
            }
        })
        .buffer_unordered(PARALLEL)
        .collect::<()>()
        .await;
    println!(
        "   cluster: {PODS} pods and {FLUX_OBJECTS} Flux objects in {NAMESPACES} namespaces, created in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// `VmRSS` or `VmHWM` of this process, in bytes.
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Waits for the first report that satisfies `done`; the time it took from `since`.
async fn until(
    tethers: &Tethers,
    since: Instant,
    done: impl Fn(&TetherReport) -> bool,
) -> Duration {
    let mut rx = tethers.subscribe();
    tokio::time::timeout(GUARD, async {
        loop {
            if done(&rx.borrow_and_update()) {
                return since.elapsed();
            }
            rx.changed().await.expect("the report runs");
        }
    })
    .await
    .expect("the report shows the change")
}

fn has(report: &TetherReport, kind: TetherKind, name: &str) -> bool {
    report
        .tethers
        .iter()
        .any(|t| t.kind == kind && t.name == name)
}

fn summary(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "   {label:<34} median {:>7.1} ms   p95 {:>7.1} ms   max {:>7.1} ms   (goal < 1000 ms: {})",
        ms(at(0.5)),
        ms(at(0.95)),
        ms(at(1.0)),
        if at(1.0) < Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        }
    );
}

async fn latencies(cluster: &Cluster, tethers: &Tethers) {
    let ns = namespace(cluster, 0);
    let git: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), &ns, &flux("GitRepository"));
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    let (mut planted, mut fixed, mut pod_planted, mut pod_fixed) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let name = format!("planted-{round}");
        let at = Instant::now();
        git.create(
            &PostParams::default(),
            &flux_object("GitRepository", &name, true),
        )
        .await
        .expect("plant");
        planted.push(until(tethers, at, |r| has(r, TetherKind::GitRepository, &name)).await);
        let at = Instant::now();
        let local =
            json!({"spec": {"url": format!("https://gitea.catalyst.local/openova/{name}")}});
        git.patch(&name, &PatchParams::default(), &Patch::Merge(&local))
            .await
            .expect("fix");
        fixed.push(until(tethers, at, |r| !has(r, TetherKind::GitRepository, &name)).await);

        let owner = format!("bench-{round}-5c8d");
        let mut p = pod(&format!("bench-{round}"), 0);
        if let Some(refs) = p.metadata.owner_references.as_mut() {
            refs[0].name = owner.clone();
        }
        let at = Instant::now();
        pods.create(&PostParams::default(), &p).await.expect("pod");
        pod_planted.push(
            until(tethers, at, |r| {
                r.tethers.iter().any(|t| {
                    t.kind == TetherKind::Image && t.name.contains(&owner[..owner.len() - 5])
                })
            })
            .await,
        );
        let at = Instant::now();
        pods.delete(
            &format!("bench-{round}"),
            &DeleteParams::default().grace_period(0),
        )
        .await
        .expect("delete");
        pod_fixed.push(
            until(tethers, at, |r| {
                !r.tethers.iter().any(|t| {
                    t.kind == TetherKind::Image && t.name.contains(&owner[..owner.len() - 5])
                })
            })
            .await,
        );
    }
    println!("-- latency, from the API call to the report ({ROUNDS} rounds)");
    summary("GitRepository planted (created)", planted);
    summary("GitRepository fixed (URL patched)", fixed);
    summary("pod from ghcr.io planted (created)", pod_planted);
    summary("pod from ghcr.io fixed (deleted)", pod_fixed);
}

/// On a real cluster: the objects first (a plane without a kubelet or a namespace
/// controller would keep them, and the next run would list them too), then the namespaces.
async fn cleanup(cluster: Cluster) {
    if cluster.sandbox.is_none() {
        let client = &cluster.client;
        for n in 0..NAMESPACES {
            let ns = namespace(&cluster, n);
            let now = DeleteParams::default().grace_period(0);
            let _ = Api::<Pod>::namespaced(client.clone(), &ns)
                .delete_collection(&now, &Default::default())
                .await;
            for kind in [
                "GitRepository",
                "HelmRepository",
                "OCIRepository",
                "HelmRelease",
            ] {
                let _ = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &flux(kind))
                    .delete_collection(&now, &Default::default())
                    .await;
            }
            let _ = Api::<Namespace>::all(client.clone())
                .delete(&ns, &DeleteParams::default())
                .await;
        }
    }
    drop(cluster);
}

#[tokio::main]
async fn main() {
    let cluster = cluster().await;
    println!(
        "== tether report: {} ==",
        if cluster.sandbox.is_some() {
            "sandbox (API server in a child process)"
        } else {
            "CUTOVER_TEST_KUBECONFIG"
        }
    );
    populate(&cluster).await;
    // Everything the bench itself holds is allocated; the API server's memory is another
    // process's.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = proc_status("VmRSS");
    // Resets VmHWM to the current RSS, so the peak below is the report's start-up.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let mut config = TetherConfig::new(&namespace(&cluster, 0), "tether-bench-record");
    config.upstream_hosts = UPSTREAM.iter().map(|h| (*h).to_owned()).collect();
    let started = Instant::now();
    let (tethers, driver) = tethers::start(cluster.client.clone(), config);
    let driver = tokio::spawn(driver);
    until(&tethers, started, |r| r.synced).await;
    let synced = started.elapsed();
    let report: Arc<TetherReport> = tethers.report();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = proc_status("VmRSS");
    let peak = proc_status("VmHWM");
    println!("-- memory (VmRSS of the bench process; the API server is not in it)");
    println!(
        "   report synced in {:.2} s: {} tethers ({} gating), unseen sources: {} ({} more not installed)",
        synced.as_secs_f64(),
        report.count,
        report.gating().count(),
        report.blind_spots().count(),
        report.unseen.len() - report.blind_spots().count()
    );
    for u in &report.unseen {
        println!("     unseen: {}: {}", u.source, u.reason);
    }
    let added = after.saturating_sub(before);
    println!(
        "   VmRSS before {}, after sync {} -> added {} (goal < 64 MiB: {}); VmHWM during the first lists {} (+{})",
        mib(before),
        mib(after),
        mib(added),
        if added < 64 * 1024 * 1024 {
            "met"
        } else {
            "MISSED"
        },
        mib(peak),
        mib(peak.saturating_sub(before)),
    );
    latencies(&cluster, &tethers).await;
    driver.abort();
    cleanup(cluster).await;
}
