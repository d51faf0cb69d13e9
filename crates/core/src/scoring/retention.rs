//! The activity model behind retention risk: a buy-till-you-die model (MBG/NBD) of each tenant's
//! customers, fitted by maximum likelihood over their (repeat active days, last active day, age)
//! summaries, evaluated per customer in closed form, then recalibrated on the tenant's own past.
//!
//! Retention risk is the probability of **no inbound activity within the horizon**
//! (`retention_horizon_seconds`). Before a tenant has `retention_min_customers_to_fit` customers
//! (and between refits) the last fit is used, or [`RetentionModel::prior`] when there is none.
//!
//! The recalibration ([`Calibration`]) is a logistic regression fitted by [`Backtest`]: the state
//! of every customer at a cut `h'` before the fit time (h' = the horizon, or half the tenant's
//! history when that is shorter), the activity model refitted on that state alone, and the
//! outcome observed after the cut (any inbound activity by the fit time or not). Its features are
//! the activity model's log-odds and the customer's log repeat days, log recency and log spend per
//! active day (not age: see [`features`]); the coefficients are shrunk towards "the activity model as it is"
//! (intercept 0, slope 1, the rest 0), so little history changes little.
//!
//! What a purchase log lacks, the risk signals (engagement drop, negative and worsening sentiment,
//! open complaints, positive contact; [`RISK_SIGNALS`]), enter the same regression with their
//! configured weights (`[scoring.risk]`) as the prior, so a tenant with history learns from its own
//! past how much each says about leaving; until then, and for a signal no customer shows, the
//! configured weight stands.

use crate::domain::TimestampMs;
use crate::scoring::btyd::{self, ActivitySample, BtydModel, BtydParams, ParamPrior};
use crate::scoring::{dot, logit, sigmoid, Summary};
use std::collections::BTreeMap;

const DAY_MS: f64 = 86_400_000.0;

/// Smallest and largest probability the activity model hands to the logistic layer, so its
/// log-odds stay finite.
const PROBABILITY_FLOOR: f64 = 1e-9;

/// A probability kept inside [1e-9, 1 − 1e-9] so its log-odds are finite; 0.5 (log-odds 0) for
/// a non-finite one.
fn bounded_probability(p: f64) -> f64 {
    if p.is_finite() {
        p.clamp(PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
    } else {
        0.5
    }
}

/// A tenant's fitted (or prior) activity model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetentionModel {
    /// The population parameters.
    pub params: BtydParams,
    /// The recalibration learnt on the tenant's past (identity until there is enough of it).
    pub calibration: Calibration,
    /// When and on how many customers it was fitted (`None`: the prior).
    pub fit: Option<ModelFit>,
}

/// Where a retention risk's activity term comes from: what its reason says, so that a risk
/// from little history is not mistaken for a certainty.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RiskBasis {
    /// No fit yet: the prior ([`RetentionModel::prior`]).
    Prior,
    /// A fit on the tenant's customers, with no backtest yet (under 14 days of history).
    Fitted {
        /// Customers in the fit.
        customers: u64,
    },
    /// A fit recalibrated on the tenant's past.
    Backtested {
        /// Customers in the fit.
        customers: u64,
        /// The backtest's horizon h', days.
        backtest_days: f64,
        /// How far its correction is applied, in [0, 1] ([`RetentionModel::trust`]).
        trust: f64,
    },
}

/// Which fit a tenant's activity model came from: what an answer names as the model it used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelFit {
    /// When it was fitted (server clock, milliseconds since the epoch).
    pub fitted_at_ms: TimestampMs,
    /// Customers in the fit.
    pub customers: u64,
}

/// Number of features of the recalibration, intercept included.
pub const CALIBRATION_FEATURES: usize = 5;

/// Number of risk signals (what a purchase log lacks), each in [-1, 1]: engagement drop,
/// negative sentiment, worsening sentiment, open complaints, positive contact (negative: it
/// lowers risk). Their log-odds are `weights · signals`.
pub const RISK_SIGNALS: usize = 5;

/// Features of the recalibration with the risk signals after them.
const FULL_FEATURES: usize = CALIBRATION_FEATURES + RISK_SIGNALS;

