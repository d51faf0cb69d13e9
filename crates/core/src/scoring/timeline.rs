//! What a customer's timeline shows beyond the scored events: each touchpoint's thread id, who
//! answered (an outbound event's agent), and a bounded text snippet. Kept compactly: strings
//! interned per customer, each event's two indexes in its record's padding (the record stays 56
//! bytes), snippets of the most recent events beside the history.

use crate::domain::{Channel, Direction, Kind, TimestampMs};
use serde::{Deserialize, Serialize};

/// How much text a timeline keeps (the `[timeline]` config table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimelineLimits {
    /// Longest snippet kept per touchpoint, in bytes (cut at a character boundary; 0 keeps none).
    pub snippet_bytes: usize,
    /// Snippets kept per customer: those of its most recent events (0 keeps none).
    pub snippets_per_customer: usize,
}

impl Default for TimelineLimits {
    fn default() -> Self {
        Self {
            snippet_bytes: 280,
            snippets_per_customer: 50,
        }
    }
}

impl TimelineLimits {
    /// The snippet kept of `text` (`None` when texts are not kept or it is empty).
    pub fn snippet<'a>(&self, text: &'a str) -> Option<&'a str> {
        if self.snippet_bytes == 0 || self.snippets_per_customer == 0 || text.is_empty() {
            return None;
        }
        Some(crate::domain::prefix_at_char_boundary(
            text,
            self.snippet_bytes,
        ))
    }
}

/// A snippet as a timeline shows it: each control character (newlines, escapes, NUL) replaced by
/// a space, so a snippet cannot drive a terminal or break a one-line view.
pub fn printable(snippet: &str) -> String {
    snippet
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// No interned string (an index that names none).
const NONE: u16 = u16::MAX;

/// An event's thread and agent ids as indexes into its customer's [`Notes`] (kept in the
/// event's record, in its padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoteIds {
    /// The thread id's index, or none.
    thread: u16,
    /// The agent id's index, or none.
    agent: u16,
}

impl Default for NoteIds {
    fn default() -> Self {
        Self {
            thread: NONE,
            agent: NONE,
        }
    }
}

/// One event's note as state snapshots list it (format 3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Note {
    event_key: u64,
    /// Index into [`Notes::strings`] of the thread id, or `NONE`.
    thread: u16,
    /// Index into [`Notes::strings`] of the agent id, or `NONE`.
    agent: u16,
}

/// A kept snippet, with its event's place in the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Snippet {
    order: (TimestampMs, u64),
    text: Box<str>,
}

/// A customer's interned thread and agent ids (its records hold the indexes) and the snippets
/// of its most recent events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Notes {
    /// Thread and agent ids, each once.
    strings: Vec<Box<str>>,
    /// Sorted by `order`, at most `snippets_per_customer`: the oldest goes first.
    snippets: Vec<Snippet>,
}

/// [`Notes`] as state snapshots hold them: with the list of which event has which ids.
#[derive(Deserialize)]
pub struct NotesWire {
    strings: Vec<Box<str>>,
    notes: Vec<Note>,
    snippets: Vec<Snippet>,
}

/// [`NotesWire`] written from a history's notes and records, without copying the strings.
#[derive(Serialize)]
pub struct NotesWireRef<'a> {
    strings: &'a [Box<str>],
    notes: Vec<Note>,
    snippets: &'a [Snippet],
}

/// The index of `value` in `strings`, added if new (`NONE` for "" or a full table).
fn intern(strings: &mut Vec<Box<str>>, value: &str) -> u16 {
    if value.is_empty() {
        return NONE;
    }
    if let Some(at) = strings.iter().position(|s| &**s == value) {
        return at as u16;
    }
    if strings.len() >= usize::from(NONE) {
        return NONE;
    }
    if strings.capacity() == 0 {
        // Most customers have one thread: room for exactly one (a plain push reserves four).
        strings.reserve_exact(1);
    }
    strings.push(Box::from(value));
    (strings.len() - 1) as u16
}

/// What a note says of an event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NoteView<'a> {
    /// The event's thread id ("" when none).
    pub thread_id: &'a str,
    /// Who answered (outbound events; "" when not said).
    pub agent_id: &'a str,
    /// The kept snippet ("" when none).
    pub snippet: &'a str,
}

