"""``SO3Activation``: a pointwise nonlinearity of a signal on SO(3) (``e3nn.nn.SO3Activation``)."""

from __future__ import annotations

from typing import Callable

import torch

from ..core.irreps import Irreps
from ..math import normalize2mom
from ..o3._so3grid import SO3Grid

__all__ = ["SO3Activation"]


def _so3_irreps(lmax: int) -> Irreps:
    return Irreps([(2 * l + 1, (l, 1)) for l in range(lmax + 1)])


class SO3Activation(torch.nn.Module):
    r"""Apply ``act`` pointwise to a signal on SO(3): Wigner coefficients -> grid -> ``phi`` -> coefficients.

    Shapes and dtypes: ``(..., irreps_in.dim) -> (..., irreps_out.dim)``, in the grids' dtype (torch's default
    dtype at construction), with ``irreps_in = sum_{l <= lmax_in} (2l+1) x le`` (row ``i`` of the ``(2l+1, 2l+1)``
    block ``F^l`` of ``f(g) = sum_l <F^l, D^l(g)>`` is copy ``i``) and the same for ``lmax_out``. ``phi`` is ``act``
    normalised by :class:`~fastso3.math.normalize2mom`; the grids are :class:`~fastso3.o3.SO3Grid` ``grid_in`` and
    ``grid_out``, built here, once. Equal to ``e3nn.nn.SO3Activation`` 0.6.0 (which has no ``irreps_in`` and
    ``irreps_out`` attributes; here they exist).

    Args:
        lmax_in, lmax_out: the largest input and output degrees.
        act: the elementwise activation.
        resolution: the SO(3) grid resolution (``2 resolution`` betas).
        normalization: only ``'component'``.
        aspect_ratio: alphas (and gammas) per beta (default 2).
    """

    def __init__(self, lmax_in: int, lmax_out: int, act: Callable, resolution: int, *,
                 normalization: str = "component", aspect_ratio: float = 2) -> None:  # fmt: skip
        super().__init__()
        if not callable(act):
            raise TypeError(f"act must be callable, got {act!r}")
        self.grid_in = SO3Grid(lmax_in, resolution, normalization=normalization, aspect_ratio=aspect_ratio)
        self.grid_out = SO3Grid(lmax_out, resolution, normalization=normalization, aspect_ratio=aspect_ratio)
        self.act = normalize2mom(act)
        self.lmax_in = lmax_in
        self.lmax_out = lmax_out
        self.irreps_in = _so3_irreps(lmax_in)
        self.irreps_out = _so3_irreps(lmax_out)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__} ({self.lmax_in} -> {self.lmax_out})"

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features``: ``(..., irreps_in.dim)`` -> ``(..., irreps_out.dim)``."""
        return self.grid_out.from_grid(self.act(self.grid_in.to_grid(features)))
