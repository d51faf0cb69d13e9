//! Conversion of the base encoder (Hugging Face safetensors) into the `.ot` file, config and
//! vocabulary that rust-bert's `BertForSequenceClassification` loads.

use super::model::LABELS;
use anyhow::Context;
use safetensors::{Dtype, SafeTensors};
use std::path::Path;
use tch::{Kind, Tensor};

/// What a conversion wrote.
#[derive(Debug)]
pub struct ConvertReport {
    /// Tensors written to `rust_model.ot`.
    pub tensors: usize,
    /// Parameters in those tensors.
    pub parameters: i64,
}

/// Reads `model.safetensors`, `config.json` and `vocab.txt` from `from_dir` (tensor names without
/// the `bert.` prefix, no classifier head) and writes `rust_model.ot` (names prefixed with
/// `bert.`, `embeddings.position_ids` dropped), `config.json` (with the three sentiment labels)
/// and `vocab.txt` into `out_dir`.
pub fn convert_base(from_dir: &Path, out_dir: &Path) -> anyhow::Result<ConvertReport> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let weights_path = from_dir.join("model.safetensors");
    let bytes = std::fs::read(&weights_path)
        .with_context(|| format!("cannot read {}", weights_path.display()))?;
    let tensors = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a safetensors file", weights_path.display()))?;
    let mut named = Vec::new();
    let mut parameters = 0;
    for (name, view) in tensors.tensors() {
        if name.ends_with("position_ids") {
            continue;
        }
        let kind = match view.dtype() {
            Dtype::F32 => Kind::Float,
            Dtype::F16 => Kind::Half,
            other => anyhow::bail!("{name}: unexpected dtype {other:?}"),
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let tensor = Tensor::of_data_size(view.data(), &shape, kind).to_kind(Kind::Float);
        parameters += tensor.numel() as i64;
        let name = if name.starts_with("bert.") {
            name
        } else {
            format!("bert.{name}")
        };
        named.push((name, tensor));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::save_multi(&named, out_dir.join("rust_model.ot"))
        .context("cannot write rust_model.ot")?;

    let config_path = from_dir.join("config.json");
    let config_text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let config = with_labels(&config_text)
        .with_context(|| format!("{}: not a JSON object", config_path.display()))?;
    std::fs::write(out_dir.join("config.json"), config + "\n")
        .context("cannot write config.json")?;
    std::fs::copy(from_dir.join("vocab.txt"), out_dir.join("vocab.txt"))
        .context("cannot copy vocab.txt")?;
    Ok(ConvertReport {
        tensors: named.len(),
        parameters,
    })
}

/// The base config with `id2label`, `label2id` and `num_labels` for negative/neutral/positive,
/// and `architectures` naming the sequence classifier.
pub fn with_labels(config_json: &str) -> anyhow::Result<String> {
    let mut config: serde_json::Value = serde_json::from_str(config_json)?;
    let object = config
        .as_object_mut()
        .context("config is not a JSON object")?;
    let id2label: serde_json::Map<String, serde_json::Value> = LABELS
        .iter()
        .enumerate()
        .map(|(i, name)| (i.to_string(), serde_json::Value::from(*name)))
        .collect();
    let label2id: serde_json::Map<String, serde_json::Value> = LABELS
        .iter()
        .enumerate()
        .map(|(i, name)| (name.to_string(), serde_json::Value::from(i)))
        .collect();
    object.insert("id2label".into(), id2label.into());
    object.insert("label2id".into(), label2id.into());
    object.insert("num_labels".into(), LABELS.len().into());
    object.insert(
        "architectures".into(),
        serde_json::json!(["BertForSequenceClassification"]),
    );
    Ok(serde_json::to_string_pretty(&config)?)
}
