//! A CPU BERT encoder (the mini-BERT of the trainer): configuration and weights from a Hugging
//! Face model folder, its tokenizer, and the forward pass. Written in the style of llm.c: all
//! parameters in one flat buffer with a layout, so that gradients can live in a buffer of the
//! same layout and the optimizer can update named slices of both in place.

mod backward;
mod config;
mod error;
mod forward;
mod heads;
mod math;
mod matmul;
mod par;
mod tokenize;
mod weights;

pub use backward::{backward, backward_into, backward_with_stats};
pub use config::BertConfig;
pub use error::ModelError;
pub use forward::{
    forward, forward_cached, forward_into, forward_train, Cache, ForwardOutput, Pass,
};
pub use heads::{Head, HeadOutput, Targets};
pub use tokenize::{Batch, BertTokenizer};
pub use weights::{read_tensor, write_tensors, BertWeights, LoadReport, ParamLayout, Rng};
