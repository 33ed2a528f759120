//! The forward pass in evaluation mode (no dropout): embeddings, post-LayerNorm encoder layers
//! with masked self-attention and an exact-GELU feed-forward layer, and the pooler.

use super::math::gelu;
use super::matmul::{mm, View};
use super::weights::Rng;
use super::{Batch, BertWeights, ModelError};

/// What a LayerNorm needs for its backward pass: the normalised input and 1/σ per row.
#[derive(Clone, Debug, Default)]
pub(crate) struct NormCache {
    pub xhat: Vec<f32>,
    pub rstd: Vec<f32>,
}

/// The activations of one encoder layer, kept for the backward pass.
#[derive(Clone, Debug, Default)]
pub(crate) struct LayerCache {
    pub input: Vec<f32>,
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    /// Attention probabilities, `[batch, heads, seq, seq]`.
    pub probs: Vec<f32>,
    pub ctx: Vec<f32>,
    pub norm1: NormCache,
    /// After the first LayerNorm (input of the feed-forward block).
    pub x1: Vec<f32>,
    pub pre_gelu: Vec<f32>,
    pub post_gelu: Vec<f32>,
    pub norm2: NormCache,
    /// Dropout masks (0 or 1/(1−p) per element; empty in evaluation mode): attention
    /// probabilities, attention output, feed-forward output.
    pub prob_dropout: Vec<f32>,
    pub attn_dropout: Vec<f32>,
    pub ffn_dropout: Vec<f32>,
}

/// Every activation the backward pass reads (llm.c keeps the same, in one buffer).
#[derive(Clone, Debug, Default)]
pub struct Cache {
    pub(crate) embedding_norm: NormCache,
    pub(crate) layers: Vec<LayerCache>,
    /// Dropout mask after the embedding LayerNorm (empty in evaluation mode).
    pub(crate) embedding_dropout: Vec<f32>,
    /// The pooler's input: each sequence's first token after the last layer.
    pub(crate) cls: Vec<f32>,
    /// The pooler's output, tanh(z): its derivative is 1 − tanh².
    pub(crate) pooled: Vec<f32>,
}

/// The activations the references check.
#[derive(Clone, Debug)]
pub struct ForwardOutput {
    /// After the embedding LayerNorm, `[batch, seq, hidden]`.
    pub embedding_output: Vec<f32>,
    /// Each encoder layer's output, `[batch, seq, hidden]`.
    pub layer_outputs: Vec<Vec<f32>>,
    /// `tanh(W·h[CLS] + b)`, `[batch, hidden]`.
    pub pooler_output: Vec<f32>,
}

impl ForwardOutput {
    /// The last layer's output.
    pub fn last_hidden_state(&self) -> &[f32] {
        self.layer_outputs
            .last()
            .map_or(&self.embedding_output, Vec::as_slice)
    }
}

/// Checks that the batch fits the model.
pub(crate) fn check(w: &BertWeights, b: &Batch) -> Result<(), ModelError> {
    let n = b.batch * b.seq;
    if b.input_ids.len() != n || b.token_type_ids.len() != n || b.attention_mask.len() != n {
        return Err(ModelError::Input(format!(
            "batch {}×{} needs {n} ids, types and mask values",
            b.batch, b.seq
        )));
    }
    let c = &w.config;
    if b.seq > c.max_position_embeddings {
        return Err(ModelError::Input(format!(
            "sequence length {} exceeds max_position_embeddings {}",
            b.seq, c.max_position_embeddings
        )));
    }
    if let Some(id) = b.input_ids.iter().find(|&&id| id as usize >= c.vocab_size) {
        return Err(ModelError::Input(format!(
            "token id {id} ≥ vocab_size {}",
            c.vocab_size
        )));
    }
    if let Some(t) = b
        .token_type_ids
        .iter()
        .find(|&&t| t as usize >= c.type_vocab_size)
    {
        return Err(ModelError::Input(format!(
            "token type {t} ≥ type_vocab_size {}",
            c.type_vocab_size
        )));
    }
    Ok(())
}

