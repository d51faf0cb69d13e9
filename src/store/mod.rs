//! In-memory state: tenants → customers → event histories, ranking, and priority-change
//! notifications for watchers.
//!
//! Each customer's history sits behind its DashMap shard lock only for the few microseconds an
//! insert and an evaluation take. Tenants never see each other: every call names its tenant and
//! only that tenant's map is read.

use crate::config::ScoringConfig;
use crate::domain::{Action, Interaction, TimestampMs};
use crate::scoring::{evaluate, CustomerHistory, EventRecord, InsertOutcome, Score};
use crate::sentiment::Sentiment;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

/// What applying one event did, with the customer's score after it when it was asked for.
#[derive(Clone, Debug)]
pub enum Applied {
    /// The event was new.
    Accepted(Option<Score>),
    /// An event with this id was already applied; nothing changed.
    Duplicate(Option<Score>),
    /// The event is for a customer the tenant does not track yet, and the tenant already tracks
    /// [`Store::set_max_customers_per_tenant`] customers; nothing changed.
    TenantFull { max_customers: usize },
}

/// A customer's score moved because of an event; watchers filter these by their threshold.
#[derive(Clone, Debug)]
pub struct PriorityChange {
    pub customer_id: String,
    pub event_id: String,
    /// 0 and [`Action::None`] for a customer seen for the first time.
    pub previous_priority: f64,
    pub previous_action: Action,
    pub score: Score,
}

impl PriorityChange {
    /// Whether a watcher with this threshold wants it: the priority crossed the threshold (either
    /// way), or the action changed while at or above it.
    pub fn concerns(&self, min_priority: f64) -> bool {
        let was_above = self.previous_priority >= min_priority;
        let is_above = self.score.priority >= min_priority;
        was_above != is_above || (is_above && self.previous_action != self.score.action)
    }
}

/// Filters for [`Store::top`].
#[derive(Clone, Copy, Debug)]
pub struct TopQuery {
    pub limit: usize,
    /// Only customers with this action.
    pub action: Option<Action>,
    pub min_retention_risk: f64,
    pub as_of_ms: TimestampMs,
}

/// Keyed hashing (ids come from clients), faster than the default SipHash.
type Map<V> = DashMap<String, V, ahash::RandomState>;

struct Tenant {
    customers: Map<CustomerHistory>,
    /// `customers.len()` without visiting every shard; reserved before a customer is inserted so
    /// the cap holds exactly under concurrent inserts.
    customer_count: AtomicUsize,
    updates: broadcast::Sender<Arc<PriorityChange>>,
}

