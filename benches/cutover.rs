//! The whole cutover at the API server's floor, printed rather than asserted.
//!
//! Against `CUTOVER_TEST_KUBECONFIG` when it is set (a real kube-apiserver), else against
//! the embedded sandbox API server. Each run gets a namespace of its own holding the chart's
//! eleven steps (ten `job` steps and the `daemonset-wait` step `registry-pivot` fourth), a
//! fresh service, and the sandbox's simulator as an API client for three nodes whose
//! registry-pivot agents acknowledge at once. Each Job is finished at once by a stand-in
//! acting through the API: one status write as soon as its watch sees the Job (the
//! simulator's own Job controller and kubelet, which need several requests per Job, finish
//! them instead with `--sim-jobs`).
//!
//! It prints the whole run (POST /cutover sent → the service's status cache shows the
//! cutover complete) over the runs (median, minimum, maximum), and per step the runner's
//! critical path as its own trace events stamp it: the status write, the Job create and the
//! completion seen, with the Kubernetes API requests the service made during the step.
//!
//! With `--real-controllers` (a plane started with `K8S_CONTROLLERS=job,daemonset`), the
//! cluster's own Job and DaemonSet controllers move the Jobs and the simulator plays only the
//! nodes; it then also prints, per Job step, where the time goes (controller, pod, service).
//!
//! `cargo bench --bench cutover` (`-- --runs N`, default 7; `-- --sim-jobs`; `-- --real-controllers`; `-- --timeline`
//! also prints the median run's requests with when each was sent and answered).

use catalyst_cutover::contract;
use catalyst_cutover::demo::{AgentConfig, Agents};
use catalyst_cutover::metrics::Metrics;
use catalyst_cutover::metrics::kube_layer::resource_path;
use catalyst_cutover::runner::job::{JobState, job_state};
use catalyst_cutover::service::{Service, ServiceConfig};
use catalyst_cutover::status::Phase;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::wait::await_condition;
use kube::runtime::watcher;
use kube_sandbox::api::{ApiServer, ApiServerConfig};
use kube_sandbox::sim::{Controllers, SimConfig, Simulator};
use serde_json::json;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Hang guard for one run; not a speed target.
const GUARD: Duration = Duration::from_secs(60);
/// The registry-pivot DaemonSet of the `daemonset-wait` step.
const DAEMONSET: &str = "registry-pivot";
/// Simulated nodes acknowledging the registry flip.
const NODES: usize = 3;
/// The chart's steps in order; `true` marks the `daemonset-wait` step.
const STEPS: [(&str, bool); 11] = [
    ("gitea-mirror", false),
    ("harbor-projects", false),
    ("harbor-prewarm", false),
    ("registry-pivot", true),
    ("flux-gitrepository-patch", false),
    ("helmrepository-patches", false),
    ("catalyst-api-env-patch", false),
    ("egress-block-test", false),
    ("gitea-token-mint", false),
    ("vcluster-registry-pivot", false),
    ("crossplane-provider-pivot", false),
];
/// The whole-run target of the issue.
const TARGET: Duration = Duration::from_millis(150);

/// One runner trace event the bench uses, stamped on arrival.
#[derive(Debug, Clone)]
struct Mark {
    at: Instant,
    what: What,
    step: String,
    /// The service's Kubernetes API requests so far.
    requests: u64,
    /// For [`What::Request`] and [`What::Response`]: the verb and the path, shortened.
    request: Option<String>,
    /// For [`What::Response`]: how long the request took.
    took: Option<Duration>,
}

/// When the instant stand-in's write finishing each step's Job returned.
type Finished = Arc<Mutex<BTreeMap<String, Instant>>>;

/// When the bench's own watches first saw each step's pod made, its pod ended and its Job
/// `Complete`, by step: where a Job step's time goes when controllers and a kubelet move it.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    pod_made: Option<Instant>,
    pod_ended: Option<Instant>,
    complete: Option<Instant>,
}

/// [`Seen`] of every step of a run.
type Observed = Arc<Mutex<BTreeMap<String, Seen>>>;

