"""Checkpoints in torch's format: 10 steps, save, load into a fresh optimizer, 10 more gives the
bits of 20 uninterrupted steps; a state dict in the official RecAdam.py's format loads and
resumes; deepcopy and pickling work."""

import copy
import io
import pickle

import pytest
import torch

import recadam


def model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))


def batches(n):
    gen = torch.Generator().manual_seed(7)
    return [(torch.randn(8, 16, generator=gen), torch.randint(0, 3, (8,), generator=gen)) for _ in range(n)]


def make(net, **kw):
    groups = [
        dict(params=list(net[0].parameters()), anneal_w=1.0),
        dict(params=list(net[2].parameters()), anneal_w=0.0, lr=1e-3),
    ]
    opt = recadam.RecAdam(groups, lr=1e-4, anneal_k=0.5, anneal_t0=5, weight_decay=0.01, **kw)
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=8)
    return opt, sched


def train(net, opt, sched, data):
    for x, y in data:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        sched.step()


def bits(net):
    return [p.detach().numpy().tobytes() for p in net.parameters()]


def test_save_load_resume_is_bit_identical():
    data = batches(20)
    straight = model()
    opt, sched = make(straight)
    train(straight, opt, sched, data)

    first = model()
    opt1, sched1 = make(first)
    train(first, opt1, sched1, data[:10])
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt1.state_dict(), "sched": sched1.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)

    resumed = model(seed=123)  # different weights, replaced by the checkpoint
    resumed.load_state_dict(saved["model"])
    opt2, sched2 = make(resumed)
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    train(resumed, opt2, sched2, data[10:])
    assert bits(resumed) == bits(straight)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        sa, sb = opt.state[a], opt2.state[b]
        assert sa["step"] == sb["step"] == 20
        assert sa.keys() == sb.keys()
        for key in ("exp_avg", "exp_avg_sq", "pretrain_param"):
            if key in sa:  # the head's group has no θ*
                assert torch.equal(sa[key], sb[key])


def test_an_official_state_dict_loads_and_resumes():
    """The official RecAdam.py keeps state {step (int), exp_avg, exp_avg_sq} and groups with
    pretrain_params and no `penalty`: such a dict loads and the run goes on as if uninterrupted."""
    data = batches(12)
    net = model()
    pretrained = [p.detach().clone() for p in net.parameters()]
    groups = lambda n: [dict(params=list(n.parameters()), pretrain_params=[q.clone() for q in pretrained])]
    straight_net = copy.deepcopy(net)
    straight = recadam.RecAdam(groups(straight_net), lr=1e-4, anneal_k=0.5, anneal_t0=3)
    for x, y in data:
        straight.zero_grad()
        torch.nn.functional.cross_entropy(straight_net(x), y).backward()
        straight.step()

    opt = recadam.RecAdam(groups(net), lr=1e-4, anneal_k=0.5, anneal_t0=3)
    for x, y in data[:6]:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    sd = opt.state_dict()
    official = {
        "state": {k: {"step": v["step"], "exp_avg": v["exp_avg"], "exp_avg_sq": v["exp_avg_sq"]} for k, v in sd["state"].items()},
        "param_groups": [{k: v for k, v in g.items() if k != "penalty"} for g in sd["param_groups"]],
    }
    fresh = recadam.RecAdam(groups(net), lr=1e-4, anneal_k=0.5, anneal_t0=3)
    fresh.load_state_dict(official)
    assert fresh.param_groups[0]["penalty"] == "decoupled"
    for x, y in data[6:]:
        fresh.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        fresh.step()
    assert bits(net) == bits(straight_net)


def test_deepcopy_and_pickle():
    net = model()
    opt, _ = make(net, threads=2)
    x, y = batches(1)[0]
    torch.nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
    clone = copy.deepcopy(opt)
    assert clone.state_dict()["state"].keys() == opt.state_dict()["state"].keys()
    assert clone.threads == 2
    back = pickle.loads(pickle.dumps(opt))
    assert back.threads == 2 and back.nonfinite == "skip"
    back.step()


def test_the_projects_checkpoint_format_resumes_exactly(tmp_path):
    data = batches(16)
    straight = model()
    pretrained = [p.detach().clone() for p in straight.parameters()]
    kw = dict(lr=1e-4, anneal_k=0.5, anneal_t0=5, weight_decay=0.01)
    groups = lambda net: [dict(params=list(net.parameters()), pretrain_params=[q.clone() for q in pretrained])]
    opt = recadam.RecAdam(groups(straight), **kw)
    first = copy.deepcopy(straight)
    opt1 = recadam.RecAdam(groups(first), **kw)

    def run(net, o, part):
        for x, y in part:
            o.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            o.step()

    run(straight, opt, data)
    run(first, opt1, data[:8])
    opt1.param_groups[0]["lr"] = 7e-5  # a scheduler's rate: restored by the load
    opt1.save(tmp_path / "opt.safetensors")
    opt1.param_groups[0]["lr"] = 1e-4
    resumed = copy.deepcopy(first)
    opt2 = recadam.RecAdam.load(tmp_path / "opt.safetensors", groups(resumed), **kw)
    assert opt2.param_groups[0]["lr"] == 7e-5
    opt2.param_groups[0]["lr"] = 1e-4
    assert {s["step"] for s in opt2.state.values()} == {8}
    run(resumed, opt2, data[8:])
    assert bits(resumed) == bits(straight)

    # A damaged file, or another setup, is a ValueError that changes nothing.
    raw = bytearray((tmp_path / "opt.safetensors").read_bytes())
    raw[-5] ^= 0xFF
    (tmp_path / "bad.safetensors").write_bytes(bytes(raw))
    fresh = recadam.RecAdam(groups(model()), **kw)
    with pytest.raises(ValueError, match="checksum|CRC|damaged|corrupt"):
        fresh.load_checkpoint(tmp_path / "bad.safetensors")
    assert all(len(s) == 0 or s["step"] == 0 for s in fresh.state.values())
    other = recadam.RecAdam(groups(model()), **dict(kw, weight_decay=0.0))
    with pytest.raises(ValueError, match="weight_decay"):
        other.load_checkpoint(tmp_path / "opt.safetensors")
    # θ* taken at the first step is not in the file: loading needs pretrain_params.
    with pytest.raises(ValueError, match="pretrain_params"):
        recadam.RecAdam.load(tmp_path / "opt.safetensors", model().parameters(), **kw)
