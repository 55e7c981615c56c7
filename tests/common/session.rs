//! A stand-in for the admin console's backend in its one role here: the session check a
//! forward-auth URL points at (it is the outside party), and RBAC for the groups it names.

use k8s_openapi::api::rbac::v1::ClusterRole;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What the session check answers for one `Cookie` header.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 200 naming the user and their groups (comma-separated, possibly empty).
    User(String, String),
    /// Another status, without a user.
    Status(u16),
}

/// The session check on a local port: `GET <url>` answers per the request's whole
/// `Cookie` header, 401 for any it does not know. It records the headers of every call.
pub struct Backend {
    /// The forward-auth URL.
    pub url: String,
    calls: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Serves `sessions` (Cookie header → answer).
    pub async fn start(sessions: Vec<(String, Answer)>) -> Backend {
        let calls: Arc<Mutex<Vec<BTreeMap<String, String>>>> = Arc::default();
        let sessions: Arc<BTreeMap<String, Answer>> = Arc::new(sessions.into_iter().collect());
        let seen = calls.clone();
        let app = axum::Router::new().route(
            "/auth/check",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let (seen, sessions) = (seen.clone(), sessions.clone());
                async move {
                    let headers: BTreeMap<String, String> = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
                        .collect();
                    let answer = headers
                        .get("cookie")
                        .and_then(|c| sessions.get(c))
                        .cloned()
                        .unwrap_or(Answer::Status(401));
                    seen.lock().expect("lock").push(headers);
                    let response = axum::http::Response::builder();
                    match answer {
                        Answer::User(user, groups) => response
                            .status(200)
                            .header("x-auth-request-user", user)
                            .header("x-auth-request-groups", groups),
                        Answer::Status(code) => response.status(code),
                    }
                    .body(axum::body::Body::from("session check"))
                    .expect("response")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the session check");
        let url = format!(
            "http://{}/auth/check",
            listener.local_addr().expect("address")
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Backend { url, calls, task }
    }

    /// The headers of every call so far.
    pub fn calls(&self) -> Vec<BTreeMap<String, String>> {
        self.calls.lock().expect("lock").clone()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `role` to the group `group` in `ns` and waits until the API server's authorizer
/// lets a member read cutovers (every role granted here includes `get`).
pub async fn grant_group(client: &kube::Client, ns: &str, group: &str, role: ClusterRole) {
    let subject = json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group});
    let member = ("console:probe".to_owned(), vec![group.to_owned()]);
    super::bind(
        client,
        ns,
        group,
        subject,
        member,
        role,
        super::cutovers_probe(ns),
    )
    .await;
}
