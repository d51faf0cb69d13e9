//! Tenants' intents: each tenant's list (name and examples), its model, and the table of intent
//! names whose positions event records and open threads hold (a `u16` each, 0 for none).
//!
//! The name table only grows: a name keeps its id when the list changes, so records folded under
//! an older list still name their intent. Ids are assigned in the order lists are set and logged
//! events replayed, so a restart rebuilds the same table; a state snapshot carries the table it was
//! written under, and its customers' ids are translated to the table in force when they are
//! restored (see [`IntentRegistry::restore`]).

use crate::domain::ReadIntent;
use crate::sentiment::intent::{IntentDefinition, IntentError, IntentModel};
use std::collections::HashMap;
use std::sync::Arc;

/// Most intent names a tenant's table holds (ids are `u16`, 0 reserved).
pub const MAX_INTENT_NAMES: usize = u16::MAX as usize;

/// One tenant's list in force with its model.
#[derive(Debug)]
pub struct TenantIntents {
    /// The list as set, in order.
    pub definitions: Vec<IntentDefinition>,
    /// The list's ids in the tenant's name table, in the same order.
    ids: Vec<u16>,
    /// Whether the list was set over the API (logged; a config list does not replace it).
    pub set_over_api: bool,
    model: IntentModel,
}

/// One tenant's intents: the list in force and every name it has had.
#[derive(Debug, Default)]
struct TenantState {
    current: Option<Arc<TenantIntents>>,
    /// Names by id − 1, shared with the [`IntentNames`] handed out (copied only when a name is
    /// added while one is held).
    names: Arc<Vec<Arc<str>>>,
    ids: HashMap<Arc<str>, u16>,
}

impl TenantState {
    /// The id of `name`, added to the table when new (0 when the table is full).
    fn intern(&mut self, name: &str) -> u16 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        if self.names.len() >= MAX_INTENT_NAMES {
            return 0;
        }
        let name: Arc<str> = name.into();
        Arc::make_mut(&mut self.names).push(Arc::clone(&name));
        let id = self.names.len() as u16;
        self.ids.insert(name, id);
        id
    }
}

/// A tenant's intent names, by id, as of one moment (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct IntentNames(Arc<Vec<Arc<str>>>);

impl IntentNames {
    /// The name of `id`; `None` for 0 or an id the table does not hold.
    pub fn name(&self, id: u16) -> Option<&Arc<str>> {
        self.0.get(usize::from(id).checked_sub(1)?)
    }
}

impl crate::segments::IntentNamesOf for IntentNames {
    fn is_named(&self, id: u16, name: &str) -> bool {
        self.name(id).is_some_and(|named| &**named == name)
    }
}

/// A tenant's intent names, fetched from the registry the first time a segment condition reads
/// them (most queries' segments read none).
pub struct LazyIntentNames<'a> {
    registry: &'a IntentRegistry,
    tenant_id: &'a str,
    names: std::cell::OnceCell<IntentNames>,
}

impl<'a> LazyIntentNames<'a> {
    /// `tenant_id`'s names in `registry`, not fetched yet.
    pub fn new(registry: &'a IntentRegistry, tenant_id: &'a str) -> Self {
        Self {
            registry,
            tenant_id,
            names: std::cell::OnceCell::new(),
        }
    }
}

impl crate::segments::IntentNamesOf for LazyIntentNames<'_> {
    fn is_named(&self, id: u16, name: &str) -> bool {
        self.names
            .get_or_init(|| self.registry.names(self.tenant_id))
            .is_named(id, name)
    }
}

/// Every tenant's intents.
#[derive(Debug, Default)]
pub struct IntentRegistry {
    tenants: parking_lot::RwLock<HashMap<String, TenantState>>,
}

/// What a state snapshot keeps of one tenant's intents: the list set over the API (empty when
/// none was) and the name table, by id − 1.
pub type SavedIntents = (String, Vec<IntentDefinition>, Vec<String>);

impl IntentRegistry {
    /// Puts `definitions` in force for `tenant_id` (an empty list removes the tenant's intents).
    /// `set_over_api`: the list came from the API (and is logged); a config list does not replace
    /// such a list.
    pub fn set(
        &self,
        tenant_id: &str,
        definitions: Vec<IntentDefinition>,
        set_over_api: bool,
    ) -> Result<(), IntentError> {
        let model = IntentModel::new(&definitions)?;
        let mut tenants = self.tenants.write();
        let state = tenants.entry(tenant_id.to_string()).or_default();
        if !set_over_api && state.current.as_ref().is_some_and(|c| c.set_over_api) {
            return Ok(());
        }
        let ids = definitions.iter().map(|d| state.intern(&d.name)).collect();
        state.current = (!definitions.is_empty() || set_over_api).then(|| {
            Arc::new(TenantIntents {
                definitions,
                ids,
                set_over_api,
                model,
            })
        });
        Ok(())
    }

    /// The list in force for `tenant_id`, if any.
    pub fn of(&self, tenant_id: &str) -> Option<Arc<TenantIntents>> {
        self.tenants.read().get(tenant_id)?.current.clone()
    }

