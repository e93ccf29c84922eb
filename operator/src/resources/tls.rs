//! A cluster's certificates when its TLS is `Managed`: the CA, the nodes' certificate and
//! the operator's own client certificate, made with rcgen; what a certificate says, read
//! with x509-parser; and the objects that hold them. Pure: no API calls.
//!
//! - `<name>-ca` (Opaque: `ca.crt`, `ca.key`): a self-signed CA of 10 years, created once
//!   and never overwritten (a second one would split the cluster).
//! - `<name>-tls` (`kubernetes.io/tls`: `tls.crt`, `tls.key`, `ca.crt`): one certificate
//!   for every node, naming `*.<name>-peers.<ns>.svc` (how the peers dial each other)
//!   and the client Service, so scaling never needs a new one. Good for 90 days, for
//!   server and client authentication (the nodes present it to each other), renewed 30
//!   days before it ends. Pods mount the Secret without `subPath`, so the kubelet updates
//!   the files in place and the nodes re-read them (within a second): no restart.
//! - `<name>-ca-bundle` (ConfigMap: `ca.crt`): the CA for clients, which may read it
//!   where they may not read Secrets.
//! - The operator's client certificate never leaves its memory: minted from the CA for a
//!   week and minted again daily (see `observe`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::ByteString;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber,
};

use super::{Names, Owner};
use crate::crd::TlsMode;

/// Where the node's certificate, key and CA are mounted.
pub const TLS_DIR: &str = "/etc/ringkv/tls";
/// Where the token file's Secret is mounted.
pub const AUTH_DIR: &str = "/etc/ringkv/auth";
/// Set on a KVCluster (to any new value) to have the nodes' certificate issued again now.
pub const RENEW_ANNOTATION: &str = "ringkv.io/renew-certificate";
/// On `<name>-tls`: the value of [`RENEW_ANNOTATION`] the certificate was issued for.
pub const RENEWED_FOR_ANNOTATION: &str = "ringkv.io/renewed-for";
/// How long a node certificate is good for.
pub const CERT_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
/// A node certificate is issued again when it has less than this left.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);
/// How long the CA is good for.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);
/// How long the operator's client certificate is good for.
pub const CLIENT_LIFETIME: Duration = Duration::from_secs(7 * 86_400);
/// Certificates start this much before they are made, for clocks a little behind.
const BACKDATE: Duration = Duration::from_secs(3600);

/// A certificate and its private key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

// Never print a key.
impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pem").field("cert", &self.cert.len()).field("key", &"<redacted>").finish()
    }
}

impl Names {
    /// The CA's Secret.
    pub fn ca_secret(&self) -> String {
        format!("{}-ca", self.cluster)
    }

    /// The nodes' certificate Secret.
    pub fn tls_secret(&self) -> String {
        format!("{}-tls", self.cluster)
    }

    /// The ConfigMap with the CA, for clients.
    pub fn ca_bundle(&self) -> String {
        format!("{}-ca-bundle", self.cluster)
    }

    /// The client Service's DNS name, the name clients verify the nodes' certificate by.
    pub fn service_host(&self) -> String {
        format!("{}.{}.svc", self.cluster, self.namespace)
    }
}

/// The DNS names the nodes' certificate carries: every pod behind the peer Service (the
/// peers and the operator dial these), the client Service, and `localhost` (for `kubectl
/// port-forward`).
pub fn node_names(names: &Names) -> Vec<String> {
    let (c, ns, peers) = (&names.cluster, &names.namespace, &names.peers);
    vec![
        format!("*.{peers}.{ns}.svc"),
        format!("*.{peers}.{ns}.svc.cluster.local"),
        c.clone(),
        format!("{c}.{ns}"),
        format!("{c}.{ns}.svc"),
        format!("{c}.{ns}.svc.cluster.local"),
        "localhost".to_string(),
    ]
}

/// A certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

fn err(what: &str) -> impl Fn(rcgen::Error) -> TlsError + '_ {
    move |e| TlsError(format!("{what}: {e}"))
}

