//! The model configuration, read from the folder's `config.json`.

use std::path::Path;

use serde::Deserialize;

use super::ModelError;

/// A BERT encoder's shape, as Hugging Face's `config.json` gives it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct BertConfig {
    /// Word-piece vocabulary size.
    pub vocab_size: usize,
    /// Width of every token's representation.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads (divides `hidden_size`).
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Longest sequence the position embeddings cover.
    pub max_position_embeddings: usize,
    /// Segment (token type) vocabulary size.
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Activation of the feed-forward layer: only `gelu` (the exact erf form) is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Dropout after embeddings, attention output and feed-forward output.
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout of the attention probabilities.
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
}

fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}

impl BertConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<BertConfig, ModelError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.into(),
            source,
        })?;
        let mut json = serde_json::Deserializer::from_str(&text);
        let config: BertConfig =
            serde_path_to_error::deserialize(&mut json).map_err(|e| ModelError::Config {
                path: path.into(),
                reason: format!("`{}`: {}", e.path(), e.inner()),
            })?;
        config.check().map_err(|reason| ModelError::Config {
            path: path.into(),
            reason,
        })?;
        Ok(config)
    }

    /// Checks that the numbers make a model this implementation runs.
    pub fn check(&self) -> Result<(), String> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(format!("`{name}` must be at least 1"));
        }
        // Bounds that keep every size product and the parameter count inside usize.
        if let Some((name, v)) = sizes.iter().find(|(_, v)| *v > 1 << 24) {
            return Err(format!(
                "`{name}` = {v} is larger than this implementation handles (2^24)"
            ));
        }
        if self.num_hidden_layers > 4096 {
            return Err(format!(
                "`num_hidden_layers` = {} is larger than this implementation handles (4096)",
                self.num_hidden_layers
            ));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "`hidden_size` = {} is not a multiple of `num_attention_heads` = {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.hidden_act != "gelu" {
            return Err(format!(
                "`hidden_act` = {:?}: only \"gelu\" (the exact erf form) is supported",
                self.hidden_act
            ));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(format!(
                "`layer_norm_eps` = {} must be > 0",
                self.layer_norm_eps
            ));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("`{name}` = {p} must be in [0, 1)"));
            }
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}
