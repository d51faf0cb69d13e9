//! The log's own record encoding, owned here and independent of the public proto: a change to
//! `rapport.v1.Interaction` cannot change what is on disk. The field numbers and enum codes are
//! those the files have always held (they began as the public message's), written out here so
//! they stay fixed.

use crate::attributes::AttributeValue;
use crate::domain::{Channel, Direction, Interaction, Kind, ReplyNeed};
use crate::identity::{Identifier, IdentifierKind, IdentityAction, IdentityRequest};
use std::collections::BTreeMap;

/// An interaction as the log stores it (its text is never stored).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LoggedInteraction {
    /// Unique per tenant.
    #[prost(string, tag = "1")]
    pub event_id: String,
    /// The tenant whose customer this is.
    #[prost(string, tag = "2")]
    pub tenant_id: String,
    /// The customer, unique within the tenant.
    #[prost(string, tag = "3")]
    pub customer_id: String,
    /// [`channel_code`].
    #[prost(int32, tag = "4")]
    pub channel: i32,
    /// [`kind_code`].
    #[prost(int32, tag = "5")]
    pub kind: i32,
    /// 1 inbound, 2 outbound.
    #[prost(int32, tag = "6")]
    pub direction: i32,
    /// When the event happened.
    #[prost(message, optional, tag = "7")]
    pub occurred_at: Option<LoggedTimestamp>,
    /// The timeline's snippet of the text (format 3; `[timeline]` limits, empty when none is
    /// kept). Formats before 3 left it empty.
    #[prost(string, tag = "8")]
    pub text: String,
    /// Money, for purchases.
    #[prost(double, tag = "9")]
    pub value: f64,
    /// The author's audience (followers) at the time of the event.
    #[prost(uint64, tag = "10")]
    pub author_followers: u64,
    /// Conversation thread; empty when the event belongs to none.
    #[prost(string, tag = "11")]
    pub thread_id: String,
    /// 0 unclear, 1 required, 2 not required.
    #[prost(int32, tag = "12")]
    pub reply_need: i32,
    /// Normalised identifiers (absent in records of formats 0 to 2, which had none).
    #[prost(message, repeated, tag = "13")]
    pub identifiers: Vec<LoggedIdentifier>,
    /// Who answered, on outbound events (format 3).
    #[prost(string, tag = "14")]
    pub agent_id: String,
    /// Urgency cue bits ([`crate::domain::UrgencyCues::bits`]; format 5, absent before).
    #[prost(uint32, tag = "15")]
    pub urgency_cues: u32,
    /// The tenant's intent the text was read as (format 5; empty: none).
    #[prost(string, tag = "16")]
    pub intent: String,
    /// How sure the intent is, in (0, 1] (0 without one).
    #[prost(float, tag = "17")]
    pub intent_confidence: f32,
    /// The language its text was read in at ingest, ISO 639-1 (empty: none; logs before format 6).
    #[prost(string, tag = "18")]
    pub language: String,
    /// How sure the detector was, in [0, 1].
    #[prost(float, tag = "19")]
    pub language_confidence: f32,
}

/// A tenant's intents set over the API, as the log stores them (format 5).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LoggedIntents {
    /// The tenant.
    #[prost(string, tag = "1")]
    pub tenant_id: String,
    /// The list, in order (empty: the tenant's intents removed).
    #[prost(message, repeated, tag = "2")]
    pub intents: Vec<LoggedIntent>,
}

/// One intent of a [`LoggedIntents`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct LoggedIntent {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its examples.
    #[prost(string, repeated, tag = "2")]
    pub examples: Vec<String>,
}

impl LoggedIntents {
    /// The stored form of a tenant's list.
    pub fn new(
        tenant_id: &str,
        definitions: &[crate::sentiment::intent::IntentDefinition],
    ) -> Self {
        Self {
            tenant_id: tenant_id.to_string(),
            intents: definitions
                .iter()
                .map(|definition| LoggedIntent {
                    name: definition.name.clone(),
                    examples: definition.examples.clone(),
                })
                .collect(),
        }
    }

