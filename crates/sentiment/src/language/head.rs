//! The fast language head: a multinomial logistic regression over hashed character n-grams and
//! word unigrams of the cleaned, lower-cased text (fastText-lid style, without the embedding),
//! int8 weights, one 16-byte row per hash bucket.
//!
//! It names a few languages (those it was trained on, stored in the model file) or says "none of
//! them" (the `other` class, trained on sentences of many other languages); [`super`] asks
//! whatlang whenever the head says `other` or its probability is below the model's
//! [`LanguageHead::min_confidence`], among the languages outside the head only when the head is
//! sure of `other` ([`LanguageHead::min_other_confidence`]).
//!
//! Features: the text (already through [`super::clean_for_detection`]) is split into words,
//! maximal runs of alphabetic characters, each lower-cased and padded with one space on each
//! side (`" word "`); every character n-gram of the padded word with `char_min ≤ n ≤ char_max`
//! (a lone space excluded) is a feature, and so is the word itself. Hashing is fixed by this file
//! (a rotate–xor–multiply chain over Unicode scalar values, the top bits picking the bucket), so a
//! saved model gives the same features on every build and platform; any change to the features or
//! the hashing must bump [`FORMAT_VERSION`].
//!
//! Prediction allocates nothing: features are hashed on the fly and their rows summed into a
//! stack array of 16 `i32`.

use crate::hashing::{chain, fmix64, salted, SplitMix64};
use std::fmt;

/// Magic bytes at the start of every serialised head.
const MAGIC: &[u8; 8] = b"RPLANGID";
/// Serialisation format version; also versions the features and the hashing.
pub const FORMAT_VERSION: u16 = 1;
/// Most classes a head can have (the width of a weight row).
pub const MAX_CLASSES: usize = 16;
/// The label of the "none of the head's languages" class in the model file and in
/// [`LanguageHead::labels`].
pub const OTHER: &str = "other";
/// Longest character n-gram a head may use.
pub const MAX_CHAR_N: u8 = 5;
/// Default hash seed ("RAPPORT!" in ASCII).
const DEFAULT_HASH_SEED: u64 = 0x5241_5050_4f52_5421;
const SALT_WORD: u64 = 0x11;
const SALT_CHAR: u64 = 0x12;

/// One bucket's weights, one signed byte per class (unused classes are 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(16))]
struct Row([i8; MAX_CLASSES]);

/// Lower-cases one character as `char::to_lowercase` (its first character) does, with fast paths
/// for ASCII, Latin-1 and caseless scripts (Hebrew to Myanmar, kana and CJK, Hangul).
#[inline(always)]
fn lower(c: char) -> char {
    let u = c as u32;
    match u {
        0..=0x7f => c.to_ascii_lowercase(),
        // À–Þ but ×: their lower case is 0x20 above.
        0xc0..=0xde if u != 0xd7 => char::from_u32(u + 0x20).unwrap_or(c),
        0x80..=0xbf | 0xd7..=0xff => c,
        0x0590..=0x109f | 0x3040..=0x9fff | 0xac00..=0xd7a3 => c,
        _ => c.to_lowercase().next().unwrap_or(c),
    }
}

/// `char::is_alphabetic`, with fast paths for ASCII, Latin-1, Latin Extended-A and -B and
/// Arabic's base letters.
#[inline(always)]
fn is_letter(c: char) -> bool {
    let u = c as u32;
    match u {
        0..=0x7f => c.is_ascii_alphabetic(),
        0xc0..=0x24f => u != 0xd7 && u != 0xf7,
        0x80..=0xbf => matches!(u, 0xaa | 0xb5 | 0xba),
        0x0621..=0x063a | 0x0641..=0x064a => true,
        _ => c.is_alphabetic(),
    }
}

/// Which features a head uses and how they are hashed (stored in the model file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureConfig {
    /// log2 of the number of hash buckets (rows of 16 bytes each).
    pub buckets_log2: u8,
    /// Shortest character n-gram, at least 1.
    pub char_min: u8,
    /// Longest character n-gram, at most [`MAX_CHAR_N`].
    pub char_max: u8,
    /// Whether each word is a feature too.
    pub words: bool,
    /// Seed of the hashes.
    pub hash_seed: u64,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            buckets_log2: 16,
            char_min: 2,
            char_max: 4,
            words: true,
            hash_seed: DEFAULT_HASH_SEED,
        }
    }
}

