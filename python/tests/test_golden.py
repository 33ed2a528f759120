"""Every golden trajectory of the official RecAdam, replayed through recadam.RecAdam on torch
tensors: within the golden tolerance of the official numbers, and the same bits on every
backend and thread count (the Rust tests show those bits are the core reference's)."""

import json

import pytest
import torch

import recadam
from conftest import data_dir

GOLDEN = data_dir("RECADAM_GOLDEN_DIR", "testdata/golden")
CASES = sorted(GOLDEN.glob("*.json"))
RTOL = {"float32": 1e-6, "float64": 1e-13}


def test_there_are_golden_cases():
    assert CASES, f"no golden cases (*.json) in {GOLDEN}"


def replay(case, threads, backend):
    dtype = getattr(torch, case["dtype"])
    c = case["config"]
    p = torch.nn.Parameter(torch.tensor(case["init"], dtype=dtype))
    pp = torch.tensor(case["pretrained"], dtype=dtype)
    opt = recadam.RecAdam(
        [p],
        lr=c["lr"],
        betas=(c["beta1"], c["beta2"]),
        eps=c["eps"],
        weight_decay=c["weight_decay"],
        correct_bias=c["correct_bias"],
        anneal_fun=c["anneal_fun"],
        anneal_k=c["anneal_k"],
        anneal_t0=c["anneal_t0"],
        anneal_w=c["anneal_w"],
        pretrain_cof=c["pretrain_cof"],
        pretrain_params=[pp],
        threads=threads,
        backend=backend,
        nonfinite="propagate",
    )
    grad = case["grad"]
    if grad["kind"] == "quadratic":
        a = torch.tensor(grad["a"], dtype=dtype)
        cc = torch.tensor(grad["c"], dtype=dtype)
    out = {}
    for t in range(1, case["steps"] + 1):
        if grad["kind"] == "quadratic":
            p.grad = a * (p.detach() - cc)
        else:
            p.grad = torch.tensor(grad["per_step"][t - 1], dtype=dtype)
        opt.param_groups[0]["lr"] = case["lr_per_step"][t - 1]
        opt.step()
        st = opt.state[p]
        assert st["step"] == t
        out[t] = (p.detach().clone(), st["exp_avg"].clone(), st["exp_avg_sq"].clone())
    return out


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_case(path):
    case = json.loads(path.read_text())
    dtype = getattr(torch, case["dtype"])
    runs = [replay(case, threads, backend) for threads, backend in [(1, "scalar"), (1, None), (2, None)]]
    for t, states in runs[0].items():
        for other in runs[1:]:
            for a, b in zip(states, other[t]):
                assert torch.equal(a.view(-1), b.view(-1)) and a.numpy().tobytes() == b.numpy().tobytes(), f"step {t}: backends or threads differ"
    for cp in case["checkpoints"]:
        got = runs[0][cp["step"]]
        for name, g in zip(("params", "exp_avg", "exp_avg_sq"), got):
            ref = torch.tensor(cp[name], dtype=dtype)
            scale = ref.abs().max().item()
            err = (g - ref).abs().max().item()
            assert err <= RTOL[case["dtype"]] * scale, f"{path.stem} step {cp['step']} {name}: error {err} against scale {scale}"
