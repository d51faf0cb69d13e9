//! Fuzz target: arbitrary bytes → UTF-8 text (other inputs skipped) → every sentiment backend.
//!
//! Must never panic. Each `Sentiment` must have a finite score in [-1, 1], a finite confidence in
//! [0, 1], a label that agrees with the score's sign, and be the same when classified again.

use rapport::config::ServerConfig;
use rapport::sentiment::{self, Backend, SentimentLabel, SentimentModel};
use std::sync::{Arc, OnceLock};

fn models() -> &'static [Arc<dyn SentimentModel>; 2] {
    static MODELS: OnceLock<[Arc<dyn SentimentModel>; 2]> = OnceLock::new();
    MODELS.get_or_init(|| {
        let dir = sentiment::default_models_dir();
        [
            sentiment::load(Backend::Fast, &dir).expect("fast model"),
            sentiment::load(Backend::Vader, &dir).expect("vader lexicons"),
        ]
    })
}

fn run(text: &str) {
    for model in models() {
        let name = model.name();
        let s = model.classify(text);
        assert!(
            s.score.is_finite() && (-1.0..=1.0).contains(&s.score),
            "{name}: score {} for {text:?}",
            s.score
        );
        assert!(
            s.confidence.is_finite() && (0.0..=1.0).contains(&s.confidence),
            "{name}: confidence {} for {text:?}",
            s.confidence
        );
        match s.label {
            SentimentLabel::Positive => assert!(s.score >= 0.0, "{name}: {s:?} for {text:?}"),
            SentimentLabel::Negative => assert!(s.score <= 0.0, "{name}: {s:?} for {text:?}"),
            SentimentLabel::Neutral => {}
        }
        assert_eq!(
            model.classify(text),
            s,
            "{name}: not deterministic for {text:?}"
        );
    }
}

fn main() {
    // The API refuses longer texts before classifying (`server.max_text_bytes`).
    let max_text_bytes = ServerConfig::default().max_text_bytes;
    models();
    afl::fuzz!(|data: &[u8]| {
        if data.len() > max_text_bytes {
            return;
        }
        if let Ok(text) = std::str::from_utf8(data) {
            run(text);
        }
    });
}
