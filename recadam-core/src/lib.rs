//! # recadam-core
//!
//! The RecAdam update rule (Chen et al., "Recall and Learn", EMNLP 2020), `no_std` and without an
//! allocator: Adam that fine-tunes a pretrained model while a decoupled quadratic penalty,
//! weighted by a sigmoid-annealed λ(t), pulls it back towards its pretrained weights θ*.
//!
//! The update reproduces the official PyTorch `RecAdam.py` operation for operation, including
//! the four fused multiply-adds PyTorch's CPU kernels perform, so it agrees with the official code
//! to the last bit wherever PyTorch's square root is correctly rounded.
//!
//! - [`RecAdamConfig`]: hyperparameters, defaults and validation ([`Error`] names the field).
//! - [`Annealing`]: λ(t), in `f64`.
//! - [`StepScalars`]: everything per step, computed once in `f64`.
//! - [`update`] over [`Slices`]: the scalar reference every faster backend agrees with bit for bit.
//!
//! ```
//! use recadam_core::{update, RecAdamConfig, Slices, StepScalars};
//!
//! let config = RecAdamConfig { lr: 5e-5, ..RecAdamConfig::default() };
//! let pretrained = vec![0.1f32; 1024];           // θ*, kept by the caller
//! let mut params = pretrained.clone();
//! let (mut m, mut v) = (vec![0.0f32; 1024], vec![0.0f32; 1024]);
//! for t in 1..=3 {
//!     let grads = vec![0.01f32; 1024];           // from the caller's backward pass
//!     let scalars = StepScalars::new(&config, t, config.lr)?;
//!     let slices = Slices::new(&mut params, &grads, &mut m, &mut v, Some(&pretrained))?;
//!     update(&scalars, slices);
//! }
//! # Ok::<(), recadam_core::Error>(())
//! ```
#![no_std]
// No unsafe code, but for the Cortex-M FPU's fused multiply-add and square root (`element`).
#![cfg_attr(not(recadam_arm_fpv4), forbid(unsafe_code))]
#![cfg_attr(recadam_arm_fpv4, deny(unsafe_code))]
#![warn(missing_docs)]

#[cfg(miri)]
extern crate std;

mod anneal;
mod config;
mod element;
mod error;
mod mixed;
mod powi;
mod scalars;
mod storage;
mod update;

pub use anneal::Annealing;
pub use config::{PenaltyMode, RecAdamConfig};
pub use element::Element;
pub use error::Error;
/// The `half` crate, whose `bf16` and `f16` are the [`Storage`] types besides `f32`.
pub use half;
pub use mixed::{update_mixed, MixedSlices};
pub use scalars::{Rule, StepScalars};
pub use storage::{Storage, StorageType};
pub use update::{rule_for, step, update, Slices};
