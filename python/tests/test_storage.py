"""bfloat16 moments and θ* (``state_dtype``, ``pretrained_dtype``) for float32 parameters: torch's
own trajectories of those storage modes (testdata/golden-storage, written by
scripts/golden_storage.py; the cases whose gradients are float32, as a torch parameter's are),
the same bits on every backend and thread count, torch's state_dict round trip, and errors that
name the buffer whose storage is not the one chosen."""

import json

import pytest
import torch

import recadam
from conftest import data_dir

STORAGE = data_dir("RECADAM_GOLDEN_STORAGE_DIR", "testdata/golden-storage")
CASES = sorted(STORAGE.glob("*.json"))
# Cases a torch optimizer can replay: float32 gradients (torch keeps a gradient in its
# parameter's dtype) and moments and θ* in float32 or bfloat16.
TORCH_CASES = [
    p
    for p in CASES
    if (lambda s: s["grads"] == "float32" and s["state"] in ("float32", "bfloat16") and s["pretrained"] in ("float32", "bfloat16"))(
        json.loads(p.read_text())["storage"]
    )
]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def test_there_are_storage_cases_a_torch_optimizer_can_replay():
    assert TORCH_CASES, f"no storage case with float32 gradients in {STORAGE}"


def optimizer(case, p, threads=1, backend=None, **kw):
    c = case["config"]
    storage = case["storage"]
    pp = torch.tensor(case["pretrained"], dtype=torch.float32).to(DTYPES[storage["pretrained"]])
    return recadam.RecAdam(
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
        state_dtype=DTYPES[storage["state"]],
        pretrained_dtype=DTYPES[storage["pretrained"]],
        **kw,
    )


def replay(case, threads=1, backend=None, resume_at=None):
    p = torch.nn.Parameter(torch.tensor(case["init"], dtype=torch.float32))
    opt = optimizer(case, p, threads, backend)
    out = {}
    for t in range(1, case["steps"] + 1):
        p.grad = torch.tensor(case["grad"]["per_step"][t - 1], dtype=torch.float32)
        opt.param_groups[0]["lr"] = case["lr_per_step"][t - 1]
        opt.step()
        st = opt.state[p]
        assert st["exp_avg"].dtype == DTYPES[case["storage"]["state"]]
        out[t] = (p.detach().clone(), st["exp_avg"].clone(), st["exp_avg_sq"].clone())
        if t == resume_at:
            # torch's own format, through its cast of the state to the parameter's dtype.
            saved = opt.state_dict()
            opt = optimizer(case, p, threads, backend)
            opt.load_state_dict(saved)
    return out


def bits(t):
    return t.contiguous().view(torch.int16 if t.dtype == torch.bfloat16 else torch.int32).tolist()


