//! A faithful Rust port of VADER (Valence Aware Dictionary and sEntiment Reasoner).
//!
//! VADER is the rule-based sentiment analyzer of Hutto & Gilbert, "VADER: A Parsimonious
//! Rule-based Model for Sentiment Analysis of Social Media Text" (ICWSM 2014). This module
//! reproduces the output of the Python package `vaderSentiment` 3.3.2 (MIT licence,
//! copyright C. J. Hutto), including its known quirks, so that scores match the reference
//! implementation to the rounding it applies (three decimals for `neg`/`neu`/`pos`, four for
//! `compound`).
//!
//! The rules ported are: lexicon lookup on the lowercased token; booster and dampener words;
//! ALL-CAPS emphasis when the text mixes case; negation (the `NEGATE` list, `n't`, "never
//! so/this", "without doubt", "least"); the three-word window with its 0.95 / 0.9 dampening of
//! earlier modifiers; the contrastive "but"; the special cases of "no" and "kind of"; the
//! special-case idioms ("the shit", "the bomb", "yeah right", ...); exclamation and question
//! mark emphasis; emoji replacement by their descriptions; and the final normalisation
//! (`alpha = 15`) and split into negative, neutral and positive proportions.
//!
//! Text handling follows Python's `str` semantics: whitespace is what `str.isspace` accepts,
//! ALL CAPS is `str.isupper`, lowercasing is `str.lower` (full Unicode mapping), and
//! punctuation stripping uses `string.punctuation`. Nothing here panics on any input.

#![warn(missing_docs)]

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// Empirical intensity increase of a booster word ("very", "extremely", ...).
const B_INCR: f64 = 0.293;
/// Empirical intensity decrease of a dampener word ("kind of", "slightly", ...).
const B_DECR: f64 = -0.293;
/// Empirical intensity increase of a word written in ALL CAPS among mixed-case text.
const C_INCR: f64 = 0.733;
/// Scalar applied to the valence of a negated word.
const N_SCALAR: f64 = -0.74;
/// Normalisation constant: approximates the maximum expected raw score.
const ALPHA: f64 = 15.0;

/// Valence scores of one text, as VADER defines them.
///
/// `negative`, `neutral` and `positive` are the proportions of the text that fall in each
/// category (rounded to three decimals, summing to about 1, or all 0 for a text without
/// words); `compound` is the normalised, weighted composite score in `[-1, 1]` (rounded to
/// four decimals).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PolarityScores {
    /// Proportion of negative sentiment (VADER's `neg`).
    pub negative: f64,
    /// Proportion of neutral words (VADER's `neu`).
    pub neutral: f64,
    /// Proportion of positive sentiment (VADER's `pos`).
    pub positive: f64,
    /// Normalised composite score in `[-1, 1]` (VADER's `compound`).
    pub compound: f64,
}

/// Which lexicon file a [`LexiconError`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LexiconKind {
    /// The word lexicon, `vader_lexicon.txt` (`token<TAB>mean<TAB>sd<TAB>ratings`).
    Valence,
    /// The emoji lexicon, `emoji_utf8_lexicon.txt` (`emoji<TAB>description`).
    Emoji,
}

impl fmt::Display for LexiconKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LexiconKind::Valence => f.write_str("VADER valence lexicon"),
            LexiconKind::Emoji => f.write_str("VADER emoji lexicon"),
        }
    }
}

/// Error loading a lexicon: names the file kind and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexiconError {
    kind: LexiconKind,
    line: usize,
    reason: String,
}

impl LexiconError {
    /// The lexicon file in which the error was found.
    #[must_use]
    pub fn kind(&self) -> LexiconKind {
        self.kind
    }

    /// The 1-based line number of the offending line (0 when the error concerns the whole file).
    #[must_use]
    pub fn line(&self) -> usize {
        self.line
    }

    /// What is wrong with the line.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for LexiconError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.kind, self.reason)
        } else {
            write!(f, "{}, line {}: {}", self.kind, self.line, self.reason)
        }
    }
}

impl std::error::Error for LexiconError {}

/// The VADER sentiment analyzer.
///
/// Immutable once built, so it is `Send + Sync` and may be shared between threads.
#[derive(Debug, Clone)]
pub struct Vader {
    /// Lowercased token to everything the rules need to know about it: lexicon valence,
    /// booster value, negation, and which of the rules' key words it is. One lookup per token.
    words: HashMap<Box<str>, WordInfo, FxBuildHasher>,
    /// Single-character emoji to its textual description. Multi-character entries of the
    /// emoji lexicon are left out: the reference compares one character at a time, so they
    /// can never match.
    emojis: HashMap<char, Box<str>, FxBuildHasher>,
    /// Smallest emoji character, to skip the map for most characters.
    min_emoji: char,
}

impl Vader {
    /// Builds the analyzer from the text of the two lexicon files.
    ///
    /// `vader_lexicon` has one `token<TAB>mean<TAB>...` entry per line, `emoji_lexicon` one
    /// `emoji<TAB>description` entry per line; blank lines are skipped, surrounding
    /// whitespace (including `\r`) is ignored, and a later duplicate overrides an earlier
    /// entry, as in the reference implementation. Fails on a line with fewer than two
    /// tab-separated fields, on a mean that is not a number, or on an empty word lexicon.
    ///
    /// # Errors
    ///
    /// A [`LexiconError`] naming the file and the 1-based line that could not be parsed.
    pub fn from_lexicons(vader_lexicon: &str, emoji_lexicon: &str) -> Result<Self, LexiconError> {
        let mut words: HashMap<Box<str>, WordInfo, FxBuildHasher> = HashMap::default();
        for (idx, line) in vader_lexicon.split('\n').enumerate() {
            let line = py_strip(line);
            if line.is_empty() {
                continue;
            }
            let err = |reason: String| LexiconError {
                kind: LexiconKind::Valence,
                line: idx + 1,
                reason,
            };
            let mut fields = line.split('\t');
            let word = fields.next().unwrap_or("");
            let measure = fields
                .next()
                .ok_or_else(|| err("expected `token<TAB>mean`, found no tab".to_string()))?;
            let value: f64 = py_strip(measure)
                .parse()
                .map_err(|_| err(format!("mean valence {measure:?} is not a number")))?;
            words.entry(word.into()).or_default().valence = Some(value);
        }
        if words.is_empty() {
            return Err(LexiconError {
                kind: LexiconKind::Valence,
                line: 0,
                reason: "no entries".to_string(),
            });
        }
        for &(word, value) in BOOSTER_WORDS {
            words.entry(word.into()).or_default().booster = Some(value);
        }
        for &word in NEGATE {
            words.entry(word.into()).or_default().negate = true;
        }
        for &(word, key) in KEY_WORDS {
            words.entry(word.into()).or_default().key = key;
        }

        let mut emojis: HashMap<char, Box<str>, FxBuildHasher> = HashMap::default();
        for (idx, line) in emoji_lexicon.split('\n').enumerate() {
            let line = py_strip(line);
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split('\t');
            let emoji = fields.next().unwrap_or("");
            let description = fields.next().ok_or_else(|| LexiconError {
                kind: LexiconKind::Emoji,
                line: idx + 1,
                reason: "expected `emoji<TAB>description`, found no tab".to_string(),
            })?;
            let mut chars = emoji.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                emojis.insert(c, description.into());
            }
        }
        let min_emoji = emojis.keys().copied().min().unwrap_or(char::MAX);

