"""Edge-frame rotation of padded SO(2) features as one op over a trilinear form.

With ``x (B, C, L, N = 2L+1)`` padded features, ``W (B, L, M, N)`` Wigner blocks (``M = 2 mmax + 1`` rows)
and ``y (B, C, L, M)`` features in the edge frame,

    F(y, W, x) = sum_{b,c,l} sum_{|m - K| <= l+1} sum_{|n - L| <= l+1} y[b,c,l,m] W[b,l,m,n] x[b,c,l,n]

(``M = 2K + 1``; degree ``l+1`` at index ``l``: only its block of ``W``, rows and columns of order ``<= l+1``,
counts; for Wigner blocks the rest is zero anyway). ``fastso3::so2_rotation(y, W, x, outputs,
backend)`` contracts it into each slot of ``outputs`` from the other two (an output slot's input may be None):
0 rotates (``y = W x``), 2 rotates back (``x = W^T y``, zero in the padding), 1 is the gradient of ``W``.
Autograd permutes the slots, so derivatives of every order are the same op, and a backward computes both of
its gradients in one call. Output layouts (every backend): ``y`` a view of m-major memory ``(M, B, L, C)``
(channels innermost, what the CPU kernels gather fastest), ``x`` contiguous, ``W`` contiguous.
"""

from __future__ import annotations

import ctypes
from typing import Optional

import torch

from . import registry
from ._checks import check_slots
from ._multilinear import register_multilinear_autograd

__all__ = ["so2_rotation_op"]

_LETTERS = ("bclm", "blmn", "bcln")  # y, W, x in the reference's einsums


def _masks(L: int, M: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boolean ``(L, M, 1)`` rows and ``(L, 1, 2L+1)`` columns of each degree's block (degree ``l+1``: orders
    ``<= l+1``), and the block ``(L, M, 2L+1)``."""
    degree = torch.arange(1, L + 1, device=device)[:, None]
    rows = (torch.arange(M, device=device) - (M - 1) // 2).abs()[None, :] <= degree
    cols = (torch.arange(2 * L + 1, device=device) - L).abs()[None, :] <= degree
    return rows[:, :, None], cols[:, None, :], rows[:, :, None] & cols[:, None, :]


def _check(y, w, x, outputs: list) -> tuple[int, int, int, int]:
    """``(B, C, L, M)`` after checking what the kernel will read (it reads raw memory)."""
    slots = (y, w, x)
    check_slots("so2_rotation", slots, outputs)
    given = [t for t in slots if t is not None]
    if any(t.dtype != given[0].dtype or t.device != given[0].device for t in given):
        raise TypeError("so2_rotation: " + ", ".join(f"{n} is {t.dtype} on {t.device}" for n, t in zip("yWx", slots) if t is not None))
    if w is not None:
        if w.dim() != 4 or w.shape[3] != 2 * w.shape[1] + 1 or w.shape[2] % 2 == 0 or w.shape[2] > w.shape[3]:
            raise ValueError(f"so2_rotation: W must have shape (B, L, M, 2L+1) with M odd and <= 2L+1, got {tuple(w.shape)}")
        B, L, M, _ = w.shape
    else:
        B, _, L, M = y.shape
    C = (y if y is not None else x).shape[1]
    for name, t, width in (("y", y, M), ("x", x, 2 * L + 1)):
        if t is not None and (t.dim() != 4 or t.shape[0] != B or t.shape[1] != C or t.shape[2:] != (L, width)):
            raise ValueError(f"so2_rotation: {name} must have shape ({B}, {C}, {L}, {width}), got {tuple(t.shape)}")
    return B, C, L, M


def _new_output(like: torch.Tensor, slot: int, dims: tuple) -> torch.Tensor:
    B, C, L, M = dims
    if slot == 0:
        return like.new_empty(M, B, L, C).permute(1, 3, 2, 0)
    return like.new_empty(B, L, M, 2 * L + 1) if slot == 1 else like.new_empty(B, C, L, 2 * L + 1)


def _reference(slots: list, slot: int, like: torch.Tensor, L: int, M: int) -> torch.Tensor:
    """One einsum; entries outside the blocks are replaced by zeros (not multiplied: they are never read)."""
    rows, cols, block = _masks(L, M, like.device)
    keep = (rows[None, None, :, :, 0], block[None], cols[None, None, :, 0])  # y (B,C,L,M), W (B,L,M,N), x (B,C,L,N)
    inputs = [s for s in range(3) if s != slot]
    operands = [torch.where(keep[s], slots[s], 0) for s in inputs]
    out = torch.einsum(f"{_LETTERS[inputs[0]]},{_LETTERS[inputs[1]]}->{_LETTERS[slot]}", *operands)
    return torch.where(keep[slot], out, 0)


def _cpu(slots: list, outs: dict, dims: tuple, x_rows: torch.Tensor | None = None) -> None:
    """The CPU kernel; ``x_rows``: None, or a contiguous int64 ``(B,)`` row of ``x`` per edge, checked by the
    caller (``x`` an input: the kernel gathers the rows as it copies each edge into scratch)."""
    from .cpu.loader import library_function

    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    like = next(t for t in slots if t is not None)
    suffix = "f32" if like.dtype == torch.float32 else "f64"
    fn = library_function(f"fastso3_so2_rotation_{suffix}", *([ptr] * 10), i64, i64, i64, i64, ctypes.c_int)
    strides = [torch.tensor(t.stride() if t is not None else (0,) * 4, dtype=torch.int64) for t in slots]
    args = [a for t, st in zip(slots, strides) for a in (None if t is None else t.data_ptr(), st.data_ptr())]
    rows = None if x_rows is None else x_rows.data_ptr()
    fn(*args, rows, *(outs[s].data_ptr() if s in outs else None for s in range(3)), *dims, torch.get_num_threads())


@torch.library.custom_op("fastso3::so2_rotation", mutates_args=())
def so2_rotation_op(
    y: Optional[torch.Tensor], w: Optional[torch.Tensor], x: Optional[torch.Tensor], outputs: list[int], backend: str
) -> list[torch.Tensor]:
    """The slots ``outputs`` of ``F(y, W, x)``, each from the other two (see the module docstring)."""
    dims = _check(y, w, x, outputs)
    slots = [y, w, x]
    like = next(t for t in slots if t is not None)
    registry.check_backend("so2_rotation", backend, like)
    registry.record("so2_rotation", backend)
    outs = {s: _new_output(like, s, dims) for s in outputs}  # one layout for every backend (and the fake)
    if backend == "reference":
        for s in outputs:
            outs[s].copy_(_reference(slots, s, like, dims[2], dims[3]))
    else:
        _cpu(slots, outs, dims)
    return [outs[s] for s in outputs]


@so2_rotation_op.register_fake
def _(y, w, x, outputs, backend):
    like = next(t for t in (y, w, x) if t is not None)
    return [_new_output(like, s, _check(y, w, x, outputs)) for s in outputs]


register_multilinear_autograd(so2_rotation_op, 3)
