//! Identity rules: one person, many identifiers. Pure functions (no state, no I/O) that the store
//! applies when an interaction or a CRM names typed identifiers besides (or instead of) a
//! customer id: normalisation per type, a blocklist of placeholder values, per-type limits, the
//! hard identifier that blocks a merge, and the deterministic choice of the id a merged customer
//! keeps. The store holds the index (`store::identities`); README "Identity" states the rules.

use crate::config::IdentityConfig;
use crate::domain::Channel;
use serde::{Deserialize, Serialize};

/// The type of an identifier, in precedence order: the first is the strongest evidence of who
/// someone is, and names a customer created from identifiers alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IdentifierKind {
    /// The brand's own user id (a CRM or account id). The hard identifier: two customers whose
    /// external ids differ are never merged.
    ExternalId,
    /// An e-mail address.
    Email,
    /// A phone number.
    Phone,
    /// A handle on a social channel, qualified by the channel (`@ann_b` on Twitter).
    Handle,
}

impl IdentifierKind {
    /// Every kind, in precedence order.
    pub const ALL: [IdentifierKind; 4] = [
        IdentifierKind::ExternalId,
        IdentifierKind::Email,
        IdentifierKind::Phone,
        IdentifierKind::Handle,
    ];

    /// The kind's name as the API, the config and derived customer ids spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::ExternalId => "external_id",
            IdentifierKind::Email => "email",
            IdentifierKind::Phone => "phone",
            IdentifierKind::Handle => "handle",
        }
    }
}

/// A normalised identifier: equal values denote the same person.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    /// Its type.
    pub kind: IdentifierKind,
    /// The normalised value; a handle's is `<channel>:<handle>`.
    pub value: String,
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.kind.as_str(), self.value)
    }
}

/// Prefix of the customer ids rapport derives from identifiers: `~email:ann@example.com`. `~`
/// sorts after letters and digits, so a merged customer keeps an id a client gave when it has one.
pub const DERIVED_ID_PREFIX: char = '~';

impl Identifier {
    /// The customer id of a customer first known by this identifier alone.
    pub fn derived_customer_id(&self) -> String {
        format!("{DERIVED_ID_PREFIX}{}:{}", self.kind.as_str(), self.value)
    }
}

/// Values that stand for "no identifier": systems fill fields with them rather than leave them
/// empty, and linking on them would merge strangers (compared after normalisation, so case and
/// surrounding spaces do not matter).
const PLACEHOLDERS: [&str; 14] = [
    "null",
    "nil",
    "none",
    "undefined",
    "unknown",
    "anonymous",
    "anon",
    "n/a",
    "na",
    "-",
    "test",
    "guest",
    "noreply",
    "no-reply",
];

/// Why a value is not an identifier.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    /// Empty after trimming.
    #[error("is empty")]
    Empty,
    /// A placeholder such as "null" or all zeros, or a value the config blocks.
    #[error("is a placeholder, not an identifier ({0:?})")]
    Placeholder(String),
    /// Not of the type's form.
    #[error("is not a valid {kind}: {why}")]
    Malformed {
        /// The type's name.
        kind: &'static str,
        /// What is wrong.
        why: &'static str,
    },
}

