//! A summary evaluated as of a moment: engagement, sentiment, retention risk, priority, action and
//! the factors behind them.

use crate::config::ScoringConfig;
use crate::domain::{Action, Channel, Kind, TimestampMs};
use crate::scoring::{decayed, OpenThread, Summary};

/// A customer's scores as of one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    pub as_of_ms: TimestampMs,
    /// 0..100.
    pub engagement: f64,
    /// Long-run sentiment, -1..1.
    pub sentiment: f64,
    /// Recent sentiment, -1..1.
    pub sentiment_recent: f64,
    /// `sentiment_recent - sentiment`.
    pub sentiment_trend: f64,
    /// 0..1.
    pub retention_risk: f64,
    /// 0..1.
    pub priority: f64,
    pub action: Action,
    /// Retention-risk factors (log-odds) then the chosen action's factors (priority units).
    pub factors: Vec<Factor>,
    pub last_interaction_at_ms: TimestampMs,
    pub unanswered_since_ms: Option<TimestampMs>,
    pub interactions_total: u64,
    pub lifetime_value: f64,
}

/// One signed contribution to a score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Factor {
    pub kind: FactorKind,
    /// Log-odds for retention-risk factors, priority units for action factors.
    pub contribution: f64,
}

/// What a factor is, with the figures its human detail quotes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FactorKind {
    /// Risk: time since the customer's last activity against their usual gap.
    Silence {
        silent_seconds: f64,
        usual_gap_seconds: f64,
    },
    /// Risk: recent engagement rate as a fraction of the long-run rate.
    EngagementDrop { rate_ratio: f64 },
    /// Risk: negative long-run sentiment.
    NegativeSentiment { sentiment: f64 },
    /// Risk: recent sentiment below long-run.
    WorseningSentiment { trend: f64 },
    /// Risk: unanswered negative messages.
    OpenComplaints { count: u32 },
    /// Risk (lowers it): recent positive messages.
    PositiveContact,
    /// Risk (lowers it): recent purchases.
    RecentPurchases { purchases_total: u64 },
    /// RESPOND: the base priority of an unanswered message, with its description.
    Unanswered {
        kind: Kind,
        channel: Channel,
        waiting_seconds: f64,
        worst_sentiment: f32,
        author_followers: u32,
        messages: u32,
    },
    /// RESPOND: waiting time against the reply SLA.
    ReplyWait {
        waiting_seconds: f64,
        sla_seconds: f64,
    },
    /// RESPOND: how negative the unanswered message is.
    Negativity { worst_sentiment: f32 },
    /// RESPOND: the author's audience.
    Reach { author_followers: u32 },
    /// RESPOND: said in public.
    PublicChannel { channel: Channel },
    /// RESCUE: retention risk above the threshold.
    HighRisk { retention_risk: f64 },
    /// ADVOCATE: positive, engaged and influential.
    Advocacy {
        sentiment: f64,
        engagement: f64,
        author_followers: u32,
    },
    /// NURTURE: engaged without a purchase.
    EngagedWithoutPurchase { engagement: f64 },
}

