//! Fine-tuning as a library: a BERT encoder with a task head ([`Classifier`]), the training step
//! (forward in training mode, head loss, backward, one optimizer step over every parameter in
//! place: [`Trainer`]) and the batch order ([`Batches`]). The `recadam` program drives these;
//! so can any program:
//!
//! ```no_run
//! use recadam_core::RecAdamConfig;
//! use recadam_std::bert::{BertTokenizer, BertWeights, Head, Targets};
//! use recadam_std::trainer::{Batches, Classifier, Trainer};
//! use recadam_std::{evaluate, glue, Options};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::path::Path::new("target/models/all-MiniLM-L6-v2"); // scripts/fetch-minilm.sh
//! let (encoder, _) = BertWeights::from_folder(dir)?;
//! let tokenizer = BertTokenizer::from_file(dir.join("tokenizer.json"), 128)?;
//! let task = glue::Task::Rte;
//! let train = glue::read(glue::default_dir(), task, glue::Split::Train)?;
//! let theta_star = encoder.data.clone().into(); // θ*, shared with the optimizer
//! let head = Head::new(task.outputs(), encoder.config.hidden_size, 42);
//! let model = Classifier { encoder, head };
//! let config = RecAdamConfig { lr: 2e-5, ..RecAdamConfig::default() };
//! let mut trainer = Trainer::new(model, theta_star, Options::new(config), true)?;
//! let mut batches = Batches::new(train.len(), 16, 42);
//! for step in 0..100 {
//!     let rows: Vec<&glue::Example> = batches.next_rows().iter().map(|&i| &train[i]).collect();
//!     let texts: Vec<_> = rows.iter().map(|e| (e.text_a.as_str(), e.text_b.as_deref())).collect();
//!     let targets = Targets::Labels(evaluate::gold_classes(task, rows.iter().copied())?);
//!     let log = trainer.step(&tokenizer.encode(&texts)?, &targets, step)?;
//!     println!("step {}: loss {:.4}", log.step, log.loss);
//! }
//! let dev = glue::read(glue::default_dir(), task, glue::Split::Dev)?;
//! let scores = evaluate::evaluate(&trainer.model, &tokenizer, task, &dev, 64, 1)?;
//! println!("{scores:?}");
//! # Ok(())
//! # }
//! ```
//!
//! Parameters are named as in Hugging Face's `BertForSequenceClassification` (`bert.…` for the
//! encoder, `classifier.…` for the head), so the official GLUE script's groups apply as they are:
//! the encoder is pulled towards θ*, the head is not; biases and LayerNorm weights get no decay.

use std::path::Path;
use std::sync::Arc;

use safetensors::SafeTensors;

use crate::bert::{
    backward_with_stats, forward_into, read_tensor, write_tensors, Batch, BertWeights, Cache, Head,
    ModelError, Pass, Rng, Targets,
};
use crate::{
    tensor_grad_stats, CurrentRayonPool, GradStats, Group, Optimizer, Options, ParamId, ParamMut,
    Pretrained,
};

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
    Optimizer(#[from] crate::Error),
}

impl Classifier {
    /// The head weight's shape as Hugging Face stores it, `[outputs, hidden]` (the bias is
    /// `[outputs]`).
    fn head_shape(&self) -> [usize; 2] {
        let outputs = self.head.bias.len();
        [outputs, self.head.weight.len() / outputs.max(1)]
    }