    /// Back to the tenant and its list.
    pub fn into_parts(self) -> (String, Vec<crate::sentiment::intent::IntentDefinition>) {
        let definitions = self
            .intents
            .into_iter()
            .map(|intent| crate::sentiment::intent::IntentDefinition {
                name: intent.name,
                examples: intent.examples,
            })
            .collect();
        (self.tenant_id, definitions)
    }
}

/// A normalised identifier as the log stores it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LoggedIdentifier {
    /// [`identifier_code`].
    #[prost(int32, tag = "1")]
    pub kind: i32,
    /// The normalised value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// A CRM's identity request as the log stores it: a link when `identifiers` is non-empty, else a
/// merge with `other_customer_id`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LoggedIdentityRequest {
    /// The tenant.
    #[prost(string, tag = "1")]
    pub tenant_id: String,
    /// The customer it is about.
    #[prost(string, tag = "2")]
    pub customer_id: String,
    /// For a merge: the other customer.
    #[prost(string, tag = "3")]
    pub other_customer_id: String,
    /// For a link: the normalised identifiers.
    #[prost(message, repeated, tag = "4")]
    pub identifiers: Vec<LoggedIdentifier>,
}

impl LoggedIdentityRequest {
    /// The stored form of a request.
    pub fn from_request(request: &IdentityRequest) -> Self {
        let (other_customer_id, identifiers) = match &request.action {
            IdentityAction::Link(identifiers) => (
                String::new(),
                identifiers
                    .iter()
                    .map(LoggedIdentifier::from_identifier)
                    .collect(),
            ),
            IdentityAction::Merge { other_customer_id } => (other_customer_id.clone(), Vec::new()),
        };
        Self {
            tenant_id: request.tenant_id.clone(),
            customer_id: request.customer_id.clone(),
            other_customer_id,
            identifiers,
        }
    }

    /// Back to a request; the error names what is wrong.
    pub fn into_request(self) -> Result<IdentityRequest, String> {
        let action = if self.identifiers.is_empty() {
            if self.other_customer_id.is_empty() {
                return Err("neither identifiers nor other_customer_id".to_string());
            }
            IdentityAction::Merge {
                other_customer_id: self.other_customer_id,
            }
        } else {
            IdentityAction::Link(
                self.identifiers
                    .into_iter()
                    .map(LoggedIdentifier::into_identifier)
                    .collect::<Result<_, _>>()?,
            )
        };
        Ok(IdentityRequest {
            tenant_id: self.tenant_id,
            customer_id: self.customer_id,
            action,
        })
    }
}

/// A claim taken, renewed or ended, as the log stores it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LoggedClaim {
    /// The tenant.
    #[prost(string, tag = "1")]
    pub tenant_id: String,
    /// The claimed customer.
    #[prost(string, tag = "2")]
    pub customer_id: String,
    /// The agent holding it (empty when it ended).
    #[prost(string, tag = "3")]
    pub agent_id: String,
    /// When it ends, in milliseconds since the epoch (0: it ended).
    #[prost(int64, tag = "4")]
    pub expires_at_ms: i64,
    /// It holds one conversation (thread `thread_key` on `channel`), not the whole customer
    /// (format 7; absent before: whole customers).
    #[prost(bool, tag = "5")]
    pub conversation: bool,
    /// The conversation's thread key.
    #[prost(uint64, tag = "6")]
    pub thread_key: u64,
    /// The conversation's channel ([`channel_code`]).
    #[prost(int32, tag = "7")]
    pub channel: i32,
}

impl LoggedClaim {
    /// The record of a claim on `work` taken or renewed (`Some`) or ended (`None`).
    pub fn new(
        tenant_id: &str,
        customer_id: &str,
        work: crate::store::Work,
        claim: Option<&crate::store::Claim>,
    ) -> Self {
        let (conversation, thread_key, channel) = match work {
            crate::store::Work::Customer => (false, 0, 0),
            crate::store::Work::Conversation {
                thread_key,
                channel,
            } => (true, thread_key, channel_code(channel)),
        };
        Self {
            tenant_id: tenant_id.to_string(),
            customer_id: customer_id.to_string(),
            agent_id: claim.map(|c| c.agent_id.clone()).unwrap_or_default(),
            expires_at_ms: claim.map_or(0, |c| c.expires_at_ms),
            conversation,
            thread_key,
            channel,
        }
    }

