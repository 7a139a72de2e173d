"""The names of ``e3nn.util.jit`` (e3nn 0.6.0, ``e3nn/util/jit.py``), without TorchScript.

fastso3 does not build on TorchScript (``torch.jit.script`` is deprecated from torch 2.10; fastso3's
kernels are ``torch.library`` ops meant for eager mode and ``torch.compile``). So:

* :func:`compile_mode` records the mode on the class (attribute ``__e3nn_compile_mode__``, as e3nn)
  and returns the class unchanged; :func:`get_compile_mode` reads it back.
* :func:`compile` walks the module tree as e3nn does: where e3nn would leave every module alone (no
  module of the tree is marked ``'script'`` or ``'trace'``) it returns the module (a deep copy with
  ``in_place=False``), as e3nn; where e3nn would script or trace, it raises ``NotImplementedError``
  naming the module and the alternative, ``torch.compile``. A module marked ``'unsupported'`` raises
  ``NotImplementedError`` as in e3nn.
* :func:`script`, :func:`trace` and :func:`trace_module` always script or trace in e3nn: they raise
  ``NotImplementedError``.
* :func:`get_tracing_inputs` (random example inputs, no TorchScript) works as in e3nn.
* :func:`get_optimization_defaults`, :func:`set_optimization_defaults` and
  :func:`disable_e3nn_codegen` store e3nn's switches; they have no effect on fastso3.
"""

from __future__ import annotations

import copy
import inspect
import random
from contextlib import contextmanager
from typing import Optional

import torch
from torch import fx

from ._optimization import get_optimization_defaults, set_optimization_defaults

__all__ = [
    "compile",
    "compile_mode",
    "disable_e3nn_codegen",
    "get_compile_mode",
    "get_optimization_defaults",
    "get_tracing_inputs",
    "script",
    "set_optimization_defaults",
    "trace",
    "trace_module",
]

_E3NN_COMPILE_MODE = "__e3nn_compile_mode__"
_VALID_MODES = ("trace", "script", "unsupported", None)
_MAKE_TRACING_INPUTS = "_make_tracing_inputs"
_NO_TORCHSCRIPT = "fastso3 does not support TorchScript (deprecated since torch 2.10); use torch.compile(module) instead"


def compile_mode(mode: Optional[str]):
    """Class decorator: mark a ``torch.nn.Module`` subclass with e3nn's compile mode ``'script'``,
    ``'trace'``, ``'unsupported'`` or ``None``. Returns the class itself (no other effect)."""
    if mode not in _VALID_MODES:
        raise ValueError(f"Invalid compile mode {mode!r}: expected one of {_VALID_MODES}")

    def decorator(obj):
        if not (inspect.isclass(obj) and issubclass(obj, torch.nn.Module)):
            raise TypeError("@compile_mode can only decorate classes derived from torch.nn.Module")
        setattr(obj, _E3NN_COMPILE_MODE, mode)
        return obj

    return decorator


def get_compile_mode(mod: torch.nn.Module) -> Optional[str]:
    """The compile mode recorded on ``mod`` (or its class): ``'script'``, ``'trace'``, ``'unsupported'``,
    or ``None`` if unmarked; an unmarked ``fx.GraphModule`` counts as ``'script'`` (as e3nn)."""
    mode = getattr(mod, _E3NN_COMPILE_MODE, None)
    if mode is None and isinstance(mod, fx.GraphModule):
        mode = "script"
    if mode not in _VALID_MODES:
        raise ValueError(f"Invalid compile mode {mode!r} on {type(mod).__name__}")
    return mode


def compile(
    mod: torch.nn.Module,
    n_trace_checks: int = 1,
    script_options: Optional[dict] = None,
    trace_options: Optional[dict] = None,
    in_place: bool = True,
    recurse: bool = True,
) -> torch.nn.Module:
    """e3nn's recursive TorchScript compiler, for the cases where it compiles nothing: returns ``mod``
    (deep-copied if ``in_place=False``) when neither ``mod`` nor (with ``recurse``) any submodule is
    marked ``'script'`` or ``'trace'``; raises ``NotImplementedError`` otherwise, and for ``'unsupported'``."""
    if n_trace_checks < 1:
        raise ValueError(f"n_trace_checks must be >= 1, got {n_trace_checks}")
    modules = mod.named_modules() if recurse else [("", mod)]
    for name, sub in modules:
        mode = get_compile_mode(sub)
        where = f"{type(sub).__name__}" + (f" (submodule {name!r})" if name else "")
        if mode == "unsupported":
            raise NotImplementedError(f"{where} does not support TorchScript compilation")
        if mode in ("script", "trace"):
            raise NotImplementedError(f"{where} is marked for TorchScript ({mode!r}): {_NO_TORCHSCRIPT}")
    return mod if in_place else copy.deepcopy(mod)