/// Normalises `value` as an identifier of `kind` (a handle on `channel`), or says why it is none.
/// E-mail: trimmed, lower-cased, one `@` with text on both sides, no spaces. Phone: digits only,
/// with a leading `+` or `00` kept as `+`; spaces, dots, dashes and parentheses dropped; 7 to 15
/// digits. Handle: trimmed, a leading `@` dropped, lower-cased, prefixed with the channel. External
/// id: trimmed, otherwise exact. Placeholders (see `PLACEHOLDERS`, all zeros, one repeated
/// character, and `blocked`) are refused.
pub fn normalise(
    kind: IdentifierKind,
    value: &str,
    channel: Channel,
    blocked: &[String],
) -> Result<Identifier, IdentifierError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(IdentifierError::Empty);
    }
    let normalised = match kind {
        IdentifierKind::ExternalId => trimmed.to_string(),
        IdentifierKind::Email => {
            let email = trimmed.to_lowercase();
            let malformed = |why| IdentifierError::Malformed {
                kind: "e-mail address",
                why,
            };
            let (local, domain) = email.split_once('@').ok_or_else(|| malformed("no '@'"))?;
            if local.is_empty() || domain.is_empty() || domain.contains('@') {
                return Err(malformed("needs exactly one '@' with text on both sides"));
            }
            if email.chars().any(char::is_whitespace) {
                return Err(malformed("contains spaces"));
            }
            if is_placeholder(local, blocked) {
                return Err(IdentifierError::Placeholder(email));
            }
            email
        }
        IdentifierKind::Phone => {
            let malformed = |why| IdentifierError::Malformed {
                kind: "phone number",
                why,
            };
            let mut digits = String::with_capacity(trimmed.len() + 1);
            let international = trimmed.starts_with('+') || trimmed.starts_with("00");
            let body = trimmed
                .strip_prefix('+')
                .or_else(|| trimmed.strip_prefix("00"))
                .unwrap_or(trimmed);
            for c in body.chars() {
                match c {
                    '0'..='9' => digits.push(c),
                    ' ' | '.' | '-' | '(' | ')' | '/' => {}
                    _ => {
                        return Err(malformed(
                            "only digits, spaces, '+', '.', '-', '/' and parentheses",
                        ))
                    }
                }
            }
            if !(7..=15).contains(&digits.len()) {
                return Err(malformed("needs 7 to 15 digits"));
            }
            if international {
                digits.insert(0, '+');
            }
            digits
        }
        IdentifierKind::Handle => {
            let handle = trimmed.strip_prefix('@').unwrap_or(trimmed).to_lowercase();
            if handle.is_empty() {
                return Err(IdentifierError::Empty);
            }
            if handle.chars().any(char::is_whitespace) {
                return Err(IdentifierError::Malformed {
                    kind: "handle",
                    why: "contains spaces",
                });
            }
            if is_placeholder(&handle, blocked) {
                return Err(IdentifierError::Placeholder(handle));
            }
            format!("{}:{handle}", channel.as_str())
        }
    };
    if is_placeholder(&normalised, blocked) {
        return Err(IdentifierError::Placeholder(normalised));
    }
    Ok(Identifier {
        kind,
        value: normalised,
    })
}

/// A placeholder: a known filler word, one character repeated (`0000`, `xxxx`), or blocked.
fn is_placeholder(value: &str, blocked: &[String]) -> bool {
    let lower = value.trim_start_matches('+').to_lowercase();
    let mut chars = lower.chars();
    let repeated = chars
        .next()
        .is_some_and(|first| lower.len() > 1 && chars.all(|c| c == first));
    repeated
        || PLACEHOLDERS.contains(&lower.as_str())
        || blocked.iter().any(|b| b.trim().to_lowercase() == lower)
}

/// Why two customers are not merged, or an identifier not linked; the message names the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefusal {
    /// Both customers carry an external id and they differ (the hard identifier).
    #[error(
        "{customer:?} and {other:?} have different external ids ({external_id:?} and \
         {other_external_id:?}): an external id is a hard identifier, so they are not merged"
    )]
    HardConflict {
        /// One customer.
        customer: String,
        /// Its external id.
        external_id: String,
        /// The other customer.
        other: String,
        /// The other's external id.
        other_external_id: String,
    },
    /// The merged customer would hold more identifiers of a type than the limit.
    #[error(
        "{customer:?} would hold {count} {kind} identifiers, more than \
         identity.max_{kind}s_per_customer = {limit}"
    )]
    TooMany {
        /// The customer that would hold them.
        customer: String,
        /// The type.
        kind: &'static str,
        /// How many it would hold.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The merged customer would be made of more customers than the limit.
    #[error(
        "{customer:?} would be merged from {count} customers, more than \
         identity.max_merges_per_customer = {limit}"
    )]
    TooManyMerges {
        /// The customer that would absorb the others.
        customer: String,
        /// Customers merged into it, counting this merge.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A customer whose oldest events were folded away cannot be merged exactly.
    #[error(
        "{customer:?} has events folded away (scoring.max_events_per_customer): merging it \
         would not give the scores of one customer with every event"
    )]
    Compacted {
        /// The customer.
        customer: String,
    },
}

