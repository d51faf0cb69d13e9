//! Transport-free types of one interaction, shared by sentiment, scoring and the store.
//!
//! The proto enums map onto these exhaustively in `api::convert`; everything past the API layer
//! works on validated values only.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
pub type TimestampMs = i64;

/// Where an interaction happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Channel {
    /// Twitter (public).
    Twitter,
    /// Facebook (public).
    Facebook,
    /// Instagram (public).
    Instagram,
    /// LinkedIn (public).
    Linkedin,
    /// A review site (public).
    ReviewSite,
    /// A forum (public).
    Forum,
    /// Email.
    Email,
    /// Chat (live chat or messaging).
    Chat,
    /// SMS.
    Sms,
    /// A phone call.
    Phone,
    /// The brand's website.
    Web,
    /// In a physical store.
    InStore,
}

impl Channel {
    /// Every channel, in proto order.
    pub const ALL: [Channel; 12] = [
        Channel::Twitter,
        Channel::Facebook,
        Channel::Instagram,
        Channel::Linkedin,
        Channel::ReviewSite,
        Channel::Forum,
        Channel::Email,
        Channel::Chat,
        Channel::Sms,
        Channel::Phone,
        Channel::Web,
        Channel::InStore,
    ];

    /// Stable lowercase name, used in config keys, metric labels and reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Twitter => "twitter",
            Channel::Facebook => "facebook",
            Channel::Instagram => "instagram",
            Channel::Linkedin => "linkedin",
            Channel::ReviewSite => "review_site",
            Channel::Forum => "forum",
            Channel::Email => "email",
            Channel::Chat => "chat",
            Channel::Sms => "sms",
            Channel::Phone => "phone",
            Channel::Web => "web",
            Channel::InStore => "in_store",
        }
    }

    /// Whether what is said here is seen by the public (complaints there spread).
    pub fn is_public(self) -> bool {
        matches!(
            self,
            Channel::Twitter
                | Channel::Facebook
                | Channel::Instagram
                | Channel::Linkedin
                | Channel::ReviewSite
                | Channel::Forum
        )
    }
}

/// What kind of interaction it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Kind {
    /// A direct message.
    Message,
    /// A mention of the brand.
    Mention,
    /// A comment, e.g. on a post.
    Comment,
    /// A reply in a conversation.
    Reply,
    /// A share or repost.
    Share,
    /// A like or reaction.
    Like,
    /// A review.
    Review,
    /// A support ticket.
    SupportTicket,
    /// A survey response.
    Survey,
    /// A purchase; its value adds to the customer's lifetime value.
    Purchase,
    /// A page view.
    PageView,
    /// Followed the brand.
    Follow,
    /// Unfollowed the brand.
    Unfollow,
}

impl Kind {
    /// Every kind, in proto order.
    pub const ALL: [Kind; 13] = [
        Kind::Message,
        Kind::Mention,
        Kind::Comment,
        Kind::Reply,
        Kind::Share,
        Kind::Like,
        Kind::Review,
        Kind::SupportTicket,
        Kind::Survey,
        Kind::Purchase,
        Kind::PageView,
        Kind::Follow,
        Kind::Unfollow,
    ];

    /// Stable lowercase name, used in config keys, metric labels and reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Mention => "mention",
            Kind::Comment => "comment",
            Kind::Reply => "reply",
            Kind::Share => "share",
            Kind::Like => "like",
            Kind::Review => "review",
            Kind::SupportTicket => "support_ticket",
            Kind::Survey => "survey",
            Kind::Purchase => "purchase",
            Kind::PageView => "page_view",
            Kind::Follow => "follow",
            Kind::Unfollow => "unfollow",
        }
    }

    /// Whether an inbound interaction of this kind waits for an answer from the brand.
    pub fn expects_reply(self) -> bool {
        matches!(
            self,
            Kind::Message
                | Kind::Mention
                | Kind::Comment
                | Kind::Reply
                | Kind::Review
                | Kind::SupportTicket
        )
    }
}

/// Who spoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum Direction {
    /// From the customer.
    Inbound,
    /// From the brand.
    Outbound,
}

impl Direction {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

pub use rapport_sentiment::{ReplyNeed, UrgencyCue, UrgencyCues};

/// The languages state records can name, ISO 639-1 (the language detector's 69); a record holds
/// a language as its place in this list plus one (0: none). Append only: the places are stored.
pub const LANGUAGE_CODES: [&str; 69] = [
    "af", "ak", "am", "ar", "az", "be", "bn", "bg", "ca", "cs", "zh", "da", "de", "el", "en", "eo",
    "et", "fi", "fr", "gu", "he", "hi", "hr", "hu", "hy", "id", "it", "jv", "ja", "kn", "ka", "km",
    "ko", "la", "lv", "lt", "ml", "mr", "mk", "my", "ne", "nl", "nb", "or", "pa", "fa", "pl", "pt",
    "ro", "ru", "si", "sk", "sl", "sn", "es", "sr", "sv", "ta", "te", "tl", "tr", "th", "tk", "uk",
    "ur", "uz", "vi", "yi", "zu",
];

/// A language's id in state records: its place in [`LANGUAGE_CODES`] plus one; 0 for a code not
/// in the list (or none).
pub fn language_id(code: &str) -> u8 {
    LANGUAGE_CODES
        .iter()
        .position(|known| *known == code)
        .map_or(0, |place| place as u8 + 1)
}

/// The ISO 639-1 code of a language id (`None` for 0 or an id past the list).
pub fn language_code(id: u8) -> Option<&'static str> {
    usize::from(id)
        .checked_sub(1)
        .and_then(|place| LANGUAGE_CODES.get(place).copied())
}

