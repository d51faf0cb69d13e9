//! `rapport train transformer`: fine-tunes the base MiniLM encoder as a three-class sentiment
//! classifier (feature `transformer`), and `rapport train transformer-base`: converts the
//! downloaded base model for rust-bert.
//!
//! Recipe (issue 8): AdamW (weight decay on weights only, none on biases and LayerNorm), linear
//! warm-up over 6 % of the steps then linear decay to 0, gradient-norm clipping, dynamic padding,
//! texts normalised with [`crate::sentiment::transformer::normalize`]. Each epoch visits the
//! training rows in an order drawn from `seed` and the epoch number, so `--resume` continues
//! with exactly the batches an uninterrupted run would have seen. tch 0.10 cannot save the
//! AdamW moments, so a resumed run restarts them (and the dropout random stream) at the resume
//! step.

use super::eval::{read_labelled, Confusion};
use crate::sentiment::transformer::{convert, model};
use crate::sentiment::SentimentLabel;
use anyhow::Context;
use clap::Args;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// Optimizer group of weights that get weight decay.
const DECAY_GROUP: usize = 0;
/// Optimizer group of biases and LayerNorm parameters (no weight decay).
const NO_DECAY_GROUP: usize = 1;
/// Texts per forward pass when evaluating.
const EVAL_BATCH_SIZE: usize = 64;
/// Batches per window sorted by length when batches are grouped by length.
const LENGTH_GROUP_BATCHES: usize = 50;

/// Options of `train transformer`.
#[derive(Debug, Args)]
pub struct TrainTransformerArgs {
    /// Training data, `label<TAB>text` with a header.
    #[arg(long, default_value = "../shared/data/sentiment/train.tsv")]
    pub train: PathBuf,
    /// Validation data, evaluated after each epoch (and every --eval-every-steps).
    #[arg(long, default_value = "../shared/data/sentiment/val.tsv")]
    pub val: PathBuf,
    /// Converted base model: config.json, vocab.txt, rust_model.ot (scripts/fetch_base_model.sh).
    #[arg(long, default_value = "models/transformer/base")]
    pub base: PathBuf,
    /// Checkpoint directory: last.ot + state.json (resume), best.ot + best.json.
    #[arg(long, default_value = "models/transformer/checkpoints")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// libtorch intra-op threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Longest input in word pieces, [CLS] and [SEP] included.
    #[arg(long, default_value_t = model::MAX_TOKENS)]
    pub max_tokens: usize,
    /// Share of all steps spent warming the learning rate up from 0.
    #[arg(long, default_value_t = 0.06)]
    pub warmup_fraction: f64,
    /// AdamW weight decay (weights only).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Clip the global gradient L2 norm to this.
    #[arg(long, default_value_t = 1.0)]
    pub clip_norm: f64,
    /// Also evaluate val every this many steps (0: only after each epoch).
    #[arg(long, default_value_t = 500)]
    pub eval_every_steps: usize,
    /// Write last.ot + state.json every this many steps.
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every_steps: usize,
    /// Print a progress line every this many steps.
    #[arg(long, default_value_t = 20)]
    pub progress_every_steps: usize,
    /// Stop (after checkpointing) once this many steps are done in all (smoke runs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Continue from last.ot + state.json in --out.
    #[arg(long)]
    pub resume: bool,
    /// Form batches of texts of similar length (less padding, ~1.5-2x faster steps on CPU).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub group_by_length: bool,
}

/// Options of `train transformer-base`.
#[derive(Debug, Args)]
pub struct ConvertBaseArgs {
    /// Directory with model.safetensors, config.json and vocab.txt (from the wheel).
    #[arg(long)]
    pub from: PathBuf,
    /// Where to write rust_model.ot, config.json and vocab.txt.
    #[arg(long, default_value = "models/transformer/base")]
    pub out: PathBuf,
}

