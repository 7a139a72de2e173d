"""Backend registry: names, availability, explicit selection, and a record of which backend ran.

Backends:

- ``"reference"``: readable pure-torch code on any device; the test oracle.
- ``"cpu"``: compiled C++ kernels for CPU tensors (built on first use, see ``kernels/cpu/loader.py``).
- ``"triton"``: Triton kernels (``kernels/triton/``) for CUDA tensors, or for CPU tensors under the
  Triton interpreter (``TRITON_INTERPRET=1``, how CI tests them). Covers the ops in ``TRITON_OPS``.

``backend=None`` means the default for the tensor's device: ``"cpu"`` for CPU tensors (with a
one-time warning and ``"reference"`` only if the compiler is missing), ``"triton"`` for CUDA tensors
of ops it covers when triton imports, ``"reference"`` otherwise. An explicitly requested backend that
cannot run raises :class:`BackendUnavailable`: it never silently becomes another one.
``last_backend(op)`` tells which backend an op last ran with.
"""

from __future__ import annotations

import functools
import os
import warnings

import torch

__all__ = [
    "BACKENDS",
    "TRITON_OPS",
    "BackendUnavailable",
    "UnsupportedDtype",
    "available_backends",
    "check_backend",
    "last_backend",
    "resolve_backend",
]

BACKENDS = ("reference", "cpu", "triton")
TRITON_OPS = ("sparse_accumulate", "channelwise_tensor_product", "tensor_product_conv", "uvw_tensor_product",
              "symmetric_contraction")
_CPU_DTYPES = (torch.float32, torch.float64)
# Half precisions are read and written as such but accumulated in float32.
_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

_LAST: dict[str, str] = {}
_WARNED: set[str] = set()


class BackendUnavailable(RuntimeError):
    """A backend was requested that cannot run here (missing build, wrong device or dtype)."""


class UnsupportedDtype(BackendUnavailable, TypeError):
    """A backend has no kernel for this dtype (also a ``TypeError``: the input's dtype is what is wrong)."""


# Evaluated once while torch.compile traces, as a constant (the build status cannot change mid-run).
@torch.compiler.assume_constant_result
def _cpu_status() -> tuple[bool, str]:
    from .cpu.loader import library_status

    return library_status()


@functools.cache
def _triton_import_error() -> str | None:
    try:
        import triton  # noqa: F401
    except ImportError as err:
        return f"triton does not import ({err})"
    return None


@torch.compiler.assume_constant_result
def _triton_status(device_type: str) -> tuple[bool, str]:
    error = _triton_import_error()
    if error is not None:
        return False, error
    if device_type == "cuda":
        return True, ""
    if device_type == "cpu":
        if os.environ.get("TRITON_INTERPRET") == "1":
            return True, ""
        return False, "CPU tensors need the Triton interpreter: TRITON_INTERPRET=1 set before triton is imported"
    return False, f"no Triton support for device type {device_type!r}"


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """The backends that can run on ``device`` in this process (for the ops they cover)."""
    device = torch.device(device)
    names = ["reference"]
    if device.type == "cpu" and _cpu_status()[0]:
        names.append("cpu")
    if _triton_status(device.type)[0]:
        names.append("triton")
    return names


def resolve_backend(op: str, backend: str | None, device: torch.device, dtype: torch.dtype) -> str:
    """The concrete backend for one call of ``op``; raises :class:`BackendUnavailable` if ``backend`` can't run."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS} or None")
    if backend is None:
        if device.type == "cuda" and op in TRITON_OPS and dtype in _TRITON_DTYPES and _triton_status("cuda")[0]:
            return "triton"
        if device.type != "cpu" or dtype not in _CPU_DTYPES:
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
        if dtype not in _CPU_DTYPES:
            raise UnsupportedDtype(f"{op}: backend 'cpu' supports float32 and float64, got {dtype}")
        ok, reason = _cpu_status()
        if not ok:
            raise BackendUnavailable(f"{op}: backend 'cpu' is unavailable: {reason}")
    if backend == "triton":
        if op not in TRITON_OPS:
            raise BackendUnavailable(f"{op}: backend 'triton' covers {', '.join(TRITON_OPS)} only")
        if dtype not in _TRITON_DTYPES:
            raise UnsupportedDtype(f"{op}: backend 'triton' supports float16/bfloat16/float32/float64, got {dtype}")
        ok, reason = _triton_status(device.type)
        if not ok:
            raise BackendUnavailable(f"{op}: backend 'triton' is unavailable: {reason}")
    return backend


def check_backend(op: str, backend: str, like: torch.Tensor) -> None:
    """For an op's body (its kernels read raw memory): ``backend`` must be a concrete backend that runs on
    ``like``'s device and dtype; raises :class:`BackendUnavailable` or ``ValueError`` otherwise."""
    if backend is None:
        raise ValueError(f"{op}: the op needs a concrete backend (see resolve_backend), got None")
    resolve_backend(op, backend, like.device, like.dtype)


def record(op: str, backend: str) -> None:
    _LAST[op] = backend


def last_backend(op: str) -> str | None:
    """The backend that ``op`` (e.g. ``"spherical_harmonics"``) last ran with in this process, or None."""
    return _LAST.get(op)
