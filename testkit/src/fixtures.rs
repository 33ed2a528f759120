//! A small optimizer setup, the same everywhere it is used: the checkpoint fuzz target loads
//! into it, and its seed corpus is made from it.

use recadam_core::{Annealing, RecAdamConfig};
use recadam_std::{
    Group, LinearWarmupDecay, Optimizer, Options, ParamId, ParamMut, ScopedThreads, Selector,
};

/// Parameter names and lengths of the small setup.
pub const SMALL_SHAPES: [(&str, usize); 3] = [("enc.w", 40), ("enc.b", 7), ("head.w", 5)];

/// A deterministic value in [−0.5, 0.5) from integer hashing: exact on every machine and under
/// Miri (which perturbs `sin` and `cos` on purpose).
pub fn noise(i: usize) -> f32 {
    ((i as u32).wrapping_mul(2_654_435_761) >> 8) as f32 / 16_777_216.0 - 0.5
}

/// θ* of the small setup.
pub fn small_pretrained() -> Vec<Vec<f32>> {
    SMALL_SHAPES
        .iter()
        .enumerate()
        .map(|(k, &(_, n))| (0..n).map(|i| noise(i + 1000 * k) * 0.1).collect())
        .collect()
}

/// The small setup's optimizer over `pretrained` (from [`small_pretrained`]).
pub fn small_optimizer(pretrained: &[Vec<f32>]) -> Optimizer<'_, f32> {
    let config = RecAdamConfig {
        lr: 1e-3,
        weight_decay: 0.01,
        pretrain_cof: 100.0,
        annealing: Annealing::Sigmoid { k: 0.5, t0: 3.0 },
        ..RecAdamConfig::default()
    };
    let options = Options {
        schedule: Box::new(LinearWarmupDecay {
            warmup: 1,
            total: 20,
        }),
        max_grad_norm: Some(1.0),
        ..Options::new(config)
    };
    // RECADAM_BACKEND picks the kernel here, as in every test (DESIGN section 3).
    let kernel =
        recadam_std::Kernel::from_env().expect("RECADAM_BACKEND names a backend this CPU has");
    let mut opt = Optimizer::with_kernel(options, kernel).expect("valid options");
    // Two threads give the same bits as one and exercise the splitting, also under Miri, where
    // scoped threads run (rayon's crossbeam-epoch trips Miri's Stacked Borrows model).
    opt.set_pool(std::sync::Arc::new(ScopedThreads { threads: 2 }));
    opt.add_group(Group::new("enc", Selector::Prefix("enc.".into())))
        .expect("new group");
    opt.add_group(Group::new("head", Selector::All).anneal_w(0.0))
        .expect("new group");
    for (k, &(name, _)) in SMALL_SHAPES.iter().enumerate() {
        opt.register_pretrained(name, &pretrained[k])
            .expect("valid parameter");
    }
    opt
}

/// Runs steps 1..=`steps` of the small setup with deterministic gradients.
pub fn small_train(opt: &mut Optimizer<'_, f32>, values: &mut [Vec<f32>], steps: u64) {
    small_train_range(opt, values, 1..=steps);
}

/// Runs the steps in `range` of the small setup's gradient sequence (resuming mid-way).
pub fn small_train_range(
    opt: &mut Optimizer<'_, f32>,
    values: &mut [Vec<f32>],
    range: std::ops::RangeInclusive<u64>,
) {
    for t in range {
        let grads: Vec<Vec<f32>> = values
            .iter()
            .map(|v| {
                v.iter()
                    .enumerate()
                    .map(|(i, &x)| x + noise(i + 7919 * t as usize) * 0.2)
                    .collect()
            })
            .collect();
        let ids: Vec<ParamId> = opt.ids().collect();
        opt.step(&mut small_params(&ids, values, &grads))
            .expect("finite gradients");
    }
}

/// The small setup's parameters as a step takes them (`ids` in registration order).
pub fn small_params<'a>(
    ids: &[ParamId],
    values: &'a mut [Vec<f32>],
    grads: &'a [Vec<f32>],
) -> Vec<ParamMut<'a, f32>> {
    values
        .iter_mut()
        .zip(grads)
        .zip(ids)
        .map(|((value, grad), &id)| ParamMut::new(id, value, grad))
        .collect()
}

/// A tiny BERT configuration (the model fuzz target and its seeds use it).
#[cfg(feature = "bert")]
pub fn tiny_bert_config() -> recadam_std::bert::BertConfig {
    recadam_std::bert::BertConfig {
        vocab_size: 40,
        hidden_size: 8,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 16,
        max_position_embeddings: 12,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: "gelu".into(),
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
    }
}
