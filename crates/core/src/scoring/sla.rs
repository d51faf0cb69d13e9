//! Reply SLA policies: per channel, a first-response and a next-response target in business time,
//! and a horizon after which an unanswered thread is "missed"; per tenant, a business calendar.

use crate::config::{ChannelSlaConfig, ConfigError, ScoringConfig, MAX_SLA_SECONDS};
use crate::domain::{Channel, TimestampMs};
use crate::scoring::{BusinessCalendar, OpenThread};
use crate::segments::RuleSla;
use std::collections::BTreeMap;

/// Reply targets of one channel, resolved (tenant row, then tenant default, then `[scoring]` row,
/// then `[scoring]` default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelTargets {
    /// First reply due this long (business time) after the first unanswered message.
    pub first_response_seconds: f64,
    /// Next reply, in a thread already answered once, due this long after.
    pub next_response_seconds: f64,
    /// Missed after this long unanswered (wall clock).
    pub missed_after_seconds: f64,
}

/// A tenant's SLA policy: targets per channel and the calendar the targets count in.
#[derive(Clone, Debug, PartialEq)]
pub struct SlaPolicy {
    targets: [ChannelTargets; Channel::ALL.len()],
    calendar: BusinessCalendar,
}

/// Where one open thread stands against its SLA at a moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThreadSla {
    /// The target that applies (first or next response), business seconds.
    pub target_seconds: f64,
    /// Business time waited so far.
    pub waited_business_seconds: f64,
    /// Wall-clock time waited so far.
    pub waited_seconds: f64,
    /// When the answer is due.
    pub due_at_ms: TimestampMs,
    /// Waited longer than the channel's missed horizon.
    pub missed: bool,
    /// The channel's missed horizon, wall-clock seconds.
    pub missed_after_seconds: f64,
}

impl ThreadSla {
    /// Business time waited over the target (1 = due now).
    pub fn progress(&self) -> f64 {
        self.waited_business_seconds / self.target_seconds
    }
}

impl SlaPolicy {
    /// The policy of `tenant` (None: the default policy) from a validated config. A business-hours
    /// section that does not parse (refused by validation) falls back to always open.
    pub fn new(config: &ScoringConfig, tenant: Option<&str>) -> Self {
        Self::layered(config, tenant, None)
    }

    /// The policy of `tenant` for the customers of a rule with reply targets `rule` (rule rows
    /// first, then the tenant's, then `[scoring]`); the tenant's calendar.
    pub fn for_rule(config: &ScoringConfig, tenant: Option<&str>, rule: &RuleSla) -> Self {
        Self::layered(config, tenant, Some(rule))
    }

    /// The first channel whose missed horizon comes before one of its reply targets (refused by
    /// validation).
    pub fn missed_before_targets(&self) -> Option<Channel> {
        Channel::ALL.into_iter().find(|channel| {
            let targets = self.targets(*channel);
            targets.missed_after_seconds
                < targets
                    .first_response_seconds
                    .max(targets.next_response_seconds)
        })
    }