/// Parameters valid from a little before `now` for `lifetime` (times as Unix seconds).
fn params(sans: &[String], common_name: &str, now: i64, lifetime: Duration) -> Result<CertificateParams, TlsError> {
    let at = |secs: i64| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(secs.max(0).unsigned_abs());
    let mut p = CertificateParams::default();
    for name in sans {
        let dns = name.clone().try_into().map_err(err("a DNS name"))?;
        p.subject_alt_names.push(SanType::DnsName(dns));
    }
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.not_before = at(now.saturating_sub(BACKDATE.as_secs().cast_signed()));
    p.not_after = at(now.saturating_add(lifetime.as_secs().cast_signed()));
    // 16 random bytes, the top bit clear so it reads as a positive integer.
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(p)
}

/// A new CA for the cluster.
pub fn issue_ca(names: &Names, now: i64) -> Result<Pem, TlsError> {
    let mut p = params(&[], &format!("ringkv {}/{} CA", names.namespace, names.cluster), now, CA_LIFETIME)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().map_err(err("a CA key"))?;
    let cert = p.self_signed(&key).map_err(err("the CA certificate"))?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

fn issue_leaf(ca: &Pem, p: CertificateParams) -> Result<Pem, TlsError> {
    let ca_key = KeyPair::from_pem(&ca.key).map_err(err("the CA key"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(err("the CA certificate"))?;
    let key = KeyPair::generate().map_err(err("a key"))?;
    let cert = p.signed_by(&key, &issuer).map_err(err("a certificate"))?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

/// The nodes' certificate, signed by `ca`: server and client authentication (the nodes
/// present it to each other on the internal port).
pub fn issue_node(ca: &Pem, names: &Names, now: i64) -> Result<Pem, TlsError> {
    let sans = node_names(names);
    let mut p = params(&sans, &names.service_host(), now, CERT_LIFETIME)?;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    issue_leaf(ca, p)
}

/// The operator's client certificate for the nodes' internal port, signed by `ca`.
pub fn issue_client(ca: &Pem, now: i64) -> Result<Pem, TlsError> {
    let name = "ringkv-operator".to_string();
    let mut p = params(std::slice::from_ref(&name), &name, now, CLIENT_LIFETIME)?;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    issue_leaf(ca, p)
}

/// What a certificate says, as far as renewing it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFacts {
    /// The serial number, lowercase hex without leading zeros.
    pub serial: String,
    /// Unix seconds.
    pub not_after: i64,
    /// Its DNS names.
    pub dns_names: Vec<String>,
}

fn parse_pem(pem: &str) -> Result<x509_parser::pem::Pem, TlsError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| TlsError(format!("not a PEM certificate: {e}")))?;
    Ok(pem)
}

/// Reads the first certificate of `pem`.
pub fn facts(pem: &str) -> Result<CertFacts, TlsError> {
    let pem = parse_pem(pem)?;
    let cert = pem.parse_x509().map_err(|e| TlsError(format!("not an X.509 certificate: {e}")))?;
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(CertFacts {
        serial: cert.tbs_certificate.serial.to_str_radix(16),
        not_after: cert.validity().not_after.timestamp(),
        dns_names,
    })
}

/// Whether `cert`'s signature checks out against `ca`'s key.
pub fn signed_by(cert: &str, ca: &str) -> bool {
    let (Ok(cert), Ok(ca)) = (parse_pem(cert), parse_pem(ca)) else { return false };
    let (Ok(cert), Ok(ca)) = (cert.parse_x509(), ca.parse_x509()) else { return false };
    cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// Why the nodes' certificate is to be issued (again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// There is none (or it cannot be read).
    Missing,
    /// It expires within [`RENEW_BEFORE`].
    Expiring,
    /// Another CA signed it (the CA was replaced).
    OtherCa,
    /// It lacks a name the nodes are reached by.
    Names,
    /// A user asked, with the [`RENEW_ANNOTATION`].
    Requested,
}

impl Renewal {
    /// In words, for logs and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            Renewal::Missing => "there is none",
            Renewal::Expiring => "it expires within 30 days",
            Renewal::OtherCa => "another CA signed it",
            Renewal::Names => "it lacks a name the nodes are reached by",
            Renewal::Requested => "the renew-certificate annotation asked for it",
        }
    }
}

/// The nodes' certificate as the operator finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCert {
    pub facts: CertFacts,
    /// Signed by the cluster's CA.
    pub signed_by_ca: bool,
    /// The renew annotation's value it was issued for.
    pub renewed_for: Option<String>,
}

