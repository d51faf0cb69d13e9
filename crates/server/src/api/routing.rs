//! RoutingService: a tenant's agents, their skills, capacity and status, and their load.

use crate::api::access::Grant;
use crate::api::convert::{self, check_id, FieldError, Limits};
use crate::api::error::ApiError;
use crate::api::scan_gate::ScanGate;
use crate::engine::{now_ms, Engine};
use crate::pb;
use crate::pb::routing_service_server::RoutingService;
use crate::store::{Agent, AgentStatus, AgentView};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The window GetServiceLevels reads when `since` is unset: a week before `until`.
const DEFAULT_SERVICE_LEVEL_WINDOW_MS: i64 = 7 * 86_400_000;

/// Most entries in an agent's `languages`, `intents` or `segments`, and most conversations
/// (or outreach customers) it may hold at once on one channel.
const MAX_SKILLS: usize = 500;
const MAX_CAPACITY: u32 = 1_000;

/// The RoutingService implementation.
pub struct RoutingApi {
    engine: Arc<Engine>,
    limits: Limits,
    /// GetServiceLevels scans the tenant's customers through this gate.
    scans: Arc<ScanGate>,
    /// Cluster mode: agents are not shared across replicas yet (FAILED_PRECONDITION).
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl RoutingApi {
    /// A service over `engine` with the server's input limits; scans wait at `scans`.
    pub fn new(engine: Arc<Engine>, limits: Limits, scans: Arc<ScanGate>) -> Self {
        Self {
            engine,
            limits,
            scans,
            cluster: None,
        }
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
            .map(|view| agent_state_to_pb(&view))
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
    Ok(Agent {
        agent_id,
        status,
        languages: language_ids,
        intents,
        segments,
        capacity: capacity_by_channel,
        outreach_capacity,
        updated_at_ms: now_ms,
    })
}

/// An agent with its load → proto.
fn agent_state_to_pb(view: &AgentView) -> pb::AgentState {
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
            .map(agent_state_to_pb)
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
        let back = agent_state_to_pb(&view).agent.unwrap();
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
            agent_from_pb(None, &[], &limits(), 0).unwrap_err().field,
            "agent"
        );
    }
}
