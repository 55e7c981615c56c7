//! Local stand-ins for the Gitea and Harbor HTTP APIs the steps call, answering like the
//! real ones for the requests the scripts make, recording every call, and failing on demand.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
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

/// A directory of bare git repositories, `<dir>/<owner>/<name>.git`, removed on drop.
pub struct GitRoot(pub PathBuf);

impl Default for GitRoot {
    fn default() -> Self {
        let dir = std::env::temp_dir().join(format!("gitea-standin-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("git root");
        GitRoot(dir)
    }
}

impl Drop for GitRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Gitea stand-in's organisations, repositories and call log. Its repositories are
/// real bare git repositories served over smart HTTP (`git http-backend`) like Gitea's
/// `<url>/<owner>/<name>.git`, and, like Gitea, it refuses every push to a pull mirror.
#[derive(Default)]
pub struct Gitea {
    /// Organisations (`GET /orgs/{org}` finds them; repositories can be created in them).
    pub orgs: BTreeSet<String>,
    /// `owner/name` → the repository as `GET /repos/{owner}/{repo}` answers it.
    pub repos: BTreeMap<String, Json>,
    /// `METHOD path` of every authorized API call, in order (git traffic is not logged).
    pub calls: Vec<String>,
    /// Bodies of the `POST /repos/migrate` calls.
    pub migrations: Vec<Json>,
    /// Bodies of the repository creations (`POST /orgs/{org}/repos`, `POST /user/repos`).
    pub creations: Vec<Json>,
    /// When set, `POST /repos/migrate` answers this status with a message.
    pub fail_migrate: Option<u16>,
    /// How long `POST /repos/migrate` clones before it answers: Gitea clones the upstream
    /// inside the request and answers 201 only once it is done.
    pub migrate_takes: std::time::Duration,
    /// Old `owner/name` → new `owner/name` of renamed repositories: Gitea answers the old
    /// name with a 307 redirect until a repository of that name is created again.
    pub redirects: BTreeMap<String, String>,
    /// Mirrors whose migration never finished: the repository is flagged a mirror, but
    /// Gitea has no mirror record for it (no `mirror_interval`; PATCH answers 500 and
    /// mirror-sync 400).
    pub half_made: BTreeSet<String>,
    /// The access tokens of [`USER`], in minting order.
    pub tokens: Vec<AccessToken>,
    /// Tokens minted so far (ids and values derive from it).
    pub minted: u64,
    /// Where the repositories live.
    pub git: GitRoot,
}

/// An access token as Gitea keeps it: its value is shown once, when it is minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// Gitea's id.
    pub id: u64,
    /// Unique per user.
    pub name: String,
    /// The secret value (`sha1` in the API).
    pub value: String,
    /// Its scopes.
    pub scopes: Vec<String>,
}

impl Gitea {
    /// A repository as Gitea describes it.
    pub fn repo(owner: &str, name: &str, mirror: bool, interval: &str, origin: &str) -> Json {
        json!({"full_name": format!("{owner}/{name}"), "mirror": mirror, "mirror_interval": interval,
               "original_url": origin})
    }

    /// The bare git repository of `owner/name`.
    pub fn path(&self, full_name: &str) -> PathBuf {
        self.git.0.join(format!("{full_name}.git"))
    }

    /// `owner/name` and the path of a repository about to be made, or Gitea's refusal.
    fn new_repo(
        &self,
        owner: Option<&str>,
        name: Option<&str>,
    ) -> Result<(String, PathBuf), (StatusCode, &'static str)> {
        let (Some(owner), Some(name)) = (owner, name) else {
            return Err((StatusCode::UNPROCESSABLE_ENTITY, "owner and name required"));
        };
        let full = format!("{owner}/{name}");
        if self.repos.contains_key(&full) {
            return Err((
                StatusCode::CONFLICT,
                "The repository with the same name already exists.",
            ));
        }
        let path = self.path(&full);
        Ok((full, path))
    }

    /// Where a request for `owner/name` goes when no repository has that name: the 307
    /// Gitea answers after a rename (its API follows `RedirectToRepo`), else a 404.
    fn missing(&self, full: &str, rest: &str) -> Response {
        match self.redirects.get(full) {
            Some(new) => (
                StatusCode::TEMPORARY_REDIRECT,
                [("location", format!("/api/v1/repos/{new}{rest}"))],
            )
                .into_response(),
            None => not_found(),
        }
    }
}

/// A Go `time.Duration` as Go prints it (`1h0m0s`, `10m0s`, `45s`), from the `h`, `m` and
/// `s` parts Gitea is given, or `None` for anything else.
pub fn go_duration(text: &str) -> Option<String> {
    let mut seconds = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' | 's' => {
                let n: u64 = number.parse().ok()?;
                seconds += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                number.clear();
            }
            _ => return None,
        }
    }
    if !number.is_empty() || text.is_empty() {
        return None;
    }
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    Some(match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    })
}

