//! Whether an inbound message asks for an answer, read from its text when the client does not say.
//!
//! Rules, in order, on the lowercased text split into words:
//! 1. empty text: [`ReplyNeed::Unclear`];
//! 2. a question (a `?`, or a first word that opens one: "how", "can", "is", …) or a request or
//!    problem word ("please", "help", "refund", "broken", "still waiting", …):
//!    [`ReplyNeed::Required`];
//! 3. a closure ("thanks", "solved", "works now", "all good", "👍", …) in a short text (at most
//!    [`MAX_CLOSURE_WORDS`] words) with no negative marker ("not", "never", "nothing", "again",
//!    …): [`ReplyNeed::NotRequired`];
//! 4. anything else: [`ReplyNeed::Unclear`].
//!
//! The rules err towards "an answer is expected": a closure must be short and unmixed. Scoring also
//! refuses to close a thread on a "closure" whose sentiment is clearly negative (sarcasm).

use crate::ReplyNeed;

/// Longest text still read as a closure; longer texts usually carry content worth an answer.
pub const MAX_CLOSURE_WORDS: usize = 12;

/// First words that open a question even without a question mark.
const QUESTION_OPENERS: &[&str] = &[
    "how", "why", "when", "where", "what", "who", "which", "can", "could", "would", "will", "is",
    "are", "do", "does", "did", "should", "may", "any",
];

/// Words or phrases of a request or a problem.
const REQUEST_MARKERS: &[&str] = &[
    "please",
    "pls",
    "plz",
    "help",
    "need",
    "asap",
    "urgent",
    "refund",
    "cancel",
    "fix",
    "update on",
    "still waiting",
    "waiting for",
    "still not",
    "contact me",
    "call me",
    "dm me",
    "get back to me",
    "let me know",
    "not working",
    "doesn't work",
    "does not work",
    "broken",
    "lost",
    "missing",
    "wrong",
    "never arrived",
    "charged",
    "complaint",
    "issue",
    "problem",
];

/// Words or phrases that close a conversation.
const CLOSURE_MARKERS: &[&str] = &[
    "thank",
    "thanks",
    "thx",
    "ty",
    "cheers",
    "solved",
    "resolved",
    "sorted",
    "works now",
    "working now",
    "fixed now",
    "all good",
    "no worries",
    "got it",
    "perfect",
    "great",
    "awesome",
    "appreciate",
    "ok",
    "okay",
    "👍",
];

/// Words that make a would-be closure something else ("thanks for nothing", "not solved").
const NEGATIVE_MARKERS: &[&str] = &[
    "not",
    "n't",
    "never",
    "nothing",
    "again",
    "still",
    "worst",
    "terrible",
    "awful",
    "useless",
    "disappointed",
    "but",
];

/// Reads from the text whether the message asks for an answer (see the module doc).
pub fn infer_reply_need(text: &str) -> ReplyNeed {
    let lower = text.trim().to_lowercase();
    if lower.is_empty() {
        return ReplyNeed::Unclear;
    }
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’' || !c.is_ascii()))
        .filter(|word| !word.is_empty())
        .collect();
    // Phrases are matched on the words joined by single spaces, so punctuation between them does
    // not hide them and a marker never matches inside a longer word.
    let joined = format!(" {} ", words.join(" "));
    let has = |markers: &[&str]| {
        markers.iter().any(|marker| {
            if marker.starts_with("n'") {
                words.iter().any(|word| word.ends_with(marker))
            } else if marker.is_ascii() {
                joined.contains(&format!(" {marker} "))
            } else {
                lower.contains(marker)
            }
        })
    };
    let question = lower.contains('?')
        || words
            .first()
            .is_some_and(|first| QUESTION_OPENERS.contains(first));
    if question || has(REQUEST_MARKERS) {
        return ReplyNeed::Required;
    }
    if words.len() <= MAX_CLOSURE_WORDS && has(CLOSURE_MARKERS) && !has(NEGATIVE_MARKERS) {
        return ReplyNeed::NotRequired;
    }
    ReplyNeed::Unclear
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_requests_and_problems_need_an_answer() {
        for text in [
            "where is my order?",
            "How do I reset my password",
            "please refund me",
            "my package never arrived",
            "app is broken after the update",
            "thanks but it is still not working",
            "Can someone call me back",
        ] {
            assert_eq!(infer_reply_need(text), ReplyNeed::Required, "{text}");
        }
    }

    #[test]
    fn closures_need_none() {
        for text in [
            "thanks, works great as always",
            "Thank you!",
            "ok, solved",
            "all good now, cheers",
            "👍",
            "Perfect, got it.",
        ] {
            assert_eq!(infer_reply_need(text), ReplyNeed::NotRequired, "{text}");
        }
    }

    #[test]
    fn mixed_long_or_plain_texts_are_unclear() {
        for text in [
            "",
            "   ",
            "thanks for nothing",
            "great, again",
            "I bought the blue one last week and my sister liked it so much that she wants one too, thanks",
            "just bought the new model",
        ] {
            assert_eq!(infer_reply_need(text), ReplyNeed::Unclear, "{text:?}");
        }
    }

    #[test]
    fn markers_do_not_match_inside_words() {
        // "ok" inside "book", "ty" inside "pretty", "lost" inside "lobster".
        assert_eq!(infer_reply_need("pretty book"), ReplyNeed::Unclear);
        assert_eq!(infer_reply_need("lobster dinner"), ReplyNeed::Unclear);
    }
}