        Ok(Vader {
            words,
            emojis,
            min_emoji,
        })
    }

    /// Scores one text: VADER's `neg`, `neu`, `pos` and `compound`.
    ///
    /// Never panics; a text without words (empty, whitespace only) scores all zeros.
    #[must_use]
    pub fn polarity_scores(&self, text: &str) -> PolarityScores {
        let text = self.replace_emojis(text);
        let text = py_strip(&text);
        let words = Words::new(text, &self.words);
        let n = words.len();
        let mut sentiments: Vec<f64> = Vec::with_capacity(n);
        for i in 0..n {
            if words.booster(i).is_some()
                || (i + 1 < n && words.key(i) == Key::Kind && words.key(i + 1) == Key::Of)
            {
                sentiments.push(0.0);
                continue;
            }
            sentiments.push(words.sentiment_valence(i));
        }
        but_check(&words, &mut sentiments);
        score_valence(&sentiments, text)
    }

    /// Replaces every emoji character by its description, exactly like the reference: a space
    /// is put before the description unless the previous character was a space or an emoji,
    /// and none after it.
    fn replace_emojis<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if text.is_ascii() && self.min_emoji > '\u{7f}' {
            return Cow::Borrowed(text);
        }
        let is_emoji = |c: char| c >= self.min_emoji && self.emojis.contains_key(&c);
        let Some((first, _)) = text.char_indices().find(|&(_, c)| is_emoji(c)) else {
            return Cow::Borrowed(text);
        };
        let (Some(before), Some(rest)) = (text.get(..first), text.get(first..)) else {
            return Cow::Borrowed(text);
        };
        let mut out = String::with_capacity(text.len() + 64);
        out.push_str(before);
        let mut prev_space = before.is_empty() || before.ends_with(' ');
        for c in rest.chars() {
            match self.emojis.get(&c) {
                Some(description) => {
                    if !prev_space {
                        out.push(' ');
                    }
                    out.push_str(description);
                    prev_space = false;
                }
                None => {
                    out.push(c);
                    prev_space = c == ' ';
                }
            }
        }
        Cow::Owned(out)
    }
}

/// The words the rules test for by name (other than boosters and negations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Key {
    #[default]
    Other,
    No,
    But,
    Kind,
    Of,
    Least,
    At,
    Very,
    Never,
    So,
    This,
    Without,
    Doubt,
    Or,
    Nor,
    // Words of SPECIAL_CASES and of the two-word boosters.
    The,
    Shit,
    Bomb,
    Bad,
    Ass,
    Bus,
    Stop,
    Yeah,
    Right,
    Kiss,
    Death,
    To,
    Die,
    For,
    Beating,
    Heart,
    Just,
    Enough,
    Sort,
}

/// What the rules need to know about one lowercased word.
#[derive(Debug, Clone, Copy, Default)]
struct WordInfo {
    /// Mean valence from the lexicon.
    valence: Option<f64>,
    /// Value in `BOOSTER_DICT` (single-word entries).
    booster: Option<f64>,
    /// Member of `NEGATE`.
    negate: bool,
    /// Which key word it is, if any.
    key: Key,
}

/// Single-word entries of `BOOSTER_DICT`.
const BOOSTER_WORDS: &[(&str, f64)] = &[
    ("absolutely", B_INCR),
    ("amazingly", B_INCR),
    ("awfully", B_INCR),
    ("completely", B_INCR),
    ("considerable", B_INCR),
    ("considerably", B_INCR),
    ("decidedly", B_INCR),
    ("deeply", B_INCR),
    ("effing", B_INCR),
    ("enormous", B_INCR),
    ("enormously", B_INCR),
    ("entirely", B_INCR),
    ("especially", B_INCR),
    ("exceptional", B_INCR),
    ("exceptionally", B_INCR),
    ("extreme", B_INCR),
    ("extremely", B_INCR),
    ("fabulously", B_INCR),
    ("flipping", B_INCR),
    ("flippin", B_INCR),
    ("frackin", B_INCR),
    ("fracking", B_INCR),
    ("fricking", B_INCR),
    ("frickin", B_INCR),
    ("frigging", B_INCR),
    ("friggin", B_INCR),
    ("fully", B_INCR),
    ("fuckin", B_INCR),
    ("fucking", B_INCR),
    ("fuggin", B_INCR),
    ("fugging", B_INCR),
    ("greatly", B_INCR),
    ("hella", B_INCR),
    ("highly", B_INCR),
    ("hugely", B_INCR),
    ("incredible", B_INCR),
    ("incredibly", B_INCR),
    ("intensely", B_INCR),
    ("major", B_INCR),
    ("majorly", B_INCR),
    ("more", B_INCR),
    ("most", B_INCR),
    ("particularly", B_INCR),
    ("purely", B_INCR),
    ("quite", B_INCR),
    ("really", B_INCR),
    ("remarkably", B_INCR),
    ("so", B_INCR),
    ("substantially", B_INCR),
    ("thoroughly", B_INCR),
    ("total", B_INCR),
    ("totally", B_INCR),
    ("tremendous", B_INCR),
    ("tremendously", B_INCR),
    ("uber", B_INCR),
    ("unbelievably", B_INCR),
    ("unusually", B_INCR),
    ("utter", B_INCR),
    ("utterly", B_INCR),
    ("very", B_INCR),
    ("almost", B_DECR),
    ("barely", B_DECR),
    ("hardly", B_DECR),
    ("kinda", B_DECR),
    ("kindof", B_DECR),
    ("kind-of", B_DECR),
    ("less", B_DECR),
    ("little", B_DECR),
    ("marginal", B_DECR),
    ("marginally", B_DECR),
    ("occasional", B_DECR),
    ("occasionally", B_DECR),
    ("partly", B_DECR),
    ("scarce", B_DECR),
    ("scarcely", B_DECR),
    ("slight", B_DECR),
    ("slightly", B_DECR),
    ("somewhat", B_DECR),
    ("sorta", B_DECR),
    ("sortof", B_DECR),
    ("sort-of", B_DECR),
];

