//! Sentiment classification: one trait, backends beside it.
//!
//! Every backend maps a text to a [`Sentiment`]: a label, a polarity score in [-1, 1] and a
//! confidence in [0, 1]. The ingest path calls the configured backend inline, so backends must be
//! cheap to call and never panic.

pub mod fast;
#[cfg(feature = "transformer")]
pub mod transformer;
pub mod vader;

use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// Polarity class of a text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SentimentLabel {
    Negative,
    Neutral,
    Positive,
}

impl SentimentLabel {
    /// Every label, in class-index order.
    pub const ALL: [SentimentLabel; 3] = [
        SentimentLabel::Negative,
        SentimentLabel::Neutral,
        SentimentLabel::Positive,
    ];

    /// Lowercase name, as in the training data (`negative`, `neutral`, `positive`).
    pub fn as_str(self) -> &'static str {
        match self {
            SentimentLabel::Negative => "negative",
            SentimentLabel::Neutral => "neutral",
            SentimentLabel::Positive => "positive",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|label| label.as_str() == name)
    }

    /// Position in [`SentimentLabel::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Sentiment of one text.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sentiment {
    pub label: SentimentLabel,
    /// Polarity in [-1, 1].
    pub score: f32,
    /// How sure the backend is, in [0, 1]; scoring weights messages by it.
    pub confidence: f32,
}

/// A sentiment backend. Implementations are immutable after construction and shared across threads.
pub trait SentimentModel: Send + Sync {
    /// Short name for logs and metrics.
    fn name(&self) -> &'static str;

    /// Classifies one text.
    fn classify(&self, text: &str) -> Sentiment;
}

/// Which backend to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Rule-and-lexicon classifier following VADER's published rules.
    Vader,
    /// Hashed n-gram logistic regression trained by `rapport train fast` (models/fast/).
    Fast,
    /// Fine-tuned MiniLM classifier on libtorch (models/transformer/; feature `transformer`).
    #[cfg(feature = "transformer")]
    Transformer,
}

/// Loads the chosen backend from the model directory (`models/` in the repository).
pub fn load(backend: Backend, models_dir: &Path) -> anyhow::Result<Arc<dyn SentimentModel>> {
    match backend {
        Backend::Vader => Ok(Arc::new(vader::VaderModel::load(models_dir)?)),
        Backend::Fast => Ok(Arc::new(fast::FastModel::load(models_dir)?)),
        #[cfg(feature = "transformer")]
        Backend::Transformer => Ok(Arc::new(transformer::TransformerModel::load(models_dir)?)),
    }
}

/// The model directory compiled into the binary's default: `<crate>/models`.
pub fn default_models_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/models"))
}
