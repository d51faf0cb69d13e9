//! Fast 3-class sentiment classifier: multinomial logistic regression over hashed features.
//!
//! Text is normalised the way the tweet training data is (lower-cased, `@mentions` → `@user`,
//! URLs → `http`, elongations squeezed to two repeats), split into word and symbol tokens, and
//! turned into hashed features: word 1–2-grams (optionally with negation marking of the words
//! after a negator up to the next clause punctuation) and character n-grams of each token padded
//! with spaces (`" word "`), iterated over Unicode scalar values so that emoji are features too.
//! Each feature indexes one of `2^buckets_log2` rows of three class weights.
//!
//! Word and character features are normalised separately (each group scaled to unit L2 norm),
//! and training weights the classes equally, which is what macro-recall rewards.
//!
//! Hashing is fixed by this file, never by the standard library: xxh3 (seeded with a constant
//! stored in the model file) for words, a murmur3 finaliser to combine word hashes into bigrams,
//! and a rotate–xor–multiply chain over Unicode scalar values for character n-grams (the top
//! bits of the last product pick the bucket). A saved model therefore gives the same features on
//! every build and platform; any change to normalisation or hashing must bump `FORMAT_VERSION`.
//!
//! Prediction extracts the features on the fly into two fixed 256-entry stack buffers (word and
//! character features) and accumulates the class scores batch by batch; apart from a reused
//! thread-local token buffer it allocates nothing.

use std::cell::RefCell;
use std::fmt;
use std::time::{Duration, Instant};

use crate::hashing::{chain, fmix64, salted, SplitMix64, CHAIN_K};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Sentiment classes in fixed order; class indices used throughout refer to this array.
pub const CLASSES: [&str; 3] = ["negative", "neutral", "positive"];

const NUM_CLASSES: usize = 3;

/// Magic bytes at the start of every serialised model.
const MAGIC: &[u8; 8] = b"RPFASTLR";
/// Current serialisation format version; also versions the tokenisation and hashing.
const FORMAT_VERSION: u16 = 1;
/// Default hash seed ("RAPPORT!" in ASCII).
const DEFAULT_HASH_SEED: u64 = 0x5241_5050_4f52_5421;
/// Smallest and largest accepted table sizes (log2 of the bucket count).
const MIN_BUCKETS_LOG2: u8 = 8;
const MAX_BUCKETS_LOG2: u8 = 26;
/// Largest accepted character n-gram length.
const MAX_CHAR_N: u8 = 6;
/// Largest accepted word n-gram length.
const MAX_WORD_N: u8 = 3;
/// Scratch buffers larger than this are released after a call instead of being kept.
const SCRATCH_KEEP: usize = 1 << 16;

/// How the weights are stored in memory and in the model file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantization {
    /// 32-bit floats: 12 bytes per bucket.
    F32,
    /// IEEE half floats: 6 bytes per bucket.
    F16,
    /// Signed bytes with one scale per class (`max |w| / 127`): 3 bytes per bucket.
    I8,
}

impl Quantization {
    fn code(self) -> u8 {
        match self {
            Quantization::F32 => 0,
            Quantization::F16 => 1,
            Quantization::I8 => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Quantization::F32),
            1 => Some(Quantization::F16),
            2 => Some(Quantization::I8),
            _ => None,
        }
    }

    /// Bytes used per bucket (all three classes).
    pub fn bytes_per_bucket(self) -> usize {
        match self {
            Quantization::F32 => 12,
            Quantization::F16 => 6,
            Quantization::I8 => 3,
        }
    }
}

/// Training settings. Every field is public; [`TrainConfig::default`] gives the tuned defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training data (default 5).
    pub epochs: usize,
    /// AdaGrad base learning rate (default 0.1).
    pub learning_rate: f32,
    /// L2 penalty applied (lazily) to the weights touched by each example (default 0: on val,
    /// 1e-6 changed nothing and 1e-3 to 1e-2 did not help).
    pub l2: f32,
    /// log2 of the number of hash buckets (default 20, i.e. 1,048,576 rows).
    pub buckets_log2: u8,
    /// Seed for the example shuffling; training is deterministic for a given seed (default 42).
    pub seed: u64,
    /// Weight each example by `n / (3 · n_class)` so that every class counts equally (default true).
    pub class_balanced: bool,
    /// Longest word n-gram: 1 = unigrams, 2 = uni+bigrams, 3 = up to trigrams (default 2).
    pub word_ngrams: u8,
    /// Shortest character n-gram, at least 2 (default 2).
    pub char_ngram_min: u8,
    /// Longest character n-gram, at most 6; 0 disables character n-grams (default 5).
    pub char_ngram_max: u8,
    /// Mark words after a negator (not, no, never, …n't) up to clause punctuation (default
    /// false: word bigrams already carry "not good", and on val it did not help).
    pub negation: bool,
    /// Squeeze runs of 3+ identical characters to two ("soooo" → "soo") (default true).
    pub squeeze_elongation: bool,
    /// Scale each text's feature vector to unit L2 norm, i.e. by 1/sqrt(feature count) (default true).
    pub normalize: bool,
    /// With `normalize`, normalise word features and character n-gram features separately,
    /// each group to unit norm (default true).
    pub group_norm: bool,
    /// Weight storage of the returned model (default [`Quantization::I8`]).
    pub quantization: Quantization,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 5,
            learning_rate: 0.1,
            l2: 0.0,
            buckets_log2: 20,
            seed: 42,
            class_balanced: true,
            word_ngrams: 2,
            char_ngram_min: 2,
            char_ngram_max: 5,
            negation: false,
            squeeze_elongation: true,
            normalize: true,
            group_norm: true,
            quantization: Quantization::I8,
        }
    }
}

/// Progress information passed to the training callback after every epoch.
#[derive(Clone, Debug)]
pub struct EpochReport {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Total number of epochs.
    pub epochs: usize,
    /// Mean (sample-weighted) cross-entropy over the epoch, measured before each update.
    pub mean_loss: f64,
    /// Fraction of training examples predicted correctly during the epoch (before each update).
    pub train_accuracy: f64,
    /// Wall time since training started (includes feature extraction).
    pub elapsed: Duration,
}

/// Class probabilities for one text, in the order of [`CLASSES`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// Softmax probabilities; finite, non-negative, summing to 1.
    pub probabilities: [f32; 3],
}

impl Prediction {
    /// Index (into [`CLASSES`]) of the most probable class; ties go to the lower index.
    pub fn class_index(&self) -> usize {
        let p = &self.probabilities;
        let mut best = 0;
        for c in 1..NUM_CLASSES {
            if p[c] > p[best] {
                best = c;
            }
        }
        best
    }

    /// Name of the most probable class.
    pub fn label(&self) -> &'static str {
        CLASSES[self.class_index()]
    }
}

/// Why a serialised model could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelError {
    /// The input ended before the expected data.
    Truncated,
    /// The input does not start with the model magic bytes.
    BadMagic,
    /// The file was written by an unknown format version.
    UnsupportedVersion(u16),
    /// The checksum does not match the contents.
    ChecksumMismatch,
    /// The header or the data hold values this code cannot use.
    Invalid(&'static str),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Truncated => write!(f, "model data is truncated"),
            ModelError::BadMagic => write!(f, "not a linear sentiment model (bad magic)"),
            ModelError::UnsupportedVersion(v) => write!(f, "unsupported model format version {v}"),
            ModelError::ChecksumMismatch => write!(f, "model checksum mismatch (corrupt data)"),
            ModelError::Invalid(what) => write!(f, "invalid model: {what}"),
        }
    }
}

impl std::error::Error for ModelError {}

/// Feature extraction settings; stored in the model file so that a model always extracts the
/// features it was trained with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Features {
    buckets_log2: u8,
    word_ngrams: u8,
    char_min: u8,
    char_max: u8,
    negation: bool,
    squeeze: bool,
    normalize: bool,
    group_norm: bool,
    hash_seed: u64,
}

impl Features {
    fn from_config(config: &TrainConfig) -> Self {
        let char_max = config.char_ngram_max.min(MAX_CHAR_N);
        let char_min = config.char_ngram_min.clamp(2, MAX_CHAR_N);
        Features {
            buckets_log2: config
                .buckets_log2
                .clamp(MIN_BUCKETS_LOG2, MAX_BUCKETS_LOG2),
            word_ngrams: config.word_ngrams.min(MAX_WORD_N),
            char_min,
            char_max: if char_max < char_min { 0 } else { char_max },
            negation: config.negation,
            squeeze: config.squeeze_elongation,
            normalize: config.normalize,
            group_norm: config.group_norm,
            hash_seed: DEFAULT_HASH_SEED,
        }
    }

    fn flags(&self) -> u8 {
        (self.negation as u8)
            | ((self.squeeze as u8) << 1)
            | ((self.normalize as u8) << 2)
            | ((self.group_norm as u8) << 3)
    }
}

