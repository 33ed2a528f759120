"""The training step side by side with PyTorch's, on this machine, in one run.

    cargo build --release -p benches --bin train_step
    python3 benches/train_step_vs_pytorch.py --model target/models/all-MiniLM-L6-v2 [--rounds 3]

For every cell (batch × seq, threads) and every round, runs the Rust benchmark
(target/release/train_step, one configuration per process) and benches/pytorch/train_step.py
(same model, shapes, dropout, clipping, fused AdamW) one after the other, alternating which goes
first, so that both see the same machine state. Prints a Markdown table: tokens/s of both sides
(range over rounds), the ratio recadam ÷ PyTorch per round, and peak RSS of both; `--json FILE`
keeps every measurement. Needs torch and transformers (pip install torch transformers).
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CELLS = [(16, 128, 1), (16, 128, 2), (32, 64, 1), (32, 64, 2)]


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def run_json(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    rows = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    if not rows:
        sys.exit(f"{' '.join(cmd)} printed no result:\n{out.stdout[-2000:]}")
    return rows[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "train_step"))
    ap.add_argument("--json", help="write every measurement here (JSON lines)")
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        sys.exit(f"{args.bin} is missing: cargo build --release -p benches --bin train_step")
    model = os.path.abspath(args.model)
    results = []
    for r in range(args.rounds):
        for batch, seq, threads in CELLS:
            shape = ["--batch", str(batch), "--seq", str(seq), "--threads", str(threads)]
            ours = [args.bin, "--model", model, *shape, "--json"]
            theirs = [sys.executable, os.path.join(ROOT, "benches", "pytorch", "train_step.py"),
                      "--model", model, *shape, "--steps", str(args.steps), "--json"]
            order = [("recadam", ours), ("pytorch", theirs)]
            if r % 2 == 1:
                order.reverse()
            row = {"round": r, "batch": batch, "seq": seq, "threads": threads}
            for side, cmd in order:
                row[side] = run_json(cmd)
            row["ratio"] = row["recadam"]["tokens_per_s"] / row["pytorch"]["tokens_per_s"]
            print(f"round {r} {batch}×{seq} {threads}t: recadam {row['recadam']['tokens_per_s']:.0f}"
                  f" pytorch {row['pytorch']['tokens_per_s']:.0f} tokens/s, ratio {row['ratio']:.2f}",
                  file=sys.stderr)
            results.append(row)
    if args.json:
        with open(args.json, "w") as f:
            for row in results:
                f.write(json.dumps(row) + "\n")

    def span(values, fmt="{:,.0f}"):
        lo, hi = min(values), max(values)
        return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}-{fmt.format(hi)}"

    torch_version = results[0]["pytorch"].get("torch", "?")
    print(f"\n{cpu_name()}, {args.rounds} rounds alternating, PyTorch {torch_version}\n")
    print("| batch × seq | threads | recadam tokens/s | PyTorch tokens/s | ratio | peak RSS recadam / PyTorch (MB) |")
    print("|---|---|---|---|---|---|")
    for batch, seq, threads in CELLS:
        rows = [x for x in results if (x["batch"], x["seq"], x["threads"]) == (batch, seq, threads)]
        ours = [x["recadam"]["tokens_per_s"] for x in rows]
        theirs = [x["pytorch"]["tokens_per_s"] for x in rows]
        ratios = [x["ratio"] for x in rows]
        rss = (max(x["recadam"]["peak_rss_mb"] for x in rows), max(x["pytorch"]["peak_rss_mb"] for x in rows))
        print(f"| {batch} × {seq} | {threads} | {span(ours)} | {span(theirs)} | "
              f"{span(ratios, '{:.2f}')} | {rss[0]:,.0f} / {rss[1]:,.0f} |")


if __name__ == "__main__":
    main()
