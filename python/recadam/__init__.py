"""RecAdam (Chen et al., "Recall and Learn", EMNLP 2020) backed by recadam's Rust kernel.

``recadam.RecAdam`` is a drop-in for the official ``RecAdam.py`` as a ``torch.optim.Optimizer``;
``recadam.NumpyRecAdam`` steps numpy arrays (for JAX and numpy users; no torch needed);
``recadam.param_groups`` builds the official GLUE script's four groups;
``recadam.deepspeed_config`` makes a DeepSpeed config run ``RecAdam`` as ZeRO-Offload's CPU
optimizer.
"""

from ._recadam import __version__, backends
from ._numpy import NumpyRecAdam
from ._deepspeed import deepspeed_config

__all__ = ["RecAdam", "NumpyRecAdam", "param_groups", "deepspeed_config", "backends", "__version__"]


def __getattr__(name):
    # torch is imported only when its part is used: `import recadam` works without it.
    if name in ("RecAdam", "param_groups"):
        try:
            from . import _torch
        except ImportError as e:
            raise ImportError(f"recadam.{name} needs PyTorch (pip install torch): {e}") from e
        return getattr(_torch, name)
    raise AttributeError(f"module 'recadam' has no attribute {name!r}")
