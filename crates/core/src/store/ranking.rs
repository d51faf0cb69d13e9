//! The ranking index behind `TopCustomers` "as of now": candidate lists built by the periodic
//! ranking pass, plus the customers whose events since then could put them on a list.
//!
//! A full scan evaluates every customer of a tenant (about a second at a million customers). The
//! pass does that once per interval, off the request path, and keeps per tenant the
//! [`RANKING_LIST_LEN`] highest-priority customers overall and per action. Between passes every
//! accepted event whose customer's new priority reaches the bar of its action's list (or of the
//! overall list) adds that customer to the tenant's hot set. A query then evaluates only the list
//! it needs plus the hot set, at the query's time.
//!
//! Every candidate carries a bound: its priority when the pass ranked it, or, for a hot customer,
//! when its latest event was noted. A query evaluates candidates by descending bound and stops
//! once `limit` answers beat the next bound, so it evaluates about `limit` candidates instead of
//! all of them. At the pass's own time this is exact: a customer's priority only moves with events,
//! and an event that could lift a customer onto a list makes it hot with its new priority.
//!
//! What the index can miss: a customer whose priority rises through time alone (a growing silence
//! or reply wait, no new event) past the bound it was ranked or noted with enters the answer at the
//! next pass, at most one interval late; after [`MAX_BOUND_AGE_MS`] without a pass, queries stop
//! trusting bounds and evaluate every candidate. An event that arrives while a pass runs is judged
//! against the previous pass's bars, so when a pass lowers a bar such a customer also waits for the
//! next pass. Queries the index cannot answer from its candidates (an `as_of` before the pass; an
//! answer from a full list whose worst entry ranks below the list's last, as when a filter left
//! fewer than `limit` list entries; an overflowing hot set) fall back to the full scan, which is
//! exact.

use crate::domain::{Action, TimestampMs};
use crate::scoring::Score;
use compact_str::CompactString;
use dashmap::DashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Customers each ranking list keeps: TopCustomers' largest `limit`.
pub const RANKING_LIST_LEN: usize = 1000;

/// Hot customers a tenant collects between passes before queries fall back to the full scan.
pub const MAX_HOT_CUSTOMERS: usize = 50_000;

/// How long after a pass its bounds are trusted to stop a query early (see the module doc); beyond
/// it (passes stalled, or an `as_of` far ahead) a query evaluates every candidate.
pub const MAX_BOUND_AGE_MS: i64 = 60_000;

/// Position of an action in [`Action::ALL`].
pub fn action_index(action: Action) -> usize {
    Action::ALL
        .iter()
        .position(|candidate| *candidate == action)
        .unwrap_or(Action::ALL.len() - 1)
}

/// Ranking entry, in the order TopCustomers answers: higher priority first; at equal priority the
/// reply due first (a customer with no reply due after every one with one); customer id last. In
/// the index, the priority is the candidate's bound.
pub(super) struct Ranked {
    pub priority: f64,
    /// When the customer's most urgent open thread is due an answer ([`NO_REPLY_DUE`] if none).
    pub reply_due_at_ms: TimestampMs,
    pub customer_id: CompactString,
}

/// [`Ranked::reply_due_at_ms`] of a customer with no reply due: after every due time.
pub(super) const NO_REPLY_DUE: TimestampMs = TimestampMs::MAX;

/// The tie key of a score: when its reply is due, or [`NO_REPLY_DUE`].
pub(super) fn reply_due_key(score: &Score) -> TimestampMs {
    score.reply_due_at_ms.unwrap_or(NO_REPLY_DUE)
}

/// The answer order of two (priority, reply due, id) keys: `Greater` when `a` ranks first.
pub(super) fn rank_order(
    a: (f64, TimestampMs, &str),
    b: (f64, TimestampMs, &str),
) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0)
        .then_with(|| b.1.cmp(&a.1))
        .then_with(|| b.2.cmp(a.2))
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
        rank_order(
            (self.priority, self.reply_due_at_ms, &self.customer_id),
            (other.priority, other.reply_due_at_ms, &other.customer_id),
        )
    }
}