/// A validated interaction: every field has passed `api::convert`'s checks.
#[derive(Clone, Debug, PartialEq)]
pub struct Interaction {
    /// Unique per tenant; a repeated id is counted once.
    pub event_id: String,
    /// The tenant (brand) whose customer this is.
    pub tenant_id: String,
    /// The customer, unique within the tenant.
    pub customer_id: String,
    /// Where it happened.
    pub channel: Channel,
    /// What kind of interaction it was.
    pub kind: Kind,
    /// Who spoke: the customer (inbound) or the brand (outbound).
    pub direction: Direction,
    /// When it happened (not when it arrived), in milliseconds since the Unix epoch.
    pub occurred_at_ms: TimestampMs,
    /// Message text; empty when the interaction has none.
    pub text: String,
    /// Money, finite and not negative.
    pub value: f64,
    /// The author's audience (followers) at the time of the event.
    pub author_followers: u64,
    /// Empty when the interaction belongs to no thread.
    pub thread_id: String,
    /// Whether an inbound message asks for an answer (resolved at validation: the client's word,
    /// else read from the text).
    pub reply_need: ReplyNeed,
    /// Urgency cues read from an inbound text at validation (threats to leave, legal threats, …);
    /// none on outbound events.
    pub urgency_cues: UrgencyCues,
    /// The tenant's intent the text was read as at ingest (`None`: none fits, no text, outbound,
    /// or the tenant has no intents).
    pub intent: Option<ReadIntent>,
    /// The language of an inbound text as read at ingest (`None`: outbound, no text, or nothing
    /// in it belongs to a language).
    pub language: Option<crate::sentiment::language::Language>,
    /// Typed identifiers of the person, normalised (see [`crate::identity`]); the store resolves
    /// them to one customer. Empty for most events.
    pub identifiers: Vec<crate::identity::Identifier>,
    /// Who answered, on outbound events (empty when not said): shown in the timeline.
    pub agent_id: String,
}

/// The intent, from its tenant's list, an inbound text was read as.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadIntent {
    /// The intent's name.
    pub name: std::sync::Arc<str>,
    /// How sure, in (0, 1].
    pub confidence: f32,
}

/// What to do about a customer now, most urgent first in declaration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Answer an unanswered inbound message.
    Respond,
    /// Win back a customer at high retention risk.
    Rescue,
    /// Engage a positive, engaged, influential customer.
    Advocate,
    /// Encourage an engaged customer who has not bought yet.
    Nurture,
    /// Nothing to do now.
    None,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 5] = [
        Action::Respond,
        Action::Rescue,
        Action::Advocate,
        Action::Nurture,
        Action::None,
    ];

    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Respond => "respond",
            Action::Rescue => "rescue",
            Action::Advocate => "advocate",
            Action::Nurture => "nurture",
            Action::None => "none",
        }
    }
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a character boundary.
pub fn prefix_at_char_boundary(text: &str, max_bytes: usize) -> &str {
    let mut end = max_bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` when it is at most `max_bytes` bytes; otherwise its first bytes up to that limit (cut
/// at a character boundary) followed by `… (N bytes cut)`. For messages that quote what a caller
/// or a file sent, so an answer stays bounded whatever they sent.
pub fn bounded_text(text: &str, max_bytes: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max_bytes {
        return std::borrow::Cow::Borrowed(text);
    }
    let kept = prefix_at_char_boundary(text, max_bytes);
    std::borrow::Cow::Owned(format!("{kept}… ({} bytes cut)", text.len() - kept.len()))
}

#[cfg(test)]
mod text_tests {
    use super::*;

    #[test]
    fn bounded_text_cuts_at_a_char_boundary_and_says_how_much() {
        assert_eq!(bounded_text("short", 8), "short");
        assert_eq!(prefix_at_char_boundary("aé", 2), "a");
        assert_eq!(bounded_text("aéb", 2), "a… (3 bytes cut)");
        let long = "x".repeat(32 * 1024);
        let bounded = bounded_text(&long, 1024);
        assert!(bounded.len() < 1100, "{}", bounded.len());
        assert!(bounded.ends_with("… (31744 bytes cut)"), "{bounded}");
    }
}
