//! What the agent writes on its node: k3s's `registries.yaml` and containerd's
//! `certs.d/<upstream>/hosts.toml`, and nothing else. Before the first pivot it saves what
//! the node had (or that it had none) in its state directory, once; a rollback puts back
//! exactly that. The renderings are pure; [`apply`] is the thin I/O over them, the same for
//! a node's host paths and for the demo's temporary directories.

use super::direction::Direction;
use base64::Engine;
use std::fmt;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// First line of every file the agent writes.
const MARKER: &str = "# managed by registry-pivot (bp-self-sovereign-cutover)";

/// A registry `host[:port]`, checked once: letters, digits, dots, dashes and at most one
/// colon, never starting with a dot, colon or dash (what values.schema.json enforces).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Host(String);

/// A value that is not a registry `host[:port]`.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a registry host[:port]")]
pub struct BadHost(String);

impl FromStr for Host {
    type Err = BadHost;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && !s.starts_with(['.', ':', '-'])
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-'))
            && s.matches(':').count() <= 1
            && !s.ends_with(':');
        if ok {
            Ok(Host(s.to_owned()))
        } else {
            Err(BadHost(s.to_owned()))
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Host {
    /// The host as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Harbor proxy-cache project of this upstream registry (step 02 names it so).
    pub fn project(&self) -> String {
        self.0.replace([':', '/'], "-")
    }

    /// The registry's own endpoint, containerd's `server` (its fallback).
    fn upstream_endpoint(&self) -> String {
        if self.0 == "docker.io" {
            "https://registry-1.docker.io".to_owned()
        } else {
            format!("https://{}", self.0)
        }
    }
}

/// The agent's settings, from its DaemonSet's own spec (chart values), never a ConfigMap.
#[derive(Clone)]
pub struct PivotSettings {
    /// The local Harbor's registry.
    pub registry: Host,
    /// Speak plain HTTP to it (test clusters only).
    pub insecure: bool,
    /// The CA that signed the registry's certificate, as a path on the node.
    pub ca_file: Option<String>,
    /// The upstream registries pointed at their proxy-cache projects.
    pub upstreams: Vec<Host>,
    /// The nodes' pull credential of the proxy-cache projects (user, password).
    pub pull: Option<(String, secrecy::SecretString)>,
}

impl fmt::Debug for PivotSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PivotSettings")
            .field("registry", &self.registry)
            .field("insecure", &self.insecure)
            .field("ca_file", &self.ca_file)
            .field("upstreams", &self.upstreams)
            .field("pull_user", &self.pull.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl PivotSettings {
    fn scheme(&self) -> &'static str {
        if self.insecure { "http" } else { "https" }
    }

    /// The registry's base URL.
    pub fn registry_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.registry)
    }

    fn basic_auth(&self) -> Option<String> {
        use secrecy::ExposeSecret;
        self.pull.as_ref().map(|(user, password)| {
            base64::engine::general_purpose::STANDARD
                .encode(format!("{user}:{}", password.expose_secret()))
        })
    }
}

/// Where a node's files are.
#[derive(Debug, Clone)]
pub struct NodePaths {
    /// k3s's registries.yaml (on a node: `/etc/rancher/k3s/registries.yaml`).
    pub registries_yaml: PathBuf,
    /// containerd's hosts directory (on a k3s node:
    /// `/var/lib/rancher/k3s/agent/etc/containerd/certs.d`).
    pub certs_dir: PathBuf,
    /// Where the node's own files are kept for a rollback.
    pub state_dir: PathBuf,
}

impl NodePaths {
    /// The layout under one directory (the demo's and the tests' nodes).
    pub fn under(root: &Path) -> NodePaths {
        NodePaths {
            registries_yaml: root.join("registries.yaml"),
            certs_dir: root.join("certs.d"),
            state_dir: root.join("state"),
        }
    }

    fn hosts_toml(&self, upstream: &Host) -> PathBuf {
        self.certs_dir.join(upstream.as_str()).join("hosts.toml")
    }
}

/// A string quoted alike for YAML and TOML.
fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// k3s's registries.yaml for the pivot: every upstream mirrored to its project. Pure.
pub fn registries_yaml(settings: &PivotSettings) -> String {
    let mut out = format!("{MARKER}\nmirrors:\n");
    for upstream in &settings.upstreams {
        out.push_str(&format!(
            "  {}:\n    endpoint:\n      - {}\n    rewrite:\n      \"^(.*)$\": {}\n",
            quoted(upstream.as_str()),
            quoted(&settings.registry_url()),
            quoted(&format!("{}/$1", upstream.project())),
        ));
    }
    if settings.pull.is_some() || settings.ca_file.is_some() {
        out.push_str(&format!(
            "configs:\n  {}:\n",
            quoted(settings.registry.as_str())
        ));
        if let Some((user, password)) = &settings.pull {
            use secrecy::ExposeSecret;
            out.push_str(&format!(
                "    auth:\n      username: {}\n      password: {}\n",
                quoted(user),
                quoted(password.expose_secret())
            ));
        }
        if let Some(ca) = &settings.ca_file {
            out.push_str(&format!("    tls:\n      ca_file: {}\n", quoted(ca)));
        }
    }
    out
}

