//! Conformance: API behaviours the service relies on, checked through `kube::Client` over
//! HTTP. Runs against the sandbox, or a real cluster when `CUTOVER_TEST_KUBECONFIG` is set.
//!
//! Sources for the expected answers are named per test: mostly
//! k8s.io/apimachinery/pkg/api/errors/errors.go (Status bodies) and the API concepts page
//! (https://kubernetes.io/docs/reference/using-api/api-concepts/).

mod common;

use common::TestCluster;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::Status;
use kube::runtime::watcher;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

fn cm(name: &str, labels: serde_json::Value, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": data}))
        .unwrap()
}

fn status_of(err: kube::Error) -> Status {
    match err {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn job(name: &str, restart: &str) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"template": {"spec": {
            "restartPolicy": restart,
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["true"]}]
        }}}
    }))
    .unwrap()
}

/// AlreadyExists / NotFound bodies: errors.go NewAlreadyExists / NewNotFound
/// (message `<resource> "<name>" already exists`, details{name, group, kind=resource}).
#[tokio::test]
async fn create_get_and_status_errors() {
    let tc = TestCluster::start().await;
    let api: Api<ConfigMap> = Api::namespaced(tc.client(), tc.namespace());
    let created = api
        .create(
            &PostParams::default(),
            &cm("x", json!({}), json!({"a": "1"})),
        )
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(
        meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some()
    );
    assert_eq!(meta.generation, None, "ConfigMaps carry no generation");
    assert_eq!(api.get("x").await.unwrap().data.unwrap()["a"], "1");

    let exists = status_of(
        api.create(&PostParams::default(), &cm("x", json!({}), json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (exists.code, exists.reason.as_str()),
        (409, "AlreadyExists")
    );
    assert_eq!(exists.message, "configmaps \"x\" already exists");
    let d = exists.details.unwrap();
    assert_eq!(
        (d.name.as_str(), d.kind.as_str(), d.group.as_str()),
        ("x", "configmaps", "")
    );

    let missing = status_of(api.get("nope").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "configmaps \"nope\" not found");

    let jobs: Api<Job> = Api::namespaced(tc.client(), tc.namespace());
    let missing = status_of(jobs.get("nope").await.unwrap_err());
    assert_eq!(missing.message, "jobs.batch \"nope\" not found");
    assert_eq!(missing.details.unwrap().group, "batch");
    tc.cleanup().await;
}

/// Optimistic concurrency: errors.go NewConflict with the storage layer's
/// "the object has been modified; please apply your changes to the latest version and try again".
#[tokio::test]
async fn stale_update_conflicts_and_noop_keeps_version() {
    let tc = TestCluster::start().await;
    let api: Api<ConfigMap> = Api::namespaced(tc.client(), tc.namespace());
    let v1 = api
        .create(
            &PostParams::default(),
            &cm("c", json!({}), json!({"a": "1"})),
        )
        .await
        .unwrap();
    let mut v2 = v1.clone();
    v2.data = Some([("a".to_string(), "2".to_string())].into());
    let v2 = api.replace("c", &PostParams::default(), &v2).await.unwrap();
    assert_ne!(v1.metadata.resource_version, v2.metadata.resource_version);
    let conflict = status_of(
        api.replace("c", &PostParams::default(), &v1)
            .await
            .unwrap_err(),
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        conflict.message,
        "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let same = api.replace("c", &PostParams::default(), &v2).await.unwrap();
    assert_eq!(same.metadata.resource_version, v2.metadata.resource_version);
    tc.cleanup().await;
}

/// Jobs: generation starts at 1 and moves only with spec (job strategy PrepareForUpdate).
#[tokio::test]
async fn job_generation_moves_with_spec_only() {
    let tc = TestCluster::start().await;
    let api: Api<Job> = Api::namespaced(tc.client(), tc.namespace());
    let j = api
        .create(&PostParams::default(), &job("j", "Never"))
        .await
        .unwrap();
    assert_eq!(j.metadata.generation, Some(1));
    let labelled = api
        .patch(
            "j",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    let suspended = api
        .patch(
            "j",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    assert_eq!(suspended.metadata.generation, Some(2));
    tc.cleanup().await;
}

/// Label selector operators (k8s.io/apimachinery/pkg/labels/selector.go) and the generic
/// field selectors metadata.name / metadata.namespace.
#[tokio::test]
async fn label_and_field_selectors() {
    let tc = TestCluster::start().await;
    let api: Api<ConfigMap> = Api::namespaced(tc.client(), tc.namespace());
    for (name, labels) in [
        ("a", json!({"app": "web", "tier": "front"})),
        ("b", json!({"app": "db"})),
        ("c", json!({"tier": "back"})),
    ] {
        api.create(&PostParams::default(), &cm(name, labels, json!({})))
            .await
            .unwrap();
    }
    let names = |sel: &'static str, field: &'static str| {
        let api = api.clone();
        async move {
            let mut lp = ListParams::default();
            if !sel.is_empty() {
                lp = lp.labels(sel);
            }
            if !field.is_empty() {
                lp = lp.fields(field);
            }
            api.list(&lp)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|c| c.metadata.name.unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names("app=web", "").await, ["a"]);
    assert_eq!(names("app==db", "").await, ["b"]);
    assert_eq!(names("app!=web", "").await, ["b", "c"]);
    assert_eq!(names("app in (web,db)", "").await, ["a", "b"]);
    assert_eq!(names("app notin (web)", "").await, ["b", "c"]);
    assert_eq!(names("tier", "").await, ["a", "c"]);
    assert_eq!(names("!tier", "").await, ["b"]);
    assert_eq!(names("app,tier=front", "").await, ["a"]);
    assert_eq!(names("", "metadata.name=b").await, ["b"]);
    assert_eq!(names("", "metadata.name!=b").await, ["a", "c"]);
    let ns_field: &'static str =
        Box::leak(format!("metadata.namespace={}", tc.namespace()).into_boxed_str());
    assert_eq!(names("tier", ns_field).await, ["a", "c"]);
    tc.cleanup().await;
}

/// limit/continue: every object exactly once across pages (api-concepts "Retrieving large
/// results sets in chunks").
#[tokio::test]
async fn pagination_returns_every_object_once() {
    let tc = TestCluster::start().await;
    let api: Api<ConfigMap> = Api::namespaced(tc.client(), tc.namespace());
    for i in 0..7 {
        api.create(
            &PostParams::default(),
            &cm(&format!("p{i}"), json!({"page": "t"}), json!({})),
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().labels("page=t").limit(3);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await.unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.into_iter().map(|c| c.metadata.name.unwrap()));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!((seen.len(), unique.len()), (7, 7));
    tc.cleanup().await;
}

/// Merge patch (RFC 7386) and JSON patch (RFC 6902) with `test` as compare-and-swap: a failed
/// test is a 422 from patch.go's jsonPatcher.
#[tokio::test]
async fn merge_and_json_patches() {
    let tc = TestCluster::start().await;
    let api: Api<ConfigMap> = Api::namespaced(tc.client(), tc.namespace());
    api.create(
        &PostParams::default(),
        &cm("p", json!({}), json!({"a": "1", "b": "2"})),
    )
    .await
    .unwrap();
    let merged = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.data.unwrap(),
        [("b".into(), "2".into()), ("c".into(), "3".into())].into()
    );

    // kube's Patch::Json is tied to its own json-patch version; the body is plain RFC 6902.
    let path = format!("/api/v1/namespaces/{}/configmaps/p", tc.namespace());
    let cas = |expect: &str, new: &str| {
        let body = json!([
            {"op": "test", "path": "/data/b", "value": expect},
            {"op": "replace", "path": "/data/b", "value": new}
        ]);
        http::Request::patch(path.as_str())
            .header(http::header::CONTENT_TYPE, "application/json-patch+json")
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap()
    };
    let swapped: ConfigMap = tc.client().request(cas("2", "20")).await.unwrap();
    assert_eq!(swapped.data.unwrap()["b"], "20");
    let lost = status_of(
        tc.client()
            .request::<ConfigMap>(cas("2", "30"))
            .await
            .unwrap_err(),
    );
    assert_eq!((lost.code, lost.reason.as_str()), (422, "Invalid"));
    assert_eq!(api.get("p").await.unwrap().data.unwrap()["b"], "20");

    let stale = json!({"metadata": {"resourceVersion": "1"}, "data": {"b": "x"}});
    let conflict = status_of(
        api.patch("p", &PatchParams::default(), &Patch::Merge(stale))
            .await
            .unwrap_err(),
    );
    assert_eq!(conflict.reason, "Conflict");
    tc.cleanup().await;
}

/// Watch from a resourceVersion delivers exactly the changes after it, in order
/// (api-concepts "Efficient detection of changes").
#[tokio::test]
async fn watch_resumes_strictly_after_resource_version() {
    let tc = TestCluster::start().await;
    let api: Api<ConfigMap> = Api::namespaced(tc.client(), tc.namespace());
    let first = api
        .create(
            &PostParams::default(),
            &cm("w1", json!({"w": "t"}), json!({})),
        )
        .await
        .unwrap();
    api.create(
        &PostParams::default(),
        &cm("w2", json!({"w": "t"}), json!({})),
    )
    .await
    .unwrap();
    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    api.delete("w2", &DeleteParams::default()).await.unwrap();
    let rv = first.metadata.resource_version.unwrap();
    let wp = WatchParams::default().labels("w=t").timeout(5);
    let stream = api.watch(&wp, &rv).await.unwrap();
    let events: Vec<(String, String)> = stream
        .take(3)
        .map(|e| match e.unwrap() {
            WatchEvent::Added(c) => ("ADDED".to_string(), c.metadata.name.unwrap()),
            WatchEvent::Modified(c) => ("MODIFIED".to_string(), c.metadata.name.unwrap()),
            WatchEvent::Deleted(c) => ("DELETED".to_string(), c.metadata.name.unwrap()),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
        .await;
    let expected = [("ADDED", "w2"), ("MODIFIED", "w1"), ("DELETED", "w2")];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(events, expected);
    tc.cleanup().await;
}

/// A resourceVersion older than the watch history: an ERROR event carrying a 410 Expired
/// Status ("too old resource version"), as the watch cache answers
/// (k8s.io/apiserver/pkg/storage/cacher/watch_cache.go).
#[tokio::test]
async fn watch_from_compacted_version_is_gone() {
    let tc = TestCluster::start().await;
    let api: Api<ConfigMap> = Api::namespaced(tc.client(), tc.namespace());
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), "1")
        .await
        .unwrap()
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(e))) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
            assert!(
                e.message.contains("too old resource version"),
                "{}",
                e.message
            );
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    tc.cleanup().await;
}

/// kube-runtime's watcher (list + watch + bookmarks) sees the initial list and later changes.
#[tokio::test]
async fn kube_runtime_watcher_follows_changes() {
    let tc = TestCluster::start().await;
    let api: Api<ConfigMap> = Api::namespaced(tc.client(), tc.namespace());
    api.create(&PostParams::default(), &cm("before", json!({}), json!({})))
        .await
        .unwrap();
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut seen_before = false;
    while let Some(e) = events.try_next().await.unwrap() {
        match e {
            watcher::Event::InitApply(c) if c.metadata.name.as_deref() == Some("before") => {
                seen_before = true
            }
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert!(seen_before);
    api.create(&PostParams::default(), &cm("after", json!({}), json!({})))
        .await
        .unwrap();
    let applied = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = events.try_next().await.unwrap() {
            if let watcher::Event::Apply(c) = e {
                return c.metadata.name;
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(applied.as_deref(), Some("after"));
    tc.cleanup().await;
}

/// Deleting a namespace deletes what it holds (namespace lifecycle controller on a real cluster).
#[tokio::test]
async fn deleting_a_namespace_deletes_its_contents() {
    let tc = TestCluster::start().await;
    let name = format!("{}-gone", tc.namespace());
    let nss: Api<Namespace> = Api::all(tc.client());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    let uid = nss
        .create(&PostParams::default(), &ns)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(tc.client(), &name);
    api.create(&PostParams::default(), &cm("inside", json!({}), json!({})))
        .await
        .unwrap();
    nss.delete(&name, &DeleteParams::default()).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(120),
        kube::runtime::wait::await_condition(
            nss.clone(),
            &name,
            kube::runtime::wait::conditions::is_deleted(&uid),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let gone = status_of(api.get("inside").await.unwrap_err());
    assert_eq!(gone.code, 404);
    tc.cleanup().await;
}

/// Discovery finds the builtin kinds the service uses.
#[tokio::test]
async fn discovery_lists_the_kinds_in_use() {
    let tc = TestCluster::start().await;
    let discovery = kube::discovery::Discovery::new(tc.client())
        .run()
        .await
        .unwrap();
    let mut kinds = BTreeSet::new();
    for group in discovery.groups() {
        for (ar, _) in group.recommended_resources() {
            kinds.insert(format!("{}/{}", ar.group, ar.kind));
        }
    }
    for want in [
        "/ConfigMap",
        "/Pod",
        "/Namespace",
        "batch/Job",
        "apps/DaemonSet",
        "coordination.k8s.io/Lease",
    ] {
        assert!(kinds.contains(want), "{want} missing from {kinds:?}");
    }
    let version = tc.client().apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    tc.cleanup().await;
}
