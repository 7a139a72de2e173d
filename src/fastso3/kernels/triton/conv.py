"""Triton kernels for the fused channel-wise convolution ops ``conv_channeled``/``conv_scalar`` (``kernels/conv.py``).

One kernel serves both ops and both output modes. A program owns one table output row ``r`` and a block of
``BLOCK_Z`` samples; channels are the innermost (vector) dimension of a ``(BLOCK_Z, BLOCK_C)`` tile, and
channeled rows are addressed in place through the table's ``(base, step)`` layouts. Operands are gathered
through their per-slot index inside the kernel (nothing per edge is materialised). The sample block is

- ``SEGMENTS``: a block of output rows, each walking its CSR segment (``perm[ptr[n]:ptr[n + 1]]``) in order
  and storing once: deterministic, bitwise reproducible, no atomics;
- otherwise a block of edges: ``ATOMIC`` adds each edge's terms into its output row with ``tl.atomic_add``
  (no sort dependence or per-row imbalance, but the summation order varies from run to run); without it the
  output is per edge (an unindexed output slot, e.g. the gradient of the edge weights) and is stored directly.

Products are accumulated in float32 (float64 for float64 inputs); atomics add into an accumulator-dtype buffer
that is rounded to the input dtype afterwards.
"""

import torch
import triton
import triton.language as tl

from .kernels import (
    _COMPILE_OPTIONS,
    _acc_dtype,
    _channel_offsets,
    _device_guard,
    _row_ptr,
)

__all__ = ["conv"]


@triton.jit
def _gathered(idx, e, live, GATHER: tl.constexpr):
    """Rows of an operand for edges ``e``: ``idx[e]``, or ``e`` itself for a per-edge operand."""
    if GATHER:
        rows = tl.load(idx + e, mask=live, other=0)
    else:
        rows = e
    return rows


@triton.jit
def _edge_terms(acc, e, live, u, nc, k0, k1, ia, ib, ic, coef,
                a, a_idx, a_dim, a_base, a_step, b, b_idx, b_dim, b_base, b_step, c, c_idx, c_dim, c_base, c_step,
                GA: tl.constexpr, GB: tl.constexpr, GC: tl.constexpr, SCALAR: tl.constexpr, ACC: tl.constexpr):  # fmt: skip
    """``acc`` (BLOCK_Z, BLOCK_C) plus the table entries ``k0:k1`` (one output row) of edges ``e`` (BLOCK_Z,)."""
    tile = live[:, None] & (u < nc)[None, :]
    za, zb, zc = _gathered(a_idx, e, live, GA), _gathered(b_idx, e, live, GB), _gathered(c_idx, e, live, GC)
    for k in range(k0, k1):
        va = tl.load(a + _channel_offsets(za, u, a_dim, a_base, a_step, tl.load(ia + k)), mask=tile, other=0.0).to(ACC)
        vb = tl.load(b + _channel_offsets(zb, u, b_dim, b_base, b_step, tl.load(ib + k)), mask=tile, other=0.0).to(ACC)
        if SCALAR:  # c is channeled too; the channel sum is taken once, after all edges and entries
            vc = tl.load(c + _channel_offsets(zc, u, c_dim, c_base, c_step, tl.load(ic + k)), mask=tile, other=0.0)
            acc += va * vb * vc.to(ACC) * tl.load(coef + k).to(ACC)
        else:
            vc = tl.load(c + zc * c_dim + tl.load(ic + k), mask=live, other=0.0).to(ACC) * tl.load(coef + k).to(ACC)
            acc += va * vb * vc[:, None]
    return acc


