//! The forward pass in evaluation mode (no dropout): embeddings, post-LayerNorm encoder layers
//! with masked self-attention and an exact-GELU feed-forward layer, and the pooler.

use super::math::gelu;
use super::matmul::{mm, View};
use super::par;
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

/// Every activation the backward pass reads (llm.c keeps the same, in one buffer), and the
/// forward pass's scratch. A cache passed to the next forward pass is reused: once it has seen
/// the largest batch of a run, a step allocates nothing.
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
    /// The last layer's output, `[batch, seq, hidden]`.
    pub(crate) hidden: Vec<f32>,
    /// 0 for a real token, the most negative f32 for padding: added to attention scores.
    mask_add: Vec<f32>,
    /// One `seq × seq` block per sequence: the dropped-out probabilities of a head.
    dropped: Vec<f32>,
    /// The backward pass's buffers, reused like the activations.
    pub(crate) scratch: super::backward::Scratch,
    /// Whether the layers hold what the backward pass needs (a training or cached forward),
    /// not only the last layer's scratch (an inference forward).
    pub(crate) complete: bool,
}

impl Cache {
    /// An empty cache: the first forward pass sizes it.
    pub fn new() -> Cache {
        Cache::default()
    }

    /// The pooler's output of the last forward pass, `[batch, hidden]`.
    pub fn pooler_output(&self) -> &[f32] {
        &self.pooled
    }

    /// The last layer's output of the last forward pass, `[batch, seq, hidden]`.
    pub fn last_hidden_state(&self) -> &[f32] {
        &self.hidden
    }
}

/// Gives `v` length `n`, keeping its allocation (and, when the length is already `n`, its
/// contents: every buffer sized here is written in full before it is read).
pub(crate) fn fit(v: &mut Vec<f32>, n: usize) {
    v.resize(n, 0.0);
}

/// The activations the references check.
#[derive(Clone, Debug, Default)]
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

/// What is added to a LayerNorm's input row by row, in the same pass, before its statistics:
/// a dense output's dropout and its residual connection.
#[derive(Clone, Copy)]
pub(crate) struct Residual<'a> {
    /// The dropout mask (0 or 1/(1−p) per element; empty: no dropout).
    pub mask: &'a [f32],
    /// The residual stream, added after the mask.
    pub stream: &'a [f32],
}

/// `x ← LayerNorm(x ⊙ mask + residual)` per row of width `h` (statistics in f64; `x` alone
/// without a residual); keeps x̂ and 1/σ in `cache`. The residual add is done on each row just
/// before its statistics, while it is in cache: one pass where there were two, the same bits.
/// Rows are independent, so they are cut over the threads.
fn layer_norm(
    x: &mut [f32],
    residual: Option<Residual<'_>>,
    (gamma, beta): (&[f32], &[f32]),
    eps: f64,
    cache: &mut NormCache,
    threads: usize,
) {
    let h = gamma.len();
    let rows = x.len() / h;
    fit(&mut cache.xhat, x.len());
    fit(&mut cache.rstd, rows);
    if let Some(r) = residual {
        assert!(
            r.stream.len() == x.len() && (r.mask.is_empty() || r.mask.len() == x.len()),
            "layer_norm: residual or mask of another size"
        );
    }
    let n = par::part(rows, h, threads);
    let parts = x
        .chunks_mut(n * h)
        .zip(cache.xhat.chunks_mut(n * h))
        .zip(cache.rstd.chunks_mut(n))
        .enumerate();
    par::run(threads, parts, |(c, ((x, xhat), rstd))| {
        for (i, ((row, xhat), rstd)) in x
            .chunks_exact_mut(h)
            .zip(xhat.chunks_exact_mut(h))
            .zip(rstd)
            .enumerate()
        {
            if let Some(r) = residual {
                let at = (c * n + i) * h..(c * n + i + 1) * h;
                let stream = &r.stream[at.clone()];
                if r.mask.is_empty() {
                    row.iter_mut().zip(stream).for_each(|(a, r)| *a += r);
                } else {
                    let mask = &r.mask[at];
                    for ((a, m), r) in row.iter_mut().zip(mask).zip(stream) {
                        *a = *a * m + r;
                    }
                }
            }
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / h as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / h as f64;
            let inv = 1.0 / (var + eps).sqrt();
            *rstd = inv as f32;
            for (j, v) in row.iter_mut().enumerate() {
                xhat[j] = ((*v as f64 - mean) * inv) as f32;
                *v = xhat[j] * gamma[j] + beta[j];
            }
        }
    });
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

/// Runs the encoder over `batch` on `threads` threads, returning every layer's output (what
/// the reference tests compare). [`forward_into`] with [`Pass::Inference`] is the same pass
/// without the copies.
pub fn forward(
    w: &BertWeights,
    batch: &Batch,
    threads: usize,
) -> Result<ForwardOutput, ModelError> {
    let mut out = ForwardOutput::default();
    forward_impl(
        w,
        batch,
        threads,
        Pass::Inference,
        &mut Cache::new(),
        Some(&mut out),
    )?;
    Ok(out)
}

/// The forward pass in evaluation mode that also keeps what [`super::backward`] needs.
pub fn forward_cached(
    w: &BertWeights,
    batch: &Batch,
    threads: usize,
) -> Result<(ForwardOutput, Cache), ModelError> {
    let (mut out, mut cache) = (ForwardOutput::default(), Cache::new());
    forward_impl(w, batch, threads, Pass::Cached, &mut cache, Some(&mut out))?;
    Ok((out, cache))
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
    let (mut out, mut cache) = (ForwardOutput::default(), Cache::new());
    forward_impl(
        w,
        batch,
        threads,
        Pass::Train { seed },
        &mut cache,
        Some(&mut out),
    )?;
    Ok((out, cache))
}

/// What a forward pass is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Evaluation mode, keeping only the last layer's activations: the pass of evaluation and
    /// prediction (no backward pass can follow).
    Inference,
    /// Evaluation mode (no dropout), keeping what the backward pass needs.
    Cached,
    /// Training mode: dropout with masks drawn from `seed`, keeping what the backward pass
    /// needs.
    Train {
        /// Draws the dropout masks.
        seed: u64,
    },
}