/// `NEGATE`.
const NEGATE: &[&str] = &[
    "aint",
    "arent",
    "cannot",
    "cant",
    "couldnt",
    "darent",
    "didnt",
    "doesnt",
    "ain't",
    "aren't",
    "can't",
    "couldn't",
    "daren't",
    "didn't",
    "doesn't",
    "dont",
    "hadnt",
    "hasnt",
    "havent",
    "isnt",
    "mightnt",
    "mustnt",
    "neither",
    "don't",
    "hadn't",
    "hasn't",
    "haven't",
    "isn't",
    "mightn't",
    "mustn't",
    "neednt",
    "needn't",
    "never",
    "none",
    "nope",
    "nor",
    "not",
    "nothing",
    "nowhere",
    "oughtnt",
    "shant",
    "shouldnt",
    "uhuh",
    "wasnt",
    "werent",
    "oughtn't",
    "shan't",
    "shouldn't",
    "uh-uh",
    "wasn't",
    "weren't",
    "without",
    "wont",
    "wouldnt",
    "won't",
    "wouldn't",
    "rarely",
    "seldom",
    "despite",
];

/// Spelling of each [`Key`] word.
const KEY_WORDS: &[(&str, Key)] = &[
    ("no", Key::No),
    ("but", Key::But),
    ("kind", Key::Kind),
    ("of", Key::Of),
    ("least", Key::Least),
    ("at", Key::At),
    ("very", Key::Very),
    ("never", Key::Never),
    ("so", Key::So),
    ("this", Key::This),
    ("without", Key::Without),
    ("doubt", Key::Doubt),
    ("or", Key::Or),
    ("nor", Key::Nor),
    ("the", Key::The),
    ("shit", Key::Shit),
    ("bomb", Key::Bomb),
    ("bad", Key::Bad),
    ("ass", Key::Ass),
    ("bus", Key::Bus),
    ("stop", Key::Stop),
    ("yeah", Key::Yeah),
    ("right", Key::Right),
    ("kiss", Key::Kiss),
    ("death", Key::Death),
    ("to", Key::To),
    ("die", Key::Die),
    ("for", Key::For),
    ("beating", Key::Beating),
    ("heart", Key::Heart),
    ("just", Key::Just),
    ("enough", Key::Enough),
    ("sort", Key::Sort),
];

/// Two-word entries of `BOOSTER_DICT` ("just enough", "kind of", "sort of").
fn booster_bigram(a: Key, b: Key) -> Option<f64> {
    match (a, b) {
        (Key::Just, Key::Enough) | (Key::Kind, Key::Of) | (Key::Sort, Key::Of) => Some(B_DECR),
        _ => None,
    }
}

/// Two-word `SPECIAL_CASES`. (Tokens never contain a space, so matching word by word is the
/// same as the reference's lookup of the space-joined string; its one-word key "badass" can
/// never match there.)
fn special_case2(a: Key, b: Key) -> Option<f64> {
    match (a, b) {
        (Key::The, Key::Shit) | (Key::The, Key::Bomb) => Some(3.0),
        (Key::Bad, Key::Ass) => Some(1.5),
        (Key::Bus, Key::Stop) => Some(0.0),
        (Key::Yeah, Key::Right) => Some(-2.0),
        (Key::Beating, Key::Heart) => Some(3.5),
        _ => None,
    }
}

/// Three-word `SPECIAL_CASES`.
fn special_case3(a: Key, b: Key, c: Key) -> Option<f64> {
    match (a, b, c) {
        (Key::Kiss, Key::Of, Key::Death) => Some(-1.5),
        (Key::To, Key::Die, Key::For) => Some(3.0),
        _ => None,
    }
}

/// [`BYTE_FLAGS`] bit: ASCII uppercase letter.
const UPPER: u8 = 1;
/// [`BYTE_FLAGS`] bit: ASCII lowercase letter.
const LOWER: u8 = 2;
/// [`BYTE_FLAGS`] bit: apostrophe.
const APOSTROPHE: u8 = 4;
/// [`BYTE_FLAGS`] bit: byte of a non-ASCII character.
const NON_ASCII: u8 = 8;

/// Per-byte facts, OR-ed over a token in one pass.
const BYTE_FLAGS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        table[b] = match b as u8 {
            b'A'..=b'Z' => UPPER,
            b'a'..=b'z' => LOWER,
            b'\'' => APOSTROPHE,
            0x80..=0xff => NON_ASCII,
            _ => 0,
        };
        b += 1;
    }
    table
};

/// One token, with what the rules ask of it.
#[derive(Debug, Clone, Copy)]
struct Token {
    /// Lexicon facts about the lowercased token.
    info: WordInfo,
    /// `negated([token])`: a `NEGATE` word or a word containing "n't".
    negated: bool,
    /// Whether the token is ALL CAPS (`str.isupper`).
    upper: bool,
}

/// The tokens of one text.
struct Words {
    tokens: Vec<Token>,
    /// Whether some, but not all, tokens are ALL CAPS.
    is_cap_diff: bool,
}