/// Watches the namespace's pods and Jobs and stamps in `observed` when each step's pod shows
/// up, when it has `Succeeded`, and when its Job is `Complete` (and, as the step's end, in
/// `finished`), until aborted.
async fn observe(client: kube::Client, ns: String, observed: Observed, finished: Finished) {
    let step_of = |labels: Option<&BTreeMap<String, String>>| {
        labels
            .and_then(|l| l.get(contract::LABEL_JOB_STEP))
            .cloned()
    };
    let pods = watcher(
        Api::<Pod>::namespaced(client.clone(), &ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects()
    .for_each(|pod| {
        if let Ok(pod) = pod
            && let Some(step) = step_of(pod.metadata.labels.as_ref())
            && let Ok(mut observed) = observed.lock()
        {
            let seen = observed.entry(step).or_default();
            seen.pod_made.get_or_insert_with(Instant::now);
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if phase == Some("Succeeded") {
                seen.pod_ended.get_or_insert_with(Instant::now);
            }
        }
        futures::future::ready(())
    });
    let jobs = watcher(
        Api::<Job>::namespaced(client, &ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects()
    .for_each(|job| {
        if let Ok(job) = job
            && job_state(&job) == JobState::Succeeded
            && let Some(step) = step_of(job.metadata.labels.as_ref())
        {
            let now = Instant::now();
            if let Ok(mut observed) = observed.lock() {
                observed
                    .entry(step.clone())
                    .or_default()
                    .complete
                    .get_or_insert(now);
            }
            if let Ok(mut finished) = finished.lock() {
                finished.entry(step).or_insert(now);
            }
        }
        futures::future::ready(())
    });
    futures::join!(pods, jobs);
}

/// Finishes every Job of `api`'s namespace as soon as the watch sees it, as a Job controller
/// that counts at once would: its pod (controlled by the Job, labelled as the controller
/// labels it) created and set `Succeeded`, then the Job's status `Complete` in one write;
/// stamps that write's return in `finished`; sends on `synced` once listed. Without the pod
/// the runner would wait for its outputs until it gives up on them.
async fn finish_jobs(api: Api<Job>, finished: Finished, synced: tokio::sync::oneshot::Sender<()>) {
    let stream = watcher(api.clone(), watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let mut synced = Some(synced);
    let mut handled = std::collections::BTreeSet::new();
    while let Some(event) = stream.next().await {
        let job = match event {
            Ok(watcher::Event::InitDone) => {
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
                continue;
            }
            Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) => job,
            _ => continue,
        };
        let name = job.metadata.name.clone().unwrap_or_default();
        if job_state(&job) != JobState::Running || !handled.insert(name.clone()) {
            continue;
        }
        let step = job
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(contract::LABEL_JOB_STEP))
            .cloned()
            .unwrap_or_default();
        let (api, finished) = (api.clone(), finished.clone());
        let pods: Api<Pod> = Api::namespaced(
            api.clone().into_client(),
            job.metadata.namespace.as_deref().unwrap_or_default(),
        );
        tokio::spawn(async move {
            let now = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            if let Err(err) = succeeded_pod(&pods, &job, &now).await {
                eprintln!("the instant stand-in could not run Job {name}'s pod: {err}");
                return;
            }
            let patch = json!({"status": {
                "startTime": now, "completionTime": now, "succeeded": 1,
                "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now}]
            }});
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    if let Ok(mut finished) = finished.lock() {
                        finished.insert(step, Instant::now());
                    }
                }
                Err(err) => eprintln!("the instant stand-in could not finish Job {name}: {err}"),
            }
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    /// The status write that records the step running returned.
    Recorded,
    /// The step's Job create returned.
    Created,
    /// The runner saw the step end successfully.
    Succeeded,
    /// The service sent a Kubernetes API request.
    Request,
    /// The answer to one came back.
    Response,
    /// A simulated registry-pivot agent's acknowledgement write returned.
    Ack,
    /// The start's status write returned (the 202 goes out).
    Started,
    /// The runner took the election Lease.
    Leader,
}

/// Collects the runner's [`Mark`]s; the metrics slot names the service of the current run.
#[derive(Clone, Default)]
struct Recorder {
    marks: Arc<Mutex<Vec<Mark>>>,
    metrics: Arc<Mutex<Option<Arc<Metrics>>>>,
}

/// The span field the runner names its step with.
#[derive(Default)]
struct StepField(Option<String>);

#[derive(Default)]
struct Fields {
    message: String,
    step: Option<String>,
    verb: Option<String>,
    path: Option<String>,
    micros: Option<u64>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "micros" {
            self.micros = Some(value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &value)
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            // An agent's acknowledgement is marked with its node.
            "step" | "node" => self.step = Some(format!("{value:?}").trim_matches('"').to_owned()),
            "verb" => self.verb = Some(format!("{value:?}").trim_matches('"').to_owned()),
            "path" => self.path = Some(format!("{value:?}").trim_matches('"').to_owned()),
            _ => {}
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for Recorder
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(step), Some(span)) = (fields.step, ctx.span(id)) {
            span.extensions_mut().insert(StepField(Some(step)));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let at = Instant::now();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let what = match fields.message.as_str() {
            "step recorded as running" => What::Recorded,
            "created the Job" => What::Created,
            "step succeeded" => What::Succeeded,
            "kube request sent" => What::Request,
            "kube response received" => What::Response,
            "registry-pivot acknowledged" => What::Ack,
            "cutover started" => What::Started,
            "became the leader" => What::Leader,
            _ => return,
        };
        let request = matches!(what, What::Request | What::Response).then(|| {
            format!(
                "{} {}",
                fields.verb.as_deref().unwrap_or("?"),
                short_path(fields.path.as_deref().unwrap_or("?"))
            )
        });
        let step = fields.step.or_else(|| {
            ctx.event_scope(event)?
                .find_map(|span| span.extensions().get::<StepField>()?.0.clone())
        });
        let requests = self
            .metrics
            .lock()
            .ok()
            .and_then(|m| m.as_ref().map(|m| m.kube_requests_total()))
            .unwrap_or(0);
        // A request belongs to the step whose span it falls in by time, not by trace scope:
        // the status writes run in tasks of their own.
        let step = if matches!(
            what,
            What::Request | What::Response | What::Started | What::Leader
        ) {
            Some(step.unwrap_or_default())
        } else {
            step
        };
        if let (Some(step), Ok(mut marks)) = (step, self.marks.lock()) {
            marks.push(Mark {
                at,
                what,
                step,
                requests,
                request,
                took: fields.micros.map(Duration::from_micros),
            });
        }
    }
}

/// The cluster every run talks to.
struct Cluster {
    sandbox: Option<ApiServer>,
    kubeconfig: Kubeconfig,
    client: kube::Client,
}

impl Cluster {
    async fn start() -> BenchResult<Cluster> {
        let (sandbox, kubeconfig) = match std::env::var(kube_sandbox::testing::ENV_KUBECONFIG) {
            Ok(path) if !path.is_empty() => (None, Kubeconfig::read_from(&path)?),
            _ => {
                let server = ApiServer::start(ApiServerConfig::default()).await?;
                let kubeconfig = server.kubeconfig(server.admin_token());
                (Some(server), kubeconfig)
            }
        };
        // The stand-in, the simulator and the agents act as Go clients would: kubectl and
        // client-go set TCP_NODELAY, as the service's own client does.
        let client = catalyst_cutover::service::client::build(
            Self::config_of(&kubeconfig).await?,
            catalyst_cutover::request_timeout::DEFAULT_REQUEST_TIMEOUT,
            None,
        )?;
        Ok(Cluster {
            sandbox,
            kubeconfig,
            client,
        })
    }

    async fn config_of(kubeconfig: &Kubeconfig) -> BenchResult<kube::Config> {
        Ok(
            kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &KubeConfigOptions::default())
                .await?,
        )
    }

    fn name(&self) -> &'static str {
        if self.sandbox.is_some() {
            "the embedded sandbox API server"
        } else {
            "the kube-apiserver of CUTOVER_TEST_KUBECONFIG"
        }
    }
}

/// Per step of one run: status write, Job create, completion seen, requests.
#[derive(Debug, Clone, Default)]
struct StepFigures {
    write: Duration,
    create: Option<Duration>,
    seen: Duration,
    /// Of `seen`: from the step's end to the runner seeing it. For a Job, from the instant
    /// stand-in's write returning; for the `daemonset-wait` step, from the service's status
    /// cache holding the last acknowledgement.
    delivery: Option<Duration>,
    requests: u64,
    /// The requests the service sent in that span, in order (shortened).
    sent: Vec<String>,
    /// Job create returned -> the bench's watch saw the step's pod (the Job controller).
    pod_made: Option<Duration>,
    /// Pod seen -> seen `Succeeded` (binding and the kubelet's run).
    pod_ran: Option<Duration>,
    /// Pod seen `Succeeded` -> its Job seen `Complete` (the Job controller counting it).
    counted: Option<Duration>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(7)
        .max(5);
    let sim_jobs = if args.iter().any(|a| a == "--real-controllers") {
        JobsBy::Controllers
    } else if args.iter().any(|a| a == "--sim-jobs") {
        JobsBy::Simulator
    } else {
        JobsBy::StandIn
    };
    let timeline = args.iter().any(|a| a == "--timeline");
    let recorder = Recorder::default();
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("catalyst_cutover::runner", tracing::Level::DEBUG)
        .with_target("catalyst_cutover::preflight::start", tracing::Level::INFO)
        .with_target("catalyst_cutover::metrics", tracing::Level::TRACE)
        .with_target("catalyst_cutover::demo", tracing::Level::DEBUG);
    let subscriber = tracing_subscriber::registry().with(tracing_subscriber::Layer::with_filter(
        recorder.clone(),
        filter,
    ));
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        eprintln!("bench cutover: cannot install the trace recorder");
        return ExitCode::FAILURE;
    }
    // Two workers, as the two cores the targets are stated for.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("bench cutover: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(runs, sim_jobs, timeline, &recorder)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench cutover: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    runs: usize,
    sim_jobs: JobsBy,
    timeline: bool,
    recorder: &Recorder,
) -> BenchResult<()> {
    let cluster = Cluster::start().await?;
    println!(
        "cutover bench: {} steps ({} job + {} daemonset-wait) against {}, {NODES} acknowledging nodes \
         from the sandbox's simulator as an API client, Jobs finished by {}; {runs} runs, a fresh \
         namespace and service each",
        STEPS.len(),
        STEPS.iter().filter(|(_, wait)| !*wait).count(),
        STEPS.iter().filter(|(_, wait)| *wait).count(),
        cluster.name(),
        match sim_jobs {
            JobsBy::Simulator => "the simulator's Job controller and kubelet (run time zero)",
            JobsBy::Controllers =>
                "the cluster's Job and DaemonSet controllers, the simulator playing the nodes (run time zero)",
            JobsBy::StandIn =>
                "an instant stand-in (its succeeded pod, then one status write per Job)",
        }
    );
    let mut totals = Vec::with_capacity(runs);
    let mut per_step: Vec<Vec<StepFigures>> = vec![Vec::new(); STEPS.len()];
    let mut all_runs = Vec::with_capacity(runs);
    for round in 0..runs {
        let run = one_run(&cluster, sim_jobs, recorder).await?;
        println!(
            "   run {}: {} (of which the completion write after the last step: {})",
            round + 1,
            ms(run.total),
            ms(run.tail)
        );
        totals.push(run.total);
        for (i, figures) in run.steps.iter().enumerate() {
            per_step[i].push(figures.clone());
        }
        all_runs.push(run);
    }
    totals.sort();
    println!(
        "\nwhole cutover (POST /cutover sent -> status complete): median {}, min {}, max {} (target <= {}: {})",
        ms(median(&totals)),
        ms(totals[0]),
        ms(totals[totals.len() - 1]),
        ms(TARGET),
        if median(&totals) <= TARGET {
            "PASS"
        } else {
            "MISS"
        }
    );
    let median_of = |pick: fn(&Run) -> Option<Duration>| {
        let mut v: Vec<Duration> = all_runs.iter().filter_map(pick).collect();
        v.sort();
        v.get(v.len() / 2).copied()
    };
    let show = |d: Option<Duration>| d.map_or_else(|| "-".to_owned(), ms);
    println!(
        "\nstart, median over the runs: POST /cutover sent -> the start's status write returned (202): {}; \
         -> the runner holds the election Lease: {} (in the first step's status write below)",
        show(median_of(|r| r.start)),
        show(median_of(|r| r.lease)),
    );
    println!(
        "\nper step, median over the runs (status write: previous step's end seen (the first step: the \
         start's write returned) -> the write recording \
         this step as running returned; Job create: -> the create returned; completion seen: -> the runner \
         saw the step succeed; end -> seen: of that, from the instant stand-in's write finishing the Job \
         returning, or from the service's status cache holding the last node acknowledgement; requests: \
         the service's Kubernetes API requests in that span)"
    );
    println!(
        "   {:<26} {:>12} {:>12} {:>16} {:>22} {:>9}",
        "step", "status write", "Job create", "completion seen", "end -> seen", "requests"
    );
    for (i, (name, _)) in STEPS.iter().enumerate() {
        let figures = &per_step[i];
        let pick = |f: fn(&StepFigures) -> Duration| {
            let mut v: Vec<Duration> = figures.iter().map(f).collect();
            v.sort();
            median(&v)
        };
        let create = if figures.iter().all(|f| f.create.is_none()) {
            "-".to_owned()
        } else {
            ms(pick(|f| f.create.unwrap_or_default()))
        };
        let delivery = if figures.iter().all(|f| f.delivery.is_none()) {
            "-".to_owned()
        } else {
            ms(pick(|f| f.delivery.unwrap_or_default()))
        };
        let mut requests: Vec<u64> = figures.iter().map(|f| f.requests).collect();
        requests.sort();
        println!(
            "   {:<26} {:>12} {:>12} {:>16} {:>22} {:>9}",
            name,
            ms(pick(|f| f.write)),
            create,
            ms(pick(|f| f.seen)),
            delivery,
            requests.get(requests.len() / 2).copied().unwrap_or(0)
        );
    }
    if sim_jobs != JobsBy::StandIn {
        print_controllers_share(&per_step);
    }
    all_runs.sort_by_key(|r| r.total);
    if let Some(run) = all_runs.get(all_runs.len() / 2) {
        println!(
            "\nthe median run's requests, per step in the order sent (the critical path is the status \
             write (update configmaps) and the Job create (create jobs); the rest run beside it)"
        );
        for ((name, _), figures) in STEPS.iter().zip(&run.steps) {
            println!("   {:<26} {}", name, figures.sent.join(", "));
        }
        println!("   {:<26} {}", "(completion)", run.tail_sent.join(", "));
        if timeline {
            print_timeline("median", run);
            if let Some(slowest) = all_runs.last() {
                print_timeline("slowest", slowest);
            }
        }
    }
    if let Some(server) = cluster.sandbox {
        server.shutdown().await;
    }
    Ok(())
}

/// Who finishes the Jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobsBy {
    /// A stand-in writing each Job's completion at once.
    StandIn,
    /// The simulator's own Job controller and kubelet (`--sim-jobs`).
    Simulator,
    /// The cluster's real Job and DaemonSet controllers, the simulator playing only the
    /// nodes (`--real-controllers`, on a plane started with `K8S_CONTROLLERS`).
    Controllers,
}

