"""Golden trajectories of the mixed-precision storage modes, computed by torch.

    python3 scripts/golden_storage.py testdata/golden-storage

Each case is the official RecAdam step (the torch calls of RecAdam.py, in its order, on f32
master parameters) with the storage of one mode around it: gradients arrive in their storage
dtype and are widened with `.float()`, the moments are widened before and stored with
`.to(dtype)` after each step (torch rounds to nearest even), θ* is widened from its dtype, and
the narrowed copy of the parameters is `p.to(dtype)` after the step. Gradients are given (not
computed from p), so the moments do not depend on p: only torch's square root (not correctly
rounded) can make the parameters differ from a correctly rounded implementation, which the
tolerance of testdata/golden/README.md covers.

The files use the format of testdata/golden/README.md, plus `storage` (the dtype of each array;
`params_copy` null without a copy) and `params_copy` in each checkpoint when there is a copy.
Every stored value is exact in its dtype and written as the shortest round-tripping decimal.
"""

import json
import math
import sys
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# name, storage (grads, state, pretrained, params_copy), n, steps, config, gradient scale, init
CASES = [
    ("s01-grads-bf16-copy-bf16", ("bfloat16", "float32", "float32", "bfloat16"), 67, 30,
     dict(anneal_fun="sigmoid", anneal_k=0.5, anneal_t0=10, weight_decay=0.01), 1e-2, "pretrained"),
    ("s02-grads-f16-copy-f16-tiny-and-large", ("float16", "float32", "float32", "float16"), 41, 25,
     dict(anneal_fun="sigmoid", anneal_k=0.2, anneal_t0=5, weight_decay=0.0), "wide", "pretrained"),
    ("s03-pretrained-bf16", ("float32", "float32", "bfloat16", None), 33, 20,
     dict(anneal_fun="sigmoid", anneal_k=1.0, anneal_t0=8, weight_decay=0.01), 1e-3, "random"),
    ("s04-all-bf16", ("bfloat16", "bfloat16", "bfloat16", "bfloat16"), 50, 40,
     dict(anneal_fun="sigmoid", anneal_k=0.1, anneal_t0=20, weight_decay=0.01), 1e-2, "pretrained"),
    ("s05-state-bf16-constant", ("float32", "bfloat16", "float32", "float16"), 19, 15,
     dict(anneal_fun="constant", anneal_k=0.0, anneal_t0=0, anneal_w=0.5, weight_decay=0.0), 1e-1, "random"),
]


def values(t):
    return [float(x) for x in t.double().tolist()]


def gradients(gen, n, steps, scale, dtype):
    out = []
    for _ in range(steps):
        if scale == "wide":
            # f16 extremes: subnormal f16 gradients (below 6.1e-5), ordinary ones, and values
            # near the top of the f16 range.
            mags = torch.pow(10.0, torch.empty(n).uniform_(-7.5, 4.5, generator=gen))
            g = mags * torch.sign(torch.rand(n, generator=gen) - 0.5)
        else:
            g = (torch.rand(n, generator=gen) - 0.5) * 2 * scale
        out.append(g.to(dtype))
    return out


def run(name, storage, n, steps, overrides, scale, init_kind, seed):
    g_dt, s_dt, a_dt, c_dt = (DTYPES[d] if d else None for d in storage)
    config = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0, correct_bias=True,
                  anneal_fun="sigmoid", anneal_k=0.5, anneal_t0=10, anneal_w=1.0, pretrain_cof=50.0)
    config.update(overrides)
    gen = torch.Generator().manual_seed(seed)
    pretrained = ((torch.rand(n, generator=gen) - 0.5) * 0.1).to(a_dt)
    pp = pretrained.float()
    p = pp.clone() if init_kind == "pretrained" else (torch.rand(n, generator=gen) - 0.5) * 0.1
    init = p.clone()
    grads = gradients(gen, n, steps, scale, g_dt)
    m_store = torch.zeros(n, dtype=s_dt)
    v_store = torch.zeros(n, dtype=s_dt)
    lrs = [config["lr"]] * steps
    lambdas, checkpoints = [], []
    marks = {1, 2, steps // 2, steps}
    beta1, beta2 = config["beta1"], config["beta2"]
    for t in range(1, steps + 1):
        grad = grads[t - 1].float()
        exp_avg, exp_avg_sq = m_store.float(), v_store.float()
        # The official step (RecAdam.py), keyword forms of the same torch calls.
        exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        denom = exp_avg_sq.sqrt().add_(config["eps"])
        step_size = lrs[t - 1]
        if config["correct_bias"]:
            step_size = step_size * math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
        if config["anneal_fun"] == "sigmoid":
            lam = config["anneal_w"] / (1.0 + math.exp(-config["anneal_k"] * (t - config["anneal_t0"])))
        else:
            lam = config["anneal_w"]
        lambdas.append(lam)
        p.addcdiv_(exp_avg, denom, value=-step_size * lam)
        p.add_(p - pp, alpha=-lrs[t - 1] * (config["anneal_w"] - lam) * config["pretrain_cof"])
        if config["weight_decay"] > 0.0:
            p.add_(p, alpha=-lrs[t - 1] * config["weight_decay"])
        m_store, v_store = exp_avg.to(s_dt), exp_avg_sq.to(s_dt)
        if t in marks:
            ck = {"step": t, "params": values(p), "exp_avg": values(m_store), "exp_avg_sq": values(v_store)}
            if c_dt is not None:
                ck["params_copy"] = values(p.to(c_dt))
            checkpoints.append(ck)
    return {
        "description": f"{name}: f32 master parameters, grads {storage[0]}, moments {storage[1]}, "
                       f"θ* {storage[2]}, copy {storage[3]}; n={n}, T={steps}, {init_kind} init",
        "dtype": "float32",
        "storage": dict(zip(["grads", "state", "pretrained", "params_copy"], storage)),
        "config": config,
        "lr_per_step": lrs,
        "n": n,
        "steps": steps,
        "pretrained": values(pretrained),
        "init": values(init),
        "grad": {"kind": "given", "per_step": [values(g) for g in grads]},
        "checkpoints": checkpoints,
        "anneal_lambda_per_step": lambdas,
        "source": f"scripts/golden_storage.py, torch {torch.__version__}, CPU",
    }


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "testdata/golden-storage")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    for seed, (name, storage, n, steps, overrides, scale, init_kind) in enumerate(CASES):
        case = run(name, storage, n, steps, overrides, scale, init_kind, seed)
        text = json.dumps(case, indent=1)
        # Read back: every number must be exact in its dtype.
        back = json.loads(text)
        for ck in back["checkpoints"]:
            for key, dt in [("params", "float32"), ("exp_avg", storage[1]), ("exp_avg_sq", storage[1]),
                            ("params_copy", storage[3])]:
                if key in ck:
                    x = torch.tensor(ck[key], dtype=torch.float64)
                    assert torch.equal(x.to(DTYPES[dt]).double(), x), (name, key)
        (out / f"{name}.json").write_text(text + "\n")
        print(out / f"{name}.json")


if __name__ == "__main__":
    main()
