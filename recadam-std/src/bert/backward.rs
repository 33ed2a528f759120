//! The backward pass, written by hand in the style of llm.c: every layer's gradient for every
//! parameter, accumulated into a flat gradient buffer with the weights' layout.

use super::forward::{apply_mask, check, Cache, NormCache};
use super::math::gelu_grad;
use super::matmul::{mm, View};
use super::{Batch, BertWeights, ModelError};

/// Mutable views of `buf` at `ranges`, which must be increasing and disjoint (a layer's weight
/// and bias, the three embedding tables: neighbours in the layout).
fn disjoint_mut<'a>(buf: &'a mut [f32], ranges: &[std::ops::Range<usize>]) -> Vec<&'a mut [f32]> {
    let mut out = Vec::with_capacity(ranges.len());
    let mut rest = buf;
    let mut consumed = 0;
    for r in ranges {
        assert!(r.start >= consumed, "ranges must increase");
        let (_, tail) = rest.split_at_mut(r.start - consumed);
        let (mine, tail) = tail.split_at_mut(r.len());
        out.push(mine);
        rest = tail;
        consumed = r.end;
    }
    out
}

/// LayerNorm backward: from dy (per row of width h) to dx, accumulating dγ and dβ.
fn layer_norm_backward(
    dy: &[f32],
    cache: &NormCache,
    gamma: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) -> Vec<f32> {
    let h = gamma.len();
    let mut dx = vec![0.0f32; dy.len()];
    for (r, ((dy, xhat), dx)) in dy
        .chunks_exact(h)
        .zip(cache.xhat.chunks_exact(h))
        .zip(dx.chunks_exact_mut(h))
        .enumerate()
    {
        let (mut mean_g, mut mean_gx) = (0.0f64, 0.0f64);
        for j in 0..h {
            let g = (dy[j] * gamma[j]) as f64;
            mean_g += g;
            mean_gx += g * xhat[j] as f64;
            dgamma[j] += dy[j] * xhat[j];
            dbeta[j] += dy[j];
        }
        mean_g /= h as f64;
        mean_gx /= h as f64;
        let rstd = cache.rstd[r] as f64;
        for j in 0..h {
            let g = (dy[j] * gamma[j]) as f64;
            dx[j] = (rstd * (g - mean_g - xhat[j] as f64 * mean_gx)) as f32;
        }
    }
    dx
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
        for row in dy.chunks_exact(n) {
            db.iter_mut().zip(row).for_each(|(b, g)| *b += g);
        }
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
/// (and nothing is written).
pub fn backward(
    w: &BertWeights,
    batch: &Batch,
    cache: &Cache,
    d_pooled: &[f32],
    grads: &mut [f32],
    threads: usize,
) -> Result<(), ModelError> {
    let c = &w.config;
    let (bsz, seq, h, inter) = (batch.batch, batch.seq, c.hidden_size, c.intermediate_size);
    let (heads, d) = (c.num_attention_heads, c.head_dim());
    let rows = bsz * seq;
    let scale = 1.0 / (d as f32).sqrt();
    check(w, batch)?;
    for (what, len, expected) in [
        ("gradient buffer", grads.len(), w.layout.len()),
        ("d_pooled", d_pooled.len(), bsz * h),
        ("cache (pooled output)", cache.pooled.len(), bsz * h),
        ("cache (layers)", cache.layers.len(), c.num_hidden_layers),
    ] {
        if len != expected {
            return Err(ModelError::Input(format!(
                "backward: {what} has {len} values, the batch and model need {expected}"
            )));
        }
    }
    // Mutable views of the gradients of the named parameters (neighbours in the layout).
    fn views<'g, const N: usize>(
        w: &BertWeights,
        grads: &'g mut [f32],
        names: [&str; N],
    ) -> [&'g mut [f32]; N] {
        let ranges: Vec<_> = names
            .iter()
            .map(|n| {
                w.layout
                    .range(n)
                    .unwrap_or_else(|| panic!("no parameter {n}"))
            })
            .collect();
        match <[&mut [f32]; N]>::try_from(disjoint_mut(grads, &ranges)) {
            Ok(views) => views,
            Err(_) => unreachable!("one view per name"),
        }
    }

    // Pooler: pooled = tanh(z), z = cls·Wpᵀ + bp, so dz = d_pooled·(1 − pooled²).
    let pooled_dz: Vec<f32> = cache
        .pooled
        .iter()
        .zip(d_pooled)
        .map(|(p, g)| g * (1.0 - p * p))
        .collect();
    let mut dx = vec![0.0f32; rows * h];
    {
        let [dwp, dbp] = views(w, grads, ["pooler.dense.weight", "pooler.dense.bias"]);
        let mut dcls = vec![0.0f32; bsz * h];
        let lin = Linear {
            x: &cache.cls,
            w: w.param("pooler.dense.weight"),
            rows: bsz,
            n: h,
            k: h,
        };
        lin.backward(&pooled_dz, dwp, dbp, &mut dcls, false, threads);
        for b in 0..bsz {
            dx[b * seq * h..b * seq * h + h].copy_from_slice(&dcls[b * h..(b + 1) * h]);
        }
    }

    for l in (0..c.num_hidden_layers).rev() {
        let lc = &cache.layers[l];
        let name = |s: &str| format!("encoder.layer.{l}.{s}");
        let wt = |s: &str| w.param(&name(s));
        // Second LayerNorm (after the feed-forward residual).
        let d_ffn = {
            let [dg, db] = views(
                w,
                grads,
                [
                    &name("output.LayerNorm.weight"),
                    &name("output.LayerNorm.bias"),
                ],
            );
            layer_norm_backward(&dx, &lc.norm2, wt("output.LayerNorm.weight"), dg, db)
        };
        let mut d_x1 = d_ffn.clone(); // the residual
        let mut d_post = vec![0.0f32; rows * inter];
        {
            let [dw, db] = views(
                w,
                grads,
                [&name("output.dense.weight"), &name("output.dense.bias")],
            );
            let lin = Linear {
                x: &lc.post_gelu,
                w: wt("output.dense.weight"),
                rows,
                n: h,
                k: inter,
            };
            // The residual took d_ffn as it is; the dense output went through dropout.
            let mut dy = d_ffn.clone();
            apply_mask(&mut dy, &lc.ffn_dropout);
            lin.backward(&dy, dw, db, &mut d_post, false, threads);
        }
        d_post
            .iter_mut()
            .zip(&lc.pre_gelu)
            .for_each(|(g, &z)| *g *= gelu_grad(z));
        {
            let [dw, db] = views(
                w,
                grads,
                [
                    &name("intermediate.dense.weight"),
                    &name("intermediate.dense.bias"),
                ],
            );
            let lin = Linear {
                x: &lc.x1,
                w: wt("intermediate.dense.weight"),
                rows,
                n: inter,
                k: h,
            };
            lin.backward(&d_post, dw, db, &mut d_x1, true, threads);
        }
        // First LayerNorm (after the attention residual).
        let d_attn = {
            let [dg, db] = views(
                w,
                grads,
                [
                    &name("attention.output.LayerNorm.weight"),
                    &name("attention.output.LayerNorm.bias"),
                ],
            );
            layer_norm_backward(
                &d_x1,
                &lc.norm1,
                wt("attention.output.LayerNorm.weight"),
                dg,
                db,
            )
        };
        let mut d_input = d_attn.clone(); // the residual
        let mut d_ctx = vec![0.0f32; rows * h];
        {
            let [dw, db] = views(
                w,
                grads,
                [
                    &name("attention.output.dense.weight"),
                    &name("attention.output.dense.bias"),
                ],
            );
            let lin = Linear {
                x: &lc.ctx,
                w: wt("attention.output.dense.weight"),
                rows,
                n: h,
                k: h,
            };
            let mut dy = d_attn.clone();
            apply_mask(&mut dy, &lc.attn_dropout);
            lin.backward(&dy, dw, db, &mut d_ctx, false, threads);
        }
        // Attention, per sequence and head.
        let (mut dq, mut dk, mut dv) = (
            vec![0.0f32; rows * h],
            vec![0.0f32; rows * h],
            vec![0.0f32; rows * h],
        );
        // One sequence per task: it owns its rows of dq, dk, dv.
        let attend_back = |b: usize, dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]| {
            let mut ds = vec![0.0f32; seq * seq];
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
                let dropped: Vec<f32>;
                let p_used: &[f32] = match mask {
                    Some(m) => {
                        dropped = p.iter().zip(m).map(|(p, m)| p * m).collect();
                        &dropped
                    }
                    None => p,
                };
                let dc = View::rows(&d_ctx_b[off..], h);
                // dP = (dC · Vᵀ) ⊙ M ; dV = (P ⊙ M)ᵀ · dC
                mm(
                    &mut ds,
                    seq,
                    dc,
                    View::transposed(&v[off..], h),
                    (seq, seq, d),
                    false,
                    1,
                );
                if let Some(m) = mask {
                    apply_mask(&mut ds, m);
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
                let ds_v = View::rows(&ds, seq);
                mm(
                    &mut dq[off..],
                    h,
                    ds_v,
                    View::rows(&k[off..], h),
                    (seq, d, seq),
                    false,
                    1,
                );
                let ds_t = View::transposed(&ds, seq);
                mm(
                    &mut dk[off..],
                    h,
                    ds_t,
                    View::rows(&q[off..], h),
                    (seq, d, seq),
                    false,
                    1,
                );
            }
        };
        let tasks = dq
            .chunks_mut(seq * h)
            .zip(dk.chunks_mut(seq * h))
            .zip(dv.chunks_mut(seq * h))
            .enumerate();
        if threads > 1 {
            use rayon::prelude::*;
            let tasks: Vec<_> = tasks.collect();
            tasks
                .into_par_iter()
                .for_each(|(b, ((q, k), v))| attend_back(b, q, k, v));
        } else {
            tasks.for_each(|(b, ((q, k), v))| attend_back(b, q, k, v));
        }
        for (dy, which) in [(&dq, "query"), (&dk, "key"), (&dv, "value")] {
            let [dw, db] = views(
                w,
                grads,
                [
                    &name(&format!("attention.self.{which}.weight")),
                    &name(&format!("attention.self.{which}.bias")),
                ],
            );
            let lin = Linear {
                x: &lc.input,
                w: wt(&format!("attention.self.{which}.weight")),
                rows,
                n: h,
                k: h,
            };
            lin.backward(dy, dw, db, &mut d_input, true, threads);
        }
        dx = d_input;
    }

    // Embeddings: dropout, LayerNorm, then the three lookups.
    apply_mask(&mut dx, &cache.embedding_dropout);
    let d_sum = {
        let [dg, db] = views(
            w,
            grads,
            ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"],
        );
        layer_norm_backward(
            &dx,
            &cache.embedding_norm,
            w.param("embeddings.LayerNorm.weight"),
            dg,
            db,
        )
    };
    let [dword, dpos, dtype] = views(
        w,
        grads,
        [
            "embeddings.word_embeddings.weight",
            "embeddings.position_embeddings.weight",
            "embeddings.token_type_embeddings.weight",
        ],
    );
    for (r, g) in d_sum.chunks_exact(h).enumerate() {
        let (id, t, pos) = (
            batch.input_ids[r] as usize,
            batch.token_type_ids[r] as usize,
            r % seq,
        );
        for j in 0..h {
            dword[id * h + j] += g[j];
            dpos[pos * h + j] += g[j];
            dtype[t * h + j] += g[j];
        }
    }
    Ok(())
}
