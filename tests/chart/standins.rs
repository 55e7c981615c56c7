//! Local stand-ins for the Gitea and Harbor HTTP APIs the steps call, answering like the
//! real ones for the requests the scripts make, recording every call, and failing on demand.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine;
use serde_json::{Value as Json, json};

/// The user and password both stand-ins accept (HTTP basic auth).
pub const USER: &str = "cutover";
/// See [`USER`].
pub const PASSWORD: &str = "s3cret";

/// A stand-in listening on 127.0.0.1, stopped on drop.
pub struct Server<S> {
    /// Base URL, `http://127.0.0.1:<port>`.
    pub url: String,
    /// Host and port, as used in image references.
    pub host: String,
    /// The stand-in's state, to arrange and inspect.
    pub state: Arc<Mutex<S>>,
    task: tokio::task::JoinHandle<()>,
}

impl<S> Drop for Server<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve<S: Send + 'static>(state: S, router: Router<Arc<Mutex<S>>>) -> Server<S> {
    let state = Arc::new(Mutex::new(state));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind stand-in");
    let addr = listener.local_addr().expect("address");
    let app = router.with_state(state.clone());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("stand-in serves");
    });
    Server {
        url: format!("http://{addr}"),
        host: addr.to_string(),
        state,
        task,
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Basic {expected}"))
}

fn answer(code: StatusCode, body: Json) -> Response {
    (code, axum::Json(body)).into_response()
}

// ---------------------------------------------------------------------------------------
// Gitea
// ---------------------------------------------------------------------------------------

/// The Gitea stand-in's repositories and call log.
#[derive(Default)]
pub struct Gitea {
    /// `owner/name` → the repository as `GET /repos/{owner}/{repo}` answers it.
    pub repos: BTreeMap<String, Json>,
    /// `METHOD path` of every authorized call, in order.
    pub calls: Vec<String>,
    /// Bodies of the `POST /repos/migrate` calls.
    pub migrations: Vec<Json>,
    /// When set, `POST /repos/migrate` answers this status with a message.
    pub fail_migrate: Option<u16>,
}

impl Gitea {
    /// A repository as Gitea describes it.
    pub fn repo(owner: &str, name: &str, mirror: bool, interval: &str, origin: &str) -> Json {
        json!({"full_name": format!("{owner}/{name}"), "mirror": mirror, "mirror_interval": interval,
               "original_url": origin, "empty": false})
    }
}

/// Starts a Gitea stand-in serving `/api/v1`.
pub async fn gitea(state: Gitea) -> Server<Gitea> {
    let router = Router::new()
        .route("/api/v1/repos/migrate", post(gitea_migrate))
        .route(
            "/api/v1/repos/{owner}/{repo}",
            get(gitea_get).patch(gitea_patch),
        )
        .route("/api/v1/repos/{owner}/{repo}/mirror-sync", post(gitea_sync));
    serve(state, router).await
}

type GiteaState = State<Arc<Mutex<Gitea>>>;

fn gitea_call(state: &GiteaState, headers: &HeaderMap, call: String) -> Option<Response> {
    if !authorized(headers) {
        return Some(answer(
            StatusCode::UNAUTHORIZED,
            json!({"message": "user does not exist"}),
        ));
    }
    state.lock().expect("lock").calls.push(call);
    None
}

async fn gitea_get(
    state: GiteaState,
    headers: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
) -> Response {
    if let Some(denied) = gitea_call(&state, &headers, format!("GET /repos/{owner}/{repo}")) {
        return denied;
    }
    match state
        .lock()
        .expect("lock")
        .repos
        .get(&format!("{owner}/{repo}"))
    {
        Some(found) => answer(StatusCode::OK, found.clone()),
        None => answer(
            StatusCode::NOT_FOUND,
            json!({"message": "The target couldn't be found."}),
        ),
    }
}

async fn gitea_patch(
    state: GiteaState,
    headers: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
    axum::Json(body): axum::Json<Json>,
) -> Response {
    if let Some(denied) = gitea_call(&state, &headers, format!("PATCH /repos/{owner}/{repo}")) {
        return denied;
    }
    let mut gitea = state.lock().expect("lock");
    let Some(found) = gitea.repos.get_mut(&format!("{owner}/{repo}")) else {
        return answer(
            StatusCode::NOT_FOUND,
            json!({"message": "The target couldn't be found."}),
        );
    };
    if let Some(interval) = body.get("mirror_interval") {
        found["mirror_interval"] = interval.clone();
    }
    answer(StatusCode::OK, found.clone())
}

async fn gitea_sync(
    state: GiteaState,
    headers: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
) -> Response {
    if let Some(denied) = gitea_call(
        &state,
        &headers,
        format!("POST /repos/{owner}/{repo}/mirror-sync"),
    ) {
        return denied;
    }
    match state
        .lock()
        .expect("lock")
        .repos
        .get(&format!("{owner}/{repo}"))
    {
        Some(found) if found["mirror"] == true => StatusCode::OK.into_response(),
        Some(_) => answer(
            StatusCode::BAD_REQUEST,
            json!({"message": "Repository is not a mirror"}),
        ),
        None => answer(
            StatusCode::NOT_FOUND,
            json!({"message": "The target couldn't be found."}),
        ),
    }
}

