//! # recadam-candle
//!
//! RecAdam ("Recall and Learn", Chen et al., EMNLP 2020) as a [`candle_nn::Optimizer`]: Adam
//! that fine-tunes a pretrained model while pulling it back towards its pretrained weights θ*,
//! through `recadam-std`'s step (the same bits as the scalar reference, on the best SIMD kernel
//! of the CPU, on one thread or several).
//!
//! [`RecAdam`] updates the `Var`s' CPU memory in place: no var, gradient or moment is copied.
//! It takes vars from a `Vec<Var>` (the trait's `new`), by name ([`RecAdam::new_named`]), or
//! from a `VarMap` ([`RecAdam::from_varmap`]) with groups chosen by name
//! ([`ParamsRecAdam::glue_script`]: the encoder pulled towards θ*, the head not, no decay on
//! biases and LayerNorm weights). `set_learning_rate` is the step's learning rate, as for
//! candle's own optimizers.

mod element;
mod error;
mod in_place;
mod optimizer;

pub use element::Element;
pub use error::Error;
pub use optimizer::{MissingGrad, ParamsRecAdam, RecAdam};
/// The types a configuration is made of.
pub use recadam_std::{Distances, Group, NonFiniteGuard, Selector, StepReport};
