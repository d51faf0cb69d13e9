//! The activity model behind retention risk: a buy-till-you-die model (MBG/NBD) of each tenant's
//! customers, fitted by maximum likelihood over their (repeat active days, last active day, age)
//! summaries, evaluated per customer in closed form.
//!
//! Retention risk is the probability of **no inbound activity within the horizon**
//! (`retention_horizon_seconds`). Before a tenant has `retention_min_customers_to_fit` customers
//! (and between refits) the last fit is used, or [`RetentionModel::prior`] when there is none.

use crate::domain::TimestampMs;
use crate::scoring::btyd::{self, ActivitySample, BtydModel, BtydParams};
use crate::scoring::Summary;
use std::collections::BTreeMap;

const DAY_MS: f64 = 86_400_000.0;

/// Smallest and largest probability the activity model hands to the logistic layer, so its
/// log-odds stay finite.
const PROBABILITY_FLOOR: f64 = 1e-9;

/// A tenant's fitted (or prior) activity model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetentionModel {
    /// The population parameters.
    pub params: BtydParams,
    /// Customers the fit saw; 0 for the prior.
    pub fitted_customers: u64,
}

impl Default for RetentionModel {
    fn default() -> Self {
        Self::prior()
    }
}

impl RetentionModel {
    /// The model before any fit: MBG/NBD with a weak prior, about one active day a month
    /// (r = 1, α = 30 days, spread as wide as a gamma allows with r = 1) and a 25 % chance of
    /// leaving at each active day (a = 1, b = 3). Not fitted to any data set.
    pub fn prior() -> Self {
        Self {
            params: BtydParams {
                model: BtydModel::MbgNbd,
                r: 1.0,
                alpha_days: 30.0,
                a: 1.0,
                b: 3.0,
            },
            fitted_customers: 0,
        }
    }

    /// The probability of no inbound activity within `horizon_seconds` after `at_ms`, for the
    /// customer summarised (clamped away from 0 and 1 by 1e-9).
    pub fn p_no_activity(
        &self,
        summary: &Summary,
        at_ms: TimestampMs,
        horizon_seconds: f64,
    ) -> f64 {
        let sample = activity_sample(summary, at_ms);
        self.params
            .p_no_activity(horizon_seconds / 86_400.0, &sample)
            .clamp(PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
    }
}

/// The (x, t_x, T) summary BTYD models read, in days: repeat active days, the last active day
/// and the age at `at_ms`, both counted from the first activity. A customer without inbound
/// activity is a newcomer seen at `at_ms` (x = 0, t_x = T = 0).
pub fn activity_sample(summary: &Summary, at_ms: TimestampMs) -> ActivitySample {
    if summary.activity_total == 0 {
        return ActivitySample {
            repeat_days: 0,
            last_day: 0.0,
            age_days: 0.0,
        };
    }
    let first = summary.first_activity_at_ms;
    let last_day = (summary.last_activity_at_ms.saturating_sub(first)).max(0) as f64 / DAY_MS;
    let age_days = ((at_ms.saturating_sub(first)).max(0) as f64 / DAY_MS).max(last_day);
    ActivitySample {
        repeat_days: summary.active_days.saturating_sub(1),
        last_day,
        age_days,
    }
}

/// Customers' samples gathered for a fit, in whole days (so customers share them and a fit over a
/// million customers sums a few thousand distinct terms).
#[derive(Clone, Debug, Default)]
pub struct FitSamples {
    counts: BTreeMap<(u32, u32, u32), u32>,
    customers: u64,
}

impl FitSamples {
    /// Adds one customer as of `at_ms` (customers without inbound activity are skipped: the model
    /// describes the activity of customers who have been active).
    pub fn add(&mut self, summary: &Summary, at_ms: TimestampMs) {
        if summary.activity_total == 0 || summary.first_activity_at_ms > at_ms {
            return;
        }
        let sample = activity_sample(summary, at_ms);
        let whole = |days: f64| days.floor().min(f64::from(u32::MAX)) as u32;
        *self
            .counts
            .entry((
                sample.repeat_days,
                whole(sample.last_day),
                whole(sample.age_days),
            ))
            .or_default() += 1;
        self.customers += 1;
    }

    /// Customers added.
    pub fn customers(&self) -> u64 {
        self.customers
    }

    /// Fits the tenant's model by maximum likelihood; `None` when the fit fails (the caller keeps
    /// the model it had). Deterministic: the same customers give the same parameters.
    pub fn fit(&self) -> Option<RetentionModel> {
        let samples: Vec<(ActivitySample, u32)> = self
            .counts
            .iter()
            .map(|(&(repeat_days, last_day, age_days), &count)| {
                (
                    ActivitySample {
                        repeat_days,
                        last_day: f64::from(last_day),
                        age_days: f64::from(age_days),
                    },
                    count,
                )
            })
            .collect();
        let params = btyd::fit(BtydModel::MbgNbd, &samples, None)?;
        Some(RetentionModel {
            params,
            fitted_customers: self.customers,
        })
    }
}
