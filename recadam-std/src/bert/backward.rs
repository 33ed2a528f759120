//! The backward pass, written by hand in the style of llm.c: every layer's gradient for every
//! parameter, accumulated into a flat gradient buffer with the weights' layout.

use std::ops::Range;

use super::forward::{apply_mask, check, fit, Cache, LayerCache, NormCache};
use super::math::gelu_grad;
use super::matmul::{mm, View};
use super::par;
use super::{Batch, BertWeights, ModelError, ParamLayout};
use crate::pool::STATS_BLOCK;
use crate::{GradStats, Kernel};

/// Mutable views of `grads` at `a` and `b`, `a` before `b` (a weight and its bias, two
/// LayerNorm tensors: neighbours in the layout).
fn pair_mut(grads: &mut [f32], a: Range<usize>, b: Range<usize>) -> (&mut [f32], &mut [f32]) {
    assert!(a.end <= b.start, "ranges must increase");
    let (lo, hi) = grads.split_at_mut(b.start);
    (&mut lo[a], &mut hi[..b.len()])
}

/// The backward pass's buffers, kept in the [`Cache`] and reused from step to step.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scratch {
    /// The loss's gradient with respect to the current layer's output, `[rows, hidden]`.
    dx: Vec<f32>,
    /// The embedding LayerNorm's input gradient.
    d_norm: Vec<f32>,
    /// The residual stream's gradient (d_x1, then d_input).
    d_res: Vec<f32>,
    /// A dense layer's output gradient after its dropout mask.
    dy: Vec<f32>,
    /// `[rows, intermediate]`: the gradient of the GELU's output, then of its input.
    d_post: Vec<f32>,
    d_ctx: Vec<f32>,
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
    /// One `seq × seq` block per sequence: score gradients, and the dropped probabilities.
    ds: Vec<f32>,
    dropped: Vec<f32>,
    /// The pooler's `[batch, hidden]`: its pre-tanh gradient and its input's gradient.
    pooled_dz: Vec<f32>,
    dcls: Vec<f32>,
    /// Gradient statistics per block of the tensors just finished (see [`stats_of`]).
    blocks: Vec<GradStats>,
}

/// Where [`backward_with_stats`] writes each tensor's gradient statistics.
struct StatsOut<'a> {
    kernel: Kernel,
    per_tensor: &'a mut [GradStats],
}

/// The statistics of the gradients of layout tensors `entries` (final by now, and recently
/// written) into `out.per_tensor[entries]`: the blocks [`crate::tensor_grad_stats`] sums are cut
/// over the threads, and each tensor's blocks folded in order, so the bits are the optimizer's.
fn stats_of(
    out: &mut StatsOut<'_>,
    layout: &ParamLayout,
    grads: &[f32],
    entries: Range<usize>,
    blocks: &mut Vec<GradStats>,
    threads: usize,
) {
    let count: usize = entries
        .clone()
        .map(|e| layout.entry_range(e).len().div_ceil(STATS_BLOCK))
        .sum();
    blocks.clear();
    blocks.resize(count, GradStats::EMPTY);
    let kernel = out.kernel;
    let tasks = entries
        .clone()
        .flat_map(|e| grads[layout.entry_range(e)].chunks(STATS_BLOCK))
        .zip(blocks.iter_mut());
    par::run(threads, tasks, |(block, slot)| {
        *slot = kernel.grad_stats(block)
    });
    let mut done = blocks.iter();
    for e in entries {
        let n = layout.entry_range(e).len().div_ceil(STATS_BLOCK);
        out.per_tensor[e] = done
            .by_ref()
            .take(n)
            .fold(GradStats::EMPTY, |s, &b| s.then(b));
    }
}

/// A second output of a LayerNorm's backward pass, written in the same pass as dx: where the
/// LayerNorm's input was `dropout(y) + residual`, the dense output's gradient `dx ⊙ mask`
/// (`dx` itself for an empty mask) while dx goes on down the residual stream.
struct MaskedOut<'a> {
    out: &'a mut [f32],
    mask: &'a [f32],
}

