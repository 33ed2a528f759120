//! A full optimizer step (non-finite guard and gradient norm, clipping, the update) over a
//! 2^27-parameter f32 model split into BERT-base-like tensors, at 1 and 2 threads, with the
//! streaming limit at the same thread count measured in the same run.
//!
//!     cargo run --release -p benches --bin optimizer -- --json
//!
//! One JSON object per thread count: `n`, `threads`, `ns_per_param`, `gbps`, `limit_gbps`,
//! `ratio`, and `ratio_to_two_reads`. GB/s count the update's 32 bytes per parameter. The step
//! also reads the gradients once more before the update, for the guard and the norm, so
//! `ratio_to_two_reads` compares it with the stream followed by one read of the gradients: the
//! memory traffic of the step itself. The three are timed in alternating batches and each
//! ratio is the median of the ratios within a round (see `benches::time_interleaved`).
//! `one_pass_ratio` is the trainer's one-pass step (`Optimizer::step_with_stats`, the gradient
//! statistics computed beforehand as the backward pass does while writing them) against the
//! stream, timed in the same rounds.
//! `c_abi_ns_per_param` and `c_abi_speed` are the same step through librecadam's C interface
//! (`recadam_step` over the same tensors; speed = Rust step time / C step time), timed in the
//! same rounds.

use std::cell::RefCell;
use std::time::Duration;

use benches::{gbps, time_interleaved};
use recadam_core::{Annealing, RecAdamConfig, Slices};
use recadam_simd::Kernel;
use recadam_std::{
    align_up, tensor_grad_stats, GradStats, Group, NonFiniteGuard, Optimizer, Options, ParamId,
    ParamMut,
};
use serde_json::json;

/// BERT-base-like tensor shapes (embeddings, then encoder layers) adding up to exactly `total`.
fn shapes(total: usize) -> Vec<(String, usize)> {
    let mut out = vec![
        (
            "bert.embeddings.word_embeddings.weight".to_string(),
            30522 * 768,
        ),
        (
            "bert.embeddings.position_embeddings.weight".into(),
            512 * 768,
        ),
        (
            "bert.embeddings.token_type_embeddings.weight".into(),
            2 * 768,
        ),
        ("bert.embeddings.LayerNorm.weight".into(), 768),
        ("bert.embeddings.LayerNorm.bias".into(), 768),
    ];
    let layer = [
        ("attention.self.query.weight", 768 * 768),
        ("attention.self.query.bias", 768),
        ("attention.self.key.weight", 768 * 768),
        ("attention.self.key.bias", 768),
        ("attention.self.value.weight", 768 * 768),
        ("attention.self.value.bias", 768),
        ("attention.output.dense.weight", 768 * 768),
        ("attention.output.dense.bias", 768),
        ("attention.output.LayerNorm.weight", 768),
        ("attention.output.LayerNorm.bias", 768),
        ("intermediate.dense.weight", 3072 * 768),
        ("intermediate.dense.bias", 3072),
        ("output.dense.weight", 768 * 3072),
        ("output.dense.bias", 768),
        ("output.LayerNorm.weight", 768),
        ("output.LayerNorm.bias", 768),
    ];
    let layer_size: usize = layer.iter().map(|l| l.1).sum();
    let mut used: usize = out.iter().map(|s| s.1).sum();
    let mut i = 0;
    while used + layer_size <= total {
        for (name, n) in layer {
            out.push((format!("bert.encoder.layer.{i}.{name}"), n));
        }
        used += layer_size;
        i += 1;
    }
    out.push(("classifier.weight".into(), total - used));
    out
}

struct Model {
    names: Vec<String>,
    values: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
    pretrained: Vec<Vec<f32>>,
}

