//! Routing: a tenant's agents (skills, capacity, status) and the claims they hold, whole
//! customers or single conversations (a customer's thread waiting for an answer).
//!
//! Exclusivity: a customer held whole excludes every other claim on it; a conversation excludes
//! another claim on the same thread and a whole-customer claim. An agent's load is its live
//! claims, counted here from the claims themselves (nothing to keep in step).

use crate::domain::{Channel, TimestampMs};
use compact_str::CompactString;

/// Whether an agent takes work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AgentStatus {
    /// Takes work while it has capacity.
    Available,
    /// Keeps what it holds, takes nothing new.
    Away,
    /// Like `Away`, for an agent that has left.
    Offline,
}

/// An agent as a routing engine registered it.
#[derive(Clone, Debug, PartialEq)]
pub struct Agent {
    /// Its id (what ClaimNext names).
    pub agent_id: String,
    /// Whether it takes work.
    pub status: AgentStatus,
    /// Languages it answers in ([`crate::domain::language_id`]s, ascending); empty: any.
    pub languages: Vec<u8>,
    /// Intents it handles (names, ascending); empty: any.
    pub intents: Vec<String>,
    /// Skill segments it serves (names, ascending).
    pub segments: Vec<String>,
    /// Conversations it holds at once per channel (ascending by channel); a channel not listed
    /// is not its work.
    pub capacity: Vec<(Channel, u32)>,
    /// Whole customers with nothing waiting (outreach) it holds at once.
    pub outreach_capacity: u32,
    /// Units its conversations may take together, each its channel's weight
    /// (`routing.channel_weights`); 0: no such limit.
    pub capacity_units: u32,
    /// When it was put or its status last set, in milliseconds since the Unix epoch.
    pub updated_at_ms: TimestampMs,
}

impl Agent {
    /// The most conversations it holds at once on `channel` (0: not its work).
    pub fn capacity_on(&self, channel: Channel) -> u32 {
        self.capacity
            .iter()
            .find(|(on, _)| *on == channel)
            .map_or(0, |(_, max)| *max)
    }
}

/// What a claim holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Work {
    /// The whole customer (ClaimNext of an unregistered agent, or outreach).
    Customer,
    /// One conversation: the customer's thread `thread_key` (0: its thread-less messages),
    /// waiting on `channel`.
    Conversation {
        /// The thread's key.
        thread_key: u64,
        /// The channel of its oldest unanswered message when claimed (what capacity counts).
        channel: Channel,
    },
}

impl Work {
    /// Whether two claims hold the same work, or overlap (a whole customer overlaps everything
    /// of it).
    fn overlaps(&self, other: &Work) -> bool {
        match (self, other) {
            (Work::Customer, _) | (_, Work::Customer) => true,
            (
                Work::Conversation { thread_key: a, .. },
                Work::Conversation { thread_key: b, .. },
            ) => a == b,
        }
    }
}

/// An agent's claim, until `expires_at_ms` unless renewed or ended by an answer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    /// The agent holding it.
    pub agent_id: String,
    /// When it ends, in milliseconds since the epoch.
    pub expires_at_ms: TimestampMs,
    /// What it holds.
    pub work: Work,
}

impl Claim {
    /// Whether it still holds at `now_ms`.
    pub fn is_live(&self, now_ms: TimestampMs) -> bool {
        self.expires_at_ms > now_ms
    }
}

/// An agent's live claims, by channel and outreach.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Load {
    /// Conversations held per channel (`Channel as usize`).
    pub per_channel: [u32; Channel::ALL.len()],
    /// Whole customers held.
    pub whole_customers: u32,
}

impl Load {
    /// Conversations held on `channel`.
    pub fn on(&self, channel: Channel) -> u32 {
        self.per_channel[channel as usize]
    }

    /// Counts one more claim holding `work`.
    fn add(&mut self, work: &Work) {
        match work {
            Work::Customer => self.whole_customers += 1,
            Work::Conversation { channel, .. } => self.per_channel[*channel as usize] += 1,
        }
    }

    /// The units its conversations take, each its channel's weight under `routing`.
    pub fn units(&self, routing: &crate::config::RoutingConfig) -> u32 {
        Channel::ALL
            .iter()
            .map(|channel| self.on(*channel).saturating_mul(routing.weight(*channel)))
            .fold(0, u32::saturating_add)
    }
}

/// A tenant's claims, by customer.
#[derive(Debug, Default)]
pub struct Claims {
    by_customer: std::collections::HashMap<CompactString, Vec<Claim>, ahash::RandomState>,
}