/// The most identifiers of `kind` one customer may hold.
pub fn limit_for(config: &IdentityConfig, kind: IdentifierKind) -> usize {
    match kind {
        IdentifierKind::ExternalId => config.max_external_ids_per_customer,
        IdentifierKind::Email => config.max_emails_per_customer,
        IdentifierKind::Phone => config.max_phones_per_customer,
        IdentifierKind::Handle => config.max_handles_per_customer,
    }
}

/// Whether a customer holding `held` identifiers (merged from `merged` customers) and one holding
/// `other_held` (merged from `other_merged`) may become one customer: the hard identifier, the
/// per-type limits and the merge cap, checked on the union.
pub fn check_merge(
    config: &IdentityConfig,
    (customer, held, merged): (&str, &[Identifier], usize),
    (other, other_held, other_merged): (&str, &[Identifier], usize),
) -> Result<(), LinkRefusal> {
    let external = |ids: &[Identifier]| {
        ids.iter()
            .find(|id| id.kind == IdentifierKind::ExternalId)
            .map(|id| id.value.clone())
    };
    if let (Some(external_id), Some(other_external_id)) = (external(held), external(other_held)) {
        if external_id != other_external_id {
            return Err(LinkRefusal::HardConflict {
                customer: customer.to_string(),
                external_id,
                other: other.to_string(),
                other_external_id,
            });
        }
    }
    for kind in IdentifierKind::ALL {
        let mut union: Vec<&Identifier> = held
            .iter()
            .chain(other_held)
            .filter(|id| id.kind == kind)
            .collect();
        union.sort();
        union.dedup();
        let limit = limit_for(config, kind);
        if union.len() > limit {
            return Err(LinkRefusal::TooMany {
                customer: customer.to_string(),
                kind: kind.as_str(),
                count: union.len(),
                limit,
            });
        }
    }
    let count = merged + other_merged + 1;
    if count > config.max_merges_per_customer {
        return Err(LinkRefusal::TooManyMerges {
            customer: customer.to_string(),
            count,
            limit: config.max_merges_per_customer,
        });
    }
    Ok(())
}

/// The id two merged customers keep: an id a client gave before one rapport derived, then the
/// smaller. A function of the two ids alone, so the merged customer's id does not depend on the
/// order events and links arrived in.
pub fn surviving_id<'a>(customer: &'a str, other: &'a str) -> &'a str {
    let key = |id: &'a str| (id.starts_with(DERIVED_ID_PREFIX), id);
    if key(other) < key(customer) {
        other
    } else {
        customer
    }
}

/// A CRM's assertion about who is who (`LinkIdentities`, `MergeCustomers`): logged like an event
/// and replayed in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRequest {
    /// The tenant.
    pub tenant_id: String,
    /// The customer it is about.
    pub customer_id: String,
    /// What it asserts.
    pub action: IdentityAction,
}

