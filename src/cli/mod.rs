//! Command line: `serve` (the default), `classify`, `eval`, `send`, `top`, `customer`, `watch`, ….

/// `println!` for a command's output: when stdout is closed (`rapport top … | head`) the command
/// ends quietly with exit 0 (the error [`StdoutClosed`] propagates to `main`) instead of
/// panicking. Used inside functions returning `anyhow::Result`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))?
    };
}

pub mod client;
mod distill;
mod eval;
mod health;
pub mod loadgen;
mod simulate;
#[cfg(feature = "transformer")]
mod train_transformer;

use crate::config::Config;
use crate::sentiment::{self, Backend};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// rapport: real-time engagement and sentiment scoring over gRPC.
#[derive(Debug, Parser)]
#[command(name = "rapport", version, about, long_about = None)]
pub struct Cli {
    /// Log as JSON lines instead of text (level from RUST_LOG, default info).
    #[arg(long, global = true)]
    pub log_json: bool,
    /// The subcommand to run; none runs `serve` with its defaults.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands; none means `serve` with defaults.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server (the default).
    Serve(ServeArgs),
    /// Classify texts, one per line on stdin; prints
    /// `label<TAB>score<TAB>confidence<TAB>language<TAB>language confidence<TAB>urgency cues` per
    /// line (language ISO 639-1, `-` when none was found; cues comma-separated, `-` when none).
    Classify(ModelArgs),
    /// Evaluate a backend on a `label<TAB>text` file with a header: macro-recall, accuracy,
    /// per-class recall, confusion matrix, texts/s.
    Eval(EvalArgs),
    /// Stream interactions from a JSON-lines file to a server (Ingest) and print the summary.
    Send(SendArgs),
    /// Print a tenant's highest-priority customers, with why.
    Top(TopArgs),
    /// Print one customer's scores, with why.
    Customer(CustomerArgs),
    /// Print a tenant's priority changes as they happen.
    Watch(WatchArgs),
    /// Train a sentiment model.
    #[command(subcommand)]
    Train(TrainCommand),
    /// Drive a running server with seeded, realistic traffic (progress on stderr).
    Simulate(simulate::SimulateArgs),
    /// Check a server's gRPC health (exit 0 when SERVING): for container HEALTHCHECKs.
    Health(health::HealthArgs),
    /// Load-test a server's gRPC ingest: events/s and ack latency (see BENCHMARKS.md).
    Loadgen(loadgen::LoadgenArgs),
    /// Serve a no-op IngestService: the baseline `loadgen` is compared with.
    NoopServe(loadgen::NoopServeArgs),
}

/// Models `train` can build.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// The fast hashed n-gram model, on gold labels or (--teacher) distilled from the
    /// transformer's cached logits (seeded, deterministic).
    Fast(TrainFastArgs),
    /// Write the best fine-tuning checkpoint as the served model (half precision).
    #[cfg(feature = "transformer")]
    TransformerExport(train_transformer::ExportArgs),
    /// Cache the transformer's logits over a labelled file (distillation targets, cascade).
    #[cfg(feature = "transformer")]
    TeacherLogits(distill::TeacherLogitsArgs),
    /// Choose the cascade threshold on val from the fast model and the cached teacher logits.
    #[cfg(feature = "transformer")]
    Cascade(distill::CascadeArgs),
    /// Fine-tune the MiniLM transformer classifier (resumable; feature `transformer`).
    #[cfg(feature = "transformer")]
    Transformer(train_transformer::TrainTransformerArgs),
    /// Convert the downloaded base encoder for `train transformer` (scripts/fetch_base_model.sh).
    #[cfg(feature = "transformer")]
    TransformerBase(train_transformer::ConvertBaseArgs),
}

