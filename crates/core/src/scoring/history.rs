//! A customer's events, kept sorted, and their in-order fold into a [`Summary`].

use crate::config::ScoringConfig;
use crate::domain::{Channel, Direction, Kind, ReplyNeed, TimestampMs, UrgencyCues};
use crate::scoring::decay_factor;
use crate::scoring::timeline::{NoteIds, Notes, NotesWire, TimelineLimits, Touchpoint};
use std::borrow::Cow;

/// One event, reduced to what scoring reads (64 bytes).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EventRecord {
    /// When the event happened, in milliseconds since the Unix epoch.
    pub occurred_at_ms: TimestampMs,
    /// Hash of the event id: orders ties and detects repeats.
    pub event_key: u64,
    /// Hash of the thread id; 0 when the event belongs to no thread.
    pub thread_key: u64,
    /// Money, for purchases.
    pub value: f64,
    /// Author's followers, saturated at u32::MAX.
    pub author_followers: u32,
    /// Polarity in [-1, 1]; meaningful when `has_sentiment`.
    pub sentiment_score: f32,
    /// In [0, 1]; meaningful when `has_sentiment`.
    pub sentiment_confidence: f32,
    /// Where the event happened.
    pub channel: Channel,
    /// What kind of interaction it was.
    pub kind: Kind,
    /// Who spoke: the customer (inbound) or the brand (outbound).
    pub direction: Direction,
    /// Whether the event had text that was classified.
    pub has_sentiment: bool,
    /// Whether an inbound message asks for an answer.
    pub reply_need: ReplyNeed,
    /// Urgency cues of an inbound message's text (absent from state of formats before 5).
    #[serde(deserialize_with = "new_in_format_5")]
    pub urgency_cues: UrgencyCues,
    /// The tenant's intent the text was read as: its id in the tenant's table of intent names
    /// (0: none; absent from state of formats before 5).
    #[serde(deserialize_with = "new_in_format_5")]
    pub intent: u16,
    /// The key of an inbound text ([`crate::scoring::noise::text_key`]; 0: none, too short, or
    /// state of formats before 6): what copies of the same text share.
    #[serde(deserialize_with = "new_in_format_6")]
    pub text_key: u32,
    /// The language of an inbound text as read at ingest ([`crate::domain::language_id`]; 0: none,
    /// or state of formats before 6).
    #[serde(deserialize_with = "new_in_format_6")]
    pub language: u8,
    /// The timeline's thread and agent ids of the event, as indexes into its customer's notes.
    /// In the record's padding (the record stays 56 bytes); not serialized: state snapshots hold
    /// the notes' own list (see `CustomerHistory`'s serialization).
    #[serde(skip, default)]
    pub note: NoteIds,
}

/// Below this sentiment a "closure" is read as sarcasm ("thanks for nothing"): it asks for an
/// answer like any complaint instead of closing its thread.
pub const SARCASTIC_CLOSURE_SENTIMENT: f32 = -0.25;

/// Milliseconds in a UTC day: activity is counted in distinct active days.
const DAY_MS: TimestampMs = 86_400_000;

impl EventRecord {
    /// The total order events are folded in: time, then event-id hash.
    pub fn order_key(&self) -> (TimestampMs, u64) {
        (self.occurred_at_ms, self.event_key)
    }

    /// The first field, as the API names it, in which `other` (same event id) is not the same
    /// event as this one; `None` for a true repeat. The sentiment is not compared (a model may
    /// grade the same text differently, and a refinement changes it), only whether there was text.
    pub fn differing_field(&self, other: &EventRecord) -> Option<&'static str> {
        if self.occurred_at_ms != other.occurred_at_ms {
            Some("occurred_at")
        } else if self.channel != other.channel {
            Some("channel")
        } else if self.kind != other.kind {
            Some("kind")
        } else if self.direction != other.direction {
            Some("direction")
        } else if self.value.to_bits() != other.value.to_bits() {
            Some("value")
        } else if self.thread_key != other.thread_key {
            Some("thread_id")
        } else if self.author_followers != other.author_followers {
            Some("author_followers")
        } else if self.has_sentiment != other.has_sentiment {
            Some("text")
        } else {
            None
        }
    }
}