/// Options of `train transformer-export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Checkpoint directory of `train transformer` (best.ot, config.json, vocab.txt).
    #[arg(long, default_value = "models/transformer/checkpoints")]
    pub from: PathBuf,
    /// Where the served model goes: sentiment-minilm-f16.ot, config.json, vocab.txt.
    #[arg(long, default_value = "models/transformer")]
    pub out: PathBuf,
    /// Training data whose class frequencies the prior correction uses.
    #[arg(long, default_value = "../shared/data/sentiment/train.tsv")]
    pub train: PathBuf,
    /// Logit adjustment for balanced recall: add `-strength · ln(prior)` of each class (its share
    /// of `--train`) to the classifier's bias, so the arg-max no longer favours the classes the
    /// training data over-represents (Menon et al., 2021, "Long-tail learning via logit
    /// adjustment"; 1 is the value that theory gives for balanced error). 0 turns it off.
    #[arg(long, default_value_t = 1.0)]
    pub prior_correction: f64,
}

/// Validation figures at one point of training.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Epoch in progress (1-based); a figure taken at an epoch's end carries that epoch.
    pub epoch: usize,
    /// Optimizer steps done.
    pub global_step: usize,
    /// Whether this evaluation closed an epoch.
    pub epoch_end: bool,
    pub macro_recall: f64,
    pub accuracy: f64,
    /// Recall of negative, neutral, positive.
    pub recalls: [f64; 3],
    /// Training wall time so far (evaluations included, across resumes).
    pub train_seconds: f64,
}

/// Resumable training state, written beside `last.ot`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainState {
    /// Epoch in progress, 0-based.
    pub epoch: usize,
    /// Batches of `epoch` already done.
    pub step_in_epoch: usize,
    /// Optimizer steps done in all.
    pub global_step: usize,
    pub seed: u64,
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub steps_per_epoch: usize,
    /// Whether batches group texts of similar length.
    #[serde(default)]
    pub group_by_length: bool,
    /// Wall time spent so far, across resumes.
    pub train_seconds: f64,
    /// Best validation figures so far (weights in best.ot).
    pub best: Option<EvalRecord>,
    /// Every validation so far.
    pub history: Vec<EvalRecord>,
}

