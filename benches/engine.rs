//! Speed of the cutover service on the embedded sandbox with instant Jobs (the simulator's
//! default run time is zero), printed rather than asserted:
//!
//! 1. orchestration overhead per step: a Job turns `Complete` → the next Job exists and the
//!    status ConfigMap says its step is running, both as the bench's own watches see them;
//! 2. API requests per job step (counted by a fault-free `FaultProxy` in front of the
//!    service; a watch counts once), and requests made by the idle service;
//! 3. `GET /cutover` throughput over keep-alive HTTP/1.1 connections, and the API requests
//!    behind it;
//! 4. resident memory of the real `catalyst-cutover serve` process during a run.
//!
//! Each figure is printed with its target and PASS or MISS; nothing is asserted.
//! `cargo bench --bench engine` (add `-- --quick` for a shorter, rougher run).

use catalyst_cutover::contract::{self, DEFAULT_STATUS_CONFIGMAP, key};
use catalyst_cutover::demo::{Sandbox, SandboxOptions};
use catalyst_cutover::metrics::kube_layer::resource_path;
use catalyst_cutover::runner::job::{JobState, job_state};
use catalyst_cutover::service::{Service, ServiceConfig};
use catalyst_cutover::status::Phase;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube_sandbox::faults::FaultProxy;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Steps of the plan every run executes, all `job` steps.
const STEPS: usize = 8;
/// Hang guard for one run; not a speed target.
const GUARD: Duration = Duration::from_secs(60);
/// Concurrent keep-alive connections of the `GET /cutover` load generator.
const CLIENTS: usize = 32;

/// How long each phase of the bench runs.
struct Plan {
    runs: usize,
    idle: Duration,
    load: Duration,
}

/// The sandbox every figure runs against, and an admin client of it.
struct Bench {
    sandbox: Sandbox,
    admin: kube::Config,
    client: kube::Client,
}

/// Counts the service's Kubernetes API requests by verb and resource while switched on, from
/// the trace event its client's metrics layer emits for each.
#[derive(Clone, Default)]
struct RequestKinds {
    on: Arc<std::sync::atomic::AtomicBool>,
    counts: Arc<std::sync::Mutex<BTreeMap<String, u64>>>,
}

#[derive(Default)]
struct RequestFields {
    message: String,
    verb: String,
    path: String,
}

impl tracing::field::Visit for RequestFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "verb" => self.verb = value.to_owned(),
            "path" => self.path = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RequestKinds {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        let mut fields = RequestFields::default();
        event.record(&mut fields);
        if fields.message != "kube request sent" {
            return;
        }
        let kind = format!("{} {}", fields.verb, resource_of(&fields.path));
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(kind).or_default() += 1;
        }
    }
}

/// `pods/log` of `/api/v1/namespaces/ns/pods/p/log`: the resource and subresource only.
fn resource_of(path: &str) -> String {
    match resource_path(path).unwrap_or_default().as_slice() {
        [resource, _name, sub] => format!("{resource}/{sub}"),
        [resource, ..] => (*resource).to_owned(),
        [] => path.to_owned(),
    }
}

/// The request counter the global subscriber feeds.
static KINDS: std::sync::OnceLock<RequestKinds> = std::sync::OnceLock::new();

fn main() -> ExitCode {
    let quick = std::env::args().any(|a| a == "--quick");
    let kinds = RequestKinds::default();
    {
        use tracing_subscriber::layer::SubscriberExt;
        let filter = tracing_subscriber::filter::Targets::new()
            .with_target("catalyst_cutover::metrics", tracing::Level::TRACE);
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::Layer::with_filter(kinds.clone(), filter),
        );
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            eprintln!("bench engine: cannot install the request counter");
            return ExitCode::FAILURE;
        }
    }
    KINDS.get_or_init(|| kinds);
    let plan = if quick {
        Plan {
            runs: 4,
            idle: Duration::from_secs(2),
            load: Duration::from_secs(1),
        }
    } else {
        Plan {
            runs: 30,
            idle: Duration::from_secs(10),
            load: Duration::from_secs(5),
        }
    };
    // Two workers, as the two cores the targets are stated for; sandbox, simulator and
    // service share them.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("bench engine: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&plan)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench engine: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(plan: &Plan) -> BenchResult<()> {
    let bench = Bench::start().await?;
    println!(
        "engine bench: sandbox + simulator (instant Jobs) + service in one process on a 2-worker runtime; \
         {STEPS} job steps per run"
    );
    overhead(&bench, plan.runs).await?;
    requests_and_throughput(&bench, plan).await?;
    memory(&bench).await?;
    bench.sandbox.shutdown().await;
    Ok(())
}

