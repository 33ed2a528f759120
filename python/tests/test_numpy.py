"""The numpy level gives the torch optimizer's bits on the same data."""

import numpy as np
import torch

import recadam


def test_numpy_and_torch_agree_bit_for_bit():
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype(np.float32) for s in [(40, 17), (17,), (3,)]]
    arrays = [a.copy() for a in init]
    tensors = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in init]
    kw = dict(lr=3e-4, anneal_k=0.3, anneal_t0=4, pretrain_cof=100.0, weight_decay=0.01)
    np_opt = recadam.NumpyRecAdam(arrays, threads=2, **kw)
    torch_opt = recadam.RecAdam(tensors, threads=1, **kw)
    for t in range(1, 13):
        grads = [rng.standard_normal(a.shape).astype(np.float32) for a in init]
        if t % 4 == 0:
            grads[2] = None  # no gradient this step: keeps its own count
        for p, g in zip(tensors, grads):
            p.grad = None if g is None else torch.from_numpy(g.copy())
        np_opt.lr = torch_opt.param_groups[0]["lr"] = 3e-4 * t / 12
        assert np_opt.step(grads)
        torch_opt.step()
    for a, p in zip(arrays, tensors):
        assert a.tobytes() == p.detach().numpy().tobytes()
    assert np_opt.steps == [12, 12, 9]
    assert not np.array_equal(arrays[0], init[0])
