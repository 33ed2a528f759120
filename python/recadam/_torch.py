"""``recadam.RecAdam``: the official ``RecAdam.py`` as a ``torch.optim.Optimizer``, stepping on
recadam's Rust kernel.

How the memory is reached: each step passes ``tensor.data_ptr()`` of every parameter, gradient,
``exp_avg``, ``exp_avg_sq`` and θ* to one Rust call, with its length. Only contiguous CPU float32
or float64 tensors are accepted (checked on every step), so each address starts ``numel``
elements in order; the Rust side updates them in place, with no copy. The tensors stay alive
for the call because this method holds them (through ``param_groups`` and ``state``) until the
call returns; the GIL is released meanwhile, so other Python threads may run, but must not touch
these tensors.
"""

import math

import torch

from . import _recadam

_FLOATS = (torch.float32, torch.float64)
# Storage of the moments and θ* besides the parameters' own dtype (float32 parameters only).
_STORED = (torch.bfloat16,)
_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.bfloat16: "bfloat16"}


class RecAdam(torch.optim.Optimizer):
    """RecAdam with the official signature, defaults and meaning (DESIGN section 1).

    Each param group may carry its own ``lr``, ``betas``, ``eps``, ``weight_decay``,
    ``correct_bias``, ``anneal_fun``, ``anneal_k``, ``anneal_t0``, ``anneal_w``,
    ``pretrain_cof`` and ``pretrain_params`` (one tensor per parameter, as the official GLUE
    script builds them). ``pretrain_params=None`` takes θ* as each parameter's value at its first
    step. ``state[p]`` holds ``step`` (the parameter's own count, as the official code),
    ``exp_avg`` and ``exp_avg_sq`` (and ``pretrain_param``, the snapshot, when θ* was not given).

    Beyond the official keywords:

    - ``threads``: threads of the step (default: ``torch.get_num_threads()``); 1 starts none.
    - ``nonfinite``: ``"skip"`` (default: a step with a NaN or infinite gradient changes nothing
      and is counted in ``skipped_steps``), ``"raise"`` (the same, raising ``FloatingPointError``)
      or ``"propagate"`` (the official behaviour: the values go through the update).
    - ``penalty``: ``"decoupled"`` (RecAdam) or ``"coupled"`` (the paper's ablation, DESIGN 1.2).
      AdamW is ``anneal_w=0``.
    - ``backend``: force a SIMD backend (``recadam.backends()``); every backend gives the same bits.
    - ``state_dtype``: ``torch.bfloat16`` keeps ``exp_avg`` and ``exp_avg_sq`` of float32
      parameters in bfloat16 (8 bytes per parameter less on a host that offloads the optimizer;
      each step computes the moments in float32 and stores them rounded to nearest even: other
      numerics than float32 moments, as DeepSpeedCPUAdam's ``fp32_optimizer_states=False``).
      Default: the parameter's dtype.
    - ``pretrained_dtype``: ``torch.bfloat16`` keeps θ* in bfloat16 (a bf16 pretrained checkpoint
      loses nothing; 2 bytes per parameter less). ``pretrain_params`` must then be bfloat16, and a
      snapshot θ* is rounded to nearest even. Default: the parameter's dtype.

    Invalid hyperparameters raise ``ValueError`` naming the field and value, including a learning
    rate at which the penalty diverges (lr·(w − λ)·γ ≥ 2: the official defaults lr=1e-3 with
    pretrain_cof=5000 do); unsupported tensors raise ``TypeError``.
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
        threads=None,
        nonfinite="skip",
        penalty="decoupled",
        backend=None,
        state_dtype=None,
        pretrained_dtype=None,
    ):
        for name, value in (("state_dtype", state_dtype), ("pretrained_dtype", pretrained_dtype)):
            if value is not None and value not in (torch.float32, torch.float64) + _STORED:
                raise TypeError(
                    f"unsupported {name}={value}: expected None (the parameter's dtype) or torch.bfloat16"
                )
        self.state_dtype = state_dtype
        self.pretrained_dtype = pretrained_dtype
        if nonfinite not in ("skip", "raise", "propagate"):
            raise ValueError(f"invalid nonfinite={nonfinite!r}: expected 'skip', 'raise' or 'propagate'")
        if threads is None:
            threads = max(1, torch.get_num_threads())
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"invalid threads={threads!r}: expected an int ≥ 1")
        self._engine = _recadam.Engine(threads, backend)
        self._backend = backend
        self.nonfinite = nonfinite
        self.skipped_steps = 0
        self._checked = {}
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            correct_bias=correct_bias,
            anneal_fun=anneal_fun,
            anneal_k=anneal_k,
            anneal_t0=anneal_t0,
            anneal_w=anneal_w,
            pretrain_cof=pretrain_cof,
            pretrain_params=pretrain_params,
            penalty=penalty,
        )
        super().__init__(params, defaults)

    @property
    def threads(self):
        return self._engine.threads

    @property
    def backend(self):
        return self._engine.backend

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        index = len(self.param_groups) - 1
        _check_group(group, index)
        pps = group["pretrain_params"]
        if pps is None:
            return
        pps = list(pps)
        group["pretrain_params"] = pps
        if len(pps) != len(group["params"]):
            raise ValueError(
                f"param group {index}: {len(group['params'])} params but {len(pps)} pretrain_params"
            )
        for i, (p, pp) in enumerate(zip(group["params"], pps)):
            if not isinstance(pp, torch.Tensor):
                raise TypeError(f"param group {index}, parameter {i}: pretrain_params must be tensors, not {type(pp).__name__}")
            if pp.shape != p.shape:
                raise ValueError(
                    f"param group {index}, parameter {i}: pretrain_params has shape {tuple(pp.shape)}, the parameter {tuple(p.shape)}"
                )
            want = self._stored_dtype(p, self.pretrained_dtype)
            if pp.dtype != want:
                hint = "" if pp.dtype not in _STORED else f" (pass pretrained_dtype={pp.dtype} to keep θ* in {pp.dtype})"
                raise TypeError(
                    f"param group {index}, parameter {i}: pretrain_params is {pp.dtype}, expected {want}{hint}"
                )

    @staticmethod
    def _stored_dtype(p, chosen):
        """The dtype a parameter's moments or θ* are kept in: `chosen`, or the parameter's."""
        return p.dtype if chosen is None else chosen

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        # torch replaces each group with the saved one: keys a state dict from the official
        # `RecAdam.py` lacks (`penalty`) come back from the defaults.
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        self.skipped_steps = state_dict.get("recadam", {}).get("skipped_steps", 0)
        self._checked = {}
        # torch casts floating-point state to its parameter's dtype: back to the storage chosen
        # here (exact: the values came from that storage).
        for p, st in self.state.items():
            for key, chosen in (("exp_avg", self.state_dtype), ("exp_avg_sq", self.state_dtype), ("pretrain_param", self.pretrained_dtype)):
                t = st.get(key)
                if isinstance(t, torch.Tensor) and t.dtype != self._stored_dtype(p, chosen):
                    st[key] = t.to(self._stored_dtype(p, chosen)).contiguous()

    def state_dict(self):
        sd = super().state_dict()
        sd["recadam"] = {"skipped_steps": self.skipped_steps}
        return sd

    def __getstate__(self):
        # torch keeps defaults, state and param_groups; the engine (threads, kernel) is not
        # picklable and is rebuilt from its settings.
        state = super().__getstate__()
        state["recadam"] = dict(
            threads=self._engine.threads,
            backend=self._backend,
            nonfinite=self.nonfinite,
            skipped_steps=self.skipped_steps,
            state_dtype=self.state_dtype,
            pretrained_dtype=self.pretrained_dtype,
        )
        return state

    def __setstate__(self, state):
        settings = state.pop("recadam", None)
        super().__setstate__(state)
        if settings is None and hasattr(self, "_engine"):
            # torch's load_state_dict ends in __setstate__ on the live optimizer: its own settings
            # (threads, backend, guard, storage) stay.
            self._checked = {}
            return
        settings = settings or dict(threads=1, backend=None, nonfinite="skip", skipped_steps=0)
        self._engine = _recadam.Engine(settings["threads"], settings["backend"])
        self._backend = settings["backend"]
        self.nonfinite = settings["nonfinite"]
        self.skipped_steps = settings["skipped_steps"]
        self.state_dtype = settings.get("state_dtype")
        self.pretrained_dtype = settings.get("pretrained_dtype")
        self._checked = {}

    @torch.no_grad()
    def step(self, closure=None):
        """One step of every parameter that has a gradient, in one call into Rust."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        specs = []
        stepped = []
        dtype = None
        checked = self._checked
        for gi, group in enumerate(self.param_groups):
            pps = group["pretrain_params"]
            penalised = group["anneal_w"] > 0.0
            for i, p in enumerate(group["params"]):
                grad = p.grad
                if grad is None:
                    continue
                n = p.numel()
                # torch keeps a gradient's dtype and shape equal to its parameter's; the
                # layout, device and length are checked on every step.
                if not (_usable(p) and _usable(grad) and grad.numel() == n and grad.dtype is p.dtype):
                    where = f"param group {gi}, parameter {i}"
                    _check_tensor(p, where, "the parameter")
                    _check_tensor(grad, where, "its gradient")
                    raise TypeError(f"{where}: the gradient is {grad.dtype} {tuple(grad.shape)}, the parameter {p.dtype} {tuple(p.shape)}")
                if dtype is not p.dtype:
                    if dtype is not None:
                        where = f"param group {gi}, parameter {i}"
                        raise TypeError(f"{where}: {p.dtype} next to {dtype}: one optimizer steps one dtype (use one optimizer per dtype)")
                    dtype = p.dtype
                state = self.state[p]
                if not state:
                    _init_state(state, p, self._stored_dtype(p, self.state_dtype))
                m = state["exp_avg"]
                v = state["exp_avg_sq"]
                pp = None
                if penalised:
                    if pps is not None:
                        pp = pps[i]
                    else:
                        pp = state.get("pretrain_param")
                        if pp is None:
                            pp = state["pretrain_param"] = _snapshot(p, self._stored_dtype(p, self.pretrained_dtype))
                # The state and θ* are checked in full when first seen and whenever their memory
                # or length changes (a load_state_dict, a user's replacement or resize).
                key = (m.data_ptr(), v.data_ptr(), 0 if pp is None else pp.data_ptr(), n, m.numel(), v.numel(), n if pp is None else pp.numel())
                if checked.get(id(p)) != key:
                    where = f"param group {gi}, parameter {i}"
                    _check_state(p, where, m, v, pp, self._stored_dtype(p, self.state_dtype), self._stored_dtype(p, self.pretrained_dtype))
                    checked[id(p)] = key
                stepped.append(state)
                if n:
                    specs.append((p.data_ptr(), grad.data_ptr(), key[0], key[1], key[2], n, gi, state["step"] + 1))
        if not stepped:
            return loss
        groups = [_spec(g) for g in self.param_groups]
        name = lambda d: _NAMES.get(d, str(d))
        skipped, _norm = self._engine.step(
            name(dtype),
            groups,
            specs,
            "skip" if self.nonfinite == "raise" else self.nonfinite,
            name(self.state_dtype or dtype),
            name(self.pretrained_dtype or dtype),
        )
        if skipped is not None:
            if self.nonfinite == "skip":
                self.skipped_steps += 1
            else:
                raise FloatingPointError(
                    "a gradient holds NaN or an infinity: the step was refused and nothing changed"
                )
            return loss
        for state in stepped:
            state["step"] += 1
        return loss

    def _state_specs(self, loading):
        """Every parameter's state as `(exp_avg, exp_avg_sq, θ* or 0, len, group, steps)`
        for the project's checkpoint format, creating zero state where there is none yet."""
        if self.state_dtype not in (None, torch.float32, torch.float64) or self.pretrained_dtype not in (None, torch.float32, torch.float64):
            raise TypeError(
                "save() and load_checkpoint() keep float32 or float64 state; with bfloat16 state or θ* "
                "use state_dict() and load_state_dict() (torch's format, exact for every dtype)"
            )
        specs, dtype = [], None
        for gi, group in enumerate(self.param_groups):
            pps = group["pretrain_params"]
            for i, p in enumerate(group["params"]):
                where = f"param group {gi}, parameter {i}"
                _check_tensor(p, where, "the parameter")
                if dtype is None:
                    dtype = p.dtype
                elif p.dtype != dtype:
                    raise TypeError(f"{where}: {p.dtype} next to {dtype}: one optimizer steps one dtype")
                state = self.state[p]
                if not state:
                    _init_state(state, p)
                pp = None
                if group["anneal_w"] > 0.0:
                    pp = pps[i] if pps is not None else state.get("pretrain_param")
                    if pp is None:
                        if loading:
                            raise ValueError(
                                f"{where}: the project's checkpoint format keeps a checksum of θ*, not θ* itself: "
                                "give pretrain_params to load it (or use state_dict()/load_state_dict(), which keep θ*)"
                            )
                        pp = state["pretrain_param"] = p.detach().clone(memory_format=torch.contiguous_format)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                for t, what in ((m, "its exp_avg"), (v, "its exp_avg_sq"), (pp, "its pretrain_params")):
                    if t is not None:
                        _check_tensor(t, where, what)
                        if t.dtype != p.dtype or t.shape != p.shape:
                            raise TypeError(f"{where}: {what} is {t.dtype} {tuple(t.shape)}, the parameter {p.dtype} {tuple(p.shape)}")
                specs.append((m.data_ptr(), v.data_ptr(), 0 if pp is None else pp.data_ptr(), p.numel(), gi, state["step"]))
        return specs, ("float64" if dtype == torch.float64 else "float32")

    def save(self, path):
        """Writes the state in the project's checkpoint format: safetensors with the groups'
        hyperparameters, every parameter's step count, a CRC-32 of each θ* and of everything,
        written atomically (temporary file, fsync, rename). `load_checkpoint` resumes from it
        with the same bits; `state_dict()` is torch's format, also exact."""
        specs, dtype = self._state_specs(loading=False)
        self._engine.checkpoint(str(path), dtype, [_spec(g) for g in self.param_groups], specs, False)

    def load_checkpoint(self, path):
        """Reads a file `save` wrote into this optimizer, which must have the same groups,
        parameters, hyperparameters (but the learning rates, which are restored) and θ*. A
        damaged or mismatched file raises ValueError naming what is wrong, and changes nothing."""
        specs, dtype = self._state_specs(loading=True)
        steps, lrs = self._engine.checkpoint(str(path), dtype, [_spec(g) for g in self.param_groups], specs, True)
        k = 0
        for group, lr in zip(self.param_groups, lrs):
            group["lr"] = lr
            for p in group["params"]:
                self.state[p]["step"] = steps[k]
                k += 1

    @classmethod
    def load(cls, path, params, **kwargs):
        """A RecAdam over ``params`` (with the constructor's keywords, as when it was saved)
        resumed from a file that ``save`` wrote."""
        opt = cls(params, **kwargs)
        opt.load_checkpoint(path)
        return opt

    def lambda_(self, group=0):
        """λ(t) of a param group at its latest step (the largest ``state['step']`` among its
        parameters; λ(1) before the first): the weight of the target task."""
        g = self.param_groups[group]
        t = max((self.state[p].get("step", 0) for p in g["params"]), default=0)
        return _recadam.anneal_lambda(_spec(g), max(t, 1))

    @torch.no_grad()
    def distance_to_pretrained(self):
        """Euclidean distance of the parameters to θ* (the paper's measure of forgetting):
        ``{"total": d, "groups": [d_0, d_1, ...]}``, in float64; a group without θ* yet (no
        pretrain_params and no step taken) counts 0."""
        per_group = []
        for g in self.param_groups:
            pps = g["pretrain_params"]
            total = 0.0
            for i, p in enumerate(g["params"]):
                pp = pps[i] if pps is not None else self.state[p].get("pretrain_param")
                if pp is None or g["anneal_w"] <= 0.0:
                    continue
                total += float(((p.detach().double() - pp.double()) ** 2).sum())
            per_group.append(math.sqrt(total))
        return {"total": math.sqrt(sum(d * d for d in per_group)), "groups": per_group}


