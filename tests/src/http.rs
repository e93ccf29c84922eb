//! How the harness's HTTP clients reach a cluster from outside, where it serves HTTPS
//! and wants a token (the Kubernetes end-to-end's `service-load`): the CA to trust, a
//! bearer token, and names mapped to addresses the way curl's `--resolve` does, so that a
//! URL can carry the name the node's certificate has while the connection goes to an
//! address the test knows (a ClusterIP, a pod IP). Every client a load or a writer makes
//! is built from one [`HttpSettings`]; the default changes nothing.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::str::FromStr;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};

/// What every HTTP client made for a run gets on top of `ringkv_api::client::http()`.
#[derive(Clone, Default)]
pub struct HttpSettings {
    /// The only roots trusted for https URLs; `None`: the platform's, as without settings.
    roots: Option<Vec<reqwest::Certificate>>,
    /// `Authorization: Bearer …`, sent with every request.
    authorization: Option<HeaderValue>,
    /// Names connected to given addresses instead of being looked up.
    resolve: Vec<Resolve>,
}

impl HttpSettings {
    /// Trusts the PEM CA certificates in `pem_file` for https URLs, and nothing else.
    pub fn trust_only(mut self, pem_file: &Path) -> Result<Self, String> {
        let pem = std::fs::read(pem_file).map_err(|e| format!("{}: {e}", pem_file.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("{}: {e}", pem_file.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no PEM certificate in it", pem_file.display()));
        }
        // A certificate that is PEM but no usable root fails only when a client is built:
        // find out now rather than in the middle of a run.
        ringkv_api::client::http()
            .tls_certs_only(certs.iter().cloned())
            .build()
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", pem_file.display()))?;
        self.roots = Some(certs);
        Ok(self)
    }

    /// Sends `token` as `Authorization: Bearer {token}` with every request (a node without
    /// tokens configured ignores it).
    pub fn token(mut self, token: &str) -> Result<Self, String> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the token has characters a header cannot carry".to_string())?;
        // Kept out of reqwest's Debug output and HTTP/2 header compression tables.
        value.set_sensitive(true);
        self.authorization = Some(value);
        Ok(self)
    }

    /// Connects `r.host` to `r.addrs`. reqwest overrides by name alone (a port in the URL
    /// is the one dialled; `PORT` only serves a URL without one), so a second entry for
    /// one name, which curl would tell apart by port, is refused rather than silently
    /// replacing the first.
    pub fn resolve(mut self, r: Resolve) -> Result<Self, String> {
        if self.resolve.iter().any(|o| o.host.eq_ignore_ascii_case(&r.host)) {
            return Err(format!("{}: given twice (overrides are by name only, whatever the port)", r.host));
        }
        self.resolve.push(r);
        Ok(self)
    }

    /// A client builder with these settings; the caller adds its own timeouts and builds.
    pub fn builder(&self) -> reqwest::ClientBuilder {
        let mut b = ringkv_api::client::http();
        if let Some(roots) = &self.roots {
            b = b.tls_certs_only(roots.iter().cloned());
        }
        if let Some(value) = &self.authorization {
            b = b.default_headers(HeaderMap::from_iter([(AUTHORIZATION, value.clone())]));
        }
        for r in &self.resolve {
            b = b.resolve_to_addrs(&r.host, &r.addrs);
        }
        b
    }
}

/// `HOST:PORT:ADDR[,ADDR]…` as curl's `--resolve` takes it: connections to `HOST` go to
/// the addresses (IP addresses, an IPv6 one bare or in brackets) instead of a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolve {
    pub host: String,
    /// The addresses, each with `PORT`.
    pub addrs: Vec<SocketAddr>,
}

impl FromStr for Resolve {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{s:?}: {why} (want HOST:PORT:ADDR[,ADDR]...)");
        let mut parts = s.splitn(3, ':');
        let (Some(host), Some(port), Some(addrs)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("too few parts"));
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
        let addrs = addrs
            .split(',')
            .map(|a| {
                let a = a.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(a);
                a.parse::<IpAddr>()
                    .map(|ip| SocketAddr::new(ip, port))
                    .map_err(|_| bad(&format!("{a:?} is not an IP address")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Resolve { host: host.to_string(), addrs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_reads_what_curl_takes() {
        // (given, what it reads as: host and addresses, or None for refused)
        let cases = [
            ("demo.default.svc:8080:10.96.0.20", Some("demo.default.svc [10.96.0.20:8080]")),
            ("h:443:10.0.0.1,10.0.0.2", Some("h [10.0.0.1:443, 10.0.0.2:443]")),
            ("h:8080:[::1]", Some("h [[::1]:8080]")),
            ("h:8080:fd00::5", Some("h [[fd00::5]:8080]")),
            ("h:8080", None),
            (":8080:10.0.0.1", None),
            ("h:http:10.0.0.1", None),
            ("h:8080:demo-0", None),
            ("h:8080:10.0.0.1,", None),
        ];
        for (given, want) in cases {
            let got = given.parse::<Resolve>().ok().map(|r| format!("{} {:?}", r.host, r.addrs));
            assert_eq!(got.as_deref(), want, "{given}");
        }
    }

    #[test]
    fn a_name_resolved_twice_is_refused() {
        let s = HttpSettings::default().resolve("h:8080:10.0.0.1".parse().expect("valid")).expect("first");
        assert!(s.resolve("H:8180:10.0.0.2".parse().expect("valid")).is_err());
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let f = dir.path().join("ca.crt");
        std::fs::write(&f, "not a certificate\n").expect("write");
        assert!(HttpSettings::default().trust_only(&f).is_err());
        assert!(HttpSettings::default().trust_only(&dir.path().join("missing")).is_err());
        let ca = crate::pki::Ca::new(dir.path(), "t");
        assert!(HttpSettings::default().trust_only(&ca.cert).is_ok());
    }

    #[test]
    fn a_token_that_is_no_header_value_is_refused() {
        assert!(HttpSettings::default().token("rkv_ok").is_ok());
        assert!(HttpSettings::default().token("rkv_\nInjected: yes").is_err());
    }
}
