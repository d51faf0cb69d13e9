//! `rapport eval`: accuracy figures of a backend on a labelled TSV file.

use crate::cli::{load_model, EvalArgs};
use crate::sentiment::SentimentLabel;
use anyhow::Context;
use std::time::Instant;

/// Confusion counts, rows = gold label, columns = predicted, in [`SentimentLabel::ALL`] order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Confusion(pub [[u64; 3]; 3]);

impl Confusion {
    /// Counts one prediction.
    pub fn add(&mut self, gold: SentimentLabel, predicted: SentimentLabel) {
        self.0[gold.index()][predicted.index()] += 1;
    }

    /// Recall of each gold class (0 for a class with no examples).
    pub fn recalls(&self) -> [f64; 3] {
        let mut recalls = [0.0; 3];
        for (class, row) in self.0.iter().enumerate() {
            let total: u64 = row.iter().sum();
            if total > 0 {
                recalls[class] = row[class] as f64 / total as f64;
            }
        }
        recalls
    }

    /// Mean of the per-class recalls: the TweetEval / SemEval headline metric.
    pub fn macro_recall(&self) -> f64 {
        self.recalls().iter().sum::<f64>() / 3.0
    }

    /// Share of correct predictions.
    pub fn accuracy(&self) -> f64 {
        let total: u64 = self.0.iter().flatten().sum();
        let correct: u64 = (0..3).map(|class| self.0[class][class]).sum();
        if total == 0 {
            0.0
        } else {
            correct as f64 / total as f64
        }
    }
}

/// Reads `label<TAB>text` lines after a header.
pub fn read_labelled(path: &std::path::Path) -> anyhow::Result<Vec<(SentimentLabel, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = Vec::new();
    for (number, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let (label, body) = line.split_once('\t').with_context(|| {
            format!("{}:{}: expected label<TAB>text", path.display(), number + 1)
        })?;
        let label = SentimentLabel::parse(label.trim()).with_context(|| {
            format!("{}:{}: unknown label {label:?}", path.display(), number + 1)
        })?;
        rows.push((label, body.to_string()));
    }
    Ok(rows)
}

pub(super) fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let model = load_model(&args.model)?;
    let rows = read_labelled(&args.file)?;
    let mut confusion = Confusion::default();
    let started = Instant::now();
    // One call for all texts: queued backends batch them.
    let texts: Vec<&str> = rows.iter().map(|(_, text)| text.as_str()).collect();
    for ((gold, _), sentiment) in rows.iter().zip(model.classify_all(&texts)) {
        confusion.add(*gold, sentiment.label);
    }
    let seconds = started.elapsed().as_secs_f64();
    let recalls = confusion.recalls();
    outln!("file            {}", args.file.display());
    outln!("backend         {}", backend_name(args.model.sentiment));
    outln!("texts           {}", rows.len());
    outln!("macro-recall    {:.4}", confusion.macro_recall());
    outln!("accuracy        {:.4}", confusion.accuracy());
    for (label, recall) in SentimentLabel::ALL.iter().zip(recalls) {
        outln!("recall {:<8} {recall:.4}", label.as_str());
    }
    outln!("confusion (rows gold, columns predicted: negative neutral positive)");
    for (label, row) in SentimentLabel::ALL.iter().zip(&confusion.0) {
        outln!(
            "  {:<8} {:>7} {:>7} {:>7}",
            label.as_str(),
            row[0],
            row[1],
            row[2]
        );
    }
    outln!(
        "texts/s         {:.0} ({}, {} texts in {})",
        rows.len() as f64 / seconds.max(1e-9),
        if model.name() == model.inline_name() {
            "one thread"
        } else {
            "through the transformer's worker pool"
        },
        rows.len(),
        elapsed_text(seconds)
    );
    Ok(())
}

/// `3.8 ms` or `13.2 s`: how long a throughput figure was timed over (a few ms is too short to
/// quote).
fn elapsed_text(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1000.0)
    } else {
        format!("{seconds:.1} s")
    }
}

/// The backend's name as `--sentiment` spells it (`fast-gold`, not the model's `fast`).
fn backend_name(backend: crate::sentiment::Backend) -> String {
    backend.name().to_string()
}

