"""Small helpers shared by the ``fastso3.nn`` modules (construction time only)."""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from ..core.irreps import Irreps


def merge_runs(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """``[(start, stop), ...]`` -> ``((start, length), ...)`` with adjacent ranges merged, empty ones dropped."""
    runs: list[list[int]] = []
    for start, stop in ranges:
        if stop <= start:
            continue
        if runs and runs[-1][0] + runs[-1][1] == start:
            runs[-1][1] += stop - start
        else:
            runs.append([start, stop - start])
    return tuple((s, n) for s, n in runs)


def take(x: torch.Tensor, runs: Sequence[tuple[int, int]]) -> torch.Tensor:
    """The features of ``x`` (``(..., dim)``) in ``runs``, concatenated; a view when there is one run."""
    if len(runs) == 1:
        start, length = runs[0]
        return x.narrow(-1, start, length)
    if len(runs) == 0:
        return x.new_zeros(x.shape[:-1] + (0,))
    return torch.cat([x.narrow(-1, start, length) for start, length in runs], dim=-1)


def copy_index(irreps: Irreps) -> torch.Tensor:
    """``(dim,)`` int64: the index of the irrep copy each feature component belongs to."""
    idx = [u for u, ir in enumerate(ir for mul, ir in irreps for _ in range(mul)) for _ in range(ir.dim)]
    return torch.tensor(idx, dtype=torch.long)


def entries(irreps: Irreps) -> tuple[tuple[int, int, int], ...]:
    """``(start, mul, 2l+1)`` of every non-empty entry."""
    out = []
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        if mul > 0:
            out.append((sl.start, mul, ir.dim))
    return tuple(out)


def per_copy_reduce(x2: torch.Tensor, ents: Sequence[tuple[int, int, int]], mean: bool) -> torch.Tensor:
    """``(..., dim) -> (..., num_irreps)``: sum (or mean) of ``x2`` over the components of each copy."""
    lead = x2.shape[:-1]
    parts = []
    for start, mul, d in ents:
        block = x2.narrow(-1, start, mul * d).reshape(lead + (mul, d))
        parts.append(block.mean(-1) if mean else block.sum(-1))
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 0:
        return x2.new_zeros(lead + (0,))
    return torch.cat(parts, dim=-1)


class IgnoreE3nnKeys:
    """Mixin: drop e3nn's parameter-free internal entries when loading an e3nn state dict.

    e3nn implements some products with an ``ElementwiseTensorProduct`` child that carries an empty
    ``weight`` and an all-ones ``output_mask``; they hold no information, and fastso3 computes the
    product directly, so these keys (``_e3nn_ignored_keys``, relative to the module) are skipped.
    """

    _e3nn_ignored_keys: tuple[str, ...] = ()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: D401
        for key in self._e3nn_ignored_keys:
            state_dict.pop(prefix + key, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]
