"""e3nn's tentative voxel convolution of March 2021 (``e3nn.nn.models.v2103.voxel_convolution``), on fastso3.

Same classes, constructor arguments, buffers (``emb``, ``sh``), submodules (``sc``, ``tp``) and parameters
(``weight``) as e3nn 0.6.0 (``e3nn/nn/models/v2103/voxel_convolution.py``).
"""

from __future__ import annotations

from typing import Any

import torch

from .._voxel import LowPassFilter, VoxelConvolution, unit_lattice

__all__ = ["Convolution", "LowPassFilter"]


class Convolution(VoxelConvolution):
    r"""Equivariant convolution of voxel images: ``sc(x) + 0.1 conv3d(x, filter)``.

    ``forward(x)``: ``(batch, irreps_in.dim, X, Y, Z)`` -> ``(batch, irreps_out.dim, X', Y', Z')`` (the same
    size with the default padding ``size // 2``), float32 or float64 (the module's dtype). The filter lives
    on ``size`` points along each axis spanning ``[-1, 1]`` (scaled by ``steps / min(steps)``), with ``size``
    smooth_finite radial functions and the spherical harmonics ``irreps_sh``; its weights are divided by
    ``size^(3/2)``.

    Args:
        irreps_in, irreps_out: channel irreps of the input and output images.
        irreps_sh: filter harmonics, typically ``Irreps.spherical_harmonics(lmax)``.
        size: filter width in voxels (and number of radial functions).
        steps: voxel size along x, y, z (physical units).
        **kwargs: passed to ``torch.nn.functional.conv3d`` (``padding`` defaults to ``size // 2``).
    """

    def __init__(
        self, irreps_in: Any, irreps_out: Any, irreps_sh: Any, size: int, steps=(1, 1, 1), **kwargs: Any
    ) -> None:
        super().__init__()
        self.size = size
        self.num_rbfs = self.size
        if "padding" not in kwargs:
            kwargs["padding"] = self.size // 2
        self.kwargs = kwargs
        self._build_linear(irreps_in, irreps_out, irreps_sh)
        self._build_filter(unit_lattice(self.size, steps), 1.0, self.num_rbfs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        kernel = self._filter(self.size ** (3 / 2))
        return self._self_connection(x) + 0.1 * torch.nn.functional.conv3d(x, kernel, **self.kwargs)
