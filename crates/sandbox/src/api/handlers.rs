//! HTTP handlers: decode the request, call the store, encode the answer. No decisions here
//! beyond picking the operation.

use super::access::{self, Access};
use super::discovery;
use super::errors::StatusError;
use super::history::StoredObject;
use super::kinds::{self, KindInfo};
use super::meta::{self, Part};
use super::openapi;
use super::patch::{self, PatchType};
use super::protobuf;
use super::reviews;
use super::route::{self, ResourcePath, Target};
use super::selectors::{FieldSelector, LabelSelector, Selectors};
use super::store::{DeleteOptions, Deleted, ListOptions, ListPage, Propagation, Store, WatchFrom};
use super::table;
use super::token_request;
use super::view::View;
use super::watch::{self, WatchParams};
use crate::access_control::{Decision, UserInfo};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use super::pod_log::LOG_ANNOTATION;

/// Shared state of the server.
pub struct App {
    /// All objects.
    pub store: Store,
    /// `host:port` the server listens on, for `/api`.
    pub server_address: String,
    /// Interval of watch bookmarks.
    pub bookmark_every: Duration,
    /// Flips to `true` at shutdown so open watches end.
    pub closing: tokio::sync::watch::Receiver<bool>,
    /// Token table and authentication mode.
    pub access: Access,
}

type Params = HashMap<String, String>;

/// The single entry point: every path is resolved here.
pub async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match Query::<Params>::try_from_uri(&uri) {
        Ok(Query(p)) => p,
        Err(e) => return StatusError::bad_request(e.to_string()).into_response(),
    };
    let target = route::resolve(uri.path());
    let user = match target {
        Target::Health => None,
        _ => match app.access.authenticate(&headers, &app.store) {
            Some(user) => Some(user),
            None => {
                let (code, body) = access::unauthorized();
                return value_response(code, &body);
            }
        },
    };
    match dispatch(
        &app,
        user.as_deref(),
        target,
        &method,
        &params,
        &headers,
        body,
    ) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn json_response(code: StatusCode, body: Vec<u8>) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn value_response(code: StatusCode, v: &Value) -> Response {
    json_response(code, serde_json::to_vec(v).unwrap_or_default())
}

fn dispatch(
    app: &Arc<App>,
    user: Option<&UserInfo>,
    target: Target,
    method: &Method,
    params: &Params,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, StatusError> {
    let registry = &*app.store.registry();
    let found = |v: Option<Value>| {
        v.map(|v| value_response(StatusCode::OK, &v))
            .ok_or_else(StatusError::no_route)
    };
    match target {
        Target::Version => found(Some(discovery::version())),
        Target::CoreVersions => found(Some(discovery::core_versions(&app.server_address))),
        Target::Groups => found(Some(discovery::groups(registry))),
        Target::Group(g) => found(discovery::group(registry, &g)),
        Target::GroupVersion(g, v) => found(discovery::resources(registry, &g, &v)),
        Target::Health => Ok((StatusCode::OK, "ok").into_response()),
        Target::OpenApiIndex => found(Some(openapi::index(registry))),
        Target::OpenApiGroupVersion(gv) => found(openapi::group_version(registry, &gv)),
        Target::Unknown => Err(StatusError::no_route()),
        Target::Resource(rp) => {
            let kind = registry
                .lookup(&rp.group, &rp.version, &rp.plural)
                .ok_or_else(StatusError::no_route)?;
            let watching = rp.watch || is_true(params, "watch");
            if let Some(user) = user {
                let field_selector = params.get("fieldSelector").map_or("", String::as_str);
                let attrs = access::attributes(method, &rp, watching, field_selector);
                if let Decision::Deny { reason } = access::decide(&app.store, user, &attrs) {
                    let (code, body) = access::forbidden(user, &attrs, &reason);
                    return Ok(value_response(code, &body));
                }
            }
            if kind.create_only {
                return review(app, user, &kind, &rp, method, headers, &body);
            }
            resource(app, &kind, &rp, method, params, headers, body)
        }
    }
}

fn review(
    app: &App,
    user: Option<&UserInfo>,
    kind: &KindInfo,
    rp: &ResourcePath,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, StatusError> {
    if *method != Method::POST || rp.name.is_some() || rp.subresource.is_some() {
        return Err(StatusError::method_not_supported(kind, method.as_str()));
    }
    let request = parse_body(Some(BodyKind::of(kind)), headers, body)?;
    if !request.is_object() {
        return Err(StatusError::bad_request(format!(
            "the body of a {} must be a JSON object",
            kind.kind
        )));
    }
    let admin = access::admin_user();
    let user = user.unwrap_or(&admin);
    let answer = match kind.kind.as_str() {
        "TokenReview" => reviews::token_review(&app.access, &app.store, request)?,
        "SelfSubjectReview" => reviews::self_subject_review(user, request),
        "SelfSubjectAccessReview" => {
            reviews::self_subject_access_review(&app.store, user, request)?
        }
        _ => reviews::subject_access_review(&app.store, request)?,
    };
    Ok(value_response(StatusCode::CREATED, &answer))
}

fn dry_run(params: &Params) -> Result<bool, StatusError> {
    match params.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(StatusError::bad_request(format!(
            "Invalid dry run value \"{other}\": supported values: \"All\""
        ))),
    }
}

/// The kind a request body is read as.
#[derive(Clone, Copy)]
struct BodyKind<'a> {
    group: &'a str,
    version: &'a str,
    kind: &'a str,
}