/// Whether (and why) the nodes' certificate must be issued now.
pub fn renewal(cert: Option<&NodeCert>, names: &Names, now: i64, requested: Option<&str>) -> Option<Renewal> {
    let Some(cert) = cert else { return Some(Renewal::Missing) };
    if !cert.signed_by_ca {
        return Some(Renewal::OtherCa);
    }
    if cert.facts.not_after.saturating_sub(now) < RENEW_BEFORE.as_secs().cast_signed() {
        return Some(Renewal::Expiring);
    }
    if node_names(names).iter().any(|n| !cert.facts.dns_names.contains(n)) {
        return Some(Renewal::Names);
    }
    if requested.is_some() && requested != cert.renewed_for.as_deref() {
        return Some(Renewal::Requested);
    }
    None
}

fn data(entries: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
    entries.iter().map(|(k, v)| ((*k).to_string(), ByteString(v.as_bytes().to_vec()))).collect()
}

/// `<name>-ca`.
pub fn ca_secret(owner: &Owner, ca: &Pem) -> Secret {
    Secret {
        metadata: owner.meta(&owner.names.ca_secret(), &[]),
        type_: Some("Opaque".to_string()),
        data: Some(data(&[("ca.crt", &ca.cert), ("ca.key", &ca.key)])),
        ..Default::default()
    }
}

/// `<name>-tls`, holding `node` and the CA certificate that signed it.
pub fn node_secret(owner: &Owner, node: &Pem, ca_cert: &str, renewed_for: Option<&str>) -> Secret {
    let mut metadata = owner.meta(&owner.names.tls_secret(), &[]);
    if let Some(r) = renewed_for {
        metadata.annotations = Some(BTreeMap::from([(RENEWED_FOR_ANNOTATION.to_string(), r.to_string())]));
    }
    Secret {
        metadata,
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(data(&[("tls.crt", &node.cert), ("tls.key", &node.key), ("ca.crt", ca_cert)])),
        ..Default::default()
    }
}

/// `<name>-ca-bundle`.
pub fn ca_bundle(owner: &Owner, ca_cert: &str) -> ConfigMap {
    ConfigMap {
        metadata: owner.meta(&owner.names.ca_bundle(), &[]),
        data: Some(BTreeMap::from([("ca.crt".to_string(), ca_cert.to_string())])),
        ..Default::default()
    }
}

/// The TLS a cluster runs: a running one keeps what its pods run (`live`, from the
/// StatefulSet), a created one whose StatefulSet is gone what its status recorded (none
/// recorded: created before TLS existed, so plain); a new one what its spec asks, and
/// `Managed` when it asks nothing. Never a change for a running cluster: its nodes all
/// speak TLS or none does (a spec asking another mode is reported, not applied).
pub fn effective_mode(
    spec: Option<TlsMode>,
    live: Option<TlsMode>,
    recorded: Option<TlsMode>,
    created: bool,
) -> TlsMode {
    match (live, recorded) {
        (Some(m), _) | (None, Some(m)) => m,
        (None, None) if created => TlsMode::Disabled,
        (None, None) => spec.unwrap_or(TlsMode::Managed),
    }
}