pub(super) fn convert_base(args: &ConvertBaseArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let report = convert::convert_base(&args.from, &args.out)?;
    eprintln!(
        "wrote {} tensors ({} parameters) to {} in {:.1} s",
        report.tensors,
        report.parameters,
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes the best checkpoint as the served model: weights in half precision (half the bytes;
/// loading converts them back to f32), with its config and vocabulary.
pub(super) fn export(args: &ExportArgs) -> anyhow::Result<()> {
    let config = model::load_config(&args.from.join("config.json"))?;
    let (mut vs, _classifier) = model::build(&config, Device::Cpu)?;
    let best = args.from.join("best.ot");
    vs.load(&best)
        .with_context(|| format!("cannot load {}", best.display()))?;
    let adjustment = prior_adjustment(&args.train, args.prior_correction)?;
    {
        let variables = vs.variables();
        let bias = variables
            .get("classifier.bias")
            .context("the checkpoint has no classifier.bias")?;
        let mut bias = bias.shallow_clone();
        tch::no_grad(|| {
            let _ = bias.g_add_(&Tensor::of_slice(&adjustment).to_kind(bias.kind()));
        });
    }
    eprintln!(
        "prior correction (strength {}): classifier bias + {:?} (negative, neutral, positive)",
        args.prior_correction, adjustment
    );
    vs.half();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let weights = args.out.join(crate::sentiment::transformer::WEIGHTS_FILE);
    save_weights_atomic(&vs, &weights)?;
    for file in ["config.json", "vocab.txt"] {
        std::fs::copy(args.from.join(file), args.out.join(file))
            .with_context(|| format!("cannot copy {file} to {}", args.out.display()))?;
    }
    if let Ok(record) = std::fs::read_to_string(args.from.join("best.json")) {
        std::fs::write(args.out.join("best.json"), record)?;
    }
    eprintln!(
        "wrote {} ({} bytes)",
        weights.display(),
        std::fs::metadata(&weights)?.len()
    );
    Ok(())
}

/// `-strength · ln(share)` of each class in the labelled file (see [`ExportArgs::prior_correction`]).
pub fn prior_adjustment(train: &Path, strength: f64) -> anyhow::Result<[f32; 3]> {
    if strength == 0.0 {
        return Ok([0.0; 3]);
    }
    let mut counts = [0usize; 3];
    for (label, _) in read_labelled(train)? {
        counts[label.index()] += 1;
    }
    let total: usize = counts.iter().sum();
    anyhow::ensure!(
        counts.iter().all(|&count| count > 0),
        "{}: every class needs examples for the prior correction",
        train.display()
    );
    Ok(counts.map(|count| (-strength * (count as f64 / total as f64).ln()) as f32))
}

/// Learning rate at `step` (0-based): linear warm-up to `peak` over `warmup_steps`, then linear
/// decay to 0 at `total_steps`.
pub fn lr_at(step: usize, peak: f64, warmup_steps: usize, total_steps: usize) -> f64 {
    if step < warmup_steps {
        peak * (step + 1) as f64 / warmup_steps as f64
    } else {
        let remaining = total_steps.saturating_sub(step) as f64;
        peak * remaining / (total_steps - warmup_steps).max(1) as f64
    }
}

/// Row order of `epoch`, drawn from `seed` and `epoch` only, so a resumed run sees the same
/// batches. With `group_by_length`, rows are shuffled, cut into windows of
/// [`LENGTH_GROUP_BATCHES`] batches, sorted by token count inside each window, and the resulting
/// batches are shuffled: a batch holds texts of similar length, so dynamic padding wastes little
/// (tweets average 29 word pieces, while a random batch of 32 pads to about twice that).
pub fn epoch_order(
    lengths: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: usize,
    group_by_length: bool,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    let epoch_seed = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(epoch as u64 + 1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(epoch_seed);
    order.shuffle(&mut rng);
    if !group_by_length || batch_size == 0 {
        return order;
    }
    for window in order.chunks_mut(batch_size * LENGTH_GROUP_BATCHES) {
        window.sort_by_key(|&row| lengths[row]);
    }
    let mut batches: Vec<&[usize]> = order.chunks(batch_size).collect();
    // The last, possibly short, batch stays last so every other batch is full.
    let last = batches.pop();
    batches.shuffle(&mut rng);
    batches.extend(last);
    batches.concat()
}

/// Puts biases and LayerNorm parameters in [`NO_DECAY_GROUP`], everything else in
/// [`DECAY_GROUP`]; returns (decayed, not decayed) tensor counts.
fn assign_weight_decay_groups(vs: &nn::VarStore) -> anyhow::Result<(usize, usize)> {
    let mut variables = vs
        .variables_
        .lock()
        .map_err(|_| anyhow::anyhow!("var store lock poisoned"))?;
    let no_decay: HashSet<usize> = variables
        .named_variables
        .iter()
        .filter(|(name, _)| name.ends_with(".bias") || name.contains("LayerNorm"))
        .map(|(_, tensor)| tensor.data_ptr() as usize)
        .collect();
    let mut counts = (0, 0);
    for var in variables.trainable_variables.iter_mut() {
        if no_decay.contains(&(var.tensor.data_ptr() as usize)) {
            var.group = NO_DECAY_GROUP;
            counts.1 += 1;
        } else {
            var.group = DECAY_GROUP;
            counts.0 += 1;
        }
    }
    Ok(counts)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))
}

/// Saves the var store to `path` through a temporary file and a rename.
fn save_weights_atomic(vs: &nn::VarStore, path: &Path) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp.ot");
    vs.save(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))
}

/// Writes last.ot, then state.json (so state.json never points past the saved weights).
fn save_last(vs: &nn::VarStore, state: &TrainState, out: &Path) -> anyhow::Result<()> {
    save_weights_atomic(vs, &out.join("last.ot"))?;
    write_atomic(
        &out.join("state.json"),
        serde_json::to_string_pretty(state)?.as_bytes(),
    )
}

/// Encoded texts with their class indices.
struct Encoded {
    ids: Vec<Vec<i64>>,
    labels: Vec<i64>,
}

fn encode_rows(
    tokenizer: &rust_tokenizers::tokenizer::BertTokenizer,
    rows: &[(SentimentLabel, String)],
    max_tokens: usize,
) -> Encoded {
    Encoded {
        ids: rows
            .iter()
            .map(|(_, text)| model::encode(tokenizer, text, max_tokens))
            .collect(),
        labels: rows.iter().map(|(label, _)| label.index() as i64).collect(),
    }
}