impl Factor {
    /// Stable snake_case name of the factor.
    pub fn name(&self) -> &'static str {
        match self.kind {
            FactorKind::Silence { .. } => "silence",
            FactorKind::EngagementDrop { .. } => "engagement_drop",
            FactorKind::NegativeSentiment { .. } => "negative_sentiment",
            FactorKind::WorseningSentiment { .. } => "worsening_sentiment",
            FactorKind::OpenComplaints { .. } => "open_complaints",
            FactorKind::PositiveContact => "positive_contact",
            FactorKind::RecentPurchases { .. } => "recent_purchases",
            FactorKind::Unanswered { .. } => "unanswered",
            FactorKind::ReplyWait { .. } => "reply_wait",
            FactorKind::Negativity { .. } => "negativity",
            FactorKind::Reach { .. } => "reach",
            FactorKind::PublicChannel { .. } => "public_channel",
            FactorKind::HighRisk { .. } => "high_risk",
            FactorKind::Advocacy { .. } => "advocacy",
            FactorKind::EngagedWithoutPurchase { .. } => "engaged_without_purchase",
        }
    }

    /// Human-readable detail, e.g. "unanswered negative mention on twitter for 42 min, 51k followers".
    pub fn detail(&self) -> String {
        match self.kind {
            FactorKind::Silence {
                silent_seconds,
                usual_gap_seconds,
            } => format!(
                "silent for {}, usually active every {}",
                format_duration(silent_seconds),
                format_duration(usual_gap_seconds)
            ),
            FactorKind::EngagementDrop { rate_ratio } => format!(
                "engagement at {:.0}% of its long-run rate",
                rate_ratio * 100.0
            ),
            FactorKind::NegativeSentiment { sentiment } => {
                format!("long-run sentiment {sentiment:.2}")
            }
            FactorKind::WorseningSentiment { trend } => {
                format!("sentiment down {:.2} recently", -trend)
            }
            FactorKind::OpenComplaints { count } => {
                format!("{count} unanswered negative thread(s)")
            }
            FactorKind::PositiveContact => "recent positive messages".to_string(),
            FactorKind::RecentPurchases { purchases_total } => {
                format!("recent purchases ({purchases_total} in total)")
            }
            FactorKind::Unanswered {
                kind,
                channel,
                waiting_seconds,
                worst_sentiment,
                author_followers,
                messages,
            } => {
                let tone = sentiment_word(worst_sentiment);
                let more = if messages > 1 {
                    format!(" ({messages} messages)")
                } else {
                    String::new()
                };
                format!(
                    "unanswered {tone}{} on {} for {}{more}, {} followers",
                    kind.as_str().replace('_', " "),
                    channel.as_str().replace('_', " "),
                    format_duration(waiting_seconds),
                    format_count(author_followers),
                )
            }
            FactorKind::ReplyWait {
                waiting_seconds,
                sla_seconds,
            } => format!(
                "waiting {} against a {} reply SLA",
                format_duration(waiting_seconds),
                format_duration(sla_seconds)
            ),
            FactorKind::Negativity { worst_sentiment } => {
                format!("message sentiment {worst_sentiment:.2}")
            }
            FactorKind::Reach { author_followers } => {
                format!("{} followers", format_count(author_followers))
            }
            FactorKind::PublicChannel { channel } => {
                format!("said in public on {}", channel.as_str().replace('_', " "))
            }
            FactorKind::HighRisk { retention_risk } => {
                format!("retention risk {retention_risk:.2}")
            }
            FactorKind::Advocacy {
                sentiment,
                engagement,
                author_followers,
            } => format!(
                "sentiment {sentiment:.2}, engagement {engagement:.0}, {} followers",
                format_count(author_followers)
            ),
            FactorKind::EngagedWithoutPurchase { engagement } => {
                format!("engagement {engagement:.0} and no purchase yet")
            }
        }
    }
}

fn sentiment_word(score: f32) -> &'static str {
    if score <= -0.05 {
        "negative "
    } else if score >= 0.05 {
        "positive "
    } else {
        ""
    }
}

/// "42 min", "5 h", "31 days".
fn format_duration(seconds: f64) -> String {
    let seconds = seconds.max(0.0);
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{:.0} min", seconds / 60.0)
    } else if seconds < 2.0 * 86_400.0 {
        format!("{:.0} h", seconds / 3600.0)
    } else {
        format!("{:.0} days", seconds / 86_400.0)
    }
}

