//! Transformer sentiment backend: all-MiniLM-L6-v2 fine-tuned as a three-class sequence
//! classifier, run on libtorch through rust-bert (feature `transformer`).
//!
//! Files (see models/README.md): `models/transformer/base/` holds the converted base encoder
//! (`scripts/fetch_base_model.sh`), `rapport train transformer` fine-tunes it, and the shipped
//! model is `models/transformer/{sentiment-minilm-f16.ot,config.json,vocab.txt}`.

pub mod convert;
pub mod model;
pub mod text;

pub use model::TransformerClassifier;
pub use text::normalize;

use crate::sentiment::{Sentiment, SentimentModel};
use std::path::Path;
use std::sync::Mutex;

/// File name of the shipped weights under `models/transformer/`.
pub const WEIGHTS_FILE: &str = "sentiment-minilm-f16.ot";

/// [`SentimentModel`] over a [`TransformerClassifier`]. The classifier is not `Sync`, so calls
/// take a lock and run one at a time; batching callers should own a [`TransformerClassifier`]
/// on one thread instead.
pub struct TransformerModel {
    classifier: Mutex<TransformerClassifier>,
}

impl TransformerModel {
    /// Loads `transformer/{config.json,vocab.txt,sentiment-minilm-f16.ot}` under `models_dir`.
    /// Call it on a plain thread, not inside a tokio task.
    pub fn load(models_dir: &Path) -> anyhow::Result<Self> {
        let classifier =
            TransformerClassifier::load_dir(&models_dir.join("transformer"), WEIGHTS_FILE)?;
        Ok(Self {
            classifier: Mutex::new(classifier),
        })
    }
}

impl SentimentModel for TransformerModel {
    fn name(&self) -> &'static str {
        "transformer"
    }

    fn classify(&self, text: &str) -> Sentiment {
        let classifier = self
            .classifier
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        classifier.classify_batch(&[text])[0]
    }
}