@pytest.mark.parametrize("path", TORCH_CASES, ids=[p.stem for p in TORCH_CASES])
def test_storage_case_follows_torch(path):
    case = json.loads(path.read_text())
    runs = [replay(case, threads, backend) for threads, backend in [(1, "scalar"), (1, None), (2, None)]]
    resumed = replay(case, resume_at=case["steps"] // 2)
    for t, states in runs[0].items():
        for other in runs[1:] + [resumed]:
            for a, b in zip(states, other[t]):
                assert bits(a) == bits(b), f"step {t}: backends, threads or a resume differ"
    for cp in case["checkpoints"]:
        got = runs[0][cp["step"]]
        for name, g in zip(("params", "exp_avg", "exp_avg_sq"), got):
            ref = torch.tensor(cp[name], dtype=torch.float64)
            scale = ref.abs().max().item()
            err = (g.double() - ref).abs().max().item()
            assert err <= 1e-6 * scale, f"{path.stem} step {cp['step']} {name}: error {err} against scale {scale}"


def small(state_dtype=torch.bfloat16, pretrained_dtype=torch.bfloat16, **kw):
    p = torch.nn.Parameter(torch.linspace(-1, 1, 300))
    opt = recadam.RecAdam([p], lr=1e-3, anneal_k=0.5, anneal_t0=3, pretrain_cof=50.0, state_dtype=state_dtype, pretrained_dtype=pretrained_dtype, **kw)
    p.grad = torch.linspace(0.5, -0.5, 300)
    return p, opt


def test_bfloat16_state_and_snapshot_are_stored_rounded():
    p, opt = small()
    before = p.detach().clone()
    opt.step()
    st = opt.state[p]
    assert st["exp_avg"].dtype == st["exp_avg_sq"].dtype == torch.bfloat16
    # θ* taken at the first step, rounded to nearest even as torch's .to() does.
    assert torch.equal(st["pretrain_param"], before.to(torch.bfloat16))
    assert not torch.equal(p.detach(), before)


def test_a_state_buffer_of_another_dtype_is_an_error_naming_it():
    p, opt = small()
    opt.step()
    # A float16 buffer where bfloat16 is due (same size in bytes: never reinterpreted).
    opt.state[p]["exp_avg"] = opt.state[p]["exp_avg"].to(torch.float16)
    with pytest.raises(TypeError, match=r"exp_avg is torch.float16 .*expected torch.bfloat16"):
        opt.step()
    # A partition re-cut to another size between steps.
    p2, opt2 = small()
    opt2.step()
    opt2.state[p2]["exp_avg_sq"] = torch.zeros(299, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match=r"exp_avg_sq is torch.bfloat16 \(299,\), expected torch.bfloat16 \(300,\)"):
        opt2.step()


def test_unsupported_storage_is_refused():
    with pytest.raises(TypeError, match="state_dtype"):
        small(state_dtype=torch.float16)
    with pytest.raises(TypeError, match="pretrained_dtype"):
        small(pretrained_dtype=torch.int8)
    # bfloat16 storage is for float32 parameters.
    p = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    opt = recadam.RecAdam([p], lr=1e-5, state_dtype=torch.bfloat16)
    p.grad = torch.ones(4, dtype=torch.float64)
    with pytest.raises(TypeError, match="need float32 parameters"):
        opt.step()
    # θ* given in bfloat16 without pretrained_dtype: the hint says what to pass.
    q = torch.nn.Parameter(torch.zeros(4))
    with pytest.raises(TypeError, match=r"pass pretrained_dtype=torch.bfloat16"):
        recadam.RecAdam([q], lr=1e-5, pretrain_params=[torch.zeros(4, dtype=torch.bfloat16)])
    # The project's checkpoint format keeps float32/float64 state only.
    p3, opt3 = small()
    opt3.step()
    with pytest.raises(TypeError, match="state_dict"):
        opt3.save("/nonexistent/never-written")


def test_a_nan_gradient_skips_the_step_in_bfloat16_storage():
    p, opt = small()
    opt.step()
    state = {k: v.clone() for k, v in opt.state[p].items() if torch.is_tensor(v)}
    before = p.detach().clone()
    p.grad[17] = float("nan")
    opt.step()
    assert opt.skipped_steps == 1
    assert torch.equal(p.detach(), before)
    for k, v in state.items():
        assert torch.equal(opt.state[p][k], v), k


def test_load_state_dict_keeps_the_optimizers_own_settings():
    p, opt = small(threads=2, nonfinite="raise", backend="scalar")
    opt.step()
    saved = opt.state_dict()
    p2, opt2 = small(threads=2, nonfinite="raise", backend="scalar")
    opt2.load_state_dict(saved)
    assert (opt2.threads, opt2.backend, opt2.nonfinite) == (2, "scalar", "raise")
    assert (opt2.state_dtype, opt2.pretrained_dtype) == (torch.bfloat16, torch.bfloat16)
    assert opt2.state[p2]["exp_avg"].dtype == torch.bfloat16
    p2.grad = torch.full_like(p2, float("nan"))
    with pytest.raises(FloatingPointError):
        opt2.step()
