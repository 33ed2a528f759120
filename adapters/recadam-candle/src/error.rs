//! What can go wrong between candle and the optimizer, by name.

/// An error of the candle adapter. The [`candle_nn::Optimizer`] methods return it wrapped in a
/// `candle_core::Error` (whose message is this one's); the inherent methods return it as is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The optimizer refused a configuration, a learning rate, a parameter or a step.
    #[error(transparent)]
    Optimizer(#[from] recadam_std::Error),
    /// A var whose element type is not the optimizer's (`RecAdam<f32>` takes F32 vars only).
    #[error("var `{name}` is {got:?}, but this optimizer updates {want:?} vars (use RecAdam<f64> for F64)")]
    DType {
        /// The var.
        name: String,
        /// Its element type.
        got: candle_core::DType,
        /// The optimizer's.
        want: candle_core::DType,
    },
    /// A var or a gradient that is not in CPU memory.
    #[error("{what} of var `{name}` is on {device:?}: the optimizer updates CPU memory only")]
    NotCpu {
        /// The var.
        name: String,
        /// "the value" or "the gradient".
        what: &'static str,
        /// Where it is.
        device: candle_core::DeviceLocation,
    },
    /// A var without a gradient in the `GradStore` (allow it with [`MissingGrad::Freeze`]).
    ///
    /// [`MissingGrad::Freeze`]: crate::MissingGrad::Freeze
    #[error("var `{0}` has no gradient in this GradStore (MissingGrad::Freeze leaves such vars unchanged instead)")]
    MissingGrad(String),
    /// A gradient or θ* whose shape or element type is not its var's.
    #[error("the {got} of var `{name}` does not match the var, which is {want}")]
    Mismatch {
        /// The var.
        name: String,
        /// What was given: "gradient" or "pretrained tensor", its type and shape.
        got: String,
        /// The var's type and shape.
        want: String,
    },
    /// A var given twice, or two vars over the same memory (their updates would collide).
    #[error("var `{0}` is given twice, or shares its memory with another var")]
    SharedVar(String),
    /// A var whose values are not one contiguous run in memory.
    #[error("var `{0}` is not contiguous: only contiguous vars are updated in place")]
    NotContiguous(String),
    /// An error from candle itself.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl From<Error> for candle_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Candle(e) => e,
            e => candle_core::Error::wrap(e),
        }
    }
}
