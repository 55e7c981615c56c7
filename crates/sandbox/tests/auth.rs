//! Authentication and authorization as a client meets them: 401 for unknown tokens, RBAC's
//! 403 with kube-apiserver's own message, TokenReview and SubjectAccessReview round trips,
//! service-account tokens from the TokenRequest API (expiry and deletion included), and
//! per-user auth still holding behind the fault proxy.
//!
//! Against a real cluster (CUTOVER_TEST_KUBECONFIG) the parts that need a user's bearer token
//! from the sandbox's token table are skipped; the rest runs unchanged.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{ListParams, LogParams, PostParams};
use kube::config::KubeConfigOptions;
use kube::{Api, Client, Config};
use kube_sandbox::access_control::TokenTable;
use kube_sandbox::api::ApiServerConfig;
use kube_sandbox::faults::FaultProxy;
use kube_sandbox::testing::{
    TestCluster, api_status, client_with_token, create_service_account, request_token, sleep_until,
    token_of,
};

/// The users of the token table the sandbox starts with.
const TOKENS: &str = "alice-token=alice:team-a,runner-token=system:serviceaccount:auth-ns:runner";

/// Longest any step may take before the test counts as hung; a guard, not a measurement.
const HANG: Duration = Duration::from_secs(60);

async fn start() -> TestCluster {
    let tokens = TokenTable::parse(TOKENS).expect("token spec");
    TestCluster::start_with(ApiServerConfig {
        tokens: Some(tokens),
        ..ApiServerConfig::default()
    })
    .await
}

/// The sandbox with [`TOKENS`]; `None` on a real cluster, whose users' tokens the suite
/// cannot know.
async fn sandbox_with_tokens() -> Option<TestCluster> {
    let cluster = start().await;
    if cluster.sandbox().is_some() {
        return Some(cluster);
    }
    eprintln!("skipped: needs the sandbox's token table");
    cluster.cleanup().await;
    None
}

/// Polls `check` until it holds: a real cluster's RBAC sees new bindings only after its
/// informers catch up.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = tokio::time::timeout(HANG, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what} did not happen within {HANG:?}");
}

fn rule(verbs: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

/// Creates Role `name` with `rules` in `ns`, bound to `subject`.
async fn grant(client: &Client, ns: &str, name: &str, rules: Vec<PolicyRule>, subject: Subject) {
    let mut role = Role {
        rules: Some(rules),
        ..Role::default()
    };
    role.metadata.name = Some(name.to_owned());
    Api::<Role>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("create role");
    let mut binding = RoleBinding {
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: name.to_owned(),
        },
        subjects: Some(vec![subject]),
        ..RoleBinding::default()
    };
    binding.metadata.name = Some(name.to_owned());
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create rolebinding");
}

fn subject(kind: &str, name: &str, namespace: Option<&str>) -> Subject {
    Subject {
        api_group: (kind != "ServiceAccount").then(|| "rbac.authorization.k8s.io".to_owned()),
        kind: kind.to_owned(),
        name: name.to_owned(),
        namespace: namespace.map(str::to_owned),
    }
}

/// Asks the cluster whether `user` in `groups` may `verb` configmaps (named `name`) in `ns`.
async fn may(
    client: &Client,
    user: &str,
    groups: &[&str],
    verb: &str,
    ns: &str,
    name: Option<&str>,
) -> bool {
    review_access(
        client,
        SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(String::new()),
                resource: Some("configmaps".to_owned()),
                namespace: Some(ns.to_owned()),
                name: name.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
    )
    .await
}

/// The cluster's SubjectAccessReview answer to `spec`.
async fn review_access(client: &Client, spec: SubjectAccessReviewSpec) -> bool {
    let review = SubjectAccessReview {
        spec,
        ..SubjectAccessReview::default()
    };
    let answered = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("create subjectaccessreview");
    answered.status.expect("review status").allowed
}

/// The cluster's TokenReview answer for `token`.
async fn review_token(client: &Client, token: &str) -> TokenReviewStatus {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_owned()),
            ..TokenReviewSpec::default()
        },
        ..TokenReview::default()
    };
    Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("create tokenreview")
        .status
        .expect("review status")
}

