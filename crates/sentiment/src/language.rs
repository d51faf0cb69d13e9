//! Which language a text is written in: an ISO 639-1 code and a confidence, from the `whatlang`
//! detector (trigram and script statistics of 69 languages, no model files, no allocation beyond
//! its own) after the parts of a social post that belong to no language are taken out.
//!
//! Tweets are the hard case: `@mentions`, URLs, hashtags and emoji are letters without a
//! language, and a 60-character text gives the trigram statistics little to go on. [`detect`]
//! drops mentions, URLs, the `#` of hashtags (the word stays: it is usually in the writer's
//! language), `RT` and digits before detecting; BENCHMARKS.md ("Language identification") has
//! what each step gains on UMSAB's tweets and what `lingua` would have given instead.

use std::cell::RefCell;

/// The language of a text.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Language {
    /// ISO 639-1 code, lowercase (`en`, `fr`, `ar`, …).
    pub code: &'static str,
    /// How sure the detector is, in [0, 1] (whatlang's confidence: the margin between the best
    /// and the second-best language, scaled by how much text there was).
    pub confidence: f32,
}

/// Texts longer than this many bytes are detected from their first this-many bytes (cut at a
/// character boundary): the language of a long e-mail is settled well before its end, and
/// detection time grows with the length.
pub const MAX_DETECTED_BYTES: usize = 1024;

thread_local! {
    /// The cleaned text of the last call, reused so that detection allocates nothing per call.
    static CLEANED: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The language of `text` among all the languages whatlang knows, or `None` when nothing in it
/// belongs to a language (empty, only mentions, links, digits or emoji) or the detector cannot
/// tell.
pub fn detect(text: &str) -> Option<Language> {
    detect_with(text, None)
}

/// Detects `text` as it is, without [`clean_for_detection`] (what the detector alone does; for
/// measurements).
pub fn detect_raw(text: &str) -> Option<Language> {
    detect_cleaned(text, None)
}

/// A language detector, over every language whatlang knows or only some (`[language]
/// candidates` in the config: a tenant base that writes in a few known languages is read more
/// accurately and about 4× faster, BENCHMARKS.md).
#[derive(Clone, Default)]
pub struct LanguageDetector {
    /// `None`: every language.
    only: Option<whatlang::Detector>,
}

impl std::fmt::Debug for LanguageDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanguageDetector")
            .field("restricted", &self.only.is_some())
            .finish()
    }
}

/// A candidate language the detector does not know; `index` is its place in the list.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown language {code:?} at {index}: an ISO 639-1 code of one of whatlang's 69 languages (en, fr, de, es, pt, it, ar, hi, …)")]
pub struct UnknownLanguage {
    /// Position of the code in the list given.
    pub index: usize,
    /// The code as given.
    pub code: String,
}

impl LanguageDetector {
    /// A detector over every language whatlang knows (what [`detect`] uses).
    pub fn all() -> Self {
        Self::default()
    }

    /// A detector choosing only among `codes` (ISO 639-1); an empty list means every language.
    pub fn only<S: AsRef<str>>(codes: &[S]) -> Result<Self, UnknownLanguage> {
        if codes.is_empty() {
            return Ok(Self::all());
        }
        let mut langs = Vec::with_capacity(codes.len());
        for (index, code) in codes.iter().enumerate() {
            let code = code.as_ref();
            let lang = whatlang::Lang::all()
                .iter()
                .copied()
                .find(|lang| iso_639_1(*lang) == code)
                .ok_or_else(|| UnknownLanguage {
                    index,
                    code: code.to_string(),
                })?;
            langs.push(lang);
        }
        Ok(Self {
            only: Some(whatlang::Detector::with_allowlist(langs)),
        })
    }

    /// The language of `text` (see [`detect`]), among this detector's languages.
    pub fn detect(&self, text: &str) -> Option<Language> {
        detect_with(text, self.only.as_ref())
    }
}

