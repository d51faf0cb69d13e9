//! Distillation tooling: the transformer's logits over a labelled file, cached as TSV
//! (`rapport train teacher-logits`, feature `transformer`), read back by `rapport train fast
//! --teacher` as soft targets; and the cascade threshold sweep (`rapport train cascade`).
//!
//! Cache format: a header `negative<TAB>neutral<TAB>positive`, then one line of three logits per
//! row of the input file, in its order.

use anyhow::Context;
use std::path::Path;

/// Header of a logits cache file.
const LOGITS_HEADER: &str = "negative\tneutral\tpositive";

/// Reads a logits cache (see the module docs).
pub fn read_logits(path: &Path) -> anyhow::Result<Vec<[f32; 3]>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines();
    anyhow::ensure!(
        lines.next() == Some(LOGITS_HEADER),
        "{}: expected the header {LOGITS_HEADER:?}",
        path.display()
    );
    lines
        .enumerate()
        .map(|(number, line)| {
            let values: Vec<f32> = line
                .split('\t')
                .map(str::parse::<f32>)
                .collect::<Result<_, _>>()
                .with_context(|| format!("{}:{}: not numbers", path.display(), number + 2))?;
            anyhow::ensure!(
                values.len() == 3 && values.iter().all(|v| v.is_finite()),
                "{}:{}: expected three finite logits",
                path.display(),
                number + 2
            );
            Ok([values[0], values[1], values[2]])
        })
        .collect()
}

