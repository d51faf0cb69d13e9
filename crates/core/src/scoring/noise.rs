//! Noise: the same text again. A text's key identifies it across channels and small edits (case,
//! mentions, links, digits, punctuation); the fold keeps each customer's recent texts, so that a
//! copy of a waiting message joins its matter instead of opening another (a cross-post is one
//! matter, not three) and a burst of copies that carries no grievance (a promotional or bot-like
//! flood) is kept out of the RESPOND band. docs/scoring.md ("Noise") has the rules.

use crate::config::ScoringConfig;
use crate::domain::{Channel, TimestampMs};
use crate::scoring::history::{EventRecord, SARCASTIC_CLOSURE_SENTIMENT};

/// Texts with fewer letters than this (after mentions, links, digits and punctuation are taken
/// out) get no key: "hello??" sent five times is a customer asking again, not a flood.
pub const MIN_KEYED_LETTERS: usize = 20;

/// Recent texts kept per customer (the most recently seen ones).
pub const MAX_RECENT_TEXTS: usize = 8;

thread_local! {
    /// The cleaned text of the last call, reused so that keying allocates nothing per call.
    static CLEANED: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The key of a text: a 32-bit FNV-1a hash of its lowercased letters, read past `@mentions`,
/// links, `RT`, digits, punctuation and emoji; 0 (no key) for texts with fewer than
/// [`MIN_KEYED_LETTERS`] letters. The same words in another case, with other handles, links or
/// numbers have the same key.
pub fn text_key(text: &str) -> u32 {
    CLEANED.with(|cleaned| {
        let mut cleaned = cleaned.borrow_mut();
        crate::sentiment::language::clean_for_detection(text, &mut cleaned);
        let mut hash: u32 = 0x811c_9dc5;
        let mut letters = 0usize;
        let mut pending_space = false;
        for c in cleaned.chars() {
            if c.is_alphabetic() {
                if pending_space && letters > 0 {
                    hash = fnv1a(hash, ' ');
                }
                pending_space = false;
                for lower in c.to_lowercase() {
                    hash = fnv1a(hash, lower);
                }
                letters += 1;
            } else if c.is_whitespace() {
                pending_space = true;
            }
        }
        if letters < MIN_KEYED_LETTERS {
            0
        } else {
            hash.max(1)
        }
    })
}

fn fnv1a(mut hash: u32, c: char) -> u32 {
    let mut buffer = [0u8; 4];
    for byte in c.encode_utf8(&mut buffer).bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// One of a customer's recent texts: how many copies of it came in its latest burst (copies at
/// most the flood window apart), when, and on which channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TextBurst {
    /// The text's key ([`text_key`]).
    pub text_key: u32,
    /// Copies in the burst, this one included.
    pub copies: u32,
    /// The channels the burst's copies came on, one bit per channel (`1 << channel as u8`).
    pub channels: u16,
    /// When the burst's first copy came, in milliseconds since the Unix epoch.
    pub first_ms: TimestampMs,
    /// When its latest copy came, in milliseconds since the Unix epoch.
    pub last_ms: TimestampMs,
}

/// What the fold makes of one inbound text, from the customer's recent texts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TextSeen {
    /// The text's burst after it.
    pub burst: TextBurst,
    /// The copy is part of a flood: at least `flood_copies` copies in the burst, and the text is
    /// not a grievance (not negative, no urgency cue).
    pub flood: bool,
}

/// Notes `record`'s text (it has a key) in `recent`, the customer's recent texts: a copy within
/// the flood window of the previous one extends its burst, a later one starts a new burst; the
/// least recently seen text is forgotten beyond [`MAX_RECENT_TEXTS`].
pub fn note_text(
    recent: &mut Vec<TextBurst>,
    record: &EventRecord,
    config: &ScoringConfig,
) -> TextSeen {
    let at = record.occurred_at_ms;
    let channel_bit = channel_bit(record.channel);
    let window_ms = seconds_to_ms(config.noise.flood_window_seconds);
    let burst = match recent
        .iter_mut()
        .find(|seen| seen.text_key == record.text_key)
    {
        Some(seen) => {
            if at.saturating_sub(seen.last_ms) <= window_ms {
                seen.copies = seen.copies.saturating_add(1);
                seen.channels |= channel_bit;
            } else {
                *seen = TextBurst {
                    text_key: record.text_key,
                    copies: 1,
                    channels: channel_bit,
                    first_ms: at,
                    last_ms: at,
                };
            }
            seen.last_ms = at;
            *seen
        }
        None => {
            let fresh = TextBurst {
                text_key: record.text_key,
                copies: 1,
                channels: channel_bit,
                first_ms: at,
                last_ms: at,
            };
            if recent.len() >= MAX_RECENT_TEXTS {
                // Events fold in time order: the smallest `last_ms` is the least recently seen
                // (ties: the first in the list, itself a function of the fold alone).
                if let Some(oldest) = recent.iter_mut().min_by_key(|seen| seen.last_ms) {
                    *oldest = fresh;
                }
            } else {
                recent.push(fresh);
            }
            fresh
        }
    };
    TextSeen {
        burst,
        flood: burst.copies >= config.noise.flood_copies && !is_grievance(record),
    }
}