/// containerd's hosts.toml of `upstream` for the pivot: its project on the local registry,
/// the upstream itself only as `server`. Pure.
pub fn hosts_toml(settings: &PivotSettings, upstream: &Host) -> String {
    let host = quoted(&format!(
        "{}/v2/{}",
        settings.registry_url(),
        upstream.project()
    ));
    let mut out = format!(
        "{MARKER}\nserver = {}\n\n[host.{host}]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n",
        quoted(&upstream.upstream_endpoint())
    );
    if let Some(ca) = &settings.ca_file {
        out.push_str(&format!("  ca = {}\n", quoted(ca)));
    }
    if let Some(auth) = settings.basic_auth() {
        out.push_str(&format!(
            "  [host.{host}.header]\n    Authorization = {}\n",
            quoted(&format!("Basic {auth}"))
        ));
    }
    out
}

/// Follows `direction` on the node at `paths`: for `v2` saves the node's own files (once)
/// and writes the pivot's; for a rollback puts back exactly what was saved. Idempotent;
/// returns what it changed, for the log.
pub fn apply(
    direction: Direction,
    settings: &PivotSettings,
    paths: &NodePaths,
) -> io::Result<Vec<String>> {
    let mut changed = Vec::new();
    let mut targets = vec![(
        paths.registries_yaml.clone(),
        "registries.yaml".to_owned(),
        None,
    )];
    targets.extend(
        settings
            .upstreams
            .iter()
            .map(|u| (paths.hosts_toml(u), format!("hosts.toml.{u}"), Some(u))),
    );
    for (target, kept, upstream) in targets {
        let what = match direction {
            Direction::V2 => {
                save(&target, &paths.state_dir, &kept)?;
                let content = match upstream {
                    Some(u) => hosts_toml(settings, u),
                    None => registries_yaml(settings),
                };
                write(&target, &content)?.then(|| format!("wrote {}", target.display()))
            }
            Direction::Rollback => restore(&target, &paths.state_dir, &kept)?,
        };
        changed.extend(what);
    }
    Ok(changed)
}

fn absent_marker(state: &Path, kept: &str) -> PathBuf {
    state.join(format!("{kept}.absent"))
}

/// Keeps the node's own `target` as `state/kept` (or notes that it had none), once.
fn save(target: &Path, state: &Path, kept: &str) -> io::Result<()> {
    let copy = state.join(kept);
    if copy.exists() || absent_marker(state, kept).exists() {
        return Ok(());
    }
    std::fs::create_dir_all(state)?;
    match std::fs::read(target) {
        Ok(bytes) => {
            let tmp = state.join(format!("{kept}.tmp"));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(tmp, copy)
        }
        Err(err) if err.kind() == ErrorKind::NotFound => {
            std::fs::write(absent_marker(state, kept), b"")
        }
        Err(err) => Err(err),
    }
}

/// Puts back what [`save`] kept of `target`; says what it changed.
fn restore(target: &Path, state: &Path, kept: &str) -> io::Result<Option<String>> {
    let copy = state.join(kept);
    let absent = absent_marker(state, kept);
    if copy.exists() {
        let bytes = std::fs::read(&copy)?;
        let changed = write_bytes(target, &bytes)?;
        std::fs::remove_file(copy)?;
        return Ok(changed.then(|| format!("restored the node's own {}", target.display())));
    }
    if absent.exists() {
        let existed = match std::fs::remove_file(target) {
            Ok(()) => true,
            Err(err) if err.kind() == ErrorKind::NotFound => false,
            // A single-file mount cannot be removed: emptied, k3s reads it as none.
            Err(_) => write_bytes(target, b"")?,
        };
        std::fs::remove_file(absent)?;
        return Ok(existed.then(|| format!("removed {} (the node had none)", target.display())));
    }
    Ok(None)
}

fn write(target: &Path, content: &str) -> io::Result<bool> {
    write_bytes(target, content.as_bytes())
}