/// `x ← LayerNorm(x)` per row of width `h` (statistics in f64); keeps x̂ and 1/σ.
fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f64) -> NormCache {
    let h = gamma.len();
    let mut cache = NormCache {
        xhat: vec![0.0; x.len()],
        rstd: Vec::with_capacity(x.len() / h),
    };
    for (row, xhat) in x.chunks_exact_mut(h).zip(cache.xhat.chunks_exact_mut(h)) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / h as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / h as f64;
        let inv = 1.0 / (var + eps).sqrt();
        cache.rstd.push(inv as f32);
        for (j, v) in row.iter_mut().enumerate() {
            xhat[j] = ((*v as f64 - mean) * inv) as f32;
            *v = xhat[j] * gamma[j] + beta[j];
        }
    }
    cache
}

/// `out[rows×n] = x[rows×k]·Wᵀ + b` for a Linear weight `W[n×k]`.
pub(crate) fn linear(
    out: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: &[f32],
    rows: usize,
    threads: usize,
) {
    let (n, k) = (b.len(), w.len() / b.len());
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(b);
    }
    mm(
        out,
        n,
        View::rows(x, k),
        View::transposed(w, k),
        (rows, n, k),
        true,
        threads,
    );
}

/// Runs the encoder over `batch` on `threads` threads.
pub fn forward(
    w: &BertWeights,
    batch: &Batch,
    threads: usize,
) -> Result<ForwardOutput, ModelError> {
    forward_cached(w, batch, threads).map(|(out, _)| out)
}

/// The forward pass in evaluation mode that also keeps what [`super::backward`] needs.
pub fn forward_cached(
    w: &BertWeights,
    batch: &Batch,
    threads: usize,
) -> Result<(ForwardOutput, Cache), ModelError> {
    forward_impl(w, batch, threads, None)
}

/// The forward pass in training mode: dropout where Hugging Face's BERT has it (after the
/// embeddings, on the attention probabilities, after the attention and feed-forward outputs)
/// with the configuration's probabilities, masks drawn from `seed`. Keeps what
/// [`super::backward`] needs, masks included.
pub fn forward_train(
    w: &BertWeights,
    batch: &Batch,
    threads: usize,
    seed: u64,
) -> Result<(ForwardOutput, Cache), ModelError> {
    forward_impl(w, batch, threads, Some(seed))
}

/// A dropout mask of `n` elements: 0 with probability `p`, else 1/(1 − p). Empty when `p` is
/// 0 (nothing to drop). Deterministic in the generator's state.
pub(crate) fn dropout_mask(rng: &mut Rng, n: usize, p: f64) -> Vec<f32> {
    if p <= 0.0 {
        return Vec::new();
    }
    let keep = (1.0 / (1.0 - p)) as f32;
    (0..n)
        .map(|_| if rng.uniform() <= p { 0.0 } else { keep })
        .collect()
}

/// `x ⊙ mask`, a no-op for an empty mask.
pub(crate) fn apply_mask(x: &mut [f32], mask: &[f32]) {
    if !mask.is_empty() {
        x.iter_mut().zip(mask).for_each(|(v, m)| *v *= m);
    }
}

