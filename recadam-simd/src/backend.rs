//! Which instruction set runs the update: detection, the `RECADAM_BACKEND` override, and the
//! [`Kernel`] handle that proves its backend is available on this CPU.

use core::fmt;

use recadam_core::{Element, MixedSlices, Slices, StepScalars, Storage, StorageType};

use crate::grad_stats::{grad_stats_body, GradStats};
#[cfg(target_arch = "x86_64")]
use crate::stored::Native;

/// An implementation of the update. All of them give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `recadam_core::update`, the reference; also used by CPUs without FMA.
    Scalar,
    /// x86_64 AVX2 with FMA: 8 × f32 or 4 × f64.
    Avx2,
    /// x86_64 AVX-512F: 16 × f32 or 8 × f64.
    Avx512,
    /// aarch64 NEON: 4 × f32 or 2 × f64.
    Neon,
}

impl Backend {
    /// Every backend, fastest last.
    pub const ALL: [Backend; 4] = [
        Backend::Scalar,
        Backend::Neon,
        Backend::Avx2,
        Backend::Avx512,
    ];

    /// The name used by `RECADAM_BACKEND` and in benchmark output.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
            Backend::Neon => "neon",
        }
    }

    /// The backend of that name (`scalar`, `avx2`, `avx512`, `neon`).
    pub fn from_name(name: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Whether this CPU can run it: detected at run time with the `std` feature on x86_64,
    /// otherwise from the target features the crate was compiled with.
    pub fn is_available(self) -> bool {
        match self {
            Backend::Scalar => true,
            Backend::Avx2 => x86_has_avx2_fma(),
            Backend::Avx512 => x86_has_avx512f(),
            Backend::Neon => cfg!(all(
                target_arch = "aarch64",
                target_feature = "neon",
                not(miri)
            )),
        }
    }

    /// The fastest backend this CPU has.
    pub fn best() -> Backend {
        let mut best = Backend::Scalar;
        for b in Backend::ALL {
            if b.is_available() {
                best = b;
            }
        }
        best
    }

    /// The backends this CPU has, scalar first.
    pub fn available() -> impl Iterator<Item = Backend> {
        Backend::ALL.into_iter().filter(|b| b.is_available())
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(all(target_arch = "x86_64", feature = "std", not(miri)))]
fn x86_has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(all(target_arch = "x86_64", feature = "std", not(miri)))]
fn x86_has_f16c() -> bool {
    std::arch::is_x86_feature_detected!("f16c")
}

#[cfg(all(target_arch = "x86_64", not(all(feature = "std", not(miri)))))]
fn x86_has_f16c() -> bool {
    cfg!(target_feature = "f16c")
}

#[cfg(all(target_arch = "x86_64", feature = "std", not(miri)))]
fn x86_has_avx512f() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(all(target_arch = "x86_64", feature = "std", not(miri))))]
fn x86_has_avx2_fma() -> bool {
    // Under Miri only what the build enables: `-C target-feature=+avx2,+fma` lets Miri check
    // the AVX2 kernel's unsafe code with its emulation of those instructions.
    cfg!(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))
}

#[cfg(not(all(target_arch = "x86_64", feature = "std", not(miri))))]
fn x86_has_avx512f() -> bool {
    cfg!(all(target_arch = "x86_64", target_feature = "avx512f"))
}

/// A backend could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendError {
    /// The CPU lacks the instructions of this backend (running it would be an illegal
    /// instruction).
    Unavailable {
        /// The backend asked for.
        backend: Backend,
        /// The best one this CPU has.
        best: Backend,
    },
    /// `RECADAM_BACKEND` names no backend.
    #[cfg(feature = "std")]
    UnknownName(std::string::String),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Unavailable { backend, best } => write!(
                f,
                "the {backend} backend is not available on this CPU (the best it has is {best})"
            ),
            #[cfg(feature = "std")]
            BackendError::UnknownName(name) => write!(
                f,
                "RECADAM_BACKEND={name:?} names no backend: use scalar, avx2, avx512 or neon"
            ),
        }
    }
}

