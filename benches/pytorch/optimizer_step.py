"""PyTorch's fused CPU AdamW over the optimizer benchmark's model: 2^27 f32 parameters in
BERT-base-like tensors (the same shapes as benches/src/bin/optimizer.rs), at 1 and 2 threads.

    python3 benches/pytorch/optimizer_step.py          # needs torch (pip install torch)

Prints one JSON object per (threads, variant) with `ns_per_param`:
- "fused_adamw": AdamW(fused=True).step() alone (reads p, g, m, v; writes p, m, v: 28 bytes),
- "clip_then_fused_adamw": clip_grad_norm_(1.0) then the step, as a GLUE fine-tuning loop does
  (clipping reads every gradient for the norm, and scales them in place when the norm is over 1).
Not part of the tests: the comparison in the README was measured with this script.
"""
import json
import statistics
import time

import torch


def shapes(total):
    out = [30522 * 768, 512 * 768, 2 * 768, 768, 768]
    layer = [768 * 768, 768, 768 * 768, 768, 768 * 768, 768, 768 * 768, 768, 768, 768,
             3072 * 768, 3072, 768 * 3072, 768, 768, 768]
    used = sum(out)
    while used + sum(layer) <= total:
        out += layer
        used += sum(layer)
    out.append(total - used)
    return out


def time_per_call(f, batch=0.4, batches=5):
    f()
    start = time.perf_counter()
    f()
    once = time.perf_counter() - start
    calls = max(1, int(batch / once + 0.999))
    samples = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(calls):
            f()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def main():
    total = 1 << 27
    torch.manual_seed(0)
    params = []
    for n in shapes(total):
        p = torch.nn.Parameter((torch.rand(n) - 0.5) * 0.04)
        p.grad = (torch.rand(n) - 0.5) * 2e-3
        params.append(p)
    # The GLUE script's split: no decay on 1-D tensors (biases, LayerNorm weights).
    groups = [
        {"params": [p for p in params if p.numel() >= 768 * 768], "weight_decay": 0.01},
        {"params": [p for p in params if p.numel() < 768 * 768], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=2e-5, fused=True)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        step = time_per_call(opt.step)

        def clip_then_step():
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()

        clip = time_per_call(clip_then_step)
        for variant, seconds in (("fused_adamw", step), ("clip_then_fused_adamw", clip)):
            print(json.dumps({
                "torch": torch.__version__, "n": total, "threads": threads,
                "variant": variant, "ns_per_param": seconds * 1e9 / total,
            }), flush=True)


if __name__ == "__main__":
    main()