/// What one run measured.
struct Run {
    /// POST sent -> the status cache shows the cutover complete.
    total: Duration,
    /// Per step.
    steps: Vec<StepFigures>,
    /// From the last step's success seen to the status cache showing the cutover complete.
    tail: Duration,
    /// The requests the service sent in `tail`.
    tail_sent: Vec<String>,
    /// Every mark of the run, and when the POST was sent.
    marks: Vec<Mark>,
    started: Instant,
    /// POST sent -> the start's status write returned (discovery, checks, the write).
    start: Option<Duration>,
    /// The start's write returned -> the runner holds the election Lease.
    lease: Option<Duration>,
}

/// One cutover in a namespace of its own; returns the whole run and the per-step figures.
async fn one_run(cluster: &Cluster, sim_jobs: JobsBy, recorder: &Recorder) -> BenchResult<Run> {
    let ns = format!("cb-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    namespaces
        .create(&PostParams::default(), &namespace)
        .await?;
    let result = run_in(cluster, sim_jobs, recorder, &ns).await;
    // No kubelet is left to finish the pods' graceful deletion, which would keep the
    // namespace terminating, and its controller retrying, for good.
    let _ = Api::<Pod>::namespaced(cluster.client.clone(), &ns)
        .delete_collection(
            &DeleteParams::default().grace_period(0),
            &Default::default(),
        )
        .await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    // The next run starts on a quiet API server: the namespace controller deleting this
    // one's objects would otherwise write to etcd beside it.
    let gone = await_condition(namespaces, &ns, |n: Option<&Namespace>| n.is_none());
    tokio::time::timeout(GUARD, gone)
        .await
        .map_err(|_| format!("namespace {ns} was not deleted"))??;
    result
}

async fn run_in(
    cluster: &Cluster,
    sim_jobs: JobsBy,
    recorder: &Recorder,
    ns: &str,
) -> BenchResult<Run> {
    let client = cluster.client.clone();
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    daemonsets
        .create(
            &PostParams::default(),
            // On the nodes of this run's own pool (named after its namespace).
            &kube_sandbox::testing::daemonset(DAEMONSET, "busybox:1.36", ns),
        )
        .await?;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for (i, (name, wait)) in STEPS.iter().enumerate() {
        configmaps
            .create(&PostParams::default(), &step_configmap(i + 1, name, *wait)?)
            .await?;
    }
    let sim = Simulator::start(
        client.clone(),
        SimConfig {
            namespace: Some(ns.to_owned()),
            nodes: NODES,
            pool: ns.to_owned(),
            default_run: Duration::ZERO,
            // The instant stand-in is the only one to act on the Jobs, so no pod is made.
            controllers: match sim_jobs {
                JobsBy::StandIn => Controllers::DaemonSets,
                JobsBy::Simulator => Controllers::All,
                JobsBy::Controllers => Controllers::NodesOnly,
            },
        },
    )
    .await?;
    let agents = Agents::start(
        client.clone(),
        AgentConfig {
            namespace: Some(ns.to_owned()),
            daemonset: DAEMONSET.to_owned(),
            record_lease: (ns.to_owned(), ServiceConfig::new(ns).record_lease()),
            ack_delay: Duration::ZERO,
            never_ack: Default::default(),
            settings: AgentConfig::demo_settings(),
        },
    );
    let finished: Finished = Finished::default();
    let stand_in = if sim_jobs != JobsBy::StandIn {
        None
    } else {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(finish_jobs(
            Api::namespaced(client.clone(), ns),
            finished.clone(),
            tx,
        ));
        tokio::time::timeout(GUARD, rx)
            .await
            .map_err(|_| "the stand-in's Job watch did not sync")??;
        Some(task)
    };
    // The DaemonSet is rolled out before the cutover, as on a cluster the chart installed.
    let rolled_out = |ds: Option<&DaemonSet>| {
        ds.and_then(|d| d.status.as_ref()).is_some_and(|s| {
            s.desired_number_scheduled == NODES as i32 && s.number_ready == NODES as i32
        })
    };
    tokio::time::timeout(GUARD, await_condition(daemonsets, DAEMONSET, rolled_out))
        .await
        .map_err(|_| "the DaemonSet did not roll out")??;
    let config = Cluster::config_of(&cluster.kubeconfig).await?;
    let service = Service::start(config, ServiceConfig::new(ns)).await?;
    service.ready().await;
    if let Ok(mut slot) = recorder.metrics.lock() {
        *slot = Some(service.context().metrics.clone());
    }
    if let Ok(mut marks) = recorder.marks.lock() {
        marks.clear();
    }
    let mut status = service.context().store.cache().subscribe();
    let acks = tokio::spawn(last_ack(status.clone(), finished.clone()));
    let observed = Observed::default();
    let observer = (sim_jobs != JobsBy::StandIn).then(|| {
        tokio::spawn(observe(
            client.clone(),
            ns.to_owned(),
            observed.clone(),
            finished.clone(),
        ))
    });
    let http = reqwest::Client::new();
    let requests_before = service.context().metrics.kube_requests_total();
    let started = Instant::now();
    let response = http
        .post(format!("{}/cutover", service.url()))
        .header("content-type", "application/json")
        .send()
        .await?;
    if response.status() != reqwest::StatusCode::ACCEPTED {
        return Err(format!("POST /cutover answered {}", response.status()).into());
    }
    let ended = tokio::time::timeout(
        GUARD,
        status.wait_for(|s| matches!(s.phase(), Phase::Complete | Phase::Failed)),
    )
    .await
    .map_err(|_| "the cutover did not finish")??
    .phase();
    let ended_at = Instant::now();
    let total = ended_at.duration_since(started);
    acks.abort();
    if ended != Phase::Complete {
        return Err("the cutover failed".into());
    }
    let marks = recorder
        .marks
        .lock()
        .map(|m| m.clone())
        .map_err(|_| "the trace recorder panicked")?;
    // The service keeps the Job steps' log tails once the run is over: let it fall quiet
    // before the namespace goes.
    let metrics = service.context().metrics.clone();
    tokio::time::timeout(GUARD, async {
        let mut seen = metrics.kube_requests_total();
        let mut quiet = 0;
        while quiet < 3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = metrics.kube_requests_total();
            quiet = if now == seen { quiet + 1 } else { 0 };
            seen = now;
        }
    })
    .await
    .map_err(|_| "the service did not fall quiet after the run")?;
    service.shutdown().await;
    agents.shutdown().await;
    sim.shutdown().await;
    if let Some(task) = stand_in {
        task.abort();
    }
    if let Some(task) = observer {
        task.abort();
    }
    let finished = finished.lock().map(|f| f.clone()).unwrap_or_default();
    let observed = observed.lock().map(|o| o.clone()).unwrap_or_default();
    let last = marks
        .iter()
        .filter(|m| m.what == What::Succeeded)
        .map(|m| m.at)
        .max()
        .unwrap_or(started);
    let mark_at = |what: What| marks.iter().find(|m| m.what == what).map(|m| m.at);
    let start_written = mark_at(What::Started);
    let leader = mark_at(What::Leader);
    Ok(Run {
        total,
        start: start_written.map(|at| at.saturating_duration_since(started)),
        lease: start_written
            .zip(leader)
            .map(|(from, to)| to.saturating_duration_since(from)),
        // The first step's figures begin where the start's write returned: what comes
        // before is the start, printed on its own line.
        steps: figures(
            &marks,
            &finished,
            &observed,
            start_written.unwrap_or(started),
            requests_before,
        )?,
        tail: ended_at.saturating_duration_since(last),
        tail_sent: sent_between(&marks, last, ended_at),
        marks,
        started,
    })
}

