//! IntentService: a tenant's intents, each a name and example messages.

use crate::api::access::Grant;
use crate::api::convert::{check_id, Limits};
use crate::api::error::ApiError;
use crate::engine::Engine;
use crate::pb;
use crate::pb::intent_service_server::IntentService;
use crate::sentiment::intent::IntentDefinition;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The IntentService implementation.
pub struct IntentApi {
    engine: Arc<Engine>,
    limits: Limits,
    /// Cluster mode: lists are not shared across replicas yet (FAILED_PRECONDITION).
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl IntentApi {
    /// A service over `engine` with the server's input limits.
    pub fn new(engine: Arc<Engine>, limits: Limits) -> Self {
        Self {
            engine,
            limits,
            cluster: None,
        }
    }

    /// Cluster mode: SetIntents refused (FAILED_PRECONDITION).
    pub fn with_cluster(mut self, cluster: Option<Arc<crate::cluster::Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }
}

/// A list → proto.
fn intents_to_pb(definitions: &[IntentDefinition]) -> Vec<pb::Intent> {
    definitions
        .iter()
        .map(|definition| pb::Intent {
            name: definition.name.clone(),
            examples: definition.examples.clone(),
        })
        .collect()
}

#[tonic::async_trait]
impl IntentService for Arc<IntentApi> {
    async fn set_intents(
        &self,
        request: Request<pb::SetIntentsRequest>,
    ) -> Result<Response<pb::SetIntentsResponse>, Status> {
        crate::cluster::single_process_only(self.cluster.as_deref(), "SetIntents")?;
        Grant::check(&request, &request.get_ref().tenant_id)?;
        let pb::SetIntentsRequest { tenant_id, intents } = request.into_inner();
        check_id("tenant_id", &tenant_id, true, &self.limits).map_err(ApiError::from)?;
        let definitions = intents
            .into_iter()
            .map(|intent| IntentDefinition {
                name: intent.name,
                examples: intent.examples,
            })
            .collect();
        let (outcome, durable) = self.engine.set_intents(&tenant_id, definitions);
        outcome.map_err(|error| ApiError::InvalidArgument(error.to_string()))?;
        if let Some(durable) = durable {
            durable.wait().await;
        }
        Ok(Response::new(pb::SetIntentsResponse {}))
    }

    async fn get_intents(
        &self,
        request: Request<pb::GetIntentsRequest>,
    ) -> Result<Response<pb::GetIntentsResponse>, Status> {
        Grant::check(&request, &request.get_ref().tenant_id)?;
        let pb::GetIntentsRequest { tenant_id } = request.into_inner();
        check_id("tenant_id", &tenant_id, true, &self.limits).map_err(ApiError::from)?;
        let intents = self
            .engine
            .store
            .intents()
            .of(&tenant_id)
            .map(|intents| intents_to_pb(&intents.definitions))
            .unwrap_or_default();
        Ok(Response::new(pb::GetIntentsResponse { intents }))
    }
}
