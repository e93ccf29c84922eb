//! Prometheus metrics, held in the node's state (never global).
//!
//! Names follow `ringkv_<subsystem>_<what>_<unit>`; labels are bounded (route templates,
//! methods, status codes, shard ids).

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// Every metric the node exports.
pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub raft_term: IntGaugeVec,
    pub raft_leader: IntGaugeVec,
    pub raft_is_leader: IntGaugeVec,
    pub raft_last_log_index: IntGaugeVec,
    pub raft_commit_index: IntGaugeVec,
    pub raft_applied_index: IntGaugeVec,
    pub raft_snapshot_index: IntGaugeVec,
    pub raft_purged_index: IntGaugeVec,
    pub keys: IntGaugeVec,
    pub wal_fsync: prometheus::Histogram,
    pub wal_batch_records: prometheus::Histogram,
    pub wal_bytes: prometheus::IntGauge,
    pub wal_segments: prometheus::IntGauge,
    pub disk_available: prometheus::IntGauge,
    pub disk_low: prometheus::IntGauge,
    pub forwards: IntCounterVec,
    pub expired_keys: prometheus::IntCounter,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Metric definitions are static: an error here is a programming mistake caught by tests.
    r.unwrap_or_else(|e| panic!("invalid metric definition: {e}"))
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let lat = vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
        let http_requests = must(IntCounterVec::new(
            Opts::new("ringkv_http_requests_total", "HTTP requests by route, method and status"),
            &["route", "method", "status"],
        ));
        let http_duration = must(HistogramVec::new(
            HistogramOpts::new(
                "ringkv_http_request_duration_seconds",
                "HTTP request latency by route, method and status",
            )
            .buckets(lat.clone()),
            &["route", "method", "status"],
        ));
        let g = |name: &str, help: &str| must(IntGaugeVec::new(Opts::new(name, help), &["shard"]));
        let raft_term = g("ringkv_raft_term", "Current Raft term of the shard on this node");
        let raft_leader = g("ringkv_raft_leader_id", "Node id of the shard's leader as this node sees it (0: none)");
        let raft_is_leader = g("ringkv_raft_is_leader", "1 if this node leads the shard");
        let raft_last_log_index = g("ringkv_raft_last_log_index", "Last log index of the shard on this node");
        let raft_commit_index = g("ringkv_raft_commit_index", "Committed log index of the shard on this node");
        let raft_applied_index = g("ringkv_raft_applied_index", "Applied log index of the shard on this node");
        let raft_snapshot_index =
            g("ringkv_raft_snapshot_index", "Last log index covered by the shard's snapshot on this node");
        let raft_purged_index =
            g("ringkv_raft_purged_index", "Log index up to which the shard's log is purged on this node");
        let keys = g(
            "ringkv_keys",
            "Keys stored in the shard on this node (right after a split, until its sweep ends, the other shard's too)",
        );
        let wal_fsync = must(prometheus::Histogram::with_opts(
            HistogramOpts::new("ringkv_wal_fsync_duration_seconds", "WAL write+fsync latency per group commit")
                .buckets(lat),
        ));
        let wal_batch_records = must(prometheus::Histogram::with_opts(
            HistogramOpts::new("ringkv_wal_group_commit_records", "Records made durable by one fsync")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0]),
        ));
        let wal_bytes = must(prometheus::IntGauge::new("ringkv_wal_disk_bytes", "Bytes of WAL segments on disk"));
        let wal_segments = must(prometheus::IntGauge::new("ringkv_wal_segments", "WAL segment files on disk"));
        let disk_available = must(prometheus::IntGauge::new(
            "ringkv_disk_available_bytes",
            "Bytes free for the node on its data directory's file system (-1: unknown)",
        ));
        let disk_low = must(prometheus::IntGauge::new(
            "ringkv_disk_low",
            "1 while free space is below --disk-reserve-bytes: client writes get 507",
        ));
        let forwards = must(IntCounterVec::new(
            Opts::new("ringkv_forwarded_requests_total", "Requests forwarded to a shard leader on another node"),
            &["kind"],
        ));
        let expired_keys = must(prometheus::IntCounter::new(
            "ringkv_expired_keys_total",
            "Keys removed by TTL expiry on shards this node led",
        ));
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(raft_term.clone()),
            Box::new(raft_leader.clone()),
            Box::new(raft_is_leader.clone()),
            Box::new(raft_last_log_index.clone()),
            Box::new(raft_commit_index.clone()),
            Box::new(raft_applied_index.clone()),
            Box::new(raft_snapshot_index.clone()),
            Box::new(raft_purged_index.clone()),
            Box::new(keys.clone()),
            Box::new(wal_fsync.clone()),
            Box::new(wal_batch_records.clone()),
            Box::new(wal_bytes.clone()),
            Box::new(wal_segments.clone()),
            Box::new(disk_available.clone()),
            Box::new(disk_low.clone()),
            Box::new(forwards.clone()),
            Box::new(expired_keys.clone()),
        ] {
            must(registry.register(c));
        }
        Metrics {
            registry,
            http_requests,
            http_duration,
            raft_term,
            raft_leader,
            raft_is_leader,
            raft_last_log_index,
            raft_commit_index,
            raft_applied_index,
            raft_snapshot_index,
            raft_purged_index,
            keys,
            wal_fsync,
            wal_batch_records,
            wal_bytes,
            wal_segments,
            disk_available,
            disk_low,
            forwards,
            expired_keys,
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_register_and_render_with_conventional_names() {
        let m = Metrics::new();
        m.http_requests.with_label_values(&["/v1/kv/{*key}", "PUT", "200"]).inc();
        m.wal_fsync.observe(0.001);
        let text = m.render();
        assert!(text.contains("ringkv_http_requests_total{method=\"PUT\",route=\"/v1/kv/{*key}\",status=\"200\"} 1"));
        assert!(text.contains("ringkv_wal_fsync_duration_seconds_count 1"));
    }
}