impl Notes {
    /// The indexes of an event's thread and agent ids, interned.
    pub fn intern(&mut self, thread_id: &str, agent_id: &str) -> NoteIds {
        NoteIds {
            thread: intern(&mut self.strings, thread_id),
            agent: intern(&mut self.strings, agent_id),
        }
    }

    /// Keeps the snippet of the event at `order` (its place in the history). Beyond
    /// `limits.snippets_per_customer` snippets, the oldest event's goes: O(snippets) per event,
    /// never a scan of the history.
    pub fn add_snippet(&mut self, order: (TimestampMs, u64), text: &str, limits: &TimelineLimits) {
        let at = self.snippets.partition_point(|s| s.order < order);
        let snippet = Snippet {
            order,
            text: Box::from(text),
        };
        self.snippets.insert(at, snippet);
        if self.snippets.len() > limits.snippets_per_customer {
            self.snippets.remove(0);
        }
    }

    /// An interned string ("" for `NONE`).
    fn string(&self, index: u16) -> &str {
        self.strings.get(usize::from(index)).map_or("", |s| &**s)
    }

    /// Drops the snippets of events no longer kept.
    pub fn retain_snippets(&mut self, kept: impl Fn(u64) -> bool) {
        self.snippets.retain(|snippet| kept(snippet.order.1));
    }

    /// `ids` of another customer's notes (a merge), as indexes into these.
    pub fn adopt(&mut self, other: &Notes, ids: NoteIds) -> NoteIds {
        self.intern(other.string(ids.thread), other.string(ids.agent))
    }

    /// Takes in another customer's snippets (a merge); the snippets kept are still the `limits`
    /// most recent.
    pub fn absorb_snippets(&mut self, other: &Notes, limits: &TimelineLimits) {
        for snippet in &other.snippets {
            if !self.snippets.iter().any(|s| s.order == snippet.order) {
                let at = self.snippets.partition_point(|s| s.order < snippet.order);
                self.snippets.insert(at, snippet.clone());
            }
        }
        let excess = self
            .snippets
            .len()
            .saturating_sub(limits.snippets_per_customer);
        self.snippets.drain(..excess);
    }

    /// What the notes say of one of the customer's events.
    pub fn view(&self, record: &crate::scoring::EventRecord) -> NoteView<'_> {
        let order = record.order_key();
        let snippet = self
            .snippets
            .binary_search_by(|s| s.order.cmp(&order))
            .map_or("", |at| &*self.snippets[at].text);
        NoteView {
            thread_id: self.string(record.note.thread),
            agent_id: self.string(record.note.agent),
            snippet,
        }
    }

    /// The notes as state snapshots hold them, with the list built from `records`.
    pub fn wire<'a>(&'a self, records: &[crate::scoring::EventRecord]) -> NotesWireRef<'a> {
        NotesWireRef {
            strings: &self.strings,
            notes: records
                .iter()
                .filter(|record| record.note != NoteIds::default())
                .map(|record| Note {
                    event_key: record.event_key,
                    thread: record.note.thread,
                    agent: record.note.agent,
                })
                .collect(),
            snippets: &self.snippets,
        }
    }

    /// Notes read from a state snapshot, with which event has which ids.
    pub fn from_wire(wire: NotesWire) -> (Notes, Vec<(u64, NoteIds)>) {
        let listed = wire
            .notes
            .into_iter()
            .map(|note| {
                let ids = NoteIds {
                    thread: note.thread,
                    agent: note.agent,
                };
                (note.event_key, ids)
            })
            .collect();
        let notes = Notes {
            strings: wire.strings,
            snippets: wire.snippets,
        };
        (notes, listed)
    }
}

