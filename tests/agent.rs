//! The registry-pivot agent (`catalyst-cutover agent`) as the DaemonSet runs it: the binary,
//! with the chart's own Role for its ServiceAccount (a TokenRequest token, RBAC on), on a
//! node directory of its own. And its files as a real containerd reads them: Debian's
//! containerd pulling through them from Debian's docker-registry as the local Harbor.

mod common;

use catalyst_cutover::contract::pivot;
use catalyst_cutover::pivot::{Direction, Directive, NodePaths, PivotSettings, ack, files};
use common::{TestCluster, eventually};
use k8s_openapi::api::authorization::v1::ResourceAttributes;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::api::{Api, ListParams};
use kube_sandbox::access_control::TokenTable;
use kube_sandbox::api::ApiServerConfig;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The service's record Lease, as the chart names it.
const RECORD: &str = "catalyst-cutover-record";
const NODE: &str = "node-a";

/// A registry's API root on loopback that answers 401 (asking for credentials, as Harbor
/// does) and counts the requests.
async fn registry_standin() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut conn, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (host, hits)
}

/// The agent's settings for a plain-HTTP registry at `registry` (host:port), for docker.io
/// and ghcr.io.
fn loopback_settings(registry: &str) -> PivotSettings {
    PivotSettings {
        registry: registry.parse().expect("host"),
        insecure: true,
        ca_file: None,
        upstreams: vec![
            "docker.io".parse().expect("host"),
            "ghcr.io".parse().expect("host"),
        ],
        pull: None,
    }
}

/// The chart's Role of the agent (templates/registry-pivot-rbac.yaml), bound to the
/// ServiceAccount `registry-pivot` of the test's namespace; a kubeconfig with its token.
async fn agent_kubeconfig(cluster: &TestCluster, dir: &Path) -> PathBuf {
    let (admin, ns) = (cluster.client(), cluster.namespace());
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("chart/templates/registry-pivot-rbac.yaml"),
    )
    .expect("the chart's agent RBAC");
    let role: Role = text
        .split("\n---\n")
        .filter_map(|doc| serde_yaml::from_str::<serde_yaml::Value>(doc).ok())
        .find(|doc| doc["kind"] == "Role")
        .map(|doc| serde_yaml::from_value(doc).expect("a Role"))
        .expect("the chart has the agent's Role");
    // The Role's rules, as a ClusterRole bound in the namespace (the same rights there).
    let name = format!("cutover-test-agent-{ns}");
    let cluster_role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": name},
        "rules": role.rules,
    }))
    .expect("ClusterRole");
    common::create_service_account(&admin, ns, "registry-pivot").await;
    let probe = ResourceAttributes {
        verb: Some("create".to_owned()),
        group: Some("coordination.k8s.io".to_owned()),
        resource: Some("leases".to_owned()),
        namespace: Some(ns.to_owned()),
        ..ResourceAttributes::default()
    };
    common::grant_probed(&admin, ns, "registry-pivot", cluster_role, probe).await;
    let token = common::request_token(&admin, ns, "registry-pivot", None)
        .await
        .expect("token");
    let mut kubeconfig = cluster.kubeconfig().clone();
    for named in &mut kubeconfig.auth_infos {
        named.auth_info = Some(kube::config::AuthInfo {
            token: Some(common::token_of(&token).into()),
            ..kube::config::AuthInfo::default()
        });
    }
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&kubeconfig).expect("yaml")).expect("write");
    path
}

/// Sets the record Lease's direction as the service would (`None`: deletes the Lease).
async fn set_record(cluster: &TestCluster, value: Option<(&str, &str)>) {
    common::direct_agents(&cluster.client(), cluster.namespace(), RECORD, value).await;
}

async fn acked(cluster: &TestCluster, directive: &Directive) -> bool {
    let leases: Api<Lease> = Api::namespaced(cluster.client(), cluster.namespace());
    let list = leases
        .list(&ListParams::default().labels(pivot::ACK_SELECTOR))
        .await
        .expect("list acknowledgements");
    ack::acked_nodes(&list.items, directive).contains(NODE)
}

/// Every file under a node directory, with its content.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                let rel = path.strip_prefix(root).expect("under root");
                out.insert(rel.display().to_string(), text);
            }
        }
    }
    out
}