impl<'a> BodyKind<'a> {
    fn of(kind: &'a KindInfo) -> Self {
        BodyKind {
            group: &kind.group,
            version: &kind.version,
            kind: &kind.kind,
        }
    }
}

/// The body of `serviceaccounts/<name>/token`.
const TOKEN_REQUEST: BodyKind<'static> = BodyKind {
    group: "authentication.k8s.io",
    version: "v1",
    kind: "TokenRequest",
};

/// Decodes a JSON (or YAML) request body of `kind`. Protobuf, which kubectl's typed helpers
/// send, is read for the few kinds [`protobuf`] knows and refused with 415 otherwise.
fn parse_body(
    kind: Option<BodyKind<'_>>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, StatusError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let refused = || {
        StatusError::unsupported_media_type(format!(
            "the catalyst-cutover sandbox reads {ct} bodies only for namespaces, configmaps, secrets and self reviews; send JSON or YAML, e.g. with `kubectl apply -f` or `kubectl create -f`"
        ))
    };
    if ct.starts_with("application/vnd.kubernetes.protobuf") {
        let kind = kind.ok_or_else(refused)?;
        let mut obj = protobuf::decode(kind.group, kind.kind, body)
            .map_err(|e| {
                StatusError::bad_request(format!("the protobuf body could not be decoded: {e}"))
            })?
            .ok_or_else(refused)?;
        obj["apiVersion"] = json!(kinds::api_version(kind.group, kind.version));
        obj["kind"] = json!(kind.kind);
        return Ok(obj);
    }
    if ct.starts_with("application/cbor") {
        return Err(refused());
    }
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml::from_slice(body))
        .map_err(|e| {
            StatusError::bad_request(format!("the body of the request could not be decoded: {e}"))
        })
}

fn selectors(view: &View, params: &Params, name: Option<&str>) -> Result<Selectors, StatusError> {
    let labels = LabelSelector::parse(
        params
            .get("labelSelector")
            .map(String::as_str)
            .unwrap_or_default(),
    )
    .map_err(StatusError::bad_request)?;
    let mut field_spec = view.field_selector(
        params
            .get("fieldSelector")
            .map(String::as_str)
            .unwrap_or_default(),
    );
    if let Some(name) = name {
        if !field_spec.is_empty() {
            field_spec.push(',');
        }
        field_spec.push_str(&format!("metadata.name={name}"));
    }
    let fields = FieldSelector::parse(&field_spec, &view.storage.plural)
        .map_err(StatusError::bad_request)?;
    Ok(Selectors { labels, fields })
}

fn is_true(params: &Params, key: &str) -> bool {
    matches!(params.get(key).map(String::as_str), Some("true" | "1"))
}