impl Words {
    /// Splits on whitespace (`str.split()`), strips punctuation from words
    /// (`_strip_punc_if_word`) and looks each lowercased token up once.
    fn new(text: &str, lexicon: &HashMap<Box<str>, WordInfo, FxBuildHasher>) -> Self {
        let mut tokens = Vec::with_capacity(text.len() / 5 + 1);
        let mut upper_count = 0usize;
        let mut lower_buf = String::new();
        for raw in PySplit::new(text) {
            let token = strip_punc_if_word(raw);
            let flags = token
                .bytes()
                .fold(0u8, |acc, b| acc | BYTE_FLAGS[usize::from(b)]);
            let (lower, upper): (&str, bool) = if flags & NON_ASCII == 0 {
                // `str.isupper` and `str.lower` restricted to ASCII.
                let upper = flags & UPPER != 0 && flags & LOWER == 0;
                if flags & UPPER != 0 {
                    lower_buf.clear();
                    lower_buf.push_str(token);
                    lower_buf.make_ascii_lowercase();
                    (&lower_buf, upper)
                } else {
                    (token, upper)
                }
            } else {
                lower_buf = token.to_lowercase();
                (&lower_buf, py_isupper(token))
            };
            let info = lexicon.get(lower).copied().unwrap_or_default();
            let negated = info.negate || (flags & APOSTROPHE != 0 && lower.contains("n't"));
            upper_count += usize::from(upper);
            tokens.push(Token {
                info,
                negated,
                upper,
            });
        }
        let is_cap_diff = upper_count > 0 && upper_count < tokens.len();
        Words {
            tokens,
            is_cap_diff,
        }
    }

    fn len(&self) -> usize {
        self.tokens.len()
    }

    fn key(&self, i: usize) -> Key {
        self.tokens.get(i).map_or(Key::Other, |t| t.info.key)
    }

    fn in_lexicon(&self, i: usize) -> bool {
        self.tokens.get(i).is_some_and(|t| t.info.valence.is_some())
    }

    fn is_upper(&self, i: usize) -> bool {
        self.tokens.get(i).is_some_and(|t| t.upper)
    }

    fn booster(&self, i: usize) -> Option<f64> {
        self.tokens.get(i).and_then(|t| t.info.booster)
    }

    fn negated(&self, i: usize) -> bool {
        self.tokens.get(i).is_some_and(|t| t.negated)
    }

    /// `SentimentIntensityAnalyzer.sentiment_valence` for token `i`.
    fn sentiment_valence(&self, i: usize) -> f64 {
        let Some(base) = self.tokens.get(i).and_then(|t| t.info.valence) else {
            return 0.0;
        };
        let n = self.len();
        let mut valence = base;
        // "no" before a lexicon word negates it instead of counting itself.
        if self.key(i) == Key::No && i + 1 != n && self.in_lexicon(i + 1) {
            valence = 0.0;
        }
        if (i > 0 && self.key(i - 1) == Key::No)
            || (i > 1 && self.key(i - 2) == Key::No)
            || (i > 2
                && self.key(i - 3) == Key::No
                && matches!(self.key(i - 1), Key::Or | Key::Nor))
        {
            valence = base * N_SCALAR;
        }
        // ALL CAPS emphasis (a zero valence is pushed negative, as in the reference).
        if self.is_upper(i) && self.is_cap_diff {
            if valence > 0.0 {
                valence += C_INCR;
            } else {
                valence -= C_INCR;
            }
        }
        for start_i in 0..3usize {
            let j = match i.checked_sub(start_i + 1) {
                Some(j) if !self.in_lexicon(j) => j,
                _ => continue,
            };
            let mut s =
                scalar_inc_dec(self.booster(j), self.is_upper(j), valence, self.is_cap_diff);
            if start_i == 1 && s != 0.0 {
                s *= 0.95;
            }
            if start_i == 2 && s != 0.0 {
                s *= 0.9;
            }
            valence += s;
            valence = self.negation_check(valence, start_i, i);
            if start_i == 2 {
                valence = self.special_idioms_check(valence, i);
            }
        }
        self.least_check(valence, i)
    }

    /// `_negation_check`, for the window offset `start_i` (word at `i - start_i - 1`).
    fn negation_check(&self, valence: f64, start_i: usize, i: usize) -> f64 {
        // Key of the word `back` places before `i` (never called out of range).
        let w = |back: usize| i.checked_sub(back).map_or(Key::Other, |j| self.key(j));
        let neg = |back: usize| i.checked_sub(back).is_some_and(|j| self.negated(j));
        if start_i == 0 {
            if neg(1) {
                return valence * N_SCALAR;
            }
        } else if start_i == 1 {
            if w(2) == Key::Never && matches!(w(1), Key::So | Key::This) {
                return valence * 1.25;
            } else if w(2) == Key::Without && w(1) == Key::Doubt {
                return valence;
            } else if neg(2) {
                return valence * N_SCALAR;
            }
        } else if start_i == 2 {
            // The reference reads `a and b or c`, i.e. `(a and b) or c`: a "so"/"this"
            // right before the word boosts it whatever comes three words back.
            if (w(3) == Key::Never && matches!(w(2), Key::So | Key::This))
                || matches!(w(1), Key::So | Key::This)
            {
                return valence * 1.25;
            } else if w(3) == Key::Without && (w(2) == Key::Doubt || w(1) == Key::Doubt) {
                return valence;
            } else if neg(3) {
                return valence * N_SCALAR;
            }
        }
        valence
    }