/// Creates Job `job`'s pod, its step container terminated with exit code 0, as the Job
/// controller and a kubelet would leave it.
async fn succeeded_pod(pods: &Api<Pod>, job: &Job, now: &str) -> kube::Result<()> {
    let name = job.metadata.name.clone().unwrap_or_default();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(contract::LABEL_JOB_NAME.to_owned(), name.clone());
    let container = template
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": format!("{name}-p"),
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "Job", "name": name,
                "uid": job.metadata.uid, "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": template.spec,
    }))
    .map_err(kube::Error::SerdeError)?;
    let pod_name = pods
        .create(&PostParams::default(), &pod)
        .await?
        .metadata
        .name
        .unwrap_or_default();
    let status = json!({"status": {
        "phase": "Succeeded",
        "containerStatuses": [{
            "name": container, "image": "stand-in", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": "", "startedAt": now, "finishedAt": now}}
        }]
    }});
    pods.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map(drop)
}

/// Stamps in `finished`, under the `daemonset-wait` step's name, when the service's status
/// cache first holds every node's `v2` acknowledgement.
async fn last_ack(
    mut status: tokio::sync::watch::Receiver<catalyst_cutover::status::cache::Snapshot>,
    finished: Finished,
) {
    let all_acked = |snap: &catalyst_cutover::status::cache::Snapshot| {
        let data = snap.configmap.as_ref().and_then(|cm| cm.data.as_ref());
        data.map_or(0, |d| {
            d.iter()
                .filter(|(k, v)| {
                    k.starts_with("node.") && k.ends_with(".registriesYaml") && *v == "v2"
                })
                .count()
        }) >= NODES
    };
    if status.wait_for(all_acked).await.is_ok()
        && let Ok(mut finished) = finished.lock()
    {
        let step = STEPS
            .iter()
            .find(|(_, wait)| *wait)
            .map(|(n, _)| *n)
            .unwrap_or(DAEMONSET);
        finished.insert(step.to_owned(), Instant::now());
    }
}