impl Bench {
    async fn start() -> BenchResult<Bench> {
        let sandbox = Sandbox::start(SandboxOptions {
            default_run: Duration::ZERO,
            ..SandboxOptions::default()
        })
        .await?;
        let api = sandbox.api();
        let admin = kube::Config::from_custom_kubeconfig(
            api.kubeconfig(api.admin_token()),
            &KubeConfigOptions::default(),
        )
        .await?;
        let client = kube::Client::try_from(admin.clone())?;
        Ok(Bench {
            sandbox,
            admin,
            client,
        })
    }

    /// A new namespace holding the plan's step ConfigMaps.
    async fn namespace_with_steps(&self) -> BenchResult<String> {
        let name = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &name);
        for order in 1..=STEPS {
            api.create(&PostParams::default(), &step_configmap(order)?)
                .await?;
        }
        Ok(name)
    }
}

fn step_name(order: usize) -> String {
    format!("step-{order}")
}

/// A `job` step whose pod the simulator completes at once.
fn step_configmap(order: usize) -> BenchResult<ConfigMap> {
    let name = step_name(order);
    let pod_spec = "containers:\n- name: step\n  image: busybox:1.36\n  command: [\"true\"]\n";
    Ok(serde_json::from_value(json!({
        "metadata": {
            "name": format!("{}{order:02}-{name}", contract::STEP_CONFIGMAP_PREFIX),
            "labels": {
                contract::LABEL_PART_OF: contract::PART_OF,
                contract::LABEL_COMPONENT: contract::COMPONENT_STEP,
                contract::LABEL_STEP_ORDER: order.to_string(),
            }
        },
        "data": {contract::DATA_STEP_NAME: name, contract::DATA_POD_SPEC: pod_spec},
    }))?)
}

/// What the bench's own watches saw in one namespace, stamped on arrival.
#[derive(Default)]
struct Timeline {
    /// Watches that have delivered their initial list.
    synced: usize,
    job_created: HashMap<String, Instant>,
    job_complete: HashMap<String, Instant>,
    step_running: HashMap<String, Instant>,
    phase: Option<Phase>,
}