    /// `_special_idioms_check`; only reached with `i >= 3`.
    fn special_idioms_check(&self, mut valence: f64, i: usize) -> f64 {
        if i < 3 {
            return valence;
        }
        let n = self.len();
        let (w3, w2, w1, w0) = (
            self.key(i - 3),
            self.key(i - 2),
            self.key(i - 1),
            self.key(i),
        );
        // onezero, twoonezero, twoone, threetwoone, threetwo: the first match wins.
        let found = special_case2(w1, w0)
            .or_else(|| special_case3(w2, w1, w0))
            .or_else(|| special_case2(w2, w1))
            .or_else(|| special_case3(w3, w2, w1))
            .or_else(|| special_case2(w3, w2));
        if let Some(v) = found {
            valence = v;
        }
        if n - 1 > i {
            if let Some(v) = special_case2(w0, self.key(i + 1)) {
                valence = v;
            }
        }
        if n - 1 > i + 1 {
            if let Some(v) = special_case3(w0, self.key(i + 1), self.key(i + 2)) {
                valence = v;
            }
        }
        // Booster/dampener bigrams such as "sort of" (threetwoone, threetwo, twoone; the
        // dictionary has no three-word entry, so the first never matches).
        for (a, b) in [(w3, w2), (w2, w1)] {
            if let Some(boost) = booster_bigram(a, b) {
                valence += boost;
            }
        }
        valence
    }

    /// `_least_check`: "least" before a word negates it, unless "at least" / "very least".
    fn least_check(&self, valence: f64, i: usize) -> f64 {
        if i > 1 && !self.in_lexicon(i - 1) && self.key(i - 1) == Key::Least {
            if self.key(i - 2) != Key::At && self.key(i - 2) != Key::Very {
                return valence * N_SCALAR;
            }
        } else if i > 0 && !self.in_lexicon(i - 1) && self.key(i - 1) == Key::Least {
            return valence * N_SCALAR;
        }
        valence
    }
}

/// `_but_check`: halves the sentiments before the first "but" and adds half to those after.
///
/// Reproduces the reference's quirk: each value is located with `list.index`, i.e. at the
/// first position holding an equal value, which may be an earlier (already scaled) entry.
fn but_check(words: &Words, sentiments: &mut [f64]) {
    let Some(bi) = (0..words.len()).find(|&k| words.key(k) == Key::But) else {
        return;
    };
    let n = sentiments.len();
    if n <= 256 {
        for k in 0..n {
            let s = sentiments[k];
            let si = sentiments.iter().position(|&x| x == s).unwrap_or(k);
            scale_around_but(sentiments, si, bi, s);
        }
        return;
    }
    // Same result for long texts, without the quadratic scan: keep, for each value, the
    // sorted positions that hold it (keys normalise -0.0 to 0.0, which compare equal).
    let key = |x: f64| if x == 0.0 { 0u64 } else { x.to_bits() };
    let mut positions: HashMap<u64, std::collections::BTreeSet<usize>, FxBuildHasher> =
        HashMap::default();
    for (k, &x) in sentiments.iter().enumerate() {
        positions.entry(key(x)).or_default().insert(k);
    }
    for k in 0..n {
        let s = sentiments[k];
        let si = if s.is_nan() {
            k
        } else {
            positions
                .get(&key(s))
                .and_then(|set| set.iter().next().copied())
                .unwrap_or(k)
        };
        let old = sentiments[si];
        scale_around_but(sentiments, si, bi, s);
        let new = sentiments[si];
        if key(new) != key(old) {
            if let Some(set) = positions.get_mut(&key(old)) {
                set.remove(&si);
            }
            positions.entry(key(new)).or_default().insert(si);
        }
    }
}

fn scale_around_but(sentiments: &mut [f64], si: usize, bi: usize, s: f64) {
    if let Some(slot) = sentiments.get_mut(si) {
        if si < bi {
            *slot = s * 0.5;
        } else if si > bi {
            *slot = s * 1.5;
        }
    }
}

/// `score_valence`: combines the word sentiments and the punctuation emphasis.
fn score_valence(sentiments: &[f64], text: &str) -> PolarityScores {
    if sentiments.is_empty() {
        return PolarityScores::default();
    }
    let mut sum_s = 0.0f64;
    for &s in sentiments {
        sum_s += s;
    }
    let punct_emph_amplifier = punctuation_emphasis(text);
    if sum_s > 0.0 {
        sum_s += punct_emph_amplifier;
    } else if sum_s < 0.0 {
        sum_s -= punct_emph_amplifier;
    }
    let compound = normalize(sum_s);

    let mut pos_sum = 0.0f64;
    let mut neg_sum = 0.0f64;
    let mut neu_count = 0u64;
    for &s in sentiments {
        if s > 0.0 {
            pos_sum += s + 1.0;
        }
        if s < 0.0 {
            neg_sum += s - 1.0;
        }
        if s == 0.0 {
            neu_count += 1;
        }
    }
    if pos_sum > neg_sum.abs() {
        pos_sum += punct_emph_amplifier;
    } else if pos_sum < neg_sum.abs() {
        neg_sum -= punct_emph_amplifier;
    }
    let neu = neu_count as f64;
    let total = pos_sum + neg_sum.abs() + neu;
    PolarityScores {
        negative: py_round((neg_sum / total).abs(), 3),
        neutral: py_round((neu / total).abs(), 3),
        positive: py_round((pos_sum / total).abs(), 3),
        compound: py_round(compound, 4),
    }
}

/// Emphasis from "!" (0.292 each, at most 4) and "?" (0.18 each when 2 or 3, else 0.96).
fn punctuation_emphasis(text: &str) -> f64 {
    let ep = count_byte(text.as_bytes(), b'!');
    let qm = count_byte(text.as_bytes(), b'?');
    let ep_amplifier = ep.min(4) as f64 * 0.292;
    let qm_amplifier = if qm > 1 {
        if qm <= 3 {
            qm as f64 * 0.18
        } else {
            0.96
        }
    } else {
        0.0
    };
    ep_amplifier + qm_amplifier
}

/// Occurrences of `needle` in `bytes` (`str.count` for an ASCII character), counted in
/// chunks with byte-wide counters so that the loop vectorises.
fn count_byte(bytes: &[u8], needle: u8) -> usize {
    bytes
        .chunks(255)
        .map(|chunk| {
            let in_chunk = chunk
                .iter()
                .fold(0u8, |acc, &b| acc.wrapping_add(u8::from(b == needle)));
            usize::from(in_chunk)
        })
        .sum()
}

/// Maps a raw score into `[-1, 1]`.
fn normalize(score: f64) -> f64 {
    (score / (score * score + ALPHA).sqrt()).clamp(-1.0, 1.0)
}

