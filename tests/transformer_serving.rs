//! The transformer backend served (feature `transformer`), on a tiny random BERT the test writes:
//! the batching pool under concurrency, overload refusal, and the `transformer` backend through
//! gRPC (`Classify` batches through the pool and answers RESOURCE_EXHAUSTED when its queue is
//! full; ingest never waits on it and scores with the fast model).
#![cfg(feature = "transformer")]

mod common;

use common::*;
use rapport::config::TransformerConfig;
use rapport::pb;
use rapport::sentiment::transformer::{
    convert, model, TransformerClassifier, TransformerPool, WEIGHTS_FILE,
};
use rapport::sentiment::Backend;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const WORDS: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "@", "user", "http", "!", ".", "i", "love",
    "hate", "this", "it", "so", "much", "not", "good", "bad", "the", "movie", "##s", "day",
];

/// A models directory: the repository's fast model, and a tiny random transformer (2 layers,
/// hidden 32) under `transformer/`.
fn tiny_models_dir() -> tempfile::TempDir {
    models_dir_with(32, 2)
}

/// The same with a transformer of this hidden size and depth.
fn models_dir_with(hidden: usize, layers: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fast = dir.path().join("fast");
    std::fs::create_dir_all(&fast).unwrap();
    let shipped = rapport::sentiment::default_models_dir().join("fast");
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), fast.join(entry.file_name())).unwrap();
    }
    write_random_transformer(&dir.path().join("transformer"), hidden, layers);
    dir
}

fn write_random_transformer(dir: &Path, hidden: usize, layers: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let base = serde_json::json!({
        "hidden_act": "gelu",
        "attention_probs_dropout_prob": 0.1,
        "hidden_dropout_prob": 0.1,
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": 4 * hidden,
        "max_position_embeddings": 130,
        "num_attention_heads": 2,
        "num_hidden_layers": layers,
        "type_vocab_size": 2,
        "vocab_size": WORDS.len(),
    });
    let config = convert::with_labels(&base.to_string()).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    std::fs::write(dir.join("vocab.txt"), WORDS.join("\n") + "\n").unwrap();
    tch::manual_seed(11);
    let config = model::load_config(&dir.join("config.json")).unwrap();
    let (vs, _) = model::build(&config, tch::Device::Cpu).unwrap();
    vs.save(dir.join(WEIGHTS_FILE)).unwrap();
}