/// One touchpoint of a customer's timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Touchpoint {
    /// When it happened.
    pub occurred_at_ms: TimestampMs,
    /// Its place in the history (with `occurred_at_ms`): where a page ends.
    pub event_key: u64,
    /// Where.
    pub channel: Channel,
    /// What.
    pub kind: Kind,
    /// Who spoke.
    pub direction: Direction,
    /// The thread id ("" when none).
    pub thread_id: String,
    /// Who answered, for outbound events when the sender said ("" otherwise).
    pub agent_id: String,
    /// Polarity and confidence, when the event had text.
    pub sentiment: Option<(f32, f32)>,
    /// An inbound message still waiting for an answer.
    pub unanswered: bool,
    /// The kept snippet of its text ("" when none is kept).
    pub snippet: String,
    /// Money, for purchases.
    pub value: f64,
    /// Urgency cues of an inbound text.
    pub urgency_cues: crate::domain::UrgencyCues,
    /// The intent an inbound text was read as (an id in the tenant's table of intent names; 0:
    /// none).
    pub intent: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_touchpoint_costs_its_64_byte_record_and_the_most_recent_snippets_are_kept() {
        // A touchpoint is the event kept for scoring, whose padding holds its note
        // (BENCHMARKS.md, "Timeline").
        assert_eq!(std::mem::size_of::<crate::scoring::EventRecord>(), 64);
        assert_eq!(std::mem::size_of::<NoteIds>(), 4);
        let limits = TimelineLimits {
            snippet_bytes: 5,
            snippets_per_customer: 2,
        };
        assert_eq!(limits.snippet("héllo wörld"), Some("héll"));
        assert_eq!(
            TimelineLimits {
                snippet_bytes: 0,
                ..limits
            }
            .snippet("x"),
            None
        );
        let mut notes = Notes::default();
        for key in [3u64, 1, 2] {
            notes.add_snippet((key as i64, key), "text", &limits);
            assert_eq!(notes.intern("t1", ""), notes.intern("t1", ""));
        }
        let kept: Vec<u64> = notes.snippets.iter().map(|s| s.order.1).collect();
        assert_eq!(kept, [2, 3], "the oldest event's snippet goes");
        assert_eq!(notes.strings.len(), 1, "interned");
    }

    fn record(at_ms: i64, event_key: u64, inbound: bool) -> crate::scoring::EventRecord {
        crate::scoring::EventRecord {
            occurred_at_ms: at_ms,
            event_key,
            thread_key: 7,
            value: 0.0,
            author_followers: 0,
            sentiment_score: 0.0,
            sentiment_confidence: 0.0,
            channel: Channel::Email,
            kind: Kind::Message,
            direction: if inbound {
                Direction::Inbound
            } else {
                Direction::Outbound
            },
            has_sentiment: false,
            reply_need: crate::domain::ReplyNeed::Unclear,
            urgency_cues: Default::default(),
            intent: 0,
            text_key: 0,
            language: 0,
            note: NoteIds::default(),
        }
    }

    /// Thread and agent ids live in the records: they survive a merge (re-interned) and a state
    /// snapshot's encoding, which keeps format 3's list of notes.
    #[test]
    fn notes_survive_merges_and_snapshots() {
        let config = crate::config::ScoringConfig::default();
        let limits = TimelineLimits::default();
        let mut ann = crate::scoring::CustomerHistory::default();
        ann.insert(record(1_000, 1, true), &config);
        ann.note((1_000, 1), "mail-1", "", Some("where is it"), &limits);
        let mut other = crate::scoring::CustomerHistory::default();
        other.insert(record(2_000, 2, false), &config);
        other.note((2_000, 2), "", "agent-kim", None, &limits);
        other.insert(record(3_000, 3, true), &config);
        other.note((3_000, 3), "tw-9", "", Some("hello"), &limits);
        ann.absorb(&other, &config, &limits);
        let seen = |history: &crate::scoring::CustomerHistory| {
            history
                .touchpoints(None, 10)
                .into_iter()
                .map(|t| (t.event_key, t.thread_id, t.agent_id, t.snippet))
                .collect::<Vec<_>>()
        };
        let expected = vec![
            (3, "tw-9".to_string(), String::new(), "hello".to_string()),
            (2, String::new(), "agent-kim".to_string(), String::new()),
            (
                1,
                "mail-1".to_string(),
                String::new(),
                "where is it".to_string(),
            ),
        ];
        assert_eq!(seen(&ann), expected);
        let bytes = bincode::serialize(&ann).unwrap();
        let back: crate::scoring::CustomerHistory = bincode::deserialize(&bytes).unwrap();
        assert_eq!(seen(&back), expected);
    }
}