fn resource(
    app: &Arc<App>,
    kind: &Arc<KindInfo>,
    rp: &ResourcePath,
    method: &Method,
    params: &Params,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, StatusError> {
    let store = &app.store;
    if rp.namespace.is_some() && !kind.namespaced {
        return Err(StatusError::no_route());
    }
    let view = View::of(&store.registry(), kind);
    let stored = &view.storage;
    let ns = rp.namespace.as_deref();
    let part = match rp.subresource.as_deref() {
        None => Part::Main,
        Some("status") if kind.has_status => Part::Status,
        Some("log") if kind.has_log && *method == Method::GET => {
            let name = rp.name.as_deref().unwrap_or_default();
            return super::pod_log::pod_log(store, kind, ns, name, params);
        }
        Some("token") if kind.has_token => {
            let (Some(ns), Some(name)) = (ns, rp.name.as_deref()) else {
                return Err(StatusError::no_route());
            };
            if *method != Method::POST {
                return Err(StatusError::method_not_supported(kind, method.as_str()));
            }
            let request = parse_body(Some(TOKEN_REQUEST), headers, &body)?;
            let answer = token_request::create(store, &app.access, kind, ns, name, &request)?;
            return Ok(value_response(StatusCode::CREATED, &answer));
        }
        Some(_) => return Err(StatusError::no_route()),
    };
    let watching = rp.watch || is_true(params, "watch");
    let respond = |code, obj: &Arc<StoredObject>| object_response(code, &view.outbound(obj));
    match (method.clone(), rp.name.as_deref()) {
        (Method::GET, None) if watching => watch(app, &view, ns, params, headers, None),
        (Method::GET, Some(name)) if watching => watch(app, &view, ns, params, headers, Some(name)),
        (Method::GET, None) => list(store, &view, ns, params, table::wanted(headers)),
        (Method::GET, Some(name)) => {
            let obj = view.outbound(&store.get(stored, ns, name)?);
            if table::wanted(headers) && part == Part::Main {
                let rv = json!({"resourceVersion": meta::resource_version_of(&obj)});
                return Ok(value_response(
                    StatusCode::OK,
                    &table::table(kind, &[obj], rv),
                ));
            }
            Ok(object_response(StatusCode::OK, &obj))
        }
        (Method::POST, None) if part == Part::Main => {
            if kind.namespaced && ns.is_none() {
                return Err(StatusError::no_route());
            }
            let body = view.inbound(parse_body(Some(BodyKind::of(kind)), headers, &body)?);
            let obj = store.create(stored, ns, body, dry_run(params)?)?;
            Ok(respond(StatusCode::CREATED, &obj))
        }
        (Method::PUT, Some(name)) => {
            let body = view.inbound(parse_body(Some(BodyKind::of(kind)), headers, &body)?);
            let obj = store.update(stored, ns, name, body, part, dry_run(params)?)?;
            Ok(respond(StatusCode::OK, &obj))
        }
        (Method::PATCH, Some(name)) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let patch_type = PatchType::from_content_type(ct)?;
            let obj = store.modify(stored, ns, name, part, dry_run(params)?, |current| {
                let shown = view.outbound_value(current.clone());
                Ok(view.inbound(patch::apply(kind, patch_type, &shown, &body)?))
            })?;
            Ok(respond(StatusCode::OK, &obj))
        }
        (Method::DELETE, Some(name)) if part == Part::Main => {
            let opts = delete_options(params, headers, &body)?;
            match store.delete(stored, ns, name, &opts)? {
                Deleted::Pending(obj) => Ok(respond(StatusCode::OK, &obj)),
                Deleted::Gone(obj) if kind.custom => Ok(respond(StatusCode::OK, &obj)),
                // Pods delete gracefully: kube-apiserver answers the pod itself, marked
                // deleted with no grace left (an unscheduled pod goes at once).
                Deleted::Gone(obj) if kind.kind == "Pod" && kind.group.is_empty() => {
                    let mut pod = (*obj).clone();
                    let m = meta::metadata_mut(&mut pod);
                    m.insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
                    m.insert("deletionGracePeriodSeconds".into(), json!(0));
                    Ok(respond(StatusCode::OK, &StoredObject::new(pod)))
                }
                Deleted::Gone(obj) => {
                    Ok(value_response(StatusCode::OK, &success_status(kind, &obj)))
                }
            }
        }
        (Method::DELETE, None) => delete_collection(store, &view, ns, params, headers, &body),
        (verb, _) => Err(StatusError::method_not_supported(kind, verb.as_str())),
    }
}

fn object_response(code: StatusCode, obj: &StoredObject) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        obj.json().clone(),
    )
        .into_response()
}