impl Claims {
    /// Drops every claim that ended by `now_ms`.
    pub fn retain_live(&mut self, now_ms: TimestampMs) {
        self.by_customer.retain(|_, claims| {
            claims.retain(|claim| claim.is_live(now_ms));
            !claims.is_empty()
        });
    }

    /// Whether nobody holds anything of the customer.
    pub fn is_free(&self, customer_id: &str) -> bool {
        !self.by_customer.contains_key(customer_id)
    }

    /// Whether `work` of the customer is free: no claim held overlaps it.
    pub fn is_work_free(&self, customer_id: &str, work: &Work) -> bool {
        self.by_customer
            .get(customer_id)
            .is_none_or(|claims| !claims.iter().any(|claim| claim.work.overlaps(work)))
    }

    /// Adds a claim (the caller checked the work is free).
    pub fn insert(&mut self, customer_id: &str, claim: Claim) {
        let claims = self
            .by_customer
            .entry(CompactString::from(customer_id))
            .or_default();
        claims.retain(|held| held.work != claim.work);
        claims.push(claim);
    }

    /// Sets (`Some`) or removes (`None`) the claim on `work` of the customer, as recovery reads it.
    pub fn restore(&mut self, customer_id: &str, work: Work, claim: Option<Claim>) {
        match claim {
            Some(claim) => self.insert(customer_id, claim),
            None => self.remove_where(customer_id, |held| held.work == work),
        }
    }

    /// Removes the customer's claims `drop` picks.
    fn remove_where(&mut self, customer_id: &str, drop: impl Fn(&Claim) -> bool) {
        if let Some(claims) = self.by_customer.get_mut(customer_id) {
            claims.retain(|claim| !drop(claim));
            if claims.is_empty() {
                self.by_customer.remove(customer_id);
            }
        }
    }

    /// Forgets every claim on the customer.
    pub fn remove_customer(&mut self, customer_id: &str) {
        self.by_customer.remove(customer_id);
    }

    /// An answer to the customer: whole-customer claims end, and so do conversations whose
    /// thread no longer waits (`still_waits` says which do).
    pub fn end_answered(&mut self, customer_id: &str, still_waits: impl Fn(u64) -> bool) {
        self.remove_where(customer_id, |claim| match claim.work {
            Work::Customer => true,
            Work::Conversation { thread_key, .. } => !still_waits(thread_key),
        });
    }

    /// The customer's live claims at `now_ms` (whole-customer first, then by expiry).
    pub fn of(&self, customer_id: &str, now_ms: TimestampMs) -> Vec<Claim> {
        let mut live: Vec<Claim> = self
            .by_customer
            .get(customer_id)
            .into_iter()
            .flatten()
            .filter(|claim| claim.is_live(now_ms))
            .cloned()
            .collect();
        live.sort_by_key(|claim| (claim.work != Work::Customer, claim.expires_at_ms));
        live
    }

    /// `agent_id`'s live claims on the customer, those `pick` accepts, changed by `change`
    /// (`None`: ended); returns the claims after it, or `None` when it held none of them.
    pub fn update_held(
        &mut self,
        customer_id: &str,
        agent_id: &str,
        now_ms: TimestampMs,
        pick: impl Fn(&Work) -> bool,
        change: impl Fn(&mut Claim) -> bool,
    ) -> Option<Vec<(Work, Option<Claim>)>> {
        let claims = self.by_customer.get_mut(customer_id)?;
        let mut changed = Vec::new();
        claims.retain_mut(|claim| {
            if claim.agent_id != agent_id || !claim.is_live(now_ms) || !pick(&claim.work) {
                return true;
            }
            let keep = change(claim);
            changed.push((claim.work, keep.then(|| claim.clone())));
            keep
        });
        if claims.is_empty() {
            self.by_customer.remove(customer_id);
        }
        (!changed.is_empty()).then_some(changed)
    }

    /// Every live claim at `now_ms`, by customer (whole-customer first).
    pub fn live(&self, now_ms: TimestampMs) -> Vec<(String, Claim)> {
        let mut live = Vec::new();
        for customer_id in self.by_customer.keys() {
            for claim in self.of(customer_id, now_ms) {
                live.push((customer_id.to_string(), claim));
            }
        }
        live
    }

    /// Every claim, live or not (for a state snapshot).
    pub fn all(&self) -> impl Iterator<Item = (&str, &Claim)> {
        self.by_customer
            .iter()
            .flat_map(|(customer_id, claims)| claims.iter().map(move |c| (customer_id.as_str(), c)))
    }

    /// Whether the tenant has no claim at all.
    pub fn is_empty(&self) -> bool {
        self.by_customer.is_empty()
    }

