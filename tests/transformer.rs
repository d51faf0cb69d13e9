//! The transformer backend on a tiny random BERT (2 layers, hidden 32): loading, batch
//! classification, and that padding a text inside a batch does not change its result; and the
//! shipped fine-tuned model on obvious texts.
#![cfg(feature = "transformer")]

use rapport::sentiment::transformer::{convert, model, TransformerClassifier, WEIGHTS_FILE};
use rapport::sentiment::SentimentLabel;
use std::path::Path;

const WORDS: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "@", "user", "http", "!", ".", "i", "love",
    "hate", "this", "it", "so", "much", "not", "good", "bad", "the", "movie", "##s", "day",
];

/// Writes config.json, vocab.txt and random weights for a tiny classifier into `dir`.
fn write_tiny_model(dir: &Path) {
    let base = serde_json::json!({
        "hidden_act": "gelu",
        "attention_probs_dropout_prob": 0.1,
        "hidden_dropout_prob": 0.1,
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "max_position_embeddings": 130,
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "type_vocab_size": 2,
        "vocab_size": WORDS.len(),
    });
    let config = convert::with_labels(&base.to_string()).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    std::fs::write(dir.join("vocab.txt"), WORDS.join("\n") + "\n").unwrap();
    tch::manual_seed(7);
    let config = model::load_config(&dir.join("config.json")).unwrap();
    let (vs, _) = model::build(&config, tch::Device::Cpu).unwrap();
    vs.save(dir.join("weights.ot")).unwrap();
}

#[test]
fn loads_and_classifies_batches_like_single_texts() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path());
    let classifier = TransformerClassifier::load_dir(dir.path(), "weights.ot").unwrap();

    let texts = [
        "I love this movie so much!",
        "@bob not good http://t.co/x",
        "bad",
        "",
        "the day the day the day the day the day the day the day the day the day the day the day \
         the day the day the day the day the day the day the day the day the day the day the day \
         the day the day the day the day the day the day the day the day the day the day the day \
         the day the day the day the day the day the day the day the day the day the day the day",
    ];
    let batch = classifier.classify_batch(&texts);
    assert_eq!(batch.len(), texts.len());
    for (text, sentiment) in texts.iter().zip(&batch) {
        assert!((-1.0..=1.0).contains(&sentiment.score), "{sentiment:?}");
        assert!(
            (1.0 / 3.0 - 1e-6..=1.0).contains(&sentiment.confidence),
            "{sentiment:?}"
        );
        let single = classifier.classify_batch(&[text])[0];
        assert_eq!(single.label, sentiment.label, "{text:?}");
        assert!((single.score - sentiment.score).abs() < 1e-4, "{text:?}");
        assert!(
            (single.confidence - sentiment.confidence).abs() < 1e-4,
            "{text:?}"
        );
    }
    assert!(classifier.classify_batch(&[]).is_empty());
}

#[test]
fn truncates_to_max_tokens_and_marks_padding() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path());
    let tokenizer = model::load_tokenizer(&dir.path().join("vocab.txt")).unwrap();
    let long = "day ".repeat(500);
    let ids = model::encode(&tokenizer, &long, model::MAX_TOKENS);
    assert_eq!(ids.len(), model::MAX_TOKENS);
    let short = model::encode(&tokenizer, "I LOVE it @someone", model::MAX_TOKENS);
    // [CLS] i love it @ user [SEP]: lower-cased, the mention normalised.
    assert_eq!(short, vec![2, 10, 11, 14, 5, 6, 3]);
    let batch = model::pad_batch(
        &[&short, &[2, 3]],
        model::pad_id(&tokenizer),
        tch::Device::Cpu,
    );
    assert_eq!(batch.input_ids.size(), vec![2, 7]);
    let mask: Vec<Vec<i64>> = Vec::<Vec<i64>>::from(&batch.attention_mask);
    assert_eq!(mask[1], vec![1, 1, 0, 0, 0, 0, 0]);
}

/// The committed fine-tuned model loads from models/transformer/ and reads obvious texts right.
#[test]
fn the_shipped_model_reads_obvious_texts() {
    let dir = rapport::sentiment::default_models_dir().join("transformer");
    let classifier = TransformerClassifier::load_dir(&dir, WEIGHTS_FILE).expect("shipped model");
    let answers = classifier.classify_batch(&[
        "I love this, thank you so much!",
        "worst service ever, I hate this",
        "@acme my order arrived today",
    ]);
    assert_eq!(answers[0].label, SentimentLabel::Positive, "{answers:?}");
    assert_eq!(answers[1].label, SentimentLabel::Negative, "{answers:?}");
    assert!(
        answers[0].score > 0.5 && answers[1].score < -0.5,
        "{answers:?}"
    );
    for answer in &answers {
        assert!((0.0..=1.0).contains(&answer.confidence), "{answer:?}");
    }
}
