//! The simulated kubelet's HTTPS endpoint, where an API server reads pod logs
//! (`/containerLogs/{namespace}/{pod}/{container}` with `follow`, `tailLines` and
//! `limitBytes`, as a kubelet serves them). kube-apiserver proxies `pods/log` to the node's
//! `InternalIP` and `daemonEndpoints.kubeletEndpoint.Port`, and so does the sandbox, so both
//! serve the simulated pods' logs the same way.
//!
//! A simulated container prints its log text (what its [`Behaviour`] says) line by line,
//! spread evenly over its run, and all of it once it has ended.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::SimError;
use super::behaviour::Behaviour;

/// The address every simulated node advertises as its `InternalIP`.
pub const NODE_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// How often a followed log looks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(50);

/// What a container has printed at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Printed {
    /// Not started: nothing yet.
    NotStarted,
    /// Running for this long.
    Running(Duration),
    /// Ended: everything.
    Ended,
}

/// The part of `log` a container running for `run` has printed: whole lines, line `i` of
/// `n` printed `run·i/n` into the run. Pure.
pub fn printed(log: &str, run: Duration, at: Printed) -> &str {
    let elapsed = match at {
        Printed::NotStarted => return "",
        Printed::Ended => return log,
        Printed::Running(elapsed) => elapsed,
    };
    let ends: Vec<usize> = log
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .chain((!log.ends_with('\n') && !log.is_empty()).then_some(log.len()))
        .collect();
    if ends.is_empty() || run.is_zero() {
        return log;
    }
    let n = ends.len() as u128;
    let lines = (n * elapsed.as_nanos() / run.as_nanos()).saturating_add(1);
    let lines = usize::try_from(lines.min(n)).unwrap_or(ends.len());
    &log[..ends[lines - 1]]
}

/// `text` as a kubelet answers `tailLines` (its last lines) and `limitBytes` (then its first
/// bytes, cut back to a character boundary). Pure.
pub fn window(text: &str, tail_lines: Option<usize>, limit_bytes: Option<usize>) -> &str {
    let mut text = text;
    if let Some(tail) = tail_lines {
        let body = text.strip_suffix('\n').unwrap_or(text);
        let start = if tail == 0 {
            text.len()
        } else {
            body.match_indices('\n')
                .rev()
                .nth(tail - 1)
                .map_or(0, |(i, _)| i + 1)
        };
        text = &text[start..];
    }
    if let Some(limit) = limit_bytes
        && limit < text.len()
    {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text = &text[..end];
    }
    text
}

/// The log query a kubelet accepts (the API server passes these through).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    #[serde(default)]
    follow: bool,
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
}

struct Kubelet {
    client: Client,
    default_run: Duration,
}

