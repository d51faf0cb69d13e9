//! Accuracy and per-text cost of `language::detect` (the fast head, whatlang below its threshold)
//! against whatlang alone (all 69 languages, and only UMSAB's 8), with the fast sentiment model's
//! cost on the same texts for scale; one thread, in one run.
//!
//!     CARGO_TARGET_DIR=/tmp/lang-target cargo run --release -p rapport-sentiment \
//!         --example eval_language -- --split val
//!     ... --example eval_language -- --split test --umsab /tmp/lang-data/umsab-test
//!
//! `--split val|test` picks UMSAB's split (files `<language>_<split>.tsv` under `--umsab`) and the
//! matching 20 % of lingua's sentences (`--lingua`: cargo's registry source directory, as for
//! `train_language`); `--model FILE` evaluates another head than the embedded one; `--english`
//! is TweetEval's train.tsv, timed too (an English tenant's ingest). Prints:
//! accuracy per UMSAB language; on lingua's sentences, the accuracy on the head's languages and how
//! often a language outside the head's 8 is named as one of them (split into languages the head
//! was trained on as `other` and languages it never saw), and per outside language; the same on
//! lingua's word pairs (short texts); cost per
//! text, the median of 3 rounds (each round: every detector and the sentiment model in turn) over
//! UMSAB's tweets of the 7 languages but romanised Hindi, all 8, and train.tsv; and the per-call
//! latency percentiles of the new detector and of the sentiment model on UMSAB's 8.

#[path = "common/lang_data.rs"]
mod lang_data;

use lang_data::*;
use rapport_sentiment::fast::FastModel;
use rapport_sentiment::language::head::LanguageHead;
use rapport_sentiment::language::{self, Language, LanguageDetector};
use rapport_sentiment::SentimentModel;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

type Detect<'a> = Box<dyn Fn(&str) -> Option<Language> + 'a>;

