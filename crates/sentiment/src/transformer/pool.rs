//! Batching worker pool (after text-embeddings-inference's queue): N worker threads, each owning
//! a [`TransformerClassifier`] it built itself, fed by one bounded queue of tokenized texts. A
//! worker that comes free takes what is queued, up to a text count and a padded-token budget, and
//! runs it as one dynamically padded batch. Texts whose caller has gone are skipped; a full queue
//! refuses at once ([`Overloaded`]).

use super::model::{encode, load_tokenizer, TransformerClassifier, MAX_TOKENS};
use crate::TransformerConfig;
use crate::{Overloaded, Pending, Sentiment};
use anyhow::Context;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use rust_tokenizers::tokenizer::BertTokenizer;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One queued text.
struct Job {
    ids: Vec<i64>,
    reply: tokio::sync::oneshot::Sender<Sentiment>,
}

/// What the pool did, for metrics and benches.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Batches run.
    pub batches: AtomicU64,
    /// Texts classified.
    pub texts: AtomicU64,
    /// Texts skipped because their caller had gone.
    pub abandoned: AtomicU64,
    /// Texts refused because the queue was full.
    pub refused: AtomicU64,
    /// Forward passes that failed (libtorch panicked); their callers got an error.
    pub failed_batches: AtomicU64,
    /// Workers serving now: one more when a worker has loaded, one less when its thread ends
    /// for any reason (a panic included).
    pub workers_alive: AtomicU64,
    /// Workers started.
    pub workers_started: AtomicU64,
}

impl PoolStats {
    /// A copy of the counters.
    pub fn snapshot(&self) -> crate::QueueStats {
        crate::QueueStats {
            workers_alive: self.workers_alive.load(Ordering::Relaxed),
            workers_started: self.workers_started.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            texts: self.texts.load(Ordering::Relaxed),
            abandoned: self.abandoned.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
        }
    }
}

/// Counts a worker alive for as long as it lives (dropped on return and on unwind alike).
struct AliveGuard<'a>(&'a PoolStats);

impl<'a> AliveGuard<'a> {
    fn new(stats: &'a PoolStats) -> Self {
        stats.workers_started.fetch_add(1, Ordering::Relaxed);
        stats.workers_alive.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for AliveGuard<'_> {
    fn drop(&mut self) {
        self.0.workers_alive.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The pool: submit texts, receive sentiments.
pub struct TransformerPool {
    sender: Sender<Job>,
    tokenizer: BertTokenizer,
    capacity: usize,
    stats: Arc<PoolStats>,
}

impl TransformerPool {
    /// Starts `config.workers` threads, each loading `config.json`, `vocab.txt` and `weights_file`
    /// from `dir` on its own (plain) thread; returns once all have loaded, or the first error.
    pub fn start(
        dir: &Path,
        weights_file: &str,
        config: &TransformerConfig,
    ) -> anyhow::Result<Self> {
        // libtorch's intra-op pool is process-wide: workers share it.
        tch::set_num_threads(i32::try_from(config.threads).unwrap_or(i32::MAX));
        let (sender, receiver) = crossbeam_channel::bounded::<Job>(config.queue_capacity);
        let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
        let stats = Arc::new(PoolStats::default());
        for worker in 0..config.workers {
            let receiver = receiver.clone();
            let loaded_tx = loaded_tx.clone();
            let dir = dir.to_path_buf();
            let weights_file = weights_file.to_string();
            let stats = Arc::clone(&stats);
            let limits = BatchLimits {
                texts: config.max_batch_texts,
                tokens: config.max_batch_tokens,
            };
            std::thread::Builder::new()
                .name(format!("transformer-{worker}"))
                .spawn(
                    move || match TransformerClassifier::load_dir(&dir, &weights_file) {
                        Ok(classifier) => {
                            let _alive = AliveGuard::new(&stats);
                            let _ = loaded_tx.send(Ok(()));
                            serve(&classifier, &receiver, limits, &stats);
                        }
                        Err(error) => {
                            let _ = loaded_tx.send(Err(error));
                        }
                    },
                )
                .context("cannot start a transformer worker thread")?;
        }
        drop(loaded_tx);
        for _ in 0..config.workers {
            loaded_rx
                .recv()
                .context("a transformer worker stopped while loading")??;
        }
        Ok(Self {
            sender,
            tokenizer: load_tokenizer(&dir.join("vocab.txt"))?,
            capacity: config.queue_capacity,
            stats,
        })
    }

    /// Queues a text; refuses at once when the queue is full.
    pub fn submit(&self, text: &str) -> Result<Pending, Overloaded> {
        let (reply, pending) = tokio::sync::oneshot::channel();
        let job = Job {
            ids: encode(&self.tokenizer, text, MAX_TOKENS),
            reply,
        };
        match self.sender.try_send(job) {
            Ok(()) => Ok(pending),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                Err(Overloaded {
                    backend: "transformer",
                    capacity: self.capacity,
                })
            }
        }
    }

    /// Queues a text, waiting for room (for batch callers outside async code, like `eval`).
    pub fn submit_waiting(&self, text: &str) -> Pending {
        let (reply, pending) = tokio::sync::oneshot::channel();
        let job = Job {
            ids: encode(&self.tokenizer, text, MAX_TOKENS),
            reply,
        };
        // Only fails when every worker has stopped; the dropped reply then reads as an error.
        let _ = self.sender.send(job);
        pending
    }

    /// Counters since start.
    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }
}

/// Most texts in one forward pass: a worker sorts what it took by length and runs it in passes
/// of this many, so padding stays small (measured in benches/transformer_batching.rs).
const MICRO_BATCH_TEXTS: usize = 16;

#[derive(Clone, Copy)]
struct BatchLimits {
    texts: usize,
    tokens: usize,
}

/// A worker's loop: take a batch, classify it, answer; ends when the pool is dropped.
fn serve(
    classifier: &TransformerClassifier,
    receiver: &Receiver<Job>,
    limits: BatchLimits,
    stats: &PoolStats,
) {
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut longest = first.ids.len();
        let mut batch = vec![first];
        while batch.len() < limits.texts {
            match receiver.try_recv() {
                Ok(job) => {
                    let padded_longest = longest.max(job.ids.len());
                    if (batch.len() + 1) * padded_longest > limits.tokens {
                        carried = Some(job);
                        break;
                    }
                    longest = padded_longest;
                    batch.push(job);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let before = batch.len();
        batch.retain(|job| !job.reply.is_closed());
        stats
            .abandoned
            .fetch_add((before - batch.len()) as u64, Ordering::Relaxed);
        if batch.is_empty() {
            continue;
        }
        // Texts of similar length run together: each forward pass pads only to the longest of
        // its own micro-batch, not of everything taken.
        batch.sort_by_key(|job| job.ids.len());
        while !batch.is_empty() {
            let rest = batch.split_off(MICRO_BATCH_TEXTS.min(batch.len()));
            let micro_batch = std::mem::replace(&mut batch, rest);
            let sequences: Vec<&[i64]> = micro_batch.iter().map(|job| job.ids.as_slice()).collect();
            // libtorch reports errors by panicking; a failed batch drops its replies (callers
            // see an error) and the worker goes on.
            let sentiments = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                classifier.classify_encoded(&sequences)
            }));
            let Ok(sentiments) = sentiments else {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(texts = micro_batch.len(), "transformer batch failed");
                continue;
            };
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats
                .texts
                .fetch_add(micro_batch.len() as u64, Ordering::Relaxed);
            for (job, sentiment) in micro_batch.into_iter().zip(sentiments) {
                let _ = job.reply.send(sentiment);
            }
        }
    }
}
