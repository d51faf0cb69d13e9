//! Sentiment classification: one trait, backends beside it.
//!
//! Every backend maps a text to a [`Sentiment`]: a label, a polarity score in [-1, 1] and a
//! confidence in [0, 1]. The ingest path calls the configured backend inline, so backends must be
//! cheap to call and never panic.

#![warn(missing_docs)]

pub mod fast;
mod hashing;
pub mod intent;
pub mod language;
mod reply_need;
pub mod telemetry;
#[cfg(feature = "transformer")]
pub mod transformer;
mod urgency;
pub mod vader;

pub use reply_need::{infer_reply_need, MAX_CLOSURE_WORDS};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
pub use urgency::{infer_urgency_cues, UrgencyCue, UrgencyCues};

/// Polarity class of a text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SentimentLabel {
    /// Unhappy, critical or hostile.
    Negative,
    /// Neither positive nor negative.
    Neutral,
    /// Happy, approving or grateful.
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
    /// The polarity class.
    pub label: SentimentLabel,
    /// Polarity in [-1, 1].
    pub score: f32,
    /// How sure the backend is, in [0, 1]; scoring weights messages by it.
    pub confidence: f32,
}

/// A classification that may still be queued: await it (or `blocking_recv` outside a runtime). An
/// error means the backend dropped the text (its worker failed).
pub type Pending = tokio::sync::oneshot::Receiver<Sentiment>;

/// A queued backend's queue is full; the caller should retry later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the {backend} queue is full ({capacity} texts waiting); retry with backoff")]
pub struct Overloaded {
    /// Name of the backend whose queue is full (e.g. `transformer`).
    pub backend: &'static str,
    /// The queue's capacity, in texts.
    pub capacity: usize,
}

/// A classification already answered.
pub fn ready(sentiment: Sentiment) -> Result<Pending, Overloaded> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let _ = sender.send(sentiment);
    Ok(receiver)
}

/// A sentiment backend. Implementations are immutable after construction and shared across threads.
///
/// In-process backends (fast, VADER) answer every method at once. Queued backends (transformer,
/// cascade) batch on worker threads: [`SentimentModel::classify_inline`] answers with their fast
/// model so ingest never waits on them, and [`SentimentModel::submit`] queues.
pub trait SentimentModel: Send + Sync {
    /// Short name for logs and metrics.
    fn name(&self) -> &'static str;

    /// Classifies one text, waiting for the answer; never call it from async code.
    fn classify(&self, text: &str) -> Sentiment;

    /// Name of the model [`SentimentModel::classify_inline`] runs.
    fn inline_name(&self) -> &'static str {
        self.name()
    }

    /// Classifies without waiting on a queue: what ingest uses.
    fn classify_inline(&self, text: &str) -> Sentiment {
        self.classify(text)
    }

    /// Queues one text for a caller that can wait (the `Classify` RPC); a full queue refuses.
    fn submit(&self, text: &str) -> Result<Pending, Overloaded> {
        ready(self.classify(text))
    }

    /// For a text ingest scored with [`SentimentModel::classify_inline`] (`inline` is that
    /// answer): queues it for this backend's better label, which the caller applies when it
    /// comes. `None` when the inline answer is final (in-process backends, or a cascade sure of
    /// it); a full queue refuses at once, and the event keeps its inline label.
    fn refine(&self, _text: &str, _inline: Sentiment) -> Option<Result<Pending, Overloaded>> {
        None
    }

    /// Classifies many texts, waiting for all (queued backends batch them); never from async code.
    fn classify_all(&self, texts: &[&str]) -> Vec<Sentiment> {
        texts.iter().map(|text| self.classify(text)).collect()
    }

    /// Whether the backend can answer `submit` (a queued backend with no live worker cannot; the
    /// server then reports its sentiment service NOT_SERVING). In-process backends always can.
    fn is_serving(&self) -> bool {
        true
    }

    /// A queued backend's counters since start (`None` for in-process backends).
    fn queue_stats(&self) -> Option<QueueStats> {
        None
    }
}

