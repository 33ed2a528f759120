//! Task heads on the pooler output: classification (softmax cross-entropy) and regression
//! (mean squared error), each with its loss and gradients, as `BertForSequenceClassification`.

use super::ModelError;

/// What a batch is trained to predict.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// Class indices, for a classification head.
    Labels(Vec<usize>),
    /// Real values, for a regression head (one output).
    Values(Vec<f32>),
}

/// A head: `logits = pooled · Wᵀ + b`, W `[outputs, hidden]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    /// `[outputs, hidden]`.
    pub weight: Vec<f32>,
    /// `[outputs]`.
    pub bias: Vec<f32>,
}

/// The head's output, loss, and gradients.
#[derive(Clone, Debug)]
pub struct HeadOutput {
    /// `[batch, outputs]`.
    pub logits: Vec<f32>,
    /// The batch-mean loss.
    pub loss: f32,
    /// d loss / d pooled, `[batch, hidden]`.
    pub d_pooled: Vec<f32>,
    /// d loss / d W.
    pub d_weight: Vec<f32>,
    /// d loss / d b.
    pub d_bias: Vec<f32>,
}

impl Head {
    /// A head with `outputs` outputs, weights normal(0, 0.02) from `seed`, zero bias.
    pub fn new(outputs: usize, hidden: usize, seed: u64) -> Head {
        let mut rng = super::weights::Rng::new(seed);
        Head {
            weight: (0..outputs * hidden)
                .map(|_| rng.normal() as f32 * 0.02)
                .collect(),
            bias: vec![0.0; outputs],
        }
    }

    /// `(outputs, hidden)`, checked: the fields are public, so a head can be built wrong.
    fn dims(&self) -> Result<(usize, usize), ModelError> {
        let outputs = self.bias.len();
        if outputs == 0 || self.weight.is_empty() || !self.weight.len().is_multiple_of(outputs) {
            return Err(ModelError::Input(format!(
                "a head with {} weights and {outputs} biases (weights must be [outputs, hidden])",
                self.weight.len()
            )));
        }
        Ok((outputs, self.weight.len() / outputs))
    }

    /// `(outputs, hidden, batch)` for `pooled`, which must hold whole rows.
    fn batch_dims(&self, pooled: &[f32]) -> Result<(usize, usize, usize), ModelError> {
        let (outputs, hidden) = self.dims()?;
        if !pooled.len().is_multiple_of(hidden) {
            return Err(ModelError::Input(format!(
                "{} pooled values are not whole rows of the head's width {hidden}",
                pooled.len()
            )));
        }
        Ok((outputs, hidden, pooled.len() / hidden))
    }

    /// Logits only (evaluation).
    pub fn logits(&self, pooled: &[f32]) -> Result<Vec<f32>, ModelError> {
        let (outputs, hidden, _) = self.batch_dims(pooled)?;
        Ok(self.logits_unchecked(pooled, outputs, hidden))
    }

    fn logits_unchecked(&self, pooled: &[f32], outputs: usize, hidden: usize) -> Vec<f32> {
        pooled
            .chunks_exact(hidden)
            .flat_map(|x| {
                (0..outputs).map(move |o| {
                    self.bias[o]
                        + x.iter()
                            .zip(&self.weight[o * hidden..])
                            .map(|(a, w)| a * w)
                            .sum::<f32>()
                })
            })
            .collect()
    }

    /// Training mode: dropout with probability `p` on the pooled output (masks from `seed`), as
    /// `BertForSequenceClassification` applies before its classifier; `d_pooled` is the gradient
    /// with respect to the pooled output before dropout.
    pub fn loss_with_dropout(
        &self,
        pooled: &[f32],
        targets: &Targets,
        p: f64,
        seed: u64,
    ) -> Result<HeadOutput, ModelError> {
        if !(0.0..1.0).contains(&p) {
            return Err(ModelError::Input(format!(
                "dropout probability {p} is outside [0, 1)"
            )));
        }
        let mut mask = Vec::new();
        let mut rng = super::weights::Rng::new(seed);
        super::forward::dropout_mask(&mut rng, &mut mask, pooled.len(), p, 1);
        let mut dropped = pooled.to_vec();
        super::forward::apply_mask(&mut dropped, &mask, 1);
        let mut out = self.loss(&dropped, targets)?;
        super::forward::apply_mask(&mut out.d_pooled, &mask, 1);
        Ok(out)
    }

    /// Logits, batch-mean loss and gradients for `targets`: one target per pooled row, class
    /// labels below the head's outputs, or values for a one-output head.
    pub fn loss(&self, pooled: &[f32], targets: &Targets) -> Result<HeadOutput, ModelError> {
        let (outputs, hidden, batch) = self.batch_dims(pooled)?;
        let (count, fits) = match targets {
            Targets::Labels(labels) => (labels.len(), labels.iter().all(|&l| l < outputs)),
            Targets::Values(values) => (values.len(), outputs == 1),
        };
        if count != batch || !fits {
            return Err(ModelError::Input(format!(
                "{count} targets ({}) for {batch} rows and a head of {outputs} outputs",
                match targets {
                    Targets::Labels(_) => "class labels, each below the outputs",
                    Targets::Values(_) => "values, for one output",
                }
            )));
        }
        let logits = self.logits_unchecked(pooled, outputs, hidden);
        let mut d_logits = vec![0.0f32; logits.len()];
        let mut loss = 0.0f64;
        match targets {
            Targets::Labels(labels) => {
                for (b, row) in logits.chunks_exact(outputs).enumerate() {
                    let max = row.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x)) as f64;
                    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
                    let log_z = max + sum.ln();
                    loss += log_z - row[labels[b]] as f64;
                    for o in 0..outputs {
                        let p = ((row[o] as f64 - log_z).exp()) as f32;
                        d_logits[b * outputs + o] = (p - f32::from(o == labels[b])) / batch as f32;
                    }
                }
            }
            Targets::Values(values) => {
                for (b, row) in logits.chunks_exact(outputs).enumerate() {
                    let diff = row[0] - values[b];
                    loss += (diff as f64).powi(2);
                    d_logits[b * outputs] = 2.0 * diff / batch as f32;
                }
            }
        }
        let mut d_pooled = vec![0.0f32; pooled.len()];
        let mut d_weight = vec![0.0f32; self.weight.len()];
        let mut d_bias = vec![0.0f32; outputs];
        for b in 0..batch {
            let x = &pooled[b * hidden..(b + 1) * hidden];
            for o in 0..outputs {
                let g = d_logits[b * outputs + o];
                d_bias[o] += g;
                let w = &self.weight[o * hidden..(o + 1) * hidden];
                for j in 0..hidden {
                    d_weight[o * hidden + j] += g * x[j];
                    d_pooled[b * hidden + j] += g * w[j];
                }
            }
        }
        Ok(HeadOutput {
            logits,
            loss: (loss / batch as f64) as f32,
            d_pooled,
            d_weight,
            d_bias,
        })
    }
}
