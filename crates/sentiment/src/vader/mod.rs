//! The rule-and-lexicon backend: VADER's published rules over its MIT-licensed lexicons
//! (`models/vader/`), ported in [`analyzer`].

pub mod analyzer;

use crate::{Sentiment, SentimentLabel, SentimentModel};
use anyhow::Context;
use std::path::Path;

/// Compound scores at or beyond ±0.05 are positive / negative (VADER's own thresholds).
pub const COMPOUND_THRESHOLD: f64 = 0.05;

/// VADER behind the [`SentimentModel`] trait.
pub struct VaderModel {
    analyzer: analyzer::Vader,
}

impl VaderModel {
    /// Loads `vader/vader_lexicon.txt` and `vader/emoji_utf8_lexicon.txt` under `models_dir`.
    pub fn load(models_dir: &Path) -> anyhow::Result<Self> {
        let read = |name: &str| {
            let path = models_dir.join("vader").join(name);
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read lexicon {}", path.display()))
        };
        let analyzer = analyzer::Vader::from_lexicons(
            &read("vader_lexicon.txt")?,
            &read("emoji_utf8_lexicon.txt")?,
        )?;
        Ok(Self { analyzer })
    }
}

/// `models/vader/vader_lexicon.txt`, built into the binary.
static EMBEDDED_VADER_LEXICON: &str = include_str!("../../../../models/vader/vader_lexicon.txt");
/// `models/vader/emoji_utf8_lexicon.txt`, built into the binary.
static EMBEDDED_EMOJI_LEXICON: &str =
    include_str!("../../../../models/vader/emoji_utf8_lexicon.txt");

impl VaderModel {
    /// The lexicons built into the binary.
    pub fn embedded() -> anyhow::Result<Self> {
        let analyzer =
            analyzer::Vader::from_lexicons(EMBEDDED_VADER_LEXICON, EMBEDDED_EMOJI_LEXICON)?;
        Ok(Self { analyzer })
    }
}

/// Maps a compound score to a label, score and confidence. Confidence grows with the distance
/// from the decision boundary: polar texts get 0.5 + 0.5·|compound|, neutral ones are most
/// confident at compound 0.
pub fn sentiment_from_compound(compound: f64) -> Sentiment {
    let (label, confidence) = if compound >= COMPOUND_THRESHOLD {
        (SentimentLabel::Positive, 0.5 + 0.5 * compound.abs())
    } else if compound <= -COMPOUND_THRESHOLD {
        (SentimentLabel::Negative, 0.5 + 0.5 * compound.abs())
    } else {
        (SentimentLabel::Neutral, 1.0 - 10.0 * compound.abs())
    };
    Sentiment {
        label,
        score: compound.clamp(-1.0, 1.0) as f32,
        confidence: confidence.clamp(0.0, 1.0) as f32,
    }
}

impl SentimentModel for VaderModel {
    fn name(&self) -> &'static str {
        "vader"
    }

    fn classify(&self, text: &str) -> Sentiment {
        sentiment_from_compound(self.analyzer.polarity_scores(text).compound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> VaderModel {
        VaderModel::load(&crate::default_models_dir()).expect("lexicons in models/")
    }

    #[test]
    fn labels_follow_compound_thresholds() {
        let model = model();
        assert_eq!(
            model.classify("I love this, thank you so much!").label,
            SentimentLabel::Positive
        );
        assert_eq!(
            model
                .classify("This is the worst service ever. Terrible.")
                .label,
            SentimentLabel::Negative
        );
        assert_eq!(
            model.classify("The store opens at nine.").label,
            SentimentLabel::Neutral
        );
    }

    #[test]
    fn embedded_lexicons_match_the_files() {
        let embedded = VaderModel::embedded().unwrap();
        let from_file = model();
        for text in [
            "I love this :)",
            "Worst. Service. Ever!!",
            "The store opens at nine.",
        ] {
            assert_eq!(
                embedded.classify(text),
                from_file.classify(text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn confidence_and_score_in_range() {
        for compound in [-1.0, -0.5, -0.05, -0.01, 0.0, 0.04, 0.05, 0.7, 1.0] {
            let sentiment = sentiment_from_compound(compound);
            assert!((0.0..=1.0).contains(&sentiment.confidence), "{compound}");
            assert!((-1.0..=1.0).contains(&sentiment.score), "{compound}");
        }
    }
}
