//! A cluster's certificates against the API server: reading what exists (for `plan` and
//! for the operator's own TLS to the nodes), and the steps that issue and publish them.
//! What a certificate must be, and when it is due, is decided by the pure functions of
//! [`crate::resources::tls`].
//!
//! The operator's client certificate is minted in memory from the cluster's CA
//! (`Managed`), good for a week and minted again after a day; or read from
//! `spec.tls.operatorSecretName` (`Provided`).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use parking_lot::Mutex;

use crate::crd::{KVCluster, TlsMode};
use crate::observe::{ClientTls, TlsObserved};
use crate::resources::tls::{
    self as certs, facts, issue_client, issue_node, renewal, secret_text, signed_by, NodeCert, Pem, Renewal,
    RENEWED_FOR_ANNOTATION, RENEW_ANNOTATION,
};
use crate::resources::{Names, Owner, FIELD_MANAGER};
use crate::Error;

/// The operator mints its client certificate again after this long (it is good for a
/// week: [`certs::CLIENT_LIFETIME`]).
const REMINT_AFTER: i64 = 86_400;

/// The operator's client certificates, one per cluster, minted from each cluster's CA.
#[derive(Default)]
pub struct ClientCerts {
    minted: Mutex<HashMap<String, Minted>>,
}

struct Minted {
    ca_serial: String,
    at: i64,
    tls: ClientTls,
}

impl ClientCerts {
    /// The client TLS for the cluster `key` whose CA is `ca` (serial `ca_serial`).
    fn for_ca(&self, key: &str, ca: &Pem, ca_serial: &str, now: i64) -> Result<ClientTls, String> {
        let mut minted = self.minted.lock();
        if let Some(m) = minted.get(key).filter(|m| m.ca_serial == ca_serial && now - m.at < REMINT_AFTER) {
            return Ok(m.tls.clone());
        }
        let mine = issue_client(ca, now).map_err(|e| e.to_string())?;
        let config = ringkv_api::tls::mutual_client_config_pem(&mine.cert, &mine.key, &ca.cert)?;
        let tls = ClientTls { id: format!("{key}/{ca_serial}/{now}"), config: Arc::new(config) };
        minted.insert(key.to_string(), Minted { ca_serial: ca_serial.to_string(), at: now, tls: tls.clone() });
        Ok(tls)
    }

    /// Forgets a deleted cluster's certificate.
    pub fn forget(&self, names: &Names) {
        self.minted.lock().remove(&format!("{}/{}", names.namespace, names.cluster));
    }
}

/// The Secret `name`, `None` when it does not exist (`get_opt` maps the 404).
async fn get_secret(api: &Api<Secret>, name: &str) -> Result<Option<Secret>, Error> {
    Ok(api.get_opt(name).await?)
}

/// The CA in `<name>-ca`, if it is there and whole.
fn ca_of(secret: Option<&Secret>) -> Option<Pem> {
    let s = secret?;
    Some(Pem { cert: secret_text(s, "ca.crt")?, key: secret_text(s, "ca.key")? })
}

/// What the cluster's certificates are (for `mode`), and how the operator reaches its
/// nodes: `None` for plain nodes, or while there is no CA yet (no node runs then).
pub async fn observe(
    client: &Client,
    kvc: &KVCluster,
    names: &Names,
    mode: TlsMode,
    now: i64,
    mine: &ClientCerts,
) -> Result<(TlsObserved, Option<ClientTls>), Error> {
    let recorded = kvc.status.as_ref().and_then(|s| s.tls.as_ref()).map(|t| t.mode);
    let mut seen = TlsObserved { recorded, ..Default::default() };
    let api: Api<Secret> = Api::namespaced(client.clone(), &names.namespace);
    let key = format!("{}/{}", names.namespace, names.cluster);
    match mode {
        TlsMode::Disabled => Ok((seen, None)),
        TlsMode::Managed => {
            let ca_secret = get_secret(&api, &names.ca_secret()).await?;
            let ca = ca_of(ca_secret.as_ref()).filter(|ca| facts(&ca.cert).is_ok());
            if ca_secret.is_some() && ca.is_none() {
                seen.ca_unusable = Some(format!(
                    "the Secret {} holds no readable ca.crt and ca.key: the operator never replaces a CA (the nodes \
                     trust it); delete the Secret to have a new CA made, which the nodes switch to as their files update",
                    names.ca_secret()
                ));
            }
            let node = get_secret(&api, &names.tls_secret()).await?;
            let cert = node.as_ref().and_then(|s| {
                let pem = secret_text(s, "tls.crt")?;
                secret_text(s, "tls.key")?;
                let renewed_for = s.metadata.annotations.as_ref().and_then(|a| a.get(RENEWED_FOR_ANNOTATION)).cloned();
                let signed_by_ca = ca.as_ref().is_some_and(|ca| signed_by(&pem, &ca.cert));
                Some(NodeCert { facts: facts(&pem).ok()?, signed_by_ca, renewed_for })
            });
            let requested = kvc.metadata.annotations.as_ref().and_then(|a| a.get(RENEW_ANNOTATION));
            seen.ca = ca.is_some();
            seen.renewal = renewal(cert.as_ref(), names, now, requested.map(String::as_str));
            seen.cert = cert.map(|c| c.facts);
            let tls = match ca {
                Some(ca) => {
                    let serial = facts(&ca.cert).map(|f| f.serial).unwrap_or_default();
                    match mine.for_ca(&key, &ca, &serial, now) {
                        Ok(tls) => Some(tls),
                        Err(e) => {
                            tracing::warn!(cluster = %key, error = %e, "cannot make the operator's client certificate");
                            None
                        }
                    }
                }
                None => None,
            };
            Ok((seen, tls))
        }
        TlsMode::Provided => {
            let t = kvc.spec.tls.as_ref();
            let mut missing = Vec::new();
            let node = provided(&api, t.and_then(|t| t.secret_name.as_deref()), &mut missing).await?;
            let operator = provided(&api, t.and_then(|t| t.operator_secret_name.as_deref()), &mut missing).await?;
            seen.cert = node.as_ref().and_then(|n| facts(&n.cert).ok());
            seen.missing = (!missing.is_empty()).then(|| missing.join("; "));
            let tls = operator.and_then(|o| {
                let config = ringkv_api::tls::mutual_client_config_pem(&o.cert, &o.key, &o.ca)
                    .map_err(|e| tracing::warn!(cluster = %key, error = %e, "the operator's Secret is unusable"))
                    .ok()?;
                // Named by content: a new CA or key under the same certificate is a new pair.
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::hash::Hash::hash(&(&o.cert, &o.key, &o.ca), &mut h);
                let id = format!("{key}/provided/{:016x}", std::hash::Hasher::finish(&h));
                Some(ClientTls { id, config: Arc::new(config) })
            });
            Ok((seen, tls))
        }
    }
}

