//! What the proxy does with each request, decided from the faults in force; no I/O here.

use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

/// The faults in force.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultState {
    /// Added before every request is answered.
    pub latency: Duration,
    /// Share of requests, 0 to 1, answered with `error_status` instead of being forwarded.
    pub error_rate: f64,
    /// The status of injected errors, 500 or 429 in practice.
    pub error_status: StatusCode,
    /// Open watch streams are cut once they have run this long.
    pub cut_watches_every: Option<Duration>,
    /// Until then every request is answered 503, as by a restarting server.
    pub down_until: Option<Instant>,
}

impl Default for FaultState {
    fn default() -> Self {
        FaultState {
            latency: Duration::ZERO,
            error_rate: 0.0,
            error_status: StatusCode::INTERNAL_SERVER_ERROR,
            cut_watches_every: None,
            down_until: None,
        }
    }
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer 503 at once: the "server" is restarting for `retry_after` more.
    Unavailable {
        /// What is left of the down time.
        retry_after: Duration,
    },
    /// Wait `delay`, then answer `status` without asking the upstream.
    Fail {
        /// The injected latency.
        delay: Duration,
        /// The status to answer.
        status: StatusCode,
    },
    /// Wait `delay`, then forward to the upstream.
    Forward {
        /// The injected latency.
        delay: Duration,
    },
}

/// Decides a request arriving at `now`; `roll` is a uniform sample from `[0, 1)`, so a
/// request fails when `roll < error_rate`.
pub fn decide(state: &FaultState, now: Instant, roll: f64) -> Action {
    if let Some(until) = state.down_until
        && until > now
    {
        return Action::Unavailable {
            retry_after: until - now,
        };
    }
    let delay = state.latency;
    if roll < state.error_rate {
        Action::Fail {
            delay,
            status: state.error_status,
        }
    } else {
        Action::Forward { delay }
    }
}

/// An error rate as given, made safe: NaN is 0 and the rest is clamped into `[0, 1]`.
pub fn sanitize_rate(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}

/// Whether a request (its path and query) opens a watch stream: `?watch=true` / `?watch=1`,
/// or the legacy `/watch/` path prefix.
pub fn is_watch(path: &str, query: Option<&str>) -> bool {
    let by_query = query
        .unwrap_or_default()
        .split('&')
        .any(|pair| matches!(pair.split_once('='), Some(("watch", "true" | "1"))));
    let segments: Vec<&str> = path.split('/').collect();
    let by_path = matches!(
        segments.as_slice(),
        ["", "api", _, "watch", ..] | ["", "apis", _, _, "watch", ..]
    );
    by_query || by_path
}

/// When a watch stream that started at `started` is due to be cut, if ever.
pub fn watch_cut_at(every: Option<Duration>, started: Instant) -> Option<Instant> {
    every.map(|every| started + every)
}

/// Whole seconds, at least 1, for a `Retry-After` header.
pub fn retry_after_seconds(left: Duration) -> u64 {
    left.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_faults_forwards_at_once() {
        let now = Instant::now();
        assert_eq!(
            decide(&FaultState::default(), now, 0.0),
            Action::Forward {
                delay: Duration::ZERO
            }
        );
    }

    #[test]
    fn latency_delays_forwarded_and_failed_requests() {
        let now = Instant::now();
        let state = FaultState {
            latency: Duration::from_millis(300),
            error_rate: 0.5,
            ..FaultState::default()
        };
        assert_eq!(
            decide(&state, now, 0.7),
            Action::Forward {
                delay: Duration::from_millis(300)
            }
        );
        assert_eq!(
            decide(&state, now, 0.2),
            Action::Fail {
                delay: Duration::from_millis(300),
                status: StatusCode::INTERNAL_SERVER_ERROR
            }
        );
    }

    #[test]
    fn error_rate_is_the_share_of_rolls_below_it() {
        let now = Instant::now();
        let state = FaultState {
            error_rate: 0.25,
            error_status: StatusCode::TOO_MANY_REQUESTS,
            ..FaultState::default()
        };
        let failed = (0..100)
            .map(|i| f64::from(i) / 100.0)
            .filter(|roll| matches!(decide(&state, now, *roll), Action::Fail { .. }))
            .count();
        assert_eq!(failed, 25);
        let always = FaultState {
            error_rate: 1.0,
            ..state.clone()
        };
        assert!(matches!(
            decide(&always, now, 0.999_999),
            Action::Fail {
                status: StatusCode::TOO_MANY_REQUESTS,
                ..
            }
        ));
        let never = FaultState {
            error_rate: 0.0,
            ..state
        };
        assert!(matches!(decide(&never, now, 0.0), Action::Forward { .. }));
    }

    #[test]
    fn restart_window_answers_unavailable_then_passes() {
        let now = Instant::now();
        let state = FaultState {
            error_rate: 1.0,
            down_until: Some(now + Duration::from_secs(2)),
            ..FaultState::default()
        };
        assert_eq!(
            decide(&state, now, 0.0),
            Action::Unavailable {
                retry_after: Duration::from_secs(2)
            }
        );
        let later = now + Duration::from_secs(2);
        assert!(matches!(decide(&state, later, 0.0), Action::Fail { .. }));
    }

    #[test]
    fn rates_are_sanitized() {
        assert_eq!(sanitize_rate(f64::NAN), 0.0);
        assert_eq!(sanitize_rate(-1.0), 0.0);
        assert_eq!(sanitize_rate(7.0), 1.0);
        assert_eq!(sanitize_rate(0.3), 0.3);
    }

    #[test]
    fn watches_are_recognised() {
        assert!(is_watch("/api/v1/namespaces/a/pods", Some("watch=true")));
        assert!(is_watch(
            "/apis/batch/v1/jobs",
            Some("labelSelector=a%3Db&watch=1&resourceVersion=5")
        ));
        assert!(is_watch("/api/v1/watch/namespaces/a/pods", None));
        assert!(is_watch("/apis/batch/v1/watch/jobs", None));
        assert!(!is_watch("/api/v1/namespaces/a/pods", Some("watch=false")));
        assert!(!is_watch(
            "/api/v1/namespaces/a/pods",
            Some("allowWatchBookmarks=true")
        ));
        assert!(!is_watch("/api/v1/namespaces/watch/pods", None));
        assert!(!is_watch("/api/v1/namespaces/a/pods", None));
    }

    #[test]
    fn watch_cut_time_follows_the_setting() {
        let started = Instant::now();
        assert_eq!(watch_cut_at(None, started), None);
        assert_eq!(
            watch_cut_at(Some(Duration::from_secs(3)), started),
            Some(started + Duration::from_secs(3))
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1200)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(3)), 3);
    }
}
