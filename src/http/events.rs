//! `GET /cutover/events` (and the console's route): server-sent events. On connect a
//! `cutover-status` snapshot (or, with `Last-Event-ID`, the frames missed, while the replay
//! buffer holds them), then every frame as the status changes, keep-alive comments between,
//! until the client leaves, the service stops or the stream has lasted its lifetime (the
//! client then resumes with `Last-Event-ID`). A client too slow to keep up gets a final
//! `cutover-stream-lagged` frame and is closed; nobody waits for it.
//!
//! One caller holds at most `max_event_streams_per_caller` streams (past it, 429 for that
//! caller alone), and each open stream's caller is authorized again every
//! `event_stream_reauthorize` with the request's own credentials, through the same cache as
//! every request: a stream ends once its token is revoked or its permission withdrawn.

use super::HttpContext;
use super::caller::{Caller, ClientAddr};
use super::error::ApiError;
use super::status::body;
use crate::auth::Action;
use crate::events::{Frame, FramePhase, Level, Numbered, Subscription};
use crate::status::{StatusBody, now_rfc3339};
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// The event stream, or `too-many-event-streams`: 429 when the caller holds as many as one
/// caller may, 503 when the replica has as many open as it may (each holds a connection
/// and a broadcast receiver for as long as it lasts).
pub async fn stream(
    State(ctx): State<Arc<HttpContext>>,
    caller: Caller,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // With authentication off everyone is the same anonymous caller: tell them apart by
    // address.
    let key = match source {
        Some(ip) if !ctx.auth.enabled() => format!("{}@{ip}", caller.username),
        _ => caller.username.clone(),
    };
    let caller_slot = ctx.caller_streams.take(&key).ok_or_else(|| {
        tracing::info!(user = %caller.username, "event stream refused: the caller holds its share");
        ApiError::TooManyCallerEventStreams {
            limit: ctx.caller_streams.limit(),
        }
    })?;
    let slot = ctx.event_streams.clone().try_acquire_owned().map_err(|_| {
        tracing::info!(
            limit = ctx.config.http.max_event_streams,
            "event stream refused: too many open"
        );
        ApiError::TooManyEventStreams {
            limit: ctx.config.http.max_event_streams,
        }
    })?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Subscription {
        head,
        data,
        replay,
        mut receiver,
        mut closed,
    } = ctx.events.subscribe(last_event_id);
    let snapshot = match replay {
        Some(_) => None,
        None => Some(status_event(head, body(&ctx, &data))),
    };
    let guard = ctx.metrics.sse_subscriber();
    let keep_alive = ctx.config.events.keep_alive;
    let lifetime = ctx.config.http.event_stream_lifetime;
    let every = ctx.config.http.event_stream_reauthorize;
    let frames = async_stream::stream! {
        let _guard = guard;
        let _slots = (slot, caller_slot);
        let ends = lifetime_ended(lifetime);
        tokio::pin!(ends);
        let mut reauthorize = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        if let Some(snapshot) = snapshot {
            yield Ok(snapshot);
        }
        for numbered in replay.unwrap_or_default() {
            yield Ok(frame_event(&numbered));
        }
        loop {
            tokio::select! {
                received = receiver.recv() => match received {
                    Ok(numbered) => yield Ok(frame_event(&numbered)),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::info!(missed, "an event-stream client fell behind; closing its stream");
                        yield Ok(lagged_event(missed));
                        break;
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = closed.changed() => break,
                () = &mut ends => break,
                _ = reauthorize.tick() => match super::authenticate::check(&ctx, Action::Read, &Method::GET, &headers, source).await {
                    Ok(_) => {}
                    Err(err) if err.is_definite_refusal() => {
                        tracing::info!(user = %caller.username, code = err.code(), reason = %err, "event stream closed: its caller is no longer allowed");
                        break;
                    }
                    // The API server cannot tell: asked again at the next tick.
                    Err(err) => tracing::warn!(user = %caller.username, reason = %err, "event stream's caller could not be authorized again"),
                },
            }
        }
    };
    Ok(Sse::new(frames).keep_alive(KeepAlive::new().interval(keep_alive)))
}

/// Resolves once a stream has lasted `lifetime`; never without one.
async fn lifetime_ended(lifetime: Option<std::time::Duration>) {
    match lifetime {
        Some(lifetime) => tokio::time::sleep(lifetime).await,
        None => std::future::pending().await,
    }
}

fn frame_event(numbered: &Numbered) -> Event {
    Event::default()
        .event(numbered.frame.phase.as_str())
        .data(&numbered.json)
        .id(numbered.id.to_string())
}

fn status_event(head: u64, status: StatusBody) -> Event {
    let frame = Frame::snapshot(&now_rfc3339(), status);
    let event = event(FramePhase::CutoverStatus, &frame);
    if head == 0 {
        event
    } else {
        event.id(head.to_string())
    }
}

fn lagged_event(missed: u64) -> Event {
    let frame = Frame::cutover(
        &now_rfc3339(),
        FramePhase::CutoverStreamLagged,
        Level::Warn,
        format!(
            "this client fell {missed} frames behind and is disconnected; reconnect with Last-Event-ID to resume"
        ),
    );
    event(FramePhase::CutoverStreamLagged, &frame)
}

fn event(phase: FramePhase, data: &impl Serialize) -> Event {
    let data = serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned());
    Event::default().event(phase.as_str()).data(data)
}