/// The best `limit` entries offered, kept in a min-heap.
pub(super) struct TopK {
    limit: usize,
    heap: BinaryHeap<Reverse<Ranked>>,
}

impl TopK {
    /// Keeps at most `limit` entries. The heap grows with what it keeps: a small tenant's lists
    /// must not hold room for `limit` entries each.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            heap: BinaryHeap::with_capacity((limit + 1).min(64)),
        }
    }

    /// Whether an entry of this priority, reply due time and id would be kept (so the caller can
    /// skip building it).
    pub fn admits(&self, priority: f64, reply_due_at_ms: TimestampMs, customer_id: &str) -> bool {
        if self.heap.len() < self.limit {
            return self.limit > 0;
        }
        self.heap.peek().is_some_and(|Reverse(worst)| {
            rank_order(
                (priority, reply_due_at_ms, customer_id),
                (worst.priority, worst.reply_due_at_ms, &worst.customer_id),
            )
            .is_gt()
        })
    }

    /// Offers an entry.
    pub fn offer(&mut self, entry: Ranked) {
        if self.heap.len() < self.limit {
            self.heap.push(Reverse(entry));
        } else if self
            .heap
            .peek()
            .is_some_and(|Reverse(worst)| entry > *worst)
        {
            self.heap.pop();
            self.heap.push(Reverse(entry));
        }
    }

    /// Entries kept so far.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// The lowest-ranked entry kept, if any.
    pub fn worst(&self) -> Option<&Ranked> {
        self.heap.peek().map(|Reverse(worst)| worst)
    }

    /// The kept entries, best first.
    pub fn into_sorted(self) -> Vec<Ranked> {
        let mut ranked: Vec<Ranked> = self.heap.into_iter().map(|Reverse(r)| r).collect();
        ranked.sort_by(|a, b| b.cmp(a));
        ranked
    }
}

/// Ranking lists: one per action in [`Action::ALL`] order, then the overall one.
pub(super) const LISTS: usize = 6;
const OVERALL: usize = 5;

/// The list a query with this action filter draws from.
pub(super) fn list_index(action: Option<Action>) -> usize {
    action.map_or(OVERALL, action_index)
}

/// The entry a customer must reach to join a full list: its last one's priority, reply due time
/// and id. The whole answer order counts: a customer tied on priority but ranking below the last
/// entry must not become a candidate while others ranking like it are not (the answer would then
/// depend on which of them had an event since the pass).
pub(super) type Bar = Option<(f64, TimestampMs, CompactString)>;

/// Whether (priority, reply due, id) ranks at or above the bar (a list that is not full takes
/// anyone).
fn reaches(bar: &Bar, (priority, reply_due_at_ms): (f64, TimestampMs), customer_id: &str) -> bool {
    match bar {
        None => true,
        Some((bar_priority, bar_due, bar_id)) => rank_order(
            (priority, reply_due_at_ms, customer_id),
            (*bar_priority, *bar_due, bar_id),
        )
        .is_ge(),
    }
}

/// Candidate lists of one pass.
pub(super) struct RankingIndex {
    /// The evaluation time of the pass.
    pub computed_at_ms: TimestampMs,
    /// Customers with their priority at `computed_at_ms`, best first: per action, then overall.
    pub lists: [Vec<Ranked>; LISTS],
    /// The segments and rules the priorities were evaluated under.
    pub policy: Arc<crate::segments::Policy>,
}

/// Builds a tenant's index during a pass: offer every customer's score once.
pub(super) struct IndexBuilder {
    computed_at_ms: TimestampMs,
    policy: Arc<crate::segments::Policy>,
    tops: [TopK; LISTS],
}

impl IndexBuilder {
    /// A pass evaluating at `computed_at_ms` under `policy`.
    pub fn new(computed_at_ms: TimestampMs, policy: Arc<crate::segments::Policy>) -> Self {
        Self {
            computed_at_ms,
            policy,
            tops: std::array::from_fn(|_| TopK::new(RANKING_LIST_LEN)),
        }
    }