/// Options of `train fast`.
#[derive(Debug, Args)]
pub struct TrainFastArgs {
    /// Training data, `label<TAB>text` with a header.
    #[arg(long, default_value = "../shared/data/sentiment/train.tsv")]
    pub train: PathBuf,
    /// Validation data, reported after training; several files (e.g. UMSAB's
    /// per-language val splits), each reported on its own line. Rows of `--add` files whose text
    /// is in one of them are left out of training.
    #[arg(long, num_args = 1.., default_value = "../shared/data/sentiment/val.tsv")]
    pub val: Vec<PathBuf>,
    /// More gold-labelled training data (`label<TAB>text`), added to `--train`'s rows whatever
    /// the targets of those (e.g. UMSAB's per-language train splits); takes several files.
    #[arg(long, num_args = 1..)]
    pub add: Vec<PathBuf>,
    /// How many times each `--add` row is seen per epoch: the weight of small added sets (a few
    /// thousand tweets per language) against `--train`'s 47,745.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub add_repeat: u16,
    /// How many times each `--train` row is seen per epoch (its weight against `--add`'s rows).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub train_repeat: u16,
    /// Distil from a fast model file instead of the transformer's logits: its class
    /// probabilities over `--train` are the targets (e.g. the previous distilled model, itself
    /// trained on the transformer's logits, when those are not at hand).
    #[arg(long, conflicts_with = "teacher")]
    pub teacher_model: Option<PathBuf>,
    /// log2 of the number of hash buckets (the file holds 3 bytes per bucket: 20 → 3 MiB).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(8..=26))]
    pub buckets_log2: u8,
    /// Passes over the training data.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub epochs: u16,
    /// Where to write the model [default: models/fast/sentiment-gold.bin in the crate, or
    /// sentiment-distilled.bin with --teacher].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed of the shuffles (the same seed and data give the same bytes).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Distil: train on the transformer's logits over `--train` (`train teacher-logits`),
    /// softened by `--temperature`, instead of the gold labels.
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Softmax temperature applied to the teacher's logits.
    #[arg(long, default_value_t = 2.0)]
    pub temperature: f32,
    /// Overwrite `--out` when it exists (by default the shipped model in models/fast/).
    #[arg(long)]
    pub force: bool,
    /// Hold this fraction of `--train`'s rows out of training (stratified by their gold label,
    /// seeded by `--holdout-seed`; `--add` rows are all trained on) and keep, of 1..=`--epochs`
    /// epochs, the count whose model has the best macro-recall on them against their gold labels
    /// (early stopping on the training pool, not on `--val`). 0: train `--epochs` epochs on
    /// everything.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub holdout_fraction: f64,
    /// Seed of the held-out slice (the same slice whatever `--seed`, so runs compare).
    #[arg(long, default_value_t = 42)]
    pub holdout_seed: u64,
    /// Train this many seeds (`--seed` and the next ones) and write the mean of their weights:
    /// the ensemble that averages their logits, at one model's size and cost.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub seeds: u16,
    /// Average each run's weights over the second half of its epochs (checkpoint averaging)
    /// instead of keeping the last epoch's.
    #[arg(long)]
    pub checkpoint_average: bool,
    /// With `--holdout-fraction`: once the epoch count is chosen, train again on all of
    /// `--train`'s rows (the held-out slice included) for that many epochs and write that model.
    #[arg(long, requires = "holdout_fraction")]
    pub refit: bool,
}

/// A fraction in [0, 1).
fn parse_fraction(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.0..1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not in [0, 1)"))
    }
}

/// Options of `serve`; each overrides the config file.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML config file (see rapport.example.toml); defaults apply without one.
    #[arg(long, env = "RAPPORT_CONFIG")]
    pub config: Option<PathBuf>,
    /// gRPC listen address [default: 0.0.0.0:50051].
    #[arg(long)]
    pub grpc_addr: Option<SocketAddr>,
    /// Prometheus /metrics listen address [default: 0.0.0.0:9464].
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Sentiment backend [default: fast].
    #[arg(long, value_parser = backend_parser())]
    pub sentiment: Option<Backend>,
    /// Directory of model files laid out as the repository's models/ (e.g. with a model from
    /// `train fast`) [default: the fast models and VADER lexicons built into the binary; the
    /// transformer from ./models].
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    /// Keep a write-ahead log and snapshots here and recover from them at start [default: none,
    /// in memory only].
    #[arg(long, env = "RAPPORT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Start even when files in the data directory are damaged, dropping what cannot be read
    /// (each drop is logged as an error naming the file and byte). Without it, damage that no
    /// crash leaves refuses the start and changes nothing. For one start, after a backup.
    #[arg(long)]
    pub drop_damaged: bool,
    /// When the log is fsynced: always (before each answer, the default) or interval.
    #[arg(long, value_parser = ["always", "interval"])]
    pub fsync: Option<String>,
    /// Run as one replica of a cluster over NATS JetStream (`nats://host:4222`, several
    /// comma-separated) instead of with a local log; see docs/scaling.md [default: none].
    #[arg(long, env = "RAPPORT_CLUSTER")]
    pub cluster: Option<String>,
    /// This replica's name in the cluster's leases [default: host name and process id].
    #[arg(long)]
    pub replica_id: Option<String>,
    /// Partitions of the cluster (fixed for its life) [default: 64].
    #[arg(long)]
    pub partitions: Option<u32>,
}

