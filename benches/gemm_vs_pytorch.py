"""The trainer's matrix products beside PyTorch's matmul, one thread, alternating in one run.

    cargo build --release -p benches --bin gemm [--features gemm-crate]
    python3 benches/gemm_vs_pytorch.py [--rounds 2]

Runs target/release/gemm --json and benches/pytorch/gemm.py --json in turn, `--rounds` times
(alternating which goes first), and prints a Markdown table of GFLOP/s per product: the range over
rounds for matrixmultiply (the trainer's), the `gemm` crate (when the binary was built with
--features gemm-crate) and PyTorch.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rows_of(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "gemm"))
    args = ap.parse_args()
    ours = [args.bin, "--json"]
    theirs = [sys.executable, os.path.join(ROOT, "benches", "pytorch", "gemm.py"), "--json"]
    seen = {}
    for r in range(args.rounds):
        for cmd in ([ours, theirs] if r % 2 == 0 else [theirs, ours]):
            for row in rows_of(cmd):
                key = (row["rows"], tuple(row["weight"]), row["product"])
                seen.setdefault(key, {}).setdefault(row["side"], []).append(row["gflops_1_thread"])
    sides = [s for s in ("matrixmultiply", "gemm", "pytorch") if any(s in v for v in seen.values())]
    span = lambda v: f"{min(v):.0f}" if round(min(v)) == round(max(v)) else f"{min(v):.0f}-{max(v):.0f}"
    print("| rows | W | product | " + " | ".join(sides) + " |")
    print("|---|---|---|" + "---|" * len(sides))
    for (rows, (n, k), product), by_side in seen.items():
        cells = " | ".join(span(by_side[s]) if s in by_side else "" for s in sides)
        print(f"| {rows} | {n}×{k} | {product} | {cells} |")


if __name__ == "__main__":
    main()
