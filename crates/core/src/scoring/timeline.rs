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

/// One event's note: 32 bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Note {
    event_key: u64,
    /// Index into [`Notes::threads`], or `NONE`.
    thread: u16,
    /// Index into [`Notes::agents`], or `NONE`.
    agent: u16,
    snippet: Option<Box<str>>,
}

/// A customer's notes, by event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Notes {
    threads: Vec<Box<str>>,
    agents: Vec<Box<str>>,
    notes: Vec<Note>,
}

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
    /// Notes an event (nothing when it has no thread, agent or snippet). With more snippets
    /// than `limits` keep, the one of the oldest event (by `order`, the event's place in the
    /// history) loses its text.
    pub fn add(
        &mut self,
        event_key: u64,
        thread_id: &str,
        agent_id: &str,
        snippet: Option<&str>,
        limits: &TimelineLimits,
        order: impl Fn(u64) -> Option<(TimestampMs, u64)>,
    ) {
        if thread_id.is_empty() && agent_id.is_empty() && snippet.is_none() {
            return;
        }
        let note = Note {
            event_key,
            thread: intern(&mut self.threads, thread_id),
            agent: intern(&mut self.agents, agent_id),
            snippet: snippet.map(Box::from),
        };
        match self.notes.iter_mut().find(|n| n.event_key == event_key) {
            Some(existing) => *existing = note,
            None => self.notes.push(note),
        }
        let with_text = self.notes.iter().filter(|n| n.snippet.is_some()).count();
        if with_text > limits.snippets_per_customer {
            let oldest = self
                .notes
                .iter_mut()
                .filter(|n| n.snippet.is_some())
                .min_by_key(|n| order(n.event_key).unwrap_or((TimestampMs::MIN, 0)));
            if let Some(oldest) = oldest {
                oldest.snippet = None;
            }
        }
    }

    /// Drops the notes of events no longer kept.
    pub fn retain(&mut self, kept: impl Fn(u64) -> bool) {
        self.notes.retain(|note| kept(note.event_key));
    }

    /// Takes in another customer's notes (a merge); a note of an event already noted is skipped.
    pub fn absorb(&mut self, other: &Notes) {
        for note in &other.notes {
            if self.notes.iter().any(|n| n.event_key == note.event_key) {
                continue;
            }
            let thread = other
                .threads
                .get(usize::from(note.thread))
                .map_or("", |s| &**s);
            let agent = other
                .agents
                .get(usize::from(note.agent))
                .map_or("", |s| &**s);
            let note = Note {
                event_key: note.event_key,
                thread: intern(&mut self.threads, thread),
                agent: intern(&mut self.agents, agent),
                snippet: note.snippet.clone(),
            };
            self.notes.push(note);
        }
    }

    /// The notes by event key, for reading a page.
    pub fn by_event(&self) -> HashMap<u64, NoteView<'_>> {
        self.notes
            .iter()
            .map(|note| {
                let view = NoteView {
                    thread_id: self
                        .threads
                        .get(usize::from(note.thread))
                        .map_or("", |s| &**s),
                    agent_id: self
                        .agents
                        .get(usize::from(note.agent))
                        .map_or("", |s| &**s),
                    snippet: note.snippet.as_deref().unwrap_or(""),
                };
                (note.event_key, view)
            })
            .collect()
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
    fn a_note_costs_32_bytes_and_snippets_are_cut_at_characters() {
        assert_eq!(std::mem::size_of::<Note>(), 32);
        // A touchpoint: the event kept for scoring, plus this note when it has a thread, an
        // agent or a snippet (BENCHMARKS.md, "Timeline").
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
        let order = |key: u64| Some((key as i64, key));
        for key in [3u64, 1, 2] {
            notes.add(key, "t1", "", Some("text"), &limits, order);
        }
        let kept: Vec<u64> = notes
            .notes
            .iter()
            .filter(|n| n.snippet.is_some())
            .map(|n| n.event_key)
            .collect();
        assert_eq!(kept, [3, 2], "the oldest event's snippet goes");
        assert_eq!(notes.threads.len(), 1, "interned");
    }
}