impl Server<Gitea> {
    /// Adds an existing repository: a pull mirror of the git repository at `mirror_of`,
    /// or an empty normal one.
    pub fn add_repo(&self, owner: &str, name: &str, mirror_of: Option<&str>, interval: &str) {
        let mut gitea = self.state.lock().expect("lock");
        let full = format!("{owner}/{name}");
        let path = gitea.path(&full);
        match mirror_of {
            Some(origin) => clone_mirror(origin, &path),
            None => init_bare(&path, "main"),
        }
        .expect("create the repository");
        let repo = Gitea::repo(
            owner,
            name,
            mirror_of.is_some(),
            interval,
            mirror_of.unwrap_or_default(),
        );
        gitea.repos.insert(full, repo);
    }

    /// What renaming `owner/old` to `owner/new` in Gitea's settings does: the repository
    /// moves, and the old name answers with a redirect to the new one.
    pub fn rename(&self, owner: &str, old: &str, new: &str) {
        let mut gitea = self.state.lock().expect("lock");
        let (from, to) = (format!("{owner}/{old}"), format!("{owner}/{new}"));
        let mut repo = gitea.repos.remove(&from).expect("the repository to rename");
        repo["full_name"] = json!(to);
        std::fs::rename(gitea.path(&from), gitea.path(&to)).expect("move the repository");
        gitea.repos.insert(to.clone(), repo);
        gitea.redirects.insert(from, to);
    }

    /// A pull mirror whose migration was cut off (the client went away while Gitea cloned):
    /// flagged a mirror, empty, without a mirror record.
    pub fn add_half_made_mirror(&self, owner: &str, name: &str) {
        let mut gitea = self.state.lock().expect("lock");
        let full = format!("{owner}/{name}");
        init_bare(&gitea.path(&full), "main").expect("create the repository");
        gitea
            .repos
            .insert(full.clone(), Gitea::repo(owner, name, true, "", ""));
        gitea.half_made.insert(full);
    }
}

