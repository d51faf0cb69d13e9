//! PLACEHOLDER until the real calendar lands: always open.
use serde::Deserialize;
use std::collections::BTreeMap;

/// Business hours as written in the config file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BusinessHoursConfig {
    /// IANA time zone.
    pub time_zone: String,
    /// Open ranges per day.
    pub weekly: BTreeMap<String, Vec<String>>,
    /// Closed days.
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// The parsed calendar.
#[derive(Clone, Debug, PartialEq)]
pub struct BusinessCalendar;

/// Why a calendar was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct CalendarError {
    /// Config key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl BusinessCalendar {
    /// Always open.
    pub fn always_open() -> Self {
        Self
    }
    /// Parses.
    pub fn from_config(
        _config: &BusinessHoursConfig,
        key_prefix: &str,
    ) -> Result<Self, CalendarError> {
        Err(CalendarError {
            key: key_prefix.to_string(),
            message: "not supported yet".into(),
        })
    }
    /// Whether always open.
    pub fn is_always_open(&self) -> bool {
        true
    }
    /// Business seconds.
    pub fn business_seconds_between(&self, from_ms: i64, to_ms: i64) -> f64 {
        (to_ms.saturating_sub(from_ms)).max(0) as f64 / 1000.0
    }
    /// Due instant.
    pub fn add_business_seconds(&self, from_ms: i64, business_seconds: f64) -> Option<i64> {
        Some(from_ms.saturating_add((business_seconds * 1000.0) as i64))
    }
}