/// The logistic recalibration of the activity model: log-odds =
/// w · [1, logit(p), ln(1 + x), ln(1 + recency days), ln(1 + spend per active day)].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    /// Coefficients, in feature order.
    pub weights: [f64; CALIBRATION_FEATURES],
    /// The backtest horizon it was fitted with, days (0 for the identity).
    pub horizon_days: f64,
    /// Coefficients of the extension's recalibration: the same features with the activity model's
    /// log-odds of staying away for the rest of the horizon, given away so far, in slot 1.
    pub extension_weights: [f64; CALIBRATION_FEATURES],
    /// The risk signals' weights learnt on the tenant's past; `None`: the configured ones.
    pub signal_weights: Option<[f64; RISK_SIGNALS]>,
    /// The backtest's length against the fitted model's typical gap ([`pace_share`]), computed
    /// once when fitted: every evaluation reads it.
    pub pace: f64,
}

/// The backtest's length against customers' pace, in [0, 1]: h' over the typical customer's gap
/// between active days ([`BtydParams::typical_gap_days`]), capped at 1; 1 when the gap is not a
/// positive number.
pub fn pace_share(backtest_days: f64, typical_gap_days: f64) -> f64 {
    if typical_gap_days.is_finite() && typical_gap_days > 0.0 {
        (backtest_days / typical_gap_days).min(1.0)
    } else {
        1.0
    }
}

impl Calibration {
    /// The activity model as it is.
    pub const IDENTITY: Calibration = Calibration {
        weights: [0.0, 1.0, 0.0, 0.0, 0.0],
        horizon_days: 0.0,
        extension_weights: [0.0, 1.0, 0.0, 0.0, 0.0],
        signal_weights: None,
        pace: 0.0,
    };

    /// Calibrated log-odds for one customer's features.
    pub fn log_odds(&self, features: &[f64; CALIBRATION_FEATURES]) -> f64 {
        dot(&self.weights, features)
    }
}

/// The recalibration's features of a customer (see [`Calibration`]).
///
/// The customer's age is not one of them, though the activity model reads it: at the backtest's
/// cut every customer is h' younger than when the calibration is applied, so an age coefficient
/// would be learnt on ages it is never applied to and extrapolated (on CDNOW, where one cohort
/// is h' = 136 days younger at the cut, it over-predicted the middle deciles by up to 0.055; without
/// it every decile is within 0.04, AUC 0.7716 against 0.7720).
fn features(
    activity_log_odds: f64,
    sample: &ActivitySample,
    summary: &Summary,
) -> [f64; CALIBRATION_FEATURES] {
    let spend_per_day = if summary.active_days > 0 {
        summary.lifetime_value.max(0.0) / f64::from(summary.active_days)
    } else {
        0.0
    };
    [
        1.0,
        activity_log_odds,
        f64::from(sample.repeat_days).ln_1p(),
        (sample.age_days - sample.last_day).max(0.0).ln_1p(),
        spend_per_day.min(1e12).ln_1p(),
    ]
}

impl Default for RetentionModel {
    fn default() -> Self {
        Self::prior()
    }
}

impl RetentionModel {
    /// The model before any fit: MBG/NBD with a weak prior, about one active day a month
    /// (r = 1, α = 30 days, spread as wide as a gamma allows with r = 1) and a 25 % chance of
    /// leaving at each active day (a = 1, b = 3), so that a tenant too small to fit does not
    /// see every newcomer as about to leave. Not fitted to any data set. Fits start from a
    /// prior that says nothing about leaving instead ([`FIT_PRIOR`]).
    pub fn prior() -> Self {
        Self {
            params: BtydParams {
                b: 3.0,
                ..FIT_PRIOR.centre
            },
            calibration: Calibration::IDENTITY,
            fit: None,
        }
    }

    /// The activity model's own probability of no inbound activity within `horizon_seconds`
    /// after `at_ms` (clamped away from 0 and 1 by 1e-9).
    pub fn uncalibrated_p_no_activity(
        &self,
        summary: &Summary,
        at_ms: TimestampMs,
        horizon_seconds: f64,
    ) -> f64 {
        let sample = activity_sample(summary, at_ms);
        bounded_probability(
            self.params
                .p_no_activity(horizon_seconds / 86_400.0, &sample),
        )
    }

