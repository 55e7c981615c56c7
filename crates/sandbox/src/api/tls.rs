//! Optional HTTPS: a throw-away CA and a server certificate for localhost and the listen
//! address, made at start-up; the kubeconfig carries the CA so clients verify the server.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use std::net::IpAddr;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why the TLS material could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("cannot generate the sandbox certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("cannot configure TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// What the server needs to serve HTTPS and clients need to trust it.
pub struct ServerTls {
    /// PEM of the CA that signed the server certificate.
    pub ca_pem: String,
    /// Accepts TLS connections with the server certificate.
    pub acceptor: TlsAcceptor,
}

/// A new CA and a server certificate for `localhost`, `127.0.0.1` and `ip`.
pub fn self_signed(ip: IpAddr) -> Result<ServerTls, TlsError> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "catalyst-cutover sandbox CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !ip.is_unspecified() && ip.to_string() != "127.0.0.1" {
        names.push(ip.to_string());
    }
    let mut leaf = CertificateParams::new(names)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "catalyst-cutover sandbox");
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &ca)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)?;
    // The router speaks HTTP/1.1; clients that offer h2 fall back to it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls {
        ca_pem: ca.pem(),
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_ca_and_an_acceptor() {
        let tls = self_signed(IpAddr::from([127, 0, 0, 1])).unwrap();
        assert!(tls.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
