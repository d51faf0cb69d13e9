//! Transformer throughput with batching against one call per text, in one run (feature
//! `transformer`), and latency at half of the batched peak.
//!
//! Run: `LIBTORCH=/usr cargo bench --features transformer --bench transformer_batching`
//! (env: RAPPORT_TRANSFORMER_DIR = a directory with config.json, vocab.txt and the weights file
//! RAPPORT_TRANSFORMER_WEIGHTS, default models/transformer and sentiment-minilm-f16.ot;
//! BENCH_TEXTS = texts per run, default 512; ROUNDS, default 3). Texts: val.tsv.
//! Speed does not depend on the weights' values, so the converted base model works too.

use rapport::config::TransformerConfig;
use rapport::sentiment::transformer::{TransformerClassifier, TransformerPool, WEIGHTS_FILE};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn val_texts(count: usize) -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/sentiment/val.tsv"
    );
    let text = std::fs::read_to_string(path).expect("../shared/data/sentiment/val.tsv");
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_once('\t').map(|(_, text)| text.to_string()))
        .take(count)
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Per-text latencies (seconds) of `texts` offered at `rate` texts/s to the pool (open loop).
fn paced_latencies(pool: &TransformerPool, texts: &[String], rate: f64) -> Vec<f64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let started = tokio::time::Instant::now();
        let mut answers = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            tokio::time::sleep_until(started + Duration::from_secs_f64(index as f64 / rate)).await;
            let submitted = Instant::now();
            let answer = pool.submit(text).expect("the queue has room at half load");
            answers.push(tokio::spawn(async move {
                let _ = answer.await;
                submitted.elapsed().as_secs_f64()
            }));
        }
        let mut latencies = Vec::with_capacity(answers.len());
        for answer in answers {
            latencies.push(answer.await.expect("latency task"));
        }
        latencies
    })
}

fn main() {
    let dir = std::env::var("RAPPORT_TRANSFORMER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| rapport::sentiment::default_models_dir().join("transformer"));
    let weights =
        std::env::var("RAPPORT_TRANSFORMER_WEIGHTS").unwrap_or_else(|_| WEIGHTS_FILE.to_string());
    let count: usize = env_or("BENCH_TEXTS", 512);
    let rounds: usize = env_or("ROUNDS", 3);
    let texts = val_texts(count);
    let config = TransformerConfig::default();
    println!(
        "transformer batching: {} texts of val.tsv, {rounds} rounds, libtorch threads {}, batches of \
         up to {} texts / {} padded tokens; model {}",
        texts.len(),
        config.threads,
        config.max_batch_texts,
        config.max_batch_tokens,
        dir.join(&weights).display()
    );
    tch::set_num_threads(config.threads as i32);
    let single = TransformerClassifier::load_dir(&dir, &weights).expect("model loads");
    let pool = TransformerPool::start(&dir, &weights, &config).expect("pool starts");

    let mut one_call = Vec::new();
    let mut batched = Vec::new();
    for round in 1..=rounds {
        let started = Instant::now();
        for text in &texts {
            std::hint::black_box(single.classify_batch(&[text.as_str()]));
        }
        let one_call_rate = texts.len() as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let pending: Vec<_> = texts.iter().map(|text| pool.submit_waiting(text)).collect();
        for answer in pending {
            std::hint::black_box(answer.blocking_recv().expect("answered"));
        }
        let batched_rate = texts.len() as f64 / started.elapsed().as_secs_f64();
        println!(
            "round {round}: one call per text {one_call_rate:.1} texts/s, batched {batched_rate:.1} \
             texts/s, ratio {:.2}",
            batched_rate / one_call_rate
        );
        one_call.push(one_call_rate);
        batched.push(batched_rate);
    }
    let (one_call, batched) = (median(one_call), median(batched));
    println!(
        "median: one call per text {one_call:.1} texts/s, batched {batched:.1} texts/s, ratio {:.2}",
        batched / one_call
    );

    let rate = batched / 2.0;
    let mut latencies = paced_latencies(&pool, &texts, rate);
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] * 1000.0;
    println!(
        "at half of peak ({rate:.1} texts/s offered): latency p50 {:.1} ms, p99 {:.1} ms",
        quantile(0.5),
        quantile(0.99)
    );
}