    /// The risk signals' weights for `horizon_seconds`: the configured ones moved towards those
    /// learnt on the tenant's past as far as the backtest is trusted ([`RetentionModel::trust`]).
    pub fn signal_weights(
        &self,
        configured: &[f64; RISK_SIGNALS],
        horizon_seconds: f64,
    ) -> [f64; RISK_SIGNALS] {
        let Some(learnt) = self.calibration.signal_weights else {
            return *configured;
        };
        let trust = self.trust(horizon_seconds);
        std::array::from_fn(|i| configured[i] + trust * (learnt[i] - configured[i]))
    }

    /// How far the recalibration is applied for `horizon_seconds`, in [0, 1]: 0 is the activity
    /// model as fitted, 1 the recalibration in full. The product of two shares:
    /// - **the extension**: the backtest learnt how its P(none) extends over a doubling (h'/2 to
    ///   h'), so it is trusted in full up to a horizon of 2h' and in proportion beyond (a 90-day
    ///   horizon on a 15-day backtest: 2 · 15 / 90 = 1/3);
    /// - **the backtest's length against customers' pace**: a backtest shorter than the typical
    ///   customer's gap between active days ([`BtydParams::typical_gap_days`]: the median
    ///   customer's) sees too few returns to tell a slow customer from one who left, and its
    ///   customers were younger at the cut than the ones it is applied to (on CDNOW cut after one
    ///   month, the cut's model over-predicted 15-day silence by 0.024 while the final model was
    ///   exact, so a full correction made every risk too low).
    ///
    /// A tenant with a mature history (a backtest at least as long as the typical gap and half the
    /// horizon) gets the recalibration in full.
    pub fn trust(&self, horizon_seconds: f64) -> f64 {
        let backtest_days = self.calibration.horizon_days;
        let horizon_days = horizon_seconds / 86_400.0;
        if !(backtest_days > 0.0 && horizon_days > 0.0) {
            return 0.0;
        }
        let extension = (2.0 * backtest_days / horizon_days).min(1.0);
        (extension * self.calibration.pace).clamp(0.0, 1.0)
    }

    /// Where a risk's activity term comes from, for its reason.
    pub fn basis(&self, horizon_seconds: f64) -> RiskBasis {
        match self.fit {
            None => RiskBasis::Prior,
            Some(fit) if self.calibration.horizon_days <= 0.0 => RiskBasis::Fitted {
                customers: fit.customers,
            },
            Some(fit) => RiskBasis::Backtested {
                customers: fit.customers,
                backtest_days: self.calibration.horizon_days,
                trust: self.trust(horizon_seconds),
            },
        }
    }

    /// The calibrated log-odds of no inbound activity within `horizon_seconds` after `at_ms`,
    /// given the log-odds its risk signals add (their values weighted by
    /// [`RetentionModel::signal_weights`]).
    ///
    /// The calibration was learnt for its own backtest horizon h'. When h' is shorter than the
    /// horizon asked for, the calibrated P(none in h') is extended by the activity model's
    /// conditional P(none in (h', H] | none in h') = P(none in H) / P(none in h'), itself
    /// recalibrated the way the same extension (from h'/2 to h') proved off in the backtest.
    ///
    /// The result mixes the activity model's own probability with the calibrated one, the
    /// latter weighted by [`RetentionModel::trust`]: a short backtest or a long extension changes
    /// little, and however far a thin backtest's correction extrapolates, it moves the
    /// probability by at most its weight (the Brier score of the mixture is at most the weighted
    /// mean of the two).
    pub fn log_odds(
        &self,
        summary: &Summary,
        at_ms: TimestampMs,
        horizon_seconds: f64,
        signal_part: f64,
    ) -> f64 {
        let p_horizon = self.uncalibrated_p_no_activity(summary, at_ms, horizon_seconds);
        let plain = logit(p_horizon) + signal_part;
        let trust = self.trust(horizon_seconds);
        if trust <= 0.0 {
            return plain;
        }
        let calibrated = self.calibrated_log_odds(summary, at_ms, horizon_seconds, signal_part);
        if trust >= 1.0 {
            return calibrated;
        }
        let mixed = (1.0 - trust) * sigmoid(plain) + trust * sigmoid(calibrated);
        logit(bounded_probability(mixed))
    }

