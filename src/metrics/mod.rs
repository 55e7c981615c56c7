//! The service's Prometheus metrics, served at `/metrics` in the text exposition format:
//! the cutover's phase and steps (derived from status changes, see [`crate::events`]),
//! orchestration overhead (from the runner), Kubernetes API requests (a layer on the
//! service's client, [`kube_layer`]), HTTP requests, event-stream subscribers and the
//! tether report (set from the report's watch, never by a scrape).

pub mod kube_layer;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use kube_layer::KubeMetricsLayer;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels `phase`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PhaseLabels {
    /// `idle`, `running`, `failed` or `complete`.
    pub phase: String,
}

/// Label `result` of a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RollbackLabels {
    /// `requested`, `rolled-back` or `failed`.
    pub result: String,
}

/// Labels `step`, `result`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StepResultLabels {
    /// The step name.
    pub step: String,
    /// `success`, `failed` or `skipped`.
    pub result: String,
}

/// Label `kind` of a tether.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabels {
    /// The tether kind's name, e.g. `image`.
    pub kind: String,
}

/// Label `step`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StepLabels {
    /// The step name.
    pub step: String,
}

/// Labels of a Kubernetes API request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KubeLabels {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, ...
    pub verb: String,
    /// The HTTP status, or `error` when no answer came.
    pub code: String,
}

/// Label `verb`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct VerbLabels {
    /// The request verb.
    pub verb: String,
}

/// The `route` label of a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The `method` label of an HTTP request: the method itself when it is one of HTTP's
/// registered methods, `other` for anything else, so that made-up methods sent by anyone
/// on the network cannot grow the label sets (and `/metrics`) without bound.
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Labels of an HTTP request the service answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct HttpLabels {
    /// The matched route template ([`UNMATCHED_ROUTE`] for 404s), never the raw path.
    pub route: String,
    /// [`method_label`] of the method.
    pub method: String,
    /// The status code.
    pub code: String,
}

/// Labels of an HTTP request's latency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// The matched route.
    pub route: String,
    /// The method.
    pub method: String,
}

fn step_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 14))
}

fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric of one replica.
pub struct Metrics {
    registry: Registry,
    phase: Family<PhaseLabels, Gauge>,
    step_duration: Family<StepResultLabels, Histogram, fn() -> Histogram>,
    step_results: Family<StepResultLabels, Counter>,
    step_attempts: Family<StepLabels, Counter>,
    overhead: Histogram,
    overhead_mark: Mutex<Option<Instant>>,
    kube_requests: Family<KubeLabels, Counter>,
    kube_errors: Family<VerbLabels, Counter>,
    kube_total: AtomicU64,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    sse_subscribers: Gauge,
    rollbacks: Family<RollbackLabels, Counter>,
    rollback_pending_nodes: Gauge,
    auth_reviews: Gauge,
    tethers: Family<KindLabels, Gauge>,
    tethers_synced: Gauge,
    tether_sources_unseen: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric registered, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("catalyst_cutover");
        let m = Metrics {
            phase: Family::default(),
            step_duration: Family::new_with_constructor(step_buckets),
            step_results: Family::default(),
            step_attempts: Family::default(),
            overhead: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            overhead_mark: Mutex::new(None),
            kube_requests: Family::default(),
            kube_errors: Family::default(),
            kube_total: AtomicU64::new(0),
            http_requests: Family::default(),
            http_latency: Family::new_with_constructor(latency_buckets),
            sse_subscribers: Gauge::default(),
            rollbacks: Family::default(),
            rollback_pending_nodes: Gauge::default(),
            auth_reviews: Gauge::default(),
            tethers: Family::default(),
            tethers_synced: Gauge::default(),
            tether_sources_unseen: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "phase",
            "1 for the cutover's current phase, 0 for the others",
            m.phase.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Duration of step attempts, from the status ConfigMap's startedAt/finishedAt",
            m.step_duration.clone(),
        );
        registry.register(
            "step_results",
            "Step attempts ended, by step and result",
            m.step_results.clone(),
        );
        registry.register(
            "step_attempts",
            "Step attempts started, by step",
            m.step_attempts.clone(),
        );
        registry.register(
            "orchestration_overhead_seconds",
            "From a step's Job seen terminal to the next step's Job created",
            m.overhead.clone(),
        );
        registry.register(
            "kube_api_requests",
            "Requests to the Kubernetes API server, by verb and status code",
            m.kube_requests.clone(),
        );
        registry.register(
            "kube_api_errors",
            "Kubernetes API requests that got no answer or a server error, by verb",
            m.kube_errors.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status code",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (to the response head), by route and method",
            m.http_latency.clone(),
        );
        registry.register(
            "sse_subscribers",
            "Clients connected to the live event stream",
            m.sse_subscribers.clone(),
        );
        registry.register(
            "rollbacks",
            "Registry-pivot rollbacks requested, rolled back and failed",
            m.rollbacks.clone(),
        );
        registry.register(
            "rollback_pending_nodes",
            "Nodes that had not acknowledged the latest registry-pivot rollback when it ended",
            m.rollback_pending_nodes.clone(),
        );
        registry.register(
            "auth_reviews_in_flight",
            "TokenReviews and SubjectAccessReviews waiting for the API server",
            m.auth_reviews.clone(),
        );
        registry.register(
            "tethers",
            "References the cluster still holds to an upstream host, by kind",
            m.tethers.clone(),
        );
        registry.register(
            "tethers_synced",
            "1 once every source of the tether report has listed once (before that the counts mean 'not known yet')",
            m.tethers_synced.clone(),
        );
        registry.register(
            "tether_sources_unseen",
            "Sources of the tether report it cannot see (no rights, kind not installed): their tethers are not counted",
            m.tether_sources_unseen.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Sets the phase gauge to `phase`.
    pub fn set_phase(&self, phase: crate::status::Phase) {
        use crate::status::Phase;
        for p in Phase::ALL {
            let value = i64::from(p == phase);
            self.phase
                .get_or_create(&PhaseLabels {
                    phase: p.as_str().to_owned(),
                })
                .set(value);
        }
    }

    /// Sets the tether gauges: `counts` names every kind (those with none at 0, so that
    /// each kind's series exists from the first report), `synced` whether every source has
    /// listed, `unseen` the sources the report cannot see.
    pub fn set_tethers<'k>(
        &self,
        counts: impl IntoIterator<Item = (&'k str, usize)>,
        synced: bool,
        unseen: usize,
    ) {
        for (kind, count) in counts {
            self.tethers
                .get_or_create(&KindLabels {
                    kind: kind.to_owned(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.tethers_synced.set(i64::from(synced));
        self.tether_sources_unseen
            .set(i64::try_from(unseen).unwrap_or(i64::MAX));
    }

    /// A rollback of the registry pivot was requested or ended (`result`), with `pending`
    /// nodes that had not acknowledged it.
    pub fn rollback(&self, result: &str, pending: usize) {
        self.rollbacks
            .get_or_create(&RollbackLabels {
                result: result.to_owned(),
            })
            .inc();
        self.rollback_pending_nodes
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// A step attempt started.
    pub fn step_started(&self, step: &str) {
        self.step_attempts
            .get_or_create(&StepLabels {
                step: step.to_owned(),
            })
            .inc();
    }

    /// A step attempt ended with `result` after `duration` (when known).
    pub fn step_ended(&self, step: &str, result: &str, duration: Option<Duration>) {
        let labels = StepResultLabels {
            step: step.to_owned(),
            result: result.to_owned(),
        };
        self.step_results.get_or_create(&labels).inc();
        if let Some(duration) = duration {
            self.step_duration
                .get_or_create(&labels)
                .observe(duration.as_secs_f64());
        }
    }

    /// The runner saw a step's Job (or wait) end: the overhead clock starts.
    pub fn step_terminal_seen(&self) {
        if let Ok(mut mark) = self.overhead_mark.lock() {
            *mark = Some(Instant::now());
        }
    }

    /// The runner created (or adopted) the next step's Job: the overhead clock stops.
    pub fn next_job_created(&self) {
        let started = self.overhead_mark.lock().ok().and_then(|mut m| m.take());
        if let Some(started) = started {
            self.overhead.observe(started.elapsed().as_secs_f64());
        }
    }

    /// A Kubernetes API request with `verb` ended with HTTP `status` (`None`: no answer).
    pub fn kube_request(&self, verb: &str, status: Option<u16>) {
        self.kube_total.fetch_add(1, Ordering::Relaxed);
        let code = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.kube_requests
            .get_or_create(&KubeLabels {
                verb: verb.to_owned(),
                code,
            })
            .inc();
        if status.is_none_or(|s| s >= 500) {
            self.kube_errors
                .get_or_create(&VerbLabels {
                    verb: verb.to_owned(),
                })
                .inc();
        }
    }

    /// Kubernetes API requests made so far (every verb and code).
    pub fn kube_requests_total(&self) -> u64 {
        self.kube_total.load(Ordering::Relaxed)
    }

    /// An HTTP request answered: `route` is a route template or [`UNMATCHED_ROUTE`],
    /// `method` a [`method_label`].
    pub fn http_request(&self, route: &str, method: &'static str, code: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                code: code.to_string(),
            })
            .inc();
        self.http_latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// An event-stream client connected; the guard counts it until dropped.
    pub fn sse_subscriber(&self) -> InFlight {
        InFlight::new(&self.sse_subscribers)
    }

    /// A TokenReview or SubjectAccessReview sent; the guard counts it until dropped.
    pub fn auth_review(&self) -> InFlight {
        InFlight::new(&self.auth_reviews)
    }
}

/// Counts one in a gauge while alive.
pub struct InFlight(Gauge);

impl InFlight {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric_and_counts() {
        let m = Metrics::new();
        m.set_phase(crate::status::Phase::Running);
        m.step_started("gitea-mirror");
        m.step_ended("gitea-mirror", "success", Some(Duration::from_secs(3)));
        m.kube_request("get", Some(200));
        m.kube_request("create", None);
        m.kube_request("list", Some(503));
        m.http_request("/cutover", "GET", 200, Duration::from_millis(2));
        let guard = m.sse_subscriber();
        m.rollback("failed", 2);
        m.set_tethers([("image", 3), ("vcluster", 0)], true, 1);
        let text = m.encode();
        for name in [
            "catalyst_cutover_phase{phase=\"running\"} 1",
            "catalyst_cutover_phase{phase=\"idle\"} 0",
            "catalyst_cutover_step_attempts_total{step=\"gitea-mirror\"} 1",
            "catalyst_cutover_step_results_total{step=\"gitea-mirror\",result=\"success\"} 1",
            "catalyst_cutover_step_duration_seconds_count",
            "catalyst_cutover_kube_api_errors_total{verb=\"create\"} 1",
            "catalyst_cutover_http_requests_total{route=\"/cutover\",method=\"GET\",code=\"200\"} 1",
            "catalyst_cutover_sse_subscribers 1",
            "catalyst_cutover_orchestration_overhead_seconds_count 0",
            "catalyst_cutover_phase{phase=\"rolled-back\"} 0",
            "catalyst_cutover_rollbacks_total{result=\"failed\"} 1",
            "catalyst_cutover_rollback_pending_nodes 2",
            "catalyst_cutover_tethers{kind=\"image\"} 3",
            "catalyst_cutover_tethers{kind=\"vcluster\"} 0",
            "catalyst_cutover_tethers_synced 1",
            "catalyst_cutover_tether_sources_unseen 1",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert_eq!(m.kube_requests_total(), 3);
        drop(guard);
        assert!(m.encode().contains("catalyst_cutover_sse_subscribers 0"));
    }

    #[test]
    fn made_up_methods_share_one_label() {
        for (method, label) in [
            ("GET", "GET"),
            ("DELETE", "DELETE"),
            ("PROPFIND", "other"),
            ("X-1234", "other"),
            ("get", "other"),
        ] {
            let method = http::Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(method_label(&method), label, "{method}");
        }
    }

    #[test]
    fn overhead_is_observed_from_terminal_to_next_job() {
        let m = Metrics::new();
        m.next_job_created();
        m.step_terminal_seen();
        m.next_job_created();
        m.next_job_created();
        assert!(
            m.encode()
                .contains("catalyst_cutover_orchestration_overhead_seconds_count 1")
        );
    }
}
