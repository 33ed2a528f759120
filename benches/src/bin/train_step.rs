//! One training step of the mini-BERT on a real model: forward in training mode (dropout 0.1),
//! loss (classification head),
//! backward, and a RecAdam step over every parameter, for batch 16 × 128 and 32 × 64, at 1 and
//! 2 threads. Tokens per second, the optimizer's share of the step, and peak resident memory.
//!
//!     cargo run --release -p benches --bin train_step -- --model DIR [--json] [--two-pass]
//!
//! The optimizer step is the trainer's one-pass step (the backward pass writes the gradient
//! statistics); `--two-pass` times the plain `step`, which reads the gradients for them again.
//!
//! Each configuration runs in a child process of its own, so its peak memory is its own.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use recadam_core::{Annealing, RecAdamConfig};
use recadam_std::bert::{
    backward_with_stats, forward_into, Batch, BertWeights, Cache, Head, Pass, Targets,
};
use recadam_std::{
    tensor_grad_stats, GradStats, Group, LinearWarmupDecay, Optimizer, Options, ParamId, ParamMut,
    Selector,
};
use serde_json::json;

const CONFIGS: [(usize, usize); 2] = [(16, 128), (32, 64)];

/// The system allocator, counting the bytes it hands out: the step's allocations after warm-up.
struct Counting;