#[cfg(test)]
mod tests {
    use super::super::{router, spec_tests::offline_context};
    use crate::status::StatusData;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_client_that_falls_behind_gets_a_last_frame_and_is_closed() {
        let ctx = offline_context();
        ctx.events.baseline(StatusData::new());
        let response = router(ctx.clone())
            .oneshot(
                Request::builder()
                    .uri("/cutover/events")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        // The client reads nothing while more frames arrive than it may fall behind by.
        let mut data = StatusData::new();
        for n in 0..64 {
            data.insert(format!("step.s{n}.result"), "running".to_owned());
            ctx.events.publish(data.clone(), &[]);
        }
        let body = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            axum::body::to_bytes(response.into_body(), usize::MAX),
        )
        .await
        .expect("the stream ends")
        .unwrap();
        let text = String::from_utf8_lossy(&body);
        let events: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(events.first(), Some(&"cutover-status"));
        assert_eq!(events.last(), Some(&"cutover-stream-lagged"));
        assert!(text.contains("Last-Event-ID"));
    }

    async fn read_all(response: axum::response::Response) -> String {
        let body = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            axum::body::to_bytes(response.into_body(), usize::MAX),
        )
        .await
        .expect("the stream ends at its lifetime")
        .unwrap();
        String::from_utf8_lossy(&body).into_owned()
    }

    #[tokio::test]
    async fn a_stream_ends_at_its_lifetime_and_its_client_resumes_where_it_was() {
        let mut ctx = offline_context();
        std::sync::Arc::get_mut(&mut ctx)
            .unwrap()
            .config
            .http
            .event_stream_lifetime = Some(std::time::Duration::from_millis(50));
        ctx.events.baseline(StatusData::new());
        let mut data = StatusData::new();
        data.insert("step.s0.result".to_owned(), "running".to_owned());
        ctx.events.publish(data.clone(), &[]);
        let request = |last: Option<&str>| {
            let mut request = Request::builder().uri("/cutover/events");
            if let Some(last) = last {
                request = request.header("last-event-id", last);
            }
            request.body(Body::empty()).unwrap()
        };
        let first = read_all(router(ctx.clone()).oneshot(request(None)).await.unwrap()).await;
        assert!(first.contains("event: cutover-status"), "{first}");
        let last = first
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .next_back()
            .expect("the snapshot carries the last id")
            .to_owned();
        // A transition while the client is away is replayed on its return.
        data.insert("step.s0.result".to_owned(), "success".to_owned());
        ctx.events.publish(data, &[]);
        let resumed = read_all(
            router(ctx.clone())
                .oneshot(request(Some(&last)))
                .await
                .unwrap(),
        )
        .await;
        let events: Vec<&str> = resumed
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(events, ["cutover-step-finished"], "{resumed}");
    }

    /// A request to the event stream from `ip`, as the accept loop hands it over.
    fn from(ip: [u8; 4]) -> Request<Body> {
        let mut request = Request::builder()
            .uri("/cutover/events")
            .body(Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                ip, 40000,
            ))));
        request
    }

    async fn error_of(response: axum::response::Response) -> (u16, String) {
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (
            status,
            body["error"].as_str().unwrap_or_default().to_owned(),
        )
    }

    #[tokio::test]
    async fn streams_past_the_cap_are_refused_until_one_closes() {
        let ctx = offline_context();
        ctx.events.baseline(StatusData::new());
        let limit = ctx.config.http.max_event_streams;
        // Each from an address of its own: with authentication off, callers are told apart
        // by address, and no one caller reaches its own cap here.
        let open = |n: usize| router(ctx.clone()).oneshot(from([10, 1, (n / 256) as u8, n as u8]));
        let mut streams = Vec::new();
        for n in 0..limit {
            let response = open(n).await.unwrap();
            assert_eq!(response.status(), 200);
            streams.push(response);
        }
        let refused = open(limit).await.unwrap();
        assert_eq!(
            error_of(refused).await,
            (503, "too-many-event-streams".to_owned())
        );
        drop(streams.pop());
        assert_eq!(open(limit).await.unwrap().status(), 200);
    }

    #[tokio::test]
    async fn one_caller_holds_its_share_of_streams_and_no_more() {
        let ctx = offline_context();
        ctx.events.baseline(StatusData::new());
        let share = ctx.config.http.max_event_streams_per_caller;
        let open = |ip| router(ctx.clone()).oneshot(from(ip));
        let mut streams = Vec::new();
        for _ in 0..share {
            let response = open([10, 0, 0, 1]).await.unwrap();
            assert_eq!(response.status(), 200);
            streams.push(response);
        }
        let refused = open([10, 0, 0, 1]).await.unwrap();
        assert_eq!(
            error_of(refused).await,
            (429, "too-many-event-streams".to_owned())
        );
        assert_eq!(
            open([10, 0, 0, 2]).await.unwrap().status(),
            200,
            "another caller is not affected"
        );
        drop(streams.pop());
        assert_eq!(open([10, 0, 0, 1]).await.unwrap().status(), 200);
    }
}
