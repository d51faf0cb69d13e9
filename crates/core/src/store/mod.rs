//! In-memory state: tenants → customers → event histories, ranking, and priority-change
//! notifications for watchers.
//!
//! Each customer's history sits behind its DashMap shard lock only for the few microseconds an
//! insert and an evaluation take. Tenants never see each other: every call names its tenant and
//! only that tenant's map is read.

use crate::attributes::{AttributeValue, Attributes};
use crate::config::{IdentityConfig, ScoringConfig};
use crate::domain::{Action, Interaction, TimestampMs};
use crate::identity::{self, IdentityAction, IdentityRequest, LinkRefusal};
use crate::scoring::{
    configured_signal_weights, evaluate, evaluate_for_ranking, risk_signals, Backtest,
    CustomerHistory, EventRecord, FitSamples, InsertOutcome, RefineOutcome, RetentionModel, Score,
    SlaPolicy, TenantModel,
};
use crate::sentiment::Sentiment;
pub use crate::telemetry::{retention_risk_band, Census, RETENTION_RISK_BANDS};
use compact_str::CompactString;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use ranking::{HotSet, IndexBuilder, Ranked, RankingState, TopK};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;

mod customers;
mod identities;
pub mod intents;
mod models;
mod ranking;
pub mod routing;

use customers::{CustomerMap, GROW_AT_CUSTOMERS};
pub use identities::Profile;
use identities::{Identities, Plan};
use models::TenantModels;

pub use ranking::RANKING_LIST_LEN;
pub use routing::{Agent, AgentStatus, Claim, Load, ServiceLevel, Work};

/// What applying one event did, with the customer's score after it when it was asked for.
#[derive(Clone, Debug)]
pub enum Applied {
    /// The event was new.
    Accepted(Option<Score>),
    /// An event with this id was already applied; nothing changed.
    Duplicate(Option<Score>),
    /// The event was refused; nothing changed.
    Refused(Refusal),
}

/// Why a valid event was not applied; the message names the field, like a validation error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The customer is new and the tenant already tracks
    /// [`Store::set_max_customers_per_tenant`] customers.
    #[error(
        "customer_id: the tenant already tracks its maximum of {max_customers} customers \
         (max_customers_per_tenant); events for customers it tracks are still accepted"
    )]
    TenantFull {
        /// The per-tenant customer limit (`max_customers_per_tenant`).
        max_customers: usize,
    },
    /// The event sorts before every event kept for the customer
    /// ([`ScoringConfig::max_events_per_customer`]).
    #[error(
        "occurred_at: older than the {max_events} most recent events kept for this customer \
         (max_events_per_customer); such late events are no longer applied"
    )]
    BeforeRetained {
        /// Events kept per customer (`max_events_per_customer`).
        max_events: usize,
    },
    /// An event with this id is already stored with a different payload.
    #[error(
        "event_id: already stored for this customer with a different {field}; a repeated \
         event_id must carry the same event (use a new event_id for a new event)"
    )]
    Conflict {
        /// The first field that differs, as the API names it.
        field: &'static str,
    },
    /// The tenant is new and the store already holds [`Store::set_max_tenants`] tenants.
    #[error(
        "tenant_id: the server already holds its maximum of {max_tenants} tenants \
         (server.max_tenants); events for existing tenants are still accepted"
    )]
    TooManyTenants {
        /// The server's tenant limit (`server.max_tenants`).
        max_tenants: usize,
    },
}

/// What an event or a CRM says of a customer's identity, for [`Store::plan`].
enum Assertion<'a> {
    /// These identifiers belong to the customer.
    Identifiers(&'a [identity::Identifier]),
    /// This other customer id is the same person.
    SameAs(&'a str),
}

/// Why a CRM's attribute update was refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpsertRefusal {
    /// The customer would hold too many keys.
    #[error("{0}")]
    Attributes(crate::attributes::TooManyAttributes),
    /// A store limit (tenants, customers per tenant).
    #[error("{0}")]
    Store(Refusal),
}

/// Why a CRM's identity request was refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityRefusal {
    /// An identity rule (hard identifier, a per-type limit, the merge cap, events folded away).
    #[error("{0}")]
    Rule(LinkRefusal),
    /// A store limit (tenants, customers per tenant).
    #[error("{0}")]
    Store(Refusal),
}

/// A customer's score moved because of an event, or through time alone (found by the ranking
/// pass); watchers filter these by their threshold.
#[derive(Clone, Debug)]
pub struct PriorityChange {
    /// The customer whose score moved.
    pub customer_id: String,
    /// The event that moved it; empty when time alone did.
    pub event_id: String,
    /// What changed, in words.
    pub cause: String,
    /// 0 and [`Action::None`] for a customer seen for the first time.
    pub previous_priority: f64,
    /// The action before the change.
    pub previous_action: Action,
    /// The score after the change.
    pub score: Score,
}

impl PriorityChange {
    /// Whether a watcher with this threshold wants it: the priority crossed the threshold (either
    /// way), or the action changed while at or above it.
    pub fn concerns(&self, min_priority: f64) -> bool {
        crosses(
            self.previous_priority,
            self.previous_action,
            &self.score,
            min_priority,
        )
    }
}

/// A watcher's registration: its threshold counts for time-driven pushes until this is dropped.
pub struct WatchRegistration {
    at: Watched,
    min_priority: f64,
}

/// Where a watcher's threshold is registered.
enum Watched {
    /// An existing tenant.
    Tenant(Arc<Tenant>),
    /// A tenant without state yet (see [`UnbornWatches`]).
    Unborn {
        registry: Arc<UnbornWatches>,
        tenant_id: CompactString,
        unborn: Arc<Unborn>,
    },
}

/// Removes one `min_priority` from `thresholds` (one entry per watcher).
fn remove_threshold(thresholds: &std::sync::Mutex<Vec<f64>>, min_priority: f64) {
    let mut thresholds = thresholds.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(position) = thresholds
        .iter()
        .position(|threshold| threshold.to_bits() == min_priority.to_bits())
    {
        thresholds.swap_remove(position);
    }
}

impl Drop for WatchRegistration {
    fn drop(&mut self) {
        match &self.at {
            Watched::Tenant(tenant) => {
                remove_threshold(&tenant.watch_thresholds, self.min_priority)
            }
            Watched::Unborn {
                registry,
                tenant_id,
                unborn,
            } => {
                // Under the registry's lock, so the tenant is not being born meanwhile.
                let mut waiting = registry.lock();
                match unborn.born.get().and_then(std::sync::Weak::upgrade) {
                    Some(tenant) => remove_threshold(&tenant.watch_thresholds, self.min_priority),
                    None => {
                        remove_threshold(&unborn.thresholds, self.min_priority);
                        let empty = unborn
                            .thresholds
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .is_empty();
                        if empty
                            && waiting
                                .get(tenant_id)
                                .is_some_and(|entry| Arc::ptr_eq(entry, unborn))
                        {
                            waiting.remove(tenant_id);
                        }
                    }
                }
            }
        }
    }
}

/// Watchers of a tenant that has no state yet: its channel and thresholds, handed to the tenant
/// when its first event (or other write) creates it. A watch never creates a tenant, so watching
/// unknown tenant ids neither counts against `server.max_tenants` nor leaves anything behind once
/// the watchers leave (issue 24 item 10).
pub struct Unborn {
    /// The channel the tenant will publish on.
    updates: broadcast::Sender<Arc<PriorityChange>>,
    /// The waiting watchers' thresholds (one entry per watcher).
    thresholds: std::sync::Mutex<Vec<f64>>,
    /// The tenant once it was created with these watchers.
    born: std::sync::OnceLock<std::sync::Weak<Tenant>>,
}

/// Unborn tenants being watched, by tenant id. Lock order: this before the tenant map's shards.
#[derive(Default)]
pub struct UnbornWatches(parking_lot::Mutex<std::collections::HashMap<CompactString, Arc<Unborn>>>);

impl UnbornWatches {
    fn lock(
        &self,
    ) -> parking_lot::MutexGuard<'_, std::collections::HashMap<CompactString, Arc<Unborn>>> {
        self.0.lock()
    }
}

/// A watch refused: too many unknown tenants are watched already.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "tenant_id: {max_tenants} tenants without events are watched already (server.max_tenants); \
     watch a tenant once it has events, or retry later"
)]
pub struct TooManyUnbornWatches {
    /// The server's tenant limit (`server.max_tenants`), which also caps these.
    pub max_tenants: usize,
}

/// A place in TopCustomers' answer order (priority, reply due, customer id): where a page ended.
#[derive(Clone, Debug, PartialEq)]
pub struct RankKey {
    /// The customer's priority.
    pub priority: f64,
    /// When its reply is due ([`i64::MAX`] when nothing is waiting: last among equals).
    pub reply_due_at_ms: TimestampMs,
    /// The customer id (the last tie-break).
    pub customer_id: String,
}

impl RankKey {
    /// Where `customer_id` with `score` stands in the answer order.
    pub fn of(customer_id: &str, score: &Score) -> Self {
        Self::new(score.priority, score.reply_due_at_ms, customer_id)
    }

    /// The place of a customer with `priority` whose reply is due at `reply_due_at_ms` (`None`:
    /// nothing waits, after every due time).
    pub fn new(priority: f64, reply_due_at_ms: Option<TimestampMs>, customer_id: &str) -> Self {
        Self {
            priority,
            reply_due_at_ms: reply_due_at_ms.unwrap_or(ranking::NO_REPLY_DUE),
            customer_id: customer_id.to_string(),
        }
    }

    /// TopCustomers' answer order: `Less` when this place comes first.
    pub fn answer_order(&self, other: &RankKey) -> std::cmp::Ordering {
        ranking::rank_order(
            (other.priority, other.reply_due_at_ms, &other.customer_id),
            (self.priority, self.reply_due_at_ms, &self.customer_id),
        )
    }

    /// Whether (priority, reply due, id) comes strictly after this place in the answer order.
    pub fn ranks_above(
        &self,
        priority: f64,
        reply_due_at_ms: TimestampMs,
        customer_id: &str,
    ) -> bool {
        ranking::rank_order(
            (priority, reply_due_at_ms, customer_id),
            (self.priority, self.reply_due_at_ms, &self.customer_id),
        ) == std::cmp::Ordering::Less
    }
}

/// Filters for [`Store::top`].
#[derive(Clone, Debug)]
pub struct TopQuery {
    /// Most customers to return.
    pub limit: usize,
    /// Only customers with this action.
    pub action: Option<Action>,
    /// Only customers with at least this retention risk, in [0, 1].
    pub min_retention_risk: f64,
    /// Rank as of this time, in milliseconds since the Unix epoch.
    pub as_of_ms: TimestampMs,
    /// The query is as of now (no `as_of` given): the ranking index may stop early on its bounds
    /// (see the `ranking` module). A query with an explicit `as_of` evaluates every candidate.
    pub live: bool,
    /// Only customers in this segment (see `segments`).
    pub segment: Option<Arc<crate::segments::SegmentConfig>>,
    /// Only customers waiting for an answer on this channel.
    pub channel: Option<crate::domain::Channel>,
    /// Only customers waiting for an answer about this intent (an id in the tenant's table of
    /// intent names).
    pub intent: Option<u16>,
    /// Only customers waiting for an answer to a message in this language (a
    /// [`crate::domain::language_id`]).
    pub language: Option<u8>,
}

impl TopQuery {
    /// Whether a score passes the query's filters.
    fn matches(&self, score: &Score) -> bool {
        !self.action.is_some_and(|action| action != score.action)
            && score.retention_risk >= self.min_retention_risk
            && self.channel.is_none_or(|channel| score.waits_on(channel))
            && self.intent.is_none_or(|intent| score.waits_about(intent))
            && self
                .language
                .is_none_or(|language| score.waits_in(language))
    }
}

/// A customer whose fold just changed, for [`Store::announce`].
struct ChangedCustomer<'a> {
    customer_id: &'a str,
    event_id: &'a str,
    /// The server's time.
    now_ms: TimestampMs,
    /// When the scores are evaluated: `now_ms`, or the customer's latest event when it is later.
    eval_at: TimestampMs,
    /// The score before the change, when watchers need it.
    previous: Option<Score>,
    /// The score after it, when the caller or watchers need it.
    score: Option<Score>,
}

/// Keyed hashing (ids come from clients), faster than the default SipHash. Keys are inline
/// strings: an id of up to 24 bytes lives in the map slot itself, so a lookup compares it without
/// reading another allocation, and a customer costs no separate heap block for its id.
type Map<V> = DashMap<CompactString, V, ahash::RandomState>;

struct Tenant {
    /// Boxed: a map slot is then 32 bytes, and the table's empty slots (up to half of them just
    /// after it grows) cost little; the history itself is allocated at its exact size.
    customers: CustomerMap,
    /// `customers.len()` without visiting every shard; reserved before a customer is inserted so
    /// the cap holds exactly under concurrent inserts.
    customer_count: AtomicUsize,
    /// Priority changes for watchers: created by the first watcher, so a tenant nobody watches
    /// pays nothing for the `watch_buffer` slots.
    updates: std::sync::OnceLock<broadcast::Sender<Arc<PriorityChange>>>,
    /// TopCustomers' index (see [`ranking`]).
    ranking: RwLock<RankingState>,
    /// The tenant's SLA policy and activity model (refitted by the ranking pass), and one model
    /// per rule carrying a treatment; rebuilt when the rules in force change (`Store::models`).
    model: RwLock<Arc<TenantModels>>,
    /// The tenant's id.
    id: CompactString,
    /// When the activity model was last fitted (server clock), 0 before the first fit.
    fitted_at_ms: std::sync::atomic::AtomicI64,
    /// Customers the tenant tracked at the last fit attempt (growth by a tenth triggers a refit).
    customers_at_fit: std::sync::atomic::AtomicU64,
    /// Events accepted so far (any customer): what a refit is due after.
    events_accepted: std::sync::atomic::AtomicU64,
    /// `events_accepted` at the last fit attempt.
    events_at_fit: std::sync::atomic::AtomicU64,
    /// `events_accepted` at the previous ranking pass: none since means ingest is quiet (a
    /// backfill has ended).
    events_at_last_pass: std::sync::atomic::AtomicU64,
    /// Thresholds of the watchers connected (one entry per watcher).
    watch_thresholds: std::sync::Mutex<Vec<f64>>,
    /// Identifiers, merges and aliases. Lock order: this before the customer map's shards; an
    /// event holds the read lock while it is applied, so no merge moves its customer meanwhile.
    identities: parking_lot::RwLock<Identities>,
    /// Customers merged away while a state snapshot was being written: kept (so the snapshot
    /// holds their events whichever side of the merge it read) but skipped by queries and the
    /// ranking pass, and removed once the snapshot is done.
    retired: parking_lot::RwLock<std::collections::HashSet<CompactString, ahash::RandomState>>,
    /// Agents' claims on customers and conversations (`ClaimNext`), live or expired (dropped as
    /// claims are taken). Lock order: never taken while a customer's shard lock is held.
    claims: parking_lot::Mutex<routing::Claims>,
    /// Claims merges took from their agents, for the agents' offer streams (bounded: the oldest
    /// go first).
    withdrawn: parking_lot::Mutex<std::collections::VecDeque<Withdrawn>>,
    /// Agents registered by a routing engine (RoutingService), by id. Lock order: before
    /// `claims`.
    agents: parking_lot::Mutex<
        std::collections::HashMap<CompactString, AgentEntry, ahash::RandomState>,
    >,
    /// CRM attributes by customer (`UpsertCustomer`), created by the first. Lock order: after the
    /// identities lock and the customer map's shards, never held while waiting for either.
    attributes: std::sync::OnceLock<Map<Attributes>>,
}

/// Why a claim could not be renewed or released.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimRefusal {
    /// The agent holds no live claim on the customer.
    #[error(
        "customer_id: agent {agent_id:?} holds no live claim on {customer_id:?} (it expired, an \
         answer ended it, or another agent holds it)"
    )]
    NotHeld {
        /// The agent.
        agent_id: String,
        /// The customer.
        customer_id: String,
    },
    /// The agent is registered and not available (ClaimNext).
    #[error(
        "agent_id: agent {agent_id:?} is {status:?}, not available: it takes no new work until \
         RoutingService.SetAgentStatus makes it available"
    )]
    NotAvailable {
        /// The agent.
        agent_id: String,
        /// Its status.
        status: AgentStatus,
    },
}

/// Most notices of claims taken by merges a tenant keeps for offer streams to pick up.
const MAX_WITHDRAWN_NOTICES: usize = 1024;

/// A claim a merge took from its agent: another agent's claim on the same work stayed.
#[derive(Clone, Debug, PartialEq)]
pub struct Withdrawn {
    /// The agent that lost it.
    pub agent_id: String,
    /// The merged customer.
    pub customer_id: String,
    /// The customer id merged away into it.
    pub merged_away_id: String,
    /// What it held.
    pub work: Work,
    /// The conversation's thread id, when known.
    pub thread_id: Option<String>,
}

