//! Watch streams: newline-delimited `{"type","object"}` events, bookmarks, timeouts, and
//! the 410 ERROR event a watcher gets when it falls behind the history.

use super::errors::ApiError;
use super::history::{Change, EventType};
use super::kinds::KindInfo;
use super::selectors::Selectors;
use super::store::{WatchStart, too_old};
use super::table;
use super::view::View;
use bytes::Bytes;
use futures::Stream;
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// What one watcher asked for.
pub struct WatchParams {
    /// The watched kind, as requested and as stored.
    pub view: View,
    /// Namespace filter (`None` = all).
    pub namespace: Option<String>,
    /// Label and field selectors.
    pub selectors: Selectors,
    /// When the server ends the watch.
    pub timeout: Duration,
    /// `allowWatchBookmarks`: send BOOKMARK events every `bookmark_every`.
    pub bookmarks: bool,
    /// Interval of bookmarks.
    pub bookmark_every: Duration,
    /// `sendInitialEvents`: end the initial ADDED events with an annotated bookmark.
    pub initial_events_end: bool,
    /// Send each object as a one-row Table (`kubectl get -w`).
    pub as_table: bool,
}

/// An event line as it goes on the wire.
fn line(event_type: &str, object_json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(object_json.len() + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(event_type.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(object_json);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

/// The event type this watcher sees for a change, given its selectors: an object that
/// enters the selection is ADDED, one that leaves it is DELETED.
fn visible_as(change: &Change, p: &WatchParams) -> Option<EventType> {
    let resource = p.view.storage.qualified_resource();
    if *change.resource != *resource
        || p.namespace
            .as_deref()
            .is_some_and(|n| p.view.storage.namespaced && n != change.namespace)
    {
        return None;
    }
    let now = p.selectors.matches(&change.object);
    match change.kind {
        EventType::Added | EventType::Deleted => now.then_some(change.kind),
        EventType::Modified => {
            let before = change
                .old
                .as_deref()
                .is_some_and(|o| p.selectors.matches(o));
            match (before, now) {
                (true, true) => Some(EventType::Modified),
                (false, true) => Some(EventType::Added),
                (true, false) => Some(EventType::Deleted),
                (false, false) => None,
            }
        }
    }
}

fn render(change: &Change, p: &WatchParams) -> Option<Bytes> {
    let event_type = visible_as(change, p)?;
    let object = p.view.outbound(&change.object);
    if p.as_table {
        let rv = json!({"resourceVersion": change.rv.to_string()});
        let t = table::table(&p.view.api, std::slice::from_ref(&object), rv);
        return Some(line(event_type.as_str(), t.to_string().as_bytes()));
    }
    Some(line(event_type.as_str(), object.json()))
}

fn bookmark(kind: &KindInfo, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let obj = json!({"kind": kind.kind, "apiVersion": kind.api_version(), "metadata": meta});
    line("BOOKMARK", obj.to_string().as_bytes())
}

fn error_event(err: &ApiError) -> Bytes {
    line("ERROR", err.status().to_string().as_bytes())
}

/// A watch whose start failed (410): one ERROR event, then the end, as the watch cache does.
pub fn failed(err: ApiError) -> impl Stream<Item = Result<Bytes, Infallible>> {
    futures::stream::once(async move { Ok(error_event(&err)) })
}

/// The event stream of one watcher; it ends when `closing` turns true (server shutdown).
pub fn stream(
    start: WatchStart,
    p: WatchParams,
    mut closing: tokio::sync::watch::Receiver<bool>,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    async_stream::stream! {
        let WatchStart { initial, mut live, resource_version } = start;
        let mut last_rv = resource_version;
        for change in &initial {
            if let Some(b) = render(change, &p) {
                yield Ok(b);
            }
        }
        if p.initial_events_end {
            yield Ok(bookmark(&p.view.api, resource_version, true));
        }
        let deadline = tokio::time::sleep(p.timeout);
        tokio::pin!(deadline);
        let mut ticks = tokio::time::interval_at(
            tokio::time::Instant::now() + p.bookmark_every,
            p.bookmark_every,
        );
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = closing.changed() => break,
                _ = ticks.tick(), if p.bookmarks => yield Ok(bookmark(&p.view.api, last_rv, false)),
                received = live.recv() => match received {
                    Ok(change) => {
                        // Changes committed before the watch started are already in `initial`.
                        if change.rv <= resource_version {
                            continue;
                        }
                        last_rv = change.rv;
                        if let Some(b) = render(&change, &p) {
                            yield Ok(b);
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            resource = %p.view.api.qualified_resource(),
                            missed,
                            "a watcher fell behind the live feed; ending it with 410 Expired"
                        );
                        yield Ok(error_event(&too_old(last_rv, last_rv + 1)));
                        break;
                    }
                    Err(RecvError::Closed) => break,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::history::StoredObject;
    use crate::api::kinds::Registry;
    use crate::api::selectors::LabelSelector;

    #[test]
    fn selector_transitions_become_added_and_deleted() {
        let r = Registry::new(&[]);
        let cm = r.lookup("", "v1", "configmaps").unwrap();
        let p = WatchParams {
            view: View::of(&r, &cm),
            namespace: Some("ns".into()),
            selectors: Selectors {
                labels: LabelSelector::parse("a=1").unwrap(),
                ..Default::default()
            },
            timeout: Duration::from_secs(1),
            bookmarks: false,
            bookmark_every: Duration::from_secs(1),
            initial_events_end: false,
            as_table: false,
        };
        let obj = |v: &str| {
            StoredObject::new(
                json!({"metadata": {"name": "x", "namespace": "ns", "labels": {"a": v}}}),
            )
        };
        let change = |old: &str, new: &str| {
            Change::new(
                5,
                "configmaps".into(),
                "ns".into(),
                EventType::Modified,
                obj(new),
                Some(obj(old)),
            )
        };
        assert_eq!(visible_as(&change("1", "2"), &p), Some(EventType::Deleted));
        assert_eq!(visible_as(&change("2", "1"), &p), Some(EventType::Added));
        assert_eq!(visible_as(&change("1", "1"), &p), Some(EventType::Modified));
        assert_eq!(visible_as(&change("2", "2"), &p), None);
        let other_ns = Change::new(
            5,
            "configmaps".into(),
            "x".into(),
            EventType::Added,
            obj("1"),
            None,
        );
        assert_eq!(visible_as(&other_ns, &p), None);
        assert_eq!(too_old(1, 2).status()["code"], 410);
    }

    #[tokio::test]
    async fn bookmarks_flow_and_the_watch_ends_at_its_timeout() {
        use crate::api::store::{Store, WatchFrom};
        use futures::StreamExt;
        let store = Store::new(Registry::new(&[]), 10);
        let cm = store.registry().lookup("", "v1", "configmaps").unwrap();
        let start = store
            .watch(&cm, None, &Selectors::default(), WatchFrom::Now)
            .unwrap();
        let p = WatchParams {
            view: View::of(&store.registry(), &cm),
            namespace: None,
            selectors: Selectors::default(),
            timeout: Duration::from_millis(300),
            bookmarks: true,
            bookmark_every: Duration::from_millis(50),
            initial_events_end: true,
            as_table: false,
        };
        let (_close, closing) = tokio::sync::watch::channel(false);
        let lines: Vec<String> = stream(start, p, closing)
            .map(|b| String::from_utf8(b.unwrap().to_vec()).unwrap())
            .collect()
            .await;
        assert!(
            lines[0].contains("\"k8s.io/initial-events-end\":\"true\""),
            "{lines:?}"
        );
        assert!(
            lines.len() > 2
                && lines
                    .iter()
                    .all(|l| l.starts_with("{\"type\":\"BOOKMARK\""))
        );
    }
}
