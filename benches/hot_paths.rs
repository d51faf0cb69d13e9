//! Criterion benches of the in-process hot paths: classifying a tweet (fast, its gold-label twin,
//! VADER) and reading its urgency cues and reply need, applying an event to the store, and TopCustomers over 1M customers.
//! Run: `cargo bench --bench hot_paths`. (Load runs over gRPC and their baselines: BENCHMARKS.md.)

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rapport::config::ScoringConfig;
use rapport::domain::{Channel, Direction, Interaction, Kind};
use rapport::sentiment::{self, Backend};
use rapport::store::{Store, TopQuery};
use std::hint::black_box;
use std::sync::Arc;

fn val_texts() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/sentiment/val.tsv"
    );
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once('\t').map(|(_, text)| text.to_string()))
            .collect(),
        Err(_) => vec![
            "@user your app keeps crashing, worst update ever!!".to_string(),
            "Loving the new store layout :) great job".to_string(),
            "Is the shop open on Sunday?".to_string(),
        ],
    }
}

fn classify(c: &mut Criterion) {
    let texts = val_texts();
    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(texts.len() as u64));
    for (name, backend) in [
        ("fast", Backend::Fast),
        ("fast_gold", Backend::FastGold),
        ("vader", Backend::Vader),
    ] {
        let model = sentiment::load(backend, &sentiment::default_models_dir()).expect("model");
        group.bench_function(format!("{name}/val.tsv"), |b| {
            b.iter(|| {
                for text in &texts {
                    black_box(model.classify(black_box(text)));
                }
            })
        });
    }
    // What validation reads from every inbound text beside its sentiment, against the same texts.
    group.bench_function("urgency_cues/val.tsv", |b| {
        b.iter(|| {
            for text in &texts {
                black_box(sentiment::infer_urgency_cues(black_box(text)));
            }
        })
    });
    group.bench_function("reply_need/val.tsv", |b| {
        b.iter(|| {
            for text in &texts {
                black_box(sentiment::infer_reply_need(black_box(text)));
            }
        })
    });
    group.finish();
}

fn apply(c: &mut Criterion) {
    let store = Store::new(Arc::new(ScoringConfig::default()), 16);
    let mut next = 0u64;
    c.bench_function("store/apply_event_100k_customers", |b| {
        b.iter(|| {
            next += 1;
            let interaction = Interaction {
                event_id: format!("e{next}"),
                tenant_id: "bench".to_string(),
                customer_id: format!("c{}", next % 100_000),
                channel: Channel::Twitter,
                kind: Kind::Mention,
                direction: Direction::Inbound,
                occurred_at_ms: 1_767_225_600_000 + next as i64 * 1000,
                text: String::new(),
                value: 0.0,
                author_followers: 10,
                thread_id: String::new(),
                reply_need: rapport::domain::ReplyNeed::Unclear,
                urgency_cues: Default::default(),
                intent: None,
                language: None,
                identifiers: Vec::new(),
                agent_id: String::new(),
            };
            black_box(store.apply(
                &interaction,
                None,
                1_767_225_600_000 + next as i64 * 1000,
                false,
            ));
        })
    });
}

/// One event for customer `n` of the bench tenant: mixed kinds, directions and followers.
fn bench_event(n: u64, at_ms: i64) -> Interaction {
    Interaction {
        event_id: format!("e{n}"),
        tenant_id: "bench".to_string(),
        customer_id: format!("c{}", n % 1_000_000),
        channel: Channel::ALL[(n % Channel::ALL.len() as u64) as usize],
        kind: Kind::ALL[(n / 7 % Kind::ALL.len() as u64) as usize],
        direction: if n.is_multiple_of(5) {
            Direction::Outbound
        } else {
            Direction::Inbound
        },
        occurred_at_ms: at_ms,
        text: String::new(),
        value: 0.0,
        author_followers: n * 7919 % 100_000,
        thread_id: String::new(),
        reply_need: rapport::domain::ReplyNeed::Unclear,
        urgency_cues: Default::default(),
        intent: None,
        language: None,
        identifiers: Vec::new(),
        agent_id: String::new(),
    }
}

/// TopCustomers(limit 100) over 1M customers in one tenant: from the ranking index (after a pass
/// and 20k further events) against the exact full scan, the baseline, in the same run.
fn top_customers(c: &mut Criterion) {
    const T0_MS: i64 = 1_767_225_600_000;
    let store = Store::new(Arc::new(ScoringConfig::default()), 16);
    for n in 0..1_000_000u64 {
        let at = T0_MS - (n % 90) as i64 * 86_400_000;
        store.apply(&bench_event(n, at), None, T0_MS, false);
    }
    store.ranking_pass(T0_MS);
    for n in 1_000_000..1_020_000u64 {
        store.apply(&bench_event(n * 37, T0_MS), None, T0_MS, false);
    }
    let query = TopQuery {
        limit: 100,
        action: None,
        min_retention_risk: 0.0,
        as_of_ms: T0_MS,
        live: true,
        segment: None,
        channel: None,
        intent: None,
        language: None,
    };
    assert_eq!(
        store.top("bench", &query).len(),
        store.top_exact("bench", &query).len()
    );
    let mut group = c.benchmark_group("top_customers_1m");
    group.sample_size(10);
    group.bench_function("ranking_index", |b| {
        b.iter(|| black_box(store.top("bench", &query)))
    });
    group.bench_function("full_scan_baseline", |b| {
        b.iter(|| black_box(store.top_exact("bench", &query)))
    });
    group.finish();
}

criterion_group!(benches, classify, apply, top_customers);
criterion_main!(benches);
