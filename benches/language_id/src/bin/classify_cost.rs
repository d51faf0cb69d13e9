//! Per-text cost of what ingest and the scored answers run on a text: the fast sentiment model
//! (two model files, e.g. the previous and the retrained one) and language detection, interleaved
//! round by round on the same texts, one thread. Usage:
//! `classify-cost OLD.bin NEW.bin [TEXTS.tsv] [ROUNDS]` (default
//! `../shared/data/sentiment/train.tsv`, 5 rounds); prints each round and the medians.

use rapport_sentiment::fast::FastModel;
use rapport_sentiment::{language, SentimentModel};
use std::path::Path;
use std::time::Instant;

fn per_text_ns(texts: &[String], mut work: impl FnMut(&str) -> f32) -> f64 {
    let started = Instant::now();
    let mut sink = 0f32;
    for text in texts {
        sink += work(text);
    }
    std::hint::black_box(sink);
    started.elapsed().as_nanos() as f64 / texts.len() as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() >= 3,
        "usage: classify-cost OLD.bin NEW.bin [TEXTS.tsv] [ROUNDS]"
    );
    let old = FastModel::load_file(Path::new(&args[1])).expect("old model");
    let new = FastModel::load_file(Path::new(&args[2])).expect("new model");
    let file = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| "../shared/data/sentiment/train.tsv".to_string());
    let rounds: usize = args.get(4).map_or(5, |r| r.parse().expect("ROUNDS"));
    let texts: Vec<String> = std::fs::read_to_string(&file)
        .expect("texts")
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once('\t').map(|(_, text)| text.to_string()))
        .collect();
    println!(
        "{} texts from {file}, {rounds} rounds, ns per text",
        texts.len()
    );
    println!("round  old model  new model  new/old  language::detect");
    let (mut olds, mut news, mut ratios, mut langs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        // Alternate which model goes first, so that neither always runs on a warmer cache.
        let (o, n) = if round % 2 == 1 {
            let o = per_text_ns(&texts, |t| old.classify(t).score);
            (o, per_text_ns(&texts, |t| new.classify(t).score))
        } else {
            let n = per_text_ns(&texts, |t| new.classify(t).score);
            (per_text_ns(&texts, |t| old.classify(t).score), n)
        };
        let l = per_text_ns(&texts, |t| {
            language::detect(t).map_or(0.0, |l| l.confidence)
        });
        println!("{round:>5}  {o:>9.0}  {n:>9.0}  {:>7.3}  {l:>16.0}", n / o);
        olds.push(o);
        news.push(n);
        ratios.push(n / o);
        langs.push(l);
    }
    let (o, n, ratio, l) = (median(olds), median(news), median(ratios), median(langs));
    println!("median {o:>9.0}  {n:>9.0}  {ratio:>7.3}  {l:>16.0}  (new/old: median of the rounds' ratios)");
    println!(
        "texts/s: old {:.0}k, new {:.0}k; new/old throughput {:.3} (from the median ratio); \
         language::detect {:.1}k, {:.0}x the new model's time",
        1e6 / o,
        1e6 / n,
        1.0 / ratio,
        1e6 / l,
        l / n
    );
}
