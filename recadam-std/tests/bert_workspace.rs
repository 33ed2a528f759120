//! The training step's workspace and threads change no bit: a BERT large enough that every
//! elementwise pass, LayerNorm, dropout mask and bias gradient is really cut over threads gives
//! the same activations and gradients on 1, 2 and 3 threads, through a fresh cache or one reused
//! across batches of other shapes; the inference pass gives the training-free pass's output.

use recadam_std::bert::{
    backward, backward_into, forward_cached, forward_into, forward_train, Batch, BertConfig,
    BertWeights, Cache, Head, Pass, Rng, Targets,
};

/// Big enough that a layer's activations span several of the threads' parts.
fn config() -> BertConfig {
    BertConfig {
        vocab_size: 120,
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

/// Random weights with every tensor (biases and LayerNorm included) away from its init value.
fn weights() -> BertWeights {
    let mut w = BertWeights::random(config(), 7);
    let mut rng = Rng::new(11);
    w.data
        .iter_mut()
        .for_each(|x| *x += rng.normal() as f32 * 0.05);
    w
}

/// `batch` sequences of `seq` tokens, the last ones padded.
fn batch(batch: usize, seq: usize, seed: u64) -> Batch {
    let mut rng = Rng::new(seed);
    let mut attention_mask = vec![1u32; batch * seq];
    for b in 0..batch {
        let pad = b % 4 * 3;
        attention_mask[b * seq + seq - pad..(b + 1) * seq].fill(0);
    }
    Batch {
        batch,
        seq,
        input_ids: (0..batch * seq)
            .map(|_| (rng.next_u64() % 120) as u32)
            .collect(),
        token_type_ids: (0..batch * seq)
            .map(|i| u32::from(i % seq >= seq / 2))
            .collect(),
        attention_mask,
    }
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Loss gradient with respect to every parameter and the pooler output, through the allocating
/// functions.
fn step_fresh(w: &BertWeights, b: &Batch, threads: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let (out, cache) = forward_train(w, b, threads, seed).unwrap();
    let head = Head::new(2, w.config.hidden_size, 3);
    let targets = Targets::Labels((0..b.batch).map(|i| i % 2).collect());
    let head_out = head.loss(&out.pooler_output, &targets).unwrap();
    let mut grads = vec![0.0f32; w.layout.len()];
    backward(w, b, &cache, &head_out.d_pooled, &mut grads, threads).unwrap();
    (bits(&out.pooler_output), bits(&grads))
}

/// The same through a reused cache.
fn step_reused(
    w: &BertWeights,
    b: &Batch,
    threads: usize,
    seed: u64,
    cache: &mut Cache,
) -> (Vec<u32>, Vec<u32>) {
    forward_into(w, b, threads, Pass::Train { seed }, cache).unwrap();
    let head = Head::new(2, w.config.hidden_size, 3);
    let targets = Targets::Labels((0..b.batch).map(|i| i % 2).collect());
    let head_out = head.loss(cache.pooler_output(), &targets).unwrap();
    let pooled = bits(cache.pooler_output());
    let mut grads = vec![0.0f32; w.layout.len()];
    backward_into(w, b, cache, &head_out.d_pooled, &mut grads, threads).unwrap();
    (pooled, bits(&grads))
}

fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn every_thread_count_gives_the_same_bits() {
    let w = weights();
    let b = batch(8, 48, 1);
    let one = step_fresh(&w, &b, 1, 5);
    assert!(one.1.iter().any(|&g| g != 0), "no gradient at all");
    for threads in [2, 3] {
        let many = on_threads(threads, || step_fresh(&w, &b, threads, 5));
        assert!(
            many.0 == one.0,
            "pooler output differs on {threads} threads"
        );
        let differing = one.1.iter().zip(&many.1).filter(|(a, b)| a != b).count();
        assert_eq!(
            differing, 0,
            "{differing} gradients differ on {threads} threads"
        );
    }
    // Another seed draws other masks: the comparison above is not between constants.
    assert!(step_fresh(&w, &b, 1, 6).1 != one.1);
}

#[test]
fn a_reused_cache_gives_the_bits_of_a_fresh_one() {
    let w = weights();
    let mut cache = Cache::new();
    // Larger, smaller, then other shapes again: stale contents of a reused buffer must not leak.
    for (i, (bsz, seq)) in [(8, 48), (3, 17), (6, 40), (8, 48)].into_iter().enumerate() {
        let b = batch(bsz, seq, 10 + i as u64);
        let fresh = step_fresh(&w, &b, 1, i as u64);
        let reused = on_threads(2, || step_reused(&w, &b, 2, i as u64, &mut cache));
        assert!(
            fresh == reused,
            "batch {bsz}×{seq}: a reused cache changed the bits"
        );
    }
}

#[test]
fn the_inference_pass_keeps_no_activations_and_matches_the_cached_pass() {
    let w = weights();
    let b = batch(6, 40, 2);
    let (out, _) = forward_cached(&w, &b, 1).unwrap();
    let mut cache = Cache::new();
    forward_into(&w, &b, 1, Pass::Inference, &mut cache).unwrap();
    assert_eq!(bits(cache.pooler_output()), bits(&out.pooler_output));
    assert_eq!(
        bits(cache.last_hidden_state()),
        bits(out.last_hidden_state())
    );
    // It kept no layer's activations for a backward pass: one is refused, nothing written.
    let mut grads = vec![0.0f32; w.layout.len()];
    let d_pooled = vec![1.0f32; 6 * 96];
    let err = backward_into(&w, &b, &mut cache, &d_pooled, &mut grads, 1).unwrap_err();
    assert!(err.to_string().contains("inference"), "{err}");
    assert!(grads.iter().all(|&g| g == 0.0));
    // A training step after it, on the same cache, has the bits of a fresh one.
    let fresh = step_fresh(&w, &b, 1, 9);
    assert!(step_reused(&w, &b, 1, 9, &mut cache) == fresh);
    // And an inference pass between two training steps changes nothing either.
    forward_into(&w, &batch(3, 17, 4), 1, Pass::Inference, &mut cache).unwrap();
    assert!(step_reused(&w, &b, 1, 9, &mut cache) == fresh);
}

#[test]
fn a_bad_dropout_probability_is_an_error() {
    let head = Head::new(2, 8, 0);
    let targets = Targets::Labels(vec![0, 1]);
    for p in [f64::NAN, -0.1, 1.0, 2.0] {
        let err = head
            .loss_with_dropout(&[0.5; 16], &targets, p, 0)
            .unwrap_err();
        assert!(err.to_string().contains("dropout probability"), "{err}");
    }
    assert!(head.loss_with_dropout(&[0.5; 16], &targets, 0.0, 0).is_ok());
}