/// `scalar_inc_dec`: the boost (or dampening) a preceding word gives a valence.
fn scalar_inc_dec(booster: Option<f64>, is_upper: bool, valence: f64, is_cap_diff: bool) -> f64 {
    let Some(mut scalar) = booster else {
        return 0.0;
    };
    if valence < 0.0 {
        scalar *= -1.0;
    }
    if is_upper && is_cap_diff {
        if valence > 0.0 {
            scalar += C_INCR;
        } else {
            scalar -= C_INCR;
        }
    }
    scalar
}

/// `str.split()` without arguments: splits on runs of Python whitespace, no empty pieces.
struct PySplit<'a> {
    text: &'a str,
    pos: usize,
}

/// Byte classes for [`PySplit`]: 0 never starts whitespace (including UTF-8 continuation
/// bytes), 1 is ASCII whitespace, 2 is the lead byte of a possible non-ASCII whitespace
/// character (U+0085, U+00A0, U+1680, U+2000..U+205F, U+3000).
const SPACE_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        table[b] = match b as u8 {
            b' ' | b'\t'..=b'\r' | 0x1c..=0x1f => 1,
            0xc2 | 0xe1 | 0xe2 | 0xe3 => 2,
            _ => 0,
        };
        b += 1;
    }
    table
};

impl<'a> PySplit<'a> {
    fn new(text: &'a str) -> Self {
        PySplit { text, pos: 0 }
    }

    /// Length in bytes of the whitespace character starting at byte `i`, if it is one.
    #[inline]
    fn space_len(&self, i: usize) -> Option<usize> {
        let c = self.text.get(i..)?.chars().next()?;
        py_isspace(c).then(|| c.len_utf8())
    }
}

impl<'a> Iterator for PySplit<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let mut i = self.pos;
        // Skip whitespace. Every step lands on a character boundary.
        loop {
            let &b = bytes.get(i)?;
            match SPACE_CLASS[usize::from(b)] {
                1 => i += 1,
                2 => match self.space_len(i) {
                    Some(len) => i += len,
                    None => break,
                },
                _ => break,
            }
        }
        let start = i;
        // Scan the word byte by byte: continuation bytes are never whitespace.
        while let Some(&b) = bytes.get(i) {
            match SPACE_CLASS[usize::from(b)] {
                0 => i += 1,
                1 => break,
                _ => {
                    if self.space_len(i).is_some() {
                        break;
                    }
                    i += 1;
                }
            }
        }
        self.pos = i;
        self.text.get(start..i)
    }
}

/// `SentiText._strip_punc_if_word`: strips leading and trailing ASCII punctuation unless
/// fewer than three characters would remain (then the token is likely an emoticon).
fn strip_punc_if_word(token: &str) -> &str {
    let bytes = token.as_bytes();
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_punctuation())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_punctuation())
        .map_or(start, |p| p + 1);
    // ASCII bytes are character boundaries, so this slice is always valid.
    let stripped = token.get(start..end).unwrap_or(token);
    if stripped.len() > 2 && (stripped.is_ascii() || stripped.chars().nth(2).is_some()) {
        stripped
    } else {
        token
    }
}

/// Python's `str.isspace` for one character: Rust's `White_Space` plus the information
/// separators U+001C..U+001F, which Python treats as whitespace too.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` without arguments.
fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

/// Python's `str.isupper`: no lowercase or titlecase character and at least one uppercase.
fn py_isupper(s: &str) -> bool {
    if s.is_ascii() {
        let b = s.as_bytes();
        return !b.iter().any(u8::is_ascii_lowercase) && b.iter().any(u8::is_ascii_uppercase);
    }
    let mut cased = false;
    for c in s.chars() {
        if py_is_lowercase(c) || is_titlecase(c) {
            return false;
        }
        cased |= py_is_uppercase(c);
    }
    cased
}

/// The `Lowercase` property as CPython 3.11 (Unicode 14.0) sees it: Rust's, less the
/// characters whose status changed in later Unicode versions or that were assigned later.
fn py_is_lowercase(c: char) -> bool {
    match c {
        '\u{0295}' => true,
        '\u{10FC}'
        | '\u{A7F2}'..='\u{A7F4}'
        | '\u{AB69}'
        | '\u{1C8A}'
        | '\u{A7CD}'
        | '\u{A7CF}'
        | '\u{A7DB}'
        | '\u{A7F1}'
        | '\u{10D70}'..='\u{10D85}'
        | '\u{16EBB}'..='\u{16ED3}'
        | '\u{1DF25}'..='\u{1DF2A}'
        | '\u{1E030}'..='\u{1E06D}' => false,
        _ => c.is_lowercase(),
    }
}

/// The `Uppercase` property as CPython 3.11 (Unicode 14.0) sees it: Rust's, less the
/// uppercase letters assigned after Unicode 14.0.
fn py_is_uppercase(c: char) -> bool {
    match c {
        '\u{1C89}'
        | '\u{A7CB}'..='\u{A7CC}'
        | '\u{A7CE}'
        | '\u{A7D2}'
        | '\u{A7D4}'
        | '\u{A7DA}'
        | '\u{A7DC}'
        | '\u{10D50}'..='\u{10D65}'
        | '\u{16EA0}'..='\u{16EB8}' => false,
        _ => c.is_uppercase(),
    }
}

/// Characters of general category Lt (titlecase letters).
fn is_titlecase(c: char) -> bool {
    matches!(
        c,
        '\u{01C5}'
            | '\u{01C8}'
            | '\u{01CB}'
            | '\u{01F2}'
            | '\u{1F88}'..='\u{1F8F}'
            | '\u{1F98}'..='\u{1F9F}'
            | '\u{1FA8}'..='\u{1FAF}'
            | '\u{1FBC}'
            | '\u{1FCC}'
            | '\u{1FFC}'
    )
}

