//! ScoringService: customer lookups, ranking and live priority pushes.

use crate::api::access::Grant;
use crate::api::convert::{self, check_id, FieldError, Limits};
use crate::api::error::ApiError;
use crate::api::scan_gate::ScanGate;
use crate::cluster::{self, Cluster};
use crate::engine::{now_ms, Engine};
use crate::pb;
use crate::pb::scoring_service_server::ScoringService;
use crate::store::{Claim, RankKey, Store, TopQuery};
use crate::telemetry::{self, WatcherGuard};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Default and largest `TopCustomers.limit`.
const DEFAULT_TOP_LIMIT: usize = 10;
const MAX_TOP_LIMIT: usize = crate::store::RANKING_LIST_LEN;

/// The ScoringService implementation.
pub struct ScoringApi {
    store: Arc<Store>,
    /// For claims, which are logged.
    engine: Arc<Engine>,
    limits: Limits,
    /// Flips to true on shutdown: open watch streams end.
    shutdown: watch::Receiver<bool>,
    /// Scans (`as_of` queries, later pages, filtered live queries and ClaimNext, which may
    /// evaluate every customer) run on the blocking pool through this gate.
    scans: Arc<ScanGate>,
    /// Cluster mode: queries are routed to the partitions' owners.
    cluster: Option<Arc<Cluster>>,
}

impl ScoringApi {
    /// A service over `engine`'s store; watch streams end when `shutdown` becomes true; scans
    /// wait at `scans` (shared with the other services that scan).
    pub fn new(
        engine: Arc<Engine>,
        limits: Limits,
        shutdown: watch::Receiver<bool>,
        scans: Arc<ScanGate>,
    ) -> Self {
        Self {
            store: Arc::clone(&engine.store),
            engine,
            limits,
            shutdown,
            scans,
            cluster: None,
        }
    }

