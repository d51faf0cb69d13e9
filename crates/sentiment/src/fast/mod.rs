//! The learned fast backend: multinomial logistic regression over hashed word 1–2-grams and
//! character n-grams ([`linear`]), trained by `rapport train fast`: distilled from the
//! transformer (`sentiment-distilled.bin`, the default when present) or on gold labels
//! (`sentiment-gold.bin`, its twin).

pub mod linear;

use crate::{Sentiment, SentimentLabel, SentimentModel};
use anyhow::Context;
use std::path::Path;

/// File name of the gold-label model under `models/fast/`.
pub const GOLD_MODEL_FILE: &str = "sentiment-gold.bin";
/// File name of the model distilled from the transformer under `models/fast/`.
pub const DISTILLED_MODEL_FILE: &str = "sentiment-distilled.bin";

/// `models/fast/sentiment-distilled.bin`, built into the binary.
static EMBEDDED_DISTILLED_MODEL: &[u8] =
    include_bytes!("../../../../models/fast/sentiment-distilled.bin");
/// `models/fast/sentiment-gold.bin`, built into the binary.
static EMBEDDED_GOLD_MODEL: &[u8] = include_bytes!("../../../../models/fast/sentiment-gold.bin");

/// The hashed linear model behind the [`SentimentModel`] trait.
pub struct FastModel {
    model: linear::LinearModel,
}

impl FastModel {
    /// Loads the default fast model under `models_dir`: `fast/sentiment-distilled.bin` when it
    /// exists, else `fast/sentiment-gold.bin`.
    pub fn load(models_dir: &Path) -> anyhow::Result<Self> {
        let distilled = models_dir.join("fast").join(DISTILLED_MODEL_FILE);
        if distilled.exists() {
            Self::load_file(&distilled)
        } else {
            Self::load_gold(models_dir)
        }
    }

    /// Loads the gold-label twin, `fast/sentiment-gold.bin` under `models_dir`.
    pub fn load_gold(models_dir: &Path) -> anyhow::Result<Self> {
        Self::load_file(&models_dir.join("fast").join(GOLD_MODEL_FILE))
    }

    /// Loads a model file written by `rapport train fast`.
    pub fn load_file(path: &Path) -> anyhow::Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read model {}", path.display()))?;
        let model = linear::LinearModel::from_bytes(&bytes)
            .map_err(|error| anyhow::anyhow!("invalid model {}: {error}", path.display()))?;
        Ok(Self { model })
    }

    /// The default model built into the binary (`models/fast/sentiment-distilled.bin`).
    pub fn embedded() -> anyhow::Result<Self> {
        Self::from_embedded(EMBEDDED_DISTILLED_MODEL, DISTILLED_MODEL_FILE)
    }

    /// The gold-label twin built into the binary (`models/fast/sentiment-gold.bin`).
    pub fn embedded_gold() -> anyhow::Result<Self> {
        Self::from_embedded(EMBEDDED_GOLD_MODEL, GOLD_MODEL_FILE)
    }

    fn from_embedded(bytes: &[u8], name: &str) -> anyhow::Result<Self> {
        let model = linear::LinearModel::from_bytes(bytes)
            .map_err(|error| anyhow::anyhow!("invalid built-in model {name}: {error}"))?;
        Ok(Self { model })
    }

    /// Wraps an already trained model.
    pub fn new(model: linear::LinearModel) -> Self {
        Self { model }
    }

    /// The class probabilities of `text` (negative, neutral, positive): what `train fast
    /// --teacher-model` trains a new model towards.
    pub fn probabilities(&self, text: &str) -> [f32; 3] {
        self.model.predict(text).probabilities
    }
}

/// Class probabilities → label (most probable), score (P(positive) − P(negative)) and
/// confidence (the winning probability).
pub fn sentiment_from_probabilities(probabilities: [f32; 3]) -> Sentiment {
    let mut best = 0;
    for class in 1..3 {
        if probabilities[class] > probabilities[best] {
            best = class;
        }
    }
    Sentiment {
        label: SentimentLabel::ALL[best],
        score: (probabilities[2] - probabilities[0]).clamp(-1.0, 1.0),
        confidence: probabilities[best].clamp(0.0, 1.0),
    }
}

impl SentimentModel for FastModel {
    fn name(&self) -> &'static str {
        "fast"
    }

    fn classify(&self, text: &str) -> Sentiment {
        sentiment_from_probabilities(self.model.predict(text).probabilities)
    }
}

#[cfg(test)]
mod model_tests {
    use super::*;

    /// The committed model loads and reads obvious texts right.
    #[test]
    fn committed_model_classifies() {
        let model = FastModel::load(&crate::default_models_dir()).expect("models/fast/");
        assert_eq!(
            model.classify("I love this, thank you so much!").label,
            SentimentLabel::Positive
        );
        assert_eq!(
            model.classify("worst service ever, I hate this").label,
            SentimentLabel::Negative
        );
        let sentiment = model.classify("");
        assert!((0.0..=1.0).contains(&sentiment.confidence));
    }

    /// The built-in models are the committed files, and answer as they do.
    #[test]
    fn embedded_models_match_the_files() {
        let dir = crate::default_models_dir();
        for (embedded, from_file) in [
            (FastModel::embedded(), FastModel::load(&dir)),
            (FastModel::embedded_gold(), FastModel::load_gold(&dir)),
        ] {
            let (embedded, from_file) = (embedded.unwrap(), from_file.unwrap());
            for text in ["I love this!", "worst service ever", "opens at nine", ""] {
                assert_eq!(
                    embedded.classify(text),
                    from_file.classify(text),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn probabilities_map_to_label_score_confidence() {
        let sentiment = sentiment_from_probabilities([0.1, 0.2, 0.7]);
        assert_eq!(sentiment.label, SentimentLabel::Positive);
        assert!((sentiment.score - 0.6).abs() < 1e-6);
        assert!((sentiment.confidence - 0.7).abs() < 1e-6);
    }
}