fn detect_with(text: &str, only: Option<&whatlang::Detector>) -> Option<Language> {
    CLEANED.with(|cleaned| {
        let mut cleaned = cleaned.borrow_mut();
        clean_for_detection(text, &mut cleaned);
        if !cleaned.chars().any(char::is_alphabetic) {
            return None;
        }
        detect_cleaned(&cleaned, only)
    })
}

fn detect_cleaned(text: &str, only: Option<&whatlang::Detector>) -> Option<Language> {
    let info = match only {
        None => whatlang::detect(text)?,
        Some(detector) => detector.detect(text)?,
    };
    Some(Language {
        code: iso_639_1(info.lang()),
        confidence: (info.confidence() as f32).clamp(0.0, 1.0),
    })
}

/// Writes into `out` the words of `text` that can carry a language: `@mentions`, URLs
/// (`http…`, `www.…`), a retweet's `RT` and digits dropped, the `#` of hashtags dropped (the word
/// kept), at most [`MAX_DETECTED_BYTES`] of `text` read.
pub fn clean_for_detection(text: &str, out: &mut String) {
    out.clear();
    let text = prefix(text, MAX_DETECTED_BYTES);
    for word in text.split_whitespace() {
        if word.starts_with('@')
            || word.starts_with("http://")
            || word.starts_with("https://")
            || word.starts_with("www.")
            || word == "RT"
        {
            continue;
        }
        let word = word.trim_start_matches('#');
        let before = out.len();
        if before > 0 {
            out.push(' ');
        }
        out.extend(word.chars().filter(|c| !c.is_ascii_digit()));
        if out.len() == before + 1 {
            // Only digits: take the separator back.
            out.truncate(before);
        }
    }
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends at a character boundary.
fn prefix(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// whatlang's language (ISO 639-3) as ISO 639-1. Mandarin (`cmn`) is `zh`, Western Persian
/// (`pes`) `fa`, Norwegian Bokmål (`nob`) `nb`.
pub fn iso_639_1(lang: whatlang::Lang) -> &'static str {
    match lang.code() {
        "afr" => "af",
        "aka" => "ak",
        "amh" => "am",
        "ara" => "ar",
        "aze" => "az",
        "bel" => "be",
        "ben" => "bn",
        "bul" => "bg",
        "cat" => "ca",
        "ces" => "cs",
        "cmn" => "zh",
        "dan" => "da",
        "deu" => "de",
        "ell" => "el",
        "eng" => "en",
        "epo" => "eo",
        "est" => "et",
        "fin" => "fi",
        "fra" => "fr",
        "guj" => "gu",
        "heb" => "he",
        "hin" => "hi",
        "hrv" => "hr",
        "hun" => "hu",
        "hye" => "hy",
        "ind" => "id",
        "ita" => "it",
        "jav" => "jv",
        "jpn" => "ja",
        "kan" => "kn",
        "kat" => "ka",
        "khm" => "km",
        "kor" => "ko",
        "lat" => "la",
        "lav" => "lv",
        "lit" => "lt",
        "mal" => "ml",
        "mar" => "mr",
        "mkd" => "mk",
        "mya" => "my",
        "nep" => "ne",
        "nld" => "nl",
        "nob" => "nb",
        "ori" => "or",
        "pan" => "pa",
        "pes" => "fa",
        "pol" => "pl",
        "por" => "pt",
        "ron" => "ro",
        "rus" => "ru",
        "sin" => "si",
        "slk" => "sk",
        "slv" => "sl",
        "sna" => "sn",
        "spa" => "es",
        "srp" => "sr",
        "swe" => "sv",
        "tam" => "ta",
        "tel" => "te",
        "tgl" => "tl",
        "tur" => "tr",
        "tha" => "th",
        "tuk" => "tk",
        "ukr" => "uk",
        "urd" => "ur",
        "uzb" => "uz",
        "vie" => "vi",
        "yid" => "yi",
        "zul" => "zu",
        // A language a newer whatlang adds before this table learns it: its 639-3 code is
        // still a language, never a wrong 639-1 one.
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_common_languages() {
        let cases = [
            (
                "I ordered a new phone last week and it still has not arrived",
                "en",
            ),
            (
                "J'ai commandé un téléphone la semaine dernière et il n'est toujours pas arrivé",
                "fr",
            ),
            (
                "Ich habe letzte Woche ein Handy bestellt und es ist immer noch nicht angekommen",
                "de",
            ),
            (
                "Pedí un teléfono la semana pasada y todavía no ha llegado a mi casa",
                "es",
            ),
            (
                "Ho ordinato un telefono la settimana scorsa e non è ancora arrivato",
                "it",
            ),
            (
                "Encomendei um telefone na semana passada e ainda não chegou em casa",
                "pt",
            ),
            ("طلبت هاتفا الأسبوع الماضي ولم يصل بعد", "ar"),
            ("मैंने पिछले हफ्ते एक फोन मंगवाया था और वह अभी तक नहीं आया", "hi"),
        ];
        for (text, code) in cases {
            let language = detect(text).unwrap_or_else(|| panic!("{text:?}: no language"));
            assert_eq!(language.code, code, "{text:?}");
            assert!((0.0..=1.0).contains(&language.confidence), "{text:?}");
        }
    }

    #[test]
    fn mentions_links_and_digits_are_not_language() {
        assert_eq!(detect(""), None);
        assert_eq!(detect("@acme @bob https://t.co/xyz 12345 #42"), None);
        let mut out = String::new();
        clean_for_detection(
            "RT @acme: mon colis est perdu #livraison https://t.co/x 3e fois",
            &mut out,
        );
        assert_eq!(out, "mon colis est perdu livraison e fois");
    }

    #[test]
    fn a_tweet_is_read_past_its_handles_and_links() {
        // The handles and the link are English-looking letters; the words are French.
        let tweet = "@AmazonHelp @amazon_fr je suis très déçu de votre service https://t.co/AbCdEf";
        assert_eq!(detect(tweet).map(|l| l.code), Some("fr"));
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        let text = "é".repeat(MAX_DETECTED_BYTES);
        assert!(prefix(&text, MAX_DETECTED_BYTES + 1).len() <= MAX_DETECTED_BYTES + 1);
        assert!(prefix(&text, 7).len() == 6);
        let mut out = String::new();
        clean_for_detection(&text, &mut out);
        assert_eq!(out.len(), MAX_DETECTED_BYTES);
    }

    #[test]
    fn candidates_restrict_the_answer() {
        // A Portuguese sentence, when only French and Spanish are expected, is one of those two.
        let portuguese = "Encomendei um telefone na semana passada e ainda não chegou em casa";
        assert_eq!(detect(portuguese).map(|l| l.code), Some("pt"));
        let detector = LanguageDetector::only(&["fr", "es"]).unwrap();
        let code = detector.detect(portuguese).map(|l| l.code);
        assert!(matches!(code, Some("fr" | "es")), "{code:?}");
        assert_eq!(
            LanguageDetector::only::<&str>(&[])
                .unwrap()
                .detect(portuguese)
                .map(|l| l.code),
            Some("pt")
        );
        assert_eq!(
            LanguageDetector::only(&["en", "xx"]).unwrap_err(),
            UnknownLanguage {
                index: 1,
                code: "xx".into()
            }
        );
        // Two letters, but not a language whatlang knows (Welsh).
        assert_eq!(LanguageDetector::only(&["cy"]).unwrap_err().index, 0);
    }

    #[test]
    fn every_whatlang_language_has_a_two_letter_code() {
        for lang in whatlang::Lang::all() {
            assert_eq!(iso_639_1(*lang).len(), 2, "{lang:?}");
        }
    }
}
