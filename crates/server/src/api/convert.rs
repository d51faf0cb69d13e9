//! Proto ⇄ domain conversion. Incoming messages are destructured field by field, so a new proto
//! field fails to compile until it is handled here; every check names the offending field.

use crate::domain::{Action, Channel, Direction, Interaction, Kind, ReplyNeed, TimestampMs};
use crate::pb;
use crate::scoring::{FactorGroup, Score};
use crate::sentiment::language::Language;
use crate::sentiment::{Sentiment, SentimentLabel};
use rapport_core::attributes::AttributeValue;
use rapport_core::identity::{self, Identifier, IdentifierKind};
use rapport_core::store::intents::IntentNames;

/// Input limits from the server config.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest accepted text, in bytes.
    pub max_text_bytes: usize,
    /// Longest accepted tenant, customer, event or thread id, in bytes.
    pub max_id_bytes: usize,
    /// How far ahead of the server clock an event may be stamped, in milliseconds.
    pub max_future_skew_ms: i64,
    /// Most identifiers per interaction or link request (`identity.max_identifiers_per_request`).
    pub max_identifiers: usize,
    /// Values refused as identifiers besides the built-in placeholders (`identity.blocked_values`).
    pub blocked_identifiers: std::sync::Arc<[String]>,
}

/// Validates and normalises typed identifiers (`field[i].type`, `field[i].value`, ...); a
/// handle's channel defaults to `default_channel` (`None`: it must be given).
pub fn identifiers_from_pb(
    field: &str,
    identifiers: Vec<pb::Identifier>,
    default_channel: Option<Channel>,
    limits: &Limits,
) -> Result<Vec<Identifier>, FieldError> {
    if identifiers.len() > limits.max_identifiers {
        return Err(FieldError::new(
            field.to_string(),
            format!(
                "{} identifiers, at most {} allowed (identity.max_identifiers_per_request)",
                identifiers.len(),
                limits.max_identifiers
            ),
        ));
    }
    identifiers
        .into_iter()
        .enumerate()
        .map(|(index, identifier)| {
            let at = |part: &str| format!("{field}[{index}].{part}");
            let kind = match pb::IdentifierType::try_from(identifier.r#type) {
                Ok(pb::IdentifierType::ExternalId) => IdentifierKind::ExternalId,
                Ok(pb::IdentifierType::Email) => IdentifierKind::Email,
                Ok(pb::IdentifierType::Phone) => IdentifierKind::Phone,
                Ok(pb::IdentifierType::Handle) => IdentifierKind::Handle,
                Ok(pb::IdentifierType::Unspecified) => {
                    return Err(FieldError::new(at("type"), "is required"))
                }
                Err(_) => {
                    return Err(FieldError::new(
                        at("type"),
                        format!("unknown value {}", identifier.r#type),
                    ))
                }
            };
            if identifier.value.len() > limits.max_id_bytes {
                return Err(FieldError::new(
                    at("value"),
                    format!(
                        "is {} bytes, at most {} allowed",
                        identifier.value.len(),
                        limits.max_id_bytes
                    ),
                ));
            }
            if identifier.value.chars().any(is_invisible_or_bidi) {
                return Err(FieldError::new(
                    at("value"),
                    "must not contain bidirectional controls or zero-width characters",
                ));
            }
            let channel = match (identifier.channel, default_channel) {
                (0, Some(channel)) => channel,
                (0, None) if kind == IdentifierKind::Handle => {
                    return Err(FieldError::new(at("channel"), "is required for a handle"))
                }
                (0, None) => Channel::Web,
                (number, _) => channel_from_pb(number)
                    .map_err(|error| FieldError::new(at("channel"), error.message))?,
            };
            let identifier = identity::normalise(
                kind,
                &identifier.value,
                channel,
                &limits.blocked_identifiers,
            )
            .map_err(|error| FieldError::new(at("value"), error.to_string()))?;
            // The id rapport would derive from it is an id like any other (see [`check_id`]).
            let derived = identifier.derived_customer_id();
            if derived.len() > limits.max_id_bytes {
                return Err(FieldError::new(
                    at("value"),
                    format!(
                        "makes a customer id of {} bytes ({:?}…), at most {} allowed \
                         (server.max_id_bytes)",
                        derived.len(),
                        rapport_core::domain::prefix_at_char_boundary(&derived, 24),
                        limits.max_id_bytes
                    ),
                ));
            }
            Ok(identifier)
        })
        .collect()
}

/// An invalid field: becomes INVALID_ARGUMENT with "field: message".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Name of the offending field, e.g. `occurred_at` or `texts[3]`.
    pub field: std::borrow::Cow<'static, str>,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// An error on `field`.
    pub fn new(
        field: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error on element `index` of a repeated field (`texts` → `texts[3]`).
    pub fn at_index(self, index: usize) -> Self {
        Self {
            field: format!("{}[{index}]", self.field).into(),
            message: self.message,
        }
    }
}

/// The one id rule: every tenant, customer, event, thread, agent or other customer id a request
/// names, in every call (ingest, reads, claims, links, merges, upserts), is checked here and
/// nowhere else. An id is present (when required), at most `server.max_id_bytes` bytes, free of
/// control characters, bidirectional controls (RLO and kin) and zero-width characters, and not
/// whitespace only. Ids rapport derives from identifiers (`~email:ann@example.com`) keep the same
/// rule: an identifier whose derived id would be longer than the limit is refused where it enters
/// (see [`identifiers_from_pb`]), so every id the service hands out (TopCustomers, ClaimNext) is
/// one every call accepts back.
pub fn check_id(
    field: &'static str,
    id: &str,
    required: bool,
    limits: &Limits,
) -> Result<(), FieldError> {
    if id.is_empty() {
        return if required {
            Err(FieldError::new(field, "must not be empty"))
        } else {
            Ok(())
        };
    }
    if id.len() > limits.max_id_bytes {
        return Err(FieldError::new(
            field,
            format!(
                "is {} bytes, at most {} allowed",
                id.len(),
                limits.max_id_bytes
            ),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    if id.chars().all(char::is_whitespace) {
        return Err(FieldError::new(field, "must not be whitespace only"));
    }
    if id.chars().any(is_invisible_or_bidi) {
        return Err(FieldError::new(
            field,
            "must not contain bidirectional controls or zero-width characters",
        ));
    }
    Ok(())
}

/// Largest `value` a new event may carry: sums of any realistic number of them stay finite (two
/// values of 1.7e308 made `lifetime_value` +inf).
pub const MAX_VALUE: f64 = 1e15;

/// Whether `c` reorders or hides text: bidirectional controls (RLO and kin) and zero-width
/// characters, which make two different ids look alike.
fn is_invisible_or_bidi(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{061C}' | '\u{FEFF}')
}

/// Cluster mode's extra rules: events are partitioned by customer id, so one is required and
/// typed identifiers (which may link customers of different partitions) are refused.
pub fn check_clustered_interaction(interaction: Interaction) -> Result<Interaction, FieldError> {
    if interaction.customer_id.is_empty() {
        return Err(FieldError::new(
            "customer_id",
            "is required in cluster mode (events are partitioned by it)",
        ));
    }
    if !interaction.identifiers.is_empty() {
        return Err(FieldError::new(
            "identifiers",
            "are not supported in cluster mode yet (a link may join customers of two partitions)",
        ));
    }
    Ok(interaction)
}

/// Checks what only newly ingested events must satisfy (the write-ahead log replays events accepted
/// under older rules without it): a `value` of at most [`MAX_VALUE`]. Ids are checked by
/// [`check_id`] in [`interaction_from_pb`].
pub fn check_new_interaction(interaction: &Interaction) -> Result<(), FieldError> {
    if interaction.value > MAX_VALUE {
        return Err(FieldError::new(
            "value",
            format!("must be at most {MAX_VALUE}, got {}", interaction.value),
        ));
    }
    Ok(())
}

/// Checks a text against the size limit.
pub fn check_text(field: &'static str, text: &str, limits: &Limits) -> Result<(), FieldError> {
    if text.len() > limits.max_text_bytes {
        return Err(FieldError::new(
            field,
            format!(
                "is {} bytes, at most {} allowed",
                text.len(),
                limits.max_text_bytes
            ),
        ));
    }
    Ok(())
}

/// Timestamp → milliseconds since the epoch; refuses times before 1970 and invalid nanos.
pub fn timestamp_ms(
    field: &'static str,
    timestamp: &prost_types::Timestamp,
) -> Result<TimestampMs, FieldError> {
    if timestamp.seconds < 0 {
        return Err(FieldError::new(
            field,
            "must not be before 1970-01-01T00:00:00Z",
        ));
    }
    if !(0..1_000_000_000).contains(&timestamp.nanos) {
        return Err(FieldError::new(
            field,
            format!("nanos {} out of range", timestamp.nanos),
        ));
    }
    timestamp
        .seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(timestamp.nanos / 1_000_000)))
        .ok_or_else(|| FieldError::new(field, "is out of range"))
}

/// Milliseconds since the epoch → Timestamp.
pub fn to_timestamp(ms: TimestampMs) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// An optional `as_of`: the given time, or `now_ms` when unset.
pub fn as_of_ms(
    as_of: Option<&prost_types::Timestamp>,
    now_ms: TimestampMs,
) -> Result<TimestampMs, FieldError> {
    as_of.map_or(Ok(now_ms), |timestamp| timestamp_ms("as_of", timestamp))
}

/// Validates an incoming interaction against the limits and the server clock.
pub fn interaction_from_pb(
    interaction: pb::Interaction,
    limits: &Limits,
    now_ms: TimestampMs,
) -> Result<Interaction, FieldError> {
    let pb::Interaction {
        event_id,
        tenant_id,
        customer_id,
        channel,
        kind,
        direction,
        occurred_at,
        text,
        value,
        author_followers,
        thread_id,
        reply_need,
        identifiers,
        agent_id,
    } = interaction;
    check_id("event_id", &event_id, true, limits)?;
    check_id("tenant_id", &tenant_id, true, limits)?;
    check_id("customer_id", &customer_id, identifiers.is_empty(), limits)?;
    check_id("thread_id", &thread_id, false, limits)?;
    check_id("agent_id", &agent_id, false, limits)?;
    let channel = channel_from_pb(channel)?;
    let identifiers = identifiers_from_pb("identifiers", identifiers, Some(channel), limits)?;
    let kind = kind_from_pb(kind)?;
    let direction = direction_from_pb(direction)?;
    let occurred_at = occurred_at.ok_or_else(|| FieldError::new("occurred_at", "is required"))?;
    let occurred_at_ms = timestamp_ms("occurred_at", &occurred_at)?;
    if occurred_at_ms > now_ms.saturating_add(limits.max_future_skew_ms) {
        return Err(FieldError::new(
            "occurred_at",
            format!(
                "is more than {} s in the future",
                limits.max_future_skew_ms / 1000
            ),
        ));
    }
    check_text("text", &text, limits)?;
    let reply_need = match pb::ReplyNeed::try_from(reply_need) {
        Ok(pb::ReplyNeed::Unspecified) => crate::sentiment::infer_reply_need(&text),
        Ok(pb::ReplyNeed::Required) => ReplyNeed::Required,
        Ok(pb::ReplyNeed::NotRequired) => ReplyNeed::NotRequired,
        Err(_) => {
            return Err(FieldError::new(
                "reply_need",
                format!("unknown value {reply_need}"),
            ))
        }
    };
    if !value.is_finite() || value < 0.0 {
        return Err(FieldError::new(
            "value",
            format!("must be a finite amount >= 0, got {value}"),
        ));
    }
    let urgency_cues = if direction == Direction::Inbound {
        crate::sentiment::infer_urgency_cues(&text)
    } else {
        crate::domain::UrgencyCues::NONE
    };
    Ok(Interaction {
        event_id,
        tenant_id,
        customer_id,
        channel,
        kind,
        direction,
        occurred_at_ms,
        text,
        value,
        author_followers,
        thread_id,
        reply_need,
        urgency_cues,
        intent: None,
        language: None,
        identifiers,
        agent_id,
    })
}

/// A validated interaction → proto; inverse of [`interaction_from_pb`] (round-trip tests, fuzzing).
pub fn interaction_to_pb(interaction: &Interaction) -> pb::Interaction {
    let number = |position: Option<usize>| position.map_or(0, |index| index as i32 + 1);
    pb::Interaction {
        event_id: interaction.event_id.clone(),
        tenant_id: interaction.tenant_id.clone(),
        customer_id: interaction.customer_id.clone(),
        channel: channel_to_pb(interaction.channel),
        kind: number(Kind::ALL.iter().position(|k| *k == interaction.kind)),
        direction: match interaction.direction {
            Direction::Inbound => pb::Direction::Inbound as i32,
            Direction::Outbound => pb::Direction::Outbound as i32,
        },
        occurred_at: Some(to_timestamp(interaction.occurred_at_ms)),
        text: interaction.text.clone(),
        value: interaction.value,
        author_followers: interaction.author_followers,
        thread_id: interaction.thread_id.clone(),
        // Unclear is what an empty text reads as, so the log (which drops the text) replays it.
        reply_need: match interaction.reply_need {
            ReplyNeed::Unclear => pb::ReplyNeed::Unspecified,
            ReplyNeed::Required => pb::ReplyNeed::Required,
            ReplyNeed::NotRequired => pb::ReplyNeed::NotRequired,
        } as i32,
        identifiers: interaction
            .identifiers
            .iter()
            .map(identifier_to_pb)
            .collect(),
        agent_id: interaction.agent_id.clone(),
    }
}

/// Validated attribute changes from proto (`attributes[key]` named in errors): keys set, or
/// removed by a value with nothing set.
pub fn attribute_changes_from_pb(
    attributes: std::collections::HashMap<String, pb::AttributeValue>,
) -> Result<std::collections::BTreeMap<String, Option<AttributeValue>>, FieldError> {
    if attributes.len() > rapport_core::attributes::MAX_ATTRIBUTES {
        return Err(FieldError::new(
            "attributes",
            format!(
                "{} keys, at most {} allowed",
                attributes.len(),
                rapport_core::attributes::MAX_ATTRIBUTES
            ),
        ));
    }
    attributes
        .into_iter()
        .map(|(key, value)| {
            let value = value.value.map(|value| match value {
                pb::attribute_value::Value::Text(text) => AttributeValue::Text(text),
                pb::attribute_value::Value::Number(number) => AttributeValue::Number(number),
                pb::attribute_value::Value::Flag(flag) => AttributeValue::Flag(flag),
            });
            if let Some(AttributeValue::Text(text)) = &value {
                if text.chars().any(is_invisible_or_bidi) {
                    return Err(FieldError::new(
                        format!("attributes[{key}]"),
                        "must not contain bidirectional controls or zero-width characters",
                    ));
                }
            }
            rapport_core::attributes::validate(&key, value.as_ref())
                .map_err(|message| FieldError::new(format!("attributes[{key}]"), message))?;
            Ok((key, value))
        })
        .collect()
}

/// Attributes → proto.
pub fn attributes_to_pb(
    attributes: &rapport_core::attributes::Attributes,
) -> std::collections::HashMap<String, pb::AttributeValue> {
    attributes
        .values
        .iter()
        .map(|(key, value)| {
            let value = match value {
                AttributeValue::Text(text) => pb::attribute_value::Value::Text(text.clone()),
                AttributeValue::Number(number) => pb::attribute_value::Value::Number(*number),
                AttributeValue::Flag(flag) => pb::attribute_value::Value::Flag(*flag),
            };
            (key.clone(), pb::AttributeValue { value: Some(value) })
        })
        .collect()
}

/// A timeline touchpoint → proto (the sentiment's label from its polarity's sign; its language
/// detected from the kept snippet, as the event's full text is not kept).
pub fn touchpoint_to_pb(
    touchpoint: &crate::scoring::Touchpoint,
    languages: &crate::sentiment::language::LanguageDetector,
    intents: &IntentNames,
) -> pb::Touchpoint {
    let number = |position: Option<usize>| position.map_or(0, |index| index as i32 + 1);
    pb::Touchpoint {
        occurred_at: Some(to_timestamp(touchpoint.occurred_at_ms)),
        channel: channel_to_pb(touchpoint.channel),
        kind: number(Kind::ALL.iter().position(|k| *k == touchpoint.kind)),
        direction: match touchpoint.direction {
            Direction::Inbound => pb::Direction::Inbound as i32,
            Direction::Outbound => pb::Direction::Outbound as i32,
        },
        thread_id: touchpoint.thread_id.clone(),
        sentiment: touchpoint.sentiment.map(|(score, confidence)| {
            let label = if score > 0.0 {
                SentimentLabel::Positive
            } else if score < 0.0 {
                SentimentLabel::Negative
            } else {
                SentimentLabel::Neutral
            };
            sentiment_to_pb(
                &Sentiment {
                    label,
                    score,
                    confidence,
                },
                TextReading {
                    language: languages.detect(&touchpoint.snippet),
                    urgency_cues: touchpoint.urgency_cues,
                    intent: intents
                        .name(touchpoint.intent)
                        .map(|name| crate::domain::ReadIntent {
                            name: std::sync::Arc::clone(name),
                            confidence: 0.0,
                        }),
                },
            )
        }),
        agent_id: touchpoint.agent_id.clone(),
        unanswered: touchpoint.unanswered,
        snippet: touchpoint.snippet.clone(),
        value: touchpoint.value,
    }
}

/// A normalised identifier → proto (a handle's channel is the prefix of its value).
pub fn identifier_to_pb(identifier: &Identifier) -> pb::Identifier {
    let (r#type, channel, value) = match identifier.kind {
        IdentifierKind::ExternalId => (pb::IdentifierType::ExternalId, 0, identifier.value.clone()),
        IdentifierKind::Email => (pb::IdentifierType::Email, 0, identifier.value.clone()),
        IdentifierKind::Phone => (pb::IdentifierType::Phone, 0, identifier.value.clone()),
        IdentifierKind::Handle => {
            let (channel, handle) = identifier
                .value
                .split_once(':')
                .unwrap_or(("", identifier.value.as_str()));
            let number = Channel::ALL
                .into_iter()
                .find(|c| c.as_str() == channel)
                .map_or(0, channel_to_pb);
            (pb::IdentifierType::Handle, number, handle.to_string())
        }
    };
    pb::Identifier {
        r#type: r#type as i32,
        value,
        channel,
    }
}

/// A channel filter: `None` when unspecified.
pub fn channel_filter_from_pb(number: i32) -> Result<Option<Channel>, FieldError> {
    if number == 0 {
        return Ok(None);
    }
    channel_from_pb(number).map(Some)
}

/// Proto channel number → channel; unspecified and unknown numbers are errors.
pub fn channel_from_pb(number: i32) -> Result<Channel, FieldError> {
    use pb::Channel as P;
    Ok(match P::try_from(number) {
        Ok(P::Twitter) => Channel::Twitter,
        Ok(P::Facebook) => Channel::Facebook,
        Ok(P::Instagram) => Channel::Instagram,
        Ok(P::Linkedin) => Channel::Linkedin,
        Ok(P::ReviewSite) => Channel::ReviewSite,
        Ok(P::Forum) => Channel::Forum,
        Ok(P::Email) => Channel::Email,
        Ok(P::Chat) => Channel::Chat,
        Ok(P::Sms) => Channel::Sms,
        Ok(P::Phone) => Channel::Phone,
        Ok(P::Web) => Channel::Web,
        Ok(P::InStore) => Channel::InStore,
        Ok(P::Unspecified) => return Err(FieldError::new("channel", "is required")),
        Err(_) => {
            return Err(FieldError::new(
                "channel",
                format!("unknown value {number}"),
            ))
        }
    })
}

/// Proto kind number → kind; unspecified and unknown numbers are errors.
pub fn kind_from_pb(number: i32) -> Result<Kind, FieldError> {
    use pb::InteractionKind as P;
    Ok(match P::try_from(number) {
        Ok(P::Message) => Kind::Message,
        Ok(P::Mention) => Kind::Mention,
        Ok(P::Comment) => Kind::Comment,
        Ok(P::Reply) => Kind::Reply,
        Ok(P::Share) => Kind::Share,
        Ok(P::Like) => Kind::Like,
        Ok(P::Review) => Kind::Review,
        Ok(P::SupportTicket) => Kind::SupportTicket,
        Ok(P::Survey) => Kind::Survey,
        Ok(P::Purchase) => Kind::Purchase,
        Ok(P::PageView) => Kind::PageView,
        Ok(P::Follow) => Kind::Follow,
        Ok(P::Unfollow) => Kind::Unfollow,
        Ok(P::Unspecified) => return Err(FieldError::new("kind", "is required")),
        Err(_) => return Err(FieldError::new("kind", format!("unknown value {number}"))),
    })
}

fn direction_from_pb(number: i32) -> Result<Direction, FieldError> {
    use pb::Direction as P;
    match P::try_from(number) {
        Ok(P::Inbound) => Ok(Direction::Inbound),
        Ok(P::Outbound) => Ok(Direction::Outbound),
        Ok(P::Unspecified) => Err(FieldError::new("direction", "is required")),
        Err(_) => Err(FieldError::new(
            "direction",
            format!("unknown value {number}"),
        )),
    }
}

/// Proto action filter → optional action (unspecified = any).
pub fn action_filter_from_pb(number: i32) -> Result<Option<Action>, FieldError> {
    use pb::Action as P;
    Ok(Some(match P::try_from(number) {
        Ok(P::Unspecified) => return Ok(None),
        Ok(P::None) => Action::None,
        Ok(P::Respond) => Action::Respond,
        Ok(P::Rescue) => Action::Rescue,
        Ok(P::Advocate) => Action::Advocate,
        Ok(P::Nurture) => Action::Nurture,
        Err(_) => return Err(FieldError::new("action", format!("unknown value {number}"))),
    }))
}

/// Action → proto.
pub fn action_to_pb(action: Action) -> pb::Action {
    match action {
        Action::Respond => pb::Action::Respond,
        Action::Rescue => pb::Action::Rescue,
        Action::Advocate => pb::Action::Advocate,
        Action::Nurture => pb::Action::Nurture,
        Action::None => pb::Action::None,
    }
}

/// What the API shows of a text beside its sentiment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TextReading {
    /// The text's language (`None`: no language found, or not asked for).
    pub language: Option<Language>,
    /// Its urgency cues (none for outbound events).
    pub urgency_cues: crate::domain::UrgencyCues,
    /// The tenant's intent it was read as (`None`: none, or not read).
    pub intent: Option<crate::domain::ReadIntent>,
}

/// An urgency cue → proto.
pub fn urgency_cue_to_pb(cue: crate::domain::UrgencyCue) -> pb::UrgencyCue {
    use crate::domain::UrgencyCue;
    match cue {
        UrgencyCue::CancelThreat => pb::UrgencyCue::CancelThreat,
        UrgencyCue::LegalThreat => pb::UrgencyCue::LegalThreat,
        UrgencyCue::ManagerRequest => pb::UrgencyCue::ManagerRequest,
        UrgencyCue::RepeatContact => pb::UrgencyCue::RepeatContact,
        UrgencyCue::Safety => pb::UrgencyCue::Safety,
    }
}

/// Sentiment, with what else the text holds → proto.
pub fn sentiment_to_pb(sentiment: &Sentiment, reading: TextReading) -> pb::SentimentResult {
    let TextReading {
        language,
        urgency_cues,
        intent,
    } = reading;
    pb::SentimentResult {
        language: language.map_or_else(String::new, |language| language.code.to_string()),
        language_confidence: language.map_or(0.0, |language| f64::from(language.confidence)),
        urgency_cues: urgency_cues
            .iter()
            .map(|cue| urgency_cue_to_pb(cue) as i32)
            .collect(),
        intent_confidence: intent
            .as_ref()
            .map_or(0.0, |intent| f64::from(intent.confidence)),
        intent: intent.map_or_else(String::new, |intent| intent.name.to_string()),
        label: match sentiment.label {
            SentimentLabel::Negative => pb::SentimentLabel::Negative,
            SentimentLabel::Neutral => pb::SentimentLabel::Neutral,
            SentimentLabel::Positive => pb::SentimentLabel::Positive,
        } as i32,
        score: f64::from(sentiment.score),
        confidence: f64::from(sentiment.confidence),
    }
}

/// Score → proto, with each factor as a reason; `intents` names the tenant's intent ids.
pub fn score_to_pb(
    tenant_id: &str,
    customer_id: &str,
    score: &Score,
    intents: &IntentNames,
) -> pb::CustomerScore {
    pb::CustomerScore {
        waiting_intents: score
            .waiting_intents
            .iter()
            .filter_map(|id| intents.name(*id).map(|name| name.to_string()))
            .collect(),
        waiting_languages: score
            .waiting_languages
            .iter()
            .filter_map(|id| rapport_core::domain::language_code(*id).map(str::to_string))
            .collect(),
        identifiers: Vec::new(),
        merged_customer_ids: Vec::new(),
        claimed_by: String::new(),
        claim_expires_at: None,
        attributes: Default::default(),
        waiting_channels: Channel::ALL
            .into_iter()
            .filter(|channel| score.waits_on(*channel))
            .map(channel_to_pb)
            .collect(),
        model_fitted_at: score.model_fit.map(|fit| to_timestamp(fit.fitted_at_ms)),
        model_fit_customers: score.model_fit.map_or(0, |fit| fit.customers),
        tenant_id: tenant_id.to_string(),
        customer_id: customer_id.to_string(),
        engagement: score.engagement,
        sentiment: score.sentiment,
        sentiment_recent: score.sentiment_recent,
        sentiment_trend: score.sentiment_trend,
        retention_risk: score.retention_risk,
        priority: score.priority,
        action: action_to_pb(score.action) as i32,
        reasons: score
            .factors
            .iter()
            .map(|factor| pb::Reason {
                factor: factor.name().to_string(),
                contribution: factor.contribution,
                detail: super::reasons::detail(factor, intents),
                group: match factor.group() {
                    FactorGroup::Risk => pb::ReasonGroup::Risk,
                    FactorGroup::Priority => pb::ReasonGroup::Priority,
                } as i32,
            })
            .collect(),
        last_interaction_at: Some(to_timestamp(score.last_interaction_at_ms)),
        unanswered_since: score.unanswered_since_ms.map(to_timestamp),
        interactions_total: score.interactions_total,
        lifetime_value: score.lifetime_value,
        as_of: Some(to_timestamp(score.as_of_ms)),
        reply_due_at: score.reply_due_at_ms.map(to_timestamp),
        reply_breached_since: score
            .reply_due_at_ms
            .filter(|due| *due <= score.as_of_ms)
            .map(to_timestamp),
        missed_threads: score.missed_threads,
        open_threads: score.open_threads,
    }
}

/// Channel → proto channel number (its place in [`Channel::ALL`], proto order, plus one).
pub fn channel_to_pb(channel: Channel) -> i32 {
    Channel::ALL
        .iter()
        .position(|c| *c == channel)
        .map_or(0, |index| index as i32 + 1)
}

/// A claimed conversation → proto.
pub fn conversation_to_pb(conversation: &rapport_core::store::Conversation) -> pb::Conversation {
    pb::Conversation {
        thread_id: conversation.thread_id.clone().unwrap_or_default(),
        channel: channel_to_pb(conversation.channel),
        language: rapport_core::domain::language_code(conversation.language)
            .unwrap_or_default()
            .to_string(),
        intent: conversation.intent.clone().unwrap_or_default(),
        waiting_since: Some(to_timestamp(conversation.since_ms)),
        reply_due_at: Some(to_timestamp(conversation.due_at_ms)),
    }
}

/// A `language` filter: `None` when empty, else the language's id in state records; a code that
/// is not one of the detector's languages is refused, naming the field.
pub fn language_filter(code: &str) -> Result<Option<u8>, FieldError> {
    if code.is_empty() {
        return Ok(None);
    }
    match rapport_core::domain::language_id(code) {
        0 => Err(FieldError::new(
            "language",
            format!(
                "{code:?} is not an ISO 639-1 code of a language the detector names (en, fr, de, es, pt, it, ar, hi, …)"
            ),
        )),
        id => Ok(Some(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_text_bytes: 16,
            max_id_bytes: 8,
            max_future_skew_ms: 1000,
            max_identifiers: 4,
            blocked_identifiers: vec!["SUPPORT@acme.com".to_string()].into(),
        }
    }

    fn valid() -> pb::Interaction {
        pb::Interaction {
            event_id: "e1".into(),
            tenant_id: "t".into(),
            customer_id: "c".into(),
            channel: pb::Channel::Twitter as i32,
            kind: pb::InteractionKind::Mention as i32,
            direction: pb::Direction::Inbound as i32,
            occurred_at: Some(to_timestamp(5_000)),
            text: "hi".into(),
            value: 0.0,
            author_followers: 3,
            thread_id: String::new(),
            reply_need: pb::ReplyNeed::Unspecified as i32,
            identifiers: Vec::new(),
            agent_id: String::new(),
        }
    }

    #[test]
    fn valid_interaction_converts() {
        let interaction = interaction_from_pb(valid(), &limits(), 10_000).unwrap();
        assert_eq!(interaction.occurred_at_ms, 5_000);
        assert_eq!(interaction.channel, Channel::Twitter);
    }

    #[test]
    fn each_bad_field_is_named() {
        type Mutation = Box<dyn Fn(&mut pb::Interaction)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("event_id", Box::new(|i| i.event_id.clear())),
            ("tenant_id", Box::new(|i| i.tenant_id = "x".repeat(9))),
            ("customer_id", Box::new(|i| i.customer_id = "a\u{0}".into())),
            ("channel", Box::new(|i| i.channel = 99)),
            ("kind", Box::new(|i| i.kind = 0)),
            ("direction", Box::new(|i| i.direction = -1)),
            ("occurred_at", Box::new(|i| i.occurred_at = None)),
            (
                "occurred_at",
                Box::new(|i| i.occurred_at = Some(to_timestamp(20_000))),
            ),
            (
                "occurred_at",
                Box::new(|i| {
                    i.occurred_at = Some(prost_types::Timestamp {
                        seconds: -1,
                        nanos: 0,
                    })
                }),
            ),
            ("text", Box::new(|i| i.text = "x".repeat(17))),
            ("value", Box::new(|i| i.value = f64::NAN)),
            ("value", Box::new(|i| i.value = -1.0)),
        ];
        for (field, mutate) in cases {
            let mut interaction = valid();
            mutate(&mut interaction);
            let error = interaction_from_pb(interaction, &limits(), 10_000).unwrap_err();
            assert_eq!(error.field, field, "{error}");
        }
    }

    #[test]
    fn interactions_round_trip_through_pb() {
        let limits = Limits {
            max_text_bytes: 64,
            max_id_bytes: 64,
            max_future_skew_ms: i64::MAX,
            max_identifiers: 16,
            blocked_identifiers: Vec::new().into(),
        };
        for channel in 1..=12 {
            for kind in 1..=13 {
                for direction in 1..=2 {
                    let mut message = valid();
                    (message.channel, message.kind, message.direction) = (channel, kind, direction);
                    let domain = interaction_from_pb(message.clone(), &limits, 0).unwrap();
                    assert_eq!(interaction_to_pb(&domain), message);
                }
            }
        }
    }

    #[test]
    fn timestamps_round_trip() {
        for ms in [0, 1, 999, 1_700_000_000_123] {
            assert_eq!(timestamp_ms("t", &to_timestamp(ms)).unwrap(), ms);
        }
    }
}