/// All tenants' state.
pub struct Store {
    tenants: Map<Arc<Tenant>>,
    config: Arc<ScoringConfig>,
    watch_buffer: usize,
    /// Most customers per tenant (0 = no cap).
    max_customers_per_tenant: AtomicUsize,
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
        Self {
            tenants: Map::default(),
            config,
            watch_buffer,
            max_customers_per_tenant: AtomicUsize::new(0),
        }
    }

    /// Caps the customers each tenant may track (0 = no cap): an event for a new customer beyond
    /// it is refused ([`Applied::TenantFull`]); customers already tracked keep being updated. The
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

    fn tenant_or_create(&self, tenant_id: &str) -> Arc<Tenant> {
        if let Some(tenant) = self.tenant(tenant_id) {
            return tenant;
        }
        let tenant = self
            .tenants
            .entry(tenant_id.to_string())
            .or_insert_with(|| {
                Arc::new(Tenant {
                    customers: Map::default(),
                    customer_count: AtomicUsize::new(0),
                    updates: broadcast::channel(self.watch_buffer).0,
                })
            });
        Arc::clone(&tenant)
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
        };
        let tenant = self.tenant_or_create(&interaction.tenant_id);
        let watched = tenant.updates.receiver_count() > 0;
        let mut history = match tenant.customers.get_mut(interaction.customer_id.as_str()) {
            Some(history) => history,
            None => match tenant.customers.entry(interaction.customer_id.clone()) {
                Entry::Occupied(entry) => entry.into_ref(),
                Entry::Vacant(entry) => {
                    let max_customers = self.max_customers_per_tenant.load(Ordering::Relaxed);
                    let reserved = tenant.customer_count.fetch_update(
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                        |count| (max_customers == 0 || count < max_customers).then_some(count + 1),
                    );
                    if reserved.is_err() {
                        return Applied::TenantFull { max_customers };
                    }
                    crate::telemetry::customer_tracked();
                    entry.insert(CustomerHistory::default())
                }
            },
        };
        let eval_at = now_ms
            .max(history.summary().last_event_at_ms)
            .max(record.occurred_at_ms);
        let previous = (watched && history.summary().events_total > 0)
            .then(|| evaluate(history.summary(), eval_at, &self.config));
        match history.insert(record, &self.config) {
            InsertOutcome::Duplicate => Applied::Duplicate(
                want_score.then(|| evaluate(history.summary(), eval_at, &self.config)),
            ),
            InsertOutcome::Inserted => {
                let score = (want_score || watched)
                    .then(|| evaluate(history.summary(), eval_at, &self.config));
                drop(history);
                if let (true, Some(score)) = (watched, &score) {
                    let (previous_priority, previous_action) =
                        previous.map_or((0.0, Action::None), |p| (p.priority, p.action));
                    // A send error only means every watcher left meanwhile.
                    let _ = tenant.updates.send(Arc::new(PriorityChange {
                        customer_id: interaction.customer_id.clone(),
                        event_id: interaction.event_id.clone(),
                        previous_priority,
                        previous_action,
                        score: score.clone(),
                    }));
                }
                Applied::Accepted(score.filter(|_| want_score))
            }
        }
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
        let history = tenant.customers.get(customer_id)?;
        let summary = history.summary_as_of(as_of_ms, &self.config)?;
        Some(evaluate(&summary, as_of_ms, &self.config))
    }

    /// The highest-priority customers of a tenant (ties: customer id ascending), with their scores.
    pub fn top(&self, tenant_id: &str, query: &TopQuery) -> Vec<(String, Score)> {
        let Some(tenant) = self.tenant(tenant_id) else {
            return Vec::new();
        };
        let mut best: BinaryHeap<Reverse<Ranked>> = BinaryHeap::with_capacity(query.limit + 1);
        for entry in tenant.customers.iter() {
            let Some(summary) = entry.value().summary_as_of(query.as_of_ms, &self.config) else {
                continue;
            };
            let score = evaluate(&summary, query.as_of_ms, &self.config);
            if query.action.is_some_and(|action| action != score.action)
                || score.retention_risk < query.min_retention_risk
            {
                continue;
            }
            let candidate = Ranked {
                priority: score.priority,
                customer_id: entry.key().clone(),
                score,
            };
            if best.len() < query.limit {
                best.push(Reverse(candidate));
            } else if best.peek().is_some_and(|Reverse(worst)| candidate > *worst) {
                best.pop();
                best.push(Reverse(candidate));
            }
        }
        let mut ranked: Vec<Ranked> = best.into_iter().map(|Reverse(ranked)| ranked).collect();
        ranked.sort_by(|a, b| b.cmp(a));
        ranked
            .into_iter()
            .map(|ranked| (ranked.customer_id, ranked.score))
            .collect()
    }

    /// Subscribes to a tenant's priority changes (creating the tenant if needed, so a watcher may
    /// connect before the first event).
    pub fn subscribe(&self, tenant_id: &str) -> broadcast::Receiver<Arc<PriorityChange>> {
        self.tenant_or_create(tenant_id).updates.subscribe()
    }

    /// Customers per action across all tenants as of `now_ms`, in [`Action::ALL`] order, and how many
    /// have an unanswered message older than the reply SLA.
    pub fn census(&self, now_ms: TimestampMs) -> Census {
        let mut census = Census::default();
        let sla_ms = (self.config.reply_sla_seconds * 1000.0) as i64;
        for tenant in self.tenants.iter() {
            for entry in tenant.customers.iter() {
                let summary = entry.value().summary();
                if summary.events_total == 0 {
                    continue;
                }
                let score = evaluate(summary, now_ms, &self.config);
                let index = Action::ALL
                    .iter()
                    .position(|action| *action == score.action)
                    .unwrap_or(Action::ALL.len() - 1);
                census.by_action[index] += 1;
                census.by_retention_risk[retention_risk_band(score.retention_risk)] += 1;
                census.customers += 1;
                if score
                    .unanswered_since_ms
                    .is_some_and(|since| score.as_of_ms.saturating_sub(since) > sla_ms)
                {
                    census.over_reply_sla += 1;
                }
            }
        }
        census
    }
}

/// Counts from [`Store::census`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    pub customers: u64,
    /// In [`Action::ALL`] order.
    pub by_action: [u64; 5],
    /// Customers per retention-risk band, in [`RETENTION_RISK_BANDS`] order.
    pub by_retention_risk: [u64; RETENTION_RISK_BANDS.len()],
    pub over_reply_sla: u64,
}

/// Retention-risk bands of the census, as (lower bound inclusive, label); the last band includes 1.0.
pub const RETENTION_RISK_BANDS: [(f64, &str); 5] = [
    (0.0, "0.0-0.2"),
    (0.2, "0.2-0.4"),
    (0.4, "0.4-0.6"),
    (0.6, "0.6-0.8"),
    (0.8, "0.8-1.0"),
];

/// Index in [`RETENTION_RISK_BANDS`] of the band holding `retention_risk` (clamped to [0, 1]).
pub fn retention_risk_band(retention_risk: f64) -> usize {
    RETENTION_RISK_BANDS
        .iter()
        .rposition(|(lower, _)| retention_risk >= *lower)
        .unwrap_or(0)
}

/// Ranking entry: higher priority first, then smaller customer id.
struct Ranked {
    priority: f64,
    customer_id: String,
    score: Score,
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.priority
            .total_cmp(&other.priority)
            .then_with(|| other.customer_id.cmp(&self.customer_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_risk_bands_cover_zero_to_one() {
        assert_eq!(retention_risk_band(0.0), 0);
        assert_eq!(retention_risk_band(0.199), 0);
        assert_eq!(retention_risk_band(0.2), 1);
        assert_eq!(retention_risk_band(0.66), 3);
        assert_eq!(retention_risk_band(1.0), 4);
        assert_eq!(retention_risk_band(f64::NAN), 0);
    }
}