/// Watches the Jobs and the status ConfigMap of `ns` into a [`Timeline`]; returns once both
/// watches are synced. The tasks end when the returned handles are aborted.
async fn record(
    client: &kube::Client,
    ns: &str,
) -> BenchResult<(watch::Receiver<Timeline>, [tokio::task::JoinHandle<()>; 2])> {
    let (tx, mut rx) = watch::channel(Timeline::default());
    let tx = Arc::new(tx);
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let jobs_tx = tx.clone();
    let job_task = tokio::spawn(async move {
        let stream = watcher(jobs, watcher::Config::default());
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let now = Instant::now();
            match event {
                Ok(watcher::Event::InitDone) => jobs_tx.send_modify(|t| t.synced += 1),
                Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) => {
                    let step = job
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(contract::LABEL_JOB_STEP))
                        .cloned()
                        .unwrap_or_default();
                    let complete = job_state(&job) == JobState::Succeeded;
                    jobs_tx.send_modify(|t| {
                        t.job_created.entry(step.clone()).or_insert(now);
                        if complete {
                            t.job_complete.entry(step).or_insert(now);
                        }
                    });
                }
                _ => {}
            }
        }
    });
    let status: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let selector = format!("metadata.name={DEFAULT_STATUS_CONFIGMAP}");
    let status_task = tokio::spawn(async move {
        let stream = watcher(status, watcher::Config::default().fields(&selector));
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let now = Instant::now();
            match event {
                Ok(watcher::Event::InitDone) => tx.send_modify(|t| t.synced += 1),
                Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) => {
                    let data = cm.data.unwrap_or_default();
                    tx.send_modify(|t| {
                        for order in 1..=STEPS {
                            let step = step_name(order);
                            let result = data.get(&key::step(&step, key::STEP_RESULT));
                            if result.is_some_and(|r| r == "running") {
                                t.step_running.entry(step).or_insert(now);
                            }
                        }
                        t.phase = Some(Phase::of(&data));
                    });
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(GUARD, rx.wait_for(|t| t.synced == 2))
        .await
        .map_err(|_| "the bench's watches did not sync")??;
    Ok((rx, [job_task, status_task]))
}

/// Waits until the timeline shows the cutover complete; a failed cutover is an error.
async fn until_complete(timeline: &mut watch::Receiver<Timeline>) -> BenchResult<()> {
    let done = |t: &Timeline| matches!(t.phase, Some(Phase::Complete | Phase::Failed));
    tokio::time::timeout(GUARD, timeline.wait_for(done))
        .await
        .map_err(|_| format!("the cutover did not finish within {GUARD:?}"))??;
    match timeline.borrow().phase {
        Some(Phase::Complete) => Ok(()),
        _ => Err("the cutover failed".into()),
    }
}

/// Starts the cutover through the service's own API.
async fn trigger(http: &reqwest::Client, base: &str) -> BenchResult<()> {
    let response = http
        .post(format!("{base}/cutover"))
        .header("content-type", "application/json")
        .send()
        .await?;
    if response.status() != reqwest::StatusCode::ACCEPTED {
        let status = response.status();
        return Err(format!(
            "POST /cutover answered {status}: {}",
            response.text().await?
        )
        .into());
    }
    Ok(())
}

/// One step transition as the bench's watches saw it, from the Job of step i turning
/// `Complete`: when the status said step i+1 runs, and when the Job of step i+1 appeared.
struct Transition {
    status: Duration,
    job: Duration,
}

impl Transition {
    /// The overhead: both the next Job and the status that says so exist.
    fn overhead(&self) -> Duration {
        self.status.max(self.job)
    }
}

/// The step transitions of one finished run.
fn transitions(t: &Timeline) -> BenchResult<Vec<Transition>> {
    (1..STEPS)
        .map(|order| {
            let (done, next) = (step_name(order), step_name(order + 1));
            let missing = |what: &str, step: &str| format!("the bench never saw {what} of {step}");
            let t0 = *t
                .job_complete
                .get(&done)
                .ok_or_else(|| missing("the Job complete", &done))?;
            let created = t
                .job_created
                .get(&next)
                .ok_or_else(|| missing("the Job", &next))?;
            let running = t
                .step_running
                .get(&next)
                .ok_or_else(|| missing("the running status", &next))?;
            Ok(Transition {
                status: running.saturating_duration_since(t0),
                job: created.saturating_duration_since(t0),
            })
        })
        .collect()
}

/// The `q` quantile (0 < q <= 1) of `sorted`, nearest rank; zero when empty.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len().max(1)) - 1)
        .copied()
        .unwrap_or_default()
}

/// Figure 1: `runs` runs, each in a fresh namespace with a fresh service.
async fn overhead(bench: &Bench, runs: usize) -> BenchResult<()> {
    let http = reqwest::Client::new();
    let mut seen = Vec::with_capacity(runs * (STEPS - 1));
    for _ in 0..runs {
        let ns = bench.namespace_with_steps().await?;
        let (mut timeline, tasks) = record(&bench.client, &ns).await?;
        let service = Service::start(bench.admin.clone(), ServiceConfig::new(&ns)).await?;
        service.ready().await;
        trigger(&http, &service.url()).await?;
        until_complete(&mut timeline).await?;
        seen.extend(transitions(&timeline.borrow())?);
        service.shutdown().await;
        tasks.iter().for_each(|t| t.abort());
    }
    let sorted = |f: fn(&Transition) -> Duration| {
        let mut v: Vec<Duration> = seen.iter().map(f).collect();
        v.sort();
        v
    };
    let overheads = sorted(Transition::overhead);
    let (p50, p99, max) = (
        quantile(&overheads, 0.5),
        quantile(&overheads, 0.99),
        quantile(&overheads, 1.0),
    );
    println!(
        "\n1. orchestration overhead per step (Job Complete -> next Job exists and status says running, \
         as the bench's own watches see them; {} transitions over {runs} runs, fresh namespace and service each)",
        overheads.len()
    );
    println!(
        "   p50 {} (target <= 10 ms: {}), p99 {} (target <= 50 ms: {}), max {}",
        ms(p50),
        verdict(p50 <= Duration::from_millis(10)),
        ms(p99),
        verdict(p99 <= Duration::from_millis(50)),
        ms(max)
    );
    let (status, job) = (sorted(|t| t.status), sorted(|t| t.job));
    println!(
        "   of which: status says running after p50 {} / p99 {}; next Job exists after p50 {} / p99 {}",
        ms(quantile(&status, 0.5)),
        ms(quantile(&status, 0.99)),
        ms(quantile(&job, 0.5)),
        ms(quantile(&job, 0.99)),
    );
    Ok(())
}

/// Figures 2 and 3: one run of a fresh service behind a fault-free proxy that counts the
/// requests it forwards; then the idle service; then `GET /cutover` under load.
async fn requests_and_throughput(bench: &Bench, plan: &Plan) -> BenchResult<()> {
    let ns = bench.namespace_with_steps().await?;
    let (mut timeline, tasks) = record(&bench.client, &ns).await?;
    let proxy = FaultProxy::start(bench.admin.clone()).await?;
    let counted =
        kube::Config::from_custom_kubeconfig(proxy.kubeconfig(), &KubeConfigOptions::default())
            .await?;
    let requests = proxy.faults();
    let service = Service::start(counted, ServiceConfig::new(&ns)).await?;
    service.ready().await;
    let at_ready = requests.requests();
    let kinds = KINDS.get().cloned().unwrap_or_default();
    kinds.on.store(true, Ordering::Relaxed);
    let http = reqwest::Client::new();
    trigger(&http, &service.url()).await?;
    until_complete(&mut timeline).await?;
    // The run's tail (the Lease released once nothing runs, the log tails kept once the
    // run is over) belongs to the run.
    tokio::time::sleep(Duration::from_millis(500) + catalyst_cutover::steplog::KEEP_DELAY).await;
    let after_run = requests.requests();
    kinds.on.store(false, Ordering::Relaxed);
    tokio::time::sleep(plan.idle).await;
    let after_idle = requests.requests();
    tasks.iter().for_each(|t| t.abort());

    let per_step = (after_run - at_ready) as f64 / STEPS as f64;
    let idle = after_idle - after_run;
    println!(
        "\n2. API requests of the service, counted by a fault-free FaultProxy in front of it (a watch counts once)"
    );
    println!("   start-up until ready: {at_ready}");
    println!(
        "   one run (POST /cutover until complete + {:.1} s): {} for {STEPS} job steps = {per_step:.2} per step (target <= 8: {})",
        (Duration::from_millis(500) + catalyst_cutover::steplog::KEEP_DELAY).as_secs_f64(),
        after_run - at_ready,
        verdict(per_step <= 8.0)
    );
    if let Ok(counts) = kinds.counts.lock() {
        let listed: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!("   of which, by verb and resource: {}", listed.join(", "));
    }
    println!(
        "   idle for {:?} after completion: {idle} (target 0: {})",
        plan.idle,
        verdict(idle == 0)
    );

    let before_load = requests.requests();
    let (served, failed, took) = load(service.addr(), "/cutover", plan.load).await?;
    let behind = requests.requests() - before_load;
    let rate = served as f64 / took.as_secs_f64();
    let (reference, _, reference_took) = load(service.addr(), "/healthz", plan.load).await?;
    println!(
        "\n3. GET /cutover throughput: {CLIENTS} keep-alive HTTP/1.1 connections from a load generator on one \
         extra thread (current-thread runtime) that shares the 2 cores with the service, sandbox and simulator"
    );
    println!(
        "   {rate:.0} requests/s over {took:.1?} ({served} answered 200, {failed} failed) (target >= 20000: {})",
        verdict(rate >= 20_000.0 && failed == 0)
    );
    println!(
        "   API requests behind them: {behind} (target 0: {})",
        verdict(behind == 0)
    );
    println!(
        "   for reference, the same load on GET /healthz (a static \"ok\"): {:.0} requests/s",
        reference as f64 / reference_took.as_secs_f64()
    );
    service.shutdown().await;
    proxy.shutdown().await;
    Ok(())
}

/// Runs `CLIENTS` keep-alive connections sending `GET path` to `addr` for `run_for` on a
/// runtime of their own thread; returns (answered 200, failed connections, elapsed).
async fn load(
    addr: std::net::SocketAddr,
    path: &'static str,
    run_for: Duration,
) -> BenchResult<(u64, u64, Duration)> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .map(|rt| rt.block_on(hammer(addr, path, run_for)));
        let _ = done_tx.send(result);
    });
    let (served, failed, took) = done_rx.await.map_err(|_| "the load generator panicked")??;
    Ok((served, failed, took))
}