/// An inbound message still waiting for the brand's answer (per thread, or per customer when the
/// message has no thread).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpenThread {
    /// 0 for messages without a thread.
    pub thread_key: u64,
    /// Oldest unanswered message in the thread.
    pub since_ms: TimestampMs,
    /// Most negative unanswered message's polarity (0 when none had text).
    pub worst_sentiment: f32,
    /// Largest audience among the unanswered messages.
    pub author_followers: u32,
    /// Channel and kind of the oldest unanswered message.
    pub channel: Channel,
    /// Kind of the oldest unanswered message.
    pub kind: Kind,
    /// Unanswered messages in the thread.
    pub messages: u32,
    /// [`ReplyNeed::Required`] when any unanswered message asks for an answer, else
    /// [`ReplyNeed::Unclear`] (messages that need none never open a thread).
    pub need: ReplyNeed,
    /// The brand had already answered in this thread (or, for thread-less messages, reached the
    /// customer) before: the next-response target applies instead of the first-response one.
    pub follow_up: bool,
    /// Urgency cues of the unanswered messages, all together (absent from state of formats
    /// before 5).
    #[serde(deserialize_with = "new_in_format_5")]
    pub cues: UrgencyCues,
    /// The intent of the latest unanswered message that had one (0: none; absent from state of
    /// formats before 5).
    #[serde(deserialize_with = "new_in_format_5")]
    pub intent: u16,
    /// The key of the thread's first keyed message (0: none): later copies of it, on any channel,
    /// join this thread (absent from state of formats before 6, like the fields below).
    #[serde(deserialize_with = "new_in_format_6")]
    pub text_key: u32,
    /// Copies of that message folded into the thread from other threads or channels (cross-posts
    /// and repeats; the thread's own messages are `messages`).
    #[serde(deserialize_with = "new_in_format_6")]
    pub copies: u32,
    /// The channels those copies came on, one bit per channel (`1 << channel as u8`).
    #[serde(deserialize_with = "new_in_format_6")]
    pub copy_channels: u16,
    /// When the latest copy (or the first message) came, in milliseconds since the Unix epoch.
    #[serde(deserialize_with = "new_in_format_6")]
    pub last_copy_ms: TimestampMs,
    /// The threads of the first two copies from other threads: an answer there answers this one.
    #[serde(deserialize_with = "new_in_format_6")]
    pub copy_thread_keys: [u64; 2],
    /// The thread's text came in a flood (copies without a grievance): noise, kept out of RESPOND.
    #[serde(deserialize_with = "new_in_format_6")]
    pub flood: bool,
    /// The language of the latest unanswered message that had one ([`crate::domain::language_id`];
    /// 0: none).
    #[serde(deserialize_with = "new_in_format_6")]
    pub language: u8,
}

impl OpenThread {
    /// Whether the thread waits for an answer (it is not a flood).
    pub fn waits(&self) -> bool {
        !self.flood
    }

    /// Whether an outbound message in thread `thread_key` answers this thread: its own thread, or
    /// one a copy of its message came in.
    fn answered_by(&self, thread_key: u64) -> bool {
        self.thread_key == thread_key || self.copy_thread_keys.contains(&thread_key)
    }

    /// Whether an outbound message in thread `thread_key` closes this thread: one without a
    /// thread closes every thread; one in a thread closes the threads it answers and the
    /// thread-less messages.
    pub fn closed_by(&self, thread_key: u64) -> bool {
        thread_key == 0 || self.thread_key == 0 || self.answered_by(thread_key)
    }
}

thread_local! {
    /// The format of the state being decoded ([`crate::durability::FORMAT_VERSION`] unless
    /// [`decode_state_of_format`] says otherwise).
    static STATE_FORMAT: std::cell::Cell<u32> =
        const { std::cell::Cell::new(crate::durability::FORMAT_VERSION) };
}

