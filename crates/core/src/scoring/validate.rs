//! Validation of the `[scoring]` section, here because only scoring knows what its policies
//! mean (an SLA row resolved per channel, a calendar that parses): the config module defines the
//! section and never imports scoring.

use super::SlaPolicy;
use crate::config::{check_range, ChannelSlaConfig, ConfigError, ScoringConfig};

impl ScoringConfig {
    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            (
                "scoring.engagement_half_life_seconds",
                self.engagement_half_life_seconds,
            ),
            (
                "scoring.engagement_baseline_half_life_seconds",
                self.engagement_baseline_half_life_seconds,
            ),
            ("scoring.engagement_scale", self.engagement_scale),
            (
                "scoring.sentiment_recent_half_life_seconds",
                self.sentiment_recent_half_life_seconds,
            ),
            (
                "scoring.sentiment_long_half_life_seconds",
                self.sentiment_long_half_life_seconds,
            ),
            (
                "scoring.goodwill_half_life_seconds",
                self.goodwill_half_life_seconds,
            ),
            (
                "scoring.sentiment_prior_weight",
                self.sentiment_prior_weight,
            ),
            ("scoring.default_gap_seconds", self.default_gap_seconds),
            ("scoring.min_gap_seconds", self.min_gap_seconds),
            ("scoring.reply_sla_seconds", self.reply_sla_seconds),
            (
                "scoring.next_reply_sla_seconds",
                self.next_reply_sla_seconds,
            ),
            ("scoring.missed_after_seconds", self.missed_after_seconds),
            (
                "scoring.retention_horizon_seconds",
                self.retention_horizon_seconds,
            ),
            (
                "scoring.retention_refit_seconds",
                self.retention_refit_seconds,
            ),
            (
                "scoring.noise.cross_post_window_seconds",
                self.noise.cross_post_window_seconds,
            ),
            (
                "scoring.noise.flood_window_seconds",
                self.noise.flood_window_seconds,
            ),
        ];
        for (key, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be a positive number, got {value}"),
                ));
            }
        }
        check_range(
            "scoring.noise.flood_copies",
            u64::from(self.noise.flood_copies),
            2,
            1_000_000,
        )?;
        check_range(
            "scoring.max_events_per_customer",
            self.max_events_per_customer as u64,
            4,
            10_000_000,
        )?;
        if self.engagement_baseline_half_life_seconds <= self.engagement_half_life_seconds {
            return Err(ConfigError::invalid(
                "scoring.engagement_baseline_half_life_seconds",
                "must be longer than scoring.engagement_half_life_seconds".to_string(),
            ));
        }
        if self.sentiment_long_half_life_seconds <= self.sentiment_recent_half_life_seconds {
            return Err(ConfigError::invalid(
                "scoring.sentiment_long_half_life_seconds",
                "must be longer than scoring.sentiment_recent_half_life_seconds".to_string(),
            ));
        }
        let non_negative = self
            .kind_weights
            .iter()
            .map(|(kind, weight)| (format!("scoring.kind_weights.{}", kind.as_str()), *weight))
            .chain(self.channel_weights.iter().map(|(channel, weight)| {
                (
                    format!("scoring.channel_weights.{}", channel.as_str()),
                    *weight,
                )
            }))
            .chain([
                (
                    "scoring.risk.engagement_drop".to_string(),
                    self.risk.engagement_drop,
                ),
                (
                    "scoring.risk.negative_sentiment".to_string(),
                    self.risk.negative_sentiment,
                ),
                (
                    "scoring.risk.worsening_sentiment".to_string(),
                    self.risk.worsening_sentiment,
                ),
                (
                    "scoring.risk.open_complaints".to_string(),
                    self.risk.open_complaints,
                ),
                (
                    "scoring.risk.positive_contact".to_string(),
                    self.risk.positive_contact,
                ),
                ("scoring.respond.wait".to_string(), self.respond.wait),
                (
                    "scoring.respond.needs_reply".to_string(),
                    self.respond.needs_reply,
                ),
                (
                    "scoring.respond.negativity".to_string(),
                    self.respond.negativity,
                ),
                ("scoring.respond.reach".to_string(), self.respond.reach),
                (
                    "scoring.respond.public_channel".to_string(),
                    self.respond.public_channel,
                ),
                (
                    "scoring.respond.messages".to_string(),
                    self.respond.messages,
                ),
                (
                    "scoring.respond.customer_value".to_string(),
                    self.respond.customer_value,
                ),
                (
                    "scoring.respond.retention_risk".to_string(),
                    self.respond.retention_risk,
                ),
                (
                    "scoring.respond.staleness".to_string(),
                    self.respond.staleness,
                ),
                (
                    "scoring.respond.cancel_threat".to_string(),
                    self.respond.cancel_threat,
                ),
                (
                    "scoring.respond.legal_threat".to_string(),
                    self.respond.legal_threat,
                ),
                (
                    "scoring.respond.manager_request".to_string(),
                    self.respond.manager_request,
                ),
                (
                    "scoring.respond.repeat_contact".to_string(),
                    self.respond.repeat_contact,
                ),
                ("scoring.respond.safety".to_string(), self.respond.safety),
                (
                    "scoring.actions.advocate_min_engagement".to_string(),
                    self.actions.advocate_min_engagement,
                ),
                (
                    "scoring.actions.nurture_min_engagement".to_string(),
                    self.actions.nurture_min_engagement,
                ),
            ]);
        for (key, value) in non_negative {
            if !(value.is_finite() && value >= 0.0) {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("must be a finite number >= 0, got {value}"),
                });
            }
        }
        if !self.risk.bias.is_finite() {
            return Err(ConfigError::invalid(
                "scoring.risk.bias",
                "must be finite".to_string(),
            ));
        }
        let unit = [
            (
                "scoring.actions.rescue_min_risk",
                self.actions.rescue_min_risk,
            ),
            (
                "scoring.actions.advocate_min_sentiment",
                self.actions.advocate_min_sentiment,
            ),
        ];
        for (key, value) in unit {
            if !(value.is_finite() && (-1.0..=1.0).contains(&value)) {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be within [-1, 1], got {value}"),
                ));
            }
        }
        if self.retention_min_customers_to_fit < 10 {
            return Err(ConfigError::invalid(
                "scoring.retention_min_customers_to_fit",
                format!(
                    "must be at least 10, got {}",
                    self.retention_min_customers_to_fit
                ),
            ));
        }
        self.validate_sla()
    }

    /// Checks the SLA policies: every target positive and finite, business hours that parse and
    /// have open hours, a missed horizon no shorter than the targets it follows.
    fn validate_sla(&self) -> Result<(), ConfigError> {
        let root = ChannelSlaConfig {
            first_response_seconds: Some(self.reply_sla_seconds),
            next_response_seconds: Some(self.next_reply_sla_seconds),
            missed_after_seconds: Some(self.missed_after_seconds),
        };
        super::check_sla_rows("scoring.", &root, &self.channel_sla)?;
        if let Some(hours) = &self.business_hours {
            crate::calendar::BusinessCalendar::from_config(hours, "scoring.business_hours")
                .map_err(|error| ConfigError::Invalid {
                    key: error.key,
                    message: error.message,
                })?;
        }
        for (tenant, policy) in &self.tenants {
            let prefix = format!("scoring.tenants.{tenant}.");
            super::check_sla_rows(&prefix, &policy.defaults, &policy.channel_sla)?;
            if let Some(hours) = &policy.business_hours {
                crate::calendar::BusinessCalendar::from_config(
                    hours,
                    &format!("{prefix}business_hours"),
                )
                .map_err(|error| ConfigError::Invalid {
                    key: error.key,
                    message: error.message,
                })?;
            }
        }
        // Every resolved row: the missed horizon must not come before the targets.
        for tenant in std::iter::once(None).chain(self.tenants.keys().map(Some)) {
            let policy = SlaPolicy::new(self, tenant.map(String::as_str));
            if let Some(channel) = policy.missed_before_targets() {
                let key = match tenant {
                    Some(tenant) => format!("scoring.tenants.{tenant}.missed_after_seconds"),
                    None => "scoring.missed_after_seconds".to_string(),
                };
                return Err(ConfigError::Invalid {
                    key,
                    message: format!(
                        "is shorter than the reply targets it follows on {}",
                        channel.as_str()
                    ),
                });
            }
        }
        Ok(())
    }
}