async fn gitea_migrate(
    state: GiteaState,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Json>,
) -> Response {
    if let Some(denied) = gitea_call(&state, &headers, "POST /repos/migrate".to_owned()) {
        return denied;
    }
    let mut gitea = state.lock().expect("lock");
    gitea.migrations.push(body.clone());
    if let Some(code) = gitea.fail_migrate {
        let code = StatusCode::from_u16(code).expect("status code");
        return answer(code, json!({"message": "migrate: upstream unreachable"}));
    }
    let (Some(owner), Some(name)) = (body["repo_owner"].as_str(), body["repo_name"].as_str())
    else {
        return answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": "repo_owner and repo_name required"}),
        );
    };
    let full = format!("{owner}/{name}");
    if gitea.repos.contains_key(&full) {
        return answer(
            StatusCode::CONFLICT,
            json!({"message": "The repository with the same name already exists."}),
        );
    }
    let repo = Gitea::repo(
        owner,
        name,
        body["mirror"] == true,
        body["mirror_interval"].as_str().unwrap_or("8h0m0s"),
        body["clone_addr"].as_str().unwrap_or_default(),
    );
    gitea.repos.insert(full, repo.clone());
    answer(StatusCode::CREATED, repo)
}

// ---------------------------------------------------------------------------------------
// Harbor
// ---------------------------------------------------------------------------------------

/// The Harbor stand-in's registry endpoints, projects, cached images and call log.
#[derive(Default)]
pub struct Harbor {
    /// Registry endpoints as `GET /registries` lists them.
    pub registries: Vec<Json>,
    /// Project name → project as `GET /projects/{name}` answers it.
    pub projects: BTreeMap<String, Json>,
    /// `project/repository:reference` the proxy cache can serve.
    pub images: BTreeSet<String>,
    /// `METHOD path` of every authorized API call, in order.
    pub calls: Vec<String>,
    /// When set, `POST /projects` answers this status with a message.
    pub fail_projects: Option<u16>,
}

/// Starts a Harbor stand-in serving `/api/v2.0` and the registry's `/v2/`.
pub async fn harbor(state: Harbor) -> Server<Harbor> {
    let router = Router::new()
        .route(
            "/api/v2.0/registries",
            get(harbor_registries).post(harbor_add_registry),
        )
        .route("/api/v2.0/projects", post(harbor_add_project))
        .route("/api/v2.0/projects/{name}", get(harbor_project))
        .route("/v2/", any(registry_base))
        .route("/v2/{*path}", any(registry_manifest));
    serve(state, router).await
}

type HarborState = State<Arc<Mutex<Harbor>>>;

fn harbor_error(code: StatusCode, message: &str) -> Response {
    answer(
        code,
        json!({"errors": [{"code": code.as_str(), "message": message}]}),
    )
}

fn harbor_call(state: &HarborState, headers: &HeaderMap, call: String) -> Option<Response> {
    if !authorized(headers) {
        return Some(harbor_error(StatusCode::UNAUTHORIZED, "unauthorized"));
    }
    state.lock().expect("lock").calls.push(call);
    None
}

async fn harbor_registries(
    state: HarborState,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(denied) = harbor_call(&state, &headers, "GET /registries".to_owned()) {
        return denied;
    }
    let wanted = query
        .get("q")
        .and_then(|q| q.strip_prefix("name="))
        .map(str::to_owned);
    let harbor = state.lock().expect("lock");
    let found: Vec<Json> = harbor
        .registries
        .iter()
        .filter(|r| wanted.as_deref().is_none_or(|w| r["name"] == w))
        .cloned()
        .collect();
    answer(StatusCode::OK, Json::Array(found))
}

async fn harbor_add_registry(
    state: HarborState,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Json>,
) -> Response {
    if let Some(denied) = harbor_call(
        &state,
        &headers,
        format!(
            "POST /registries {}",
            body["name"].as_str().unwrap_or_default()
        ),
    ) {
        return denied;
    }
    let mut harbor = state.lock().expect("lock");
    if harbor.registries.iter().any(|r| r["name"] == body["name"]) {
        return harbor_error(StatusCode::CONFLICT, "the registry name is already used");
    }
    let id = harbor.registries.len() + 1;
    let mut registry = body;
    registry["id"] = json!(id);
    harbor.registries.push(registry);
    StatusCode::CREATED.into_response()
}

async fn harbor_project(
    state: HarborState,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(denied) = harbor_call(&state, &headers, format!("GET /projects/{name}")) {
        return denied;
    }
    match state.lock().expect("lock").projects.get(&name) {
        Some(project) => answer(StatusCode::OK, project.clone()),
        None => harbor_error(StatusCode::NOT_FOUND, "project not found"),
    }
}

async fn harbor_add_project(
    state: HarborState,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Json>,
) -> Response {
    let name = body["project_name"].as_str().unwrap_or_default().to_owned();
    if let Some(denied) = harbor_call(&state, &headers, format!("POST /projects {name}")) {
        return denied;
    }
    let mut harbor = state.lock().expect("lock");
    if let Some(code) = harbor.fail_projects {
        return harbor_error(
            StatusCode::from_u16(code).expect("status code"),
            "internal server error",
        );
    }
    if harbor.projects.contains_key(&name) {
        return harbor_error(StatusCode::CONFLICT, "the project name is already used");
    }
    harbor.projects.insert(
        name.clone(),
        json!({"name": name, "registry_id": body["registry_id"]}),
    );
    StatusCode::CREATED.into_response()
}

/// `GET /v2/`: Harbor asks for credentials, which shows the registry answers.
async fn registry_base() -> Response {
    StatusCode::UNAUTHORIZED.into_response()
}

/// `/v2/<project>/<repository>/manifests/<reference>`: 200 for cached images.
async fn registry_manifest(
    state: HarborState,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    _body: Bytes,
) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let path = uri.path().trim_start_matches("/v2/");
    let Some((name, reference)) = path.split_once("/manifests/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let image = format!("{name}:{reference}");
    let harbor = state.lock().expect("lock");
    if method == Method::GET && harbor.images.contains(&image) {
        StatusCode::OK.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}