/// Weight table, one row of three class weights per bucket.
#[derive(Clone, Debug)]
enum Weights {
    F32(Vec<[f32; 3]>),
    F16(Vec<[u16; 3]>),
    I8 { rows: Vec<[i8; 3]>, scale: [f32; 3] },
}

impl Weights {
    fn quantization(&self) -> Quantization {
        match self {
            Weights::F32(_) => Quantization::F32,
            Weights::F16(_) => Quantization::F16,
            Weights::I8 { .. } => Quantization::I8,
        }
    }

    fn row(&self, i: usize) -> [f32; 3] {
        match self {
            Weights::F32(r) => r[i],
            Weights::F16(r) => r[i].map(f16_to_f32),
            Weights::I8 { rows, scale } => {
                let q = rows[i];
                [
                    q[0] as f32 * scale[0],
                    q[1] as f32 * scale[1],
                    q[2] as f32 * scale[2],
                ]
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Weights::F32(r) => r.len(),
            Weights::F16(r) => r.len(),
            Weights::I8 { rows, .. } => rows.len(),
        }
    }

    fn from_f32(rows: &[[f32; 3]], q: Quantization) -> Weights {
        match q {
            Quantization::F32 => Weights::F32(rows.to_vec()),
            Quantization::F16 => Weights::F16(rows.iter().map(|r| r.map(f32_to_f16)).collect()),
            Quantization::I8 => {
                let mut max = [0f32; 3];
                for r in rows {
                    for c in 0..NUM_CLASSES {
                        max[c] = max[c].max(r[c].abs());
                    }
                }
                let scale = max.map(|m| if m > 0.0 { m / 127.0 } else { 1.0 });
                let rows = rows
                    .iter()
                    .map(|r| {
                        let mut q = [0i8; 3];
                        for c in 0..NUM_CLASSES {
                            q[c] = (r[c] / scale[c]).round().clamp(-127.0, 127.0) as i8;
                        }
                        q
                    })
                    .collect();
                Weights::I8 { rows, scale }
            }
        }
    }
}

/// A trained model: hashed feature weights per class plus a bias per class.
///
/// Immutable after training or loading, and `Send + Sync`: share it behind an `Arc`.
#[derive(Clone, Debug)]
pub struct LinearModel {
    features: Features,
    bias: [f32; 3],
    weights: Weights,
}

// ---------------------------------------------------------------------------------------------
// Hashing and feature extraction
// ---------------------------------------------------------------------------------------------

const SALT_WORD: u64 = 0x01;
const SALT_WORD_NEG: u64 = 0x02;
const SALT_BIGRAM: u64 = 0x03;
const SALT_TRIGRAM: u64 = 0x04;
const SALT_CHAR: u64 = 0x05;
/// Set on the indices of character n-gram features (bucket indices stay below 2^26).
const CHAR_BIT: u32 = 1 << 31;
const INDEX_MASK: u32 = !CHAR_BIT;

/// Reusable per-thread buffers for feature extraction.
#[derive(Default)]
struct Scratch {
    token: String,
}

impl Scratch {
    fn trim(&mut self) {
        if self.token.capacity() > SCRATCH_KEEP {
            self.token = String::new();
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with the thread-local scratch buffers (or fresh ones if they are unavailable).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut f = Some(f);
    let done = SCRATCH
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => {
                let r = (f.take().expect("closure present"))(&mut s);
                s.trim();
                Some(r)
            }
            Err(_) => None,
        })
        .ok()
        .flatten();
    match done {
        Some(r) => r,
        None => (f.take().expect("closure unused"))(&mut Scratch::default()),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    None,
    Word,
    Symbol,
}

/// Negators: these words and any word ending in "n't" start a negation scope.
fn is_negator(word: &str) -> bool {
    if word.ends_with("n't") {
        return true;
    }
    // Cheap filter before the string comparisons: every listed word is 2..=8 bytes long and
    // starts with one of these letters.
    let b = word.as_bytes();
    if !(2..=8).contains(&b.len())
        || !matches!(b[0], b'n' | b'c' | b'd' | b'w' | b'i' | b'a' | b's' | b'h')
    {
        return false;
    }
    matches!(
        word,
        "not"
            | "no"
            | "never"
            | "cannot"
            | "nothing"
            | "nobody"
            | "none"
            | "nor"
            | "neither"
            | "nowhere"
            | "dont"
            | "cant"
            | "wont"
            | "isnt"
            | "arent"
            | "wasnt"
            | "werent"
            | "didnt"
            | "doesnt"
            | "couldnt"
            | "shouldnt"
            | "wouldnt"
            | "aint"
            | "havent"
            | "hasnt"
            | "hadnt"
    )
}

fn ends_clause(symbols: &str) -> bool {
    symbols
        .bytes()
        .any(|b| matches!(b, b'.' | b',' | b'!' | b'?' | b';' | b':'))
}

fn is_url(b: &[u8]) -> bool {
    let starts = |p: &[u8]| b.len() >= p.len() && b[..p.len()].eq_ignore_ascii_case(p);
    starts(b"http://") || starts(b"https://") || starts(b"www.")
}

fn is_handle_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Number of feature indices buffered per group before they are handed to the consumer.
const BATCH: usize = 256;
/// Feature group of word n-grams (index into per-group accumulators).
const GROUP_WORD: usize = 0;
/// Feature group of character n-grams.
const GROUP_CHAR: usize = 1;

/// Streaming feature emitter: receives normalised tokens, buffers the bucket indices of their
/// features per group in fixed arrays, and hands full batches to `consume(group, indices)`.
struct Emitter<'a, C: FnMut(usize, &[u32])> {
    f: &'a Features,
    shift: u32,
    seed_word: u64,
    seed_neg: u64,
    seed_bigram: u64,
    seed_trigram: u64,
    seed_char: u64,
    prev: [u64; 2],
    n_prev: u8,
    negated: bool,
    word_buf: [u32; BATCH],
    n_word: usize,
    char_buf: [u32; BATCH],
    n_char: usize,
    consume: C,
}

impl<'a, C: FnMut(usize, &[u32])> Emitter<'a, C> {
    fn new(f: &'a Features, consume: C) -> Self {
        Emitter {
            f,
            shift: 64 - f.buckets_log2 as u32,
            seed_word: salted(f.hash_seed, SALT_WORD),
            seed_neg: salted(f.hash_seed, SALT_WORD_NEG),
            seed_bigram: salted(f.hash_seed, SALT_BIGRAM),
            seed_trigram: salted(f.hash_seed, SALT_TRIGRAM),
            seed_char: salted(f.hash_seed, SALT_CHAR),
            prev: [0; 2],
            n_prev: 0,
            negated: false,
            word_buf: [0; BATCH],
            n_word: 0,
            char_buf: [0; BATCH],
            n_char: 0,
            consume,
        }
    }

    #[inline(always)]
    fn emit_word(&mut self, h: u64) {
        if self.n_word >= BATCH {
            (self.consume)(GROUP_WORD, &self.word_buf);
            self.n_word = 0;
        }
        self.word_buf[self.n_word] = (h >> self.shift) as u32;
        self.n_word += 1;
    }

    /// Hands over whatever is still buffered.
    fn finish(&mut self) {
        if self.n_word > 0 {
            (self.consume)(GROUP_WORD, &self.word_buf[..self.n_word]);
            self.n_word = 0;
        }
        if self.n_char > 0 {
            (self.consume)(GROUP_CHAR, &self.char_buf[..self.n_char]);
            self.n_char = 0;
        }
    }

    /// Emits the features of one (normalised) token.
    fn token(&mut self, tok: &str, kind: Kind) {
        if tok.is_empty() {
            return;
        }
        let neg = self.f.negation && kind == Kind::Word && self.negated;
        let seed = if neg { self.seed_neg } else { self.seed_word };
        let h = xxh3_64_with_seed(tok.as_bytes(), seed);
        let wn = self.f.word_ngrams;
        if wn >= 1 {
            self.emit_word(h);
        }
        if wn >= 2 && self.n_prev >= 1 {
            let b =
                fmix64(self.prev[1].rotate_left(21) ^ h.wrapping_mul(CHAIN_K) ^ self.seed_bigram);
            self.emit_word(b);
        }
        if wn >= 3 && self.n_prev >= 2 {
            let t = fmix64(
                self.prev[0].rotate_left(42)
                    ^ self.prev[1].rotate_left(21).wrapping_mul(CHAIN_K)
                    ^ h
                    ^ self.seed_trigram,
            );
            self.emit_word(t);
        }
        self.prev = [self.prev[1], h];
        self.n_prev = self.n_prev.saturating_add(1);

        if self.f.char_max >= 2 {
            self.char_ngrams(tok);
        }

        if self.f.negation {
            match kind {
                Kind::Word if is_negator(tok) => self.negated = true,
                Kind::Symbol if ends_clause(tok) => self.negated = false,
                _ => {}
            }
        }
    }

