//! What can go wrong between burn and the optimizer, by name.

use burn::tensor::DType;

/// An error of the burn adapter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The optimizer refused a configuration, a learning rate or a step.
    #[error(transparent)]
    Optimizer(#[from] recadam_std::Error),
    /// A group's path pattern that cannot be one (the head of [`RecAdamOptimizer::glue_script`]).
    ///
    /// [`RecAdamOptimizer::glue_script`]: crate::RecAdamOptimizer::glue_script
    #[error("bad parameter group: {0}")]
    Group(String),
    /// A parameter that is neither F32 nor F64.
    #[error("parameter `{name}` is {got:?}: RecAdam updates F32 and F64 parameters")]
    DType {
        /// The parameter's path in the module.
        name: String,
        /// Its element type.
        got: DType,
    },
    /// A parameter that requires a gradient and has none (allow it with [`MissingGrad::Freeze`]).
    ///
    /// [`MissingGrad::Freeze`]: crate::MissingGrad::Freeze
    #[error("parameter `{0}` has no gradient (MissingGrad::Freeze leaves such parameters unchanged instead)")]
    MissingGrad(String),
    /// A gradient, or a loaded state, whose shape or element type is not its parameter's.
    #[error("the {got} of parameter `{name}` does not match the parameter, which is {want}")]
    Mismatch {
        /// The parameter.
        name: String,
        /// What was given, its type and shape.
        got: String,
        /// The parameter's type and shape.
        want: String,
    },
    /// A gradient holding NaN or an infinity, with [`NonFiniteGuard::Refuse`].
    ///
    /// [`NonFiniteGuard::Refuse`]: crate::NonFiniteGuard::Refuse
    #[error("the gradient of parameter `{0}` holds NaN or an infinity")]
    NonFiniteGradient(String),
    /// burn could not read a tensor's values.
    #[error("burn could not read {what}: {message}")]
    Read {
        /// Which tensor.
        what: String,
        /// burn's message.
        message: String,
    },
}
