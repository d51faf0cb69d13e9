//! "Checkpoint luck" study of the fast sentiment model (issue 26, item 6): how much the epoch
//! count, checkpoint averaging and seed averaging move macro-recall, selected on a held-out slice of
//! the training pool, with val.tsv and a public test split reported beside it (never chosen on).
//!
//!     cargo run --release -p rapport-sentiment --example fast_selection -- \
//!         gold|distilled DATA_DIR TEST.tsv [TEACHER.bin] > study.tsv
//!
//! `DATA_DIR` is `../shared/data/sentiment` (train.tsv, val.tsv, umsab/*). `TEST.tsv` is TweetEval's
//! test split as `label<TAB>text` (README, "Data"); it is only reported. `distilled` is the
//! recipe of models/README.md ("Multilingual distilled model": the teacher's probabilities over
//! train.tsv, each row twice, plus UMSAB's six languages' train splits with gold labels) and needs
//! the teacher file (`git show 867b1f0:models/fast/sentiment-distilled.bin`). Environment:
//! `SEEDS` (default `42,1,2,3,4`), `EPOCHS` (most epochs, default 10), `HOLDOUT` (fraction of
//! train.tsv held out, stratified, seed 42; default 0.1).
//!
//! Prints one TSV row per candidate: pool (`holdout`: trained without the held-out slice;
//! `full`: on all of train.tsv), seed (or `mean`: the weight average of the seeds' models, the
//! same as averaging their logits), candidate (`last`: the weights after `epoch` epochs;
//! `avg`: the mean of the weights after epochs 1..=epoch; `tail`: epochs ⌈epoch/2⌉..=epoch),
//! then macro-recall on the held-out slice, val.tsv, the test split and UMSAB's six val splits.
//! Every figure is of the int8 model, as shipped.

use rapport_sentiment::fast::linear::{self, LinearModel, Quantization, TrainConfig};
use std::collections::HashSet;
use std::path::Path;

const LANGUAGES: [&str; 6] = [
    "arabic",
    "french",
    "german",
    "italian",
    "portuguese",
    "spanish",
];

fn label_index(label: &str) -> usize {
    match label.trim() {
        "negative" => 0,
        "neutral" => 1,
        "positive" => 2,
        other => panic!("unknown label {other:?}"),
    }
}

fn read(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (label, text) = line.split_once('\t').expect("label<TAB>text");
            (label_index(label), text.to_string())
        })
        .collect()
}

fn macro_recall(model: &LinearModel, rows: &[(usize, String)]) -> f64 {
    let mut confusion = [[0u32; 3]; 3];
    for (gold, text) in rows {
        confusion[*gold][model.predict(text).class_index()] += 1;
    }
    (0..3)
        .map(|c| {
            let total: u32 = confusion[c].iter().sum();
            if total == 0 {
                0.0
            } else {
                f64::from(confusion[c][c]) / f64::from(total)
            }
        })
        .sum::<f64>()
        / 3.0
}

fn one_hot(class: usize) -> [f32; 3] {
    std::array::from_fn(|c| if c == class { 1.0 } else { 0.0 })
}

struct Sets {
    holdout: Vec<(usize, String)>,
    val: Vec<(usize, String)>,
    test: Vec<(usize, String)>,
    languages: Vec<Vec<(usize, String)>>,
}