/// A registered agent as the store keeps it.
#[derive(Clone, Debug)]
struct AgentEntry {
    agent: Agent,
    /// When it last took work (not logged: a restart forgets it).
    last_claimed_ms: Option<TimestampMs>,
}

/// An agent with its load.
#[derive(Clone, Debug)]
pub struct AgentView {
    /// The agent as registered.
    pub agent: Agent,
    /// Its live claims, counted.
    pub load: Load,
    /// When it last took work, if it did since the process started.
    pub last_claimed_ms: Option<TimestampMs>,
}

/// What ClaimNext matches each candidate against for a registered agent, looked up once per call.
#[derive(Clone, Copy)]
struct Fit<'a> {
    policy: &'a crate::segments::Policy,
    claims: &'a routing::Claims,
    agent: &'a Agent,
    load: &'a Load,
    names: &'a intents::IntentNames,
    models: &'a TenantModels,
    query: &'a TopQuery,
    now_ms: TimestampMs,
}

/// The conversation a claim holds, as the agent needs it to answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Conversation {
    /// The thread's id as the customer's latest kept message in it said (`None`: thread-less
    /// messages, or no kept message named it).
    pub thread_id: Option<String>,
    /// Channel of its oldest unanswered message.
    pub channel: crate::domain::Channel,
    /// Its language ([`crate::domain::language_id`]; 0: none read).
    pub language: u8,
    /// Its intent's name, if it has one.
    pub intent: Option<String>,
    /// Its oldest unanswered message, in milliseconds since the Unix epoch.
    pub since_ms: TimestampMs,
    /// When its answer is due.
    pub due_at_ms: TimestampMs,
}

/// What ClaimNext took.
#[derive(Clone, Debug)]
pub struct Claimed {
    /// The customer.
    pub customer_id: String,
    /// Its score.
    pub score: Score,
    /// The claim.
    pub claim: Claim,
    /// The conversation it holds (`None`: the whole customer).
    pub conversation: Option<Conversation>,
}

impl Tenant {
    /// Runs `read` on a customer's attributes (`None` when it has none), without copying them.
    fn with_attributes<R>(
        &self,
        customer_id: &str,
        read: impl FnOnce(Option<&Attributes>) -> R,
    ) -> R {
        match self
            .attributes
            .get()
            .and_then(|attributes| attributes.get(customer_id))
        {
            Some(attributes) => read(Some(&attributes)),
            None => read(None),
        }
    }

    /// A customer's attributes, if any.
    fn attributes_of(&self, customer_id: &str) -> Option<Attributes> {
        self.attributes
            .get()
            .and_then(|attributes| attributes.get(customer_id).map(|a| a.clone()))
    }

    /// The customers retired by a merge during a snapshot (usually none: then no allocation).
    fn retired(&self) -> std::collections::HashSet<CompactString, ahash::RandomState> {
        let retired = self.retired.read();
        if retired.is_empty() {
            Default::default()
        } else {
            retired.clone()
        }
    }

    /// The distinct thresholds of the connected watchers.
    fn watch_thresholds(&self) -> Vec<f64> {
        let mut thresholds = self
            .watch_thresholds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        thresholds.sort_by(f64::total_cmp);
        thresholds.dedup();
        thresholds
    }

    /// Whether any watcher is connected.
    fn watched(&self) -> bool {
        self.updates
            .get()
            .is_some_and(|updates| updates.receiver_count() > 0)
    }

    /// The watchers' channel, created with `watch_buffer` slots by the first watcher.
    fn updates(&self, watch_buffer: usize) -> &broadcast::Sender<Arc<PriorityChange>> {
        self.updates
            .get_or_init(|| broadcast::channel(watch_buffer).0)
    }

    /// Sends a change to the watchers, if any.
    fn publish(&self, change: Arc<PriorityChange>) {
        if let Some(updates) = self.updates.get() {
            let _ = updates.send(change);
        }
    }

    fn model(&self) -> Arc<TenantModels> {
        Arc::clone(&self.model.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The model of `customer_id` among `models` (by its attributes when a rule treats some).
    fn model_of<'m>(&self, models: &'m TenantModels, customer_id: &str) -> &'m TenantModel {
        if !models.treats() {
            return models.base();
        }
        self.with_attributes(customer_id, |attributes| models.for_attributes(attributes))
    }

    fn ranking(&self) -> std::sync::RwLockReadGuard<'_, RankingState> {
        self.ranking.read().unwrap_or_else(|e| e.into_inner())
    }

    fn ranking_mut(&self) -> std::sync::RwLockWriteGuard<'_, RankingState> {
        self.ranking.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// All tenants' state.
pub struct Store {
    tenants: Map<Arc<Tenant>>,
    config: Arc<ScoringConfig>,
    watch_buffer: usize,
    /// Most customers per tenant (0 = no cap).
    max_customers_per_tenant: AtomicUsize,
    /// Most tenants (0 = no cap).
    max_tenants: AtomicUsize,
    /// SLA policies resolved once from the config (calendars parsed once): the default one, and
    /// those of the tenants the config names.
    default_sla: SlaPolicy,
    tenant_sla: std::collections::HashMap<String, SlaPolicy>,
    /// When the previous ranking pass evaluated (`i64::MIN` before the first): the point from
    /// which time-driven changes are measured for tenants that had no index yet.
    previous_pass_at_ms: std::sync::atomic::AtomicI64,
    /// The identity rules (set before recovery, so replay decides as the first run did).
    identity: IdentityConfig,
    /// State snapshots being written ([`Store::for_each_customer`] calls in progress).
    snapshots_in_progress: AtomicUsize,
    /// Segments and rules in force (replaced whole by a config reload).
    policy: parking_lot::RwLock<Arc<crate::segments::Policy>>,
    /// How much text timelines keep.
    timeline: crate::scoring::TimelineLimits,
    /// Watchers of tenants not created yet.
    unborn_watches: Arc<UnbornWatches>,
    /// Tenants' intents and the tables of intent names records hold.
    intents: intents::IntentRegistry,
    /// Per tenant, how the intent ids of the state snapshot being restored translate to the
    /// table in force (set from the snapshot's first record, read as its customers come).
    restoring_intents: parking_lot::Mutex<std::collections::HashMap<String, Vec<u16>>>,
}

/// Stable 64-bit key of an id (xxh3); 0 is reserved for "none".
pub fn id_key(id: &str) -> u64 {
    match xxhash_rust::xxh3::xxh3_64(id.as_bytes()) {
        0 => 1,
        key => key,
    }
}

impl Store {
    /// An empty store scoring with `config`; each tenant buffers `watch_buffer` updates for slow watchers.
    pub fn new(config: Arc<ScoringConfig>, watch_buffer: usize) -> Self {
        let default_sla = SlaPolicy::new(&config, None);
        let tenant_sla = config
            .tenants
            .keys()
            .map(|tenant| (tenant.clone(), SlaPolicy::new(&config, Some(tenant))))
            .collect();
        Self {
            tenants: Map::default(),
            config,
            watch_buffer,
            max_customers_per_tenant: AtomicUsize::new(0),
            max_tenants: AtomicUsize::new(0),
            default_sla,
            tenant_sla,
            previous_pass_at_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
            identity: IdentityConfig::default(),
            snapshots_in_progress: AtomicUsize::new(0),
            policy: parking_lot::RwLock::default(),
            timeline: crate::scoring::TimelineLimits::default(),
            unborn_watches: Arc::default(),
            intents: intents::IntentRegistry::default(),
            restoring_intents: parking_lot::Mutex::default(),
        }
    }

    /// Tenants' intents: their lists, models and name tables.
    pub fn intents(&self) -> &intents::IntentRegistry {
        &self.intents
    }

    /// Restores one tenant's intents from a state snapshot's first record; the snapshot's
    /// customers restored after it have their intent ids translated to the table in force.
    pub fn restore_intents(
        &self,
        saved: intents::SavedIntents,
    ) -> Result<(), crate::sentiment::intent::IntentError> {
        let tenant_id = saved.0.clone();
        let (translation, set) = self.intents.restore(saved);
        let identity = translation
            .iter()
            .enumerate()
            .all(|(from, to)| usize::from(*to) == from);
        let mut restoring = self.restoring_intents.lock();
        if identity {
            restoring.remove(&tenant_id);
        } else {
            restoring.insert(tenant_id, translation);
        }
        set
    }

    /// The same store keeping timeline text within `limits` (set before recovery).
    pub fn with_timeline_limits(mut self, limits: crate::scoring::TimelineLimits) -> Self {
        self.timeline = limits;
        self
    }

    /// How much text timelines keep.
    pub fn timeline_limits(&self) -> &crate::scoring::TimelineLimits {
        &self.timeline
    }

    /// The customer `customer_id` resolves to and its touchpoints, newest first, strictly before
    /// `before` (where the previous page ended), at most `limit`; `None` for an unknown customer.
    pub fn timeline(
        &self,
        tenant_id: &str,
        customer_id: &str,
        before: Option<(TimestampMs, u64)>,
        limit: usize,
    ) -> Option<(String, Vec<crate::scoring::Touchpoint>)> {
        let tenant = self.tenant(tenant_id)?;
        let identities = tenant.identities.read();
        let customer_id = identities.canonical(customer_id);
        tenant.customers.with(|customers| {
            let history = customers.get(customer_id)?;
            Some((customer_id.to_string(), history.touchpoints(before, limit)))
        })
    }

    /// Puts segments and rules in force (at start, and on a config reload).
    pub fn set_policy(&self, policy: crate::segments::Policy) {
        *self.policy.write() = Arc::new(policy);
    }

    /// The segments and rules in force.
    pub fn policy(&self) -> Arc<crate::segments::Policy> {
        Arc::clone(&self.policy.read())
    }