    fn char_ngrams(&mut self, tok: &str) {
        // Monomorphised per (longest length, index of the shortest length) so that the
        // per-character loop is fully unrolled.
        macro_rules! dispatch {
            ($($max:literal => [$($first:literal),*]),*) => {
                match (self.f.char_max, self.f.char_min) {
                    $($(($max, min) if min == $first + 1 => {
                        self.char_ngrams_upto::<$max, $first>(tok)
                    })*)*
                    _ => {}
                }
            };
        }
        dispatch!(2 => [1], 3 => [1, 2], 4 => [1, 2, 3], 5 => [1, 2, 3, 4], 6 => [1, 2, 3, 4, 5]);
    }

    /// Character n-grams of `" " + tok + " "` with lengths `char_min..=MAX`, by end position:
    /// `hs[k]` is the hash of the last `k + 1` characters, i.e. `chain` applied to them in order
    /// starting from the seed.
    fn char_ngrams_upto<const MAX: usize, const FIRST: usize>(&mut self, tok: &str) {
        let mut st = NgramState::<MAX, FIRST> {
            hs: [self.seed_char; MAX],
            seed: self.seed_char,
            shift: self.shift,
            pos: 0,
            n: self.n_char,
        };
        if st.n + MAX > BATCH {
            self.flush_chars(st.n);
            st.n = 0;
        }
        st.step(&mut self.char_buf, ' ' as u32);
        for c in tok.chars() {
            if st.n + MAX > BATCH {
                self.flush_chars(st.n);
                st.n = 0;
            }
            st.step(&mut self.char_buf, c as u32);
        }
        if st.n + MAX > BATCH {
            self.flush_chars(st.n);
            st.n = 0;
        }
        st.step(&mut self.char_buf, ' ' as u32);
        self.n_char = st.n;
    }

    #[cold]
    #[inline(never)]
    fn flush_chars(&mut self, n: usize) {
        (self.consume)(GROUP_CHAR, &self.char_buf[..n.min(BATCH)]);
    }
}

/// Rolling state of the character n-gram hashes of one token.
struct NgramState<const MAX: usize, const FIRST: usize> {
    hs: [u64; MAX],
    seed: u64,
    shift: u32,
    pos: usize,
    n: usize,
}

impl<const MAX: usize, const FIRST: usize> NgramState<MAX, FIRST> {
    /// Adds one character and writes the n-grams ending at it to `buf` (which has room for
    /// `MAX` more indices).
    #[inline(always)]
    fn step(&mut self, buf: &mut [u32; BATCH], c: u32) {
        let mut k = MAX - 1;
        while k > 0 {
            self.hs[k] = chain(self.hs[k - 1], c);
            k -= 1;
        }
        self.hs[0] = chain(self.seed, c);
        // Write the wanted lengths (k >= FIRST) in order; the ones that exist (k <= pos) come
        // first, so advancing by their count drops the rest.
        if let Some(out) = buf.get_mut(self.n..self.n + MAX) {
            for (slot, &h) in out.iter_mut().zip(&self.hs[FIRST..]) {
                *slot = char_bucket(h, self.shift);
            }
        }
        self.n += (self.pos + 1).min(MAX).saturating_sub(FIRST);
        self.pos += 1;
    }
}

#[inline(always)]
fn char_bucket(h: u64, shift: u32) -> u32 {
    (h >> shift) as u32
}

/// Normalises `text` and hands the bucket indices of its features to `consume(group, batch)`
/// in batches of at most [`BATCH`] per group ([`GROUP_WORD`] or [`GROUP_CHAR`]).
///
/// Tokens: whitespace-separated chunks starting with `http://`, `https://` or `www.` become
/// `http`; `@name` becomes `@user`; otherwise a chunk splits into runs of word characters
/// (alphanumerics, `_`, an apostrophe inside a word, `#` before an alphanumeric) and runs of
/// other characters (punctuation, emoji), lower-cased and with runs of 3+ identical
/// characters squeezed to two.
fn extract<C: FnMut(usize, &[u32])>(f: &Features, text: &str, scratch: &mut Scratch, consume: C) {
    let mut em = Emitter::new(f, consume);
    // Work on an owned buffer (taken from the scratch and put back) so that its pointer and
    // length can stay in registers.
    let mut tok = Tok {
        text: std::mem::take(&mut scratch.token),
        kind: Kind::None,
        squeeze: f.squeeze,
    };
    tok.text.clear();
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut chunk_start = true;
    while let Some(&b) = bytes.get(i) {
        if b >= 0x80 {
            let (next, space) = tok.non_ascii(text, i, &mut em);
            i = next;
            chunk_start = space;
            continue;
        }
        let class = ASCII_CLASS[b as usize];
        if class == C_SPACE {
            tok.flush(&mut em);
            chunk_start = true;
            i += 1;
            continue;
        }
        if chunk_start {
            chunk_start = false;
            if matches!(b, b'h' | b'H' | b'w' | b'W') && is_url(&bytes[i..]) {
                tok.flush(&mut em);
                em.token("http", Kind::Word);
                i = skip_while(text, i, |c| !c.is_whitespace());
                continue;
            }
        }
        match class {
            C_WORD => {
                tok.start(Kind::Word, &mut em);
                // Fast path: the rest of an ASCII word (letters, digits, '_', apostrophes).
                while let Some(&b) = bytes.get(i) {
                    if b >= 0x80 || !matches!(ASCII_CLASS[b as usize], C_WORD | C_APOSTROPHE) {
                        break;
                    }
                    tok.push_ascii(b.to_ascii_lowercase());
                    i += 1;
                }
                continue;
            }
            C_APOSTROPHE if tok.kind == Kind::Word => tok.push_ascii(b),
            C_HASH if char_at(text, i + 1).0.is_alphanumeric() => {
                tok.start(Kind::Word, &mut em);
                tok.push_ascii(b);
            }
            C_AT if is_handle_char(char_at(text, i + 1).0) => {
                tok.flush(&mut em);
                em.token("@user", Kind::Word);
                i = skip_while(text, i + 1, is_handle_char);
                continue;
            }
            _ => {
                tok.start(Kind::Symbol, &mut em);
                tok.push_ascii(b);
            }
        }
        i += 1;
    }
    tok.flush(&mut em);
    em.finish();
    scratch.token = tok.text;
}

const C_SPACE: u8 = 0;
const C_WORD: u8 = 1;
const C_SYMBOL: u8 = 2;
const C_APOSTROPHE: u8 = 3;
const C_HASH: u8 = 4;
const C_AT: u8 = 5;

/// Character classes of the ASCII range.
static ASCII_CLASS: [u8; 128] = {
    let mut t = [C_SYMBOL; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = if c.is_ascii_alphanumeric() || c == b'_' {
            C_WORD
        } else if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            C_SPACE
        } else if c == b'\'' {
            C_APOSTROPHE
        } else if c == b'#' {
            C_HASH
        } else if c == b'@' {
            C_AT
        } else {
            C_SYMBOL
        };
        b += 1;
    }
    t
};

/// Character class of a non-ASCII character.
fn unicode_class(c: char) -> u8 {
    if c.is_whitespace() {
        C_SPACE
    } else if c.is_alphanumeric() {
        C_WORD
    } else if matches!(c, '\u{2019}' | '\u{2018}' | '\u{02bc}') {
        C_APOSTROPHE
    } else {
        C_SYMBOL
    }
}

/// Byte index of the first character at or after `i` for which `keep` is false.
fn skip_while(text: &str, mut i: usize, keep: impl Fn(char) -> bool) -> usize {
    while i < text.len() {
        let (c, len) = char_at(text, i);
        if !keep(c) {
            break;
        }
        i += len;
    }
    i
}

/// The character starting at byte `i` of `text` (a char boundary) and its length in bytes.
#[inline(always)]
fn char_at(text: &str, i: usize) -> (char, usize) {
    match text.as_bytes().get(i) {
        Some(&b) if b < 0x80 => (b as char, 1),
        _ => match text.get(i..).and_then(|rest| rest.chars().next()) {
            Some(c) => (c, c.len_utf8()),
            None => (' ', 1),
        },
    }
}

/// The token being built.
struct Tok {
    text: String,
    kind: Kind,
    squeeze: bool,
}

impl Tok {
    /// Makes sure the current token is of `kind`, emitting the previous one if not.
    #[inline(always)]
    fn start<C: FnMut(usize, &[u32])>(&mut self, kind: Kind, em: &mut Emitter<'_, C>) {
        if self.kind != kind {
            self.flush(em);
            self.kind = kind;
        }
    }

    /// Appends an ASCII byte, dropping a third identical one in a row when squeezing (digits
    /// are kept).
    #[inline(always)]
    fn push_ascii(&mut self, b: u8) {
        if self.squeeze && !b.is_ascii_digit() {
            let t = self.text.as_bytes();
            if t.len() >= 2 && t[t.len() - 1] == b && t[t.len() - 2] == b {
                return;
            }
        }
        self.text.push(b as char);
    }