def _init_state(state, p, dtype=None):
    """A parameter's state before its first step, as the official code makes it (in `dtype`,
    by default the parameter's)."""
    state["step"] = 0
    state["exp_avg"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.contiguous_format)
    state["exp_avg_sq"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.contiguous_format)


def _snapshot(p, dtype):
    """θ* taken from a parameter: a copy, rounded to nearest even where `dtype` is narrower."""
    if dtype == p.dtype:
        return p.detach().clone(memory_format=torch.contiguous_format)
    return p.detach().to(dtype).contiguous()


def _check_state(p, where, m, v, pp, state_dtype, pretrained_dtype):
    """The moments and θ* of `p` must be CPU, dense, contiguous, of its shape and of the
    storage chosen for them: a bfloat16 buffer where float16 or float32 is due (or a state
    resized by a re-partition) is an error naming it, never a reinterpretation."""
    if p.dtype != torch.float32 and (state_dtype != p.dtype or pretrained_dtype != p.dtype):
        raise TypeError(f"{where}: bfloat16 moments or θ* need float32 parameters; the parameter is {p.dtype}")
    for t, what, want in ((m, "its exp_avg", state_dtype), (v, "its exp_avg_sq", state_dtype), (pp, "its pretrain_params", pretrained_dtype)):
        if t is None:
            continue
        if t.dtype != want or t.shape != p.shape:
            raise TypeError(f"{where}: {what} is {t.dtype} {tuple(t.shape)}, expected {want} {tuple(p.shape)} (the parameter is {p.dtype} {tuple(p.shape)})")
        _check_tensor(t, where, what, stored=True)