/// The running endpoint.
pub struct KubeletEndpoint {
    port: u16,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl KubeletEndpoint {
    /// Serves the logs of the pods `client` can read, over HTTPS on a free port of
    /// [`NODE_IP`] with a throw-away self-signed certificate (kube-apiserver does not verify
    /// it unless given a kubelet CA).
    pub async fn start(client: Client, default_run: Duration) -> Result<Self, SimError> {
        let tls = crate::api::tls::self_signed(NODE_IP)
            .map_err(|e| SimError::Config(format!("kubelet certificate: {e}")))?;
        let listener = TcpListener::bind(SocketAddr::new(NODE_IP, 0))
            .await
            .map_err(|e| SimError::Config(format!("kubelet endpoint: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| SimError::Config(format!("kubelet endpoint: {e}")))?
            .port();
        let state = Arc::new(Kubelet {
            client,
            default_run,
        });
        let router = Router::new()
            .route(
                "/containerLogs/{namespace}/{pod}/{container}",
                axum::routing::get(container_logs),
            )
            .with_state(state);
        let (stop, stopped) = watch::channel(false);
        let task = crate::api::serve::spawn(listener, router, Some(tls.acceptor), stopped);
        Ok(KubeletEndpoint { port, stop, task })
    }

    /// The port every simulated node advertises as its kubelet endpoint.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops serving.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.task.abort();
        let _ = self.task.await;
    }
}

fn text(status: StatusCode, message: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], message).into_response()
}

/// Where `container` of `pod` stands: started when, ended or not.
fn state_of(pod: &Pod, container: &str, now: Timestamp) -> Option<Printed> {
    let statuses = pod.status.as_ref()?.container_statuses.as_deref()?;
    let state = statuses
        .iter()
        .find(|s| s.name == container)?
        .state
        .as_ref()?;
    if state.terminated.is_some() {
        return Some(Printed::Ended);
    }
    let started = state.running.as_ref()?.started_at.as_ref()?.0;
    Some(Printed::Running(now.duration_since(started).unsigned_abs()))
}

async fn container_logs(
    State(kubelet): State<Arc<Kubelet>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
    let pods: Api<Pod> = Api::namespaced(kubelet.client.clone(), &namespace);
    let found = match pods.get_opt(&pod).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("pod {namespace}/{pod} not found"),
            );
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let Some(at) = state_of(&found, &container, Timestamp::now()) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            ),
        );
    };
    let (behaviour, _) = Behaviour::from_spec(found.spec.as_ref(), kubelet.default_run);
    let log = behaviour.log.unwrap_or_default();
    if !query.follow || at == Printed::Ended {
        let shown = window(
            printed(&log, behaviour.run, at),
            query.tail_lines,
            query.limit_bytes,
        );
        return text(StatusCode::OK, shown.to_owned());
    }
    // Followed: what is printed now (windowed as asked), then each line as it comes,
    // until the container ends or the pod goes.
    let first = window(printed(&log, behaviour.run, at), query.tail_lines, None).to_owned();
    let mut sent = printed(&log, behaviour.run, at).len();
    let run = behaviour.run;
    let stream = async_stream::stream! {
        yield Ok::<Bytes, std::io::Error>(Bytes::from(first));
        loop {
            tokio::time::sleep(FOLLOW_EVERY).await;
            let now = match pods.get_opt(&pod).await {
                Ok(Some(p)) => state_of(&p, &container, Timestamp::now()).unwrap_or(Printed::Ended),
                _ => Printed::Ended,
            };
            let upto = printed(&log, run, now).len();
            if upto > sent {
                yield Ok(Bytes::copy_from_slice(&log.as_bytes()[sent..upto]));
                sent = upto;
            }
            if now == Printed::Ended {
                break;
            }
        }
    };
    let limit = query.limit_bytes;
    let body = match limit {
        // A followed log with a byte limit is rare; it is served whole up to the limit.
        Some(limit) => {
            use futures::StreamExt;
            let mut left = limit;
            Body::from_stream(stream.map(move |chunk| {
                chunk.map(|c| {
                    let keep = c.len().min(left);
                    left -= keep;
                    c.slice(..keep)
                })
            }))
        }
        None => Body::from_stream(stream),
    };
    ([(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "one\ntwo\nthree\nfour\n";

    #[test]
    fn lines_come_evenly_over_the_run_and_all_once_ended() {
        let run = Duration::from_secs(4);
        let at = |ms| Printed::Running(Duration::from_millis(ms));
        assert_eq!(printed(LOG, run, Printed::NotStarted), "");
        assert_eq!(printed(LOG, run, at(0)), "one\n");
        assert_eq!(printed(LOG, run, at(999)), "one\n");
        assert_eq!(printed(LOG, run, at(1000)), "one\ntwo\n");
        assert_eq!(printed(LOG, run, at(3999)), "one\ntwo\nthree\nfour\n");
        assert_eq!(printed(LOG, run, at(60_000)), LOG);
        assert_eq!(printed(LOG, run, Printed::Ended), LOG);
        assert_eq!(printed("a\nb", run, at(2500)), "a\nb");
        assert_eq!(printed("", run, at(1)), "");
        assert_eq!(printed(LOG, Duration::ZERO, at(0)), LOG);
    }

    #[test]
    fn tail_lines_and_limit_bytes_as_a_kubelet_answers_them() {
        assert_eq!(window(LOG, None, None), LOG);
        assert_eq!(window(LOG, Some(2), None), "three\nfour\n");
        assert_eq!(window(LOG, Some(0), None), "");
        assert_eq!(window(LOG, Some(10), None), LOG);
        assert_eq!(window("a\nb", Some(1), None), "b");
        assert_eq!(window(LOG, None, Some(5)), "one\nt");
        assert_eq!(window(LOG, Some(2), Some(3)), "thr");
        assert_eq!(window("é", None, Some(1)), "");
    }
}