/// Decodes, with `decode`, state written in snapshot format `version` (2 or later): fields that
/// format lacks (urgency cues and intents before 5, text keys and noise before 6) read nothing and
/// are empty. The state encoding is positional (bincode), so such a field must be skipped, not
/// defaulted.
pub fn decode_state_of_format<T>(version: u32, decode: impl FnOnce() -> T) -> T {
    struct Restore(u32);
    impl Drop for Restore {
        fn drop(&mut self) {
            STATE_FORMAT.set(self.0);
        }
    }
    let _restore = Restore(STATE_FORMAT.replace(version));
    decode()
}

/// A field new in format `SINCE`: read as its default from state of an older format.
fn new_in_format<'de, const SINCE: u32, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    if STATE_FORMAT.get() < SINCE {
        Ok(T::default())
    } else {
        T::deserialize(deserializer)
    }
}

/// A field new in format 5 (urgency cues, intents).
fn new_in_format_5<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    new_in_format::<5, D, T>(deserializer)
}

/// A field new in format 6 (text keys, noise).
fn new_in_format_6<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    new_in_format::<6, D, T>(deserializer)
}

/// Everything scores are computed from: an in-order fold of a customer's events. Decayed sums are
/// referenced at `last_event_at_ms`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// All events, both directions.
    pub events_total: u64,
    /// Time of the latest event (either direction), in milliseconds since the Unix epoch.
    pub last_event_at_ms: TimestampMs,
    /// Inbound events: the customer's own activity.
    pub activity_total: u64,
    /// Time of the first inbound event, in milliseconds since the Unix epoch.
    pub first_activity_at_ms: TimestampMs,
    /// Time of the latest inbound event, in milliseconds since the Unix epoch.
    pub last_activity_at_ms: TimestampMs,
    /// Distinct UTC days with inbound activity (what the activity model counts).
    pub active_days: u32,
    /// Thread of the brand's latest outbound event (0: none).
    pub last_outbound_thread_key: u64,
    /// Decayed weighted inbound interactions, engagement half-life.
    pub engagement_recent: f64,
    /// The same with the long baseline half-life.
    pub engagement_baseline: f64,
    /// Decayed confidence-weighted polarity sum and weight, recent half-life.
    pub sentiment_recent_sum: f64,
    /// Decayed sum of confidences (the weight of `sentiment_recent_sum`), recent half-life.
    pub sentiment_recent_weight: f64,
    /// The same with the long half-life.
    pub sentiment_long_sum: f64,
    /// Decayed sum of confidences (the weight of `sentiment_long_sum`), long half-life.
    pub sentiment_long_weight: f64,
    /// Decayed positive inbound polarity (goodwill half-life).
    pub positive_contact: f64,
    /// Decayed purchase count (goodwill half-life).
    pub purchases_recent: f64,
    /// Purchases, all time.
    pub purchases_total: u64,
    /// Sum of all purchase values (money).
    pub lifetime_value: f64,
    /// Followers at the latest inbound event.
    pub author_followers: u32,
    /// Unanswered inbound messages, one entry per thread.
    pub open_threads: Vec<OpenThread>,
    /// The customer's most recently seen texts, at most
    /// [`crate::scoring::noise::MAX_RECENT_TEXTS`] (absent from state of formats before 6).
    #[serde(deserialize_with = "new_in_format_6")]
    pub recent_texts: Vec<crate::scoring::noise::TextBurst>,
    /// When the customer's latest flood copy came (0: never), in milliseconds since the Unix
    /// epoch: an account that floods is no advocate for a while.
    #[serde(deserialize_with = "new_in_format_6")]
    pub last_flood_ms: TimestampMs,
}

