//! Scoring factors in words for people: the `detail` of each `Reason` the API returns. Pure
//! scoring only computes the figures (`rapport_core::scoring::FactorKind`); the wording lives here,
//! at the edge that shows it.

use rapport_core::domain::UrgencyCue;
use rapport_core::scoring::{Factor, FactorKind, RiskBasis};
use rapport_core::store::intents::IntentNames;

/// Where an activity term comes from, in words: how much history stands behind it.
fn basis_words(basis: RiskBasis, horizon_seconds: f64) -> String {
    match basis {
        RiskBasis::Prior => "prior: tenant not fitted yet".to_string(),
        RiskBasis::Fitted { customers } => {
            format!("fit on {customers} customers, not yet backtested")
        }
        RiskBasis::Backtested {
            customers,
            backtest_days,
            trust,
        } if trust < 0.995 => format!(
            "fit on {customers} customers, thin backtest ({} for a {} horizon) applied at {:.0}%",
            format_duration(backtest_days * 86_400.0),
            format_duration(horizon_seconds),
            trust * 100.0
        ),
        RiskBasis::Backtested {
            customers,
            backtest_days,
            ..
        } => format!(
            "fit on {customers} customers, backtested over {}",
            format_duration(backtest_days * 86_400.0)
        ),
    }
}