/// `--sentiment`: one of the backends this build has, listed in `--help`.
fn backend_parser() -> impl clap::builder::TypedValueParser<Value = Backend> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Backend::ALL.iter().map(|backend| backend.name()))
        // Only the names above get here, and each parses.
        .map(|name| name.parse::<Backend>().unwrap_or(Backend::Fast))
}

/// Backend choice for offline commands.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Sentiment backend.
    #[arg(long, value_parser = backend_parser(), default_value = "fast")]
    pub sentiment: Backend,
    /// Directory of model files laid out as the repository's models/ (e.g. with a model from
    /// `train fast`) [default: the fast models and VADER lexicons built into the binary; the
    /// transformer from ./models].
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
}

/// Options of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// `label<TAB>text` file with a header line; labels negative/neutral/positive.
    pub file: PathBuf,
    /// Which backend to evaluate.
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Where the server is and how to prove who is calling.
#[derive(Clone, Debug, Args)]
pub struct ServerArgs {
    /// Server address, HOST:PORT or a URL (https:// or a TLS flag for TLS).
    #[arg(long, default_value = "127.0.0.1:50051", env = "RAPPORT_SERVER")]
    pub server: String,
    /// Bearer token, when the server has `[access] tokens`.
    #[arg(long, env = "RAPPORT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) that the server's TLS certificate must chain to.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for servers that require mutual TLS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Client private key (PEM) of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Options of `send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// JSON lines, one interaction each (fields as in the proto; enums by short name, e.g.
    /// "twitter", "mention", "inbound"; occurred_at as RFC 3339).
    pub file: PathBuf,
    /// Stop at the first malformed line and send nothing (default: report it and send the rest).
    #[arg(long)]
    pub strict: bool,
    /// Shift every occurred_at by the same amount so that the latest event is now (replays a
    /// sample as if it had just happened).
    #[arg(long)]
    pub relative_to_now: bool,
    /// Where the server is and how to authenticate.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Actions `top --action` filters on.
const ACTION_NAMES: [&str; 5] = ["respond", "rescue", "advocate", "nurture", "none"];

/// Options of `top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Tenant whose customers to rank (the events' tenant_id).
    #[arg(long)]
    pub tenant: String,
    /// How many customers, at most 1000.
    #[arg(long, default_value_t = 10)]
    pub limit: u32,
    /// Only customers whose action is this one.
    #[arg(long, value_parser = ACTION_NAMES)]
    pub action: Option<String>,
    /// Only customers with at least this retention risk (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub min_retention_risk: f64,
    /// Rank as of this time (RFC 3339, e.g. 2026-11-23T08:00:00Z) [default: now].
    #[arg(long)]
    pub as_of: Option<String>,
    /// Only customers waiting for an answer about this intent (the tenant's intents).
    #[arg(long, default_value = "")]
    pub intent: String,
    /// Only customers waiting for an answer to a message in this language (ISO 639-1: fr, de…).
    #[arg(long, default_value = "")]
    pub language: String,
    /// Print a JSON array of scores instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where the server is and how to authenticate.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Options of `customer`.
#[derive(Debug, Args)]
pub struct CustomerArgs {
    /// Tenant of the customer (the events' tenant_id).
    #[arg(long)]
    pub tenant: String,
    /// The customer (the events' customer_id).
    pub customer_id: String,
    /// Score as of this time (RFC 3339) [default: now].
    #[arg(long)]
    pub as_of: Option<String>,
    /// Print the score as a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where the server is and how to authenticate.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Options of `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Tenant whose customers to watch (the events' tenant_id).
    #[arg(long)]
    pub tenant: String,
    /// Report customers crossing this priority.
    #[arg(long, default_value_t = 0.5)]
    pub min_priority: f64,
    /// Only customers waiting for an answer about this intent (the tenant's intents).
    #[arg(long, default_value = "")]
    pub intent: String,
    /// Only customers waiting for an answer to a message in this language (ISO 639-1: fr, de…).
    #[arg(long, default_value = "")]
    pub language: String,
    /// Where the server is and how to authenticate.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The reader of the command's output went away (a broken pipe): not a failure of the command.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes one line of a command's output (see `outln!`): [`StdoutClosed`] on a broken pipe.
pub fn write_line(line: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}") {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(error) => Err(anyhow::Error::new(error).context("cannot write to stdout")),
    }
}

/// Whether `error` only says the output's reader went away ([`StdoutClosed`]): exit 0.
pub fn is_stdout_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<StdoutClosed>())
}

