"""e3nn's voxel convolution of April 2021 (``e3nn.nn.models.v2104.voxel_convolution``), on fastso3.

Same classes, constructor arguments, buffers (``lattice``, ``emb``, ``sh``), submodules (``sc``, ``tp``) and
parameters (``weight``) as e3nn 0.6.0 (``e3nn/nn/models/v2104/voxel_convolution.py``).
"""

from __future__ import annotations

from typing import Any

import torch

from .._voxel import LowPassFilter, VoxelConvolution, step_lattice

__all__ = ["Convolution", "LowPassFilter"]


class Convolution(VoxelConvolution):
    r"""Equivariant convolution of voxel images: ``sc(x) + conv3d(x, kernel())``.

    ``forward(x)``: ``(batch, irreps_in.dim, X, Y, Z)`` -> ``(batch, irreps_out.dim, X', Y', Z')`` (the same
    size with the default padding), float32 or float64 (the module's dtype). The filter lives on the voxel
    lattice within ``diameter / 2`` along each axis (``lattice``, physical units), with ``num_radial_basis``
    smooth_finite radial functions up to ``diameter / 2`` and the spherical harmonics ``irreps_sh``; its
    weights are divided by the number of lattice points.

    Args:
        irreps_in, irreps_out: channel irreps of the input and output images.
        irreps_sh: filter harmonics, typically ``Irreps.spherical_harmonics(lmax)``.
        diameter: filter diameter (physical units).
        num_radial_basis: number of radial functions.
        steps: voxel size along x, y, z (physical units).
        **kwargs: passed to ``torch.nn.functional.conv3d`` (``padding`` defaults to half the filter width).
    """

    def __init__(
        self, irreps_in: Any, irreps_out: Any, irreps_sh: Any, diameter: float, num_radial_basis: int,
        steps=(1.0, 1.0, 1.0), **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__()
        self._build_linear(irreps_in, irreps_out, irreps_sh)
        self.num_radial_basis = num_radial_basis
        r = diameter / 2
        lattice = step_lattice(r, steps)
        self.register_buffer("lattice", lattice)
        if "padding" not in kwargs:
            kwargs["padding"] = tuple(s // 2 for s in lattice.shape[:3])
        self.kwargs = kwargs
        self._build_filter(lattice, r, self.num_radial_basis)

    def kernel(self) -> torch.Tensor:
        """The filter ``(irreps_out.dim, irreps_in.dim, x, y, z)``."""
        return self._filter(self.sh.shape[0] * self.sh.shape[1] * self.sh.shape[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self._self_connection(x) + torch.nn.functional.conv3d(x, self.kernel(), **self.kwargs)
