"""MACE's symmetric contraction, framework-neutral: the generalized CG (U) tensors and a factorised plan.

MACE (Batatia et al., NeurIPS 2022, Eqs. 10-11) forms, per node ``n`` and channel ``c``, the equivariant
many-body product of the atomic basis ``A[n, c, i]`` (``i`` over the ``D`` components of
``irreps_in = l0 + l1 + ...``, one copy each):

    B[n, c, o, M] = sum_{nu=1..N} sum_{i1..i_nu} sum_k U_nu^o[M, i1, .., i_nu, k] W_nu^o[z_n, k, c] A_i1 .. A_i_nu

``U_nu^o`` (``(2l_o+1, D, .., D, K)``) spans couplings of ``nu`` copies of ``irreps_in`` to the output irrep ``o``,
built by iterated Wigner 3j couplings in component normalization as ``mace/tools/cg.py::_wigner_nj`` and
``U_matrix_real`` do with e3nn 0.6.0's 3j (restated here, not copied; same paths, same order, same numbers).

The plan: since ``A_i1 .. A_i_nu`` is symmetric, ``U`` only acts through its sum over index permutations, a
matrix over the sorted index tuples (monomials) ``q``; few monomials have non-zero rows and this matrix has low
rank ``R`` (8 of K = 23 couplings for 0e at nu = 3 over 0e+1o+2e+3o). So ``U_sym[q, M, k] = sum_r P[q, M, r]
Q[r, k]`` (SVD), and the contraction becomes: the monomials of ``A`` (gathers and products), one GEMM with ``P``,
and per-element weights ``Q W`` (tiny) selected per node. Work per node and channel: ``sum nnz-monomials x M x R``
instead of MACE's dense ``M x D^nu x K`` einsum.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import numpy as np

from .cg import wigner_3j
from .irreps import Irrep, Irreps

__all__ = ["MAX_CORRELATION", "SymmetricContractionPlan", "sparse_projection", "symmetric_contraction_plan", "u_matrix"]

MAX_CORRELATION = 3
_RANK_TOL = 1e-12


@functools.cache
def _couplings(irreps: Irreps, nu: int) -> list[tuple[Irrep, np.ndarray]]:
    """(Cached: read only.) Every coupling of ``nu`` copies of ``irreps`` to one irrep: ``(ir_out, C (ir_out.dim, D, .., D))``,
    sorted by ``ir_out`` (stable) after each coupling step, as MACE's ``_wigner_nj`` orders them."""
    dim = irreps.dim
    if nu == 1:
        eye, out, start = np.eye(dim), [], 0
        for mul, ir in irreps:
            for _ in range(mul):
                out.append((ir, eye[start:start + ir.dim]))
                start += ir.dim
        return out
    out = []
    for ir_left, c_left in _couplings(irreps, nu - 1):
        start = 0
        for mul, ir in irreps:
            for ir_out in ir_left * ir:
                w = wigner_3j(ir_out.l, ir_left.l, ir.l) * math.sqrt(ir_out.dim)
                c = np.einsum("jk,ijl->ikl", c_left.reshape(ir_left.dim, -1), w)
                c = c.reshape(ir_out.dim, *[dim] * (nu - 1), ir.dim)
                for u in range(mul):
                    e = np.zeros((ir_out.dim, *[dim] * nu))
                    e[..., start + u * ir.dim:start + (u + 1) * ir.dim] = c
                    out.append((ir_out, e))
            start += mul * ir.dim
    return sorted(out, key=lambda entry: entry[0])


def u_matrix(irreps_in, irrep_out, correlation: int) -> np.ndarray:
    """MACE's ``U`` of one output irrep: ``(2l+1, D, .., D, K)`` float64 (``correlation`` D axes).

    ``irreps_in`` e.g. ``"0e+1o+2e+3o"`` (MACE passes one copy of each irrep of its features); ``K`` couplings.
    With no coupling to ``irrep_out``, one all-zero coupling (``K = 1``), as MACE stores it. MACE squeezes the
    leading axis of scalar outputs; this keeps it (``1``) for a uniform layout.
    """
    irreps, ir_out = Irreps(irreps_in), Irrep(irrep_out)
    if not 1 <= correlation <= MAX_CORRELATION:
        raise ValueError(f"u_matrix: correlation must be in [1, {MAX_CORRELATION}], got {correlation}")
    found = [c for ir, c in _couplings(irreps, correlation) if ir == ir_out]
    if not found:
        return np.zeros((ir_out.dim, *[irreps.dim] * correlation, 1))
    return np.stack(found, axis=-1)


class SymmetricContractionPlan(NamedTuple):
    """Tables of the factorised contraction (numpy; the torch front turns them into buffers).

    ``D`` inputs per channel, ``Q`` monomials over every order, ``S`` output components (sum of ``2l+1`` over
    the outputs), ``R`` factorised columns over every (output, order), ``K`` weights per (output, order).

    - ``monomial_index`` ``(Q, correlation)`` int64: the input indices of each monomial, ``-1`` padded;
    - ``projection`` ``(Q, C)`` float64 with ``C = sum_o M_o R_o`` columns: ``P``;
    - ``column_rank`` ``(C,)`` int64: the factorised weight row (in ``[0, R)``) each column is weighted by;
    - ``column_output`` ``(C,)`` int64: the output component (in ``[0, S)``) each column sums into;
    - ``weight_factors``: per (output, order) ``(rank_start, Q_factor (R_block, K))``, in ``blocks`` order;
    - ``blocks``: ``(output index, order nu, K)`` of every weight tensor, as MACE's parameters are laid out;
    - ``u_matrices``: the dense ``U (M, D, .., D, K)`` of every block (for the reference twin);
    - ``output_dims``: ``2l+1`` per output irrep; ``rank``: ``R``.
    """

    num_inputs: int
    monomial_index: np.ndarray
    projection: np.ndarray
    column_rank: np.ndarray
    column_output: np.ndarray
    weight_factors: tuple
    blocks: tuple
    u_matrices: tuple
    output_dims: tuple
    rank: int