/// Per Job step, the median of where its time went while controllers and the kubelet moved
/// it, and the service's own share: its status write, its Job create and its delivery (the
/// Job seen `Complete` by the bench -> the runner recording success), the rest being waits
/// on a controller or a pod.
fn print_controllers_share(per_step: &[Vec<StepFigures>]) {
    println!(
        "\nper Job step, median over the runs, where the time goes (pod made: Job create returned -> \
         the Job's pod seen; pod ran: -> seen Succeeded (binding and the simulated run); counted: -> \
         the Job seen Complete (the Job controller); service's own: status write + Job create + \
         Job seen Complete -> success recorded)"
    );
    println!(
        "   {:<26} {:>10} {:>10} {:>10} {:>15} {:>10}",
        "step", "pod made", "pod ran", "counted", "service's own", "whole"
    );
    let median_of = |v: Vec<Option<Duration>>| {
        let mut v: Vec<Duration> = v.into_iter().flatten().collect();
        v.sort();
        v.get(v.len() / 2).copied()
    };
    let show = |d: Option<Duration>| d.map_or_else(|| "-".to_owned(), ms);
    for (i, (name, wait)) in STEPS.iter().enumerate() {
        if *wait {
            continue;
        }
        let f = &per_step[i];
        let own = median_of(
            f.iter()
                .map(|f| Some(f.write + f.create.unwrap_or_default() + f.delivery?))
                .collect(),
        );
        let whole = median_of(
            f.iter()
                .map(|f| Some(f.write + f.create.unwrap_or_default() + f.seen))
                .collect(),
        );
        println!(
            "   {:<26} {:>10} {:>10} {:>10} {:>15} {:>10}",
            name,
            show(median_of(f.iter().map(|f| f.pod_made).collect())),
            show(median_of(f.iter().map(|f| f.pod_ran).collect())),
            show(median_of(f.iter().map(|f| f.counted).collect())),
            show(own),
            show(whole),
        );
    }
}

