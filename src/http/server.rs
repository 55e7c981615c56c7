//! The accept loop of the HTTP port, which anyone on the cluster network can reach: at most
//! `max_connections` connections served at once (past it, a short 503
//! `too-many-connections`) and `max_connections_per_source` from one address (past it, closed
//! unanswered), a first byte within `first_byte_timeout` (a connection that sends nothing is
//! closed long before the header timeout frees it; when every slot is taken, the oldest such
//! connection makes way for a new one at once), request headers read within
//! `header_read_timeout` (idle keep-alive connections included), every write taken within
//! `write_timeout` (an event-stream client that stops reading is dropped), and HTTPS when
//! given a certificate. Each request carries its client's address
//! ([`axum::extract::ConnectInfo`]) for the per-source limits of [`crate::auth::limits`].
//!
//! The probes get a port of their own ([`serve`] a second time, with the probe router), so
//! that no flood of the API port can make the kubelet restart a replica that is fine.

use super::error::ApiError;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use lru::LruCache;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tokio_io_timeout::TimeoutStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower::ServiceExt;

/// How the HTTP port treats its clients.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long a client may take to send a request's headers (and an idle keep-alive
    /// connection may stay silent, and a TLS handshake may take).
    pub header_read_timeout: Duration,
    /// How long a new connection may stay silent before its first byte (of the request or
    /// of the TLS handshake); the rest of the headers then get `header_read_timeout`.
    pub first_byte_timeout: Duration,
    /// How long a write may wait for the client to read.
    pub write_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections served at once from one client address.
    pub max_connections_per_source: usize,
    /// Event streams open at once (see [`super::events`]).
    pub max_event_streams: usize,
    /// Event streams open at once for one caller (see [`crate::auth::limits::StreamQuota`]).
    pub max_event_streams_per_caller: usize,
    /// How often an open event stream's caller is authorized again; the stream closes when
    /// the answer is no longer yes.
    pub event_stream_reauthorize: Duration,
    /// How long one event stream lasts before the service closes it and the client
    /// reconnects with `Last-Event-ID`; `None`: until the client leaves.
    pub event_stream_lifetime: Option<Duration>,
    /// Serve HTTPS with this certificate; plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(30),
            max_connections: 2048,
            max_connections_per_source: 1024,
            max_event_streams: 1024,
            max_event_streams_per_caller: 8,
            event_stream_reauthorize: Duration::from_secs(60),
            event_stream_lifetime: None,
            tls: None,
        }
    }
}

impl ServerConfig {
    /// The probe port's settings: this port's TLS and timeouts, and a few connections (the
    /// kubelet and a scraper need one or two each).
    pub fn probes(&self) -> ServerConfig {
        ServerConfig {
            max_connections: PROBE_CONNECTIONS,
            max_connections_per_source: PROBE_CONNECTIONS,
            ..self.clone()
        }
    }
}

/// Connections the probe port serves at once.
const PROBE_CONNECTIONS: usize = 64;

/// A PEM certificate chain and its private key (a `kubernetes.io/tls` Secret's `tls.crt`
/// and `tls.key`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// Why the certificate cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is unreadable or holds no PEM certificate.
    #[error("cannot read a PEM certificate chain from {path}: {reason}")]
    Cert {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key file is unreadable or holds no PEM private key.
    #[error("cannot read a PEM private key from {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the pair (a key that does not match the certificate, say).
    #[error("cannot serve the certificate in {path}: {source}")]
    Config {
        /// The certificate file.
        path: PathBuf,
        /// The error.
        #[source]
        source: rustls::Error,
    },
}