    fn layered(config: &ScoringConfig, tenant: Option<&str>, rule: Option<&RuleSla>) -> Self {
        let tenant_policy = tenant.and_then(|tenant| config.tenants.get(tenant));
        let rule_defaults = rule.map(RuleSla::defaults);
        let root = ChannelSlaConfig {
            first_response_seconds: Some(config.reply_sla_seconds),
            next_response_seconds: Some(config.next_reply_sla_seconds),
            missed_after_seconds: Some(config.missed_after_seconds),
        };
        let targets = Channel::ALL.map(|channel| {
            let rows: [Option<&ChannelSlaConfig>; 6] = [
                rule.and_then(|rule| rule.channel_sla.get(&channel)),
                rule_defaults.as_ref(),
                tenant_policy.and_then(|policy| policy.channel_sla.get(&channel)),
                tenant_policy.map(|policy| &policy.defaults),
                config.channel_sla.get(&channel),
                Some(&root),
            ];
            let pick = |field: fn(&ChannelSlaConfig) -> Option<f64>, fallback: f64| {
                rows.iter()
                    .flatten()
                    .find_map(|row| field(row))
                    .unwrap_or(fallback)
            };
            ChannelTargets {
                first_response_seconds: pick(
                    |row| row.first_response_seconds,
                    config.reply_sla_seconds,
                ),
                next_response_seconds: pick(
                    |row| row.next_response_seconds,
                    config.next_reply_sla_seconds,
                ),
                missed_after_seconds: pick(
                    |row| row.missed_after_seconds,
                    config.missed_after_seconds,
                ),
            }
        });
        // Validation refused what does not parse (naming the key), so the key prefix here is
        // never shown.
        let calendar = tenant_policy
            .and_then(|policy| policy.business_hours.as_ref())
            .or(config.business_hours.as_ref())
            .and_then(|hours| BusinessCalendar::from_config(hours, "").ok())
            .unwrap_or_else(BusinessCalendar::always_open);
        Self { targets, calendar }
    }

    /// The targets of a channel.
    pub fn targets(&self, channel: Channel) -> ChannelTargets {
        self.targets[channel as usize]
    }

    /// The calendar the targets count in.
    pub fn calendar(&self) -> &BusinessCalendar {
        &self.calendar
    }

    /// Where an open thread stands at `at_ms`.
    pub fn thread_state(&self, open: &OpenThread, at_ms: TimestampMs) -> ThreadSla {
        let targets = self.targets(open.channel);
        let target_seconds = if open.follow_up {
            targets.next_response_seconds
        } else {
            targets.first_response_seconds
        };
        let waited_seconds = (at_ms.saturating_sub(open.since_ms)).max(0) as f64 / 1000.0;
        let waited_business_seconds = self
            .calendar
            .business_seconds_between(open.since_ms, at_ms.max(open.since_ms));
        let due_at_ms = self
            .calendar
            .add_business_seconds(open.since_ms, target_seconds)
            .unwrap_or_else(|| {
                open.since_ms
                    .saturating_add((target_seconds * 1000.0).min(i64::MAX as f64) as i64)
            });
        ThreadSla {
            target_seconds,
            waited_business_seconds,
            waited_seconds,
            due_at_ms,
            missed: waited_seconds > targets.missed_after_seconds,
            missed_after_seconds: targets.missed_after_seconds,
        }
    }

    /// Business seconds a thread had waited when it became missed (the wait term's plateau).
    pub fn business_seconds_at_miss(&self, open: &OpenThread, sla: &ThreadSla) -> f64 {
        let missed_at_ms = open
            .since_ms
            .saturating_add((sla.missed_after_seconds * 1000.0).min(i64::MAX as f64 / 2.0) as i64);
        self.calendar
            .business_seconds_between(open.since_ms, missed_at_ms)
    }
}

/// Checks one policy's rows (every channel, then per channel): each target positive, finite and
/// at most [`MAX_SLA_SECONDS`]; the error names the key under `prefix`.
pub fn check_sla_rows(
    prefix: &str,
    defaults: &ChannelSlaConfig,
    channels: &BTreeMap<Channel, ChannelSlaConfig>,
) -> Result<(), ConfigError> {
    let rows = std::iter::once((prefix.to_string(), defaults)).chain(
        channels
            .iter()
            .map(|(channel, row)| (format!("{prefix}channel_sla.{}.", channel.as_str()), row)),
    );
    for (row_prefix, row) in rows {
        for (name, value) in [
            ("first_response_seconds", row.first_response_seconds),
            ("next_response_seconds", row.next_response_seconds),
            ("missed_after_seconds", row.missed_after_seconds),
        ] {
            if let Some(value) = value {
                if !(value.is_finite() && value > 0.0 && value <= MAX_SLA_SECONDS) {
                    return Err(ConfigError::Invalid {
                        key: format!("{row_prefix}{name}"),
                        message: format!(
                            "must be a positive number of seconds up to {MAX_SLA_SECONDS}, got {value}"
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}