    /// What the claim holds.
    pub fn work(&self) -> Result<crate::store::Work, String> {
        if !self.conversation {
            return Ok(crate::store::Work::Customer);
        }
        Ok(crate::store::Work::Conversation {
            thread_key: self.thread_key,
            channel: channel_of_code(self.channel)?,
        })
    }
}

/// An agent put or changed, or removed, as the log (and a snapshot's first record) stores it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LoggedAgent {
    /// The tenant.
    #[prost(string, tag = "1")]
    pub tenant_id: String,
    /// The agent's id.
    #[prost(string, tag = "2")]
    pub agent_id: String,
    /// It was removed (nothing else is set).
    #[prost(bool, tag = "3")]
    pub removed: bool,
    /// 0 available, 1 away, 2 offline.
    #[prost(int32, tag = "4")]
    pub status: i32,
    /// Languages (ISO 639-1 codes).
    #[prost(string, repeated, tag = "5")]
    pub languages: Vec<String>,
    /// Intent names.
    #[prost(string, repeated, tag = "6")]
    pub intents: Vec<String>,
    /// Skill segments.
    #[prost(string, repeated, tag = "7")]
    pub segments: Vec<String>,
    /// The channels it has capacity on ([`channel_code`]s), with `capacity_max` in step.
    #[prost(int32, repeated, tag = "8")]
    pub capacity_channels: Vec<i32>,
    /// The capacity on each of `capacity_channels`.
    #[prost(uint32, repeated, tag = "9")]
    pub capacity_max: Vec<u32>,
    /// Whole customers (outreach) it holds at once.
    #[prost(uint32, tag = "10")]
    pub outreach_capacity: u32,
    /// When it was put or its status set, in milliseconds since the epoch.
    #[prost(int64, tag = "11")]
    pub updated_at_ms: i64,
    /// Units its conversations may take together (0: no such limit).
    #[prost(uint32, tag = "12")]
    pub capacity_units: u32,
}

impl LoggedAgent {
    /// The record of `agent` (`None`: removed).
    pub fn new(tenant_id: &str, agent_id: &str, agent: Option<&crate::store::Agent>) -> Self {
        let Some(agent) = agent else {
            return Self {
                tenant_id: tenant_id.to_string(),
                agent_id: agent_id.to_string(),
                removed: true,
                ..Self::default()
            };
        };
        Self {
            tenant_id: tenant_id.to_string(),
            agent_id: agent_id.to_string(),
            removed: false,
            status: match agent.status {
                crate::store::AgentStatus::Available => 0,
                crate::store::AgentStatus::Away => 1,
                crate::store::AgentStatus::Offline => 2,
            },
            languages: agent
                .languages
                .iter()
                .filter_map(|id| crate::domain::language_code(*id))
                .map(str::to_string)
                .collect(),
            intents: agent.intents.clone(),
            segments: agent.segments.clone(),
            capacity_channels: agent
                .capacity
                .iter()
                .map(|(c, _)| channel_code(*c))
                .collect(),
            capacity_max: agent.capacity.iter().map(|(_, max)| *max).collect(),
            outreach_capacity: agent.outreach_capacity,
            updated_at_ms: agent.updated_at_ms,
            capacity_units: agent.capacity_units,
        }
    }

    /// The agent it records (`None`: removed).
    pub fn agent(&self) -> Result<Option<crate::store::Agent>, String> {
        if self.removed {
            return Ok(None);
        }
        let status = match self.status {
            0 => crate::store::AgentStatus::Available,
            1 => crate::store::AgentStatus::Away,
            2 => crate::store::AgentStatus::Offline,
            other => return Err(format!("status: unknown code {other}")),
        };
        if self.capacity_channels.len() != self.capacity_max.len() {
            return Err("capacity: channels and maxima differ in number".into());
        }
        let capacity = self
            .capacity_channels
            .iter()
            .zip(&self.capacity_max)
            .map(|(code, max)| Ok((channel_of_code(*code)?, *max)))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Some(crate::store::Agent {
            agent_id: self.agent_id.clone(),
            status,
            languages: self
                .languages
                .iter()
                .map(|code| crate::domain::language_id(code))
                .filter(|id| *id != 0)
                .collect(),
            intents: self.intents.clone(),
            segments: self.segments.clone(),
            capacity,
            outreach_capacity: self.outreach_capacity,
            capacity_units: self.capacity_units,
            updated_at_ms: self.updated_at_ms,
        }))
    }
}

