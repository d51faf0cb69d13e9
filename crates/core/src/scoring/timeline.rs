//! What a customer's timeline shows beyond the scored events: each touchpoint's thread id, who
//! answered (an outbound event's agent), and a bounded text snippet. Kept beside the events
//! (`CustomerHistory`), compactly: strings interned per customer, one 32-byte note per event that
//! has any of them.

use crate::domain::{Channel, Direction, Kind, TimestampMs};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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
        let mut end = text.len().min(self.snippet_bytes);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Some(&text[..end])
    }
}

/// No interned string (an index that names none).
const NONE: u16 = u16::MAX;

/// One event's note: 16 bytes.
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

/// A customer's notes, by event, and the snippets of its most recent events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Notes {
    /// Thread and agent ids, each once.
    strings: Vec<Box<str>>,
    notes: Vec<Note>,
    /// Sorted by `order`, at most `snippets_per_customer`: the oldest goes first.
    snippets: Vec<Snippet>,
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
    /// Notes a new event at `order` (its place in the history; nothing when it has no thread,
    /// agent or snippet). Beyond `limits.snippets_per_customer` snippets, the oldest event's goes:
    /// O(snippets) per event, never a scan of the history.
    pub fn add(
        &mut self,
        order: (TimestampMs, u64),
        thread_id: &str,
        agent_id: &str,
        snippet: Option<&str>,
        limits: &TimelineLimits,
    ) {
        if !thread_id.is_empty() || !agent_id.is_empty() {
            if self.notes.capacity() == 0 {
                self.notes.reserve_exact(1);
            }
            let note = Note {
                event_key: order.1,
                thread: intern(&mut self.strings, thread_id),
                agent: intern(&mut self.strings, agent_id),
            };
            self.notes.push(note);
        }
        if let Some(text) = snippet {
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
    }

    /// An interned string ("" for `NONE`).
    fn string(&self, index: u16) -> &str {
        self.strings.get(usize::from(index)).map_or("", |s| &**s)
    }

    /// Drops the notes and snippets of events no longer kept.
    pub fn retain(&mut self, kept: impl Fn(u64) -> bool) {
        self.notes.retain(|note| kept(note.event_key));
        self.snippets.retain(|snippet| kept(snippet.order.1));
    }

    /// Takes in another customer's notes (a merge); what this one noted of an event wins, and
    /// the snippets kept are still the `limits` most recent.
    pub fn absorb(&mut self, other: &Notes, limits: &TimelineLimits) {
        for note in &other.notes {
            if self.notes.iter().any(|n| n.event_key == note.event_key) {
                continue;
            }
            let note = Note {
                event_key: note.event_key,
                thread: intern(&mut self.strings, other.string(note.thread)),
                agent: intern(&mut self.strings, other.string(note.agent)),
            };
            self.notes.push(note);
        }
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

    /// The notes by event key, for reading a page.
    pub fn by_event(&self) -> HashMap<u64, NoteView<'_>> {
        let mut views: HashMap<u64, NoteView<'_>> = self
            .notes
            .iter()
            .map(|note| {
                let view = NoteView {
                    thread_id: self.string(note.thread),
                    agent_id: self.string(note.agent),
                    snippet: "",
                };
                (note.event_key, view)
            })
            .collect();
        for snippet in &self.snippets {
            views.entry(snippet.order.1).or_default().snippet = &snippet.text;
        }
        views
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_costs_16_bytes_and_the_most_recent_snippets_are_kept() {
        assert_eq!(std::mem::size_of::<Note>(), 16);
        // A touchpoint: the event kept for scoring, plus this note when it has a thread or an
        // agent (BENCHMARKS.md, "Timeline").
        assert_eq!(std::mem::size_of::<crate::scoring::EventRecord>(), 56);
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
            notes.add((key as i64, key), "t1", "", Some("text"), &limits);
        }
        let kept: Vec<u64> = notes.snippets.iter().map(|s| s.order.1).collect();
        assert_eq!(kept, [2, 3], "the oldest event's snippet goes");
        assert_eq!(notes.strings.len(), 1, "interned");
        assert_eq!(notes.by_event()[&3].snippet, "text");
        assert_eq!(notes.by_event()[&1].snippet, "");
    }
}
