//! TLS as every part of ringkv speaks it (rustls with the ring provider): PEM files read
//! into certificates, keys and CA roots, and the client configuration of mutual TLS on a
//! node's internal port, which the nodes, the operator and `ringkv-ctl` all present.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The one crypto provider: ring (what kube-rs here already links), never a process
/// default that another crate might have installed differently.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default provider, for libraries that take the default
/// (reqwest built without a provider of its own). Idempotent.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn in_file(path: &Path) -> impl Fn(String) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

/// Every certificate in a PEM file, in order (a chain: leaf first).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    certificates_pem(&read(path)?).map_err(in_file(path))
}

/// Every certificate in PEM text, in order.
pub fn certificates_pem(pem: impl AsRef<[u8]>) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_ref())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in it".to_string());
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    private_key_pem(&read(path)?).map_err(in_file(path))
}

/// The private key in PEM text.
pub fn private_key_pem(pem: impl AsRef<[u8]>) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem.as_ref()).map_err(|e| format!("no usable private key: {e}"))
}

/// The CA certificates of a PEM bundle, as trust roots.
pub fn roots(path: &Path) -> Result<RootCertStore, String> {
    roots_pem(&read(path)?).map_err(in_file(path))
}

/// The CA certificates in PEM text, as trust roots.
pub fn roots_pem(pem: impl AsRef<[u8]>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates_pem(pem)? {
        roots.add(cert).map_err(|e| format!("not a usable CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// A client configuration for a node's internal port: trusts only the cluster's CA and
/// presents `cert` (signed by it) as this party's identity.
pub fn mutual_client_config(cert: &Path, key: &Path, ca: &Path) -> Result<ClientConfig, String> {
    let (roots, chain, key_der) = (roots(ca)?, certificates(cert)?, private_key(key)?);
    client_config(roots, chain, key_der).map_err(in_file(cert))
}

/// [`mutual_client_config`] from PEM text.
pub fn mutual_client_config_pem(cert: &str, key: &str, ca: &str) -> Result<ClientConfig, String> {
    let roots = roots_pem(ca).map_err(|e| format!("the CA: {e}"))?;
    let chain = certificates_pem(cert).map_err(|e| format!("the certificate: {e}"))?;
    let key = private_key_pem(key).map_err(|e| format!("the key: {e}"))?;
    client_config(roots, chain, key)
}

fn client_config(
    roots: RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, String> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("the key does not fit the certificate: {e}"))
}