    /// Appends a character, squeezing like [`Tok::push_ascii`].
    fn push(&mut self, c: char) {
        if c.is_ascii() {
            return self.push_ascii(c as u8);
        }
        if self.squeeze
            && self
                .text
                .strip_suffix(c)
                .is_some_and(|rest| rest.ends_with(c))
        {
            return;
        }
        self.text.push(c);
    }

    /// Handles the non-ASCII character at byte `i`; returns the index after it and whether
    /// it was white space.
    #[cold]
    fn non_ascii<C: FnMut(usize, &[u32])>(
        &mut self,
        text: &str,
        i: usize,
        em: &mut Emitter<'_, C>,
    ) -> (usize, bool) {
        let (c, len) = char_at(text, i);
        let class = unicode_class(c);
        match class {
            C_SPACE => self.flush(em),
            C_WORD => {
                self.start(Kind::Word, em);
                for lc in c.to_lowercase() {
                    self.push(lc);
                }
            }
            C_APOSTROPHE if self.kind == Kind::Word => self.push('\''),
            C_APOSTROPHE => {
                self.start(Kind::Symbol, em);
                self.push('\'');
            }
            _ => {
                self.start(Kind::Symbol, em);
                for lc in c.to_lowercase() {
                    self.push(lc);
                }
            }
        }
        (i + len, class == C_SPACE)
    }

    fn flush<C: FnMut(usize, &[u32])>(&mut self, em: &mut Emitter<'_, C>) {
        if !self.text.is_empty() {
            em.token(&self.text, self.kind);
            self.text.clear();
        }
        self.kind = Kind::None;
    }
}

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

/// Soft targets that are probabilities (finite, non-negative, summing to more than 0), each scaled
/// to sum to 1; other examples are dropped.
fn normalized_targets(examples: &[(String, [f32; 3])]) -> Vec<(&str, [f32; 3])> {
    examples
        .iter()
        .filter(|(_, t)| {
            t.iter().all(|p| p.is_finite() && *p >= 0.0) && t.iter().sum::<f32>() > 0.0
        })
        .map(|(text, t)| {
            let sum: f32 = t.iter().sum();
            (text.as_str(), t.map(|p| p / sum))
        })
        .collect()
}

/// Adds one batch's class sums to the per-group accumulators.
#[inline(always)]
fn add_batch(acc: &mut [[f32; 3]; 2], n: &mut [usize; 2], group: usize, a: [f32; 3], len: usize) {
    if let (Some(t), Some(k)) = (acc.get_mut(group), n.get_mut(group)) {
        t[0] += a[0];
        t[1] += a[1];
        t[2] += a[2];
        *k += len;
    }
}

/// Per-group feature values (word features, char n-gram features) for the given counts.
fn group_scales(f: &Features, n_word: usize, n_char: usize) -> [f32; 2] {
    let inv = |n: usize| if n > 0 { 1.0 / (n as f32).sqrt() } else { 1.0 };
    match (f.normalize, f.group_norm) {
        (false, _) => [1.0, 1.0],
        (true, false) => [inv(n_word + n_char); 2],
        (true, true) => [inv(n_word), inv(n_char)],
    }
}

/// Class probabilities of logits `z` (uniform when any logit is not finite).
pub fn softmax(z: [f32; 3]) -> [f32; 3] {
    if !z.iter().all(|v| v.is_finite()) {
        return [1.0 / 3.0; 3];
    }
    let m = z[0].max(z[1]).max(z[2]);
    let e = z.map(|v| (v - m).exp());
    let s = e[0] + e[1] + e[2];
    e.map(|v| v / s)
}

/// Extracts the features of every example (using up to two threads); returns CSR offsets and
/// bucket indices.
fn extract_all(f: &Features, texts: &[&str]) -> (Vec<usize>, Vec<u32>) {
    let run = |part: &[&str]| {
        let mut offsets = Vec::with_capacity(part.len());
        let mut idx = Vec::new();
        with_scratch(|s| {
            for t in part {
                extract(f, t, s, |g, batch| {
                    let tag = if g == GROUP_CHAR { CHAR_BIT } else { 0 };
                    idx.extend(batch.iter().map(|&i| i | tag));
                });
                offsets.push(idx.len());
            }
        });
        (offsets, idx)
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(2);
    let parts: Vec<(Vec<usize>, Vec<u32>)> = if threads > 1 && texts.len() > 1000 {
        let mid = texts.len() / 2;
        std::thread::scope(|scope| {
            let h = scope.spawn(|| run(&texts[mid..]));
            let a = run(&texts[..mid]);
            let b = h.join().unwrap_or_else(|_| run(&texts[mid..]));
            vec![a, b]
        })
    } else {
        vec![run(texts)]
    };
    let mut offsets = vec![0usize];
    let mut idx = Vec::new();
    for (o, i) in parts {
        let base = idx.len();
        offsets.extend(o.iter().map(|x| x + base));
        idx.extend_from_slice(&i);
    }
    (offsets, idx)
}

/// Rows to hold out of training for selection (early stopping, averaging): `fraction` of each
/// class's rows (`labels[i]` is row i's class, below 3; rounded per class), picked by a seeded
/// shuffle, so the slice is stratified and the same for the same labels, fraction and seed
/// whatever the training seed. `true` marks a held-out row.
pub fn stratified_holdout(labels: &[usize], fraction: f64, seed: u64) -> Vec<bool> {
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mut held = vec![false; labels.len()];
    let mut rng = SplitMix64(seed ^ 0x686f_6c64_6f75_7421);
    for class in 0..NUM_CLASSES {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        for i in (1..rows.len()).rev() {
            let j = rng.below(i + 1);
            rows.swap(i, j);
        }
        let take = (rows.len() as f64 * fraction).round() as usize;
        for &i in rows.iter().take(take) {
            held[i] = true;
        }
    }
    held
}

/// Splits `rows` into (trained on, held out) by [`stratified_holdout`]; `label` gives a row's
/// class. Both keep the rows' order.
pub fn split_holdout<T: Clone>(
    rows: &[T],
    label: impl Fn(&T) -> usize,
    fraction: f64,
    seed: u64,
) -> (Vec<T>, Vec<T>) {
    let labels: Vec<usize> = rows.iter().map(label).collect();
    let held = stratified_holdout(&labels, fraction, seed);
    let mut kept = Vec::with_capacity(rows.len());
    let mut out = Vec::new();
    for (row, h) in rows.iter().zip(held) {
        if h {
            out.push(row.clone());
        } else {
            kept.push(row.clone());
        }
    }
    (kept, out)
}

/// Macro-recall (mean of the per-class recalls, a class with no rows counting 0) of `model` on
/// `(text, class)` rows.
pub fn macro_recall(model: &LinearModel, rows: &[(String, usize)]) -> f64 {
    let mut hits = [0usize; 3];
    let mut totals = [0usize; 3];
    for (text, class) in rows {
        if *class < NUM_CLASSES {
            totals[*class] += 1;
            if model.predict(text).class_index() == *class {
                hits[*class] += 1;
            }
        }
    }
    (0..NUM_CLASSES)
        .map(|c| {
            if totals[c] > 0 {
                hits[c] as f64 / totals[c] as f64
            } else {
                0.0
            }
        })
        .sum::<f64>()
        / NUM_CLASSES as f64
}

/// How [`LinearModel::train_selected`] builds and picks its model.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// Seeds trained, `config.seed` and the next ones; their weights are averaged (the ensemble
    /// that averages their logits, at one model's size). At least 1.
    pub seeds: usize,
    /// Average each run's weights over the second half of its epochs (epochs ⌈e/2⌉..=e for a
    /// candidate of e epochs) instead of taking the last epoch's.
    pub checkpoint_average: bool,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            seeds: 1,
            checkpoint_average: false,
        }
    }
}

/// What [`LinearModel::train_selected`] measured and chose.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectionReport {
    /// Held-out macro-recall of the candidate of each epoch count (1..=`config.epochs`), of the
    /// model as stored (after quantisation); empty without held-out rows.
    pub holdout_macro_recall: Vec<f64>,
    /// The epoch count kept: the best held-out macro-recall (the fewest epochs on a tie), or
    /// `config.epochs` without held-out rows.
    pub epochs: usize,
}

impl LinearModel {
    /// Trains on `(text, class index)` pairs with AdaGrad-scaled SGD and lazy L2.
    ///
    /// Deterministic for a given `config.seed`. Examples whose class index is not below 3 are
    /// ignored. `progress` is called after every epoch. The weights are stored as
    /// `config.quantization` asks.
    pub fn train(
        examples: &[(String, usize)],
        config: &TrainConfig,
        progress: impl FnMut(EpochReport),
    ) -> Self {
        let soft: Vec<(&str, [f32; 3])> = examples
            .iter()
            .filter(|(_, y)| *y < NUM_CLASSES)
            .map(|(text, y)| {
                let target: [f32; 3] = std::array::from_fn(|c| if c == *y { 1.0 } else { 0.0 });
                (text.as_str(), target)
            })
            .collect();
        Self::train_on_targets(&soft, config, progress)
    }