static ALLOCATED: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call goes to the system allocator unchanged; the counter is only added to.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: a block this allocator handed out, with its layout, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: a block this allocator handed out, with its layout, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocated() -> u64 {
    ALLOCATED.load(Ordering::Relaxed)
}
const STEPS: usize = 3;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Runs one configuration and prints its result line.
fn run(model: &str, (batch, seq, threads): (usize, usize, usize), json_out: bool, two_pass: bool) {
    let (mut weights, _) = BertWeights::from_folder(model).expect("model folder");
    let pretrained = weights.data.clone();
    let h = weights.config.hidden_size;
    let mut head = Head::new(2, h, 0);
    let vocab = weights.config.vocab_size as u64;
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % (vocab - 2000) + 1000
    };
    let ids: Vec<u32> = (0..batch * seq)
        .map(|i| {
            if i % seq == 0 {
                101
            } else if i % seq == seq - 1 {
                102
            } else {
                next() as u32
            }
        })
        .collect();
    let data = Batch {
        batch,
        seq,
        input_ids: ids,
        token_type_ids: (0..batch * seq)
            .map(|i| u32::from(i % seq >= seq / 2))
            .collect(),
        attention_mask: vec![1; batch * seq],
    };
    let targets = Targets::Labels((0..batch).map(|b| b % 2).collect());
    let config = RecAdamConfig {
        lr: 5e-5,
        weight_decay: 0.01,
        annealing: Annealing::Sigmoid { k: 0.1, t0: 150.0 },
        ..RecAdamConfig::default()
    };
    let options = Options {
        schedule: Box::new(LinearWarmupDecay {
            warmup: 1,
            total: 100,
        }),
        max_grad_norm: Some(1.0),
        threads,
        ..Options::new(config)
    };
    let kernel = recadam_std::Kernel::from_env().expect("RECADAM_BACKEND names a backend here");
    let mut opt = Optimizer::with_kernel(options, kernel).expect("valid options");
    let no_decay = || Selector::ContainsAny(vec!["bias".into(), "LayerNorm.weight".into()]);
    let head_sel = || Selector::Prefix("classifier.".into());
    let not = |s: Selector| Selector::Not(Box::new(s));
    opt.add_group(Group::new("head", head_sel()).anneal_w(0.0))
        .unwrap();
    opt.add_group(Group::new("encoder_no_decay", no_decay()).weight_decay(0.0))
        .unwrap();
    opt.add_group(Group::new("encoder", not(no_decay())))
        .unwrap();
    let mut ids: Vec<ParamId> = Vec::new();
    for (name, _, offset) in weights.layout.entries() {
        let n = weights.layout.range(name).unwrap().len();
        ids.push(
            opt.register_pretrained(name, &pretrained[offset..offset + n])
                .unwrap(),
        );
    }
    let head_ids = [
        opt.register("classifier.weight", head.weight.len())
            .unwrap(),
        opt.register("classifier.bias", head.bias.len()).unwrap(),
    ];

    let mut grads = vec![0.0f32; weights.layout.len()];
    let mut stats = vec![GradStats::EMPTY; weights.layout.tensors() + 2];
    let mut cache = Cache::new();
    let (mut total, mut in_optimizer) = (0.0f64, 0.0f64);
    // Bytes allocated in the timed steps: by the model's passes, the head, the optimizer.
    let (mut model_bytes, mut head_bytes, mut opt_bytes) = (0u64, 0u64, 0u64);
    let layout = weights.layout.clone();
    for step in 0..=STEPS {
        let start = Instant::now();
        let a0 = allocated();
        // Training mode: dropout 0.1 as configured, masks from the step number.
        let seed = step as u64;
        forward_into(&weights, &data, threads, Pass::Train { seed }, &mut cache)
            .expect("valid batch");
        let a1 = allocated();
        let p = weights.config.hidden_dropout_prob;
        let head_out = head
            .loss_with_dropout(cache.pooler_output(), &targets, p, seed)
            .expect("targets fit the head");
        let a2 = allocated();
        grads.fill(0.0);
        // The trainer's one-pass step: the backward pass writes each gradient's statistics.
        let (encoder_stats, head_stats) = stats.split_at_mut(layout.tensors());
        backward_with_stats(
            &weights,
            &data,
            &mut cache,
            &head_out.d_pooled,
            &mut grads,
            encoder_stats,
            kernel,
            threads,
        )
        .expect("buffers of the batch and model");
        head_stats[0] = tensor_grad_stats(kernel, &head_out.d_weight);
        head_stats[1] = tensor_grad_stats(kernel, &head_out.d_bias);
        let a3 = allocated();
        let opt_start = Instant::now();
        let mut params: Vec<ParamMut<'_, f32>> = layout
            .split_mut(&mut weights.data)
            .expect("the weights' own layout")
            .into_iter()
            .zip(
                layout
                    .split_mut(&mut grads)
                    .expect("the weights' own layout"),
            )
            .zip(&ids)
            .map(|(((_, value), (_, grad)), &id)| ParamMut::new(id, value, grad))
            .collect();
        params.push(ParamMut::new(
            head_ids[0],
            &mut head.weight,
            &head_out.d_weight,
        ));
        params.push(ParamMut::new(head_ids[1], &mut head.bias, &head_out.d_bias));
        if two_pass {
            opt.step(&mut params).expect("finite gradients");
        } else {
            opt.step_with_stats(&mut params, &stats)
                .expect("finite gradients");
        }
        if step > 0 {
            // step 0 warms caches, the thread pool and the workspace
            in_optimizer += opt_start.elapsed().as_secs_f64();
            total += start.elapsed().as_secs_f64();
            model_bytes += (a1 - a0) + (a3 - a2);
            head_bytes += a2 - a1;
            opt_bytes += allocated() - a3;
        }
    }
    let tokens_per_s = (batch * seq * STEPS) as f64 / total;
    let share = in_optimizer / total;
    let rss = peak_rss_mb();
    if json_out {
        println!(
            "{}",
            json!({"side": "recadam", "batch": batch, "seq": seq, "threads": threads,
                   "tokens_per_s": tokens_per_s, "optimizer_share": share, "peak_rss_mb": rss,
                   "step_s": total / STEPS as f64, "one_pass": !two_pass,
                   "allocated_per_step": {"model": model_bytes / STEPS as u64,
                                          "head": head_bytes / STEPS as u64,
                                          "optimizer": opt_bytes / STEPS as u64}})
        );
    } else {
        println!(
            "batch {batch:>2} × {seq:>3}, {threads} thread(s): {tokens_per_s:>7.0} tokens/s, {:.3} s/step, optimizer {:.1}%, peak RSS {rss:.0} MB, allocated per step: model {} B, head {} B, optimizer {} B",
            total / STEPS as f64,
            share * 100.0,
            model_bytes / STEPS as u64,
            head_bytes / STEPS as u64,
            opt_bytes / STEPS as u64,
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let json_out = args.iter().any(|a| a == "--json");
    let two_pass = args.iter().any(|a| a == "--two-pass");
    let Some(model) = value("--model") else {
        eprintln!(
            "usage: train_step --model DIR [--json] [--two-pass]   (DIR from scripts/fetch-minilm.sh)"
        );
        std::process::exit(2);
    };
    if let (Some(b), Some(s), Some(t)) = (value("--batch"), value("--seq"), value("--threads")) {
        let shape = (b.parse().unwrap(), s.parse().unwrap(), t.parse().unwrap());
        run(&model, shape, json_out, two_pass);
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    for (batch, seq) in CONFIGS {
        for threads in [1, 2] {
            let mut cmd = std::process::Command::new(&exe);
            cmd.args([
                "--model",
                &model,
                "--batch",
                &batch.to_string(),
                "--seq",
                &seq.to_string(),
                "--threads",
                &threads.to_string(),
            ]);
            if json_out {
                cmd.arg("--json");
            }
            if two_pass {
                cmd.arg("--two-pass");
            }
            let status = cmd.status().expect("run a configuration");
            if !status.success() {
                std::process::exit(status.code().unwrap_or(1));
            }
        }
    }
}
