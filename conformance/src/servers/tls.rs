//! Throwaway certificates for the TLS tests.

use super::*;

/// PEM files of a throwaway certificate authority, a server certificate for `127.0.0.1` and
/// `localhost`, and a client certificate, all signed by that authority.
pub struct TestCertificates {
    /// The authority's certificate.
    pub ca: PathBuf,
    /// The server's certificate and key.
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// A client certificate (for mutual TLS).
    pub client_cert: PathBuf,
    /// The client's private key.
    pub client_key: PathBuf,
}

impl TestCertificates {
    /// The client's side as PEM bytes read from the files (the CA to trust and the client
    /// identity), for the backends' typed options.
    pub fn client_tls(&self) -> Result<kv_core::Tls, String> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let key = String::from_utf8(read(&self.client_key)?).map_err(|e| e.to_string())?;
        Ok(kv_core::Tls::new()
            .ca_pem(read(&self.ca)?)
            .identity_pem(read(&self.client_cert)?, key))
    }
}

/// Writes fresh [`TestCertificates`] into `dir`.
pub fn test_certificates(dir: &Path) -> Result<TestCertificates, String> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let failed = |e: rcgen::Error| format!("cannot make test certificates: {e}");
    let write = |name: &str, pem: String| -> Result<PathBuf, String> {
        let path = dir.join(name);
        std::fs::write(&path, pem).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: a leaf whose subject equals its issuer's looks self-signed to OpenSSL.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kv test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(failed)?)
        .map_err(failed)?;
    let leaf = |names: Vec<String>| -> Result<(String, String), String> {
        let key = KeyPair::generate().map_err(failed)?;
        let cert = CertificateParams::new(names)
            .map_err(failed)?
            .signed_by(&key, &ca)
            .map_err(failed)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()])?;
    let (client_cert, client_key) = leaf(vec!["kv-test-client".into()])?;
    Ok(TestCertificates {
        ca: write("ca.pem", ca.pem())?,
        server_cert: write("server.pem", server_cert)?,
        server_key: write("server-key.pem", server_key)?,
        client_cert: write("client.pem", client_cert)?,
        client_key: write("client-key.pem", client_key)?,
    })
}
