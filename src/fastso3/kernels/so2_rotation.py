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
(what the SO(2) bottleneck reads in place), ``x`` contiguous, ``W`` contiguous.
"""

from __future__ import annotations

import ctypes
from typing import Optional

import torch

from . import registry
from ._multilinear import multilinear_backward

__all__ = ["so2_rotation_op"]

_LETTERS = ("bclm", "blmn", "bcln")  # y, W, x in the reference's einsums


def _block_mask(L: int, M: int, like: torch.Tensor) -> torch.Tensor:
    """``(L, M, 2L+1)``: 1 on the block of degree ``l+1`` (rows ``|m - K| <= l+1``, columns ``|n - L| <= l+1``)."""
    degree = torch.arange(1, L + 1, device=like.device)[:, None]
    rows = (torch.arange(M, device=like.device) - (M - 1) // 2).abs()[None, :] <= degree
    cols = (torch.arange(2 * L + 1, device=like.device) - L).abs()[None, :] <= degree
    return (rows[:, :, None] & cols[:, None, :]).to(like.dtype)


def _dims(y, w, x) -> tuple[int, int, int, int]:
    """``(B, C, L, M)`` from the inputs (W is never an output together with both features missing)."""
    C = (y if y is not None else x).shape[1]
    if w is not None:
        B, L, M, _ = w.shape
        return B, C, L, M
    return tuple(y.shape)


def _new_output(like: torch.Tensor, slot: int, dims: tuple) -> torch.Tensor:
    B, C, L, M = dims
    if slot == 0:
        return like.new_empty(M, B, L, C).permute(1, 3, 2, 0)
    return like.new_empty(B, L, M, 2 * L + 1) if slot == 1 else like.new_empty(B, C, L, 2 * L + 1)


def _reference(slots: list, slot: int, like: torch.Tensor, L: int, M: int) -> torch.Tensor:
    mask = _block_mask(L, M, like)  # on W's (l, m, n) axes
    inputs = [s for s in range(3) if s != slot]
    operands = [slots[s] * mask if s == 1 else slots[s] for s in inputs]
    out = torch.einsum(f"{_LETTERS[inputs[0]]},{_LETTERS[inputs[1]]}->{_LETTERS[slot]}", *operands)
    return out * mask if slot == 1 else out


def _cpu(slots: list, outs: dict, dims: tuple) -> None:
    from .cpu.loader import library_function

    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    like = next(t for t in slots if t is not None)
    suffix = "f32" if like.dtype == torch.float32 else "f64"
    fn = library_function(f"fastso3_so2_rotation_{suffix}", *([ptr] * 9), i64, i64, i64, i64, ctypes.c_int)
    strides = [torch.tensor(t.stride() if t is not None else (0,) * 4, dtype=torch.int64) for t in slots]
    args = [a for t, st in zip(slots, strides) for a in (None if t is None else t.data_ptr(), st.data_ptr())]
    fn(*args, *(outs[s].data_ptr() if s in outs else None for s in range(3)), *dims, torch.get_num_threads())


@torch.library.custom_op("fastso3::so2_rotation", mutates_args=())
def so2_rotation_op(
    y: Optional[torch.Tensor], w: Optional[torch.Tensor], x: Optional[torch.Tensor], outputs: list[int], backend: str
) -> list[torch.Tensor]:
    """The slots ``outputs`` of ``F(y, W, x)``, each from the other two (see the module docstring)."""
    registry.record("so2_rotation", backend)
    slots = [y, w, x]
    dims = _dims(y, w, x)
    like = next(t for t in slots if t is not None)
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
    return [_new_output(like, s, _dims(y, w, x)) for s in outputs]


def _setup(ctx, inputs, output):
    y, w, x, outputs, backend = inputs
    ctx.save_for_backward(y, w, x)
    ctx.outputs, ctx.backend = outputs, backend


def _backward(ctx, cotangents):
    grads = multilinear_backward(ctx.saved_tensors, ctx.outputs, cotangents, ctx.needs_input_grad,
                                 lambda args, targets: so2_rotation_op(*args, targets, ctx.backend))  # fmt: skip
    return *grads, None, None


so2_rotation_op.register_autograd(_backward, setup_context=_setup)
