//! Pure scoring: functions of a customer's events, the configuration, the tenant's model and an
//! "as of" time.
//!
//! No I/O and no clock reads here. [`CustomerHistory`] folds events in `(occurred_at, event_key)`
//! order into a [`Summary`]; a late event re-folds from the sorted records, so the summary, and
//! every score evaluated from it, is bit-identical whatever order the events arrived in.
//! [`evaluate`] turns a summary into a [`Score`] as of a moment, with the tenant's [`TenantModel`]
//! (its SLA policy and fitted activity model). docs/scoring.md has the formulas.

pub mod btyd;
mod decay;
mod evaluate;
mod factor;
mod history;
pub mod noise;
mod retention;
mod sla;
mod timeline;
mod validate;

pub use crate::calendar::{BusinessCalendar, BusinessHoursConfig, CalendarError};
pub use decay::{decay_factor, decayed};
pub use evaluate::{
    band, configured_signal_weights, evaluate, evaluate_for_ranking, priority_in_band,
    risk_signals, waiting_threads, Score, WaitingThread,
};
pub use factor::{Factor, FactorGroup, FactorKind};
pub use history::{
    decode_state_of_format, CustomerHistory, CustomerHistoryV2, EventRecord, InsertOutcome,
    OpenThread, RefineOutcome, Summary, SARCASTIC_CLOSURE_SENTIMENT,
};
pub use retention::{
    activity_sample, pace_share, Backtest, Calibration, FitSamples, ModelFit, RetentionModel,
    RiskBasis, FIT_PRIOR, RISK_SIGNALS,
};
pub use sla::{check_sla_rows, ChannelTargets, SlaPolicy, ThreadSla};
pub use timeline::{TimelineLimits, Touchpoint};

use crate::config::ScoringConfig;

/// The logistic function, 1 / (1 + e^(−x)).
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Log-odds of a probability, ln(p / (1 − p)).
pub fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

/// A linear predictor: Σ weightᵢ · featureᵢ.
pub fn dot(weights: &[f64], features: &[f64]) -> f64 {
    weights
        .iter()
        .zip(features)
        .map(|(weight, feature)| weight * feature)
        .sum()
}

/// What scoring knows of one tenant beyond the config: its SLA policy and its activity model,
/// and, for the customers of a rule's segment, the rule's treatment.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantModel {
    /// Reply targets and business calendar.
    pub sla: SlaPolicy,
    /// The fitted (or prior) activity model behind retention risk.
    pub retention: RetentionModel,
    /// What a rule changes in the priority (neutral without one).
    pub treatment: Treatment,
}

/// A rule's change to the priority of its segment's customers (its SLA is in the model's `sla`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Treatment {
    /// Multiplies the priority's odds inside its action's band (1: unchanged).
    pub urgency_weight: f64,
    /// Replaces any action but `none`.
    pub action: Option<crate::domain::Action>,
}

impl Treatment {
    /// No change.
    pub const NEUTRAL: Treatment = Treatment {
        urgency_weight: 1.0,
        action: None,
    };
}

impl TenantModel {
    /// The model of `tenant` (None: the default policy) before any fit.
    pub fn new(config: &ScoringConfig, tenant: Option<&str>) -> Self {
        Self {
            sla: SlaPolicy::new(config, tenant),
            retention: RetentionModel::prior(),
            treatment: Treatment::NEUTRAL,
        }
    }

    /// The model for the customers of `rule` (a rule carrying a treatment), with this model's
    /// activity model.
    pub fn for_rule(
        &self,
        config: &ScoringConfig,
        tenant: Option<&str>,
        rule: &crate::segments::RuleConfig,
    ) -> Self {
        Self {
            sla: match &rule.sla {
                Some(sla) => SlaPolicy::for_rule(config, tenant, sla),
                None => self.sla.clone(),
            },
            retention: self.retention,
            treatment: Treatment {
                urgency_weight: rule.urgency_weight.unwrap_or(1.0),
                action: rule.action,
            },
        }
    }
}
