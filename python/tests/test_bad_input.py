"""Bad input is a Python exception naming what is wrong, never a crash or a silent wrong
result; and the non-finite guard."""

import numpy as np
import pytest
import torch

import recadam


def param(n=8, dtype=torch.float32):
    p = torch.nn.Parameter(torch.linspace(-1, 1, n, dtype=dtype))
    p.grad = torch.full_like(p, 0.1)
    return p


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(lr=1e-3, pretrain_cof=5000.0), ["lr"]),  # the official defaults: lr·γ = 5, diverges
        (dict(lr=-1.0), ["lr"]),
        (dict(lr=2e-5, betas=(1.0, 0.999)), ["beta1"]),
        (dict(lr=2e-5, eps=0.0), ["eps"]),
        (dict(lr=2e-5, weight_decay=-0.1), ["weight_decay"]),
        (dict(lr=2e-5, anneal_fun="cosine"), ["anneal_fun", "cosine"]),
        (dict(lr=2e-5, anneal_fun="linear", anneal_t0=0), ["t0"]),
        (dict(lr=2e-5, anneal_w=-1.0), ["anneal_w"]),
        (dict(lr=2e-5, penalty="both"), ["penalty", "both"]),
        (dict(lr=2e-5, threads=0), ["threads"]),
        (dict(lr=2e-5, nonfinite="ignore"), ["nonfinite"]),
        (dict(lr=2e-5, backend="sse9"), ["backend", "sse9"]),
    ],
)
def test_invalid_hyperparameters_are_value_errors(kw, words):
    with pytest.raises(ValueError) as e:
        recadam.RecAdam([param()], **kw)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_a_scheduled_lr_that_diverges_changes_nothing():
    p = param()
    opt = recadam.RecAdam([p], lr=2e-5)
    before = p.detach().clone()
    opt.param_groups[0]["lr"] = 1.0
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    assert torch.equal(p.detach(), before) and opt.state[p]["step"] == 0


def test_pretrain_params_of_another_shape_or_length():
    p, q = param(8), param(4)
    with pytest.raises(ValueError, match=r"parameter 1.*\(3,\).*\(4,\)"):
        recadam.RecAdam([p, q], lr=2e-5, pretrain_params=[torch.zeros(8), torch.zeros(3)])
    with pytest.raises(ValueError, match="2 params but 1 pretrain_params"):
        recadam.RecAdam([p, q], lr=2e-5, pretrain_params=[torch.zeros(8)])
    with pytest.raises(TypeError, match="float64"):
        recadam.RecAdam([p], lr=2e-5, pretrain_params=[torch.zeros(8, dtype=torch.float64)])


def test_unsupported_tensors_are_type_errors():
    meta = torch.nn.Parameter(torch.zeros(4, device="meta"))
    meta.grad = torch.zeros(4, device="meta")
    with pytest.raises(TypeError, match="meta"):
        recadam.RecAdam([meta], lr=2e-5).step()

    sparse = param(4)
    sparse.grad = torch.zeros(4).to_sparse()
    with pytest.raises(TypeError, match="sparse"):
        recadam.RecAdam([sparse], lr=2e-5).step()

    strided = torch.nn.Parameter(torch.zeros(4, 6).t())
    strided.grad = torch.zeros(6, 4)
    with pytest.raises(TypeError, match="contiguous"):
        recadam.RecAdam([strided], lr=2e-5).step()

    half = torch.nn.Parameter(torch.zeros(4, dtype=torch.float16))
    half.grad = torch.zeros(4, dtype=torch.float16)
    with pytest.raises(TypeError, match="float16"):
        recadam.RecAdam([half], lr=2e-5).step()

    ints = torch.zeros(4, dtype=torch.int32)
    ints.grad = torch.zeros(4, dtype=torch.int32)
    with pytest.raises(TypeError, match="int32"):
        recadam.RecAdam([ints], lr=2e-5).step()

    mixed = [param(4), param(4, torch.float64)]
    with pytest.raises(TypeError, match="one dtype"):
        recadam.RecAdam(mixed, lr=2e-5).step()


def test_a_parameter_given_twice():
    p = param()
    with pytest.raises(ValueError, match="more than one parameter group"):
        recadam.RecAdam([dict(params=[p]), dict(params=[p])], lr=2e-5)
    # A view of another parameter's memory: the step would write one buffer twice.
    base = torch.zeros(16)
    a = torch.nn.Parameter(base[:8])
    b = torch.nn.Parameter(base[4:12])
    a.grad, b.grad = torch.ones(8), torch.ones(8)
    opt = recadam.RecAdam([a, b], lr=2e-5)
    with pytest.raises(ValueError, match="share memory"):
        opt.step()
    assert torch.equal(base, torch.zeros(16))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_the_guard_skips_non_finite_steps_and_changes_nothing(bad):
    p, q = param(), param()
    opt = recadam.RecAdam([p, q], lr=2e-5)
    opt.step()
    before = [t.detach().clone() for t in (p, q, opt.state[p]["exp_avg"], opt.state[q]["exp_avg_sq"])]
    q.grad[3] = bad
    opt.step()
    assert opt.skipped_steps == 1
    after = [p, q, opt.state[p]["exp_avg"], opt.state[q]["exp_avg_sq"]]
    assert all(torch.equal(a.detach(), b) for a, b in zip(after, before))
    assert opt.state[p]["step"] == 1

    raising = recadam.RecAdam([q], lr=2e-5, nonfinite="raise")
    with pytest.raises(FloatingPointError):
        raising.step()
    propagating = recadam.RecAdam([q], lr=2e-5, nonfinite="propagate")
    propagating.step()
    assert not torch.isfinite(q.detach()).all(), "propagate lets the value through, as the official code"


def test_numpy_level_bad_input():
    w = np.zeros(8, dtype=np.float32)
    with pytest.raises(TypeError, match="int64"):
        recadam.NumpyRecAdam([np.zeros(3, dtype=np.int64)], lr=2e-5)
    with pytest.raises(TypeError, match="C-contiguous"):
        recadam.NumpyRecAdam([np.zeros((4, 4), dtype=np.float32).T], lr=2e-5)
    ro = np.zeros(4, dtype=np.float32)
    ro.flags.writeable = False
    with pytest.raises(TypeError, match="read-only"):
        recadam.NumpyRecAdam([ro], lr=2e-5)
    with pytest.raises(ValueError, match="lr"):
        recadam.NumpyRecAdam([w], lr=1.0)
    opt = recadam.NumpyRecAdam([w], lr=2e-5)
    with pytest.raises(TypeError, match="float64"):
        opt.step([np.zeros(8)])
    with pytest.raises(ValueError, match="share memory"):
        opt.step([w])  # the gradient is the parameter itself


def test_a_rust_panic_is_a_python_exception():
    from recadam import _recadam

    with pytest.raises(RuntimeError, match="a test panic"):
        _recadam._panic_for_test()