/// A text that complains or carries an urgency cue: its copies are a customer insisting, never a
/// flood.
pub fn is_grievance(record: &EventRecord) -> bool {
    (record.has_sentiment && record.sentiment_score <= SARCASTIC_CLOSURE_SENTIMENT)
        || !record.urgency_cues.is_empty()
}

/// A channel's bit in a set of channels.
pub fn channel_bit(channel: Channel) -> u16 {
    1 << channel as u8
}

/// Whole milliseconds in `seconds` (saturating).
fn seconds_to_ms(seconds: f64) -> TimestampMs {
    (seconds * 1000.0).round() as TimestampMs
}

/// Whether a copy at `at` is close enough to a waiting thread's latest copy to be the same matter.
pub fn same_matter(last_copy_ms: TimestampMs, at: TimestampMs, config: &ScoringConfig) -> bool {
    at.saturating_sub(last_copy_ms) <= seconds_to_ms(config.noise.cross_post_window_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_words_have_the_same_key_whatever_the_handles_links_digits_and_case() {
        let one = text_key("@acme WIN a free phone today!!! Click https://t.co/abc 123 #giveaway");
        let two = text_key("@other win A FREE phone today! click http://x.co/zz 999 giveaway");
        assert_ne!(one, 0);
        assert_eq!(one, two);
        assert_ne!(
            one,
            text_key("@acme win a free laptop today!!! click https://t.co/abc #giveaway")
        );
    }

    #[test]
    fn short_texts_have_no_key() {
        assert_eq!(text_key("hello??"), 0);
        assert_eq!(text_key("@acme where is my order?? 😡"), 0);
        assert_eq!(text_key(""), 0);
        assert_ne!(text_key("where is my order, it has been two weeks"), 0);
    }

    fn copy(at_ms: i64, channel: Channel, sentiment: f32) -> EventRecord {
        EventRecord {
            occurred_at_ms: at_ms,
            event_key: at_ms as u64,
            thread_key: 0,
            value: 0.0,
            author_followers: 0,
            sentiment_score: sentiment,
            sentiment_confidence: 0.9,
            channel,
            kind: crate::domain::Kind::Mention,
            direction: crate::domain::Direction::Inbound,
            has_sentiment: true,
            reply_need: crate::domain::ReplyNeed::Unclear,
            urgency_cues: Default::default(),
            intent: 0,
            text_key: 7,
            language: 0,
            note: Default::default(),
        }
    }

    #[test]
    fn copies_within_the_window_are_a_burst_and_a_flood_unless_they_complain() {
        let config = ScoringConfig::default();
        let minute = 60_000;
        let mut recent = Vec::new();
        let mut seen = Vec::new();
        for i in 0..config.noise.flood_copies {
            seen.push(note_text(
                &mut recent,
                &copy(i64::from(i) * minute, Channel::Twitter, 0.4),
                &config,
            ));
        }
        assert!(seen[..seen.len() - 1].iter().all(|seen| !seen.flood));
        assert!(seen.last().unwrap().flood);
        assert_eq!(seen.last().unwrap().burst.copies, config.noise.flood_copies);
        // The same copies, negative: a customer insisting.
        let mut recent = Vec::new();
        let last = (0..config.noise.flood_copies)
            .map(|i| {
                note_text(
                    &mut recent,
                    &copy(i64::from(i) * minute, Channel::Twitter, -0.6),
                    &config,
                )
            })
            .last()
            .unwrap();
        assert!(!last.flood);
        // A copy after a silence longer than the window starts a new burst.
        let later = (config.noise.flood_window_seconds * 1000.0) as i64 * 3;
        let restarted = note_text(&mut recent, &copy(later, Channel::Email, -0.6), &config);
        assert_eq!(restarted.burst.copies, 1);
        assert_eq!(restarted.burst.channels, channel_bit(Channel::Email));
    }

    #[test]
    fn at_most_the_most_recent_texts_are_kept() {
        let config = ScoringConfig::default();
        let mut recent = Vec::new();
        for key in 1..=(MAX_RECENT_TEXTS as u32 + 3) {
            let mut record = copy(i64::from(key) * 1000, Channel::Email, 0.0);
            record.text_key = key;
            note_text(&mut recent, &record, &config);
        }
        assert_eq!(recent.len(), MAX_RECENT_TEXTS);
        assert!(recent.iter().all(|seen| seen.text_key > 3));
    }
}
