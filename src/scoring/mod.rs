//! Pure scoring: functions of a customer's events, the configuration and an "as of" time.
//!
//! No I/O and no clock reads here. [`CustomerHistory`] folds events in `(occurred_at, event_key)`
//! order into a [`Summary`]; a late event re-folds from the sorted records, so the summary, and
//! every score evaluated from it, is bit-identical whatever order the events arrived in.
//! [`evaluate`] turns a summary into a [`Score`] as of a moment. docs/scoring.md has the formulas.

mod decay;
mod evaluate;
mod history;

pub use decay::{decay_factor, decayed};
pub use evaluate::{evaluate, evaluate_for_ranking, Factor, FactorKind, Score};
pub use history::{
    CustomerHistory, EventRecord, InsertOutcome, OpenThread, RefineOutcome, Summary,
};