impl core::error::Error for BackendError {}

/// A backend that is available on this CPU: the only way to run a vectorised update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel {
    backend: Backend,
}

impl Kernel {
    /// The kernel of `backend`, or an error if this CPU cannot run it.
    pub fn new(backend: Backend) -> Result<Kernel, BackendError> {
        if backend.is_available() {
            Ok(Kernel { backend })
        } else {
            Err(BackendError::Unavailable {
                backend,
                best: Backend::best(),
            })
        }
    }

    /// The fastest kernel this CPU has.
    pub fn best() -> Kernel {
        Kernel {
            backend: Backend::best(),
        }
    }

    /// The kernel `RECADAM_BACKEND` asks for, or the best one when it is unset or empty.
    #[cfg(feature = "std")]
    pub fn from_env() -> Result<Kernel, BackendError> {
        match std::env::var("RECADAM_BACKEND") {
            Ok(name) if !name.trim().is_empty() => {
                let name = name.trim();
                let backend = Backend::from_name(&name.to_ascii_lowercase())
                    .ok_or_else(|| BackendError::UnknownName(name.into()))?;
                Kernel::new(backend)
            }
            _ => Ok(Kernel::best()),
        }
    }

    /// The backend this kernel runs.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// One RecAdam step over `slices`: exactly the bits of `recadam_core::update`.
    #[inline]
    pub fn update<T: SimdElement>(&self, scalars: &StepScalars<T>, slices: Slices<'_, T>) {
        T::update_on(self, scalars, slices)
    }

    /// One mixed-precision step over `slices` (f32 master parameters; gradients, moments, θ* and
    /// the optional parameter copy each in f32, bf16 or f16): exactly the bits of
    /// `recadam_core::update_mixed`. The AVX2 backend converts f16 with F16C; a CPU with AVX2 but
    /// without F16C (none is known) takes the scalar reference.
    ///
    /// ```
    /// use recadam_core::half::bf16;
    /// use recadam_core::{MixedSlices, RecAdamConfig, StepScalars};
    /// use recadam_simd::Kernel;
    ///
    /// let config = RecAdamConfig::default();
    /// let mut params = vec![0.5f32; 100];
    /// let grads = vec![bf16::from_f32(1e-3); 100];
    /// let (mut m, mut v) = (vec![bf16::ZERO; 100], vec![bf16::ZERO; 100]);
    /// let mut copy = vec![bf16::ZERO; 100];
    /// let scalars = StepScalars::new(&config, 1, config.lr)?;
    /// let slices = MixedSlices::new(&mut params, &grads, &mut m, &mut v, None::<&[f32]>)?
    ///     .with_params_copy(&mut copy)?;
    /// Kernel::best().update_mixed(&scalars, slices);
    /// assert_eq!(copy[7], bf16::from_f32(params[7]));
    /// # Ok::<(), recadam_core::Error>(())
    /// ```
    #[inline]
    pub fn update_mixed<G: Storage, S: Storage, A: Storage, C: Storage>(
        &self,
        scalars: &StepScalars<f32>,
        slices: MixedSlices<'_, G, S, A, C>,
    ) {
        match self.backend {
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => {
                #[target_feature(enable = "avx512f")]
                unsafe fn run<G: Storage, S: Storage, A: Storage, C: Storage>(
                    s: &StepScalars<f32>,
                    slices: MixedSlices<'_, G, S, A, C>,
                ) {
                    // SAFETY: this function has the features of these lanes (AVX-512F implies
                    // F16C).
                    unsafe {
                        crate::kernel::update_mixed_body::<crate::x86::Avx512F32, G, S, A, C>(
                            s, slices,
                        )
                    }
                }
                // SAFETY: a Kernel only holds a backend the CPU was found to support.
                unsafe { run(scalars, slices) }
            }
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 if x86_has_f16c() => {
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn run<G: Storage, S: Storage, A: Storage, C: Storage>(
                    s: &StepScalars<f32>,
                    slices: MixedSlices<'_, G, S, A, C>,
                ) {
                    // SAFETY: this function has the features of these lanes.
                    unsafe {
                        crate::kernel::update_mixed_body::<crate::x86::Avx2F32, G, S, A, C>(
                            s, slices,
                        )
                    }
                }
                // SAFETY: AVX2 and FMA (the backend) and F16C (checked in the match guard).
                unsafe { run(scalars, slices) }
            }
            #[cfg(target_arch = "aarch64")]
            Backend::Neon => {
                // SAFETY: NEON is part of the aarch64 target this was compiled for.
                unsafe {
                    crate::kernel::update_mixed_body::<crate::neon::NeonF32, G, S, A, C>(
                        scalars, slices,
                    )
                }
            }
            _ => recadam_core::update_mixed(scalars, slices),
        }
    }