/// The hashing state derived from a [`FeatureConfig`].
#[derive(Clone, Copy, Debug)]
struct Hasher {
    shift: u32,
    char_min: usize,
    char_max: usize,
    words: bool,
    seed_char: u64,
    seed_word: u64,
}

impl Hasher {
    fn new(f: &FeatureConfig) -> Self {
        Self {
            shift: 64 - u32::from(f.buckets_log2),
            char_min: usize::from(f.char_min),
            char_max: usize::from(f.char_max),
            words: f.words,
            seed_char: salted(f.hash_seed, SALT_CHAR),
            seed_word: salted(f.hash_seed, SALT_WORD),
        }
    }

    /// Feeds one character of a padded word: emits the n-grams that end with it.
    #[inline(always)]
    fn step(
        &self,
        c: u32,
        hashes: &mut [u64; MAX_CHAR_N as usize],
        filled: &mut usize,
        emit: &mut impl FnMut(usize),
    ) {
        *filled += 1;
        let top = self.char_max.min(*filled);
        // Longest first, so that each reads its shorter predecessor before it is replaced.
        let mut n = top;
        while n > 1 {
            hashes[n - 1] = chain(hashes[n - 2], c);
            n -= 1;
        }
        hashes[0] = chain(self.seed_char, c);
        // A lone space is no feature.
        let first = if c == u32::from(b' ') {
            self.char_min.max(2)
        } else {
            self.char_min
        };
        for h in hashes.iter().take(top).skip(first - 1) {
            emit((h >> self.shift) as usize);
        }
    }

    /// Calls `emit` with the bucket of every feature of `cleaned`, in text order.
    #[inline(always)]
    fn features(&self, cleaned: &str, mut emit: impl FnMut(usize)) {
        // hashes[n - 1]: the hash of the n-gram ending at the last character fed.
        let mut hashes = [0u64; MAX_CHAR_N as usize];
        let mut filled = 0usize; // characters of the padded word fed so far
        let mut word = self.seed_word;
        let mut in_word = false;
        let space = u32::from(b' ');
        for c in cleaned.chars() {
            if is_letter(c) {
                if !in_word {
                    in_word = true;
                    filled = 0;
                    word = self.seed_word;
                    self.step(space, &mut hashes, &mut filled, &mut emit);
                }
                let c = lower(c) as u32;
                word = chain(word, c);
                self.step(c, &mut hashes, &mut filled, &mut emit);
            } else if in_word {
                in_word = false;
                self.step(space, &mut hashes, &mut filled, &mut emit);
                if self.words {
                    emit((fmix64(word) >> self.shift) as usize);
                }
            }
        }
        if in_word {
            self.step(space, &mut hashes, &mut filled, &mut emit);
            if self.words {
                emit((fmix64(word) >> self.shift) as usize);
            }
        }
    }
}

/// What the head says about a text.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadScores {
    /// Index (into [`LanguageHead::labels`]) of the most probable class.
    pub best: usize,
    /// Its probability, in [0, 1].
    pub probability: f32,
    /// How many features the text had (0: no letters).
    pub features: usize,
}

/// A trained language head (see the module documentation).
#[derive(Clone)]
pub struct LanguageHead {
    features: FeatureConfig,
    hasher: Hasher,
    labels: Vec<&'static str>,
    /// Per class: the weight of one unit of the int8 sum.
    scales: Vec<f32>,
    biases: Vec<f32>,
    /// Below this probability (or when the best class is [`OTHER`]) the caller asks whatlang.
    min_confidence: f32,
    /// At or above this probability of [`OTHER`] the caller asks whatlang among the languages
    /// outside the head only.
    min_other_confidence: f32,
    rows: Vec<Row>,
}

impl fmt::Debug for LanguageHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LanguageHead")
            .field("features", &self.features)
            .field("labels", &self.labels)
            .field("min_confidence", &self.min_confidence)
            .field("min_other_confidence", &self.min_other_confidence)
            .finish()
    }
}

/// A model file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// Not a language head, or a version this build does not read.
    #[error("not a language head model (bad magic or version)")]
    Format,
    /// Shorter than its header says.
    #[error("language head model truncated")]
    Truncated,
    /// A setting out of range.
    #[error("language head model invalid: {0}")]
    Invalid(String),
}