    /// The recalibration in full (see [`RetentionModel::log_odds`]).
    fn calibrated_log_odds(
        &self,
        summary: &Summary,
        at_ms: TimestampMs,
        horizon_seconds: f64,
        signal_part: f64,
    ) -> f64 {
        let sample = activity_sample(summary, at_ms);
        let p_horizon = self.uncalibrated_p_no_activity(summary, at_ms, horizon_seconds);
        let backtest_seconds = self.calibration.horizon_days * 86_400.0;
        if backtest_seconds <= 0.0 || backtest_seconds >= horizon_seconds {
            return self
                .calibration
                .log_odds(&features(logit(p_horizon), &sample, summary))
                + signal_part;
        }
        let p_backtest = self.uncalibrated_p_no_activity(summary, at_ms, backtest_seconds);
        let calibrated = sigmoid(
            self.calibration
                .log_odds(&features(logit(p_backtest), &sample, summary))
                + signal_part,
        );
        let ratio = extension_ratio(p_horizon, p_backtest);
        let extension = features(logit(ratio), &sample, summary);
        let extended = sigmoid(dot(&self.calibration.extension_weights, &extension));
        logit(bounded_probability(calibrated * extended))
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

/// The prior of every fit of a tenant's activity model: the pace of [`RetentionModel::prior`]
/// (r = 1, α = 30 days) and nothing known about leaving (the chance of leaving at each active day
/// uniform on [0, 1]: a = b = 1), each log-parameter within a factor e^0.5 ≈ 1.65 at one
/// standard deviation.
///
/// Dropout is what a short history cannot identify: in a tenant's first month few customers have
/// had time to come back, so a maximum-likelihood fit explains every silence by slow buying and
/// none by leaving, and predicts a return for nearly everyone (on CDNOW cut after one month it
/// put the chance of no purchase in 90 days at 0.64 against 0.73 observed). The prior keeps
/// leaving possible until the data speak; over thousands of customers with months of history
/// it moves the fit by nothing measurable. Its strength was chosen on CDNOW's calibration period
/// only (label windows ending before 1997-10-01; benches/retention/README.md).
pub const FIT_PRIOR: ParamPrior = ParamPrior {
    centre: BtydParams {
        model: BtydModel::MbgNbd,
        r: 1.0,
        alpha_days: 30.0,
        a: 1.0,
        b: 1.0,
    },
    sd_log: 0.5,
};

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
        let params = btyd::fit(BtydModel::MbgNbd, &samples, None, Some(&FIT_PRIOR))?;
        Some(RetentionModel {
            params,
            calibration: Calibration::IDENTITY,
            fit: None,
        })
    }
}

/// Customers' states at a cut before the fit time with what happened after it, for fitting the
/// [`Calibration`].
#[derive(Clone, Debug)]
pub struct Backtest {
    cut_ms: TimestampMs,
    /// Halfway between the cut and the fit time: the extension is learnt from the second half.
    mid_ms: TimestampMs,
    horizon_days: f64,
    samples: FitSamples,
    rows: Vec<BacktestRow>,
}

#[derive(Clone, Debug)]
struct BacktestRow {
    sample: ActivitySample,
    /// Features but the activity log-odds (filled once the cut's model is fitted).
    features: [f64; CALIBRATION_FEATURES],
    /// The customer's risk signals at the cut.
    signals: [f64; RISK_SIGNALS],
    /// No inbound activity after the cut.
    stayed_away: bool,
    /// No inbound activity in the first half after the cut.
    quiet_first_half: bool,
}

/// Shortest backtest horizon worth fitting (7 days).
pub const MIN_BACKTEST_DAYS: f64 = 7.0;

