//! Loading weights: Hugging Face names with or without `bert.`, the old LayerNorm names, known
//! buffers skipped, unknown tensors reported, and every problem a typed error naming the tensor.

use std::collections::HashMap;

use recadam_std::bert::{BertConfig, BertWeights, ModelError};
use recadam_testkit::fixtures::tiny_bert_config;
use safetensors::tensor::{serialize, Dtype, TensorView};

fn tiny() -> BertConfig {
    tiny_bert_config()
}

/// Writes `weights` under names produced by `rename`, plus `extra` tensors, minus `skip`.
fn write(
    weights: &BertWeights,
    rename: impl Fn(&str) -> String,
    skip: &str,
    extra: &[(&str, Vec<usize>)],
) -> tempfile::TempPath {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .layout
        .entries()
        .filter(|(n, _, _)| *n != skip)
        .map(|(n, shape, _)| {
            (
                rename(n),
                shape.to_vec(),
                bytemuck::cast_slice(weights.get(n).unwrap()).to_vec(),
            )
        })
        .chain(extra.iter().map(|(n, s)| {
            (
                n.to_string(),
                s.clone(),
                vec![0u8; 4 * s.iter().product::<usize>()],
            )
        }))
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        serialize(views, None::<HashMap<String, String>>).unwrap(),
    )
    .unwrap();
    file.into_temp_path()
}

#[test]
fn names_with_prefix_and_old_layernorm_names_load_the_same_values() {
    let w = BertWeights::random(tiny(), 7);
    let plain = write(
        &w,
        |n| n.to_string(),
        "",
        &[("embeddings.position_ids", vec![1, 12])],
    );
    let old = write(
        &w,
        |n| {
            format!(
                "bert.{}",
                n.replace("LayerNorm.weight", "LayerNorm.gamma")
                    .replace("LayerNorm.bias", "LayerNorm.beta")
            )
        },
        "",
        &[("cls.predictions.bias", vec![40])],
    );
    let (a, ra) = BertWeights::from_safetensors(tiny(), &plain).unwrap();
    let (b, rb) = BertWeights::from_safetensors(tiny(), &old).unwrap();
    assert_eq!(a.data, w.data);
    assert_eq!(b.data, w.data);
    assert_eq!(ra.buffers, ["embeddings.position_ids"]);
    assert_eq!(
        rb.unknown,
        ["cls.predictions.bias"],
        "unknown tensors are reported"
    );
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let w = BertWeights::random(tiny(), 7);
    let missing = write(
        &w,
        |n| n.to_string(),
        "encoder.layer.0.output.dense.bias",
        &[],
    );
    match BertWeights::from_safetensors(tiny(), &missing) {
        Err(ModelError::MissingTensor { name, .. }) => {
            assert_eq!(name, "encoder.layer.0.output.dense.bias")
        }
        other => panic!("{other:?}"),
    }
    let mut bigger = tiny();
    bigger.intermediate_size = 17;
    // The first parameter (in architecture order) whose shape differs is named.
    let err = BertWeights::from_safetensors(bigger, &missing).unwrap_err();
    assert!(
        matches!(&err, ModelError::BadTensor { name, .. } if name == "encoder.layer.0.intermediate.dense.weight"),
        "{err}"
    );
    assert!(err.to_string().contains("expected F32 [17, 8]"), "{err}");
    let garbage = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(garbage.path(), b"not safetensors").unwrap();
    assert!(matches!(
        BertWeights::from_safetensors(tiny(), garbage.path()),
        Err(ModelError::Container { .. })
    ));
}

#[test]
fn random_init_is_like_hugging_faces() {
    let w = BertWeights::random(tiny(), 3);
    assert!(w
        .get("encoder.layer.0.output.LayerNorm.weight")
        .unwrap()
        .iter()
        .all(|&x| x == 1.0));
    assert!(w
        .get("encoder.layer.0.output.LayerNorm.bias")
        .unwrap()
        .iter()
        .all(|&x| x == 0.0));
    assert!(w
        .get("pooler.dense.bias")
        .unwrap()
        .iter()
        .all(|&x| x == 0.0));
    assert!(w.get("no.such.parameter").is_none());
    let emb = w.get("embeddings.word_embeddings.weight").unwrap();
    let mean = emb.iter().map(|&x| x as f64).sum::<f64>() / emb.len() as f64;
    let std =
        (emb.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / emb.len() as f64).sqrt();
    assert!(
        mean.abs() < 0.003 && (std - 0.02).abs() < 0.002,
        "mean {mean} std {std}"
    );
    assert_eq!(
        BertWeights::random(tiny(), 3).data,
        w.data,
        "deterministic in the seed"
    );
    assert_ne!(BertWeights::random(tiny(), 4).data, w.data);
}

#[test]
fn bad_configurations_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let base = serde_json::json!({
        "vocab_size": 50, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 16, "max_position_embeddings": 12, "type_vocab_size": 2,
    });
    std::fs::write(&path, base.to_string()).unwrap();
    assert_eq!(BertConfig::from_file(&path).unwrap().head_dim(), 2);
    for (field, value) in [
        ("hidden_size", serde_json::json!(10)),
        ("hidden_act", serde_json::json!("relu")),
        ("num_hidden_layers", serde_json::json!(0)),
        ("layer_norm_eps", serde_json::json!(-1.0)),
        ("vocab_size", serde_json::json!("many")),
    ] {
        let mut config = base.clone();
        config[field] = value;
        std::fs::write(&path, config.to_string()).unwrap();
        let err = BertConfig::from_file(&path).unwrap_err();
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}

/// A configuration far larger than the file is refused before anything is allocated for it
/// (allocating 2^48 floats would abort the process), and sizes beyond the bounds that keep the
/// layout arithmetic in range are refused with the field named.
#[test]
fn oversized_configurations_are_refused_without_allocating() {
    let w = BertWeights::random(tiny(), 7);
    let file = write(&w, |n| n.to_string(), "", &[]);
    let huge = BertConfig {
        vocab_size: 1 << 24,
        hidden_size: 1 << 24,
        num_attention_heads: 1,
        ..tiny()
    };
    let err = BertWeights::from_safetensors(huge, &file).unwrap_err();
    assert!(err.to_string().contains("more than the"), "{err}");
    let beyond = BertConfig {
        intermediate_size: (1 << 24) + 1,
        ..tiny()
    };
    let err = BertWeights::from_safetensors(beyond, &file).unwrap_err();
    assert!(err.to_string().contains("intermediate_size"), "{err}");
}
