"""``recadam.NumpyRecAdam``: RecAdam over numpy arrays, for JAX and numpy users (no torch).

The arrays are updated in place through their memory (the address numpy gives in
``__array_interface__``), so they must be writable, C-contiguous float32 or float64 arrays
owned by the caller; a JAX user passes ``numpy`` copies of their parameters and gradients and
reads the parameters back.
"""

import numpy as np

from . import _recadam


class NumpyRecAdam:
    """One param group of RecAdam over a list of numpy arrays, with the official
    hyperparameters and defaults (see ``recadam.RecAdam``). θ* is ``pretrain_params`` (copied)
    or the arrays' values at construction. Each array keeps its own step count.

    >>> opt = NumpyRecAdam([w, b], lr=2e-5, anneal_k=0.1, anneal_t0=100)
    >>> opt.step([grad_w, grad_b])   # None for an array without a gradient this step
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-6,
        weight_decay=0.0,
        correct_bias=True,
        anneal_fun="sigmoid",
        anneal_k=0,
        anneal_t0=0,
        anneal_w=1.0,
        pretrain_cof=5000.0,
        pretrain_params=None,
        *,
        threads=1,
        nonfinite="skip",
        penalty="decoupled",
        backend=None,
    ):
        self.params = list(params)
        for i, p in enumerate(self.params):
            _check_array(p, f"parameter {i}", writable=True)
        dtypes = {p.dtype for p in self.params}
        if len(dtypes) > 1:
            raise TypeError(f"the parameters mix {sorted(map(str, dtypes))}: one optimizer steps one dtype")
        self.group = dict(
            lr=lr,
            betas=(float(betas[0]), float(betas[1])),
            eps=eps,
            weight_decay=weight_decay,
            correct_bias=correct_bias,
            anneal_fun=anneal_fun,
            anneal_k=anneal_k,
            anneal_t0=anneal_t0,
            anneal_w=anneal_w,
            pretrain_cof=pretrain_cof,
            penalty=penalty,
        )
        _recadam.validate(self.group)
        if nonfinite not in ("skip", "raise", "propagate"):
            raise ValueError(f"invalid nonfinite={nonfinite!r}: expected 'skip', 'raise' or 'propagate'")
        self.nonfinite = nonfinite
        self._engine = _recadam.Engine(threads, backend)
        if pretrain_params is None:
            pretrain_params = self.params
        pretrain_params = list(pretrain_params)
        if len(pretrain_params) != len(self.params):
            raise ValueError(f"{len(self.params)} params but {len(pretrain_params)} pretrain_params")
        self.pretrained = []
        for i, (p, pp) in enumerate(zip(self.params, pretrain_params)):
            pp = np.array(pp, dtype=p.dtype, order="C", copy=True)
            if pp.shape != p.shape:
                raise ValueError(f"parameter {i}: pretrain_params has shape {pp.shape}, the parameter {p.shape}")
            self.pretrained.append(pp)
        self.exp_avg = [np.zeros_like(p, order="C") for p in self.params]
        self.exp_avg_sq = [np.zeros_like(p, order="C") for p in self.params]
        self.steps = [0] * len(self.params)
        self.skipped_steps = 0

    @property
    def lr(self):
        return self.group["lr"]

    @lr.setter
    def lr(self, value):
        self.group["lr"] = value

    def step(self, grads):
        """Updates the arrays in place; ``grads[i]`` is the gradient of ``params[i]`` or None.
        Returns False when the step was skipped for a non-finite gradient."""
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ValueError(f"{len(grads)} gradients for {len(self.params)} parameters")
        specs, stepped = [], []
        penalised = self.group["anneal_w"] > 0.0
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if g is None:
                continue
            _check_array(g, f"gradient {i}", writable=False)
            if g.shape != p.shape or g.dtype != p.dtype:
                raise TypeError(f"gradient {i} is {g.dtype} {g.shape}, the parameter {p.dtype} {p.shape}")
            if p.size:
                specs.append(
                    (
                        _address(p),
                        _address(g),
                        _address(self.exp_avg[i]),
                        _address(self.exp_avg_sq[i]),
                        _address(self.pretrained[i]) if penalised else 0,
                        p.size,
                        0,
                        self.steps[i] + 1,
                    )
                )
            stepped.append(i)
        if not stepped:
            return True
        dtype = str(self.params[0].dtype)
        skipped, _ = self._engine.step(dtype, [self.group], specs, "skip" if self.nonfinite == "raise" else self.nonfinite)
        if skipped is not None:
            if self.nonfinite == "raise":
                raise FloatingPointError("a gradient holds NaN or an infinity: the step was refused and nothing changed")
            self.skipped_steps += 1
            return False
        for i in stepped:
            self.steps[i] += 1
        return True


def _address(a):
    return a.__array_interface__["data"][0]


def _check_array(a, what, writable):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{what} is a {type(a).__name__}; expected a numpy array")
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{what} is {a.dtype}; recadam steps float32 and float64")
    if not a.flags.c_contiguous:
        raise TypeError(f"{what} is not C-contiguous (np.ascontiguousarray makes a copy that is)")
    if writable and not a.flags.writeable:
        raise TypeError(f"{what} is read-only")