/// LayerNorm backward: from dy (per row of width h) to dx (and `masked`, see [`MaskedOut`]),
/// accumulating dγ and dβ. Rows are cut over the threads for dx; dγ and dβ are summed over rows
/// by column.
#[allow(clippy::too_many_arguments)]
fn layer_norm_backward(
    dy: &[f32],
    cache: &NormCache,
    gamma: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    dx: &mut [f32],
    masked: Option<MaskedOut<'_>>,
    threads: usize,
) {
    let h = gamma.len();
    let rows = dy.len() / h;
    let n = par::part(rows, h, threads);
    let mask = masked.as_ref().map_or(&[][..], |m| m.mask);
    if let Some(m) = &masked {
        assert!(
            m.out.len() == dx.len() && (m.mask.is_empty() || m.mask.len() == dx.len()),
            "layer_norm_backward: masked output or mask of another size"
        );
    }
    let outs = masked
        .map(|m| m.out.chunks_mut(n * h).map(Some))
        .into_iter()
        .flatten()
        .chain(std::iter::repeat_with(|| None));
    let parts = dx.chunks_mut(n * h).zip(outs).enumerate();
    par::run(threads, parts, |(c, (dx, mut out))| {
        let r0 = c * n;
        for (i, dx) in dx.chunks_exact_mut(h).enumerate() {
            let r = r0 + i;
            let (dy, xhat) = (&dy[r * h..(r + 1) * h], &cache.xhat[r * h..(r + 1) * h]);
            let (mut mean_g, mut mean_gx) = (0.0f64, 0.0f64);
            for j in 0..h {
                let g = (dy[j] * gamma[j]) as f64;
                mean_g += g;
                mean_gx += g * xhat[j] as f64;
            }
            mean_g /= h as f64;
            mean_gx /= h as f64;
            let rstd = cache.rstd[r] as f64;
            for j in 0..h {
                let g = (dy[j] * gamma[j]) as f64;
                dx[j] = (rstd * (g - mean_g - xhat[j] as f64 * mean_gx)) as f32;
            }
            if let Some(out) = out.as_deref_mut() {
                let out = &mut out[i * h..(i + 1) * h];
                if mask.is_empty() {
                    out.copy_from_slice(dx);
                } else {
                    let mask = &mask[r * h..(r + 1) * h];
                    for ((o, &g), &m) in out.iter_mut().zip(dx.iter()).zip(mask) {
                        *o = g * m;
                    }
                }
            }
        }
    });
    // dγ += Σ_r dy ⊙ x̂ and dβ += Σ_r dy, in row order for every column.
    let n = par::part(h, rows, threads);
    let parts = dgamma.chunks_mut(n).zip(dbeta.chunks_mut(n)).enumerate();
    par::run(threads, parts, |(c, (dg, db))| {
        let j0 = c * n;
        for (dy, xhat) in dy.chunks_exact(h).zip(cache.xhat.chunks_exact(h)) {
            for (j, (g, b)) in dg.iter_mut().zip(db.iter_mut()).enumerate() {
                *g += dy[j0 + j] * xhat[j0 + j];
                *b += dy[j0 + j];
            }
        }
    });
}

/// Backward of `y = x·Wᵀ + b` (x `[rows×k]`, W `[n×k]`): accumulates dW and db, and returns dx
/// (or adds it to `dx_into`).
struct Linear<'a> {
    x: &'a [f32],
    w: &'a [f32],
    rows: usize,
    n: usize,
    k: usize,
}

impl Linear<'_> {
    fn backward(
        &self,
        dy: &[f32],
        dw: &mut [f32],
        db: &mut [f32],
        dx: &mut [f32],
        dx_accumulate: bool,
        threads: usize,
    ) {
        let (rows, n, k) = (self.rows, self.n, self.k);
        // dW += dyᵀ · x
        mm(
            dw,
            k,
            View::transposed(dy, n),
            View::rows(self.x, k),
            (n, k, rows),
            true,
            threads,
        );
        par::add_column_sums(threads, db, dy);
        // dx (+)= dy · W
        mm(
            dx,
            k,
            View::rows(dy, n),
            View::rows(self.w, k),
            (rows, k, n),
            dx_accumulate,
            threads,
        );
    }
}

/// Adds the gradient of the loss with respect to every encoder parameter to `grads` (the
/// weights' layout), given the loss's gradient with respect to the pooler output. The cache
/// must come from the forward pass of `batch` through `w`; buffers of other sizes are an error
/// (and nothing is written). [`backward_into`] is the same pass with buffers kept in the cache.
pub fn backward(
    w: &BertWeights,
    batch: &Batch,
    cache: &Cache,
    d_pooled: &[f32],
    grads: &mut [f32],
    threads: usize,
) -> Result<(), ModelError> {
    backward_impl(
        w,
        batch,
        cache,
        &mut Scratch::default(),
        d_pooled,
        grads,
        None,
        threads,
    )
}