/// Runs git with `args` (in `dir` when given): its trimmed stdout, or its stderr as the
/// error.
pub fn run_git<A: AsRef<std::ffi::OsStr>>(
    dir: Option<&std::path::Path>,
    args: &[A],
) -> Result<String, String> {
    let mut command = Command::new("git");
    command.args(args);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command.output().map_err(|e| format!("git: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

fn clone_mirror(origin: &str, path: &std::path::Path) -> Result<(), String> {
    run_git(
        None,
        &[
            "clone".as_ref(),
            "--quiet".as_ref(),
            "--mirror".as_ref(),
            origin.as_ref(),
            path.as_os_str(),
        ],
    )
    .map(drop)
}

fn init_bare(path: &std::path::Path, branch: &str) -> Result<(), String> {
    run_git(
        None,
        &[
            "init".as_ref(),
            "--quiet".as_ref(),
            "--bare".as_ref(),
            format!("--initial-branch={branch}").as_ref(),
            path.as_os_str(),
        ],
    )
    .map(drop)
}

/// Starts a Gitea stand-in serving `/api/v1` and its repositories over git's smart HTTP.
pub async fn gitea(state: Gitea) -> Server<Gitea> {
    let router = Router::new()
        .route("/api/v1/repos/migrate", post(gitea_migrate))
        .route(
            "/api/v1/repos/{owner}/{repo}",
            get(gitea_get).patch(gitea_patch).delete(gitea_delete),
        )
        .route("/api/v1/repos/{owner}/{repo}/mirror-sync", post(gitea_sync))
        .route("/api/v1/orgs/{org}", get(gitea_org))
        .route("/api/v1/orgs/{org}/repos", post(gitea_create_in_org))
        .route("/api/v1/user/repos", post(gitea_create_for_user))
        .route("/api/v1/user", get(gitea_user))
        .route(
            "/api/v1/users/{user}/tokens",
            get(gitea_list_tokens).post(gitea_mint_token),
        )
        .route(
            "/api/v1/users/{user}/tokens/{token}",
            axum::routing::delete(gitea_delete_token),
        )
        .fallback(gitea_git);
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

fn not_found() -> Response {
    answer(
        StatusCode::NOT_FOUND,
        json!({"message": "The target couldn't be found."}),
    )
}

/// `GET /user`: who the credentials are (the preflight's first Gitea call), by basic auth
/// or, as Gitea takes it, `Authorization: token <value>` of a token it minted.
async fn gitea_user(state: GiteaState, headers: HeaderMap) -> Response {
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("token "))
        .map(str::to_owned);
    if let Some(value) = presented {
        let mut gitea = state.lock().expect("lock");
        if !gitea.tokens.iter().any(|t| t.value == value) {
            return answer(
                StatusCode::UNAUTHORIZED,
                json!({"message": "invalid username, password or token"}),
            );
        }
        gitea.calls.push("GET /user (token)".to_owned());
        return answer(StatusCode::OK, json!({"login": USER}));
    }
    if let Some(denied) = gitea_call(&state, &headers, "GET /user".to_owned()) {
        return denied;
    }
    answer(StatusCode::OK, json!({"login": USER}))
}

/// The tokens of `user`, which must be the one who asks (Gitea: 403 for another user).
fn own_tokens(user: &str) -> Option<Response> {
    (user != USER).then(|| {
        answer(
            StatusCode::FORBIDDEN,
            json!({"message": "user should be the same as the one authenticated"}),
        )
    })
}

/// `GET /users/{user}/tokens`: the tokens, without their values (basic auth only).
async fn gitea_list_tokens(
    state: GiteaState,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    if let Some(denied) = gitea_call(&state, &headers, format!("GET /users/{user}/tokens")) {
        return denied;
    }
    if let Some(refused) = own_tokens(&user) {
        return refused;
    }
    let gitea = state.lock().expect("lock");
    let listed: Vec<Json> = gitea
        .tokens
        .iter()
        .map(|t| {
            json!({"id": t.id, "name": t.name, "sha1": "", "scopes": t.scopes,
                   "token_last_eight": &t.value[t.value.len() - 8..]})
        })
        .collect();
    answer(StatusCode::OK, Json::from(listed))
}

/// `POST /users/{user}/tokens`: mints a token, whose value only this answer carries; a name
/// in use is refused as Gitea refuses it (400).
async fn gitea_mint_token(
    state: GiteaState,
    headers: HeaderMap,
    Path(user): Path<String>,
    axum::Json(body): axum::Json<Json>,
) -> Response {
    if let Some(denied) = gitea_call(&state, &headers, format!("POST /users/{user}/tokens")) {
        return denied;
    }
    if let Some(refused) = own_tokens(&user) {
        return refused;
    }
    let name = body["name"].as_str().unwrap_or_default().to_owned();
    let scopes: Vec<String> = body["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    if name.is_empty() || scopes.is_empty() {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"message": "access token must have a name and a scope"}),
        );
    }
    let mut gitea = state.lock().expect("lock");
    if gitea.tokens.iter().any(|t| t.name == name) {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"message": "access token name has been used already"}),
        );
    }
    gitea.minted += 1;
    let id = gitea.minted;
    let value = format!("{}{id:08x}", uuid::Uuid::new_v4().simple());
    gitea.tokens.push(AccessToken {
        id,
        name: name.clone(),
        value: value.clone(),
        scopes: scopes.clone(),
    });
    answer(
        StatusCode::CREATED,
        json!({"id": id, "name": name, "sha1": value, "scopes": scopes,
               "token_last_eight": &value[value.len() - 8..]}),
    )
}

