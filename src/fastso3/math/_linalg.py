"""Small linear-algebra helpers of ``e3nn.math`` 0.6.0 (``e3nn/math/_linalg.py``): Gram-Schmidt with
e3nn's sign and zero-cleaning conventions, so that bases built from them (permutation representations,
the change of basis of :class:`fastso3.o3.ReducedTensorProducts`) are e3nn's, entry for entry.

* :func:`orthonormalize` ``(n, d) -> ((r, d), (r, n))``;
* :func:`complete_basis` ``(n, d) -> (d - r, d)``;
* :func:`direct_sum` ``(..., m_i, n_i)... -> (..., sum m_i, sum n_i)``.
"""

from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["complete_basis", "direct_sum", "orthonormalize"]


def _check_matrix(x, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"{name} must be a 2-d tensor (vectors as rows), got {getattr(x, 'shape', type(x).__name__)}")


def _clean_and_orient(x: torch.Tensor, eps: float, *others: torch.Tensor) -> tuple:
    """Zero the entries of ``x`` below ``eps`` and flip ``x`` (and ``others`` alike) so that its first
    nonzero entry is positive: e3nn's canonical form of a basis vector."""
    x = torch.where(x.abs() < eps, torch.zeros_like(x), x)
    s = x[x.nonzero()[0, 0]].sign()
    return (s * x, *(s * o for o in others))


def direct_sum(*matrices: torch.Tensor) -> torch.Tensor:
    """Block-diagonal matrix of ``matrices`` ``(..., m_i, n_i)`` (same leading shape): ``(..., sum m_i, sum n_i)``."""
    if not matrices:
        raise ValueError("direct_sum needs at least one matrix")
    rows = sum(m.shape[-2] for m in matrices)
    cols = sum(m.shape[-1] for m in matrices)
    out = matrices[0].new_zeros(*matrices[0].shape[:-2], rows, cols)
    i = j = 0
    for m in matrices:
        out[..., i : i + m.shape[-2], j : j + m.shape[-1]] = m
        i += m.shape[-2]
        j += m.shape[-1]
    return out


def orthonormalize(original: torch.Tensor, eps: float = 1e-9) -> Tuple[torch.Tensor, torch.Tensor]:
    """Gram-Schmidt on the rows of ``original`` ``(n, d)``, in order.

    Returns ``(final, matrix)``: ``final`` ``(r, d)`` orthonormal rows (vectors whose residual norm is
    ``<= 2 eps`` are dropped), ``matrix`` ``(r, n)`` with ``final = matrix @ original``. Each kept
    vector has its entries below ``eps`` set to zero (in it and in its row of ``matrix``) and its
    first nonzero entry positive, as e3nn.
    """
    _check_matrix(original, "original")
    final: list = []
    matrix: list = []
    for i, x in enumerate(original):
        coefficients = x.new_zeros(len(original))
        coefficients[i] = 1
        for y, cy in zip(final, matrix):
            c = torch.dot(x, y)
            x = x - c * y
            coefficients = coefficients - c * cy
        if x.norm() > 2 * eps:
            c = 1 / x.norm()
            x, coefficients = c * x, c * coefficients
            coefficients = torch.where(coefficients.abs() < eps, torch.zeros_like(coefficients), coefficients)
            x, coefficients = _clean_and_orient(x, eps, coefficients)
            final.append(x)
            matrix.append(coefficients)
    if not final:
        return original.new_zeros(0, original.shape[1]), original.new_zeros(0, len(original))
    return torch.stack(final), torch.stack(matrix)


def complete_basis(vecs: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """An orthonormal basis ``(d - r, d)`` of the complement of the (orthogonal) rows of ``vecs`` ``(r, d)``:
    the unit vectors ``e_0, e_1, ...`` orthogonalised in turn, kept when their residual exceeds
    ``2 eps``, cleaned and oriented as in :func:`orthonormalize`."""
    _check_matrix(vecs, "vecs")
    basis = [v / v.norm() for v in vecs]
    expand: list = []
    for x in torch.eye(vecs.shape[1], dtype=vecs.dtype, device=vecs.device):
        for y in basis + expand:
            x = x - torch.dot(x, y) * y
        if x.norm() > 2 * eps:
            (x,) = _clean_and_orient(x / x.norm(), eps)
            expand.append(x)
    if not expand:
        return vecs.new_zeros(0, vecs.shape[1])
    return torch.stack(expand)