/// `rapport train fast`: trains on gold labels, or on the teacher's softened logits with
/// `--teacher`, reports validation figures, writes the model.
pub(super) fn train_fast(args: &crate::cli::TrainFastArgs) -> anyhow::Result<()> {
    use crate::sentiment::fast::{linear, FastModel, DISTILLED_MODEL_FILE, GOLD_MODEL_FILE};
    use crate::sentiment::SentimentModel;
    let out = args.out.clone().unwrap_or_else(|| {
        crate::sentiment::default_models_dir().join("fast").join(
            if args.teacher.is_some() || args.teacher_model.is_some() {
                DISTILLED_MODEL_FILE
            } else {
                GOLD_MODEL_FILE
            },
        )
    });
    anyhow::ensure!(
        args.force || !out.exists(),
        "{} exists (a shipped model, when under models/fast/): pass --force to overwrite it, or \
         --out FILE to write elsewhere",
        out.display()
    );
    let rows = read_labelled(&args.train)?;
    let vals = args
        .val
        .iter()
        .map(|path| read_labelled(path).map(|rows| (path, rows)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let added = added_rows(args, &vals)?;
    let config = linear::TrainConfig {
        seed: args.seed,
        buckets_log2: args.buckets_log2,
        epochs: usize::from(args.epochs),
        ..linear::TrainConfig::default()
    };
    outln!(
        "training on {} texts from {}{} ({config:?})",
        rows.len(),
        args.train.display(),
        match &args.teacher {
            Some(teacher) => format!(
                ", targets: {} at temperature {}",
                teacher.display(),
                args.temperature
            ),
            None => match &args.teacher_model {
                Some(teacher) => format!(", targets: {}'s probabilities", teacher.display()),
                None => ", targets: gold labels".to_string(),
            },
        }
    );
    if !args.add.is_empty() {
        outln!(
            "added {} gold-labelled texts from {} file(s), each seen {} time(s) per epoch (--train's \
             rows {} time(s))",
            added.len(),
            args.add.len(),
            args.add_repeat,
            args.train_repeat
        );
    }
    let train_repeat = usize::from(args.train_repeat);
    let one_hot = |label: SentimentLabel| -> [f32; 3] {
        std::array::from_fn(|class| if class == label.index() { 1.0 } else { 0.0 })
    };
    let added_targets = || {
        added.iter().flat_map(|(label, text)| {
            std::iter::repeat_n(
                (text.clone(), one_hot(*label)),
                usize::from(args.add_repeat),
            )
        })
    };
    // Progress: a closed stdout does not stop the training (the model file is what counts).
    let report = |report: linear::EpochReport| {
        let _ = crate::cli::write_line(format_args!(
            "epoch {}/{}  loss {:.4}  train accuracy {:.4}  {:.1} s",
            report.epoch,
            report.epochs,
            report.mean_loss,
            report.train_accuracy,
            report.elapsed.as_secs_f64()
        ));
    };
    // Every --train row's target, by the route asked for.
    let targets: Vec<[f32; 3]> = match (&args.teacher, &args.teacher_model) {
        (None, None) => rows.iter().map(|(label, _)| one_hot(*label)).collect(),
        (None, Some(teacher)) => {
            let teacher = FastModel::load_file(teacher)?;
            rows.iter()
                .map(|(_, text)| teacher.probabilities(text))
                .collect()
        }
        (Some(teacher), _) => {
            anyhow::ensure!(
                args.temperature.is_finite() && args.temperature > 0.0,
                "--temperature must be positive"
            );
            let logits = super::distill::read_logits(teacher)?;
            anyhow::ensure!(
                logits.len() == rows.len(),
                "{} has {} rows of logits, {} has {} texts",
                teacher.display(),
                logits.len(),
                args.train.display(),
                rows.len()
            );
            logits
                .into_iter()
                .map(|logits| super::distill::soft_targets(logits, args.temperature))
                .collect()
        }
    };
    // (text, target, gold label) of every --train row; the held-out slice is split off here,
    // before any example is built, so none of its rows is trained on.
    let labelled: Vec<(String, [f32; 3], SentimentLabel)> = rows
        .into_iter()
        .zip(targets)
        .map(|((label, text), target)| (text, target, label))
        .collect();
    let (kept, held) = if args.holdout_fraction > 0.0 {
        linear::split_holdout(
            &labelled,
            |(_, _, label)| label.index(),
            args.holdout_fraction,
            args.holdout_seed,
        )
    } else {
        (labelled.clone(), Vec::new())
    };
    let examples_of = |rows: &[(String, [f32; 3], SentimentLabel)]| -> Vec<(String, [f32; 3])> {
        rows.iter()
            .map(|(text, target, _)| (text.clone(), *target))
            .flat_map(|example| std::iter::repeat_n(example, train_repeat))
            .chain(added_targets())
            .collect()
    };
    let selection = linear::Selection {
        seeds: usize::from(args.seeds),
        checkpoint_average: args.checkpoint_average,
    };
    let model = if held.is_empty() && selection == linear::Selection::default() {
        linear::LinearModel::train_soft(&examples_of(&kept), &config, report)
    } else {
        let holdout: Vec<(String, usize)> = held
            .iter()
            .map(|(text, _, label)| (text.clone(), label.index()))
            .collect();
        if !holdout.is_empty() {
            outln!(
                "held out {} of {} --train texts (stratified, seed {}): not trained on, the \
                 epoch count is chosen on them",
                holdout.len(),
                kept.len() + holdout.len(),
                args.holdout_seed
            );
        }
        let progress = |seed: u64, epoch: linear::EpochReport| {
            let _ = crate::cli::write_line(format_args!(
                "seed {seed}  epoch {}/{}  loss {:.4}  train accuracy {:.4}  {:.1} s",
                epoch.epoch,
                epoch.epochs,
                epoch.mean_loss,
                epoch.train_accuracy,
                epoch.elapsed.as_secs_f64()
            ));
        };
        let (model, chosen) = linear::LinearModel::train_selected(
            &examples_of(&kept),
            &holdout,
            &config,
            &selection,
            progress,
        );
        for (epoch, score) in chosen.holdout_macro_recall.iter().enumerate() {
            outln!(
                "{} epoch(s): held-out macro-recall {score:.4}{}",
                epoch + 1,
                if epoch + 1 == chosen.epochs {
                    "  (kept)"
                } else {
                    ""
                }
            );
        }
        if args.refit && !held.is_empty() {
            outln!(
                "refit: {} epoch(s) on all {} --train texts",
                chosen.epochs,
                kept.len() + held.len()
            );
            let refit_config = linear::TrainConfig {
                epochs: chosen.epochs,
                ..config.clone()
            };
            linear::LinearModel::train_selected(
                &examples_of(&labelled),
                &[],
                &refit_config,
                &selection,
                progress,
            )
            .0
        } else {
            model
        }
    };
    let bytes = model.to_bytes();
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
    let classifier = FastModel::new(
        linear::LinearModel::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    outln!("wrote {} ({} bytes)", out.display(), bytes.len());
    for (path, rows) in &vals {
        let mut confusion = Confusion::default();
        for (gold, text) in rows {
            confusion.add(*gold, classifier.classify(text).label);
        }
        outln!(
            "{}: macro-recall {:.4}, accuracy {:.4}",
            path.display(),
            confusion.macro_recall(),
            confusion.accuracy()
        );
    }
    outln!(
        "serve it with --models-dir (a folder holding fast/{}), or rebuild to build it in",
        out.file_name().unwrap_or_default().to_string_lossy()
    );
    Ok(())
}

/// The rows of `train fast --add` files, without those whose text is in a validation file
/// (UMSAB's English train split holds 1,430 of TweetEval's val tweets: training on them would
/// make val figures meaningless), each left-out count reported.
fn added_rows(
    args: &crate::cli::TrainFastArgs,
    vals: &[(&std::path::PathBuf, Vec<(SentimentLabel, String)>)],
) -> anyhow::Result<Vec<(SentimentLabel, String)>> {
    let held_out: std::collections::HashSet<&str> = vals
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|(_, text)| text.as_str()))
        .collect();
    let mut added = Vec::new();
    for path in &args.add {
        let rows = read_labelled(path)?;
        let total = rows.len();
        let before = added.len();
        added.extend(
            rows.into_iter()
                .filter(|(_, text)| !held_out.contains(text.as_str())),
        );
        let left_out = total - (added.len() - before);
        if left_out > 0 {
            outln!(
                "{}: {left_out} of {total} texts left out (they are in a --val file)",
                path.display()
            );
        }
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use SentimentLabel::*;

    #[test]
    fn macro_recall_averages_classes() {
        let mut confusion = Confusion::default();
        confusion.add(Negative, Negative);
        confusion.add(Negative, Neutral);
        confusion.add(Neutral, Neutral);
        confusion.add(Positive, Positive);
        assert_eq!(confusion.recalls(), [0.5, 1.0, 1.0]);
        assert!((confusion.macro_recall() - 2.5 / 3.0).abs() < 1e-12);
        assert_eq!(confusion.accuracy(), 0.75);
    }
}
