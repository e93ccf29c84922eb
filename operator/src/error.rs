//! The operator's one error type, named for what the caller should do, with a bounded
//! label for the failures metric.

use kube::runtime::finalizer;

/// Why a reconcile (or the operator) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a call: retried with backoff.
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[source] kube::Error),

    /// Adding or removing the finalizer failed, or the wrapped reconcile step did.
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),

    /// The object lacks a field the API server always sets (name, namespace, uid).
    #[error("the KVCluster has no {0}")]
    MissingField(&'static str),

    /// A desired object could not be turned into JSON.
    #[error("serializing {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// The generated CRD could not be written as YAML.
    #[error("writing the CRD as YAML: {0}")]
    Yaml(String),

    /// Leader election failed (the Lease could not be read or written).
    #[error("leader election: {0}")]
    LeaderElection(#[source] kube_lease_manager::LeaseManagerError),

    /// The Lease's namespace does not exist (seen running the operator outside a
    /// cluster with the default `ringkv-system`).
    #[error(
        "the leader Lease's namespace `{0}` does not exist: create it (`kubectl create namespace {0}`) \
         or name the operator's own namespace with --lease-namespace (RINGKV_OPERATOR_LEASE_NAMESPACE)"
    )]
    LeaseNamespaceMissing(String),

    /// Another replica took the Lease: this one stops so that only one acts.
    #[error("lost leadership of the Lease")]
    LostLeadership,

    /// The HTTP client for the nodes could not be built.
    #[error("building the HTTP client for the nodes: {0}")]
    HttpClient(#[source] reqwest::Error),

    /// The metrics/health listener failed.
    #[error("serving /metrics: {0}")]
    Serve(#[source] std::io::Error),

    /// A certificate could not be made, or the CA to sign it could not be read.
    #[error("certificates: {0}")]
    Certificate(String),
}

impl Error {
    /// A short, bounded label for `ringkv_operator_reconcile_failures_total{reason}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api_error",
            Error::Kube(_) => "api_unreachable",
            Error::Finalizer(e) => match &**e {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                finalizer::Error::AddFinalizer(_) | finalizer::Error::RemoveFinalizer(_) => "finalizer_patch",
                _ => "finalizer",
            },
            Error::MissingField(_) => "missing_field",
            Error::Serialize { .. } => "serialize",
            Error::Yaml(_) => "yaml",
            Error::LeaderElection(_) | Error::LeaseNamespaceMissing(_) => "leader_election",
            Error::LostLeadership => "lost_leadership",
            Error::HttpClient(_) => "http_client",
            Error::Serve(_) => "serve",
            Error::Certificate(_) => "certificate",
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

/// Whether a Kubernetes API error is a 404 (object or resource type not found).
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