fn report(sets: &Sets, pool: &str, seed: &str, candidate: &str, epoch: usize, model: &LinearModel) {
    let model = model.quantized(Quantization::I8);
    let holdout = if sets.holdout.is_empty() || pool == "full" {
        "".to_string()
    } else {
        format!("{:.4}", macro_recall(&model, &sets.holdout))
    };
    let mut line = format!(
        "{pool}\t{seed}\t{candidate}\t{epoch}\t{holdout}\t{:.4}\t{:.4}",
        macro_recall(&model, &sets.val),
        macro_recall(&model, &sets.test)
    );
    for rows in &sets.languages {
        line.push_str(&format!("\t{:.4}", macro_recall(&model, rows)));
    }
    println!("{line}");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let recipe = args.next().expect("gold or distilled");
    let dir = std::path::PathBuf::from(args.next().expect("data dir"));
    let test = read(Path::new(&args.next().expect("test tsv")));
    let teacher = args.next().map(|path| {
        LinearModel::from_bytes(&std::fs::read(&path).expect("teacher file")).expect("a model")
    });
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let seeds: Vec<u64> = env("SEEDS", "42,1,2,3,4")
        .split(',')
        .map(|s| s.parse().expect("seed"))
        .collect();
    let max_epochs: usize = env("EPOCHS", "10").parse().expect("epochs");
    let fraction: f64 = env("HOLDOUT", "0.1").parse().expect("fraction");

    let train = read(&dir.join("train.tsv"));
    let val = read(&dir.join("val.tsv"));
    let labels: Vec<usize> = train.iter().map(|(label, _)| *label).collect();
    let held = linear::stratified_holdout(&labels, fraction, 42);
    let languages: Vec<Vec<(usize, String)>> = LANGUAGES
        .iter()
        .map(|l| read(&dir.join("umsab").join(format!("{l}_val.tsv"))))
        .collect();
    // As `train fast --add … --val val.tsv umsab/*_val.tsv`: added rows found in a val file are
    // left out.
    let mut val_texts: HashSet<String> = val.iter().map(|(_, t)| t.clone()).collect();
    for l in [
        "arabic",
        "english",
        "french",
        "german",
        "hindi",
        "italian",
        "portuguese",
        "spanish",
    ] {
        val_texts.extend(
            read(&dir.join("umsab").join(format!("{l}_val.tsv")))
                .into_iter()
                .map(|(_, t)| t),
        );
    }
    let added: Vec<(String, [f32; 3])> = match recipe.as_str() {
        "gold" => Vec::new(),
        "distilled" => LANGUAGES
            .iter()
            .flat_map(|l| read(&dir.join("umsab").join(format!("{l}_train.tsv"))))
            .filter(|(_, t)| !val_texts.contains(t))
            .map(|(label, text)| (text, one_hot(label)))
            .collect(),
        other => panic!("unknown recipe {other}"),
    };
    let repeat = if recipe == "distilled" { 2 } else { 1 };
    let target = |label: usize, text: &str| match &teacher {
        Some(t) if recipe == "distilled" => t.predict(text).probabilities,
        _ => one_hot(label),
    };
    let examples = |keep: &dyn Fn(usize) -> bool| -> Vec<(String, [f32; 3])> {
        train
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .map(|(_, (label, text))| (text.clone(), target(*label, text)))
            .flat_map(|example| std::iter::repeat_n(example, repeat))
            .chain(added.iter().cloned())
            .collect()
    };
    let sets = Sets {
        holdout: train
            .iter()
            .zip(&held)
            .filter(|(_, h)| **h)
            .map(|(row, _)| row.clone())
            .collect(),
        val,
        test,
        languages,
    };
    eprintln!(
        "{recipe}: {} rows held out of {}, {} added rows, seeds {seeds:?}, up to {max_epochs} epochs",
        sets.holdout.len(),
        train.len(),
        added.len()
    );
    println!(
        "pool\tseed\tcandidate\tepoch\tholdout\tval\ttest\t{}",
        LANGUAGES.map(|l| &l[..2]).join("\t")
    );
    for pool in ["holdout", "full"] {
        let data = if pool == "holdout" {
            examples(&|i| !held[i])
        } else {
            examples(&|_| true)
        };
        // Per seed, the weights after each epoch (f32).
        let mut runs: Vec<Vec<LinearModel>> = Vec::new();
        for &seed in &seeds {
            let config = TrainConfig {
                seed,
                epochs: max_epochs,
                ..TrainConfig::default()
            };
            let mut checkpoints = Vec::new();
            LinearModel::train_soft_checkpoints(&data, &config, |_, model| checkpoints.push(model));
            for e in 1..=max_epochs {
                let s = seed.to_string();
                report(&sets, pool, &s, "last", e, &checkpoints[e - 1]);
                let all: Vec<&LinearModel> = checkpoints[..e].iter().collect();
                let avg = LinearModel::average(&all, Quantization::F32).expect("same features");
                report(&sets, pool, &s, "avg", e, &avg);
                let tail: Vec<&LinearModel> = checkpoints[e.div_ceil(2) - 1..e].iter().collect();
                let tail = LinearModel::average(&tail, Quantization::F32).expect("same features");
                report(&sets, pool, &s, "tail", e, &tail);
            }
            runs.push(checkpoints);
            eprintln!("{pool} seed {seed} done");
        }
        if seeds.len() > 1 {
            for e in 1..=max_epochs {
                let at_e: Vec<&LinearModel> = runs.iter().map(|run| &run[e - 1]).collect();
                let mean = LinearModel::average(&at_e, Quantization::F32).expect("same features");
                report(&sets, pool, "mean", "last", e, &mean);
            }
        }
    }
}
