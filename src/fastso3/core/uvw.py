"""Tables for fully connected ("uvw") tensor products with weights (numpy only).

Eligible plans: every path is a weighted ``uvw`` path (``FullyConnectedTensorProduct``, the convolution
tutorial's product). Per path ``p`` the product is

    out[w, k] += c_p sum_{ijk in C_p} C_ijk sum_{u, v} x1[u, i] x2[v, j] W_p[u, v, w]

in e3nn's mul_ir layouts, ``W_p`` row-major ``(mul1, mul2, mul_out)`` at its weight offset. This is a
4-linear form in ``(out cotangent, x1, x2, W)``; the kernels of ``fastso3.kernels.uvw`` contract any three
of the four slots into the fourth, so every derivative is the same table.
"""

from __future__ import annotations

import numpy as np

from .tensor_product import TensorProductPlan

__all__ = ["UVW_PATH_COLUMNS", "is_uvw", "uvw_table"]

# Columns of the int64 path table (one row per non-empty path).
UVW_PATH_COLUMNS = ("off_out", "mul_out", "d3", "off1", "mul1", "d1", "off2", "mul2", "d2", "off_w", "cg_start", "cg_end")


def uvw_reason(plan: TensorProductPlan) -> str | None:
    """Why ``plan`` cannot run as a uvw table, or None."""
    if not plan.paths or any(p.mode != "uvw" or not p.has_weight for p in plan.paths):
        return "every path must be a weighted 'uvw' path"
    return None


def is_uvw(plan: TensorProductPlan) -> bool:
    """True if ``plan`` can run as a uvw table."""
    return uvw_reason(plan) is None


def uvw_table(plan: TensorProductPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple]:
    """``(paths, pivots, coefficients, cg_indices, cg_values, slot_dims)`` of an eligible plan.

    ``paths``: ``(P, 12)`` int64, columns :data:`UVW_PATH_COLUMNS` (offsets into the flat out, x1, x2 and
    weight vectors; the path's CG entries are rows ``cg_start:cg_end``). ``pivots``: ``(P,)`` int64, which
    input's ``2l+1`` the kernel contracts over for shared weights: 0 the output's, 1 ``x1``'s, 2 ``x2``'s,
    the smallest (the dense stages cost ``mul1 mul2 mul_out (2l+1)`` per sample). ``coefficients``: ``(P,)``
    float64 path weights. ``cg_indices``: ``(nnz, 3)`` int64 ``(i, j, k)``; ``cg_values``: ``(nnz,)``
    float64. ``slot_dims``: sizes of the four slots ``(out, x1, x2, weights)`` per sample.

    Raises:
        ValueError: if the plan is not eligible.
    """
    reason = uvw_reason(plan)
    if reason is not None:
        raise ValueError(f"not a uvw plan: {reason}")

    def offsets(irreps):
        return np.concatenate([[0], np.cumsum([mul_ir.dim for mul_ir in irreps])]).astype(np.int64)

    off_out, off1, off2 = offsets(plan.irreps_out), offsets(plan.irreps_in1), offsets(plan.irreps_in2)
    rows, pivots, coef, idx, val = [], [], [], [], []
    nnz = 0
    for p in plan.paths:
        if p.empty:
            continue
        sp = p.cg_sparse
        rows.append([off_out[p.i_out], p.mul_out, p.d3, off1[p.i_in1], p.mul1, p.d1, off2[p.i_in2], p.mul2, p.d2,
                     p.weight_slice.start, nnz, nnz + len(sp.values)])  # fmt: skip
        pivots.append(int(np.argmin([p.d3, p.d1, p.d2])))  # the first minimum: ties keep the output
        coef.append(p.coefficient)
        idx.append(np.stack([sp.i1, sp.i2, sp.i3], axis=1))
        val.append(sp.values)
        nnz += len(sp.values)
    paths = np.array(rows, np.int64).reshape(-1, len(UVW_PATH_COLUMNS))
    cg_idx = np.concatenate(idx).astype(np.int64) if idx else np.zeros((0, 3), np.int64)
    cg_val = np.concatenate(val).astype(np.float64) if val else np.zeros(0)
    dims = (plan.irreps_out.dim, plan.irreps_in1.dim, plan.irreps_in2.dim, plan.weight_numel)
    return paths, np.array(pivots, np.int64), np.array(coef, np.float64), cg_idx, cg_val, dims