/// The per-step figures of one run's marks.
fn figures(
    marks: &[Mark],
    finished: &BTreeMap<String, Instant>,
    observed: &BTreeMap<String, Seen>,
    started: Instant,
    requests: u64,
) -> BenchResult<Vec<StepFigures>> {
    let mut previous_end = started;
    let mut previous_requests = requests;
    let mut out = Vec::with_capacity(STEPS.len());
    for (name, _) in STEPS {
        let find = |what: What| {
            marks
                .iter()
                .find(|m| m.what == what && m.step == name)
                .cloned()
        };
        let recorded =
            find(What::Recorded).ok_or_else(|| format!("no running record of {name}"))?;
        let succeeded = find(What::Succeeded).ok_or_else(|| format!("no success of {name}"))?;
        let created = find(What::Created);
        let after_write = created.as_ref().map_or(recorded.at, |c| c.at);
        let seen = observed.get(name).copied().unwrap_or_default();
        let span =
            |from: Option<Instant>, to: Option<Instant>| Some(to?.saturating_duration_since(from?));
        out.push(StepFigures {
            write: recorded.at.saturating_duration_since(previous_end),
            create: created
                .as_ref()
                .map(|c| c.at.saturating_duration_since(recorded.at)),
            seen: succeeded.at.saturating_duration_since(after_write),
            delivery: finished
                .get(name)
                .map(|f| succeeded.at.saturating_duration_since(*f)),
            requests: succeeded.requests.saturating_sub(previous_requests),
            sent: sent_between(marks, previous_end, succeeded.at),
            pod_made: span(created.as_ref().map(|c| c.at), seen.pod_made),
            pod_ran: span(seen.pod_made, seen.pod_ended),
            counted: span(seen.pod_ended, seen.complete),
        });
        previous_end = succeeded.at;
        previous_requests = succeeded.requests;
    }
    Ok(out)
}

