"""DeepSpeed ZeRO-Offload with ``recadam.RecAdam`` as the CPU optimizer.

What DeepSpeed (0.19) does with a client optimizer under ``offload_optimizer: {device: cpu}``:
ZeRO stages 1 and 2 replace each param group's ``params`` with one flat fp32 partition on the
host (``runtime/zero/stage_1_and_2.py``, ``param_group['params'] =
[self.single_partition_of_fp32_groups[i]]``) and step each group on its own, with
``param_groups`` cut to that group (``_optimizer_step``); it then copies the partition back to
the model's (bf16, fp16 or fp32) weights itself. ``recadam.RecAdam`` needs nothing special for
that: with ``pretrain_params=None`` (what ``recadam.param_groups`` builds) θ* is each flat
partition's value at its first step, i.e. the pretrained weights, and each group keeps its own
``anneal_w``, so the head stays unpenalised. The guard against non-finite gradients then acts per
group, since each group is its own ``step()`` call.
"""

import copy

_FRAGMENT = {
    # DeepSpeed would otherwise refuse a client optimizer under offload, or wrap it.
    "zero_force_ds_cpu_optimizer": False,
    "zero_allow_untested_optimizer": True,
}


def deepspeed_config(config=None, *, stage=2, pin_memory=True):
    """``config`` (a DeepSpeed config dict, not changed) with what ZeRO-Offload needs to run
    ``recadam.RecAdam`` as its CPU optimizer: ZeRO ``stage`` (1 or 2; keeps one already set),
    ``offload_optimizer`` on the CPU (``pin_memory`` as given) and the two switches that let
    DeepSpeed take a client optimizer there. Pass the optimizer to ``deepspeed.initialize``::

        optimizer = recadam.RecAdam(recadam.param_groups(model, 0.01), lr=2e-5, anneal_k=0.1, anneal_t0=250)
        engine, optimizer, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer,
            config=recadam.deepspeed_config({"train_micro_batch_size_per_gpu": 16, "bf16": {"enabled": True}}))

    Raises ``ValueError`` when the config names its own ``optimizer`` (DeepSpeed would build that
    one instead), offloads the optimizer elsewhere than the CPU, or asks for a stage other than
    1 or 2."""
    out = copy.deepcopy(config) if config is not None else {}
    if not isinstance(out, dict):
        raise ValueError(f"config must be a dict, not {type(config).__name__}")
    if "optimizer" in out:
        raise ValueError(
            "the config names an optimizer ('optimizer' key): DeepSpeed would build it instead of recadam.RecAdam; remove it"
        )
    zero = out.setdefault("zero_optimization", {})
    stage = zero.setdefault("stage", stage)
    if stage not in (1, 2):
        raise ValueError(f"ZeRO stage {stage!r}: recadam.RecAdam is tested as ZeRO-Offload's optimizer with stages 1 and 2")
    offload = zero.setdefault("offload_optimizer", {})
    device = offload.setdefault("device", "cpu")
    if device != "cpu":
        raise ValueError(f"offload_optimizer device {device!r}: recadam.RecAdam runs on the CPU ('cpu')")
    offload.setdefault("pin_memory", pin_memory)
    for key, value in _FRAGMENT.items():
        if out.get(key, value) != value:
            raise ValueError(f"{key}={out[key]!r}: ZeRO-Offload with a client optimizer needs {key}={value!r}")
        out[key] = value
    return out
