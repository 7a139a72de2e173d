"""One step of the Wigner-block recursion as one op over a trilinear form.

With ``D (E, 2l-1, 2l-1)`` Wigner blocks of degree ``l-1``, ``R (E, 3, 3)`` the rotations (``D^1 = R`` in e3nn's
``(x, y, z)`` basis), ``G (E, 2l+1, 2l+1)`` and ``C = sqrt(2l+1) wigner_3j(l-1, 1, l)`` ``(2l-1, 3, 2l+1)``,

    F(D, R, G) = sum_e sum_{a,b,i,j,k,n} G[e,a,b] C[i,j,a] C[k,n,b] D[e,i,k] R[e,j,n]

``fastso3::wigner_step(D, R, G, outputs, backend)`` contracts it into each slot of ``outputs`` from the other two
(with a single output, its slot's input may be None): slot 2 is ``D^l = C^T (D^{l-1} (x) R) C``, slots 0 and 1 its gradients. ``l``
comes from the shapes. Autograd permutes the slots, so derivatives of every order (forces, force training) are
the same op.

Why: the recursion as einsums is a chain of tiny batched matmuls and transposing copies, 2.8 ms for 16,000 edges at
``l = 2`` and 58 ms up to ``l = 6`` (more than the SO(2) layer's products); ``C`` has ``10 l - 9`` non-zeros of
its ``3 (2l-1)(2l+1)`` entries, and the CPU kernel visits only those, per edge in scratch. The
reference twin (every device) is a chain of pairwise einsums with the dense ``C``.
"""

from __future__ import annotations

import ctypes
import functools
import math
from typing import Optional

import numpy as np
import torch

from fastso3.core.cg import wigner_3j

from . import registry
from ._checks import check_slots
from ._multilinear import register_multilinear_autograd

__all__ = ["wigner_step_op"]


@functools.cache
def _cg(l: int) -> np.ndarray:
    """``sqrt(2l+1) wigner_3j(l-1, 1, l)``, float64 ``(2l-1, 3, 2l+1)``."""
    return wigner_3j(l - 1, 1, l) * math.sqrt(2 * l + 1)


