"""FastSo3's padded layout and the bridge to e3nn's flat ``mul_ir`` layout (torch).

Padded layout: degrees ``1..L`` of ``C`` channels are a tensor ``(..., C, L, 2L+1)``; row ``l-1`` holds degree
``l`` centred, column ``L+m`` for ``m = -l..l``, zeros elsewhere (``get_mask``). Degree-0 channels are a separate
``(..., C0)`` tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastso3.core.irreps import Irreps

__all__ = ["from_padded", "get_mask", "padded_irreps", "to_padded"]


def get_mask(L: int, device=None, dtype=torch.int) -> Tensor:
    """0/1 mask ``(1, 1, L, 2L+1)`` of the valid entries of the padded layout (FastSo3's ``get_mask``).

    Entry ``[0, 0, l-1, L+m]`` is 1 iff ``|m| <= l``. dtype int32 by default, as FastSo3.
    """
    L = _check_L(L)
    m = torch.arange(-L, L + 1, device=device).abs()
    l = torch.arange(1, L + 1, device=device)
    return (m[None, :] <= l[:, None]).to(dtype)[None, None]


def _check_L(L) -> int:
    if isinstance(L, bool) or not isinstance(L, int) or L < 0:
        raise ValueError(f"L must be a non-negative int, got {L!r}")
    return L


def padded_irreps(irreps) -> tuple[int, int, int]:
    """``(C0, C, L)`` of irreps laid out as ``C0`` scalars plus ``C`` copies of every degree ``1..L``.

    Entries may come in any order and be split (``2x1o+2x1o``); parities are not looked at.

    Raises:
        ValueError: if the degrees ``1..L`` do not all have the same total multiplicity.
    """
    irreps = Irreps(irreps)
    muls: dict[int, int] = {}
    for mul, ir in irreps:
        muls[ir.l] = muls.get(ir.l, 0) + mul
    L = max([l for l, mul in muls.items() if mul > 0] + [0])
    c = {muls.get(l, 0) for l in range(1, L + 1)}
    if len(c) > 1:
        raise ValueError(
            f"irreps {irreps} do not fit the padded layout: degrees 1..{L} need one common multiplicity, "
            f"got {[muls.get(l, 0) for l in range(1, L + 1)]}"
        )
    return muls.get(0, 0), (c.pop() if c else 0), L


def to_padded(x: Tensor, irreps) -> tuple[Tensor, Tensor]:
    """Split ``x (..., irreps.dim)`` (e3nn ``mul_ir``) into ``(x_pad (..., C, L, 2L+1), x_L0 (..., C0))``.

    Channels of a degree keep the order in which they appear in ``irreps``. dtype and device follow ``x``.
    """
    irreps = Irreps(irreps)
    _, C, L = padded_irreps(irreps)
    if x.shape[-1] != irreps.dim:
        raise ValueError(f"to_padded: x has last dimension {x.shape[-1]}, irreps {irreps} need {irreps.dim}")
    batch = x.shape[:-1]
    rows: list[list[Tensor]] = [[] for _ in range(L + 1)]
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        block = x[..., sl].reshape(*batch, mul, ir.dim)
        rows[ir.l].append(block if ir.l == 0 else torch.nn.functional.pad(block, (L - ir.l, L - ir.l)))
    x_L0 = torch.cat(rows[0], -2)[..., 0] if rows[0] else x.new_zeros(*batch, 0)
    if L == 0:
        return x.new_zeros(*batch, C, 0, 1), x_L0
    return torch.stack([torch.cat(r, -2) for r in rows[1:]], -2), x_L0


def from_padded(x_pad: Tensor, x_L0: Tensor, irreps) -> Tensor:
    """Inverse of :func:`to_padded`: ``(..., C, L, 2L+1)`` and ``(..., C0)`` to ``(..., irreps.dim)``.

    Padding entries of ``x_pad`` are ignored.
    """
    irreps = Irreps(irreps)
    C0, C, L = padded_irreps(irreps)
    if x_pad.shape[-3:] != (C, L, 2 * L + 1) or x_L0.shape[-1] != C0:
        raise ValueError(
            f"from_padded: expected x_pad (..., {C}, {L}, {2 * L + 1}) and x_L0 (..., {C0}) for {irreps}, "
            f"got {tuple(x_pad.shape)} and {tuple(x_L0.shape)}"
        )
    used = [0] * (L + 1)
    out = []
    for mul, ir in irreps:
        l, start = ir.l, used[ir.l]
        used[l] += mul
        if l == 0:
            out.append(x_L0[..., start : start + mul])
        else:
            out.append(x_pad[..., start : start + mul, l - 1, L - l : L + l + 1].flatten(-2))
    return torch.cat(out, -1) if out else x_L0[..., :0]
