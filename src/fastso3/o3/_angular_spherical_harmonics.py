"""Spherical harmonics as functions of the angles ``(alpha, beta)``, and their two factors.

Equal to e3nn 0.6.0's ``e3nn/o3/_angular_spherical_harmonics.py`` (repository e3nn/e3nn): with y the polar axis
(docs/conventions.md, section 2), the harmonic of the direction ``R_y(alpha) R_x(beta) e_y`` factorises as

    Y^l_m(alpha, beta) = S_m(alpha) * P^l_{|m|}(cos beta, sin beta)

with :func:`spherical_harmonics_alpha` (``S``) and :class:`Legendre` (``P``, 'integral' normalisation).
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch
from torch import Tensor

from ..core.irreps import Irreps
from ..core.sh import NORMALIZATIONS
from ._rotation import angles_to_xyz
from ._spherical_harmonics import _check_lmax, _degrees, _spherical_harmonics

__all__ = ["Legendre", "SphericalHarmonicsAlphaBeta", "spherical_harmonics_alpha", "spherical_harmonics_alpha_beta"]

DegreesLike = Union[int, Sequence[int], Irreps]


def _degree_list(l: DegreesLike) -> list[int]:
    """Degrees of an int, a list of ints or an Irreps (one per copy; parities are ignored, as in e3nn)."""
    if isinstance(l, str):
        l = Irreps(l)
    if isinstance(l, Irreps):
        l = [ir.l for mul, ir in l for _ in range(mul)]
    return _degrees(l)


def _check_angle(x, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def spherical_harmonics_alpha(l: int, alpha: Tensor) -> Tensor:
    r"""The ``alpha`` factor ``S(alpha)`` of :func:`spherical_harmonics_alpha_beta`: ``(...) -> (..., 2l+1)``.

    Component ``m = -l..l`` is ``sqrt(2) sin(|m| alpha)`` for ``m < 0``, ``1`` for ``m = 0`` and ``sqrt(2) cos(m alpha)``
    for ``m > 0``; dtype and device of ``alpha`` (radians). Equal to ``e3nn.o3.spherical_harmonics_alpha``.
    """
    _check_angle(alpha, "alpha")
    if isinstance(l, bool) or not isinstance(l, int) or l < 0:
        raise ValueError(f"spherical_harmonics_alpha: l must be a non-negative int, got {l!r}")
    alpha = alpha.unsqueeze(-1)
    sin = torch.sin(torch.arange(l, 0, -1, dtype=alpha.dtype, device=alpha.device) * alpha)
    cos = torch.cos(torch.arange(1, l + 1, dtype=alpha.dtype, device=alpha.device) * alpha)
    return torch.cat([math.sqrt(2) * sin, torch.ones_like(alpha), math.sqrt(2) * cos], dim=-1)


def _legendre_constants(lmax: int) -> tuple[list[float], list[float], list[float]]:
    """Seeds ``P^m_m = diag[m] y^m`` and the three-term recurrence coefficients, flattened per degree.

    ``P^l_m = a_lm (z P^{l-1}_m - b_lm P^{l-2}_m)`` for ``m <= l - 2``; ``a`` and ``b`` hold ``m = 0..l-2``
    for ``l = 2..lmax`` back to back. This is the recurrence of the orthonormal associated Legendre
    functions; it holds for the polynomials in ``z`` themselves, so the result is e3nn's polynomial
    ``y^m Q_lm(z)`` for any ``(z, y)``, not only on the unit circle.
    """
    diag = [1 / math.sqrt(4 * math.pi)]
    for m in range(1, lmax + 1):
        diag.append(diag[-1] * math.sqrt((2 * m + 1) / (2 * m)))
    a, b = [], []
    for l in range(2, lmax + 1):
        for m in range(l - 1):
            a.append(math.sqrt((4 * l * l - 1) / (l * l - m * m)))
            b.append(math.sqrt(((l - 1) ** 2 - m * m) / (4 * (l - 1) ** 2 - 1)))
    return diag, a, b


class Legendre(torch.nn.Module):
    r"""Associated Legendre functions ``P^l_{|m|}(z, y)`` in e3nn's normalisation, ``(...), (...) -> (..., sum(2l+1))``.

    ``forward(z, y)`` with ``z = cos(beta)`` and ``y = sin(beta)`` (broadcast; float32 or float64) returns, for each
    requested degree in order and ``m = -l..l``, the value ``P^l_{|m|} = N_lm y^{|m|} d^{l+|m|}/dz^{l+|m|} (z^2-1)^l
    / (2^l l!)`` with ``N_lm = sqrt((2l+1)/(4 pi) (l-|m|)!/(l+|m|)!)``: no Condon-Shortley phase, even in ``m``.
    Equal to ``e3nn.o3.Legendre`` (a polynomial in ``z`` and ``y``, for any inputs); computed by the stable
    three-term recurrence instead of e3nn's expanded monomials, so high degrees keep full precision.

    Args:
        ls: the degrees, a list of non-negative ints.
    """

    def __init__(self, ls: Sequence[int]) -> None:
        super().__init__()
        self.ls = _degrees(list(ls))
        lmax = max(self.ls)
        _check_lmax(lmax, False)
        diag, a, b = _legendre_constants(lmax)
        # Built once; float64 here, cast to the input's dtype and device in forward. Not persistent: e3nn's Legendre
        # has no state.
        self.register_buffer("_diag", torch.tensor(diag, dtype=torch.float64), persistent=False)
        self.register_buffer("_a", torch.tensor(a, dtype=torch.float64), persistent=False)
        self.register_buffer("_b", torch.tensor(b, dtype=torch.float64), persistent=False)
        # Row l of the triangle holds m = 0..l at offset l(l+1)/2.
        index = [l * (l + 1) // 2 + abs(m) for l in self.ls for m in range(-l, l + 1)]
        self.register_buffer("_index", torch.tensor(index, dtype=torch.long), persistent=False)
        self._lmax = lmax

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        """``z, y``: ``(...)`` (broadcast) -> ``(..., sum(2l+1))`` in their dtype."""
        _check_angle(z, "z")
        _check_angle(y, "y")
        z, y = torch.broadcast_tensors(z, y)
        diag, a, b = (c.to(dtype=z.dtype, device=z.device) for c in (self._diag, self._a, self._b))
        z1 = z.unsqueeze(-1)
        seeds = diag * y.unsqueeze(-1) ** torch.arange(self._lmax + 1, dtype=z.dtype, device=z.device)  # P^m_m
        rows = [seeds[..., :1]]
        offset = 0
        for l in range(1, self._lmax + 1):
            next_to_diagonal = math.sqrt(2 * l + 1) * z1 * seeds[..., l - 1 : l]  # P^l_{l-1}
            if l == 1:
                rows.append(torch.cat([next_to_diagonal, seeds[..., 1:2]], dim=-1))
                continue
            a_l, b_l = a[offset : offset + l - 1], b[offset : offset + l - 1]
            offset += l - 1
            lower = a_l * (z1 * rows[l - 1][..., : l - 1] - b_l * rows[l - 2][..., : l - 1])
            rows.append(torch.cat([lower, next_to_diagonal, seeds[..., l : l + 1]], dim=-1))
        # Constants follow the input, so the module need not be moved (e3nn's Legendre holds no tensors).
        return torch.cat(rows, dim=-1).index_select(-1, self._index.to(z.device))

    def extra_repr(self) -> str:
        return f"ls={self.ls}"


class SphericalHarmonicsAlphaBeta(torch.nn.Module):
    r"""Module form of :func:`spherical_harmonics_alpha_beta`: ``(...), (...) -> (..., sum(2l+1))``.

    Args:
        l: the degrees: an int, a list of ints or an Irreps (one block per copy; parities ignored, as in e3nn).
        normalization: ``'integral'`` (default), ``'component'`` or ``'norm'``, as :func:`fastso3.o3.spherical_harmonics`.
    """

    def __init__(self, l: DegreesLike, normalization: str = "integral") -> None:
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        self._ls_list = _degree_list(l)
        self._lmax = max(self._ls_list)
        _check_lmax(self._lmax, False)
        self.normalization = normalization

    def forward(self, alpha: Tensor, beta: Tensor) -> Tensor:
        """``alpha, beta``: ``(...)`` (broadcast, radians) -> ``(..., sum(2l+1))`` in their dtype."""
        _check_angle(alpha, "alpha")
        _check_angle(beta, "beta")
        # The harmonics are homogeneous polynomials and the point is on the unit sphere: no normalisation needed.
        return _spherical_harmonics(self._ls_list, angles_to_xyz(alpha, beta), False, self.normalization, None)

    def extra_repr(self) -> str:
        return f"ls={self._ls_list}, normalization={self.normalization!r}"


def spherical_harmonics_alpha_beta(l: DegreesLike, alpha: Tensor, beta: Tensor, *, normalization: str = "integral") -> Tensor:
    r"""Spherical harmonics of the direction ``R_y(alpha) R_x(beta) e_y``: ``(...), (...) -> (..., sum(2l+1))``.

    Equal to ``e3nn.o3.spherical_harmonics_alpha_beta`` and to :func:`fastso3.o3.spherical_harmonics` of
    ``angles_to_xyz(alpha, beta)``; ``alpha`` and ``beta`` broadcast (radians, float32 or float64), any real values.

    Args:
        l: degree(s): an int, a list of ints or an Irreps.
        alpha, beta: the angles, ``(...)``.
        normalization: ``'integral'`` (default), ``'component'`` or ``'norm'``.
    """
    return SphericalHarmonicsAlphaBeta(l, normalization=normalization)(alpha, beta)