/// Parses the command line and runs it.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    crate::telemetry::init_logging(cli.log_json);
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(args),
        Command::Classify(args) => classify(args),
        Command::Eval(args) => eval::run(&args),
        Command::Send(args) => runtime()?.block_on(client::send(args)),
        Command::Top(args) => runtime()?.block_on(client::top(args)),
        Command::Customer(args) => runtime()?.block_on(client::customer(args)),
        Command::Watch(args) => runtime()?.block_on(client::watch(args)),
        Command::Train(TrainCommand::Fast(args)) => eval::train_fast(&args),
        #[cfg(feature = "transformer")]
        Command::Train(TrainCommand::Transformer(args)) => train_transformer::run(&args),
        #[cfg(feature = "transformer")]
        Command::Train(TrainCommand::TransformerExport(args)) => train_transformer::export(&args),
        #[cfg(feature = "transformer")]
        Command::Train(TrainCommand::TeacherLogits(args)) => distill::teacher_logits(&args),
        #[cfg(feature = "transformer")]
        Command::Train(TrainCommand::Cascade(args)) => distill::cascade(&args),
        #[cfg(feature = "transformer")]
        Command::Train(TrainCommand::TransformerBase(args)) => {
            train_transformer::convert_base(&args)
        }
        Command::Simulate(args) => runtime()?.block_on(simulate::run(args)),
        Command::Health(args) => runtime()?.block_on(health::run(args)),
        Command::Loadgen(args) => runtime()?.block_on(loadgen::run(args)),
        Command::NoopServe(args) => runtime()?.block_on(loadgen::noop_serve(args)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Loads the backend named by `args` (on this plain thread, never inside a tokio task).
pub fn load_model(
    args: &ModelArgs,
) -> anyhow::Result<std::sync::Arc<dyn sentiment::SentimentModel>> {
    sentiment::load_from(
        args.sentiment,
        &sentiment::ModelSource::from_models_dir(args.models_dir.clone()),
        &crate::config::TransformerConfig::default(),
    )
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(addr) = args.grpc_addr {
        config.server.grpc_addr = addr;
    }
    if let Some(addr) = args.metrics_addr {
        config.server.metrics_addr = addr;
    }
    if let Some(backend) = args.sentiment {
        config.server.sentiment = backend;
    }
    if args.models_dir.is_some() {
        config.server.models_dir = args.models_dir;
    }
    if args.data_dir.is_some() {
        config.durability.data_dir = args.data_dir;
    }
    config.durability.drop_damaged = args.drop_damaged;
    if args.cluster.is_some() {
        config.cluster.nats_url = args.cluster;
    }
    if args.replica_id.is_some() {
        config.cluster.replica_id = args.replica_id;
    }
    if let Some(partitions) = args.partitions {
        config.cluster.partitions = partitions;
    }
    if let Some(fsync) = args.fsync.as_deref() {
        config.durability.fsync = if fsync == "interval" {
            crate::durability::FsyncPolicy::Interval
        } else {
            crate::durability::FsyncPolicy::Always
        };
    }
    config.validate()?;
    let model = sentiment::load_from(
        config.server.sentiment,
        &sentiment::ModelSource::from_models_dir(config.server.models_dir.clone()),
        &config.transformer,
    )?;
    runtime()?.block_on(async {
        let server = crate::server::start(&config, model).await?;
        crate::server::shutdown_signal().await;
        server
            .shutdown(Duration::from_secs(config.server.shutdown_grace_seconds))
            .await
    })
}

fn classify(args: ModelArgs) -> anyhow::Result<()> {
    let model = load_model(&args)?;
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lines() {
        let line = line.context("cannot read stdin")?;
        let sentiment = model.classify(&line);
        // Then the language (`-` when none was found) and the detector's confidence, and the
        // urgency cues (comma-separated, `-` when none).
        let (language, language_confidence) = crate::sentiment::language::detect(&line)
            .map_or(("-", 0.0), |language| (language.code, language.confidence));
        let cues: Vec<&str> = crate::sentiment::infer_urgency_cues(&line)
            .iter()
            .map(|cue| cue.as_str())
            .collect();
        let cues = if cues.is_empty() {
            "-".to_string()
        } else {
            cues.join(",")
        };
        writeln!(
            stdout,
            "{}\t{:.4}\t{:.4}\t{language}\t{language_confidence:.4}\t{cues}",
            sentiment.label.as_str(),
            sentiment.score,
            sentiment.confidence
        )?;
    }
    stdout.flush()?;
    Ok(())
}
