//! Criterion benches of the in-process hot paths: classifying a tweet, and applying an event to the
//! store. Run: `cargo bench --bench hot_paths`. (Load runs over gRPC and baselines: issue 4.)

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rapport::config::ScoringConfig;
use rapport::domain::{Channel, Direction, Interaction, Kind};
use rapport::sentiment::{self, Backend};
use rapport::store::Store;
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
    let model = sentiment::load(Backend::Vader, &sentiment::default_models_dir()).expect("model");
    let texts = val_texts();
    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(texts.len() as u64));
    group.bench_function("vader/val.tsv", |b| {
        b.iter(|| {
            for text in &texts {
                black_box(model.classify(black_box(text)));
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

criterion_group!(benches, classify, apply);
criterion_main!(benches);
