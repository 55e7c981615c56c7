//! `serve` flags for the HTTP port: timeouts, caps and TLS.

use super::args::parse_duration;
use crate::http::server::{ServerConfig, TlsFiles};
use clap::builder::TypedValueParser;
use std::path::PathBuf;
use std::time::Duration;

/// How the HTTP port treats its clients.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// How long a client may take to send a request's headers; idle keep-alive
    /// connections and TLS handshakes get as long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          env = "CATALYST_CUTOVER_HEADER_READ_TIMEOUT", default_value = "10s")]
    pub header_read_timeout: Duration,
    /// How long a new connection may stay silent before its first byte; a connection that
    /// sends nothing is closed after it (the rest of the headers get --header-read-timeout).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          env = "CATALYST_CUTOVER_FIRST_BYTE_TIMEOUT", default_value = "2s")]
    pub first_byte_timeout: Duration,
    /// How long a write may wait for a client that does not read (an event-stream client
    /// that stopped reading is dropped after it).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          env = "CATALYST_CUTOVER_WRITE_TIMEOUT", default_value = "30s")]
    pub write_timeout: Duration,
    /// Connections served at once; past it, 503 too-many-connections.
    #[arg(long, value_name = "N", env = "CATALYST_CUTOVER_MAX_CONNECTIONS",
          default_value_t = ServerConfig::default().max_connections,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_connections: usize,
    /// Connections served at once from one client address; past it, new ones from that
    /// address are closed unanswered.
    #[arg(long, value_name = "N", env = "CATALYST_CUTOVER_MAX_CONNECTIONS_PER_SOURCE",
          default_value_t = ServerConfig::default().max_connections_per_source,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_connections_per_source: usize,
    /// Event streams open at once; past it, 503 too-many-event-streams.
    #[arg(long, value_name = "N", env = "CATALYST_CUTOVER_MAX_EVENT_STREAMS",
          default_value_t = ServerConfig::default().max_event_streams,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_event_streams: usize,
    /// Event streams one caller (a user, a service account) may hold open at once; past
    /// it, 429 too-many-event-streams for that caller only.
    #[arg(long, value_name = "N", env = "CATALYST_CUTOVER_MAX_EVENT_STREAMS_PER_CALLER",
          default_value_t = ServerConfig::default().max_event_streams_per_caller,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_event_streams_per_caller: usize,
    /// Close each event stream after this long; its client reconnects with
    /// `Last-Event-ID` and misses nothing, and behind a load balancer long-lived clients
    /// spread over the replicas again [default: until the client leaves].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          env = "CATALYST_CUTOVER_EVENT_STREAM_LIFETIME")]
    pub event_stream_lifetime: Option<Duration>,
    /// PEM certificate chain to serve HTTPS with (with --tls-key-file) [default: plain
    /// HTTP].
    #[arg(
        long,
        value_name = "FILE",
        env = "CATALYST_CUTOVER_TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(
        long,
        value_name = "FILE",
        env = "CATALYST_CUTOVER_TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<PathBuf>,
}

impl HttpArgs {
    /// The HTTP port's settings these flags ask for.
    pub fn config(&self) -> ServerConfig {
        ServerConfig {
            header_read_timeout: self.header_read_timeout,
            first_byte_timeout: self.first_byte_timeout,
            write_timeout: self.write_timeout,
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_source,
            max_event_streams: self.max_event_streams,
            max_event_streams_per_caller: self.max_event_streams_per_caller,
            event_stream_reauthorize: ServerConfig::default().event_stream_reauthorize,
            event_stream_lifetime: self.event_stream_lifetime,
            tls: self
                .tls_cert_file
                .clone()
                .zip(self.tls_key_file.clone())
                .map(|(cert, key)| TlsFiles { cert, key }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        http: HttpArgs,
    }

    #[test]
    fn defaults_overrides_and_a_key_without_its_certificate() {
        let defaults = Cli::parse_from(["x"]).http.config();
        assert_eq!(
            defaults.max_connections,
            ServerConfig::default().max_connections
        );
        assert!(defaults.tls.is_none());
        assert_eq!(defaults.event_stream_lifetime, None);
        let set = Cli::parse_from([
            "x",
            "--header-read-timeout=2s",
            "--max-event-streams=7",
            "--max-event-streams-per-caller=3",
            "--max-connections-per-source=9",
            "--first-byte-timeout=1s",
            "--event-stream-lifetime=5m",
            "--tls-cert-file=/tls/tls.crt",
            "--tls-key-file=/tls/tls.key",
        ])
        .http
        .config();
        assert_eq!(set.header_read_timeout, Duration::from_secs(2));
        assert_eq!(set.max_event_streams, 7);
        assert_eq!(
            (
                set.max_event_streams_per_caller,
                set.max_connections_per_source
            ),
            (3, 9)
        );
        assert_eq!(set.first_byte_timeout, Duration::from_secs(1));
        assert_eq!(set.event_stream_lifetime, Some(Duration::from_secs(300)));
        assert_eq!(set.tls.map(|t| t.key), Some(PathBuf::from("/tls/tls.key")));
        assert!(Cli::try_parse_from(["x", "--tls-key-file=/k"]).is_err());
        assert!(Cli::try_parse_from(["x", "--max-connections=0"]).is_err());
    }
}
