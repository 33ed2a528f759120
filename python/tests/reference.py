"""Our own short torch implementation of the official update, written from DESIGN section 1.1
(per parameter, its own step count, per-group hyperparameters): the independent reference of
the equivalence test."""

import math

import torch


def anneal_lambda(fun, t, k, t0, w):
    if fun == "sigmoid":
        return float(1.0 / (1.0 + math.exp(-k * (t - t0)))) * w
    if fun == "linear":
        return min(1.0, t / t0) * w
    return w


class ReferenceRecAdam:
    def __init__(self, groups):
        # groups: dicts with params, pretrain_params and every hyperparameter.
        self.groups = groups
        self.state = {}

    @torch.no_grad()
    def step(self):
        for g in self.groups:
            b1, b2 = g["betas"]
            for p, pp in zip(g["params"], g["pretrain_params"]):
                if p.grad is None:
                    continue
                st = self.state.setdefault(p, {"step": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p)})
                st["step"] += 1
                t = st["step"]
                m, v, grad = st["m"], st["v"], p.grad
                m.mul_(b1).add_(grad, alpha=1.0 - b1)
                v.mul_(b2).addcmul_(grad, grad, value=1.0 - b2)
                denom = v.sqrt().add_(g["eps"])
                step_size = g["lr"]
                if g["correct_bias"]:
                    step_size = step_size * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
                w = g["anneal_w"]
                if w > 0.0:
                    lam = anneal_lambda(g["anneal_fun"], t, g["anneal_k"], g["anneal_t0"], w)
                    p.addcdiv_(m, denom, value=-step_size * lam)
                    p.add_(p - pp, alpha=-g["lr"] * (w - lam) * g["pretrain_cof"])
                else:
                    p.addcdiv_(m, denom, value=-step_size)
                if g["weight_decay"] > 0.0:
                    p.add_(p, alpha=-g["lr"] * g["weight_decay"])


@torch.no_grad()
def coupled_step(p, pp, grad, st, g):
    """The paper's coupled ablation (DESIGN 1.2): g' = λ·g + (w − λ)·γ·(p − θ*), then Adam."""
    b1, b2 = g["betas"]
    st["step"] += 1
    t = st["step"]
    w = g["anneal_w"]
    lam = anneal_lambda(g["anneal_fun"], t, g["anneal_k"], g["anneal_t0"], w)
    g2 = lam * grad + (w - lam) * g["pretrain_cof"] * (p - pp)
    st["m"].mul_(b1).add_(g2, alpha=1.0 - b1)
    st["v"].mul_(b2).addcmul_(g2, g2, value=1.0 - b2)
    denom = st["v"].sqrt().add_(g["eps"])
    step_size = g["lr"] * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
    p.addcdiv_(st["m"], denom, value=-step_size)
    if g["weight_decay"] > 0.0:
        p.add_(p, alpha=-g["lr"] * g["weight_decay"])