impl Summary {
    /// Folds one more event in. Events must come in [`EventRecord::order_key`] order.
    pub fn apply(&mut self, record: &EventRecord, config: &ScoringConfig) {
        let at = record.occurred_at_ms;
        if self.events_total > 0 {
            // One decay factor per half-life, shared by every sum that uses it.
            let elapsed_seconds = at.saturating_sub(self.last_event_at_ms) as f64 / 1000.0;
            let engagement = decay_factor(elapsed_seconds, config.engagement_half_life_seconds);
            let baseline = decay_factor(
                elapsed_seconds,
                config.engagement_baseline_half_life_seconds,
            );
            let recent = decay_factor(elapsed_seconds, config.sentiment_recent_half_life_seconds);
            let long = decay_factor(elapsed_seconds, config.sentiment_long_half_life_seconds);
            let goodwill = decay_factor(elapsed_seconds, config.goodwill_half_life_seconds);
            self.engagement_recent *= engagement;
            self.engagement_baseline *= baseline;
            self.sentiment_recent_sum *= recent;
            self.sentiment_recent_weight *= recent;
            self.sentiment_long_sum *= long;
            self.sentiment_long_weight *= long;
            self.positive_contact *= goodwill;
            self.purchases_recent *= goodwill;
        }
        self.events_total += 1;
        self.last_event_at_ms = at;

        match record.direction {
            Direction::Inbound => self.apply_inbound(record, config),
            Direction::Outbound => {
                self.last_outbound_thread_key = record.thread_key;
                self.apply_outbound(record)
            }
        }
    }

    fn apply_inbound(&mut self, record: &EventRecord, config: &ScoringConfig) {
        let at = record.occurred_at_ms;
        if self.activity_total == 0 {
            self.first_activity_at_ms = at;
            self.active_days = 1;
        } else if at.div_euclid(DAY_MS) != self.last_activity_at_ms.div_euclid(DAY_MS) {
            self.active_days = self.active_days.saturating_add(1);
        }
        self.activity_total += 1;
        self.last_activity_at_ms = at;
        self.author_followers = record.author_followers;

        let seen = (record.text_key != 0)
            .then(|| crate::scoring::noise::note_text(&mut self.recent_texts, record, config));
        let flood = seen.is_some_and(|seen| seen.flood);
        if flood {
            self.last_flood_ms = at;
        }

        // A flood's copies are not engagement, and what they say is not the customer's mood.
        if !flood {
            let weight = config.engagement_weight(record.kind, record.channel);
            self.engagement_recent += weight;
            self.engagement_baseline += weight;
        }
        if record.has_sentiment && !flood {
            let confidence = f64::from(record.sentiment_confidence);
            let score = f64::from(record.sentiment_score);
            self.sentiment_recent_sum += confidence * score;
            self.sentiment_recent_weight += confidence;
            self.sentiment_long_sum += confidence * score;
            self.sentiment_long_weight += confidence;
            if score > 0.0 {
                self.positive_contact += confidence * score;
            }
        }
        if record.kind == Kind::Purchase {
            self.purchases_total += 1;
            self.purchases_recent += 1.0;
            self.lifetime_value += record.value;
        }
        if record.kind.expects_reply() {
            self.open_or_join_thread(record, flood, config);
        }
    }