    /// The tenant's models for the rules in force: rebuilt, keeping the fitted activity model,
    /// when a reload changed the rules since they were built.
    fn models(&self, tenant: &Tenant) -> Arc<TenantModels> {
        let models = tenant.model();
        let policy = self.policy();
        if Arc::ptr_eq(&models.policy, &policy) {
            return models;
        }
        let mut slot = tenant.model.write().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&slot.policy, &policy) {
            *slot = Arc::new(TenantModels::new(
                &self.config,
                &tenant.id,
                slot.base().clone(),
                policy,
            ));
        }
        Arc::clone(&slot)
    }

    /// Whether a customer with `score` is in `segment`, by its attributes (for watchers, which
    /// filter the changes they are sent).
    pub fn in_segment(
        &self,
        tenant_id: &str,
        customer_id: &str,
        score: &Score,
        segment: &crate::segments::SegmentConfig,
    ) -> bool {
        self.tenant(tenant_id).is_some_and(|tenant| {
            let intents = intents::LazyIntentNames::new(&self.intents, tenant_id);
            tenant.with_attributes(customer_id, |attributes| {
                segment.matches_in(score, attributes, &intents)
            })
        })
    }

    /// Whether a customer may be offered (TopCustomers, ClaimNext, watchers) and is in the
    /// query's segment: not `do_not_contact`, not excluded by the first matching rule.
    fn offered(
        &self,
        tenant: &Tenant,
        policy: &crate::segments::Policy,
        segment: Option<&crate::segments::SegmentConfig>,
        customer_id: &str,
        score: &Score,
    ) -> bool {
        if policy.rules.is_empty() && segment.is_none() && tenant.attributes.get().is_none() {
            return true;
        }
        let intents = intents::LazyIntentNames::new(&self.intents, &tenant.id);
        tenant.with_attributes(customer_id, |attributes| {
            !attributes.is_some_and(Attributes::do_not_contact)
                && !policy.excludes(score, attributes, &intents)
                && segment.is_none_or(|segment| segment.matches_in(score, attributes, &intents))
        })
    }

    /// The same store with identity rules `identity` (default: `IdentityConfig::default()`).
    pub fn with_identity_rules(mut self, identity: IdentityConfig) -> Self {
        self.identity = identity;
        self
    }

    /// The identity rules in effect.
    pub fn identity_rules(&self) -> &IdentityConfig {
        &self.identity
    }

    /// Caps the tenants (0 = no cap): an event for a new tenant beyond it is refused
    /// ([`Refusal::TooManyTenants`]); concurrent first events of new tenants may overshoot it by
    /// a few. Set after recovery, like the customer cap.
    pub fn set_max_tenants(&self, max_tenants: usize) {
        self.max_tenants.store(max_tenants, Ordering::Relaxed);
    }

    /// Caps the customers each tenant may track (0 = no cap): an event for a new customer beyond
    /// it is refused ([`Refusal::TenantFull`]); customers already tracked keep being updated. The
    /// server sets it after recovery, so a lowered cap never drops events the log acknowledged.
    pub fn set_max_customers_per_tenant(&self, max_customers: usize) {
        self.max_customers_per_tenant
            .store(max_customers, Ordering::Relaxed);
    }

    /// The scoring configuration in effect.
    pub fn config(&self) -> &ScoringConfig {
        &self.config
    }

    fn tenant(&self, tenant_id: &str) -> Option<Arc<Tenant>> {
        self.tenants
            .get(tenant_id)
            .map(|tenant| Arc::clone(&tenant))
    }

    /// The tenant, created if new and the tenant cap allows it.
    fn admitted_tenant(&self, tenant_id: &str) -> Result<Arc<Tenant>, Refusal> {
        if let Some(tenant) = self.tenant(tenant_id) {
            return Ok(tenant);
        }
        let max_tenants = self.max_tenants.load(Ordering::Relaxed);
        if max_tenants != 0 && self.tenants.len() >= max_tenants {
            return Err(Refusal::TooManyTenants { max_tenants });
        }
        Ok(self.tenant_or_create(tenant_id))
    }

    /// Counts one more customer of `tenant` if the per-tenant cap allows it; the caller inserts it.
    fn reserve_customer(&self, tenant: &Tenant) -> Result<(), Refusal> {
        let max_customers = self.max_customers_per_tenant.load(Ordering::Relaxed);
        tenant
            .customer_count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
                (max_customers == 0 || count < max_customers).then_some(count + 1)
            })
            .map_err(|_| Refusal::TenantFull { max_customers })?;
        crate::telemetry::customer_tracked();
        Ok(())
    }

    /// Creates `customer_id` without events if the tenant does not track it yet (cap allowing);
    /// `true` when it was created.
    fn ensure_customer(
        &self,
        tenant: &Tenant,
        customer_id: &CompactString,
    ) -> Result<bool, Refusal> {
        let created =
            tenant
                .customers
                .with(|customers| match customers.entry(customer_id.clone()) {
                    Entry::Occupied(_) => Ok(false),
                    Entry::Vacant(entry) => {
                        self.reserve_customer(tenant)?;
                        entry.insert(Box::default());
                        Ok(true)
                    }
                })?;
        Self::grow_if_due(tenant);
        Ok(created)
    }

    /// Re-shards the tenant's customer map once it tracks [`GROW_AT_CUSTOMERS`] customers.
    fn grow_if_due(tenant: &Tenant) {
        if tenant.customer_count.load(Ordering::Relaxed) >= GROW_AT_CUSTOMERS {
            tenant.customers.grow();
        }
    }

    /// The tenant's attributes map, created by the first use.
    fn attributes_map(tenant: &Tenant) -> &Map<Attributes> {
        tenant
            .attributes
            .get_or_init(|| Map::with_hasher_and_shard_amount(ahash::RandomState::new(), 64))
    }

    /// Folds `taken` (a merged or restored customer's attributes) into `customer_id`'s.
    fn merge_attributes(map: &Map<Attributes>, customer_id: &str, taken: Attributes) {
        let mut kept = map.entry(CompactString::from(customer_id)).or_default();
        *kept = std::mem::take(&mut *kept).merged(taken);
    }

    fn tenant_or_create(&self, tenant_id: &str) -> Arc<Tenant> {
        if let Some(tenant) = self.tenant(tenant_id) {
            return tenant;
        }
        // Watchers waiting for the tenant get its channel and thresholds (lock order: the
        // watchers' registry, then the map).
        let mut waiting = self.unborn_watches.lock();
        let unborn = waiting.remove(tenant_id);
        let tenant = self
            .tenants
            .entry(CompactString::from(tenant_id))
            .or_insert_with(|| {
                let updates = std::sync::OnceLock::new();
                let mut watch_thresholds = Vec::new();
                if let Some(unborn) = &unborn {
                    let _ = updates.set(unborn.updates.clone());
                    watch_thresholds = unborn
                        .thresholds
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                }
                Arc::new(Tenant {
                    customers: CustomerMap::default(),
                    customer_count: AtomicUsize::new(0),
                    updates,
                    ranking: RwLock::default(),
                    model: RwLock::new(Arc::new(TenantModels::new(
                        &self.config,
                        tenant_id,
                        TenantModel {
                            sla: self
                                .tenant_sla
                                .get(tenant_id)
                                .unwrap_or(&self.default_sla)
                                .clone(),
                            retention: RetentionModel::prior(),
                            treatment: crate::scoring::Treatment::NEUTRAL,
                        },
                        self.policy(),
                    ))),
                    id: CompactString::from(tenant_id),
                    fitted_at_ms: std::sync::atomic::AtomicI64::new(0),
                    events_accepted: std::sync::atomic::AtomicU64::new(0),
                    events_at_fit: std::sync::atomic::AtomicU64::new(0),
                    events_at_last_pass: std::sync::atomic::AtomicU64::new(0),
                    customers_at_fit: std::sync::atomic::AtomicU64::new(0),
                    watch_thresholds: std::sync::Mutex::new(watch_thresholds),
                    identities: parking_lot::RwLock::default(),
                    retired: parking_lot::RwLock::default(),
                    claims: parking_lot::Mutex::default(),
                    agents: parking_lot::Mutex::default(),
                    withdrawn: parking_lot::Mutex::default(),
                    attributes: std::sync::OnceLock::new(),
                })
            });
        let tenant = Arc::clone(&tenant);
        if let Some(unborn) = unborn {
            // Its watchers' registrations now find their thresholds in the tenant.
            let _ = unborn.born.set(Arc::downgrade(&tenant));
        }
        drop(waiting);
        tenant
    }

    /// Applies a validated event with its sentiment (when it had text). With `want_score`, the
    /// customer's score after it is returned, evaluated at `now_ms` or at the customer's latest
    /// event if that is later.
    pub fn apply(
        &self,
        interaction: &Interaction,
        sentiment: Option<Sentiment>,
        now_ms: TimestampMs,
        want_score: bool,
    ) -> Applied {
        let record = EventRecord {
            occurred_at_ms: interaction.occurred_at_ms,
            event_key: id_key(&interaction.event_id),
            thread_key: if interaction.thread_id.is_empty() {
                0
            } else {
                id_key(&interaction.thread_id)
            },
            value: interaction.value,
            author_followers: u32::try_from(interaction.author_followers).unwrap_or(u32::MAX),
            sentiment_score: sentiment.map_or(0.0, |s| s.score),
            sentiment_confidence: sentiment.map_or(0.0, |s| s.confidence),
            channel: interaction.channel,
            kind: interaction.kind,
            direction: interaction.direction,
            has_sentiment: sentiment.is_some(),
            reply_need: interaction.reply_need,
            urgency_cues: interaction.urgency_cues,
            intent: interaction.intent.as_ref().map_or(0, |intent| {
                self.intents.intern(&interaction.tenant_id, &intent.name)
            }),
            text_key: if interaction.direction == crate::domain::Direction::Inbound {
                crate::scoring::noise::text_key(&interaction.text)
            } else {
                0
            },
            language: interaction
                .language
                .map_or(0, |language| crate::domain::language_id(language.code)),
            note: Default::default(),
        };
        let tenant = match self.admitted_tenant(&interaction.tenant_id) {
            Ok(tenant) => tenant,
            Err(refusal) => return Applied::Refused(refusal),
        };
        let identities = tenant.identities.read();
        let resolved = if interaction.identifiers.is_empty() {
            Some(CompactString::from(
                identities.canonical(&interaction.customer_id),
            ))
        } else {
            identities.resolve_unchanged(&interaction.customer_id, &interaction.identifiers)
        };
        let (customer_id, applied) = match resolved {
            Some(customer_id) => {
                let applied = self.apply_record(
                    &tenant,
                    &customer_id,
                    record,
                    interaction,
                    now_ms,
                    want_score,
                );
                (customer_id, applied)
            }
            None => {
                drop(identities);
                let mut identities = tenant.identities.write();
                let plan = self.plan(
                    &tenant,
                    &identities,
                    &interaction.customer_id,
                    Assertion::Identifiers(&interaction.identifiers),
                );
                for refusal in &plan.refused {
                    crate::telemetry::identity_link_refused();
                    tracing::debug!(
                        event_id = %interaction.event_id,
                        %refusal,
                        "identity link refused"
                    );
                }
                self.execute(&tenant, &mut identities, &plan, now_ms > 0);
                let applied = self.apply_record(
                    &tenant,
                    &plan.customer,
                    record,
                    interaction,
                    now_ms,
                    want_score,
                );
                (plan.customer, applied)
            }
        };
        // An answer in one of the customer's threads ends a claim on the whole customer, and
        // the claims on conversations that no longer wait (replay does the same, in log order).
        if interaction.direction == crate::domain::Direction::Outbound
            && !interaction.thread_id.is_empty()
            && matches!(applied, Applied::Accepted(_))
        {
            let mut claims = tenant.claims.lock();
            if claims.holds_any(customer_id.as_str()) {
                let waiting: Vec<u64> = tenant.customers.with(|customers| {
                    customers
                        .get(customer_id.as_str())
                        .map(|history| {
                            history
                                .summary()
                                .open_threads
                                .iter()
                                .filter(|open| open.waits())
                                .map(|open| open.thread_key)
                                .collect()
                        })
                        .unwrap_or_default()
                });
                claims.end_answered(customer_id.as_str(), |key| waiting.contains(&key));
            }
        }
        applied
    }

    /// Applies an event's record to the customer it resolved to (the caller holds the tenant's
    /// identities lock, so no merge moves the customer meanwhile).
    fn apply_record(
        &self,
        tenant: &Tenant,
        customer_id: &str,
        record: EventRecord,
        interaction: &Interaction,
        now_ms: TimestampMs,
        want_score: bool,
    ) -> Applied {
        let models = self.models(tenant);
        let model = tenant.model_of(&models, customer_id);
        let watched = tenant.watched();
        let applied = tenant.customers.with(|customers| {
            let mut history = match customers.get_mut(customer_id) {
                Some(history) => history,
                None => match customers.entry(CompactString::from(customer_id)) {
                    Entry::Occupied(entry) => entry.into_ref(),
                    Entry::Vacant(entry) => {
                        if let Err(refusal) = self.reserve_customer(tenant) {
                            return Applied::Refused(refusal);
                        }
                        entry.insert(Box::default())
                    }
                },
            };
            let eval_at = now_ms
                .max(history.summary().last_event_at_ms)
                .max(record.occurred_at_ms);
            let previous = (watched && history.summary().events_total > 0)
                .then(|| evaluate(history.summary(), eval_at, &self.config, model));
            // A live answer in order (not replay, not a backfill's late one) is counted against
            // the reply targets of the threads it closes.
            let answered: Vec<(crate::domain::Channel, bool, u16, bool)> = if now_ms > 0
                && record.direction == crate::domain::Direction::Outbound
                && record.occurred_at_ms >= history.summary().last_event_at_ms
            {
                history
                    .summary()
                    .open_threads
                    .iter()
                    .filter(|open| open.waits() && open.closed_by(record.thread_key))
                    .map(|open| {
                        let due = model
                            .sla
                            .thread_state(open, record.occurred_at_ms)
                            .due_at_ms;
                        (
                            open.channel,
                            open.follow_up,
                            open.intent,
                            record.occurred_at_ms <= due,
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            };
            match history.insert(record, &self.config) {
                InsertOutcome::BeforeRetained => Applied::Refused(Refusal::BeforeRetained {
                    max_events: self.config.max_events_per_customer,
                }),
                InsertOutcome::Conflict { field } => Applied::Refused(Refusal::Conflict { field }),
                InsertOutcome::Duplicate => Applied::Duplicate(
                    want_score.then(|| evaluate(history.summary(), eval_at, &self.config, model)),
                ),
                InsertOutcome::Inserted => {
                    tenant.events_accepted.fetch_add(1, Ordering::Relaxed);
                    if !answered.is_empty() {
                        let names = self.intents.names(&tenant.id);
                        for (channel, follow_up, intent, within) in answered {
                            crate::telemetry::reply_answered(
                                &tenant.id,
                                channel,
                                names.name(intent).map(|name| &**name),
                                follow_up,
                                within,
                            );
                        }
                    }
                    let snippet = self.timeline.snippet(&interaction.text);
                    let agent_id = if interaction.direction == crate::domain::Direction::Outbound {
                        interaction.agent_id.as_str()
                    } else {
                        ""
                    };
                    history.note(
                        record.order_key(),
                        &interaction.thread_id,
                        agent_id,
                        snippet,
                        &self.timeline,
                    );
                    let score = (want_score || watched)
                        .then(|| evaluate(history.summary(), eval_at, &self.config, model));
                    let change = ChangedCustomer {
                        customer_id,
                        event_id: &interaction.event_id,
                        now_ms,
                        eval_at,
                        previous,
                        score,
                    };
                    let score = self.announce(tenant, model, history, change, watched);
                    Applied::Accepted(score.filter(|_| want_score))
                }
            }
        });
        Self::grow_if_due(tenant);
        applied
    }

    /// Plans an identity change for `customer_id` (may be empty) and `identifiers` under the
    /// tenant's identities write lock.
    fn plan(
        &self,
        tenant: &Tenant,
        identities: &Identities,
        customer_id: &str,
        assertion: Assertion<'_>,
    ) -> Plan {
        tenant.customers.with(|customers| {
            let folded = |id: &str| customers.get(id).is_some_and(|h| h.has_folded());
            let can_merge = |a: &str, b: &str| !folded(a) && !folded(b);
            match assertion {
                Assertion::Identifiers(identifiers) => {
                    identities.plan(&self.identity, customer_id, identifiers, can_merge)
                }
                Assertion::SameAs(other_customer_id) => {
                    identities.plan_merge(&self.identity, customer_id, other_customer_id, can_merge)
                }
            }
        })
    }

    /// Carries out a plan under the tenant's identities write lock: each merge folds the
    /// absorbed customer's events into the survivor's history (exactly: the union's fold), then
    /// the identifiers are linked. Returns the customers whose scores changed.
    /// `live`: a call now, not replay (claims a merge ends are then told to their agents).
    fn execute(
        &self,
        tenant: &Tenant,
        identities: &mut Identities,
        plan: &Plan,
        live: bool,
    ) -> Vec<CompactString> {
        let mut changed = Vec::new();
        for (customer, other) in &plan.merges {
            let survivor = identity::surviving_id(customer, other);
            let absorbed = if survivor == customer.as_str() {
                other
            } else {
                customer
            };
            // A snapshot being written may have read the survivor before the merge: the absorbed
            // history stays (retired) until it is done, so the snapshot holds its events.
            let retire = self.snapshots_in_progress.load(Ordering::SeqCst) > 0;
            let moved = tenant.customers.with(|customers| {
                let taken: Option<Box<CustomerHistory>> = if retire {
                    customers
                        .get(absorbed.as_str())
                        .map(|history| history.clone())
                } else {
                    customers
                        .remove(absorbed.as_str())
                        .map(|(_, history)| history)
                };
                let Some(taken) = taken else {
                    return false;
                };
                match customers.get_mut(survivor) {
                    Some(mut history) => {
                        history.absorb(&taken, &self.config, &self.timeline);
                        true
                    }
                    None => {
                        customers.insert(CompactString::from(survivor), taken);
                        false
                    }
                }
            });
            if moved {
                tenant.customer_count.fetch_sub(1, Ordering::Relaxed);
                crate::telemetry::customer_untracked();
            }
            if retire {
                tenant.retired.write().insert(absorbed.clone());
            }
            if let Some(attributes) = tenant.attributes.get() {
                let taken = if retire {
                    attributes.get(absorbed.as_str()).map(|a| a.clone())
                } else {
                    attributes.remove(absorbed.as_str()).map(|(_, a)| a)
                };
                if let Some(taken) = taken {
                    Self::merge_attributes(attributes, survivor, taken);
                }
            }
            Self::merge_claims(tenant, survivor, absorbed, live);
            identities.merge(survivor, absorbed);
            crate::telemetry::customer_merged();
            changed.push(CompactString::from(survivor));
        }
        for identifier in &plan.links {
            identities.link(&plan.customer, identifier.clone());
        }
        changed.retain(|customer| *customer == plan.customer);
        changed.dedup();
        changed
    }

    /// Claims follow a merge: where the two customers' claims overlap (the same thread, or a
    /// whole customer), the one that lasts longer stays (so a live claim on either side stays
    /// live; the same choice at replay, whatever the clock). The other holder learns it from its
    /// offer stream when `live` (see [`Store::take_withdrawn`]), at its next renew (not held),
    /// and from the log line and metric.
    fn merge_claims(tenant: &Tenant, survivor: &str, absorbed: &str, live: bool) {
        let ended = tenant.claims.lock().merge(survivor, absorbed);
        if ended.is_empty() {
            return;
        }
        let mut withdrawn = Vec::with_capacity(ended.len());
        for claim in ended {
            crate::telemetry::claim_ended_by_merge(&tenant.id, survivor, &claim.agent_id);
            if live {
                let thread_id = match claim.work {
                    Work::Customer => None,
                    Work::Conversation { thread_key, .. } => tenant.customers.with(|customers| {
                        customers.get(survivor).and_then(|history| {
                            history.thread_id_of(thread_key).map(str::to_string)
                        })
                    }),
                };
                withdrawn.push(Withdrawn {
                    agent_id: claim.agent_id,
                    customer_id: survivor.to_string(),
                    merged_away_id: absorbed.to_string(),
                    work: claim.work,
                    thread_id,
                });
            }
        }
        let mut queue = tenant.withdrawn.lock();
        for notice in withdrawn {
            if queue.len() >= MAX_WITHDRAWN_NOTICES {
                queue.pop_front();
            }
            queue.push_back(notice);
        }
    }

    /// The notices of claims merges took from the agents `watched` accepts, oldest first (taken:
    /// each is handed out once).
    pub fn take_withdrawn(
        &self,
        tenant_id: &str,
        watched: impl Fn(&str) -> bool,
    ) -> Vec<Withdrawn> {
        let Some(tenant) = self.tenant(tenant_id) else {
            return Vec::new();
        };
        let mut queue = tenant.withdrawn.lock();
        if queue.is_empty() {
            return Vec::new();
        }
        let (taken, kept): (Vec<Withdrawn>, Vec<Withdrawn>) = queue
            .drain(..)
            .partition(|notice| watched(&notice.agent_id));
        queue.extend(kept);
        taken
    }

    /// Carries out a CRM's identity request (`LinkIdentities`, `MergeCustomers`), all or
    /// nothing: a request the rules refuse changes nothing and the refusal says why. Returns the
    /// customer it is about (the merged one) and what it now holds.
    pub fn apply_identity(
        &self,
        request: &IdentityRequest,
        now_ms: TimestampMs,
    ) -> Result<(String, Profile), IdentityRefusal> {
        let tenant = self
            .admitted_tenant(&request.tenant_id)
            .map_err(IdentityRefusal::Store)?;
        let mut identities = tenant.identities.write();
        let assertion = match &request.action {
            IdentityAction::Link(identifiers) => Assertion::Identifiers(identifiers),
            IdentityAction::Merge { other_customer_id } => Assertion::SameAs(other_customer_id),
        };
        let plan = self.plan(&tenant, &identities, &request.customer_id, assertion);
        if let Some(refusal) = plan.refused.into_iter().next() {
            crate::telemetry::identity_link_refused();
            return Err(IdentityRefusal::Rule(refusal));
        }
        let plan = Plan {
            refused: Vec::new(),
            ..plan
        };
        // The customer exists from now on, with or without events.
        let created = self
            .ensure_customer(&tenant, &plan.customer)
            .map_err(IdentityRefusal::Store)?;
        let changed = self.execute(&tenant, &mut identities, &plan, now_ms > 0);
        let profile = identities
            .profile(&plan.customer)
            .cloned()
            .unwrap_or_default();
        drop(identities);
        if created || !changed.is_empty() {
            self.reannounce(&tenant, &plan.customer, now_ms);
        }
        Ok((plan.customer.to_string(), profile))
    }

    /// Tells the ranking index and watchers about a customer whose score changed without a new
    /// event (a merge, or attributes that changed the rule treating it).
    fn reannounce(&self, tenant: &Tenant, customer_id: &str, now_ms: TimestampMs) {
        let models = self.models(tenant);
        let model = tenant.model_of(&models, customer_id);
        let watched = tenant.watched();
        tenant.customers.with(|customers| {
            let Some(history) = customers.get_mut(customer_id) else {
                return;
            };
            if history.summary().events_total == 0 {
                return;
            }
            let eval_at = now_ms.max(history.summary().last_event_at_ms);
            let score = watched.then(|| evaluate(history.summary(), eval_at, &self.config, model));
            let change = ChangedCustomer {
                customer_id,
                event_id: "",
                now_ms,
                eval_at,
                previous: None,
                score,
            };
            self.announce(tenant, model, history, change, watched);
        });
    }

    /// The customer an interaction's customer id and identifiers resolve to now (its own id
    /// unless merged away or given only identifiers); `None` when they name nobody yet.
    pub fn resolve(&self, interaction: &Interaction) -> Option<String> {
        let tenant = self.tenant(&interaction.tenant_id)?;
        let identities = tenant.identities.read();
        Self::resolve_in(&identities, interaction).map(|customer| customer.to_string())
    }

    fn resolve_in(identities: &Identities, interaction: &Interaction) -> Option<CompactString> {
        if !interaction.customer_id.is_empty() {
            return Some(CompactString::from(
                identities.canonical(&interaction.customer_id),
            ));
        }
        interaction
            .identifiers
            .iter()
            .find_map(|identifier| identities.owner(identifier))
            .map(CompactString::from)
    }

    /// The id a customer id resolves to and what that customer holds (identifiers, merged ids);
    /// `None` for a customer the tenant does not know.
    pub fn identity_of(&self, tenant_id: &str, customer_id: &str) -> Option<(String, Profile)> {
        let tenant = self.tenant(tenant_id)?;
        let identities = tenant.identities.read();
        let canonical = identities.canonical(customer_id);
        let known = tenant
            .customers
            .with(|customers| customers.contains_key(canonical));
        known.then(|| {
            (
                canonical.to_string(),
                identities.profile(canonical).cloned().unwrap_or_default(),
            )
        })
    }

    /// Claims work for `agent_id` among the tenant's customers matching `query`, highest
    /// priority first (the agent's own claims count as held: it asks for more work;
    /// [`Store::update_claim`] renews), until `now_ms + ttl_ms`; `None` when nothing free and fit
    /// is among the top [`RANKING_LIST_LEN`].
    ///
    /// An agent registered with [`Store::put_agent`] gets one conversation (a thread waiting for
    /// an answer, most urgent of its customer first) that fits its skills and capacity, or a
    /// whole customer with nothing waiting within its outreach capacity; it must be available.
    /// An agent never registered gets a whole customer nobody holds anything of.
    /// Claimers of a tenant take turns, so two agents never get the same work. Work in
    /// `passed_over` (customer and work the agent declined) is left for others.
    pub fn claim_next(
        &self,
        tenant_id: &str,
        agent_id: &str,
        query: &TopQuery,
        ttl_ms: i64,
        now_ms: TimestampMs,
        passed_over: &[(String, Work)],
    ) -> Result<Option<Claimed>, ClaimRefusal> {
        let Some(tenant) = self.tenant(tenant_id) else {
            return Ok(None);
        };
        let mut agents = tenant.agents.lock();
        let agent = match agents.get(agent_id) {
            Some(entry) if entry.agent.status != AgentStatus::Available => {
                return Err(ClaimRefusal::NotAvailable {
                    agent_id: agent_id.to_string(),
                    status: entry.agent.status,
                });
            }
            Some(entry) => Some(entry.agent.clone()),
            None => None,
        };
        let mut claims = tenant.claims.lock();
        claims.retain_live(now_ms);
        let load = agent.as_ref().map(|_| claims.load_of(agent_id, now_ms));
        let policy = self.policy();
        // Looked up once for every candidate the walk fits.
        let names = self.intents.names(tenant_id);
        let models = self.models(&tenant);
        let mut limit = query.limit.max(1);
        let mut looked_at = 0;
        let chosen = loop {
            let page = TopQuery {
                limit,
                ..query.clone()
            };
            let top = self.top(tenant_id, &page);
            let exhausted = top.len() < limit || limit >= RANKING_LIST_LEN;
            let found = top
                .into_iter()
                .skip(looked_at)
                .find_map(|(customer_id, score)| {
                    let passed = |work: &Work| {
                        passed_over
                            .iter()
                            .any(|(customer, passed)| *customer == customer_id && passed == work)
                    };
                    let work = match (&agent, &load) {
                        (Some(agent), Some(load)) => {
                            let fit = Fit {
                                policy: &policy,
                                claims: &claims,
                                agent,
                                load,
                                names: &names,
                                models: &models,
                                query,
                                now_ms,
                            };
                            self.fitting_work(&tenant, &fit, &customer_id, &score, &passed)?
                        }
                        _ => (claims.is_free(&customer_id) && !passed(&Work::Customer))
                            .then_some((Work::Customer, None))?,
                    };
                    Some((customer_id, score, work))
                });
            if let Some(found) = found {
                break Some(found);
            }
            if exhausted {
                break None;
            }
            looked_at = limit;
            limit = (limit * 4).min(RANKING_LIST_LEN);
        };
        let Some((customer_id, score, (work, conversation))) = chosen else {
            return Ok(None);
        };
        let claim = Claim {
            agent_id: agent_id.to_string(),
            expires_at_ms: now_ms.saturating_add(ttl_ms),
            work,
        };
        claims.insert(&customer_id, claim.clone());
        if let Some(entry) = agents.get_mut(agent_id) {
            entry.last_claimed_ms = Some(now_ms);
        }
        crate::telemetry::claim_taken(conversation.as_ref().map(|conversation| {
            (
                conversation.channel,
                now_ms.saturating_sub(conversation.since_ms).max(0) as f64 / 1000.0,
            )
        }));
        Ok(Some(Claimed {
            customer_id,
            score,
            claim,
            conversation,
        }))
    }

    /// The work of `customer_id` (ranked with `score`) that `fit.agent` may claim now: its most
    /// urgent waiting thread that is free, passes the query's filters and fits the agent, or
    /// with nothing waiting the whole customer for outreach.
    fn fitting_work(
        &self,
        tenant: &Tenant,
        fit: &Fit<'_>,
        customer_id: &str,
        score: &Score,
        passed: &dyn Fn(&Work) -> bool,
    ) -> Option<(Work, Option<Conversation>)> {
        let Fit {
            policy,
            claims,
            agent,
            load,
            names,
            models,
            query,
            now_ms,
        } = *fit;
        if claims.holds_customer(customer_id) {
            return None;
        }
        let skill_segments: Vec<&str> = {
            let intents = intents::LazyIntentNames::new(&self.intents, &tenant.id);
            policy
                .routing
                .skill_segments
                .iter()
                .filter(|name| {
                    policy.segment(name).is_some_and(|segment| {
                        tenant.with_attributes(customer_id, |attributes| {
                            segment.matches_in(score, attributes, &intents)
                        })
                    })
                })
                .map(String::as_str)
                .collect()
        };
        let model = tenant.model_of(models, customer_id);
        let threads = tenant.customers.with(|customers| {
            let history = customers.get(customer_id)?;
            let summary = history.summary_as_of(query.as_of_ms, &self.config)?;
            Some(crate::scoring::waiting_threads(
                &summary,
                query.as_of_ms,
                &self.config,
                model,
            ))
        })?;
        if threads.is_empty() {
            let facts = routing::ConversationFacts {
                channel: None,
                language: 0,
                intent: None,
                waited_ms: 0,
            };
            let fits = score.action != Action::None
                && claims.is_free(customer_id)
                && !passed(&Work::Customer)
                && routing::misfit(agent, load, &facts, &skill_segments, &policy.routing).is_none();
            return fits.then_some((Work::Customer, None));
        }
        let (thread, work, intent) = threads.into_iter().find_map(|thread| {
            let work = Work::Conversation {
                thread_key: thread.thread_key,
                channel: thread.channel,
            };
            let intent = names.name(thread.intent).map(|name| &**name);
            let facts = routing::ConversationFacts {
                channel: Some(thread.channel),
                language: thread.language,
                intent,
                waited_ms: now_ms.saturating_sub(thread.since_ms),
            };
            let passes = query
                .channel
                .is_none_or(|channel| channel == thread.channel)
                && query.intent.is_none_or(|intent| intent == thread.intent)
                && query
                    .language
                    .is_none_or(|language| language == thread.language);
            let fits = passes
                && !passed(&work)
                && claims.is_work_free(customer_id, &work)
                && routing::misfit(agent, load, &facts, &skill_segments, &policy.routing).is_none();
            fits.then_some((thread, work, intent))
        })?;
        // The thread's id, for the chosen thread only (a walk back over the kept events).
        let thread_id = tenant.customers.with(|customers| {
            customers
                .get(customer_id)?
                .thread_id_of(thread.thread_key)
                .map(str::to_string)
        });
        Some((
            work,
            Some(Conversation {
                thread_id,
                channel: thread.channel,
                language: thread.language,
                intent: intent.map(str::to_string),
                since_ms: thread.since_ms,
                due_at_ms: thread.due_at_ms,
            }),
        ))
    }

    /// Extends (`ttl_ms` from `now_ms`) or, with `release`, ends the live claims `agent_id` holds
    /// on the customer `customer_id` resolves to (only the conversation in the thread of key
    /// `thread_key`, see [`id_key`], when one is named); returns that customer and each claim
    /// changed, after the change.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    pub fn update_claim(
        &self,
        tenant_id: &str,
        customer_id: &str,
        agent_id: &str,
        thread_key: Option<u64>,
        release: bool,
        ttl_ms: i64,
        now_ms: TimestampMs,
    ) -> Result<(String, Vec<(Work, Option<Claim>)>), ClaimRefusal> {
        let not_held = || ClaimRefusal::NotHeld {
            agent_id: agent_id.to_string(),
            customer_id: customer_id.to_string(),
        };
        let tenant = self.tenant(tenant_id).ok_or_else(not_held)?;
        let customer_id = CompactString::from(tenant.identities.read().canonical(customer_id));
        let mut claims = tenant.claims.lock();
        let changed = claims
            .update_held(
                customer_id.as_str(),
                agent_id,
                now_ms,
                |work| match (thread_key, work) {
                    (None, _) => true,
                    (Some(key), Work::Conversation { thread_key, .. }) => *thread_key == key,
                    (Some(_), Work::Customer) => false,
                },
                |claim| {
                    claim.expires_at_ms = now_ms.saturating_add(ttl_ms);
                    !release
                },
            )
            .ok_or_else(not_held)?;
        Ok((customer_id.to_string(), changed))
    }

    /// The live claims on a customer at `now_ms` (a whole-customer claim first).
    pub fn claims_of(&self, tenant_id: &str, customer_id: &str, now_ms: TimestampMs) -> Vec<Claim> {
        let Some(tenant) = self.tenant(tenant_id) else {
            return Vec::new();
        };
        let customer_id = CompactString::from(tenant.identities.read().canonical(customer_id));
        let held = tenant.claims.lock().of(customer_id.as_str(), now_ms);
        held
    }

    /// The live claims at `now_ms`, by customer (for TopCustomers' `exclude_claimed`).
    pub fn claimed(&self, tenant_id: &str, now_ms: TimestampMs) -> Vec<(String, Claim)> {
        let Some(tenant) = self.tenant(tenant_id) else {
            return Vec::new();
        };
        let claims = tenant.claims.lock();
        claims.live(now_ms)
    }

    /// Sets (or with `None` removes) the claim on `work` of a customer as recovery reads it from
    /// the log or a snapshot.
    pub fn restore_claim(
        &self,
        tenant_id: &str,
        customer_id: &str,
        work: Work,
        claim: Option<Claim>,
    ) {
        let tenant = self.tenant_or_create(tenant_id);
        tenant.claims.lock().restore(customer_id, work, claim);
    }

    /// Every claim of every tenant, for a state snapshot (expired ones included: harmless).
    pub fn all_claims(&self) -> Vec<(String, String, Claim)> {
        let mut all = Vec::new();
        for tenant in self.tenants.iter() {
            for (customer_id, claim) in tenant.claims.lock().all() {
                all.push((
                    tenant.key().to_string(),
                    customer_id.to_string(),
                    claim.clone(),
                ));
            }
        }
        all
    }

    /// Registers `agent` with `tenant_id` or replaces it whole.
    pub fn put_agent(&self, tenant_id: &str, agent: Agent) {
        let tenant = self.tenant_or_create(tenant_id);
        let mut agents = tenant.agents.lock();
        let last_claimed_ms = agents
            .get(agent.agent_id.as_str())
            .and_then(|entry| entry.last_claimed_ms);
        agents.insert(
            CompactString::from(agent.agent_id.as_str()),
            AgentEntry {
                agent,
                last_claimed_ms,
            },
        );
    }

    /// Sets an agent's status; the agent after it, `None` when it is not registered.
    pub fn set_agent_status(
        &self,
        tenant_id: &str,
        agent_id: &str,
        status: AgentStatus,
        now_ms: TimestampMs,
    ) -> Option<Agent> {
        let tenant = self.tenant(tenant_id)?;
        let mut agents = tenant.agents.lock();
        let entry = agents.get_mut(agent_id)?;
        entry.agent.status = status;
        entry.agent.updated_at_ms = now_ms;
        Some(entry.agent.clone())
    }

    /// Forgets an agent; whether it was registered. Its live claims stay until they end.
    pub fn remove_agent(&self, tenant_id: &str, agent_id: &str) -> bool {
        self.tenant(tenant_id)
            .is_some_and(|tenant| tenant.agents.lock().remove(agent_id).is_some())
    }

    /// Sets (`Some`) or forgets (`None`) an agent as recovery reads it.
    pub fn restore_agent(&self, tenant_id: &str, agent_id: &str, agent: Option<Agent>) {
        match agent {
            Some(agent) => self.put_agent(tenant_id, agent),
            None => {
                self.remove_agent(tenant_id, agent_id);
            }
        }
    }

    /// An agent with its load at `now_ms`.
    pub fn agent(&self, tenant_id: &str, agent_id: &str, now_ms: TimestampMs) -> Option<AgentView> {
        let tenant = self.tenant(tenant_id)?;
        let agents = tenant.agents.lock();
        let entry = agents.get(agent_id)?;
        let load = tenant.claims.lock().load_of(agent_id, now_ms);
        Some(AgentView {
            agent: entry.agent.clone(),
            load,
            last_claimed_ms: entry.last_claimed_ms,
        })
    }

    /// Every agent of the tenant with its load at `now_ms`, by agent id.
    pub fn agents(&self, tenant_id: &str, now_ms: TimestampMs) -> Vec<AgentView> {
        let Some(tenant) = self.tenant(tenant_id) else {
            return Vec::new();
        };
        let agents = tenant.agents.lock();
        let claims = tenant.claims.lock();
        let loads = claims.loads(now_ms);
        let mut views: Vec<AgentView> = agents
            .values()
            .map(|entry| AgentView {
                agent: entry.agent.clone(),
                load: loads
                    .get(entry.agent.agent_id.as_str())
                    .cloned()
                    .unwrap_or_default(),
                last_claimed_ms: entry.last_claimed_ms,
            })
            .collect();
        views.sort_by(|a, b| a.agent.agent_id.cmp(&b.agent.agent_id));
        views
    }

    /// The tenant's reply-SLA figures by channel and intent: the answers given from `from_ms`
    /// (inclusive) to `to_ms` (exclusive) as the customers' kept events show them (the same
    /// whatever order the events arrived in), and the threads waiting at `now_ms`.
    pub fn service_levels(
        &self,
        tenant_id: &str,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
        now_ms: TimestampMs,
    ) -> Vec<routing::ServiceLevel> {
        let Some(tenant) = self.tenant(tenant_id) else {
            return Vec::new();
        };
        let models = self.models(&tenant);
        let retired = tenant.retired();
        let mut levels = routing::ServiceLevels::default();
        tenant.customers.with(|customers| {
            for entry in customers.iter() {
                if retired.contains(entry.key()) {
                    continue;
                }
                let model = tenant.model_of(&models, entry.key());
                let history = entry.value();
                history.for_each_answer(&self.config, |answer, open| {
                    if (from_ms..to_ms).contains(&answer.occurred_at_ms) {
                        let sla = model.sla.thread_state(open, answer.occurred_at_ms);
                        levels.answered(
                            open.channel,
                            open.intent,
                            open.follow_up,
                            answer.occurred_at_ms <= sla.due_at_ms,
                            sla.waited_seconds,
                        );
                    }
                });
                for thread in
                    crate::scoring::waiting_threads(history.summary(), now_ms, &self.config, model)
                {
                    levels.waiting(
                        thread.channel,
                        thread.intent,
                        thread.due_at_ms < now_ms,
                        now_ms.saturating_sub(thread.since_ms).max(0) as f64 / 1000.0,
                    );
                }
            }
        });
        let names = self.intents.names(tenant_id);
        levels.finish(|intent| names.name(intent).map(|name| name.to_string()))
    }

    /// Sets the tenant's agent gauges: conversations held and the capacity of available agents,
    /// per channel (a tenant without agents reports nothing).
    fn report_agent_load(tenant: &Tenant, now_ms: TimestampMs) {
        let agents = tenant.agents.lock();
        if agents.is_empty() {
            return;
        }
        let claims = tenant.claims.lock();
        let loads = claims.loads(now_ms);
        let mut held = [0u32; crate::domain::Channel::ALL.len()];
        let mut capacity = [0u32; crate::domain::Channel::ALL.len()];
        for entry in agents.values() {
            let load = loads.get(entry.agent.agent_id.as_str());
            for channel in crate::domain::Channel::ALL {
                held[channel as usize] += load.map_or(0, |load| load.on(channel));
                if entry.agent.status == AgentStatus::Available {
                    capacity[channel as usize] += entry.agent.capacity_on(channel);
                }
            }
        }
        drop(claims);
        drop(agents);
        for channel in crate::domain::Channel::ALL {
            crate::telemetry::agent_load(
                &tenant.id,
                channel,
                held[channel as usize],
                capacity[channel as usize],
            );
        }
    }

    /// Every agent of every tenant, for a state snapshot.
    pub fn all_agents(&self) -> Vec<(String, Agent)> {
        let mut all = Vec::new();
        for tenant in self.tenants.iter() {
            for entry in tenant.agents.lock().values() {
                all.push((tenant.key().to_string(), entry.agent.clone()));
            }
        }
        all
    }

    /// Applies a CRM's attribute update (`UpsertCustomer`) at `version` to the customer
    /// `customer_id` resolves to (created, without events, if unknown): keys set or removed; an
    /// update not newer than the customer's last changes nothing. Returns the customer, its
    /// attributes and whether the update was applied.
    pub fn upsert_attributes(
        &self,
        tenant_id: &str,
        customer_id: &str,
        version: u64,
        changes: &std::collections::BTreeMap<String, Option<AttributeValue>>,
        now_ms: TimestampMs,
    ) -> Result<(String, Attributes, bool), UpsertRefusal> {
        let tenant = self
            .admitted_tenant(tenant_id)
            .map_err(UpsertRefusal::Store)?;
        let models = self.models(&tenant);
        // Held throughout: no merge moves the customer meanwhile.
        let identities = tenant.identities.read();
        let customer = CompactString::from(identities.canonical(customer_id));
        self.ensure_customer(&tenant, &customer)
            .map_err(UpsertRefusal::Store)?;
        let mut entry = Self::attributes_map(&tenant)
            .entry(customer.clone())
            .or_default();
        let treated_before = models.policy.treatment_of(Some(&entry));
        let applied = entry
            .update(version, changes)
            .map_err(UpsertRefusal::Attributes)?;
        let now = entry.clone();
        drop(entry);
        drop(identities);
        if models.treats() && models.policy.treatment_of(Some(&now)) != treated_before {
            // A rule's treatment came or went: the priority moved without an event.
            self.reannounce(&tenant, &customer, now_ms);
        }
        Ok((customer.to_string(), now, applied))
    }

    /// The attributes of the customer `customer_id` resolves to, if it has any.
    pub fn attributes_of(&self, tenant_id: &str, customer_id: &str) -> Option<Attributes> {
        let tenant = self.tenant(tenant_id)?;
        let identities = tenant.identities.read();
        tenant.attributes_of(identities.canonical(customer_id))
    }

    /// Replaces the sentiment of an applied event with a slower backend's refined answer and
    /// re-folds the customer, exactly as if the event had carried it from the start; the ranking
    /// index and watchers hear of the change like of a new event.
    pub fn refine(
        &self,
        interaction: &Interaction,
        sentiment: Sentiment,
        now_ms: TimestampMs,
    ) -> RefineOutcome {
        let Some(tenant) = self.tenant(&interaction.tenant_id) else {
            return RefineOutcome::NotFound;
        };
        let event_id = interaction.event_id.as_str();
        // The customer the event belongs to now (merges may have moved it since).
        let identities = tenant.identities.read();
        let Some(customer_id) = Self::resolve_in(&identities, interaction) else {
            return RefineOutcome::NotFound;
        };
        let customer_id = customer_id.as_str();
        let watched = tenant.watched();
        tenant.customers.with(|customers| {
            let Some(mut history) = customers.get_mut(customer_id) else {
                return RefineOutcome::NotFound;
            };
            let eval_at = now_ms.max(history.summary().last_event_at_ms);
            let models = self.models(&tenant);
            let model = tenant.model_of(&models, customer_id);
            let previous =
                watched.then(|| evaluate(history.summary(), eval_at, &self.config, model));
            let outcome = history.refine_sentiment(
                id_key(event_id),
                sentiment.score,
                sentiment.confidence,
                &self.config,
            );
            if outcome == RefineOutcome::Refined {
                let score =
                    watched.then(|| evaluate(history.summary(), eval_at, &self.config, model));
                let change = ChangedCustomer {
                    customer_id,
                    event_id,
                    now_ms,
                    eval_at,
                    previous,
                    score,
                };
                self.announce(&tenant, model, history, change, watched);
            }
            outcome
        })
    }

    /// After a customer's fold changed: tells the ranking index whether the customer is now a
    /// candidate, releases the customer's lock, and notifies watchers. Returns the score.
    fn announce(
        &self,
        tenant: &Tenant,
        model: &TenantModel,
        history: dashmap::mapref::one::RefMut<'_, CompactString, Box<CustomerHistory>>,
        change: ChangedCustomer<'_>,
        watched: bool,
    ) -> Option<Score> {
        {
            // TopCustomers' index: is the customer now high enough to be a candidate?
            let ranking = tenant.ranking();
            if ranking.takes_everyone() {
                ranking.note_everywhere(change.customer_id);
            } else {
                let (priority, reply_due_at_ms, action) = match &change.score {
                    Some(score) => (score.priority, ranking::reply_due_key(score), score.action),
                    None => {
                        let ranked = evaluate_for_ranking(
                            history.summary(),
                            change.eval_at,
                            &self.config,
                            model,
                        );
                        (
                            ranked.priority,
                            ranking::reply_due_key(&ranked),
                            ranked.action,
                        )
                    }
                };
                // An event stamped after now: the priority is the one it will have then, no
                // bound for queries before it, so the customer is always evaluated.
                let bound = if change.eval_at > change.now_ms {
                    f64::INFINITY
                } else {
                    priority
                };
                ranking.note(
                    change.customer_id,
                    (priority, reply_due_at_ms),
                    bound,
                    action,
                );
            }
        }
        drop(history);
        let reachable = change.score.as_ref().is_some_and(|score| {
            self.offered(tenant, &self.policy(), None, change.customer_id, score)
        });
        if let (true, true, Some(score)) = (watched, reachable, &change.score) {
            let (previous_priority, previous_action) = change
                .previous
                .map_or((0.0, Action::None), |p| (p.priority, p.action));
            // A send error only means every watcher left meanwhile.
            tenant.publish(Arc::new(PriorityChange {
                customer_id: change.customer_id.to_string(),
                event_id: change.event_id.to_string(),
                cause: "new event".to_string(),
                previous_priority,
                previous_action,
                score: score.clone(),
            }));
        }
        change.score
    }

    /// A customer's score as of `as_of_ms`, from the events at or before it; `None` when the
    /// customer is unknown or had no events by then.
    pub fn customer(
        &self,
        tenant_id: &str,
        customer_id: &str,
        as_of_ms: TimestampMs,
    ) -> Option<Score> {
        let tenant = self.tenant(tenant_id)?;
        let models = self.models(&tenant);
        let identities = tenant.identities.read();
        let customer_id = identities.canonical(customer_id);
        let model = tenant.model_of(&models, customer_id);
        tenant.customers.with(|customers| {
            let history = customers.get(customer_id)?;
            let summary = history.summary_as_of(as_of_ms, &self.config)?;
            Some(evaluate(&summary, as_of_ms, &self.config, model))
        })
    }

    /// The highest-priority customers of a tenant (ties: customer id ascending), with their scores.
    /// From the ranking index when it can answer (see the `ranking` module), else by a full scan.
    pub fn top(&self, tenant_id: &str, query: &TopQuery) -> Vec<(String, Score)> {
        let Some(tenant) = self.tenant(tenant_id) else {
            return Vec::new();
        };
        self.top_from_index(&tenant, query)
            .unwrap_or_else(|| self.top_by_scan(&tenant, query, None))
    }

    /// [`Store::top`] by a full scan, never from the index: exact, O(customers). For checking the
    /// index against (tests, benches).
    pub fn top_exact(&self, tenant_id: &str, query: &TopQuery) -> Vec<(String, Score)> {
        self.tenant(tenant_id)
            .map(|tenant| self.top_by_scan(&tenant, query, None))
            .unwrap_or_default()
    }

    /// The next page of [`Store::top`]: the best customers ranking strictly below `after` (the
    /// last of the previous page, [`RankKey::of`]), by a full scan at the query's time, so pages
    /// at one pinned time neither repeat nor skip anyone.
    pub fn top_after(
        &self,
        tenant_id: &str,
        query: &TopQuery,
        after: &RankKey,
    ) -> Vec<(String, Score)> {
        self.tenant(tenant_id)
            .map(|tenant| self.top_by_scan(&tenant, query, Some(after)))
            .unwrap_or_default()
    }

    fn top_by_scan(
        &self,
        tenant: &Tenant,
        query: &TopQuery,
        after: Option<&RankKey>,
    ) -> Vec<(String, Score)> {
        let models = self.models(tenant);
        let retired = tenant.retired();
        let policy = Arc::clone(&models.policy);
        let mut best = TopK::new(query.limit);
        tenant.customers.with(|customers| {
            for entry in customers.iter() {
                if retired.contains(entry.key()) {
                    continue;
                }
                let Some(summary) = entry.value().summary_as_of(query.as_of_ms, &self.config)
                else {
                    continue;
                };
                let model = tenant.model_of(&models, entry.key());
                let score = evaluate_for_ranking(&summary, query.as_of_ms, &self.config, model);
                let reply_due_at_ms = ranking::reply_due_key(&score);
                let after_it = after.is_none_or(|after| {
                    after.ranks_above(score.priority, reply_due_at_ms, entry.key())
                });
                if query.matches(&score)
                    && after_it
                    && best.admits(score.priority, reply_due_at_ms, entry.key())
                    && self.offered(
                        tenant,
                        &policy,
                        query.segment.as_deref(),
                        entry.key(),
                        &score,
                    )
                {
                    best.offer(Ranked {
                        priority: score.priority,
                        reply_due_at_ms,
                        customer_id: entry.key().clone(),
                    });
                }
            }
        });
        self.with_reasons(tenant, query, best)
    }

    /// The candidates of the index plus the hot customers, evaluated at the query's time, by
    /// descending bound until no remaining bound can enter the answer (live queries); `None` when
    /// the index cannot answer from them.
    fn top_from_index(&self, tenant: &Tenant, query: &TopQuery) -> Option<Vec<(String, Score)>> {
        let list_index = ranking::list_index(query.action);
        let (index, hot) = {
            let ranking = tenant.ranking();
            let index = Arc::clone(ranking.index.as_ref()?);
            (index, ranking.hot_for(list_index)?)
        };
        // Before the pass, or ranked under other rules (a reload since): the scan is exact.
        if query.as_of_ms < index.computed_at_ms || !Arc::ptr_eq(&index.policy, &self.policy()) {
            return None;
        }
        let models = self.models(tenant);
        let retired = tenant.retired();
        let policy = Arc::clone(&models.policy);
        let list = &index.lists[list_index];
        let stop_on_bounds = query.live
            && query.as_of_ms.saturating_sub(index.computed_at_ms) <= ranking::MAX_BOUND_AGE_MS;
        let mut candidates: Vec<&Ranked> = list.iter().chain(hot.iter()).collect();
        if stop_on_bounds {
            // Best bound first, ties as the answer orders them.
            candidates.sort_unstable_by(|a, b| b.cmp(a));
        }
        let mut best = TopK::new(query.limit);
        // A live query usually stops after about `limit` candidates.
        let expected = if stop_on_bounds {
            candidates.len().min(2 * query.limit)
        } else {
            candidates.len()
        };
        let mut seen = std::collections::HashSet::with_capacity_and_hasher(
            expected,
            ahash::RandomState::new(),
        );
        tenant.customers.with(|customers| {
            for candidate in candidates {
                // No candidate from here on can beat the answers kept: each ranks at or below its
                // bound, and the bounds only go down.
                // A bound says nothing of the tie keys: take the most favourable (due earliest).
                if stop_on_bounds
                    && !best.admits(candidate.priority, TimestampMs::MIN, &candidate.customer_id)
                {
                    break;
                }
                let customer_id = &candidate.customer_id;
                if !seen.insert(customer_id.as_str()) || retired.contains(customer_id) {
                    continue;
                }
                let Some(history) = customers.get(customer_id.as_str()) else {
                    continue;
                };
                let Some(summary) = history.summary_as_of(query.as_of_ms, &self.config) else {
                    continue;
                };
                let model = tenant.model_of(&models, customer_id);
                let score = evaluate_for_ranking(&summary, query.as_of_ms, &self.config, model);
                drop(summary);
                drop(history);
                let reply_due_at_ms = ranking::reply_due_key(&score);
                if query.matches(&score)
                    && best.admits(score.priority, reply_due_at_ms, customer_id)
                    && self.offered(
                        tenant,
                        &policy,
                        query.segment.as_deref(),
                        customer_id,
                        &score,
                    )
                {
                    best.offer(Ranked {
                        priority: score.priority,
                        reply_due_at_ms,
                        customer_id: customer_id.clone(),
                    });
                }
            }
        });
        // A full list hides the customers ranked below its last entry: an answer is exact only
        // if it is full and its worst entry ranks at or above that bar. When a filter left too
        // few list entries, hot customers below the bar would otherwise fill the answer ahead of
        // customers the list cut off (proptest regression, 2026-12-02).
        if list.len() >= RANKING_LIST_LEN {
            let bar = list.iter().min();
            let below_bar = match (best.worst(), bar) {
                (Some(worst), Some(bar)) => worst < bar,
                _ => true,
            };
            if best.len() < query.limit || below_bar {
                return None;
            }
        }
        Some(self.with_reasons(tenant, query, best))
    }

    /// Full scores (with reasons) of the chosen customers, best first.
    fn with_reasons(&self, tenant: &Tenant, query: &TopQuery, best: TopK) -> Vec<(String, Score)> {
        let models = self.models(tenant);
        tenant.customers.with(|customers| {
            best.into_sorted()
                .into_iter()
                .filter_map(|ranked| {
                    let history = customers.get(ranked.customer_id.as_str())?;
                    let summary = history.summary_as_of(query.as_of_ms, &self.config)?;
                    let model = tenant.model_of(&models, &ranked.customer_id);
                    let score = evaluate(&summary, query.as_of_ms, &self.config, model);
                    drop(summary);
                    drop(history);
                    Some((ranked.customer_id.into_string(), score))
                })
                .collect()
        })
    }

    /// Visits every customer's history and profile (for a state snapshot), tenant by tenant;
    /// stops at the first error `visit` returns. Each customer is read under its shard's lock, so
    /// what is visited is each customer as it was at some moment during the call; a customer
    /// merged away meanwhile stays until the call ends (retired), so its events are visited on one
    /// side of the merge or both, never on neither (restore folds the two together again).
    pub fn for_each_customer(
        &self,
        mut visit: impl FnMut(
            &str,
            &str,
            &CustomerHistory,
            Option<&Profile>,
            Option<&Attributes>,
        ) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.snapshots_in_progress.fetch_add(1, Ordering::SeqCst);
        let tenants: Vec<(CompactString, Arc<Tenant>)> = self
            .tenants
            .iter()
            .map(|entry| (entry.key().clone(), Arc::clone(entry.value())))
            .collect();
        let mut visited = Ok(());
        for (tenant_id, tenant) in &tenants {
            // Copied first: a merge takes this lock before the map's, so it is never held inside.
            let profiles = tenant.identities.read().profiles_snapshot();
            visited = tenant.customers.with(|customers| {
                for entry in customers.iter() {
                    let profile = profiles.as_ref().and_then(|p| p.get(entry.key()));
                    let attributes = tenant.attributes_of(entry.key());
                    visit(
                        tenant_id,
                        entry.key(),
                        entry.value(),
                        profile,
                        attributes.as_ref(),
                    )?;
                }
                Ok::<_, std::io::Error>(())
            });
            if visited.is_err() {
                break;
            }
        }
        if self.snapshots_in_progress.fetch_sub(1, Ordering::SeqCst) == 1 {
            for (_, tenant) in &tenants {
                let retired: Vec<CompactString> = tenant.retired.write().drain().collect();
                tenant.customers.with(|customers| {
                    for customer_id in &retired {
                        customers.remove(customer_id.as_str());
                    }
                });
                if let Some(attributes) = tenant.attributes.get() {
                    for customer_id in &retired {
                        attributes.remove(customer_id.as_str());
                    }
                }
            }
        }
        visited
    }

    /// Stops every tenant's ranking index from answering until the next ranking pass (queries
    /// scan, exactly): for customers restored while serving ([`Store::restore_customer`] does not
    /// tell the index, as at start-up, when there is no index yet).
    pub fn forget_ranking_indexes(&self) {
        for tenant in self.tenants.iter() {
            tenant.ranking_mut().index = None;
        }
    }

    /// Forgets every customer for which `keep(tenant, customer)` is false, with its attributes
    /// and claim (a cluster replica handing a partition over: its new owner rebuilds them from
    /// the stream). Customers linked by identifiers are not supported here: cluster mode refuses
    /// events with identifiers. Returns how many were dropped.
    pub fn drop_customers(&self, keep: impl Fn(&str, &str) -> bool) -> usize {
        let mut dropped = 0;
        for entry in self.tenants.iter() {
            let (tenant_id, tenant) = (entry.key(), entry.value());
            let gone: Vec<CompactString> = tenant.customers.with(|customers| {
                let gone: Vec<CompactString> = customers
                    .iter()
                    .filter(|customer| !keep(tenant_id, customer.key()))
                    .map(|customer| customer.key().clone())
                    .collect();
                for customer_id in &gone {
                    if customers.remove(customer_id.as_str()).is_some() {
                        tenant.customer_count.fetch_sub(1, Ordering::Relaxed);
                        crate::telemetry::customer_untracked();
                    }
                }
                gone
            });
            if let Some(attributes) = tenant.attributes.get() {
                for customer_id in &gone {
                    attributes.remove(customer_id.as_str());
                }
            }
            let mut claims = tenant.claims.lock();
            for customer_id in &gone {
                claims.remove_customer(customer_id.as_str());
            }
            dropped += gone.len();
        }
        dropped
    }

    /// Puts back a customer's history and profile read from a state snapshot (at start, before
    /// any event): no cap applies, as for replayed events. A customer that a restored profile
    /// says was merged (a snapshot written during a merge) is folded into the survivor again.
    pub fn restore_customer(
        &self,
        tenant_id: &str,
        customer_id: &str,
        history: impl Into<Box<CustomerHistory>>,
        profile: Option<Profile>,
        attributes: Option<Attributes>,
    ) {
        let tenant = self.tenant_or_create(tenant_id);
        let mut identities = tenant.identities.write();
        let target = CompactString::from(identities.canonical(customer_id));
        let mut merged = Vec::new();
        if let Some(profile) = profile {
            merged = identities.restore(customer_id, profile);
            if target != customer_id {
                identities.merge(&target, customer_id);
                merged.clear();
            }
        }
        let mut added = 0isize;
        let mut history: Box<CustomerHistory> = history.into();
        if let Some(translation) = self.restoring_intents.lock().get(tenant_id) {
            history.translate_intents(translation);
        }
        tenant.customers.with(|customers| {
            match customers.get_mut(target.as_str()) {
                Some(mut existing) => existing.absorb(&history, &self.config, &self.timeline),
                None => {
                    customers.insert(target.clone(), history);
                    added += 1;
                }
            }
            for merged_id in merged.iter().filter(|id| **id != target.as_str()) {
                if let Some((_, absorbed)) = customers.remove(merged_id.as_str()) {
                    if let Some(mut existing) = customers.get_mut(target.as_str()) {
                        existing.absorb(&absorbed, &self.config, &self.timeline);
                    }
                    added -= 1;
                }
            }
        });
        if let Some(restored) = attributes {
            Self::merge_attributes(Self::attributes_map(&tenant), &target, restored);
        }
        // Attributes restored before the customer was known to be merged move with it.
        if let Some(map) = tenant.attributes.get() {
            for merged_id in merged.iter().filter(|id| **id != target.as_str()) {
                if let Some((_, taken)) = map.remove(merged_id.as_str()) {
                    Self::merge_attributes(map, &target, taken);
                }
            }
        }
        drop(identities);
        if added > 0 {
            tenant.customer_count.fetch_add(1, Ordering::Relaxed);
            crate::telemetry::customer_tracked();
            Self::grow_if_due(&tenant);
        } else if added < 0 {
            tenant
                .customer_count
                .fetch_sub(added.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// Subscribes to a tenant's priority changes (creating the tenant if needed, so a watcher may
    /// connect before the first event).
    pub fn subscribe(&self, tenant_id: &str) -> broadcast::Receiver<Arc<PriorityChange>> {
        self.tenant_or_create(tenant_id)
            .updates(self.watch_buffer)
            .subscribe()
    }

    /// [`Store::subscribe`] for a watcher at `min_priority`: while the registration lives, the
    /// ranking pass also pushes the customers whose priority crosses it through time alone.
    ///
    /// A tenant without state is not created: the watcher waits in a registry the tenant's
    /// creation takes over (so it sees the first event), and leaves nothing behind when it goes.
    /// At most `server.max_tenants` such tenants are watched at once.
    pub fn watch(
        &self,
        tenant_id: &str,
        min_priority: f64,
    ) -> Result<(broadcast::Receiver<Arc<PriorityChange>>, WatchRegistration), TooManyUnbornWatches>
    {
        let mut waiting = self.unborn_watches.lock();
        if let Some(tenant) = self.tenant(tenant_id) {
            drop(waiting);
            let receiver = tenant.updates(self.watch_buffer).subscribe();
            tenant
                .watch_thresholds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(min_priority);
            let at = Watched::Tenant(tenant);
            return Ok((receiver, WatchRegistration { at, min_priority }));
        }
        let max_tenants = self.max_tenants.load(Ordering::Relaxed);
        if max_tenants != 0 && waiting.len() >= max_tenants && !waiting.contains_key(tenant_id) {
            return Err(TooManyUnbornWatches { max_tenants });
        }
        let unborn = Arc::clone(
            waiting
                .entry(CompactString::from(tenant_id))
                .or_insert_with(|| {
                    Arc::new(Unborn {
                        updates: broadcast::channel(self.watch_buffer).0,
                        thresholds: std::sync::Mutex::new(Vec::new()),
                        born: std::sync::OnceLock::new(),
                    })
                }),
        );
        let receiver = unborn.updates.subscribe();
        unborn
            .thresholds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(min_priority);
        let at = Watched::Unborn {
            registry: Arc::clone(&self.unborn_watches),
            tenant_id: CompactString::from(tenant_id),
            unborn,
        };
        Ok((receiver, WatchRegistration { at, min_priority }))
    }

    /// How many tenants without state are watched now.
    pub fn unborn_tenants_watched(&self) -> usize {
        self.unborn_watches.lock().len()
    }

    /// The periodic pass: rebuilds every tenant's ranking index as of `now_ms` (see `ranking`);
    /// refits a tenant's activity model when it is due; pushes to watchers the customers whose
    /// priority crossed their threshold through time alone since the previous pass; and counts
    /// customers per action and risk band, those past a reply due time and the missed threads,
    /// across all tenants.
    pub fn ranking_pass(&self, now_ms: TimestampMs) -> Census {
        let mut census = Census::default();
        let store_previous_ms = self
            .previous_pass_at_ms
            .fetch_max(now_ms, std::sync::atomic::Ordering::Relaxed);
        let policy = self.policy();
        for tenant in self.tenants.iter() {
            // The activity model first, so the index this pass builds ranks with the model
            // queries will use until the next pass.
            if self.refit_if_due(&tenant, now_ms) {
                census.models_fitted += 1;
            }
            Self::report_agent_load(&tenant, now_ms);
            let models = self.models(&tenant);
            // Watchers' thresholds, for time-driven pushes against the previous pass.
            let thresholds = tenant.watch_thresholds();
            // Every tenant is evaluated in every pass, so the store's previous pass is this
            // tenant's too, including one created since (its customers' events came later).
            let previous_pass_ms = Some(store_previous_ms)
                .filter(|at| *at != i64::MIN && *at < now_ms && !thresholds.is_empty());
            // Events from here on go with the index this pass installs.
            let next_hot: [Arc<HotSet>; ranking::LISTS] = Default::default();
            tenant.ranking_mut().next_hot = Some(next_hot.clone());
            let mut builder = IndexBuilder::new(now_ms, Arc::clone(&models.policy));
            let retired = tenant.retired();
            tenant.customers.with(|customers| {
                for entry in customers.iter() {
                    let history = entry.value();
                    if history.summary().events_total == 0 || retired.contains(entry.key()) {
                        continue;
                    }
                    let summary = if history.summary().last_event_at_ms > now_ms {
                        // Events stamped after the pass (clock skew): ranked and counted as of the
                        // pass, and always evaluated by queries, as the pass gives no bound for later.
                        for hot in &next_hot {
                            hot.insert(entry.key(), f64::INFINITY);
                        }
                        match history.summary_as_of(now_ms, &self.config) {
                            Some(summary) => summary,
                            None => continue,
                        }
                    } else {
                        std::borrow::Cow::Borrowed(history.summary())
                    };
                    let model = tenant.model_of(&models, entry.key());
                    let score = evaluate_for_ranking(&summary, now_ms, &self.config, model);
                    builder.offer(entry.key(), &score);
                    census.by_action[ranking::action_index(score.action)] += 1;
                    census.by_retention_risk[retention_risk_band(score.retention_risk)] += 1;
                    census.customers += 1;
                    census.missed_threads += u64::from(score.missed_threads);
                    if score
                        .reply_due_at_ms
                        .is_some_and(|due| due <= score.as_of_ms)
                    {
                        census.over_reply_sla += 1;
                    }
                    if let Some(previous_ms) = previous_pass_ms {
                        // Measured from the previous pass, or from the customer's last event when it
                        // came later (its change up to then was pushed when it arrived).
                        let before_ms = previous_ms.max(summary.last_event_at_ms);
                        if before_ms < now_ms {
                            let before =
                                evaluate_for_ranking(&summary, before_ms, &self.config, model);
                            let crossed = thresholds.iter().any(|&min_priority| {
                                crosses(before.priority, before.action, &score, min_priority)
                            });
                            if crossed && self.offered(&tenant, &policy, None, entry.key(), &score)
                            {
                                let full = evaluate(&summary, now_ms, &self.config, model);
                                tenant.publish(Arc::new(PriorityChange {
                                    customer_id: entry.key().to_string(),
                                    event_id: String::new(),
                                    cause: time_cause(&before, &full),
                                    previous_priority: before.priority,
                                    previous_action: before.action,
                                    score: full,
                                }));
                                census.time_driven_pushes += 1;
                            }
                        }
                    }
                }
            });
            let (index, bars) = builder.finish();
            {
                let mut ranking = tenant.ranking_mut();
                ranking.index = Some(Arc::new(index));
                ranking.bars = bars;
                ranking.hot = next_hot;
                ranking.next_hot = None;
            }
        }
        census
    }

    /// Refits a tenant's activity model when a refit is due: `retention_refit_seconds` since the
    /// last, or the tenant grew by a tenth since (a backfill), with at least
    /// `retention_min_customers_to_fit` customers. The fit is as of the tenant's latest event
    /// (or now, if earlier), so a backfilled history is judged at its own end; it is then
    /// recalibrated on the tenant's past ([`Backtest`]). `true` when a new model was installed;
    /// a failed fit keeps the model the tenant had.
    fn refit_if_due(&self, tenant: &Tenant, now_ms: TimestampMs) -> bool {
        let refit_ms = (self.config.retention_refit_seconds * 1000.0) as i64;
        let fitted_at = tenant.fitted_at_ms.load(Ordering::Relaxed);
        let customers = tenant.customer_count.load(Ordering::Relaxed) as u64;
        // Counted at the attempt, not from the fit: customers without inbound activity (which the
        // fit skips) must not make every pass look like growth.
        let at_last_attempt = tenant.customers_at_fit.load(Ordering::Relaxed);
        let grew = customers > at_last_attempt + at_last_attempt / 10;
        // New events since the fit, none during the last pass: a backfill (or a burst) has
        // ended, and the model is refitted on all of it within one pass, so scores read after a
        // backfill do not depend on when the background fit happened to run. Small changes (under
        // one event in a hundred) wait for the interval.
        let events = tenant.events_accepted.load(Ordering::Relaxed);
        let events_at_fit = tenant.events_at_fit.load(Ordering::Relaxed);
        let quiet = tenant.events_at_last_pass.swap(events, Ordering::Relaxed) == events;
        let settled = quiet && (events - events_at_fit) * 100 > events_at_fit;
        let due = fitted_at == 0 || now_ms.saturating_sub(fitted_at) >= refit_ms || grew || settled;
        if !due || customers < self.config.retention_min_customers_to_fit as u64 {
            return false;
        }
        tenant.fitted_at_ms.store(now_ms, Ordering::Relaxed);
        tenant.customers_at_fit.store(customers, Ordering::Relaxed);
        tenant.events_at_fit.store(events, Ordering::Relaxed);
        let retired = tenant.retired();
        let (samples, backtest) = tenant.customers.with(|customers| {
            let (mut latest_ms, mut first_activity_ms) = (TimestampMs::MIN, TimestampMs::MAX);
            for entry in customers.iter() {
                let summary = entry.value().summary();
                latest_ms = latest_ms.max(summary.last_event_at_ms);
                if summary.activity_total > 0 {
                    first_activity_ms = first_activity_ms.min(summary.first_activity_at_ms);
                }
            }
            let fit_at_ms = latest_ms.min(now_ms);
            let horizon_seconds = self.config.retention_horizon_seconds;
            let mut samples = FitSamples::default();
            let mut backtest = Backtest::new(fit_at_ms, first_activity_ms, horizon_seconds);
            for entry in customers.iter() {
                let history = entry.value();
                if retired.contains(entry.key()) {
                    continue;
                }
                let Some(now) = history.summary_as_of(fit_at_ms, &self.config) else {
                    continue;
                };
                samples.add(&now, fit_at_ms);
                if let Some(backtest) = backtest.as_mut() {
                    let at_cut = history.summary_as_of(backtest.cut_ms(), &self.config);
                    let at_mid = history.summary_as_of(backtest.mid_ms(), &self.config);
                    if let (Some(at_cut), Some(at_mid)) = (at_cut, at_mid) {
                        let signals = risk_signals(&at_cut, backtest.cut_ms(), &self.config);
                        backtest.add(&at_cut, &at_mid, &now, signals);
                    }
                }
            }
            (samples, backtest)
        });
        if samples.customers() < self.config.retention_min_customers_to_fit as u64 {
            return false;
        }
        let Some(mut retention) = samples.fit() else {
            return false;
        };
        retention.fit = Some(crate::scoring::ModelFit {
            fitted_at_ms: now_ms,
            customers: samples.customers(),
        });
        let configured = configured_signal_weights(&self.config);
        if let Some(calibration) = backtest
            .as_ref()
            .and_then(|backtest| backtest.fit(&configured, retention.params.typical_gap_days()))
        {
            retention.calibration = calibration;
        }
        let mut models = tenant.model.write().unwrap_or_else(|e| e.into_inner());
        *models = Arc::new(models.with_retention(retention));
        crate::telemetry::retention_model_fitted();
        true
    }
}

/// Whether a watcher at `min_priority` wants a change from (`priority`, `action`) to `score`: the
/// priority crossed the threshold (either way), or the action changed while at or above it.
fn crosses(priority: f64, action: Action, score: &Score, min_priority: f64) -> bool {
    let was_above = priority >= min_priority;
    let is_above = score.priority >= min_priority;
    was_above != is_above || (is_above && action != score.action)
}

/// Words for what time alone changed between two evaluations of the same customer.
fn time_cause(before: &Score, after: &Score) -> String {
    if after.missed_threads > before.missed_threads {
        return "an unanswered thread passed its channel's missed horizon".to_string();
    }
    if let Some(due) = after.reply_due_at_ms {
        if due <= after.as_of_ms && before.reply_due_at_ms.is_some_and(|d| d > before.as_of_ms) {
            return "reply SLA breached".to_string();
        }
    }
    if before.action != after.action {
        return format!(
            "action {} -> {} with time (retention risk {:.2} -> {:.2})",
            before.action.as_str(),
            after.action.as_str(),
            before.retention_risk,
            after.retention_risk
        );
    }
    format!(
        "priority {:.3} -> {:.3} with time",
        before.priority, after.priority
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, Direction, Kind, ReplyNeed};
    use crate::sentiment::SentimentLabel;
    use proptest::prelude::*;

    const T0_MS: i64 = 1_767_225_600_000;
    const DAY_MS: i64 = 86_400_000;

    /// One event: customer, kind, inbound, sentiment score, followers, days before T0.
    type EventSpec = (u32, usize, bool, i8, u32, u16);

    /// Seeded draws in (0, 1) (xorshift64), the same on every run.
    fn unit_draws(mut state: u64) -> impl FnMut() -> f64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
    }

    /// An event spec's sentiment: polarity in hundredths, 0 for an event without text.
    fn spec_sentiment(polarity: i8) -> Option<Sentiment> {
        (polarity != 0).then(|| Sentiment {
            label: if polarity > 0 {
                SentimentLabel::Positive
            } else {
                SentimentLabel::Negative
            },
            score: f32::from(polarity) / 100.0,
            confidence: 0.9,
        })
    }

    /// Applies one event; `skew_ms` moves its time (positive: stamped after `now_ms` may be).
    fn apply_spec(store: &Store, id: usize, spec: &EventSpec, now_ms: i64, skew_ms: i64) {
        let (customer, kind, inbound, sentiment, followers, days_before) = *spec;
        let kind = Kind::ALL[kind % Kind::ALL.len()];
        let interaction = Interaction {
            event_id: format!("e{id}"),
            tenant_id: "acme".into(),
            customer_id: format!("c{customer}"),
            channel: Channel::ALL[customer as usize % Channel::ALL.len()],
            kind,
            direction: if inbound {
                Direction::Inbound
            } else {
                Direction::Outbound
            },
            occurred_at_ms: T0_MS - i64::from(days_before) * DAY_MS / 4 + skew_ms,
            text: String::new(),
            value: if kind == Kind::Purchase { 20.0 } else { 0.0 },
            author_followers: u64::from(followers),
            thread_id: format!("t{}", customer % 3),
            reply_need: ReplyNeed::Unclear,
            urgency_cues: Default::default(),
            intent: None,
            language: None,
            identifiers: Vec::new(),
            agent_id: String::new(),
        };
        let sentiment = spec_sentiment(sentiment);
        store.apply(&interaction, sentiment, now_ms, false);
    }

    fn event_spec(customers: u32) -> impl Strategy<Value = EventSpec> {
        (
            0..customers,
            0usize..16,
            any::<bool>(),
            -100i8..=100,
            0u32..1_000_000,
            0u16..400,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// The ranking index answers exactly what a full scan answers at the pass's time, for
        /// events before and after the pass (some stamped after it), lists full (more customers
        /// than a list holds) or not, with and without filters, live (stopping on bounds) or not.
        #[test]
        fn index_answers_what_the_full_scan_answers(
            customers in prop_oneof![Just(300u32), Just(2_500u32)],
            before in proptest::collection::vec(event_spec(2_500), 500..3_000),
            after in proptest::collection::vec(event_spec(2_500), 0..400),
            stamped_later in proptest::collection::vec(event_spec(2_500), 0..20),
            limit in prop_oneof![Just(1usize), Just(10), Just(100), Just(1000)],
        ) {
            let store = Store::new(Arc::new(ScoringConfig::default()), 16);
            let wrap = |spec: &EventSpec| (spec.0 % customers, spec.1, spec.2, spec.3, spec.4, spec.5);
            // Events a minute after T0 (clock skew), not visible as of T0: half before the pass.
            let skewed = |spec: &EventSpec| i64::from(spec.5) * DAY_MS / 4 + 60_000;
            let (skewed_before, skewed_after) = stamped_later.split_at(stamped_later.len() / 2);
            let mut id = 0;
            for (spec, skew_ms) in before.iter().map(|s| (s, 0)).chain(skewed_before.iter().map(|s| (s, skewed(s)))) {
                apply_spec(&store, id, &wrap(spec), T0_MS, skew_ms);
                id += 1;
            }
            store.ranking_pass(T0_MS);
            for (spec, skew_ms) in after.iter().map(|s| (s, 0)).chain(skewed_after.iter().map(|s| (s, skewed(s)))) {
                apply_spec(&store, id, &wrap(spec), T0_MS, skew_ms);
                id += 1;
            }
            let filters = [
                (None, 0.0),
                (Some(Action::Respond), 0.0),
                (Some(Action::Rescue), 0.0),
                (Some(Action::Nurture), 0.0),
                (Some(Action::None), 0.0),
                (None, 0.5),
            ];
            for ((action, min_retention_risk), live) in filters.into_iter().flat_map(|f| [(f, true), (f, false)]) {
                let query = TopQuery { limit, action, min_retention_risk, as_of_ms: T0_MS, live,
                segment: None,
                channel: None,
                intent: None,
                language: None,
                };
                let tenant = store.tenant("acme").expect("tenant");
                let answered = store.top_from_index(&tenant, &query);
                // Unfiltered, the index answers whenever the list entries no later event touched
                // are enough to fill the answer: then its worst ranks at or above the list's bar.
                // (With more, a later event may have dropped list entries below customers the
                // list cut off, and the index rightly falls back to the scan.)
                let untouched = RANKING_LIST_LEN.saturating_sub(after.len() + stamped_later.len());
                if action.is_none() && min_retention_risk == 0.0 && limit <= untouched {
                    prop_assert!(answered.is_some(), "the index answers unfiltered queries");
                }
                let from_index = answered.unwrap_or_else(|| store.top("acme", &query));
                let exact = store.top_exact("acme", &query);
                prop_assert_eq!(
                    from_index.iter().map(|(id, s)| (id.as_str(), s.priority)).collect::<Vec<_>>(),
                    exact.iter().map(|(id, s)| (id.as_str(), s.priority)).collect::<Vec<_>>(),
                    "{:?} {}", action, min_retention_risk
                );
            }
        }
    }

    /// A hot customer's later event stamped after now must not lower the bound a live query
    /// stops on: as of now that event is not visible, and the customer still ranks first.
    #[test]
    fn an_event_stamped_later_does_not_hide_a_hot_customer_from_live_queries() {
        let store = Store::new(Arc::new(ScoringConfig::default()), 16);
        let event = |id: &str, customer: &str, direction, kind, at_ms, sentiment: Option<f32>| {
            let interaction = Interaction {
                event_id: id.into(),
                tenant_id: "acme".into(),
                customer_id: customer.into(),
                channel: Channel::Twitter,
                kind,
                direction,
                occurred_at_ms: at_ms,
                text: String::new(),
                value: 0.0,
                author_followers: 50_000,
                thread_id: "t".into(),
                reply_need: ReplyNeed::Unclear,
                urgency_cues: Default::default(),
                intent: None,
                language: None,
                identifiers: Vec::new(),
                agent_id: String::new(),
            };
            let sentiment = sentiment.map(|score| Sentiment {
                label: SentimentLabel::Negative,
                score,
                confidence: 0.9,
            });
            store.apply(&interaction, sentiment, T0_MS, false);
        };
        // Enough quiet customers (one reply each, nothing to answer) to fill every list.
        for n in 0..(RANKING_LIST_LEN + 200) {
            let (id, customer) = (format!("q{n}"), format!("quiet{n:05}"));
            event(
                &id,
                &customer,
                Direction::Outbound,
                Kind::Reply,
                T0_MS - DAY_MS,
                None,
            );
        }
        // One customer waiting a minute for an answer: a candidate ranked above the quiet ones.
        let waiting = Interaction {
            event_id: "w".into(),
            tenant_id: "acme".into(),
            customer_id: "waiting".into(),
            channel: Channel::Email,
            kind: Kind::Message,
            direction: Direction::Inbound,
            occurred_at_ms: T0_MS - 60_000,
            text: String::new(),
            value: 0.0,
            author_followers: 0,
            thread_id: String::new(),
            reply_need: ReplyNeed::Unclear,
            urgency_cues: Default::default(),
            intent: None,
            language: None,
            identifiers: Vec::new(),
            agent_id: String::new(),
        };
        store.apply(&waiting, None, T0_MS, false);
        store.ranking_pass(T0_MS);
        // After the pass: an angry public mention, then the brand's reply stamped a minute ahead.
        event(
            "a",
            "angry",
            Direction::Inbound,
            Kind::Mention,
            T0_MS,
            Some(-0.9),
        );
        event(
            "b",
            "angry",
            Direction::Outbound,
            Kind::Reply,
            T0_MS + 60_000,
            None,
        );
        for live in [true, false] {
            let query = TopQuery {
                limit: 1,
                action: None,
                min_retention_risk: 0.0,
                as_of_ms: T0_MS,
                live,
                segment: None,
                channel: None,
                intent: None,
                language: None,
            };
            let top = store.top("acme", &query);
            assert_eq!(top[0].0, "angry", "live {live}");
            assert_eq!(top[0].1.action, Action::Respond, "live {live}");
            let exact = store.top_exact("acme", &query);
            assert_eq!(top[0].0, exact[0].0);
        }
    }

    /// The activity model is fitted once the tenant is large enough, then not again until it
    /// grows by a tenth or the refit interval passes; customers without inbound activity (which
    /// the fit skips) do not count as growth. The fit changes retention risk.
    /// Issue 24 item 15: a backfill of more history for the customers a tenant already has (no
    /// new customers) was refitted only when the interval passed, so scores read after it
    /// depended on when the background fit ran. Once the backfill ends (a pass with no new
    /// event) the model is refitted on all of it, and the answer names the fit it used.
    #[test]
    fn a_backfill_is_refitted_on_all_of_it_once_it_ends() {
        let store = Store::new(Arc::new(ScoringConfig::default()), 16);
        let mut id = 0;
        let mut add = |customer: u32, days_before: u16| {
            apply_spec(
                &store,
                id,
                &(customer, 9, true, 0, 0, days_before),
                T0_MS,
                0,
            );
            id += 1;
        };
        let mut unit = unit_draws(0x9E37_79B9_7F4A_7C15);
        let mut buyer = |customer: u32, from_days: f64, add: &mut dyn FnMut(u32, u16)| {
            let rate_per_day = 0.02 + 0.2 * unit();
            let mut days_before = from_days + 100.0 * unit();
            while days_before > from_days - 100.0 && days_before > 0.0 {
                add(customer, (days_before * 4.0) as u16);
                days_before -= -unit().ln() / rate_per_day;
            }
        };
        for customer in 0..300u32 {
            buyer(customer, 150.0, &mut add);
        }
        assert_eq!(store.ranking_pass(T0_MS).models_fitted, 1);
        let first = store.customer("acme", "c5", T0_MS).unwrap().model_fit;
        assert_eq!(first.map(|fit| fit.fitted_at_ms), Some(T0_MS));
        // The older half of their history arrives: the same customers, more events.
        for customer in 0..300u32 {
            buyer(customer, 400.0, &mut add);
        }
        assert_eq!(
            store.ranking_pass(T0_MS + 1000).models_fitted,
            0,
            "still arriving at this pass"
        );
        assert_eq!(
            store.ranking_pass(T0_MS + 2000).models_fitted,
            1,
            "the backfill ended: refitted at the next pass"
        );
        let refitted = store.customer("acme", "c5", T0_MS).unwrap().model_fit;
        assert_eq!(refitted.map(|fit| fit.fitted_at_ms), Some(T0_MS + 2000));
        assert!(
            refitted.is_some_and(|fit| fit.customers >= 200),
            "{refitted:?}"
        );
        assert_eq!(store.ranking_pass(T0_MS + 3000).models_fitted, 0);
    }

    #[test]
    fn activity_model_refits_on_growth_not_every_pass() {
        let store = Store::new(Arc::new(ScoringConfig::default()), 16);
        let mut id = 0;
        let mut add = |customer: u32, inbound: bool, days_before: u16| {
            apply_spec(
                &store,
                id,
                &(customer, 9, inbound, 0, 0, days_before),
                T0_MS,
                0,
            );
            id += 1;
        };
        // 300 buyers drawn from a buy-till-you-die process (seeded: rates, start days and
        // drop-outs vary), and 300 customers the brand only wrote to. `days_before` counts
        // quarter days.
        let mut unit = unit_draws(0x2545_F491_4F6C_DD1D);
        let mut buyer = |customer: u32, add: &mut dyn FnMut(u32, bool, u16)| {
            let rate_per_day = 0.02 + 0.2 * unit();
            let mut days_before = 30.0 + 270.0 * unit();
            while days_before > 0.0 {
                add(customer, true, (days_before * 4.0) as u16);
                if unit() < 0.2 {
                    break;
                }
                days_before -= -unit().ln() / rate_per_day;
            }
        };
        for customer in 0..300u32 {
            buyer(customer, &mut add);
            add(1000 + customer, false, 10);
        }
        let before = store.customer("acme", "c5", T0_MS).unwrap().retention_risk;
        assert_eq!(store.ranking_pass(T0_MS).models_fitted, 1);
        let after = store.customer("acme", "c5", T0_MS).unwrap().retention_risk;
        assert_ne!(before, after, "the fitted model replaces the prior");
        assert_eq!(store.ranking_pass(T0_MS + 1000).models_fitted, 0);
        assert_eq!(store.ranking_pass(T0_MS + 2000).models_fitted, 0);
        // A tenth more customers: refitted at the next pass.
        for customer in 300..400u32 {
            buyer(customer, &mut add);
        }
        assert_eq!(store.ranking_pass(T0_MS + 3000).models_fitted, 1);
    }

    /// The risk signals' weights are learnt from the tenant's own past: where customers who speak
    /// negatively leave more often (at equal activity), the negative-sentiment weight comes out
    /// well above that of a tenant where sentiment says nothing about leaving, which comes out
    /// near zero whatever the configured prior.
    #[test]
    fn risk_signal_weights_are_learnt_from_the_tenants_past() {
        let store = Store::new(Arc::new(ScoringConfig::default()), 16);
        let mut unit = unit_draws(0x9E37_79B9_7F4A_7C15);
        let mut id = 0u64;
        for tenant in ["sour", "flat"] {
            for customer in 0..1500u32 {
                let negative = customer % 2 == 0;
                // Per purchase, the chance of never coming back: sentiment-driven in "sour".
                let drop_out = match (tenant, negative) {
                    ("sour", true) => 0.45,
                    ("sour", false) => 0.08,
                    _ => 0.2,
                };
                let rate_per_day = 0.05 + 0.2 * unit();
                let mut days_before = 20.0 + 200.0 * unit();
                while days_before > 0.0 {
                    let interaction = Interaction {
                        event_id: format!("e{id}"),
                        tenant_id: tenant.into(),
                        customer_id: format!("c{customer}"),
                        channel: Channel::Email,
                        kind: Kind::Message,
                        direction: Direction::Inbound,
                        occurred_at_ms: T0_MS - (days_before * DAY_MS as f64) as i64,
                        text: String::new(),
                        value: 0.0,
                        author_followers: 0,
                        thread_id: String::new(),
                        reply_need: ReplyNeed::NotRequired,
                        urgency_cues: Default::default(),
                        intent: None,
                        language: None,
                        identifiers: Vec::new(),
                        agent_id: String::new(),
                    };
                    let sentiment = Sentiment {
                        label: if negative {
                            SentimentLabel::Negative
                        } else {
                            SentimentLabel::Neutral
                        },
                        score: if negative { -0.8 } else { 0.0 },
                        confidence: 0.9,
                    };
                    store.apply(&interaction, Some(sentiment), T0_MS, false);
                    id += 1;
                    if unit() < drop_out {
                        break;
                    }
                    days_before -= -unit().ln() / rate_per_day;
                }
            }
        }
        assert_eq!(store.ranking_pass(T0_MS).models_fitted, 2);
        let learnt = |tenant: &str| {
            let weights = store
                .tenant(tenant)
                .unwrap()
                .model()
                .base()
                .retention
                .calibration
                .signal_weights
                .expect("fitted on the tenant's past");
            weights[1]
        };
        let (sour, flat) = (learnt("sour"), learnt("flat"));
        assert!(sour > flat + 0.5, "sour {sour}, flat {flat}");
        assert!(flat.abs() < 0.5, "flat {flat}");
    }

    /// Issue 15 D5: a small tenant cost ~347 KB (a 1,024-slot watch channel, six hot-set maps,
    /// and ranking lists with room for 1,000 entries each); now none of that is allocated until
    /// used: no channel without a watcher, and lists hold no more room than entries.
    #[test]
    fn a_small_tenant_allocates_no_watch_channel_and_no_spare_list_room() {
        let store = Store::new(Arc::new(ScoringConfig::default()), 1024);
        apply_spec(&store, 0, &(1, 0, true, -50, 10, 4), T0_MS, 0);
        store.ranking_pass(T0_MS);
        let tenant = store.tenant("acme").unwrap();
        assert!(tenant.updates.get().is_none(), "no watcher, no channel");
        {
            let ranking = tenant.ranking();
            let index = ranking.index.as_ref().expect("the pass built an index");
            for list in &index.lists {
                assert!(list.len() <= 1);
                assert_eq!(list.capacity(), list.len());
            }
        }
        let (_updates, _registration) = store.watch("acme", 0.5).unwrap();
        assert!(
            tenant.updates.get().is_some(),
            "the first watcher creates it"
        );
    }

    fn live_top(limit: usize) -> TopQuery {
        TopQuery {
            limit,
            action: None,
            min_retention_risk: 0.0,
            as_of_ms: T0_MS,
            live: true,
            segment: None,
            channel: None,
            intent: None,
            language: None,
        }
    }

    /// Issue 15 D5: a tenant's customer map starts small and is re-sharded when the tenant
    /// grows past `GROW_AT_CUSTOMERS`, while other threads apply events and query: nobody is
    /// lost or counted twice, and the ranking still matches a full scan.
    #[test]
    fn a_growing_tenant_is_resharded_under_concurrent_ingest_and_queries() {
        let store = Store::new(Arc::new(ScoringConfig::default()), 1024);
        const WRITERS: u32 = 4;
        let per_writer = (GROW_AT_CUSTOMERS as u32 * 3 / 2) / WRITERS;
        std::thread::scope(|scope| {
            for writer in 0..WRITERS {
                let store = &store;
                scope.spawn(move || {
                    for n in 0..per_writer {
                        let customer = writer * per_writer + n;
                        // Two events each: the second finds the customer, maybe in the new map.
                        for (id, days) in
                            [(2 * customer as usize, 3), (2 * customer as usize + 1, 1)]
                        {
                            apply_spec(store, id, &(customer, 0, true, -40, 5, days), T0_MS, 0);
                        }
                    }
                });
            }
            let store = &store;
            scope.spawn(move || {
                for _ in 0..200 {
                    let _ = store.top("acme", &live_top(10));
                    let _ = store.customer("acme", "c1", T0_MS);
                }
            });
        });
        let customers = WRITERS * per_writer;
        let tenant = store.tenant("acme").unwrap();
        assert!(tenant.customers.is_grown());
        assert_eq!(
            tenant.customer_count.load(Ordering::Relaxed),
            customers as usize
        );
        let mut visited = 0;
        store
            .for_each_customer(|_, _, history, _, _| {
                assert_eq!(history.summary().events_total, 2);
                visited += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(visited, customers);
        store.ranking_pass(T0_MS);
        let query = live_top(25);
        let ids = |top: Vec<(String, Score)>| top.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.top("acme", &query)),
            ids(store.top_exact("acme", &query))
        );
    }

    /// Issue 16: a rule's treatment follows the customer's attributes; the ranking index stays
    /// exact when upserts move customers in and out of a treated segment after a pass, and when a
    /// reload changes the rules.
    #[test]
    fn treated_segments_rank_as_the_full_scan_does_through_upserts_and_reloads() {
        let config = crate::config::Config::from_toml(
            "[[segments]]\nname = \"vip\"\nall = [{ field = \"attributes.tier\", op = \"eq\", value = \"vip\" }]\n\
             [[rules]]\nsegment = \"vip\"\nurgency_weight = 50.0\nsla = { first_response_seconds = 60 }",
        )
        .unwrap();
        let store = Store::new(Arc::new(ScoringConfig::default()), 16);
        store.set_policy(config.policy());
        let customers = 3_000u32;
        for customer in 0..customers {
            let spec = (customer, 0, true, -40, customer % 50, (customer % 6) as u16);
            apply_spec(&store, customer as usize, &spec, T0_MS, 0);
        }
        store.ranking_pass(T0_MS);
        let ids = |top: Vec<(String, Score)>| top.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        let queries = [
            live_top(25),
            TopQuery {
                action: Some(Action::Respond),
                ..live_top(100)
            },
        ];
        let untreated = ids(store.top("acme", &live_top(25)));
        let vips: Vec<String> = (0..customers)
            .step_by(97)
            .map(|c| format!("c{c}"))
            .filter(|id| !untreated.contains(id))
            .collect();
        let tier = |value: &str| {
            std::collections::BTreeMap::from([(
                "tier".to_string(),
                Some(AttributeValue::Text(value.into())),
            )])
        };
        for (version, vip) in vips.iter().enumerate() {
            store
                .upsert_attributes("acme", vip, 1 + version as u64, &tier("vip"), T0_MS)
                .unwrap();
        }
        for query in &queries {
            assert_eq!(
                ids(store.top("acme", query)),
                ids(store.top_exact("acme", query))
            );
        }
        let treated = ids(store.top("acme", &live_top(25)));
        assert!(vips.len() > 25);
        assert!(
            treated.iter().all(|id| vips.contains(id)),
            "VIPs fill the top 25 now: {treated:?}"
        );
        let vip_score = store.customer("acme", &vips[0], T0_MS).unwrap();
        assert!(vip_score
            .factors
            .iter()
            .any(|f| matches!(f.kind, crate::scoring::FactorKind::SegmentRule { .. })));
        // One VIP leaves the segment; then a reload drops the rule.
        store
            .upsert_attributes("acme", &vips[0], 1_000, &tier("gold"), T0_MS)
            .unwrap();
        for query in &queries {
            assert_eq!(
                ids(store.top("acme", query)),
                ids(store.top_exact("acme", query))
            );
        }
        store.set_policy(crate::segments::Policy::default());
        for query in &queries {
            assert_eq!(
                ids(store.top("acme", query)),
                ids(store.top_exact("acme", query))
            );
        }
        assert_eq!(ids(store.top("acme", &live_top(25))), untreated);
        store.ranking_pass(T0_MS + 1_000);
        assert_eq!(
            ids(store.top("acme", &live_top(25))),
            ids(store.top_exact("acme", &live_top(25)))
        );
    }

    #[test]
    fn retention_risk_bands_cover_zero_to_one() {
        assert_eq!(retention_risk_band(0.0), 0);
        assert_eq!(retention_risk_band(0.199), 0);
        assert_eq!(retention_risk_band(0.2), 1);
        assert_eq!(retention_risk_band(0.66), 3);
        assert_eq!(retention_risk_band(1.0), 4);
        assert_eq!(retention_risk_band(f64::NAN), 0);
    }

    /// One person's events on one channel: (person, channel slot 0..3, event spec, link with
    /// the next slot's identifier too).
    type PersonEvent = (u32, usize, EventSpec, bool);

    /// The identifier person `person` uses on channel slot `slot`: a handle, an e-mail, a phone.
    fn person_identifier(person: u32, slot: usize) -> identity::Identifier {
        let (kind, value) = match slot {
            0 => (
                identity::IdentifierKind::Handle,
                format!("twitter:p{person}"),
            ),
            1 => (
                identity::IdentifierKind::Email,
                format!("p{person}@example.com"),
            ),
            _ => (
                identity::IdentifierKind::Phone,
                format!("+4420794600{person:02}"),
            ),
        };
        identity::Identifier { kind, value }
    }

    /// `spec` as person `person`'s event on `slot`: with `as_one_id`, under the person's single
    /// id and no identifiers (the reference run); else under no id, with its identifier(s).
    fn person_interaction(
        id: usize,
        event: &PersonEvent,
        as_one_id: bool,
    ) -> (Interaction, Option<Sentiment>) {
        let (person, slot, spec, bridge) = event;
        let (_, kind, inbound, sentiment, followers, days_before) = *spec;
        let kind = Kind::ALL[kind % Kind::ALL.len()];
        let mut identifiers = vec![person_identifier(*person, *slot)];
        if *bridge {
            identifiers.push(person_identifier(*person, (slot + 1) % 3));
        }
        let interaction = Interaction {
            event_id: format!("e{id}"),
            tenant_id: "acme".into(),
            customer_id: if as_one_id {
                format!("person-{person}")
            } else {
                String::new()
            },
            channel: [Channel::Twitter, Channel::Email, Channel::Phone][*slot],
            kind,
            direction: if inbound {
                Direction::Inbound
            } else {
                Direction::Outbound
            },
            occurred_at_ms: T0_MS - i64::from(days_before) * DAY_MS / 4,
            text: String::new(),
            value: if kind == Kind::Purchase { 20.0 } else { 0.0 },
            author_followers: u64::from(followers),
            thread_id: format!("t{person}-{slot}"),
            reply_need: ReplyNeed::Unclear,
            urgency_cues: Default::default(),
            intent: None,
            language: None,
            identifiers: if as_one_id { Vec::new() } else { identifiers },
            agent_id: String::new(),
        };
        let sentiment = spec_sentiment(sentiment);
        (interaction, sentiment)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Issue 16: three people, each on three channels under three identifiers, their events
        /// and a CRM's link of each person's id to all three identifiers arriving in any order:
        /// every person ends as one customer (under the id the CRM gave) whose scores and ranking
        /// equal those of a run where every event carried that id from the start.
        #[test]
        fn merged_customers_score_as_one_customer_whatever_the_arrival_order(
            events in proptest::collection::vec(
                (0u32..3, 0usize..3, event_spec(1), proptest::bool::weighted(0.2)),
                1..120,
            ),
            link_at in proptest::collection::vec(0usize..=120, 3),
            seed in any::<u64>(),
        ) {
            let one_id = Store::new(Arc::new(ScoringConfig::default()), 16);
            for (id, event) in events.iter().enumerate() {
                let (interaction, sentiment) = person_interaction(id, event, true);
                one_id.apply(&interaction, sentiment, T0_MS, false);
            }
            // Arrival: the events shuffled, with each person's CRM link somewhere among them.
            let mut arrivals: Vec<Option<usize>> = (0..events.len()).map(Some).collect();
            let mut draw = unit_draws(seed | 1);
            for index in (1..arrivals.len()).rev() {
                arrivals.swap(index, (draw() * (index + 1) as f64) as usize % (index + 1));
            }
            let mut links: Vec<(usize, u32)> = link_at.iter().enumerate().map(|(person, at)| (*at, person as u32)).collect();
            links.sort();
            let merged = Store::new(Arc::new(ScoringConfig::default()), 16);
            let link = |person: u32| IdentityRequest {
                tenant_id: "acme".into(),
                customer_id: format!("person-{person}"),
                action: IdentityAction::Link((0..3).map(|slot| person_identifier(person, slot)).collect()),
            };
            let mut pending_links = links.iter().peekable();
            for (position, arrival) in arrivals.iter().enumerate() {
                while let Some((_, person)) = pending_links.next_if(|(at, _)| *at <= position) {
                    prop_assert!(merged.apply_identity(&link(*person), T0_MS).is_ok());
                }
                let id = arrival.expect("an event");
                let (interaction, sentiment) = person_interaction(id, &events[id], false);
                merged.apply(&interaction, sentiment, T0_MS, false);
            }
            for (_, person) in pending_links {
                prop_assert!(merged.apply_identity(&link(*person), T0_MS).is_ok());
            }
            for person in 0..3 {
                let id = format!("person-{person}");
                let at = T0_MS + DAY_MS;
                prop_assert_eq!(
                    format!("{:?}", merged.customer("acme", &id, at)),
                    format!("{:?}", one_id.customer("acme", &id, at)),
                    "person {}", person
                );
                // Every identifier and every merged-away id answers for the same customer.
                for slot in 0..3 {
                    let derived = person_identifier(person, slot).derived_customer_id();
                    let resolved = merged.identity_of("acme", &derived).map(|(id, _)| id);
                    prop_assert!(resolved.is_none() || resolved.as_deref() == Some(id.as_str()), "{:?}", resolved);
                }
            }
            let query = TopQuery { limit: 10, action: None, min_retention_risk: 0.0, as_of_ms: T0_MS + DAY_MS, live: false,
            segment: None,
            channel: None,
            intent: None,
            language: None,
            };
            let ids = |top: Vec<(String, Score)>| top.into_iter().map(|(id, score)| format!("{id} {score:?}")).collect::<Vec<_>>();
            prop_assert_eq!(ids(merged.top_exact("acme", &query)), ids(one_id.top_exact("acme", &query)));
        }
    }

    /// A differing external id (the hard identifier) refuses a merge, all or nothing, and an
    /// event that would need it is still applied to its own customer.
    #[test]
    fn a_differing_external_id_refuses_the_merge() {
        let store = Store::new(Arc::new(ScoringConfig::default()), 16);
        let external = |value: &str| identity::Identifier {
            kind: identity::IdentifierKind::ExternalId,
            value: value.into(),
        };
        let email = identity::Identifier {
            kind: identity::IdentifierKind::Email,
            value: "ann@example.com".into(),
        };
        let link = |customer: &str, identifiers: Vec<identity::Identifier>| IdentityRequest {
            tenant_id: "acme".into(),
            customer_id: customer.into(),
            action: IdentityAction::Link(identifiers),
        };
        store
            .apply_identity(&link("ann", vec![external("u-1"), email.clone()]), T0_MS)
            .unwrap();
        store
            .apply_identity(&link("bob", vec![external("u-2")]), T0_MS)
            .unwrap();
        let refused = store
            .apply_identity(&link("bob", vec![email.clone()]), T0_MS)
            .unwrap_err();
        assert!(refused.to_string().contains("hard identifier"), "{refused}");
        let merge = IdentityRequest {
            tenant_id: "acme".into(),
            customer_id: "ann".into(),
            action: IdentityAction::Merge {
                other_customer_id: "bob".into(),
            },
        };
        assert!(store.apply_identity(&merge, T0_MS).is_err());
        assert_eq!(store.identity_of("acme", "bob").unwrap().0, "bob");
        assert_eq!(
            store
                .identity_of("acme", "ann")
                .unwrap()
                .1
                .identifiers
                .len(),
            2
        );
        // An event for bob carrying ann's e-mail: applied to bob, the link refused.
        let (mut interaction, sentiment) =
            person_interaction(1, &(0, 1, (0, 0, true, -40, 5, 1), false), false);
        interaction.customer_id = "bob".into();
        interaction.identifiers = vec![email];
        assert!(matches!(
            store.apply(&interaction, sentiment, T0_MS, false),
            Applied::Accepted(_)
        ));
        assert!(store.customer("acme", "bob", T0_MS).is_some());
        assert!(
            store.customer("acme", "ann", T0_MS).is_none(),
            "ann has no events"
        );
    }

    /// A merge while a state snapshot is being written keeps the absorbed customer (retired,
    /// skipped by queries) until the snapshot is done, and a snapshot holding both sides of a
    /// merge restores to the merged customer alone, with the merged scores.
    #[test]
    fn a_merge_during_a_snapshot_loses_nothing_and_restores_merged() {
        let store = Store::new(Arc::new(ScoringConfig::default()), 16);
        for (id, customer) in [(0, 1u32), (1, 1), (2, 2), (3, 2), (4, 2)] {
            apply_spec(
                &store,
                id,
                &(customer, 0, true, -40, 5, 3 - id as u16 / 2),
                T0_MS,
                0,
            );
        }
        let merge = IdentityRequest {
            tenant_id: "acme".into(),
            customer_id: "c1".into(),
            action: IdentityAction::Merge {
                other_customer_id: "c2".into(),
            },
        };
        // As if a snapshot had started.
        store.snapshots_in_progress.fetch_add(1, Ordering::SeqCst);
        let (survivor, profile) = store.apply_identity(&merge, T0_MS).unwrap();
        assert_eq!(
            (survivor.as_str(), profile.merged.as_slice()),
            ("c1", &["c2".to_string()][..])
        );
        let tenant = store.tenant("acme").unwrap();
        assert!(
            tenant
                .customers
                .with(|customers| customers.contains_key("c2")),
            "kept, retired"
        );
        let query = TopQuery {
            limit: 10,
            action: None,
            min_retention_risk: 0.0,
            as_of_ms: T0_MS,
            live: false,
            segment: None,
            channel: None,
            intent: None,
            language: None,
        };
        let ids: Vec<String> = store
            .top_exact("acme", &query)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["c1"], "a retired customer is not ranked");
        store.snapshots_in_progress.fetch_sub(1, Ordering::SeqCst);
        // The next snapshot sees both sides (c2 still there), then c2 is gone.
        let mut records = Vec::new();
        store
            .for_each_customer(|tenant_id, customer_id, history, profile, attributes| {
                records.push((
                    tenant_id.to_string(),
                    customer_id.to_string(),
                    history.clone(),
                    profile.cloned(),
                    attributes.cloned(),
                ));
                Ok(())
            })
            .unwrap();
        assert_eq!(records.len(), 2);
        assert!(
            !tenant
                .customers
                .with(|customers| customers.contains_key("c2")),
            "purged"
        );
        let merged_score = format!("{:?}", store.customer("acme", "c1", T0_MS));
        // Restored in either order, the two records make the merged customer alone.
        for order in [false, true] {
            let restored = Store::new(Arc::new(ScoringConfig::default()), 16);
            let mut records = records.clone();
            records.sort_by(|a, b| if order { a.1.cmp(&b.1) } else { b.1.cmp(&a.1) });
            for (tenant_id, customer_id, history, profile, attributes) in records {
                restored.restore_customer(&tenant_id, &customer_id, history, profile, attributes);
            }
            assert_eq!(
                format!("{:?}", restored.customer("acme", "c1", T0_MS)),
                merged_score
            );
            assert_eq!(
                format!("{:?}", restored.customer("acme", "c2", T0_MS)),
                merged_score
            );
            let tenant = restored.tenant("acme").unwrap();
            assert_eq!(
                tenant.customer_count.load(Ordering::Relaxed),
                1,
                "order {order}"
            );
            assert!(!tenant
                .customers
                .with(|customers| customers.contains_key("c2")));
        }
    }
}