/// A PEM entry of a Secret's data, if it is there and is text.
pub fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok().filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const NOW: i64 = 1_767_225_600; // 2026-01-01

    fn names() -> Names {
        Names::new("demo", "prod")
    }

    #[test]
    fn a_node_certificate_names_every_pod_and_the_service_and_is_signed_by_its_ca() {
        let ca = issue_ca(&names(), NOW).expect("a CA");
        let node = issue_node(&ca, &names(), NOW).expect("a node certificate");
        let f = facts(&node.cert).expect("readable");
        assert!(f.dns_names.contains(&"*.demo-peers.prod.svc".to_string()), "{:?}", f.dns_names);
        assert!(f.dns_names.contains(&"demo.prod.svc".to_string()));
        assert_eq!(f.not_after, NOW + CERT_LIFETIME.as_secs().cast_signed());
        assert!(signed_by(&node.cert, &ca.cert));
        let other = issue_ca(&names(), NOW).expect("another CA");
        assert!(!signed_by(&node.cert, &other.cert));
        let again = issue_node(&ca, &names(), NOW).expect("again");
        assert_ne!(facts(&again.cert).expect("readable").serial, f.serial, "a new serial each time");
    }

    /// The real thing: a rustls server with the node's certificate, a client that trusts
    /// only the CA and presents the operator's certificate, over an in-memory pipe,
    /// reaching the server by a pod's DNS name; the server requires a client certificate
    /// of the same CA, as the node's internal port does.
    #[tokio::test]
    async fn the_operator_and_a_node_complete_a_mutual_handshake_by_the_pods_name() {
        use rustls::pki_types::ServerName;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let ca = issue_ca(&names(), NOW + 1).expect("a CA");
        let now = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
            .expect("seconds");
        let node = issue_node(&ca, &names(), now).expect("node");
        let client = issue_client(&ca, now).expect("client");

        let roots = ringkv_api::tls::roots_pem(&ca.cert).expect("roots");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots.clone()),
            ringkv_api::tls::provider(),
        )
        .build()
        .expect("a client verifier");
        let server = rustls::ServerConfig::builder_with_provider(ringkv_api::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                ringkv_api::tls::certificates_pem(&node.cert).expect("chain"),
                ringkv_api::tls::private_key_pem(&node.key).expect("key"),
            )
            .expect("server config");
        let client = ringkv_api::tls::mutual_client_config_pem(&client.cert, &client.key, &ca.cert).expect("client");

        let (a, b) = tokio::io::duplex(64 << 10);
        let accept = tokio::spawn(async move {
            let mut s = tokio_rustls::TlsAcceptor::from(Arc::new(server)).accept(a).await.expect("server handshake");
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.expect("read");
            buf
        });
        let name = ServerName::try_from("demo-2.demo-peers.prod.svc").expect("a name");
        let mut c = tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, b).await.expect("handshake");
        c.write_all(b"hello").await.expect("write");
        c.flush().await.expect("flush");
        assert_eq!(&accept.await.expect("server"), b"hello");
    }

    #[test]
    fn renewal_thresholds() {
        let ca = issue_ca(&names(), NOW).expect("a CA");
        let node = issue_node(&ca, &names(), NOW).expect("node");
        let cert = NodeCert { facts: facts(&node.cert).expect("facts"), signed_by_ca: true, renewed_for: None };
        let day = 86_400;
        let lifetime = CERT_LIFETIME.as_secs().cast_signed();
        // (what, the certificate, now, the annotation's value, the renewal due)
        type Case<'a> = (&'a str, Option<NodeCert>, i64, Option<&'a str>, Option<Renewal>);
        let cases: Vec<Case> = vec![
            ("none", None, NOW, None, Some(Renewal::Missing)),
            ("fresh", Some(cert.clone()), NOW, None, None),
            ("31 days left", Some(cert.clone()), NOW + lifetime - 31 * day, None, None),
            ("29 days left", Some(cert.clone()), NOW + lifetime - 29 * day, None, Some(Renewal::Expiring)),
            ("expired", Some(cert.clone()), NOW + lifetime + day, None, Some(Renewal::Expiring)),
            ("other CA", Some(NodeCert { signed_by_ca: false, ..cert.clone() }), NOW, None, Some(Renewal::OtherCa)),
            ("asked", Some(cert.clone()), NOW, Some("1"), Some(Renewal::Requested)),
            (
                "asked and done",
                Some(NodeCert { renewed_for: Some("1".to_string()), ..cert.clone() }),
                NOW,
                Some("1"),
                None,
            ),
        ];
        for (what, c, now, asked, want) in cases {
            assert_eq!(renewal(c.as_ref(), &names(), now, asked), want, "{what}");
        }
        // The certificate of another cluster lacks this one's names.
        let other = issue_node(&ca, &Names::new("other", "prod"), NOW).expect("node");
        let other = NodeCert { facts: facts(&other.cert).expect("facts"), signed_by_ca: true, renewed_for: None };
        assert_eq!(renewal(Some(&other), &names(), NOW, None), Some(Renewal::Names));
    }

    #[test]
    fn no_key_is_ever_printed() {
        let ca = issue_ca(&names(), NOW).expect("a CA");
        assert!(!format!("{ca:?}").contains("PRIVATE"));
    }
}