fn main() {
    let mut umsab_dir = PathBuf::from("../shared/data/sentiment/umsab");
    let mut split = "val".to_string();
    let mut registry: Option<PathBuf> = None;
    let mut model: Option<PathBuf> = None;
    let mut english_path = PathBuf::from("../shared/data/sentiment/train.tsv");
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--umsab" => umsab_dir = value().into(),
            "--split" => split = value(),
            "--lingua" => registry = Some(value().into()),
            "--model" => model = Some(value().into()),
            "--english" => english_path = value().into(),
            other => panic!("unknown flag {other}"),
        }
    }
    let registry = registry.unwrap_or_else(|| {
        let home = std::env::var("HOME").unwrap_or_default();
        let src = PathBuf::from(home).join(".cargo/registry/src");
        std::fs::read_dir(&src)
            .expect("cargo registry")
            .filter_map(Result::ok)
            .map(|d| d.path())
            .find(|p| lingua_dir(p, "dutch").exists())
            .expect(
                "lingua's model crates: cargo fetch --manifest-path benches/language_id/Cargo.toml",
            )
    });
    let tenths = match split.as_str() {
        "val" => LINGUA_VAL,
        "test" => LINGUA_TEST,
        other => panic!("--split val|test, not {other}"),
    };

    let mut detector = LanguageDetector::all();
    let mut restricted = LanguageDetector::only(&UMSAB.map(|(_, c)| c)).unwrap();
    if let Some(path) = &model {
        let head = Arc::new(LanguageHead::from_bytes(&std::fs::read(path).unwrap()).unwrap());
        detector = detector.with_head(head.clone());
        restricted = restricted.with_head(head);
    }
    let head = detector.head();
    println!(
        "head: {:?}, labels {:?}, min_confidence {}, table {} bytes",
        head.feature_config(),
        head.labels(),
        head.min_confidence(),
        head.table_bytes()
    );
    let whatlang_8 = whatlang::Detector::with_allowlist(
        UMSAB
            .iter()
            .map(|(_, code)| {
                *whatlang::Lang::all()
                    .iter()
                    .find(|l| language::iso_639_1(**l) == *code)
                    .unwrap()
            })
            .collect(),
    );
    let scratch = std::cell::RefCell::new(String::new());
    let whatlang_only = move |t: &str| -> Option<Language> {
        // As the shipped detector before the head: cleaned, then whatlang.
        let mut cleaned = scratch.borrow_mut();
        language::clean_for_detection(t, &mut cleaned);
        let out = if cleaned.chars().any(char::is_alphabetic) {
            whatlang_8.detect(&cleaned).map(|i| Language {
                code: language::iso_639_1(i.lang()),
                confidence: i.confidence() as f32,
            })
        } else {
            None
        };
        drop(cleaned);
        out
    };
    let detectors: Vec<(&str, Detect)> = vec![
        (
            "**new `language::detect`: head, whatlang below its threshold**",
            Box::new(|t: &str| detector.detect(t)),
        ),
        (
            "new, `only` the 8 UMSAB languages",
            Box::new(|t: &str| restricted.detect(t)),
        ),
        (
            "whatlang 0.16, cleaned (shipped before)",
            Box::new(language::detect_whatlang),
        ),
        (
            "whatlang 0.16, cleaned, only the 8",
            Box::new(whatlang_only),
        ),
    ];

    let umsab = umsab(&umsab_dir, &split);
    let pairs = lingua_pairs(&registry, tenths.clone());
    let lingua = lingua(&registry, tenths);
    let n_umsab: usize = umsab.iter().map(|(_, t)| t.len()).sum();
    println!(
        "UMSAB {split}: {n_umsab} tweets ({}); lingua sentences, {split} part: {} in {} languages",
        umsab_dir.display(),
        lingua.iter().map(|(_, t)| t.len()).sum::<usize>(),
        lingua.len()
    );

    // Accuracy.
    println!();
    print!("| detector |");
    for (code, _) in &umsab {
        print!(" {code} |");
    }
    println!(" mean of 8 | mean of 7 (no hi) | lingua sentences, head languages | outside seen as `other`: named as a head language | outside never seen | all outside | lingua word pairs, head languages | word pairs, outside named as a head language |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut per_outside: Vec<Vec<f64>> = Vec::new();
    for (name, detect) in &detectors {
        print!("| {name} |");
        let mut accs = Vec::new();
        for (code, texts) in &umsab {
            let ok = texts
                .iter()
                .filter(|t| detect(t).map(|l| l.code) == Some(*code))
                .count();
            let a = ok as f64 / texts.len() as f64;
            accs.push(a);
            print!(" {a:.3} |");
        }
        let mean8 = accs.iter().sum::<f64>() / 8.0;
        let mean7 = (accs.iter().sum::<f64>() - accs[4]) / 7.0;
        let sentences = lingua_rates(&lingua, detect);
        let pairs = lingua_rates(&pairs, detect);
        per_outside.push(sentences.per_outside.clone());
        println!(
            " {mean8:.4} | {mean7:.4} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            sentences.head,
            sentences.seen,
            sentences.unseen,
            sentences.outside,
            pairs.head,
            pairs.outside,
        );
    }
    println!();
    println!("Outside languages named as a head language (share of their {split} sentences), by detector in the order above; * = never trained on:");
    let outside_codes: Vec<&str> = LINGUA
        .iter()
        .map(|(_, c)| *c)
        .filter(|c| !in_head(c))
        .collect();
    for (i, code) in outside_codes.iter().enumerate() {
        let rates: Vec<String> = per_outside.iter().map(|r| format!("{:.3}", r[i])).collect();
        let star = if unseen(code) { "*" } else { "" };
        if per_outside.iter().any(|r| r[i] > 0.0) {
            println!("  {code}{star}: {}", rates.join(" "));
        }
    }

    // Cost: every detector and the fast sentiment model in turn, 3 rounds, on three sets.
    let fast = FastModel::embedded().expect("fast model");
    let texts: Vec<&str> = umsab
        .iter()
        .flat_map(|(_, t)| t.iter().map(String::as_str))
        .collect();
    let texts_7: Vec<&str> = umsab
        .iter()
        .filter(|(code, _)| *code != "hi")
        .flat_map(|(_, t)| t.iter().map(String::as_str))
        .collect();
    let english = read_tsv(&english_path);
    let english: Vec<&str> = english.iter().map(String::as_str).collect();
    let sets: [(&str, &[&str]); 3] = [
        ("UMSAB, 7 languages but hi", &texts_7),
        ("UMSAB, all 8", &texts),
        ("train.tsv (English)", &english),
    ];
    let names: Vec<&str> = detectors
        .iter()
        .map(|(n, _)| *n)
        .chain(std::iter::once(
            "fast sentiment model (`FastModel::embedded`)",
        ))
        .collect();
    let mut medians = vec![Vec::new(); names.len()];
    for (set, set_texts) in sets {
        let mut rounds: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        for _ in 0..3 {
            for (d, (_, detect)) in detectors.iter().enumerate() {
                let started = Instant::now();
                let mut found = 0usize;
                for t in set_texts {
                    found += usize::from(detect(t).is_some());
                }
                std::hint::black_box(found);
                rounds[d].push(started.elapsed().as_secs_f64() * 1e6 / set_texts.len() as f64);
            }
            let started = Instant::now();
            let mut sink = 0f32;
            for t in set_texts {
                sink += fast.classify(t).score;
            }
            std::hint::black_box(sink);
            rounds[detectors.len()]
                .push(started.elapsed().as_secs_f64() * 1e6 / set_texts.len() as f64);
        }
        eprintln!(
            "{set} ({} texts) rounds, µs per text: {rounds:.2?}",
            set_texts.len()
        );
        for (m, r) in medians.iter_mut().zip(&rounds) {
            m.push(median(r.clone()));
        }
    }
    println!();
    println!("Cost, µs per text (mean over a round, median of 3 rounds) and × the fast sentiment model in the same rounds:");
    print!("| detector |");
    for (set, set_texts) in sets {
        print!(" {set} ({} texts) |", set_texts.len());
    }
    println!();
    println!("|---|---|---|---|");
    let fast_medians = medians[names.len() - 1].clone();
    for (name, m) in names.iter().zip(&medians) {
        print!("| {name} |");
        for (us, fast_us) in m.iter().zip(&fast_medians) {
            print!(" {us:.2} ({:.2}×) |", us / fast_us);
        }
        println!();
    }
    // Per-call latency of the new detector and of the sentiment model, and how many calls went
    // to whatlang, on each set.
    println!();
    println!("Per call, µs (each call timed alone, so ~0.03 µs of clock reading included):");
    println!("| texts | new detector p50 | p90 | p99 | sentiment model p50 | p90 | p99 | texts sent to whatlang |");
    println!("|---|---|---|---|---|---|---|---|");
    let pct = |v: &[f64], p: f64| v[((v.len() - 1) as f64 * p) as usize];
    let mut cleaned = String::new();
    for (set, set_texts) in sets {
        let mut each_fast = Vec::with_capacity(set_texts.len());
        let mut each = Vec::with_capacity(set_texts.len());
        let mut to_whatlang = 0usize;
        for t in set_texts {
            let started = Instant::now();
            std::hint::black_box(fast.classify(t));
            each_fast.push(started.elapsed().as_secs_f64() * 1e6);
            let started = Instant::now();
            std::hint::black_box(detector.detect(t));
            each.push(started.elapsed().as_secs_f64() * 1e6);
            language::clean_for_detection(t, &mut cleaned);
            let s = head.scores(&cleaned);
            let other = head.labels()[s.best] == language::head::OTHER;
            if s.features > 0 && (other || s.probability < head.min_confidence()) {
                to_whatlang += 1;
            }
        }
        each.sort_by(f64::total_cmp);
        each_fast.sort_by(f64::total_cmp);
        println!(
            "| {set} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} % |",
            pct(&each, 0.5),
            pct(&each, 0.9),
            pct(&each, 0.99),
            pct(&each_fast, 0.5),
            pct(&each_fast, 0.9),
            pct(&each_fast, 0.99),
            100.0 * to_whatlang as f64 / set_texts.len() as f64
        );
    }
}