/// A provided Secret's certificate, key and CA.
struct Provided {
    cert: String,
    key: String,
    ca: String,
}

/// Reads the provided Secret `name`; what is missing goes to `missing`, in words.
async fn provided(api: &Api<Secret>, name: Option<&str>, missing: &mut Vec<String>) -> Result<Option<Provided>, Error> {
    let Some(name) = name else { return Ok(None) };
    let Some(s) = get_secret(api, name).await? else {
        missing.push(format!("the Secret {name} does not exist"));
        return Ok(None);
    };
    let [cert, key, ca] = ["tls.crt", "tls.key", "ca.crt"].map(|k| secret_text(&s, k));
    match (cert, key, ca) {
        (Some(cert), Some(key), Some(ca)) => Ok(Some(Provided { cert, key, ca })),
        (cert, key, ca) => {
            let absent: Vec<&str> = [("tls.crt", cert), ("tls.key", key), ("ca.crt", ca)]
                .into_iter()
                .filter_map(|(k, v)| v.is_none().then_some(k))
                .collect();
            missing.push(format!("the Secret {name} has no {}", absent.join(", ")));
            Ok(None)
        }
    }
}

/// Issues the CA (`IssueCa`): created once; an existing one is never replaced.
pub async fn issue_ca(client: &Client, owner: &Owner, now: i64) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &owner.names.namespace);
    let ca = certs::issue_ca(&owner.names, now).map_err(|e| Error::Certificate(e.to_string()))?;
    match api
        .create(
            &PostParams { field_manager: Some(FIELD_MANAGER.to_string()), ..Default::default() },
            &certs::ca_secret(owner, &ca),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(cluster = %owner.names.cluster, "made the cluster's CA");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn the_ca(client: &Client, owner: &Owner) -> Result<Pem, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &owner.names.namespace);
    let name = owner.names.ca_secret();
    ca_of(get_secret(&api, &name).await?.as_ref())
        .ok_or_else(|| Error::Certificate(format!("the Secret {name} holds no ca.crt and ca.key")))
}

/// Issues the nodes' certificate (`IssueCertificate`), recording the renew annotation's
/// value `requested` it answers.
pub async fn issue_certificate(
    client: &Client,
    owner: &Owner,
    why: Renewal,
    requested: Option<&str>,
    now: i64,
) -> Result<(), Error> {
    let ca = the_ca(client, owner).await?;
    let node = issue_node(&ca, &owner.names, now).map_err(|e| Error::Certificate(e.to_string()))?;
    let serial = facts(&node.cert).map(|f| f.serial).unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &owner.names.namespace);
    let secret = certs::node_secret(owner, &node, &ca.cert, requested);
    api.patch(&owner.names.tls_secret(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&secret)).await?;
    tracing::info!(cluster = %owner.names.cluster, %serial, why = why.as_str(), "issued the nodes' certificate");
    Ok(())
}

/// Publishes the CA (`ApplyCaBundle`).
pub async fn apply_ca_bundle(client: &Client, owner: &Owner) -> Result<(), Error> {
    let ca = the_ca(client, owner).await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &owner.names.namespace);
    let bundle = certs::ca_bundle(owner, &ca.cert);
    api.patch(&owner.names.ca_bundle(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&bundle)).await?;
    Ok(())
}

/// The renew annotation's value on a KVCluster.
pub fn requested(spec_owner: &KVCluster) -> Option<String> {
    spec_owner.metadata.annotations.as_ref().and_then(|a| a.get(RENEW_ANNOTATION)).cloned()
}