/// `DELETE /users/{user}/tokens/{token}`: by id or by name.
async fn gitea_delete_token(
    state: GiteaState,
    headers: HeaderMap,
    Path((user, token)): Path<(String, String)>,
) -> Response {
    let call = format!("DELETE /users/{user}/tokens/{token}");
    if let Some(denied) = gitea_call(&state, &headers, call) {
        return denied;
    }
    if let Some(refused) = own_tokens(&user) {
        return refused;
    }
    let mut gitea = state.lock().expect("lock");
    let before = gitea.tokens.len();
    gitea
        .tokens
        .retain(|t| t.id.to_string() != token && t.name != token);
    if gitea.tokens.len() == before {
        return not_found();
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn gitea_get(
    state: GiteaState,
    headers: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
) -> Response {
    if let Some(denied) = gitea_call(&state, &headers, format!("GET /repos/{owner}/{repo}")) {
        return denied;
    }
    let gitea = state.lock().expect("lock");
    let full = format!("{owner}/{repo}");
    match gitea.repos.get(&full) {
        Some(found) => answer(StatusCode::OK, found.clone()),
        None => gitea.missing(&full, ""),
    }
}

/// `DELETE /repos/{owner}/{repo}`: 204, the repository and its git data gone.
async fn gitea_delete(
    state: GiteaState,
    headers: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
) -> Response {
    if let Some(denied) = gitea_call(&state, &headers, format!("DELETE /repos/{owner}/{repo}")) {
        return denied;
    }
    let mut gitea = state.lock().expect("lock");
    let full = format!("{owner}/{repo}");
    if gitea.repos.remove(&full).is_none() {
        return gitea.missing(&full, "");
    }
    gitea.half_made.remove(&full);
    std::fs::remove_dir_all(gitea.path(&full)).ok();
    StatusCode::NO_CONTENT.into_response()
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
    let full = format!("{owner}/{repo}");
    if gitea.half_made.contains(&full) && body.get("mirror_interval").is_some() {
        return answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"message": "GetMirrorByRepoID: mirror does not exist"}),
        );
    }
    let interval = match body
        .get("mirror_interval")
        .map(|i| i.as_str().and_then(go_duration))
    {
        None => None,
        Some(Some(interval)) => Some(interval),
        Some(None) => {
            return answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": "Invalid mirror interval"}),
            );
        }
    };
    let Some(found) = gitea.repos.get_mut(&full) else {
        return gitea.missing(&full, "");
    };
    if let Some(interval) = interval {
        found["mirror_interval"] = json!(interval);
    }
    answer(StatusCode::OK, found.clone())
}

/// Fetches from the mirror's origin at once (Gitea queues it; the stand-in is synchronous).
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
    let full = format!("{owner}/{repo}");
    let path = {
        let gitea = state.lock().expect("lock");
        match gitea.repos.get(&full) {
            Some(_) if gitea.half_made.contains(&full) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    json!({"message": "mirror does not exist"}),
                );
            }
            Some(found) if found["mirror"] == true => gitea.path(&full),
            Some(_) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    json!({"message": "Repository is not a mirror"}),
                );
            }
            None => return gitea.missing(&full, "/mirror-sync"),
        }
    };
    let fetched = blocking(move || run_git(Some(&path), &["remote", "update", "--prune"])).await;
    match fetched {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"message": format!("mirror-sync: {e}")}),
        ),
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.expect("join")
}

async fn gitea_migrate(
    state: GiteaState,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Json>,
) -> Response {
    if let Some(denied) = gitea_call(&state, &headers, "POST /repos/migrate".to_owned()) {
        return denied;
    }
    let (full, path) = {
        let mut gitea = state.lock().expect("lock");
        gitea.migrations.push(body.clone());
        if let Some(code) = gitea.fail_migrate {
            let code = StatusCode::from_u16(code).expect("status code");
            return answer(code, json!({"message": "migrate: upstream unreachable"}));
        }
        let interval = body["mirror_interval"].as_str().unwrap_or("8h0m0s");
        if body["mirror"] == true && go_duration(interval).is_none() {
            return answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": "Invalid mirror interval"}),
            );
        }
        match gitea.new_repo(body["repo_owner"].as_str(), body["repo_name"].as_str()) {
            Ok(found) => found,
            Err((code, message)) => return answer(code, json!({ "message": message })),
        }
    };
    let origin = body["clone_addr"].as_str().unwrap_or_default().to_owned();
    let mirror = body["mirror"] == true;
    // Gitea clones inside the request: the repository exists (flagged a mirror, without its
    // mirror record yet) while the clone runs, and stays so if the request is cut off.
    let takes = {
        let mut gitea = state.lock().expect("lock");
        let (owner, name) = full.split_once('/').expect("owner/name");
        gitea
            .repos
            .insert(full.clone(), Gitea::repo(owner, name, mirror, "", &origin));
        gitea.half_made.insert(full.clone());
        gitea.migrate_takes
    };
    tokio::time::sleep(takes).await;
    let cloned = {
        let origin = origin.clone();
        blocking(move || {
            clone_mirror(&origin, &path)?;
            if mirror {
                Ok(())
            } else {
                // A plain migration keeps no link to its origin.
                run_git(Some(&path), &["remote", "remove", "origin"]).map(drop)
            }
        })
        .await
    };
    let interval = go_duration(body["mirror_interval"].as_str().unwrap_or("8h0m0s"));
    {
        let mut gitea = state.lock().expect("lock");
        gitea.half_made.remove(&full);
        // A failed migration takes its repository with it.
        if cloned.is_err() {
            gitea.repos.remove(&full);
        }
    }
    created(
        &state,
        &full,
        cloned,
        mirror,
        interval.as_deref().unwrap_or_default(),
        &origin,
    )
}