/// Human-readable detail, e.g. "unanswered negative mention on twitter for 42 min, 51k
/// followers; reply due in 18 min".
pub fn detail(factor: &Factor, intents: &IntentNames) -> String {
    match factor.kind {
        FactorKind::Activity {
            p_no_activity,
            active_days,
            silent_seconds,
            horizon_seconds,
            basis,
        } => format!(
            "{:.0}% chance of no activity in the next {}; active on {active_days} day(s), last {} ago; {}",
            p_no_activity * 100.0,
            format_duration(horizon_seconds),
            format_duration(silent_seconds),
            basis_words(basis, horizon_seconds)
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
        FactorKind::Unanswered {
            kind,
            channel,
            waiting_seconds,
            worst_sentiment,
            author_followers,
            messages,
            due_in_seconds,
            missed,
            intent,
        } => {
            let tone = sentiment_word(worst_sentiment);
            let about = intents
                .name(intent)
                .map_or_else(String::new, |name| format!(" about {name}"));
            let more = if messages > 1 {
                format!(" ({messages} messages)")
            } else {
                String::new()
            };
            let due = if missed {
                "missed: past the channel's horizon".to_string()
            } else if due_in_seconds >= 0.0 {
                format!("reply due in {}", format_duration(due_in_seconds))
            } else {
                format!("reply overdue by {}", format_duration(-due_in_seconds))
            };
            format!(
                "unanswered {tone}{}{about} on {} for {}{more}, {} followers; {due}",
                kind.as_str().replace('_', " "),
                channel.as_str().replace('_', " "),
                format_duration(waiting_seconds),
                format_count(author_followers),
            )
        }
        FactorKind::ReplyWait {
            waiting_business_seconds,
            target_seconds,
            follow_up,
        } => format!(
            "waited {} of business time against a {} {} target",
            format_duration(waiting_business_seconds),
            format_duration(target_seconds),
            if follow_up {
                "next-response"
            } else {
                "first-response"
            }
        ),
        FactorKind::NeedsReply => "asks for an answer".to_string(),
        FactorKind::Negativity { worst_sentiment } => {
            format!("message sentiment {worst_sentiment:.2}")
        }
        FactorKind::Reach { author_followers } => {
            format!("{} followers", format_count(author_followers))
        }
        FactorKind::PublicChannel { channel } => {
            format!("said in public on {}", channel.as_str().replace('_', " "))
        }
        FactorKind::ThreadMessages { messages } => {
            format!("{messages} unanswered messages in the thread")
        }
        FactorKind::UrgencyCue { cue, channels } => match cue {
            UrgencyCue::CancelThreat => "threatens to cancel or leave".to_string(),
            UrgencyCue::LegalThreat => "mentions a lawyer, legal action or a regulator".to_string(),
            UrgencyCue::ManagerRequest => "asks for a manager or an escalation".to_string(),
            UrgencyCue::RepeatContact if channels > 1 => {
                format!("waiting for an answer on {channels} channels at once")
            }
            UrgencyCue::RepeatContact => "says they have asked before".to_string(),
            UrgencyCue::Safety => "someone may be hurt (a safety issue)".to_string(),
        },
        FactorKind::CustomerValue { lifetime_value } => {
            format!("lifetime value {lifetime_value:.0}")
        }
        FactorKind::AtRiskCustomer { retention_risk } => {
            format!("retention risk {retention_risk:.2}")
        }
        FactorKind::HighRisk { retention_risk } => {
            format!("retention risk {retention_risk:.2}")
        }
        FactorKind::ValueAtRisk { lifetime_value } => {
            format!("lifetime value {lifetime_value:.0} at stake")
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
        FactorKind::CopiesJoined { copies, channels } => format!(
            "also posted {copies} time(s) on {}: one matter",
            channel_list(channels)
        ),
        FactorKind::Flood {
            copies,
            span_seconds,
            channels,
        } => format!(
            "the same text {copies} times in {} on {}: a flood, not answered first",
            format_duration(span_seconds),
            channel_list(channels)
        ),
        FactorKind::SegmentRule {
            urgency_weight,
            action_set,
        } => match (action_set, urgency_weight == 1.0) {
            (true, true) => "a rule for the customer's segment sets the action".to_string(),
            (true, false) => format!(
                "a rule for the customer's segment sets the action and weighs urgency x{urgency_weight}"
            ),
            (false, _) => {
                format!("a rule for the customer's segment weighs urgency x{urgency_weight}")
            }
        },
    }
}

/// "twitter and facebook", "email, chat and twitter" from a set of channel bits.
fn channel_list(channels: u16) -> String {
    let names: Vec<String> = rapport_core::domain::Channel::ALL
        .iter()
        .filter(|channel| channels & (1 << **channel as u8) != 0)
        .map(|channel| channel.as_str().replace('_', " "))
        .collect();
    match names.as_slice() {
        [] => "no channel".to_string(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
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

/// "42 s", "42 min", "5 h", "31 days".
fn format_duration(seconds: f64) -> String {
    let seconds = seconds.max(0.0);
    if seconds < 120.0 {
        format!("{} s", whole(seconds))
    } else if seconds < 7200.0 {
        format!("{} min", whole(seconds / 60.0))
    } else if seconds < 2.0 * 86_400.0 {
        format!("{} h", whole(seconds / 3600.0))
    } else {
        format!("{} days", whole(seconds / 86_400.0))
    }
}

/// A non-negative value rounded to a whole number as `{:.0}` rounds it (half to even), as an
/// integer: formatting an integer is several times cheaper than a float's exact digits, and a
/// TopCustomers(100) formats hundreds of these (BENCHMARKS.md).
fn whole(value: f64) -> u64 {
    value.max(0.0).round_ties_even() as u64
}

/// "950", "51k", "1.2M".
fn format_count(count: u32) -> String {
    match count {
        0..=999 => count.to_string(),
        1000..=999_999 => format!("{}k", whole(f64::from(count) / 1e3)),
        _ => format!("{:.1}M", f64::from(count) / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_read_as_the_float_formatting_did() {
        let mut value = 0.0f64;
        while value < 400_000.0 {
            for v in [value, value + 0.5, value + 0.4999999, value + 0.5000001] {
                assert_eq!(whole(v).to_string(), format!("{v:.0}"), "{v}");
            }
            value += 0.25 + value * 0.01;
        }
        assert_eq!(format_duration(90.5), "90 s");
        assert_eq!(format_count(51_500), "52k");
    }
}
