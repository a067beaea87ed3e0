//! The controller's metrics. Names are `mcp_operator_*`; the Redis pool
//! and rate-limiter metrics come from the store under the same prefix.

use std::time::Instant;

use crate::error::Error;

pub const PREFIX: &str = "mcp_operator";

/// Times one reconcile of `kind` and counts it, with its stage and error
/// labels if it failed. It records when dropped, so a reconcile that is
/// cancelled or panics still leaves the in-flight gauge and the histogram
/// right.
pub struct ReconcileTimer {
    kind: &'static str,
    started: Instant,
    /// The failed stage's label and the error's.
    error: Option<(&'static str, &'static str)>,
}

impl ReconcileTimer {
    pub fn start(kind: &'static str) -> Self {
        metrics::gauge!("mcp_operator_reconciles_in_flight", "kind" => kind).increment(1.0);
        Self {
            kind,
            started: Instant::now(),
            error: None,
        }
    }

    /// Marks the reconcile failed with `error`'s labels.
    pub fn failed(&mut self, error: &Error) {
        self.error = Some((error.stage_label(), error.metric_label()));
    }
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        let kind = self.kind;
        metrics::gauge!("mcp_operator_reconciles_in_flight", "kind" => kind).decrement(1.0);
        metrics::histogram!("mcp_operator_reconcile_duration_seconds", "kind" => kind)
            .record(self.started.elapsed());
        metrics::counter!("mcp_operator_reconciles_total", "kind" => kind).increment(1);
        if let Some((stage, error)) = self.error {
            metrics::counter!("mcp_operator_reconcile_errors_total", "kind" => kind, "stage" => stage, "error" => error)
                .increment(1);
        }
    }
}

/// Objects waiting for a retry after an error (kube-runtime's scheduler
/// does not expose its queue; this is the part that can grow).
pub fn retries_pending(pending: usize) {
    metrics::gauge!("mcp_operator_queue_depth").set(pending as f64);
}

/// Namespaces `--namespace-selector` matches now.
pub fn namespaces_selected(count: usize) {
    metrics::gauge!("mcp_operator_namespaces_selected").set(count as f64);
}

/// A catalog publish and what it did (`written`, `unchanged`, `removed`).
pub fn catalog_published(outcome: &'static str) {
    metrics::counter!("mcp_operator_catalog_publishes_total", "outcome" => outcome).increment(1);
}

/// A workload object a server reconcile wanted in place, and whether that
/// took an apply (`applied`) or the object already was (`unchanged`).
pub fn workload_applied(kind: String, outcome: &'static str) {
    metrics::counter!("mcp_operator_workload_applies_total", "kind" => kind, "outcome" => outcome)
        .increment(1);
}