impl TlsFiles {
    /// A TLS acceptor serving this certificate (HTTP/1.1 only, as the router).
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let cert_error = |reason: String| TlsError::Cert {
            path: self.cert.clone(),
            reason,
        };
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| cert_error(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cert_error(e.to_string()))?;
        if chain.is_empty() {
            return Err(cert_error("no CERTIFICATE block".to_owned()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| TlsError::Key {
            path: self.key.clone(),
            reason: e.to_string(),
        })?;
        let config_error = |source| TlsError::Config {
            path: self.cert.clone(),
            source,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(config_error)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// Connections past the cap that are still answered 503 at once; beyond those, new
/// connections are closed unanswered, so that a connection flood costs nothing per
/// connection.
const REFUSALS_IN_FLIGHT: usize = 64;
/// The most a request's head (request line and headers) may take in the connection's
/// buffer: far above any honest request (bearer tokens are refused past 8 KiB anyway), far
/// below hyper's default of ~400 KiB, which let 380 KB headers through.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `router` on `listener` until `shutdown` turns true, then lets the requests in
/// flight finish. Dropping the future drops every connection.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    config: ServerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
    let sources = SourceSlots::default();
    let silent = Arc::new(SilentConnections::default());
    let busy = Router::new().fallback(move || async move {
        ApiError::TooManyConnections {
            limit: config.max_connections,
        }
        .into_response()
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let mut refusing = builder.clone();
    refusing.keep_alive(false);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        // Debug: a flood would otherwise write a log line per connection.
        let Some(source) = sources.take(peer.ip(), config.max_connections_per_source) else {
            tracing::debug!(
                %peer,
                limit = config.max_connections_per_source,
                "connection closed: too many from its address"
            );
            continue;
        };
        let (service, builder, slot) = match slots.clone().try_acquire_owned() {
            Ok(permit) => (router.clone(), builder.clone(), Slot::Held(permit)),
            // Full, but one connection has sent nothing yet: it makes way for this one.
            Err(_) if silent.evict_oldest() => {
                (router.clone(), builder.clone(), Slot::Freed(slots.clone()))
            }
            Err(_) => match refusals.clone().try_acquire_owned() {
                Ok(permit) => {
                    tracing::debug!(
                        limit = config.max_connections,
                        "connection refused: too many connections"
                    );
                    (busy.clone(), refusing.clone(), Slot::Refusal(permit))
                }
                Err(_) => continue,
            },
        };
        let service = service.map_request(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let timeouts = Timeouts {
            first_byte: config.first_byte_timeout,
            handshake: config.header_read_timeout,
            write: config.write_timeout,
        };
        let silent = silent.clone();
        connections.spawn(async move {
            let (permit, evictable) = match slot {
                Slot::Held(permit) => (permit, true),
                Slot::Refusal(permit) => (permit, false),
                // The evicted connection gives its slot back as its task ends.
                Slot::Freed(slots) => {
                    match tokio::time::timeout(timeouts.first_byte, slots.acquire_owned()).await {
                        Ok(Ok(permit)) => (permit, true),
                        _ => return,
                    }
                }
            };
            let _slots = (permit, source);
            let spoke = async {
                if evictable {
                    let (_pending, evicted) = silent.register();
                    tokio::select! {
                        came = first_byte(&tcp, timeouts.first_byte) => came,
                        _ = evicted => false,
                    }
                } else {
                    first_byte(&tcp, timeouts.first_byte).await
                }
            };
            if !spoke.await {
                return;
            }
            let io = match prepare(tcp, tls, timeouts).await {
                Some(io) => io,
                None => return,
            };
            let connection =
                builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    // Left: connections whose TLS handshake was under way; they end within the timeout.
    while connections.join_next().await.is_some() {}
}

/// The connections open per client address, each counted by a [`SourceSlot`].
#[derive(Clone, Default)]
struct SourceSlots(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl SourceSlots {
    /// A slot for one more connection from `ip`, unless it has `limit` open.
    fn take(&self, ip: IpAddr, limit: usize) -> Option<SourceSlot> {
        let mut open = self.0.lock();
        let count = open.entry(ip).or_insert(0);
        if *count >= limit.max(1) {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            slots: self.clone(),
            ip,
        })
    }
}

/// One open connection of a client address; given back when dropped.
struct SourceSlot {
    slots: SourceSlots,
    ip: IpAddr,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.slots.0.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                // Only addresses with a connection open are kept.
                open.remove(&self.ip);
            }
        }
    }
}

/// How a new connection got its slot.
enum Slot {
    /// A free one.
    Held(OwnedSemaphorePermit),
    /// The one an evicted silent connection gives back.
    Freed(Arc<Semaphore>),
    /// None: it is answered 503 on a refusal permit.
    Refusal(OwnedSemaphorePermit),
}

/// The served connections that have not sent a byte yet, oldest first. When every slot is
/// taken, the oldest of them is closed to make way for a new connection: a flood of silent
/// connections from many addresses then keeps out no client that speaks.
struct SilentConnections {
    waiting: Mutex<LruCache<u64, oneshot::Sender<()>>>,
    next: AtomicU64,
}

impl SilentConnections {
    /// Records a connection waiting for its first byte; the receiver resolves if it is
    /// evicted, and it is forgotten when the [`Pending`] is dropped.
    fn register(self: &Arc<Self>) -> (Pending, oneshot::Receiver<()>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (evict, evicted) = oneshot::channel();
        self.waiting.lock().put(id, evict);
        (
            Pending {
                silent: self.clone(),
                id,
            },
            evicted,
        )
    }

    /// Closes the oldest connection still silent; whether there was one.
    fn evict_oldest(&self) -> bool {
        let mut waiting = self.waiting.lock();
        while let Some((_, evict)) = waiting.pop_lru() {
            if evict.send(()).is_ok() {
                return true;
            }
        }
        false
    }
}

impl Default for SilentConnections {
    fn default() -> Self {
        SilentConnections {
            waiting: Mutex::new(LruCache::unbounded()),
            next: AtomicU64::new(0),
        }
    }
}

/// A connection waiting for its first byte, until dropped.
struct Pending {
    silent: Arc<SilentConnections>,
    id: u64,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.silent.waiting.lock().pop(&self.id);
    }
}

/// How long a new connection may take for each of its first steps.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    first_byte: Duration,
    handshake: Duration,
    write: Duration,
}

/// A boxed connection, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Whether `tcp`'s first byte (of a request or a TLS handshake) comes within `within`. A
/// silent connection holds a slot and a file descriptor for nothing: it goes long before
/// the header timeout would free it. Peeking leaves the byte for hyper or rustls.
async fn first_byte(tcp: &TcpStream, within: Duration) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(within, tcp.peek(&mut first)).await,
        Ok(Ok(n)) if n > 0
    )
}

/// The connection with its `write` timeout, after the TLS handshake when there is one
/// (bounded by `handshake`); `None` when the handshake failed.
async fn prepare(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    timeouts: Timeouts,
) -> Option<Box<dyn Io>> {
    // Event-stream frames are small writes that must not wait for a delayed ACK.
    let _ = tcp.set_nodelay(true);
    let mut io = TimeoutStream::new(tcp);
    io.set_write_timeout(Some(timeouts.write));
    let io = Box::pin(io);
    match tls {
        None => Some(Box::new(io)),
        Some(acceptor) => match tokio::time::timeout(timeouts.handshake, acceptor.accept(io)).await
        {
            Ok(Ok(stream)) => Some(Box::new(stream)),
            Ok(Err(error)) => {
                tracing::debug!(%error, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                None
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_silent_connection_is_evicted_and_one_that_spoke_never() {
        let silent = Arc::new(SilentConnections::default());
        let (first, mut first_evicted) = silent.register();
        let (spoke, _spoke_evicted) = silent.register();
        let (_third, mut third_evicted) = silent.register();
        // The second sends its first byte: no longer silent, never evicted.
        drop(spoke);
        assert!(silent.evict_oldest());
        assert!(first_evicted.try_recv().is_ok(), "the oldest goes first");
        drop(first);
        assert!(silent.evict_oldest());
        assert!(
            third_evicted.try_recv().is_ok(),
            "then the next still silent"
        );
        assert!(!silent.evict_oldest(), "none left");
    }
}