/// Makes `target` hold `bytes` unless it does already; in place, because registries.yaml is
/// a single-file mount that nothing can be renamed over. Says whether it changed anything.
fn write_bytes(target: &Path, bytes: &[u8]) -> io::Result<bool> {
    match std::fs::read(target) {
        Ok(current) if current == bytes => return Ok(false),
        Ok(_) => {}
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(target, bytes)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pull: bool) -> PivotSettings {
        PivotSettings {
            registry: "harbor.example.org".parse().unwrap(),
            insecure: false,
            ca_file: None,
            upstreams: vec!["docker.io".parse().unwrap(), "ghcr.io".parse().unwrap()],
            pull: pull.then(|| ("robot$pull".to_owned(), "s3\"cret".to_owned().into())),
        }
    }

    #[test]
    fn hosts_are_checked_once() {
        for ok in [
            "docker.io",
            "harbor.example.org:8443",
            "a",
            "127.0.0.1:5000",
        ] {
            assert!(ok.parse::<Host>().is_ok(), "{ok}");
        }
        for bad in [
            "", "-x", ".x", ":1", "a:b:c", "a/b", "a b", "a\"", "x:", "ex\u{e9}",
        ] {
            assert!(bad.parse::<Host>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_files_point_each_upstream_at_its_project() {
        let s = settings(false);
        let hosts = hosts_toml(&s, &s.upstreams[0]);
        assert_eq!(
            hosts,
            format!(
                "{MARKER}\nserver = \"https://registry-1.docker.io\"\n\n\
                 [host.\"https://harbor.example.org/v2/docker.io\"]\n  \
                 capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n"
            )
        );
        let yaml = registries_yaml(&s);
        let parsed: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(
            parsed["mirrors"]["ghcr.io"]["endpoint"][0],
            "https://harbor.example.org"
        );
        assert_eq!(
            parsed["mirrors"]["ghcr.io"]["rewrite"]["^(.*)$"],
            "ghcr.io/$1"
        );
        assert!(parsed.get("configs").is_none());
    }

    #[test]
    fn the_pull_credential_and_ca_reach_both_files_quoted() {
        let mut s = settings(true);
        s.ca_file = Some("/etc/ssl/harbor-ca.crt".into());
        let parsed: serde_yaml::Value = serde_yaml::from_str(&registries_yaml(&s)).unwrap();
        let config = &parsed["configs"]["harbor.example.org"];
        assert_eq!(config["auth"]["password"], "s3\"cret");
        assert_eq!(config["tls"]["ca_file"], "/etc/ssl/harbor-ca.crt");
        let hosts = hosts_toml(&s, &s.upstreams[1]);
        let auth = base64::engine::general_purpose::STANDARD.encode("robot$pull:s3\"cret");
        assert!(
            hosts.contains(&format!("Authorization = \"Basic {auth}\"")),
            "{hosts}"
        );
        assert!(hosts.contains("ca = \"/etc/ssl/harbor-ca.crt\""), "{hosts}");
        assert!(
            !format!("{s:?}").contains("s3"),
            "the password stays out of logs"
        );
    }

    #[test]
    fn a_rollback_restores_exactly_what_the_node_had() {
        let dir = std::env::temp_dir().join(format!("pivot-files-{}", uuid::Uuid::new_v4()));
        let paths = NodePaths::under(&dir);
        let s = settings(false);
        std::fs::create_dir_all(paths.certs_dir.join("ghcr.io")).unwrap();
        std::fs::write(&paths.registries_yaml, "own: yaml\n").unwrap();
        let own_ghcr = paths.certs_dir.join("ghcr.io/hosts.toml");
        std::fs::write(&own_ghcr, "server = \"own\"\n").unwrap();

        assert_eq!(
            apply(Direction::Rollback, &s, &paths).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(apply(Direction::V2, &s, &paths).unwrap().len(), 3);
        assert!(
            apply(Direction::V2, &s, &paths).unwrap().is_empty(),
            "idempotent"
        );
        let docker = paths.certs_dir.join("docker.io/hosts.toml");
        assert_eq!(
            std::fs::read_to_string(&docker).unwrap(),
            hosts_toml(&s, &s.upstreams[0])
        );

        apply(Direction::Rollback, &s, &paths).unwrap();
        assert_eq!(
            std::fs::read_to_string(&paths.registries_yaml).unwrap(),
            "own: yaml\n"
        );
        assert_eq!(
            std::fs::read_to_string(&own_ghcr).unwrap(),
            "server = \"own\"\n"
        );
        assert!(!docker.exists(), "the node had none");
        assert_eq!(std::fs::read_dir(&paths.state_dir).unwrap().count(), 0);
        // A second pivot saves the node's files again, as they are then.
        apply(Direction::V2, &s, &paths).unwrap();
        apply(Direction::Rollback, &s, &paths).unwrap();
        assert_eq!(
            std::fs::read_to_string(&paths.registries_yaml).unwrap(),
            "own: yaml\n"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