    /// Routes queries to the partitions' owners (cluster mode).
    pub fn with_cluster(mut self, cluster: Option<Arc<Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Cluster mode: `None` when this replica answers for the customer itself, else a channel to
    /// the owner ([`Cluster::route`]).
    fn route<T>(
        &self,
        request: &Request<T>,
        tenant_id: &str,
        customer_id: &str,
    ) -> Result<Option<tonic::transport::Channel>, ApiError> {
        match &self.cluster {
            Some(cluster) => cluster.route(request.metadata(), tenant_id, customer_id),
            None => Ok(None),
        }
    }

    /// Cluster mode, TopCustomers from a client: every owner answers for its partitions at one
    /// evaluation time, and the answers are merged in TopCustomers' order. An owner's error is
    /// passed through as it came.
    #[allow(clippy::result_large_err)]
    async fn scatter_top(
        &self,
        cluster: &Cluster,
        request: Request<pb::TopCustomersRequest>,
    ) -> Result<pb::TopCustomersResponse, Status> {
        let (metadata, _, mut top) = request.into_parts();
        let limit = top_limit(top.limit).map_err(ApiError::from)?;
        // One evaluation time for every owner: the page token's, or now.
        if top.page_token.is_empty() && top.as_of.is_none() {
            top.as_of = Some(convert::to_timestamp(now_ms()));
        }
        let asked =
            cluster
                .scatter(&metadata, &top)?
                .into_iter()
                .map(|(_, channel, asking)| async move {
                    pb::scoring_service_client::ScoringServiceClient::new(channel)
                        .top_customers(asking)
                        .await
                        .map(Response::into_inner)
                });
        let answers = futures::future::try_join_all(asked).await?;
        let merged = cluster::merge_top(
            answers
                .into_iter()
                .flat_map(|answer| answer.customers)
                .collect(),
            limit,
        );
        let next_page_token = match merged.last() {
            Some(last) if merged.len() == limit => self.page_token_after(&top, limit, last)?,
            _ => String::new(),
        };
        Ok(pb::TopCustomersResponse {
            customers: merged,
            next_page_token,
        })
    }

    /// Cluster mode, WatchPriorities from a client: the owners' streams merged. It ends with
    /// UNAVAILABLE (watch again) when an owner's stream ends, as it does when partitions move.
    #[allow(clippy::result_large_err)]
    async fn scatter_watch(
        &self,
        cluster: &Cluster,
        request: Request<pb::WatchPrioritiesRequest>,
    ) -> Result<Response<UpdateStream>, Status> {
        let (metadata, _, watch) = request.into_parts();
        let mut streams = Vec::new();
        for (owner, channel, asking) in cluster.scatter(&metadata, &watch)? {
            let updates = pb::scoring_service_client::ScoringServiceClient::new(channel)
                .watch_priorities(asking)
                .await?
                .into_inner();
            let ended = futures::stream::once(std::future::ready(Err(Status::from(
                ApiError::Unavailable(format!(
                    "replica {}'s watch ended (partitions moving); watch again",
                    owner.replica_id
                )),
            ))));
            streams.push(futures::StreamExt::chain(updates, ended));
        }
        // Up to the first error, which is passed on and ends the stream.
        let merged = futures::StreamExt::scan(
            futures::stream::select_all(streams),
            false,
            |failed, update| {
                let item = (!*failed).then(|| {
                    *failed = update.is_err();
                    update
                });
                std::future::ready(item)
            },
        );
        Ok(Response::new(Box::pin(merged) as UpdateStream))
    }

    /// The page token a coordinator hands out after `last` (cluster mode): the same token a
    /// single process would have issued for these filters and time.
    fn page_token_after(
        &self,
        request: &pb::TopCustomersRequest,
        limit: usize,
        last: &pb::CustomerScore,
    ) -> Result<String, ApiError> {
        let filters = PageFilters {
            segment: &request.segment,
            channel: request.channel,
            tenant_id: &request.tenant_id,
            limit,
            action: request.action,
            min_retention_risk: request.min_retention_risk,
            exclude_claimed: request.exclude_claimed,
            intent: &request.intent,
            language: &request.language,
        };
        let as_of_ms = if request.page_token.is_empty() {
            convert::as_of_ms(request.as_of.as_ref(), now_ms())?
        } else {
            PageToken::decode(&request.page_token, &filters)?.as_of_ms
        };
        Ok(PageToken {
            as_of_ms,
            after: cluster::rank_key(last),
        }
        .encode(&filters))
    }

    /// Cluster mode: what is not available across replicas yet.
    fn not_in_cluster(&self, what: &str) -> Result<(), ApiError> {
        cluster::single_process_only(self.cluster.as_deref(), what)
    }

    fn get_customer(&self, request: pb::GetCustomerRequest) -> Result<pb::CustomerScore, ApiError> {
        let pb::GetCustomerRequest {
            tenant_id,
            customer_id,
            as_of,
        } = request;
        check_id("tenant_id", &tenant_id, true, &self.limits)?;
        check_id("customer_id", &customer_id, true, &self.limits)?;
        let as_of_ms = convert::as_of_ms(as_of.as_ref(), now_ms())?;
        let score = self
            .store
            .customer(&tenant_id, &customer_id, as_of_ms)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "customer {customer_id:?} has no events in this tenant"
                ))
            })?;
        // A merged-away id answers for the customer it is now part of, under that one's id.
        let (canonical, profile) = self
            .store
            .identity_of(&tenant_id, &customer_id)
            .unwrap_or_else(|| (customer_id.clone(), Default::default()));
        let mut answer = convert::score_to_pb(
            &tenant_id,
            &canonical,
            &score,
            &self.store.intents().names(&tenant_id),
        );
        answer.identifiers = profile
            .identifiers
            .iter()
            .map(convert::identifier_to_pb)
            .collect();
        answer.merged_customer_ids = profile.merged;
        if let Some(attributes) = self.store.attributes_of(&tenant_id, &canonical) {
            answer.attributes = convert::attributes_to_pb(&attributes);
        }
        let claims = self.store.claims_of(&tenant_id, &canonical, now_ms());
        Ok(with_claim(answer, claims.first()))
    }

    fn top_customers(
        &self,
        request: pb::TopCustomersRequest,
    ) -> Result<pb::TopCustomersResponse, ApiError> {
        let pb::TopCustomersRequest {
            tenant_id,
            limit,
            action,
            min_retention_risk,
            as_of,
            exclude_claimed,
            page_token,
            segment,
            channel,
            intent,
            language,
        } = request;
        let segment = self.segment(&segment)?;
        let channel_filter = convert::channel_filter_from_pb(channel)?;
        check_id("tenant_id", &tenant_id, true, &self.limits)?;
        let intent_filter = self.intent_filter(&tenant_id, &intent)?;
        let language_filter = convert::language_filter(&language)?;
        let limit = top_limit(limit)?;
        check_unit_interval("min_retention_risk", min_retention_risk)?;
        let mut query = TopQuery {
            limit,
            action: convert::action_filter_from_pb(action)?,
            min_retention_risk,
            as_of_ms: convert::as_of_ms(as_of.as_ref(), now_ms())?,
            live: as_of.is_none(),
            segment: segment.clone(),
            channel: channel_filter,
            intent: intent_filter,
            language: language_filter,
        };
        let filters = PageFilters {
            segment: segment.as_ref().map_or("", |segment| segment.name.as_str()),
            channel,
            tenant_id: &tenant_id,
            limit,
            action,
            min_retention_risk,
            exclude_claimed,
            intent: &intent,
            language: &language,
        };
        let after = if page_token.is_empty() {
            None
        } else {
            let token = PageToken::decode(&page_token, &filters)?;
            if as_of.is_some() && query.as_of_ms != token.as_of_ms {
                return Err(FieldError::new(
                    "as_of",
                    "differs from the time the page_token pins; leave it unset",
                )
                .into());
            }
            query.as_of_ms = token.as_of_ms;
            query.live = false;
            Some(token.after)
        };
        // Each customer's first claim (a whole-customer claim before its conversations).
        let mut claimed: std::collections::HashMap<String, Claim> = Default::default();
        for (customer_id, claim) in self.store.claimed(&tenant_id, now_ms()) {
            claimed.entry(customer_id).or_insert(claim);
        }
        let top = if exclude_claimed && !claimed.is_empty() {
            // The `limit` best after leaving out at most `claimed.len()` customers.
            let widened = TopQuery {
                limit: limit + claimed.len(),
                ..query
            };
            let mut top = match &after {
                Some(after) => self.store.top_after(&tenant_id, &widened, after),
                None if widened.limit > MAX_TOP_LIMIT => self.store.top_exact(&tenant_id, &widened),
                None => self.store.top(&tenant_id, &widened),
            };
            top.retain(|(customer_id, _)| !claimed.contains_key(customer_id));
            top.truncate(limit);
            top
        } else {
            match &after {
                Some(after) => self.store.top_after(&tenant_id, &query, after),
                None => self.store.top(&tenant_id, &query),
            }
        };
        let next_page_token = match top.last() {
            Some((customer_id, score)) if top.len() == limit => PageToken {
                as_of_ms: query.as_of_ms,
                after: RankKey::of(customer_id, score),
            }
            .encode(&filters),
            _ => String::new(),
        };
        let intent_names = self.store.intents().names(&tenant_id);
        let customers = top
            .iter()
            .map(|(customer_id, score)| {
                with_claim(
                    convert::score_to_pb(&tenant_id, customer_id, score, &intent_names),
                    claimed.get(customer_id),
                )
            })
            .collect();
        Ok(pb::TopCustomersResponse {
            customers,
            next_page_token,
        })
    }

    /// The intent filter `name` names among `tenant_id`'s intents (`None` when empty); an intent
    /// the tenant never had is refused, naming the field.
    fn intent_filter(&self, tenant_id: &str, name: &str) -> Result<Option<u16>, ApiError> {
        if name.is_empty() {
            return Ok(None);
        }
        match self.store.intents().id(tenant_id, name) {
            Some(id) => Ok(Some(id)),
            None => Err(FieldError::new(
                "intent",
                format!("tenant {tenant_id:?} has no intent named {name:?} (IntentService)"),
            )
            .into()),
        }
    }

    fn segment(
        &self,
        name: &str,
    ) -> Result<Option<Arc<rapport_core::segments::SegmentConfig>>, ApiError> {
        if name.is_empty() {
            return Ok(None);
        }
        self.store
            .policy()
            .segment(name)
            .map(|segment| Some(Arc::new(segment.clone())))
            .ok_or_else(|| {
                FieldError::new(
                    "segment",
                    format!("no segment is named {name:?} in the config"),
                )
                .into()
            })
    }

    fn get_timeline(
        &self,
        request: pb::GetTimelineRequest,
    ) -> Result<pb::GetTimelineResponse, ApiError> {
        let pb::GetTimelineRequest {
            tenant_id,
            customer_id,
            page_size,
            page_token,
        } = request;
        check_id("tenant_id", &tenant_id, true, &self.limits)?;
        check_id("customer_id", &customer_id, true, &self.limits)?;
        let page_size = match page_size as usize {
            0 => DEFAULT_TIMELINE_PAGE,
            size if size > MAX_TIMELINE_PAGE => {
                return Err(FieldError::new(
                    "page_size",
                    format!("{size} exceeds the maximum of {MAX_TIMELINE_PAGE}"),
                )
                .into())
            }
            size => size,
        };
        let before = if page_token.is_empty() {
            None
        } else {
            let malformed = || FieldError::new("page_token", "is not a token this server issued");
            let text = from_hex(&page_token).ok_or_else(malformed)?;
            let mut parts = text.split('|');
            let (Some("t1"), Some(at), Some(key), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(malformed().into());
            };
            let at: i64 = at.parse().map_err(|_| malformed())?;
            let key = u64::from_str_radix(key, 16).map_err(|_| malformed())?;
            Some((at, key))
        };
        let (customer_id, touchpoints) = self
            .store
            .timeline(&tenant_id, &customer_id, before, page_size + 1)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "customer {customer_id:?} is unknown in this tenant"
                ))
            })?;
        let more = touchpoints.len() > page_size;
        let touchpoints: Vec<_> = touchpoints.into_iter().take(page_size).collect();
        let next_page_token = match touchpoints.last() {
            Some(last) if more => {
                to_hex(&format!("t1|{}|{:x}", last.occurred_at_ms, last.event_key))
            }
            _ => String::new(),
        };
        let intents = self.store.intents().names(&tenant_id);
        Ok(pb::GetTimelineResponse {
            customer_id,
            touchpoints: touchpoints
                .iter()
                .map(|touchpoint| {
                    convert::touchpoint_to_pb(touchpoint, &self.engine.language, &intents)
                })
                .collect(),
            next_page_token,
        })
    }

    /// `ttl_seconds` of a claim request: the default for 0, refused above a day.
    pub(crate) fn claim_ttl_ms(ttl_seconds: u32) -> Result<i64, ApiError> {
        match ttl_seconds {
            0 => Ok(DEFAULT_CLAIM_TTL_SECONDS * 1000),
            ttl if i64::from(ttl) > MAX_CLAIM_TTL_SECONDS => Err(FieldError::new(
                "ttl_seconds",
                format!("{ttl} exceeds the maximum of {MAX_CLAIM_TTL_SECONDS}"),
            )
            .into()),
            ttl => Ok(i64::from(ttl) * 1000),
        }
    }

    async fn claim_next(
        &self,
        request: pb::ClaimNextRequest,
    ) -> Result<pb::ClaimResponse, ApiError> {
        let pb::ClaimNextRequest {
            tenant_id,
            agent_id,
            action,
            min_retention_risk,
            ttl_seconds,
            segment,
            channel,
            intent,
            language,
        } = request;
        let segment = self.segment(&segment)?;
        let channel = convert::channel_filter_from_pb(channel)?;
        check_id("tenant_id", &tenant_id, true, &self.limits)?;
        let intent = self.intent_filter(&tenant_id, &intent)?;
        let language = convert::language_filter(&language)?;
        check_id("agent_id", &agent_id, true, &self.limits)?;
        check_unit_interval("min_retention_risk", min_retention_risk)?;
        let ttl_ms = Self::claim_ttl_ms(ttl_seconds)?;
        let now = now_ms();
        let query = TopQuery {
            limit: 16,
            action: convert::action_filter_from_pb(action)?,
            min_retention_risk,
            as_of_ms: now,
            live: true,
            segment,
            channel,
            intent,
            language,
        };
        // It may pass over many claimed or filtered customers: a scan, in the tenant's turn.
        let engine = Arc::clone(&self.engine);
        let (tenant, agent) = (tenant_id.clone(), agent_id.clone());
        let (claimed, durable) = self
            .scans
            .run(&tenant_id, move || {
                engine.claim_next(&tenant, &agent, &query, ttl_ms, now, &[])
            })
            .await?;
        if let Some(durable) = durable {
            durable.wait().await;
        }
        let claimed =
            claimed.map_err(|refusal| ApiError::FailedPrecondition(refusal.to_string()))?;
        let Some(claimed) = claimed else {
            return Ok(pb::ClaimResponse::default());
        };
        let intent_names = self.store.intents().names(&tenant_id);
        Ok(pb::ClaimResponse {
            customer: Some(with_claim(
                convert::score_to_pb(
                    &tenant_id,
                    &claimed.customer_id,
                    &claimed.score,
                    &intent_names,
                ),
                Some(&claimed.claim),
            )),
            conversation: claimed
                .conversation
                .as_ref()
                .map(convert::conversation_to_pb),
        })
    }

    async fn update_claim(
        &self,
        request: pb::ClaimRequest,
        release: bool,
    ) -> Result<pb::ClaimResponse, ApiError> {
        let pb::ClaimRequest {
            tenant_id,
            agent_id,
            customer_id,
            ttl_seconds,
            thread_id,
        } = request;
        check_id("tenant_id", &tenant_id, true, &self.limits)?;
        check_id("agent_id", &agent_id, true, &self.limits)?;
        check_id("customer_id", &customer_id, true, &self.limits)?;
        check_id("thread_id", &thread_id, false, &self.limits)?;
        // A release ends the claim: its ttl_seconds means nothing and is ignored, not checked.
        let ttl_ms = if release {
            DEFAULT_CLAIM_TTL_SECONDS * 1000
        } else {
            Self::claim_ttl_ms(ttl_seconds)?
        };
        let now = now_ms();
        let thread_key = (!thread_id.is_empty()).then(|| crate::store::id_key(&thread_id));
        let (updated, durable) = self.engine.update_claim(
            &tenant_id,
            &customer_id,
            &agent_id,
            thread_key,
            release,
            ttl_ms,
            now,
        );
        let (canonical, changed) =
            updated.map_err(|refusal| ApiError::FailedPrecondition(refusal.to_string()))?;
        if let Some(durable) = durable {
            durable.wait().await;
        }
        // The claim renewed (the one ending first when several were).
        let renewed = changed
            .iter()
            .filter_map(|(_, claim)| claim.as_ref())
            .min_by_key(|claim| claim.expires_at_ms);
        let customer = renewed.and_then(|claim| {
            let score = self.store.customer(&tenant_id, &canonical, now)?;
            Some(with_claim(
                convert::score_to_pb(
                    &tenant_id,
                    &canonical,
                    &score,
                    &self.store.intents().names(&tenant_id),
                ),
                Some(claim),
            ))
        });
        Ok(pb::ClaimResponse {
            customer,
            conversation: None,
        })
    }
}

