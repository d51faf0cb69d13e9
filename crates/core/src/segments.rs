//! Segments and rules: named boolean conditions over a customer's attributes and scores, defined
//! in config (`[[segments]]`), and an ordered policy list (`[[rules]]`, first match wins) that
//! maps a segment to exclusion or to a treatment: an SLA policy, an urgency weight, an action
//! override. Pure: matching a score and attributes, and checking the config.
//!
//! A treatment changes the score, so the segment that selects it may read attributes only (a
//! condition on a score would depend on itself). The customer's treatment is that of the first
//! rule carrying one whose segment matches; exclusion is decided by the first rule whose segment
//! matches, as before.

use crate::attributes::{AttributeValue, Attributes};
use crate::config::{ChannelSlaConfig, ConfigError, ScoringConfig};
use crate::domain::Action;
use crate::scoring::Score;
use serde::Deserialize;

/// The `[[segments]]` entries of the config.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SegmentConfig {
    /// The name queries use (`TopCustomers.segment`).
    pub name: String,
    /// Every one of these must hold.
    #[serde(default)]
    pub all: Vec<Condition>,
    /// At least one of these must hold (when any are given).
    #[serde(default)]
    pub any: Vec<Condition>,
}

/// One condition: `field op value`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// A score (`risk`, `sentiment`, `sentiment_trend`, `engagement`, `value`, `priority`,
    /// `open_threads`, `action`), `channel` (a channel the customer waits for an answer on: `eq`,
    /// `ne`, `in`), `language` (the ISO 639-1 language of a message the customer waits for an
    /// answer to: `eq`, `ne`, `in`), `intent` (the tenant's intent, by name, of a thread the
    /// customer waits for an answer in: `eq`, `ne`, `in`) or an attribute (`attributes.<key>`).
    pub field: String,
    /// `eq`, `ne`, `gt`, `gte`, `lt`, `lte`, `in` (value: a list), `exists` (value: true/false).
    pub op: String,
    /// What the field is compared with.
    pub value: toml::Value,
}

/// The `[[rules]]` entries of the config, in order: the first whose segment matches decides.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The segment the rule applies to.
    pub segment: String,
    /// Customers in the segment never appear in TopCustomers, ClaimNext or WatchPriorities.
    #[serde(default)]
    pub exclude: bool,
    /// Reply targets for the segment's customers, over the tenant's (what it leaves out comes
    /// from the tenant's policy, then `[scoring]`).
    #[serde(default)]
    pub sla: Option<RuleSla>,
    /// Multiplies the odds of the customer's priority inside its action's band (2: twice the
    /// odds; 0.5: half). Ranking order between actions is unchanged.
    #[serde(default)]
    pub urgency_weight: Option<f64>,
    /// The action the segment's customers get whenever scoring finds something to do (an
    /// action other than `none`): e.g. `rescue` for every complaint from a key account.
    #[serde(default)]
    pub action: Option<Action>,
}

impl RuleConfig {
    /// Whether the rule changes the score of its segment's customers (not only exclusion).
    pub fn treats(&self) -> bool {
        self.sla.is_some() || self.urgency_weight.is_some() || self.action.is_some()
    }
}

/// A rule's reply targets (`[rules.sla]`): every channel, then per channel.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuleSla {
    /// First reply due this long (business time) after the first unanswered message.
    pub first_response_seconds: Option<f64>,
    /// Next reply, in a thread already answered once, due this long after.
    pub next_response_seconds: Option<f64>,
    /// Missed after this long unanswered (wall clock).
    pub missed_after_seconds: Option<f64>,
    /// Per-channel targets (`[rules.sla.channel_sla.twitter]`).
    pub channel_sla: std::collections::BTreeMap<crate::domain::Channel, ChannelSlaConfig>,
}

impl RuleSla {
    /// The every-channel row.
    pub fn defaults(&self) -> ChannelSlaConfig {
        ChannelSlaConfig {
            first_response_seconds: self.first_response_seconds,
            next_response_seconds: self.next_response_seconds,
            missed_after_seconds: self.missed_after_seconds,
        }
    }
}