/// What a queued backend's worker pool has done since start, for metrics and health.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Worker threads running now (each owns a copy of the model).
    pub workers_alive: u64,
    /// Worker threads started.
    pub workers_started: u64,
    /// Forward passes run.
    pub batches: u64,
    /// Texts classified.
    pub texts: u64,
    /// Texts skipped because their caller had gone.
    pub abandoned: u64,
    /// Texts refused because the queue was full.
    pub refused: u64,
    /// Forward passes that failed (their callers got an error).
    pub failed_batches: u64,
}

/// Which backend to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Rule-and-lexicon classifier following VADER's published rules.
    Vader,
    /// Hashed n-gram logistic regression trained by `rapport train fast` (models/fast/): the
    /// model distilled from the transformer when present, else the gold-label one.
    Fast,
    /// The fast model's gold-label twin (models/fast/sentiment-gold.bin), for comparison.
    FastGold,
    /// Fine-tuned MiniLM classifier on libtorch (models/transformer/; feature `transformer`),
    /// batched on worker threads; ingest uses the fast model inline.
    #[cfg(feature = "transformer")]
    Transformer,
    /// The fast model, and the transformer for texts the fast model is unsure of
    /// (`[transformer] cascade_min_confidence`; feature `transformer`).
    #[cfg(feature = "transformer")]
    Cascade,
}

impl Backend {
    /// Every backend this build has, in the order `--help` lists them.
    pub const ALL: &'static [Backend] = &[
        Backend::Vader,
        Backend::Fast,
        Backend::FastGold,
        #[cfg(feature = "transformer")]
        Backend::Transformer,
        #[cfg(feature = "transformer")]
        Backend::Cascade,
    ];

    /// The name used on the command line and in config files (`fast-gold` there, `fast_gold`
    /// in TOML).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Vader => "vader",
            Backend::Fast => "fast",
            Backend::FastGold => "fast-gold",
            #[cfg(feature = "transformer")]
            Backend::Transformer => "transformer",
            #[cfg(feature = "transformer")]
            Backend::Cascade => "cascade",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let wanted = name.replace('_', "-");
        Backend::ALL
            .iter()
            .copied()
            .find(|backend| backend.name().eq_ignore_ascii_case(&wanted))
            .ok_or_else(|| {
                let names: Vec<&str> = Backend::ALL.iter().map(|b| b.name()).collect();
                format!(
                    "unknown sentiment backend {name:?} (one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// `[transformer]`: the batched transformer backend's worker pool and the cascade threshold
/// (read only by builds with the `transformer` feature, with `sentiment = "transformer"` or
/// `"cascade"`). The core's config validates it.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformerConfig {
    /// Worker threads, each owning a copy of the model.
    pub workers: usize,
    /// libtorch intra-op threads (shared by the workers: keep workers × this ≤ cores).
    pub threads: usize,
    /// Texts waiting for a worker; beyond it `Classify` answers RESOURCE_EXHAUSTED.
    pub queue_capacity: usize,
    /// Most texts a worker takes at once; it sorts them by length and runs them in forward
    /// passes of 16, so padding stays small.
    pub max_batch_texts: usize,
    /// Most padded tokens (texts × longest) a worker takes at once.
    pub max_batch_tokens: usize,
    /// Cascade: texts the fast model classifies with less confidence than this go to the
    /// transformer.
    pub cascade_min_confidence: f32,
}

impl Default for TransformerConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            threads: 2,
            queue_capacity: 1024,
            max_batch_texts: 256,
            max_batch_tokens: 16384,
            cascade_min_confidence: 0.54,
        }
    }
}

/// Whether an inbound message asks for an answer. Stated by the client (`Interaction.reply_need`)
/// or read from the text by [`infer_reply_need`] when the client does not say.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[repr(u8)]
pub enum ReplyNeed {
    /// No sign either way (no text, or a plain statement): waits for an answer at base severity.
    #[default]
    Unclear,
    /// A question, a request or a complaint: waits for an answer, at higher severity.
    Required,
    /// A closure ("thanks, works now", "ok, solved"): opens nothing and closes its thread.
    NotRequired,
}

impl ReplyNeed {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyNeed::Unclear => "unclear",
            ReplyNeed::Required => "required",
            ReplyNeed::NotRequired => "not_required",
        }
    }
}

/// Where the model files of a backend come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// The copies built into the binary (the fast models and the VADER lexicons). The
    /// transformer is not built in: it is read from `models/` under the current directory.
    Embedded,
    /// A directory laid out like the repository's `models/` (`fast/`, `vader/`, `transformer/`).
    Dir(std::path::PathBuf),
}