/// [`backward`] with its buffers kept in `cache` for the next step: once the cache has seen the
/// largest batch of a run, the pass allocates nothing.
pub fn backward_into(
    w: &BertWeights,
    batch: &Batch,
    cache: &mut Cache,
    d_pooled: &[f32],
    grads: &mut [f32],
    threads: usize,
) -> Result<(), ModelError> {
    backward_cached(w, batch, cache, d_pooled, grads, None, threads)
}

/// [`backward_into`] that also writes each tensor's gradient statistics (`stats[i]` for the
/// `i`-th tensor of the layout: [`crate::tensor_grad_stats`] of it with `kernel`), computed as
/// each layer's gradients are finished and still in cache. With them the optimizer's step
/// reads every gradient once ([`crate::Optimizer::step_with_stats`]).
#[allow(clippy::too_many_arguments)]
pub fn backward_with_stats(
    w: &BertWeights,
    batch: &Batch,
    cache: &mut Cache,
    d_pooled: &[f32],
    grads: &mut [f32],
    stats: &mut [GradStats],
    kernel: Kernel,
    threads: usize,
) -> Result<(), ModelError> {
    if stats.len() != w.layout.tensors() {
        return Err(ModelError::Input(format!(
            "backward: {} gradient statistics for {} tensors",
            stats.len(),
            w.layout.tensors()
        )));
    }
    let out = StatsOut {
        kernel,
        per_tensor: stats,
    };
    backward_cached(w, batch, cache, d_pooled, grads, Some(out), threads)
}

/// The backward pass with the scratch buffers the cache keeps between steps.
fn backward_cached(
    w: &BertWeights,
    batch: &Batch,
    cache: &mut Cache,
    d_pooled: &[f32],
    grads: &mut [f32],
    stats: Option<StatsOut<'_>>,
    threads: usize,
) -> Result<(), ModelError> {
    let mut scratch = std::mem::take(&mut cache.scratch);
    let result = backward_impl(
        w,
        batch,
        cache,
        &mut scratch,
        d_pooled,
        grads,
        stats,
        threads,
    );
    cache.scratch = scratch;
    result
}