/// Validation confusion of the current weights (no dropout, no gradients); batches are formed
/// from length-sorted texts so padding stays small.
fn evaluate(
    classifier: &rust_bert::bert::BertForSequenceClassification,
    val: &Encoded,
    pad_id: i64,
) -> Confusion {
    let mut order: Vec<usize> = (0..val.ids.len()).collect();
    order.sort_by_key(|&i| val.ids[i].len());
    let mut confusion = Confusion::default();
    for chunk in order.chunks(EVAL_BATCH_SIZE) {
        let sequences: Vec<&[i64]> = chunk.iter().map(|&i| val.ids[i].as_slice()).collect();
        let logits = model::logits(classifier, &sequences, pad_id, Device::Cpu);
        for (&i, sentiment) in chunk.iter().zip(model::sentiments_from_logits(&logits)) {
            confusion.add(SentimentLabel::ALL[val.labels[i] as usize], sentiment.label);
        }
    }
    confusion
}

fn format_seconds(seconds: f64) -> String {
    humantime::format_duration(Duration::from_secs(seconds.max(0.0).round() as u64)).to_string()
}

pub(super) fn run(args: &TrainTransformerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be positive");
    anyhow::ensure!(args.epochs > 0, "--epochs must be positive");
    anyhow::ensure!(
        args.checkpoint_every_steps > 0,
        "--checkpoint-every-steps must be positive"
    );
    tch::set_num_threads(args.threads as i32);
    let device = Device::Cpu;
    let config = model::load_config(&args.base.join("config.json"))?;
    let tokenizer = model::load_tokenizer(&args.base.join("vocab.txt"))?;
    let pad_id = model::pad_id(&tokenizer);

    let encode_started = Instant::now();
    let train = encode_rows(&tokenizer, &read_labelled(&args.train)?, args.max_tokens);
    let val = encode_rows(&tokenizer, &read_labelled(&args.val)?, args.max_tokens);
    anyhow::ensure!(!train.ids.is_empty(), "{}: no rows", args.train.display());
    eprintln!(
        "encoded {} training and {} validation texts in {:.1} s",
        train.ids.len(),
        val.ids.len(),
        encode_started.elapsed().as_secs_f64()
    );

    let train_lengths: Vec<usize> = train.ids.iter().map(Vec::len).collect();
    let steps_per_epoch = train.ids.len().div_ceil(args.batch_size);
    let total_steps = steps_per_epoch * args.epochs;
    let warmup_steps = ((total_steps as f64 * args.warmup_fraction).ceil() as usize).max(1);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for file in ["config.json", "vocab.txt"] {
        std::fs::copy(args.base.join(file), args.out.join(file))
            .with_context(|| format!("cannot copy {file} to {}", args.out.display()))?;
    }

    let state_path = args.out.join("state.json");
    let mut state = if args.resume {
        let text = std::fs::read_to_string(&state_path)
            .with_context(|| format!("cannot read {}", state_path.display()))?;
        let state: TrainState = serde_json::from_str(&text)
            .with_context(|| format!("{}: bad state", state_path.display()))?;
        anyhow::ensure!(
            state.seed == args.seed
                && state.epochs == args.epochs
                && state.batch_size == args.batch_size
                && state.lr == args.lr
                && state.steps_per_epoch == steps_per_epoch
                && state.group_by_length == args.group_by_length,
            "{}: run settings differ (seed {}, epochs {}, batch size {}, lr {}, steps/epoch {}); \
             resume with the same settings",
            state_path.display(),
            state.seed,
            state.epochs,
            state.batch_size,
            state.lr,
            state.steps_per_epoch
        );
        state
    } else {
        TrainState {
            epoch: 0,
            step_in_epoch: 0,
            global_step: 0,
            seed: args.seed,
            epochs: args.epochs,
            lr: args.lr,
            batch_size: args.batch_size,
            steps_per_epoch,
            group_by_length: args.group_by_length,
            train_seconds: 0.0,
            best: None,
            history: Vec::new(),
        }
    };

    // Seeds the classifier head's initialisation.
    tch::manual_seed(args.seed as i64);
    let (mut vs, classifier) = model::build(&config, device)?;
    if args.resume {
        vs.load(args.out.join("last.ot"))
            .context("cannot load last.ot")?;
        eprintln!(
            "resumed at epoch {} step {}/{} (global step {})",
            state.epoch + 1,
            state.step_in_epoch,
            steps_per_epoch,
            state.global_step
        );
    } else {
        let base_weights = args.base.join("rust_model.ot");
        let missing = vs
            .load_partial(&base_weights)
            .with_context(|| format!("cannot load {}", base_weights.display()))?;
        anyhow::ensure!(
            missing.iter().all(|name| name.starts_with("classifier.")),
            "{}: missing encoder tensors {:?}",
            base_weights.display(),
            missing
        );
        eprintln!(
            "loaded {}; new classifier head: {:?}",
            base_weights.display(),
            missing
        );
    }
    // Dropout stream: reproducible for a given start step.
    tch::manual_seed(args.seed as i64 + state.global_step as i64);
    let (decayed, not_decayed) = assign_weight_decay_groups(&vs)?;
    let mut optimizer = nn::adamw(0.9, 0.999, args.weight_decay).build(&vs, args.lr)?;
    optimizer.set_weight_decay_group(DECAY_GROUP, args.weight_decay);
    optimizer.set_weight_decay_group(NO_DECAY_GROUP, 0.0);
    eprintln!(
        "{} steps/epoch, {} steps in all, warm-up {} steps; {} tensors with weight decay {}, {} \
         without; {} threads",
        steps_per_epoch,
        total_steps,
        warmup_steps,
        decayed,
        args.weight_decay,
        not_decayed,
        args.threads
    );

    let session_started = Instant::now();
    let seconds_before = state.train_seconds;
    let mut window_started = Instant::now();
    let mut window_loss = 0.0;
    let mut window_steps = 0usize;
    let mut window_texts = 0usize;

    // Evaluates val, records the figures, keeps best.ot.
    let validate =
        |vs: &nn::VarStore, state: &mut TrainState, epoch_end: bool| -> anyhow::Result<()> {
            let started = Instant::now();
            let confusion = evaluate(&classifier, &val, pad_id);
            let record = EvalRecord {
                epoch: if epoch_end {
                    state.epoch
                } else {
                    state.epoch + 1
                },
                global_step: state.global_step,
                epoch_end,
                macro_recall: confusion.macro_recall(),
                accuracy: confusion.accuracy(),
                recalls: confusion.recalls(),
                train_seconds: seconds_before + session_started.elapsed().as_secs_f64(),
            };
            let improved = match &state.best {
                Some(best) => record.macro_recall > best.macro_recall,
                None => true,
            };
            eprintln!(
                "val epoch {} step {}: macro-recall {:.4} accuracy {:.4} (negative {:.3} neutral \
             {:.3} positive {:.3}) in {:.1} s{}",
                record.epoch,
                record.global_step,
                record.macro_recall,
                record.accuracy,
                record.recalls[0],
                record.recalls[1],
                record.recalls[2],
                started.elapsed().as_secs_f64(),
                if improved { ", new best" } else { "" }
            );
            if improved {
                save_weights_atomic(vs, &args.out.join("best.ot"))?;
                write_atomic(
                    &args.out.join("best.json"),
                    serde_json::to_string_pretty(&record)?.as_bytes(),
                )?;
                state.best = Some(record.clone());
            }
            state.history.push(record);
            Ok(())
        };

    while state.epoch < args.epochs {
        let order = epoch_order(
            &train_lengths,
            args.batch_size,
            args.seed,
            state.epoch,
            args.group_by_length,
        );
        while state.step_in_epoch < steps_per_epoch {
            if args.max_steps.is_some_and(|max| state.global_step >= max) {
                state.train_seconds = seconds_before + session_started.elapsed().as_secs_f64();
                save_last(&vs, &state, &args.out)?;
                eprintln!("stopped at --max-steps {} (state saved)", state.global_step);
                return Ok(());
            }
            let start = state.step_in_epoch * args.batch_size;
            let rows = &order[start..(start + args.batch_size).min(order.len())];
            let sequences: Vec<&[i64]> = rows.iter().map(|&i| train.ids[i].as_slice()).collect();
            let labels: Vec<i64> = rows.iter().map(|&i| train.labels[i]).collect();
            let batch = model::pad_batch(&sequences, pad_id, device);
            let targets = Tensor::of_slice(&labels).to_device(device);

            optimizer.set_lr(lr_at(state.global_step, args.lr, warmup_steps, total_steps));
            let logits = classifier
                .forward_t(
                    Some(&batch.input_ids),
                    Some(&batch.attention_mask),
                    None,
                    None,
                    None,
                    true,
                )
                .logits;
            let loss = logits
                .to_kind(Kind::Float)
                .cross_entropy_for_logits(&targets);
            optimizer.zero_grad();
            loss.backward();
            optimizer.clip_grad_norm(args.clip_norm);
            optimizer.step();

            window_loss += f64::from(&loss);
            window_steps += 1;
            window_texts += rows.len();
            state.step_in_epoch += 1;
            state.global_step += 1;

            if state.global_step % args.progress_every_steps.max(1) == 0 {
                let seconds = window_started.elapsed().as_secs_f64();
                let seconds_per_step = seconds / window_steps as f64;
                eprintln!(
                    "epoch {}/{} step {}/{} (global {}/{}) loss {:.4} lr {:.2e} {:.1} texts/s \
                     {:.2} s/step ETA {}",
                    state.epoch + 1,
                    args.epochs,
                    state.step_in_epoch,
                    steps_per_epoch,
                    state.global_step,
                    total_steps,
                    window_loss / window_steps as f64,
                    lr_at(state.global_step - 1, args.lr, warmup_steps, total_steps),
                    window_texts as f64 / seconds,
                    seconds_per_step,
                    format_seconds(seconds_per_step * (total_steps - state.global_step) as f64)
                );
                window_started = Instant::now();
                window_loss = 0.0;
                window_steps = 0;
                window_texts = 0;
            }
            if state.global_step % args.checkpoint_every_steps == 0 {
                state.train_seconds = seconds_before + session_started.elapsed().as_secs_f64();
                save_last(&vs, &state, &args.out)?;
            }
            if args.eval_every_steps > 0
                && state.global_step % args.eval_every_steps == 0
                && state.step_in_epoch < steps_per_epoch
            {
                let paused = Instant::now();
                validate(&vs, &mut state, false)?;
                state.train_seconds = seconds_before + session_started.elapsed().as_secs_f64();
                save_last(&vs, &state, &args.out)?;
                window_started += paused.elapsed();
            }
        }
        let paused = Instant::now();
        state.epoch += 1;
        state.step_in_epoch = 0;
        validate(&vs, &mut state, true)?;
        state.train_seconds = seconds_before + session_started.elapsed().as_secs_f64();
        save_last(&vs, &state, &args.out)?;
        window_started += paused.elapsed();
    }
    let best = state
        .best
        .as_ref()
        .context("training ended without a validation")?;
    eprintln!(
        "done: {} steps in {}; best val macro-recall {:.4} at epoch {} step {} ({})",
        state.global_step,
        format_seconds(state.train_seconds),
        best.macro_recall,
        best.epoch,
        best.global_step,
        args.out.join("best.ot").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation_with_length_grouped_batches() {
        let lengths: Vec<usize> = (0..10_000).map(|row| 5 + (row * 7919) % 60).collect();
        let order = epoch_order(&lengths, 32, 7, 1, true);
        assert_eq!(order, epoch_order(&lengths, 32, 7, 1, true));
        assert_ne!(order, epoch_order(&lengths, 32, 7, 2, true));
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..lengths.len()).collect::<Vec<_>>());
        let padded = |order: &[usize]| -> usize {
            order
                .chunks(32)
                .map(|batch| batch.iter().map(|&row| lengths[row]).max().unwrap() * batch.len())
                .sum()
        };
        let random = epoch_order(&lengths, 32, 7, 1, false);
        assert!(padded(&order) * 10 < padded(&random) * 7);
    }

    #[test]
    fn learning_rate_warms_up_then_decays_to_zero() {
        assert!((lr_at(0, 1.0, 10, 100) - 0.1).abs() < 1e-12);
        assert!((lr_at(9, 1.0, 10, 100) - 1.0).abs() < 1e-12);
        assert!(lr_at(50, 1.0, 10, 100) < 1.0);
        assert_eq!(lr_at(100, 1.0, 10, 100), 0.0);
    }
}
