//! Model loading, batch encoding and classification.

use super::text::normalize;
use crate::{Sentiment, SentimentLabel};
use anyhow::Context;
use rust_bert::bert::{BertConfig, BertForSequenceClassification};
use rust_tokenizers::tokenizer::{BertTokenizer, Tokenizer, TruncationStrategy};
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// Longest input, in word pieces including `[CLS]` and `[SEP]`; longer texts are truncated.
pub const MAX_TOKENS: usize = 128;

/// Token id of `[PAD]` in the BERT uncased vocabulary (checked against the vocabulary at load).
const PAD_TOKEN: &str = "[PAD]";

/// Class names in class-index order, as written into `config.json` (`id2label`).
pub const LABELS: [&str; 3] = ["negative", "neutral", "positive"];

/// Tokenizer of the base model: BERT word pieces, lower-cased, accents kept (as the
/// all-MiniLM-L6-v2 tokenizer config: `do_lower_case`, `strip_accents` unset).
pub fn load_tokenizer(vocab_path: &Path) -> anyhow::Result<BertTokenizer> {
    let path = vocab_path
        .to_str()
        .with_context(|| format!("non-UTF-8 path {}", vocab_path.display()))?;
    BertTokenizer::from_file(path, true, false)
        .with_context(|| format!("cannot read vocabulary {}", vocab_path.display()))
}

/// Token ids of one normalised text: `[CLS] pieces [SEP]`, at most `max_tokens` long.
pub fn encode(tokenizer: &BertTokenizer, text: &str, max_tokens: usize) -> Vec<i64> {
    tokenizer
        .encode(
            &normalize(text),
            None,
            max_tokens,
            &TruncationStrategy::LongestFirst,
            0,
        )
        .token_ids
}

/// A padded batch: `input_ids` and `attention_mask`, both (batch, longest) int64.
pub struct Batch {
    /// Token ids, right-padded with `pad_id`.
    pub input_ids: Tensor,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
}

/// Pads token-id sequences to the longest one (dynamic padding) and builds the attention mask.
pub fn pad_batch(sequences: &[&[i64]], pad_id: i64, device: Device) -> Batch {
    let longest = sequences
        .iter()
        .map(|ids| ids.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut ids = Vec::with_capacity(sequences.len() * longest);
    let mut mask = Vec::with_capacity(sequences.len() * longest);
    for sequence in sequences {
        ids.extend_from_slice(sequence);
        ids.extend(std::iter::repeat_n(pad_id, longest - sequence.len()));
        mask.extend(std::iter::repeat_n(1i64, sequence.len()));
        mask.extend(std::iter::repeat_n(0i64, longest - sequence.len()));
    }
    let shape = [sequences.len() as i64, longest as i64];
    Batch {
        input_ids: Tensor::of_slice(&ids).view(shape).to_device(device),
        attention_mask: Tensor::of_slice(&mask).view(shape).to_device(device),
    }
}

/// Reads `config.json` and checks that it describes the three sentiment classes.
pub fn load_config(config_path: &Path) -> anyhow::Result<BertConfig> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let config: BertConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a BERT config", config_path.display()))?;
    let id2label = config
        .id2label
        .as_ref()
        .with_context(|| format!("{}: no id2label", config_path.display()))?;
    for (index, name) in LABELS.iter().enumerate() {
        anyhow::ensure!(
            id2label.get(&(index as i64)).map(String::as_str) == Some(*name),
            "{}: id2label must map {index} to {name}",
            config_path.display()
        );
    }
    anyhow::ensure!(
        id2label.len() == LABELS.len(),
        "{}: expected {} labels",
        config_path.display(),
        LABELS.len()
    );
    Ok(config)
}

/// Builds the classifier's variables in a fresh var store (random classifier head, no weights
/// loaded).
pub fn build(
    config: &BertConfig,
    device: Device,
) -> anyhow::Result<(nn::VarStore, BertForSequenceClassification)> {
    let vs = nn::VarStore::new(device);
    let model = BertForSequenceClassification::new(vs.root(), config)
        .map_err(|error| anyhow::anyhow!("cannot build the BERT classifier: {error}"))?;
    Ok((vs, model))
}

/// Turns class logits (batch, 3) into sentiments: softmax, label = arg-max, confidence = its
/// probability, score = p(positive) - p(negative).
pub fn sentiments_from_logits(logits: &Tensor) -> Vec<Sentiment> {
    let probabilities = logits.to_kind(Kind::Float).softmax(-1, Kind::Float);
    let rows: Vec<Vec<f32>> = Vec::<Vec<f32>>::from(&probabilities);
    rows.into_iter()
        .map(|p| {
            let (best, confidence) =
                p.iter()
                    .copied()
                    .enumerate()
                    .fold(
                        (0, f32::MIN),
                        |acc, (i, v)| if v > acc.1 { (i, v) } else { acc },
                    );
            Sentiment {
                label: SentimentLabel::ALL[best],
                score: (p[SentimentLabel::Positive.index()] - p[SentimentLabel::Negative.index()])
                    .clamp(-1.0, 1.0),
                confidence,
            }
        })
        .collect()
}