/// The backward of attention for sequence `b` over every head: from its rows of d_ctx to its
/// rows of dq, dk and dv.
#[allow(clippy::too_many_arguments)]
fn attend_back(
    lc: &LayerCache,
    d_ctx: &[f32],
    (heads, d, seq, h): (usize, usize, usize, usize),
    b: usize,
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
    ds: &mut [f32],
    dropped: &mut [f32],
) {
    let scale = 1.0 / (d as f32).sqrt();
    let rows_b = b * seq * h..(b + 1) * seq * h;
    let (q, k, v) = (
        &lc.q[rows_b.clone()],
        &lc.k[rows_b.clone()],
        &lc.v[rows_b.clone()],
    );
    let d_ctx_b = &d_ctx[rows_b];
    for hd in 0..heads {
        let off = hd * d;
        let block = (b * heads + hd) * seq * seq..(b * heads + hd + 1) * seq * seq;
        let p = &lc.probs[block.clone()];
        let mask = (!lc.prob_dropout.is_empty()).then(|| &lc.prob_dropout[block]);
        let p_used: &[f32] = match mask {
            Some(m) => {
                dropped
                    .iter_mut()
                    .zip(p.iter().zip(m))
                    .for_each(|(o, (p, m))| *o = p * m);
                dropped
            }
            None => p,
        };
        let dc = View::rows(&d_ctx_b[off..], h);
        // dP = (dC · Vᵀ) ⊙ M ; dV = (P ⊙ M)ᵀ · dC
        mm(
            ds,
            seq,
            dc,
            View::transposed(&v[off..], h),
            (seq, seq, d),
            false,
            1,
        );
        if let Some(m) = mask {
            apply_mask(ds, m, 1);
        }
        mm(
            &mut dv[off..],
            h,
            View::transposed(p_used, seq),
            dc,
            (seq, d, seq),
            false,
            1,
        );
        // dS = P ⊙ (dP − rowsum(P ⊙ dP)), times the score scale.
        for (ds_row, p_row) in ds.chunks_exact_mut(seq).zip(p.chunks_exact(seq)) {
            let dot: f32 = ds_row.iter().zip(p_row).map(|(g, p)| g * p).sum();
            ds_row
                .iter_mut()
                .zip(p_row)
                .for_each(|(g, p)| *g = p * (*g - dot) * scale);
        }
        // dQ = dS · K ; dK = dSᵀ · Q
        mm(
            &mut dq[off..],
            h,
            View::rows(ds, seq),
            View::rows(&k[off..], h),
            (seq, d, seq),
            false,
            1,
        );
        mm(
            &mut dk[off..],
            h,
            View::transposed(ds, seq),
            View::rows(&q[off..], h),
            (seq, d, seq),
            false,
            1,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn backward_impl(
    w: &BertWeights,
    batch: &Batch,
    cache: &Cache,
    s: &mut Scratch,
    d_pooled: &[f32],
    grads: &mut [f32],
    mut stats: Option<StatsOut<'_>>,
    threads: usize,
) -> Result<(), ModelError> {
    use super::weights::LayerParam as P;
    let c = &w.config;
    let (bsz, seq, h, inter) = (batch.batch, batch.seq, c.hidden_size, c.intermediate_size);
    let (heads, d) = (c.num_attention_heads, c.head_dim());
    let rows = bsz * seq;
    check(w, batch)?;
    if !cache.complete {
        return Err(ModelError::Input(
            "backward: the cache holds no cached or training forward pass (an inference pass keeps \
             no activations)"
                .into(),
        ));
    }
    for (what, len, expected) in [
        ("gradient buffer", grads.len(), w.layout.len()),
        ("d_pooled", d_pooled.len(), bsz * h),
        ("cache (pooled output)", cache.pooled.len(), bsz * h),
        (
            "cache (layers)",
            cache.layers.len().min(c.num_hidden_layers),
            c.num_hidden_layers,
        ),
        (
            "cache (activations)",
            cache.layers.first().map_or(rows * h, |l| l.input.len()),
            rows * h,
        ),
    ] {
        if len != expected {
            return Err(ModelError::Input(format!(
                "backward: {what} has {len} values, the batch and model need {expected}"
            )));
        }
    }
    let range = |name: &str| {
        w.layout
            .range(name)
            .expect("the backward pass names parameters of the layout")
    };
    for buf in [
        &mut s.dx,
        &mut s.d_norm,
        &mut s.d_res,
        &mut s.dy,
        &mut s.d_ctx,
        &mut s.dq,
        &mut s.dk,
        &mut s.dv,
    ] {
        fit(buf, rows * h);
    }
    fit(&mut s.d_post, rows * inter);
    fit(&mut s.ds, bsz * seq * seq);
    fit(&mut s.dropped, bsz * seq * seq);
    fit(&mut s.pooled_dz, bsz * h);
    fit(&mut s.dcls, bsz * h);

    // Pooler: pooled = tanh(z), z = cls·Wpᵀ + bp, so dz = d_pooled·(1 − pooled²).
    s.pooled_dz
        .iter_mut()
        .zip(cache.pooled.iter().zip(d_pooled))
        .for_each(|(dz, (p, g))| *dz = g * (1.0 - p * p));
    {
        let (dwp, dbp) = pair_mut(
            grads,
            range("pooler.dense.weight"),
            range("pooler.dense.bias"),
        );
        let lin = Linear {
            x: &cache.cls,
            w: w.param("pooler.dense.weight"),
            rows: bsz,
            n: h,
            k: h,
        };
        lin.backward(&s.pooled_dz, dwp, dbp, &mut s.dcls, false, threads);
        s.dx.fill(0.0);
        for b in 0..bsz {
            s.dx[b * seq * h..b * seq * h + h].copy_from_slice(&s.dcls[b * h..(b + 1) * h]);
        }
    }
    if let Some(out) = stats.as_mut() {
        let pooler = w.layout.tensors() - 2..w.layout.tensors();
        stats_of(out, &w.layout, grads, pooler, &mut s.blocks, threads);
    }

    let layout = &w.layout;
    for l in (0..c.num_hidden_layers).rev() {
        let lc = &cache.layers[l];
        let wt = |p: P| w.layer(l, p);
        fn pair<'g>(
            grads: &'g mut [f32],
            layout: &ParamLayout,
            l: usize,
            p: P,
        ) -> (&'g mut [f32], &'g mut [f32]) {
            pair_mut(
                grads,
                layout.layer_range(l, p),
                layout.layer_range(l, p.bias()),
            )
        }
        // Second LayerNorm (after the feed-forward residual).
        {
            let (dg, db) = pair(grads, layout, l, P::OutNormG);
            // The residual takes d_ffn as it is; the dense output went through dropout.
            let dense = MaskedOut {
                out: &mut s.dy,
                mask: &lc.ffn_dropout,
            };
            layer_norm_backward(
                &s.dx,
                &lc.norm2,
                wt(P::OutNormG),
                dg,
                db,
                &mut s.d_res,
                Some(dense),
                threads,
            );
        }
        {
            let (dw, db) = pair(grads, layout, l, P::OutW);
            let lin = Linear {
                x: &lc.post_gelu,
                w: wt(P::OutW),
                rows,
                n: h,
                k: inter,
            };
            lin.backward(&s.dy, dw, db, &mut s.d_post, false, threads);
        }
        par::zip_with(threads, &mut s.d_post, &lc.pre_gelu, |g, z| {
            g * gelu_grad(z)
        });
        {
            let (dw, db) = pair(grads, layout, l, P::InterW);
            let lin = Linear {
                x: &lc.x1,
                w: wt(P::InterW),
                rows,
                n: inter,
                k: h,
            };
            lin.backward(&s.d_post, dw, db, &mut s.d_res, true, threads);
        }
        // First LayerNorm (after the attention residual).
        {
            let (dg, db) = pair(grads, layout, l, P::AttnNormG);
            // d_input starts as the residual's share (Q, K and V add theirs below); the
            // attention's dense output went through dropout.
            let dense = MaskedOut {
                out: &mut s.dy,
                mask: &lc.attn_dropout,
            };
            layer_norm_backward(
                &s.d_res,
                &lc.norm1,
                wt(P::AttnNormG),
                dg,
                db,
                &mut s.dx,
                Some(dense),
                threads,
            );
        }
        {
            let (dw, db) = pair(grads, layout, l, P::AttnOutW);
            let lin = Linear {
                x: &lc.ctx,
                w: wt(P::AttnOutW),
                rows,
                n: h,
                k: h,
            };
            lin.backward(&s.dy, dw, db, &mut s.d_ctx, false, threads);
        }
        // Attention, one sequence per task: it owns its rows of dq, dk, dv and its scratch.
        let d_ctx = s.d_ctx.as_slice();
        let tasks =
            s.dq.chunks_mut(seq * h)
                .zip(s.dk.chunks_mut(seq * h))
                .zip(s.dv.chunks_mut(seq * h))
                .zip(
                    s.ds.chunks_mut(seq * seq)
                        .zip(s.dropped.chunks_mut(seq * seq)),
                )
                .enumerate();
        par::run(threads, tasks, |(b, (((q, k), v), (ds, dropped)))| {
            attend_back(lc, d_ctx, (heads, d, seq, h), b, (q, k, v), ds, dropped)
        });
        for (dy, weight) in [(&s.dq, P::QueryW), (&s.dk, P::KeyW), (&s.dv, P::ValueW)] {
            let (dw, db) = pair(grads, layout, l, weight);
            let lin = Linear {
                x: &lc.input,
                w: wt(weight),
                rows,
                n: h,
                k: h,
            };
            lin.backward(dy, dw, db, &mut s.dx, true, threads);
        }
        if let Some(out) = stats.as_mut() {
            let entries = layout.layer_entries(l);
            stats_of(out, layout, grads, entries, &mut s.blocks, threads);
        }
    }

    // Embeddings: dropout, LayerNorm, then the three lookups.
    apply_mask(&mut s.dx, &cache.embedding_dropout, threads);
    {
        let (dg, db) = pair_mut(
            grads,
            range("embeddings.LayerNorm.weight"),
            range("embeddings.LayerNorm.bias"),
        );
        layer_norm_backward(
            &s.dx,
            &cache.embedding_norm,
            w.param("embeddings.LayerNorm.weight"),
            dg,
            db,
            &mut s.d_norm,
            None,
            threads,
        );
    }
    let (word, pos, typ) = (
        range("embeddings.word_embeddings.weight"),
        range("embeddings.position_embeddings.weight"),
        range("embeddings.token_type_embeddings.weight"),
    );
    let (dword, rest) = pair_mut(grads, word, pos.start..typ.end);
    let (dpos, dtype) = rest.split_at_mut(pos.len());
    let dtype = &mut dtype[..typ.len()];
    for (r, g) in s.d_norm.chunks_exact(h).enumerate() {
        let (id, t, p) = (
            batch.input_ids[r] as usize,
            batch.token_type_ids[r] as usize,
            r % seq,
        );
        for j in 0..h {
            dword[id * h + j] += g[j];
            dpos[p * h + j] += g[j];
            dtype[t * h + j] += g[j];
        }
    }
    if let Some(out) = stats.as_mut() {
        let entries = layout.embedding_entries();
        stats_of(out, layout, grads, entries, &mut s.blocks, threads);
    }
    Ok(())
}