fn model(total: usize) -> Model {
    let shapes = shapes(total);
    let fill = |n: usize, seed: u32, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761) ^ seed) as f32 / u32::MAX as f32 * scale
                    - scale / 2.0
            })
            .collect()
    };
    let pretrained: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| fill(s.1, k as u32, 0.04))
        .collect();
    Model {
        names: shapes.iter().map(|s| s.0.clone()).collect(),
        values: pretrained.clone(),
        grads: shapes
            .iter()
            .enumerate()
            .map(|(k, s)| fill(s.1, 7 + k as u32, 2e-3))
            .collect(),
        pretrained,
    }
}

/// Cuts `items` into runs of about `total / threads` elements at multiples of the optimizer's
/// alignment, in order, as the optimizer splits its work.
fn split_even<W>(
    items: impl IntoIterator<Item = W>,
    threads: usize,
    len: impl Fn(&W) -> usize,
    split_at: impl Fn(W, usize) -> (W, W),
) -> Vec<Vec<W>> {
    let items: Vec<W> = items.into_iter().collect();
    let total: usize = items.iter().map(&len).sum();
    let quota = align_up(total.div_ceil(threads));
    let mut parts: Vec<Vec<W>> = vec![Vec::new()];
    let mut room = quota;
    for mut item in items {
        while len(&item) > 0 {
            if room == 0 {
                parts.push(Vec::new());
                room = quota;
            }
            let take = room.min(len(&item));
            let (head, tail) = split_at(item, take);
            parts.last_mut().unwrap().push(head);
            room -= take;
            item = tail;
        }
    }
    parts
}

/// The streaming reference over the same tensors, split over `threads` like the optimizer.
fn stream(kernel: Kernel, m: &mut Model, state: &mut [(Vec<f32>, Vec<f32>)], threads: usize) {
    let slices = m
        .values
        .iter_mut()
        .zip(&m.grads)
        .zip(&m.pretrained)
        .zip(state.iter_mut())
        .map(|(((p, g), pp), (mm, vv))| Slices::new(p, g, mm, vv, Some(pp)).unwrap());
    let parts = split_even(slices, threads, Slices::len, |s, at| {
        s.split_at(at).unwrap()
    });
    std::thread::scope(|scope| {
        for part in parts {
            scope.spawn(move || part.into_iter().for_each(|s| kernel.stream(s)));
        }
    });
}

/// One read of every gradient, split over `threads` as the optimizer's guard pass is: the
/// memory traffic a step adds to the stream's when it needs the gradients before the update.
fn read_grads(kernel: Kernel, grads: &[Vec<f32>], threads: usize) {
    let slices = grads.iter().map(Vec::as_slice);
    let parts = split_even(slices, threads, |g| g.len(), |g, at| g.split_at(at));
    std::thread::scope(|scope| {
        for part in parts {
            scope.spawn(move || {
                let sum: f64 = part.iter().map(|g| kernel.grad_stats(g).sum_squares).sum();
                std::hint::black_box(sum);
            });
        }
    });
}

/// An optimizer of librecadam's C interface over the benchmark's tensors, called as C calls it.
struct CStep {
    opt: *mut recadam::recadam_optimizer,
}

