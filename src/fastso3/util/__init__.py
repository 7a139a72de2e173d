"""e3nn's ``e3nn.util`` names, for code written for e3nn 0.6.0 (mace-torch imports ``jit.compile_mode``
and ``codegen.CodeGenMixin``).

* :mod:`fastso3.util.jit`: ``compile_mode`` and e3nn's TorchScript helpers (fastso3 does not build on
  TorchScript: see that module for what each does);
* :mod:`fastso3.util.codegen`: ``CodeGenMixin``, a mixin base with no code generation;
* :mod:`fastso3.util.default_type`: ``explicit_default_types`` and friends;
* :func:`get_optimization_defaults` / :func:`set_optimization_defaults`: e3nn's global switches,
  stored and returned, with no effect on fastso3 (also reachable as ``fastso3.set_optimization_defaults``).

fastso3's own: :func:`fastso3.util.memory.retain_freed_memory` (glibc's malloc keeps freed memory for the next
training step; process-wide, called by ``fastso3 train``).
"""

from ._optimization import get_optimization_defaults, set_optimization_defaults
from .default_type import explicit_default_types, torch_get_default_device, torch_get_default_tensor_type

__all__ = [
    "explicit_default_types",
    "get_optimization_defaults",
    "prod",
    "set_optimization_defaults",
    "torch_get_default_device",
    "torch_get_default_tensor_type",
]


def prod(x):
    """The product of the elements of ``x`` (1 for an empty sequence), as ``e3nn.util.prod``."""
    out = 1
    for a in x:
        out *= a
    return out
