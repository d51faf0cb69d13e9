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

/// Starts a server with the `transformer` backend on `models` (one worker, one thread, batches
/// of one text, `queue_capacity` texts waiting); `data_dir` turns the write-ahead log on.
async fn start_transformer_server(
    models: &Path,
    queue_capacity: usize,
    data_dir: Option<&Path>,
) -> (
    rapport::server::RunningServer,
    Arc<dyn rapport::sentiment::SentimentModel>,
    tonic::transport::Channel,
) {
    let mut config = loopback_config();
    config.server.sentiment = Backend::Transformer;
    config.server.models_dir = Some(models.to_path_buf());
    config.durability.data_dir = data_dir.map(Path::to_path_buf);
    config.transformer = TransformerConfig {
        workers: 1,
        threads: 1,
        queue_capacity,
        max_batch_texts: 1,
        ..TransformerConfig::default()
    };
    let backend = {
        let dir = models.to_path_buf();
        let transformer = config.transformer.clone();
        tokio::task::spawn_blocking(move || {
            rapport::sentiment::load_with(Backend::Transformer, &dir, &transformer)
        })
        .await
        .unwrap()
        .unwrap()
    };
    let server = rapport::server::start(&config, Arc::clone(&backend))
        .await
        .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (server, backend, channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_batches_through_the_pool_and_ingest_uses_the_fast_model() {
    let models = tiny_models_dir();
    let (_server, backend, channel) = start_transformer_server(models.path(), 2, None).await;
    assert_eq!(backend.name(), "transformer");
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

    // Ingest never waits on the transformer: the fast model (the gold-label twin, the cascade's
    // first stage) scores the event.
    let fast = rapport::sentiment::load(Backend::FastGold, models.path()).unwrap();
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

/// What a store that had the transformer's label for every text from the start says of
/// `customer` as of `as_of_ms`.
fn reference_score(
    models: &Path,
    events: &[pb::Interaction],
    customer: &str,
    as_of_ms: i64,
) -> rapport::scoring::Score {
    let classifier =
        TransformerClassifier::load_dir(&models.join("transformer"), WEIGHTS_FILE).unwrap();
    let store = rapport::store::Store::new(Arc::new(rapport::config::ScoringConfig::default()), 16);
    let limits = rapport::api::convert::Limits {
        max_text_bytes: usize::MAX,
        max_id_bytes: usize::MAX,
        max_future_skew_ms: i64::MAX,
        max_identifiers: usize::MAX,
        blocked_identifiers: Vec::new().into(),
    };
    for event in events {
        let sentiment =
            (!event.text.is_empty()).then(|| classifier.classify_batch(&[event.text.as_str()])[0]);
        let interaction =
            rapport::api::convert::interaction_from_pb(event.clone(), &limits, 0).unwrap();
        store.apply(&interaction, sentiment, 0, false);
    }
    store.customer("acme", customer, as_of_ms).unwrap()
}

/// Ingest scores each text at once with the fast model; the transformer's label arrives later
/// and re-folds the customer to exactly what it would be had the events carried it from the
/// start; the refinement is logged, so a restart from the data directory keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refined_labels_reach_the_scores_as_if_they_came_first_and_survive_a_restart() {
    let models = tiny_models_dir();
    let data = tempfile::tempdir().unwrap();
    let (server, _backend, channel) =
        start_transformer_server(models.path(), 64, Some(data.path())).await;
    let mut ingest = pb::ingest_service_client::IngestServiceClient::new(channel.clone());
    let mut scoring = pb::scoring_service_client::ScoringServiceClient::new(channel);

    // Out of order, with one event without text and one from the brand.
    let events = vec![
        with_text(
            event("acme", "c1", "e3", T0_MS + 3 * HOUR_MS),
            "bad day, i hate this",
        ),
        with_text(
            event("acme", "c1", "e1", T0_MS),
            "i love this movie so much",
        ),
        event("acme", "c1", "e2", T0_MS + HOUR_MS),
        outbound(with_text(
            event("acme", "c1", "e4", T0_MS + 4 * HOUR_MS),
            "so good",
        )),
        with_text(
            event("acme", "c1", "e5", T0_MS + 5 * HOUR_MS),
            "@bob not good, the day",
        ),
    ];
    let summary = ingest
        .ingest(tokio_stream::iter(events.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.accepted, events.len() as u64);

    let as_of_ms = T0_MS + DAY_MS;
    let expected = {
        let dir = models.path().to_path_buf();
        let events = events.clone();
        tokio::task::spawn_blocking(move || reference_score(&dir, &events, "c1", as_of_ms))
            .await
            .unwrap()
    };
    let customer = |scoring: &mut pb::scoring_service_client::ScoringServiceClient<_>| {
        let mut scoring = scoring.clone();
        async move {
            scoring
                .get_customer(pb::GetCustomerRequest {
                    tenant_id: "acme".into(),
                    customer_id: "c1".into(),
                    as_of: Some(ts(as_of_ms)),
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let matches = |score: &pb::CustomerScore| {
        (score.sentiment - expected.sentiment).abs() < 1e-12
            && (score.retention_risk - expected.retention_risk).abs() < 1e-12
            && (score.priority - expected.priority).abs() < 1e-12
    };
    let mut refined = customer(&mut scoring).await;
    for _ in 0..200 {
        if matches(&refined) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        refined = customer(&mut scoring).await;
    }
    assert!(
        matches(&refined),
        "after refinement: sentiment {} risk {} priority {}, expected {} {} {}",
        refined.sentiment,
        refined.retention_risk,
        refined.priority,
        expected.sentiment,
        expected.retention_risk,
        expected.priority
    );
    let refined_count = || {
        let addr = server.metrics_addr;
        async move {
            let metrics = tokio::task::spawn_blocking(move || {
                use std::io::{Read, Write};
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                stream
                    .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
                    .unwrap();
                let mut body = String::new();
                stream.read_to_string(&mut body).unwrap();
                body
            })
            .await
            .unwrap();
            metrics
                .lines()
                .find(|line| {
                    line.starts_with("rapport_sentiment_refinements_total{outcome=\"refined\"}")
                })
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|value| value.parse::<f64>().ok())
                .unwrap_or(0.0)
        }
    };
    // Four texts: e1, e3, e5 inbound and e4 from the brand (its label is refined too, but it
    // moves no score, so the wait above does not cover it: poll, bounded). The metrics registry
    // is process-wide, so other tests' refinements may add to the count.
    let mut counted = refined_count().await;
    for _ in 0..200 {
        if counted >= 4.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        counted = refined_count().await;
    }
    assert!(counted >= 4.0, "{counted}");
    server
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .unwrap();

    // Restart from the log with the fast backend: the refined labels were logged.
    let mut config = loopback_config();
    config.server.models_dir = Some(models.path().to_path_buf());
    config.durability.data_dir = Some(data.path().to_path_buf());
    let mut restarted = start_with(config).await;
    let recovered = restarted.customer("acme", "c1", as_of_ms).await;
    assert!(
        matches(&recovered),
        "recovered sentiment {}, expected {}",
        recovered.sentiment,
        expected.sentiment
    );
}