    /// An inbound message that expects a reply: it closes its thread ("thanks, solved"), joins
    /// its thread, joins the matter a copy of its text waits in (on another thread or channel),
    /// or opens a thread.
    fn open_or_join_thread(&mut self, record: &EventRecord, flood: bool, config: &ScoringConfig) {
        let at = record.occurred_at_ms;
        let worst = if record.has_sentiment {
            record.sentiment_score
        } else {
            0.0
        };
        let need = match record.reply_need {
            ReplyNeed::NotRequired if worst <= SARCASTIC_CLOSURE_SENTIMENT => ReplyNeed::Required,
            need => need,
        };
        let existing = self
            .open_threads
            .iter()
            .position(|open| open.thread_key == record.thread_key);
        if need == ReplyNeed::NotRequired {
            // The customer closed the conversation ("thanks, solved"): nothing to answer.
            if let Some(position) = existing {
                self.open_threads.swap_remove(position);
            }
            return;
        }
        let keyed = record.text_key != 0;
        if existing.is_none() && keyed {
            // A copy of a waiting message elsewhere: the same matter.
            let matter = self.open_threads.iter_mut().find(|open| {
                open.text_key == record.text_key
                    && crate::scoring::noise::same_matter(open.last_copy_ms, at, config)
            });
            if let Some(open) = matter {
                open.copies = open.copies.saturating_add(1);
                open.copy_channels |= crate::scoring::noise::channel_bit(record.channel);
                open.last_copy_ms = at;
                open.flood |= flood;
                if !open.copy_thread_keys.contains(&record.thread_key) {
                    if let Some(free) = open.copy_thread_keys.iter_mut().find(|key| **key == 0) {
                        *free = record.thread_key;
                    }
                }
                return;
            }
        }
        if self.open_threads.capacity() == 0 {
            // Usually one open thread: room for exactly one (a plain push reserves four).
            self.open_threads.reserve_exact(1);
        }
        match existing {
            Some(position) => {
                let open = &mut self.open_threads[position];
                open.messages += 1;
                open.worst_sentiment = open.worst_sentiment.min(worst);
                open.author_followers = open.author_followers.max(record.author_followers);
                open.cues = open.cues.union(record.urgency_cues);
                if record.intent != 0 {
                    open.intent = record.intent;
                }
                if record.language != 0 {
                    open.language = record.language;
                }
                if need == ReplyNeed::Required {
                    open.need = ReplyNeed::Required;
                }
                if keyed && open.text_key == record.text_key {
                    open.last_copy_ms = at;
                    open.flood |= flood;
                } else {
                    // Another message in the thread: it waits unless it is a flood's copy itself.
                    open.flood = flood;
                    if keyed && open.text_key == 0 {
                        open.text_key = record.text_key;
                        open.last_copy_ms = at;
                    }
                }
            }
            None => self.open_threads.push(OpenThread {
                thread_key: record.thread_key,
                since_ms: at,
                worst_sentiment: worst,
                author_followers: record.author_followers,
                channel: record.channel,
                kind: record.kind,
                messages: 1,
                need,
                // Outbound events so far: every event folded but the inbound ones.
                follow_up: self.events_total > self.activity_total
                    && (record.thread_key == 0
                        || record.thread_key == self.last_outbound_thread_key),
                cues: record.urgency_cues,
                intent: record.intent,
                text_key: record.text_key,
                copies: 0,
                copy_channels: 0,
                last_copy_ms: at,
                copy_thread_keys: [0; 2],
                flood,
                language: record.language,
            }),
        }
    }

    /// An outbound event answers its thread; one without a thread reaches the customer directly
    /// and answers everything open.
    fn apply_outbound(&mut self, record: &EventRecord) {
        self.open_threads
            .retain(|open| !open.closed_by(record.thread_key));
    }
}

/// Result of adding an event to a history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The event was added and the summary updated.
    Inserted,
    /// An event with the same id was already there; nothing changed.
    Duplicate,
    /// An event with the same id but a different payload was already there (this field differs);
    /// nothing changed: a repeat must be the same event.
    Conflict {
        /// The first differing field, as the API names it.
        field: &'static str,
    },
    /// The event sorts before the events the history still keeps (it holds more than
    /// `max_events_per_customer` and folded the oldest away); nothing changed.
    BeforeRetained,
}

/// Result of replacing an event's sentiment with a refined one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefineOutcome {
    /// The record now carries the refined sentiment and the fold was redone.
    Refined,
    /// The record already carried exactly this sentiment; nothing changed.
    Unchanged,
    /// No kept record has this event id with text (never applied, or compacted into the base).
    NotFound,
}

/// A customer's events sorted by [`EventRecord::order_key`], with their fold.
///
/// At most `max_events_per_customer` records are kept: beyond it the oldest quarter is folded into
/// a base summary and dropped. The fold is a left fold, so the summary is bit-identical to folding
/// every event; what is lost is the ability to insert before the base (such events are refused
/// with [`InsertOutcome::BeforeRetained`], so a replayed old event is never counted twice) and to
/// evaluate as of a moment before it.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(from = "HistoryWire")]
pub struct CustomerHistory {
    records: Vec<EventRecord>,
    summary: Summary,
    base: Option<Box<FoldedBase>>,
    /// The timeline's strings and snippets (the records hold their indexes); `None` while empty.
    notes: Option<Box<Notes>>,
}

/// A history as state snapshots (format 3) hold it: the notes with their own list of (event,
/// thread, agent), which in memory lives in the records' [`NoteIds`].
#[derive(serde::Deserialize)]
struct HistoryWire {
    records: Vec<EventRecord>,
    summary: Summary,
    base: Option<Box<FoldedBase>>,
    notes: Option<Box<NotesWire>>,
}

