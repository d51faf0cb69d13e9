//! A tenant's identity index: which customer holds each identifier, which customer ids were
//! merged into which, and what each customer holds. The rules are `crate::identity`'s; this is
//! the state, and the planning of what one request changes.

use crate::config::IdentityConfig;
use crate::identity::{self, Identifier, LinkRefusal};
use compact_str::CompactString;
use std::collections::HashMap;

/// What one customer holds besides its events: its identifiers and the customer ids merged into
/// it. Kept in state snapshots beside the customer's history.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    /// Linked identifiers, sorted.
    pub identifiers: Vec<Identifier>,
    /// Customer ids merged into this customer, sorted; each resolves to it.
    pub merged: Vec<String>,
}

/// The index of one tenant.
#[derive(Default)]
pub(super) struct Identities {
    /// Identifier → the customer holding it.
    owner: HashMap<Identifier, CompactString, ahash::RandomState>,
    /// Customers with identifiers or merges (most customers have neither and are not here).
    profiles: HashMap<CompactString, Profile, ahash::RandomState>,
    /// Merged-away customer id → the customer it is now part of.
    alias: HashMap<CompactString, CompactString, ahash::RandomState>,
}

/// What a request changes: customers to merge (in order) and identifiers to link, with the
/// links the rules refused.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// The customer the request is about, once the merges are done.
    pub customer: CompactString,
    /// Pairs to merge, in order: (customer, other); the survivor of each is
    /// [`identity::surviving_id`] of the two.
    pub merges: Vec<(CompactString, CompactString)>,
    /// Identifiers no customer holds yet, linked to `customer`.
    pub links: Vec<Identifier>,
    /// What the rules refused.
    pub refused: Vec<LinkRefusal>,
}

impl Identities {
    /// The customer `customer_id` now is (itself unless merged away).
    pub fn canonical<'a>(&'a self, customer_id: &'a str) -> &'a str {
        self.alias
            .get(customer_id)
            .map_or(customer_id, CompactString::as_str)
    }

    /// What the customer holds (identifiers, merged ids), if anything.
    pub fn profile(&self, customer_id: &str) -> Option<&Profile> {
        self.profiles.get(customer_id)
    }

    /// The customer holding `identifier`, if any.
    pub fn owner(&self, identifier: &Identifier) -> Option<&str> {
        self.owner.get(identifier).map(CompactString::as_str)
    }

    /// The customer an interaction with `customer_id` (may be empty) and `identifiers` belongs to
    /// when the request changes nothing (every identifier already held by that customer); `None`
    /// when it would change the index ([`Identities::plan`] then decides under the write lock).
    pub fn resolve_unchanged(
        &self,
        customer_id: &str,
        identifiers: &[Identifier],
    ) -> Option<CompactString> {
        let mut customer = (!customer_id.is_empty()).then(|| self.canonical(customer_id));
        for identifier in identifiers {
            let owner = self.owner(identifier)?;
            match customer {
                None => customer = Some(owner),
                Some(known) if known != owner => return None,
                Some(_) => {}
            }
        }
        customer.map(CompactString::from)
    }

