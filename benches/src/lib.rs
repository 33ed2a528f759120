//! Shared pieces of the recadam benchmarks: realistic buffers, a robust timer, the C reference
//! loop, and the memory-bandwidth limit measured in the same run.

use std::time::{Duration, Instant};

use recadam_core::{Annealing, RecAdamConfig, Slices, StepScalars};
use recadam_simd::Kernel;

/// Bytes moved per f32 parameter by one update: p, g, m, v, θ* read (20), p, m, v written (12).
pub const BYTES_PER_PARAM_F32: f64 = 32.0;

/// The paper-like configuration of the benchmarks (k 0.5, t0 250, lr 5e-5, wd 0.01): its
/// Adam-step scalar f(−s·λ) is subnormal in f32 at steps 65-97.
pub fn config() -> RecAdamConfig {
    RecAdamConfig {
        lr: 5e-5,
        weight_decay: 0.01,
        annealing: Annealing::Sigmoid { k: 0.5, t0: 250.0 },
        ..RecAdamConfig::default()
    }
}

/// A step whose scalars are all normal numbers.
pub const NORMAL_STEP: u64 = 300;
/// A step whose Adam-step scalar is subnormal in f32.
pub const SUBNORMAL_STEP: u64 = 80;

/// The five buffers of one f32 parameter tensor, filled with realistic values.
#[derive(Clone)]
pub struct Buffers {
    pub p: Vec<f32>,
    pub g: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub pp: Vec<f32>,
}

impl Buffers {
    /// BERT-like weights (|θ*| ~ 0.02), gradients ~ 1e-3, moments of a run in progress.
    pub fn new(n: usize) -> Buffers {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let pp: Vec<f32> = (0..n).map(|_| uniform() * 0.04).collect();
        let p: Vec<f32> = pp.iter().map(|x| x + uniform() * 1e-4).collect();
        let g: Vec<f32> = (0..n).map(|_| uniform() * 1e-3).collect();
        let m: Vec<f32> = g.iter().map(|x| x * 0.5).collect();
        let v: Vec<f32> = g.iter().map(|x| x * x).collect();
        Buffers { p, g, m, v, pp }
    }

    /// Copies `other`'s values into these buffers (same length), so that each measurement
    /// starts from the same realistic state.
    pub fn reset_from(&mut self, other: &Buffers) {
        self.p.copy_from_slice(&other.p);
        self.g.copy_from_slice(&other.g);
        self.m.copy_from_slice(&other.m);
        self.v.copy_from_slice(&other.v);
        self.pp.copy_from_slice(&other.pp);
    }

    pub fn slices(&mut self) -> Slices<'_, f32> {
        Slices::new(
            &mut self.p,
            &self.g,
            &mut self.m,
            &mut self.v,
            Some(&self.pp),
        )
        .expect("buffers of one length")
    }
}

/// Warms `f` up, then how many calls of it last about `batch`.
fn calls_per_batch(f: &mut dyn FnMut(), batch: Duration) -> usize {
    f(); // warm the caches and the page tables
    let start = Instant::now();
    f();
    let once = start.elapsed().as_secs_f64().max(1e-9);
    ((batch.as_secs_f64() / once).ceil() as usize).max(1)
}

