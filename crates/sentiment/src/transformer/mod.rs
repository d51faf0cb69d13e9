//! Transformer sentiment backend: all-MiniLM-L6-v2 fine-tuned as a three-class sequence
//! classifier, run on libtorch through rust-bert (feature `transformer`).
//!
//! Files (see models/README.md): `models/transformer/base/` holds the converted base encoder
//! (`scripts/fetch_base_model.sh`), `rapport train transformer` fine-tunes it, and the shipped
//! model is `models/transformer/{sentiment-minilm-f16.ot,config.json,vocab.txt}`.

pub mod convert;
pub mod model;
pub mod pool;
pub mod text;

pub use model::TransformerClassifier;
pub use pool::TransformerPool;
pub use text::normalize;

use crate::fast::FastModel;
use crate::TransformerConfig;
use crate::{ready, Overloaded, Pending, Sentiment, SentimentModel};
use std::path::Path;

/// File name of the shipped weights under `models/transformer/`.
pub const WEIGHTS_FILE: &str = "sentiment-minilm-f16.ot";

/// The `transformer` and `cascade` backends: the batched pool, with a fast model beside it for
/// ingest (which never waits on the pool) and, in a cascade, for the texts it is sure of. That
/// fast model is the gold-label twin (`fast/sentiment-gold.bin`): its confidence separates easy
/// texts from hard ones better than the distilled model's softer one (on val.tsv, 98 % of the
/// transformer's macro-recall with 15 % of texts routed, against 31 % for the distilled model).
pub struct TransformerBackend {
    pool: TransformerPool,
    fast: FastModel,
    /// Cascade: the fast model's confidence below which a text goes to the transformer; `None`
    /// sends every text to the transformer.
    cascade_min_confidence: Option<f32>,
}

impl TransformerBackend {
    /// Loads the fast model and starts the pool on `models_dir/transformer/` (call it outside
    /// async code: it waits for the workers to load).
    pub fn load(
        models_dir: &Path,
        config: &TransformerConfig,
        cascade_min_confidence: Option<f32>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pool: TransformerPool::start(&models_dir.join("transformer"), WEIGHTS_FILE, config)?,
            fast: FastModel::load_gold(models_dir)?,
            cascade_min_confidence,
        })
    }

    /// The fast model's answer when a cascade keeps it.
    fn kept_by_cascade(&self, text: &str) -> Option<Sentiment> {
        self.cascade_min_confidence?;
        self.keeps(self.fast.classify(text))
    }

    /// Whether a cascade keeps the fast model's answer `fast` (counted); always `None` without
    /// a cascade.
    fn keeps(&self, fast: Sentiment) -> Option<Sentiment> {
        let threshold = self.cascade_min_confidence?;
        let kept = fast.confidence >= threshold;
        crate::telemetry::cascade_routed(kept);
        kept.then_some(fast)
    }
}

impl SentimentModel for TransformerBackend {
    fn is_serving(&self) -> bool {
        self.pool
            .stats()
            .workers_alive
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    }

    fn queue_stats(&self) -> Option<crate::QueueStats> {
        Some(self.pool.stats().snapshot())
    }

    fn name(&self) -> &'static str {
        if self.cascade_min_confidence.is_some() {
            "cascade"
        } else {
            "transformer"
        }
    }

    fn classify(&self, text: &str) -> Sentiment {
        self.classify_all(&[text])[0]
    }

    fn inline_name(&self) -> &'static str {
        self.fast.name()
    }

    fn classify_inline(&self, text: &str) -> Sentiment {
        self.fast.classify(text)
    }

    fn submit(&self, text: &str) -> Result<Pending, Overloaded> {
        match self.kept_by_cascade(text) {
            Some(fast) => ready(fast),
            None => self.pool.submit(text),
        }
    }

    fn refine(&self, text: &str, inline: Sentiment) -> Option<Result<Pending, Overloaded>> {
        match self.keeps(inline) {
            Some(_) => None,
            None => Some(self.pool.submit(text)),
        }
    }

    fn classify_all(&self, texts: &[&str]) -> Vec<Sentiment> {
        let pending: Vec<Result<Sentiment, Pending>> = texts
            .iter()
            .map(|text| match self.kept_by_cascade(text) {
                Some(fast) => Ok(fast),
                None => Err(self.pool.submit_waiting(text)),
            })
            .collect();
        texts
            .iter()
            .zip(pending)
            .map(|(text, answer)| match answer {
                Ok(sentiment) => sentiment,
                // A failed batch: the fast model answers rather than nothing.
                Err(pending) => pending
                    .blocking_recv()
                    .unwrap_or_else(|_| self.fast.classify(text)),
            })
            .collect()
    }
}