/// The channel of a stored code.
fn channel_of_code(code: i32) -> Result<Channel, String> {
    Channel::ALL
        .into_iter()
        .find(|c| channel_code(*c) == code)
        .ok_or_else(|| format!("channel: unknown code {code}"))
}

/// A log file's own bookkeeping (format 4): the first record of every log file names the segment
/// number it gets when sealed, and the last record of a sealed segment repeats it with the count
/// of records before it, so a file cut at a record boundary, renamed, emptied or missing from the
/// sequence is found at start instead of silently losing what it held.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SegmentMark {
    /// The segment's number (`wal-<number>.log` once sealed).
    #[prost(uint64, tag = "1")]
    pub number: u64,
    /// `false`: the file's first record (it was opened); `true`: its last (it was sealed).
    #[prost(bool, tag = "2")]
    pub sealed: bool,
    /// With `sealed`: the records between the two marks.
    #[prost(uint64, tag = "3")]
    pub records: u64,
}

/// A CRM's attribute update as the log stores it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LoggedUpsert {
    /// The tenant.
    #[prost(string, tag = "1")]
    pub tenant_id: String,
    /// The customer.
    #[prost(string, tag = "2")]
    pub customer_id: String,
    /// The update's version.
    #[prost(uint64, tag = "3")]
    pub version: u64,
    /// Keys set or removed.
    #[prost(message, repeated, tag = "4")]
    pub attributes: Vec<LoggedAttribute>,
}

/// One key of a logged attribute update.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LoggedAttribute {
    /// The key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// 0 removed, 1 text, 2 number, 3 flag.
    #[prost(int32, tag = "2")]
    pub kind: i32,
    /// The text (kind 1).
    #[prost(string, tag = "3")]
    pub text: String,
    /// The number (kind 2).
    #[prost(double, tag = "4")]
    pub number: f64,
    /// The flag (kind 3).
    #[prost(bool, tag = "5")]
    pub flag: bool,
}

impl LoggedUpsert {
    /// The stored form of an update.
    pub fn new(
        tenant_id: &str,
        customer_id: &str,
        version: u64,
        changes: &BTreeMap<String, Option<AttributeValue>>,
    ) -> Self {
        let attributes = changes
            .iter()
            .map(|(key, value)| {
                let mut logged = LoggedAttribute {
                    key: key.clone(),
                    ..LoggedAttribute::default()
                };
                match value {
                    None => {}
                    Some(AttributeValue::Text(text)) => {
                        logged.kind = 1;
                        logged.text = text.clone();
                    }
                    Some(AttributeValue::Number(number)) => {
                        logged.kind = 2;
                        logged.number = *number;
                    }
                    Some(AttributeValue::Flag(flag)) => {
                        logged.kind = 3;
                        logged.flag = *flag;
                    }
                }
                logged
            })
            .collect();
        Self {
            tenant_id: tenant_id.to_string(),
            customer_id: customer_id.to_string(),
            version,
            attributes,
        }
    }

    /// Back to tenant, customer, version and changes; the error names an unknown kind.
    #[allow(clippy::type_complexity)]
    pub fn into_parts(
        self,
    ) -> Result<
        (
            String,
            String,
            u64,
            BTreeMap<String, Option<AttributeValue>>,
        ),
        String,
    > {
        let mut changes = BTreeMap::new();
        for attribute in self.attributes {
            let value = match attribute.kind {
                0 => None,
                1 => Some(AttributeValue::Text(attribute.text)),
                2 => Some(AttributeValue::Number(attribute.number)),
                3 => Some(AttributeValue::Flag(attribute.flag)),
                kind => return Err(format!("attributes: unknown kind {kind}")),
            };
            changes.insert(attribute.key, value);
        }
        Ok((self.tenant_id, self.customer_id, self.version, changes))
    }
}

