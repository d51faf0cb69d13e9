//! Accuracy and per-call cost of language detectors (whatlang, rapport's fast head, lingua) on
//! UMSAB's validation tweets (the language of each file is known). Usage: `language-id-bench [UMSAB_DIR] [SPLIT]` (default
//! `../shared/data/sentiment/umsab`, `val`).

use lingua::{LanguageDetector, LanguageDetectorBuilder};
use rapport_sentiment::language;
use std::time::Instant;

const LANGUAGES: [(&str, &str); 8] = [
    ("arabic", "ar"),
    ("english", "en"),
    ("french", "fr"),
    ("german", "de"),
    ("hindi", "hi"),
    ("italian", "it"),
    ("portuguese", "pt"),
    ("spanish", "es"),
];

fn read_texts(path: &str) -> Vec<String> {
    let data = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    data.lines()
        .skip(1)
        .filter_map(|line| line.split_once('\t').map(|(_, text)| text.to_string()))
        .collect()
}

fn cleaned(text: &str) -> String {
    let mut out = String::new();
    language::clean_for_detection(text, &mut out);
    out
}

fn lingua_code(detector: &LanguageDetector, text: &str) -> Option<String> {
    detector
        .detect_language_of(text)
        .map(|l| l.iso_code_639_1().to_string())
}

type Detect<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "../shared/data/sentiment/umsab".to_string());
    let split = args.get(2).cloned().unwrap_or_else(|| "val".to_string());
    let data: Vec<(&str, Vec<String>)> = LANGUAGES
        .iter()
        .map(|(name, code)| (*code, read_texts(&format!("{dir}/{name}_{split}.tsv"))))
        .collect();

    let started = Instant::now();
    let lingua_all = LanguageDetectorBuilder::from_all_languages()
        .with_preloaded_language_models()
        .build();
    let lingua_all_load = started.elapsed();
    let lingua_low = LanguageDetectorBuilder::from_all_languages()
        .with_low_accuracy_mode()
        .with_preloaded_language_models()
        .build();
    let whatlang_umsab = whatlang::Detector::with_allowlist(vec![
        whatlang::Lang::Ara,
        whatlang::Lang::Eng,
        whatlang::Lang::Fra,
        whatlang::Lang::Deu,
        whatlang::Lang::Hin,
        whatlang::Lang::Ita,
        whatlang::Lang::Por,
        whatlang::Lang::Spa,
    ]);
    eprintln!(
        "lingua (all languages, high accuracy) loaded in {:.1} s",
        lingua_all_load.as_secs_f64()
    );

    let detectors: Vec<(&str, Detect)> = vec![
        (
            "whatlang, raw text",
            Box::new(|t: &str| language::detect_raw(t).map(|l| l.code.to_string())),
        ),
        (
            "whatlang, cleaned (language::detect_whatlang, shipped before the fast head)",
            Box::new(|t: &str| language::detect_whatlang(t).map(|l| l.code.to_string())),
        ),
        (
            "fast head, whatlang below its threshold (shipped: language::detect)",
            Box::new(|t: &str| language::detect(t).map(|l| l.code.to_string())),
        ),
        (
            "whatlang, cleaned, only the 8 UMSAB languages",
            Box::new(|t: &str| {
                whatlang_umsab
                    .detect(&cleaned(t))
                    .map(|i| language::iso_639_1(i.lang()).to_string())
            }),
        ),
        (
            "lingua 1.8, all 75 languages, high accuracy, cleaned",
            Box::new(|t: &str| lingua_code(&lingua_all, &cleaned(t))),
        ),
        (
            "lingua 1.8, all 75 languages, low accuracy, cleaned",
            Box::new(|t: &str| lingua_code(&lingua_low, &cleaned(t))),
        ),
    ];

    let texts_total: usize = data.iter().map(|(_, texts)| texts.len()).sum();
    println!("UMSAB {split} tweets, {texts_total} texts ({dir})");
    print!("| detector |");
    for (code, _) in &data {
        print!(" {code} |");
    }
    println!(" mean | µs per text |");
    print!("|---|");
    for _ in &data {
        print!("---|");
    }
    println!("---|---|");
    for (name, detect) in &detectors {
        let mut accuracies = Vec::new();
        for (code, texts) in &data {
            let correct = texts
                .iter()
                .filter(|t| detect(t).as_deref() == Some(*code))
                .count();
            accuracies.push(correct as f64 / texts.len() as f64);
        }
        // Cost: the median of 3 rounds over every text.
        let mut rounds = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let mut found = 0usize;
            for (_, texts) in &data {
                for text in texts {
                    found += usize::from(detect(text).is_some());
                }
            }
            std::hint::black_box(found);
            rounds.push(started.elapsed().as_secs_f64() * 1e6 / texts_total as f64);
        }
        rounds.sort_by(f64::total_cmp);
        print!("| {name} |");
        for accuracy in &accuracies {
            print!(" {:.3} |", accuracy);
        }
        let mean = accuracies.iter().sum::<f64>() / accuracies.len() as f64;
        println!(" {mean:.3} | {:.1} |", rounds[1]);
    }
}
