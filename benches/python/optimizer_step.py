"""recadam.RecAdam next to the official algorithm in plain torch, torch's fused AdamW and a memory
stream with RecAdam's traffic, in one process on the same tensors, at 1 and 2 threads.

    python/test.sh -k nothing            # once: the venv with torch and the package
    target/python-venv/bin/python benches/python/optimizer_step.py [--json]

Two tensor lists: MiniLM-L6's parameters (all-MiniLM-L6-v2's real shapes: 22.7 M parameters in
103 tensors) and one 2^24 tensor. Contenders, timed in alternating batches (rounds of a few
steps each, every contender once per round, in rotating order; the figure is the median over
rounds, and each ratio is the median of the ratios within a round):

- `recadam`: recadam.RecAdam.step() without the guard (nonfinite="propagate"), 32 bytes/param;
- `recadam_guard`: the same with the default guard (one more read of the gradients);
- `official`: the official RecAdam.py's algorithm in plain torch, per tensor (add_/addcmul_/
  addcdiv_, as the file writes it);
- `adamw_fused`: torch.optim.AdamW(fused=True), 28 bytes/param;
- `deepspeed`: DeepSpeed's `DeepSpeedCPUAdam` (AdamW, fp32 parameters and states, the optimizer
  ZeRO-Offload runs on the host; 28 bytes/param), where deepspeed is installed
  (`pip install deepspeed`; its kernel is compiled on first use, a minute or two, with
  DS_ACCELERATOR=cpu on a machine without a GPU). It runs on its own OpenMP runtime (not the one
  bundled with torch's wheel), whose thread count is set here through libgomp's
  omp_set_num_threads; fp32 is the one storage mode both it and recadam support (its 16-bit
  modes keep 16-bit master parameters, which recadam does not);
- `stream`: a pass with RecAdam's traffic (reads p, g, m, v, θ*; writes p, m, v) on recadam's
  threads: the memory limit of the update;
- `read`: one plain read of the gradients (torch.sum per tensor, on torch's threads).

Also the Python overhead of recadam.RecAdam.step(): the share of its time spent outside the one
Rust call. Not part of the tests.
"""
import json
import math
import statistics
import sys
import time

import ctypes
import os

import torch

import recadam

os.environ.setdefault("DS_ACCELERATOR", "cpu" if not torch.cuda.is_available() else "cuda")


def deepspeed_cpu_adam():
    """DeepSpeedCPUAdam and a function that sets its OpenMP threads, or None without deepspeed."""
    try:
        from deepspeed.ops.adam import DeepSpeedCPUAdam
    except ImportError:
        return None
    gomp = ctypes.CDLL("libgomp.so.1")
    return DeepSpeedCPUAdam, gomp.omp_set_num_threads

MINILM = (
    [(30522, 384), (512, 384), (2, 384), (384,), (384,)]
    + 6 * [(384, 384), (384,), (384, 384), (384,), (384, 384), (384,), (384, 384), (384,), (384,), (384,),
           (1536, 384), (1536,), (384, 1536), (384,), (384,), (384,)]
    + [(384, 384), (384,)]
)


