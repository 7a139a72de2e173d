"""Tables for channel-wise ("uvu") tensor products with a channel-free second input (numpy only).

Eligible plans: every path is a weighted ``uvu`` path, every ``irreps_in1`` and ``irreps_out`` entry has
the same multiplicity ``C``, and every ``irreps_in2`` entry has multiplicity 1 (spherical harmonics, as in
MACE, NequIP and Allegro interaction blocks). Features then have a channels-innermost ("ir_mul") view
``(n, C)`` with ``n = sum(2l+1)``, the weights a ``(paths, C)`` view, and the whole product is one table
(see ``fastso3.kernels.channelwise``):

    out[o, u] += c * x[a, u] * y[s] * w[p, u]
"""

from __future__ import annotations

import numpy as np

from .tensor_product import TensorProductPlan

__all__ = ["SLOT_ROLES", "channelwise_table", "is_channelwise", "kernel_entries"]

# The (kind, roles (out, a, b, c)) of the kernel op that contracts the 4-linear form into each slot: channeled
# outputs take the channel-free slot 2 last; every front and derivative rule uses these.
SLOT_ROLES = {0: ("channeled", (0, 1, 3, 2)), 1: ("channeled", (1, 0, 3, 2)), 2: ("scalar", (2, 0, 1, 3)),
              3: ("channeled", (3, 1, 0, 2))}  # fmt: skip


def _reason(plan: TensorProductPlan) -> str | None:
    muls = {m for m, _ in plan.irreps_in1} | {m for m, _ in plan.irreps_out}
    if len(muls) != 1 or 0 in muls:
        return "irreps_in1 and irreps_out must share one non-zero multiplicity"
    if any(m != 1 for m, _ in plan.irreps_in2):
        return "every irreps_in2 entry must have multiplicity 1"
    if not plan.paths or any(p.mode != "uvu" or not p.has_weight for p in plan.paths):
        return "every path must be a weighted 'uvu' path"
    return None


def is_channelwise(plan: TensorProductPlan) -> bool:
    """True if ``plan`` can run as a channel-wise table."""
    return _reason(plan) is None


def channelwise_table(plan: TensorProductPlan) -> tuple[tuple[np.ndarray, ...], np.ndarray, tuple]:
    """``(slots (out, x, y, w), coefficients, slot layouts)`` of an eligible plan.

    Slot layouts: ``(base, step, C, dim)`` for the channeled slots (e3nn's mul_ir blocks for ``out`` and
    ``x``, ``(paths, C)`` row-major for ``w``: ``w[p * C + u]``) and ``(None, None, 0, dim)`` for ``y``.

    Raises:
        ValueError: if the plan is not channel-wise (see the module docstring).
    """
    reason = _reason(plan)
    if reason is not None:
        raise ValueError(f"not a channel-wise plan: {reason}")

    def offsets(irreps):
        return np.concatenate([[0], np.cumsum([ir.dim for _, ir in irreps])]).astype(np.int64)

    off1, off2, off_out = offsets(plan.irreps_in1), offsets(plan.irreps_in2), offsets(plan.irreps_out)
    channels = plan.irreps_in1[0].mul
    slots = [[], [], [], []]
    coef = []
    weighted = 0
    for p in plan.paths:
        if not p.empty:
            sp = p.cg_sparse
            for slot, values in zip(slots, (off_out[p.i_out] + sp.i3, off1[p.i_in1] + sp.i1, off2[p.i_in2] + sp.i2)):
                slot.append(values)
            slots[3].append(np.full(len(sp.values), weighted, dtype=np.int64))
            coef.append(p.coefficient * sp.values)
        weighted += 1
    arrays = tuple(np.concatenate(s).astype(np.int64) if s else np.zeros(0, np.int64) for s in slots)

    def mul_ir(irreps):  # row (block, m): base = block start + m, step = 2l+1
        bases = [start + m for start, (_, ir) in zip(np.cumsum([0] + [mi.dim for mi in irreps]), irreps)
                 for m in range(ir.dim)]  # fmt: skip
        steps = [ir.dim for _, ir in irreps for _ in range(ir.dim)]
        return np.array(bases, np.int64), np.array(steps, np.int64), channels, irreps.dim

    rows_w = np.arange(weighted, dtype=np.int64)
    layouts = (
        mul_ir(plan.irreps_out),
        mul_ir(plan.irreps_in1),
        (None, None, 0, plan.irreps_in2.dim),
        (rows_w * channels, np.ones(weighted, np.int64), channels, weighted * channels),
    )
    return arrays, (np.concatenate(coef) if coef else np.zeros(0)), layouts


def kernel_entries(slots: tuple, coef: np.ndarray, roles: tuple, kind: str) -> tuple[list[np.ndarray], np.ndarray]:
    """The table's (out, a, b, c) index arrays in ``roles`` order and its coefficients, sorted for the CPU
    kernels' runs: by output row, then b row, then a row (channeled output); by b row, d row, a row, then
    output (scalar). The channeled kernel relies on the output rows being grouped."""
    keys = (roles[1], roles[2], roles[0]) if kind == "channeled" else (roles[0], roles[1], roles[3], roles[2])
    order = np.lexsort([slots[k] for k in keys])  # the last key is the primary one
    return [np.ascontiguousarray(slots[r][order]) for r in roles], np.ascontiguousarray(coef[order])