@functools.cache
def _entries(l: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The non-zero entries of :func:`_cg`: indices ``(nnz, 3)`` int64 and values ``(nnz,)`` float64 (CPU)."""
    C = _cg(l)
    nz = np.argwhere(np.abs(C) > 1e-14)
    return torch.from_numpy(np.ascontiguousarray(nz, dtype=np.int64)), torch.from_numpy(C[tuple(nz.T)].copy())


def _check(d, r, g, outputs: list) -> tuple[int, int]:
    """``(E, l)`` after checking what the kernel will read (it reads raw memory)."""
    slots = (d, r, g)
    check_slots("wigner_step", slots, outputs)
    given = {n: t for n, t in zip(("D", "R", "G"), slots) if t is not None}
    first = next(iter(given.values()))
    if any(t.dtype != first.dtype or t.device != first.device for t in given.values()):
        raise TypeError("wigner_step: " + ", ".join(f"{n} is {t.dtype} on {t.device}" for n, t in given.items()))
    if not first.is_floating_point():
        raise TypeError(f"wigner_step: expected floating-point tensors, got {first.dtype}")
    if any(t.dim() != 3 or t.shape[1] != t.shape[2] or t.shape[1] % 2 == 0 for t in given.values()):
        raise ValueError("wigner_step: expected square blocks (E, 2l-1, 2l-1), (E, 3, 3), (E, 2l+1, 2l+1), got "
                         + ", ".join(f"{n} {tuple(t.shape)}" for n, t in given.items()))  # fmt: skip
    l = (d.shape[1] + 1) // 2 if d is not None else (g.shape[1] - 1) // 2
    E = first.shape[0]
    for name, t, n in (("D", d, 2 * l - 1), ("R", r, 3), ("G", g, 2 * l + 1)):
        if t is not None and tuple(t.shape) != (E, n, n):
            raise ValueError(f"wigner_step: {name} must have shape ({E}, {n}, {n}) at degree l = {l}, got "
                             f"{tuple(t.shape)}")  # fmt: skip
    if l < 2:
        raise ValueError(f"wigner_step: the degree l must be >= 2, got blocks of degree {l}")
    return E, l


def _new_output(like: torch.Tensor, slot: int, E: int, l: int) -> torch.Tensor:
    n = (2 * l - 1, 3, 2 * l + 1)[slot]
    return like.new_empty(E, n, n)


@functools.cache
def _dense(l: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """:func:`_cg` as a tensor, once per degree, dtype and device."""
    return torch.as_tensor(_cg(l), dtype=dtype, device=device)


def _reference(slots: list, slot: int, l: int) -> torch.Tensor:
    """Pairwise einsums with the dense ``C`` (each a batched matmul; no 4-operand contraction path needed)."""
    d, r, g = slots
    like = next(t for t in slots if t is not None)
    C = _dense(l, like.dtype, like.device)
    if slot == 2:  # G_ab = sum C_ija C_knb D_ik R_jn
        t = torch.einsum("ejn,einb->eijb", r, torch.einsum("eik,knb->einb", d, C))
        return torch.einsum("ija,eijb->eab", C, t)
    y = torch.einsum("ija,eab->eijb", C, g)  # Y_ijb = sum_a C_ija G_ab
    if slot == 0:
        return torch.einsum("einb,knb->eik", torch.einsum("eijb,ejn->einb", y, r), C)
    return torch.einsum("eijb,einb->ejn", y, torch.einsum("eik,knb->einb", d, C))


def _cpu(slots: list, outs: dict, E: int, l: int) -> None:
    from .cpu.loader import library_function

    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    like = next(t for t in slots if t is not None)
    suffix = "f32" if like.dtype == torch.float32 else "f64"
    fn = library_function(f"fastso3_wigner_step_{suffix}", *([ptr] * 6), i64, i64, ptr, ptr, i64, ctypes.c_int)
    nz, val = _entries(l)
    val = val.to(like.dtype)
    keep = [t.contiguous() if t is not None else None for t in slots]
    addresses = [t.data_ptr() if t is not None else None for t in keep]
    # the kernel fills the next block, or the gradients: one call for each kind
    for group in ([s for s in outs if s != 2], [s for s in outs if s == 2]):
        if group:
            fn(*addresses, *(outs[s].data_ptr() if s in group else None for s in range(3)), E, l, nz.data_ptr(),
               val.data_ptr(), nz.shape[0], torch.get_num_threads())  # fmt: skip


@torch.library.custom_op("fastso3::wigner_step", mutates_args=())
def wigner_step_op(
    d: Optional[torch.Tensor], r: Optional[torch.Tensor], g: Optional[torch.Tensor], outputs: list[int], backend: str
) -> list[torch.Tensor]:
    """The slots ``outputs`` of ``F(D, R, G)``, each from the other two (see the module docstring)."""
    E, l = _check(d, r, g, outputs)
    slots = [d, r, g]
    like = next(t for t in slots if t is not None)
    registry.check_backend("wigner_step", backend, like)
    registry.record("wigner_step", backend)
    outs = {s: _new_output(like, s, E, l) for s in outputs}
    if backend == "reference":
        for s in outputs:
            outs[s].copy_(_reference(slots, s, l))
    else:
        _cpu(slots, outs, E, l)
    return [outs[s] for s in outputs]


@wigner_step_op.register_fake
def _(d, r, g, outputs, backend):
    like = next(t for t in (d, r, g) if t is not None)
    E, l = _check(d, r, g, outputs)
    return [_new_output(like, s, E, l) for s in outputs]


register_multilinear_autograd(wigner_step_op, 3)
