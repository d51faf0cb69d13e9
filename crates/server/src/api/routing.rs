//! RoutingService: a tenant's agents, their skills, capacity and status, and their load.

use crate::api::access::Grant;
use crate::api::convert::{self, check_id, FieldError, Limits};
use crate::api::error::ApiError;
use crate::api::scan_gate::ScanGate;
use crate::engine::{now_ms, Engine};
use crate::pb;
use crate::pb::routing_service_server::RoutingService;
use crate::store::{Agent, AgentStatus, AgentView, TopQuery, Work};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// The window GetServiceLevels reads when `since` is unset: a week before `until`.
const DEFAULT_SERVICE_LEVEL_WINDOW_MS: i64 = 7 * 86_400_000;

/// Most entries in an agent's `languages`, `intents` or `segments`, and most conversations
/// (or outreach customers) it may hold at once on one channel.
const MAX_SKILLS: usize = 500;
const MAX_CAPACITY: u32 = 1_000;
/// Most `capacity_units` an agent may have.
const MAX_CAPACITY_UNITS: u32 = 100_000;

/// Default, shortest and longest time an agent has to answer an offer.
const DEFAULT_OFFER_TIMEOUT_SECONDS: u32 = 30;
const MIN_OFFER_TIMEOUT_SECONDS: u32 = 5;
const MAX_OFFER_TIMEOUT_SECONDS: u32 = 600;
/// How often WatchOffers looks for work to offer.
const OFFER_TICK: Duration = Duration::from_millis(250);

/// An offer waiting for its agent's answer.
#[derive(Clone, Debug)]
struct OpenOffer {
    customer_id: String,
    work: Work,
    expires_at_ms: i64,
    /// How long the agent leaves this work alone once it declines it or lets it lapse.
    timeout_ms: i64,
}

/// A tenant and one of its agents.
type AgentKey = (String, String);

/// Work an agent declined or let lapse: the customer, the work, and until when others get it.
type PassedOver = (String, Work, i64);

/// The offers open on WatchOffers streams and the work agents passed over, by tenant and agent.
#[derive(Debug, Default)]
struct OfferBook {
    open: HashMap<AgentKey, OpenOffer>,
    passed: HashMap<AgentKey, Vec<PassedOver>>,
}

impl OfferBook {
    /// Offers past their time lapse: their work is passed over by their agent for a while.
    fn lapse(&mut self, tenant_id: &str, now_ms: i64) {
        let lapsed: Vec<AgentKey> = self
            .open
            .iter()
            .filter(|((tenant, _), offer)| tenant == tenant_id && offer.expires_at_ms <= now_ms)
            .map(|(key, _)| key.clone())
            .collect();
        for key in lapsed {
            if let Some(offer) = self.open.remove(&key) {
                self.pass(key, offer, now_ms);
            }
        }
        self.passed.retain(|_, passed| {
            passed.retain(|(_, _, until)| *until > now_ms);
            !passed.is_empty()
        });
    }

    /// The agent of `key` leaves `offer`'s work to others for the offer's timeout.
    fn pass(&mut self, key: AgentKey, offer: OpenOffer, now_ms: i64) {
        self.passed.entry(key).or_default().push((
            offer.customer_id,
            offer.work,
            now_ms.saturating_add(offer.timeout_ms),
        ));
    }
}

/// The RoutingService implementation.
pub struct RoutingApi {
    engine: Arc<Engine>,
    limits: Limits,
    /// GetServiceLevels scans the tenant's customers through this gate.
    scans: Arc<ScanGate>,
    /// Flips to true on shutdown: offer streams end.
    shutdown: watch::Receiver<bool>,
    /// Offers open and work passed over (WatchOffers, AnswerOffer).
    offers: std::sync::Mutex<OfferBook>,
    /// Cluster mode: agents are not shared across replicas yet (FAILED_PRECONDITION).
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl RoutingApi {
    /// A service over `engine` with the server's input limits; scans wait at `scans`; offer
    /// streams end when `shutdown` becomes true.
    pub fn new(
        engine: Arc<Engine>,
        limits: Limits,
        scans: Arc<ScanGate>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            engine,
            limits,
            scans,
            shutdown,
            offers: std::sync::Mutex::default(),
            cluster: None,
        }
    }

