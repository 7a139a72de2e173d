"""e3nn's global optimization switches (``e3nn.set_optimization_defaults``, e3nn 0.6.0 ``e3nn/__init__.py``).

fastso3 generates no TorchScript or FX code, so none of these settings changes what fastso3 computes:
they are stored and returned so that code written for e3nn (mace-torch's ``tools/compile.py``, e3nn's
``assert_torch_compile``) runs unchanged. The keys, defaults and the legacy ``jit_script_fx`` ->
``jit_mode`` mapping are e3nn's.
"""

from __future__ import annotations

from typing import Dict, Union

import torch

__all__ = ["get_optimization_defaults", "set_optimization_defaults"]

_JIT_MODES = ("script", "inductor", "eager")
# e3nn: torch.jit.script is deprecated from torch 2.10, so the default jit_mode is "eager" there.
_OPT_DEFAULTS: Dict[str, Union[bool, str]] = dict(
    specialized_code=True,
    optimize_einsums=True,
    jit_script_fx=True,
    jit_mode="eager" if torch.torch_version.TorchVersion(torch.__version__.split("+")[0]) >= "2.10" else "script",
)


def set_optimization_defaults(**kwargs: Union[bool, str]) -> None:
    """Set e3nn's global optimization defaults; keys ``specialized_code``, ``optimize_einsums``,
    ``jit_script_fx`` (bool) and ``jit_mode`` (``'script'``, ``'inductor'`` or ``'eager'``).

    Setting ``jit_script_fx`` also moves ``jit_mode`` as e3nn does: ``False`` -> ``'eager'``; ``True`` ->
    ``'script'`` unless it is ``'script'`` or ``'inductor'`` already. Unknown keys and modes raise
    ``ValueError``. The values have no effect on fastso3's modules (see the module docstring).
    """
    for key, value in kwargs.items():
        if key not in _OPT_DEFAULTS:
            raise ValueError(f"Unknown optimization option: {key}; known: {sorted(_OPT_DEFAULTS)}")
        if key == "jit_mode" and value not in _JIT_MODES:
            raise ValueError(f"Invalid jit_mode: {value!r}. Expected one of {_JIT_MODES}")
    for key, value in kwargs.items():
        if key == "jit_script_fx":
            if not value:
                _OPT_DEFAULTS["jit_mode"] = "eager"
            elif _OPT_DEFAULTS["jit_mode"] not in ("script", "inductor"):
                _OPT_DEFAULTS["jit_mode"] = "script"
        _OPT_DEFAULTS[key] = value


def get_optimization_defaults() -> Dict[str, Union[bool, str]]:
    """A copy of the global optimization defaults (see :func:`set_optimization_defaults`)."""
    return dict(_OPT_DEFAULTS)
