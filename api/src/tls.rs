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

/// Every certificate in a PEM file, in order (a chain: leaf first).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| format!("{}: no usable private key: {e}", path.display()))
}

/// The CA certificates of a PEM bundle, as trust roots.
pub fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

/// A client configuration for a node's internal port: trusts only the cluster's CA and
/// presents `cert` (signed by it) as this party's identity.
pub fn mutual_client_config(cert: &Path, key: &Path, ca: &Path) -> Result<ClientConfig, String> {
    let roots = roots(ca)?;
    let chain = certificates(cert)?;
    let key = private_key(key)?;
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("{}: the key does not fit the certificate: {e}", cert.display()))
}