    /// The offer book, locked (a panic while it was held leaves it usable: each change is whole).
    fn book(&self) -> std::sync::MutexGuard<'_, OfferBook> {
        self.offers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notices to the watched agents (`None`: all) of work merges took from them; an open offer
    /// of that work is closed.
    fn withdrawn(&self, tenant_id: &str, watched: Option<&[String]>, now: i64) -> Vec<pb::Offer> {
        let notices = self.engine.store.take_withdrawn(tenant_id, |agent_id| {
            watched.is_none_or(|ids| ids.iter().any(|id| id == agent_id))
        });
        if notices.is_empty() {
            return Vec::new();
        }
        let names = self.engine.store.intents().names(tenant_id);
        let mut book = self.book();
        notices
            .into_iter()
            .map(|notice| {
                let key = (tenant_id.to_string(), notice.agent_id.clone());
                let offered = book.open.get(&key).is_some_and(|offer| {
                    offer.work == notice.work
                        && (offer.customer_id == notice.customer_id
                            || offer.customer_id == notice.merged_away_id)
                });
                if offered {
                    book.open.remove(&key);
                }
                let customer = self
                    .engine
                    .store
                    .customer(tenant_id, &notice.customer_id, now)
                    .map(|score| {
                        let claims =
                            self.engine
                                .store
                                .claims_of(tenant_id, &notice.customer_id, now);
                        crate::api::scoring::with_claim(
                            convert::score_to_pb(tenant_id, &notice.customer_id, &score, &names),
                            claims.first(),
                        )
                    });
                let conversation = match notice.work {
                    Work::Customer => None,
                    Work::Conversation { channel, .. } => Some(pb::Conversation {
                        thread_id: notice.thread_id.clone().unwrap_or_default(),
                        channel: convert::channel_to_pb(channel),
                        ..Default::default()
                    }),
                };
                pb::Offer {
                    agent_id: notice.agent_id,
                    customer,
                    conversation,
                    expires_at: None,
                    withdrawn: true,
                }
            })
            .collect()
    }

