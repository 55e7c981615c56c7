//! Retry policy towards the API server: which errors are worth retrying, the backoff for
//! requests that must eventually succeed, and the backoff of the engine's watches.

use kube::runtime::utils::ResetTimerBackoff;
use std::time::Duration;

/// Capped exponential backoff with jitter for retries that must eventually succeed.
pub struct Backoff {
    delays: backon::ExponentialBackoff,
}

impl Backoff {
    /// Starts at 20 ms, doubles up to 5 s, and never gives up: the caller decides how long
    /// to wait by dropping the future.
    pub fn new() -> Self {
        use backon::BackoffBuilder;
        Backoff {
            delays: backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(20))
                .with_max_delay(Duration::from_secs(5))
                .with_jitter()
                .without_max_times()
                .build(),
        }
    }

    /// Sleeps for the next delay.
    pub async fn wait(&mut self) {
        let delay = self.delays.next().unwrap_or(Duration::from_secs(5));
        tokio::time::sleep(delay).await;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Whether `err` is an API answer with HTTP status `code`.
pub fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == code)
}

/// Whether retrying `err` may succeed: server errors, throttling, timeouts and lost
/// connections, as opposed to refusals (4xx) that need a person.
pub fn is_transient(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => status.code >= 500 || status.code == 429 || status.code == 408,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// The backoff of the engine's watches: quicker than kube-runtime's default (800 ms up to
/// 30 s, tuned for controllers of many objects), because a cutover waits on one Job and a
/// watch stalled for half a minute after an API hiccup is a stalled cutover. It still backs
/// off to 2 s under a failing API server, and starts over after 10 s without an error.
pub fn watch_backoff() -> ResetTimerBackoff<WatchBackoff> {
    ResetTimerBackoff::new(WatchBackoff::new(), Duration::from_secs(10))
}

/// The exponential, jittered delays of [`watch_backoff`], restartable for kube-runtime.
pub struct WatchBackoff {
    delays: backon::ExponentialBackoff,
}

impl WatchBackoff {
    fn builder() -> backon::ExponentialBuilder {
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(2))
            .with_jitter()
            .without_max_times()
    }

    fn new() -> Self {
        use backon::BackoffBuilder;
        WatchBackoff {
            delays: Self::builder().build(),
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.delays.next()
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        *self = WatchBackoff::new();
    }
}
