//! A summary evaluated as of a moment: engagement, sentiment, retention risk, priority, action and
//! the factors behind them. The human-readable wording of factors lives in `factor.rs`.

use crate::config::ScoringConfig;
use crate::domain::{Action, ReplyNeed, TimestampMs, UrgencyCue, UrgencyCues};
use crate::scoring::sla::ThreadSla;
use crate::scoring::{decayed, logit, sigmoid, OpenThread, Summary, TenantModel, RISK_SIGNALS};

pub use crate::scoring::factor::{Factor, FactorKind};

/// A customer's scores as of one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// The moment evaluated (the request's, or the customer's latest event when later).
    pub as_of_ms: TimestampMs,
    /// 0..100.
    pub engagement: f64,
    /// Long-run sentiment, -1..1.
    pub sentiment: f64,
    /// Recent sentiment, -1..1.
    pub sentiment_recent: f64,
    /// `sentiment_recent - sentiment`.
    pub sentiment_trend: f64,
    /// Probability of no inbound activity within the retention horizon, 0..1.
    pub retention_risk: f64,
    /// Outreach order in [0, 1), banded by action (see [`band`]).
    pub priority: f64,
    /// What to do about the customer now.
    pub action: Action,
    /// Retention-risk factors (log-odds) then the chosen action's factors (urgency units).
    pub factors: Vec<Factor>,
    /// The customer's latest event, either direction.
    pub last_interaction_at_ms: TimestampMs,
    /// Oldest unanswered message that asks for an answer.
    pub unanswered_since_ms: Option<TimestampMs>,
    /// Events folded.
    pub interactions_total: u64,
    /// Sum of purchase values.
    pub lifetime_value: f64,
    /// The most urgent open thread's reply due time; `None` when nothing is waiting.
    pub reply_due_at_ms: Option<TimestampMs>,
    /// Open threads (messages waiting for an answer).
    pub open_threads: u32,
    /// Open threads past their channel's missed horizon.
    pub missed_threads: u32,
    /// The channels with an unanswered thread, one bit per channel (`1 << channel as u8`).
    pub waiting_channels: u16,
    /// The intents of the unanswered threads (ids in the tenant's table of intent names),
    /// ascending; empty when none has one.
    pub waiting_intents: Vec<u16>,
    /// The languages of the unanswered threads ([`crate::domain::language_id`]s), ascending;
    /// empty when none has one.
    pub waiting_languages: Vec<u8>,
    /// The fit of the activity model the retention risk came from (`None`: the prior).
    pub model_fit: Option<crate::scoring::ModelFit>,
}

impl Score {
    /// Whether the customer waits for an answer on `channel`.
    pub fn waits_on(&self, channel: crate::domain::Channel) -> bool {
        self.waiting_channels & (1 << channel as u8) != 0
    }

    /// Whether the customer waits for an answer about intent `intent` (an id in the tenant's
    /// table of intent names).
    pub fn waits_about(&self, intent: u16) -> bool {
        self.waiting_intents.binary_search(&intent).is_ok()
    }

    /// Whether the customer waits for an answer to a message in `language` (a
    /// [`crate::domain::language_id`]).
    pub fn waits_in(&self, language: u8) -> bool {
        self.waiting_languages.binary_search(&language).is_ok()
    }
}

/// Lifetime values above this rank as this (1e12): every value up to it keeps mattering, and the
/// urgencies stay where the bands' logistics have slope.
pub const MAX_RANKED_VALUE: f64 = 1e12;

/// The priority band of each action: `(low, high)`; priority = low + (high − low)·σ(urgency).
pub fn band(action: Action) -> (f64, f64) {
    match action {
        Action::Respond => (0.5, 1.0),
        Action::Rescue => (0.3, 0.5),
        Action::Advocate => (0.2, 0.3),
        Action::Nurture => (0.1, 0.2),
        Action::None => (0.0, 0.1),
    }
}

/// Where a band's logistic is centred and how wide it is, in urgency units: chosen so that the
/// urgencies the inputs can produce stay on the logistic's slope (no saturation in f64; see
/// docs/scoring.md).
fn band_shape(action: Action) -> (f64, f64) {
    match action {
        Action::Respond => (6.0, 3.0),
        Action::Rescue => (2.0, 2.0),
        Action::Advocate => (3.0, 1.5),
        Action::Nurture => (0.0, 1.0),
        Action::None => (0.0, 1.0),
    }
}

/// Priority of an action at an urgency: strictly increasing in the urgency, inside the band.
pub fn priority_in_band(action: Action, urgency: f64) -> f64 {
    let (low, high) = band(action);
    let (center, scale) = band_shape(action);
    low + (high - low) * sigmoid((urgency - center) / scale)
}

/// Decades of a count or amount: log10(1 + x), 0 for nothing.
fn decades(x: f64) -> f64 {
    x.max(0.0).ln_1p() / std::f64::consts::LN_10
}

fn elapsed_seconds(from_ms: TimestampMs, to_ms: TimestampMs) -> f64 {
    (to_ms.saturating_sub(from_ms)).max(0) as f64 / 1000.0
}

/// Evaluates a summary as of `as_of_ms` with the tenant's model. Pure: the same summary, config,
/// model and time give the same score. `as_of_ms` before the summary's last event is treated as
/// that event's time.
pub fn evaluate(
    summary: &Summary,
    as_of_ms: TimestampMs,
    config: &ScoringConfig,
    model: &TenantModel,
) -> Score {
    evaluate_with(summary, as_of_ms, config, model, true)
}

/// [`evaluate`] without the reasons (`factors` left empty): what ranking needs, without allocating.
/// Every number is the same as [`evaluate`]'s.
pub fn evaluate_for_ranking(
    summary: &Summary,
    as_of_ms: TimestampMs,
    config: &ScoringConfig,
    model: &TenantModel,
) -> Score {
    evaluate_with(summary, as_of_ms, config, model, false)
}

/// Engagement and sentiment as of a moment.
struct Levels {
    engagement: f64,
    /// Decayed weighted activity, engagement half-life.
    engagement_recent: f64,
    /// The same with the baseline half-life.
    engagement_baseline: f64,
    sentiment: f64,
    sentiment_recent: f64,
    sentiment_trend: f64,
    positive_contact: f64,
}

fn levels(summary: &Summary, at: TimestampMs, config: &ScoringConfig) -> Levels {
    let from = summary.last_event_at_ms;
    // Sums are referenced at the last event; those sharing a half-life share its decay factor.
    let [engagement_recent] = decayed(
        [summary.engagement_recent],
        from,
        at,
        config.engagement_half_life_seconds,
    );
    let [engagement_baseline] = decayed(
        [summary.engagement_baseline],
        from,
        at,
        config.engagement_baseline_half_life_seconds,
    );
    let engagement = 100.0 * (1.0 - (-engagement_recent / config.engagement_scale).exp());
    // Sentiment: decayed confidence-weighted means with a prior, so they fade as messages age.
    let prior = config.sentiment_prior_weight;
    let [long_sum, long_weight] = decayed(
        [summary.sentiment_long_sum, summary.sentiment_long_weight],
        from,
        at,
        config.sentiment_long_half_life_seconds,
    );
    let sentiment = long_sum / (long_weight + prior);
    let [recent_sum, recent_weight] = decayed(
        [
            summary.sentiment_recent_sum,
            summary.sentiment_recent_weight,
        ],
        from,
        at,
        config.sentiment_recent_half_life_seconds,
    );
    let sentiment_recent = (recent_sum + prior * sentiment) / (recent_weight + prior);
    let [positive_contact] = decayed(
        [summary.positive_contact],
        from,
        at,
        config.goodwill_half_life_seconds,
    );
    Levels {
        engagement,
        engagement_recent,
        engagement_baseline,
        sentiment,
        sentiment_recent,
        sentiment_trend: sentiment_recent - sentiment,
        positive_contact,
    }
}

