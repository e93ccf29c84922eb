//! The operator's one typed configuration: subcommands, flags and their `RINGKV_OPERATOR_*`
//! environment variables (the chart sets env and nothing else).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

/// ringkv Kubernetes operator.
#[derive(Parser, Debug)]
#[command(name = "ringkv-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Reconcile KVCluster resources until SIGTERM.
    Run(Box<RunConfig>),
    /// Print the KVCluster CustomResourceDefinition as YAML.
    Crd,
}

/// `ringkv-operator run`.
#[derive(Args, Debug, Clone)]
pub struct RunConfig {
    /// Address serving /metrics and /healthz.
    #[arg(long, env = "RINGKV_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Watch KVClusters in this namespace only. Default: every namespace.
    #[arg(long, env = "RINGKV_OPERATOR_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Elect a leader through a coordination.k8s.io Lease, so several replicas are safe.
    #[arg(long, env = "RINGKV_OPERATOR_LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the Lease.
    #[arg(long, env = "RINGKV_OPERATOR_LEASE_NAME", default_value = "ringkv-operator")]
    pub lease_name: String,

    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "RINGKV_OPERATOR_LEASE_NAMESPACE", default_value = "ringkv-system")]
    pub lease_namespace: String,

    /// This replica's identity in the Lease. Default: the host name (the pod name).
    #[arg(long, env = "RINGKV_OPERATOR_IDENTITY")]
    pub identity: Option<String>,

    /// Seconds a Lease is held without renewal before another replica may take it.
    #[arg(long, env = "RINGKV_OPERATOR_LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u64,

    /// Labels of the operator's own pods (`key=value,...`, in `--lease-namespace`). When
    /// set, every KVCluster gets a NetworkPolicy `<name>-nodes`: its nodes' client port
    /// open to all, their internal (Raft and admin) port only to the cluster's own nodes
    /// and to these pods. The chart sets it unless `networkPolicy.enabled=false`.
    #[arg(long, env = "RINGKV_OPERATOR_NETWORK_POLICY_FROM")]
    pub network_policy_from: Option<String>,

    /// Timeout of each request to a node's /readyz and /v1/cluster.
    #[arg(long, env = "RINGKV_OPERATOR_PROBE_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub probe_timeout: Duration,

    /// Log format.
    #[arg(long, env = "RINGKV_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How logs are written. (An unknown format is refused by the parser, with the
/// possible values, before `validate` runs.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl RunConfig {
    /// Reports every contradiction at once, before anything starts.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        if self.lease_name.is_empty() {
            errs.push("--lease-name must not be empty".to_string());
        }
        if self.lease_namespace.is_empty() {
            errs.push("--lease-namespace must not be empty".to_string());
        }
        if self.watch_namespace.as_deref() == Some("") {
            errs.push("--watch-namespace must not be empty (omit it to watch every namespace)".to_string());
        }
        if !(10..=300).contains(&self.lease_seconds) {
            errs.push("--lease-seconds must be between 10 and 300".to_string());
        }
        if self.probe_timeout < Duration::from_millis(100) || self.probe_timeout > Duration::from_secs(30) {
            errs.push("--probe-timeout must be between 100ms and 30s".to_string());
        }
        if let Some(Err(e)) = self.network_policy_from.as_deref().map(parse_labels) {
            errs.push(format!("--network-policy-from: {e}"));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

impl RunConfig {
    /// The operator's pods as the nodes' NetworkPolicies let them in (`None`: no
    /// NetworkPolicies). Call after [`RunConfig::validate`].
    pub fn operator_pods(&self) -> Option<crate::resources::OperatorPods> {
        let labels = parse_labels(self.network_policy_from.as_deref()?).ok()?;
        Some(crate::resources::OperatorPods { namespace: self.lease_namespace.clone(), labels })
    }
}

/// `key=value,key=value` as a label map: keys non-empty, no key twice, at least one.
fn parse_labels(s: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut labels = std::collections::BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("`{pair}` is not key=value"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(format!("`{pair}` has an empty key"));
        }
        if labels.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("label `{k}` is given twice"));
        }
    }
    if labels.is_empty() {
        return Err("no labels (omit the setting for no NetworkPolicies)".to_string());
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> RunConfig {
        let mut argv = vec!["ringkv-operator", "run"];
        argv.extend_from_slice(args);
        match Cli::parse_from(argv).command {
            Command::Run(c) => *c,
            other => unreachable!("parsed `run`, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_elect_a_leader() {
        let c = run(&[]);
        assert!(c.validate().is_ok());
        assert!(c.leader_election);
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.watch_namespace, None);
    }

    #[test]
    fn validate_reports_every_contradiction() {
        let c = run(&["--lease-seconds", "5", "--watch-namespace", "", "--leader-election", "false"]);
        let errs = c.validate().unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(!c.leader_election);
    }

    #[test]
    fn an_unknown_log_format_is_refused_with_the_choices() {
        let e = Cli::try_parse_from(["ringkv-operator", "run", "--log-format", "xml"]).expect_err("xml");
        let text = e.to_string();
        assert!(text.contains("text") && text.contains("json"), "{text}");
        assert_eq!(run(&["--log-format", "json"]).log_format, LogFormat::Json);
    }

    #[test]
    fn network_policies_take_the_operators_pod_labels() {
        assert_eq!(run(&[]).operator_pods(), None, "no labels, no NetworkPolicies");
        let c = run(&["--lease-namespace", "ops", "--network-policy-from", "app=op, release=r1"]);
        assert!(c.validate().is_ok());
        let pods = c.operator_pods().expect("labels given");
        assert_eq!(pods.namespace, "ops");
        assert_eq!(pods.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(), ["app=op", "release=r1"]);
        for bad in ["app", "=x", "a=1,a=2", " , "] {
            let errs = run(&["--network-policy-from", bad]).validate().expect_err(bad);
            assert!(errs.iter().any(|e| e.starts_with("--network-policy-from")), "{bad}: {errs:?}");
        }
    }

    #[test]
    fn crd_subcommand_parses() {
        assert!(matches!(Cli::parse_from(["ringkv-operator", "crd"]).command, Command::Crd));
    }
}