/// A process of the test, stopped on drop; its output in a log file.
struct Running {
    child: std::process::Child,
    log: PathBuf,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many times the log says `text`.
    fn said(&self, text: &str) -> usize {
        self.log().matches(text).count()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_follows_only_the_services_lease_with_the_charts_rights() {
    let cluster = TestCluster::start_with(ApiServerConfig {
        tokens: Some(TokenTable::default()),
        ..ApiServerConfig::default()
    })
    .await;
    let dir = std::env::temp_dir().join(format!("agent-test-{}", uuid::Uuid::new_v4()));
    let node = dir.join("node");
    let paths = NodePaths::under(&node);
    std::fs::create_dir_all(paths.certs_dir.join("ghcr.io")).expect("node dirs");
    std::fs::write(
        &paths.registries_yaml,
        "mirrors:\n  docker.io:\n    endpoint: [\"https://own.example\"]\n",
    )
    .expect("own registries.yaml");
    std::fs::write(
        paths.certs_dir.join("ghcr.io/hosts.toml"),
        "server = \"https://ghcr.io\"\n",
    )
    .expect("own hosts.toml");
    let original = tree(&node);
    let (registry, hits) = registry_standin().await;
    let kubeconfig = agent_kubeconfig(&cluster, &dir).await;
    let log = dir.join("agent.log");
    let out = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_catalyst-cutover"))
        .arg("agent")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--namespace", cluster.namespace(), "--node", NODE])
        .args([
            "--record-lease",
            RECORD,
            "--registry",
            &registry,
            "--insecure",
        ])
        .args(["--upstream", "docker.io", "--upstream", "ghcr.io"])
        .arg("--registries-yaml")
        .arg(&paths.registries_yaml)
        .arg("--certs-dir")
        .arg(&paths.certs_dir)
        .arg("--state-dir")
        .arg(&paths.state_dir)
        .arg("--ready-file")
        .arg(dir.join("ready"))
        .args(["--recheck", "1s"])
        // A ConfigMap's settings must not reach it, even through the environment.
        .env("HARBOR_REGISTRY", "harbor.attacker.example")
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(out.try_clone().expect("log")))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("run catalyst-cutover agent");
    let agent = Running { child, log };

    // No record yet: ready, and nothing moves.
    eventually("the agent is ready", || async {
        dir.join("ready").exists()
    })
    .await;
    // `v1`, an unknown value, no time: no direction; the node keeps its files.
    for (n, (value, since)) in [("v1", "T0"), ("rollback ", "T0"), ("v2", "")]
        .into_iter()
        .enumerate()
    {
        set_record(&cluster, Some((value, since))).await;
        eventually(&format!("no direction from {value:?}"), || async {
            agent.said("no direction") > n
        })
        .await;
        assert_eq!(tree(&node), original, "{value:?} moves nothing");
    }

    let v2 = Directive {
        direction: Direction::V2,
        since: "2026-12-07T08:00:00.1Z".into(),
    };
    set_record(&cluster, Some(("v2", &v2.since))).await;
    eventually("the pivot is acknowledged", || acked(&cluster, &v2)).await;
    let settings = loopback_settings(&registry);
    for u in &settings.upstreams {
        assert_eq!(
            std::fs::read_to_string(paths.certs_dir.join(u.as_str()).join("hosts.toml")).ok(),
            Some(files::hosts_toml(&settings, u)),
            "{u}"
        );
    }
    assert!(!agent.log().contains("attacker"), "{}", agent.log());
    assert!(
        hits.load(Ordering::SeqCst) >= 1,
        "it checked that the registry answers"
    );
    let pivoted = tree(&node);

    // A missing record is no `v1`: the node stays pivoted.
    let before = agent.said("no direction");
    set_record(&cluster, None).await;
    eventually("the deletion is seen", || async {
        agent.said("no direction") > before
    })
    .await;
    assert_eq!(
        tree(&node),
        pivoted,
        "a missing record never rolls a node back"
    );

    let rollback = Directive {
        direction: Direction::Rollback,
        since: "2026-12-07T08:00:00.2Z".into(),
    };
    set_record(&cluster, Some(("rollback", &rollback.since))).await;
    eventually("the rollback is acknowledged", || {
        acked(&cluster, &rollback)
    })
    .await;
    assert_eq!(
        tree(&node),
        original,
        "exactly the node's own files are back"
    );

    // The agent's token can do nothing with ConfigMaps.
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
    cluster.cleanup().await;
}

/// What the containerd test needs, as Debian packages them.
const CONTAINERD_TOOLS: [(&str, &str); 4] = [
    ("containerd", "containerd"),
    ("ctr", "containerd"),
    ("docker-registry", "docker-registry"),
    ("buildah", "buildah"),
];

/// Fails naming the install command when a tool is missing or the test is not root.
fn need_containerd_tools() {
    let missing: Vec<&str> = CONTAINERD_TOOLS
        .iter()
        .filter(|(tool, _)| {
            Command::new("sh")
                .args([
                    "-c",
                    &format!("command -v {tool} || test -x /usr/bin/{tool}"),
                ])
                .output()
                .map_or(true, |o| !o.status.success())
        })
        .map(|(tool, _)| *tool)
        .collect();
    assert!(
        missing.is_empty(),
        "missing {missing:?}: apt-get install -y containerd docker-registry buildah"
    );
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "containerd needs root: run this test as root (CI does)"
    );
}

