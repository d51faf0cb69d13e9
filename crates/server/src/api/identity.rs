//! IdentityService: a CRM asserts which identifiers and customer ids belong to one person.

use crate::api::access::Grant;
use crate::api::convert::{self, check_id, Limits};
use crate::api::error::ApiError;
use crate::engine::{now_ms, Engine};
use crate::pb;
use crate::pb::identity_service_server::IdentityService;
use rapport_core::identity::{IdentityAction, IdentityRequest};
use rapport_core::store::{IdentityRefusal, Profile, UpsertRefusal};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The IdentityService implementation.
pub struct IdentityApi {
    engine: Arc<Engine>,
    limits: Limits,
    /// Cluster mode: attribute updates go through the stream to the customer's owner; identity
    /// requests are not served across replicas yet.
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl IdentityApi {
    /// A service over `engine` with the server's input limits.
    pub fn new(engine: Arc<Engine>, limits: Limits) -> Self {
        Self {
            engine,
            limits,
            cluster: None,
        }
    }

    /// Cluster mode: UpsertCustomer through the stream, identity requests refused
    /// (FAILED_PRECONDITION).
    pub fn with_cluster(mut self, cluster: Option<Arc<crate::cluster::Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    fn not_in_cluster(&self, what: &str) -> Result<(), ApiError> {
        crate::cluster::single_process_only(self.cluster.as_deref(), what)
    }

    /// Carries out a validated request; answers once it is durable.
    async fn carry_out(&self, request: IdentityRequest) -> Result<pb::CustomerIdentity, ApiError> {
        let (outcome, durable) = self.engine.identity(&request, now_ms());
        let (customer_id, profile) = outcome.map_err(|refusal| match refusal {
            IdentityRefusal::Rule(rule) => ApiError::FailedPrecondition(rule.to_string()),
            IdentityRefusal::Store(limit) => ApiError::ResourceExhausted(limit.to_string()),
        })?;
        if let Some(durable) = durable {
            durable.wait().await;
        }
        Ok(identity_to_pb(&request.tenant_id, customer_id, profile))
    }
}

/// A customer's identity → proto.
fn identity_to_pb(tenant_id: &str, customer_id: String, profile: Profile) -> pb::CustomerIdentity {
    pb::CustomerIdentity {
        tenant_id: tenant_id.to_string(),
        customer_id,
        identifiers: profile
            .identifiers
            .iter()
            .map(convert::identifier_to_pb)
            .collect(),
        merged_customer_ids: profile.merged,
    }
}

/// Largest `UpsertCustomer` version accepted (`i64::MAX`).
pub const MAX_UPSERT_VERSION: u64 = i64::MAX as u64;

#[tonic::async_trait]
impl IdentityService for Arc<IdentityApi> {
    async fn link_identities(
        &self,
        request: Request<pb::LinkIdentitiesRequest>,
    ) -> Result<Response<pb::CustomerIdentity>, Status> {
        self.not_in_cluster("LinkIdentities")?;
        Grant::check(&request, &request.get_ref().tenant_id)?;
        let pb::LinkIdentitiesRequest {
            tenant_id,
            customer_id,
            identifiers,
        } = request.into_inner();
        check_id("tenant_id", &tenant_id, true, &self.limits).map_err(ApiError::from)?;
        check_id("customer_id", &customer_id, true, &self.limits).map_err(ApiError::from)?;
        if identifiers.is_empty() {
            return Err(
                ApiError::InvalidArgument("identifiers: at least one is required".into()).into(),
            );
        }
        let identifiers =
            convert::identifiers_from_pb("identifiers", identifiers, None, &self.limits)
                .map_err(ApiError::from)?;
        let request = IdentityRequest {
            tenant_id,
            customer_id,
            action: IdentityAction::Link(identifiers),
        };
        Ok(Response::new(self.carry_out(request).await?))
    }

    async fn upsert_customer(
        &self,
        request: Request<pb::UpsertCustomerRequest>,
    ) -> Result<Response<pb::UpsertCustomerResponse>, Status> {
        Grant::check(&request, &request.get_ref().tenant_id)?;
        if let Some(cluster) = &self.cluster {
            let (tenant_id, customer_id) =
                (&request.get_ref().tenant_id, &request.get_ref().customer_id);
            if let Some(owner) = cluster.route(request.metadata(), tenant_id, customer_id)? {
                return pb::identity_service_client::IdentityServiceClient::new(owner)
                    .upsert_customer(crate::cluster::forwarded(request))
                    .await;
            }
        }
        let pb::UpsertCustomerRequest {
            tenant_id,
            customer_id,
            attributes,
            version,
        } = request.into_inner();
        check_id("tenant_id", &tenant_id, true, &self.limits).map_err(ApiError::from)?;
        check_id("customer_id", &customer_id, true, &self.limits).map_err(ApiError::from)?;
        // Above i64::MAX a version could never be followed by a newer one (and 2^64-1 froze the
        // customer for good); CRM versions (modification times in ms) are far below it.
        if version == 0 || version > MAX_UPSERT_VERSION {
            return Err(ApiError::InvalidArgument(format!(
                "version: must be 1 to {MAX_UPSERT_VERSION} (the update's version in the CRM), \
                 got {version}"
            ))
            .into());
        }
        let changes = convert::attribute_changes_from_pb(attributes).map_err(ApiError::from)?;
        let mut published = false;
        if let Some(cluster) = &self.cluster {
            // The owner: tried first (a refusal publishes nothing), then in the stream (what any
            // later owner applies), then here. This replica's consumer may apply the stream's
            // copy first: the update is still this call's.
            let mut trial = self
                .engine
                .store
                .attributes_of(&tenant_id, &customer_id)
                .unwrap_or_default();
            let newer = trial
                .update(version, &changes)
                .map_err(|too_many| ApiError::FailedPrecondition(too_many.to_string()))?;
            if newer {
                cluster
                    .publish_upsert(&tenant_id, &customer_id, version, &changes)?
                    .confirmed()
                    .await
                    .map_err(ApiError::Unavailable)?;
                published = true;
            }
        }
        let (outcome, durable) =
            self.engine
                .upsert_attributes(&tenant_id, &customer_id, version, &changes);
        let (customer_id, attributes, applied) = outcome.map_err(|refusal| match refusal {
            UpsertRefusal::Attributes(too_many) => {
                ApiError::FailedPrecondition(too_many.to_string())
            }
            UpsertRefusal::Store(limit) => ApiError::ResourceExhausted(limit.to_string()),
        })?;
        if let Some(durable) = durable {
            durable.wait().await;
        }
        Ok(Response::new(pb::UpsertCustomerResponse {
            tenant_id,
            customer_id,
            attributes: convert::attributes_to_pb(&attributes),
            version: attributes.version,
            applied: applied || published,
        }))
    }

    async fn merge_customers(
        &self,
        request: Request<pb::MergeCustomersRequest>,
    ) -> Result<Response<pb::CustomerIdentity>, Status> {
        self.not_in_cluster("MergeCustomers")?;
        Grant::check(&request, &request.get_ref().tenant_id)?;
        let pb::MergeCustomersRequest {
            tenant_id,
            customer_id,
            other_customer_id,
        } = request.into_inner();
        check_id("tenant_id", &tenant_id, true, &self.limits).map_err(ApiError::from)?;
        check_id("customer_id", &customer_id, true, &self.limits).map_err(ApiError::from)?;
        check_id("other_customer_id", &other_customer_id, true, &self.limits)
            .map_err(ApiError::from)?;
        let request = IdentityRequest {
            tenant_id,
            customer_id,
            action: IdentityAction::Merge { other_customer_id },
        };
        Ok(Response::new(self.carry_out(request).await?))
    }
}