/// The Status a delete answers when the object is gone (generic registry, no ReturnDeletedObject).
fn success_status(kind: &KindInfo, obj: &Value) -> Value {
    let mut details =
        json!({"name": meta::name_of(obj), "kind": kind.plural, "uid": meta::uid_of(obj)});
    if !kind.group.is_empty() {
        details["group"] = json!(kind.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

fn delete_options(
    params: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<DeleteOptions, StatusError> {
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_body(None, headers, body)?
    };
    let propagation = match body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or(params.get("propagationPolicy").map(String::as_str))
    {
        Some(p) => Some(Propagation::parse(p)?),
        None if body.get("orphanDependents").and_then(Value::as_bool) == Some(true) => {
            Some(Propagation::Orphan)
        }
        None => None,
    };
    let dry = body
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|d| d.iter().any(|v| v == "All"));
    let pre = |k: &str| {
        body.pointer(&format!("/preconditions/{k}"))
            .and_then(Value::as_str)
            .map(String::from)
    };
    Ok(DeleteOptions {
        propagation,
        uid: pre("uid"),
        resource_version: pre("resourceVersion"),
        dry_run: dry || dry_run(params)?,
    })
}

fn list_options(view: &View, params: &Params) -> Result<ListOptions, StatusError> {
    let limit = match params.get("limit") {
        Some(l) if !l.is_empty() => Some(
            l.parse::<usize>()
                .map_err(|_| StatusError::bad_request(format!("invalid limit: {l}")))?,
        ),
        _ => None,
    };
    Ok(ListOptions {
        selectors: selectors(view, params, None)?,
        limit,
        continue_token: params.get("continue").filter(|c| !c.is_empty()).cloned(),
    })
}

fn list_meta(page: &ListPage) -> Value {
    let mut meta = json!({"resourceVersion": page.resource_version.to_string()});
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = page.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    meta
}

fn list_body(kind: &KindInfo, page: &ListPage) -> Vec<u8> {
    let meta = list_meta(page);
    let mut out = format!(
        "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
        kind.kind,
        kind.api_version(),
        meta
    )
    .into_bytes();
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item.json());
    }
    out.extend_from_slice(b"]}");
    out
}

fn list(
    store: &Store,
    view: &View,
    ns: Option<&str>,
    params: &Params,
    as_table: bool,
) -> Result<Response, StatusError> {
    let mut page = store.list(&view.storage, ns, &list_options(view, params)?)?;
    page.items = page.items.iter().map(|o| view.outbound(o)).collect();
    if as_table {
        let t = table::table(&view.api, &page.items, list_meta(&page));
        return Ok(value_response(StatusCode::OK, &t));
    }
    Ok(json_response(StatusCode::OK, list_body(&view.api, &page)))
}

fn delete_collection(
    store: &Store,
    view: &View,
    ns: Option<&str>,
    params: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, StatusError> {
    let opts = delete_options(params, headers, body)?;
    let page = store.list(&view.storage, ns, &list_options(view, params)?)?;
    let mut deleted = Vec::new();
    for item in &page.items {
        let item_ns = item.pointer("/metadata/namespace").and_then(Value::as_str);
        match store.delete(&view.storage, item_ns, meta::name_of(item), &opts) {
            Ok(Deleted::Gone(o) | Deleted::Pending(o)) => deleted.push(view.outbound(&o)),
            Err(e) if e.code == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    let page = ListPage {
        resource_version: store.resource_version(),
        items: deleted,
        continue_token: None,
        remaining: None,
    };
    Ok(json_response(StatusCode::OK, list_body(&view.api, &page)))
}

/// Watches without `timeoutSeconds` end after this long (kube-apiserver: 30-60 min).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn watch(
    app: &Arc<App>,
    view: &View,
    ns: Option<&str>,
    params: &Params,
    headers: &HeaderMap,
    name: Option<&str>,
) -> Result<Response, StatusError> {
    let selectors = selectors(view, params, name)?;
    let from = match params.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => WatchFrom::Now,
        Some(rv) => WatchFrom::After(
            rv.parse()
                .map_err(|_| StatusError::bad_request(format!("invalid resource version: {rv}")))?,
        ),
    };
    let send_initial = is_true(params, "sendInitialEvents");
    let from = if send_initial { WatchFrom::Now } else { from };
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_WATCH_TIMEOUT);
    let bookmarks = is_true(params, "allowWatchBookmarks");
    let wp = WatchParams {
        view: view.clone(),
        namespace: ns.map(String::from),
        selectors: selectors.clone(),
        timeout,
        bookmarks,
        bookmark_every: app.bookmark_every,
        initial_events_end: send_initial && bookmarks,
        as_table: table::wanted(headers),
    };
    let body = match app.store.watch(&view.storage, ns, &selectors, from) {
        Ok(start) => Body::from_stream(watch::stream(start, wp, app.closing.clone())),
        Err(e) if e.code == StatusCode::GONE => Body::from_stream(watch::failed(e)),
        Err(e) => return Err(e),
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}
