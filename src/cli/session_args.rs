//! `serve` flags for the console's browser sign-in: forward authentication of its session
//! cookie, and the origins a cookie-authenticated request may come from.

use super::args::parse_duration;
use crate::auth::ForwardAuthConfig;
use crate::auth::forward::{DEFAULT_GROUPS_HEADER, DEFAULT_USER_HEADER};
use crate::auth::origin::Origin;
use axum::http::HeaderName;
use std::time::Duration;

/// How a request with a session cookie and no bearer token is authenticated.
#[derive(Debug, Clone, clap::Args)]
pub struct SessionArgs {
    /// The console backend's session check: a request with a Cookie header and no bearer
    /// token is authenticated by `GET URL` carrying that Cookie header only (an http://
    /// URL inside the cluster); a 2xx answer names the user, 401/403 refuse the session.
    /// Unset: bearer tokens only.
    #[arg(long, value_name = "URL", env = "CATALYST_CUTOVER_FORWARD_AUTH_URL")]
    pub forward_auth_url: Option<String>,
    /// The session check's answer header naming the user.
    #[arg(long, value_name = "HEADER", env = "CATALYST_CUTOVER_FORWARD_AUTH_USER_HEADER",
          default_value = DEFAULT_USER_HEADER)]
    pub forward_auth_user_header: HeaderName,
    /// The session check's answer header listing the user's groups, comma-separated.
    #[arg(long, value_name = "HEADER", env = "CATALYST_CUTOVER_FORWARD_AUTH_GROUPS_HEADER",
          default_value = DEFAULT_GROUPS_HEADER)]
    pub forward_auth_groups_header: HeaderName,
    /// How long the session check may take before the request answers 503 auth-unavailable.
    #[arg(long, value_name = "DURATION", env = "CATALYST_CUTOVER_FORWARD_AUTH_TIMEOUT",
          value_parser = parse_duration, default_value = "3s")]
    pub forward_auth_timeout: Duration,
    /// Origins (scheme://host[:port], comma-separated) a cookie-authenticated request that
    /// changes something may come from [default: the request's own host].
    #[arg(
        long,
        value_name = "ORIGINS",
        env = "CATALYST_CUTOVER_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
}

impl SessionArgs {
    /// The forward authentication these flags ask for (`None` without a URL), or what is
    /// wrong with them.
    pub fn config(&self) -> Result<Option<ForwardAuthConfig>, String> {
        let allowed_origins = self
            .allowed_origins
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
            .map(|o| Origin::parse(o).map_err(|e| format!("--allowed-origins: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(url) = self
            .forward_auth_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
        else {
            return Ok(None);
        };
        Ok(Some(ForwardAuthConfig {
            user_header: self.forward_auth_user_header.clone(),
            groups_header: self.forward_auth_groups_header.clone(),
            timeout: self.forward_auth_timeout,
            allowed_origins,
            ..ForwardAuthConfig::new(url)?
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        session: SessionArgs,
    }

    fn config(args: &[&str]) -> Result<Option<ForwardAuthConfig>, String> {
        let mut argv = vec!["x"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .session
            .config()
    }

    #[test]
    fn off_without_a_url_and_configured_with_one() {
        assert!(config(&[]).unwrap().is_none());
        let on = config(&[
            "--forward-auth-url",
            "http://catalyst-api.catalyst.svc:8080/api/v1/auth/check",
            "--forward-auth-user-header",
            "X-Forwarded-User",
            "--allowed-origins",
            "https://console.example.org, ",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(on.user_header.as_str(), "x-forwarded-user");
        assert_eq!(on.groups_header.as_str(), DEFAULT_GROUPS_HEADER);
        assert_eq!(on.timeout, Duration::from_secs(3));
        assert_eq!(
            on.allowed_origins,
            [Origin::parse("https://console.example.org").unwrap()]
        );
    }

    #[test]
    fn bad_settings_stop_the_service_naming_the_flag() {
        let err = config(&["--forward-auth-url", "https://x/check"]).unwrap_err();
        assert!(err.contains("--forward-auth-url"), "{err}");
        let err = config(&["--allowed-origins", "console.example.org"]).unwrap_err();
        assert!(err.contains("--allowed-origins"), "{err}");
        assert!(config(&["--forward-auth-user-header", "bad header"]).is_err());
    }
}
