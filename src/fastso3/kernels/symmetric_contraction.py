"""MACE's symmetric contraction: the readable dense twin and the factorised path (see core/symmetric_contraction.py).

Both backends are compositions of differentiable torch ops (gathers, products, matmuls), so derivatives of every
order (forces, and training on forces) and ``torch.compile(fullgraph=True)`` come from torch itself:

- ``"reference"``: MACE's formula as written, ``U_nu`` (dense, ``(M, D, .., D, K)``) contracted with the weights
  of each node's element and then with ``x`` once per order. The test oracle.
- ``"factorized"`` (the default, any device): the monomials of ``x`` that some ``U`` touches, one GEMM with the
  plan's low-rank projection, and the per-element weights multiplied by the plan's factors (``E R K C`` work,
  independent of the number of nodes) selected per node.

No compiled C++ or Triton kernel yet: the factorised path's work is one BLAS GEMM of ``(N C) x Q x cols``.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from . import registry
from ._checks import check_index, check_shape, same_floats, tracing

__all__ = ["SYMMETRIC_CONTRACTION_BACKENDS", "SymmetricContractionTables", "symmetric_contraction"]

SYMMETRIC_CONTRACTION_BACKENDS = ("reference", "factorized")
_OP = "symmetric_contraction"


class SymmetricContractionTables(NamedTuple):
    """The plan as tensors on the computation's device (``fastso3.core.symmetric_contraction`` explains them).

    ``monomial_index (Q, N_corr)`` int64 with ``-1`` for "no factor"; ``projection (Q, cols)``; ``column_rank
    (cols,)`` int64; ``column_sum (cols, S)`` 0/1; ``factors``: per weight block ``(R_b, K_b)``; ``u_matrices``:
    per weight block the dense ``U (M, D, .., D, K)`` (read by the reference backend only); ``blocks``: per weight
    block ``(output index, nu, K)``; ``output_dims``: ``2l+1`` per output irrep.
    """

    monomial_index: torch.Tensor
    projection: torch.Tensor
    column_rank: torch.Tensor
    column_sum: torch.Tensor
    factors: Sequence[torch.Tensor]
    u_matrices: Sequence[torch.Tensor]
    blocks: tuple
    output_dims: tuple


def _check(x, species, weights, tables, backend) -> str:
    if backend is None:
        backend = "factorized"
    if backend not in SYMMETRIC_CONTRACTION_BACKENDS:
        raise registry.BackendUnavailable(
            f"{_OP}: backend {backend!r} does not exist; choose one of {SYMMETRIC_CONTRACTION_BACKENDS} or None"
        )
    if len(weights) != len(tables.blocks):
        raise ValueError(f"{_OP}: expected {len(tables.blocks)} weight tensors (one per output irrep and order), "
                         f"got {len(weights)}")  # fmt: skip
    same_floats(_OP, x=x, **{f"weights[{i}]": w for i, w in enumerate(weights)})
    dim = tables.u_matrices[0].shape[1]
    check_shape(_OP, "x", x, (None, None, dim))
    elements = weights[0].shape[0] if weights[0].dim() == 3 else 0
    for i, (w, (_, nu, k)) in enumerate(zip(weights, tables.blocks)):
        check_shape(_OP, f"weights[{i}] (order {nu})", w, (elements, k, x.shape[1]))
    # traced graphs keep torch's own bounds check of index_select (a value check would be data-dependent)
    check_index(_OP, "species", species, elements, length=x.shape[0], device=x.device, what="elements",
                values=not tracing())  # fmt: skip
    return backend


def _reference(x, species, weights, tables):
    outputs = [0.0] * len(tables.output_dims)
    for w, u, (o, nu, _) in zip(weights, tables.u_matrices, tables.blocks):
        t = torch.einsum("m...k,nkc->ncm...", u, w[species])  # (N, C, M, D, .., D)
        for _ in range(nu):
            t = torch.einsum("ncm...d,ncd->ncm...", t, x)
        outputs[o] = outputs[o] + t
    return outputs


# Columns (node, channel pairs) per block: a block's monomials (Q x _CHUNK) stay in cache between the
# gathers, the products and the GEMM instead of streaming a (Q, N C) tensor through memory five times.
_CHUNK = 2048


def _projected(rows: torch.Tensor, index: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """``(cols, B)``: the monomials of ``rows (D + 1, B)`` (gathers and products) times the projection."""
    monomials = rows.index_select(0, index[:, 0])
    for j in range(1, index.shape[1]):
        monomials = monomials * rows.index_select(0, index[:, j])
    return projection.T @ monomials


def _factorized(x, species, weights, tables):
    n, c, d = x.shape
    # Components first, (D, N C): every gather below copies whole contiguous rows.
    rows = torch.cat([x.permute(2, 0, 1).reshape(d, n * c), x.new_ones(1, n * c)])  # row d: the factor 1
    index = torch.where(tables.monomial_index < 0, d, tables.monomial_index)
    if tracing():  # one block: a loop over a symbolic size would fix it in the graph (compilers fuse anyway)
        projected = _projected(rows, index, tables.projection)
    else:
        projected = torch.cat([_projected(rows[:, a:a + _CHUNK], index, tables.projection)
                               for a in range(0, n * c, _CHUNK)], dim=1) if n * c else rows.new_zeros(
            tables.projection.shape[1], 0)  # fmt: skip
    factored = torch.cat([torch.einsum("rk,ekc->erc", f, w) for f, w in zip(tables.factors, weights)], dim=1)
    per_column = factored[:, tables.column_rank].index_select(0, species).transpose(0, 1).reshape(-1, n * c)
    summed = tables.column_sum.T @ (projected * per_column)  # (S, N C)
    return list(torch.split(summed.reshape(-1, n, c).permute(1, 2, 0), list(tables.output_dims), dim=-1))


def symmetric_contraction(x: torch.Tensor, species: torch.Tensor, weights: Sequence[torch.Tensor],
                          tables: SymmetricContractionTables, backend: str | None = None) -> torch.Tensor:  # fmt: skip
    """MACE's symmetric contraction of ``x`` with per-element weights.

    Args:
        x: ``(N, C, D)`` float32/float64, the atomic basis per node and channel (MACE's ``reshape_irreps``
            layout: ``D`` components of one copy of each input irrep).
        species: ``(N,)`` int64 element index of each node in ``[0, E)``.
        weights: one ``(E, K, C)`` tensor per ``tables.blocks`` entry (same dtype and device as ``x``).
        tables: the plan (see :class:`SymmetricContractionTables`).
        backend: ``"factorized"`` (default) or ``"reference"``.

    Returns:
        ``(N, sum_o C (2 l_o + 1))``: per output irrep ``o`` a ``(C, 2l_o+1)`` block, the e3nn layout of
        ``C x o1 + C x o2 + ...``.
    """
    backend = _check(x, species, weights, tables, backend)
    run = _reference if backend == "reference" else _factorized
    outputs = run(x, species, weights, tables)
    if not tracing():  # a traced dict write would guard on it and recompile the next call
        registry.record(_OP, backend)
    n = x.shape[0]
    return torch.cat([out.reshape(n, -1) for out in outputs], dim=1)