impl ModelSource {
    /// `--models-dir` when given (files, e.g. the output of `train fast`), else the built-in models.
    pub fn from_models_dir(models_dir: Option<std::path::PathBuf>) -> Self {
        models_dir.map_or(ModelSource::Embedded, ModelSource::Dir)
    }
}

/// Loads the chosen backend from the model directory (`models/` in the repository), with the
/// default `[transformer]` settings.
pub fn load(backend: Backend, models_dir: &Path) -> anyhow::Result<Arc<dyn SentimentModel>> {
    load_with(backend, models_dir, &crate::TransformerConfig::default())
}

/// Loads the chosen backend from `source`; queued backends start their worker threads per
/// `transformer`.
pub fn load_from(
    backend: Backend,
    source: &ModelSource,
    transformer: &crate::TransformerConfig,
) -> anyhow::Result<Arc<dyn SentimentModel>> {
    match (source, backend) {
        (ModelSource::Dir(dir), _) => load_with(backend, dir, transformer),
        (ModelSource::Embedded, Backend::Vader) => Ok(Arc::new(vader::VaderModel::embedded()?)),
        (ModelSource::Embedded, Backend::Fast) => Ok(Arc::new(fast::FastModel::embedded()?)),
        (ModelSource::Embedded, Backend::FastGold) => {
            Ok(Arc::new(fast::FastModel::embedded_gold()?))
        }
        #[cfg(feature = "transformer")]
        (ModelSource::Embedded, Backend::Transformer | Backend::Cascade) => {
            let dir = std::path::PathBuf::from(TRANSFORMER_DEFAULT_MODELS_DIR);
            let weights = dir.join("transformer").join(transformer::WEIGHTS_FILE);
            anyhow::ensure!(
                weights.exists(),
                "the transformer model is not built into the binary and {} does not exist: \
                 pass --models-dir DIR, where DIR holds transformer/ and fast/ as the \
                 repository's models/ does",
                weights.display()
            );
            load_with(backend, &dir, transformer)
        }
    }
}

/// Where `--sentiment transformer|cascade` looks without `--models-dir`: `models/` under the
/// current directory (the repository root, for `cargo run`).
pub const TRANSFORMER_DEFAULT_MODELS_DIR: &str = "models";

/// Loads the chosen backend from the files under `models_dir`; queued backends start their worker
/// threads per `transformer`.
pub fn load_with(
    backend: Backend,
    models_dir: &Path,
    transformer: &crate::TransformerConfig,
) -> anyhow::Result<Arc<dyn SentimentModel>> {
    let _ = transformer; // read only by the transformer backends
    match backend {
        Backend::Vader => Ok(Arc::new(vader::VaderModel::load(models_dir)?)),
        Backend::Fast => Ok(Arc::new(fast::FastModel::load(models_dir)?)),
        Backend::FastGold => Ok(Arc::new(fast::FastModel::load_gold(models_dir)?)),
        #[cfg(feature = "transformer")]
        Backend::Transformer => Ok(Arc::new(transformer::TransformerBackend::load(
            models_dir,
            transformer,
            None,
        )?)),
        #[cfg(feature = "transformer")]
        Backend::Cascade => Ok(Arc::new(transformer::TransformerBackend::load(
            models_dir,
            transformer,
            Some(transformer.cascade_min_confidence),
        )?)),
    }
}

/// The repository's `models/` as it was when the binary was built: what tests, benchmarks and
/// `train` use. Serving and `classify` use the built-in models instead ([`ModelSource`]).
pub fn default_models_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"))
}

/// One character with its Latin accent or Arabic letter variant folded away (what the urgency cues
/// and the intent model compare texts by).
pub(crate) fn fold_letter(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
        'ç' => 'c',
        'è' | 'é' | 'ê' | 'ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' => 'i',
        'ñ' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' => 'o',
        'ù' | 'ú' | 'û' | 'ü' => 'u',
        'ý' | 'ÿ' => 'y',
        'ß' => 's',
        // Arabic: hamza-carrying alefs to bare alef, teh marbuta to heh, alef maksura to yeh.
        'أ' | 'إ' | 'آ' => 'ا',
        'ة' => 'ه',
        'ى' => 'ي',
        other => other,
    }
}