/// Runs `cmd` to completion; panics with its output unless it succeeds.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn spawn_logged(cmd: &mut Command, log: PathBuf) -> Running {
    let out = std::fs::File::create(&log).expect("log file");
    let child = cmd
        .stdout(Stdio::from(out.try_clone().expect("log")))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    Running { child, log }
}

/// `ctr image pull --hosts-dir <certs.d> <image>` with no route to any upstream (every
/// HTTPS request goes to a closed proxy): whether it succeeded, and its output.
fn pull(socket: &Path, certs: &Path, image: &str) -> (bool, String) {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "pivot-test", "image", "pull", "--hosts-dir"])
        .arg(certs)
        .arg(image)
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("https_proxy", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("http_proxy", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1")
        .output()
        .expect("run ctr");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_files_route_a_real_containerd_to_the_local_registry_and_back() {
    need_containerd_tools();
    // Short: containerd's socket path must fit in a sockaddr_un.
    let dir = PathBuf::from(format!(
        "/tmp/ctd-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let registry = format!("127.0.0.1:{port}");

    // The local Harbor's registry side, on loopback.
    std::fs::write(
        dir.join("registry.yml"),
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {registry}\n",
            dir.join("registry").display()
        ),
    )
    .expect("registry config");
    let served = spawn_logged(
        Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(dir.join("registry.yml")),
        dir.join("registry.log"),
    );
    let http = reqwest::Client::new();
    eventually("the registry answers", || async {
        http.get(format!("http://{registry}/v2/"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;

    // A tiny image, under the projects the agent points docker.io and ghcr.io at.
    std::fs::write(dir.join("hello.txt"), "hello from the local registry\n").expect("file");
    let buildah = || {
        let mut cmd = Command::new("buildah");
        cmd.arg("--root")
            .arg(dir.join("buildah-root"))
            .arg("--runroot")
            .arg(dir.join("buildah-run"))
            .args(["--storage-driver", "vfs"]);
        cmd
    };
    let container = run(buildah().args(["from", "--isolation", "chroot", "scratch"]));
    let container = container.trim();
    run(buildah()
        .arg("copy")
        .arg(container)
        .arg(dir.join("hello.txt"))
        .arg("/hello"));
    run(buildah().args(["commit", "--quiet", container, "pivot-test:1"]));
    let images = [
        (
            "docker.io/library/pivot-test:1",
            "docker.io/library/pivot-test",
        ),
        (
            "ghcr.io/openova-io/pivot-test:1",
            "ghcr.io/openova-io/pivot-test",
        ),
    ];
    for (_, repository) in images {
        run(buildah().args([
            "push",
            "--tls-verify=false",
            "pivot-test:1",
            &format!("docker://{registry}/{repository}:1"),
        ]));
    }

    // containerd with its own root, state and socket.
    let socket = dir.join("c.sock");
    std::fs::write(
        dir.join("containerd.toml"),
        format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = socket.display(),
        ),
    )
    .expect("containerd config");
    let containerd = spawn_logged(
        Command::new("containerd")
            .arg("--config")
            .arg(dir.join("containerd.toml")),
        dir.join("containerd.log"),
    );
    eventually("containerd answers", || async {
        Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
    .await;

    // The agent's files for the pivot, on a node whose certs.d is a temporary directory.
    let paths = NodePaths::under(&dir.join("node"));
    let settings = loopback_settings(&registry);
    files::apply(Direction::V2, &settings, &paths).expect("the pivot's files");
    let hits = |repository: &str| served.said(&format!("/v2/{repository}/manifests/1"));
    for (image, repository) in images {
        let before = hits(repository);
        let (ok, out) = pull(&socket, &paths.certs_dir, image);
        assert!(ok, "{image} through the pivot: {out}\n{}", served.log());
        assert!(
            hits(repository) > before,
            "{image} was served by the local registry"
        );
    }

    // After a rollback the same pull no longer reaches the local registry.
    files::apply(Direction::Rollback, &settings, &paths).expect("the rollback");
    for (image, repository) in images {
        let before = hits(repository);
        let (ok, out) = pull(&socket, &paths.certs_dir, image);
        assert!(
            !ok,
            "{image} has no route but upstream after the rollback: {out}"
        );
        assert_eq!(
            hits(repository),
            before,
            "{image} did not reach the local registry"
        );
    }
    drop(containerd);
    drop(served);
    let _ = std::fs::remove_dir_all(&dir);
}
