//! The kubeconfig that points `kube::Client` and `kubectl` at the sandbox.

use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};

/// Name of the cluster, user and context in the kubeconfig.
pub const CONTEXT: &str = "sandbox";

/// A kubeconfig with one cluster, user and context, all named [`CONTEXT`].
/// `ca_pem` is the server's certificate when it serves TLS.
pub fn build(server_url: &str, token: &str, ca_pem: Option<&str>) -> Kubeconfig {
    use base64::Engine;
    let cluster = Cluster {
        server: Some(server_url.to_string()),
        certificate_authority_data: ca_pem
            .map(|pem| base64::engine::general_purpose::STANDARD.encode(pem)),
        ..Cluster::default()
    };
    let user = AuthInfo {
        token: Some(secrecy::SecretString::from(token.to_string())),
        ..AuthInfo::default()
    };
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: CONTEXT.into(),
            cluster: Some(cluster),
            ..NamedCluster::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: CONTEXT.into(),
            auth_info: Some(user),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: CONTEXT.into(),
            context: Some(Context {
                cluster: CONTEXT.into(),
                user: Some(CONTEXT.into()),
                ..Context::default()
            }),
            ..NamedContext::default()
        }],
        current_context: Some(CONTEXT.into()),
        kind: Some("Config".into()),
        api_version: Some("v1".into()),
        ..Kubeconfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_for_kubectl() {
        let kc = build("http://127.0.0.1:1", "tok", None);
        let yaml = serde_yaml::to_string(&kc).unwrap();
        assert!(yaml.contains("server: http://127.0.0.1:1"));
        assert!(yaml.contains("token: tok"));
        assert!(yaml.contains("current-context: sandbox"));
    }
}