/// The stored code of an identifier type.
pub fn identifier_code(kind: IdentifierKind) -> i32 {
    match kind {
        IdentifierKind::ExternalId => 1,
        IdentifierKind::Email => 2,
        IdentifierKind::Phone => 3,
        IdentifierKind::Handle => 4,
    }
}

impl LoggedIdentifier {
    /// The stored form of an identifier.
    pub fn from_identifier(identifier: &Identifier) -> Self {
        Self {
            kind: identifier_code(identifier.kind),
            value: identifier.value.clone(),
        }
    }

    /// Back to an identifier; the error names an unknown code.
    pub fn into_identifier(self) -> Result<Identifier, String> {
        let kind = IdentifierKind::ALL
            .into_iter()
            .find(|kind| identifier_code(*kind) == self.kind)
            .ok_or_else(|| format!("identifiers: unknown type code {}", self.kind))?;
        Ok(Identifier {
            kind,
            value: self.value,
        })
    }
}

/// Seconds and nanoseconds since the Unix epoch (the layout of `google.protobuf.Timestamp`).
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct LoggedTimestamp {
    /// Whole seconds since the Unix epoch (rounded down).
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds after `seconds`, under one second.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The stored code of a channel.
pub fn channel_code(channel: Channel) -> i32 {
    match channel {
        Channel::Twitter => 1,
        Channel::Facebook => 2,
        Channel::Instagram => 3,
        Channel::Linkedin => 4,
        Channel::ReviewSite => 5,
        Channel::Forum => 6,
        Channel::Email => 7,
        Channel::Chat => 8,
        Channel::Sms => 9,
        Channel::Phone => 10,
        Channel::Web => 11,
        Channel::InStore => 12,
    }
}

/// The stored code of a kind.
pub fn kind_code(kind: Kind) -> i32 {
    match kind {
        Kind::Message => 1,
        Kind::Mention => 2,
        Kind::Comment => 3,
        Kind::Reply => 4,
        Kind::Share => 5,
        Kind::Like => 6,
        Kind::Review => 7,
        Kind::SupportTicket => 8,
        Kind::Survey => 9,
        Kind::Purchase => 10,
        Kind::PageView => 11,
        Kind::Follow => 12,
        Kind::Unfollow => 13,
    }
}

impl LoggedInteraction {
    /// The stored form of a validated interaction, without its text.
    pub fn from_interaction(interaction: &Interaction) -> Self {
        Self {
            event_id: interaction.event_id.clone(),
            tenant_id: interaction.tenant_id.clone(),
            customer_id: interaction.customer_id.clone(),
            channel: channel_code(interaction.channel),
            kind: kind_code(interaction.kind),
            direction: match interaction.direction {
                Direction::Inbound => 1,
                Direction::Outbound => 2,
            },
            occurred_at: Some(LoggedTimestamp {
                seconds: interaction.occurred_at_ms.div_euclid(1000),
                nanos: (interaction.occurred_at_ms.rem_euclid(1000) * 1_000_000) as i32,
            }),
            text: String::new(),
            agent_id: interaction.agent_id.clone(),
            value: interaction.value,
            author_followers: interaction.author_followers,
            thread_id: interaction.thread_id.clone(),
            reply_need: match interaction.reply_need {
                ReplyNeed::Unclear => 0,
                ReplyNeed::Required => 1,
                ReplyNeed::NotRequired => 2,
            },
            urgency_cues: interaction.urgency_cues.bits(),
            intent: interaction
                .intent
                .as_ref()
                .map_or_else(String::new, |intent| intent.name.to_string()),
            intent_confidence: interaction
                .intent
                .as_ref()
                .map_or(0.0, |intent| intent.confidence),
            language: interaction
                .language
                .map_or_else(String::new, |language| language.code.to_string()),
            language_confidence: interaction
                .language
                .map_or(0.0, |language| language.confidence),
            identifiers: interaction
                .identifiers
                .iter()
                .map(LoggedIdentifier::from_identifier)
                .collect(),
        }
    }

    /// Back to a domain interaction; the error names the field that holds an unknown code.
    pub fn into_interaction(self) -> Result<Interaction, String> {
        let channel = channel_of_code(self.channel)?;
        let kind = Kind::ALL
            .into_iter()
            .find(|k| kind_code(*k) == self.kind)
            .ok_or_else(|| format!("kind: unknown code {}", self.kind))?;
        let direction = match self.direction {
            1 => Direction::Inbound,
            2 => Direction::Outbound,
            code => return Err(format!("direction: unknown code {code}")),
        };
        let occurred_at = self.occurred_at.ok_or("occurred_at: missing")?;
        if !(0..1_000_000_000).contains(&occurred_at.nanos) {
            return Err(format!(
                "occurred_at.nanos: {} out of range",
                occurred_at.nanos
            ));
        }
        let occurred_at_ms = occurred_at
            .seconds
            .checked_mul(1000)
            .and_then(|ms| ms.checked_add(i64::from(occurred_at.nanos / 1_000_000)))
            .ok_or("occurred_at: out of range")?;
        let reply_need = match self.reply_need {
            0 => ReplyNeed::Unclear,
            1 => ReplyNeed::Required,
            2 => ReplyNeed::NotRequired,
            code => return Err(format!("reply_need: unknown code {code}")),
        };
        if !(self.value.is_finite() && self.value >= 0.0) {
            return Err(format!("value: {} is not a finite amount", self.value));
        }
        Ok(Interaction {
            event_id: self.event_id,
            tenant_id: self.tenant_id,
            customer_id: self.customer_id,
            channel,
            kind,
            direction,
            occurred_at_ms,
            text: self.text,
            value: self.value,
            author_followers: self.author_followers,
            thread_id: self.thread_id,
            reply_need,
            urgency_cues: crate::domain::UrgencyCues::from_bits(self.urgency_cues),
            intent: (!self.intent.is_empty()).then(|| crate::domain::ReadIntent {
                name: self.intent.as_str().into(),
                confidence: self.intent_confidence,
            }),
            language: crate::domain::language_code(crate::domain::language_id(&self.language)).map(
                |code| crate::sentiment::language::Language {
                    code,
                    confidence: self.language_confidence,
                },
            ),
            identifiers: self
                .identifiers
                .into_iter()
                .map(LoggedIdentifier::into_identifier)
                .collect::<Result<_, _>>()?,
            agent_id: self.agent_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_round_trips() {
        for (index, (channel, kind)) in Channel::ALL.into_iter().zip(Kind::ALL).enumerate() {
            let interaction = Interaction {
                event_id: format!("e{index}"),
                tenant_id: "t".into(),
                customer_id: "c".into(),
                channel,
                kind,
                direction: if index % 2 == 0 {
                    Direction::Inbound
                } else {
                    Direction::Outbound
                },
                occurred_at_ms: -1_234 + index as i64 * 1_000_003,
                text: String::new(),
                value: index as f64 * 1.5,
                author_followers: index as u64 * 7,
                thread_id: "th".into(),
                reply_need: [
                    ReplyNeed::Unclear,
                    ReplyNeed::Required,
                    ReplyNeed::NotRequired,
                ][index % 3],
                urgency_cues: crate::domain::UrgencyCues::from_bits(index as u32),
                intent: (index % 2 == 0).then(|| crate::domain::ReadIntent {
                    name: format!("intent-{index}").into(),
                    confidence: 0.5,
                }),
                language: (index % 3 != 2).then(|| crate::sentiment::language::Language {
                    code: crate::domain::LANGUAGE_CODES[index % 69],
                    confidence: 0.25,
                }),
                identifiers: vec![Identifier {
                    kind: IdentifierKind::ALL[index % 4],
                    value: format!("v{index}"),
                }],
                agent_id: String::new(),
            };
            let back = LoggedInteraction::from_interaction(&interaction)
                .into_interaction()
                .unwrap();
            assert_eq!(back, interaction);
        }
    }
}