    /// Trains on `(text, target distribution)` pairs: cross-entropy against soft targets, as in
    /// distillation from a teacher's (temperature-softened) probabilities. Class balancing
    /// weights each example by its target's arg-max class. Targets need not sum exactly to 1;
    /// examples with a non-finite or negative target are ignored.
    pub fn train_soft(
        examples: &[(String, [f32; 3])],
        config: &TrainConfig,
        progress: impl FnMut(EpochReport),
    ) -> Self {
        let soft = normalized_targets(examples);
        Self::train_on_targets(&soft, config, progress)
    }

    /// [`LinearModel::train_soft`] that also hands every epoch's weights to `checkpoint`, as a
    /// model with `f32` weights (the state after that epoch; training goes on unchanged), for
    /// early stopping on held-out rows and for checkpoint averaging
    /// ([`LinearModel::average`]). Returns the last epoch's model, as `train_soft` does.
    pub fn train_soft_checkpoints(
        examples: &[(String, [f32; 3])],
        config: &TrainConfig,
        mut checkpoint: impl FnMut(EpochReport, LinearModel),
    ) -> Self {
        let soft = normalized_targets(examples);
        Self::train_inner(
            &soft,
            config,
            |report, snapshot| {
                if let Some((features, bias, w)) = snapshot {
                    checkpoint(
                        report,
                        LinearModel {
                            features,
                            bias,
                            weights: Weights::F32(w.to_vec()),
                        },
                    );
                }
            },
            true,
        )
    }

    /// Trains `selection.seeds` runs of up to `config.epochs` epochs on `examples` (as
    /// [`LinearModel::train_soft`]) and keeps, of the candidates of 1..=`config.epochs` epochs
    /// (the seeds' weights after that many epochs, or their checkpoint averages, averaged over
    /// the seeds), the one with the best macro-recall on `holdout` — rows left out of
    /// `examples` ([`split_holdout`]): early stopping without looking at a validation or test
    /// set. Without held-out rows the candidate of `config.epochs` is kept. With one seed, no
    /// averaging and `config.epochs` kept, the model is byte for byte `train_soft`'s.
    /// `progress` is called after every epoch of every run, with the run's seed.
    pub fn train_selected(
        examples: &[(String, [f32; 3])],
        holdout: &[(String, usize)],
        config: &TrainConfig,
        selection: &Selection,
        mut progress: impl FnMut(u64, EpochReport),
    ) -> (Self, SelectionReport) {
        let epochs = config.epochs.max(1);
        let mut runs: Vec<Vec<LinearModel>> = Vec::new();
        for k in 0..selection.seeds.max(1) {
            let seed = config.seed.wrapping_add(k as u64);
            let run_config = TrainConfig {
                seed,
                epochs,
                ..config.clone()
            };
            let mut checkpoints = Vec::with_capacity(epochs);
            Self::train_soft_checkpoints(examples, &run_config, |report, model| {
                progress(seed, report);
                checkpoints.push(model);
            });
            runs.push(checkpoints);
        }
        let candidate = |e: usize| -> LinearModel {
            let per_run: Vec<LinearModel> = runs
                .iter()
                .map(|run| {
                    if selection.checkpoint_average {
                        let tail: Vec<&LinearModel> = run[e.div_ceil(2) - 1..e].iter().collect();
                        Self::average(&tail, Quantization::F32)
                            .unwrap_or_else(|| run[e - 1].clone())
                    } else {
                        run[e - 1].clone()
                    }
                })
                .collect();
            let refs: Vec<&LinearModel> = per_run.iter().collect();
            Self::average(&refs, config.quantization)
                .unwrap_or_else(|| per_run[0].quantized(config.quantization))
        };
        if holdout.is_empty() {
            return (
                candidate(epochs),
                SelectionReport {
                    holdout_macro_recall: Vec::new(),
                    epochs,
                },
            );
        }
        let mut scores = Vec::with_capacity(epochs);
        let mut best: Option<(f64, usize, LinearModel)> = None;
        for e in 1..=epochs {
            let model = candidate(e);
            let score = macro_recall(&model, holdout);
            scores.push(score);
            if best.as_ref().is_none_or(|(b, _, _)| score > *b) {
                best = Some((score, e, model));
            }
        }
        let (_, chosen, model) = best.unwrap_or_else(|| (0.0, epochs, candidate(epochs)));
        (
            model,
            SelectionReport {
                holdout_macro_recall: scores,
                epochs: chosen,
            },
        )
    }

    /// The mean of models with the same features: weights and biases averaged, stored as `q`.
    /// A linear model's logits are linear in its weights, so this is exactly the ensemble that
    /// averages the models' logits, at the cost of one model (checkpoint or seed averaging).
    /// `None` when `models` is empty or their features or sizes differ.
    pub fn average(models: &[&LinearModel], q: Quantization) -> Option<LinearModel> {
        let first = models.first()?;
        if models.len() == 1 {
            return Some(first.quantized(q));
        }
        if models
            .iter()
            .any(|m| m.features != first.features || m.weights.len() != first.weights.len())
        {
            return None;
        }
        let k = models.len() as f32;
        let mut rows = vec![[0f32; 3]; first.weights.len()];
        let mut bias = [0f32; 3];
        for m in models {
            for (sum, i) in rows.iter_mut().zip(0..) {
                let r = m.weights.row(i);
                for c in 0..NUM_CLASSES {
                    sum[c] += r[c];
                }
            }
            for (sum, b) in bias.iter_mut().zip(m.bias) {
                *sum += b;
            }
        }
        for r in &mut rows {
            *r = r.map(|v| v / k);
        }
        Some(LinearModel {
            features: first.features,
            bias: bias.map(|v| v / k),
            weights: Weights::from_f32(&rows, q),
        })
    }

    fn train_on_targets(
        examples: &[(&str, [f32; 3])],
        config: &TrainConfig,
        mut progress: impl FnMut(EpochReport),
    ) -> Self {
        Self::train_inner(examples, config, |report, _| progress(report), false)
    }

    #[allow(clippy::type_complexity)]
    fn train_inner(
        examples: &[(&str, [f32; 3])],
        config: &TrainConfig,
        mut progress: impl FnMut(EpochReport, Option<(Features, [f32; 3], &[[f32; 3]])>),
        snapshots: bool,
    ) -> Self {
        let start = Instant::now();
        let features = Features::from_config(config);
        let buckets = 1usize << features.buckets_log2;
        let texts: Vec<&str> = examples.iter().map(|(t, _)| *t).collect();
        let targets: Vec<[f32; 3]> = examples.iter().map(|(_, t)| *t).collect();
        let labels: Vec<usize> = targets
            .iter()
            .map(|t| Prediction { probabilities: *t }.class_index())
            .collect();
        let (offsets, idx) = extract_all(&features, &texts);

        let mut counts = [0usize; 3];
        for &y in &labels {
            counts[y] += 1;
        }
        let n = labels.len() as f32;
        let class_weight: [f32; 3] = std::array::from_fn(|c| {
            if config.class_balanced && counts[c] > 0 {
                n / (NUM_CLASSES as f32 * counts[c] as f32)
            } else {
                1.0
            }
        });

        let lr = config.learning_rate.max(0.0);
        let l2 = config.l2.max(0.0);
        const EPS: f32 = 1e-8;
        let mut w = vec![[0f32; 3]; buckets];
        let mut g2 = vec![[0f32; 3]; buckets];
        let mut bias = [0f32; 3];
        let mut bias_g2 = [0f32; 3];

        let mut order: Vec<usize> = (0..labels.len()).collect();
        let mut rng = SplitMix64(config.seed);

        for epoch in 0..config.epochs {
            for i in (1..order.len()).rev() {
                let j = rng.below(i + 1);
                order.swap(i, j);
            }
            let mut loss = 0f64;
            let mut weight_sum = 0f64;
            let mut correct = 0usize;
            for &e in &order {
                let feats = &idx[offsets[e]..offsets[e + 1]];
                let y = labels[e];
                let n_char = feats.iter().filter(|&&f| f & CHAR_BIT != 0).count();
                let scales = group_scales(&features, feats.len() - n_char, n_char);
                let mut acc = [[0f32; 3]; 2];
                for &f in feats {
                    let r = &w[(f & INDEX_MASK) as usize];
                    let a = &mut acc[(f >> 31) as usize];
                    a[0] += r[0];
                    a[1] += r[1];
                    a[2] += r[2];
                }
                let z: [f32; 3] = std::array::from_fn(|c| {
                    bias[c] + scales[0] * acc[0][c] + scales[1] * acc[1][c]
                });
                let p = softmax(z);
                let sw = class_weight[y];
                let target = &targets[e];
                loss -= sw as f64
                    * (0..NUM_CLASSES)
                        .filter(|&c| target[c] > 0.0)
                        .map(|c| target[c] as f64 * (p[c].max(1e-12) as f64).ln())
                        .sum::<f64>();
                weight_sum += sw as f64;
                if (Prediction { probabilities: p }).class_index() == y {
                    correct += 1;
                }
                let g: [f32; 3] = std::array::from_fn(|c| sw * (p[c] - target[c]));
                for c in 0..NUM_CLASSES {
                    bias_g2[c] += g[c] * g[c];
                    bias[c] -= lr * g[c] / (bias_g2[c].sqrt() + EPS);
                }
                let gs = [g.map(|v| v * scales[0]), g.map(|v| v * scales[1])];
                for &f in feats {
                    let gs = &gs[(f >> 31) as usize];
                    let f = f & INDEX_MASK;
                    let r = &mut w[f as usize];
                    let a = &mut g2[f as usize];
                    for c in 0..NUM_CLASSES {
                        let gr = gs[c] + l2 * r[c];
                        a[c] += gr * gr;
                        r[c] -= lr * gr / (a[c].sqrt() + EPS);
                    }
                }
            }
            progress(
                EpochReport {
                    epoch: epoch + 1,
                    epochs: config.epochs,
                    mean_loss: if weight_sum > 0.0 {
                        loss / weight_sum
                    } else {
                        0.0
                    },
                    train_accuracy: if order.is_empty() {
                        0.0
                    } else {
                        correct as f64 / order.len() as f64
                    },
                    elapsed: start.elapsed(),
                },
                snapshots.then_some((features, bias, w.as_slice())),
            );
        }

        LinearModel {
            features,
            bias,
            weights: Weights::from_f32(&w, config.quantization),
        }
    }