    /// One round of offers for the watched agents (`None`: all) of a tenant: lapsed offers
    /// pass, then every available agent with room and no open offer, least loaded first (then
    /// longest since it last took work), is offered the work ClaimNext would give it. Returns
    /// the offers made, for the stream.
    async fn offer_round(
        &self,
        tenant_id: &str,
        watched: Option<&[String]>,
        timeout_ms: i64,
    ) -> Result<Vec<pb::Offer>, ApiError> {
        let now = now_ms();
        self.book().lapse(tenant_id, now);
        let mut made = self.withdrawn(tenant_id, watched, now);
        let mut agents: Vec<AgentView> = self
            .engine
            .store
            .agents(tenant_id, now)
            .into_iter()
            .filter(|view| {
                view.agent.status == AgentStatus::Available
                    && watched.is_none_or(|ids| ids.contains(&view.agent.agent_id))
            })
            .filter_map(|view| {
                let room = view
                    .agent
                    .capacity
                    .iter()
                    .any(|(channel, max)| view.load.on(*channel) < *max)
                    || view.load.whole_customers < view.agent.outreach_capacity;
                room.then_some(view)
            })
            .collect();
        let routing = self.engine.store.policy().routing.clone();
        let busy = |view: &AgentView| {
            let capacity: u32 = view.agent.capacity.iter().map(|(_, max)| max).sum::<u32>()
                + view.agent.outreach_capacity;
            let held: u32 = view.load.per_channel.iter().sum::<u32>() + view.load.whole_customers;
            let share = f64::from(held) / f64::from(capacity.max(1));
            if view.agent.capacity_units == 0 {
                share
            } else {
                // Held over capacity, in units when the agent counts them.
                share.max(
                    f64::from(view.load.units(&routing)) / f64::from(view.agent.capacity_units),
                )
            }
        };
        agents.sort_by(|a, b| {
            busy(a)
                .total_cmp(&busy(b))
                .then_with(|| a.last_claimed_ms.cmp(&b.last_claimed_ms))
                .then_with(|| a.agent.agent_id.cmp(&b.agent.agent_id))
        });
        for view in agents {
            let agent_id = view.agent.agent_id;
            let key = (tenant_id.to_string(), agent_id.clone());
            let passed_over: Vec<(String, Work)> = {
                let book = self.book();
                if book.open.contains_key(&key) {
                    continue;
                }
                book.passed
                    .get(&key)
                    .map(|passed| {
                        passed
                            .iter()
                            .map(|(customer, work, _)| (customer.clone(), *work))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let query = TopQuery {
                limit: 16,
                action: None,
                min_retention_risk: 0.0,
                as_of_ms: now,
                live: true,
                segment: None,
                channel: None,
                intent: None,
                language: None,
            };
            let engine = Arc::clone(&self.engine);
            let (tenant, agent) = (tenant_id.to_string(), agent_id.clone());
            let (claimed, durable) = self
                .scans
                .run(tenant_id, move || {
                    engine.claim_next(&tenant, &agent, &query, timeout_ms, now, &passed_over)
                })
                .await?;
            if let Some(durable) = durable {
                durable.wait().await;
            }
            // Not available any more (set away meanwhile), or nothing for it: next agent.
            let Ok(Some(claimed)) = claimed else {
                continue;
            };
            self.book().open.insert(
                key,
                OpenOffer {
                    customer_id: claimed.customer_id.clone(),
                    work: claimed.claim.work,
                    expires_at_ms: claimed.claim.expires_at_ms,
                    timeout_ms,
                },
            );
            let names = self.engine.store.intents().names(tenant_id);
            made.push(pb::Offer {
                agent_id,
                customer: Some(crate::api::scoring::with_claim(
                    convert::score_to_pb(tenant_id, &claimed.customer_id, &claimed.score, &names),
                    Some(&claimed.claim),
                )),
                conversation: claimed
                    .conversation
                    .as_ref()
                    .map(convert::conversation_to_pb),
                expires_at: Some(convert::to_timestamp(claimed.claim.expires_at_ms)),
                withdrawn: false,
            });
        }
        Ok(made)
    }

    /// Cluster mode: every call refused (FAILED_PRECONDITION).
    pub fn with_cluster(mut self, cluster: Option<Arc<crate::cluster::Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// The tenant and agent ids of a call, checked.
    fn ids(&self, tenant_id: &str, agent_id: &str, method: &str) -> Result<(), ApiError> {
        crate::cluster::single_process_only(self.cluster.as_deref(), method)?;
        check_id("tenant_id", tenant_id, true, &self.limits)?;
        check_id("agent_id", agent_id, true, &self.limits)?;
        Ok(())
    }

    /// An agent's state now, or NOT_FOUND.
    fn state(&self, tenant_id: &str, agent_id: &str) -> Result<pb::AgentState, ApiError> {
        self.engine
            .store
            .agent(tenant_id, agent_id, now_ms())
            .map(|view| agent_state_to_pb(&view, &self.engine.store.policy().routing))
            .ok_or_else(|| not_found(tenant_id, agent_id))
    }
}

/// NOT_FOUND for an agent never registered (or removed).
fn not_found(tenant_id: &str, agent_id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "agent_id: tenant {tenant_id:?} has no agent {agent_id:?} (RoutingService.PutAgent)"
    ))
}

/// Proto status → status; unspecified and unknown values name `field`.
fn status_from_pb(field: &'static str, number: i32) -> Result<AgentStatus, FieldError> {
    match pb::AgentStatus::try_from(number) {
        Ok(pb::AgentStatus::Available) => Ok(AgentStatus::Available),
        Ok(pb::AgentStatus::Away) => Ok(AgentStatus::Away),
        Ok(pb::AgentStatus::Offline) => Ok(AgentStatus::Offline),
        Ok(pb::AgentStatus::Unspecified) => Err(FieldError::new(field, "is required")),
        Err(_) => Err(FieldError::new(field, format!("unknown value {number}"))),
    }
}

fn status_to_pb(status: AgentStatus) -> i32 {
    match status {
        AgentStatus::Available => pb::AgentStatus::Available,
        AgentStatus::Away => pb::AgentStatus::Away,
        AgentStatus::Offline => pb::AgentStatus::Offline,
    }
    .into()
}

/// Whether `name` is an intent name as IntentService accepts them (1 to 64 of a-z, 0-9, _, -).
fn is_intent_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A proto agent → agent, every field checked (errors name it, `agent.languages[1]`); skill
/// segments must be among `skill_segments` (the `[routing]` table in force).
fn agent_from_pb(
    agent: Option<pb::Agent>,
    skill_segments: &[String],
    limits: &Limits,
    now_ms: i64,
) -> Result<Agent, FieldError> {
    let agent = agent.ok_or_else(|| FieldError::new("agent", "is required"))?;
    let pb::Agent {
        agent_id,
        status,
        languages,
        intents,
        segments,
        capacity,
        outreach_capacity,
        capacity_units,
    } = agent;
    check_id("agent.agent_id", &agent_id, true, limits)?;
    let status = status_from_pb("agent.status", status)?;
    let too_many = |field: &'static str, len: usize| {
        if len > MAX_SKILLS {
            Err(FieldError::new(
                field,
                format!("has {len} entries, at most {MAX_SKILLS} allowed"),
            ))
        } else {
            Ok(())
        }
    };
    too_many("agent.languages", languages.len())?;
    too_many("agent.intents", intents.len())?;
    too_many("agent.segments", segments.len())?;
    let mut language_ids = Vec::with_capacity(languages.len());
    for (index, code) in languages.iter().enumerate() {
        let id = convert::language_filter(code)
            .map_err(|error| FieldError::new("agent.languages", error.message).at_index(index))?
            .ok_or_else(|| {
                FieldError::new("agent.languages", "must not be empty").at_index(index)
            })?;
        language_ids.push(id);
    }
    language_ids.sort_unstable();
    language_ids.dedup();
    for (index, name) in intents.iter().enumerate() {
        if !is_intent_name(name) {
            return Err(FieldError::new(
                "agent.intents",
                format!("{name:?} is not an intent name (1 to 64 of a-z, 0-9, _ and -)"),
            )
            .at_index(index));
        }
    }
    let mut intents = intents;
    intents.sort_unstable();
    intents.dedup();
    for (index, name) in segments.iter().enumerate() {
        if !skill_segments.contains(name) {
            return Err(FieldError::new(
                "agent.segments",
                format!(
                    "{name:?} is not a skill segment (routing.skill_segments: {skill_segments:?})"
                ),
            )
            .at_index(index));
        }
    }
    let mut segments = segments;
    segments.sort_unstable();
    segments.dedup();
    let mut capacity_by_channel = Vec::with_capacity(capacity.len());
    for (index, entry) in capacity.iter().enumerate() {
        let at = |error: FieldError| {
            FieldError::new(
                format!("agent.capacity[{index}].{}", error.field),
                error.message,
            )
        };
        let channel = convert::channel_from_pb(entry.channel).map_err(at)?;
        if capacity_by_channel.iter().any(|(c, _)| *c == channel) {
            return Err(at(FieldError::new(
                "channel",
                "is listed twice (one entry per channel)",
            )));
        }
        if !(1..=MAX_CAPACITY).contains(&entry.max_conversations) {
            return Err(at(FieldError::new(
                "max_conversations",
                format!(
                    "must be within [1, {MAX_CAPACITY}], got {}",
                    entry.max_conversations
                ),
            )));
        }
        capacity_by_channel.push((channel, entry.max_conversations));
    }
    capacity_by_channel.sort_unstable();
    if outreach_capacity > MAX_CAPACITY {
        return Err(FieldError::new(
            "agent.outreach_capacity",
            format!("must be at most {MAX_CAPACITY}, got {outreach_capacity}"),
        ));
    }
    if capacity_units > MAX_CAPACITY_UNITS {
        return Err(FieldError::new(
            "agent.capacity_units",
            format!("must be at most {MAX_CAPACITY_UNITS}, got {capacity_units}"),
        ));
    }
    Ok(Agent {
        agent_id,
        status,
        languages: language_ids,
        intents,
        segments,
        capacity: capacity_by_channel,
        outreach_capacity,
        capacity_units,
        updated_at_ms: now_ms,
    })
}

/// An agent with its load → proto; `routing` weighs the units it holds.
fn agent_state_to_pb(
    view: &AgentView,
    routing: &rapport_core::config::RoutingConfig,
) -> pb::AgentState {
    let agent = &view.agent;
    pb::AgentState {
        agent: Some(pb::Agent {
            agent_id: agent.agent_id.clone(),
            status: status_to_pb(agent.status),
            languages: agent
                .languages
                .iter()
                .filter_map(|id| rapport_core::domain::language_code(*id))
                .map(str::to_string)
                .collect(),
            intents: agent.intents.clone(),
            segments: agent.segments.clone(),
            capacity: agent
                .capacity
                .iter()
                .map(|(channel, max)| pb::ChannelCapacity {
                    channel: convert::channel_to_pb(*channel),
                    max_conversations: *max,
                })
                .collect(),
            outreach_capacity: agent.outreach_capacity,
            capacity_units: agent.capacity_units,
        }),
        load: rapport_core::domain::Channel::ALL
            .into_iter()
            .filter(|channel| view.load.on(*channel) > 0)
            .map(|channel| pb::ChannelCapacity {
                channel: convert::channel_to_pb(channel),
                max_conversations: view.load.on(channel),
            })
            .collect(),
        outreach_load: view.load.whole_customers,
        last_claimed_at: view.last_claimed_ms.map(convert::to_timestamp),
        updated_at: Some(convert::to_timestamp(agent.updated_at_ms)),
        units_held: view.load.units(routing),
    }
}

#[tonic::async_trait]
impl RoutingService for Arc<RoutingApi> {
    async fn put_agent(
        &self,
        request: Request<pb::PutAgentRequest>,
    ) -> Result<Response<pb::AgentState>, Status> {
        Grant::check(&request, &request.get_ref().tenant_id)?;
        crate::cluster::single_process_only(self.cluster.as_deref(), "PutAgent")?;
        let pb::PutAgentRequest { tenant_id, agent } = request.into_inner();
        check_id("tenant_id", &tenant_id, true, &self.limits).map_err(ApiError::from)?;
        let skill_segments = self.engine.store.policy().routing.skill_segments.clone();
        let agent = agent_from_pb(agent, &skill_segments, &self.limits, now_ms())
            .map_err(ApiError::from)?;
        let agent_id = agent.agent_id.clone();
        if let Some(durable) = self.engine.put_agent(&tenant_id, agent) {
            durable.wait().await;
        }
        Ok(Response::new(self.state(&tenant_id, &agent_id)?))
    }

