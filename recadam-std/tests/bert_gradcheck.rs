//! Finite differences on a tiny random BERT: for every parameter tensor (and the head), the
//! analytic gradient of its largest entries equals the central difference of the loss.

use recadam_std::bert::{backward, forward_cached, Batch, BertConfig, BertWeights, Head, Targets};

fn tiny() -> BertConfig {
    BertConfig {
        vocab_size: 30,
        hidden_size: 8,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 16,
        max_position_embeddings: 10,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: "gelu".into(),
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
    }
}

/// Three sequences of 7, with padding and a second segment.
fn batch() -> Batch {
    Batch {
        batch: 3,
        seq: 7,
        input_ids: vec![
            2, 5, 9, 3, 11, 4, 3, 2, 7, 7, 3, 0, 0, 0, 2, 13, 17, 21, 25, 29, 3,
        ],
        token_type_ids: vec![
            0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1,
        ],
        attention_mask: vec![
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1,
        ],
    }
}

const SCALE: f32 = 3.0;
const EPS: f32 = 2e-3;

fn loss(w: &BertWeights, head: &Head, targets: &Targets) -> f64 {
    let (out, _) = forward_cached(w, &batch(), 1).unwrap();
    head.loss(&out.pooler_output, targets).loss as f64
}

#[test]
fn gradients_equal_finite_differences_for_every_parameter_kind() {
    // Somewhat larger weights than a real init, so gradients stand above f32 rounding while
    // the loss stays smooth at the scale of the step.
    let mut w = BertWeights::random(tiny(), 11);
    w.data.iter_mut().for_each(|x| *x *= SCALE);
    let mut head = Head::new(3, 8, 5);
    head.weight.iter_mut().for_each(|x| *x *= 10.0);
    let targets = Targets::Labels(vec![0, 2, 1]);

    let (out, cache) = forward_cached(&w, &batch(), 1).unwrap();
    let head_out = head.loss(&out.pooler_output, &targets);
    let mut grads = vec![0.0f32; w.layout.len()];
    backward(&w, &batch(), &cache, &head_out.d_pooled, &mut grads, 1);

    let eps = EPS;
    let mut failures = Vec::new();
    let entries: Vec<(String, std::ops::Range<usize>)> = w
        .layout
        .entries()
        .map(|(n, s, o)| (n.to_string(), o..o + s.iter().product::<usize>()))
        .collect();
    for (name, range) in &entries {
        // The two largest analytic entries of this tensor.
        let mut idx: Vec<usize> = range.clone().collect();
        idx.sort_by(|&a, &b| grads[b].abs().total_cmp(&grads[a].abs()));
        for &i in idx.iter().take(2) {
            let analytic = grads[i] as f64;
            let saved = w.data[i];
            w.data[i] = saved + eps;
            let up = loss(&w, &head, &targets);
            w.data[i] = saved - eps;
            let down = loss(&w, &head, &targets);
            w.data[i] = saved;
            let numeric = (up - down) / (2.0 * eps as f64);
            if (numeric - analytic).abs() > 0.02 * analytic.abs() + 2e-4 {
                failures.push(format!(
                    "{name}[{}]: analytic {analytic:.6e}, numeric {numeric:.6e}",
                    i - range.start
                ));
            }
        }
    }
    // The head's weight and bias, largest entries.
    for (name, is_bias) in [("head.weight", false), ("head.bias", true)] {
        let analytic_all = if is_bias {
            &head_out.d_bias
        } else {
            &head_out.d_weight
        };
        let i = (0..analytic_all.len())
            .max_by(|&a, &b| analytic_all[a].abs().total_cmp(&analytic_all[b].abs()))
            .unwrap();
        let analytic = analytic_all[i] as f64;
        let shifted = |delta: f32| {
            let mut h = head.clone();
            if is_bias {
                h.bias[i] += delta
            } else {
                h.weight[i] += delta
            }
            loss(&w, &h, &targets)
        };
        let numeric = (shifted(eps) - shifted(-eps)) / (2.0 * eps as f64);
        if (numeric - analytic).abs() > 0.02 * analytic.abs() + 2e-4 {
            failures.push(format!(
                "{name}[{i}]: analytic {analytic:.6e}, numeric {numeric:.6e}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} checks failed:\n{}",
        failures.len(),
        2 * entries.len(),
        failures.join("\n")
    );
    println!("{} parameter tensors checked", entries.len());
}
