//! A BERT encoder with a task head, and the training step: forward in training mode, head loss,
//! backward, and one optimizer step over every parameter in place.
//!
//! Parameters are named as in Hugging Face's `BertForSequenceClassification` (`bert.…` for the
//! encoder, `classifier.…` for the head), so the official GLUE script's groups apply as they are:
//! the encoder is pulled towards θ*, the head is not; biases and LayerNorm weights get no decay.

use std::borrow::Cow;

use recadam_std::bert::{
    backward, forward, forward_train, Batch, BertWeights, Head, ModelError, Targets,
};
use recadam_std::{Group, Optimizer, Options, ParamMut};

/// Prefix of the encoder's parameter names.
pub const ENCODER: &str = "bert.";

/// An encoder and a task head.
#[derive(Clone, Debug)]
pub struct Classifier {
    /// The BERT encoder (with pooler).
    pub encoder: BertWeights,
    /// The task head on the pooled output.
    pub head: Head,
}

/// What one training step did.
#[derive(Clone, Copy, Debug)]
pub struct StepLog {
    /// Optimizer steps taken so far (this one included).
    pub step: u64,
    /// The batch-mean loss before the update.
    pub loss: f32,
    /// The learning rate of this step.
    pub lr: f64,
    /// λ(t) of this step.
    pub lambda: f64,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
}

/// Errors of a training step.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The batch does not fit the model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The optimizer refused the step or the set-up.
    #[error(transparent)]
    Optimizer(#[from] recadam_std::Error),
}

impl Classifier {
    /// Head logits `[batch, outputs]` in evaluation mode.
    pub fn logits(&self, batch: &Batch, threads: usize) -> Result<Vec<f32>, ModelError> {
        let out = forward(&self.encoder, batch, threads)?;
        self.head.logits(&out.pooler_output)
    }

    /// Sentence embeddings `[batch, hidden]`: the last hidden state averaged over the real
    /// tokens, as sentence-transformers' mean pooling.
    pub fn mean_pooled(&self, batch: &Batch, threads: usize) -> Result<Vec<f32>, ModelError> {
        let out = forward(&self.encoder, batch, threads)?;
        let h = self.encoder.config.hidden_size;
        let hidden = out.last_hidden_state();
        let mut pooled = vec![0.0f32; batch.batch * h];
        for b in 0..batch.batch {
            let row = &mut pooled[b * h..(b + 1) * h];
            let mut count = 0.0f32;
            for s in 0..batch.seq {
                if batch.attention_mask[b * batch.seq + s] != 0 {
                    let x = &hidden[(b * batch.seq + s) * h..][..h];
                    row.iter_mut().zip(x).for_each(|(r, v)| *r += v);
                    count += 1.0;
                }
            }
            row.iter_mut().for_each(|r| *r /= count.max(1e-9));
        }
        Ok(pooled)
    }
}

/// A classifier being fine-tuned: the model, its gradients and the optimizer over both.
pub struct Trainer<'p> {
    /// The model, updated in place by every step.
    pub model: Classifier,
    optimizer: Optimizer<'p, f32>,
    pretrained: &'p [f32],
    names: Vec<String>,
    grads: Vec<f32>,
    threads: usize,
    dropout: bool,
}

impl<'p> Trainer<'p> {
    /// A trainer of `model` towards `pretrained` (θ*, the encoder's pretrained values in the
    /// encoder's layout) with the official GLUE script's groups. `dropout` trains with the
    /// model's dropout probabilities (Hugging Face's training mode).
    pub fn new(
        model: Classifier,
        pretrained: &'p [f32],
        options: Options,
        dropout: bool,
    ) -> Result<Trainer<'p>, TrainError> {
        if pretrained.len() != model.encoder.data.len() {
            return Err(recadam_std::Error::Length {
                name: "θ*".into(),
                what: "pretrained",
                len: pretrained.len(),
                expected: model.encoder.data.len(),
            }
            .into());
        }
        let threads = options.threads;
        // The program honours RECADAM_BACKEND (a library constructor does not read it).
        let kernel = recadam_std::Kernel::from_env().map_err(recadam_std::Error::from)?;
        let mut optimizer = Optimizer::with_kernel(options, kernel)?;
        for group in Group::glue_script(ENCODER) {
            optimizer.add_group(group)?;
        }
        let layout = &model.encoder.layout;
        let mut names = Vec::new();
        for (name, shape, offset) in layout.entries() {
            let n: usize = shape.iter().product();
            let full = format!("{ENCODER}{name}");
            optimizer.register(
                &full,
                n,
                Some(Cow::Borrowed(&pretrained[offset..offset + n])),
            )?;
            names.push(full);
        }
        optimizer.register("classifier.weight", model.head.weight.len(), None)?;
        optimizer.register("classifier.bias", model.head.bias.len(), None)?;
        let grads = vec![0.0; model.encoder.data.len()];
        Ok(Trainer {
            model,
            optimizer,
            pretrained,
            names,
            grads,
            threads,
            dropout,
        })
    }

    /// The optimizer (state, λ, checkpoints).
    pub fn optimizer(&self) -> &Optimizer<'p, f32> {
        &self.optimizer
    }

    /// The optimizer, to load a checkpoint into.
    pub fn optimizer_mut(&mut self) -> &mut Optimizer<'p, f32> {
        &mut self.optimizer
    }

    /// One step on `batch`; `seed` draws the dropout masks.
    pub fn step(
        &mut self,
        batch: &Batch,
        targets: &Targets,
        seed: u64,
    ) -> Result<StepLog, TrainError> {
        let encoder = &self.model.encoder;
        let (out, cache) = if self.dropout {
            forward_train(encoder, batch, self.threads, seed)?
        } else {
            recadam_std::bert::forward_cached(encoder, batch, self.threads)?
        };
        let p = if self.dropout {
            encoder.config.hidden_dropout_prob
        } else {
            0.0
        };
        let head_out = self.model.head.loss_with_dropout(
            &out.pooler_output,
            targets,
            p,
            seed ^ 0x4845_4144,
        )?;
        drop(out);
        self.grads.fill(0.0);
        backward(
            encoder,
            batch,
            &cache,
            &head_out.d_pooled,
            &mut self.grads,
            self.threads,
        )?;
        drop(cache);
        let encoder = &mut self.model.encoder;
        let mut params: Vec<ParamMut<'_, f32>> = encoder
            .layout
            .split_mut(&mut encoder.data)?
            .into_iter()
            .zip(encoder.layout.split_mut(&mut self.grads)?)
            .zip(&self.names)
            .map(|(((_, value), (_, grad)), name)| ParamMut {
                name: name.as_str(),
                value,
                grad,
            })
            .collect();
        params.push(ParamMut {
            name: "classifier.weight",
            value: &mut self.model.head.weight,
            grad: &head_out.d_weight,
        });
        params.push(ParamMut {
            name: "classifier.bias",
            value: &mut self.model.head.bias,
            grad: &head_out.d_bias,
        });
        let report = self.optimizer.step(&mut params)?;
        Ok(StepLog {
            step: report.step,
            loss: head_out.loss,
            lr: report.lr,
            lambda: report.lambda,
            grad_norm: report.grad_norm.unwrap_or(f64::NAN),
        })
    }

    /// Euclidean distance of the encoder to θ* (the paper's Figure 2), whichever optimizer runs.
    pub fn distance(&self) -> f64 {
        self.model
            .encoder
            .data
            .iter()
            .zip(self.pretrained)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum::<f64>()
            .sqrt()
    }
}