/// What a page token is bound to: a token is refused with other filters than its first page's.
struct PageFilters<'a> {
    tenant_id: &'a str,
    segment: &'a str,
    channel: i32,
    limit: usize,
    action: i32,
    min_retention_risk: f64,
    exclude_claimed: bool,
    intent: &'a str,
    language: &'a str,
}

impl PageFilters<'_> {
    /// A stable digest of the filters (xxh3 of their text).
    fn digest(&self) -> u64 {
        let text = format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}",
            self.tenant_id,
            self.segment,
            self.channel,
            self.limit,
            self.action,
            self.min_retention_risk.to_bits(),
            self.exclude_claimed,
            self.intent,
            self.language
        );
        crate::store::id_key(&text)
    }
}

/// Where a TopCustomers page ended and the time all pages are evaluated at. Sent as hex text:
/// opaque to clients, readable when debugging.
struct PageToken {
    as_of_ms: i64,
    after: RankKey,
}

impl PageToken {
    const VERSION: &'static str = "p1";

    fn encode(&self, filters: &PageFilters<'_>) -> String {
        let text = format!(
            "{}|{}|{:016x}|{:016x}|{}|{}",
            Self::VERSION,
            self.as_of_ms,
            filters.digest(),
            self.after.priority.to_bits(),
            self.after.reply_due_at_ms,
            self.after.customer_id
        );
        to_hex(&text)
    }