/// Every mark of the `which` run from the POST on: the runner's steps, and each request the service
/// sent with when its answer came back.
fn print_timeline(which: &str, run: &Run) {
    println!("\nthe {which} run's timeline (ms after POST /cutover was sent)");
    for mark in run.marks.iter().filter(|m| m.at >= run.started) {
        let at = mark.at.duration_since(run.started).as_secs_f64() * 1000.0;
        let what = match mark.what {
            What::Recorded => format!("{} recorded running", mark.step),
            What::Created => format!("{} Job created", mark.step),
            What::Succeeded => format!("{} succeeded", mark.step),
            What::Ack => format!("  (a node acknowledged {})", mark.step),
            What::Started => "cutover started (the start's status write returned)".to_owned(),
            What::Leader => "the runner holds the election Lease".to_owned(),
            What::Request => format!("  -> {}", mark.request.as_deref().unwrap_or("?")),
            What::Response => format!(
                "  <- {} ({})",
                mark.request.as_deref().unwrap_or("?"),
                ms(mark.took.unwrap_or_default())
            ),
        };
        println!("   {at:>7.1}  {what}");
    }
}

/// The requests the service sent in `[from, to)`, in order.
fn sent_between(marks: &[Mark], from: Instant, to: Instant) -> Vec<String> {
    marks
        .iter()
        .filter(|m| m.what == What::Request && m.at >= from && m.at < to)
        .filter_map(|m| m.request.clone())
        .collect()
}

