//! Few-shot intent accuracy on CLINC150 (Larson et al., 2019: 150 intents plus out-of-scope
//! queries; CC BY 3.0, github.com/clinc/oos-eval, `data/data_full.json`): 10 examples per intent
//! drawn from its train split (5 draws), read with [`IntentModel`], scored on the val or test split
//! with its out-of-scope queries. The test split is for reporting only; choose on val. Any data
//! set in the same JSON shape works (Banking77 converted: `train` and `test` lists of
//! `[text, intent]`, an empty `oos_test`).
//!
//!     cargo run --release -p rapport-sentiment --example intents_clinc -- data_full.json val
//!     cargo run --release -p rapport-sentiment --example intents_clinc -- data_full.json test
//!     cargo run --release -p rapport-sentiment --example intents_clinc -- data_full.json val 20
//!
//! Prints in-scope accuracy ("other" counts as wrong), out-of-scope recall and precision, accuracy
//! over everything (out-of-scope right when "other"), and the texts read per second.

use rapport_sentiment::intent::{IntentDefinition, IntentModel};
use std::collections::BTreeMap;

/// Examples per intent, as a tenant would give.
const SHOTS: usize = 10;
/// Draws of the examples, averaged.
const DRAWS: u64 = 5;

/// A data set's label as an intent name (lowercase, `_` for anything but letters and digits).
fn intent_name(label: &str) -> String {
    label
        .to_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("path to CLINC150's data_full.json");
    let split = args.next().unwrap_or_else(|| "val".to_string());
    // Optionally the first N intents only (a smaller tenant; their out-of-scope queries stay).
    let max_intents: usize = args
        .next()
        .map_or(usize::MAX, |n| n.parse().expect("a count"));
    let data: BTreeMap<String, Vec<(String, String)>> =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("readable")).expect("JSON");
    let mut by_intent: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (text, intent) in &data["train"] {
        by_intent.entry(intent).or_default().push(text);
    }
    let kept: Vec<&str> = by_intent.keys().copied().take(max_intents).collect();
    by_intent.retain(|intent, _| kept.contains(intent));
    let in_scope: Vec<(String, String)> = data[split.as_str()]
        .iter()
        .filter(|(_, intent)| kept.contains(&intent.as_str()))
        .cloned()
        .collect();
    let in_scope = &in_scope;
    let out_of_scope = &data[&format!("oos_{split}")];
    let mut totals = [0.0f64; 5];
    for draw in 0..DRAWS {
        let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (draw + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let mut next = move |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        let definitions: Vec<IntentDefinition> = by_intent
            .iter()
            .map(|(name, texts)| {
                let mut pool: Vec<&str> = texts.clone();
                let mut examples = Vec::with_capacity(SHOTS);
                while examples.len() < SHOTS && !pool.is_empty() {
                    examples.push(pool.swap_remove(next(pool.len())).to_string());
                }
                IntentDefinition {
                    name: intent_name(name),
                    examples,
                }
            })
            .collect();
        let names: Vec<String> = by_intent.keys().map(|name| intent_name(name)).collect();
        let model = IntentModel::new(&definitions).expect("a valid list");
        let started = std::time::Instant::now();
        let mut in_right = 0usize;
        let mut said_other_in_scope = 0usize;
        for (text, intent) in in_scope {
            match model.classify(text) {
                Some(found)
                    if names[found.index]
                        == intent.replace(|c: char| !c.is_ascii_alphanumeric(), "_") =>
                {
                    in_right += 1
                }
                Some(_) => {}
                None => said_other_in_scope += 1,
            }
        }
        let oos_caught = out_of_scope
            .iter()
            .filter(|(text, _)| model.classify(text).is_none())
            .count();
        let seconds = started.elapsed().as_secs_f64();
        let in_accuracy = in_right as f64 / in_scope.len() as f64;
        let oos_recall = oos_caught as f64 / out_of_scope.len() as f64;
        let oos_precision = oos_caught as f64 / (oos_caught + said_other_in_scope).max(1) as f64;
        let overall = (in_right + oos_caught) as f64 / (in_scope.len() + out_of_scope.len()) as f64;
        let per_second = (in_scope.len() + out_of_scope.len()) as f64 / seconds;
        println!(
            "draw {draw}: in-scope accuracy {in_accuracy:.4}, out-of-scope recall {oos_recall:.4}, \
             precision {oos_precision:.4}, overall {overall:.4}, {per_second:.0} texts/s"
        );
        for (total, value) in
            totals
                .iter_mut()
                .zip([in_accuracy, oos_recall, oos_precision, overall, per_second])
        {
            *total += value / DRAWS as f64;
        }
    }
    println!(
        "{path} {split}, {SHOTS} examples per intent, mean of {DRAWS} draws: in-scope accuracy \
         {:.4}, out-of-scope recall {:.4}, precision {:.4}, overall {:.4}, {:.0} texts/s",
        totals[0], totals[1], totals[2], totals[3], totals[4]
    );
}