    fn decode(token: &str, filters: &PageFilters<'_>) -> Result<Self, FieldError> {
        let malformed = || FieldError::new("page_token", "is not a token this server issued");
        let text = from_hex(token).ok_or_else(malformed)?;
        let mut parts = text.splitn(6, '|');
        let mut next = || parts.next().ok_or_else(malformed);
        if next()? != Self::VERSION {
            return Err(malformed());
        }
        let as_of_ms: i64 = next()?.parse().map_err(|_| malformed())?;
        let digest = u64::from_str_radix(next()?, 16).map_err(|_| malformed())?;
        let priority = f64::from_bits(u64::from_str_radix(next()?, 16).map_err(|_| malformed())?);
        let reply_due_at_ms: i64 = next()?.parse().map_err(|_| malformed())?;
        let customer_id = next()?.to_string();
        if digest != filters.digest() {
            return Err(FieldError::new(
                "page_token",
                "was issued for other filters (tenant_id, limit, action, min_retention_risk, \
                 exclude_claimed must be those of the first page)",
            ));
        }
        Ok(Self {
            as_of_ms,
            after: RankKey {
                priority,
                reply_due_at_ms,
                customer_id,
            },
        })
    }
}

/// A TopCustomers `limit` (0: the default), or INVALID_ARGUMENT naming `limit` past the maximum.
fn top_limit(limit: u32) -> Result<usize, FieldError> {
    match limit as usize {
        0 => Ok(DEFAULT_TOP_LIMIT),
        limit if limit > MAX_TOP_LIMIT => Err(FieldError::new(
            "limit",
            format!("{limit} exceeds the maximum of {MAX_TOP_LIMIT}"),
        )),
        limit => Ok(limit),
    }
}