/// What an [`IdentityRequest`] asserts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityAction {
    /// These identifiers belong to the customer.
    Link(Vec<Identifier>),
    /// This other customer is the same person.
    Merge {
        /// The other customer's id.
        other_customer_id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(kind: IdentifierKind, value: &str) -> Result<String, IdentifierError> {
        normalise(kind, value, Channel::Twitter, &[]).map(|id| id.value)
    }

    #[test]
    fn each_type_is_normalised() {
        assert_eq!(
            norm(IdentifierKind::Email, "  Ann.B@Example.COM ").unwrap(),
            "ann.b@example.com"
        );
        for phone in [
            "+44 20 7946 0958",
            "0044 (20) 7946-0958",
            "+44.20.7946.0958",
        ] {
            assert_eq!(norm(IdentifierKind::Phone, phone).unwrap(), "+442079460958");
        }
        assert_eq!(
            norm(IdentifierKind::Phone, "020 7946 0958").unwrap(),
            "02079460958"
        );
        assert_eq!(
            norm(IdentifierKind::Handle, "@Ann_B").unwrap(),
            "twitter:ann_b"
        );
        assert_eq!(
            norm(IdentifierKind::ExternalId, " CRM-42 ").unwrap(),
            "CRM-42"
        );
    }

    #[test]
    fn placeholders_and_malformed_values_are_refused() {
        for (kind, value) in [
            (IdentifierKind::ExternalId, "null"),
            (IdentifierKind::ExternalId, "0000000"),
            (IdentifierKind::ExternalId, " Anonymous "),
            (IdentifierKind::Email, "null@example.com"),
            (IdentifierKind::Phone, "+00000000000"),
            (IdentifierKind::Handle, "@unknown"),
        ] {
            assert!(
                matches!(norm(kind, value), Err(IdentifierError::Placeholder(_))),
                "{kind:?} {value:?}: {:?}",
                norm(kind, value)
            );
        }
        assert_eq!(
            norm(IdentifierKind::Email, "   "),
            Err(IdentifierError::Empty)
        );
        assert!(norm(IdentifierKind::Email, "ann.example.com").is_err());
        assert!(norm(IdentifierKind::Email, "a@b@c").is_err());
        assert!(norm(IdentifierKind::Phone, "12345").is_err());
        assert!(norm(IdentifierKind::Phone, "call me").is_err());
        let blocked = vec!["SUPPORT@acme.com".to_string()];
        assert!(matches!(
            normalise(
                IdentifierKind::Email,
                "support@ACME.com",
                Channel::Email,
                &blocked
            ),
            Err(IdentifierError::Placeholder(_))
        ));
    }

    fn id(kind: IdentifierKind, value: &str) -> Identifier {
        Identifier {
            kind,
            value: value.to_string(),
        }
    }

    #[test]
    fn merges_respect_the_hard_identifier_and_the_limits() {
        let config = IdentityConfig::default();
        let ann = [
            id(IdentifierKind::ExternalId, "u1"),
            id(IdentifierKind::Email, "a@x.io"),
        ];
        let same = [id(IdentifierKind::ExternalId, "u1")];
        let other = [id(IdentifierKind::ExternalId, "u2")];
        assert!(check_merge(&config, ("ann", &ann, 0), ("ann2", &same, 0)).is_ok());
        let refused = check_merge(&config, ("ann", &ann, 0), ("bob", &other, 0)).unwrap_err();
        assert!(
            matches!(refused, LinkRefusal::HardConflict { .. }),
            "{refused}"
        );
        let emails: Vec<Identifier> = (0..config.max_emails_per_customer)
            .map(|n| id(IdentifierKind::Email, &format!("{n}@x.io")))
            .collect();
        let refused = check_merge(&config, ("ann", &ann, 0), ("b", &emails, 0)).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("identity.max_emails_per_customer"),
            "{refused}"
        );
        let limit = config.max_merges_per_customer;
        let refused = check_merge(&config, ("ann", &[], limit - 1), ("b", &[], 1)).unwrap_err();
        assert!(
            matches!(refused, LinkRefusal::TooManyMerges { .. }),
            "{refused}"
        );
    }

    #[test]
    fn the_surviving_id_depends_on_the_ids_alone() {
        assert_eq!(surviving_id("bob", "ann"), "ann");
        assert_eq!(surviving_id("ann", "bob"), "ann");
        assert_eq!(surviving_id("~email:a@x.io", "zed"), "zed");
        assert_eq!(surviving_id("zed", "~email:a@x.io"), "zed");
    }
}