/// Retention risk: the activity model's probability of no activity within the horizon, on the
/// log-odds scale, plus the logistic layer's factors.
/// The configured weights of the risk signals (`[scoring.risk]`), in [`RISK_SIGNALS`] order: the
/// prior a tenant's own past refits.
pub fn configured_signal_weights(config: &ScoringConfig) -> [f64; RISK_SIGNALS] {
    let weights = &config.risk;
    [
        weights.engagement_drop,
        weights.negative_sentiment,
        weights.worsening_sentiment,
        weights.open_complaints,
        weights.positive_contact,
    ]
}

/// A customer's risk signals with the figures their reasons quote.
struct RiskSignals {
    /// In [`RISK_SIGNALS`] order: engagement drop (1 − recent rate / long-run rate, in [0, 1];
    /// 0 without a long-run rate), negative long-run sentiment, worsening sentiment, open
    /// complaints (1 − 0.5^n), and minus the recent positive contact (1 − e^−contact).
    values: [f64; RISK_SIGNALS],
    /// Recent engagement rate over the long-run rate (`None` without a long-run rate).
    rate_ratio: Option<f64>,
    /// Unanswered negative threads.
    complaints: u32,
}

fn risk_signals_with(summary: &Summary, levels: &Levels, config: &ScoringConfig) -> RiskSignals {
    let baseline_rate = levels.engagement_baseline / config.engagement_baseline_half_life_seconds;
    let rate_ratio = (baseline_rate > 0.0)
        .then(|| (levels.engagement_recent / config.engagement_half_life_seconds) / baseline_rate);
    let complaints = summary
        .open_threads
        .iter()
        .filter(|open| open.waits() && open.worst_sentiment <= -0.05)
        .count() as u32;
    RiskSignals {
        values: [
            rate_ratio.map_or(0.0, |ratio| (1.0 - ratio).clamp(0.0, 1.0)),
            (-levels.sentiment).max(0.0),
            (-levels.sentiment_trend).max(0.0),
            1.0 - 0.5f64.powi(complaints.min(64) as i32),
            -(1.0 - (-levels.positive_contact).exp()),
        ],
        rate_ratio,
        complaints,
    }
}

/// A customer's risk signals as of `at_ms` (what the backtest learns their weights from).
pub fn risk_signals(
    summary: &Summary,
    at_ms: TimestampMs,
    config: &ScoringConfig,
) -> [f64; RISK_SIGNALS] {
    let at = at_ms.max(summary.last_event_at_ms);
    risk_signals_with(summary, &levels(summary, at, config), config).values
}

/// Risk signals contributing less than this (log-odds) get no reason of their own.
const REASON_MIN_LOG_ODDS: f64 = 1e-6;

fn retention_risk(
    summary: &Summary,
    at: TimestampMs,
    levels: &Levels,
    config: &ScoringConfig,
    model: &TenantModel,
    factors: &mut Option<&mut Vec<Factor>>,
) -> f64 {
    let signals = risk_signals_with(summary, levels, config);
    let configured = configured_signal_weights(config);
    let signal_weights = model
        .retention
        .signal_weights(&configured, config.retention_horizon_seconds);
    let contributions: [f64; RISK_SIGNALS] =
        std::array::from_fn(|i| signal_weights[i] * signals.values[i]);
    let signal_log_odds: f64 = contributions.iter().sum();
    let model_log_odds = model.retention.log_odds(
        summary,
        at,
        config.retention_horizon_seconds,
        signal_log_odds,
    );
    // What the activity model says is the rest: the factors sum to the risk's log-odds. A signal
    // too small to be worth a reason (under 1e-6) is counted in the activity term instead, so the
    // reasons still add up exactly.
    let reported = |contribution: &f64| contribution.abs() > REASON_MIN_LOG_ODDS;
    let reported_log_odds: f64 = contributions.iter().filter(|c| reported(c)).sum();
    let activity_log_odds = model_log_odds - reported_log_odds;
    let p_no_activity = sigmoid(activity_log_odds);
    if let Some(factors) = factors.as_deref_mut() {
        factors.push(Factor {
            kind: FactorKind::Activity {
                p_no_activity,
                active_days: summary.active_days,
                silent_seconds: if summary.activity_total > 0 {
                    elapsed_seconds(summary.last_activity_at_ms, at)
                } else {
                    0.0
                },
                horizon_seconds: config.retention_horizon_seconds,
                basis: model.retention.basis(config.retention_horizon_seconds),
            },
            contribution: activity_log_odds,
        });
        let kinds = [
            FactorKind::EngagementDrop {
                rate_ratio: signals.rate_ratio.unwrap_or(1.0),
            },
            FactorKind::NegativeSentiment {
                sentiment: levels.sentiment,
            },
            FactorKind::WorseningSentiment {
                trend: levels.sentiment_trend,
            },
            FactorKind::OpenComplaints {
                count: signals.complaints,
            },
            FactorKind::PositiveContact,
        ];
        for (kind, contribution) in kinds.into_iter().zip(contributions) {
            if reported(&contribution) {
                factors.push(Factor { kind, contribution });
            }
        }
    }
    sigmoid(config.risk.bias + model_log_odds)
}

/// Urgency of answering one open thread, by component (urgency units).
#[derive(Clone, Copy, Debug)]
struct ThreadUrgency {
    sla: ThreadSla,
    wait: f64,
    needs_reply: f64,
    negativity: f64,
    reach: f64,
    public_channel: f64,
    messages: f64,
    /// The thread's urgency cues, with the one the customer's other open channels add.
    cues: UrgencyCues,
    /// Their urgency, in [`UrgencyCue::ALL`] order.
    cue_urgency: [f64; UrgencyCue::ALL.len()],
}

impl ThreadUrgency {
    fn total(&self) -> f64 {
        self.wait
            + self.needs_reply
            + self.negativity
            + self.reach
            + self.public_channel
            + self.messages
            + self.cue_urgency.iter().sum::<f64>()
    }
}

/// Distinct channels among the customer's open threads.
fn open_channels(summary: &Summary) -> u32 {
    summary
        .open_threads
        .iter()
        .filter(|open| open.waits())
        .fold(0u16, |channels, open| channels | (1 << open.channel as u8))
        .count_ones()
}

/// The channels with a thread that waits for an answer, or a copy of its message (an answer
/// there answers it), one bit per channel.
fn waiting_channels(summary: &Summary) -> u16 {
    summary
        .open_threads
        .iter()
        .filter(|open| open.waits())
        .fold(0u16, |channels, open| {
            channels | (1 << open.channel as u8) | open.copy_channels
        })
}