    /// Whether someone holds the whole customer.
    pub fn holds_customer(&self, customer_id: &str) -> bool {
        self.by_customer
            .get(customer_id)
            .is_some_and(|claims| claims.iter().any(|claim| claim.work == Work::Customer))
    }

    /// Whether the customer has a claim.
    pub fn holds_any(&self, customer_id: &str) -> bool {
        self.by_customer.contains_key(customer_id)
    }

    /// `agent_id`'s live claims at `now_ms`, counted.
    pub fn load_of(&self, agent_id: &str, now_ms: TimestampMs) -> Load {
        let mut load = Load::default();
        for claim in self.by_customer.values().flatten() {
            if claim.agent_id == agent_id && claim.is_live(now_ms) {
                load.add(&claim.work);
            }
        }
        load
    }

    /// Every agent's live claims at `now_ms`, counted in one pass, by agent id.
    pub fn loads(&self, now_ms: TimestampMs) -> std::collections::HashMap<&str, Load> {
        let mut loads: std::collections::HashMap<&str, Load> = Default::default();
        for claim in self.by_customer.values().flatten() {
            if claim.is_live(now_ms) {
                loads
                    .entry(claim.agent_id.as_str())
                    .or_default()
                    .add(&claim.work);
            }
        }
        loads
    }

    /// A merge: the absorbed customer's claims move to the survivor. Where claims of two agents
    /// overlap, one holder stays (the claim that lasts longer; at equal expiry the agent id
    /// first in order, so replay decides the same); the others end and are returned.
    pub fn merge(&mut self, survivor: &str, absorbed: &str) -> Vec<Claim> {
        let Some(taken) = self.by_customer.remove(absorbed) else {
            return Vec::new();
        };
        let mut all = self.by_customer.remove(survivor).unwrap_or_default();
        all.extend(taken);
        // Longest first: each claim stays unless one kept before it overlaps it.
        all.sort_by(|a, b| {
            b.expires_at_ms
                .cmp(&a.expires_at_ms)
                .then_with(|| a.agent_id.cmp(&b.agent_id))
        });
        let mut kept: Vec<Claim> = Vec::with_capacity(all.len());
        let mut ended = Vec::new();
        for claim in all {
            let overlapped = kept.iter().any(|held| {
                held.work.overlaps(&claim.work)
                    && !(held.agent_id == claim.agent_id && held.work == claim.work)
            });
            let repeated = kept
                .iter()
                .any(|held| held.agent_id == claim.agent_id && held.work == claim.work);
            if repeated {
                continue;
            }
            if overlapped {
                ended.push(claim);
            } else {
                kept.push(claim);
            }
        }
        if !kept.is_empty() {
            self.by_customer.insert(CompactString::from(survivor), kept);
        }
        ended
    }
}

/// Reply-SLA figures of one channel and intent: answers in a window, and what waits now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceLevel {
    /// The threads' channel (of their oldest unanswered message).
    pub channel: Option<Channel>,
    /// The threads' intent (`None`: none).
    pub intent: Option<String>,
    /// First responses in the window, and how many came within their target.
    pub first_replies: u64,
    /// First responses within their target.
    pub first_replies_within_target: u64,
    /// Next responses (the brand had answered in the thread before) in the window.
    pub next_replies: u64,
    /// Next responses within their target.
    pub next_replies_within_target: u64,
    /// Median wall-clock wait of those answers, in seconds (0 without answers).
    pub median_reply_wait_seconds: f64,
    /// The 90th percentile of that wait, in seconds.
    pub p90_reply_wait_seconds: f64,
    /// Threads waiting for an answer now.
    pub waiting_now: u64,
    /// Of those, the threads past their due time.
    pub overdue_now: u64,
    /// The longest wait among them, in seconds.
    pub oldest_wait_seconds: f64,
}

/// Accumulates [`ServiceLevel`]s by channel and intent.
#[derive(Debug, Default)]
pub struct ServiceLevels {
    rows: std::collections::BTreeMap<(Channel, u16), (ServiceLevel, Vec<f64>)>,
}

impl ServiceLevels {
    /// An answer to a thread on `channel` about `intent` after `waited_seconds`: a next response
    /// when `follow_up`, within its target or not.
    pub fn answered(
        &mut self,
        channel: Channel,
        intent: u16,
        follow_up: bool,
        within_target: bool,
        waited_seconds: f64,
    ) {
        let (row, waits) = self.rows.entry((channel, intent)).or_default();
        if follow_up {
            row.next_replies += 1;
            row.next_replies_within_target += u64::from(within_target);
        } else {
            row.first_replies += 1;
            row.first_replies_within_target += u64::from(within_target);
        }
        waits.push(waited_seconds);
    }

