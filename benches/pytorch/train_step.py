"""PyTorch's training step of the same model as benches/src/bin/train_step.rs: a pretrained BERT
(all-MiniLM-L6-v2) as `BertForSequenceClassification` with 2 labels, fp32, training mode
(dropout 0.1 as configured), forward + cross-entropy loss + backward + clip_grad_norm_(1.0) +
`AdamW(fused=True)`, on random token ids of the same form ([CLS] … [SEP], two segments).

    python3 benches/pytorch/train_step.py --model DIR --batch 16 --seq 128 --threads 1 [--json]

Prints one line (one JSON object with --json) in the Rust benchmark's fields: tokens_per_s,
step_s (median of the timed steps after warm-up) and peak_rss_mb (VmHWM of this process). Run
one configuration per process, so that its peak memory is its own; benches/train_step_vs_pytorch.py
alternates this script with the Rust benchmark.
"""
import argparse
import json
import statistics
import time

import torch


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(
        args.model, num_labels=2, torch_dtype=torch.float32, attn_implementation="eager"
    )
    model.train()
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(s in n for s in no_decay)],
         "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if any(s in n for s in no_decay)],
         "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=5e-5, fused=True)

    b, s = args.batch, args.seq
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(12345)
    ids = torch.randint(1000, vocab - 1000, (b, s), generator=gen)
    ids[:, 0] = 101
    ids[:, -1] = 102
    types = (torch.arange(s) >= s // 2).long().expand(b, s).contiguous()
    mask = torch.ones(b, s, dtype=torch.long)
    labels = torch.arange(b) % 2

    def step():
        out = model(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step()  # warm-up: allocator, thread pool, optimizer state
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    row = {
        "side": "pytorch",
        "torch": torch.__version__,
        "batch": b,
        "seq": s,
        "threads": args.threads,
        "tokens_per_s": b * s / step_s,
        "step_s": step_s,
        "peak_rss_mb": peak_rss_mb(),
    }
    if args.json:
        print(json.dumps(row))
    else:
        print(f"pytorch {torch.__version__} batch {b:>2} × {s:>3}, {args.threads} thread(s): "
              f"{row['tokens_per_s']:7.0f} tokens/s, {step_s:.3f} s/step, "
              f"peak RSS {row['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
