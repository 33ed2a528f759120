//! Finite differences on a tiny random BERT: for every parameter tensor (and the head), the
//! analytic gradient of its largest entries equals the central difference of the loss.

use recadam_std::bert::{
    backward, forward, forward_cached, forward_train, Batch, BertConfig, BertWeights, Cache,
    ForwardOutput, Head, Targets,
};

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

type Forward = fn(&BertWeights) -> (ForwardOutput, Cache);

fn eval_mode(w: &BertWeights) -> (ForwardOutput, Cache) {
    forward_cached(w, &batch(), 1).unwrap()
}

/// Training mode with fixed masks: a deterministic function of the weights.
fn train_mode(w: &BertWeights) -> (ForwardOutput, Cache) {
    forward_train(w, &batch(), 1, 42).unwrap()
}

#[test]
fn gradients_equal_finite_differences_for_every_parameter_kind() {
    check_gradients(eval_mode);
}

#[test]
fn gradients_through_dropout_equal_finite_differences() {
    check_gradients(train_mode);
}

#[test]
fn dropout_is_off_in_evaluation_and_with_zero_probabilities() {
    let w = BertWeights::random(tiny(), 1);
    let eval = forward(&w, &batch(), 1).unwrap();
    let (train, _) = forward_train(&w, &batch(), 1, 7).unwrap();
    assert_ne!(
        eval.pooler_output, train.pooler_output,
        "dropout changes the training forward"
    );
    let (again, _) = forward_train(&w, &batch(), 1, 7).unwrap();
    assert_eq!(
        again.pooler_output, train.pooler_output,
        "the same seed gives the same masks"
    );
    let mut no_dropout = w.clone();
    no_dropout.config.hidden_dropout_prob = 0.0;
    no_dropout.config.attention_probs_dropout_prob = 0.0;
    let (zero, _) = forward_train(&no_dropout, &batch(), 1, 7).unwrap();
    assert_eq!(zero.pooler_output, eval.pooler_output);
    // About 10% of the embedding outputs are dropped, the rest scaled by 1/0.9.
    let dropped = train.embedding_output.iter().filter(|&&x| x == 0.0).count() as f64;
    let frac = dropped / train.embedding_output.len() as f64;
    assert!((0.03..0.2).contains(&frac), "dropped fraction {frac}");
}

fn loss(forward: Forward, w: &BertWeights, head: &Head, targets: &Targets) -> f64 {
    let (out, _) = forward(w);
    head.loss(&out.pooler_output, targets).unwrap().loss as f64
}

fn check_gradients(forward: Forward) {
    // Somewhat larger weights than a real init, so gradients stand above f32 rounding while
    // the loss stays smooth at the scale of the step.
    let mut w = BertWeights::random(tiny(), 11);
    w.data.iter_mut().for_each(|x| *x *= SCALE);
    let mut head = Head::new(3, 8, 5);
    head.weight.iter_mut().for_each(|x| *x *= 10.0);
    let targets = Targets::Labels(vec![0, 2, 1]);

    let (out, cache) = forward(&w);
    let head_out = head.loss(&out.pooler_output, &targets).unwrap();
    let mut grads = vec![0.0f32; w.layout.len()];
    backward(&w, &batch(), &cache, &head_out.d_pooled, &mut grads, 1).unwrap();

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
            let up = loss(forward, &w, &head, &targets);
            w.data[i] = saved - eps;
            let down = loss(forward, &w, &head, &targets);
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
            loss(forward, &w, &h, &targets)
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

#[test]
fn classifier_dropout_masks_the_pooled_output_and_its_gradient() {
    let head = Head::new(3, 8, 5);
    let pooled: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37).sin()).collect();
    let targets = Targets::Labels(vec![0, 2, 1]);
    let plain = head.loss(&pooled, &targets).unwrap();
    let none = head.loss_with_dropout(&pooled, &targets, 0.0, 1).unwrap();
    assert_eq!(none.loss, plain.loss);
    assert_eq!(none.d_pooled, plain.d_pooled);
    let dropped = head.loss_with_dropout(&pooled, &targets, 0.5, 3).unwrap();
    let zeros = dropped.d_pooled.iter().filter(|&&g| g == 0.0).count();
    assert!(
        (4..=20).contains(&zeros),
        "{zeros} of 24 gradients dropped at p = 0.5"
    );
    assert_ne!(dropped.loss, plain.loss);
}

/// The reason of an input error; anything else fails the test.
fn input<T>(r: Result<T, recadam_std::bert::ModelError>) -> String {
    match r {
        Err(recadam_std::bert::ModelError::Input(why)) => why,
        Err(e) => panic!("expected an input error, got {e}"),
        Ok(_) => panic!("expected an input error, got a result"),
    }
}

/// The public passes refuse mismatched input with a typed error instead of a panic, and write
/// nothing when they do.
#[test]
fn mismatched_inputs_are_errors_not_panics() {
    let w = BertWeights::random(tiny(), 11);
    let head = Head::new(3, 8, 5);
    let (out, cache) = forward_cached(&w, &batch(), 1).unwrap();
    let pooled = &out.pooler_output;
    // The head: targets per row, labels within its outputs, values only for one output, whole
    // rows of pooled values, and a consistent head.
    input(head.loss(pooled, &Targets::Labels(vec![0, 1])));
    input(head.loss(pooled, &Targets::Labels(vec![0, 1, 3])));
    input(head.loss(pooled, &Targets::Values(vec![0.5; 3])));
    input(head.loss(&pooled[..7], &Targets::Labels(vec![0])));
    input(head.loss_with_dropout(pooled, &Targets::Labels(vec![9, 0, 0]), 0.1, 1));
    let broken = Head {
        weight: vec![0.0; 7],
        bias: vec![0.0; 2],
    };
    input(broken.logits(pooled));
    input(
        Head {
            weight: vec![],
            bias: vec![],
        }
        .logits(pooled),
    );
    // backward: gradient buffer, d_pooled, and a cache from another batch.
    let d_pooled = head
        .loss(pooled, &Targets::Labels(vec![0, 2, 1]))
        .unwrap()
        .d_pooled;
    let mut grads = vec![0.0f32; w.layout.len()];
    let why = input(backward(
        &w,
        &batch(),
        &cache,
        &d_pooled,
        &mut grads[1..],
        1,
    ));
    assert!(why.contains("gradient buffer"), "{why}");
    input(backward(
        &w,
        &batch(),
        &cache,
        &d_pooled[8..],
        &mut grads,
        1,
    ));
    let mut two = batch();
    two.batch = 2;
    two.input_ids.truncate(14);
    two.token_type_ids.truncate(14);
    two.attention_mask.truncate(14);
    input(backward(&w, &two, &cache, &d_pooled[8..], &mut grads, 1));
    assert!(grads.iter().all(|&g| g == 0.0), "a refused backward wrote");
    // The layout: a buffer of another length.
    let mut short = vec![0.0f32; w.layout.len() - 1];
    input(w.layout.split_mut(&mut short));
}