/// Python's `round(x, digits)`: rounds the exact binary value to `digits` decimals, ties to
/// even. Scaling is exact enough unless the scaled value is within 1e-9 of a tie; those go
/// through a correctly rounded decimal rendering (kept on the stack), like CPython does.
fn py_round(x: f64, digits: usize) -> f64 {
    use std::fmt::Write as _;
    if !x.is_finite() {
        return x;
    }
    let scale = match digits {
        3 => 1e3,
        4 => 1e4,
        _ => f64::NAN,
    };
    let scaled = x * scale;
    let frac = scaled - scaled.floor();
    // Only for |x| <= 1 (all VADER scores): there the product errs by under 1e-12.
    if x.abs() <= 1.0 && (frac - 0.5).abs() > 1e-9 {
        // k and 10^digits are exact, so the division is the double nearest k / 10^digits,
        // which is what parsing the decimal digits gives.
        return scaled.round() / scale;
    }
    let mut buf = StackStr::default();
    if write!(buf, "{x:.digits$}").is_err() {
        return x;
    }
    buf.as_str().parse().unwrap_or(x)
}

/// A small fixed-capacity string, to format numbers without allocating.
struct StackStr {
    buf: [u8; 48],
    len: usize,
}

impl Default for StackStr {
    fn default() -> Self {
        StackStr {
            buf: [0; 48],
            len: 0,
        }
    }
}

impl StackStr {
    fn as_str(&self) -> &str {
        self.buf
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

impl fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dest = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// FxHash (as used in rustc): fast and good enough for short keys in fixed tables.
#[derive(Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

type FxBuildHasher = BuildHasherDefault<FxHasher>;

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_vader() -> Vader {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/vader");
        let lex = std::fs::read_to_string(format!("{dir}/vader_lexicon.txt"))
            .expect("models/vader/vader_lexicon.txt is readable");
        let emoji = std::fs::read_to_string(format!("{dir}/emoji_utf8_lexicon.txt"))
            .expect("models/vader/emoji_utf8_lexicon.txt is readable");
        Vader::from_lexicons(&lex, &emoji).expect("lexicons parse")
    }

    fn compound(v: &Vader, text: &str) -> f64 {
        v.polarity_scores(text).compound
    }

    #[test]
    fn analyzer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Vader>();
    }

    #[test]
    fn negation_flips_sign() {
        let v = test_vader();
        assert!(compound(&v, "good") > 0.0);
        assert!(compound(&v, "not good") < 0.0);
        assert!(compound(&v, "The movie isn't good") < 0.0);
        assert!(compound(&v, "it was never good") < 0.0);
        // Reference values of vaderSentiment 3.3.2.
        assert_eq!(compound(&v, "good"), 0.4404);
        assert_eq!(compound(&v, "not good"), -0.3412);
    }

    #[test]
    fn booster_increases_magnitude() {
        let v = test_vader();
        assert!(compound(&v, "very good") > compound(&v, "good"));
        assert!(compound(&v, "very bad") < compound(&v, "bad"));
        assert_eq!(compound(&v, "very bad"), -0.5849);
        // Dampeners reduce it.
        assert!(compound(&v, "slightly good") < compound(&v, "good"));
        assert!(compound(&v, "it was sort of good") < compound(&v, "it was good"));
        assert!(compound(&v, "it was kind of good") < compound(&v, "it was good"));
    }

    #[test]
    fn all_caps_emphasis_needs_mixed_case() {
        let v = test_vader();
        assert!(compound(&v, "GOOD movie") > compound(&v, "good movie"));
        assert_eq!(compound(&v, "GOOD movie"), 0.5622);
        // All words in caps: no differential, same as lowercase.
        assert_eq!(compound(&v, "GOOD MOVIE"), compound(&v, "good movie"));
    }

    #[test]
    fn but_shifts_weight_to_second_clause() {
        let v = test_vader();
        let good_then_bad = "The food was good, but the service was horrible";
        let bad_then_good = "The food was horrible, but the service was good";
        assert_eq!(compound(&v, good_then_bad), -0.5859);
        assert_eq!(compound(&v, bad_then_good), 0.3818);
        let s = v.polarity_scores(good_then_bad);
        assert!(s.negative > s.positive);
    }

    #[test]
    fn exclamation_and_question_marks_amplify() {
        let v = test_vader();
        assert!(compound(&v, "good!") > compound(&v, "good"));
        assert!(compound(&v, "good!!!") > compound(&v, "good!"));
        // Capped at four.
        assert_eq!(compound(&v, "good!!!!"), 0.6209);
        assert_eq!(compound(&v, "good!!!!!!!"), 0.6209);
        // A single "?" adds nothing, two or more do.
        assert_eq!(compound(&v, "good?"), compound(&v, "good"));
        assert!(compound(&v, "good??") > compound(&v, "good?"));
        assert!(compound(&v, "bad!") < compound(&v, "bad"));
    }

    #[test]
    fn emoticons_and_emoji_carry_sentiment() {
        let v = test_vader();
        assert_eq!(compound(&v, ":)"), 0.4588);
        assert_eq!(compound(&v, ":-("), -0.3612);
        assert_eq!(compound(&v, "<3"), 0.4404);
        assert_eq!(compound(&v, "\u{1F600}"), 0.3612);
        assert_eq!(compound(&v, "I lost my keys \u{1F622}"), -0.6597);
        // The emoji is replaced by its description.
        assert_eq!(
            v.polarity_scores("\u{1F600}"),
            v.polarity_scores("grinning face")
        );
    }

    #[test]
    fn special_case_idioms() {
        let v = test_vader();
        // "bomb" alone is negative; "the bomb" (three words in) is strongly positive.
        assert!(compound(&v, "bomb") < 0.0);
        assert_eq!(compound(&v, "the movie is the bomb"), 0.6124);
        assert_eq!(compound(&v, "this is the shit"), 0.6124);
        assert_eq!(compound(&v, "he said oh yeah right"), -0.4588);
        // Quirk kept from the reference: idioms are only checked three words in.
        assert!(compound(&v, "oh yeah right") > 0.0);
    }

    #[test]
    fn kind_of_and_least() {
        let v = test_vader();
        assert_eq!(compound(&v, "The book was only kind of good."), 0.3832);
        assert_eq!(compound(&v, "the least good option"), -0.3412);
        assert_eq!(compound(&v, "at least good"), 0.4404);
    }