impl From<HistoryWire> for CustomerHistory {
    fn from(wire: HistoryWire) -> Self {
        let mut records = wire.records;
        let notes = wire.notes.map(|wire| {
            let at: std::collections::HashMap<u64, usize> = records
                .iter()
                .enumerate()
                .map(|(index, record)| (record.event_key, index))
                .collect();
            let (notes, listed) = Notes::from_wire(*wire);
            for (event_key, ids) in listed {
                if let Some(index) = at.get(&event_key) {
                    records[*index].note = ids;
                }
            }
            Box::new(notes)
        });
        Self {
            records,
            summary: wire.summary,
            base: wire.base,
            notes,
        }
    }
}

impl serde::Serialize for CustomerHistory {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut history = serializer.serialize_struct("CustomerHistory", 4)?;
        history.serialize_field("records", &self.records)?;
        history.serialize_field("summary", &self.summary)?;
        history.serialize_field("base", &self.base)?;
        let notes = self.notes.as_deref().map(|notes| notes.wire(&self.records));
        history.serialize_field("notes", &notes)?;
        history.end()
    }
}

/// A history as state snapshots of format 2 hold it (before timeline notes).
#[derive(serde::Deserialize)]
pub struct CustomerHistoryV2 {
    records: Vec<EventRecord>,
    summary: Summary,
    base: Option<Box<FoldedBase>>,
}

impl From<CustomerHistoryV2> for CustomerHistory {
    fn from(old: CustomerHistoryV2) -> Self {
        Self {
            records: old.records,
            summary: old.summary,
            base: old.base,
            notes: None,
        }
    }
}

/// The fold of the records compacted out of a history.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct FoldedBase {
    summary: Summary,
    /// Order key of the last folded record: nothing at or before it can be inserted.
    last_key: (TimestampMs, u64),
}

impl CustomerHistory {
    /// Adds an event. In-order events extend the fold; a late one re-folds from the sorted records,
    /// which gives exactly the summary an in-order arrival would have.
    pub fn insert(&mut self, record: EventRecord, config: &ScoringConfig) -> InsertOutcome {
        let key = record.order_key();
        if self.base.as_ref().is_some_and(|base| key <= base.last_key) {
            return InsertOutcome::BeforeRetained;
        }
        if let Some(known) = self
            .records
            .iter()
            .find(|r| r.event_key == record.event_key)
        {
            return match known.differing_field(&record) {
                None => InsertOutcome::Duplicate,
                Some(field) => InsertOutcome::Conflict { field },
            };
        }
        if self.records.capacity() == 0 {
            // Most customers have one event: room for exactly one (a plain push reserves four).
            self.records.reserve_exact(1);
        }
        let position = self.records.partition_point(|r| r.order_key() < key);
        if position == self.records.len() {
            self.records.push(record);
            self.summary.apply(&record, config);
        } else {
            self.records.insert(position, record);
            self.summary = self.fold_records(self.records.len(), config);
        }
        if self.records.len() > config.max_events_per_customer {
            self.compact(config);
        }
        InsertOutcome::Inserted
    }

    /// Replaces the sentiment of the event keyed `event_key` (a slower backend's later answer)
    /// and re-folds, so the summary is exactly the one the event would have given had it carried
    /// this sentiment from the start.
    pub fn refine_sentiment(
        &mut self,
        event_key: u64,
        sentiment_score: f32,
        sentiment_confidence: f32,
        config: &ScoringConfig,
    ) -> RefineOutcome {
        let Some(record) = self
            .records
            .iter_mut()
            .find(|r| r.event_key == event_key && r.has_sentiment)
        else {
            return RefineOutcome::NotFound;
        };
        if record.sentiment_score.to_bits() == sentiment_score.to_bits()
            && record.sentiment_confidence.to_bits() == sentiment_confidence.to_bits()
        {
            return RefineOutcome::Unchanged;
        }
        record.sentiment_score = sentiment_score;
        record.sentiment_confidence = sentiment_confidence;
        self.summary = self.fold_records(self.records.len(), config);
        RefineOutcome::Refined
    }