    /// Plans a request: the customer it names (or, with none, the holder of its strongest known
    /// identifier, else an id derived from its strongest identifier), the customers holding its
    /// other identifiers to merge into it, and the identifiers to link. `can_merge(a, b)` says
    /// whether the histories of customers `a` and `b` can be merged exactly. A merge or link the
    /// rules refuse is left out and listed.
    pub fn plan(
        &self,
        config: &IdentityConfig,
        customer_id: &str,
        identifiers: &[Identifier],
        can_merge: impl Fn(&str, &str) -> bool,
    ) -> Plan {
        let mut ordered: Vec<&Identifier> = identifiers.iter().collect();
        ordered.sort();
        ordered.dedup();
        let named =
            (!customer_id.is_empty()).then(|| CompactString::from(self.canonical(customer_id)));
        let mut customer = named.unwrap_or_else(|| {
            ordered
                .iter()
                .find_map(|identifier| self.owner.get(*identifier).cloned())
                .unwrap_or_else(|| CompactString::from(ordered[0].derived_customer_id()))
        });
        // The plan's view of the index as the merges so far would leave it.
        let mut held: Vec<Identifier> = self.held(&customer).to_vec();
        let mut merged_count = self.merged_count(&customer);
        let mut absorbed: Vec<CompactString> = Vec::new();
        let mut plan = Plan::default();
        for identifier in &ordered {
            let Some(owner) = self.owner.get(*identifier) else {
                continue;
            };
            if *owner == customer || absorbed.contains(owner) {
                continue;
            }
            let checked =
                self.check_merge(config, (&customer, &held, merged_count), owner, &can_merge);
            match checked {
                Ok(()) => {
                    plan.merges.push((customer.clone(), owner.clone()));
                    held.extend(self.held(owner).iter().cloned());
                    held.sort();
                    held.dedup();
                    merged_count += self.merged_count(owner) + 1;
                    absorbed.push(owner.clone());
                    absorbed.push(customer.clone());
                    customer = CompactString::from(identity::surviving_id(&customer, owner));
                }
                Err(refusal) => plan.refused.push(refusal),
            }
        }
        for identifier in ordered {
            if self.owner.contains_key(identifier) || held.contains(identifier) {
                continue;
            }
            let limit = identity::limit_for(config, identifier.kind);
            let count = held.iter().filter(|h| h.kind == identifier.kind).count();
            if count >= limit {
                plan.refused.push(LinkRefusal::TooMany {
                    customer: customer.to_string(),
                    kind: identifier.kind.as_str(),
                    count: count + 1,
                    limit,
                });
                continue;
            }
            held.push(identifier.clone());
            plan.links.push(identifier.clone());
        }
        plan.customer = customer;
        plan
    }

    /// Plans the merge of two customer ids a CRM says are one person (`MergeCustomers`): nothing
    /// when they already are one, else the merge or why the rules refuse it.
    pub fn plan_merge(
        &self,
        config: &IdentityConfig,
        customer_id: &str,
        other_customer_id: &str,
        can_merge: impl Fn(&str, &str) -> bool,
    ) -> Plan {
        let customer = CompactString::from(self.canonical(customer_id));
        let other = CompactString::from(self.canonical(other_customer_id));
        let mut plan = Plan {
            customer: customer.clone(),
            ..Plan::default()
        };
        if customer == other {
            return plan;
        }
        let own = (
            customer.as_str(),
            self.held(&customer),
            self.merged_count(&customer),
        );
        match self.check_merge(config, own, &other, &can_merge) {
            Ok(()) => {
                plan.customer = CompactString::from(identity::surviving_id(&customer, &other));
                plan.merges.push((customer, other));
            }
            Err(refusal) => plan.refused.push(refusal),
        }
        plan
    }

    /// Whether a customer holding `held` (merged from `merged` customers) may absorb `other`: the
    /// identity rules on the union, and an exact merge of the two histories.
    fn check_merge(
        &self,
        config: &IdentityConfig,
        (customer, held, merged): (&str, &[Identifier], usize),
        other: &str,
        can_merge: &impl Fn(&str, &str) -> bool,
    ) -> Result<(), LinkRefusal> {
        identity::check_merge(
            config,
            (customer, held, merged),
            (other, self.held(other), self.merged_count(other)),
        )?;
        if can_merge(customer, other) {
            Ok(())
        } else {
            Err(LinkRefusal::Compacted {
                customer: other.to_string(),
            })
        }
    }

    fn held(&self, customer: &str) -> &[Identifier] {
        self.profiles
            .get(customer)
            .map_or(&[][..], |profile| &profile.identifiers)
    }

