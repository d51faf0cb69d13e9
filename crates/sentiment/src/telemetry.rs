//! Metrics the sentiment backends record (defined here, described with the rest by the core's
//! telemetry).

use metrics::{counter, describe_counter};
use std::sync::OnceLock;

/// Cascade routing decisions, by `to` (`fast`: kept the fast label; `transformer`: sent on).
pub const CASCADE_ROUTED_TOTAL: &str = "rapport_cascade_routed_total";

/// Registers the descriptions of this crate's metrics with the installed recorder.
pub fn describe() {
    describe_counter!(
        CASCADE_ROUTED_TOTAL,
        "Cascade decisions: kept with the fast model (to=fast) or sent to the transformer."
    );
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