def _spec(group):
    return {k: group[k] for k in ("lr", "betas", "eps", "weight_decay", "correct_bias", "anneal_fun", "anneal_k", "anneal_t0", "anneal_w", "pretrain_cof", "penalty")}


def _check_group(group, index):
    betas = group["betas"]
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"param group {index}: invalid betas={betas!r}: expected two numbers")
    group["betas"] = (float(betas[0]), float(betas[1]))
    try:
        _recadam.validate(_spec(group))
    except ValueError as e:
        raise ValueError(f"param group {index}: {e}") from None
    except TypeError as e:
        raise ValueError(f"param group {index}: {e}") from None


def _usable(t):
    return t.is_cpu and not t.is_sparse and t.dtype in _FLOATS and t.is_contiguous()


def _check_tensor(t, where, what, stored=False):
    if _usable(t) or (stored and t.is_cpu and not t.is_sparse and t.dtype in _STORED and t.is_contiguous()):
        return
    if t.device.type != "cpu":
        raise TypeError(f"{where}: {what} is on {t.device}; recadam steps CPU tensors (move the optimizer state to the CPU, as ZeRO-Offload does)")
    if t.layout != torch.strided:
        raise TypeError(f"{where}: {what} is {t.layout}; recadam steps dense tensors, not sparse ones")
    if t.dtype not in _FLOATS:
        raise TypeError(f"{where}: {what} is {t.dtype}; recadam steps float32 and float64")
    raise TypeError(f"{where}: {what} is not contiguous; recadam steps contiguous tensors (call .contiguous() on the parameter)")