/// A loaded classifier. It is `Send` but not `Sync`: keep one owner thread per model, built on a
/// plain thread (not inside a tokio task).
pub struct TransformerClassifier {
    _vs: nn::VarStore,
    model: BertForSequenceClassification,
    tokenizer: BertTokenizer,
    pad_id: i64,
    device: Device,
}

impl TransformerClassifier {
    /// Loads `config.json`, `vocab.txt` and the weights file (f32 or f16 `.ot`; f16 weights are
    /// converted to f32 for CPU inference).
    pub fn load(
        config_path: &Path,
        vocab_path: &Path,
        weights_path: &Path,
    ) -> anyhow::Result<Self> {
        let config = load_config(config_path)?;
        let tokenizer = load_tokenizer(vocab_path)?;
        let device = Device::Cpu;
        let (mut vs, model) = build(&config, device)?;
        vs.load(weights_path)
            .with_context(|| format!("cannot load weights {}", weights_path.display()))?;
        Ok(Self::from_parts(vs, model, tokenizer))
    }

    /// Loads `config.json`, `vocab.txt` and `weights_file` from one directory.
    pub fn load_dir(dir: &Path, weights_file: &str) -> anyhow::Result<Self> {
        Self::load(
            &dir.join("config.json"),
            &dir.join("vocab.txt"),
            &dir.join(weights_file),
        )
    }

    /// Wraps an already built model (used by the trainer for validation).
    pub fn from_parts(
        vs: nn::VarStore,
        model: BertForSequenceClassification,
        tokenizer: BertTokenizer,
    ) -> Self {
        let pad_id = pad_id(&tokenizer);
        let device = vs.device();
        Self {
            _vs: vs,
            model,
            tokenizer,
            pad_id,
            device,
        }
    }

    /// Classifies a batch of raw texts (normalised and encoded here), in input order.
    pub fn classify_batch(&self, texts: &[&str]) -> Vec<Sentiment> {
        if texts.is_empty() {
            return Vec::new();
        }
        let encoded: Vec<Vec<i64>> = texts
            .iter()
            .map(|text| encode(&self.tokenizer, text, MAX_TOKENS))
            .collect();
        let refs: Vec<&[i64]> = encoded.iter().map(Vec::as_slice).collect();
        self.classify_encoded(&refs)
    }

    /// Encodes one raw text as this model reads it ([`encode`] with [`MAX_TOKENS`]).
    pub fn encode(&self, text: &str) -> Vec<i64> {
        encode(&self.tokenizer, text, MAX_TOKENS)
    }

    /// Class logits (negative, neutral, positive) of already encoded texts, one padded batch:
    /// what distillation targets are made from.
    pub fn logits_encoded(&self, sequences: &[&[i64]]) -> Vec<[f32; 3]> {
        if sequences.is_empty() {
            return Vec::new();
        }
        let logits = logits(&self.model, sequences, self.pad_id, self.device).to_kind(Kind::Float);
        Vec::<Vec<f32>>::from(&logits)
            .into_iter()
            .map(|row| [row[0], row[1], row[2]])
            .collect()
    }

    /// Classifies already encoded texts ([`encode`]) as one dynamically padded batch.
    pub fn classify_encoded(&self, sequences: &[&[i64]]) -> Vec<Sentiment> {
        if sequences.is_empty() {
            return Vec::new();
        }
        let logits = logits(&self.model, sequences, self.pad_id, self.device);
        sentiments_from_logits(&logits)
    }
}

/// Id of `[PAD]` in the tokenizer's vocabulary.
pub fn pad_id(tokenizer: &BertTokenizer) -> i64 {
    tokenizer.convert_tokens_to_ids(&[PAD_TOKEN])[0]
}

/// Inference logits (batch, 3) of encoded sequences, without gradients and without dropout.
pub fn logits(
    model: &BertForSequenceClassification,
    sequences: &[&[i64]],
    pad_id: i64,
    device: Device,
) -> Tensor {
    let batch = pad_batch(sequences, pad_id, device);
    tch::no_grad(|| {
        model
            .forward_t(
                Some(&batch.input_ids),
                Some(&batch.attention_mask),
                None,
                None,
                None,
                false,
            )
            .logits
    })
}
