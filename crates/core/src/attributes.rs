//! Customer attributes a CRM asserts (`UpsertCustomer`): typed values under keys, versioned so
//! that a late update never overwrites a newer one. Pure: validation and the versioned merge.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One attribute's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttributeValue {
    /// Text (at most [`MAX_TEXT_BYTES`]).
    Text(String),
    /// A finite number.
    Number(f64),
    /// Yes or no.
    Flag(bool),
}

impl AttributeValue {
    /// The type's name as errors spell it.
    pub fn type_name(&self) -> &'static str {
        match self {
            AttributeValue::Text(_) => "text",
            AttributeValue::Number(_) => "number",
            AttributeValue::Flag(_) => "flag",
        }
    }
}

/// Keys with a meaning to rapport, and the type each must have.
pub const WELL_KNOWN: [(&str, &str); 5] = [
    ("tier", "text"),
    ("plan", "text"),
    ("region", "text"),
    ("lifetime_value", "number"),
    (DO_NOT_CONTACT, "flag"),
];

/// The attribute that keeps a customer out of TopCustomers, ClaimNext and WatchPriorities.
pub const DO_NOT_CONTACT: &str = "do_not_contact";

/// Longest text value, in bytes.
pub const MAX_TEXT_BYTES: usize = 256;

/// Most attributes one customer holds.
pub const MAX_ATTRIBUTES: usize = 64;

/// An update would leave a customer with more than [`MAX_ATTRIBUTES`] keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("attributes: the customer would hold {count} keys, at most {MAX_ATTRIBUTES} allowed")]
pub struct TooManyAttributes {
    /// How many it would hold.
    pub count: usize,
}

/// A customer's attributes and the version of the update that last changed them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attributes {
    /// The newest update applied (0: none).
    pub version: u64,
    /// Values by key.
    pub values: BTreeMap<String, AttributeValue>,
}

impl Attributes {
    /// Whether the customer must not be contacted.
    pub fn do_not_contact(&self) -> bool {
        matches!(
            self.values.get(DO_NOT_CONTACT),
            Some(AttributeValue::Flag(true))
        )
    }

    /// Applies an update at `version`: each given key is set (`Some`) or removed (`None`). An
    /// update not newer than the last one applied changes nothing (`false`): a late update never
    /// overwrites a newer one, and a repeated one is idempotent. An update that would leave more
    /// than [`MAX_ATTRIBUTES`] keys is refused whole.
    pub fn update(
        &mut self,
        version: u64,
        changes: &BTreeMap<String, Option<AttributeValue>>,
    ) -> Result<bool, TooManyAttributes> {
        if version <= self.version {
            return Ok(false);
        }
        let added = changes
            .iter()
            .filter(|(key, value)| value.is_some() && !self.values.contains_key(*key))
            .count();
        let removed = changes
            .iter()
            .filter(|(key, value)| value.is_none() && self.values.contains_key(*key))
            .count();
        let count = self.values.len() + added - removed;
        if count > MAX_ATTRIBUTES {
            return Err(TooManyAttributes { count });
        }
        for (key, value) in changes {
            match value {
                Some(value) => {
                    self.values.insert(key.clone(), value.clone());
                }
                None => {
                    self.values.remove(key);
                }
            }
        }
        self.version = version;
        Ok(true)
    }

    /// Two customers' attributes made one (a merge): the newer update's values win on a shared
    /// key, the others are kept; the version is the newer.
    pub fn merged(mut self, other: Attributes) -> Attributes {
        let (newer, older) = if other.version > self.version {
            (other, self)
        } else {
            self.values.extend(
                other
                    .values
                    .into_iter()
                    .filter(|(key, _)| !self.values.contains_key(key))
                    .collect::<Vec<_>>(),
            );
            return self;
        };
        let mut values = newer.values;
        for (key, value) in older.values {
            values.entry(key).or_insert(value);
        }
        Attributes {
            version: newer.version,
            values,
        }
    }
}