def official_step(groups, state):
    """The official RecAdam.step() for one group of pretrained parameters, as RecAdam.py writes
    it (per tensor; keyword forms of the same ops)."""
    for group in groups:
        for p, pp in zip(group["params"], group["pretrain_params"]):
            grad = p.grad
            st = state.get(p)
            if not st:  # absent, or the empty entry of torch's state defaultdict
                st = state[p] = {"step": 0, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
            exp_avg, exp_avg_sq = st["exp_avg"], st["exp_avg_sq"]
            beta1, beta2 = group["betas"]
            st["step"] += 1
            exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
            denom = exp_avg_sq.sqrt().add_(group["eps"])
            step_size = group["lr"]
            bias_correction1 = 1.0 - beta1 ** st["step"]
            bias_correction2 = 1.0 - beta2 ** st["step"]
            step_size = step_size * math.sqrt(bias_correction2) / bias_correction1
            lam = 1.0 / (1.0 + math.exp(-group["anneal_k"] * (st["step"] - group["anneal_t0"]))) * group["anneal_w"]
            p.data.addcdiv_(exp_avg, denom, value=-step_size * lam)
            p.data.add_(p.data - pp.data, alpha=-group["lr"] * (group["anneal_w"] - lam) * group["pretrain_cof"])
            if group["weight_decay"] > 0.0:
                p.data.add_(p.data, alpha=-group["lr"] * group["weight_decay"])


class TimedEngine:
    """Wraps the optimizer's engine to time the Rust call alone."""

    def __init__(self, engine):
        self.engine, self.seconds = engine, 0.0

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def step(self, *args):
        start = time.perf_counter()
        out = self.engine.step(*args)
        self.seconds += time.perf_counter() - start
        return out


def tensors(shapes, seed):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for s in shapes:
        p = torch.nn.Parameter((torch.rand(s, generator=gen) - 0.5) * 0.04)
        p.grad = (torch.rand(s, generator=gen) - 0.5) * 2e-3
        out.append(p)
    return out


def measure(shapes, threads, rounds, per_round, deepspeed):
    torch.set_num_threads(threads)
    n = sum(math.prod(s) for s in shapes)
    hyper = dict(lr=2e-5, eps=1e-6, weight_decay=0.01, anneal_k=0.1, anneal_t0=250, anneal_w=1.0, pretrain_cof=5000.0)
    ours = tensors(shapes, 0)
    pre = [p.detach().clone() for p in ours]
    rec = recadam.RecAdam(ours, pretrain_params=pre, threads=threads, nonfinite="propagate", **hyper)
    rec_guard = recadam.RecAdam(ours, pretrain_params=pre, threads=threads, **hyper)
    timed = TimedEngine(rec._engine)
    rec._engine = timed
    theirs = tensors(shapes, 0)
    official_groups = [dict(params=theirs, pretrain_params=[p.detach().clone() for p in theirs], betas=(0.9, 0.999), **hyper)]
    official_state = {}
    adam_params = tensors(shapes, 0)
    adamw = torch.optim.AdamW(adam_params, lr=2e-5, weight_decay=0.01, fused=True)
    # The stream's buffers: p, g, θ* of `ours`, and m, v of the first optimizer.
    rec.step()
    rec_guard.step()
    specs = []
    for p, pp in zip(ours, pre):
        st = rec.state[p]
        specs.append((p.data_ptr(), p.grad.data_ptr(), st["exp_avg"].data_ptr(), st["exp_avg_sq"].data_ptr(), pp.data_ptr(), p.numel(), 0, 1))
    engine = timed.engine
    grads = [p.grad for p in ours]

    contenders = {
        "recadam": rec.step,
        "recadam_guard": rec_guard.step,
        "official": lambda: official_step(official_groups, official_state),
        "adamw_fused": adamw.step,
        "stream": lambda: engine.stream("float32", specs),
        "read": lambda: [g.sum() for g in grads],
    }
    if deepspeed is not None:
        cpu_adam, set_threads = deepspeed
        set_threads(threads)
        ds = cpu_adam(tensors(shapes, 0), lr=2e-5, eps=1e-6, weight_decay=0.01, adamw_mode=True)
        contenders["deepspeed"] = ds.step
    for f in contenders.values():
        f()
    names = list(contenders)
    times = {k: [] for k in names}
    overhead = []
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for k in order:
            before_rust = timed.seconds
            start = time.perf_counter()
            for _ in range(per_round):
                contenders[k]()
            elapsed = (time.perf_counter() - start) / per_round
            times[k].append(elapsed)
            if k == "recadam":
                overhead.append(1.0 - (timed.seconds - before_rust) / per_round / elapsed)
    ns = {k: statistics.median(v) / n * 1e9 for k, v in times.items()}
    ratio = lambda a, b: statistics.median(x / y for x, y in zip(times[a], times[b]))
    stream_plus_read = [s + rd for s, rd in zip(times["stream"], times["read"])]
    return {
        "tensors": len(shapes),
        "n": n,
        "threads": threads,
        "backend": rec.backend,
        "ns_per_param": ns,
        "recadam_to_stream": ratio("stream", "recadam"),
        "recadam_guard_to_stream_plus_read": statistics.median(x / y for x, y in zip(stream_plus_read, times["recadam_guard"])),
        "speedup_over_official": ratio("official", "recadam_guard"),
        "speedup_over_official_no_guard": ratio("official", "recadam"),
        "per_byte_vs_adamw": statistics.median((a / 28) / (r / 32) for a, r in zip(times["adamw_fused"], times["recadam"])),
        "python_overhead": statistics.median(overhead),
        # DeepSpeedCPUAdam's time per byte (28 per parameter) over recadam's (32): above 1, recadam
        # moves its bytes faster.
        "per_byte_vs_deepspeed": (
            statistics.median((d / 28) / (r / 32) for d, r in zip(times["deepspeed"], times["recadam"]))
            if "deepspeed" in times
            else None
        ),
    }


def main():
    as_json = "--json" in sys.argv
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    deepspeed = deepspeed_cpu_adam()
    for label, shapes, per_round in (("minilm-l6", MINILM, 5), ("2^24", [(1 << 24,)], 5)):
        for threads in (1, 2):
            res = measure(shapes, threads, rounds=9, per_round=per_round, deepspeed=deepspeed)
            res.update(list=label, cpu=cpu, torch=torch.__version__)
            if as_json:
                print(json.dumps(res), flush=True)
            else:
                ns = res["ns_per_param"]
                print(
                    f"{label} threads {threads} ({res['backend']}): ns/param recadam {ns['recadam']:.3f}, with guard {ns['recadam_guard']:.3f}, "
                    f"official {ns['official']:.3f}, fused AdamW {ns['adamw_fused']:.3f}, stream {ns['stream']:.3f}, read {ns['read']:.3f}; "
                    f"recadam/stream {res['recadam_to_stream']:.3f}, guard/(stream+read) {res['recadam_guard_to_stream_plus_read']:.3f}, "
                    f"× official {res['speedup_over_official']:.2f} (no guard {res['speedup_over_official_no_guard']:.2f}), "
                    f"per byte vs AdamW {res['per_byte_vs_adamw']:.3f}, Python overhead {res['python_overhead']:.1%}"
                    + (
                        f"; DeepSpeedCPUAdam {ns['deepspeed']:.3f} ns/param, per byte vs it {res['per_byte_vs_deepspeed']:.3f}"
                        if res["per_byte_vs_deepspeed"] is not None
                        else ""
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