fn forward_impl(
    w: &BertWeights,
    batch: &Batch,
    threads: usize,
    dropout_seed: Option<u64>,
) -> Result<(ForwardOutput, Cache), ModelError> {
    check(w, batch)?;
    let mut rng = Rng::new(dropout_seed.unwrap_or(0));
    let (hidden_p, attn_p) = match dropout_seed {
        Some(_) => (
            w.config.hidden_dropout_prob,
            w.config.attention_probs_dropout_prob,
        ),
        None => (0.0, 0.0),
    };
    let c = &w.config;
    let (bsz, seq, h) = (batch.batch, batch.seq, c.hidden_size);
    let (heads, d) = (c.num_attention_heads, c.head_dim());
    let rows = bsz * seq;
    let p = |name: &str| w.param(name);

    // Embeddings.
    let (word, pos, typ) = (
        p("embeddings.word_embeddings.weight"),
        p("embeddings.position_embeddings.weight"),
        p("embeddings.token_type_embeddings.weight"),
    );
    let mut x = vec![0.0f32; rows * h];
    for (r, row) in x.chunks_exact_mut(h).enumerate() {
        let (id, t, l) = (
            batch.input_ids[r] as usize,
            batch.token_type_ids[r] as usize,
            r % seq,
        );
        for j in 0..h {
            row[j] = word[id * h + j] + pos[l * h + j] + typ[t * h + j];
        }
    }
    let embedding_norm = layer_norm(
        &mut x,
        p("embeddings.LayerNorm.weight"),
        p("embeddings.LayerNorm.bias"),
        c.layer_norm_eps,
    );
    let embedding_dropout = dropout_mask(&mut rng, x.len(), hidden_p);
    apply_mask(&mut x, &embedding_dropout);
    let embedding_output = x.clone();

    // Padding positions get the most negative f32 added to their scores, as Hugging Face does.
    let mask_add: Vec<f32> = batch
        .attention_mask
        .iter()
        .map(|&m| if m == 0 { f32::MIN } else { 0.0 })
        .collect();
    let scale = 1.0 / (d as f32).sqrt();
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    let mut layer_outputs = Vec::with_capacity(c.num_hidden_layers);
    for l in 0..c.num_hidden_layers {
        let lp = |s: &str| p(&format!("encoder.layer.{l}.{s}"));
        let mut lc = LayerCache {
            q: vec![0.0; rows * h],
            k: vec![0.0; rows * h],
            v: vec![0.0; rows * h],
            probs: vec![0.0; bsz * heads * seq * seq],
            ctx: vec![0.0; rows * h],
            prob_dropout: dropout_mask(&mut rng, bsz * heads * seq * seq, attn_p),
            attn_dropout: dropout_mask(&mut rng, rows * h, hidden_p),
            ffn_dropout: dropout_mask(&mut rng, rows * h, hidden_p),
            ..LayerCache::default()
        };
        for (out, name) in [
            (&mut lc.q, "query"),
            (&mut lc.k, "key"),
            (&mut lc.v, "value"),
        ] {
            let weight = lp(&format!("attention.self.{name}.weight"));
            linear(
                out,
                &x,
                weight,
                lp(&format!("attention.self.{name}.bias")),
                rows,
                threads,
            );
        }
        // Attention, one sequence per task: a sequence owns its rows of q, k, v, ctx and its
        // block of probabilities.
        let attend = |b: usize, probs: &mut [f32], ctx: &mut [f32]| {
            let (q, k, v) = (
                &lc.q[b * seq * h..],
                &lc.k[b * seq * h..],
                &lc.v[b * seq * h..],
            );
            for hd in 0..heads {
                let off = hd * d;
                let scores = &mut probs[hd * seq * seq..][..seq * seq];
                // scores = Q_bh · K_bhᵀ (rows of Q and K are `h` apart).
                let kt = View::transposed(&k[off..], h);
                mm(
                    scores,
                    seq,
                    View::rows(&q[off..], h),
                    kt,
                    (seq, seq, d),
                    false,
                    1,
                );
                for row in scores.chunks_exact_mut(seq) {
                    for (j, s) in row.iter_mut().enumerate() {
                        *s = *s * scale + mask_add[b * seq + j];
                    }
                    let max = row.iter().fold(f32::NEG_INFINITY, |a, &s| a.max(s));
                    let mut sum = 0.0f32;
                    for s in row.iter_mut() {
                        *s = (*s - max).exp();
                        sum += *s;
                    }
                    row.iter_mut().for_each(|s| *s /= sum);
                }
                // ctx_bh = dropout(P) · V_bh.
                let dropped: Vec<f32>;
                let p_used: &[f32] = if lc.prob_dropout.is_empty() {
                    scores
                } else {
                    let m = &lc.prob_dropout[(b * heads + hd) * seq * seq..][..seq * seq];
                    dropped = scores.iter().zip(m).map(|(p, m)| p * m).collect();
                    &dropped
                };
                let p_bh = View::rows(p_used, seq);
                mm(
                    &mut ctx[off..],
                    h,
                    p_bh,
                    View::rows(&v[off..], h),
                    (seq, d, seq),
                    false,
                    1,
                );
            }
        };
        let mut probs = std::mem::take(&mut lc.probs);
        let mut ctx = std::mem::take(&mut lc.ctx);
        let tasks = probs
            .chunks_mut(heads * seq * seq)
            .zip(ctx.chunks_mut(seq * h))
            .enumerate();
        if threads > 1 {
            use rayon::prelude::*;
            let tasks: Vec<_> = tasks.collect();
            tasks
                .into_par_iter()
                .for_each(|(b, (p, c))| attend(b, p, c));
        } else {
            tasks.for_each(|(b, (p, c))| attend(b, p, c));
        }
        lc.probs = probs;
        lc.ctx = ctx;
        let mut attn = vec![0.0f32; rows * h];
        let (wo, bo) = (
            lp("attention.output.dense.weight"),
            lp("attention.output.dense.bias"),
        );
        linear(&mut attn, &lc.ctx, wo, bo, rows, threads);
        apply_mask(&mut attn, &lc.attn_dropout);
        attn.iter_mut().zip(&x).for_each(|(a, r)| *a += r);
        let (g1, b1) = (
            lp("attention.output.LayerNorm.weight"),
            lp("attention.output.LayerNorm.bias"),
        );
        lc.norm1 = layer_norm(&mut attn, g1, b1, c.layer_norm_eps);
        lc.pre_gelu = vec![0.0; rows * c.intermediate_size];
        let (wi, bi) = (
            lp("intermediate.dense.weight"),
            lp("intermediate.dense.bias"),
        );
        linear(&mut lc.pre_gelu, &attn, wi, bi, rows, threads);
        lc.post_gelu = lc.pre_gelu.iter().map(|&z| gelu(z)).collect();
        let mut ffn = vec![0.0f32; rows * h];
        let (w2, b2) = (lp("output.dense.weight"), lp("output.dense.bias"));
        linear(&mut ffn, &lc.post_gelu, w2, b2, rows, threads);
        apply_mask(&mut ffn, &lc.ffn_dropout);
        ffn.iter_mut().zip(&attn).for_each(|(a, r)| *a += r);
        let (g2, bt2) = (lp("output.LayerNorm.weight"), lp("output.LayerNorm.bias"));
        lc.norm2 = layer_norm(&mut ffn, g2, bt2, c.layer_norm_eps);
        lc.x1 = attn;
        lc.input = std::mem::replace(&mut x, ffn);
        layer_outputs.push(x.clone());
        layers.push(lc);
    }

    // Pooler: tanh of a dense layer on each sequence's first ([CLS]) token.
    let cls: Vec<f32> = (0..bsz)
        .flat_map(|b| x[b * seq * h..b * seq * h + h].to_vec())
        .collect();
    let mut pooler_output = vec![0.0f32; bsz * h];
    let (wp, bp) = (p("pooler.dense.weight"), p("pooler.dense.bias"));
    linear(&mut pooler_output, &cls, wp, bp, bsz, threads);
    pooler_output.iter_mut().for_each(|z| *z = z.tanh());
    let cache = Cache {
        embedding_norm,
        embedding_dropout,
        layers,
        cls,
        pooled: pooler_output.clone(),
    };
    let out = ForwardOutput {
        embedding_output,
        layer_outputs,
        pooler_output,
    };
    Ok((out, cache))
}