    /// A thread on `channel` about `intent` waiting now, for `waited_seconds`, overdue or not.
    pub fn waiting(&mut self, channel: Channel, intent: u16, overdue: bool, waited_seconds: f64) {
        let (row, _) = self.rows.entry((channel, intent)).or_default();
        row.waiting_now += 1;
        row.overdue_now += u64::from(overdue);
        row.oldest_wait_seconds = row.oldest_wait_seconds.max(waited_seconds);
    }

    /// The rows by channel then intent, intents named by `name`.
    pub fn finish(self, name: impl Fn(u16) -> Option<String>) -> Vec<ServiceLevel> {
        self.rows
            .into_iter()
            .map(|((channel, intent), (mut row, mut waits))| {
                waits.sort_by(f64::total_cmp);
                let quantile = |q: f64| {
                    if waits.is_empty() {
                        0.0
                    } else {
                        waits[((waits.len() - 1) as f64 * q).round() as usize]
                    }
                };
                row.median_reply_wait_seconds = quantile(0.5);
                row.p90_reply_wait_seconds = quantile(0.9);
                row.channel = Some(channel);
                row.intent = name(intent);
                row
            })
            .collect()
    }
}

/// What routing knows of one conversation when it matches it to an agent.
#[derive(Clone, Copy, Debug)]
pub struct ConversationFacts<'a> {
    /// The conversation's channel (`None`: outreach, a whole customer).
    pub channel: Option<Channel>,
    /// Its language id (0: none read).
    pub language: u8,
    /// Its intent's name (`None`: none).
    pub intent: Option<&'a str>,
    /// How long it has waited, in milliseconds.
    pub waited_ms: i64,
}

/// Why a conversation is not an agent's work (`None` from [`misfit`]: it is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misfit {
    /// No capacity on its channel, or all of it in use.
    Capacity,
    /// A language the agent does not answer in.
    Language,
    /// An intent the agent does not handle.
    Intent,
    /// A skill segment of the customer the agent lacks.
    Segment,
}