    fn merged_count(&self, customer: &str) -> usize {
        self.profiles
            .get(customer)
            .map_or(0, |profile| profile.merged.len())
    }

    /// Records that `absorbed` is now part of `survivor`: its identifiers, its merged ids and
    /// itself resolve to `survivor`.
    pub fn merge(&mut self, survivor: &str, absorbed: &str) {
        let taken = self.profiles.remove(absorbed).unwrap_or_default();
        for identifier in &taken.identifiers {
            self.owner
                .insert(identifier.clone(), CompactString::from(survivor));
        }
        for merged in &taken.merged {
            self.alias.insert(
                CompactString::from(merged.as_str()),
                CompactString::from(survivor),
            );
        }
        self.alias
            .insert(CompactString::from(absorbed), CompactString::from(survivor));
        let profile = self
            .profiles
            .entry(CompactString::from(survivor))
            .or_default();
        profile.identifiers.extend(taken.identifiers);
        profile.identifiers.sort();
        profile.identifiers.dedup();
        profile.merged.extend(taken.merged);
        profile.merged.push(absorbed.to_string());
        profile.merged.sort();
        profile.merged.dedup();
    }

    /// A copy of the profiles for a snapshot (`None` when there are none).
    pub fn profiles_snapshot(&self) -> Option<HashMap<CompactString, Profile, ahash::RandomState>> {
        (!self.profiles.is_empty()).then(|| self.profiles.clone())
    }

    /// Links an identifier no customer holds to `customer`.
    pub fn link(&mut self, customer: &str, identifier: Identifier) {
        self.owner
            .insert(identifier.clone(), CompactString::from(customer));
        let profile = self
            .profiles
            .entry(CompactString::from(customer))
            .or_default();
        if let Err(at) = profile.identifiers.binary_search(&identifier) {
            profile.identifiers.insert(at, identifier);
        }
    }

    /// Puts back a customer's profile read from a state snapshot; returns the merged ids that
    /// were restored as customers of their own before it (a snapshot taken during a merge), for
    /// the caller to fold into this one.
    pub fn restore(&mut self, customer: &str, profile: Profile) -> Vec<String> {
        for identifier in &profile.identifiers {
            self.owner
                .insert(identifier.clone(), CompactString::from(customer));
        }
        for merged in &profile.merged {
            self.alias.insert(
                CompactString::from(merged.as_str()),
                CompactString::from(customer),
            );
        }
        let merged = profile.merged.clone();
        self.profiles.insert(CompactString::from(customer), profile);
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentifierKind;

    fn email(value: &str) -> Identifier {
        Identifier {
            kind: IdentifierKind::Email,
            value: value.to_string(),
        }
    }

    #[test]
    fn a_plan_links_new_identifiers_and_merges_their_holders() {
        let config = IdentityConfig::default();
        let mut index = Identities::default();
        let plan = index.plan(&config, "", &[email("a@x.io")], |_, _| true);
        assert_eq!(plan.customer, "~email:a@x.io");
        assert_eq!(plan.links, [email("a@x.io")]);
        index.link(&plan.customer, email("a@x.io"));
        // A customer id with a held identifier: the holder is merged; the given id survives.
        let plan = index.plan(
            &config,
            "ann",
            &[email("a@x.io"), email("b@x.io")],
            |_, _| true,
        );
        assert_eq!(plan.merges, [("ann".into(), "~email:a@x.io".into())]);
        assert_eq!(plan.customer, "ann");
        assert_eq!(plan.links, [email("b@x.io")]);
        index.merge("ann", "~email:a@x.io");
        index.link("ann", email("b@x.io"));
        assert_eq!(index.canonical("~email:a@x.io"), "ann");
        assert_eq!(
            index.resolve_unchanged("", &[email("a@x.io"), email("b@x.io")]),
            Some("ann".into())
        );
        assert_eq!(index.resolve_unchanged("bob", &[email("a@x.io")]), None);
    }
}