    /// Offers one customer's score at the pass time.
    pub fn offer(&mut self, customer_id: &str, score: &Score) {
        for list in [action_index(score.action), OVERALL] {
            let top = &mut self.tops[list];
            let reply_due_at_ms = reply_due_key(score);
            if top.admits(score.priority, reply_due_at_ms, customer_id) {
                top.offer(Ranked {
                    priority: score.priority,
                    reply_due_at_ms,
                    customer_id: CompactString::from(customer_id),
                });
            }
        }
    }

    /// The index and each list's bar.
    pub fn finish(self) -> (RankingIndex, [Bar; LISTS]) {
        let mut lists: [Vec<Ranked>; LISTS] = Default::default();
        let mut bars: [Bar; LISTS] = Default::default();
        for (list, top) in self.tops.into_iter().enumerate() {
            let full = top.len() >= RANKING_LIST_LEN;
            let mut sorted = top.into_sorted();
            sorted.shrink_to_fit();
            if full {
                bars[list] = sorted
                    .last()
                    .map(|r| (r.priority, r.reply_due_at_ms, r.customer_id.clone()));
            }
            lists[list] = sorted;
        }
        (
            RankingIndex {
                computed_at_ms: self.computed_at_ms,
                lists,
                policy: self.policy,
            },
            bars,
        )
    }
}

/// Customers whose events since a pass began may put them on a list, each with its bound: the
/// priority its latest noted event gave it (and, as a bound on the tie key, the earliest due time).
#[derive(Default)]
pub(super) struct HotSet {
    /// Created by the first insert: a tenant's six sets cost nothing until they are used.
    bounds: std::sync::OnceLock<DashMap<CompactString, f64, ahash::RandomState>>,
    len: AtomicUsize,
}