/// The static ISO 639-1 code of `label` (a whatlang language, or [`OTHER`]), so that answers can
/// be `&'static str` without leaking.
fn static_label(label: &str) -> Option<&'static str> {
    if label == OTHER {
        return Some(OTHER);
    }
    whatlang::Lang::all()
        .iter()
        .map(|lang| super::iso_639_1(*lang))
        .find(|code| *code == label)
}

/// Features gathered before their rows are summed.
const BATCH: usize = 256;

/// Adds the rows of `buckets` (at most [`BATCH`]) to `acc`.
#[inline(always)]
fn sum_rows(rows: &[Row], buckets: &[u32], acc: &mut [i32; MAX_CLASSES]) {
    let mut sum = [0i16; MAX_CLASSES];
    for &bucket in buckets {
        let row = &rows[bucket as usize].0;
        for k in 0..MAX_CLASSES {
            sum[k] += i16::from(row[k]);
        }
    }
    for k in 0..MAX_CLASSES {
        acc[k] += i32::from(sum[k]);
    }
}

fn softmax_best(logits: &[f32]) -> (usize, f32) {
    let mut best = 0;
    for (k, z) in logits.iter().enumerate() {
        if *z > logits[best] {
            best = k;
        }
    }
    let max = logits[best];
    let total: f32 = logits.iter().map(|z| (z - max).exp()).sum();
    (best, 1.0 / total)
}

impl LanguageHead {
    /// The class labels: ISO 639-1 codes and [`OTHER`].
    pub fn labels(&self) -> &[&'static str] {
        &self.labels
    }

    /// The feature settings.
    pub fn feature_config(&self) -> FeatureConfig {
        self.features
    }

    /// Below this probability of its best class the head's answer is not taken (chosen on
    /// validation data when the model was trained).
    pub fn min_confidence(&self) -> f32 {
        self.min_confidence
    }

    /// At or above this probability of [`OTHER`], the text is taken to be in none of the head's
    /// languages (whatlang then chooses among the others); chosen on validation data too.
    pub fn min_other_confidence(&self) -> f32 {
        self.min_other_confidence
    }

    /// The same head with other thresholds ([`Self::min_confidence`],
    /// [`Self::min_other_confidence`]).
    pub fn with_thresholds(mut self, min_confidence: f32, min_other_confidence: f32) -> Self {
        self.min_confidence = min_confidence;
        self.min_other_confidence = min_other_confidence;
        self
    }

    /// Size of the weight table in bytes.
    pub fn table_bytes(&self) -> usize {
        self.rows.len() * MAX_CLASSES
    }

    /// The head's reading of `cleaned` (a text through [`super::clean_for_detection`]); with no
    /// features the best class is [`OTHER`] (or the first) with probability 0.
    pub fn scores(&self, cleaned: &str) -> HeadScores {
        // Buckets are gathered in batches and their rows summed in a tight loop (independent
        // loads, 16 lanes of i16: at most BATCH · 127 < 2^15 per batch).
        let mut acc = [0i32; MAX_CLASSES];
        let mut batch = [0u32; BATCH];
        let mut len = 0usize;
        let mut n = 0usize;
        let rows = &self.rows[..];
        self.hasher.features(cleaned, |bucket| {
            batch[len] = bucket as u32;
            len += 1;
            if len == BATCH {
                sum_rows(rows, &batch, &mut acc);
                n += len;
                len = 0;
            }
        });
        sum_rows(rows, &batch[..len], &mut acc);
        n += len;
        let classes = self.labels.len();
        if n == 0 {
            let other = self.labels.iter().position(|l| *l == OTHER).unwrap_or(0);
            return HeadScores {
                best: other,
                probability: 0.0,
                features: 0,
            };
        }
        let norm = 1.0 / (n as f32).sqrt();
        let mut logits = [0f32; MAX_CLASSES];
        for k in 0..classes {
            logits[k] = self.biases[k] + self.scales[k] * acc[k] as f32 * norm;
        }
        let (best, probability) = softmax_best(&logits[..classes]);
        HeadScores {
            best,
            probability,
            features: n,
        }
    }