/// Whether a conversation is `agent`'s work given its `load` and the routing rules; the
/// customer's skill segments are `customer_segments` (those of `routing.skill_segments` it is in).
pub fn misfit(
    agent: &Agent,
    load: &Load,
    facts: &ConversationFacts<'_>,
    customer_segments: &[&str],
    routing: &crate::config::RoutingConfig,
) -> Option<Misfit> {
    let room = match facts.channel {
        Some(channel) => {
            load.on(channel) < agent.capacity_on(channel)
                && (agent.capacity_units == 0
                    || load.units(routing).saturating_add(routing.weight(channel))
                        <= agent.capacity_units)
        }
        None => load.whole_customers < agent.outreach_capacity,
    };
    if !room {
        return Some(Misfit::Capacity);
    }
    let lapsed = |kind: &str| {
        routing.is_optional(kind)
            && facts.waited_ms
                >= i64::try_from(routing.optional_skills_after_seconds)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1000)
    };
    if facts.language != 0
        && !agent.languages.is_empty()
        && !agent.languages.contains(&facts.language)
        && !lapsed("language")
    {
        return Some(Misfit::Language);
    }
    if let Some(intent) = facts.intent {
        if !agent.intents.is_empty()
            && !agent.intents.iter().any(|name| name == intent)
            && !lapsed("intent")
        {
            return Some(Misfit::Intent);
        }
    }
    if customer_segments
        .iter()
        .any(|segment| !agent.segments.iter().any(|has| has == segment))
        && !lapsed("segment")
    {
        return Some(Misfit::Segment);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Agent {
        Agent {
            agent_id: "a".into(),
            status: AgentStatus::Available,
            languages: vec![crate::domain::language_id("en")],
            intents: vec!["billing".into()],
            segments: Vec::new(),
            capacity: vec![(Channel::Email, 2)],
            outreach_capacity: 0,
            capacity_units: 0,
            updated_at_ms: 0,
        }
    }

    fn claim(agent_id: &str, expires_at_ms: TimestampMs, work: Work) -> Claim {
        Claim {
            agent_id: agent_id.into(),
            expires_at_ms,
            work,
        }
    }

    fn thread(thread_key: u64) -> Work {
        Work::Conversation {
            thread_key,
            channel: Channel::Email,
        }
    }

    #[test]
    fn skills_capacity_and_the_optional_wait_decide_the_fit() {
        let routing = crate::config::RoutingConfig::default();
        let agent = agent();
        let mut load = Load::default();
        let facts = |language: &str, intent: Option<&'static str>, waited_ms| ConversationFacts {
            channel: Some(Channel::Email),
            language: crate::domain::language_id(language),
            intent,
            waited_ms,
        };
        assert_eq!(
            misfit(
                &agent,
                &load,
                &facts("en", Some("billing"), 0),
                &[],
                &routing
            ),
            None
        );
        assert_eq!(
            misfit(&agent, &load, &facts("fr", None, 10_000_000), &[], &routing),
            Some(Misfit::Language),
            "language is required unless configured optional"
        );
        assert_eq!(
            misfit(
                &agent,
                &load,
                &facts("en", Some("refund"), 0),
                &[],
                &routing
            ),
            Some(Misfit::Intent)
        );
        assert_eq!(
            misfit(
                &agent,
                &load,
                &facts("en", Some("refund"), 300_000),
                &[],
                &routing
            ),
            None,
            "an optional skill lapses after the wait"
        );
        assert_eq!(
            misfit(&agent, &load, &facts("en", None, 0), &["vip"], &routing),
            Some(Misfit::Segment)
        );
        let chat = ConversationFacts {
            channel: Some(Channel::Chat),
            ..facts("en", None, 0)
        };
        assert_eq!(
            misfit(&agent, &load, &chat, &[], &routing),
            Some(Misfit::Capacity)
        );
        load.per_channel[Channel::Email as usize] = 2;
        assert_eq!(
            misfit(&agent, &load, &facts("en", None, 0), &[], &routing),
            Some(Misfit::Capacity)
        );
    }

    #[test]
    fn capacity_units_weigh_each_channel() {
        let mut routing = crate::config::RoutingConfig::default();
        routing.channel_weights.insert("chat".into(), 3);
        let agent = Agent {
            capacity: vec![(Channel::Chat, 3), (Channel::Email, 10)],
            capacity_units: 10,
            languages: Vec::new(),
            intents: Vec::new(),
            ..agent()
        };
        let on = |channel| ConversationFacts {
            channel: Some(channel),
            language: 0,
            intent: None,
            waited_ms: 0,
        };
        let mut load = Load::default();
        load.per_channel[Channel::Chat as usize] = 3;
        assert_eq!(load.units(&routing), 9);
        assert_eq!(
            misfit(&agent, &load, &on(Channel::Email), &[], &routing),
            None
        );
        load.per_channel[Channel::Email as usize] = 1;
        assert_eq!(
            misfit(&agent, &load, &on(Channel::Email), &[], &routing),
            Some(Misfit::Capacity),
            "three chats and an e-mail fill ten units"
        );
        load.per_channel = Default::default();
        load.per_channel[Channel::Email as usize] = 8;
        assert_eq!(
            misfit(&agent, &load, &on(Channel::Chat), &[], &routing),
            Some(Misfit::Capacity),
            "a chat takes three units, two are left"
        );
    }

    #[test]
    fn a_whole_customer_excludes_its_conversations_and_threads_exclude_each_other_only() {
        let mut claims = Claims::default();
        claims.insert("c", claim("a", 10, thread(1)));
        assert!(claims.is_work_free("c", &thread(2)));
        assert!(!claims.is_work_free("c", &thread(1)));
        assert!(!claims.is_work_free("c", &Work::Customer));
        claims.insert("c", claim("b", 10, thread(2)));
        assert_eq!(claims.load_of("a", 0).on(Channel::Email), 1);
        claims.end_answered("c", |key| key == 2);
        assert_eq!(
            claims.of("c", 0).len(),
            1,
            "the answered thread's claim ends"
        );
        claims.retain_live(10);
        assert!(claims.is_free("c"));
    }

    #[test]
    fn a_merge_leaves_one_holder_of_overlapping_work_and_names_the_others() {
        let mut claims = Claims::default();
        claims.insert("x", claim("a", 20, thread(1)));
        claims.insert("y", claim("b", 30, thread(1)));
        claims.insert("y", claim("b", 30, thread(2)));
        let ended = claims.merge("x", "y");
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].agent_id, "a");
        assert!(claims.is_free("y"));
        assert_eq!(claims.of("x", 0).len(), 2);
        claims.insert("z", claim("c", 40, Work::Customer));
        let ended = claims.merge("x", "z");
        assert_eq!(
            ended.len(),
            2,
            "a whole customer held longer ends both conversations"
        );
        assert_eq!(claims.of("x", 0), vec![claim("c", 40, Work::Customer)]);
    }
}