    /// The benchmarks' memory-bandwidth reference for [`Kernel::update_mixed`]: the same loads
    /// and stores in the same storage types, with one addition per stream. Does nothing without
    /// θ*.
    #[inline]
    pub fn stream_mixed<G: Storage, S: Storage, A: Storage, C: Storage>(
        &self,
        slices: MixedSlices<'_, G, S, A, C>,
    ) {
        match self.backend {
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => {
                #[target_feature(enable = "avx512f")]
                unsafe fn run<G: Storage, S: Storage, A: Storage, C: Storage>(
                    slices: MixedSlices<'_, G, S, A, C>,
                ) {
                    // SAFETY: as in update_mixed.
                    unsafe {
                        crate::kernel::stream_mixed_body::<crate::x86::Avx512F32, G, S, A, C>(
                            slices,
                        )
                    }
                }
                // SAFETY: a Kernel only holds a backend the CPU was found to support.
                unsafe { run(slices) }
            }
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 if x86_has_f16c() => {
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn run<G: Storage, S: Storage, A: Storage, C: Storage>(
                    slices: MixedSlices<'_, G, S, A, C>,
                ) {
                    // SAFETY: as in update_mixed.
                    unsafe {
                        crate::kernel::stream_mixed_body::<crate::x86::Avx2F32, G, S, A, C>(slices)
                    }
                }
                // SAFETY: AVX2 and FMA (the backend) and F16C (checked in the match guard).
                unsafe { run(slices) }
            }
            #[cfg(target_arch = "aarch64")]
            Backend::Neon => {
                // SAFETY: NEON is part of the aarch64 target this was compiled for.
                unsafe {
                    crate::kernel::stream_mixed_body::<crate::neon::NeonF32, G, S, A, C>(slices)
                }
            }
            _ => scalar_stream_mixed(slices),
        }
    }

    /// Σ g² (in `f64`, in a fixed order) and whether every gradient is finite: the same bits on
    /// every backend (see [`GradStats`]).
    #[inline]
    pub fn grad_stats<T: SimdElement>(&self, grads: &[T]) -> GradStats {
        T::grad_stats_on(self, grads)
    }

    /// [`Kernel::grad_stats`] of gradients stored as f32, bf16 or f16: the statistics of their
    /// exact f32 values, with the bits `grad_stats` gives for those values (the guard of a
    /// mixed-precision step reads 16-bit gradients as the f32 step reads f32 ones).
    ///
    /// ```
    /// use recadam_core::half::bf16;
    /// use recadam_simd::Kernel;
    ///
    /// let k = Kernel::best();
    /// let g = [bf16::from_f32(3.0), bf16::from_f32(4.0)];
    /// assert_eq!(k.grad_stats_stored(&g), k.grad_stats(&[3.0f32, 4.0]));
    /// assert!(!k.grad_stats_stored(&[bf16::NAN]).finite);
    /// ```
    #[inline]
    pub fn grad_stats_stored<G: Storage>(&self, grads: &[G]) -> GradStats {
        if G::TYPE == StorageType::F32 {
            // SAFETY: `Storage` is sealed; the one type whose TYPE is F32 is f32 itself, so the
            // slice is an f32 slice of the same length.
            let grads =
                unsafe { core::slice::from_raw_parts(grads.as_ptr().cast::<f32>(), grads.len()) };
            return self.grad_stats(grads);
        }
        crate::grad_stats::stored_stats_body(grads)
    }

