//! Cross-site requests: a browser sends the session cookie with any request to this
//! service, whichever site made it, so a cookie-authenticated request that changes
//! something must show that it comes from an allowed origin. Pure.
//!
//! Such a request (any method but GET, HEAD and OPTIONS) must be `Content-Type:
//! application/json` (a cross-site form cannot send it without a CORS preflight, which this
//! service never grants) and carry an `Origin` that is allowed, or, without `Origin`,
//! `Sec-Fetch-Site: same-origin`. With no allowed origins configured, the allowed origin is
//! the request's own host.

use axum::http::{HeaderMap, Method, header};

/// An origin as browsers send it, normalized: `scheme://host[:port]`, lower case, the
/// scheme's default port left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    /// Parses `scheme://host[:port]` (http or https, no path, no user info).
    pub fn parse(raw: &str) -> Result<Origin, String> {
        let raw = raw.trim();
        let bad = |why: &str| {
            format!(
                "{raw:?} is not an origin ({why}); write scheme://host[:port], e.g. https://console.example.org"
            )
        };
        let (scheme, authority) = raw.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => "80",
            "https" => "443",
            _ => return Err(bad("the scheme is not http or https")),
        };
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.is_empty()
            || authority.contains(['/', '?', '#', '@'])
            || !authority.is_ascii()
            || authority.chars().any(|c| c.is_ascii_control() || c == ' ')
        {
            return Err(bad("it must be a host and an optional port, nothing else"));
        }
        Ok(Origin(format!(
            "{scheme}://{}",
            without_port(&authority.to_ascii_lowercase(), default_port)
        )))
    }

    /// The `host[:port]` part.
    fn authority(&self) -> &str {
        self.0.split_once("://").map_or("", |(_, a)| a)
    }

    /// The default port of the scheme.
    fn default_port(&self) -> &'static str {
        if self.0.starts_with("https://") {
            "443"
        } else {
            "80"
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `authority` without `:<default_port>` at its end.
fn without_port(authority: &str, default_port: &str) -> String {
    authority
        .strip_suffix(default_port)
        .and_then(|a| a.strip_suffix(':'))
        .unwrap_or(authority)
        .to_owned()
}

/// Whether a cookie-authenticated request with `method` and `headers` may go on: `Ok`, or
/// why it is refused as cross-site. `allowed` empty: only the request's own host.
pub fn same_site(method: &Method, headers: &HeaderMap, allowed: &[Origin]) -> Result<(), String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(
            "a request signed in with a session cookie that changes something must be sent with \
             Content-Type: application/json"
                .to_owned(),
        );
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        let same_origin = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("same-origin"));
        return if same_origin {
            Ok(())
        } else {
            Err(
                "a request signed in with a session cookie that changes something must carry \
                 an Origin header (or Sec-Fetch-Site: same-origin)"
                    .to_owned(),
            )
        };
    };
    let origin = origin
        .to_str()
        .map_err(|_| "the Origin header is not visible ASCII".to_owned())
        .and_then(|o| Origin::parse(o).map_err(|_| format!("the Origin {o:?} is not allowed")))?;
    let allowed_here = if allowed.is_empty() {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|host| {
                without_port(&host.trim().to_ascii_lowercase(), origin.default_port())
                    == origin.authority()
            })
    } else {
        allowed.contains(&origin)
    };
    if allowed_here {
        Ok(())
    } else {
        Err(format!(
            "the Origin {origin} is not allowed to act with a session cookie{}",
            if allowed.is_empty() {
                " (only this service's own host is, unless --allowed-origins lists others)"
            } else {
                " (see --allowed-origins)"
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                )
            })
            .collect()
    }

    const JSON: (&str, &str) = ("content-type", "application/json");

    #[test]
    fn origins_parse_and_normalize() {
        for (raw, origin) in [
            ("https://Console.Example.org", "https://console.example.org"),
            (
                "https://console.example.org:443/",
                "https://console.example.org",
            ),
            ("http://10.0.0.1:8080", "http://10.0.0.1:8080"),
            ("http://x:80", "http://x"),
        ] {
            assert_eq!(Origin::parse(raw).unwrap().to_string(), origin, "{raw}");
        }
        for bad in [
            "",
            "console.example.org",
            "ftp://x",
            "https://",
            "https://x/path",
            "https://user@x",
            "null",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_pass_and_writes_need_json_and_an_allowed_origin() {
        let post = Method::POST;
        assert_eq!(same_site(&Method::GET, &headers(&[]), &[]), Ok(()));
        let own = [
            JSON,
            ("host", "cutover.example.org"),
            ("origin", "https://cutover.example.org"),
        ];
        assert_eq!(same_site(&post, &headers(&own), &[]), Ok(()));
        let with_port = [
            JSON,
            ("host", "localhost:8080"),
            ("origin", "http://localhost:8080"),
        ];
        assert_eq!(same_site(&post, &headers(&with_port), &[]), Ok(()));
        let fetch = [JSON, ("sec-fetch-site", "same-origin")];
        assert_eq!(same_site(&post, &headers(&fetch), &[]), Ok(()));

        for refused in [
            vec![
                ("host", "a.example.org"),
                ("origin", "https://a.example.org"),
            ],
            vec![
                ("content-type", "text/plain"),
                ("origin", "https://a.example.org"),
                ("host", "a.example.org"),
            ],
            vec![
                JSON,
                ("host", "a.example.org"),
                ("origin", "https://evil.example"),
            ],
            vec![JSON, ("host", "a.example.org"), ("origin", "null")],
            vec![JSON, ("host", "a.example.org")],
            vec![JSON, ("sec-fetch-site", "cross-site")],
            vec![JSON, ("origin", "https://a.example.org")],
        ] {
            assert!(
                same_site(&post, &headers(&refused), &[]).is_err(),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn a_configured_list_replaces_the_own_host() {
        let allowed = [Origin::parse("https://console.example.org").unwrap()];
        let console = [
            JSON,
            ("host", "cutover.svc"),
            ("origin", "https://console.example.org"),
        ];
        assert_eq!(
            same_site(&Method::POST, &headers(&console), &allowed),
            Ok(())
        );
        let own = [
            JSON,
            ("host", "cutover.svc"),
            ("origin", "http://cutover.svc"),
        ];
        let err = same_site(&Method::POST, &headers(&own), &allowed).unwrap_err();
        assert!(err.contains("--allowed-origins"), "{err}");
        let json_charset = [
            ("content-type", "Application/JSON; charset=utf-8"),
            ("origin", "https://console.example.org"),
        ];
        assert_eq!(
            same_site(&Method::POST, &headers(&json_charset), &allowed),
            Ok(())
        );
    }
}