fn texts(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let words = [
                "i love this movie",
                "not good",
                "bad day",
                "@bob hate it so much",
            ];
            format!("{} {}", words[i % words.len()], "the day ".repeat(i % 7))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_batches_concurrent_callers_and_answers_each_like_a_single_call() {
    let models = tiny_models_dir();
    let config = TransformerConfig {
        workers: 2,
        threads: 1,
        ..TransformerConfig::default()
    };
    let pool = Arc::new(
        tokio::task::spawn_blocking({
            let dir = models.path().join("transformer");
            move || TransformerPool::start(&dir, WEIGHTS_FILE, &config)
        })
        .await
        .unwrap()
        .unwrap(),
    );
    let reference =
        TransformerClassifier::load_dir(&models.path().join("transformer"), WEIGHTS_FILE).unwrap();
    let all = texts(160);
    let mut callers = Vec::new();
    for chunk in all.chunks(20) {
        let pool = Arc::clone(&pool);
        let chunk = chunk.to_vec();
        callers.push(tokio::spawn(async move {
            let pending: Vec<_> = chunk
                .iter()
                .map(|text| pool.submit(text).expect("the queue has room"))
                .collect();
            let mut answers = Vec::new();
            for answer in pending {
                answers.push(answer.await.expect("answered"));
            }
            (chunk, answers)
        }));
    }
    for caller in callers {
        let (chunk, answers) = caller.await.unwrap();
        for (text, answer) in chunk.iter().zip(answers) {
            let single = reference.classify_batch(&[text.as_str()])[0];
            assert_eq!(single.label, answer.label, "{text:?}");
            assert!((single.score - answer.score).abs() < 1e-4, "{text:?}");
        }
    }
    let stats = pool.stats();
    assert_eq!(stats.texts.load(Ordering::Relaxed), 160);
    assert!(
        stats.batches.load(Ordering::Relaxed) < 160,
        "texts were batched: {stats:?}"
    );
}

#[test]
fn a_full_queue_refuses_at_once_and_abandoned_texts_are_skipped() {
    // A model slow enough (tens of ms per 128-token text) that 200 submissions outrun it.
    let models = models_dir_with(256, 4);
    let config = TransformerConfig {
        workers: 1,
        threads: 1,
        queue_capacity: 4,
        max_batch_texts: 1,
        ..TransformerConfig::default()
    };
    let pool =
        TransformerPool::start(&models.path().join("transformer"), WEIGHTS_FILE, &config).unwrap();
    let long = "the day ".repeat(60);
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        match pool.submit(&long) {
            Ok(pending) => accepted.push(pending),
            Err(overloaded) => {
                assert_eq!(overloaded.capacity, 4);
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "a queue of 4 took 200 texts at once");
    // Callers that gave up: their texts are skipped, not classified.
    let keep = accepted.split_off(accepted.len() / 2);
    drop(accepted);
    for pending in keep {
        pending.blocking_recv().expect("a kept caller is answered");
    }
    // The pool serves again once drained.
    pool.submit("i love it")
        .expect("room again")
        .blocking_recv()
        .unwrap();
    assert_eq!(pool.stats().refused.load(Ordering::Relaxed), refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_batches_through_the_pool_and_ingest_uses_the_fast_model() {
    let models = tiny_models_dir();
    let mut config = loopback_config();
    config.server.sentiment = Backend::Transformer;
    config.server.models_dir = Some(models.path().to_path_buf());
    config.transformer = TransformerConfig {
        workers: 1,
        threads: 1,
        queue_capacity: 2,
        max_batch_texts: 1,
        ..TransformerConfig::default()
    };
    let backend = {
        let dir = models.path().to_path_buf();
        let transformer = config.transformer.clone();
        tokio::task::spawn_blocking(move || {
            rapport::sentiment::load_with(Backend::Transformer, &dir, &transformer)
        })
        .await
        .unwrap()
        .unwrap()
    };
    assert_eq!(backend.name(), "transformer");
    let server = rapport::server::start(&config, Arc::clone(&backend))
        .await
        .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut sentiment = pb::sentiment_service_client::SentimentServiceClient::new(channel.clone());

    // Within the queue: answered by the transformer.
    let answered = sentiment
        .classify(pb::ClassifyRequest {
            texts: vec!["i love this movie".into(), "bad day".into()],
        })
        .await
        .expect("two texts fit the queue")
        .into_inner();
    assert_eq!(answered.results.len(), 2);

    // Far beyond it: RESOURCE_EXHAUSTED naming the queue, and the server keeps serving.
    let status = sentiment
        .classify(pb::ClassifyRequest { texts: texts(64) })
        .await
        .expect_err("64 texts overflow a queue of 2");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    assert!(status.message().contains("queue is full"), "{status}");

    // Ingest never waits on the transformer: the fast model scores the event.
    let fast = rapport::sentiment::load(Backend::Fast, models.path()).unwrap();
    let text = "@brand worst service ever, still waiting!!";
    let mut ingest = pb::ingest_service_client::IngestServiceClient::new(channel);
    let mut replies = ingest
        .ingest_scored(tokio_stream::iter(vec![with_text(
            event("acme", "c1", "e1", T0_MS),
            text,
        )]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().expect("one reply");
    let scored = reply.sentiment.expect("classified");
    assert!((scored.score - f64::from(fast.classify(text).score)).abs() < 1e-6);
}