    /// Folds the oldest quarter of the kept records into the base and drops them.
    fn compact(&mut self, config: &ScoringConfig) {
        let folded = (config.max_events_per_customer / 4).clamp(1, self.records.len());
        let summary = self.fold_records(folded, config);
        let last_key = self.records[folded - 1].order_key();
        self.records.drain(..folded);
        self.base = Some(Box::new(FoldedBase { summary, last_key }));
        if let Some(notes) = self.notes.as_mut() {
            let kept: std::collections::HashSet<u64> =
                self.records.iter().map(|r| r.event_key).collect();
            notes.retain_snippets(|key| kept.contains(&key));
        }
    }

    /// Rewrites the intent ids of the records and open threads through `translation` (index: old
    /// id; an id beyond it becomes 0): a history restored under another table of intent names.
    pub fn translate_intents(&mut self, translation: &[u16]) {
        let to = |id: u16| translation.get(usize::from(id)).copied().unwrap_or(0);
        for record in &mut self.records {
            record.intent = to(record.intent);
        }
        let summaries = std::iter::once(&mut self.summary)
            .chain(self.base.as_deref_mut().map(|base| &mut base.summary));
        for summary in summaries {
            for open in &mut summary.open_threads {
                open.intent = to(open.intent);
            }
        }
    }

    /// Notes an inserted event's thread id, agent and snippet for the timeline.
    pub fn note(
        &mut self,
        order: (TimestampMs, u64),
        thread_id: &str,
        agent_id: &str,
        snippet: Option<&str>,
        limits: &TimelineLimits,
    ) {
        if thread_id.is_empty() && agent_id.is_empty() && snippet.is_none() {
            return;
        }
        let notes = self.notes.get_or_insert_with(Box::default);
        if !thread_id.is_empty() || !agent_id.is_empty() {
            let at = self.records.partition_point(|r| r.order_key() < order);
            if let Some(record) = self.records.get_mut(at).filter(|r| r.order_key() == order) {
                record.note = notes.intern(thread_id, agent_id);
            }
        }
        if let Some(snippet) = snippet {
            notes.add_snippet(order, snippet, limits);
        }
    }

    /// Walks the kept events in order and hands over each answer: an outbound event with every
    /// thread waiting for an answer that it closes, as the fold stood just before it (floods
    /// left out). Answers folded into the base before the kept events are not seen.
    pub fn for_each_answer(
        &self,
        config: &ScoringConfig,
        mut visit: impl FnMut(&EventRecord, &OpenThread),
    ) {
        let mut summary = self
            .base
            .as_ref()
            .map(|base| base.summary.clone())
            .unwrap_or_default();
        for record in &self.records {
            if record.direction == Direction::Outbound {
                for open in &summary.open_threads {
                    if open.waits() && open.closed_by(record.thread_key) {
                        visit(record, open);
                    }
                }
            }
            summary.apply(record, config);
        }
    }

    /// The id of thread `thread_key` as the latest kept event of it said (`None`: the key is 0,
    /// or no kept event of the thread noted its id).
    pub fn thread_id_of(&self, thread_key: u64) -> Option<&str> {
        let notes = self.notes.as_deref()?;
        if thread_key == 0 {
            return None;
        }
        self.records
            .iter()
            .rev()
            .filter(|record| record.thread_key == thread_key)
            .map(|record| notes.view(record).thread_id)
            .find(|thread_id| !thread_id.is_empty())
    }

    /// The most recent touchpoints, newest first, strictly before `before` (a page's end:
    /// occurred at, event key), at most `limit`; "unanswered" as the fold stands now.
    pub fn touchpoints(&self, before: Option<(TimestampMs, u64)>, limit: usize) -> Vec<Touchpoint> {
        let notes = self.notes.as_deref();
        let end = before.map_or(self.records.len(), |before| {
            self.records.partition_point(|r| r.order_key() < before)
        });
        self.records[..end]
            .iter()
            .rev()
            .take(limit)
            .map(|record| {
                let note = notes.map(|notes| notes.view(record)).unwrap_or_default();
                // Only a message that asks for an answer waits for one: a purchase or a page
                // view in the same (thread-less) conversation does not.
                let unanswered = record.direction == Direction::Inbound
                    && record.kind.expects_reply()
                    && record.reply_need != ReplyNeed::NotRequired
                    && self.summary.open_threads.iter().any(|open| {
                        open.thread_key == record.thread_key
                            && record.occurred_at_ms >= open.since_ms
                    });
                Touchpoint {
                    occurred_at_ms: record.occurred_at_ms,
                    event_key: record.event_key,
                    channel: record.channel,
                    kind: record.kind,
                    direction: record.direction,
                    thread_id: note.thread_id.to_string(),
                    agent_id: note.agent_id.to_string(),
                    sentiment: record
                        .has_sentiment
                        .then_some((record.sentiment_score, record.sentiment_confidence)),
                    unanswered,
                    snippet: crate::scoring::timeline::printable(note.snippet),
                    value: record.value,
                    urgency_cues: record.urgency_cues,
                    intent: record.intent,
                }
            })
            .collect()
    }

