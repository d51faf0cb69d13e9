//! Metrics the sentiment backends record (defined here, described with the rest by the core's
//! telemetry).

use metrics::{counter, describe_counter, describe_gauge, gauge};
use std::sync::OnceLock;

/// Cascade routing decisions, by `to` (`fast`: kept the fast label; `transformer`: sent on).
pub const CASCADE_ROUTED_TOTAL: &str = "rapport_cascade_routed_total";

/// Transformer worker threads running now (0 with workers started: the pool is dead).
pub const TRANSFORMER_WORKERS_ALIVE: &str = "rapport_transformer_workers_alive";
/// Texts the transformer pool classified.
pub const TRANSFORMER_TEXTS_TOTAL: &str = "rapport_transformer_texts_total";
/// Forward passes the transformer pool ran, by `outcome` (`ok`, `failed`).
pub const TRANSFORMER_BATCHES_TOTAL: &str = "rapport_transformer_batches_total";
/// Texts the transformer pool did not classify, by `reason` (`queue_full`, `caller_gone`).
pub const TRANSFORMER_TEXTS_DROPPED_TOTAL: &str = "rapport_transformer_texts_dropped_total";

/// Registers the descriptions of this crate's metrics with the installed recorder.
pub fn describe() {
    describe_counter!(
        CASCADE_ROUTED_TOTAL,
        "Cascade decisions: kept with the fast model (to=fast) or sent to the transformer."
    );
    describe_gauge!(
        TRANSFORMER_WORKERS_ALIVE,
        "Transformer worker threads running (0 while the backend is configured: NOT_SERVING)."
    );
    describe_counter!(
        TRANSFORMER_TEXTS_TOTAL,
        "Texts the transformer pool classified."
    );
    describe_counter!(
        TRANSFORMER_BATCHES_TOTAL,
        "Transformer forward passes, by outcome (failed: its texts' callers got an error)."
    );
    describe_counter!(
        TRANSFORMER_TEXTS_DROPPED_TOTAL,
        "Texts the transformer pool did not classify, by reason (queue_full, caller_gone)."
    );
}

/// Exports a queued backend's counters (read from the pool, so set to their absolute values).
pub fn queue_stats(stats: &crate::QueueStats) {
    gauge!(TRANSFORMER_WORKERS_ALIVE).set(stats.workers_alive as f64);
    counter!(TRANSFORMER_TEXTS_TOTAL).absolute(stats.texts);
    counter!(TRANSFORMER_BATCHES_TOTAL, "outcome" => "ok").absolute(stats.batches);
    counter!(TRANSFORMER_BATCHES_TOTAL, "outcome" => "failed").absolute(stats.failed_batches);
    counter!(TRANSFORMER_TEXTS_DROPPED_TOTAL, "reason" => "queue_full").absolute(stats.refused);
    counter!(TRANSFORMER_TEXTS_DROPPED_TOTAL, "reason" => "caller_gone").absolute(stats.abandoned);
}

/// Counts one cascade decision: `kept` = the fast model's label stands.
pub fn cascade_routed(kept: bool) {
    static HANDLES: OnceLock<[metrics::Counter; 2]> = OnceLock::new();
    let [to_fast, to_transformer] = HANDLES.get_or_init(|| {
        [
            counter!(CASCADE_ROUTED_TOTAL, "to" => "fast"),
            counter!(CASCADE_ROUTED_TOTAL, "to" => "transformer"),
        ]
    });
    if kept { to_fast } else { to_transformer }.increment(1);
}
