//! Data for the language head's examples (`train_language`, `eval_language`): UMSAB's tweets
//! (8 languages, one TSV per language and split) and lingua's test sentences (75 languages, 1,000
//! sentences each, shipped in the `lingua-<language>-language-model` crates that
//! `benches/language_id` fetches from crates.io).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// UMSAB's languages: file name and ISO 639-1 code.
pub const UMSAB: [(&str, &str); 8] = [
    ("arabic", "ar"),
    ("english", "en"),
    ("french", "fr"),
    ("german", "de"),
    ("hindi", "hi"),
    ("italian", "it"),
    ("portuguese", "pt"),
    ("spanish", "es"),
];

/// The head's classes, in model order: UMSAB's languages, then "none of them".
pub const HEAD_LABELS: [&str; 9] = ["ar", "de", "en", "es", "fr", "hi", "it", "pt", "other"];

/// lingua 1.3 model crates' language names and their ISO 639-1 codes.
pub const LINGUA: [(&str, &str); 75] = [
    ("afrikaans", "af"),
    ("albanian", "sq"),
    ("arabic", "ar"),
    ("armenian", "hy"),
    ("azerbaijani", "az"),
    ("basque", "eu"),
    ("belarusian", "be"),
    ("bengali", "bn"),
    ("bokmal", "nb"),
    ("bosnian", "bs"),
    ("bulgarian", "bg"),
    ("catalan", "ca"),
    ("chinese", "zh"),
    ("croatian", "hr"),
    ("czech", "cs"),
    ("danish", "da"),
    ("dutch", "nl"),
    ("english", "en"),
    ("esperanto", "eo"),
    ("estonian", "et"),
    ("finnish", "fi"),
    ("french", "fr"),
    ("ganda", "lg"),
    ("georgian", "ka"),
    ("german", "de"),
    ("greek", "el"),
    ("gujarati", "gu"),
    ("hebrew", "he"),
    ("hindi", "hi"),
    ("hungarian", "hu"),
    ("icelandic", "is"),
    ("indonesian", "id"),
    ("irish", "ga"),
    ("italian", "it"),
    ("japanese", "ja"),
    ("kazakh", "kk"),
    ("korean", "ko"),
    ("latin", "la"),
    ("latvian", "lv"),
    ("lithuanian", "lt"),
    ("macedonian", "mk"),
    ("malay", "ms"),
    ("maori", "mi"),
    ("marathi", "mr"),
    ("mongolian", "mn"),
    ("nynorsk", "nn"),
    ("persian", "fa"),
    ("polish", "pl"),
    ("portuguese", "pt"),
    ("punjabi", "pa"),
    ("romanian", "ro"),
    ("russian", "ru"),
    ("serbian", "sr"),
    ("shona", "sn"),
    ("slovak", "sk"),
    ("slovene", "sl"),
    ("somali", "so"),
    ("sotho", "st"),
    ("spanish", "es"),
    ("swahili", "sw"),
    ("swedish", "sv"),
    ("tagalog", "tl"),
    ("tamil", "ta"),
    ("telugu", "te"),
    ("thai", "th"),
    ("tsonga", "ts"),
    ("tswana", "tn"),
    ("turkish", "tr"),
    ("ukrainian", "uk"),
    ("urdu", "ur"),
    ("vietnamese", "vi"),
    ("welsh", "cy"),
    ("xhosa", "xh"),
    ("yoruba", "yo"),
    ("zulu", "zu"),
];

/// lingua's sentences per language, in tenths of the file (1,000 lines; Japanese 412, Chinese
/// 729): the first 60 % train, the next 20 % val, the last 20 % test.
pub const LINGUA_TRAIN: std::ops::Range<usize> = 0..6;
/// See [`LINGUA_TRAIN`].
pub const LINGUA_VAL: std::ops::Range<usize> = 6..8;
/// See [`LINGUA_TRAIN`].
pub const LINGUA_TEST: std::ops::Range<usize> = 8..10;

/// Whether `code` is one of the head's languages.
pub fn in_head(code: &str) -> bool {
    HEAD_LABELS[..HEAD_LABELS.len() - 1].contains(&code)
}

/// The languages outside the head never trained on (every third of them in alphabetical order):
/// they measure how the head treats a language it has never seen.
pub fn unseen(code: &str) -> bool {
    let outside: Vec<&str> = LINGUA
        .iter()
        .map(|(_, c)| *c)
        .filter(|c| !in_head(c))
        .collect();
    outside
        .iter()
        .position(|c| *c == code)
        .is_some_and(|i| i % 3 == 2)
}

/// The texts of a `label<TAB>text` file with a header line.
pub fn read_tsv(path: &Path) -> Vec<String> {
    let data = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    data.lines()
        .skip(1)
        .filter_map(|line| line.split_once('\t').map(|(_, text)| text.to_string()))
        .collect()
}

/// UMSAB's `split` texts per language: `(code, texts)` in [`UMSAB`] order.
pub fn umsab(dir: &Path, split: &str) -> Vec<(&'static str, Vec<String>)> {
    UMSAB
        .iter()
        .map(|(name, code)| (*code, read_tsv(&dir.join(format!("{name}_{split}.tsv")))))
        .collect()
}

/// The directory of lingua's `language` model crate under `registry` (cargo's
/// `registry/src/index.crates.io-…`).
pub fn lingua_dir(registry: &Path, language: &str) -> PathBuf {
    registry.join(format!("lingua-{language}-language-model-1.3.0"))
}

/// lingua's test sentences of every language, the `tenths` of each: `(code, sentences)`.
pub fn lingua(registry: &Path, tenths: std::ops::Range<usize>) -> Vec<(&'static str, Vec<String>)> {
    lingua_file(registry, tenths, "sentences.txt")
}

/// lingua's test word pairs ("selon école", "autres modes") of every language, the `tenths` of
/// each: `(code, pairs)`.
pub fn lingua_pairs(
    registry: &Path,
    tenths: std::ops::Range<usize>,
) -> Vec<(&'static str, Vec<String>)> {
    lingua_file(registry, tenths, "word-pairs.txt")
}

fn lingua_file(
    registry: &Path,
    tenths: std::ops::Range<usize>,
    file: &str,
) -> Vec<(&'static str, Vec<String>)> {
    LINGUA
        .iter()
        .map(|(name, code)| {
            let path = lingua_dir(registry, name).join("testdata").join(file);
            let data = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let lines: Vec<String> = data.lines().map(str::to_string).collect();
            let at = |tenth: usize| lines.len() * tenth / 10;
            (*code, lines[at(tenths.start)..at(tenths.end)].to_vec())
        })
        .collect()
}