impl CStep {
    fn new(
        rust: &Optimizer<'_, f32>,
        m: &Model,
        values: &mut [Vec<f32>],
        threads: usize,
        guard_off: bool,
    ) -> CStep {
        use recadam::*;
        let ok = |s: recadam_status| assert_eq!(s, RECADAM_OK, "the C interface refused");
        let groups: Vec<(Group, RecAdamConfig)> =
            rust.groups().map(|(g, c)| (g.clone(), *c)).collect();
        let mut opt = std::ptr::null_mut();
        // SAFETY: the buffers (values, gradients, θ*) outlive the optimizer, freed in Drop
        // before the model; nothing else touches them during its calls.
        unsafe {
            ok(recadam_optimizer_new(RECADAM_F32, threads, &mut opt));
            if guard_off {
                ok(recadam_set_nonfinite(opt, RECADAM_NONFINITE_OFF));
            }
            for (_, c) in &groups {
                let mut cfg = std::mem::MaybeUninit::<recadam_config>::uninit();
                ok(recadam_config_default(cfg.as_mut_ptr()));
                let mut cfg = cfg.assume_init();
                let Annealing::Sigmoid { k, t0 } = c.annealing else {
                    unreachable!("the benchmark's annealing is a sigmoid")
                };
                (cfg.lr, cfg.weight_decay, cfg.anneal_w) = (c.lr, c.weight_decay, c.anneal_w);
                (cfg.anneal_k, cfg.anneal_t0, cfg.eps) = (k, t0, c.eps);
                ok(recadam_add_group(opt, &cfg, std::ptr::null_mut()));
            }
            for ((name, value), (grad, pretrained)) in m
                .names
                .iter()
                .zip(values)
                .zip(m.grads.iter().zip(&m.pretrained))
            {
                let group = groups
                    .iter()
                    .position(|(g, _)| g.selector.matches(name))
                    .or_else(|| groups.iter().position(|(g, _)| g.name == Group::DEFAULT))
                    .expect("a group for every tensor");
                let penalised = groups[group].1.has_penalty();
                let p = recadam_param {
                    struct_size: std::mem::size_of::<recadam_param>() as u32,
                    pretrained_mode: if penalised {
                        RECADAM_PRETRAINED_BORROW
                    } else {
                        RECADAM_PRETRAINED_NONE
                    },
                    group,
                    len: value.len(),
                    param: value.as_mut_ptr().cast(),
                    grad: grad.as_ptr().cast(),
                    exp_avg: std::ptr::null_mut(),
                    exp_avg_sq: std::ptr::null_mut(),
                    pretrained: if penalised {
                        pretrained.as_ptr().cast()
                    } else {
                        std::ptr::null()
                    },
                };
                ok(recadam_register(opt, &p, std::ptr::null_mut()));
            }
        }
        CStep { opt }
    }

    fn step(&self) {
        // SAFETY: as in `new`.
        let status = unsafe { recadam::recadam_step(self.opt, std::ptr::null_mut()) };
        assert_eq!(status, recadam::RECADAM_OK);
    }
}