    /// Returns a copy of this model with its weights stored as `q` (re-quantising from the
    /// current weights, so converting an i8 model back to f32 does not restore precision).
    pub fn quantized(&self, q: Quantization) -> LinearModel {
        let weights = if q == self.weights.quantization() {
            self.weights.clone()
        } else {
            let rows: Vec<[f32; 3]> = (0..self.weights.len())
                .map(|i| self.weights.row(i))
                .collect();
            Weights::from_f32(&rows, q)
        };
        LinearModel {
            features: self.features,
            bias: self.bias,
            weights,
        }
    }

    /// Bucket indices of the features of `text`, in extraction order (duplicates kept); for
    /// inspection and debugging.
    pub fn feature_indices(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        with_scratch(|s| extract(&self.features, text, s, |_, b| out.extend_from_slice(b)));
        out
    }

    /// How the weights are stored.
    pub fn quantization(&self) -> Quantization {
        self.weights.quantization()
    }

    /// Number of hash buckets (rows of class weights).
    pub fn buckets(&self) -> usize {
        self.weights.len()
    }

    /// Class probabilities for `text`. Never panics; any string (empty, emoji-only, megabytes
    /// long) gives finite probabilities summing to 1.
    pub fn predict(&self, text: &str) -> Prediction {
        let f = &self.features;
        let mut n = [0usize; 2];
        let mut acc = [[0f32; 3]; 2];
        with_scratch(|s| match &self.weights {
            Weights::F32(rows) => extract(f, text, s, |g, batch| {
                let mut a = [0f32; 3];
                for &i in batch {
                    if let Some(r) = rows.get(i as usize) {
                        a[0] += r[0];
                        a[1] += r[1];
                        a[2] += r[2];
                    }
                }
                add_batch(&mut acc, &mut n, g, a, batch.len());
            }),
            Weights::F16(rows) => extract(f, text, s, |g, batch| {
                let mut a = [0f32; 3];
                for &i in batch {
                    if let Some(r) = rows.get(i as usize) {
                        a[0] += f16_to_f32(r[0]);
                        a[1] += f16_to_f32(r[1]);
                        a[2] += f16_to_f32(r[2]);
                    }
                }
                add_batch(&mut acc, &mut n, g, a, batch.len());
            }),
            Weights::I8 { rows, scale } => extract(f, text, s, |g, batch| {
                // A batch holds at most BATCH features, so i32 sums of i8 cannot overflow.
                let mut a = [0i32; 3];
                for &i in batch {
                    if let Some(r) = rows.get(i as usize) {
                        a[0] += r[0] as i32;
                        a[1] += r[1] as i32;
                        a[2] += r[2] as i32;
                    }
                }
                let a = std::array::from_fn(|c| a[c] as f32 * scale[c]);
                add_batch(&mut acc, &mut n, g, a, batch.len());
            }),
        });
        let scales = group_scales(f, n[0], n[1]);
        let z: [f32; 3] =
            std::array::from_fn(|c| self.bias[c] + scales[0] * acc[0][c] + scales[1] * acc[1][c]);
        Prediction {
            probabilities: softmax(z),
        }
    }