/// A detector on lingua's texts: accuracy on the head's languages, and the share of the outside
/// languages' texts named as a head language (seen as `other` in training, never seen, all, and
/// per outside language).
struct LinguaRates {
    head: f64,
    seen: f64,
    unseen: f64,
    outside: f64,
    per_outside: Vec<f64>,
}

fn lingua_rates(
    data: &[(&'static str, Vec<String>)],
    detect: &dyn Fn(&str) -> Option<Language>,
) -> LinguaRates {
    let (mut head_ok, mut head_n) = (0usize, 0usize);
    let (mut seen_bad, mut seen_n, mut unseen_bad, mut unseen_n) = (0, 0, 0, 0);
    let mut per_outside = Vec::new();
    for (code, texts) in data {
        let answers: Vec<Option<&str>> = texts.iter().map(|t| detect(t).map(|l| l.code)).collect();
        if in_head(code) {
            head_n += texts.len();
            head_ok += answers.iter().filter(|a| **a == Some(*code)).count();
            continue;
        }
        let bad = answers.iter().filter(|a| a.is_some_and(in_head)).count();
        per_outside.push(bad as f64 / texts.len() as f64);
        if unseen(code) {
            unseen_bad += bad;
            unseen_n += texts.len();
        } else {
            seen_bad += bad;
            seen_n += texts.len();
        }
    }
    LinguaRates {
        head: head_ok as f64 / head_n as f64,
        seen: seen_bad as f64 / seen_n as f64,
        unseen: unseen_bad as f64 / unseen_n as f64,
        outside: (seen_bad + unseen_bad) as f64 / (seen_n + unseen_n) as f64,
        per_outside,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