    /// Serialises the head (little-endian; see [`Self::from_bytes`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.table_bytes());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.push(self.features.buckets_log2);
        out.push(self.features.char_min);
        out.push(self.features.char_max);
        out.push(u8::from(self.features.words));
        out.extend_from_slice(&self.features.hash_seed.to_le_bytes());
        out.extend_from_slice(&self.min_confidence.to_le_bytes());
        out.extend_from_slice(&self.min_other_confidence.to_le_bytes());
        out.push(self.labels.len() as u8);
        for ((label, scale), bias) in self.labels.iter().zip(&self.scales).zip(&self.biases) {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
            out.extend_from_slice(&scale.to_le_bytes());
            out.extend_from_slice(&bias.to_le_bytes());
        }
        for row in &self.rows {
            out.extend(row.0.iter().map(|w| *w as u8));
        }
        out
    }

    /// Reads a head written by [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HeadError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(8)? != MAGIC {
            return Err(HeadError::Format);
        }
        if u16::from_le_bytes(r.array()?) != FORMAT_VERSION {
            return Err(HeadError::Format);
        }
        let [buckets_log2, char_min, char_max, words] = r.array()?;
        let hash_seed = u64::from_le_bytes(r.array()?);
        let min_confidence = f32::from_le_bytes(r.array()?);
        let min_other_confidence = f32::from_le_bytes(r.array()?);
        let features = FeatureConfig {
            buckets_log2,
            char_min,
            char_max,
            words: words != 0,
            hash_seed,
        };
        if !(8..=24).contains(&buckets_log2)
            || char_min == 0
            || char_min > char_max
            || char_max > MAX_CHAR_N
            || words > 1
        {
            return Err(HeadError::Invalid(format!("{features:?}")));
        }
        let [classes] = r.array()?;
        let classes = usize::from(classes);
        if !(2..=MAX_CLASSES).contains(&classes) {
            return Err(HeadError::Invalid(format!("{classes} classes")));
        }
        let mut labels = Vec::with_capacity(classes);
        let mut scales = Vec::with_capacity(classes);
        let mut biases = Vec::with_capacity(classes);
        for _ in 0..classes {
            let [len] = r.array()?;
            let label = std::str::from_utf8(r.take(usize::from(len))?)
                .map_err(|_| HeadError::Invalid("label not UTF-8".into()))?;
            let label = static_label(label)
                .ok_or_else(|| HeadError::Invalid(format!("unknown label {label:?}")))?;
            labels.push(label);
            scales.push(f32::from_le_bytes(r.array()?));
            biases.push(f32::from_le_bytes(r.array()?));
        }
        let buckets = 1usize << buckets_log2;
        let table = r.take(buckets * MAX_CLASSES)?;
        if r.at != bytes.len() {
            return Err(HeadError::Invalid("trailing bytes".into()));
        }
        let rows = table
            .chunks_exact(MAX_CLASSES)
            .map(|chunk| {
                let mut row = Row::default();
                for (w, b) in row.0.iter_mut().zip(chunk) {
                    *w = *b as i8;
                }
                row
            })
            .collect();
        Ok(Self {
            hasher: Hasher::new(&features),
            features,
            labels,
            scales,
            biases,
            min_confidence,
            min_other_confidence,
            rows,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HeadError> {
        let end = self.at.checked_add(n).ok_or(HeadError::Truncated)?;
        let out = self.bytes.get(self.at..end).ok_or(HeadError::Truncated)?;
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], HeadError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }
}

// ---------------------------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------------------------

/// Training settings; [`HeadTrainConfig::default`] gives the shipped model's.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadTrainConfig {
    /// Features and hashing.
    pub features: FeatureConfig,
    /// Passes over the examples (default 5).
    pub epochs: usize,
    /// AdaGrad base learning rate (default 0.2).
    pub learning_rate: f32,
    /// Weight each example by `n / (classes · n_class)`, so that every class counts equally
    /// (default true).
    pub class_balanced: bool,
    /// Seed of the example shuffling; training is deterministic for a given seed (default 42).
    pub seed: u64,
    /// Stored as [`LanguageHead::min_confidence`] (the trainer's caller picks the thresholds on
    /// validation data and sets them with [`LanguageHead::with_thresholds`]).
    pub min_confidence: f32,
    /// Stored as [`LanguageHead::min_other_confidence`].
    pub min_other_confidence: f32,
}

impl Default for HeadTrainConfig {
    fn default() -> Self {
        Self {
            features: FeatureConfig::default(),
            epochs: 5,
            learning_rate: 0.2,
            class_balanced: true,
            seed: 42,
            min_confidence: 0.5,
            min_other_confidence: 0.9,
        }
    }
}