async fn hammer(
    addr: std::net::SocketAddr,
    path: &'static str,
    run_for: Duration,
) -> (u64, u64, Duration) {
    let served = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + run_for;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (served, failed) = (served.clone(), failed.clone());
            tokio::spawn(async move {
                if let Err(err) = one_client(addr, path, deadline, &served).await {
                    eprintln!("load client: {err}");
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for client in clients {
        let _ = client.await;
    }
    (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        started.elapsed(),
    )
}

/// One keep-alive connection sending `GET path` back to back until `deadline`.
async fn one_client(
    addr: std::net::SocketAddr,
    path: &str,
    deadline: Instant,
    served: &AtomicU64,
) -> BenchResult<()> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    while Instant::now() < deadline {
        let request = http::Request::get(path)
            .header(http::header::HOST, addr.to_string())
            .body(axum::body::Body::empty())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body =
            axum::body::to_bytes(axum::body::Body::new(response.into_body()), usize::MAX).await?;
        if status != http::StatusCode::OK || body.is_empty() {
            return Err(format!("GET {path} answered {status}").into());
        }
        served.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Figure 4: the real binary's `serve` as a process of its own against the bench's sandbox;
/// VmRSS sampled every 5 ms from start-up through a run, and VmHWM at the end.
async fn memory(bench: &Bench) -> BenchResult<()> {
    let binary = binary()?;
    let ns = bench.namespace_with_steps().await?;
    let dir = std::env::temp_dir().join(format!("catalyst-cutover-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    let api = bench.sandbox.api();
    let config: Kubeconfig = api.kubeconfig(api.admin_token());
    std::fs::write(&kubeconfig, serde_yaml::to_string(&config)?)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = dir.join("serve.log");
    let mut child = Command::new(&binary)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            // Beside other services on this machine: the probe port on any free one.
            "--probe-listen",
            "127.0.0.1:0",
            "--namespace",
            &ns,
            // As the in-process service of the other figures: no bearer token to bring.
            "--auth=false",
            // The bench's bare PodSpecs meet no Pod Security level; serve's default policy
            // (restricted, the chart's runner only) refused the run with 422.
            "--step-policy",
            "privileged",
            "--step-service-accounts",
            "*",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let pid = child.id();
    let result = measure_run(pid, &format!("http://127.0.0.1:{port}")).await;
    let _ = child.kill();
    let _ = child.wait();
    let (ready_rss, peak_rss, hwm) =
        result.map_err(|e| format!("{e} (serve's log: {})", log.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\n4. resident memory of `catalyst-cutover serve` ({}), a process of its own, during one run",
        binary.display()
    );
    println!(
        "   VmRSS when ready {}, highest sampled VmRSS {}, VmHWM {} (target <= 40 MiB: {})",
        mib(ready_rss),
        mib(peak_rss),
        mib(hwm),
        verdict(hwm <= 40 * 1024 * 1024)
    );
    Ok(())
}

/// Waits for `serve` at `base` to be ready, runs a cutover through it while sampling the
/// process's VmRSS; returns (VmRSS at ready, highest VmRSS sampled, VmHWM) in bytes.
async fn measure_run(pid: u32, base: &str) -> BenchResult<(u64, u64, u64)> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if started.elapsed() > GUARD {
            return Err("`serve` did not become ready".into());
        }
        proc_status(pid, "VmRSS").map_err(|_| "`serve` exited before it was ready")?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready_rss = proc_status(pid, "VmRSS")?;
    let mut peak = ready_rss;
    trigger(&http, base).await?;
    loop {
        peak = peak.max(proc_status(pid, "VmRSS")?);
        let body: serde_json::Value = http
            .get(format!("{base}/cutover"))
            .send()
            .await?
            .json()
            .await?;
        match body["phase"].as_str() {
            Some("complete") => break,
            Some("failed") => {
                return Err(format!("the cutover failed: {}", body["lastError"]).into());
            }
            _ if started.elapsed() > GUARD => return Err("the cutover did not finish".into()),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    peak = peak.max(proc_status(pid, "VmRSS")?);
    Ok((ready_rss, peak, proc_status(pid, "VmHWM")?))
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
fn proc_status(pid: u32, field: &str) -> BenchResult<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let fields: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once(':')).collect();
    let kb: u64 = fields
        .get(field)
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("/proc/{pid}/status has no {field}"))?;
    Ok(kb * 1024)
}

/// The `catalyst-cutover` binary cargo built alongside this bench.
fn binary() -> BenchResult<PathBuf> {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_catalyst-cutover"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing; build it with `cargo bench --bench engine --no-run` and run again",
            path.display()
        )
        .into())
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn verdict(met: bool) -> &'static str {
    if met { "PASS" } else { "MISS" }
}