impl HotSet {
    /// Marks a customer hot with the priority its event gave it (`f64::INFINITY` when not
    /// evaluated). Past [`MAX_HOT_CUSTOMERS`] the set stops growing and is marked overflowed, which
    /// sends queries to the full scan until the next pass.
    pub fn insert(&self, customer_id: &str, bound: f64) {
        let bounds = self
            .bounds
            .get_or_init(|| DashMap::with_hasher(ahash::RandomState::new()));
        if let Some(mut known) = bounds.get_mut(customer_id) {
            *known = bound;
            return;
        }
        if self.len.load(Ordering::Relaxed) >= MAX_HOT_CUSTOMERS {
            self.len.store(MAX_HOT_CUSTOMERS + 1, Ordering::Relaxed);
            return;
        }
        if bounds
            .insert(CompactString::from(customer_id), bound)
            .is_none()
        {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds the hot customers with their bounds to `into`; `false` when the set overflowed.
    pub fn collect_into(&self, into: &mut Vec<Ranked>) -> bool {
        if self.len.load(Ordering::Relaxed) > MAX_HOT_CUSTOMERS {
            return false;
        }
        let Some(bounds) = self.bounds.get() else {
            return true;
        };
        into.extend(bounds.iter().map(|entry| Ranked {
            priority: *entry.value(),
            reply_due_at_ms: TimestampMs::MIN,
            customer_id: entry.key().clone(),
        }));
        true
    }
}

/// A tenant's ranking state: the last pass's index with, per list, the customers hot since that
/// pass began, and, while a pass runs, those hot since it began (they go with the index it will
/// install). While a pass runs, events are judged against the previous pass's bars.
#[derive(Default)]
pub(super) struct RankingState {
    pub index: Option<Arc<RankingIndex>>,
    pub bars: [Bar; LISTS],
    pub hot: [Arc<HotSet>; LISTS],
    pub next_hot: Option<[Arc<HotSet>; LISTS]>,
}

impl RankingState {
    /// Records an event's customer with its new priority and action on each list it could join,
    /// with `bound` (the priority, or infinity when it is no bound) for queries.
    pub fn note(&self, customer_id: &str, rank: (f64, TimestampMs), bound: f64, action: Action) {
        for list in [action_index(action), OVERALL] {
            if reaches(&self.bars[list], rank, customer_id) {
                self.hot[list].insert(customer_id, bound);
                if let Some(next) = &self.next_hot {
                    next[list].insert(customer_id, bound);
                }
            }
        }
    }

    /// Whether every event's customer is hot (no list is full), so no evaluation is needed.
    pub fn takes_everyone(&self) -> bool {
        self.bars.iter().all(Option::is_none)
    }

    /// Records an event's customer on every list (when [`RankingState::takes_everyone`]: its
    /// action is not known without evaluating it).
    pub fn note_everywhere(&self, customer_id: &str) {
        for list in 0..LISTS {
            self.hot[list].insert(customer_id, f64::INFINITY);
            if let Some(next) = &self.next_hot {
                next[list].insert(customer_id, f64::INFINITY);
            }
        }
    }

    /// The hot customers of one list with their bounds (both generations while a pass runs);
    /// `None` when a set overflowed.
    pub fn hot_for(&self, list: usize) -> Option<Vec<Ranked>> {
        let mut hot = Vec::new();
        if !self.hot[list].collect_into(&mut hot) {
            return None;
        }
        if let Some(next) = &self.next_hot {
            if !next[list].collect_into(&mut hot) {
                return None;
            }
        }
        Some(hot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(priority: f64, reply_due_at_ms: TimestampMs, customer_id: &str) -> Ranked {
        Ranked {
            priority,
            reply_due_at_ms,
            customer_id: CompactString::from(customer_id),
        }
    }

    fn order(entries: Vec<Ranked>, limit: usize) -> Vec<String> {
        let mut top = TopK::new(limit);
        for entry in entries {
            if top.admits(entry.priority, entry.reply_due_at_ms, &entry.customer_id) {
                top.offer(entry);
            }
        }
        top.into_sorted()
            .into_iter()
            .map(|r| r.customer_id.to_string())
            .collect()
    }

    #[test]
    fn ties_are_broken_by_reply_due_then_customer_id() {
        let entries = vec![
            ranked(0.7, NO_REPLY_DUE, "a"),
            ranked(0.7, 2_000, "b"),
            ranked(0.7, 1_000, "z"),
            ranked(0.7, 1_000, "c"),
            ranked(0.9, NO_REPLY_DUE, "y"),
            ranked(0.6, 0, "d"),
        ];
        assert_eq!(order(entries, 10), ["y", "c", "z", "b", "a", "d"]);
    }

    #[test]
    fn a_full_top_keeps_the_tie_due_first_whatever_the_offer_order() {
        let forward = vec![
            ranked(0.7, NO_REPLY_DUE, "a"),
            ranked(0.7, 5_000, "b"),
            ranked(0.7, 1_000, "c"),
        ];
        let mut backward = vec![
            ranked(0.7, NO_REPLY_DUE, "a"),
            ranked(0.7, 5_000, "b"),
            ranked(0.7, 1_000, "c"),
        ];
        backward.reverse();
        assert_eq!(order(forward, 2), ["c", "b"]);
        assert_eq!(order(backward, 2), ["c", "b"]);
    }

    /// The bar is the whole answer order: at the bar's priority, only who ranks at or above its
    /// last entry by due time, then id, reaches it.
    #[test]
    fn the_bar_follows_the_answer_order_through_ties() {
        let bar: Bar = Some((0.5, 1_000, CompactString::from("m")));
        assert!(reaches(&bar, (0.6, NO_REPLY_DUE), "z"));
        assert!(!reaches(&bar, (0.49, 0), "a"));
        assert!(reaches(&bar, (0.5, 999), "z"));
        assert!(!reaches(&bar, (0.5, 1_001), "a"));
        assert!(reaches(&bar, (0.5, 1_000), "m"));
        assert!(reaches(&bar, (0.5, 1_000), "b"));
        assert!(!reaches(&bar, (0.5, 1_000), "n"));
        assert!(reaches(&None, (0.0, NO_REPLY_DUE), "x"));
    }
}