/// The forward pass into a reused cache: the pooler output and the last hidden state are
/// [`Cache::pooler_output`] and [`Cache::last_hidden_state`]. Once the cache has seen the
/// largest batch of a run, the pass allocates nothing.
pub fn forward_into(
    w: &BertWeights,
    batch: &Batch,
    threads: usize,
    pass: Pass,
    cache: &mut Cache,
) -> Result<(), ModelError> {
    forward_impl(w, batch, threads, pass, cache, None)
}

/// A dropout mask of `n` elements into `mask`: 0 with probability `p`, else 1/(1 − p); empty
/// when `p` is 0 (nothing to drop). Element `i` takes the generator's `i`-th draw whatever the
/// threads, and the generator moves on by `n` draws.
pub(crate) fn dropout_mask(rng: &mut Rng, mask: &mut Vec<f32>, n: usize, p: f64, threads: usize) {
    if p <= 0.0 {
        mask.clear();
        return;
    }
    let keep = (1.0 / (1.0 - p)) as f32;
    // `uniform() <= p` without the float conversion: uniform() is ((bits >> 11) + 1) / 2^53,
    // exactly, and p·2^53 is exact in f64, so the test is `(bits >> 11) + 1 <= ⌊p·2^53⌋`,
    // that is `(bits >> 11) < ⌊p·2^53⌋`.
    let drop_below = (p * (1u64 << 53) as f64).floor().min((1u64 << 53) as f64) as u64;
    fit(mask, n);
    let part = par::part(n, 1, threads);
    let start = rng.clone();
    par::run(threads, mask.chunks_mut(part).enumerate(), |(c, m)| {
        let mut r = start.skipped((c * part) as u64);
        m.iter_mut().for_each(|m| {
            *m = if (r.next_u64() >> 11) < drop_below {
                0.0
            } else {
                keep
            }
        });
    });
    *rng = rng.skipped(n as u64);
}

/// `x ⊙ mask`, a no-op for an empty mask.
pub(crate) fn apply_mask(x: &mut [f32], mask: &[f32], threads: usize) {
    if !mask.is_empty() {
        par::zip_with(threads, x, mask, |v, m| v * m);
    }
}

