//! The one-pass optimizer step: the gradient statistics the backward pass writes as it finishes
//! each layer are, bit for bit, the ones the optimizer's own read of the gradients computes (on
//! any number of threads, with non-finite gradients too), and a step given them changes exactly
//! what a plain step changes.

use recadam_core::RecAdamConfig;
use recadam_std::bert::{
    backward_into, backward_with_stats, forward_into, Batch, BertConfig, BertWeights, Cache, Head,
    Pass, Rng, Targets,
};
use recadam_std::{
    tensor_grad_stats, Error, GradStats, Kernel, NonFiniteGuard, Optimizer, Options, ParamMut,
    Pretrained,
};

/// The word-embedding table spans several of the statistics' blocks (2^16 elements): the fold
/// over blocks is exercised, not only single-block tensors.
fn config() -> BertConfig {
    BertConfig {
        vocab_size: 1500,
        hidden_size: 96,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 192,
        max_position_embeddings: 64,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: "gelu".into(),
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
    }
}

fn batch(batch: usize, seq: usize, seed: u64) -> Batch {
    let mut rng = Rng::new(seed);
    Batch {
        batch,
        seq,
        input_ids: (0..batch * seq)
            .map(|_| (rng.next_u64() % 1500) as u32)
            .collect(),
        token_type_ids: (0..batch * seq)
            .map(|i| u32::from(i % seq >= seq / 2))
            .collect(),
        attention_mask: vec![1; batch * seq],
    }
}

fn kernel() -> Kernel {
    Kernel::from_env().expect("RECADAM_BACKEND names a backend of this CPU")
}

fn stat_bits(s: &GradStats) -> (u64, bool) {
    (s.sum_squares.to_bits(), s.finite)
}

/// Gradients through `backward_into` and through `backward_with_stats`, with the statistics.
fn both(w: &BertWeights, b: &Batch, threads: usize) -> (Vec<f32>, Vec<f32>, Vec<GradStats>) {
    let mut cache = Cache::new();
    forward_into(w, b, threads, Pass::Train { seed: 3 }, &mut cache).unwrap();
    let head = Head::new(2, w.config.hidden_size, 3);
    let targets = Targets::Labels((0..b.batch).map(|i| i % 2).collect());
    let d_pooled = head.loss(cache.pooler_output(), &targets).unwrap().d_pooled;
    let mut plain = vec![0.0f32; w.layout.len()];
    backward_into(w, b, &mut cache, &d_pooled, &mut plain, threads).unwrap();
    let mut grads = vec![0.0f32; w.layout.len()];
    let mut stats = vec![GradStats::EMPTY; w.layout.tensors()];
    backward_with_stats(
        w,
        b,
        &mut cache,
        &d_pooled,
        &mut grads,
        &mut stats,
        kernel(),
        threads,
    )
    .unwrap();
    (plain, grads, stats)
}

fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

fn check_stats(w: &BertWeights, grads: &[f32], stats: &[GradStats]) {
    assert_eq!(stats.len(), w.layout.entries().count());
    for ((name, _, _), s) in w.layout.entries().zip(stats) {
        let expected = tensor_grad_stats(kernel(), &grads[w.layout.range(name).unwrap()]);
        assert_eq!(stat_bits(s), stat_bits(&expected), "{name}");
    }
}

#[test]
fn the_backward_pass_writes_the_optimizers_statistics() {
    let w = BertWeights::random(config(), 7);
    let b = batch(6, 40, 1);
    assert!(
        w.layout
            .range("embeddings.word_embeddings.weight")
            .unwrap()
            .len()
            > 1 << 16
    );
    for threads in [1, 2, 3] {
        let (plain, grads, stats) = on_threads(threads, || both(&w, &b, threads));
        let same = plain
            .iter()
            .zip(&grads)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "the statistics changed a gradient on {threads} threads"
        );
        check_stats(&w, &grads, &stats);
        assert!(stats.iter().all(|s| s.finite && s.sum_squares > 0.0));
    }
}

#[test]
fn non_finite_gradients_are_flagged_where_they_are() {
    let mut w = BertWeights::random(config(), 7);
    // An infinite query weight in the last layer: its gradients downstream turn non-finite.
    let at = w
        .layout
        .range("encoder.layer.1.attention.self.query.weight")
        .unwrap();
    w.data[at.start + 5] = f32::INFINITY;
    let (_, grads, stats) = on_threads(2, || both(&w, &batch(4, 24, 2), 2));
    check_stats(&w, &grads, &stats);
    assert!(
        stats.iter().any(|s| !s.finite),
        "no gradient went non-finite"
    );
}