/// `open_channels`: distinct channels with an open thread of the customer; more than one adds
/// [`UrgencyCue::RepeatContact`] (the customer is asking again elsewhere).
fn thread_urgency(
    open: &OpenThread,
    open_channels: u32,
    at: TimestampMs,
    config: &ScoringConfig,
    model: &TenantModel,
) -> ThreadUrgency {
    let weights = &config.respond;
    let cues = if open_channels > 1 {
        open.cues.with(UrgencyCue::RepeatContact)
    } else {
        open.cues
    };
    let sla = model.sla.thread_state(open, at);
    let wait = if sla.missed {
        let plateau = model.sla.business_seconds_at_miss(open, &sla) / sla.target_seconds;
        weights.wait * plateau.ln_1p()
            - weights.staleness * (sla.waited_seconds / sla.missed_after_seconds).ln()
    } else {
        weights.wait * sla.progress().ln_1p()
    };
    ThreadUrgency {
        sla,
        wait,
        needs_reply: if open.need == ReplyNeed::Required {
            weights.needs_reply
        } else {
            0.0
        },
        negativity: weights.negativity * f64::from(-open.worst_sentiment).max(0.0),
        reach: weights.reach * decades(f64::from(open.author_followers)),
        public_channel: if open.channel.is_public() {
            weights.public_channel
        } else {
            0.0
        },
        messages: weights.messages * f64::from(open.messages.max(1)).ln(),
        cues,
        cue_urgency: UrgencyCue::ALL.map(|cue| {
            if cues.contains(cue) {
                weights.cue(cue)
            } else {
                0.0
            }
        }),
    }
}

/// The most urgent open thread with its urgency (ties: the one due first), and how many open
/// threads are past their channel's horizon ("missed").
fn most_urgent_thread<'a>(
    summary: &'a Summary,
    at: TimestampMs,
    config: &ScoringConfig,
    model: &TenantModel,
) -> (Option<(ThreadUrgency, &'a OpenThread)>, u32) {
    let mut missed_threads = 0u32;
    let mut most_urgent: Option<(ThreadUrgency, &OpenThread)> = None;
    let channels = open_channels(summary);
    for open in summary.open_threads.iter().filter(|open| open.waits()) {
        let urgency = thread_urgency(open, channels, at, config, model);
        missed_threads += u32::from(urgency.sla.missed);
        let better = most_urgent.as_ref().is_none_or(|(best, _)| {
            urgency
                .total()
                .total_cmp(&best.total())
                .then_with(|| best.sla.due_at_ms.cmp(&urgency.sla.due_at_ms))
                .is_gt()
        });
        if better {
            most_urgent = Some((urgency, open));
        }
    }
    (most_urgent, missed_threads)
}

/// One thread waiting for an answer, as routing sees it (see [`waiting_threads`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WaitingThread {
    /// The thread's key (0: the customer's thread-less messages).
    pub thread_key: u64,
    /// Channel of its oldest unanswered message.
    pub channel: crate::domain::Channel,
    /// Its language ([`crate::domain::language_id`]; 0: none read).
    pub language: u8,
    /// Its intent (an id in the tenant's table of intent names; 0: none).
    pub intent: u16,
    /// Its oldest unanswered message, in milliseconds since the Unix epoch.
    pub since_ms: TimestampMs,
    /// When its answer is due (business hours counted).
    pub due_at_ms: TimestampMs,
    /// Its own urgency (urgency units): the order routing offers a customer's threads in.
    pub urgency: f64,
}

/// The customer's threads waiting for an answer at `at` (floods left out), most urgent first
/// (ties: due first, then thread key).
pub fn waiting_threads(
    summary: &Summary,
    at: TimestampMs,
    config: &ScoringConfig,
    model: &TenantModel,
) -> Vec<WaitingThread> {
    let channels = open_channels(summary);
    let mut threads: Vec<WaitingThread> = summary
        .open_threads
        .iter()
        .filter(|open| open.waits())
        .map(|open| {
            let urgency = thread_urgency(open, channels, at, config, model);
            WaitingThread {
                thread_key: open.thread_key,
                channel: open.channel,
                language: open.language,
                intent: open.intent,
                since_ms: open.since_ms,
                due_at_ms: urgency.sla.due_at_ms,
                urgency: urgency.total(),
            }
        })
        .collect();
    threads.sort_by(|a, b| {
        b.urgency
            .total_cmp(&a.urgency)
            .then_with(|| a.due_at_ms.cmp(&b.due_at_ms))
            .then_with(|| a.thread_key.cmp(&b.thread_key))
    });
    threads
}

/// RESPOND's urgency: the most urgent thread's own urgency plus the customer's value and retention
/// risk. Its factors go to `factors` when reasons are kept.
fn respond_urgency(
    summary: &Summary,
    at: TimestampMs,
    (thread, open): (&ThreadUrgency, &OpenThread),
    retention_risk: f64,
    config: &ScoringConfig,
    factors: Option<&mut Vec<Factor>>,
) -> f64 {
    let weights = &config.respond;
    let customer_value =
        weights.customer_value * decades(summary.lifetime_value.min(MAX_RANKED_VALUE));
    let at_risk = weights.retention_risk * retention_risk;
    let urgency = thread.total() + customer_value + at_risk;
    if let Some(factors) = factors {
        factors.push(Factor {
            kind: FactorKind::Unanswered {
                kind: open.kind,
                channel: open.channel,
                waiting_seconds: thread.sla.waited_seconds,
                worst_sentiment: open.worst_sentiment,
                author_followers: open.author_followers,
                messages: open.messages,
                due_in_seconds: (thread.sla.due_at_ms.saturating_sub(at)) as f64 / 1000.0,
                missed: thread.sla.missed,
                intent: open.intent,
            },
            contribution: urgency,
        });
        let parts = [
            (
                FactorKind::ReplyWait {
                    waiting_business_seconds: thread.sla.waited_business_seconds,
                    target_seconds: thread.sla.target_seconds,
                    follow_up: open.follow_up,
                },
                thread.wait,
            ),
            (FactorKind::NeedsReply, thread.needs_reply),
            (
                FactorKind::Negativity {
                    worst_sentiment: open.worst_sentiment,
                },
                thread.negativity,
            ),
            (
                FactorKind::Reach {
                    author_followers: open.author_followers,
                },
                thread.reach,
            ),
            (
                FactorKind::PublicChannel {
                    channel: open.channel,
                },
                thread.public_channel,
            ),
            (
                FactorKind::ThreadMessages {
                    messages: open.messages,
                },
                thread.messages,
            ),
            (
                FactorKind::CustomerValue {
                    lifetime_value: summary.lifetime_value,
                },
                customer_value,
            ),
            (FactorKind::AtRiskCustomer { retention_risk }, at_risk),
        ];
        let channels = open_channels(summary);
        let cues = UrgencyCue::ALL
            .into_iter()
            .zip(thread.cue_urgency)
            .filter(|(cue, _)| thread.cues.contains(*cue))
            .map(|(cue, part)| (FactorKind::UrgencyCue { cue, channels }, part));
        for (kind, part) in parts.into_iter().chain(cues) {
            if part.abs() > 1e-6 {
                factors.push(Factor {
                    kind,
                    contribution: part,
                });
            }
        }
        if open.copies > 0 {
            factors.push(Factor {
                kind: FactorKind::CopiesJoined {
                    copies: open.copies,
                    channels: open.copy_channels,
                },
                contribution: 0.0,
            });
        }
    }
    urgency
}