/// `verb path` without the API prefix and namespace: `update configmaps/<name>`.
fn short_path(path: &str) -> String {
    resource_path(path).map_or_else(|| path.to_owned(), |rest| rest.join("/"))
}

/// Step ConfigMap `order` named `name`: a `job` step whose pod the simulator completes at
/// once, or the `daemonset-wait` step on [`DAEMONSET`].
fn step_configmap(order: usize, name: &str, wait: bool) -> BenchResult<ConfigMap> {
    let mut labels = BTreeMap::from([
        (contract::LABEL_PART_OF, contract::PART_OF.to_owned()),
        (
            contract::LABEL_COMPONENT,
            contract::COMPONENT_STEP.to_owned(),
        ),
        (contract::LABEL_STEP_ORDER, order.to_string()),
    ]);
    let mut data = BTreeMap::from([(contract::DATA_STEP_NAME, name.to_owned())]);
    if wait {
        labels.insert(contract::LABEL_STEP_MODE, "daemonset-wait".to_owned());
        labels.insert(contract::LABEL_STEP_DAEMONSET, DAEMONSET.to_owned());
    } else {
        data.insert(
            contract::DATA_POD_SPEC,
            "containers:\n- name: step\n  image: busybox:1.36\n  command: [\"true\"]\n".to_owned(),
        );
    }
    Ok(serde_json::from_value(json!({
        "metadata": {
            "name": format!("{}{order:02}-{name}", contract::STEP_CONFIGMAP_PREFIX),
            "labels": labels,
        },
        "data": data,
    }))?)
}

fn median(sorted: &[Duration]) -> Duration {
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