def _symmetrized(u: np.ndarray, monomials: list[tuple[int, ...]]) -> np.ndarray:
    """``(Q_nu, M, K)``: ``u (M, D^nu, K)`` summed over the distinct orderings of each sorted index tuple ``q``.

    The sum over all ``nu!`` axis orders counts each distinct ordering ``prod(repeats!)`` times."""
    nu = len(monomials[0])
    full = sum(np.transpose(u, (0, *(1 + a for a in p), nu + 1)) for p in itertools.permutations(range(nu)))
    rows = np.asarray(monomials).T
    repeats = np.asarray([math.prod(math.factorial(q.count(i)) for i in set(q)) for q in monomials], dtype=float)
    return np.moveaxis(full[(slice(None), *rows)], 0, 1) / repeats[:, None, None]


def symmetric_contraction_plan(irreps_in, irreps_out, correlation: int,
                               u_matrices: dict | None = None) -> SymmetricContractionPlan:  # fmt: skip
    """The plan of ``irreps_in -> irreps_out`` (each output irrep once, e.g. ``"0e + 1o"``) up to ``correlation``.

    ``u_matrices``: optional ``{(output index, nu): U (M, D, .., D, K)}`` to use instead of :func:`u_matrix`
    (a converted MACE model brings the U of the e3nn version it was built with). Raises ``ValueError`` for a
    correlation outside ``[1, MAX_CORRELATION]`` or an output irrep listed twice.
    """
    irreps_in, irreps_out = Irreps(irreps_in), Irreps(irreps_out)
    outputs = [ir for mul, ir in irreps_out for _ in range(mul)]
    if len(set(outputs)) != len(outputs):
        raise ValueError(f"symmetric_contraction_plan: each output irrep at most once, got {irreps_out}")
    if not 1 <= correlation <= MAX_CORRELATION:
        raise ValueError(f"symmetric_contraction_plan: correlation must be in [1, {MAX_CORRELATION}], got {correlation}")
    dim = irreps_in.dim
    monomials: dict[tuple[int, ...], int] = {}
    columns, ranks, targets, factors, blocks, us = [], [], [], [], [], []
    rank = component = 0
    for o, ir in enumerate(outputs):
        for nu in range(correlation, 0, -1):  # MACE's parameter order: weights_max first, then nu = N-1 .. 1
            u = (u_matrices or {}).get((o, nu))
            u = u_matrix(irreps_in, ir, nu) if u is None else np.asarray(u, dtype=np.float64)
            u = u.reshape(ir.dim, *[dim] * nu, -1)
            blocks.append((o, nu, u.shape[-1]))
            us.append(u)
            sorted_tuples = list(itertools.combinations_with_replacement(range(dim), nu))
            sym = _symmetrized(u, sorted_tuples)  # (Q_nu, M, K)
            keep = np.abs(sym).reshape(len(sorted_tuples), -1).max(axis=1) > 0
            sym = sym[keep]
            kept = [q for q, k in zip(sorted_tuples, keep) if k]
            if not kept:
                factors.append((rank, np.zeros((0, u.shape[-1]))))
                continue
            left, sing, right = np.linalg.svd(sym.reshape(-1, sym.shape[-1]), full_matrices=False)
            r = int((sing > _RANK_TOL * sing[0]).sum())
            p = (left[:, :r] * sing[:r]).reshape(len(kept), ir.dim, r)
            rows = [monomials.setdefault(q, len(monomials)) for q in kept]
            for m in range(ir.dim):
                for j in range(r):
                    columns.append((rows, p[:, m, j]))
                    ranks.append(rank + j)
                    targets.append(component + m)
            factors.append((rank, right[:r]))
            rank += r
        component += ir.dim
    index = np.full((len(monomials), correlation), -1, dtype=np.int64)
    for q, row in monomials.items():
        index[row, :len(q)] = q
    projection = np.zeros((len(monomials), len(columns)))
    for col, (rows, values) in enumerate(columns):
        projection[rows, col] = values
    return SymmetricContractionPlan(
        num_inputs=dim, monomial_index=index, projection=projection,
        column_rank=np.asarray(ranks, dtype=np.int64), column_output=np.asarray(targets, dtype=np.int64),
        weight_factors=tuple(factors), blocks=tuple(blocks), u_matrices=tuple(us), output_dims=tuple(ir.dim for ir in outputs), rank=rank,
    )  # fmt: skip


def sparse_projection(plan: SymmetricContractionPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The projection ``P (Q, C)`` in CSR by monomial: ``(ptr (Q+1,) int64, column (nnz,) int64, value (nnz,)
    float64)``; monomial ``q``'s entries are ``ptr[q]:ptr[q+1]`` (13% of ``P`` for 0e+1o over 0e+1o+2e+3o at
    correlation 3), in increasing column order."""
    rows, columns = np.nonzero(plan.projection)
    ptr = np.zeros(plan.projection.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=plan.projection.shape[0]), out=ptr[1:])
    return ptr, columns.astype(np.int64), plan.projection[rows, columns]
