//! A tenant's scoring models for the rules in force: the base model (its SLA policy and fitted
//! activity model) and one per rule carrying a treatment (`segments`), picked per customer by the
//! customer's attributes.

use crate::attributes::Attributes;
use crate::config::ScoringConfig;
use crate::scoring::{RetentionModel, TenantModel};
use crate::segments::Policy;
use std::sync::Arc;

/// The models of one tenant, built for one policy.
pub(super) struct TenantModels {
    /// The segments and rules they were built for (compared by pointer with the policy in force).
    pub policy: Arc<Policy>,
    /// `[0]`: customers no treating rule matches; `[k]`: the k-th treating rule's customers.
    models: Vec<TenantModel>,
}

impl TenantModels {
    /// The models of `tenant_id` for `policy`, from its base model.
    pub fn new(
        config: &ScoringConfig,
        tenant_id: &str,
        base: TenantModel,
        policy: Arc<Policy>,
    ) -> Self {
        let mut models = Vec::with_capacity(1 + policy.treating_rules().count());
        for rule in policy.treating_rules() {
            models.push(base.for_rule(config, Some(tenant_id), rule));
        }
        models.insert(0, base);
        Self { policy, models }
    }

    /// The model of customers no rule treats.
    pub fn base(&self) -> &TenantModel {
        &self.models[0]
    }

    /// The same models with a newly fitted activity model.
    pub fn with_retention(&self, retention: RetentionModel) -> Self {
        Self {
            policy: Arc::clone(&self.policy),
            models: self
                .models
                .iter()
                .map(|model| TenantModel {
                    retention,
                    ..model.clone()
                })
                .collect(),
        }
    }

    /// Whether some rule treats customers (the model then depends on attributes).
    pub fn treats(&self) -> bool {
        self.models.len() > 1
    }

    /// The model of a customer with `attributes`.
    pub fn for_attributes(&self, attributes: Option<&Attributes>) -> &TenantModel {
        &self.models[self.policy.treatment_of(attributes)]
    }
}