    /// Serialises the model: magic, format version, feature settings, quantisation, biases,
    /// per-class scales, the weight table (little-endian) and a trailing xxh3-64 checksum of
    /// everything before it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let q = self.weights.quantization();
        let rows = self.weights.len();
        let mut out = Vec::with_capacity(HEADER_LEN + rows * q.bytes_per_bucket() + 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let f = &self.features;
        out.extend_from_slice(&[
            f.buckets_log2,
            f.word_ngrams,
            f.char_min,
            f.char_max,
            f.flags(),
            q.code(),
        ]);
        out.extend_from_slice(&f.hash_seed.to_le_bytes());
        for b in self.bias {
            out.extend_from_slice(&b.to_le_bytes());
        }
        let scale = match &self.weights {
            Weights::I8 { scale, .. } => *scale,
            _ => [1.0; 3],
        };
        for s in scale {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.extend_from_slice(&(rows as u64).to_le_bytes());
        debug_assert_eq!(out.len(), HEADER_LEN);
        match &self.weights {
            Weights::F32(r) => {
                for row in r {
                    for v in row {
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
            Weights::F16(r) => {
                for row in r {
                    for v in row {
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
            Weights::I8 { rows, .. } => {
                for row in rows {
                    out.extend(row.iter().map(|&v| v as u8));
                }
            }
        }
        let sum = xxh3_64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Parses what [`LinearModel::to_bytes`] wrote. Returns an error, never panics, on
    /// truncated, corrupt or foreign input.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        if bytes.len() < MAGIC.len() {
            return Err(if MAGIC.starts_with(bytes) {
                ModelError::Truncated
            } else {
                ModelError::BadMagic
            });
        }
        if &bytes[..MAGIC.len()] != MAGIC {
            return Err(ModelError::BadMagic);
        }
        let mut r = Reader {
            buf: bytes,
            pos: MAGIC.len(),
        };
        let version = u16::from_le_bytes(r.array()?);
        if version != FORMAT_VERSION {
            return Err(ModelError::UnsupportedVersion(version));
        }
        if bytes.len() < HEADER_LEN + 8 {
            return Err(ModelError::Truncated);
        }
        let [buckets_log2, word_ngrams, char_min, char_max, flags, qcode] = r.array()?;
        let hash_seed = u64::from_le_bytes(r.array()?);
        let bias = [r.f32()?, r.f32()?, r.f32()?];
        let scale = [r.f32()?, r.f32()?, r.f32()?];
        let rows = u64::from_le_bytes(r.array()?);

        if !(MIN_BUCKETS_LOG2..=MAX_BUCKETS_LOG2).contains(&buckets_log2) {
            return Err(ModelError::Invalid("bucket count out of range"));
        }
        if rows != 1u64 << buckets_log2 {
            return Err(ModelError::Invalid("row count does not match bucket count"));
        }
        let q =
            Quantization::from_code(qcode).ok_or(ModelError::Invalid("unknown quantisation"))?;
        let expected = (HEADER_LEN as u64)
            .checked_add(rows * q.bytes_per_bucket() as u64)
            .and_then(|v| v.checked_add(8))
            .ok_or(ModelError::Invalid("size overflow"))?;
        if (bytes.len() as u64) < expected {
            return Err(ModelError::Truncated);
        }
        if bytes.len() as u64 > expected {
            return Err(ModelError::Invalid("trailing bytes after checksum"));
        }
        let body_len = bytes.len() - 8;
        let stored = u64::from_le_bytes(
            bytes[body_len..]
                .try_into()
                .map_err(|_| ModelError::Truncated)?,
        );
        if xxh3_64(&bytes[..body_len]) != stored {
            return Err(ModelError::ChecksumMismatch);
        }
        if word_ngrams > MAX_WORD_N
            || char_max > MAX_CHAR_N
            || (char_max > 0 && (char_min < 2 || char_min > char_max))
            || flags & !0b1111 != 0
        {
            return Err(ModelError::Invalid("feature settings out of range"));
        }
        if !bias.iter().chain(scale.iter()).all(|v| v.is_finite()) {
            return Err(ModelError::Invalid("non-finite bias or scale"));
        }
        let features = Features {
            buckets_log2,
            word_ngrams,
            char_min,
            char_max,
            negation: flags & 1 != 0,
            squeeze: flags & 2 != 0,
            normalize: flags & 4 != 0,
            group_norm: flags & 8 != 0,
            hash_seed,
        };
        let data = &bytes[HEADER_LEN..body_len];
        let weights = match q {
            Quantization::F32 => {
                let mut out = Vec::with_capacity(rows as usize);
                for ch in data.chunks_exact(12) {
                    let row: [f32; 3] = std::array::from_fn(|c| {
                        f32::from_le_bytes([ch[4 * c], ch[4 * c + 1], ch[4 * c + 2], ch[4 * c + 3]])
                    });
                    if !row.iter().all(|v| v.is_finite()) {
                        return Err(ModelError::Invalid("non-finite weight"));
                    }
                    out.push(row);
                }
                Weights::F32(out)
            }
            Quantization::F16 => {
                let mut out = Vec::with_capacity(rows as usize);
                for ch in data.chunks_exact(6) {
                    let row: [u16; 3] =
                        std::array::from_fn(|c| u16::from_le_bytes([ch[2 * c], ch[2 * c + 1]]));
                    if row.iter().any(|&h| h & 0x7c00 == 0x7c00) {
                        return Err(ModelError::Invalid("non-finite weight"));
                    }
                    out.push(row);
                }
                Weights::F16(out)
            }
            Quantization::I8 => Weights::I8 {
                rows: data
                    .chunks_exact(3)
                    .map(|ch| [ch[0] as i8, ch[1] as i8, ch[2] as i8])
                    .collect(),
                scale,
            },
        };
        Ok(LinearModel {
            features,
            bias,
            weights,
        })
    }
}

/// Magic (8) + version (2) + settings (6) + seed (8) + bias (12) + scales (12) + rows (8).
const HEADER_LEN: usize = 8 + 2 + 6 + 8 + 12 + 12 + 8;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ModelError> {
        let end = self.pos.checked_add(N).ok_or(ModelError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(ModelError::Truncated)?;
        self.pos = end;
        s.try_into().map_err(|_| ModelError::Truncated)
    }

    fn f32(&mut self) -> Result<f32, ModelError> {
        Ok(f32::from_le_bytes(self.array()?))
    }
}

// ---------------------------------------------------------------------------------------------
// Half-precision conversion (IEEE 754 binary16, round to nearest even)
// ---------------------------------------------------------------------------------------------

fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let mut r = m >> shift;
        let rem = m & ((1u32 << shift) - 1);
        if rem > half || (rem == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && r & 1 == 1) {
        r += 1;
    }
    sign | r as u16
}

#[inline(always)]
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    if exp == 0 {
        let v = man as f32 * (1.0 / 16_777_216.0);
        return if sign != 0 { -v } else { v };
    }
    let bits = if exp == 0x1f {
        sign | 0x7f80_0000 | (man << 13)
    } else {
        sign | ((exp + 112) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Vec<(String, usize)> {
        let mut v = Vec::new();
        let neg = [
            "i hate this",
            "awful terrible day",
            "so bad and sad",
            "worst service ever",
        ];
        let neu = [
            "the meeting is at noon",
            "it is a table",
            "see the report",
            "train leaves at 5",
        ];
        let pos = [
            "i love this",
            "great wonderful day",
            "so happy and glad",
            "best service ever",
        ];
        for _ in 0..5 {
            for (c, set) in [neg, neu, pos].iter().enumerate() {
                for t in set {
                    v.push((t.to_string(), c));
                }
            }
        }
        v
    }

    fn small_config() -> TrainConfig {
        TrainConfig {
            buckets_log2: 14,
            epochs: 20,
            quantization: Quantization::F32,
            ..TrainConfig::default()
        }
    }

    fn features_of(model: &LinearModel, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        extract(&model.features, text, &mut Scratch::default(), |_, b| {
            out.extend_from_slice(b)
        });
        out
    }

    #[test]
    fn toy_set_is_learned() {
        let data = toy();
        let mut reports = Vec::new();
        let model = LinearModel::train(&data, &small_config(), |r| reports.push(r));
        assert_eq!(reports.len(), 20);
        assert!(reports.last().unwrap().mean_loss < reports[0].mean_loss);
        for (t, y) in &data {
            assert_eq!(model.predict(t).class_index(), *y, "misclassified {t:?}");
        }
        assert_eq!(model.predict("i love this").label(), "positive");
        assert_eq!(model.predict("i hate this").label(), "negative");
    }

    /// The toy rows with distinct texts (a row number appended) as soft one-hot examples.
    fn toy_soft() -> Vec<(String, [f32; 3], usize)> {
        toy()
            .into_iter()
            .enumerate()
            .map(|(i, (text, y))| {
                let target = std::array::from_fn(|c| if c == y { 1.0 } else { 0.0 });
                (format!("{text} r{i}"), target, y)
            })
            .collect()
    }

    #[test]
    fn holdout_is_stratified_seeded_and_disjoint() {
        let rows = toy_soft();
        let (kept, held) = split_holdout(&rows, |r| r.2, 0.25, 7);
        assert_eq!(kept.len() + held.len(), rows.len());
        for class in 0..3 {
            // 20 rows per class, a quarter held out of each.
            assert_eq!(held.iter().filter(|r| r.2 == class).count(), 5);
        }
        let held_texts: std::collections::HashSet<&str> =
            held.iter().map(|r| r.0.as_str()).collect();
        assert!(kept.iter().all(|r| !held_texts.contains(r.0.as_str())));
        assert_eq!(
            split_holdout(&rows, |r| r.2, 0.25, 7),
            (kept.clone(), held.clone())
        );
        assert_ne!(split_holdout(&rows, |r| r.2, 0.25, 8).1, held);
        assert!(split_holdout(&rows, |r| r.2, 0.0, 7).1.is_empty());
    }

    /// The toy rows, and the three quarters kept for training (soft targets) and the quarter
    /// held out (labels) by seed 42.
    #[allow(clippy::type_complexity)]
    fn toy_split() -> (
        Vec<(String, [f32; 3], usize)>,
        Vec<(String, [f32; 3])>,
        Vec<(String, usize)>,
    ) {
        let rows = toy_soft();
        let (kept, held) = split_holdout(&rows, |r| r.2, 0.25, 42);
        let examples = kept
            .iter()
            .map(|(t, target, _)| (t.clone(), *target))
            .collect();
        let holdout = held.iter().map(|(t, _, y)| (t.clone(), *y)).collect();
        (rows, examples, holdout)
    }

    #[test]
    fn held_out_rows_are_not_trained_on() {
        let (rows, examples, holdout) = toy_split();
        let config = TrainConfig {
            epochs: 1,
            ..small_config()
        };
        // One epoch: selection has one candidate, so the model is exactly the one trained on the
        // kept rows alone, and differs from one trained on every row.
        let (selected, report) = LinearModel::train_selected(
            &examples,
            &holdout,
            &config,
            &Selection::default(),
            |_, _| {},
        );
        assert_eq!(report.epochs, 1);
        assert_eq!(report.holdout_macro_recall.len(), 1);
        let alone = LinearModel::train_soft(&examples, &config, |_| {});
        assert_eq!(selected.to_bytes(), alone.to_bytes());
        let all: Vec<(String, [f32; 3])> = rows
            .iter()
            .map(|(t, target, _)| (t.clone(), *target))
            .collect();
        assert_ne!(
            selected.to_bytes(),
            LinearModel::train_soft(&all, &config, |_| {}).to_bytes()
        );
    }

    #[test]
    fn selection_is_deterministic_and_picks_the_best_epoch() {
        let (_, examples, holdout) = toy_split();
        let config = TrainConfig {
            epochs: 6,
            quantization: Quantization::I8,
            ..small_config()
        };
        let selection = Selection {
            seeds: 3,
            checkpoint_average: true,
        };
        let mut runs = 0;
        let (a, report) =
            LinearModel::train_selected(&examples, &holdout, &config, &selection, |_, r| {
                runs += usize::from(r.epoch == 1)
            });
        assert_eq!(runs, 3);
        let (b, again) =
            LinearModel::train_selected(&examples, &holdout, &config, &selection, |_, _| {});
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_eq!(report, again);
        assert_eq!(report.holdout_macro_recall.len(), 6);
        let best = report
            .holdout_macro_recall
            .iter()
            .cloned()
            .fold(f64::MIN, f64::max);
        assert_eq!(report.holdout_macro_recall[report.epochs - 1], best);
        assert!(report.holdout_macro_recall[..report.epochs - 1]
            .iter()
            .all(|&s| s < best));
        assert_eq!(macro_recall(&a, &holdout), best);
    }

    #[test]
    fn averaging_weights_averages_logits() {
        let data: Vec<(String, [f32; 3])> = toy_soft()
            .into_iter()
            .map(|(t, target, _)| (t, target))
            .collect();
        let a = LinearModel::train_soft(&data, &small_config(), |_| {});
        let b = LinearModel::train_soft(
            &data,
            &TrainConfig {
                seed: 7,
                epochs: 3,
                ..small_config()
            },
            |_| {},
        );
        let one = LinearModel::average(&[&a], Quantization::F32).unwrap();
        assert_eq!(one.to_bytes(), a.to_bytes());
        let mean = LinearModel::average(&[&a, &b], Quantization::F32).unwrap();
        let logits = |m: &LinearModel, t: &str| m.predict(t).probabilities.map(|p| p.ln());
        for text in ["i love this", "so bad", "the table"] {
            let (la, lb, lm) = (logits(&a, text), logits(&b, text), logits(&mean, text));
            // Log-probabilities are logits up to a per-text constant.
            let d: [f32; 3] = std::array::from_fn(|c| lm[c] - (la[c] + lb[c]) / 2.0);
            assert!(
                (d[0] - d[1]).abs() < 1e-4 && (d[1] - d[2]).abs() < 1e-4,
                "{d:?}"
            );
        }
        let other = LinearModel::train_soft(
            &data,
            &TrainConfig {
                buckets_log2: 12,
                ..small_config()
            },
            |_| {},
        );
        assert!(LinearModel::average(&[&a, &other], Quantization::F32).is_none());
    }

    #[test]
    fn training_is_deterministic() {
        let data = toy();
        let a = LinearModel::train(&data, &small_config(), |_| {});
        let b = LinearModel::train(&data, &small_config(), |_| {});
        assert_eq!(a.to_bytes(), b.to_bytes());
    }

    #[test]
    fn round_trip_gives_identical_predictions() {
        let data = toy();
        for q in [Quantization::F32, Quantization::F16, Quantization::I8] {
            let model = LinearModel::train(
                &data,
                &TrainConfig {
                    quantization: q,
                    ..small_config()
                },
                |_| {},
            );
            let bytes = model.to_bytes();
            let loaded = LinearModel::from_bytes(&bytes).expect("round trip");
            assert_eq!(loaded.quantization(), q);
            assert_eq!(loaded.to_bytes(), bytes);
            for t in [
                "i love this",
                "awful day",
                "",
                "😂😂 @bob http://x.y",
                "not good",
            ] {
                assert_eq!(model.predict(t), loaded.predict(t));
            }
        }
    }

    #[test]
    fn quantised_models_agree_with_f32_on_toy() {
        let data = toy();
        let model = LinearModel::train(&data, &small_config(), |_| {});
        for q in [Quantization::F16, Quantization::I8] {
            let qm = model.quantized(q);
            for (t, _) in &data {
                let a = model.predict(t).probabilities;
                let b = qm.predict(t).probabilities;
                for c in 0..3 {
                    assert!((a[c] - b[c]).abs() < 0.02, "{q:?} {t}: {a:?} vs {b:?}");
                }
            }
        }
    }

    #[test]
    fn corrupt_bytes_give_errors() {
        let model = LinearModel::train(&toy(), &small_config(), |_| {});
        let bytes = model.to_bytes();
        assert_eq!(
            LinearModel::from_bytes(&[]).unwrap_err(),
            ModelError::Truncated
        );
        assert_eq!(
            LinearModel::from_bytes(b"not a model at all").unwrap_err(),
            ModelError::BadMagic
        );
        for cut in [4, 8, 10, 20, HEADER_LEN, HEADER_LEN + 100, bytes.len() - 1] {
            assert!(
                LinearModel::from_bytes(&bytes[..cut]).is_err(),
                "truncated at {cut}"
            );
        }
        let mut bad = bytes.clone();
        bad[HEADER_LEN + 1000] ^= 0x40;
        assert_eq!(
            LinearModel::from_bytes(&bad).unwrap_err(),
            ModelError::ChecksumMismatch
        );
        let mut bad = bytes.clone();
        bad[8] = 99;
        assert_eq!(
            LinearModel::from_bytes(&bad).unwrap_err(),
            ModelError::UnsupportedVersion(99)
        );
        let mut long = bytes.clone();
        long.push(0);
        assert!(LinearModel::from_bytes(&long).is_err());
        // Every single-byte flip is rejected.
        for pos in (0..bytes.len()).step_by(97) {
            let mut b = bytes.clone();
            b[pos] = b[pos].wrapping_add(1);
            assert!(LinearModel::from_bytes(&b).is_err(), "flip at {pos}");
        }
    }

    #[test]
    fn weird_input_never_panics() {
        let model = LinearModel::train(&toy(), &small_config(), |_| {}).quantized(Quantization::I8);
        let huge_word = "a".repeat(1 << 20);
        let huge_text = "so good 😂 !!! @x http://t.co/x ".repeat(1 << 15);
        let inputs = [
            "",
            " ",
            "\t\n\r",
            "😂😂😂",
            "🏳️‍🌈👍🏽",
            "@",
            "#",
            "'",
            "n't",
            "http://",
            "\u{0}\u{ffff}\u{10ffff}",
            "İSTANBUL ǅ ß",
            huge_word.as_str(),
            huge_text.as_str(),
        ];
        for t in inputs {
            for m in [&model, &model.quantized(Quantization::F16)] {
                let p = m.predict(t).probabilities;
                assert!(p.iter().all(|v| v.is_finite() && *v >= 0.0), "{p:?}");
                assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);
            }
        }
        assert!(huge_text.len() >= 1 << 20);
    }

    #[test]
    fn normalisation_matches_tweet_conventions() {
        let model = LinearModel::train(&toy(), &small_config(), |_| {});
        assert_eq!(
            features_of(&model, "@SomeOne look http://t.co/abc"),
            features_of(&model, "@user look https://example.com/x")
        );
        assert_eq!(
            features_of(&model, "SOOOOO good"),
            features_of(&model, "soo good")
        );
        assert_ne!(
            features_of(&model, "so good"),
            features_of(&model, "soo good")
        );
        assert_eq!(
            features_of(&model, "don’t like"),
            features_of(&model, "don't like")
        );
        // Negation changes the word features of "like"; "." ends its scope.
        let on = Features {
            negation: true,
            ..model.features
        };
        let off = Features {
            negation: false,
            ..on
        };
        let feats = |f: &Features, t: &str| {
            let mut out = Vec::new();
            extract(f, t, &mut Scratch::default(), |_, b| {
                out.extend_from_slice(b)
            });
            out
        };
        assert_ne!(feats(&on, "not like"), feats(&off, "not like"));
        assert_eq!(feats(&on, "not. like"), feats(&off, "not. like"));
        // An emoji is a token: one word feature and char n-grams " 😂", " 😂 ", "😂 ".
        assert_eq!(features_of(&model, "😂").len(), 1 + 3);
    }

    #[test]
    fn model_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<LinearModel>();
    }

    #[test]
    fn extraction_matches_between_batches_and_lengths() {
        // Texts long enough to need several batches give the same features as their parts.
        let model = LinearModel::train(&toy(), &small_config(), |_| {});
        let word = "abcdefghij".repeat(100);
        let feats = features_of(&model, &word);
        // One word unigram plus, for each length n in 2..=5, (len + 2) - n + 1 char n-grams.
        assert_eq!(feats.len(), 1 + (word.len() + 2) * 4 - (1 + 2 + 3 + 4));
        let mut sorted = feats.clone();
        sorted.sort_unstable();
        // The short word's char n-grams (after its word unigram, which `finish` hands over
        // first) all occur in the long word, also across batch boundaries.
        let mut parts = features_of(&model, "abcdefghij")[1..].to_vec();
        parts.sort_unstable();
        assert!(parts.iter().all(|p| sorted.binary_search(p).is_ok()));
        // Non-ASCII white space separates tokens like ASCII white space.
        assert_eq!(
            features_of(&model, "good\u{a0}http://x.y day"),
            features_of(&model, "good http://x.y day")
        );
        assert_eq!(
            features_of(&model, "Ünïcode ÉLAN"),
            features_of(&model, "ünïcode élan")
        );
    }

    #[test]
    fn half_conversion_round_trips() {
        for x in [0.0f32, -0.0, 1.0, -2.5, 1e-3, 6.1e-5, 3e-7, 65504.0, 0.333] {
            let y = f16_to_f32(f32_to_f16(x));
            assert!((x - y).abs() <= x.abs() * 1e-3 + 6e-8, "{x} -> {y}");
        }
        for h in 0u16..0x7c00 {
            assert_eq!(f32_to_f16(f16_to_f32(h)), h);
        }
    }
}