/// Writes a logits cache (see the module docs).
#[cfg_attr(not(feature = "transformer"), allow(dead_code))]
pub fn write_logits(path: &Path, logits: &[[f32; 3]]) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(logits.len() * 32 + 32);
    text.push_str(LOGITS_HEADER);
    text.push('\n');
    for row in logits {
        let _ = writeln!(text, "{}\t{}\t{}", row[0], row[1], row[2]);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Softmax of `logits / temperature`: a teacher's softened class distribution.
pub fn soft_targets(logits: [f32; 3], temperature: f32) -> [f32; 3] {
    crate::sentiment::fast::linear::softmax(logits.map(|z| z / temperature))
}

#[cfg(feature = "transformer")]
pub use with_transformer::*;

#[cfg(feature = "transformer")]
mod with_transformer {
    use super::{read_logits, write_logits};
    use crate::cli::eval::{read_labelled, Confusion};
    use crate::sentiment::fast::FastModel;
    use crate::sentiment::transformer::{TransformerClassifier, WEIGHTS_FILE};
    use crate::sentiment::{SentimentLabel, SentimentModel};
    use clap::Args;
    use std::path::PathBuf;
    use std::time::Instant;

    /// Texts per forward pass (length-sorted, so padding stays small).
    const BATCH_TEXTS: usize = 64;

    /// Options of `train teacher-logits`.
    #[derive(Debug, Args)]
    pub struct TeacherLogitsArgs {
        /// `label<TAB>text` file with a header (labels are not used).
        #[arg(long, default_value = "../shared/data/sentiment/train.tsv")]
        pub input: PathBuf,
        /// Directory with the fine-tuned model's config.json and vocab.txt.
        #[arg(long, default_value = "models/transformer")]
        pub model_dir: PathBuf,
        /// Weights file in `--model-dir`.
        #[arg(long, default_value = WEIGHTS_FILE)]
        pub weights: String,
        /// Where to write the logits (not committed: rebuilt from the model).
        #[arg(long, default_value = "target/distill/teacher-train.tsv")]
        pub out: PathBuf,
        /// libtorch intra-op threads.
        #[arg(long, default_value_t = 2)]
        pub threads: usize,
    }

    /// Runs the transformer over every row of `--input` and caches its logits.
    pub fn teacher_logits(args: &TeacherLogitsArgs) -> anyhow::Result<()> {
        tch::set_num_threads(args.threads as i32);
        let classifier = TransformerClassifier::load_dir(&args.model_dir, &args.weights)?;
        let rows = read_labelled(&args.input)?;
        let encoded: Vec<Vec<i64>> = rows
            .iter()
            .map(|(_, text)| classifier.encode(text))
            .collect();
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&row| encoded[row].len());
        let mut logits = vec![[0f32; 3]; encoded.len()];
        let started = Instant::now();
        for (batch, chunk) in order.chunks(BATCH_TEXTS).enumerate() {
            let sequences: Vec<&[i64]> = chunk.iter().map(|&row| encoded[row].as_slice()).collect();
            for (&row, row_logits) in chunk.iter().zip(classifier.logits_encoded(&sequences)) {
                logits[row] = row_logits;
            }
            if batch % 50 == 49 {
                let done = (batch + 1) * BATCH_TEXTS;
                let rate = done as f64 / started.elapsed().as_secs_f64();
                eprintln!(
                    "{done}/{} texts, {rate:.0} texts/s, {:.0} s left",
                    encoded.len(),
                    (encoded.len() - done.min(encoded.len())) as f64 / rate
                );
            }
        }
        write_logits(&args.out, &logits)?;
        eprintln!(
            "wrote {} rows of logits to {} in {:.0} s",
            logits.len(),
            args.out.display(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Options of `train cascade`.
    #[derive(Debug, Args)]
    pub struct CascadeArgs {
        /// Labelled file the threshold is chosen on.
        #[arg(long, default_value = "../shared/data/sentiment/val.tsv")]
        pub val: PathBuf,
        /// The transformer's logits over `--val` (`train teacher-logits --input VAL`).
        #[arg(long, default_value = "target/distill/teacher-val.tsv")]
        pub teacher: PathBuf,
        /// Directory of model files [default: the crate's models/].
        #[arg(long)]
        pub models_dir: Option<PathBuf>,
        /// Share of the transformer's macro-recall the cascade must keep.
        #[arg(long, default_value_t = 0.98)]
        pub keep: f64,
        /// Most texts the cascade may send to the transformer.
        #[arg(long, default_value_t = 0.25)]
        pub max_routed: f64,
    }

    /// Sweeps `cascade_min_confidence` on `--val` for the cascade's first stage (the gold-label
    /// fast model, as the backend uses) and prints the threshold with the best macro-recall
    /// among those routing at most `--max-routed` of texts; fails unless it keeps `--keep` of
    /// the transformer's macro-recall.
    pub fn cascade(args: &CascadeArgs) -> anyhow::Result<()> {
        let models_dir = args
            .models_dir
            .clone()
            .unwrap_or_else(crate::sentiment::default_models_dir);
        let fast = FastModel::load_gold(&models_dir)?;
        let rows = read_labelled(&args.val)?;
        let teacher = read_logits(&args.teacher)?;
        anyhow::ensure!(
            teacher.len() == rows.len(),
            "{} has {} rows, {} has {}",
            args.teacher.display(),
            teacher.len(),
            args.val.display(),
            rows.len()
        );
        let fast_answers: Vec<_> = rows.iter().map(|(_, text)| fast.classify(text)).collect();
        let teacher_labels: Vec<SentimentLabel> = teacher
            .iter()
            .map(|logits| crate::sentiment::fast::sentiment_from_probabilities(*logits).label)
            .collect();
        let confusion_at = |threshold: f32| {
            let mut confusion = Confusion::default();
            let mut routed = 0usize;
            for (row, (gold, _)) in rows.iter().enumerate() {
                let label = if fast_answers[row].confidence >= threshold {
                    fast_answers[row].label
                } else {
                    routed += 1;
                    teacher_labels[row]
                };
                confusion.add(*gold, label);
            }
            (confusion, routed as f64 / rows.len() as f64)
        };
        let (transformer, _) = confusion_at(f32::INFINITY);
        let (fast_only, _) = confusion_at(0.0);
        println!(
            "{}: transformer macro-recall {:.4}, fast {:.4}",
            args.val.display(),
            transformer.macro_recall(),
            fast_only.macro_recall()
        );
        println!("threshold  routed  macro-recall  share of transformer");
        // The threshold with the best macro-recall among those routing at most --max-routed.
        let mut chosen: Option<(f32, f64, f64, f64)> = None;
        for step in 34..=100 {
            let threshold = step as f32 / 100.0;
            let (confusion, routed) = confusion_at(threshold);
            let share = confusion.macro_recall() / transformer.macro_recall();
            println!(
                "{threshold:>9.2}  {:>5.1}%  {:>12.4}  {:>19.1}%",
                routed * 100.0,
                confusion.macro_recall(),
                share * 100.0
            );
            if routed <= args.max_routed && chosen.is_none_or(|best| share > best.3) {
                chosen = Some((threshold, routed, confusion.macro_recall(), share));
            }
        }
        match chosen.filter(|chosen| chosen.3 >= args.keep) {
            Some((threshold, routed, macro_recall, share)) => {
                println!(
                    "chosen cascade_min_confidence = {threshold:.2}: routes {:.1}% of texts, \
                     macro-recall {macro_recall:.4} ({:.1}% of the transformer's)",
                    routed * 100.0,
                    share * 100.0
                );
                Ok(())
            }
            None => anyhow::bail!(
                "no threshold keeps {:.0}% of the transformer's macro-recall while routing at \
                 most {:.0}% of texts",
                args.keep * 100.0,
                args.max_routed * 100.0
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_round_trip_and_soften() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logits.tsv");
        let logits = vec![[1.5, -0.25, 3.0], [0.0, 0.0, 0.0]];
        write_logits(&path, &logits).unwrap();
        assert_eq!(read_logits(&path).unwrap(), logits);
        let sharp = soft_targets([2.0, 0.0, -2.0], 1.0);
        let soft = soft_targets([2.0, 0.0, -2.0], 2.0);
        assert!((soft.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(soft[0] < sharp[0] && soft[2] > sharp[2]);
        assert_eq!(soft_targets([0.0; 3], 2.0), [1.0 / 3.0; 3]);
    }
}
