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
    pub fn kind(&self) -> LexiconKind {
        self.kind
    }

    /// The 1-based line number of the offending line (0 when the error concerns the whole file).
    pub fn line(&self) -> usize {
        self.line
    }

    /// What is wrong with the line.
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
    /// Token (as written in the lexicon) to mean valence.
    lexicon: HashMap<Box<str>, f64, FxBuildHasher>,
    /// Single-character emoji to its textual description. Multi-character entries of the
    /// emoji lexicon are left out: the reference compares one character at a time, so they
    /// can never match.
    emojis: HashMap<char, Box<str>, FxBuildHasher>,
    /// Smallest emoji character, to skip the map for most characters (ASCII in particular).
    min_emoji: char,
}

impl Vader {
    /// Builds the analyzer from the text of the two lexicon files.
    ///
    /// `vader_lexicon` has one `token<TAB>mean<TAB>...` entry per line, `emoji_lexicon` one
    /// `emoji<TAB>description` entry per line; blank lines are skipped, surrounding
    /// whitespace (including `\r`) is ignored, and a later duplicate overrides an earlier
    /// entry, as in the reference implementation. Fails on a line with fewer than two
    /// tab-separated fields or with a mean that is not a number.
    pub fn from_lexicons(vader_lexicon: &str, emoji_lexicon: &str) -> Result<Self, LexiconError> {
        let mut lexicon: HashMap<Box<str>, f64, FxBuildHasher> = HashMap::default();
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
            lexicon.insert(word.into(), value);
        }
        if lexicon.is_empty() {
            return Err(LexiconError {
                kind: LexiconKind::Valence,
                line: 0,
                reason: "no entries".to_string(),
            });
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
            lexicon,
            emojis,
            min_emoji,
        })
    }

    /// Scores one text: VADER's `neg`, `neu`, `pos` and `compound`.
    ///
    /// Never panics; a text without words (empty, whitespace only) scores all zeros.
    pub fn polarity_scores(&self, text: &str) -> PolarityScores {
        let text = self.replace_emojis(text);
        let text = py_strip(&text);
        let words = Words::new(text, &self.lexicon);
        let mut sentiments: Vec<f64> = Vec::with_capacity(words.len());
        let n = words.len();
        for i in 0..n {
            let lower = words.lower(i);
            if booster(lower).is_some()
                || (i + 1 < n && lower == "kind" && words.lower(i + 1) == "of")
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
        let is_emoji = |c: char| c >= self.min_emoji && self.emojis.contains_key(&c);
        let Some(first) = text.char_indices().find(|&(_, c)| is_emoji(c)) else {
            return Cow::Borrowed(text);
        };
        let mut out = String::with_capacity(text.len() + 32);
        out.push_str(&text[..first.0]);
        let mut prev_space = first.0 == 0 || text[..first.0].ends_with(' ');
        for c in text[first.0..].chars() {
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

/// The tokens of one text, with what the rules ask of each of them.
struct Words<'a> {
    /// Tokens as the reference keeps them (punctuation stripped when the word survives).
    raw: Vec<&'a str>,
    /// The lowercased tokens, concatenated.
    lower_buf: String,
    /// End offset of each lowercased token in `lower_buf`.
    lower_end: Vec<usize>,
    /// Lexicon valence of each lowercased token.
    valence: Vec<Option<f64>>,
    /// Whether each token is ALL CAPS (`str.isupper`).
    upper: Vec<bool>,
    /// Whether some, but not all, tokens are ALL CAPS.
    is_cap_diff: bool,
}

impl<'a> Words<'a> {
    fn new(text: &'a str, lexicon: &HashMap<Box<str>, f64, FxBuildHasher>) -> Self {
        let raw: Vec<&'a str> = text
            .split(py_isspace)
            .filter(|t| !t.is_empty())
            .map(strip_punc_if_word)
            .collect();
        let mut lower_buf = String::with_capacity(text.len());
        let mut lower_end = Vec::with_capacity(raw.len());
        let mut valence = Vec::with_capacity(raw.len());
        let mut upper = Vec::with_capacity(raw.len());
        let mut upper_count = 0usize;
        for token in &raw {
            let start = lower_buf.len();
            if token.is_ascii() {
                lower_buf.push_str(token);
                lower_buf[start..].make_ascii_lowercase();
            } else {
                lower_buf.push_str(&token.to_lowercase());
            }
            lower_end.push(lower_buf.len());
            valence.push(lexicon.get(&lower_buf[start..]).copied());
            let is_upper = py_isupper(token);
            upper_count += usize::from(is_upper);
            upper.push(is_upper);
        }
        let is_cap_diff = upper_count > 0 && upper_count < raw.len();
        Words {
            raw,
            lower_buf,
            lower_end,
            valence,
            upper,
            is_cap_diff,
        }
    }

    fn len(&self) -> usize {
        self.raw.len()
    }

    /// The lowercased token `i` (empty past the end).
    fn lower(&self, i: usize) -> &str {
        let end = self.lower_end.get(i).copied().unwrap_or(0);
        let start = match i.checked_sub(1) {
            Some(p) => self.lower_end.get(p).copied().unwrap_or(end),
            None => 0,
        };
        self.lower_buf.get(start..end).unwrap_or("")
    }

    fn in_lexicon(&self, i: usize) -> bool {
        matches!(self.valence.get(i), Some(Some(_)))
    }

    fn is_upper(&self, i: usize) -> bool {
        self.upper.get(i).copied().unwrap_or(false)
    }

    /// `SentimentIntensityAnalyzer.sentiment_valence` for token `i`.
    fn sentiment_valence(&self, i: usize) -> f64 {
        let Some(Some(base)) = self.valence.get(i).copied() else {
            return 0.0;
        };
        let n = self.len();
        let mut valence = base;
        // "no" before a lexicon word negates it instead of counting itself.
        if self.lower(i) == "no" && i + 1 != n && self.in_lexicon(i + 1) {
            valence = 0.0;
        }
        if (i > 0 && self.lower(i - 1) == "no")
            || (i > 1 && self.lower(i - 2) == "no")
            || (i > 2 && self.lower(i - 3) == "no" && matches!(self.lower(i - 1), "or" | "nor"))
        {
            valence = base * N_SCALAR;
        }
        // ALL CAPS emphasis (note: a zero valence is pushed negative, as in the reference).
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
            let mut s = scalar_inc_dec(self.lower(j), self.is_upper(j), valence, self.is_cap_diff);
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

    /// `_negation_check`, for a window offset `start_i` whose word is at `i - start_i - 1`.
    fn negation_check(&self, valence: f64, start_i: usize, i: usize) -> f64 {
        let w = |back: usize| i.checked_sub(back).map_or("", |j| self.lower(j));
        match start_i {
            0 => {
                if negated(w(1)) {
                    return valence * N_SCALAR;
                }
            }
            1 => {
                if w(2) == "never" && matches!(w(1), "so" | "this") {
                    return valence * 1.25;
                } else if w(2) == "without" && w(1) == "doubt" {
                    return valence;
                } else if negated(w(2)) {
                    return valence * N_SCALAR;
                }
            }
            2 => {
                // The reference reads `a and b or c`, i.e. `(a and b) or c`: a "so"/"this"
                // right before the word boosts it whatever comes three words back.
                if (w(3) == "never" && matches!(w(2), "so" | "this"))
                    || matches!(w(1), "so" | "this")
                {
                    return valence * 1.25;
                } else if w(3) == "without" && (w(2) == "doubt" || w(1) == "doubt") {
                    return valence;
                } else if negated(w(3)) {
                    return valence * N_SCALAR;
                }
            }
            _ => {}
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
            self.lower(i - 3),
            self.lower(i - 2),
            self.lower(i - 1),
            self.lower(i),
        );
        // onezero, twoonezero, twoone, threetwoone, threetwo: the first match wins.
        let found = special_case(&[w1, w0])
            .or_else(|| special_case(&[w2, w1, w0]))
            .or_else(|| special_case(&[w2, w1]))
            .or_else(|| special_case(&[w3, w2, w1]))
            .or_else(|| special_case(&[w3, w2]));
        if let Some(v) = found {
            valence = v;
        }
        if n - 1 > i {
            if let Some(v) = special_case(&[w0, self.lower(i + 1)]) {
                valence = v;
            }
        }
        if n - 1 > i + 1 {
            if let Some(v) = special_case(&[w0, self.lower(i + 1), self.lower(i + 2)]) {
                valence = v;
            }
        }
        // Booster/dampener bigrams such as "sort of" (threetwoone, threetwo, twoone; the
        // dictionary has no three-word entry, so the first never matches).
        for pair in [[w3, w2], [w2, w1]] {
            if let Some(b) = booster_bigram(pair[0], pair[1]) {
                valence += b;
            }
        }
        valence
    }

    /// `_least_check`: "least" before a word negates it, unless "at least" / "very least".
    fn least_check(&self, valence: f64, i: usize) -> f64 {
        if i > 1 && !self.in_lexicon(i - 1) && self.lower(i - 1) == "least" {
            if self.lower(i - 2) != "at" && self.lower(i - 2) != "very" {
                return valence * N_SCALAR;
            }
        } else if i > 0 && !self.in_lexicon(i - 1) && self.lower(i - 1) == "least" {
            return valence * N_SCALAR;
        }
        valence
    }
}

/// `_but_check`: halves the sentiments before the first "but" and adds half to those after.
///
/// Reproduces the reference's quirk: each value is located with `list.index`, i.e. at the
/// first position holding an equal value, which may be an earlier (already scaled) entry.
fn but_check(words: &Words<'_>, sentiments: &mut [f64]) {
    let Some(bi) = (0..words.len()).find(|&k| words.lower(k) == "but") else {
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
    let (mut ep, mut qm) = (0usize, 0usize);
    for b in text.bytes() {
        match b {
            b'!' => ep += 1,
            b'?' => qm += 1,
            _ => {}
        }
    }
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

/// Maps a raw score into `[-1, 1]`.
fn normalize(score: f64) -> f64 {
    let norm_score = score / (score * score + ALPHA).sqrt();
    if norm_score < -1.0 {
        -1.0
    } else if norm_score > 1.0 {
        1.0
    } else {
        norm_score
    }
}

/// `scalar_inc_dec`: the boost (or dampening) a preceding word gives a valence.
fn scalar_inc_dec(lower: &str, is_upper: bool, valence: f64, is_cap_diff: bool) -> f64 {
    let Some(mut scalar) = booster(lower) else {
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

/// Single-word entries of `BOOSTER_DICT`.
fn booster(word: &str) -> Option<f64> {
    match word {
        "absolutely" | "amazingly" | "awfully" | "completely" | "considerable" | "considerably"
        | "decidedly" | "deeply" | "effing" | "enormous" | "enormously" | "entirely"
        | "especially" | "exceptional" | "exceptionally" | "extreme" | "extremely"
        | "fabulously" | "flipping" | "flippin" | "frackin" | "fracking" | "fricking"
        | "frickin" | "frigging" | "friggin" | "fully" | "fuckin" | "fucking" | "fuggin"
        | "fugging" | "greatly" | "hella" | "highly" | "hugely" | "incredible" | "incredibly"
        | "intensely" | "major" | "majorly" | "more" | "most" | "particularly" | "purely"
        | "quite" | "really" | "remarkably" | "so" | "substantially" | "thoroughly" | "total"
        | "totally" | "tremendous" | "tremendously" | "uber" | "unbelievably" | "unusually"
        | "utter" | "utterly" | "very" => Some(B_INCR),
        "almost" | "barely" | "hardly" | "kinda" | "kindof" | "kind-of" | "less" | "little"
        | "marginal" | "marginally" | "occasional" | "occasionally" | "partly" | "scarce"
        | "scarcely" | "slight" | "slightly" | "somewhat" | "sorta" | "sortof" | "sort-of" => {
            Some(B_DECR)
        }
        _ => None,
    }
}

/// Two-word entries of `BOOSTER_DICT`.
fn booster_bigram(a: &str, b: &str) -> Option<f64> {
    match (a, b) {
        ("just", "enough") | ("kind", "of") | ("sort", "of") => Some(B_DECR),
        _ => None,
    }
}

/// `SPECIAL_CASES`, looked up by words (tokens never contain a space, so this is the same as
/// the reference's lookup of the space-joined string; the one-word key "badass" can never
/// match there).
fn special_case(words: &[&str]) -> Option<f64> {
    match words {
        ["the", "shit"] => Some(3.0),
        ["the", "bomb"] => Some(3.0),
        ["bad", "ass"] => Some(1.5),
        ["bus", "stop"] => Some(0.0),
        ["yeah", "right"] => Some(-2.0),
        ["kiss", "of", "death"] => Some(-1.5),
        ["to", "die", "for"] => Some(3.0),
        ["beating", "heart"] => Some(3.5),
        _ => None,
    }
}

/// `negated([word])` on a lowercased word: a `NEGATE` word, or any word containing "n't".
fn negated(word: &str) -> bool {
    matches!(
        word,
        "aint"
            | "arent"
            | "cannot"
            | "cant"
            | "couldnt"
            | "darent"
            | "didnt"
            | "doesnt"
            | "ain't"
            | "aren't"
            | "can't"
            | "couldn't"
            | "daren't"
            | "didn't"
            | "doesn't"
            | "dont"
            | "hadnt"
            | "hasnt"
            | "havent"
            | "isnt"
            | "mightnt"
            | "mustnt"
            | "neither"
            | "don't"
            | "hadn't"
            | "hasn't"
            | "haven't"
            | "isn't"
            | "mightn't"
            | "mustn't"
            | "neednt"
            | "needn't"
            | "never"
            | "none"
            | "nope"
            | "nor"
            | "not"
            | "nothing"
            | "nowhere"
            | "oughtnt"
            | "shant"
            | "shouldnt"
            | "uhuh"
            | "wasnt"
            | "werent"
            | "oughtn't"
            | "shan't"
            | "shouldn't"
            | "uh-uh"
            | "wasn't"
            | "weren't"
            | "without"
            | "wont"
            | "wouldnt"
            | "won't"
            | "wouldn't"
            | "rarely"
            | "seldom"
            | "despite"
    ) || word.contains("n't")
}

/// `SentiText._strip_punc_if_word`: strips leading and trailing ASCII punctuation unless
/// fewer than three characters would remain (then the token is likely an emoticon).
fn strip_punc_if_word(token: &str) -> &str {
    let stripped = token.trim_matches(|c: char| c.is_ascii_punctuation());
    if stripped.chars().nth(2).is_none() {
        token
    } else {
        stripped
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
        if c.is_lowercase() || is_titlecase(c) {
            return false;
        }
        cased |= c.is_uppercase();
    }
    cased
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
/// even, via a correctly rounded decimal rendering (kept on the stack).
fn py_round(x: f64, digits: usize) -> f64 {
    use std::fmt::Write as _;
    if !x.is_finite() || x.abs() >= 1e15 {
        return x;
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
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/models/vader");
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
        assert!(compound(&v, "slightly good") < compound(&v, "good"));
        assert!(compound(&v, "sort of good") < compound(&v, "it is good"));
    }

    #[test]
    fn all_caps_emphasis_needs_mixed_case() {
        let v = test_vader();
        assert!(compound(&v, "GOOD movie") > compound(&v, "good movie"));
        // All words in caps: no differential, same as lowercase.
        assert_eq!(compound(&v, "GOOD MOVIE"), compound(&v, "good movie"));
    }

    #[test]
    fn but_shifts_weight_to_second_clause() {
        let v = test_vader();
        assert!(compound(&v, "The food was good, but the service was horrible") < 0.0);
        assert!(compound(&v, "The food was horrible, but the service was good") > 0.0);
        let s = v.polarity_scores("The food was good, but the service was horrible");
        assert!(s.negative > s.positive);
    }

    #[test]
    fn exclamation_and_question_marks_amplify() {
        let v = test_vader();
        assert!(compound(&v, "good!") > compound(&v, "good"));
        assert!(compound(&v, "good!!!") > compound(&v, "good!"));
        // Capped at four.
        assert_eq!(compound(&v, "good!!!!"), compound(&v, "good!!!!!!!"));
        assert!(compound(&v, "good??") > compound(&v, "good?"));
        assert!(compound(&v, "bad!") < compound(&v, "bad"));
    }

    #[test]
    fn emoticons_and_emoji_carry_sentiment() {
        let v = test_vader();
        assert!(compound(&v, ":)") > 0.0);
        assert!(compound(&v, ":-(") < 0.0);
        assert!(compound(&v, "<3") > 0.0);
        assert!(compound(&v, "😀") > 0.0);
        assert!(compound(&v, "I lost my keys 😢") < 0.0);
        // Emoji description replaces the character (one space before, none after).
        assert_eq!(compound(&v, "😀"), compound(&v, "grinning face"));
    }

    #[test]
    fn special_case_idioms() {
        let v = test_vader();
        // "bomb" alone is negative; "the bomb" (three words in) is strongly positive.
        assert!(compound(&v, "bomb") < 0.0);
        assert!(compound(&v, "this party is the bomb") > 0.5);
        assert!(compound(&v, "oh yeah right") < 0.0);
    }

    #[test]
    fn kind_of_and_least() {
        let v = test_vader();
        assert!(compound(&v, "it was kind of good") < compound(&v, "it was good"));
        assert!(compound(&v, "the least good option") < 0.0);
        assert!(compound(&v, "at least good") > 0.0);
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
    }

    #[test]
    fn python_string_semantics() {
        assert!(py_isupper("GOOD!"));
        assert!(!py_isupper("Good"));
        assert!(!py_isupper(":)"));
        assert!(py_isupper("ÉTÉ"));
        assert!(!py_isupper("\u{01C5}A"));
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