/// Checks one attribute: the key's form (`[a-z0-9_]`, 1 to 64 bytes), a well-known key's type,
/// a text's length, a number's finiteness (and a lifetime value's sign). The error says what is
/// wrong; the caller names the field.
pub fn validate(key: &str, value: Option<&AttributeValue>) -> Result<(), String> {
    if key.is_empty()
        || key.len() > 64
        || !key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err("keys are 1 to 64 of a-z, 0-9 and _".to_string());
    }
    let Some(value) = value else {
        return Ok(());
    };
    if let Some((_, wanted)) = WELL_KNOWN.iter().find(|(known, _)| *known == key) {
        if value.type_name() != *wanted {
            return Err(format!("must be a {wanted}, got a {}", value.type_name()));
        }
    }
    match value {
        AttributeValue::Text(text) if text.len() > MAX_TEXT_BYTES => Err(format!(
            "is {} bytes, at most {MAX_TEXT_BYTES} allowed",
            text.len()
        )),
        AttributeValue::Number(number) if !number.is_finite() => {
            Err(format!("must be a finite number, got {number}"))
        }
        AttributeValue::Number(number) if key == "lifetime_value" && *number < 0.0 => {
            Err(format!("must not be negative, got {number}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(
        key: &str,
        value: Option<AttributeValue>,
    ) -> BTreeMap<String, Option<AttributeValue>> {
        BTreeMap::from([(key.to_string(), value)])
    }

    #[test]
    fn a_late_update_never_overwrites_a_newer_one() {
        let mut attributes = Attributes::default();
        let vip = change("tier", Some(AttributeValue::Text("vip".into())));
        assert_eq!(attributes.update(5, &vip), Ok(true));
        let basic = change("tier", Some(AttributeValue::Text("basic".into())));
        assert_eq!(attributes.update(3, &basic), Ok(false));
        assert_eq!(
            attributes.update(5, &change("tier", None)),
            Ok(false),
            "a repeat"
        );
        assert_eq!(
            attributes.values["tier"],
            AttributeValue::Text("vip".into())
        );
        let dnc = change(DO_NOT_CONTACT, Some(AttributeValue::Flag(true)));
        assert_eq!(attributes.update(6, &dnc), Ok(true));
        assert!(attributes.do_not_contact());
        assert_eq!(attributes.update(7, &change("tier", None)), Ok(true));
        assert!(!attributes.values.contains_key("tier"));
        let many: BTreeMap<String, Option<AttributeValue>> = (0..MAX_ATTRIBUTES)
            .map(|n| (format!("k{n}"), Some(AttributeValue::Flag(true))))
            .collect();
        assert!(attributes.update(8, &many).is_err(), "65 keys");
        assert_eq!(attributes.version, 7, "refused whole");
    }

    #[test]
    fn well_known_keys_have_types() {
        assert!(validate("tier", Some(&AttributeValue::Number(1.0))).is_err());
        assert!(validate(DO_NOT_CONTACT, Some(&AttributeValue::Text("yes".into()))).is_err());
        assert!(validate("lifetime_value", Some(&AttributeValue::Number(-1.0))).is_err());
        assert!(validate("score", Some(&AttributeValue::Number(f64::NAN))).is_err());
        assert!(validate("Bad Key", None).is_err());
        assert!(validate(
            "favourite_colour",
            Some(&AttributeValue::Text("teal".into()))
        )
        .is_ok());
    }

    #[test]
    fn merged_attributes_keep_the_newer_values() {
        let older = Attributes {
            version: 2,
            values: BTreeMap::from([
                ("tier".to_string(), AttributeValue::Text("basic".into())),
                ("region".to_string(), AttributeValue::Text("eu".into())),
            ]),
        };
        let newer = Attributes {
            version: 9,
            values: BTreeMap::from([("tier".to_string(), AttributeValue::Text("vip".into()))]),
        };
        for merged in [older.clone().merged(newer.clone()), newer.merged(older)] {
            assert_eq!(merged.version, 9);
            assert_eq!(merged.values["tier"], AttributeValue::Text("vip".into()));
            assert_eq!(merged.values["region"], AttributeValue::Text("eu".into()));
        }
    }
}