impl Backtest {
    /// A backtest for a tenant fitted at `fit_at_ms` whose earliest activity was at
    /// `first_activity_ms`; `None` when its history is too short (h' under
    /// `MIN_BACKTEST_DAYS`).
    pub fn new(
        fit_at_ms: TimestampMs,
        first_activity_ms: TimestampMs,
        horizon_seconds: f64,
    ) -> Option<Self> {
        let history_days = (fit_at_ms.saturating_sub(first_activity_ms)).max(0) as f64 / DAY_MS;
        let horizon_days = (horizon_seconds / 86_400.0).min(history_days / 2.0);
        (horizon_days >= MIN_BACKTEST_DAYS).then(|| Self {
            cut_ms: fit_at_ms - (horizon_days * DAY_MS) as i64,
            mid_ms: fit_at_ms - (horizon_days * DAY_MS / 2.0) as i64,
            horizon_days,
            samples: FitSamples::default(),
            rows: Vec::new(),
        })
    }

    /// The cut: customers are taken as they were then.
    pub fn cut_ms(&self) -> TimestampMs {
        self.cut_ms
    }

    /// Halfway between the cut and the fit time.
    pub fn mid_ms(&self) -> TimestampMs {
        self.mid_ms
    }

    /// Adds a customer: its folds as of the cut, as of [`Backtest::mid_ms`] and as of the fit
    /// time, and its risk signals at the cut.
    pub fn add(
        &mut self,
        at_cut: &Summary,
        at_mid: &Summary,
        now: &Summary,
        signals: [f64; RISK_SIGNALS],
    ) {
        if at_cut.activity_total == 0 || at_cut.first_activity_at_ms > self.cut_ms {
            return;
        }
        self.samples.add(at_cut, self.cut_ms);
        let sample = activity_sample(at_cut, self.cut_ms);
        self.rows.push(BacktestRow {
            sample,
            features: features(0.0, &sample, at_cut),
            signals,
            stayed_away: now.last_activity_at_ms <= self.cut_ms,
            quiet_first_half: at_mid.last_activity_at_ms <= self.cut_ms,
        });
    }

    /// Fits the recalibration: the activity model on the cut's state, then a ridge-penalised
    /// logistic regression of the outcome on the features and the risk signals, the signals'
    /// prior being their `configured` weights. `None` when either fit fails or one outcome is too
    /// rare to learn from (fewer than 20 customers). `typical_gap_days` is the fitted model's
    /// ([`BtydParams::typical_gap_days`]), for [`Calibration::pace`].
    pub fn fit(
        &self,
        configured: &[f64; RISK_SIGNALS],
        typical_gap_days: f64,
    ) -> Option<Calibration> {
        let stayed_away = self.rows.iter().filter(|row| row.stayed_away).count();
        if stayed_away < 20 || self.rows.len() - stayed_away < 20 {
            return None;
        }
        let model = self.samples.fit()?;
        let rows: Vec<([f64; FULL_FEATURES], bool)> = self
            .rows
            .iter()
            .map(|row| {
                let p = model.params.p_no_activity(self.horizon_days, &row.sample);
                let mut features = [0.0; FULL_FEATURES];
                features[..CALIBRATION_FEATURES].copy_from_slice(&row.features);
                features[1] = logit(bounded_probability(p));
                features[CALIBRATION_FEATURES..].copy_from_slice(&row.signals);
                (features, row.stayed_away)
            })
            .collect();
        let mut prior = [0.0; FULL_FEATURES];
        prior[..CALIBRATION_FEATURES].copy_from_slice(&Calibration::IDENTITY.weights);
        prior[CALIBRATION_FEATURES..].copy_from_slice(configured);
        let full = fit_logistic(&rows, &prior, RIDGE)?;
        let mut weights = [0.0; CALIBRATION_FEATURES];
        weights.copy_from_slice(&full[..CALIBRATION_FEATURES]);
        let mut signal_weights = [0.0; RISK_SIGNALS];
        signal_weights.copy_from_slice(&full[CALIBRATION_FEATURES..]);
        // The extension: among customers away for the first half, who stayed away for the second,
        // against the activity model's P(none in h') / P(none in h'/2).
        let extension_rows: Vec<([f64; CALIBRATION_FEATURES], bool)> = self
            .rows
            .iter()
            .filter(|row| row.quiet_first_half)
            .map(|row| {
                let ratio = extension_ratio(
                    model.params.p_no_activity(self.horizon_days, &row.sample),
                    model
                        .params
                        .p_no_activity(self.horizon_days / 2.0, &row.sample),
                );
                let mut features = row.features;
                features[1] = logit(ratio);
                (features, row.stayed_away)
            })
            .collect();
        let extension_away = extension_rows.iter().filter(|row| row.1).count();
        let extension_weights =
            if extension_away >= 20 && extension_rows.len() - extension_away >= 20 {
                fit_logistic(
                    &extension_rows,
                    &Calibration::IDENTITY.extension_weights,
                    RIDGE,
                )
                .unwrap_or(Calibration::IDENTITY.extension_weights)
            } else {
                Calibration::IDENTITY.extension_weights
            };
        Some(Calibration {
            weights,
            horizon_days: self.horizon_days,
            extension_weights,
            signal_weights: Some(signal_weights),
            pace: pace_share(self.horizon_days, typical_gap_days),
        })
    }
}