    /// The benchmarks' memory-bandwidth reference: the update's memory shape (reads p, g, m, v,
    /// θ*; writes p, m, v in place) with one addition per stream. Does nothing without θ*.
    #[inline]
    pub fn stream<T: SimdElement>(&self, slices: Slices<'_, T>) {
        T::stream_on(self, slices)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// `f32` and `f64`: the element types with vectorised kernels.
pub trait SimdElement: Element + sealed::Sealed {
    #[doc(hidden)]
    fn update_on(kernel: &Kernel, scalars: &StepScalars<Self>, slices: Slices<'_, Self>);
    #[doc(hidden)]
    fn stream_on(kernel: &Kernel, slices: Slices<'_, Self>);
    #[doc(hidden)]
    fn grad_stats_on(kernel: &Kernel, grads: &[Self]) -> GradStats;
}

/// Defines the `#[target_feature]` entry points of one element type and its `SimdElement` impl.
macro_rules! simd_element {
    ($elem:ty, avx512 = $avx512:ident, avx2 = $avx2:ident, neon = $neon:ident) => {
        impl SimdElement for $elem {
            #[inline]
            fn update_on(kernel: &Kernel, s: &StepScalars<$elem>, slices: Slices<'_, $elem>) {
                match kernel.backend {
                    #[cfg(target_arch = "x86_64")]
                    Backend::Avx512 => {
                        #[target_feature(enable = "avx512f")]
                        unsafe fn run(s: &StepScalars<$elem>, slices: Slices<'_, $elem>) {
                            let arrays = crate::kernel::Pointers::of(slices);
                            // SAFETY: this function has the features of both lanes (AVX-512F
                            // implies AVX2 and FMA); the arrays come from the live slices.
                            unsafe {
                                if arrays.share_offset(64) {
                                    crate::kernel::update_arrays::<
                                        crate::x86::$avx512,
                                        Native,
                                        Native,
                                        Native,
                                        Native,
                                    >(s, arrays)
                                } else {
                                    crate::kernel::update_arrays::<
                                        crate::x86::$avx2,
                                        Native,
                                        Native,
                                        Native,
                                        Native,
                                    >(s, arrays)
                                }
                            }
                        }
                        // SAFETY: a Kernel only holds a backend the CPU was found to support.
                        unsafe { run(s, slices) }
                    }
                    #[cfg(target_arch = "x86_64")]
                    Backend::Avx2 => {
                        #[target_feature(enable = "avx2,fma")]
                        unsafe fn run(s: &StepScalars<$elem>, slices: Slices<'_, $elem>) {
                            // SAFETY: this function has the features of these lanes.
                            unsafe { crate::kernel::update_body::<crate::x86::$avx2>(s, slices) }
                        }
                        // SAFETY: a Kernel only holds a backend the CPU was found to support.
                        unsafe { run(s, slices) }
                    }
                    #[cfg(target_arch = "aarch64")]
                    Backend::Neon => {
                        // SAFETY: NEON is part of the aarch64 target this was compiled for.
                        unsafe { crate::kernel::update_body::<crate::neon::$neon>(s, slices) }
                    }
                    _ => recadam_core::update(s, slices),
                }
            }

            #[inline]
            fn stream_on(kernel: &Kernel, slices: Slices<'_, $elem>) {
                match kernel.backend {
                    #[cfg(target_arch = "x86_64")]
                    Backend::Avx512 => {
                        #[target_feature(enable = "avx512f")]
                        unsafe fn run(slices: Slices<'_, $elem>) {
                            let arrays = crate::kernel::Pointers::of(slices);
                            // SAFETY: as for the update above.
                            unsafe {
                                if arrays.share_offset(64) {
                                    crate::kernel::stream_arrays::<crate::x86::$avx512>(arrays)
                                } else {
                                    crate::kernel::stream_arrays::<crate::x86::$avx2>(arrays)
                                }
                            }
                        }
                        // SAFETY: a Kernel only holds a backend the CPU was found to support.
                        unsafe { run(slices) }
                    }
                    #[cfg(target_arch = "x86_64")]
                    Backend::Avx2 => {
                        #[target_feature(enable = "avx2,fma")]
                        unsafe fn run(slices: Slices<'_, $elem>) {
                            // SAFETY: this function has the features of these lanes.
                            unsafe { crate::kernel::stream_body::<crate::x86::$avx2>(slices) }
                        }
                        // SAFETY: a Kernel only holds a backend the CPU was found to support.
                        unsafe { run(slices) }
                    }
                    #[cfg(target_arch = "aarch64")]
                    Backend::Neon => {
                        // SAFETY: NEON is part of the aarch64 target this was compiled for.
                        unsafe { crate::kernel::stream_body::<crate::neon::$neon>(slices) }
                    }
                    _ => scalar_stream(slices),
                }
            }

            #[inline]
            fn grad_stats_on(kernel: &Kernel, grads: &[$elem]) -> GradStats {
                match kernel.backend {
                    #[cfg(target_arch = "x86_64")]
                    Backend::Avx512 => {
                        #[target_feature(enable = "avx512f")]
                        fn run(grads: &[$elem]) -> GradStats {
                            // SAFETY: this function has the features of these lanes.
                            unsafe {
                                crate::grad_stats::grad_stats_lanes::<crate::x86::Avx512F64, $elem>(
                                    grads,
                                )
                            }
                        }
                        // SAFETY: a Kernel only holds a backend the CPU was found to support.
                        unsafe { run(grads) }
                    }
                    #[cfg(target_arch = "x86_64")]
                    Backend::Avx2 => {
                        #[target_feature(enable = "avx2,fma")]
                        fn run(grads: &[$elem]) -> GradStats {
                            // SAFETY: this function has the features of these lanes.
                            unsafe {
                                crate::grad_stats::grad_stats_lanes::<crate::x86::Avx2F64, $elem>(
                                    grads,
                                )
                            }
                        }
                        // SAFETY: a Kernel only holds a backend the CPU was found to support.
                        unsafe { run(grads) }
                    }
                    #[cfg(target_arch = "aarch64")]
                    Backend::Neon => {
                        // SAFETY: NEON is part of the aarch64 target this was compiled for.
                        unsafe {
                            crate::grad_stats::grad_stats_lanes::<crate::neon::NeonF64, $elem>(
                                grads,
                            )
                        }
                    }
                    _ => grad_stats_body(grads),
                }
            }
        }
    };
}

simd_element!(f32, avx512 = Avx512F32, avx2 = Avx2F32, neon = NeonF32);
simd_element!(f64, avx512 = Avx512F64, avx2 = Avx2F64, neon = NeonF64);

/// The streaming reference on one element at a time (the scalar backend).
pub(crate) fn scalar_stream<T: Element>(slices: Slices<'_, T>) {
    let (p, g, m, v, pp) = slices.into_parts();
    let Some(pp) = pp else { return };
    for i in 0..p.len() {
        m[i] = m[i] + g[i];
        v[i] = v[i] + g[i];
        p[i] = p[i] + pp[i];
    }
}

/// The mixed streaming reference one element at a time (the scalar backend).
fn scalar_stream_mixed<G: Storage, S: Storage, A: Storage, C: Storage>(
    slices: MixedSlices<'_, G, S, A, C>,
) {
    let (p, g, m, v, pp, mut copy) = slices.into_parts();
    let Some(pp) = pp else { return };
    for i in 0..p.len() {
        m[i] = S::narrow(m[i].widen() + g[i].widen());
        v[i] = S::narrow(v[i].widen() + g[i].widen());
        p[i] += pp[i].widen();
        if let Some(copy) = copy.as_deref_mut() {
            copy[i] = C::narrow(p[i]);
        }
    }
}