    #[test]
    fn no_negates_following_lexicon_word() {
        let v = test_vader();
        assert!(compound(&v, "no") < 0.0);
        assert!(compound(&v, "no problems") > 0.0);
    }

    #[test]
    fn empty_and_blank_texts_score_zero() {
        let v = test_vader();
        for text in ["", " ", "\n\t  ", "\u{3000}"] {
            assert_eq!(v.polarity_scores(text), PolarityScores::default());
        }
        // Words without sentiment: fully neutral.
        let s = v.polarity_scores("the table");
        assert_eq!(s.compound, 0.0);
        assert_eq!(s.neutral, 1.0);
    }

    #[test]
    fn scores_are_proportions() {
        let v = test_vader();
        let s = v.polarity_scores("VADER is smart, handsome, and funny.");
        assert_eq!(s.compound, 0.8316);
        assert_eq!((s.negative, s.neutral, s.positive), (0.0, 0.254, 0.746));
        let total = s.negative + s.neutral + s.positive;
        assert!((total - 1.0).abs() < 0.01);
    }

    #[test]
    fn reference_examples() {
        let v = test_vader();
        // Values printed by vaderSentiment 3.3.2.
        let cases = [
            ("VADER is very smart, handsome, and funny.", 0.8545),
            ("VADER is VERY SMART, handsome, and FUNNY!!!", 0.9342),
            ("VADER is not smart, handsome, nor funny.", -0.7424),
            ("At least it isn't a horrible book.", 0.431),
            ("The book was only kind of good.", 0.3832),
            ("Today SUX!", -0.5461),
            ("Today only kinda sux! But I'll get by, lol", 0.5249),
            ("Make sure you :) or :D today!", 0.8633),
            ("Catch utf-8 emoji such as 💘 and 💋 and 😁", 0.875),
            ("Not bad at all", 0.431),
            ("Sentiment analysis has never been this good!", 0.5672),
            ("With VADER, sentiment analysis is the shit!", 0.6476),
            ("On the other hand, VADER is quite bad ass", 0.802),
            (
                "Roger Dodger is one of the least compelling variations on this theme.",
                -0.1695,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(compound(&v, text), expected, "{text}");
        }
    }

    #[test]
    fn python_rounding() {
        assert_eq!(py_round(0.25, 1), 0.2);
        assert_eq!(py_round(0.35, 1), 0.3); // 0.35 is below the tie in binary
        assert_eq!(py_round(-0.00001, 3), 0.0);
        assert_eq!(py_round(0.12345, 4), 0.1235);
        assert_eq!(py_round(0.00015, 4), 0.0001); // just below the tie in binary
        assert_eq!(py_round(-0.00005, 4), -0.0001); // just above (in magnitude)
        assert_eq!(py_round(0.5, 0), 0.0);
        assert_eq!(py_round(2.5, 0), 2.0);
        assert_eq!(py_round(12345.6789, 3), 12345.679);
    }

    #[test]
    fn python_string_semantics() {
        assert!(py_isupper("GOOD!"));
        assert!(!py_isupper("Good"));
        assert!(!py_isupper(":)"));
        assert!(py_isupper("ÉTÉ"));
        assert!(!py_isupper("\u{01C5}A"));
        assert!(!py_isupper("\u{0295}OK"));
        assert!(py_isspace('\u{1f}'));
        assert_eq!(strip_punc_if_word("good!!!"), "good");
        assert_eq!(strip_punc_if_word(":-)"), ":-)");
        assert_eq!(strip_punc_if_word("(ok)"), "(ok)");
    }

    #[test]
    fn lexicon_errors_name_file_and_line() {
        let err = Vader::from_lexicons("good\t1.9\nbad\n", "").unwrap_err();
        assert_eq!((err.kind(), err.line()), (LexiconKind::Valence, 2));
        assert!(err.to_string().contains("line 2"));
        let err = Vader::from_lexicons("good\tx\n", "").unwrap_err();
        assert_eq!(err.line(), 1);
        let err = Vader::from_lexicons("good\t1.9\r\n", "\u{1F600}\tgrin\nbroken\n").unwrap_err();
        assert_eq!((err.kind(), err.line()), (LexiconKind::Emoji, 2));
        assert!(Vader::from_lexicons("", "").is_err());
    }

    #[test]
    fn weird_inputs_do_not_panic() {
        let v = test_vader();
        let long_but = "good but bad ".repeat(2000);
        let long = "😀 not very GOOD but no bad!!?? ".repeat(5000);
        let inputs: Vec<String> = vec![
            String::new(),
            "!!!!!".into(),
            "?????".into(),
            "...,,,;;;".into(),
            "\u{0301}\u{0301}e\u{0301}".into(),
            "\u{200b}\u{200b}".into(),
            "\u{1c}\u{1d}\u{85}\u{a0}".into(),
            "İSTANBUL çok GÜZEL".into(),
            "ΣΊΣΥΦΟΣ Σ".into(),
            "🏳️‍🌈👨‍👩‍👧😀😀😀©®".into(),
            "no".into(),
            "no no no no".into(),
            "but".into(),
            "but but but".into(),
            "kind".into(),
            "kind of".into(),
            "least".into(),
            "never so".into(),
            "NO GOOD".into(),
            "\u{10FFFF}\u{FFFD}\0".into(),
            "a\tb\nc\rd".into(),
            long_but,
            long,
        ];
        // Plus deterministic pseudo-random strings over the whole code point range.
        let mut inputs = inputs;
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..2000 {
            let mut text = String::new();
            for _ in 0..(state % 40) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let cp = match state % 4 {
                    0 => (state >> 8) % 0x80,
                    1 => (state >> 8) % 0x3000,
                    2 => 0x1F300 + (state >> 8) % 0x700,
                    _ => (state >> 8) % 0x11_0000,
                };
                text.extend(u32::try_from(cp).ok().and_then(char::from_u32));
            }
            inputs.push(text);
        }
        for text in &inputs {
            let s = v.polarity_scores(text);
            assert!(
                s.compound.is_finite() && (-1.0..=1.0).contains(&s.compound),
                "{text:?}"
            );
            assert!(s.negative >= 0.0 && s.neutral >= 0.0 && s.positive >= 0.0);
        }
    }
}