/// The action of a customer with no open thread, and its urgency: RESCUE, ADVOCATE, NURTURE or
/// NONE, the first whose thresholds the customer meets. Its factors go to `factors` when reasons
/// are kept.
fn quiet_action(
    summary: &Summary,
    at: TimestampMs,
    levels: &Levels,
    retention_risk: f64,
    config: &ScoringConfig,
    factors: Option<&mut Vec<Factor>>,
) -> (Action, f64) {
    let thresholds = &config.actions;
    let weights = &config.respond;
    if retention_risk >= thresholds.rescue_min_risk {
        // Value at risk: the chance of losing the customer times what they are worth.
        let risk_part = retention_risk.ln();
        let value_part = summary.lifetime_value.clamp(0.0, MAX_RANKED_VALUE).ln_1p();
        if let Some(factors) = factors {
            factors.push(Factor {
                kind: FactorKind::HighRisk { retention_risk },
                contribution: risk_part,
            });
            if value_part > 1e-6 {
                factors.push(Factor {
                    kind: FactorKind::ValueAtRisk {
                        lifetime_value: summary.lifetime_value,
                    },
                    contribution: value_part,
                });
            }
        }
        (Action::Rescue, risk_part + value_part)
    } else if !flooded_lately(summary, at, config)
        && levels.sentiment >= thresholds.advocate_min_sentiment
        && levels.engagement >= thresholds.advocate_min_engagement
        && u64::from(summary.author_followers) >= thresholds.advocate_min_followers
    {
        let urgency = decades(f64::from(summary.author_followers)) * 0.5
            + 2.0 * levels.sentiment
            + levels.engagement / 50.0;
        if let Some(factors) = factors {
            factors.push(Factor {
                kind: FactorKind::Advocacy {
                    sentiment: levels.sentiment,
                    engagement: levels.engagement,
                    author_followers: summary.author_followers,
                },
                contribution: urgency,
            });
        }
        (Action::Advocate, urgency)
    } else if levels.engagement >= thresholds.nurture_min_engagement && summary.purchases_total == 0
    {
        let engaged = (levels.engagement - 50.0) / 15.0;
        let at_risk = weights.retention_risk * retention_risk;
        if let Some(factors) = factors {
            factors.push(Factor {
                kind: FactorKind::EngagedWithoutPurchase {
                    engagement: levels.engagement,
                },
                contribution: engaged,
            });
            factors.push(Factor {
                kind: FactorKind::AtRiskCustomer { retention_risk },
                contribution: at_risk,
            });
        }
        (Action::Nurture, engaged + at_risk)
    } else {
        (Action::None, logit(retention_risk.clamp(1e-9, 1.0 - 1e-9)))
    }
}

/// Whether the customer's latest flood copy is less than an engagement half-life old: such an
/// account is no advocate (its engagement is its own flood's).
fn flooded_lately(summary: &Summary, at: TimestampMs, config: &ScoringConfig) -> bool {
    summary.last_flood_ms != 0
        && elapsed_seconds(summary.last_flood_ms, at) < config.engagement_half_life_seconds
}

/// The reason of a customer whose only unanswered messages are floods: the flood with the most
/// copies, as the customer's recent texts saw its latest burst, or (a text since pushed out of
/// them by newer ones) as its thread gathered it (`None`: no flood waits).
fn largest_flood(summary: &Summary) -> Option<FactorKind> {
    summary
        .open_threads
        .iter()
        .filter(|open| open.flood)
        .map(|open| {
            match summary
                .recent_texts
                .iter()
                .find(|seen| seen.text_key == open.text_key)
            {
                Some(burst) => (burst.copies, burst.first_ms, burst.last_ms, burst.channels),
                None => (
                    open.messages.saturating_add(open.copies),
                    open.since_ms,
                    open.last_copy_ms,
                    (1 << open.channel as u8) | open.copy_channels,
                ),
            }
        })
        .max_by_key(|(copies, _, last_ms, _)| (*copies, *last_ms))
        .map(|(copies, first_ms, last_ms, channels)| FactorKind::Flood {
            copies,
            span_seconds: elapsed_seconds(first_ms, last_ms),
            channels,
        })
}