    /// The model as safetensors bytes, under Hugging Face's names (`bert.…`, `classifier.…`).
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let weight_shape = self.head_shape();
        let bias_shape = [weight_shape[0]];
        let head = [
            (
                "classifier.weight".to_string(),
                &weight_shape[..],
                &self.head.weight[..],
            ),
            (
                "classifier.bias".to_string(),
                &bias_shape[..],
                &self.head.bias[..],
            ),
        ];
        write_tensors(self.encoder.tensors(ENCODER).chain(head))
    }

    /// Loads what [`Classifier::to_safetensors_bytes`] wrote (`path` names the bytes in errors):
    /// every tensor, and only those, in f32 with this model's shapes. On an error nothing changes.
    pub fn load_safetensors_bytes(&mut self, bytes: &[u8], path: &Path) -> Result<(), ModelError> {
        let file = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Container {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let mut encoder = self.encoder.data.clone();
        for (name, shape, offset) in self.encoder.layout.entries() {
            let n: usize = shape.iter().product();
            let full = format!("{ENCODER}{name}");
            read_tensor(&file, path, &full, shape, &mut encoder[offset..offset + n])?;
        }
        let weight_shape = self.head_shape();
        let mut weight = self.head.weight.clone();
        let mut bias = self.head.bias.clone();
        read_tensor(&file, path, "classifier.weight", &weight_shape, &mut weight)?;
        read_tensor(
            &file,
            path,
            "classifier.bias",
            &weight_shape[..1],
            &mut bias,
        )?;
        let expected = self.encoder.layout.entries().count() + 2;
        if file.len() != expected {
            return Err(ModelError::Container {
                path: path.into(),
                reason: format!("holds {} tensors, the model has {expected}", file.len()),
            });
        }
        self.encoder.data = encoder;
        self.head.weight = weight;
        self.head.bias = bias;
        Ok(())
    }

    /// Head logits `[batch, outputs]` in evaluation mode.
    pub fn logits(&self, batch: &Batch, threads: usize) -> Result<Vec<f32>, ModelError> {
        let mut cache = Cache::new();
        forward_into(&self.encoder, batch, threads, Pass::Inference, &mut cache)?;
        self.head.logits(cache.pooler_output())
    }

    /// Sentence embeddings `[batch, hidden]`: the last hidden state averaged over the real
    /// tokens, as sentence-transformers' mean pooling.
    pub fn mean_pooled(&self, batch: &Batch, threads: usize) -> Result<Vec<f32>, ModelError> {
        let mut cache = Cache::new();
        forward_into(&self.encoder, batch, threads, Pass::Inference, &mut cache)?;
        let h = self.encoder.config.hidden_size;
        let hidden = cache.last_hidden_state();
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
///
/// Everything runs on the rayon pool the trainer is called from (`pool.install(|| ...)`; the
/// `recadam` program sizes one by `--threads`): the matrix products, the attention and the
/// optimizer step ([`CurrentRayonPool`]); `options.threads` is not used.
pub struct Trainer {
    /// The model, updated in place by every step.
    pub model: Classifier,
    optimizer: Optimizer<'static, f32>,
    pretrained: Arc<[f32]>,
    encoder_ids: Vec<ParamId>,
    head_ids: [ParamId; 2],
    grads: Vec<f32>,
    /// Each gradient's statistics (encoder tensors, then the head's two), written by the
    /// backward pass so that the optimizer's step reads every gradient once.
    stats: Vec<GradStats>,
    /// Activations and the backward pass's buffers, reused from step to step.
    cache: Cache,
    dropout: bool,
}

impl Trainer {
    /// A trainer of `model` towards `pretrained` (θ*, the encoder's pretrained values in the
    /// encoder's layout, shared with the caller) with the official GLUE script's groups.
    /// `dropout` trains with the model's dropout probabilities (Hugging Face's training mode).
    pub fn new(
        model: Classifier,
        pretrained: Arc<[f32]>,
        options: Options,
        dropout: bool,
    ) -> Result<Trainer, TrainError> {
        if pretrained.len() != model.encoder.data.len() {
            return Err(crate::Error::Length {
                name: "θ*".into(),
                what: "pretrained",
                len: pretrained.len(),
                expected: model.encoder.data.len(),
            }
            .into());
        }
        // The optimizer's own pool would be a second one: it runs on the caller's.
        let options = Options {
            threads: 1,
            ..options
        };
        // The kernel: the one RECADAM_BACKEND names, or the best this CPU has.
        let kernel = crate::Kernel::from_env().map_err(crate::Error::from)?;
        let mut optimizer = Optimizer::with_kernel(options, kernel)?;
        optimizer.set_pool(Arc::new(CurrentRayonPool));
        for group in Group::glue_script(ENCODER) {
            optimizer.add_group(group)?;
        }
        let mut encoder_ids = Vec::new();
        for (name, shape, offset) in model.encoder.layout.entries() {
            let n: usize = shape.iter().product();
            let part = Pretrained::SharedPart(pretrained.clone(), offset..offset + n);
            encoder_ids.push(optimizer.register_pretrained(&format!("{ENCODER}{name}"), part)?);
        }
        let head_ids = [
            optimizer.register("classifier.weight", model.head.weight.len())?,
            optimizer.register("classifier.bias", model.head.bias.len())?,
        ];
        let grads = vec![0.0; model.encoder.data.len()];
        let stats = vec![GradStats::EMPTY; model.encoder.layout.tensors() + 2];
        Ok(Trainer {
            model,
            optimizer,
            pretrained,
            encoder_ids,
            head_ids,
            grads,
            stats,
            cache: Cache::new(),
            dropout,
        })
    }

    /// The optimizer (state, λ, checkpoints).
    pub fn optimizer(&self) -> &Optimizer<'static, f32> {
        &self.optimizer
    }

    /// The optimizer, to load a checkpoint into or set the learning rate of.
    pub fn optimizer_mut(&mut self) -> &mut Optimizer<'static, f32> {
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
        let threads = rayon::current_num_threads();
        let pass = if self.dropout {
            Pass::Train { seed }
        } else {
            Pass::Cached
        };
        forward_into(encoder, batch, threads, pass, &mut self.cache)?;
        let p = if self.dropout {
            encoder.config.hidden_dropout_prob
        } else {
            0.0
        };
        let head_out = self.model.head.loss_with_dropout(
            self.cache.pooler_output(),
            targets,
            p,
            seed ^ 0x4845_4144,
        )?;
        self.grads.fill(0.0);
        let kernel = self.optimizer.kernel();
        let (encoder_stats, head_stats) = self.stats.split_at_mut(encoder.layout.tensors());
        backward_with_stats(
            encoder,
            batch,
            &mut self.cache,
            &head_out.d_pooled,
            &mut self.grads,
            encoder_stats,
            kernel,
            threads,
        )?;
        head_stats[0] = tensor_grad_stats(kernel, &head_out.d_weight);
        head_stats[1] = tensor_grad_stats(kernel, &head_out.d_bias);
        let encoder = &mut self.model.encoder;
        let mut params: Vec<ParamMut<'_, f32>> = encoder
            .layout
            .split_mut(&mut encoder.data)?
            .into_iter()
            .zip(encoder.layout.split_mut(&mut self.grads)?)
            .zip(&self.encoder_ids)
            .map(|(((_, value), (_, grad)), &id)| ParamMut::new(id, value, grad))
            .collect();
        params.push(ParamMut::new(
            self.head_ids[0],
            &mut self.model.head.weight,
            &head_out.d_weight,
        ));
        params.push(ParamMut::new(
            self.head_ids[1],
            &mut self.model.head.bias,
            &head_out.d_bias,
        ));
        let report = self.optimizer.step_with_stats(&mut params, &self.stats)?;
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
            .zip(self.pretrained.iter())
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum::<f64>()
            .sqrt()
    }
}

/// A batch order: every epoch a new permutation of the training set, from `seed`.
pub struct Batches {
    rng: Rng,
    order: Vec<usize>,
    next: usize,
    size: usize,
}

impl Batches {
    /// Batches of `size` rows out of `len`.
    pub fn new(len: usize, size: usize, seed: u64) -> Batches {
        Batches {
            rng: Rng::new(seed),
            order: (0..len).collect(),
            next: len,
            size: size.clamp(1, len.max(1)),
        }
    }

    /// The rows of the next batch.
    pub fn next_rows(&mut self) -> Vec<usize> {
        if self.next + self.size > self.order.len() {
            // Fisher-Yates with the seeded generator.
            for i in (1..self.order.len()).rev() {
                let j = (self.rng.next_u64() % (i as u64 + 1)) as usize;
                self.order.swap(i, j);
            }
            self.next = 0;
        }
        let rows = self.order[self.next..self.next + self.size].to_vec();
        self.next += self.size;
        rows
    }
}