/// The activity model's P(none over the longer horizon | none over the shorter) =
/// P(none, long) / P(none, short), kept inside (0, 1) so its log-odds are finite.
fn extension_ratio(p_long: f64, p_short: f64) -> f64 {
    bounded_probability(p_long / p_short)
}

/// Ridge strength pulling the recalibration towards the identity (in customers' worth of
/// log-likelihood curvature: negligible once a tenant has thousands of customers).
const RIDGE: f64 = 1.0;

/// Maximum-likelihood logistic regression with a ridge penalty towards `prior`, by Newton's
/// method (at most 50 steps). `None` when it does not converge to finite weights.
fn fit_logistic<const N: usize>(
    rows: &[([f64; N], bool)],
    prior: &[f64; N],
    ridge: f64,
) -> Option<[f64; N]> {
    let mut weights = *prior;
    for _ in 0..50 {
        let mut gradient = [0.0; N];
        let mut hessian = [[0.0; N]; N];
        for (features, outcome) in rows {
            let z = dot(&weights, features);
            let p = 1.0 / (1.0 + (-z).exp());
            let y = if *outcome { 1.0 } else { 0.0 };
            let curvature = (p * (1.0 - p)).max(1e-12);
            for i in 0..N {
                gradient[i] += (y - p) * features[i];
                for j in 0..N {
                    hessian[i][j] += curvature * features[i] * features[j];
                }
            }
        }
        for i in 0..N {
            gradient[i] -= ridge * (weights[i] - prior[i]);
            hessian[i][i] += ridge;
        }
        let step = solve(hessian, gradient)?;
        let mut largest = 0.0f64;
        for i in 0..N {
            weights[i] += step[i];
            largest = largest.max(step[i].abs());
        }
        if !weights.iter().all(|w| w.is_finite()) {
            return None;
        }
        if largest < 1e-9 {
            return Some(weights);
        }
    }
    Some(weights)
}

