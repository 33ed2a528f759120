"""PyTorch's matmul on the trainer's products (see benches/src/bin/gemm.rs), one thread:
for each Linear weight W [n × k] over `rows` tokens, x @ W.T, dy @ W and dy.T @ x, the operands
laid out as nn.Linear's forward and backward see them (W.T and dy.T as transposed views).

    python3 benches/pytorch/gemm.py [--json] [--rows 2048,4096]
"""
import argparse
import json

import torch

from optimizer_step import time_per_call  # the same timing as the optimizer benchmark


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rows", default="2048,4096")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    for rows in [int(r) for r in args.rows.split(",")]:
        for n_out, k_in in [(384, 384), (1536, 384), (384, 1536)]:
            w = torch.rand(n_out, k_in) - 0.5
            x = torch.rand(rows, k_in) - 0.5
            dy = torch.rand(rows, n_out) - 0.5
            out_f = torch.empty(rows, n_out)
            out_d = torch.empty(rows, k_in)
            out_w = torch.empty(n_out, k_in)
            for name, (m, n, k), f in [
                ("forward x·Wᵀ", (rows, n_out, k_in), lambda: torch.matmul(x, w.t(), out=out_f)),
                ("input grad dy·W", (rows, k_in, n_out), lambda: torch.matmul(dy, w, out=out_d)),
                ("weight grad dyᵀ·x", (n_out, k_in, rows), lambda: torch.matmul(dy.t(), x, out=out_w)),
            ]:
                gflops = 2.0 * m * n * k / time_per_call(f, batch=0.2) / 1e9
                if args.json:
                    print(json.dumps({"side": "pytorch", "torch": torch.__version__, "rows": rows,
                                      "weight": [n_out, k_in], "product": name, "m": m, "n": n,
                                      "k": k, "gflops_1_thread": gflops}))
                else:
                    print(f"W {n_out:>4}×{k_in:<4} rows {rows}: {name:<18} ({m:>4}×{n:>4}×{k:>4}) "
                          f"pytorch {torch.__version__} {gflops:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