fn evaluate_with(
    summary: &Summary,
    as_of_ms: TimestampMs,
    config: &ScoringConfig,
    model: &TenantModel,
    keep_reasons: bool,
) -> Score {
    let at = as_of_ms.max(summary.last_event_at_ms);
    let mut factors = Vec::new();
    let levels = levels(summary, at, config);
    let retention_risk = {
        let mut sink = keep_reasons.then_some(&mut factors);
        retention_risk(summary, at, &levels, config, model, &mut sink)
    };

    let (most_urgent, missed_threads) = most_urgent_thread(summary, at, config, model);
    let sink = keep_reasons.then_some(&mut factors);
    let (found, urgency) = match most_urgent {
        Some((thread, open)) => (
            Action::Respond,
            respond_urgency(summary, at, (&thread, open), retention_risk, config, sink),
        ),
        None => {
            let quiet = quiet_action(summary, at, &levels, retention_risk, config, sink);
            if keep_reasons {
                if let Some(flood) = largest_flood(summary) {
                    factors.push(Factor {
                        kind: flood,
                        contribution: 0.0,
                    });
                }
            }
            quiet
        }
    };
    // A rule's treatment: its action replaces any but `none`; its weight multiplies the odds of
    // the priority inside the band (σ((u − c)/s + ln w)).
    let treatment = &model.treatment;
    let action = match treatment.action {
        Some(action) if found != Action::None => action,
        _ => found,
    };
    let weight_urgency = band_shape(action).1 * treatment.urgency_weight.ln();
    let urgency = urgency + weight_urgency;
    if keep_reasons && (action != found || treatment.urgency_weight != 1.0) {
        factors.push(Factor {
            kind: FactorKind::SegmentRule {
                urgency_weight: treatment.urgency_weight,
                action_set: action != found,
            },
            contribution: weight_urgency,
        });
    }

    Score {
        as_of_ms: at,
        engagement: levels.engagement,
        sentiment: levels.sentiment,
        sentiment_recent: levels.sentiment_recent,
        sentiment_trend: levels.sentiment_trend,
        retention_risk,
        priority: priority_in_band(action, urgency),
        action,
        factors,
        last_interaction_at_ms: summary.last_event_at_ms,
        unanswered_since_ms: summary
            .open_threads
            .iter()
            .filter(|open| open.waits())
            .map(|open| open.since_ms)
            .min(),
        interactions_total: summary.events_total,
        lifetime_value: summary.lifetime_value,
        reply_due_at_ms: most_urgent.map(|(thread, _)| thread.sla.due_at_ms),
        open_threads: summary
            .open_threads
            .iter()
            .filter(|open| open.waits())
            .count() as u32,
        missed_threads,
        waiting_channels: waiting_channels(summary),
        waiting_intents: {
            let mut intents: Vec<u16> = summary
                .open_threads
                .iter()
                .filter(|open| open.waits())
                .map(|open| open.intent)
                .filter(|intent| *intent != 0)
                .collect();
            intents.sort_unstable();
            intents.dedup();
            intents
        },
        waiting_languages: {
            let mut languages: Vec<u8> = summary
                .open_threads
                .iter()
                .filter(|open| open.waits() && open.language != 0)
                .map(|open| open.language)
                .collect();
            languages.sort_unstable();
            languages.dedup();
            languages
        },
        model_fit: model.retention.fit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, Direction, Kind};
    use crate::scoring::TenantModel;
    use crate::scoring::{CustomerHistory, EventRecord, FactorGroup, InsertOutcome, RefineOutcome};
    use proptest::prelude::*;

    const DAY_MS: i64 = 86_400_000;

    fn record(at_ms: i64, event_key: u64) -> EventRecord {
        EventRecord {
            occurred_at_ms: at_ms,
            event_key,
            thread_key: 0,
            value: 0.0,
            author_followers: 0,
            sentiment_score: 0.0,
            sentiment_confidence: 0.0,
            channel: Channel::Web,
            kind: Kind::PageView,
            direction: Direction::Inbound,
            has_sentiment: false,
            reply_need: ReplyNeed::Unclear,
            urgency_cues: Default::default(),
            intent: 0,
            text_key: 0,
            language: 0,
            note: Default::default(),
        }
    }

    #[test]
    fn repeats_are_duplicates_and_changed_payloads_conflicts() {
        let config = ScoringConfig::default();
        let mut history = CustomerHistory::default();
        let first = record(1_000, 7);
        assert_eq!(history.insert(first, &config), InsertOutcome::Inserted);
        assert_eq!(history.insert(first, &config), InsertOutcome::Duplicate);
        let resentimented = EventRecord {
            sentiment_score: -0.9,
            ..first
        };
        assert_eq!(
            history.insert(resentimented, &config),
            InsertOutcome::Duplicate,
            "a different grade of the same text is the same event"
        );
        let cases = [
            (
                "occurred_at",
                EventRecord {
                    occurred_at_ms: 2_000,
                    ..first
                },
            ),
            (
                "value",
                EventRecord {
                    value: 5.0,
                    ..first
                },
            ),
            (
                "channel",
                EventRecord {
                    channel: Channel::Email,
                    ..first
                },
            ),
            (
                "thread_id",
                EventRecord {
                    thread_key: 3,
                    ..first
                },
            ),
        ];
        for (field, changed) in cases {
            assert_eq!(
                history.insert(changed, &config),
                InsertOutcome::Conflict { field }
            );
        }
        assert_eq!(history.summary().events_total, 1);
    }

    /// The worked example in docs/scoring.md: weekly for 12 weeks, then 31 days of silence, under
    /// the prior activity model (MBG/NBD r = 1, α = 30 d, a = 1, b = 3) and a 90-day horizon.
    #[test]
    fn documented_silence_example() {
        let config = ScoringConfig::default();
        let model = TenantModel::new(&config, None);
        let mut history = CustomerHistory::default();
        for week in 0..12 {
            history.insert(record(week * 7 * DAY_MS, week as u64 + 1), &config);
        }
        let last = 11 * 7 * DAY_MS;
        let score = evaluate(history.summary(), last + 31 * DAY_MS, &config, &model);
        // x = 11 repeat days, t_x = 77 d, T = 108 d, h = 90 d, written out.
        let (r, alpha, a, b): (f64, f64, f64, f64) = (1.0, 30.0, 1.0, 3.0);
        let (x, t_x, t, h): (f64, f64, f64, f64) = (11.0, 77.0, 108.0, 90.0);
        let p_alive = 1.0 / (1.0 + a / (b + x) * ((alpha + t) / (alpha + t_x)).powf(r + x));
        let expected = 1.0 - p_alive + p_alive * ((alpha + t) / (alpha + t + h)).powf(r + x);
        assert!(
            (score.retention_risk - expected).abs() < 1e-9,
            "{} vs {expected}",
            score.retention_risk
        );
        assert!(
            (score.retention_risk - 0.603).abs() < 0.001,
            "{}",
            score.retention_risk
        );
        assert_eq!(score.action, Action::Rescue);
        let activity = score.factors.iter().find(|f| f.name() == "activity");
        assert!(activity.is_some_and(|f| (f.contribution - logit(expected)).abs() < 1e-9));
    }

    /// Priority bands: each action's priorities stay inside its band, strictly increasing in the
    /// urgency across the whole range inputs can produce (no saturation in f64).
    /// A rule's weight multiplies the odds of the priority inside its band; its action replaces
    /// any found action but `none`.
    #[test]
    fn a_treatment_weighs_the_odds_in_band_and_overrides_the_action() {
        let config = ScoringConfig::default();
        let base = TenantModel::new(&config, None);
        let mut summary = Summary {
            events_total: 1,
            activity_total: 1,
            last_event_at_ms: 1_000,
            ..Default::default()
        };
        summary.open_threads.push(crate::scoring::OpenThread {
            thread_key: 1,
            since_ms: 1_000,
            worst_sentiment: -0.6,
            author_followers: 10,
            channel: Channel::Email,
            kind: Kind::Message,
            messages: 1,
            need: crate::domain::ReplyNeed::Required,
            follow_up: false,
            cues: UrgencyCues::NONE,
            intent: 0,
            text_key: 0,
            copies: 0,
            copy_channels: 0,
            last_copy_ms: 1_000,
            copy_thread_keys: [0; 2],
            flood: false,
            language: 0,
        });
        let at = 1_000 + 1_800_000;
        let plain = evaluate(&summary, at, &config, &base);
        assert_eq!(plain.action, Action::Respond);
        let weighted = TenantModel {
            treatment: crate::scoring::Treatment {
                urgency_weight: 4.0,
                action: None,
            },
            ..base.clone()
        };
        let score = evaluate(&summary, at, &config, &weighted);
        let (low, high) = band(Action::Respond);
        let odds = |p: f64| (p - low) / (high - p);
        assert!((odds(score.priority) / odds(plain.priority) - 4.0).abs() < 1e-9);
        assert!(score.factors.iter().any(|f| matches!(
            f.kind,
            FactorKind::SegmentRule {
                action_set: false,
                ..
            }
        )));
        let rescue = TenantModel {
            treatment: crate::scoring::Treatment {
                urgency_weight: 1.0,
                action: Some(Action::Rescue),
            },
            ..base.clone()
        };
        assert_eq!(
            evaluate(&summary, at, &config, &rescue).action,
            Action::Rescue
        );
        let quiet = Summary {
            open_threads: Vec::new(),
            ..summary.clone()
        };
        assert_eq!(evaluate(&quiet, at, &config, &base).action, Action::None);
        assert_eq!(
            evaluate(&quiet, at, &config, &rescue).action,
            Action::None,
            "nothing to do stays nothing to do"
        );
    }

    #[test]
    fn priority_is_strictly_increasing_within_every_band() {
        // The urgencies each action's inputs can produce (docs/scoring.md), with a margin.
        let ranges = [
            (Action::Respond, -10.0, 45.0),
            (Action::Rescue, -22.0, 30.0),
            (Action::Advocate, -3.0, 12.0),
            (Action::Nurture, -4.0, 6.0),
            (Action::None, -21.0, 21.0),
        ];
        for (action, from, to) in ranges {
            let (low, high) = band(action);
            let mut previous = priority_in_band(action, from);
            assert!(previous >= low);
            let mut urgency = from;
            while urgency < to {
                urgency += 0.01;
                let priority = priority_in_band(action, urgency);
                assert!(
                    priority > previous,
                    "{action:?} at {urgency}: {priority} <= {previous}"
                );
                assert!(priority < high);
                previous = priority;
            }
        }
    }

    /// An inbound event with text sentiment, for the worked examples.
    fn said(
        at_ms: i64,
        key: u64,
        kind: Kind,
        channel: Channel,
        sentiment: f32,
        followers: u32,
        need: ReplyNeed,
    ) -> EventRecord {
        EventRecord {
            kind,
            channel,
            author_followers: followers,
            sentiment_score: sentiment,
            sentiment_confidence: 0.9,
            has_sentiment: true,
            reply_need: need,
            ..record(at_ms, key)
        }
    }

    fn contribution(score: &Score, name: &str) -> f64 {
        score
            .factors
            .iter()
            .find(|f| f.name() == name)
            .map_or(0.0, |f| f.contribution)
    }

    /// The flood: an account with 5k followers posting the same promotional text 30 times
    /// in an hour sits outside RESPOND with a `flood` reason; the same copies as a complaint are
    /// one matter that waits for an answer.
    #[test]
    fn a_flood_is_kept_out_of_respond_and_a_repeated_complaint_is_one_matter() {
        let config = ScoringConfig::default();
        let model = TenantModel::new(&config, None);
        let t = 400 * DAY_MS;
        let copies = |sentiment: f32| -> Vec<EventRecord> {
            (0..30u64)
                .map(|i| EventRecord {
                    thread_key: 100 + i,
                    text_key: 42,
                    ..said(
                        t - 3_600_000 + i as i64 * 120_000,
                        i + 1,
                        Kind::Mention,
                        Channel::Twitter,
                        sentiment,
                        5_000,
                        ReplyNeed::Unclear,
                    )
                })
                .collect()
        };
        let score_of = |records: &[EventRecord]| {
            let mut history = CustomerHistory::default();
            for record in records {
                history.insert(*record, &config);
            }
            evaluate(history.summary(), t, &config, &model)
        };
        let promo = score_of(&copies(0.6));
        assert_ne!(promo.action, Action::Respond, "{promo:?}");
        assert!(promo.priority < 0.5);
        assert_eq!(promo.open_threads, 0);
        assert_eq!(promo.unanswered_since_ms, None);
        let flood = promo.factors.iter().find(|f| f.name() == "flood").unwrap();
        assert_eq!(
            flood.kind,
            FactorKind::Flood {
                copies: 30,
                span_seconds: 29.0 * 120.0,
                channels: 1 << Channel::Twitter as u8,
            }
        );
        // Only the copies before the flood count as engagement: it is not an advocate's.
        assert_ne!(promo.action, Action::Advocate);
        // Newer texts push the flood's out of the recent ones: its thread still says what it was.
        let mut pushed = copies(0.6);
        for i in 0..crate::scoring::noise::MAX_RECENT_TEXTS as u64 {
            pushed.push(EventRecord {
                thread_key: 500 + i,
                text_key: 1_000 + i as u32,
                kind: Kind::Like,
                ..said(
                    t - 1_000,
                    900 + i,
                    Kind::Like,
                    Channel::Twitter,
                    0.1,
                    5_000,
                    ReplyNeed::Unclear,
                )
            });
        }
        let later = score_of(&pushed);
        assert_ne!(later.action, Action::Respond, "{later:?}");
        assert!(matches!(
            later
                .factors
                .iter()
                .find(|f| f.name() == "flood")
                .map(|f| f.kind),
            Some(FactorKind::Flood { copies: 30, .. })
        ));

        let complaint = score_of(&copies(-0.6));
        assert_eq!(complaint.action, Action::Respond);
        assert_eq!(complaint.open_threads, 1);
        assert!(complaint.factors.iter().all(|f| f.name() != "flood"));
        let joined = complaint
            .factors
            .iter()
            .find(|f| f.name() == "copies_joined")
            .unwrap();
        assert_eq!(joined.contribution, 0.0);
        assert!(matches!(
            joined.kind,
            FactorKind::CopiesJoined { copies: 29, .. }
        ));

        // A different message after the flood waits for an answer as usual.
        let mut records = copies(0.6);
        records.push(EventRecord {
            thread_key: 7,
            text_key: 43,
            ..said(
                t - 60_000,
                99,
                Kind::Message,
                Channel::Email,
                -0.2,
                5_000,
                ReplyNeed::Required,
            )
        });
        let after = score_of(&records);
        assert_eq!(after.action, Action::Respond);
        assert_eq!(after.open_threads, 1);
        assert!(after.waits_on(Channel::Email) && !after.waits_on(Channel::Twitter));
    }

    /// The same question on three channels is one matter: one open thread, no repeat-contact cue
    /// from its copies, a reason that names the channels, and an answer in any copy's thread
    /// answers it.
    #[test]
    fn a_cross_post_is_one_matter_answered_anywhere() {
        let config = ScoringConfig::default();
        let model = TenantModel::new(&config, None);
        let t = 400 * DAY_MS;
        let asked = |key: u64, channel: Channel, minutes: i64| EventRecord {
            thread_key: key,
            text_key: 42,
            ..said(
                t - 3_600_000 + minutes * 60_000,
                key,
                Kind::Message,
                channel,
                -0.3,
                100,
                ReplyNeed::Required,
            )
        };
        let posts = [
            asked(1, Channel::Email, 0),
            asked(2, Channel::Twitter, 5),
            asked(3, Channel::Facebook, 9),
        ];
        let mut history = CustomerHistory::default();
        for record in &posts {
            history.insert(*record, &config);
        }
        let score = evaluate(history.summary(), t, &config, &model);
        assert_eq!(score.action, Action::Respond);
        assert_eq!(score.open_threads, 1);
        assert!(
            score.waits_on(Channel::Email)
                && score.waits_on(Channel::Twitter)
                && score.waits_on(Channel::Facebook)
        );
        assert!(score
            .factors
            .iter()
            .all(|f| !matches!(f.kind, FactorKind::UrgencyCue { .. })));
        assert!(score.factors.iter().any(|f| f.kind
            == FactorKind::CopiesJoined {
                copies: 2,
                channels: (1 << Channel::Twitter as u8) | (1 << Channel::Facebook as u8),
            }));
        // The brand answers on Twitter, in the second copy's thread: the matter is answered.
        let answer = EventRecord {
            thread_key: 2,
            direction: Direction::Outbound,
            ..record(t - 60_000, 50)
        };
        history.insert(answer, &config);
        let answered = evaluate(history.summary(), t, &config, &model);
        assert_ne!(answered.action, Action::Respond);
        assert_eq!(answered.open_threads, 0);

        // Two different questions on two channels are two matters, and a repeat contact.
        let mut two = CustomerHistory::default();
        two.insert(asked(1, Channel::Email, 0), &config);
        two.insert(
            EventRecord {
                text_key: 43,
                ..asked(2, Channel::Twitter, 5)
            },
            &config,
        );
        let score = evaluate(two.summary(), t, &config, &model);
        assert_eq!(score.open_threads, 2);
        assert!(score
            .factors
            .iter()
            .any(|f| matches!(f.kind, FactorKind::UrgencyCue { channels: 2, .. })));
    }

    #[test]
    fn urgency_cues_raise_their_thread_by_their_weight_with_one_reason_each() {
        let config = ScoringConfig::default();
        let model = TenantModel::new(&config, None);
        let t = 400 * DAY_MS;
        let message = |key: u64, channel: Channel, cues: UrgencyCues| EventRecord {
            urgency_cues: cues,
            thread_key: key,
            ..said(
                t - 3_600_000,
                key,
                Kind::Message,
                channel,
                -0.5,
                100,
                ReplyNeed::Required,
            )
        };
        let score_of = |records: &[EventRecord]| {
            let mut history = CustomerHistory::default();
            for record in records {
                history.insert(*record, &config);
            }
            evaluate(history.summary(), t, &config, &model)
        };
        let plain = score_of(&[message(1, Channel::Email, UrgencyCues::NONE)]);
        let threats: UrgencyCues = [UrgencyCue::LegalThreat, UrgencyCue::CancelThreat]
            .into_iter()
            .collect();
        let threatened = score_of(&[message(1, Channel::Email, threats)]);
        assert_eq!(threatened.action, Action::Respond);
        assert!(threatened.priority > plain.priority);
        let added = contribution(&threatened, "unanswered") - contribution(&plain, "unanswered");
        let weights = &config.respond;
        assert!(
            (added - weights.legal_threat - weights.cancel_threat).abs() < 1e-9,
            "{added}"
        );
        assert_eq!(
            contribution(&threatened, "legal_threat"),
            weights.legal_threat
        );
        assert_eq!(
            contribution(&threatened, "cancel_threat"),
            weights.cancel_threat
        );
        assert_eq!(contribution(&threatened, "safety"), 0.0);
        // The parts of the priority still sum to the whole.
        let parts: f64 = threatened
            .factors
            .iter()
            .filter(|f| f.group() == FactorGroup::Priority && f.name() != "unanswered")
            .map(|f| f.contribution)
            .sum();
        assert!((parts - contribution(&threatened, "unanswered")).abs() < 1e-9);

        // Waiting on two channels at once is a repeat contact, without any phrase.
        let two_channels = score_of(&[
            message(1, Channel::Email, UrgencyCues::NONE),
            message(2, Channel::Chat, UrgencyCues::NONE),
        ]);
        let repeat = two_channels
            .factors
            .iter()
            .find(|f| f.name() == "repeat_contact")
            .expect("a repeat-contact reason");
        assert_eq!(repeat.contribution, weights.repeat_contact);
        assert!(matches!(
            repeat.kind,
            FactorKind::UrgencyCue { channels: 2, .. }
        ));
        // Two threads on one channel are not.
        let one_channel = score_of(&[
            message(1, Channel::Email, UrgencyCues::NONE),
            message(2, Channel::Email, UrgencyCues::NONE),
        ]);
        assert_eq!(contribution(&one_channel, "repeat_contact"), 0.0);
    }

    /// The worked examples of docs/scoring.md, one per action, under the default config and
    /// the prior activity model.
    #[test]
    fn documented_examples() {
        let config = ScoringConfig::default();
        let model = TenantModel::new(&config, None);
        let t = 400 * DAY_MS;
        let close = |a: f64, b: f64| (a - b).abs() < 0.0005;

        // RESPOND: a public complaint (sentiment -0.8, 50k followers) waiting 40 minutes.
        let mut respond = CustomerHistory::default();
        respond.insert(
            said(
                t - 40 * 60_000,
                1,
                Kind::Mention,
                Channel::Twitter,
                -0.8,
                50_000,
                ReplyNeed::Required,
            ),
            &config,
        );
        let score = evaluate(respond.summary(), t, &config, &model);
        assert_eq!(score.action, Action::Respond);
        assert!(
            close(contribution(&score, "reply_wait"), 0.383),
            "{score:?}"
        );
        assert!(close(contribution(&score, "reach"), 2.349), "{score:?}");
        assert!(close(score.retention_risk, 0.668), "{score:?}");
        assert!(close(score.priority, 0.803), "{score:?}");

        // RESCUE: ten monthly purchases of 120, the last 100 days ago.
        let mut rescue = CustomerHistory::default();
        for n in 0..10 {
            rescue.insert(
                EventRecord {
                    kind: Kind::Purchase,
                    value: 120.0,
                    ..record(t - (100 + 30 * n) * DAY_MS, 10 + n as u64)
                },
                &config,
            );
        }
        let score = evaluate(rescue.summary(), t, &config, &model);
        assert_eq!(score.action, Action::Rescue);
        assert!(close(score.retention_risk, 0.650), "{score:?}");
        assert!(
            close(contribution(&score, "value_at_risk"), 7.091),
            "{score:?}"
        );
        assert!(close(score.priority, 0.482), "{score:?}");

        // ADVOCATE: a positive regular with 20k followers, answered each time.
        let mut advocate = CustomerHistory::default();
        for n in 0..12 {
            advocate.insert(
                said(
                    t - (1 + 2 * n) * DAY_MS,
                    100 + n as u64,
                    Kind::Comment,
                    Channel::Instagram,
                    0.8,
                    20_000,
                    ReplyNeed::NotRequired,
                ),
                &config,
            );
        }
        advocate.insert(
            EventRecord {
                kind: Kind::Purchase,
                value: 60.0,
                ..record(t - 3 * DAY_MS, 200)
            },
            &config,
        );
        let score = evaluate(advocate.summary(), t, &config, &model);
        assert_eq!(score.action, Action::Advocate);
        assert!(close(score.priority, 0.282), "{score:?}");

        // NURTURE: browsing and liking every day for three weeks, never bought.
        let mut nurture = CustomerHistory::default();
        for n in 0..21 {
            nurture.insert(
                EventRecord {
                    kind: Kind::Share,
                    ..record(t - (1 + n) * DAY_MS, 300 + n as u64)
                },
                &config,
            );
        }
        let score = evaluate(nurture.summary(), t, &config, &model);
        assert_eq!(score.action, Action::Nurture);
        assert!(close(score.priority, 0.188), "{score:?}");

        // NONE: a weekly buyer, last seen two days ago.
        let mut none = CustomerHistory::default();
        for n in 0..8 {
            none.insert(
                EventRecord {
                    kind: Kind::Purchase,
                    value: 30.0,
                    ..record(t - (2 + 7 * n) * DAY_MS, 400 + n as u64)
                },
                &config,
            );
        }
        let score = evaluate(none.summary(), t, &config, &model);
        assert_eq!(score.action, Action::None);
        assert!(close(score.priority, 0.011), "{score:?}");
    }

    fn arbitrary_record() -> impl Strategy<Value = EventRecord> {
        (
            0i64..400 * DAY_MS,
            any::<u64>(),
            0u64..4,
            0usize..Kind::ALL.len(),
            any::<bool>(),
            proptest::option::of((-1.0f32..=1.0, 0.0f32..=1.0)),
            0u32..2_000_000,
            0.0f64..500.0,
            0usize..3,
            0u32..32,
            0u32..3,
        )
            .prop_map(
                |(
                    at,
                    key,
                    thread,
                    kind,
                    inbound,
                    sentiment,
                    followers,
                    value,
                    need,
                    cues,
                    text,
                )| {
                    EventRecord {
                        occurred_at_ms: at,
                        event_key: key,
                        thread_key: thread,
                        value,
                        author_followers: followers,
                        sentiment_score: sentiment.map_or(0.0, |s| s.0),
                        sentiment_confidence: sentiment.map_or(0.0, |s| s.1),
                        channel: Channel::ALL[kind % Channel::ALL.len()],
                        kind: Kind::ALL[kind],
                        direction: if inbound {
                            Direction::Inbound
                        } else {
                            Direction::Outbound
                        },
                        has_sentiment: sentiment.is_some(),
                        reply_need: [
                            ReplyNeed::Unclear,
                            ReplyNeed::Required,
                            ReplyNeed::NotRequired,
                        ][need],
                        urgency_cues: UrgencyCues::from_bits(if inbound { cues } else { 0 }),
                        intent: 0,
                        text_key: if inbound { text } else { 0 },
                        language: if inbound { text as u8 } else { 0 },
                        note: Default::default(),
                    }
                },
            )
    }

    proptest! {
        /// Any arrival order gives the bit-identical summary and score.
        #[test]
        fn arrival_order_does_not_matter(
            records in proptest::collection::vec(arbitrary_record(), 1..60),
            seed in any::<u64>(),
            as_of_offset in 0i64..100 * DAY_MS,
        ) {
            let config = ScoringConfig::default();
            let mut sorted = records.clone();
            sorted.sort_by_key(|r| r.order_key());
            let mut shuffled = records;
            // Deterministic shuffle from the seed.
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let mut in_order = CustomerHistory::default();
            for r in sorted { in_order.insert(r, &config); }
            let mut out_of_order = CustomerHistory::default();
            for r in shuffled { out_of_order.insert(r, &config); }
            prop_assert_eq!(in_order.summary(), out_of_order.summary());
            let as_of = in_order.summary().last_event_at_ms + as_of_offset;
            prop_assert_eq!(
                evaluate(in_order.summary(), as_of, &config, &TenantModel::new(&config, None)),
                evaluate(out_of_order.summary(), as_of, &config, &TenantModel::new(&config, None))
            );
        }

        /// A history capped at a few events folds its oldest away without changing the summary:
        /// it equals the uncapped fold of every event it accepted, refuses only events older than
        /// what it kept (and every replay of a forgotten one), and answers `as_of` queries from
        /// its kept window exactly.
        #[test]
        fn compaction_keeps_the_fold_and_refuses_only_what_it_forgot(
            records in proptest::collection::vec(arbitrary_record(), 1..120),
            max_events in 4usize..12,
            as_of_back in 0i64..30 * DAY_MS,
        ) {
            let capped_config = ScoringConfig { max_events_per_customer: max_events, ..ScoringConfig::default() };
            let config = ScoringConfig::default();
            let mut capped = CustomerHistory::default();
            let mut accepted = Vec::new();
            for record in &records {
                match capped.insert(*record, &capped_config) {
                    InsertOutcome::Inserted => accepted.push(*record),
                    InsertOutcome::Duplicate | InsertOutcome::Conflict { .. } => {}
                    InsertOutcome::BeforeRetained => {
                        // Only what sorts before every kept record is refused.
                        let oldest_kept = capped.records()[0].order_key();
                        prop_assert!(record.order_key() < oldest_kept);
                    }
                }
                prop_assert!(capped.records().len() <= max_events);
            }
            accepted.sort_by_key(|r| r.order_key());
            let mut full = CustomerHistory::default();
            for record in &accepted { full.insert(*record, &config); }
            prop_assert_eq!(capped.summary(), full.summary());
            // Every accepted event, replayed, changes nothing.
            for record in &accepted {
                prop_assert_ne!(capped.insert(*record, &capped_config), InsertOutcome::Inserted);
            }
            prop_assert_eq!(capped.summary(), full.summary());
            let as_of = capped.summary().last_event_at_ms - as_of_back;
            if as_of >= capped.records()[0].occurred_at_ms {
                prop_assert_eq!(
                    capped.summary_as_of(as_of, &capped_config).map(|s| s.into_owned()),
                    full.summary_as_of(as_of, &config).map(|s| s.into_owned())
                );
            }
        }

        /// A refined sentiment arriving after the event gives exactly the summary the event
        /// would have given had it carried that sentiment from the start, in any arrival order.
        #[test]
        fn refined_sentiment_equals_having_it_first(
            records in proptest::collection::vec(arbitrary_record(), 1..40),
            pick in any::<prop::sample::Index>(),
            refined in (-1.0f32..=1.0, 0.0f32..=1.0),
        ) {
            let config = ScoringConfig::default();
            let mut late = CustomerHistory::default();
            for r in &records { late.insert(*r, &config); }
            let target = records[pick.index(records.len())];
            let kept = late.records().iter().find(|r| r.event_key == target.event_key).copied();
            let outcome = late.refine_sentiment(target.event_key, refined.0, refined.1, &config);
            let mut first = CustomerHistory::default();
            for r in &records {
                let mut r = *r;
                if Some(r) == kept && r.has_sentiment {
                    r.sentiment_score = refined.0;
                    r.sentiment_confidence = refined.1;
                }
                first.insert(r, &config);
            }
            match kept {
                Some(record) if record.has_sentiment => prop_assert_ne!(outcome, RefineOutcome::NotFound),
                _ => prop_assert_eq!(outcome, RefineOutcome::NotFound),
            }
            prop_assert_eq!(late.summary(), first.summary());
        }

        /// Ranking's evaluation gives every number of the full one, only without the reasons.
        #[test]
        fn ranking_evaluation_matches_the_full_one(
            records in proptest::collection::vec(arbitrary_record(), 1..40),
            as_of_offset in 0i64..400 * DAY_MS,
        ) {
            let config = ScoringConfig::default();
            let mut history = CustomerHistory::default();
            for r in records { history.insert(r, &config); }
            let as_of = history.summary().last_event_at_ms + as_of_offset;
            let full = evaluate(history.summary(), as_of, &config, &TenantModel::new(&config, None));
            let ranked = evaluate_for_ranking(history.summary(), as_of, &config, &TenantModel::new(&config, None));
            prop_assert!(ranked.factors.is_empty());
            prop_assert_eq!(Score { factors: Vec::new(), ..full }, ranked);
        }

        /// Scores stay in their documented ranges for any history and time.
        #[test]
        fn scores_stay_in_range(
            records in proptest::collection::vec(arbitrary_record(), 1..40),
            as_of_offset in 0i64..1000 * DAY_MS,
        ) {
            let config = ScoringConfig::default();
            let mut history = CustomerHistory::default();
            for r in records { history.insert(r, &config); }
            let score = evaluate(history.summary(), history.summary().last_event_at_ms + as_of_offset, &config, &TenantModel::new(&config, None));
            prop_assert!((0.0..=100.0).contains(&score.engagement));
            prop_assert!((-1.0..=1.0).contains(&score.sentiment));
            prop_assert!((-1.0..=1.0).contains(&score.sentiment_recent));
            prop_assert!((0.0..=1.0).contains(&score.retention_risk));
            prop_assert!((0.0..1.0).contains(&score.priority));
            let (low, high) = band(score.action);
            prop_assert!(score.priority >= low && score.priority < high);
            prop_assert_eq!(score.action == Action::Respond, score.unanswered_since_ms.is_some());
        }

        /// Without new events, engagement only falls and retention risk only grows.
        #[test]
        fn silence_grows_and_engagement_fades(
            records in proptest::collection::vec(arbitrary_record(), 1..30),
            first in 0i64..50 * DAY_MS,
            extra in 0i64..200 * DAY_MS,
        ) {
            let config = ScoringConfig::default();
            let mut history = CustomerHistory::default();
            for r in records { history.insert(r, &config); }
            let last = history.summary().last_event_at_ms;
            let early = evaluate(history.summary(), last + first, &config, &TenantModel::new(&config, None));
            let late = evaluate(history.summary(), last + first + extra, &config, &TenantModel::new(&config, None));
            let activity = |score: &Score| score
                .factors
                .iter()
                .find(|f| f.name() == "activity")
                .map_or(0.0, |f| f.contribution);
            prop_assert!(late.engagement <= early.engagement);
            prop_assert!(activity(&late) >= activity(&early) - 1e-12);
        }
    }
}