/// Solves `a · x = b` by Gaussian elimination with partial pivoting; `None` when singular.
fn solve<const N: usize>(mut a: [[f64; N]; N], mut b: [f64; N]) -> Option<[f64; N]> {
    for column in 0..N {
        let pivot =
            (column..N).max_by(|&i, &j| a[i][column].abs().total_cmp(&a[j][column].abs()))?;
        if a[pivot][column].abs() < 1e-12 {
            return None;
        }
        a.swap(column, pivot);
        b.swap(column, pivot);
        for row in column + 1..N {
            let factor = a[row][column] / a[column][column];
            let pivot_row = a[column];
            for (cell, pivot_cell) in a[row][column..].iter_mut().zip(&pivot_row[column..]) {
                *cell -= factor * pivot_cell;
            }
            b[row] -= factor * b[column];
        }
    }
    let mut x = [0.0; N];
    for row in (0..N).rev() {
        let tail: f64 = (row + 1..N).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_inverts_a_small_system() {
        let a = [[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]];
        let x = [1.0, -2.0, 3.0];
        let b = [4.0 * 1.0 + 1.0 * -2.0, 1.0 - 6.0 + 3.0, -2.0 + 6.0];
        let solved = solve(a, b).unwrap();
        for i in 0..3 {
            assert!((solved[i] - x[i]).abs() < 1e-12);
        }
        assert!(solve([[1.0, 2.0], [2.0, 4.0]], [1.0, 2.0]).is_none());
    }

    /// A backtest a third of the typical gap and a sixth of the horizon is trusted at a ninth: however far its correction extrapolates (here −20 log-odds), the risk moves
    /// from the activity model's by at most that share of the way, in probability. A backtest
    /// as long as the gap and half the horizon is applied in full.
    #[test]
    fn a_thin_backtest_moves_the_risk_by_at_most_its_trust() {
        const DAY: i64 = 86_400_000;
        let mut model = RetentionModel::prior(); // typical gap 30 / ln 2 ≈ 43 days
        model.fit = Some(ModelFit {
            fitted_at_ms: 0,
            customers: 1_000,
        });
        model.calibration = Calibration {
            weights: [-20.0, 1.0, 0.0, 0.0, 0.0],
            horizon_days: 15.0,
            extension_weights: Calibration::IDENTITY.extension_weights,
            signal_weights: Some([5.0; RISK_SIGNALS]),
            pace: pace_share(15.0, RetentionModel::prior().params.typical_gap_days()),
        };
        let horizon_seconds = 90.0 * 86_400.0;
        let trust = model.trust(horizon_seconds);
        let gap = 30.0 / std::f64::consts::LN_2;
        assert!((model.params.typical_gap_days() - gap).abs() < 1e-9);
        assert!((trust - (2.0 * 15.0 / 90.0) * (15.0 / gap)).abs() < 1e-9);
        let summary = Summary {
            activity_total: 5,
            active_days: 5,
            first_activity_at_ms: 0,
            last_activity_at_ms: 20 * DAY,
            last_event_at_ms: 20 * DAY,
            ..Summary::default()
        };
        let at = 30 * DAY;
        let plain = model.uncalibrated_p_no_activity(&summary, at, horizon_seconds);
        let risk = sigmoid(model.log_odds(&summary, at, horizon_seconds, 0.0));
        assert!(
            risk < plain && risk >= (1.0 - trust) * plain,
            "{risk} vs {plain}"
        );
        // The learnt signal weights are blended the same way.
        let weights = model.signal_weights(&[1.0; RISK_SIGNALS], horizon_seconds);
        assert!((weights[0] - (1.0 + trust * 4.0)).abs() < 1e-9);
        assert_eq!(
            model.basis(horizon_seconds),
            RiskBasis::Backtested {
                customers: 1_000,
                backtest_days: 15.0,
                trust
            }
        );
        // Mature: a 45-day backtest for a 90-day horizon, the typical customer active every 43 days.
        model.calibration.horizon_days = 45.0;
        model.calibration.pace = pace_share(45.0, model.params.typical_gap_days());
        assert_eq!(model.trust(horizon_seconds), 1.0);
        assert_eq!(
            RetentionModel::prior().basis(horizon_seconds),
            RiskBasis::Prior
        );
    }

    /// Outcomes drawn from a known logistic model are recovered (within sampling error), and the
    /// identity prior is kept when the data say nothing new.
    #[test]
    fn logistic_fit_recovers_known_weights() {
        let truth = [-0.5, 1.5, -0.8, 0.6, 0.0];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut unit = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let rows: Vec<([f64; CALIBRATION_FEATURES], bool)> = (0..20_000)
            .map(|_| {
                let features = [1.0, unit() * 4.0 - 2.0, unit() * 3.0, unit() * 5.0, 0.0];
                let z: f64 = truth.iter().zip(&features).map(|(w, x)| w * x).sum();
                let outcome = unit() < 1.0 / (1.0 + (-z).exp());
                (features, outcome)
            })
            .collect();
        // The all-zero feature makes the system singular without the ridge; with it it stays at
        // the prior.
        let fitted = fit_logistic(&rows, &Calibration::IDENTITY.weights, RIDGE).unwrap();
        for i in 0..4 {
            assert!((fitted[i] - truth[i]).abs() < 0.1, "{fitted:?}");
        }
        assert_eq!(fitted[4], 0.0);
    }
}