const NUMERIC_FIELDS: [&str; 7] = [
    "risk",
    "sentiment",
    "sentiment_trend",
    "engagement",
    "value",
    "priority",
    "open_threads",
];
const OPS: [&str; 8] = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "exists"];

/// Most rules (each treatment is a model a tenant keeps).
pub const MAX_RULES: usize = 64;
/// Most segments in a config (checked and looked up in time linear in their count).
pub const MAX_SEGMENTS: usize = 10_000;
/// Most conditions in one segment's `all` and `any` together.
pub const MAX_CONDITIONS_PER_SEGMENT: usize = 64;

/// Checks segments and rules, naming the key (`segments[0].all[1].field`); rule SLA targets are
/// checked against `scoring`'s policies.
pub fn validate(
    segments: &[SegmentConfig],
    rules: &[RuleConfig],
    scoring: &ScoringConfig,
) -> Result<(), ConfigError> {
    if rules.len() > MAX_RULES {
        return Err(ConfigError::invalid(
            "rules",
            format!("at most {MAX_RULES} rules, got {}", rules.len()),
        ));
    }
    if segments.len() > MAX_SEGMENTS {
        return Err(ConfigError::invalid(
            "segments",
            format!("at most {MAX_SEGMENTS} segments, got {}", segments.len()),
        ));
    }
    let mut by_name: std::collections::HashMap<&str, &SegmentConfig> =
        std::collections::HashMap::with_capacity(segments.len());
    for (index, segment) in segments.iter().enumerate() {
        if segment.name.is_empty() {
            return Err(ConfigError::invalid(
                &format!("segments[{index}].name"),
                "must not be empty",
            ));
        }
        if by_name.insert(&segment.name, segment).is_some() {
            return Err(ConfigError::invalid(
                &format!("segments[{index}].name"),
                format!("{:?} is defined twice", segment.name),
            ));
        }
        if segment.all.len() + segment.any.len() > MAX_CONDITIONS_PER_SEGMENT {
            return Err(ConfigError::invalid(
                &format!("segments[{index}]"),
                format!(
                    "at most {MAX_CONDITIONS_PER_SEGMENT} conditions in all and any together, got {}",
                    segment.all.len() + segment.any.len()
                ),
            ));
        }
        if segment.all.is_empty() && segment.any.is_empty() {
            return Err(ConfigError::invalid(
                &format!("segments[{index}]"),
                "needs at least one condition in all or any",
            ));
        }
        for (list, conditions) in [("all", &segment.all), ("any", &segment.any)] {
            for (at, condition) in conditions.iter().enumerate() {
                let key = |part: &str| format!("segments[{index}].{list}[{at}].{part}");
                check_condition(condition)
                    .map_err(|(part, message)| ConfigError::invalid(&key(part), message))?;
            }
        }
    }
    for (index, rule) in rules.iter().enumerate() {
        let Some(segment) = by_name.get(rule.segment.as_str()) else {
            return Err(ConfigError::invalid(
                &format!("rules[{index}].segment"),
                format!("no segment is named {:?}", rule.segment),
            ));
        };
        if !rule.treats() {
            continue;
        }
        let on_scores = segment
            .all
            .iter()
            .chain(&segment.any)
            .find(|condition| !condition.field.starts_with("attributes."));
        if let Some(condition) = on_scores {
            return Err(ConfigError::invalid(
                &format!("rules[{index}].segment"),
                format!(
                    "a rule setting sla, urgency_weight or action needs a segment over attributes \
                     only (scores depend on the rule); {:?} reads {}",
                    segment.name, condition.field
                ),
            ));
        }
        if let Some(weight) = rule.urgency_weight {
            if !(weight.is_finite() && (0.001..=1000.0).contains(&weight)) {
                return Err(ConfigError::invalid(
                    &format!("rules[{index}].urgency_weight"),
                    format!("must be a number from 0.001 to 1000, got {weight}"),
                ));
            }
        }
        if let Some(sla) = &rule.sla {
            let prefix = format!("rules[{index}].sla.");
            crate::scoring::check_sla_rows(&prefix, &sla.defaults(), &sla.channel_sla)?;
            let tenants = std::iter::once(None).chain(scoring.tenants.keys().map(Some));
            for tenant in tenants {
                let policy =
                    crate::scoring::SlaPolicy::for_rule(scoring, tenant.map(String::as_str), sla);
                if let Some(channel) = policy.missed_before_targets() {
                    return Err(ConfigError::invalid(
                        &format!("{prefix}missed_after_seconds"),
                        format!(
                            "is shorter than the reply targets it follows on {}",
                            channel.as_str()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn check_condition(condition: &Condition) -> Result<(), (&'static str, String)> {
    if !OPS.contains(&condition.op.as_str()) {
        return Err(("op", format!("must be one of {}", OPS.join(", "))));
    }
    let field = condition.field.as_str();
    let attribute = field.strip_prefix("attributes.");
    if field == "intent" {
        if !["eq", "ne", "in"].contains(&condition.op.as_str()) {
            return Err(("op", "must be eq, ne or in for intent".into()));
        }
        let names: Vec<&toml::Value> = match &condition.value {
            toml::Value::Array(values) if !values.is_empty() => values.iter().collect(),
            value => vec![value],
        };
        if !names
            .into_iter()
            .all(|value| value.as_str().is_some_and(|name| !name.is_empty()))
        {
            return Err(("value", "must name intents (IntentService)".into()));
        }
        return Ok(());
    }
    if field == "channel" || field == "language" {
        if !["eq", "ne", "in"].contains(&condition.op.as_str()) {
            return Err(("op", format!("must be eq, ne or in for {field}")));
        }
        let names: Vec<&toml::Value> = match &condition.value {
            toml::Value::Array(values) if !values.is_empty() => values.iter().collect(),
            value => vec![value],
        };
        let known = |value: &toml::Value| {
            value.as_str().is_some_and(|name| {
                if field == "channel" {
                    crate::domain::Channel::ALL
                        .iter()
                        .any(|c| c.as_str() == name)
                } else {
                    crate::domain::language_id(name) != 0
                }
            })
        };
        if !names.into_iter().all(known) {
            return Err((
                "value",
                if field == "channel" {
                    "must name channels (twitter, email, ...)".into()
                } else {
                    "must name languages by ISO 639-1 code (en, fr, de, ...)".into()
                },
            ));
        }
        return Ok(());
    }
    if attribute.is_none() && field != "action" && !NUMERIC_FIELDS.contains(&field) {
        return Err((
            "field",
            format!(
                "must be one of {}, action, channel, language, intent or attributes.<key>",
                NUMERIC_FIELDS.join(", ")
            ),
        ));
    }
    if attribute.is_some_and(|key| crate::attributes::validate(key, None).is_err()) {
        return Err((
            "field",
            "attribute keys are 1 to 64 of a-z, 0-9 and _".into(),
        ));
    }
    let values: Vec<&toml::Value> = match (&condition.op[..], &condition.value) {
        ("exists", toml::Value::Boolean(_)) => return Ok(()),
        ("exists", _) => return Err(("value", "must be true or false for exists".into())),
        ("in", toml::Value::Array(values)) if !values.is_empty() => values.iter().collect(),
        ("in", _) => return Err(("value", "must be a non-empty list for in".into())),
        (_, value) => vec![value],
    };
    for value in values {
        // NaN compares with nothing, so such a condition would silently never match.
        if let toml::Value::Float(number) = value {
            if !number.is_finite() {
                return Err(("value", format!("must be a finite number, got {number}")));
            }
        }
        match field {
            "action" => {
                let known = value
                    .as_str()
                    .is_some_and(|name| Action::ALL.iter().any(|a| a.as_str() == name));
                if !known {
                    return Err(("value", "must name an action (respond, rescue, ...)".into()));
                }
            }
            _ if attribute.is_none()
                && value
                    .as_float()
                    .or(value.as_integer().map(|i| i as f64))
                    .is_none() =>
            {
                return Err(("value", format!("must be a number for {field}")));
            }
            _ if attribute.is_some()
                && !matches!(
                    value,
                    toml::Value::String(_)
                        | toml::Value::Float(_)
                        | toml::Value::Integer(_)
                        | toml::Value::Boolean(_)
                ) =>
            {
                return Err(("value", "must be text, a number or true/false".into()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Segments and rules in force (replaced whole on a config reload).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// The segments, as configured.
    pub segments: Vec<SegmentConfig>,
    /// The rules, in order.
    pub rules: Vec<RuleConfig>,
    /// Each segment's position in `segments`, by name: lookups in constant time.
    by_name: std::collections::HashMap<String, usize>,
    /// How agents' skills are matched (the `[routing]` table).
    pub routing: crate::config::RoutingConfig,
}

impl Policy {
    /// The policy of these (validated) segments and rules.
    pub fn new(segments: Vec<SegmentConfig>, rules: Vec<RuleConfig>) -> Self {
        let by_name = segments
            .iter()
            .enumerate()
            .map(|(index, segment)| (segment.name.clone(), index))
            .collect();
        Self {
            segments,
            rules,
            by_name,
            routing: crate::config::RoutingConfig::default(),
        }
    }

    /// The same policy with routing rules `routing`.
    pub fn with_routing(mut self, routing: crate::config::RoutingConfig) -> Self {
        self.routing = routing;
        self
    }

    /// The segment named `name`.
    pub fn segment(&self, name: &str) -> Option<&SegmentConfig> {
        self.by_name
            .get(name)
            .and_then(|&index| self.segments.get(index))
    }

    /// The customer's treatment: 0 for none, else 1 + the position of the first rule carrying a
    /// treatment (among those rules, see [`Policy::treating_rules`]) whose segment matches.
    pub fn treatment_of(&self, attributes: Option<&Attributes>) -> usize {
        self.treating_rules()
            .position(|rule| {
                self.segment(&rule.segment)
                    .is_some_and(|segment| segment.matches_attributes(attributes))
            })
            .map_or(0, |position| position + 1)
    }

    /// The rules carrying a treatment, in order.
    pub fn treating_rules(&self) -> impl Iterator<Item = &RuleConfig> {
        self.rules.iter().filter(|rule| rule.treats())
    }

    /// Whether the first rule whose segment matches excludes the customer.
    pub fn excludes(
        &self,
        score: &Score,
        attributes: Option<&Attributes>,
        intents: &dyn IntentNamesOf,
    ) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        self.rules
            .iter()
            .find(|rule| {
                self.segment(&rule.segment)
                    .is_some_and(|segment| segment.matches_in(score, attributes, intents))
            })
            .is_some_and(|rule| rule.exclude)
    }
}

/// The names of a tenant's intent ids, for `intent` conditions (fetched only when a condition
/// reads them).
pub trait IntentNamesOf {
    /// Whether intent id `id` is named `name` in the tenant's table.
    fn is_named(&self, id: u16, name: &str) -> bool;
}

/// No intent names: an `intent` condition holds for no intent.
pub struct NoIntents;

impl IntentNamesOf for NoIntents {
    fn is_named(&self, _id: u16, _name: &str) -> bool {
        false
    }
}

impl SegmentConfig {
    /// Whether a customer with `score` and `attributes` is in the segment, with no intent names
    /// (an `intent` condition holds for no intent).
    pub fn matches(&self, score: &Score, attributes: Option<&Attributes>) -> bool {
        self.matches_in(score, attributes, &NoIntents)
    }

    /// Whether a customer with `score` and `attributes` is in the segment, `intents` naming the
    /// tenant's intent ids.
    pub fn matches_in(
        &self,
        score: &Score,
        attributes: Option<&Attributes>,
        intents: &dyn IntentNamesOf,
    ) -> bool {
        self.all.iter().all(|c| c.holds(score, attributes, intents))
            && (self.any.is_empty() || self.any.iter().any(|c| c.holds(score, attributes, intents)))
    }

    /// Whether a customer with `attributes` is in a segment over attributes only (validation
    /// keeps treating rules to those); a condition on a score does not hold here.
    pub fn matches_attributes(&self, attributes: Option<&Attributes>) -> bool {
        let holds = |condition: &Condition| {
            condition.field.starts_with("attributes.")
                && condition.holds_on(condition.field_of_attributes(attributes))
        };
        self.all.iter().all(holds) && (self.any.is_empty() || self.any.iter().any(holds))
    }
}

/// A comparable value of a field.
enum Field<'a> {
    Number(f64),
    Text(&'a str),
    Flag(bool),
    Missing,
}

impl Condition {
    fn field_of<'a>(&'a self, score: &'a Score, attributes: Option<&'a Attributes>) -> Field<'a> {
        match self.field.as_str() {
            "risk" => Field::Number(score.retention_risk),
            "sentiment" => Field::Number(score.sentiment),
            "sentiment_trend" => Field::Number(score.sentiment_trend),
            "engagement" => Field::Number(score.engagement),
            "value" => Field::Number(score.lifetime_value),
            "priority" => Field::Number(score.priority),
            "open_threads" => Field::Number(f64::from(score.open_threads)),
            "action" => Field::Text(score.action.as_str()),
            _ => self.field_of_attributes(attributes),
        }
    }

    fn field_of_attributes<'a>(&'a self, attributes: Option<&'a Attributes>) -> Field<'a> {
        let key = self
            .field
            .strip_prefix("attributes.")
            .unwrap_or(&self.field);
        match attributes.and_then(|a| a.values.get(key)) {
            Some(AttributeValue::Number(number)) => Field::Number(*number),
            Some(AttributeValue::Text(text)) => Field::Text(text),
            Some(AttributeValue::Flag(flag)) => Field::Flag(*flag),
            None => Field::Missing,
        }
    }

    /// Whether the condition holds; a missing attribute satisfies only `ne` and `exists = false`.
    pub fn holds(
        &self,
        score: &Score,
        attributes: Option<&Attributes>,
        intents: &dyn IntentNamesOf,
    ) -> bool {
        // The set-valued fields: whether the customer waits on a channel, in a language, about an
        // intent the condition names.
        match self.field.as_str() {
            "intent" => {
                return self.holds_for_names(|name| {
                    score
                        .waiting_intents
                        .iter()
                        .any(|id| intents.is_named(*id, name))
                })
            }
            "channel" => {
                return self.holds_for_names(|name| {
                    crate::domain::Channel::ALL
                        .iter()
                        .find(|c| c.as_str() == name)
                        .is_some_and(|channel| score.waits_on(*channel))
                })
            }
            "language" => {
                return self
                    .holds_for_names(|code| score.waits_in(crate::domain::language_id(code)))
            }
            _ => {}
        }
        self.holds_on(self.field_of(score, attributes))
    }

    /// `eq`, `ne` or `in` over names, `waits` saying whether the customer waits on one.
    fn holds_for_names(&self, waits: impl Fn(&str) -> bool) -> bool {
        let waits = |value: &toml::Value| value.as_str().is_some_and(&waits);
        match (self.op.as_str(), &self.value) {
            ("in", toml::Value::Array(values)) => values.iter().any(waits),
            ("ne", value) => !waits(value),
            (_, value) => waits(value),
        }
    }

    fn holds_on(&self, field: Field<'_>) -> bool {
        let compare = |value: &toml::Value| -> Option<std::cmp::Ordering> {
            match (&field, value) {
                (Field::Number(a), toml::Value::Float(b)) => a.partial_cmp(b),
                (Field::Number(a), toml::Value::Integer(b)) => a.partial_cmp(&(*b as f64)),
                (Field::Text(a), toml::Value::String(b)) => Some(a.cmp(&b.as_str())),
                (Field::Flag(a), toml::Value::Boolean(b)) => Some(a.cmp(b)),
                _ => None,
            }
        };
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self.op.as_str() {
            "exists" => self.value.as_bool() == Some(!matches!(field, Field::Missing)),
            "in" => self
                .value
                .as_array()
                .is_some_and(|values| values.iter().any(|v| compare(v) == Some(Equal))),
            "eq" => compare(&self.value) == Some(Equal),
            "ne" => compare(&self.value) != Some(Equal),
            "gt" => compare(&self.value) == Some(Greater),
            "gte" => matches!(compare(&self.value), Some(Greater | Equal)),
            "lt" => compare(&self.value) == Some(Less),
            "lte" => matches!(compare(&self.value), Some(Less | Equal)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn bad_segments_and_rules_are_refused_naming_the_key() {
        for (text, key) in [
            (
                "[[segments]]\nname = \"a\"\nall = [{ field = \"risk\", op = \"like\", value = 1 }]",
                "segments[0].all[0].op",
            ),
            (
                "[[segments]]\nname = \"a\"\nany = [{ field = \"colour\", op = \"eq\", value = 1 }]",
                "segments[0].any[0].field",
            ),
            (
                "[[segments]]\nname = \"a\"\nall = [{ field = \"risk\", op = \"gt\", value = \"high\" }]",
                "segments[0].all[0].value",
            ),
            (
                "[[segments]]\nname = \"a\"\nall = [{ field = \"action\", op = \"eq\", value = \"call\" }]",
                "segments[0].all[0].value",
            ),
            // Issue 24 item 16: NaN was accepted and never matched.
            (
                "[[segments]]\nname = \"a\"\nall = [{ field = \"risk\", op = \"gt\", value = nan }]",
                "segments[0].all[0].value must be a finite number",
            ),
            (
                "[[segments]]\nname = \"a\"\nany = [{ field = \"attributes.score\", op = \"in\", value = [1.0, -inf] }]",
                "segments[0].any[0].value must be a finite number",
            ),
            ("[[segments]]\nname = \"a\"", "segments[0]"),
            ("[[rules]]\nsegment = \"nope\"\nexclude = true", "rules[0].segment"),
            (
                "[[segments]]\nname = \"a\"\nall = [{ field = \"risk\", op = \"gt\", value = 0.5 }]\n[[rules]]\nsegment = \"a\"\nurgency_weight = 2.0",
                "rules[0].segment",
            ),
            (
                "[[segments]]\nname = \"a\"\nall = [{ field = \"attributes.tier\", op = \"eq\", value = \"vip\" }]\n[[rules]]\nsegment = \"a\"\nurgency_weight = 0.0",
                "rules[0].urgency_weight",
            ),
            (
                "[[segments]]\nname = \"a\"\nall = [{ field = \"attributes.tier\", op = \"eq\", value = \"vip\" }]\n[[rules]]\nsegment = \"a\"\n[rules.sla.channel_sla.email]\nfirst_response_seconds = -5",
                "rules[0].sla.channel_sla.email.first_response_seconds",
            ),
            (
                "[[segments]]\nname = \"a\"\nall = [{ field = \"attributes.tier\", op = \"eq\", value = \"vip\" }]\n[[rules]]\nsegment = \"a\"\nsla = { missed_after_seconds = 60 }",
                "rules[0].sla.missed_after_seconds",
            ),
            (
                "[[segments]]\nname = \"a\"\nall = [{ field = \"attributes.tier\", op = \"eq\", value = \"vip\" }]\n[[rules]]\nsegment = \"a\"\naction = \"call\"",
                "unknown variant `call`",
            ),
        ] {
            let error = Config::from_toml(text).unwrap_err().to_string();
            assert!(error.contains(key), "{text}: {error}");
        }
    }

    #[test]
    fn conditions_read_scores_and_attributes() {
        let config = Config::from_toml(
            "[[segments]]\nname = \"vip\"\nall = [{ field = \"attributes.tier\", op = \"eq\", value = \"vip\" }, { field = \"risk\", op = \"gte\", value = 0.5 }]\n\
             [[segments]]\nname = \"untiered\"\nall = [{ field = \"attributes.tier\", op = \"exists\", value = false }]\n\
             [[rules]]\nsegment = \"untiered\"\nexclude = true",
        )
        .unwrap();
        let policy = config.policy();
        let scoring = crate::config::ScoringConfig::default();
        let model = crate::scoring::TenantModel::new(&scoring, None);
        let base =
            crate::scoring::evaluate(&crate::scoring::Summary::default(), 0, &scoring, &model);
        let score = Score {
            retention_risk: 0.7,
            ..base.clone()
        };
        let mut vip = Attributes::default();
        vip.values
            .insert("tier".into(), AttributeValue::Text("vip".into()));
        let vip_segment = policy.segment("vip").unwrap();
        assert!(vip_segment.matches(&score, Some(&vip)));
        let calm = Score {
            retention_risk: 0.2,
            ..base
        };
        assert!(!vip_segment.matches(&calm, Some(&vip)));
        assert!(
            !vip_segment.matches(&score, None),
            "a missing attribute is not eq"
        );
        assert!(
            policy.excludes(&score, None, &NoIntents),
            "no tier: excluded by the rule"
        );
        assert!(!policy.excludes(&score, Some(&vip), &NoIntents));
    }

    #[test]
    fn the_first_matching_treating_rule_picks_the_treatment() {
        let config = Config::from_toml(
            "[[segments]]\nname = \"vip\"\nall = [{ field = \"attributes.tier\", op = \"eq\", value = \"vip\" }]\n\
             [[segments]]\nname = \"emea\"\nany = [{ field = \"attributes.region\", op = \"in\", value = [\"uk\", \"de\"] }]\n\
             [[segments]]\nname = \"angry\"\nall = [{ field = \"sentiment\", op = \"lt\", value = -0.5 }]\n\
             [[rules]]\nsegment = \"angry\"\nexclude = false\n\
             [[rules]]\nsegment = \"vip\"\nurgency_weight = 3.0\n\
             [[rules]]\nsegment = \"emea\"\naction = \"rescue\"",
        )
        .unwrap();
        let policy = config.policy();
        let with = |pairs: &[(&str, &str)]| {
            let mut attributes = Attributes::default();
            for (key, value) in pairs {
                attributes
                    .values
                    .insert(key.to_string(), AttributeValue::Text(value.to_string()));
            }
            attributes
        };
        assert_eq!(policy.treating_rules().count(), 2);
        assert_eq!(policy.treatment_of(None), 0);
        assert_eq!(policy.treatment_of(Some(&with(&[("tier", "vip")]))), 1);
        assert_eq!(policy.treatment_of(Some(&with(&[("region", "de")]))), 2);
        assert_eq!(
            policy.treatment_of(Some(&with(&[("region", "de"), ("tier", "vip")]))),
            1,
            "first match wins"
        );
        assert_eq!(policy.treatment_of(Some(&with(&[("tier", "gold")]))), 0);
    }

    /// Issue 24 item 11: counts are capped in the config's ranges (naming the key), and a
    /// rule's segment is found by name among many (validation and lookups no longer search the
    /// list for every segment or evaluation).
    #[test]
    fn segment_counts_are_capped_and_found_by_name() {
        let segment = |n: usize| {
            format!(
                "[[segments]]\nname = \"s{n}\"\nall = [{{ field = \"attributes.tier\", op = \"eq\", value = \"t{n}\" }}]\n"
            )
        };
        let many: String = (0..MAX_SEGMENTS).map(segment).collect();
        let rules = "[[rules]]\nsegment = \"s9999\"\naction = \"rescue\"\n";
        let config = Config::from_toml(&format!("{many}{rules}")).expect("at the cap");
        let policy = config.policy();
        assert_eq!(
            policy.segment("s9999").map(|s| s.name.as_str()),
            Some("s9999")
        );
        assert!(policy.segment("s10000").is_none());
        let over = format!("{many}{}", segment(MAX_SEGMENTS));
        let refused = Config::from_toml(&over).unwrap_err().to_string();
        assert!(refused.contains("segments at most"), "{refused}");
        let conditions: Vec<String> = (0..=MAX_CONDITIONS_PER_SEGMENT)
            .map(|n| format!("{{ field = \"attributes.k{n}\", op = \"exists\", value = true }}"))
            .collect();
        let wide = format!(
            "[[segments]]\nname = \"wide\"\nany = [{}]\n",
            conditions.join(", ")
        );
        let refused = Config::from_toml(&wide).unwrap_err().to_string();
        assert!(refused.contains("segments[0] at most"), "{refused}");
    }
}
