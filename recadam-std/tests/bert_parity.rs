//! The mini-BERT against PyTorch/transformers on the real all-MiniLM-L6-v2: tokenizer ids from
//! the raw texts, and forward activations within the reference's per-tensor tolerances.
//!
//! The reference folder is `RECADAM_MINILM_REF` (default: the repository's `testdata/minilm-reference`), the
//! model folder `RECADAM_MINILM_DIR` (default `target/models/all-MiniLM-L6-v2`, filled by
//! `scripts/fetch-minilm.sh`). Nothing here depends on the batch's size or lengths.

use std::path::PathBuf;

use recadam_std::bert::{forward, Batch, BertTokenizer, BertWeights};
use recadam_testkit::shared_dir;
use safetensors::SafeTensors;
use serde_json::Value;

fn reference_dir() -> PathBuf {
    shared_dir("RECADAM_MINILM_REF", "testdata/minilm-reference")
}

fn model_dir() -> PathBuf {
    let dir = shared_dir("RECADAM_MINILM_DIR", "target/models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").exists(),
        "no model in {}: run scripts/fetch-minilm.sh (or set RECADAM_MINILM_DIR)",
        dir.display()
    );
    dir
}

fn json(name: &str) -> Value {
    let path = reference_dir().join(name);
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// A reference tensor as f32 (F32 or I64 stored), with its shape.
fn tensor(file: &SafeTensors<'_>, name: &str) -> (Vec<f32>, Vec<usize>) {
    let view = file
        .tensor(name)
        .unwrap_or_else(|_| panic!("reference has no {name}"));
    let values = match view.dtype() {
        safetensors::Dtype::F32 => view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        safetensors::Dtype::I64 => view
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        other => panic!("{name}: unexpected dtype {other:?}"),
    };
    (values, view.shape().to_vec())
}

/// The reference batch's ids, as the forward pass takes them.
fn reference_batch(file: &SafeTensors<'_>) -> Batch {
    let (ids, shape) = tensor(file, "input_ids");
    let as_u32 = |v: Vec<f32>| v.into_iter().map(|x| x as u32).collect::<Vec<u32>>();
    Batch {
        batch: shape[0],
        seq: shape[1],
        input_ids: as_u32(ids),
        token_type_ids: as_u32(tensor(file, "token_type_ids").0),
        attention_mask: as_u32(tensor(file, "attention_mask").0),
    }
}

#[test]
fn tokenizer_ids_equal_the_reference() {
    let inputs = json("inputs.json");
    let texts: Vec<(String, Option<String>)> = inputs["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["text_a"].as_str().unwrap().to_string(),
                e["text_b"].as_str().map(String::from),
            )
        })
        .collect();
    let refs: Vec<(&str, Option<&str>)> = texts
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_deref()))
        .collect();
    let max_len = inputs["max_length"].as_u64().unwrap() as usize;
    let tokenizer = BertTokenizer::from_file(model_dir().join("tokenizer.json"), max_len).unwrap();
    let got = tokenizer.encode(&refs).unwrap();
    let bytes = std::fs::read(reference_dir().join("forward.safetensors")).unwrap();
    let want = reference_batch(&SafeTensors::deserialize(&bytes).unwrap());
    assert_eq!((got.batch, got.seq), (want.batch, want.seq));
    for (what, a, b) in [
        ("input_ids", &got.input_ids, &want.input_ids),
        ("token_type_ids", &got.token_type_ids, &want.token_type_ids),
        ("attention_mask", &got.attention_mask, &want.attention_mask),
    ] {
        for (r, text) in texts.iter().enumerate() {
            let row = r * got.seq..(r + 1) * got.seq;
            assert_eq!(a[row.clone()], b[row], "{what} of example {r} ({text:?})");
        }
    }
}

/// Max |ours − reference| over all positions, or over real (unpadded) tokens only.
fn max_err(ours: &[f32], reference: &[f32], width: usize, mask: Option<&[u32]>) -> f64 {
    assert_eq!(ours.len(), reference.len());
    ours.chunks_exact(width)
        .zip(reference.chunks_exact(width))
        .enumerate()
        .filter(|(r, _)| mask.is_none_or(|m| m[*r] != 0))
        .flat_map(|(_, (a, b))| a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()))
        .fold(0.0, |acc, d| {
            if d.is_nan() {
                f64::INFINITY
            } else {
                acc.max(d)
            }
        })
}

#[test]
fn forward_activations_match_the_reference() {
    let (weights, report) = BertWeights::from_folder(model_dir()).unwrap();
    assert_eq!(report.buffers, ["embeddings.position_ids"]);
    assert!(
        report.unknown.is_empty(),
        "unknown tensors: {:?}",
        report.unknown
    );
    let bytes = std::fs::read(reference_dir().join("forward.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let batch = reference_batch(&file);
    let out = forward(&weights, &batch, 2).unwrap();
    let h = weights.config.hidden_size;
    let tolerances = json("tolerances.json");
    let mut checked = 0;
    for (key, tol) in tolerances["forward"].as_object().unwrap() {
        let atol = tol["suggested_atol"].as_f64().unwrap();
        let (name, real_only) = match key.split_once(" (") {
            Some((name, scope)) => (name, scope.starts_with("real")),
            None => (key.as_str(), false),
        };
        let ours: &[f32] = match name {
            "embedding_output" => &out.embedding_output,
            "last_hidden_state" => out.last_hidden_state(),
            "pooler_output" => &out.pooler_output,
            other => match other
                .strip_prefix("layer_")
                .and_then(|s| s.strip_suffix("_output"))
            {
                Some(l) => &out.layer_outputs[l.parse::<usize>().unwrap()],
                None => panic!("no tensor for tolerance {key}"),
            },
        };
        let (reference, _) = tensor(&file, name);
        let mask =
            (real_only && name != "pooler_output").then_some(batch.attention_mask.as_slice());
        let err = max_err(ours, &reference, h, mask);
        println!("{key}: max error {err:.3e} (tolerance {atol:.1e})");
        assert!(
            err <= atol,
            "{key}: max |ours − reference| = {err:e} > {atol:e}"
        );
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} tensors checked");
}