async fn gitea_org(state: GiteaState, headers: HeaderMap, Path(org): Path<String>) -> Response {
    if let Some(denied) = gitea_call(&state, &headers, format!("GET /orgs/{org}")) {
        return denied;
    }
    if state.lock().expect("lock").orgs.contains(&org) {
        answer(StatusCode::OK, json!({"username": org}))
    } else {
        not_found()
    }
}

async fn gitea_create_in_org(
    state: GiteaState,
    headers: HeaderMap,
    Path(org): Path<String>,
    axum::Json(body): axum::Json<Json>,
) -> Response {
    if let Some(denied) = gitea_call(&state, &headers, format!("POST /orgs/{org}/repos")) {
        return denied;
    }
    if !state.lock().expect("lock").orgs.contains(&org) {
        return not_found();
    }
    create_repo(&state, &org, body).await
}

async fn gitea_create_for_user(
    state: GiteaState,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Json>,
) -> Response {
    if let Some(denied) = gitea_call(&state, &headers, "POST /user/repos".to_owned()) {
        return denied;
    }
    create_repo(&state, USER, body).await
}

/// A new, empty, normal repository (`auto_init` is not supported: the steps never ask).
async fn create_repo(state: &GiteaState, owner: &str, body: Json) -> Response {
    let (full, path) = {
        let mut gitea = state.lock().expect("lock");
        gitea.creations.push(body.clone());
        match gitea.new_repo(Some(owner), body["name"].as_str()) {
            Ok(found) => found,
            Err((code, message)) => return answer(code, json!({ "message": message })),
        }
    };
    let branch = body["default_branch"].as_str().unwrap_or("main").to_owned();
    let made = blocking(move || init_bare(&path, &branch)).await;
    created(state, &full, made, false, "", "")
}

/// The answer to a repository creation, recording the repository once git has made it.
fn created(
    state: &GiteaState,
    full: &str,
    made: Result<(), String>,
    mirror: bool,
    interval: &str,
    origin: &str,
) -> Response {
    if let Err(e) = made {
        return answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"message": format!("create {full}: {e}")}),
        );
    }
    let (owner, name) = full.split_once('/').expect("owner/name");
    let repo = Gitea::repo(owner, name, mirror, interval, origin);
    let mut gitea = state.lock().expect("lock");
    gitea.repos.insert(full.to_owned(), repo.clone());
    // A repository of the old name takes its place: the redirect goes (Gitea's
    // DeleteRedirect on creation).
    gitea.redirects.remove(full);
    answer(StatusCode::CREATED, repo)
}

fn plain(code: StatusCode, text: &str) -> Response {
    (
        code,
        [("content-type", "text/plain; charset=utf-8")],
        text.to_owned(),
    )
        .into_response()
}

