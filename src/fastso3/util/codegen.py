"""``CodeGenMixin`` of ``e3nn.util.codegen`` (e3nn 0.6.0, ``e3nn/util/codegen/_mixin.py``), without code generation.

e3nn's mixin compiles FX graphs to TorchScript when ``jit_mode == 'script'`` and, for pickling, stores
the compiled modules as bytes. fastso3 never scripts, so the mixin only does what e3nn does in its
default ``'eager'`` mode: :meth:`CodeGenMixin._codegen_register` adds each ``fx.GraphModule`` as a
submodule. Classes written as ``class M(CodeGenMixin, torch.nn.Module)`` (mace-torch's
``SymmetricContraction``) work unchanged, pickle and deep-copy as plain modules, and the optimization
defaults have no effect on them.
"""

from __future__ import annotations

from typing import Dict

from torch import fx

__all__ = ["CodeGenMixin"]


class CodeGenMixin:
    """Mixin base for ``torch.nn.Module`` subclasses that build ``fx.GraphModule`` s (see the module docstring)."""

    def _codegen_register(self, funcs: Dict[str, fx.GraphModule]) -> None:
        """Add each ``fx.GraphModule`` of ``funcs`` as the submodule of its name (recorded in ``__codegen__``)."""
        for name, graph_module in funcs.items():
            if not isinstance(graph_module, fx.GraphModule):
                raise TypeError(f"funcs[{name!r}] must be a torch.fx.GraphModule, got {type(graph_module).__name__}")
        if not hasattr(self, "__codegen__"):
            self.__codegen__ = []
        self.__codegen__.extend(funcs)
        for name, graph_module in funcs.items():
            self.add_module(name, graph_module)