    async fn set_agent_status(
        &self,
        request: Request<pb::SetAgentStatusRequest>,
    ) -> Result<Response<pb::AgentState>, Status> {
        Grant::check(&request, &request.get_ref().tenant_id)?;
        let pb::SetAgentStatusRequest {
            tenant_id,
            agent_id,
            status,
        } = request.into_inner();
        self.ids(&tenant_id, &agent_id, "SetAgentStatus")?;
        let status = status_from_pb("status", status).map_err(ApiError::from)?;
        let (agent, durable) =
            self.engine
                .set_agent_status(&tenant_id, &agent_id, status, now_ms());
        if let Some(durable) = durable {
            durable.wait().await;
        }
        if agent.is_none() {
            return Err(not_found(&tenant_id, &agent_id).into());
        }
        Ok(Response::new(self.state(&tenant_id, &agent_id)?))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::AgentState>, Status> {
        Grant::check(&request, &request.get_ref().tenant_id)?;
        let pb::GetAgentRequest {
            tenant_id,
            agent_id,
        } = request.into_inner();
        self.ids(&tenant_id, &agent_id, "GetAgent")?;
        Ok(Response::new(self.state(&tenant_id, &agent_id)?))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        Grant::check(&request, &request.get_ref().tenant_id)?;
        crate::cluster::single_process_only(self.cluster.as_deref(), "ListAgents")?;
        let pb::ListAgentsRequest { tenant_id } = request.into_inner();
        check_id("tenant_id", &tenant_id, true, &self.limits).map_err(ApiError::from)?;
        let agents = self
            .engine
            .store
            .agents(&tenant_id, now_ms())
            .iter()
            .map(|view| agent_state_to_pb(view, &self.engine.store.policy().routing))
            .collect();
        Ok(Response::new(pb::ListAgentsResponse { agents }))
    }

    async fn remove_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::RemoveAgentResponse>, Status> {
        Grant::check(&request, &request.get_ref().tenant_id)?;
        let pb::GetAgentRequest {
            tenant_id,
            agent_id,
        } = request.into_inner();
        self.ids(&tenant_id, &agent_id, "RemoveAgent")?;
        let (removed, durable) = self.engine.remove_agent(&tenant_id, &agent_id);
        if let Some(durable) = durable {
            durable.wait().await;
        }
        if !removed {
            return Err(not_found(&tenant_id, &agent_id).into());
        }
        Ok(Response::new(pb::RemoveAgentResponse {}))
    }

    type WatchOffersStream = Pin<Box<dyn futures::Stream<Item = Result<pb::Offer, Status>> + Send>>;

    async fn watch_offers(
        &self,
        request: Request<pb::WatchOffersRequest>,
    ) -> Result<Response<Self::WatchOffersStream>, Status> {
        Grant::check(&request, &request.get_ref().tenant_id)?;
        crate::cluster::single_process_only(self.cluster.as_deref(), "WatchOffers")?;
        let pb::WatchOffersRequest {
            tenant_id,
            agent_ids,
            offer_timeout_seconds,
        } = request.into_inner();
        check_id("tenant_id", &tenant_id, true, &self.limits).map_err(ApiError::from)?;
        for (index, agent_id) in agent_ids.iter().enumerate() {
            check_id("agent_ids", agent_id, true, &self.limits)
                .map_err(|error| ApiError::from(error.at_index(index)))?;
        }
        let timeout_seconds = match offer_timeout_seconds {
            0 => DEFAULT_OFFER_TIMEOUT_SECONDS,
            seconds
                if (MIN_OFFER_TIMEOUT_SECONDS..=MAX_OFFER_TIMEOUT_SECONDS).contains(&seconds) =>
            {
                seconds
            }
            seconds => {
                return Err(ApiError::from(FieldError::new(
                    "offer_timeout_seconds",
                    format!(
                        "must be within [{MIN_OFFER_TIMEOUT_SECONDS}, \
                         {MAX_OFFER_TIMEOUT_SECONDS}], got {seconds}"
                    ),
                ))
                .into())
            }
        };
        let timeout_ms = i64::from(timeout_seconds) * 1000;
        let api = Arc::clone(self);
        let mut shutdown = self.shutdown.clone();
        let (sender, receiver) = mpsc::channel(64);
        tokio::spawn(async move {
            let watched = (!agent_ids.is_empty()).then_some(agent_ids);
            let mut ticks = tokio::time::interval(OFFER_TICK);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = sender.closed() => break,
                    _ = shutdown.wait_for(|stopping| *stopping) => break,
                    _ = ticks.tick() => {}
                }
                match api
                    .offer_round(&tenant_id, watched.as_deref(), timeout_ms)
                    .await
                {
                    Ok(offers) => {
                        for offer in offers {
                            if sender.send(Ok(offer)).await.is_err() {
                                return;
                            }
                        }
                    }
                    // The tenant's scans are queued up: try again next tick.
                    Err(ApiError::ResourceExhausted(_)) => {}
                    Err(error) => {
                        let _ = sender.send(Err(error.into())).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn answer_offer(
        &self,
        request: Request<pb::AnswerOfferRequest>,
    ) -> Result<Response<pb::AnswerOfferResponse>, Status> {
        Grant::check(&request, &request.get_ref().tenant_id)?;
        let pb::AnswerOfferRequest {
            tenant_id,
            agent_id,
            customer_id,
            thread_id,
            accept,
            ttl_seconds,
        } = request.into_inner();
        self.ids(&tenant_id, &agent_id, "AnswerOffer")?;
        check_id("customer_id", &customer_id, true, &self.limits).map_err(ApiError::from)?;
        check_id("thread_id", &thread_id, false, &self.limits).map_err(ApiError::from)?;
        let ttl_ms = if accept {
            crate::api::scoring::ScoringApi::claim_ttl_ms(ttl_seconds)?
        } else {
            0
        };
        let key = (tenant_id.clone(), agent_id.clone());
        let thread_key = (!thread_id.is_empty()).then(|| crate::store::id_key(&thread_id));
        let now = now_ms();
        let offer = {
            let mut book = self.book();
            book.lapse(&tenant_id, now);
            let matches = book.open.get(&key).is_some_and(|offer| {
                offer.customer_id == customer_id
                    && match offer.work {
                        Work::Customer => thread_key.is_none(),
                        Work::Conversation {
                            thread_key: held, ..
                        } => held == thread_key.unwrap_or(0),
                    }
            });
            if !matches {
                return Err(ApiError::FailedPrecondition(format!(
                    "agent_id: agent {agent_id:?} has no open offer of customer {customer_id:?} \
                     in thread {thread_id:?} (it lapsed, was answered, or was never made)"
                ))
                .into());
            }
            book.open.remove(&key).expect("matched above")
        };
        let work_key = match offer.work {
            Work::Customer => None,
            Work::Conversation { thread_key, .. } => Some(thread_key),
        };
        let (updated, durable) = self.engine.update_claim(
            &tenant_id,
            &customer_id,
            &agent_id,
            work_key,
            !accept,
            ttl_ms,
            now,
        );
        if !accept {
            self.book().pass(key, offer, now);
        }
        if let Some(durable) = durable {
            durable.wait().await;
        }
        let (canonical, changed) = match updated {
            Ok(updated) => updated,
            // Declined work another event already ended: nothing to give back.
            Err(_) if !accept => return Ok(Response::new(pb::AnswerOfferResponse::default())),
            Err(refusal) => return Err(ApiError::FailedPrecondition(refusal.to_string()).into()),
        };
        let claim = changed.iter().find_map(|(_, claim)| claim.as_ref());
        let customer = claim.and_then(|claim| {
            let score = self.engine.store.customer(&tenant_id, &canonical, now)?;
            Some(crate::api::scoring::with_claim(
                convert::score_to_pb(
                    &tenant_id,
                    &canonical,
                    &score,
                    &self.engine.store.intents().names(&tenant_id),
                ),
                Some(claim),
            ))
        });
        Ok(Response::new(pb::AnswerOfferResponse { customer }))
    }

    async fn get_service_levels(
        &self,
        request: Request<pb::GetServiceLevelsRequest>,
    ) -> Result<Response<pb::GetServiceLevelsResponse>, Status> {
        Grant::check(&request, &request.get_ref().tenant_id)?;
        crate::cluster::single_process_only(self.cluster.as_deref(), "GetServiceLevels")?;
        let pb::GetServiceLevelsRequest {
            tenant_id,
            since,
            until,
        } = request.into_inner();
        check_id("tenant_id", &tenant_id, true, &self.limits).map_err(ApiError::from)?;
        let now = now_ms();
        let until_ms = match until {
            Some(until) => convert::timestamp_ms("until", &until).map_err(ApiError::from)?,
            None => now,
        };
        let since_ms = match since {
            Some(since) => convert::timestamp_ms("since", &since).map_err(ApiError::from)?,
            None => until_ms.saturating_sub(DEFAULT_SERVICE_LEVEL_WINDOW_MS),
        };
        if since_ms > until_ms {
            return Err(ApiError::from(FieldError::new("since", "is after until")).into());
        }
        let store = Arc::clone(&self.engine.store);
        let tenant = tenant_id.clone();
        let levels = self
            .scans
            .run(&tenant_id, move || {
                store.service_levels(&tenant, since_ms, until_ms, now)
            })
            .await?;
        Ok(Response::new(pb::GetServiceLevelsResponse {
            levels: levels.iter().map(service_level_to_pb).collect(),
        }))
    }
}

/// One channel's and intent's reply-SLA figures → proto.
fn service_level_to_pb(level: &rapport_core::store::ServiceLevel) -> pb::ServiceLevel {
    let replies = level.first_replies + level.next_replies;
    let within = level.first_replies_within_target + level.next_replies_within_target;
    pb::ServiceLevel {
        channel: level.channel.map_or(0, convert::channel_to_pb),
        intent: level.intent.clone().unwrap_or_default(),
        first_replies: level.first_replies,
        first_replies_within_target: level.first_replies_within_target,
        next_replies: level.next_replies,
        next_replies_within_target: level.next_replies_within_target,
        attainment: if replies == 0 {
            1.0
        } else {
            within as f64 / replies as f64
        },
        median_reply_wait_seconds: level.median_reply_wait_seconds,
        p90_reply_wait_seconds: level.p90_reply_wait_seconds,
        waiting_now: level.waiting_now,
        overdue_now: level.overdue_now,
        oldest_wait_seconds: level.oldest_wait_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_text_bytes: 16,
            max_id_bytes: 32,
            max_future_skew_ms: 1000,
            max_identifiers: 4,
            blocked_identifiers: Vec::<String>::new().into(),
        }
    }

    fn valid() -> pb::Agent {
        pb::Agent {
            agent_id: "ann".into(),
            status: pb::AgentStatus::Available.into(),
            languages: vec!["fr".into(), "en".into()],
            intents: vec!["billing".into()],
            segments: vec!["vip".into()],
            capacity: vec![pb::ChannelCapacity {
                channel: pb::Channel::Chat.into(),
                max_conversations: 3,
            }],
            outreach_capacity: 2,
            capacity_units: 10,
        }
    }

    fn check(agent: pb::Agent) -> Result<Agent, FieldError> {
        agent_from_pb(Some(agent), &["vip".to_string()], &limits(), 0)
    }

    #[test]
    fn an_agent_round_trips_and_every_bad_field_is_named() {
        let agent = check(valid()).unwrap();
        let view = AgentView {
            agent: agent.clone(),
            load: Default::default(),
            last_claimed_ms: None,
        };
        let back = agent_state_to_pb(&view, &Default::default()).agent.unwrap();
        assert_eq!(back.languages, vec!["en", "fr"], "sorted");
        assert_eq!(check(back).unwrap(), agent);
        let field = |change: fn(&mut pb::Agent)| {
            let mut agent = valid();
            change(&mut agent);
            check(agent).unwrap_err().field.to_string()
        };
        assert_eq!(field(|a| a.agent_id.clear()), "agent.agent_id");
        assert_eq!(field(|a| a.status = 0), "agent.status");
        assert_eq!(
            field(|a| a.languages[1] = "xx".into()),
            "agent.languages[1]"
        );
        assert_eq!(
            field(|a| a.intents[0] = "Billing!".into()),
            "agent.intents[0]"
        );
        assert_eq!(
            field(|a| a.segments[0] = "gold".into()),
            "agent.segments[0]"
        );
        assert_eq!(
            field(|a| a.capacity[0].channel = 0),
            "agent.capacity[0].channel"
        );
        assert_eq!(
            field(|a| a.capacity[0].max_conversations = 0),
            "agent.capacity[0].max_conversations"
        );
        assert_eq!(
            field(|a| a.capacity.push(a.capacity[0])),
            "agent.capacity[1].channel"
        );
        assert_eq!(
            field(|a| a.outreach_capacity = 5_000),
            "agent.outreach_capacity"
        );
        assert_eq!(
            field(|a| a.capacity_units = 1_000_000),
            "agent.capacity_units"
        );
        assert_eq!(
            agent_from_pb(None, &[], &limits(), 0).unwrap_err().field,
            "agent"
        );
    }
}
