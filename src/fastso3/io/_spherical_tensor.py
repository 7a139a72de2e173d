r"""``SphericalTensor``: the irreps of a signal on the sphere, with tools to build, sample and plot such signals.

Equal to e3nn 0.6.0's ``e3nn/io/_spherical_tensor.py`` (repository e3nn/e3nn) in values and layouts; the deliberate
differences (clear errors instead of asserts, inputs' dtype and device instead of the defaults, every parity
accepted, peaks in a fixed order, no scipy) are listed in the class docstring.
"""

from __future__ import annotations

import math
from collections import namedtuple
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..core.irreps import Irreps
from ..o3._rotation import angles_to_matrix
from ..o3._s2grid import FromS2Grid, ToS2Grid
from ..o3._spherical_harmonics import _spherical_harmonics

__all__ = ["SphericalTensor"]

# e3nn's namedtuple, fields (grid, values), named "Return" there too.
SignalOnGrid = namedtuple("Return", "grid, values")


def _peaks_1d(x: np.ndarray) -> np.ndarray:
    """Indices of the strict local maxima of ``x`` (1-D), the middle (rounded down) of a flat top; never the ends.

    The rule of ``scipy.signal.find_peaks`` without conditions, which e3nn calls.
    """
    starts = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])  # runs of equal values
    ends = np.r_[starts[1:], len(x)] - 1
    values = x[starts]
    inner = np.arange(1, len(starts) - 1)  # a run touching either end is no peak
    is_peak = (values[inner - 1] < values[inner]) & (values[inner + 1] < values[inner])
    peaks = inner[is_peak]
    return (starts[peaks] + ends[peaks]) // 2


def _peaks_2d(f: np.ndarray) -> list[tuple[int, int]]:
    """Grid points ``(i, j)`` that are peaks both along their row and along their column, sorted."""
    along_rows = {(i, int(j)) for i in range(f.shape[0]) for j in _peaks_1d(f[i, :])}
    along_columns = {(int(i), j) for j in range(f.shape[1]) for i in _peaks_1d(f[:, j])}
    return sorted(along_rows & along_columns)


def _check_parity(p, name: str) -> int:
    if p not in (1, -1) or isinstance(p, bool):
        raise ValueError(f"SphericalTensor: {name} must be +1 or -1, got {p!r}")
    return int(p)