    /// The base's fold continued over the first `count` kept records.
    fn fold_records(&self, count: usize, config: &ScoringConfig) -> Summary {
        let mut summary = self
            .base
            .as_ref()
            .map_or_else(Summary::default, |base| base.summary.clone());
        for record in &self.records[..count] {
            summary.apply(record, config);
        }
        summary
    }

    /// The fold of every event.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The fold of the events at or before `as_of_ms`; `None` when there are none, or when
    /// `as_of_ms` is before the kept records (compacted away: see [`CustomerHistory`]).
    pub fn summary_as_of(
        &self,
        as_of_ms: TimestampMs,
        config: &ScoringConfig,
    ) -> Option<Cow<'_, Summary>> {
        if self.summary.events_total == 0 {
            return None;
        }
        if as_of_ms >= self.summary.last_event_at_ms {
            return Some(Cow::Borrowed(&self.summary));
        }
        if self
            .base
            .as_ref()
            .is_some_and(|base| as_of_ms < base.last_key.0)
        {
            return None;
        }
        let visible = self
            .records
            .partition_point(|r| r.occurred_at_ms <= as_of_ms);
        if visible == 0 && self.base.is_none() {
            return None;
        }
        Some(Cow::Owned(self.fold_records(visible, config)))
    }

    /// The records, in fold order.
    pub fn records(&self) -> &[EventRecord] {
        &self.records
    }

    /// Whether the oldest events were folded away (beyond `max_events_per_customer`): such a
    /// history cannot be merged with another exactly.
    pub fn has_folded(&self) -> bool {
        self.base.is_some()
    }

    /// Takes in another customer's events (a merge of two customers known to be one person):
    /// the fold of the union, exactly as if one customer had had every event from the start. An
    /// event id in both is counted once (this history's copy is kept). Exact when
    /// neither history [`CustomerHistory::has_folded`]; otherwise events before the folded base
    /// are lost.
    pub fn absorb(
        &mut self,
        other: &CustomerHistory,
        config: &ScoringConfig,
        limits: &TimelineLimits,
    ) {
        let known: std::collections::HashSet<u64> =
            self.records.iter().map(|r| r.event_key).collect();
        let before = self.records.len();
        let theirs = other.notes.as_deref();
        let mine = theirs.map(|_| self.notes.get_or_insert_with(Box::default));
        let mut mine = mine;
        let base = self.base.as_ref().map(|base| base.last_key);
        let taken: Vec<EventRecord> = other
            .records
            .iter()
            .filter(|r| !known.contains(&r.event_key))
            .filter(|r| base.is_none_or(|last_key| r.order_key() > last_key))
            .map(|record| {
                let mut record = *record;
                // Their indexes name their strings: the same strings, interned here.
                if let (Some(theirs), Some(mine)) = (theirs, mine.as_deref_mut()) {
                    record.note = mine.adopt(theirs, record.note);
                }
                record
            })
            .collect();
        self.records.extend(taken);
        if let (Some(theirs), Some(mine)) = (theirs, mine) {
            mine.absorb_snippets(theirs, limits);
        }
        if self.records.len() == before {
            return;
        }
        self.records.sort_by_key(EventRecord::order_key);
        self.summary = self.fold_records(self.records.len(), config);
        while self.records.len() > config.max_events_per_customer {
            self.compact(config);
        }
    }
}