def param_groups(model, weight_decay, anneal_w=1.0, head_anneal_w=0.0, no_decay=("bias", "LayerNorm.weight"), encoder_prefix=None, **extra):
    """The official GLUE script's four groups: encoder (pulled towards θ*, with and without
    weight decay) and head (``head_anneal_w``, 0: not pulled; with and without weight decay).

    A parameter belongs to the encoder when its name starts with ``encoder_prefix`` (default:
    the model's ``base_model_prefix`` followed by ``.``, ``bert.`` for BERT); it gets no weight
    decay when its name contains one of ``no_decay``. θ* is each parameter's value at its first
    step (``pretrain_params=None``), i.e. the pretrained weights when fine-tuning starts. Empty
    groups are left out. ``extra`` goes into every group.

    >>> optimizer = recadam.RecAdam(recadam.param_groups(model, 0.01), lr=2e-5, anneal_k=0.1, anneal_t0=250)
    """
    if encoder_prefix is None:
        base = getattr(model, "base_model_prefix", "")
        encoder_prefix = f"{base}." if base else ""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = []
    for encoder in (True, False):
        for decay in (True, False):
            params = [
                p
                for n, p in named
                if n.startswith(encoder_prefix) == encoder and (not any(nd in n for nd in no_decay)) == decay
            ]
            if params:
                groups.append(
                    dict(
                        params=params,
                        weight_decay=weight_decay if decay else 0.0,
                        anneal_w=anneal_w if encoder else head_anneal_w,
                        **extra,
                    )
                )
    return groups