impl Drop for CStep {
    fn drop(&mut self) {
        recadam::recadam_optimizer_free(self.opt);
    }
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let total = 1usize << 27;
    let kernel = Kernel::from_env().unwrap_or_else(|e| {
        eprintln!("optimizer: {e}");
        std::process::exit(2)
    });
    let config = RecAdamConfig {
        lr: 2e-5,
        weight_decay: 0.01,
        annealing: Annealing::Sigmoid { k: 0.1, t0: 150.0 },
        ..RecAdamConfig::default()
    };
    let mut m = model(total);
    let mut c_values = m.values.clone();
    let mut limit_model = model(total);
    let mut limit_state: Vec<(Vec<f32>, Vec<f32>)> = limit_model
        .values
        .iter()
        .map(|v| (vec![0.0; v.len()], vec![0.0; v.len()]))
        .collect();
    if !json {
        println!(
            "optimizer step, 2^27 f32 parameters in {} tensors, backend {}",
            m.names.len(),
            kernel.backend()
        );
    }
    // RECADAM_BENCH_GUARD=off measures the update alone (no guard, no clipping: no pass over
    // the gradients before the update).
    let guard_off = std::env::var("RECADAM_BENCH_GUARD").is_ok_and(|v| v == "off");
    for threads in [1, 2] {
        let options = if guard_off {
            Options {
                threads,
                guard: NonFiniteGuard::Off,
                ..Options::new(config)
            }
        } else {
            Options {
                threads,
                max_grad_norm: Some(1.0),
                ..Options::new(config)
            }
        };
        let mut opt = Optimizer::with_kernel(options, kernel).unwrap();
        for g in Group::glue_script("bert.") {
            opt.add_group(g).unwrap();
        }
        let ids: Vec<ParamId> = m
            .names
            .iter()
            .zip(&m.pretrained)
            .map(|(name, pp)| opt.register_pretrained(name, pp).unwrap())
            .collect();
        // The same step through the C interface (librecadam), over its own copy of the values
        // and the same gradients and θ*: the groups the Rust optimizer resolved, the guard as
        // there (clipping aside, which the C interface leaves to the caller: one multiply in the
        // step's scalars, no pass over memory).
        let c_opt = CStep::new(&opt, &m, &mut c_values, threads, guard_off);
        // The gradients do not change between steps, so their statistics are computed once:
        // in the trainer the backward pass computes them while it writes the gradients.
        let stats: Vec<GradStats> = m
            .grads
            .iter()
            .map(|g| tensor_grad_stats(opt.kernel(), g))
            .collect();
        let opt = RefCell::new(opt);
        let model = RefCell::new(&mut m.values);
        let grads = &m.grads;
        let step_with = |known: Option<&[GradStats]>| {
            let mut values = model.borrow_mut();
            let mut params: Vec<ParamMut<'_, f32>> = ids
                .iter()
                .zip(values.iter_mut())
                .zip(grads)
                .map(|((&id, value), grad)| ParamMut::new(id, value, grad))
                .collect();
            let mut opt = opt.borrow_mut();
            match known {
                Some(stats) => opt.step_with_stats(&mut params, stats).unwrap(),
                None => opt.step(&mut params).unwrap(),
            };
        };
        let mut step = || step_with(None);
        let mut one_pass_step = || step_with(Some(&stats));
        let limit_buffers = RefCell::new((&mut limit_model, &mut limit_state));
        let limit = || {
            let (model, state) = &mut *limit_buffers.borrow_mut();
            stream(kernel, model, state, threads)
        };
        let mut limit_alone = limit;
        let mut limit_and_read = || {
            limit();
            read_grads(kernel, grads, threads);
        };
        let mut c_step = || c_opt.step();
        let timing = time_interleaved(
            &mut [
                &mut step,
                &mut limit_alone,
                &mut limit_and_read,
                &mut c_step,
                &mut one_pass_step,
            ],
            Duration::from_millis(300),
            9,
        );
        let step_time = timing.seconds[0];
        let (g, lg) = (gbps(total, step_time), gbps(total, timing.seconds[1]));
        let (ratio, ratio_to_two_reads) = (timing.relative_speed[1], timing.relative_speed[2]);
        // Rust step time / C step time: 1 when the C entry points cost nothing.
        let c_abi_speed = 1.0 / timing.relative_speed[3];
        // The one-pass step's speed relative to the stream (the ratio of its two paired medians).
        let one_pass_ratio = timing.relative_speed[1] / timing.relative_speed[4];
        if json {
            println!(
                "{}",
                json!({
                    "n": total, "threads": threads, "ns_per_param": step_time * 1e9 / total as f64,
                    "gbps": g, "limit_gbps": lg, "ratio": ratio,
                    "ratio_to_two_reads": ratio_to_two_reads, "backend": kernel.backend().name(),
                    "c_abi_ns_per_param": timing.seconds[3] * 1e9 / total as f64,
                    "c_abi_speed": c_abi_speed, "one_pass_ratio": one_pass_ratio,
                })
            );
        } else {
            println!(
                "threads {threads}: {:.1} ms/step, {:.3} ns/param, {g:.1} GB/s, limit {lg:.1} GB/s, \
                 ratio {ratio:.3}, ratio to the limit plus a read of the gradients {ratio_to_two_reads:.3}, \
                 through the C interface {:.3} ns/param (speed relative to Rust {c_abi_speed:.3}), \
                 one-pass step (statistics known) to the stream {one_pass_ratio:.3}",
                step_time * 1e3,
                step_time * 1e9 / total as f64,
                timing.seconds[3] * 1e9 / total as f64,
            );
        }
    }
}
