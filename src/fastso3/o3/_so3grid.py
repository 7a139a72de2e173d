r"""Signals on SO(3): Wigner coefficients <-> values on an ``(alpha, beta, gamma)`` grid.

Equal to e3nn 0.6.0's ``e3nn/o3/_so3grid.py`` (repository e3nn/e3nn), buffers included. A signal on SO(3) of
degree at most ``lmax`` is ``f(g) = sum_l <F^l, D^l(g)>`` with ``F^l`` a ``(2l+1, 2l+1)`` block; its coefficients
are the irreps ``sum_l (2l+1) x l`` (row ``i`` of ``F^l`` is copy ``i``), ``sum_l (2l+1)^2`` numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._s2grid import _check_tensor, _quadrature_weights, s2_grid
from ._wigner import wigner_D

__all__ = ["SO3Grid", "flat_wigner"]


def flat_wigner(lmax: int, alpha: Tensor, beta: Tensor, gamma: Tensor) -> Tensor:
    r"""``sqrt(2l+1) D^l(alpha, beta, gamma)`` flattened row-major and concatenated over ``l = 0..lmax``.

    Angles broadcast to ``(...)``; returns ``(..., sum_l (2l+1)^2)`` in their dtype. Equal to e3nn's ``flat_wigner``.
    """
    return torch.cat([(2 * l + 1) ** 0.5 * wigner_D(l, alpha, beta, gamma).flatten(-2) for l in range(lmax + 1)], dim=-1)


class SO3Grid(torch.nn.Module):
    r"""The grid on SO(3) of ``2 res_alpha x res_beta`` Euler angles (``alpha = gamma``) and its quadrature.

    ``res_beta = 2 resolution`` betas and ``res_alpha = res_gamma = round(2 aspect_ratio resolution)`` alphas
    and gammas, from :func:`~fastso3.o3.s2_grid`. Buffers (as e3nn, torch's default dtype): ``D (res_alpha, res_beta,
    res_gamma, dim)`` the :func:`flat_wigner` values on the grid, ``qw (res_beta,)`` the quadrature weights,
    ``alpha``, ``beta``, ``gamma``; all built here, once.

    * ``to_grid``: ``(..., dim) -> (..., res_alpha, res_beta, res_gamma)``, ``F . D(g) / sqrt(dim)``;
    * ``from_grid``: its inverse on signals of degree ``<= lmax``, ``(..., res_alpha, res_beta, res_gamma) -> (..., dim)``.

    Args:
        lmax: the largest degree; ``dim = sum_{l <= lmax} (2l+1)^2``.
        resolution: the grid resolution (positive int).
        normalization: only ``'component'`` (as e3nn).
        aspect_ratio: ``res_alpha / res_beta`` (default 2).
    """

    def __init__(self, lmax: int, resolution: int, *, normalization: str = "component", aspect_ratio: float = 2) -> None:
        super().__init__()
        if normalization != "component":
            raise ValueError(f"SO3Grid supports only normalization='component' (as e3nn), got {normalization!r}")
        if isinstance(lmax, bool) or not isinstance(lmax, int) or lmax < 0:
            raise ValueError(f"SO3Grid: lmax must be a non-negative int, got {lmax!r}")
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"SO3Grid: resolution must be a positive int, got {resolution!r}")
        n_beta = 2 * resolution
        n_alpha = round(2 * aspect_ratio * resolution)
        if n_alpha < 1:
            raise ValueError(f"SO3Grid: aspect_ratio = {aspect_ratio!r} leaves no alpha points; give a positive aspect_ratio")
        beta, alpha = s2_grid(n_beta, n_alpha)
        self.register_buffer("D", flat_wigner(lmax, alpha[:, None, None], beta[None, :, None], alpha[None, None, :]))
        self.register_buffer("qw", _quadrature_weights(n_beta // 2) * n_beta**2 / n_alpha**2)
        self.register_buffer("alpha", alpha)
        self.register_buffer("beta", beta)
        self.register_buffer("gamma", alpha)
        self.lmax = lmax
        self.res_alpha = n_alpha
        self.res_beta = n_beta
        self.res_gamma = n_alpha

    def __repr__(self) -> str:
        return f"{self.__class__.__name__} ({self.lmax})"

    def to_grid(self, features: Tensor) -> Tensor:
        """``features``: ``(..., dim)`` -> ``(..., res_alpha, res_beta, res_gamma)``, in the buffers' dtype."""
        _check_tensor(features, "features")
        if features.ndim == 0 or features.shape[-1] != self.D.shape[-1]:
            raise ValueError(f"SO3Grid(lmax={self.lmax}).to_grid expects features of shape (..., {self.D.shape[-1]}), "
                             f"got {tuple(features.shape)}")  # fmt: skip
        return torch.einsum("...i,abci->...abc", features, self.D) / self.D.shape[-1] ** 0.5

    def from_grid(self, features: Tensor) -> Tensor:
        """``features``: ``(..., res_alpha, res_beta, res_gamma)`` -> ``(..., dim)``, in the buffers' dtype."""
        _check_tensor(features, "features")
        if features.ndim < 3 or tuple(features.shape[-3:]) != tuple(self.D.shape[:3]):
            raise ValueError(f"SO3Grid(lmax={self.lmax}).from_grid expects features of shape (..., {self.res_alpha}, "
                             f"{self.res_beta}, {self.res_gamma}), got {tuple(features.shape)}")  # fmt: skip
        return torch.einsum("...abc,abci,b->...i", features, self.D, self.qw) * self.D.shape[-1] ** 0.5