/// Refuses a probability or priority outside [0, 1], naming `field`.
fn check_unit_interval(field: &'static str, value: f64) -> Result<(), FieldError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("must be within [0, 1], got {value}"),
        ))
    }
}

/// Text as hex: page tokens are opaque to clients, readable when debugging.
fn to_hex(text: &str) -> String {
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}

/// [`to_hex`] undone; `None` for anything else (never a panic: ASCII is checked before slicing).
fn from_hex(token: &str) -> Option<String> {
    if !token.is_ascii() || !token.len().is_multiple_of(2) || token.len() > 4096 {
        return None;
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&token[at..at + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Default and largest `GetTimeline.page_size`.
const DEFAULT_TIMELINE_PAGE: usize = 20;
const MAX_TIMELINE_PAGE: usize = 200;

/// Default and longest claim (`ttl_seconds`).
const DEFAULT_CLAIM_TTL_SECONDS: i64 = 300;
const MAX_CLAIM_TTL_SECONDS: i64 = 86_400;

/// A score with the claim on the customer, if any.
pub(crate) fn with_claim(mut score: pb::CustomerScore, claim: Option<&Claim>) -> pb::CustomerScore {
    if let Some(claim) = claim {
        score.claimed_by = claim.agent_id.clone();
        score.claim_expires_at = Some(convert::to_timestamp(claim.expires_at_ms));
    }
    score
}

type UpdateStream = Pin<Box<dyn futures::Stream<Item = Result<pb::PriorityUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl ScoringService for Arc<ScoringApi> {
    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::CustomerScore>, Status> {
        Grant::check(&request, &request.get_ref().tenant_id)?;
        let (tenant_id, customer_id) =
            (&request.get_ref().tenant_id, &request.get_ref().customer_id);
        if let Some(owner) = self.route(&request, tenant_id, customer_id)? {
            return pb::scoring_service_client::ScoringServiceClient::new(owner)
                .get_customer(cluster::forwarded(request))
                .await;
        }
        ScoringApi::get_customer(self, request.into_inner())
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn top_customers(
        &self,
        request: Request<pb::TopCustomersRequest>,
    ) -> Result<Response<pb::TopCustomersResponse>, Status> {
        Grant::check(&request, &request.get_ref().tenant_id)?;
        let mut fence = None;
        if let Some(cluster) = &self.cluster {
            if !request.metadata().contains_key(cluster::HOP_HEADER) {
                return self.scatter_top(cluster, request).await.map(Response::new);
            }
            fence = Some((cluster, cluster.check_scattered(request.metadata())?));
        }
        // An owner's part is sent only if ownership held through the whole of it.
        let confirmed = |answer: pb::TopCustomersResponse| {
            if let Some((cluster, checked)) = fence {
                cluster.confirm_scattered(checked)?;
            }
            Ok::<_, ApiError>(Response::new(answer))
        };
        let request = request.into_inner();
        let filtered = request.min_retention_risk > 0.0
            || !request.segment.is_empty()
            || request.channel != 0
            || request.exclude_claimed;
        if request.as_of.is_none() && request.page_token.is_empty() && !filtered {
            // Live and unfiltered: answered from the ranking index in microseconds, on this
            // worker (it stops after about `limit` candidates).
            return ScoringApi::top_customers(self, request)
                .and_then(confirmed)
                .map_err(Status::from);
        }
        // As of a moment, a later page, or a filter few customers may pass: possibly every
        // customer is evaluated, off the runtime's workers, in the tenant's turn.
        let api = Arc::clone(self);
        let tenant_id = request.tenant_id.clone();
        self.scans
            .run(&tenant_id, move || ScoringApi::top_customers(&api, request))
            .await?
            .and_then(confirmed)
            .map_err(Status::from)
    }

    async fn get_timeline(
        &self,
        request: Request<pb::GetTimelineRequest>,
    ) -> Result<Response<pb::GetTimelineResponse>, Status> {
        Grant::check(&request, &request.get_ref().tenant_id)?;
        let (tenant_id, customer_id) =
            (&request.get_ref().tenant_id, &request.get_ref().customer_id);
        if let Some(owner) = self.route(&request, tenant_id, customer_id)? {
            return pb::scoring_service_client::ScoringServiceClient::new(owner)
                .get_timeline(cluster::forwarded(request))
                .await;
        }
        ScoringApi::get_timeline(self, request.into_inner())
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn claim_next(
        &self,
        request: Request<pb::ClaimNextRequest>,
    ) -> Result<Response<pb::ClaimResponse>, Status> {
        Grant::check(&request, &request.get_ref().tenant_id)?;
        self.not_in_cluster("ClaimNext")?;
        ScoringApi::claim_next(self, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn renew_claim(
        &self,
        request: Request<pb::ClaimRequest>,
    ) -> Result<Response<pb::ClaimResponse>, Status> {
        Grant::check(&request, &request.get_ref().tenant_id)?;
        self.not_in_cluster("RenewClaim")?;
        ScoringApi::update_claim(self, request.into_inner(), false)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn release_claim(
        &self,
        request: Request<pb::ClaimRequest>,
    ) -> Result<Response<pb::ClaimResponse>, Status> {
        Grant::check(&request, &request.get_ref().tenant_id)?;
        self.not_in_cluster("ReleaseClaim")?;
        ScoringApi::update_claim(self, request.into_inner(), true)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    type WatchPrioritiesStream = UpdateStream;

    async fn watch_priorities(
        &self,
        request: Request<pb::WatchPrioritiesRequest>,
    ) -> Result<Response<Self::WatchPrioritiesStream>, Status> {
        Grant::check(&request, &request.get_ref().tenant_id)?;
        let mut ownership = None;
        if let Some(cluster) = &self.cluster {
            if !request.metadata().contains_key(cluster::HOP_HEADER) {
                return self.scatter_watch(cluster, request).await;
            }
            // An owner's part: its partitions' changes, until it takes or drops one.
            let changes = cluster.ownership_changes();
            // A watch ends at any ownership change (below): no fence needed after this check.
            cluster.check_scattered(request.metadata())?;
            ownership = Some(changes);
        }
        let pb::WatchPrioritiesRequest {
            tenant_id,
            min_priority,
            segment,
            channel,
            intent,
            language,
        } = request.into_inner();
        let segment = self.segment(&segment).map_err(Status::from)?;
        let channel = convert::channel_filter_from_pb(channel)
            .map_err(|error| Status::from(ApiError::from(error)))?;
        let checked = check_id("tenant_id", &tenant_id, true, &self.limits)
            .and_then(|()| check_unit_interval("min_priority", min_priority));
        if let Err(error) = checked {
            return Err(ApiError::from(error).into());
        }
        let intent = self.intent_filter(&tenant_id, &intent)?;
        let language = convert::language_filter(&language)
            .map_err(|error| Status::from(ApiError::from(error)))?;
        let (mut updates, registration) = self
            .store
            .watch(&tenant_id, min_priority)
            .map_err(|refused| Status::from(ApiError::ResourceExhausted(refused.to_string())))?;
        let store = Arc::clone(&self.store);
        let mut shutdown = self.shutdown.clone();
        let (sender, receiver) = mpsc::channel(64);
        tokio::spawn(async move {
            let _watcher = WatcherGuard::new();
            let _registration = registration;
            loop {
                let moved = async {
                    match ownership.as_mut() {
                        Some(changes) => {
                            let _ = changes.changed().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                let change = tokio::select! {
                    _ = sender.closed() => None,
                    changed = shutdown.wait_for(|stopping| *stopping) => {
                        let _ = changed;
                        None
                    }
                    () = moved => Some(None),
                    change = updates.recv() => Some(Some(change)),
                };
                let change = match change {
                    None => break,
                    Some(None) => {
                        let moved = ApiError::Unavailable(
                            "partition ownership changed; watch again".into(),
                        );
                        let _ = sender.send(Err(moved.into())).await;
                        break;
                    }
                    Some(Some(change)) => change,
                };
                match change {
                    Ok(change)
                        if change.concerns(min_priority)
                            && channel.is_none_or(|channel| change.score.waits_on(channel))
                            && intent.is_none_or(|intent| change.score.waits_about(intent))
                            && language.is_none_or(|language| change.score.waits_in(language))
                            && segment.as_ref().is_none_or(|segment| {
                                store.in_segment(
                                    &tenant_id,
                                    &change.customer_id,
                                    &change.score,
                                    segment,
                                )
                            }) =>
                    {
                        let update = pb::PriorityUpdate {
                            score: Some(convert::score_to_pb(
                                &tenant_id,
                                &change.customer_id,
                                &change.score,
                                &store.intents().names(&tenant_id),
                            )),
                            previous_priority: change.previous_priority,
                            previous_action: convert::action_to_pb(change.previous_action) as i32,
                            event_id: change.event_id.clone(),
                            cause: change.cause.clone(),
                        };
                        if sender.send(Ok(update)).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        telemetry::watch_updates_dropped(missed);
                        // One line per 10 s for all watchers: a thousand slow ones flooded the log.
                        static LAGGED_WARN: telemetry::LogRateLimit =
                            telemetry::LogRateLimit::new(10_000);
                        if let Some(held_back) =
                            LAGGED_WARN.allow(u64::try_from(crate::engine::now_ms()).unwrap_or(0))
                        {
                            tracing::warn!(
                                tenant_id = %tenant_id,
                                missed,
                                similar_lines_held_back = held_back,
                                "slow watcher skipped priority updates (logged at most every 10 s)"
                            );
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(Response::new(
            Box::pin(ReceiverStream::new(receiver)) as UpdateStream
        ))
    }
}
