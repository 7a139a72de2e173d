"""Backend registry: names, availability, explicit selection, and a record of which backend ran.

Backends:

- ``"reference"``: readable pure-torch code on any device; the test oracle.
- ``"cpu"``: compiled C++ kernels for CPU tensors (built on first use, see ``kernels/cpu/loader.py``).

``backend=None`` means the default for the tensor's device: ``"cpu"`` for CPU tensors (with a
one-time warning and ``"reference"`` only if the compiler is missing), ``"reference"`` elsewhere.
An explicitly requested backend that cannot run raises :class:`BackendUnavailable`: it never
silently becomes another one. ``last_backend(op)`` tells which backend an op last ran with.
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["BACKENDS", "BackendUnavailable", "available_backends", "resolve_backend", "last_backend"]

BACKENDS = ("reference", "cpu")

_LAST: dict[str, str] = {}
_WARNED: set[str] = set()


class BackendUnavailable(RuntimeError):
    """A backend was requested that cannot run here (missing build, wrong device or dtype)."""


# Evaluated once while torch.compile traces, as a constant (the build status cannot change mid-run).
@torch.compiler.assume_constant_result
def _cpu_status() -> tuple[bool, str]:
    from .cpu.loader import library_status

    return library_status()


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """The backends that can run on ``device`` in this process."""
    device = torch.device(device)
    names = ["reference"]
    if device.type == "cpu" and _cpu_status()[0]:
        names.append("cpu")
    return names


def resolve_backend(op: str, backend: str | None, device: torch.device, dtype: torch.dtype) -> str:
    """The concrete backend for one call of ``op``; raises :class:`BackendUnavailable` if ``backend`` can't run."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS} or None")
    fast_dtype = dtype in (torch.float32, torch.float64)
    if backend is None:
        if device.type != "cpu" or not fast_dtype:
            return "reference"
        ok, reason = _cpu_status()
        if ok:
            return "cpu"
        if "cpu" not in _WARNED:
            _WARNED.add("cpu")
            warnings.warn(f"fastso3: the 'cpu' backend is unavailable ({reason}); using 'reference'", stacklevel=3)
        return "reference"
    if backend == "cpu":
        if device.type != "cpu":
            raise BackendUnavailable(f"{op}: backend 'cpu' needs CPU tensors, got device {device}")
        if not fast_dtype:
            raise BackendUnavailable(f"{op}: backend 'cpu' supports float32 and float64, got {dtype}")
        ok, reason = _cpu_status()
        if not ok:
            raise BackendUnavailable(f"{op}: backend 'cpu' is unavailable: {reason}")
    return backend


def record(op: str, backend: str) -> None:
    _LAST[op] = backend


def last_backend(op: str) -> str | None:
    """The backend that ``op`` (e.g. ``"spherical_harmonics"``) last ran with in this process, or None."""
    return _LAST.get(op)