#[tokio::test]
async fn subject_access_reviews_follow_rbac() {
    let cluster = start().await;
    let admin = cluster.client();
    let ns = cluster.namespace().to_owned();
    grant(
        &admin,
        &ns,
        "cm-reader",
        vec![rule(&["get", "list"], &["configmaps"])],
        subject("User", "sar-alice", None),
    )
    .await;
    grant(
        &admin,
        &ns,
        "cm-writer",
        vec![rule(&["create"], &["configmaps"])],
        subject("Group", "sar-writers", None),
    )
    .await;
    grant(
        &admin,
        &ns,
        "cm-runner",
        vec![rule(&["delete"], &["configmaps"])],
        subject("ServiceAccount", "runner", Some(&ns)),
    )
    .await;

    eventually("the reader binding taking effect", || {
        may(&admin, "sar-alice", &[], "get", &ns, Some("x"))
    })
    .await;
    assert!(may(&admin, "sar-alice", &[], "list", &ns, None).await);
    assert!(!may(&admin, "sar-alice", &[], "delete", &ns, Some("x")).await);
    assert!(!may(&admin, "sar-alice", &[], "get", "default", Some("x")).await);
    assert!(!may(&admin, "sar-bob", &[], "get", &ns, Some("x")).await);

    eventually("the group binding taking effect", || {
        may(&admin, "sar-bob", &["sar-writers"], "create", &ns, None)
    })
    .await;
    assert!(!may(&admin, "sar-bob", &["sar-writers"], "get", &ns, Some("x")).await);

    let runner = format!("system:serviceaccount:{ns}:runner");
    let sa_groups = [
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{ns}"),
    ];
    let sa_groups: Vec<&str> = sa_groups.iter().map(String::as_str).collect();
    eventually("the service-account binding taking effect", || {
        may(&admin, &runner, &sa_groups, "delete", &ns, Some("x"))
    })
    .await;
    let other = format!("system:serviceaccount:{ns}:other");
    assert!(!may(&admin, &other, &sa_groups, "delete", &ns, Some("x")).await);

    // system:masters may do anything, bound or not.
    assert!(
        may(
            &admin,
            "root",
            &["system:masters"],
            "delete",
            &ns,
            Some("x")
        )
        .await
    );

    // A non-resource URL: nobody above was granted /healthz-like paths.
    let private_path = SubjectAccessReviewSpec {
        user: Some("sar-alice".to_owned()),
        non_resource_attributes: Some(NonResourceAttributes {
            path: Some("/sar-private".to_owned()),
            verb: Some("get".to_owned()),
        }),
        ..SubjectAccessReviewSpec::default()
    };
    assert!(!review_access(&admin, private_path).await);
    cluster.cleanup().await;
}

#[tokio::test]
async fn unknown_tokens_get_the_servers_401() {
    let cluster = start().await;
    let stranger = client_with_token(&cluster, "no-such-token").await;
    let status = api_status(
        Api::<Namespace>::all(stranger)
            .list(&ListParams::default())
            .await
            .expect_err("401"),
    );
    assert_eq!(status.code, 401);
    assert_eq!(status.reason, "Unauthorized");
    assert_eq!(status.message, "Unauthorized");

    let authenticated = review_token(&cluster.client(), "no-such-token")
        .await
        .authenticated;
    // The real server leaves `authenticated: false` out, so absent counts as false.
    assert!(!authenticated.unwrap_or(false));
    cluster.cleanup().await;
}

#[tokio::test]
async fn token_reviews_name_the_user_behind_a_token() {
    let Some(cluster) = sandbox_with_tokens().await else {
        return;
    };
    let admin = cluster.client();
    let alice = review_token(&admin, "alice-token").await;
    assert_eq!(alice.authenticated, Some(true));
    let user = alice.user.expect("user");
    assert_eq!(user.username.as_deref(), Some("alice"));
    let groups = user.groups.unwrap_or_default();
    assert!(groups.contains(&"team-a".to_owned()));
    assert!(groups.contains(&"system:authenticated".to_owned()));

    let runner = review_token(&admin, "runner-token")
        .await
        .user
        .expect("user");
    assert_eq!(
        runner.username.as_deref(),
        Some("system:serviceaccount:auth-ns:runner")
    );
    assert!(
        runner
            .groups
            .unwrap_or_default()
            .contains(&"system:serviceaccounts:auth-ns".to_owned())
    );
    cluster.cleanup().await;
}

