//! The mixed-precision storage modes (`Kernel::update_mixed`), each against a streaming kernel
//! that moves the same bytes in the same storage types (`Kernel::stream_mixed`), the two timed
//! in alternation (`time_interleaved`), one thread.
//!
//!     cargo run --release -p benches --bin storage            # a table
//!     cargo run --release -p benches --bin storage -- --json  # one JSON object per line
//!     cargo run --release -p benches --bin storage -- --quick # 2^16 and 2^22 only
//!
//! `RECADAM_BACKEND` picks the backend (the best one by default).

use std::time::Duration;

use benches::{config, time_interleaved, NORMAL_STEP};
use recadam_core::half::{bf16, f16};
use recadam_core::{MixedSlices, StepScalars, Storage};
use recadam_simd::Kernel;
use serde_json::json;

/// The arrays of one mode: f32 parameters, `G` gradients, `S` moments, `A` θ*, `C` copy.
struct Arrays<G, S, A, C> {
    p: Vec<f32>,
    g: Vec<G>,
    m: Vec<S>,
    v: Vec<S>,
    pp: Vec<A>,
    copy: Option<Vec<C>>,
}

impl<G: Storage, S: Storage, A: Storage, C: Storage> Arrays<G, S, A, C> {
    fn new(n: usize, with_copy: bool) -> Self {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let pp: Vec<f32> = (0..n).map(|_| uniform() * 0.04).collect();
        let p = pp.iter().map(|x| x + uniform() * 1e-4).collect();
        let g: Vec<f32> = (0..n).map(|_| uniform() * 1e-3).collect();
        Arrays {
            p,
            m: g.iter().map(|x| S::narrow(x * 0.5)).collect(),
            v: g.iter().map(|x| S::narrow(x * x)).collect(),
            g: g.into_iter().map(G::narrow).collect(),
            pp: pp.into_iter().map(A::narrow).collect(),
            copy: with_copy.then(|| vec![C::default(); n]),
        }
    }

    /// The slices without the copy.
    fn plain(&mut self) -> MixedSlices<'_, G, S, A> {
        MixedSlices::new(
            &mut self.p,
            &self.g,
            &mut self.m,
            &mut self.v,
            Some(&self.pp),
        )
        .expect("arrays of one length")
    }

    /// The slices with the copy (the arrays were made with one).
    fn with_copy(&mut self) -> MixedSlices<'_, G, S, A, C> {
        let copy = self.copy.as_mut().expect("made with a copy");
        MixedSlices::new(
            &mut self.p,
            &self.g,
            &mut self.m,
            &mut self.v,
            Some(&self.pp),
        )
        .and_then(|s| s.with_params_copy(copy))
        .expect("arrays of one length")
    }

    /// Bytes read and written per parameter.
    fn bytes_per_param(&self) -> usize {
        let (g, s, a) = (size::<G>(), size::<S>(), size::<A>());
        let copy = if self.copy.is_some() { size::<C>() } else { 0 };
        (4 + g + 2 * s + a) + (4 + 2 * s + copy)
    }
}

/// A function the benchmark times.
type Timed<'a> = Box<dyn FnMut() + 'a>;

fn size<T>() -> usize {
    std::mem::size_of::<T>()
}

fn measure<G: Storage, S: Storage, A: Storage, C: Storage>(
    kernel: Kernel,
    mode: &str,
    n: usize,
    with_copy: bool,
    json: bool,
) {
    let config = config();
    let scalars = StepScalars::<f32>::new(&config, NORMAL_STEP, config.lr).unwrap();
    let mut update_arrays = Arrays::<G, S, A, C>::new(n, with_copy);
    let mut stream_arrays = Arrays::<G, S, A, C>::new(n, with_copy);
    let bytes = update_arrays.bytes_per_param();
    let (ua, sa) = (&mut update_arrays, &mut stream_arrays);
    let (mut update, mut stream): (Timed, Timed) = if with_copy {
        (
            Box::new(|| kernel.update_mixed(&scalars, ua.with_copy())),
            Box::new(|| kernel.stream_mixed(sa.with_copy())),
        )
    } else {
        (
            Box::new(|| kernel.update_mixed(&scalars, ua.plain())),
            Box::new(|| kernel.stream_mixed(sa.plain())),
        )
    };
    let (batch, rounds) = if n >= 1 << 22 {
        (Duration::from_millis(150), 5)
    } else {
        (Duration::from_millis(40), 9)
    };
    let timing = time_interleaved(&mut [&mut *stream, &mut *update], batch, rounds);
    let ratio = timing.speedup(1, 0); // the stream's time over the update's
    let ns = timing.seconds[1] * 1e9 / n as f64;
    let gbps = bytes as f64 * n as f64 / timing.seconds[1] / 1e9;
    let limit = bytes as f64 * n as f64 / timing.seconds[0] / 1e9;
    if json {
        println!(
            "{}",
            json!({"mode": mode, "backend": kernel.backend().name(), "n": n, "threads": 1,
                   "bytes_per_param": bytes, "ns_per_param": ns, "gbps": gbps,
                   "limit_gbps": limit, "ratio": ratio, "rounds": rounds})
        );
    } else {
        println!(
            "{:<28} {:>6} {:>5} {:>9.3} {:>8.2} {:>10.2} {:>7.3}",
            mode,
            format!("2^{}", n.trailing_zeros()),
            bytes,
            ns,
            gbps,
            limit,
            ratio
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let kernel = Kernel::from_env().unwrap_or_else(|e| {
        eprintln!("storage: {e}");
        std::process::exit(2);
    });
    let sizes: Vec<usize> = if quick {
        vec![1 << 16, 1 << 22]
    } else {
        vec![1 << 16, 1 << 20, 1 << 24]
    };
    if !json {
        println!(
            "recadam storage modes on {}, 1 thread; limit = a stream moving the same bytes",
            kernel.backend()
        );
        println!(
            "{:<28} {:>6} {:>5} {:>9} {:>8} {:>10} {:>7}",
            "mode (grads/state/θ*/copy)", "n", "B/p", "ns/param", "GB/s", "limit GB/s", "ratio"
        );
    }
    for n in sizes {
        measure::<f32, f32, f32, f32>(kernel, "f32/f32/f32/-", n, false, json);
        measure::<bf16, f32, f32, bf16>(kernel, "bf16/f32/f32/bf16", n, true, json);
        measure::<f16, f32, f32, f16>(kernel, "f16/f32/f32/f16", n, true, json);
        measure::<f32, f32, bf16, f32>(kernel, "f32/f32/bf16/-", n, false, json);
        measure::<bf16, bf16, bf16, bf16>(kernel, "bf16/bf16/bf16/bf16", n, true, json);
    }
}