/// Attention of one sequence `b` over every head: scores, mask, softmax into `probs` (its
/// `[heads, seq, seq]` block), dropout, and the value product into `ctx` (its `seq` rows).
#[allow(clippy::too_many_arguments)]
fn attend(
    lc: (&[f32], &[f32], &[f32], &[f32]),
    mask_add: &[f32],
    (heads, d, seq, h): (usize, usize, usize, usize),
    b: usize,
    probs: &mut [f32],
    ctx: &mut [f32],
    dropped: &mut [f32],
) {
    let (q, k, v, prob_dropout) = lc;
    let scale = 1.0 / (d as f32).sqrt();
    let (q, k, v) = (&q[b * seq * h..], &k[b * seq * h..], &v[b * seq * h..]);
    for hd in 0..heads {
        let off = hd * d;
        let scores = &mut probs[hd * seq * seq..][..seq * seq];
        // scores = Q_bh · K_bhᵀ (rows of Q and K are `h` apart).
        mm(
            scores,
            seq,
            View::rows(&q[off..], h),
            View::transposed(&k[off..], h),
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
        let p_used: &[f32] = if prob_dropout.is_empty() {
            scores
        } else {
            let m = &prob_dropout[(b * heads + hd) * seq * seq..][..seq * seq];
            dropped
                .iter_mut()
                .zip(scores.iter().zip(m))
                .for_each(|(o, (p, m))| *o = p * m);
            dropped
        };
        mm(
            &mut ctx[off..],
            h,
            View::rows(p_used, seq),
            View::rows(&v[off..], h),
            (seq, d, seq),
            false,
            1,
        );
    }
}

fn forward_impl(
    w: &BertWeights,
    batch: &Batch,
    threads: usize,
    pass: Pass,
    cache: &mut Cache,
    mut outputs: Option<&mut ForwardOutput>,
) -> Result<(), ModelError> {
    use super::weights::LayerParam as P;
    check(w, batch)?;
    let mut rng = Rng::new(match pass {
        Pass::Train { seed } => seed,
        _ => 0,
    });
    let (hidden_p, attn_p) = match pass {
        Pass::Train { .. } => (
            w.config.hidden_dropout_prob,
            w.config.attention_probs_dropout_prob,
        ),
        _ => (0.0, 0.0),
    };
    let keep = pass != Pass::Inference;
    let c = &w.config;
    let (bsz, seq, h) = (batch.batch, batch.seq, c.hidden_size);
    let (heads, d) = (c.num_attention_heads, c.head_dim());
    let rows = bsz * seq;
    let p = |name: &str| w.param(name);
    // Every layer's activations for a backward pass; the first layer's buffers, reused by each
    // layer in turn, for inference. Layers are only ever added, so an inference pass between
    // training steps frees nothing the next step needs.
    let layers_needed = if keep { c.num_hidden_layers } else { 1 };
    if cache.layers.len() < layers_needed {
        cache.layers.resize_with(layers_needed, LayerCache::default);
    }
    cache.complete = keep;

    // Embeddings.
    let (word, pos, typ) = (
        p("embeddings.word_embeddings.weight"),
        p("embeddings.position_embeddings.weight"),
        p("embeddings.token_type_embeddings.weight"),
    );
    let x = &mut cache.hidden;
    fit(x, rows * h);
    let n = par::part(rows, h, threads);
    par::run(threads, x.chunks_mut(n * h).enumerate(), |(c, part)| {
        for (i, row) in part.chunks_exact_mut(h).enumerate() {
            let r = c * n + i;
            let (id, t, l) = (
                batch.input_ids[r] as usize,
                batch.token_type_ids[r] as usize,
                r % seq,
            );
            for j in 0..h {
                row[j] = word[id * h + j] + pos[l * h + j] + typ[t * h + j];
            }
        }
    });
    layer_norm(
        x,
        None,
        (
            p("embeddings.LayerNorm.weight"),
            p("embeddings.LayerNorm.bias"),
        ),
        c.layer_norm_eps,
        &mut cache.embedding_norm,
        threads,
    );
    dropout_mask(
        &mut rng,
        &mut cache.embedding_dropout,
        rows * h,
        hidden_p,
        threads,
    );
    apply_mask(x, &cache.embedding_dropout, threads);
    if let Some(out) = outputs.as_deref_mut() {
        out.embedding_output = x.clone();
    }

    // Padding positions get the most negative f32 added to their scores, as Hugging Face does.
    cache.mask_add.clear();
    cache.mask_add.extend(
        batch
            .attention_mask
            .iter()
            .map(|&m| if m == 0 { f32::MIN } else { 0.0 }),
    );
    fit(&mut cache.dropped, bsz * seq * seq);
    for l in 0..c.num_hidden_layers {
        let lc = &mut cache.layers[if keep { l } else { 0 }];
        let x = &mut cache.hidden;
        // This layer's input is the last one's output; `hidden` takes this layer's output.
        std::mem::swap(&mut lc.input, x);
        for buf in [&mut lc.q, &mut lc.k, &mut lc.v, &mut lc.ctx, &mut *x] {
            fit(buf, rows * h);
        }
        fit(&mut lc.probs, bsz * heads * seq * seq);
        dropout_mask(
            &mut rng,
            &mut lc.prob_dropout,
            bsz * heads * seq * seq,
            attn_p,
            threads,
        );
        dropout_mask(&mut rng, &mut lc.attn_dropout, rows * h, hidden_p, threads);
        dropout_mask(&mut rng, &mut lc.ffn_dropout, rows * h, hidden_p, threads);
        for (out, weight) in [
            (&mut lc.q, P::QueryW),
            (&mut lc.k, P::KeyW),
            (&mut lc.v, P::ValueW),
        ] {
            linear(
                out,
                &lc.input,
                w.layer(l, weight),
                w.layer(l, weight.bias()),
                rows,
                threads,
            );
        }
        // Attention, one sequence per task: a sequence owns its rows of ctx and its blocks of
        // probabilities and scratch.
        let shared = (
            lc.q.as_slice(),
            lc.k.as_slice(),
            lc.v.as_slice(),
            lc.prob_dropout.as_slice(),
        );
        let mask_add = cache.mask_add.as_slice();
        let tasks = lc
            .probs
            .chunks_mut(heads * seq * seq)
            .zip(lc.ctx.chunks_mut(seq * h))
            .zip(cache.dropped.chunks_mut(seq * seq))
            .enumerate();
        par::run(threads, tasks, |(b, ((probs, ctx), dropped))| {
            attend(shared, mask_add, (heads, d, seq, h), b, probs, ctx, dropped)
        });
        // x1 = LayerNorm(dropout(ctx·Woᵀ + bo) + input)
        fit(&mut lc.x1, rows * h);
        linear(
            &mut lc.x1,
            &lc.ctx,
            w.layer(l, P::AttnOutW),
            w.layer(l, P::AttnOutB),
            rows,
            threads,
        );
        layer_norm(
            &mut lc.x1,
            Some(Residual {
                mask: &lc.attn_dropout,
                stream: &lc.input,
            }),
            (w.layer(l, P::AttnNormG), w.layer(l, P::AttnNormB)),
            c.layer_norm_eps,
            &mut lc.norm1,
            threads,
        );
        // out = LayerNorm(dropout(GELU(x1·Wiᵀ + bi)·Woᵀ + bo) + x1)
        fit(&mut lc.pre_gelu, rows * c.intermediate_size);
        fit(&mut lc.post_gelu, rows * c.intermediate_size);
        linear(
            &mut lc.pre_gelu,
            &lc.x1,
            w.layer(l, P::InterW),
            w.layer(l, P::InterB),
            rows,
            threads,
        );
        par::map(threads, &mut lc.post_gelu, &lc.pre_gelu, gelu);
        linear(
            x,
            &lc.post_gelu,
            w.layer(l, P::OutW),
            w.layer(l, P::OutB),
            rows,
            threads,
        );
        layer_norm(
            x,
            Some(Residual {
                mask: &lc.ffn_dropout,
                stream: &lc.x1,
            }),
            (w.layer(l, P::OutNormG), w.layer(l, P::OutNormB)),
            c.layer_norm_eps,
            &mut lc.norm2,
            threads,
        );
        if let Some(out) = outputs.as_deref_mut() {
            out.layer_outputs.push(x.clone());
        }
    }

    // Pooler: tanh of a dense layer on each sequence's first ([CLS]) token.
    let x = &cache.hidden;
    cache.cls.clear();
    for b in 0..bsz {
        cache
            .cls
            .extend_from_slice(&x[b * seq * h..b * seq * h + h]);
    }
    fit(&mut cache.pooled, bsz * h);
    let (wp, bp) = (p("pooler.dense.weight"), p("pooler.dense.bias"));
    linear(&mut cache.pooled, &cache.cls, wp, bp, bsz, threads);
    cache.pooled.iter_mut().for_each(|z| *z = z.tanh());
    if let Some(out) = outputs {
        out.pooler_output = cache.pooled.clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{dropout_mask, Rng};

    #[test]
    fn dropout_masks_are_the_generators_uniform_draws() {
        for (p, seed) in [
            (0.1, 1),
            (0.5, 2),
            (0.9, 3),
            (1e-9, 4),
            (0.999_999, 5),
            (1.0, 6),
        ] {
            let n = 50_000;
            let mut fast = Rng::new(seed);
            let mut mask = Vec::new();
            dropout_mask(&mut fast, &mut mask, n, p, 1);
            let mut slow = Rng::new(seed);
            let keep = (1.0 / (1.0 - p)) as f32;
            let want: Vec<f32> = (0..n)
                .map(|_| if slow.uniform() <= p { 0.0 } else { keep })
                .collect();
            assert!(
                mask == want,
                "p = {p}: the mask is not the draws' comparison with p"
            );
            assert_eq!(
                fast.next_u64(),
                slow.next_u64(),
                "p = {p}: the generators diverged"
            );
        }
    }
}
