//! The forward pass in evaluation mode (no dropout): embeddings, post-LayerNorm encoder layers
//! with masked self-attention and an exact-GELU feed-forward layer, and the pooler.

use super::matmul::{matmul_nn, matmul_nt};
use super::{Batch, BertWeights, ModelError};

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
fn check(w: &BertWeights, b: &Batch) -> Result<(), ModelError> {
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

/// `x ← LayerNorm(x)` per row of width `h` (statistics in f64).
fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f64) {
    let h = gamma.len();
    for row in x.chunks_exact_mut(h) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / h as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / h as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for (j, v) in row.iter_mut().enumerate() {
            *v = ((*v as f64 - mean) * inv) as f32 * gamma[j] + beta[j];
        }
    }
}

/// `out[rows×n] = x[rows×k]·Wᵀ + b` for a Linear weight `W[n×k]`.
fn linear(out: &mut [f32], x: &[f32], w: &[f32], b: &[f32], rows: usize, threads: usize) {
    let (n, k) = (b.len(), w.len() / b.len());
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(b);
    }
    matmul_nt(out, n, x, k, w, k, (rows, n, k), true, threads);
}

/// The exact GELU, `0.5·x·(1 + erf(x/√2))`.
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Runs the encoder over `batch` on `threads` threads.
pub fn forward(
    w: &BertWeights,
    batch: &Batch,
    threads: usize,
) -> Result<ForwardOutput, ModelError> {
    check(w, batch)?;
    let c = &w.config;
    let (bsz, seq, h) = (batch.batch, batch.seq, c.hidden_size);
    let (heads, d) = (c.num_attention_heads, c.head_dim());
    let rows = bsz * seq;
    let p = |name: &str| w.get(name);

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
    layer_norm(
        &mut x,
        p("embeddings.LayerNorm.weight"),
        p("embeddings.LayerNorm.bias"),
        c.layer_norm_eps,
    );
    let embedding_output = x.clone();

    // Padding positions get the most negative f32 added to their scores, as Hugging Face does.
    let mask_add: Vec<f32> = batch
        .attention_mask
        .iter()
        .map(|&m| if m == 0 { f32::MIN } else { 0.0 })
        .collect();
    let scale = 1.0 / (d as f32).sqrt();
    let (mut q, mut k, mut v) = (
        vec![0.0f32; rows * h],
        vec![0.0f32; rows * h],
        vec![0.0f32; rows * h],
    );
    let mut ctx = vec![0.0f32; rows * h];
    let mut attn = vec![0.0f32; rows * h];
    let mut inter = vec![0.0f32; rows * c.intermediate_size];
    let mut ffn = vec![0.0f32; rows * h];
    let mut scores = vec![0.0f32; seq * seq];
    let mut layer_outputs = Vec::with_capacity(c.num_hidden_layers);
    for l in 0..c.num_hidden_layers {
        let lp = |s: &str| p(&format!("encoder.layer.{l}.{s}"));
        linear(
            &mut q,
            &x,
            lp("attention.self.query.weight"),
            lp("attention.self.query.bias"),
            rows,
            threads,
        );
        linear(
            &mut k,
            &x,
            lp("attention.self.key.weight"),
            lp("attention.self.key.bias"),
            rows,
            threads,
        );
        linear(
            &mut v,
            &x,
            lp("attention.self.value.weight"),
            lp("attention.self.value.bias"),
            rows,
            threads,
        );
        for b in 0..bsz {
            let base = b * seq * h;
            for hd in 0..heads {
                let off = base + hd * d;
                // scores = Q_bh · K_bhᵀ (rows of Q and K are `h` apart).
                matmul_nt(
                    &mut scores,
                    seq,
                    &q[off..],
                    h,
                    &k[off..],
                    h,
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
                // ctx_bh = P · V_bh.
                matmul_nn(
                    &mut ctx[off..],
                    h,
                    &scores,
                    seq,
                    &v[off..],
                    h,
                    (seq, d, seq),
                    1,
                );
            }
        }
        linear(
            &mut attn,
            &ctx,
            lp("attention.output.dense.weight"),
            lp("attention.output.dense.bias"),
            rows,
            threads,
        );
        attn.iter_mut().zip(&x).for_each(|(a, r)| *a += r);
        layer_norm(
            &mut attn,
            lp("attention.output.LayerNorm.weight"),
            lp("attention.output.LayerNorm.bias"),
            c.layer_norm_eps,
        );
        linear(
            &mut inter,
            &attn,
            lp("intermediate.dense.weight"),
            lp("intermediate.dense.bias"),
            rows,
            threads,
        );
        inter.iter_mut().for_each(|z| *z = gelu(*z));
        linear(
            &mut ffn,
            &inter,
            lp("output.dense.weight"),
            lp("output.dense.bias"),
            rows,
            threads,
        );
        ffn.iter_mut().zip(&attn).for_each(|(a, r)| *a += r);
        layer_norm(
            &mut ffn,
            lp("output.LayerNorm.weight"),
            lp("output.LayerNorm.bias"),
            c.layer_norm_eps,
        );
        std::mem::swap(&mut x, &mut ffn);
        layer_outputs.push(x.clone());
    }

    // Pooler: tanh of a dense layer on each sequence's first ([CLS]) token.
    let cls: Vec<f32> = (0..bsz)
        .flat_map(|b| x[b * seq * h..b * seq * h + h].to_vec())
        .collect();
    let mut pooler_output = vec![0.0f32; bsz * h];
    linear(
        &mut pooler_output,
        &cls,
        p("pooler.dense.weight"),
        p("pooler.dense.bias"),
        bsz,
        threads,
    );
    pooler_output.iter_mut().for_each(|z| *z = z.tanh());
    Ok(ForwardOutput {
        embedding_output,
        layer_outputs,
        pooler_output,
    })
}
