//! The hand-written backward pass against PyTorch on the real all-MiniLM-L6-v2: loss, logits
//! and gradients of both heads (classification with cross-entropy, regression with MSE), every
//! tensor of `backward*.safetensors` that `tolerances.json` lists, within its tolerance.

use recadam_std::bert::{backward, forward_cached, Batch, BertWeights, Head, Targets};
use recadam_testkit::shared_dir;
use safetensors::SafeTensors;
use serde_json::Value;

fn values(file: &SafeTensors<'_>, name: &str) -> Vec<f64> {
    let view = file
        .tensor(name)
        .unwrap_or_else(|_| panic!("reference has no {name}"));
    match view.dtype() {
        safetensors::Dtype::F32 => view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        safetensors::Dtype::I64 => view
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        other => panic!("{name}: unexpected dtype {other:?}"),
    }
}

fn check(file_name: &str, tolerance_key: &str) {
    let reference = shared_dir("RECADAM_MINILM_REF", "testdata/minilm-reference");
    let model = shared_dir("RECADAM_MINILM_DIR", "target/models/all-MiniLM-L6-v2");
    assert!(
        model.join("model.safetensors").exists(),
        "run scripts/fetch-minilm.sh"
    );
    let (weights, _) = BertWeights::from_folder(&model).unwrap();
    let fwd_bytes = std::fs::read(reference.join("forward.safetensors")).unwrap();
    let fwd = SafeTensors::deserialize(&fwd_bytes).unwrap();
    let shape = fwd.tensor("input_ids").unwrap().shape().to_vec();
    let ids = |n: &str| {
        values(&fwd, n)
            .into_iter()
            .map(|x| x as u32)
            .collect::<Vec<u32>>()
    };
    let batch = Batch {
        batch: shape[0],
        seq: shape[1],
        input_ids: ids("input_ids"),
        token_type_ids: ids("token_type_ids"),
        attention_mask: ids("attention_mask"),
    };
    let bytes = std::fs::read(reference.join(file_name)).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let head = Head {
        weight: values(&file, "classifier.weight")
            .into_iter()
            .map(|x| x as f32)
            .collect(),
        bias: values(&file, "classifier.bias")
            .into_iter()
            .map(|x| x as f32)
            .collect(),
    };
    let targets = match file.tensor("labels") {
        Ok(_) => Targets::Labels(
            values(&file, "labels")
                .into_iter()
                .map(|x| x as usize)
                .collect(),
        ),
        Err(_) => Targets::Values(
            values(&file, "targets")
                .into_iter()
                .map(|x| x as f32)
                .collect(),
        ),
    };
    let (out, cache) = forward_cached(&weights, &batch, 2).unwrap();
    let head_out = head.loss(&out.pooler_output, &targets).unwrap();
    let mut grads = vec![0.0f32; weights.layout.len()];
    backward(&weights, &batch, &cache, &head_out.d_pooled, &mut grads, 2).unwrap();

    let h = weights.config.hidden_size;
    let tolerances: Value =
        serde_json::from_str(&std::fs::read_to_string(reference.join("tolerances.json")).unwrap())
            .unwrap();
    let mut checked = 0;
    for (key, tol) in tolerances[tolerance_key].as_object().unwrap() {
        let atol = tol["suggested_atol"].as_f64().unwrap();
        let want = values(&file, key);
        let ours: Vec<f64> = match key.as_str() {
            "loss" => vec![head_out.loss as f64],
            "logits" => head_out.logits.iter().map(|&x| x as f64).collect(),
            "grad.classifier.weight" => head_out.d_weight.iter().map(|&x| x as f64).collect(),
            "grad.classifier.bias" => head_out.d_bias.iter().map(|&x| x as f64).collect(),
            "grad.embeddings.word_embeddings.weight" => {
                // Only the rows of the ids in the batch are stored.
                let all = &grads[weights
                    .layout
                    .range("embeddings.word_embeddings.weight")
                    .unwrap()];
                values(&file, "grad.embeddings.word_embeddings.weight.row_ids")
                    .into_iter()
                    .flat_map(|id| {
                        all[id as usize * h..(id as usize + 1) * h]
                            .iter()
                            .map(|&x| x as f64)
                    })
                    .collect()
            }
            other => {
                let name = other
                    .strip_prefix("grad.")
                    .unwrap_or_else(|| panic!("unknown tolerance {other}"));
                let range = weights
                    .layout
                    .range(name)
                    .unwrap_or_else(|| panic!("no parameter {name}"));
                grads[range].iter().map(|&x| x as f64).collect()
            }
        };
        assert_eq!(ours.len(), want.len(), "{key}: length");
        let err = ours
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(
                0.0f64,
                |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) },
            );
        println!("{file_name} {key}: max error {err:.3e} (tolerance {atol:.1e})");
        assert!(
            err <= atol,
            "{file_name} {key}: max |ours − reference| = {err:e} > {atol:e}"
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} tensors checked");
}

#[test]
fn classification_gradients_match_the_reference() {
    check("backward.safetensors", "backward");
}

#[test]
fn regression_gradients_match_the_reference() {
    check("backward_regression.safetensors", "backward_regression");
}