    /// The intent `text` reads as among `tenant_id`'s intents: `None` when the tenant has none,
    /// `Some(None)` when none fits ("other").
    pub fn read(&self, tenant_id: &str, text: &str) -> Option<Option<ReadIntent>> {
        let intents = self.of(tenant_id).filter(|i| !i.definitions.is_empty())?;
        Some(intents.model.classify(text).map(|found| ReadIntent {
            name: intents.definitions[found.index].name.as_str().into(),
            confidence: found.confidence,
        }))
    }

    /// The id of `name` in `tenant_id`'s table, added when new (what an applied event records).
    pub fn intern(&self, tenant_id: &str, name: &str) -> u16 {
        if let Some(id) = self
            .tenants
            .read()
            .get(tenant_id)
            .and_then(|state| state.ids.get(name).copied())
        {
            return id;
        }
        self.tenants
            .write()
            .entry(tenant_id.to_string())
            .or_default()
            .intern(name)
    }

    /// The id of `name` in `tenant_id`'s table, without adding it.
    pub fn id(&self, tenant_id: &str, name: &str) -> Option<u16> {
        self.tenants.read().get(tenant_id)?.ids.get(name).copied()
    }

    /// `tenant_id`'s table of names as it stands.
    pub fn names(&self, tenant_id: &str) -> IntentNames {
        self.tenants
            .read()
            .get(tenant_id)
            .map(|state| IntentNames(Arc::clone(&state.names)))
            .unwrap_or_default()
    }

    /// What a state snapshot keeps: each tenant's list set over the API and its name table.
    pub fn saved(&self) -> Vec<SavedIntents> {
        let tenants = self.tenants.read();
        let mut saved: Vec<SavedIntents> = tenants
            .iter()
            .map(|(tenant_id, state)| {
                let definitions = state
                    .current
                    .as_ref()
                    .filter(|current| current.set_over_api)
                    .map(|current| current.definitions.clone())
                    .unwrap_or_default();
                let names = state.names.iter().map(|name| name.to_string()).collect();
                (tenant_id.clone(), definitions, names)
            })
            .collect();
        saved.sort_by(|a, b| a.0.cmp(&b.0));
        saved
    }

    /// Restores a snapshot's list (when it had one set over the API; the error when it no longer
    /// validates) and returns how its name table's ids translate to the table in force (index:
    /// snapshot id; 0 stays 0), whatever became of the list.
    pub fn restore(
        &self,
        (tenant_id, definitions, names): SavedIntents,
    ) -> (Vec<u16>, Result<(), IntentError>) {
        // The table first, in its order: restored into an empty registry, ids stay as they were.
        let translation = {
            let mut tenants = self.tenants.write();
            let state = tenants.entry(tenant_id.clone()).or_default();
            std::iter::once(0)
                .chain(names.iter().map(|name| state.intern(name)))
                .collect()
        };
        let set = if definitions.is_empty() {
            Ok(())
        } else {
            self.set(&tenant_id, definitions, true)
        };
        (translation, set)
    }

    /// The ids of `tenant_id`'s list in force, in its order.
    pub fn ids_in_force(&self, tenant_id: &str) -> Vec<u16> {
        self.of(tenant_id)
            .map(|intents| intents.ids.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> Vec<IntentDefinition> {
        names
            .iter()
            .map(|name| IntentDefinition {
                name: name.to_string(),
                examples: vec![format!("about {name}"), format!("{name} please")],
            })
            .collect()
    }

    #[test]
    fn names_keep_their_ids_and_a_snapshot_table_translates_to_the_one_in_force() {
        let registry = IntentRegistry::default();
        registry
            .set("acme", list(&["refund", "login"]), true)
            .unwrap();
        registry
            .set("acme", list(&["billing", "refund"]), true)
            .unwrap();
        // Ids only grow: "login" keeps 2 though it left the list; "billing" is 3.
        assert_eq!(registry.id("acme", "refund"), Some(1));
        assert_eq!(registry.id("acme", "login"), Some(2));
        assert_eq!(registry.id("acme", "billing"), Some(3));
        assert_eq!(registry.ids_in_force("acme"), [3, 1]);
        assert_eq!(&**registry.names("acme").name(2).unwrap(), "login");
        assert!(registry.names("acme").name(0).is_none());
        // A config list does not replace one set over the API.
        registry.set("acme", list(&["other_thing"]), false).unwrap();
        assert_eq!(registry.ids_in_force("acme"), [3, 1]);

        // Restored into a registry whose table already holds another name, the snapshot's ids
        // move: translation[snapshot id] = id in force.
        let saved = registry.saved();
        let restored = IntentRegistry::default();
        restored.intern("acme", "shipping");
        let (translation, set) = restored.restore(saved[0].clone());
        set.unwrap();
        assert_eq!(translation, [0, 2, 3, 4]);
        assert_eq!(restored.id("acme", "login"), Some(3));
        // Into an empty registry: the same ids.
        let fresh = IntentRegistry::default();
        assert_eq!(fresh.restore(saved[0].clone()).0, [0, 1, 2, 3]);
        assert_eq!(
            restored.of("acme").unwrap().definitions,
            list(&["billing", "refund"])
        );
    }
}
