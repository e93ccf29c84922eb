//! The operator's Prometheus metrics, held in state (one registry per operator, so tests
//! read counters back without globals).

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Counters and histograms of the reconcile loop.
pub struct Metrics {
    registry: Registry,
    /// `ringkv_operator_reconciles_total`
    pub reconciles: IntCounter,
    /// `ringkv_operator_reconcile_failures_total{reason}` (reason: `Error::metric_label`)
    pub failures: IntCounterVec,
    /// `ringkv_operator_reconcile_duration_seconds`
    pub duration: Histogram,
    /// `ringkv_operator_steps_total{step}` (step: `Step::name`)
    pub steps: IntCounterVec,
    /// `ringkv_operator_leader`: 1 while this replica holds the Lease.
    pub leader: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics in their own registry.
    pub fn new() -> Self {
        // Metric construction fails only on invalid names or duplicate registration,
        // both programming errors caught by the first test that builds Metrics.
        fn must<T>(r: prometheus::Result<T>) -> T {
            r.unwrap_or_else(|e| panic!("operator metrics definition: {e}"))
        }
        let registry = Registry::new();
        let reconciles = must(IntCounter::new("ringkv_operator_reconciles_total", "Reconcile passes started"));
        let failures = must(IntCounterVec::new(
            Opts::new("ringkv_operator_reconcile_failures_total", "Reconcile passes that failed, by reason"),
            &["reason"],
        ));
        let duration = must(Histogram::with_opts(
            HistogramOpts::new("ringkv_operator_reconcile_duration_seconds", "Time one reconcile pass takes")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        ));
        let steps = must(IntCounterVec::new(
            Opts::new("ringkv_operator_steps_total", "Plan steps executed or reported, by step"),
            &["step"],
        ));
        let leader = must(IntGauge::new("ringkv_operator_leader", "1 while this replica holds the leader Lease"));
        must(registry.register(Box::new(reconciles.clone())));
        must(registry.register(Box::new(failures.clone())));
        must(registry.register(Box::new(duration.clone())));
        must(registry.register(Box::new(steps.clone())));
        must(registry.register(Box::new(leader.clone())));
        Metrics { registry, reconciles, failures, duration, steps, leader }
    }

    /// Everything in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}
