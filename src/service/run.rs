//! Start-up and shutdown of one replica: migrate the status ConfigMap, start the caches,
//! the Lease election, the runner and the HTTP server.

use super::ServiceConfig;
use crate::auth::Authenticator;
use crate::events::EventHub;
use crate::http::HttpContext;
use crate::metrics::Metrics;
use crate::preflight::{AutoFire, Gates, Preflights, Starts};
use crate::render::{JobRenderer, RenderError};
use crate::runner::{RunnerContext, engine, lease, rollback_follower};
use crate::status::{RecordKeeper, StatusCache, StatusStore, StoreError};
use crate::step::{PlanState, StepSource};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The Job template does not load.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// A migration file is broken (a build defect).
    #[error(transparent)]
    Migration(#[from] &'static crate::migrate::MigrationError),
    /// The Kubernetes client cannot be built from the configuration.
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// The status ConfigMap cannot be read, created or migrated.
    #[error("cannot prepare the status ConfigMap: {0}")]
    Status(#[from] StoreError),
    /// The TLS certificate or key cannot be served.
    #[error(transparent)]
    Tls(#[from] crate::http::server::TlsError),
    /// The forward authentication's HTTP client cannot be built.
    #[error("{0}")]
    ForwardAuth(String),
    /// The listen address is taken or invalid.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A running replica.
pub struct Service {
    ctx: Arc<HttpContext>,
    tls: bool,
    addr: SocketAddr,
    tasks: JoinSet<()>,
    http: tokio::task::JoinHandle<()>,
    /// The probe port's server and address, when it has one.
    probes: Option<(tokio::task::JoinHandle<()>, SocketAddr)>,
    stop_http: watch::Sender<bool>,
    lease_api: Api<Lease>,
    lease: lease::LeaseConfig,
    leading: watch::Receiver<bool>,
}

/// Migrates the status ConfigMap (creating it as the chart would when missing) and returns
/// the versions applied.
pub async fn migrate(store: &StatusStore) -> Result<Vec<u32>, StartError> {
    crate::migrate::migrations()?;
    let (_, applied) = store
        .update(|data| Ok(crate::migrate::migrate(data).unwrap_or_default()))
        .await?;
    Ok(applied)
}

/// Publishes whether the cutover needs a runner (its phase is `running`, or a rollback is
/// under way), from the status cache: replicas only contend for the Lease then.
async fn runner_wanted(cache: StatusCache, wanted: watch::Sender<bool>) {
    let mut snapshots = cache.subscribe();
    loop {
        let running = snapshots.borrow_and_update().phase().needs_runner();
        wanted.send_if_modified(|w| std::mem::replace(w, running) != running);
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}

/// A background task of the replica that ended.
#[derive(Debug, thiserror::Error)]
pub enum TaskDied {
    /// It panicked.
    #[error("a background task panicked: {0}")]
    Panicked(String),
    /// It returned, which none should.
    #[error("a background task ended")]
    Ended,
}

/// The first of `tasks` to end, and how; pending forever when there are none.
async fn first_to_end(tasks: &mut JoinSet<()>) -> TaskDied {
    match tasks.join_next().await {
        Some(Err(err)) if err.is_panic() => {
            let payload = err.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            TaskDied::Panicked(message)
        }
        Some(_) => TaskDied::Ended,
        None => std::future::pending().await,
    }
}

/// Who may call the HTTP API: bearer tokens, and session cookies when forward
/// authentication is configured.
fn authenticator(
    client: &kube::Client,
    config: &ServiceConfig,
    namespace: &str,
    metrics: &Arc<Metrics>,
) -> Result<Authenticator, StartError> {
    let auth = Authenticator::new(
        client.clone(),
        config.auth.clone(),
        namespace,
        metrics.clone(),
    );
    match &config.forward_auth {
        Some(forward) => auth
            .with_sessions(forward.clone())
            .map_err(StartError::ForwardAuth),
        None => Ok(auth),
    }
}

impl Service {
    /// Starts a replica against the API server `kube_config` points at.
    pub async fn start(
        kube_config: kube::Config,
        config: ServiceConfig,
    ) -> Result<Service, StartError> {
        let metrics = Arc::new(Metrics::new());
        let client = super::client::build(
            kube_config,
            config.kube_request_timeout,
            Some(metrics.clone()),
        )
        .map_err(StartError::Client)?;
        let renderer = JobRenderer::new(config.render.clone())?;
        let ns = config.namespace.clone();
        let cache = StatusCache::new();
        let record =
            RecordKeeper::new(Api::namespaced(client.clone(), &ns), &config.record_lease());
        let store = StatusStore::new(client.clone(), &ns, &config.status_configmap, cache.clone())
            .with_record(record.clone());
        let applied = migrate(&store).await?;
        if !applied.is_empty() {
            tracing::info!(versions = ?applied, "migrated the status ConfigMap");
        }

        let mut tasks = JoinSet::new();
        let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        tasks.spawn(
            cache
                .clone()
                .follow(cm_api, config.status_configmap.clone()),
        );
        tasks.spawn(record.follow(cache.clone()));
        let (steps, follow_steps) = StepSource::follow(client.clone(), &ns);
        tasks.spawn(follow_steps);

        let lease_cfg = lease::LeaseConfig::with_duration(
            &config.lease_name,
            &config.identity,
            config.lease_duration,
        );
        let lease_api: Api<Lease> = Api::namespaced(client.clone(), &ns);
        let (leading_tx, leading) = watch::channel(false);
        let (wanted_tx, wanted) = watch::channel(false);
        tasks.spawn(runner_wanted(cache.clone(), wanted_tx));
        tasks.spawn(lease::elect(
            lease_api.clone(),
            lease_cfg.clone(),
            leading_tx,
            wanted,
        ));

        let tls = config
            .http
            .tls
            .as_ref()
            .map(crate::http::server::TlsFiles::acceptor)
            .transpose()?;
        let (listener, addr) = bind(config.listen).await?;
        let probe_listener = match config.probe_listen {
            Some(probe) => Some(bind(probe).await?),
            None => None,
        };

        let events = EventHub::new(config.events.replay, config.events.lag, metrics.clone());
        tasks.spawn(events.clone().follow(cache.clone(), steps.clone()));
        if config.events.kubernetes_events {
            tasks.spawn(crate::events::kube_events::record(
                store.clone(),
                steps.clone(),
                client.clone(),
                config.identity.clone(),
            ));
        }
        let event_streams = Arc::new(tokio::sync::Semaphore::new(
            config.http.max_event_streams.max(1),
        ));
        let handoff = Arc::new(crate::step::PlanHandoff::default());
        let (jobs, follow_jobs) = crate::runner::watches::JobWatch::follow(&client, &ns);
        tasks.spawn(follow_jobs);
        let renderer = Arc::new(renderer);
        let (work, work_taken) = crate::preflight::work_channel();
        let preflights = Preflights::new(
            client.clone(),
            &ns,
            renderer.clone(),
            jobs.clone(),
            work.clone(),
        );
        let tethers = match config.tethers.clone() {
            Some(tether_config) => {
                let (tethers, follow_tethers) =
                    crate::tethers::start(client.clone(), tether_config);
                tasks.spawn(follow_tethers);
                tethers
            }
            None => crate::tethers::Tethers::disabled("the tether report is off in this replica"),
        };
        tasks.spawn(crate::http::tether_signals::follow(
            tethers.subscribe(),
            events.clone(),
            metrics.clone(),
        ));
        let runner = Arc::new(RunnerContext {
            client: client.clone(),
            config: config.runner_config(),
            store: store.clone(),
            renderer,
            leading: leading.clone(),
            metrics: metrics.clone(),
            handoff: handoff.clone(),
            jobs,
            completion: crate::tethers::CompletionGate::new(
                tethers.clone(),
                config.require_no_tethers,
            ),
        });
        tasks.spawn(engine::lead(runner.clone()));
        tasks.spawn(rollback_follower::lead(runner.clone()));
        let starts = Starts::new(
            client.clone(),
            &ns,
            config.step_policy.clone(),
            &config.record_lease(),
            store.clone(),
            handoff,
        );
        // With the service's other tasks: its shutdown ends a gate or a preflight run under
        // way (the status keeps `autoFire=preflight`, and the next login tries again).
        tasks.spawn(crate::preflight::auto_fire::serve(
            Gates {
                preflights: preflights.clone(),
                starts: starts.clone(),
                store: store.clone(),
            },
            work_taken,
        ));
        let ctx = Arc::new(HttpContext {
            auth: authenticator(&client, &config, &ns, &metrics)?,
            client,
            config: config.http_config(),
            store,
            steps,
            events,
            metrics,
            bodies: Default::default(),
            event_streams,
            caller_streams: crate::auth::StreamQuota::new(config.http.max_event_streams_per_caller),
            starts,
            auto_fire: AutoFire::new(work),
            preflights,
            tethers,
        });

        let (stop_http, stop_rx) = watch::channel(false);
        // Built once: cloning a `Router` per connection shares its route table, where
        // `axum::serve(listener, router)` rebuilt it for each (~10 KiB per event stream).
        let app = crate::http::router(ctx.clone());
        let http = tokio::spawn(crate::http::server::serve(
            listener,
            app,
            tls.clone(),
            config.http.clone(),
            stop_rx.clone(),
        ));
        let probes = probe_listener.map(|(listener, probe_addr)| {
            tracing::info!(%probe_addr, "probes are served on a port of their own");
            let probes = tokio::spawn(crate::http::server::serve(
                listener,
                crate::http::probe_router(ctx.clone()),
                tls,
                config.http.probes(),
                stop_rx,
            ));
            (probes, probe_addr)
        });
        tracing::info!(%addr, namespace = %config.namespace, identity = %config.identity, "catalyst-cutover is serving");
        Ok(Service {
            ctx,
            tls: config.http.tls.is_some(),
            addr,
            tasks,
            http,
            probes,
            stop_http,
            lease_api,
            lease: lease_cfg,
            leading,
        })
    }

    /// The HTTP API's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The probe port's address, when the service has one.
    pub fn probe_addr(&self) -> Option<SocketAddr> {
        self.probes.as_ref().map(|(_, addr)| *addr)
    }

    /// The HTTP API's base URL (`https` when serving a certificate).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Resolves once the status and step caches are synced (what `/readyz` reports).
    pub async fn ready(&self) {
        let mut status = self.ctx.store.cache().subscribe();
        let _ = status.wait_for(|snap| snap.synced).await;
        let mut steps = self.ctx.steps.subscribe();
        let _ = steps
            .wait_for(|state| !matches!(state, PlanState::Unsynced))
            .await;
    }

    /// The HTTP layer's context, which holds the status store, the event hub and the
    /// metrics (for the CLI's progress display).
    pub fn context(&self) -> &Arc<HttpContext> {
        &self.ctx
    }

    /// Whether this replica leads (holds the runner's Lease) now, and each change of it.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Stops gracefully: finishes the HTTP requests in flight, then gives up the Lease so
    /// another replica takes over at once. The step in flight is not touched: its Job runs
    /// on, and the next leader adopts it.
    pub async fn shutdown(mut self) {
        self.ctx.events.close();
        self.stop_http.send_replace(true);
        let grace = std::time::Duration::from_secs(5);
        if tokio::time::timeout(grace, &mut self.http).await.is_err() {
            self.http.abort();
        }
        if let Some((probes, _)) = &mut self.probes
            && tokio::time::timeout(grace, &mut *probes).await.is_err()
        {
            probes.abort();
        }
        self.tasks.abort_all();
        lease::release(&self.lease_api, &self.lease, None).await;
    }

    /// Resolves when one of the replica's background tasks (the runner, the election, the
    /// caches) has ended: each runs for the replica's whole life, so one that ended has
    /// died, and a replica without it must not go on (a leader renewing its Lease with no
    /// runner behind it would hold the cutover up). `serve` exits on it, so the Deployment
    /// restarts the pod.
    pub async fn died(&mut self) -> TaskDied {
        first_to_end(&mut self.tasks).await
    }

    /// Stops at once, as a crash would: no request finished, no Lease released.
    pub fn kill(mut self) {
        self.http.abort();
        if let Some((probes, _)) = &self.probes {
            probes.abort();
        }
        self.tasks.abort_all();
    }
}

/// A listener on `addr` and the address it got (port 0 picks a free one).
async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), StartError> {
    let listen_error = |source| StartError::Listen { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(listen_error)?;
    let local = listener.local_addr().map_err(listen_error)?;
    Ok((listener, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_or_ends_is_reported() {
        let mut tasks = JoinSet::new();
        tasks.spawn(std::future::pending());
        tasks.spawn(async { panic!("the runner broke") });
        let died = first_to_end(&mut tasks).await;
        assert!(
            matches!(&died, TaskDied::Panicked(m) if m == "the runner broke"),
            "{died}"
        );
        tasks.spawn(async {});
        assert!(matches!(first_to_end(&mut tasks).await, TaskDied::Ended));
        tasks.abort_all();
    }
}