#[tokio::test]
async fn rbac_denials_answer_the_servers_403_until_granted() {
    let Some(cluster) = sandbox_with_tokens().await else {
        return;
    };
    let ns = cluster.namespace().to_owned();
    let alice = client_with_token(&cluster, "alice-token").await;
    let alices: Api<ConfigMap> = Api::namespaced(alice.clone(), &ns);

    let listed = api_status(alices.list(&ListParams::default()).await.expect_err("403"));
    assert_eq!(listed.code, 403);
    assert_eq!(listed.reason, "Forbidden");
    assert_eq!(
        listed.message,
        format!(
            r#"configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group "" in the namespace "{ns}""#
        )
    );
    let got = api_status(alices.get("x").await.expect_err("403"));
    assert_eq!(
        got.message,
        format!(
            r#"configmaps "x" is forbidden: User "alice" cannot get resource "configmaps" in API group "" in the namespace "{ns}""#
        )
    );
    let details = got.details.expect("details");
    assert_eq!(
        (details.kind.as_str(), details.name.as_str()),
        ("configmaps", "x")
    );

    // A subresource is named with its resource; a cluster-scoped kind has no namespace.
    let logs = Api::<Pod>::namespaced(alice.clone(), &ns)
        .logs("p", &LogParams::default())
        .await
        .expect_err("403");
    assert_eq!(
        api_status(logs).message,
        format!(
            r#"pods "p" is forbidden: User "alice" cannot get resource "pods/log" in API group "" in the namespace "{ns}""#
        )
    );
    let nodes = Api::<Node>::all(alice.clone())
        .list(&ListParams::default())
        .await
        .expect_err("403");
    assert_eq!(
        api_status(nodes).message,
        r#"nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope"#
    );

    grant(
        &cluster.client(),
        &ns,
        "team-a-reads",
        vec![rule(&["list"], &["configmaps"])],
        subject("Group", "team-a", None),
    )
    .await;
    assert!(alices.list(&ListParams::default()).await.is_ok());
    // Granted in this namespace only.
    let elsewhere = Api::<ConfigMap>::namespaced(alice, "default");
    let status = api_status(
        elsewhere
            .list(&ListParams::default())
            .await
            .expect_err("403"),
    );
    assert_eq!(status.code, 403);
    cluster.cleanup().await;
}