/// "950", "51k", "1.2M".
fn format_count(count: u32) -> String {
    match count {
        0..=999 => count.to_string(),
        1000..=999_999 => format!("{:.0}k", f64::from(count) / 1e3),
        _ => format!("{:.1}M", f64::from(count) / 1e6),
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Audience on a log scale: 0 for none, 0.5 at 1k followers, 1 at 1M and beyond.
fn reach(author_followers: u32) -> f64 {
    ((1.0 + f64::from(author_followers)).log10() / 6.0).min(1.0)
}

fn elapsed_seconds(from_ms: TimestampMs, to_ms: TimestampMs) -> f64 {
    (to_ms.saturating_sub(from_ms)).max(0) as f64 / 1000.0
}

/// Evaluates a summary as of `as_of_ms`. Pure: the same summary, config and time give the same score.
/// `as_of_ms` before the summary's last event is treated as that event's time.
pub fn evaluate(summary: &Summary, as_of_ms: TimestampMs, config: &ScoringConfig) -> Score {
    evaluate_with(summary, as_of_ms, config, true)
}

/// [`evaluate`] without the reasons (`factors` left empty): what ranking needs, without allocating.
/// Every number is the same as [`evaluate`]'s.
pub fn evaluate_for_ranking(
    summary: &Summary,
    as_of_ms: TimestampMs,
    config: &ScoringConfig,
) -> Score {
    evaluate_with(summary, as_of_ms, config, false)
}

fn evaluate_with(
    summary: &Summary,
    as_of_ms: TimestampMs,
    config: &ScoringConfig,
    keep_reasons: bool,
) -> Score {
    let at = as_of_ms.max(summary.last_event_at_ms);
    let from = summary.last_event_at_ms;
    let mut factors = Vec::new();

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
    let sentiment_trend = sentiment_recent - sentiment;

    // Retention risk: logistic in the sum of factor contributions.
    let weights = &config.risk;
    let mut risk_logit = weights.bias;
    let mut push_risk = |factors: &mut Vec<Factor>, kind: FactorKind, contribution: f64| {
        if contribution.abs() > 1e-6 {
            risk_logit += contribution;
            if keep_reasons {
                factors.push(Factor { kind, contribution });
            }
        }
    };
    if summary.activity_total > 0 {
        let usual_gap_seconds = if summary.activity_total >= 2 {
            elapsed_seconds(summary.first_activity_at_ms, summary.last_activity_at_ms)
                / (summary.activity_total - 1) as f64
        } else {
            config.default_gap_seconds
        }
        .max(config.min_gap_seconds);
        let silent_seconds = elapsed_seconds(summary.last_activity_at_ms, at);
        let gaps = silent_seconds / usual_gap_seconds;
        let silence = if gaps > 1.0 {
            (gaps.ln() / 8f64.ln()).min(1.0)
        } else {
            0.0
        };
        push_risk(
            &mut factors,
            FactorKind::Silence {
                silent_seconds,
                usual_gap_seconds,
            },
            weights.silence * silence,
        );
        let recent_rate = engagement_recent / config.engagement_half_life_seconds;
        let baseline_rate = engagement_baseline / config.engagement_baseline_half_life_seconds;
        if baseline_rate > 0.0 {
            let rate_ratio = recent_rate / baseline_rate;
            push_risk(
                &mut factors,
                FactorKind::EngagementDrop { rate_ratio },
                weights.engagement_drop * (1.0 - rate_ratio).clamp(0.0, 1.0),
            );
        }
    }
    push_risk(
        &mut factors,
        FactorKind::NegativeSentiment { sentiment },
        weights.negative_sentiment * (-sentiment).max(0.0),
    );
    push_risk(
        &mut factors,
        FactorKind::WorseningSentiment {
            trend: sentiment_trend,
        },
        weights.worsening_sentiment * (-sentiment_trend).max(0.0),
    );
    let complaints = summary
        .open_threads
        .iter()
        .filter(|open| open.worst_sentiment <= -0.05)
        .count() as u32;
    push_risk(
        &mut factors,
        FactorKind::OpenComplaints { count: complaints },
        weights.open_complaints * (1.0 - 0.5f64.powi(complaints as i32)),
    );
    let [positive_contact, purchases_recent] = decayed(
        [summary.positive_contact, summary.purchases_recent],
        from,
        at,
        config.goodwill_half_life_seconds,
    );
    push_risk(
        &mut factors,
        FactorKind::PositiveContact,
        -weights.positive_contact * (1.0 - (-positive_contact).exp()),
    );
    push_risk(
        &mut factors,
        FactorKind::RecentPurchases {
            purchases_total: summary.purchases_total,
        },
        -weights.purchases * (1.0 - (-purchases_recent).exp()),
    );
    let retention_risk = sigmoid(risk_logit);

    // Action and priority.
    let thresholds = &config.actions;
    let rescue = retention_risk >= thresholds.rescue_min_risk;
    let most_urgent = summary
        .open_threads
        .iter()
        .map(|open| (respond_pressure(open, at, config), open))
        .max_by(|a, b| a.0.total().total_cmp(&b.0.total()));
    let (action, priority) = if let Some((pressure, open)) = most_urgent {
        let total = pressure.total();
        let respond_priority = 0.5 + 0.5 * (1.0 - (-total).exp());
        let waiting_seconds = elapsed_seconds(open.since_ms, at);
        if keep_reasons {
            factors.push(Factor {
                kind: FactorKind::Unanswered {
                    kind: open.kind,
                    channel: open.channel,
                    waiting_seconds,
                    worst_sentiment: open.worst_sentiment,
                    author_followers: open.author_followers,
                    messages: open.messages,
                },
                contribution: 0.5,
            });
        }
        // Split the urgency above 0.5 between the pressures in proportion.
        let share = if total > 0.0 {
            (respond_priority - 0.5) / total
        } else {
            0.0
        };
        let parts = [
            (
                FactorKind::ReplyWait {
                    waiting_seconds,
                    sla_seconds: config.reply_sla_seconds,
                },
                pressure.wait,
            ),
            (
                FactorKind::Negativity {
                    worst_sentiment: open.worst_sentiment,
                },
                pressure.negativity,
            ),
            (
                FactorKind::Reach {
                    author_followers: open.author_followers,
                },
                pressure.reach,
            ),
            (
                FactorKind::PublicChannel {
                    channel: open.channel,
                },
                pressure.public_channel,
            ),
        ];
        for (kind, part) in parts {
            if keep_reasons && part > 1e-6 {
                factors.push(Factor {
                    kind,
                    contribution: part * share,
                });
            }
        }
        let priority = if rescue {
            respond_priority.max(retention_risk)
        } else {
            respond_priority
        };
        (Action::Respond, priority)
    } else if rescue {
        if keep_reasons {
            factors.push(Factor {
                kind: FactorKind::HighRisk { retention_risk },
                contribution: retention_risk,
            });
        }
        (Action::Rescue, retention_risk)
    } else if sentiment >= thresholds.advocate_min_sentiment
        && engagement >= thresholds.advocate_min_engagement
        && u64::from(summary.author_followers) >= thresholds.advocate_min_followers
    {
        let priority = 0.2 + 0.2 * reach(summary.author_followers) + 0.1 * sentiment;
        if keep_reasons {
            factors.push(Factor {
                kind: FactorKind::Advocacy {
                    sentiment,
                    engagement,
                    author_followers: summary.author_followers,
                },
                contribution: priority,
            });
        }
        (Action::Advocate, priority)
    } else if engagement >= thresholds.nurture_min_engagement && summary.purchases_total == 0 {
        let priority = 0.1 + 0.2 * engagement / 100.0;
        if keep_reasons {
            factors.push(Factor {
                kind: FactorKind::EngagedWithoutPurchase { engagement },
                contribution: priority,
            });
        }
        (Action::Nurture, priority)
    } else {
        (Action::None, 0.1 * retention_risk)
    };

    Score {
        as_of_ms: at,
        engagement,
        sentiment,
        sentiment_recent,
        sentiment_trend,
        retention_risk,
        priority,
        action,
        factors,
        last_interaction_at_ms: summary.last_event_at_ms,
        unanswered_since_ms: summary.open_threads.iter().map(|open| open.since_ms).min(),
        interactions_total: summary.events_total,
        lifetime_value: summary.lifetime_value,
    }
}

/// Pressure to answer one open thread, by component.
struct RespondPressure {
    wait: f64,
    negativity: f64,
    reach: f64,
    public_channel: f64,
}

impl RespondPressure {
    fn total(&self) -> f64 {
        self.wait + self.negativity + self.reach + self.public_channel
    }
}

fn respond_pressure(open: &OpenThread, at: TimestampMs, config: &ScoringConfig) -> RespondPressure {
    let weights = &config.respond;
    RespondPressure {
        wait: weights.wait * elapsed_seconds(open.since_ms, at) / config.reply_sla_seconds,
        negativity: weights.negativity * f64::from(-open.worst_sentiment).max(0.0),
        reach: weights.reach * reach(open.author_followers),
        public_channel: if open.channel.is_public() {
            weights.public_channel
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Direction;
    use crate::scoring::{CustomerHistory, EventRecord, InsertOutcome, RefineOutcome};
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
        }
    }

    /// The worked example in docs/scoring.md: weekly for 12 weeks, then 31 days of silence.
    #[test]
    fn documented_silence_example() {
        let config = ScoringConfig::default();
        let mut history = CustomerHistory::default();
        for week in 0..12 {
            history.insert(record(week * 7 * DAY_MS, week as u64 + 1), &config);
        }
        let last = 11 * 7 * DAY_MS;
        let score = evaluate(history.summary(), last + 31 * DAY_MS, &config);
        let contribution = |name: &str| {
            score
                .factors
                .iter()
                .find(|f| f.name() == name)
                .map(|f| f.contribution)
                .unwrap_or_default()
        };
        assert!(
            (contribution("silence") - 2.15).abs() < 0.01,
            "{:?}",
            score.factors
        );
        assert!(
            (contribution("engagement_drop") - 0.52).abs() < 0.01,
            "{:?}",
            score.factors
        );
        assert!(
            (score.retention_risk - 0.66).abs() < 0.01,
            "{}",
            score.retention_risk
        );
        assert_eq!(score.action, Action::Rescue);
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
        )
            .prop_map(
                |(at, key, thread, kind, inbound, sentiment, followers, value)| EventRecord {
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
                evaluate(in_order.summary(), as_of, &config),
                evaluate(out_of_order.summary(), as_of, &config)
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
                    InsertOutcome::Duplicate => {}
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
            let full = evaluate(history.summary(), as_of, &config);
            let ranked = evaluate_for_ranking(history.summary(), as_of, &config);
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
            let score = evaluate(history.summary(), history.summary().last_event_at_ms + as_of_offset, &config);
            prop_assert!((0.0..=100.0).contains(&score.engagement));
            prop_assert!((-1.0..=1.0).contains(&score.sentiment));
            prop_assert!((-1.0..=1.0).contains(&score.sentiment_recent));
            prop_assert!((0.0..=1.0).contains(&score.retention_risk));
            prop_assert!((0.0..=1.0).contains(&score.priority));
            prop_assert_eq!(score.action == Action::Respond, score.unanswered_since_ms.is_some());
        }

        /// Without new events, engagement only falls and the silence factor only grows.
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
            let early = evaluate(history.summary(), last + first, &config);
            let late = evaluate(history.summary(), last + first + extra, &config);
            let silence = |score: &Score| score
                .factors
                .iter()
                .find(|f| f.name() == "silence")
                .map_or(0.0, |f| f.contribution);
            prop_assert!(late.engagement <= early.engagement);
            prop_assert!(silence(&late) >= silence(&early));
        }
    }
}
