//! # recadam-burn
//!
//! RecAdam ("Recall and Learn", Chen et al., EMNLP 2020) for [burn](https://burn.dev): Adam that
//! fine-tunes a pretrained model while pulling it back towards its pretrained weights θ*, through
//! `recadam-std`'s step (the same bits as the scalar reference, on the best SIMD kernel of the
//! CPU, on one thread or several).
//!
//! [`RecAdam`] implements [`burn::optim::Optimizer`], burn's per-tensor optimizer trait, so it
//! becomes burn's [`ModuleOptimizer`](burn::optim::ModuleOptimizer): the type burn's learner
//! trains with and checkpoints. Each parameter's m, v, θ* and step count are its optimizer state,
//! saved and loaded with burn's optimizer records. θ* is the parameter's value when it first
//! gets a gradient, which is the pretrained weight when fine-tuning starts.
//!
//! [`RecAdamOptimizer`] wraps that module optimizer for a training loop of your own: groups by
//! name ([`RecAdamOptimizer::glue_script`]: the encoder pulled towards θ*, the head not, no decay
//! on biases and LayerNorm weights) and [`RecAdamOptimizer::try_step`], which checks the whole
//! step (element types, gradients present, of the right shape and finite, the learning rate)
//! and returns an [`Error`] before anything changes.
//!
//! ```
//! use burn::module::{Module, Param};
//! use burn::optim::GradientsParams;
//! use burn::tensor::{Device, Tensor};
//! use recadam_burn::{Annealing, RecAdam, RecAdamConfig, RecAdamOptimizer};
//!
//! #[derive(Module, Debug)]
//! struct Model {
//!     weight: Param<Tensor<1>>,
//! }
//!
//! // burn's optimizers step trainable (autodiff) parameters (burn's `autodiff` feature).
//! let device = Device::default().autodiff();
//! let mut model = Model { weight: Param::from_tensor(Tensor::from_floats([0.5, -0.5], &device)) };
//! // λ = w from the first step: the task gradient moves the weights at once.
//! let config = RecAdamConfig { annealing: Annealing::Constant, ..RecAdamConfig::default() };
//! let mut optim = RecAdamOptimizer::new(RecAdam::new(config)?);
//! for _ in 0..3 {
//!     let mut grads = GradientsParams::new();
//!     // As backward gives them: on the device without autodiff.
//!     let grad = Tensor::<1>::from_floats([0.1, -0.2], &device.clone().inner());
//!     grads.register(model.weight.id, grad);
//!     model = optim.try_step(2e-5, model, grads)?.module;
//! }
//! let w: Vec<f32> = model.weight.val().into_data().try_to_vec().unwrap();
//! assert!(w[0] < 0.5 && w[1] > -0.5);
//! # Ok::<(), recadam_burn::Error>(())
//! ```

mod element;
mod error;
mod module;
mod optimizer;

pub use element::Element;
pub use error::Error;
pub use module::{MissingGrad, RecAdamOptimizer, Stepped};
pub use optimizer::{RecAdam, RecAdamState, StateView};
/// The hyperparameters (recadam-core's), and the non-finite gradient policy.
pub use recadam_core::{Annealing, RecAdamConfig};
pub use recadam_std::NonFiniteGuard;