def script(mod: torch.nn.Module, in_place: bool = True):
    """``torch.jit.script`` after :func:`compile` in e3nn: always raises ``NotImplementedError`` here."""
    raise NotImplementedError(f"script({type(mod).__name__}): {_NO_TORCHSCRIPT}")


def trace_module(mod: torch.nn.Module, inputs: Optional[dict] = None, check_inputs: Optional[list] = None, in_place: bool = True):
    """``torch.jit.trace_module`` after :func:`compile` in e3nn: always raises ``NotImplementedError`` here."""
    raise NotImplementedError(f"trace_module({type(mod).__name__}): {_NO_TORCHSCRIPT}")


def trace(mod: torch.nn.Module, example_inputs: Optional[tuple] = None, check_inputs: Optional[list] = None, in_place: bool = True):
    """``torch.jit.trace`` after :func:`compile` in e3nn: always raises ``NotImplementedError`` here."""
    raise NotImplementedError(f"trace({type(mod).__name__}): {_NO_TORCHSCRIPT}")


def _floating_tensor(mod: torch.nn.Module) -> Optional[torch.Tensor]:
    """The first floating parameter of ``mod``, else its first floating buffer (e3nn's device and dtype guess)."""
    for tensors in (mod.parameters(), mod.buffers()):
        for t in tensors:
            if t.is_floating_point():
                return t
    return None


def get_tracing_inputs(
    mod: torch.nn.Module, n: int = 1, device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None
) -> list:
    """``n`` random example inputs of ``mod``, as a list of ``{method name: arguments}`` dicts.

    ``mod._make_tracing_inputs(n)`` gives them if defined; otherwise ``forward`` gets one random tensor
    per entry of ``mod.irreps_in`` (or ``irreps_in1``/``irreps_in2``; ``'cartesian_points'`` -> ``(b, 3)``),
    batch ``b`` drawn from 1..4 with Python's ``random``. Floating tensors are moved to ``device`` and
    ``dtype``, by default those of ``mod``'s first floating parameter or buffer (else CPU and torch's
    default dtype). Raises ``ValueError`` if the inputs cannot be inferred.
    """
    from ..testing import _infer_specs, _random_input  # the spec rules of fastso3.testing, one definition

    if hasattr(mod, _MAKE_TRACING_INPUTS):
        inputs = mod._make_tracing_inputs(n)
        if not isinstance(inputs, list) or not all(
            isinstance(d, dict) and all(isinstance(k, str) and isinstance(v, tuple) for k, v in d.items()) for d in inputs
        ):
            raise TypeError("_make_tracing_inputs must return a list of dict[str, tuple]")
    else:
        specs, _ = _infer_specs(mod, None, [None])
        inputs = []
        for _ in range(n):
            batch = random.randint(1, 4)
            inputs.append({"forward": [_random_input(spec, batch, i) for i, spec in enumerate(specs)]})
    reference = _floating_tensor(mod)
    if device is None:
        device = reference.device if reference is not None else torch.device("cpu")
    if dtype is None:
        dtype = reference.dtype if reference is not None else torch.get_default_dtype()

    def move(x):
        if isinstance(x, torch.Tensor):
            return x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device=device)
        if isinstance(x, (list, tuple)):
            return type(x)(move(e) for e in x)
        if isinstance(x, dict):
            return {k: move(v) for k, v in x.items()}
        raise TypeError(f"tracing inputs must be (nested) dicts, tuples and lists of tensors, got {type(x).__name__}")

    return move(inputs)


@contextmanager
def disable_e3nn_codegen():
    """Context manager setting ``jit_script_fx=False`` for its duration (e3nn's switch; no effect on fastso3)."""
    initial = get_optimization_defaults()["jit_script_fx"]
    set_optimization_defaults(jit_script_fx=False)
    try:
        yield
    finally:
        set_optimization_defaults(jit_script_fx=initial)