#[tokio::test]
async fn per_user_auth_holds_behind_the_fault_proxy() {
    let Some(cluster) = sandbox_with_tokens().await else {
        return;
    };
    let upstream = cluster.config().await;
    let proxy = FaultProxy::start(upstream).await.expect("proxy");
    let mut config =
        Config::from_custom_kubeconfig(proxy.kubeconfig(), &KubeConfigOptions::default())
            .await
            .expect("proxy config");
    config.default_retry = false;
    let ns = cluster.namespace().to_owned();

    // Without a token of its own, a caller acts with the upstream's (admin) credentials.
    let as_admin = Client::try_from(config.clone()).expect("client");
    Api::<ConfigMap>::namespaced(as_admin, &ns)
        .list(&ListParams::default())
        .await
        .expect("admin list through the proxy");

    // With one, it is that user, with that user's rights.
    config.auth_info.token = Some("alice-token".to_owned().into());
    let as_alice = Client::try_from(config.clone()).expect("client");
    let status = api_status(
        Api::<ConfigMap>::namespaced(as_alice, &ns)
            .list(&ListParams::default())
            .await
            .expect_err("403 through the proxy"),
    );
    assert_eq!(status.code, 403);
    assert!(
        status.message.contains(r#"User "alice""#),
        "{}",
        status.message
    );
    config.auth_info.token = Some("no-such-token".to_owned().into());
    let stranger = Client::try_from(config).expect("client");
    let status = api_status(
        Api::<ConfigMap>::namespaced(stranger, &ns)
            .list(&ListParams::default())
            .await
            .expect_err("401 through the proxy"),
    );
    assert_eq!(status.code, 401);
    proxy.shutdown().await;
    cluster.cleanup().await;
}

#[tokio::test]
async fn token_requests_issue_service_account_tokens() {
    let cluster = start().await;
    let admin = cluster.client();
    let ns = cluster.namespace().to_owned();
    let runner = create_service_account(&admin, &ns, "runner").await;

    // The ServiceAccount is looked up before the lifetime is checked.
    let missing = api_status(
        request_token(&admin, &ns, "nobody", Some(60))
            .await
            .expect_err("404"),
    );
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    let short = api_status(
        request_token(&admin, &ns, "runner", Some(60))
            .await
            .expect_err("422"),
    );
    assert_eq!((short.code, short.reason.as_str()), (422, "Invalid"));
    assert!(
        short
            .message
            .contains("spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"),
        "{}",
        short.message
    );

    let answer = request_token(&admin, &ns, "runner", None)
        .await
        .expect("token");
    let status = answer.status.clone().expect("status");
    let lifetime = status
        .expiration_timestamp
        .0
        .duration_since(jiff::Timestamp::now());
    assert!(
        lifetime.as_secs() > 0 && lifetime.as_secs() <= 3600,
        "the default lifetime is an hour, {lifetime:?} left"
    );
    let token = token_of(&answer);
    let reviewed = review_token(&admin, &token).await;
    assert_eq!(reviewed.authenticated, Some(true), "{reviewed:?}");
    let user = reviewed.user.expect("user");
    assert_eq!(
        user.username.as_deref(),
        Some(format!("system:serviceaccount:{ns}:runner").as_str())
    );
    assert_eq!(user.uid, runner.metadata.uid);
    let groups = user.groups.unwrap_or_default();
    for group in [
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{ns}"),
        "system:authenticated".to_owned(),
    ] {
        assert!(groups.contains(&group), "{group} missing from {groups:?}");
    }

    // The token authenticates requests; RBAC decides, the token subresource included.
    let as_runner = client_with_token(&cluster, &token).await;
    let denied = api_status(
        request_token(&as_runner, &ns, "runner", None)
            .await
            .expect_err("403"),
    );
    assert_eq!(denied.code, 403);
    assert_eq!(
        denied.message,
        format!(
            r#"serviceaccounts "runner" is forbidden: User "system:serviceaccount:{ns}:runner" cannot create resource "serviceaccounts/token" in API group "" in the namespace "{ns}""#
        )
    );
    grant(
        &admin,
        &ns,
        "token-issuer",
        vec![rule(&["create"], &["serviceaccounts/token"])],
        subject("ServiceAccount", "runner", Some(&ns)),
    )
    .await;
    eventually("the token-issuer binding taking effect", || async {
        request_token(&as_runner, &ns, "runner", None).await.is_ok()
    })
    .await;

    // A bound token dies with its ServiceAccount.
    Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
        .delete("runner", &Default::default())
        .await
        .expect("delete serviceaccount");
    eventually("the token being refused", || async {
        !review_token(&admin, &token)
            .await
            .authenticated
            .unwrap_or(false)
    })
    .await;
    let gone = review_token(&admin, &token).await;
    assert!(!gone.error.unwrap_or_default().is_empty());
    let status = api_status(
        Api::<ConfigMap>::namespaced(as_runner, &ns)
            .list(&ListParams::default())
            .await
            .expect_err("401"),
    );
    assert_eq!(status.code, 401);
    cluster.cleanup().await;
}

#[tokio::test]
async fn issued_tokens_expire() {
    let cluster = TestCluster::start_with(ApiServerConfig {
        tokens: Some(TokenTable::default()),
        min_token_expiration: Duration::from_secs(1),
        ..ApiServerConfig::default()
    })
    .await;
    let admin = cluster.client();
    let ns = cluster.namespace().to_owned();
    create_service_account(&admin, &ns, "brief").await;
    let answer = match request_token(&admin, &ns, "brief", Some(2)).await {
        Ok(answer) => answer,
        Err(kube::Error::Api(status)) if status.code == 422 => {
            eprintln!(
                "skipped: this API server refuses a 2-second token ({}); its minimum lifetime is too long to wait for",
                status.message
            );
            cluster.cleanup().await;
            return;
        }
        Err(other) => panic!("token request: {other}"),
    };
    let token = token_of(&answer);
    assert_eq!(review_token(&admin, &token).await.authenticated, Some(true));
    let as_brief = client_with_token(&cluster, &token).await;
    let forbidden = api_status(
        Api::<ConfigMap>::namespaced(as_brief.clone(), &ns)
            .list(&ListParams::default())
            .await
            .expect_err("403 while valid"),
    );
    assert_eq!(forbidden.code, 403);

    sleep_until(answer.status.expect("status").expiration_timestamp.0).await;
    let expired = review_token(&admin, &token).await;
    assert!(!expired.authenticated.unwrap_or(false), "{expired:?}");
    let error = expired.error.unwrap_or_default();
    assert!(error.contains("expired"), "{error}");
    let status = api_status(
        Api::<ConfigMap>::namespaced(as_brief, &ns)
            .list(&ListParams::default())
            .await
            .expect_err("401 once expired"),
    );
    assert_eq!(status.code, 401);
    cluster.cleanup().await;
}
