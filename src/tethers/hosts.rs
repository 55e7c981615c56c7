//! Which upstream host a value names: image references (Docker's rules: a first component
//! without a dot, a colon or `localhost` is a Docker Hub repository), URLs of any scheme
//! (`https://`, `oci://`, `ssh://git@…`) and scp-like git addresses (`git@github.com:org/repo`),
//! also inside longer strings (an argument `--repo=https://github.com/…`). Pure.

use std::collections::BTreeSet;

/// Docker Hub's name in an image reference, and its other names.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_ALIASES: [&str; 3] = [
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// The upstream hosts of the configuration, lower-cased, each matching itself (with any
/// port) and its subdomains: `github.com` matches `api.github.com`, `docker.io` matches
/// `registry-1.docker.io`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamHosts(BTreeSet<String>);

impl UpstreamHosts {
    /// The set of `hosts` (blank entries dropped).
    pub fn new<S: AsRef<str>>(hosts: impl IntoIterator<Item = S>) -> Self {
        UpstreamHosts(
            hosts
                .into_iter()
                .map(|h| h.as_ref().trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        )
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The configured upstream host `host` (`name[:port]`, any case) falls under, if any.
    pub fn matching(&self, host: &str) -> Option<&str> {
        let host = host.to_ascii_lowercase();
        let bare = strip_port(&host);
        self.0
            .iter()
            .find(|upstream| {
                let candidate = if upstream.contains(':') {
                    host.as_str()
                } else {
                    bare
                };
                candidate == upstream.as_str()
                    || candidate
                        .strip_suffix(upstream.as_str())
                        .is_some_and(|head| head.ends_with('.'))
            })
            .map(String::as_str)
    }

    /// The upstream host the image reference `image` pulls from, if it is one.
    pub fn of_image(&self, image: &str) -> Option<&str> {
        self.matching(&image_registry(image)?)
    }

    /// The first upstream host a URL or scp-like git address inside `text` names.
    pub fn of_text(&self, text: &str) -> Option<&str> {
        url_hosts(text).find_map(|host| self.matching(host))
    }
}

/// `host` without a trailing `:port`.
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The registry an image reference pulls from, lower-cased (`docker.io` for Docker Hub
/// repositories and its aliases); `None` for an empty or malformed reference.
pub fn image_registry(image: &str) -> Option<String> {
    let image = image.trim();
    if image.is_empty() || image.contains(char::is_whitespace) || image.contains("://") {
        return None;
    }
    let registry = match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_ascii_lowercase()
        }
        _ => DOCKER_HUB.to_owned(),
    };
    if registry.is_empty() || registry.contains('@') {
        return None;
    }
    if DOCKER_HUB_ALIASES.contains(&registry.as_str()) {
        return Some(DOCKER_HUB.to_owned());
    }
    Some(registry)
}

/// Every host a URL (`scheme://[user@]host[:port]…`) or an scp-like address
/// (`user@host:path`) inside `text` names, in order.
pub fn url_hosts(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| {
        c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';' | '(' | ')' | '<' | '>' | '=')
    })
    .filter_map(token_host)
}

fn token_host(token: &str) -> Option<&str> {
    let authority = if let Some(at) = token.find("://") {
        let scheme = &token[..at];
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'))
        {
            return None;
        }
        let rest = &token[at + 3..];
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host)
    } else {
        // scp-like: user@host:path (git's own syntax), never an email address.
        let (user, rest) = token.split_once('@')?;
        let (host, path) = rest.split_once(':')?;
        if user.is_empty() || path.is_empty() {
            return None;
        }
        host
    };
    let host = strip_port(authority);
    let valid = !host.is_empty()
        && host.contains('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
    valid.then_some(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> UpstreamHosts {
        UpstreamHosts::new([
            "github.com",
            "GHCR.io",
            "docker.io",
            " ",
            "harbor.openova.io",
        ])
    }

    #[test]
    fn image_references_follow_dockers_rules() {
        let h = hosts();
        for (image, want) in [
            ("nginx", Some("docker.io")),
            ("nginx:1.27", Some("docker.io")),
            ("library/nginx", Some("docker.io")),
            ("docker.io/library/nginx@sha256:abc", Some("docker.io")),
            ("index.docker.io/x/y", Some("docker.io")),
            ("ghcr.io/x/y:tag", Some("ghcr.io")),
            ("GHCR.IO/x/y", Some("ghcr.io")),
            ("ghcr.io:443/x/y", Some("ghcr.io")),
            ("harbor.local/ghcr-io/x/y", None),
            ("quay.io/x/y", None),
            ("localhost:5000/x", None),
            ("localhost/x", None),
            ("notghcr.io/x", None),
            ("", None),
            ("has space/x", None),
        ] {
            assert_eq!(h.of_image(image), want, "{image}");
        }
    }

    #[test]
    fn urls_and_scp_addresses_name_their_host() {
        let h = hosts();
        for (text, want) in [
            (
                "https://github.com/openova-io/openova.git",
                Some("github.com"),
            ),
            ("oci://ghcr.io/openova-io/charts", Some("ghcr.io")),
            ("ssh://git@github.com/org/repo", Some("github.com")),
            ("ssh://git@github.com:22/org/repo", Some("github.com")),
            ("git@github.com:org/repo.git", Some("github.com")),
            ("--repo=https://api.github.com/x", Some("github.com")),
            (
                "https://user:pw@harbor.openova.io/v2/",
                Some("harbor.openova.io"),
            ),
            (
                "see 'https://gitea.local/x' then https://github.com/y",
                Some("github.com"),
            ),
            ("https://github.com.evil.example/x", None),
            ("https://gitea.local/github.com/x", None),
            ("ops@github.com", None),
            ("github.com/org/repo", None),
            ("plain words", None),
            ("://github.com", None),
        ] {
            assert_eq!(h.of_text(text), want, "{text}");
        }
    }

    #[test]
    fn a_host_with_a_port_matches_only_that_port() {
        let h = UpstreamHosts::new(["registry.example:5000"]);
        assert_eq!(
            h.matching("registry.example:5000"),
            Some("registry.example:5000")
        );
        assert_eq!(h.matching("registry.example"), None);
        assert!(UpstreamHosts::new(Vec::<String>::new()).is_empty());
    }
}
