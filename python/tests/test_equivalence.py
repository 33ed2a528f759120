"""recadam.RecAdam against our own torch implementation of the official update (reference.py),
in a real loop: 50 steps, 4 groups with their own hyperparameters, a scheduler changing every
group's lr, and a parameter without a gradient on some steps (it keeps its own step count)."""

import pytest
import torch

import recadam
from reference import ReferenceRecAdam

GROUPS = [
    dict(weight_decay=0.01, anneal_w=1.0, anneal_fun="sigmoid", anneal_k=0.2, anneal_t0=20),
    dict(weight_decay=0.0, anneal_w=1.0, anneal_fun="linear", anneal_t0=30, pretrain_cof=300.0, betas=(0.8, 0.99)),
    dict(weight_decay=0.01, anneal_w=0.0, lr=1e-3),
    dict(weight_decay=0.0, anneal_w=0.0, correct_bias=False, eps=1e-8),
]
SHAPES = [[(64, 33), (7,)], [(33,), (5, 3)], [(10, 64)], [(10,)]]
DEFAULTS = dict(lr=1e-4, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, correct_bias=True, anneal_fun="sigmoid", anneal_k=0, anneal_t0=0, anneal_w=1.0, pretrain_cof=5000.0)


def build(dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype) * 0.1) for s in shapes] for shapes in SHAPES]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_fifty_steps_match_the_reference(dtype, threads):
    ours, theirs = build(dtype), build(dtype)
    pretrained = [[p.detach().clone() for p in g] for g in build(dtype)]
    opt = recadam.RecAdam(
        [dict(params=ps, pretrain_params=pps, **g) for ps, pps, g in zip(ours, pretrained, GROUPS)],
        lr=1e-4, threads=threads,
    )
    ref = ReferenceRecAdam([dict(DEFAULTS, params=ps, pretrain_params=pps, **g) for ps, pps, g in zip(theirs, pretrained, GROUPS)])
    base = [g["lr"] for g in opt.param_groups]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10) * max(0.0, 1 - s / 60))
    gen = torch.Generator().manual_seed(1)
    skipped = opt.param_groups[1]["params"][1]
    for step in range(1, 51):
        for g_ours, g_ref in zip(ours, theirs):
            for a, b in zip(g_ours, g_ref):
                grad = torch.randn(a.shape, generator=gen, dtype=dtype) * 0.01 + a.detach() * 0.1
                a.grad, b.grad = grad.clone(), grad.clone()
        if step % 7 == 0:  # this parameter has no gradient on these steps
            skipped.grad = None
            ref.groups[1]["params"][1].grad = None
        for gi, g in enumerate(ref.groups):
            g["lr"] = opt.param_groups[gi]["lr"]
        opt.step()
        ref.step()
        sched.step()
    assert opt.state[skipped]["step"] == 50 - 50 // 7
    assert opt.param_groups[0]["lr"] != base[0]
    rtol = 1e-6 if dtype == torch.float32 else 1e-13
    for g_ours, g_ref in zip(ours, theirs):
        for a, b in zip(g_ours, g_ref):
            scale = b.abs().max().item()
            assert (a - b).abs().max().item() <= rtol * scale, "params"
            sa, sb = opt.state[a], ref.state[b]
            assert sa["step"] == sb["step"]
            for x, y in ((sa["exp_avg"], sb["m"]), (sa["exp_avg_sq"], sb["v"])):
                assert (x - y).abs().max().item() <= rtol * y.abs().max().item()


def test_the_coupled_variant_matches_its_definition():
    from reference import coupled_step

    gen = torch.Generator().manual_seed(3)
    pp = torch.randn(300, generator=gen, dtype=torch.float64) * 0.1
    ours = torch.nn.Parameter(pp.clone())
    theirs = pp.clone()
    kw = dict(lr=1e-3, anneal_k=0.3, anneal_t0=10, anneal_w=1.0, pretrain_cof=50.0, weight_decay=0.01)
    opt = recadam.RecAdam([ours], pretrain_params=[pp], penalty="coupled", **kw)
    decoupled = torch.nn.Parameter(pp.clone())
    opt_d = recadam.RecAdam([decoupled], pretrain_params=[pp], **kw)
    st = {"step": 0, "m": torch.zeros_like(pp), "v": torch.zeros_like(pp)}
    g = dict(DEFAULTS, **kw)
    for _ in range(30):
        grad = torch.randn(300, generator=gen, dtype=torch.float64) * 0.01 + 0.05
        ours.grad, decoupled.grad = grad.clone(), grad.clone()
        opt.step()
        opt_d.step()
        coupled_step(theirs, pp, grad, st, g)
    scale = theirs.abs().max().item()
    assert (ours.detach() - theirs).abs().max().item() <= 1e-12 * scale
    assert (ours.detach() - decoupled.detach()).abs().max().item() > 1e-6 * scale, "coupled differs from decoupled"
