//! The accept loops: plain HTTP through `axum::serve`, HTTPS through rustls and hyper.

use axum::Router;
use axum::serve::ListenerExt;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// Serves `router` on `listener` until `shutdown` turns true.
pub fn spawn(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    match tls {
        None => tokio::spawn(plain(listener, router, shutdown)),
        Some(acceptor) => tokio::spawn(https(listener, router, acceptor, shutdown)),
    }
}

async fn plain(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    // Small writes (watch events) must leave at once, as kube-apiserver's do: without
    // TCP_NODELAY, Nagle holds them for the client's delayed ACK (up to ~40 ms).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    // Built once; `serve(listener, router)` would rebuild the route table per connection.
    let serve =
        axum::serve(listener, router.into_make_service()).with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|c| *c).await;
        });
    if let Err(error) = serve.await {
        tracing::error!(%error, "sandbox API server stopped");
    }
}

async fn https(
    listener: TcpListener,
    router: Router,
    acceptor: TlsAcceptor,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|c| *c) => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        (tcp, peer)
                    }
                    Err(error) => {
                        tracing::warn!(%error, "sandbox API server: accept failed");
                        continue;
                    }
                };
                let (acceptor, router) = (acceptor.clone(), router.clone());
                connections.spawn(async move {
                    let stream = match acceptor.accept(tcp).await {
                        Ok(s) => s,
                        Err(error) => {
                            tracing::debug!(%error, %peer, "TLS handshake failed");
                            return;
                        }
                    };
                    let service = TowerToHyperService::new(router);
                    let served = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(error) = served {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Watches end on the same signal; what is left are idle keep-alive connections.
    connections.shutdown().await;
}
