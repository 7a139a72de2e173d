"""Pieces shared by e3nn's voxel convolutions (``e3nn/nn/models/v2103/voxel_convolution.py`` and
``v2104/voxel_convolution.py``): the equivariant filter built on a lattice, and the Gaussian low-pass filter."""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ...core.irreps import Irreps
from ...math import soft_one_hot_linspace
from ...o3 import FullyConnectedTensorProduct, Linear, spherical_harmonics


def unit_lattice(size: int, steps: Sequence[float]) -> torch.Tensor:
    """``(nx, ny, nz, 3)`` points of ``linspace(-1, 1, size)`` along each axis scaled by ``steps[i] / min(steps)``,
    those within ``[-1, 1]`` kept (torch's default dtype)."""
    r = torch.linspace(-1, 1, size)
    axes = [r * step / min(steps) for step in steps]
    axes = [a[a.abs() <= 1] for a in axes]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


class VoxelConvolution(torch.nn.Module):
    """Self connection ``sc`` (a :class:`~fastso3.o3.Linear`) plus a 3-d convolution whose filter is
    ``tp.right(sh, emb @ weight)``: radial basis ``emb`` and spherical harmonics ``sh`` of the filter lattice.

    Subclasses call :meth:`_build` in ``__init__`` and use :meth:`_filter` and :meth:`_self_connection`.
    """

    def _build_linear(self, irreps_in, irreps_out, irreps_sh) -> None:
        self.irreps_in = Irreps(irreps_in)
        self.irreps_out = Irreps(irreps_out)
        self.irreps_sh = Irreps(irreps_sh)
        self.sc = Linear(self.irreps_in, self.irreps_out)

    def _build_filter(self, lattice: torch.Tensor, radius: float, num_radial_basis: int) -> None:
        emb = soft_one_hot_linspace(
            x=lattice.norm(dim=-1), start=0.0, end=radius, number=num_radial_basis, basis="smooth_finite", cutoff=True
        )
        self.register_buffer("emb", emb)
        sh = spherical_harmonics(self.irreps_sh, lattice, True, normalization="component")  # (x, y, z, sh.dim)
        self.register_buffer("sh", sh)
        self.tp = FullyConnectedTensorProduct(
            self.irreps_in, self.irreps_sh, self.irreps_out, shared_weights=False, compile_left_right=False,
            compile_right=True,
        )  # fmt: skip
        self.weight = torch.nn.Parameter(torch.randn(num_radial_basis, self.tp.weight_numel))

    def _filter(self, scale: float) -> torch.Tensor:
        """``(irreps_out.dim, irreps_in.dim, x, y, z)``: the convolution filter, weights divided by ``scale``."""
        weight = self.emb @ self.weight / scale
        kernel = self.tp.right(self.sh, weight)  # (x, y, z, irreps_in.dim, irreps_out.dim)
        return torch.einsum("xyzio->oixyz", kernel)

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 5 or x.shape[1] != self.irreps_in.dim:
            raise ValueError(
                f"{type(self).__name__}: expected x of shape (batch, {self.irreps_in.dim}, x, y, z) "
                f"(irreps_in = {self.irreps_in}), got {tuple(getattr(x, 'shape', ()))}"
            )

    def _self_connection(self, x: torch.Tensor) -> torch.Tensor:
        """``sc`` on the channel axis of ``(batch, irreps_in.dim, x, y, z)`` -> ``(batch, irreps_out.dim, x, y, z)``."""
        return self.sc(x.transpose(1, 4)).transpose(1, 4)


class LowPassFilter(torch.nn.Module):
    r"""Gaussian blur of a voxel image before down-sampling by ``scale`` (identity for ``scale == 1``).

    ``forward(image)``: ``(..., x, y, z)`` -> ``(..., x', y', z')`` with a normalised Gaussian of
    ``sigma = sqrt(scale^2 - 1) / 2`` voxels (``size`` = odd width covering 2.5 sigma on each side), applied
    with ``conv3d`` (``conv_transpose3d`` if ``transposed``, the kernel then scaled by ``stride^3``), padding
    ``size // 2`` and ``stride``. Same buffer (``kernel``) and numbers as e3nn 0.6.0
    (``e3nn/nn/models/v2104/voxel_convolution.py``).

    Raises:
        ValueError: ``scale < 1``, or ``scale == 1`` with ``stride != 1`` (e3nn fails later or asserts in ``forward``).
    """

    def __init__(self, scale: float, stride: int = 1, transposed: bool = False, steps=(1, 1, 1)) -> None:
        super().__init__()
        if not scale >= 1:
            raise ValueError(f"LowPassFilter: scale must be >= 1 (the down-sampling factor), got {scale!r}")
        if scale == 1 and stride != 1:
            raise ValueError(f"LowPassFilter: scale 1 is the identity, which needs stride 1, got stride={stride!r}")
        sigma = 0.5 * (scale**2 - 1) ** 0.5
        size = int(1 + 2 * 2.5 * sigma)
        if size % 2 == 0:
            size += 1
        lattice = (size // 2) * unit_lattice(size, steps)
        if sigma > 0:
            kernel = torch.exp(-lattice.norm(dim=-1).pow(2) / (2 * sigma**2))
            kernel = kernel / kernel.sum()
        else:  # scale 1: never applied (e3nn's buffer is 0 / 0 here)
            kernel = torch.ones(lattice.shape[:3])
        if transposed:
            kernel = kernel * stride**3
        self.register_buffer("kernel", kernel[None, None])
        self.scale = scale
        self.stride = stride
        self.size = size
        self.transposed = transposed

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.scale <= 1:
            return image
        out = image.reshape(-1, 1, *image.shape[-3:])
        conv = torch.nn.functional.conv_transpose3d if self.transposed else torch.nn.functional.conv3d
        out = conv(out, self.kernel, padding=self.size // 2, stride=self.stride)
        return out.reshape(*image.shape[:-3], *out.shape[-3:])


def step_lattice(radius: float, steps: Sequence[float]) -> torch.Tensor:
    """``(nx, ny, nz, 3)`` lattice points ``k * steps[i]`` with ``|k| <= floor(radius / steps[i])`` along axis ``i``
    (torch's default dtype)."""
    axes = []
    for step in steps:
        s = math.floor(radius / step)
        axes.append(torch.arange(-s, s + 1.0) * step)
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