#[test]
fn a_wrong_statistics_count_is_an_error() {
    let w = BertWeights::random(config(), 7);
    let b = batch(2, 8, 1);
    let mut cache = Cache::new();
    forward_into(&w, &b, 1, Pass::Cached, &mut cache).unwrap();
    let mut grads = vec![0.0f32; w.layout.len()];
    let mut stats = vec![GradStats::EMPTY; 3];
    let d_pooled = vec![1.0f32; 2 * 96];
    let err = backward_with_stats(
        &w,
        &b,
        &mut cache,
        &d_pooled,
        &mut grads,
        &mut stats,
        kernel(),
        1,
    )
    .unwrap_err();
    assert!(err.to_string().contains("gradient statistics"), "{err}");
}

/// An optimizer over three parameters with clipping on, so that the norm reaches the update.
fn optimizer() -> (Optimizer<'static, f32>, Vec<recadam_std::ParamId>) {
    let options = Options {
        max_grad_norm: Some(0.5),
        ..Options::new(RecAdamConfig {
            lr: 1e-4,
            ..RecAdamConfig::default()
        })
    };
    let mut opt = Optimizer::with_kernel(options, kernel()).unwrap();
    let ids = [("a", 70_000), ("b", 5), ("c", 300)]
        .iter()
        .map(|&(n, len)| {
            let pretrained = (0..len).map(|i| (i % 7) as f32 * 0.1).collect::<Vec<_>>();
            opt.register_pretrained(n, Pretrained::Owned(pretrained))
                .unwrap()
        })
        .collect();
    (opt, ids)
}

/// Each value tensor with its gradient, under its handle.
fn param_muts<'a>(
    values: &'a mut [Vec<f32>],
    grads: &'a [Vec<f32>],
    ids: &[recadam_std::ParamId],
) -> Vec<ParamMut<'a, f32>> {
    values
        .iter_mut()
        .zip(grads)
        .zip(ids)
        .map(|((v, g), &id)| ParamMut::new(id, v, g))
        .collect()
}

fn data(seed: u64) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut rng = Rng::new(seed);
    let mut draw = |n: usize| (0..n).map(|_| rng.normal() as f32).collect::<Vec<_>>();
    let values = [70_000, 5, 300].map(&mut draw).to_vec();
    let grads = [70_000, 5, 300].map(&mut draw).to_vec();
    (values, grads)
}

#[test]
fn a_step_with_statistics_is_a_plain_step() {
    let (mut plain, ids) = optimizer();
    let (mut one_pass, ids2) = optimizer();
    let (mut v1, grads) = data(4);
    let mut v2 = v1.clone();
    for _ in 0..3 {
        let mut params = param_muts(&mut v1, &grads, &ids);
        let r1 = plain.step(&mut params).unwrap();
        let stats: Vec<GradStats> = grads
            .iter()
            .map(|g| tensor_grad_stats(kernel(), g))
            .collect();
        let mut params = param_muts(&mut v2, &grads, &ids2);
        let r2 = one_pass.step_with_stats(&mut params, &stats).unwrap();
        assert!(r1.grad_scale < 1.0, "clipping is not exercised");
        assert_eq!(r1, r2);
    }
    assert_eq!(v1, v2);
    for (&a, &b) in ids.iter().zip(&ids2) {
        assert_eq!(plain.state(a), one_pass.state(b));
    }
}

#[test]
fn a_step_with_bad_statistics_changes_nothing() {
    let (mut opt, ids) = optimizer();
    opt.set_guard(NonFiniteGuard::Refuse);
    let (mut values, grads) = data(5);
    let before = values.clone();
    let mut params = param_muts(&mut values, &grads, &ids);
    let err = opt
        .step_with_stats(&mut params, &[GradStats::EMPTY; 2])
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::StatsCount {
                given: 2,
                params: 3
            }
        ),
        "{err}"
    );
    // A non-finite flag goes through the guard like a gradient the optimizer read itself.
    let flagged = [
        GradStats::EMPTY,
        GradStats {
            sum_squares: f64::NAN,
            finite: false,
        },
        GradStats::EMPTY,
    ];
    let err = opt.step_with_stats(&mut params, &flagged).unwrap_err();
    assert!(
        matches!(err, Error::NonFiniteGradient { ref name } if name == "b"),
        "{err}"
    );
    drop(params);
    assert_eq!(values, before);
    assert_eq!(opt.steps(), 0);
}