/// Trains a head on `examples` (raw texts, cleaned here with [`super::clean_for_detection`],
/// and the index of their label in `labels`). `labels` are ISO 639-1 codes of whatlang
/// languages or [`OTHER`]. Deterministic for a given `config.seed`; single-threaded.
pub fn train(
    examples: &[(&str, usize)],
    labels: &[&str],
    config: &HeadTrainConfig,
) -> Result<LanguageHead, HeadError> {
    let classes = labels.len();
    if !(2..=MAX_CLASSES).contains(&classes) {
        return Err(HeadError::Invalid(format!("{classes} classes")));
    }
    let labels: Vec<&'static str> = labels
        .iter()
        .map(|l| static_label(l).ok_or_else(|| HeadError::Invalid(format!("unknown label {l:?}"))))
        .collect::<Result<_, _>>()?;
    let f = config.features;
    if !(8..=24).contains(&f.buckets_log2)
        || f.char_min == 0
        || f.char_min > f.char_max
        || f.char_max > MAX_CHAR_N
    {
        return Err(HeadError::Invalid(format!("{f:?}")));
    }
    let hasher = Hasher::new(&f);
    // Features of every example, flattened.
    let mut offsets = Vec::with_capacity(examples.len() + 1);
    let mut feats: Vec<u32> = Vec::new();
    let mut ys = Vec::with_capacity(examples.len());
    let mut cleaned = String::new();
    offsets.push(0usize);
    for (text, label) in examples {
        if *label >= classes {
            return Err(HeadError::Invalid(format!("label {label} of {classes}")));
        }
        super::clean_for_detection(text, &mut cleaned);
        hasher.features(&cleaned, |b| feats.push(b as u32));
        offsets.push(feats.len());
        ys.push(*label);
    }
    let mut counts = vec![0usize; classes];
    for y in &ys {
        counts[*y] += 1;
    }
    let class_weight: Vec<f32> = counts
        .iter()
        .map(|&c| {
            if !config.class_balanced || c == 0 {
                1.0
            } else {
                ys.len() as f32 / (classes as f32 * c as f32)
            }
        })
        .collect();

    let buckets = 1usize << f.buckets_log2;
    let mut w = vec![0f32; buckets * classes];
    let mut g = vec![0f32; buckets * classes];
    let mut bias = vec![0f32; classes];
    let mut gb = vec![0f32; classes];
    let mut order: Vec<usize> = (0..ys.len()).collect();
    let mut rng = SplitMix64(config.seed);
    let lr = config.learning_rate;
    let mut logits = vec![0f32; classes];
    let mut grad = vec![0f32; classes];
    for _ in 0..config.epochs {
        for i in (1..order.len()).rev() {
            let j = rng.below(i + 1);
            order.swap(i, j);
        }
        for &e in &order {
            let fs = &feats[offsets[e]..offsets[e + 1]];
            if fs.is_empty() {
                continue;
            }
            let norm = 1.0 / (fs.len() as f32).sqrt();
            logits.copy_from_slice(&bias);
            for &b in fs {
                let row = &w[b as usize * classes..][..classes];
                for k in 0..classes {
                    logits[k] += row[k] * norm;
                }
            }
            let (best, _) = softmax_best(&logits);
            let max = logits[best];
            let total: f32 = logits.iter().map(|z| (z - max).exp()).sum();
            let cw = class_weight[ys[e]];
            for k in 0..classes {
                let p = (logits[k] - max).exp() / total;
                let y = if k == ys[e] { 1.0 } else { 0.0 };
                grad[k] = (p - y) * cw;
            }
            for &b in fs {
                let base = b as usize * classes;
                for k in 0..classes {
                    let gk = grad[k] * norm;
                    if gk == 0.0 {
                        continue;
                    }
                    g[base + k] += gk * gk;
                    w[base + k] -= lr * gk / (g[base + k].sqrt() + 1e-8);
                }
            }
            for k in 0..classes {
                gb[k] += grad[k] * grad[k];
                bias[k] -= lr * grad[k] / (gb[k].sqrt() + 1e-8);
            }
        }
    }
    // int8, one scale per class.
    let mut scales = vec![0f32; classes];
    for k in 0..classes {
        let max = (0..buckets)
            .map(|b| w[b * classes + k].abs())
            .fold(0f32, f32::max);
        scales[k] = if max > 0.0 { max / 127.0 } else { 1.0 };
    }
    let rows = (0..buckets)
        .map(|b| {
            let mut row = Row::default();
            for k in 0..classes {
                row.0[k] = (w[b * classes + k] / scales[k])
                    .round()
                    .clamp(-127.0, 127.0) as i8;
            }
            row
        })
        .collect();
    Ok(LanguageHead {
        features: f,
        hasher,
        labels,
        scales,
        biases: bias,
        min_confidence: config.min_confidence,
        min_other_confidence: config.min_other_confidence,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features_of(f: &FeatureConfig, text: &str) -> Vec<usize> {
        let mut out = Vec::new();
        Hasher::new(f).features(text, |b| out.push(b));
        out
    }

    #[test]
    fn fast_paths_agree_with_the_standard_library() {
        for u in 0..0x11_0000u32 {
            let Some(c) = char::from_u32(u) else { continue };
            assert_eq!(is_letter(c), c.is_alphabetic(), "{c:?} U+{u:04X}");
            assert_eq!(
                lower(c),
                c.to_lowercase().next().unwrap_or(c),
                "{c:?} U+{u:04X}"
            );
        }
    }

    #[test]
    fn features_are_char_ngrams_of_padded_words_and_words() {
        let f = FeatureConfig {
            buckets_log2: 24,
            char_min: 1,
            char_max: 4,
            words: true,
            hash_seed: 7,
        };
        // " ab ": 1-grams a, b; 2-grams " a", "ab", "b "; 3-grams " ab", "ab "; 4-gram " ab ";
        // and the word: 9.
        assert_eq!(features_of(&f, "ab").len(), 9);
        // Case, punctuation and the spacing between words do not change the features.
        assert_eq!(features_of(&f, "Ab, CD"), features_of(&f, "ab   cd"));
        assert!(features_of(&f, "12 !! ☺").is_empty());
        let no_words = FeatureConfig { words: false, ..f };
        assert_eq!(features_of(&no_words, "ab").len(), 8);
    }

    fn toy() -> (Vec<(&'static str, usize)>, [&'static str; 3]) {
        let en = [
            "the cat is on the table",
            "where is my order",
            "this is the worst service",
            "thank you so much for the help",
        ];
        let fr = [
            "le chat est sur la table",
            "où est ma commande",
            "c'est le pire service",
            "merci beaucoup pour votre aide",
        ];
        let other = [
            "de kat zit op de tafel",
            "waar is mijn bestelling",
            "kedi masanın üstünde",
            "siparişim nerede",
        ];
        let mut examples = Vec::new();
        for (k, set) in [en, fr, other].iter().enumerate() {
            examples.extend(set.iter().map(|t| (*t, k)));
        }
        (examples, ["en", "fr", OTHER])
    }

    #[test]
    fn learns_toy_languages_deterministically_and_round_trips() {
        let (examples, labels) = toy();
        let config = HeadTrainConfig {
            features: FeatureConfig {
                buckets_log2: 12,
                ..FeatureConfig::default()
            },
            epochs: 20,
            ..HeadTrainConfig::default()
        };
        let head = train(&examples, &labels, &config).unwrap();
        for (text, k) in &examples {
            assert_eq!(head.scores(text).best, *k, "{text}");
        }
        let again = train(&examples, &labels, &config).unwrap();
        assert_eq!(head.to_bytes(), again.to_bytes());
        let read = LanguageHead::from_bytes(&head.to_bytes()).unwrap();
        assert_eq!(read.labels(), &["en", "fr", OTHER]);
        for (text, _) in &examples {
            assert_eq!(read.scores(text), head.scores(text));
        }
        assert_eq!(read.scores("").features, 0);
    }

    #[test]
    fn bad_models_are_refused() {
        let (examples, labels) = toy();
        let config = HeadTrainConfig {
            features: FeatureConfig {
                buckets_log2: 10,
                ..FeatureConfig::default()
            },
            ..HeadTrainConfig::default()
        };
        let bytes = train(&examples, &labels, &config).unwrap().to_bytes();
        assert!(matches!(
            LanguageHead::from_bytes(&bytes[..bytes.len() - 1]),
            Err(HeadError::Truncated)
        ));
        assert!(matches!(
            LanguageHead::from_bytes(b"NOTAHEAD.."),
            Err(HeadError::Format)
        ));
        assert!(train(&examples, &["en", "xx", OTHER], &config).is_err());
    }
}