def _check_tensor(x, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def _broadcast_samples(positions: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """Checked ``positions (..., N, 3)`` and ``values (..., N)``, broadcast to common leading dimensions."""
    _check_tensor(positions, "positions")
    _check_tensor(values, "values")
    positions, values = torch.broadcast_tensors(positions, values[..., None])
    return positions, values[..., 0]


class SphericalTensor(Irreps):
    r"""The irreps ``sum_{l <= lmax} 1 x (l, p_val p_arg^l)`` of a signal ``f(x) = sum_l A^l . Y^l(x)`` on the sphere.

    Under parity the signal becomes ``(P f)(x) = p_val f(p_arg x)``, i.e. ``A^l -> p_val p_arg^l A^l``. Signals are
    tensors ``(..., dim)`` with ``dim = (lmax+1)^2``; ``Y`` are the 'integral' spherical harmonics
    (docs/conventions.md, section 5). ``SphericalTensor(3, 1, -1)`` is ``1x0e+1x1o+1x2e+1x3o``. Equal to
    ``e3nn.io.SphericalTensor``, except that:

    * bad arguments raise ``ValueError``/``TypeError`` (e3nn: ``assert``);
    * grids and empty results use the dtype and device of the inputs (e3nn: torch's defaults, so e3nn fails on
      float64 signals under a float32 default);
    * the methods that evaluate harmonics work for ``p_val = -1`` too (e3nn raises ``ValueError`` there);
    * :meth:`find_peaks` lists the peaks of each grid in sorted grid order (e3nn: the order of a Python set)
      and needs no scipy.

    Args:
        lmax: the largest degree (non-negative int).
        p_val: parity ``+1`` or ``-1`` of the values.
        p_arg: parity ``+1`` or ``-1`` of the argument.
    """

    __slots__ = ()

    def __new__(cls, lmax: int, p_val: int, p_arg: int) -> "SphericalTensor":
        if isinstance(lmax, bool) or not isinstance(lmax, int) or lmax < 0:
            raise ValueError(f"SphericalTensor: lmax must be a non-negative int, got {lmax!r}")
        p_val, p_arg = _check_parity(p_val, "p_val"), _check_parity(p_arg, "p_arg")
        return super().__new__(cls, [(1, (l, p_val * p_arg**l)) for l in range(lmax + 1)])

    def __getnewargs__(self) -> tuple[int, int, int]:  # copy and pickle rebuild from (lmax, p_val, p_arg)
        p_val = self[0].ir.p
        p_arg = self[1].ir.p * p_val if len(self) > 1 else 1
        return (len(self) - 1, p_val, p_arg)

    # --- building signals ------------------------------------------------------------------------

    def with_peaks_at(self, vectors: Tensor, values: Optional[Tensor] = None) -> Tensor:
        r"""The signal ``(dim,)`` of least norm with ``f(r_i / |r_i|) = v_i`` (default ``v_i = |r_i|``).

        Args:
            vectors: ``r_i``, ``(N, 3)``; zero vectors (or zero values) are skipped.
            values: ``v_i``, ``(N,)`` (broadcast against ``vectors``), optional.

        Needs ``p_val = +1`` (a radius is even) and ``N`` small enough that the values can be met exactly
        (``ValueError`` otherwise). ``N = 0`` gives zeros.
        """
        _check_tensor(vectors, "vectors")
        if values is not None:
            _check_tensor(values, "values")
            vectors, values = torch.broadcast_tensors(vectors, values[..., None])
            values = values[..., 0]
        if vectors.numel() == 0:
            return vectors.new_zeros(vectors.shape[:-2] + (self.dim,))
        if self[0].ir.p != 1:
            raise ValueError(f"with_peaks_at sets the values from radii, which are even: p_val must be +1, got {self}")
        if vectors.ndim != 2 or vectors.shape[1] != 3:
            raise ValueError(f"with_peaks_at: vectors must have shape (N, 3), got {tuple(vectors.shape)}")
        if values is None:
            values = vectors.norm(dim=1)
        keep = values != 0
        vectors, values = vectors[keep], values[keep]
        coeff = _spherical_harmonics(self.ls, vectors, True, "integral", None)  # [N, dim]
        gram = coeff @ coeff.T
        # f = sum_b c_b Y(v_b): the least-norm signal through the points solves Y(v_a) . Y(v_b) c_b = values_a.
        solution = torch.linalg.lstsq(gram, values).solution.reshape(-1)
        residual = (values - gram @ solution).abs().max()
        if not residual < 1e-5 * values.abs().max():
            raise ValueError(f"with_peaks_at: {len(values)} peaks cannot all be met with lmax = {self.lmax} "
                             f"(residual {residual.item():.3g}); use fewer peaks or a larger lmax")  # fmt: skip
        return solution @ coeff

    def sum_of_diracs(self, positions: Tensor, values: Tensor) -> Tensor:
        r"""``f = sum_i v_i delta^L(r_i)``, with ``delta^L`` the degree-``lmax`` approximation of a Dirac delta.

        ``positions (..., N, 3)`` and ``values (..., N)`` broadcast; returns ``(..., dim)``:
        ``4 pi / (lmax+1)^2 sum_i v_i Y(r_i / |r_i|)``.
        """
        positions, values = _broadcast_samples(positions, values)
        if positions.numel() == 0:
            return values.new_zeros(values.shape[:-1] + (self.dim,))
        y = _spherical_harmonics(self.ls, positions, True, "integral", None)  # [..., N, dim]
        return 4 * math.pi / (self.lmax + 1) ** 2 * (y * values[..., None]).sum(-2)

    def from_samples_on_s2(self, positions: Tensor, values: Tensor, res: int = 100) -> Tensor:
        r"""The signal ``(..., dim)`` of the nearest-sample function: each grid point takes the value of its nearest sample.

        ``positions (..., N, 3)`` (directions; zero vectors stay zero) and ``values (..., N)`` broadcast; ``res`` is the
        grid resolution (:class:`~fastso3.o3.FromS2Grid`, 'integral' normalisation).
        """
        positions, values = _broadcast_samples(positions, values)
        if positions.numel() == 0:
            return values.new_zeros(values.shape[:-1] + (self.dim,))
        positions = torch.nn.functional.normalize(positions, dim=-1)
        size, n = positions.shape[:-2], positions.shape[-2]
        positions = positions.reshape(-1, n, 3)
        values = values.reshape(-1, n)
        s2 = FromS2Grid(res=res, lmax=self.lmax, normalization="integral", dtype=values.dtype, device=values.device)
        grid = s2.grid.reshape(1, -1, 3)
        nearest = torch.cdist(grid, positions).argmin(2)  # [batch, beta * alpha]
        on_grid = values.gather(1, nearest).reshape(*size, s2.res_beta, s2.res_alpha)
        return s2(on_grid)

    # --- reading signals -------------------------------------------------------------------------

    def norms(self, signal: Tensor) -> Tensor:
        """The norm of each degree: ``(..., dim) -> (..., lmax+1)``."""
        self._check_signal(signal, "norms")
        return torch.stack([signal[..., s].norm(dim=-1) for s in self.slices()], dim=-1)

    def signal_xyz(self, signal: Tensor, r: Tensor) -> Tensor:
        r"""``f(r / |r|)`` for every signal and every point: ``signal (*A, dim)``, ``r (*B, 3)`` -> ``(*A, *B)``."""
        self._check_signal(signal, "signal_xyz")
        _check_tensor(r, "r")
        sh = _spherical_harmonics(self.ls, r, True, "integral", None)
        output = torch.einsum("bi,ai->ab", sh.reshape(-1, self.dim), signal.reshape(-1, self.dim))
        return output.reshape(signal.shape[:-1] + r.shape[:-1])

    def signal_on_grid(self, signal: Tensor, res: int = 100, normalization: str = "integral"):
        r"""``(grid, values)``: the grid ``(res_beta, res_alpha, 3)`` of :class:`~fastso3.o3.ToS2Grid` (``lmax``, ``res``)
        and the signal on it, ``(..., res_beta, res_alpha)`` (a namedtuple, as e3nn)."""
        self._check_signal(signal, "signal_on_grid")
        s2 = ToS2Grid(lmax=self.lmax, res=res, normalization=normalization, dtype=signal.dtype, device=signal.device)
        return SignalOnGrid(s2.grid, s2(signal))

    def plot(self, signal: Tensor, center: Optional[Tensor] = None, res: int = 100, radius: bool = True,
             relu: bool = False, normalization: str = "integral") -> tuple[Tensor, Tensor]:  # fmt: skip
        r"""A closed surface for plotting one signal ``(dim,)``: points ``(res_beta, res_alpha + 1, 3)`` and colours
        ``(res_beta, res_alpha + 1)``.

        The first and last beta rows are moved onto the poles (with their mean value) and the first alpha column is
        repeated at the end, so the surface closes. With ``radius`` the points are scaled by ``|f|``; with ``relu``
        the values are ``max(f, 0)``; ``center (3,)`` shifts the surface.
        """
        self._check_signal(signal, "plot")
        if signal.ndim != 1:
            raise ValueError(f"plot takes one signal of shape ({self.dim},), got {tuple(signal.shape)}; use plotly_surface for many")
        r, f = self.signal_on_grid(signal, res, normalization)
        f = f.relu() if relu else f
        r[0] = r.new_tensor([0.0, 1.0, 0.0])
        r[-1] = r.new_tensor([0.0, -1.0, 0.0])
        f[0] = f[0].mean()
        f[-1] = f[-1].mean()
        r = torch.cat([r, r[:, :1]], dim=1)
        f = torch.cat([f, f[:, :1]], dim=1)
        if radius:
            r = r * f.abs().unsqueeze(-1)
        if center is not None:
            r = r + center
        return r, f

    def plotly_surface(self, signals: Tensor, centers: Optional[Tensor] = None, res: int = 100, radius: bool = True,
                       relu: bool = False, normalization: str = "integral") -> list[dict]:  # fmt: skip
        r"""One ``go.Surface`` argument dict per signal (keys ``x``, ``y``, ``z``, ``surfacecolor``: numpy arrays
        ``(res_beta, res_alpha + 1)``) from :meth:`plot`; ``signals (..., dim)``, ``centers (..., 3)``. Needs no plotly."""
        self._check_signal(signals, "plotly_surface")
        signals = signals.reshape(-1, self.dim)
        centers = [None] * len(signals) if centers is None else centers.reshape(-1, 3)
        traces = []
        for signal, center in zip(signals, centers):
            r, f = self.plot(signal, center, res, radius, relu, normalization)
            r, f = r.detach().cpu().numpy(), f.detach().cpu().numpy()
            traces.append({"x": r[:, :, 0], "y": r[:, :, 1], "z": r[:, :, 2], "surfacecolor": f})
        return traces

    def find_peaks(self, signal: Tensor, res: int = 100) -> tuple[Tensor, Tensor]:
        r"""The local maxima of one signal ``(dim,)``: positions ``(P, 3)`` on the unit sphere and values ``(P,)``.

        As e3nn: the peaks of the signal on a ``res`` grid and on the grid rotated by ``R(pi/2, pi/2, pi/2)`` (which
        covers the poles of the first), merged, keeping the rotated grid's peak where two are closer than
        ``2 pi / res``. Each grid's peaks are in sorted grid order.
        """
        self._check_signal(signal, "find_peaks")
        x1, f1 = self.signal_on_grid(signal, res)
        R = angles_to_matrix(*signal.new_tensor([math.pi / 2] * 3))
        rx2, f2 = self.signal_on_grid(self.D_from_matrix(R) @ signal, res)
        x2 = torch.einsum("ij,baj->bai", R.T, rx2)

        def peaks(x: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
            ij = _peaks_2d(f.detach().cpu().numpy())
            i = torch.tensor([p[0] for p in ij], dtype=torch.long, device=f.device)
            j = torch.tensor([p[1] for p in ij], dtype=torch.long, device=f.device)
            return x[i, j], f[i, j]

        x1p, f1p = peaks(x1, f1)
        x2p, f2p = peaks(x2, f2)
        unique_to_first = (torch.cdist(x1p, x2p) < 2 * math.pi / res).sum(1) == 0
        return torch.cat([x1p[unique_to_first], x2p]), torch.cat([f1p[unique_to_first], f2p])

    def _check_signal(self, signal, method: str) -> None:
        _check_tensor(signal, "signal")
        if signal.ndim == 0 or signal.shape[-1] != self.dim:
            raise ValueError(f"{method}: the signal of {self} must have shape (..., {self.dim}), got {tuple(signal.shape)}")