/// Seconds per call over a batch of `calls` calls of `f`.
fn seconds_per_call(f: &mut dyn FnMut(), calls: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..calls {
        f();
    }
    start.elapsed().as_secs_f64() / calls as f64
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Median seconds per call of `f`, over `batches` batches of calls lasting about `batch` each.
pub fn time_per_call(mut f: impl FnMut(), batch: Duration, batches: usize) -> f64 {
    let calls = calls_per_batch(&mut f, batch);
    median(
        (0..batches.max(1))
            .map(|_| seconds_per_call(&mut f, calls))
            .collect(),
    )
}

/// Several functions timed in alternation: see [`time_interleaved`].
#[derive(Clone, Debug)]
pub struct Interleaved {
    /// Median seconds per call of each function.
    pub seconds: Vec<f64>,
    /// For each function k, the median over rounds of (k's time / the first function's time)
    /// within a round: the first function's speed relative to k's (1.0 for k = 0).
    pub relative_speed: Vec<f64>,
    /// Seconds per call of each function, one sample per round.
    pub samples: Vec<Vec<f64>>,
}

impl Interleaved {
    /// The median over rounds of (function `slow`'s time / function `fast`'s time) within a
    /// round: how many times faster `fast` ran than `slow`.
    pub fn speedup(&self, fast: usize, slow: usize) -> f64 {
        median(
            self.samples[slow]
                .iter()
                .zip(&self.samples[fast])
                .map(|(s, f)| s / f)
                .collect(),
        )
    }
}

/// Times `fs` in alternating batches of about `batch` each, forwards then backwards (0 1 2,
/// 2 1 0, …), for `rounds` rounds. A shared host's memory bandwidth drifts by 10% and more
/// within a minute; ratios taken within one round see the same machine on every side, where
/// medians taken seconds apart need not.
pub fn time_interleaved(
    fs: &mut [&mut dyn FnMut()],
    batch: Duration,
    rounds: usize,
) -> Interleaved {
    let calls: Vec<usize> = fs.iter_mut().map(|f| calls_per_batch(*f, batch)).collect();
    let mut samples = vec![Vec::with_capacity(rounds); fs.len()];
    for round in 0..rounds.max(1) {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..fs.len()).collect()
        } else {
            (0..fs.len()).rev().collect()
        };
        for k in order {
            samples[k].push(seconds_per_call(fs[k], calls[k]));
        }
    }
    Interleaved {
        seconds: samples.iter().map(|s| median(s.clone())).collect(),
        relative_speed: samples
            .iter()
            .map(|s| median(s.iter().zip(&samples[0]).map(|(t, t0)| t / t0).collect()))
            .collect(),
        samples,
    }
}

extern "C" {
    fn recadam_c_update(
        p: *mut f32,
        g: *const f32,
        m: *mut f32,
        v: *mut f32,
        pp: *const f32,
        n: usize,
        beta1: f32,
        one_minus_beta1: f32,
        beta2: f32,
        one_minus_beta2: f32,
        eps: f32,
        neg_step_lambda: f32,
        neg_penalty: f32,
        neg_weight_decay: f32,
    );
}

/// The decoupled update as a plain C loop (`gcc -O3 -march=native -fno-math-errno`).
pub fn c_update(s: &StepScalars<f32>, b: &mut Buffers) {
    let n = b.p.len();
    assert!(b.g.len() == n && b.m.len() == n && b.v.len() == n && b.pp.len() == n);
    // SAFETY: the five buffers have length n (checked above) and do not overlap (distinct Vecs).
    unsafe {
        recadam_c_update(
            b.p.as_mut_ptr(),
            b.g.as_ptr(),
            b.m.as_mut_ptr(),
            b.v.as_mut_ptr(),
            b.pp.as_ptr(),
            n,
            s.beta1,
            s.one_minus_beta1,
            s.beta2,
            s.one_minus_beta2,
            s.eps,
            s.neg_step_lambda,
            s.neg_penalty,
            s.neg_weight_decay,
        )
    }
}

/// Seconds per step of `kernel` over `b` at step `t` of [`config`].
pub fn time_kernel(
    kernel: Kernel,
    b: &mut Buffers,
    t: u64,
    batch: Duration,
    batches: usize,
) -> f64 {
    let config = config();
    let scalars = StepScalars::<f32>::new(&config, t, config.lr).expect("valid config");
    time_per_call(|| kernel.update(&scalars, b.slices()), batch, batches)
}

/// Seconds per pass of the streaming reference (same memory shape, trivial arithmetic). It
/// changes the values (m += g, v += g, p += θ*): give it buffers of its own.
pub fn time_stream(kernel: Kernel, b: &mut Buffers, batch: Duration, batches: usize) -> f64 {
    time_per_call(|| kernel.stream(b.slices()), batch, batches)
}

/// GB/s for `n` f32 parameters updated in `seconds`.
pub fn gbps(n: usize, seconds: f64) -> f64 {
    n as f64 * BYTES_PER_PARAM_F32 / seconds / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_runs_every_function_in_every_round() {
        let (mut a_calls, mut b_calls) = (0usize, 0usize);
        let mut order = Vec::new();
        let log = std::cell::RefCell::new(&mut order);
        let mut a = || {
            a_calls += 1;
            log.borrow_mut().push('a');
        };
        let mut b = || {
            b_calls += 1;
            log.borrow_mut().push('b');
        };
        let timing = time_interleaved(&mut [&mut a, &mut b], Duration::ZERO, 4);
        assert_eq!((a_calls, b_calls), (2 + 4, 2 + 4));
        assert_eq!(order.iter().collect::<String>(), "aabbabbaabba");
        assert_eq!(timing.seconds.len(), 2);
        assert_eq!(timing.relative_speed[0], 1.0);
    }
}
