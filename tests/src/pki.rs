//! Certificates for tests: a CA, node certificates for given addresses, client
//! certificates, and the wrong kinds (another CA's, expired), as PEM files in a directory.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA that signs certificates into `dir`.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    /// The CA certificate (PEM file).
    pub cert: PathBuf,
}

impl Ca {
    /// A new CA named `name`; its certificate is written to `dir/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key")).expect("a CA");
        let cert = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&cert, issuer.pem()).expect("write the CA");
        Ca { issuer, dir: dir.to_path_buf(), cert }
    }

    /// A certificate for `names` (DNS names or IP addresses; the first is also its common
    /// name), good for both server and client authentication, valid from an hour ago for
    /// `valid_days` (negative: expired that many days ago).
    pub fn issue(&self, file: &str, names: &[&str], valid_days: i64) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        for n in names {
            params.subject_alt_names.push(match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().expect("a DNS name")),
            });
        }
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or(file));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let now = rcgen::date_time_ymd(2000, 1, 1)
            + (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970")
                - std::time::Duration::from_secs(946_684_800));
        if valid_days >= 0 {
            params.not_before = now - std::time::Duration::from_secs(3600);
            params.not_after = now + std::time::Duration::from_secs(86_400 * valid_days.unsigned_abs());
        } else {
            params.not_before = now - std::time::Duration::from_secs(86_400 * (valid_days.unsigned_abs() + 30));
            params.not_after = now - std::time::Duration::from_secs(86_400 * valid_days.unsigned_abs());
        }
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate");
        let issued =
            Issued { cert: self.dir.join(format!("{file}.pem")), key: self.dir.join(format!("{file}-key.pem")) };
        std::fs::write(&issued.cert, cert.pem()).expect("write the certificate");
        std::fs::write(&issued.key, key.serialize_pem()).expect("write the key");
        issued
    }
}

/// A rustls client configuration that trusts `ca` and, with `identity`, presents it.
pub fn client_config(ca: &Path, identity: Option<&Issued>) -> rustls::ClientConfig {
    match identity {
        Some(id) => ringkv_api::tls::mutual_client_config(&id.cert, &id.key, ca).expect("a client TLS configuration"),
        None => rustls::ClientConfig::builder_with_provider(ringkv_api::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(ringkv_api::tls::roots(ca).expect("the CA"))
            .with_no_client_auth(),
    }
}
