"""``S2Activation``: a pointwise nonlinearity of a signal on the sphere (``e3nn.nn.S2Activation``)."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from ..core.irreps import Irreps
from ..math import normalize2mom
from ..o3._rotation import rand_angles
from ..o3._s2grid import FromS2Grid, ToS2Grid

__all__ = ["S2Activation"]


def _parity_of_activation(act: Callable) -> int:
    """+1 (even), -1 (odd) or 0 (neither) on e3nn's probe ``linspace(0, 10, 256)``, relative tolerance 1e-10."""
    x = torch.linspace(0, 10, 256)
    a1, a2 = act(x), act(-x)
    if (a1 - a2).abs().max() < a1.abs().max() * 1e-10:
        return 1
    if (a1 + a2).abs().max() < a1.abs().max() * 1e-10:
        return -1
    return 0


class S2Activation(torch.nn.Module):
    r"""Apply ``act`` pointwise to the signal on the sphere: ``{A^l} -> {int phi(sum_l A^l . Y^l(x)) Y^j(x) dx}_j``.

    Shapes and dtypes: ``(..., irreps_in.dim) -> (..., irreps_out.dim)`` in the buffers' dtype (torch's default
    dtype at construction; ``module.to(dtype)`` converts). The input is a spherical tensor: one copy of each
    degree ``0..lmax`` with parities ``p_val p_arg^l`` (see :class:`fastso3.io.SphericalTensor`); the output has
    degrees ``0..lmax_out`` with the parities the nonlinearity gives (for ``p_val = -1`` the activation must be
    even or odd). ``phi`` is ``act`` normalised by :class:`~fastso3.math.normalize2mom`. The grids are a
    :class:`~fastso3.o3.ToS2Grid` ``to_s2`` and a :class:`~fastso3.o3.FromS2Grid` ``from_s2`` built here, once, so
    e3nn state dicts load. Equal to ``e3nn.nn.S2Activation`` 0.6.0 (e3nn: ``assert``, here ``ValueError``).

    Args:
        irreps: the input irreps (simplified first).
        act: the elementwise activation.
        res: the grid resolution: ``res_beta`` or ``(res_beta, res_alpha)`` (the higher, the more accurate).
        normalization: of the grids: ``'component'`` (default), ``'norm'`` or ``'integral'``.
        lmax_out: the largest output degree (default: the input's).
        random_rot: rotate the grid by a random rotation at every call (equivariant on average, less aliasing bias).
    """

    def __init__(self, irreps: Any, act: Callable, res: Any, normalization: str = "component",
                 lmax_out: Optional[int] = None, random_rot: bool = False) -> None:  # fmt: skip
        super().__init__()
        irreps = Irreps(irreps).simplify()
        if not callable(act):
            raise TypeError(f"act must be callable, got {act!r}")
        if len(irreps) == 0 or any(mul != 1 for mul, _ in irreps) or irreps.ls != list(range(irreps.lmax + 1)):
            raise ValueError(f"S2Activation needs one copy of each degree 0..lmax (a SphericalTensor), got {irreps}")
        lmax = irreps.lmax
        p_val = irreps[0].ir.p
        if all(ir.p == p_val for _, ir in irreps):
            p_arg = 1
        elif all(ir.p == p_val * (-1) ** ir.l for _, ir in irreps):
            p_arg = -1
        else:
            raise ValueError(f"the parity of the input {irreps} is not well defined: it must be p_val * p_arg^l")
        # The input transforms as A^l -> p_val p_arg^l A^l, the signal as f(r) -> p_val f(p_arg r).
        if lmax_out is None:
            lmax_out = lmax
        if p_val == 1:
            p_out = 1
        else:
            p_out = _parity_of_activation(act)
            if p_out == 0:
                raise ValueError("the input is odd (p_val = -1) and act is neither even nor odd: the parity is violated")
        self.irreps_in = irreps
        self.irreps_out = Irreps([(1, (l, p_out * p_arg**l)) for l in range(lmax_out + 1)])
        self.to_s2 = ToS2Grid(lmax, res, normalization=normalization)
        self.from_s2 = FromS2Grid(res, lmax_out, normalization=normalization, lmax_in=lmax)
        self.act = normalize2mom(act)
        self.random_rot = bool(random_rot)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__} ({self.irreps_in} -> {self.irreps_out})"

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features``: ``(..., irreps_in.dim)`` -> ``(..., irreps_out.dim)``."""
        if not isinstance(features, torch.Tensor) or features.ndim == 0 or features.shape[-1] != self.irreps_in.dim:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"{self!r} expects features of shape (..., {self.irreps_in.dim}), got {shape}")
        if self.random_rot:
            abc = rand_angles(dtype=features.dtype, device=features.device)
            features = torch.einsum("ij,...j->...i", self.irreps_in.D_from_angles(*abc), features)
        features = self.from_s2(self.act(self.to_s2(features)))
        if self.random_rot:
            features = torch.einsum("ij,...j->...i", self.irreps_out.D_from_angles(*abc).T, features)
        return features