/// Git's smart HTTP on `/<owner>/<name>.git/...`, as Gitea answers it: credentials
/// required (private repositories), and a push to a pull mirror refused with 403.
async fn gitea_git(
    state: GiteaState,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let Some((full, rest)) = path
        .trim_start_matches('/')
        .split_once(".git/")
        .map(|(f, r)| (f.to_owned(), r.to_owned()))
    else {
        return plain(StatusCode::NOT_FOUND, "Not found");
    };
    let service = match (method.as_str(), rest.as_str()) {
        ("GET", "info/refs") => query
            .split('&')
            .find_map(|kv| kv.strip_prefix("service="))
            .unwrap_or_default()
            .to_owned(),
        ("POST", "git-upload-pack" | "git-receive-pack") => rest.clone(),
        _ => return plain(StatusCode::NOT_FOUND, "Not found"),
    };
    if !authorized(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"Gitea\"")],
            "Unauthorized",
        )
            .into_response();
    }
    let root = {
        let gitea = state.lock().expect("lock");
        let Some(repo) = gitea.repos.get(&full) else {
            return plain(StatusCode::NOT_FOUND, "Repository not found");
        };
        if service == "git-receive-pack" && repo["mirror"] == true {
            // Gitea's routers/web/repo/githttp.go, word for word.
            return plain(StatusCode::FORBIDDEN, "mirror repository is read-only");
        }
        gitea.git.0.clone()
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let cgi_env = [
        ("GIT_PROJECT_ROOT", root.display().to_string()),
        ("GIT_HTTP_EXPORT_ALL", "1".to_owned()),
        ("PATH_INFO", path),
        ("REQUEST_METHOD", method.as_str().to_owned()),
        ("QUERY_STRING", query),
        ("CONTENT_TYPE", header("content-type")),
        ("HTTP_CONTENT_ENCODING", header("content-encoding")),
        ("HTTP_GIT_PROTOCOL", header("git-protocol")),
        // Set, so that http-backend serves receive-pack.
        ("REMOTE_USER", USER.to_owned()),
        ("REMOTE_ADDR", "127.0.0.1".to_owned()),
    ];
    match blocking(move || http_backend(&cgi_env, &body)).await {
        Ok(response) => response,
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// Runs `git http-backend` as a CGI program and turns its output into a response.
fn http_backend(cgi_env: &[(&str, String)], body: &[u8]) -> Result<Response, String> {
    use std::io::Write;
    let mut child = Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(cgi_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("git http-backend: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin");
    let body = body.to_vec();
    // Written from a thread of its own: http-backend may answer before it has read it all.
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let output = child
        .wait_with_output()
        .map_err(|e| format!("git http-backend: {e}"))?;
    let _ = writer.join();
    let out = output.stdout;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            out.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        })
        .ok_or_else(|| {
            format!(
                "git http-backend: no CGI headers: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let mut response = Response::builder();
    for line in String::from_utf8_lossy(&out[..split.0]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("500");
            response = response.status(code.parse::<u16>().unwrap_or(500));
        } else {
            response = response.header(name, value);
        }
    }
    response
        .body(axum::body::Body::from(out[split.1..].to_vec()))
        .map_err(|e| format!("git http-backend: {e}"))
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
    /// `project/repository:tag` the proxy cache can serve: a multi-platform image (an index
    /// of linux/amd64 and linux/arm64) when the repository ends in `-multi`, else a
    /// single-platform one, each with a config and two layers ([`image_manifest`]).
    pub images: BTreeSet<String>,
    /// `project/repository@digest` of every blob pulled, in order.
    pub blobs_pulled: Vec<String>,
    /// `METHOD path` of every authorized API call, in order.
    pub calls: Vec<String>,
    /// When set, `POST /projects` answers this status with a message.
    pub fail_projects: Option<u16>,
    /// Upstream URL → the status `POST /registries/ping` answers for it (200 otherwise).
    pub ping: BTreeMap<String, u16>,
    /// The credentials are a robot account's: `GET /users/current` answers 412, as Harbor
    /// answers every security context but a local user's.
    pub robot: bool,
    /// `resource action` pairs of `/system` the credentials hold (`GET
    /// /users/current/permissions?scope=/system&relative=true`); `None`: a system
    /// administrator's, all of them.
    pub system_permissions: Option<Vec<(String, String)>>,
    /// How long after a GET streamed it the proxy cache has stored a manifest or blob:
    /// Harbor streams to the client and stores in the background.
    pub store_after: std::time::Duration,
    /// Digests the proxy cache streams but never stores (a background store that failed).
    pub never_store: BTreeSet<String>,
    /// How long each blob GET streams (a large layer).
    pub blob_takes: std::time::Duration,
    /// `project/repository@digest` or `project/repository:tag` → when the proxy cache has it
    /// in local storage.
    pub stored: BTreeMap<String, std::time::Instant>,
}

impl Harbor {
    /// Whether `key` is in local storage now.
    fn has(&self, key: &str) -> bool {
        self.stored
            .get(key)
            .is_some_and(|at| *at <= std::time::Instant::now())
    }

    /// What a GET through the proxy cache leaves behind: `key` stored a little later, unless
    /// its digest is one the cache never stores.
    fn store(&mut self, key: String, digest: &str) {
        if !self.never_store.contains(digest) {
            let at = std::time::Instant::now() + self.store_after;
            self.stored.entry(key).or_insert(at);
        }
    }
}

/// Starts a Harbor stand-in serving `/api/v2.0` and the registry's `/v2/`.
pub async fn harbor(state: Harbor) -> Server<Harbor> {
    let router = Router::new()
        .route(
            "/api/v2.0/registries",
            get(harbor_registries).post(harbor_add_registry),
        )
        .route("/api/v2.0/registries/ping", post(harbor_ping))
        .route("/api/v2.0/users/current", get(harbor_current_user))
        .route(
            "/api/v2.0/users/current/permissions",
            get(harbor_current_permissions),
        )
        .route(
            "/api/v2.0/projects/{project}/repositories/{repository}/artifacts/{reference}",
            get(harbor_artifact),
        )
        .route("/api/v2.0/projects", post(harbor_add_project))
        .route(
            "/api/v2.0/projects/{name}",
            get(harbor_project).put(harbor_update_project),
        )
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

/// `GET /users/current`: who the credentials are.
async fn harbor_current_user(state: HarborState, headers: HeaderMap) -> Response {
    if let Some(denied) = harbor_call(&state, &headers, "GET /users/current".to_owned()) {
        return denied;
    }
    if state.lock().expect("lock").robot {
        return harbor_error(
            StatusCode::PRECONDITION_FAILED,
            "get current user not available for security context: robot",
        );
    }
    answer(
        StatusCode::OK,
        json!({"username": USER, "sysadmin_flag": true}),
    )
}

/// `GET /users/current/permissions?scope=/system&relative=true`: what the credentials may
/// do system-wide, for users and robots alike.
async fn harbor_current_permissions(
    state: HarborState,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(denied) = harbor_call(
        &state,
        &headers,
        "GET /users/current/permissions".to_owned(),
    ) {
        return denied;
    }
    let relative = query.get("relative").map(String::as_str) == Some("true");
    if query.get("scope").map(String::as_str) != Some("/system") || !relative {
        return answer(StatusCode::OK, json!([]));
    }
    let all = || {
        ["registry", "project", "user"]
            .into_iter()
            .flat_map(|r| {
                ["create", "read", "update", "delete", "list"].map(|a| (r.to_owned(), a.to_owned()))
            })
            .collect::<Vec<_>>()
    };
    let held = state
        .lock()
        .expect("lock")
        .system_permissions
        .clone()
        .unwrap_or_else(all);
    let list: Vec<Json> = held
        .into_iter()
        .map(|(resource, action)| json!({"resource": resource, "action": action}))
        .collect();
    answer(StatusCode::OK, Json::Array(list))
}

/// `GET /projects/{p}/repositories/{r}/artifacts/{reference}` (`r` URL-encoded twice, as
/// Harbor wants it): the artifact from local storage, or 404.
async fn harbor_artifact(
    state: HarborState,
    headers: HeaderMap,
    Path((project, repository, reference)): Path<(String, String, String)>,
) -> Response {
    if let Some(denied) = harbor_call(
        &state,
        &headers,
        format!("GET /projects/{project}/repositories/{repository}/artifacts/{reference}"),
    ) {
        return denied;
    }
    let repository = repository.replace("%2F", "/").replace("%2f", "/");
    let at = if reference.starts_with("sha256:") {
        '@'
    } else {
        ':'
    };
    let key = format!("{project}/{repository}{at}{reference}");
    if state.lock().expect("lock").has(&key) {
        answer(StatusCode::OK, json!({"digest": reference}))
    } else {
        harbor_error(StatusCode::NOT_FOUND, "artifact not found")
    }
}

/// `POST /registries/ping`: whether Harbor would reach the endpoint; creates nothing.
async fn harbor_ping(
    state: HarborState,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Json>,
) -> Response {
    let url = body["url"].as_str().unwrap_or_default().to_owned();
    if let Some(denied) = harbor_call(&state, &headers, format!("POST /registries/ping {url}")) {
        return denied;
    }
    match state.lock().expect("lock").ping.get(&url) {
        None => StatusCode::OK.into_response(),
        Some(&code) => harbor_error(
            StatusCode::from_u16(code).expect("status code"),
            "failed to ping endpoint",
        ),
    }
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
        json!({"name": name, "registry_id": body["registry_id"], "public": body["public"],
               "metadata": body["metadata"]}),
    );
    StatusCode::CREATED.into_response()
}

/// `PUT /projects/{name}`: merges the metadata.
async fn harbor_update_project(
    state: HarborState,
    headers: HeaderMap,
    Path(name): Path<String>,
    axum::Json(body): axum::Json<Json>,
) -> Response {
    if let Some(denied) = harbor_call(
        &state,
        &headers,
        format!("PUT /projects/{name} {}", body["metadata"]),
    ) {
        return denied;
    }
    let mut harbor = state.lock().expect("lock");
    let Some(project) = harbor.projects.get_mut(&name) else {
        return harbor_error(StatusCode::NOT_FOUND, "project not found");
    };
    if let (Some(have), Some(new)) = (
        project["metadata"].as_object_mut(),
        body["metadata"].as_object(),
    ) {
        have.extend(new.clone());
    } else {
        project["metadata"] = body["metadata"].clone();
    }
    StatusCode::OK.into_response()
}

/// A stand-in digest of `seed`.
pub fn digest(seed: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    seed.hash(&mut hasher);
    format!("sha256:{:064x}", hasher.finish())
}

/// The manifest of `repository` for `platform` (empty: a single-platform image): a config
/// and two layers.
pub fn image_manifest(repository: &str, platform: &str) -> Json {
    let blob = |what: &str| json!({"digest": digest(&format!("{repository}|{platform}|{what}")), "size": 1});
    json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": blob("config"), "layers": [blob("layer-1"), blob("layer-2")]})
}

/// The blobs of `repository`'s manifest for `platform`.
pub fn image_blobs(repository: &str, platform: &str) -> Vec<String> {
    let manifest = image_manifest(repository, platform);
    std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().into_iter().flatten())
        .filter_map(|blob| blob["digest"].as_str().map(str::to_owned))
        .collect()
}

/// The platforms of a multi-platform image.
pub const PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];

/// `GET /v2/`: Harbor asks for credentials, which shows the registry answers.
async fn registry_base() -> Response {
    StatusCode::UNAUTHORIZED.into_response()
}

/// `/v2/<project>/<repository>/manifests/<reference>` and `/blobs/<digest>`: what the proxy
/// cache serves of [`Harbor::images`], as Harbor's repoproxy does: a GET streams from
/// upstream and stores in the background ([`Harbor::store_after`]); a blob HEAD answers from
/// local storage only; a manifest HEAD asks upstream and stores nothing.
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
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let path = uri.path().trim_start_matches("/v2/").to_owned();
    let head = method == Method::HEAD;
    if let Some((name, blob)) = path.split_once("/blobs/") {
        let takes = {
            let mut harbor = state.lock().expect("lock");
            let key = format!("{name}@{blob}");
            if head {
                return if harbor.has(&key) {
                    StatusCode::OK.into_response()
                } else {
                    StatusCode::NOT_FOUND.into_response()
                };
            }
            if !serves_blob(&harbor, name, blob) {
                return StatusCode::NOT_FOUND.into_response();
            }
            harbor.blobs_pulled.push(key.clone());
            harbor.store(key, blob);
            harbor.blob_takes
        };
        tokio::time::sleep(takes).await;
        return (StatusCode::OK, "layer").into_response();
    }
    let Some((name, reference)) = path.split_once("/manifests/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut harbor = state.lock().expect("lock");
    let Some((manifest, digest)) = manifest_of(&harbor, name, reference) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !head {
        harbor.store(format!("{name}@{digest}"), &digest);
        if !reference.starts_with("sha256:") {
            harbor.store(format!("{name}:{reference}"), &digest);
        }
    }
    let headers = [("docker-content-digest", digest)];
    if head {
        (StatusCode::OK, headers).into_response()
    } else {
        (StatusCode::OK, headers, axum::Json(manifest)).into_response()
    }
}

/// Whether `name` (`project/repository`) has the blob `blob` upstream.
fn serves_blob(harbor: &Harbor, name: &str, blob: &str) -> bool {
    let platforms: Vec<&str> = if name.ends_with("-multi") {
        PLATFORMS.to_vec()
    } else {
        vec![""]
    };
    known(harbor, name)
        && platforms
            .iter()
            .any(|p| image_blobs(name, p).iter().any(|b| b == blob))
}

fn known(harbor: &Harbor, name: &str) -> bool {
    harbor
        .images
        .iter()
        .any(|image| image.rsplit_once(':').is_some_and(|(n, _)| n == name))
}

/// The manifest `reference` of `name` upstream, and its digest.
fn manifest_of(harbor: &Harbor, name: &str, reference: &str) -> Option<(Json, String)> {
    let by_tag = harbor.images.contains(&format!("{name}:{reference}"));
    if name.ends_with("-multi") {
        let index_digest = digest(&format!("{name}|index"));
        if by_tag || reference == index_digest {
            let entries: Vec<Json> = PLATFORMS
                .iter()
                .map(|p| {
                    let (os, architecture) = p.split_once('/').unwrap_or_default();
                    json!({"digest": digest(&format!("{name}|{p}")),
                           "platform": {"os": os, "architecture": architecture}})
                })
                .collect();
            let index = json!({"schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
            return Some((index, index_digest));
        }
        return PLATFORMS
            .iter()
            .find(|p| known(harbor, name) && digest(&format!("{name}|{p}")) == reference)
            .map(|p| (image_manifest(name, p), reference.to_owned()));
    }
    let single = digest(&format!("{name}|"));
    (by_tag || (known(harbor, name) && reference == single))
        .then(|| (image_manifest(name, ""), single))
}