@triton.jit
def _conv_kernel(a, a_idx, a_dim, a_base, a_step, b, b_idx, b_dim, b_base, b_step, c, c_idx, c_dim, c_base, c_step,
                 out, out_idx, out_dim, out_base, out_step, seg_ptr, seg_perm, ptr, ia, ib, ic, coef, nz, n_rows, nc,
                 GA: tl.constexpr, GB: tl.constexpr, GC: tl.constexpr, SCALAR: tl.constexpr, SEGMENTS: tl.constexpr,
                 ATOMIC: tl.constexpr, ACC: tl.constexpr, BLOCK_Z: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0)
    r = pid % n_rows  # consecutive programs share a sample block, so its gathered rows stay in cache
    z = (pid // n_rows) * BLOCK_Z + tl.arange(0, BLOCK_Z)
    u = tl.arange(0, BLOCK_C)
    live = z < nz
    z = z.to(tl.int64)
    k0, k1 = tl.load(ptr + r), tl.load(ptr + r + 1)
    acc = tl.zeros([BLOCK_Z, BLOCK_C], dtype=ACC)
    if SEGMENTS:  # z: output rows; the j-th edges of their segments, in segment order
        start = tl.load(seg_ptr + z, mask=live, other=0)
        count = tl.load(seg_ptr + z + 1, mask=live, other=0) - start
        for j in range(tl.max(count, axis=0)):
            on = count > j
            e = tl.load(seg_perm + start + j, mask=on, other=0)
            acc = _edge_terms(acc, e, on, u, nc, k0, k1, ia, ib, ic, coef, a, a_idx, a_dim, a_base, a_step, b, b_idx,
                              b_dim, b_base, b_step, c, c_idx, c_dim, c_base, c_step, GA, GB, GC, SCALAR, ACC)
        rows = z
    else:  # z: edges
        acc = _edge_terms(acc, z, live, u, nc, k0, k1, ia, ib, ic, coef, a, a_idx, a_dim, a_base, a_step, b, b_idx,
                          b_dim, b_base, b_step, c, c_idx, c_dim, c_base, c_step, GA, GB, GC, SCALAR, ACC)
        rows = _gathered(out_idx, z, live, ATOMIC)
    if SCALAR:
        target, value, mask = out + rows * out_dim + r, tl.sum(acc, axis=1), live
    else:
        target, value = out + _channel_offsets(rows, u, out_dim, out_base, out_step, r), acc
        mask = live[:, None] & (u < nc)[None, :]
    if ATOMIC:
        tl.atomic_add(target, value.to(out.dtype.element_ty), mask=mask, sem="relaxed")
    else:
        tl.store(target, value.to(out.dtype.element_ty), mask=mask)


def conv(kind: str, operands, gathers, layouts, out_index, segments, n_out: int, dim_out: int, entries, channels: int):
    """One conv op (``kind``: ``"channeled"`` or ``"scalar"``, see ``kernels/conv.py``) -> ``(n_out, dim_out)``.

    operands: (a, b, c), ``(rows_k, dim_k)`` each, one dtype (float16/bfloat16/float32/float64); gathers: their
    int64 ``(E,)`` indices, None for a per-edge operand; layouts: per role (out, a, b, c), ``(base, step)`` int64
    tensors of a channeled slot, None for the channel-free one; out_index: the output's ``(E,)`` index (None: one
    output row per edge); segments: the output's CSR ``(ptr (n_out + 1,), perm (E,))`` for the deterministic
    segment walk, None for atomics (ignored without out_index); entries: (io, ia, ib, ic, coef), ``(nnz,)`` each,
    sorted by io, coef in the operands' dtype. Inputs are trusted (validated by the ops).
    """
    a, b, c = (t.contiguous() for t in operands)
    io, ia, ib, ic, coef = entries
    edges = next((g.shape[0] for g in gathers if g is not None), a.shape[0])
    walk, atomic = out_index is not None and segments is not None, out_index is not None and segments is None
    # atomics add into a zeroed buffer in the accumulator dtype, rounded to the input dtype once at the end
    acc_dtype = torch.float64 if a.dtype == torch.float64 else torch.float32
    out = a.new_zeros(n_out, dim_out, dtype=acc_dtype) if atomic else a.new_empty(n_out, dim_out)
    rows = dim_out if layouts[0] is None else layouts[0][0].numel()
    nz = n_out if walk else edges
    block_c = triton.next_power_of_2(channels)
    block_z = max(1, min(32, 1024 // block_c))  # a tile of ~1k values per operand, as in the channel-wise kernels
    grid = (triton.cdiv(nz, block_z) * rows,)
    if not grid[0]:
        return out.to(a.dtype)
    table_ptr = _row_ptr(io, rows)
    spare = table_ptr  # stands in for the pointer arguments a launch does not read

    def described(t, gather, layout):
        return (t, spare if gather is None else gather, t.shape[1], *(layout or (spare, spare)))

    meta = {"GA": gathers[0] is not None, "GB": gathers[1] is not None, "GC": gathers[2] is not None,
            "SCALAR": kind == "scalar", "SEGMENTS": walk, "ATOMIC": atomic, "ACC": _acc_dtype(a.dtype),
            "BLOCK_Z": block_z, "BLOCK_C": block_c, **_COMPILE_OPTIONS}  # fmt: skip
    with _device_guard(a):
        _conv_kernel[grid](*described(a, gathers[0], layouts[1]), *described(b, gathers[1], layouts[2]),
                           *described(c, gathers[2], layouts[3]), *described(out, out_index, layouts[0]),
                           *(segments if walk else (spare, spare)), table_ptr, ia, ib, ic, coef, nz, rows, channels,
                           **meta)  # fmt: skip
    return out.to(a.dtype)
