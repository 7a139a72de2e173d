r"""Signals on the sphere: spherical tensors <-> values on a ``(beta, alpha)`` grid.

Equal to e3nn 0.6.0's ``e3nn/o3/_s2grid.py`` (repository e3nn/e3nn): same grid, quadrature, normalisations, buffer
names and shapes (e3nn state dicts load). A spherical tensor ``F`` (``(lmax+1)^2`` numbers, degrees ``0..lmax``,
``m = -l..l``) is the signal ``f(x) = sum_l F^l . Y^l(x)``; the grid is

    x_ij = (sin b_i sin a_j, cos b_i, sin b_i cos a_j),   b_i = pi (i + 1/2) / res_beta,   a_j = 2 pi j / res_alpha

(y is the polar axis, docs/conventions.md section 2). Since ``Y^l_m(a, b) = S_m(a) P^l_{|m|}(b)``, both transforms
are a product over ``beta`` (``shb``) then a Fourier series in ``alpha`` (``sha``; e3nn uses a real FFT when
``res_alpha`` is odd and at least ``2 lmax + 1``, see ``_FOURIER_SUM``). ``FromS2Grid`` integrates with the Driscoll-Healy /
Kostelec-Rockmore weights, exact for band-limited signals when ``res_beta >= 2 (lmax + 1)``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from ._angular_spherical_harmonics import Legendre, spherical_harmonics_alpha
from ._rotation import angles_to_xyz

__all__ = ["s2_grid", "spherical_harmonics_s2_grid", "rfft", "irfft", "ToS2Grid", "FromS2Grid"]

Resolution = Union[None, int, Sequence[Optional[int]]]
NormalizationLike = Union[str, Tensor]
_GRID_NORMALIZATIONS = ("norm", "component", "integral")


def _dtype_device(dtype, device) -> tuple[torch.dtype, Optional[torch.device]]:
    return (torch.get_default_dtype() if dtype is None else dtype), device


def _quadrature_weights(b: int, dtype=None, device=None) -> Tensor:
    r"""Quadrature weights ``(2b,)`` in ``beta`` of the Kostelec-Rockmore grid of ``2b`` points.

    ``w_j = (2/b) sin(pi (2j+1) / 4b) sum_{k<b} sin((2j+1)(2k+1) pi / 4b) / (2k+1) / (2 (2b)^2)``, computed in
    float64 (e3nn: the default dtype) and returned in ``dtype``.
    """
    dtype, device = _dtype_device(dtype, device)
    odd_j = 2 * torch.arange(2 * b, dtype=torch.float64) + 1
    odd_k = 2 * torch.arange(b, dtype=torch.float64) + 1
    sums = (torch.sin(odd_j[:, None] * odd_k * (math.pi / (4 * b))) / odd_k).sum(1)
    w = (2.0 / b) * torch.sin(math.pi * odd_j / (4 * b)) * sums / (2.0 * (2 * b) ** 2)
    return w.to(dtype=dtype, device=device)


def s2_grid(res_beta: int, res_alpha: int, dtype=None, device=None) -> tuple[Tensor, Tensor]:
    r"""The grid angles: ``betas (res_beta,) = pi (i + 1/2) / res_beta`` and ``alphas (res_alpha,) = 2 pi j / res_alpha``.

    In ``dtype`` (default: torch's default dtype) on ``device``. Equal to ``e3nn.o3.s2_grid``.
    """
    dtype, device = _dtype_device(dtype, device)
    for name, res in (("res_beta", res_beta), ("res_alpha", res_alpha)):
        if isinstance(res, bool) or not isinstance(res, int) or res < 1:
            raise ValueError(f"s2_grid: {name} must be a positive int, got {res!r}")
    betas = (torch.arange(res_beta, dtype=dtype, device=device) + 0.5) / res_beta * math.pi
    alphas = torch.arange(res_alpha, dtype=dtype, device=device) / res_alpha * 2 * math.pi
    return betas, alphas


def spherical_harmonics_s2_grid(lmax: int, res_beta: int, res_alpha: int, dtype=None, device=None):
    r"""The two factors of the spherical harmonics on the grid: ``(betas, alphas, shb, sha)``.

    ``betas (res_beta,)``, ``alphas (res_alpha,)`` as :func:`s2_grid`; ``shb (res_beta, (lmax+1)^2)`` the Legendre
    factors ``P^l_{|m|}(cos b, |sin b|)`` ('integral' normalisation) and ``sha (res_alpha, 2 lmax + 1)`` the Fourier
    factors ``S_m(a)``, so that ``Y^l_m(a_j, b_i) = shb[i, l^2 + l + m] * sha[j, lmax + m]``. Equal to e3nn.
    """
    betas, alphas = s2_grid(res_beta, res_alpha, dtype=dtype, device=device)
    shb = Legendre(list(range(lmax + 1)))(betas.cos(), betas.sin().abs())
    sha = spherical_harmonics_alpha(lmax, alphas)
    return betas, alphas, shb, sha


def _complete_lmax_res(lmax: Optional[int], res_beta: Optional[int], res_alpha: Optional[int]) -> tuple[int, int, int]:
    """Fill in the missing ones of ``lmax``, ``res_beta``, ``res_alpha`` as e3nn does (preferring an FFT-able alpha)."""
    for name, value in (("lmax", lmax), ("res_beta", res_beta), ("res_alpha", res_alpha)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"{name} must be a non-negative int or None, got {value!r}")
    if res_beta is None:
        if lmax is not None:
            res_beta = 2 * (lmax + 1)  # the fewest betas that still invert
        elif res_alpha is not None:
            res_beta = 2 * ((res_alpha + 1) // 2)
        else:
            raise ValueError("give lmax or a resolution (res): all of lmax, res_beta and res_alpha are None")
    if res_alpha is None:
        res_alpha = max(2 * lmax + 1, res_beta - 1) if lmax is not None else res_beta - 1
    if lmax is None:
        lmax = min(res_beta // 2 - 1, (res_alpha - 1) // 2)  # the largest degree that goes to the grid and back
    if res_beta % 2 != 0:
        raise ValueError(f"res_beta must be even (the quadrature pairs the betas), got {res_beta}")
    if lmax + 1 > res_beta // 2:
        raise ValueError(f"res_beta = {res_beta} is too small for lmax = {lmax}: it needs res_beta >= 2 (lmax + 1) = {2 * (lmax + 1)}")
    if res_alpha < 1:
        raise ValueError(f"res_alpha must be positive, got {res_alpha}")
    return lmax, res_beta, res_alpha


def _resolution(lmax: Optional[int], res: Resolution) -> tuple[int, int, int]:
    if res is None or isinstance(res, int):
        return _complete_lmax_res(lmax, res, None)
    res = tuple(res)
    if len(res) != 2:
        raise ValueError(f"res must be an int or a pair (res_beta, res_alpha), got {res!r}")
    return _complete_lmax_res(lmax, *res)


def _expand_matrix(ls: Sequence[int], like: Optional[Tensor] = None, dtype=None, device=None) -> Tensor:
    """``(len(ls), 2 lmax + 1, sum(2l+1))`` 0/1 matrix from the flat ``(l, m)`` vector to the ``(l, m)`` table.

    Entry ``[j, lmax + m, offset_j + l + m] = 1`` for degree ``l = ls[j]``. Equal to e3nn's ``_expand_matrix``.
    """
    if like is not None:
        dtype = like.dtype if dtype is None else dtype
        device = like.device if device is None else device
    dtype, device = _dtype_device(dtype, device)
    ls = list(ls)
    lmax = max(ls)
    m = torch.zeros(len(ls), 2 * lmax + 1, sum(2 * l + 1 for l in ls), dtype=dtype, device=device)
    offset = 0
    for j, l in enumerate(ls):
        m[j, lmax - l : lmax + l + 1, offset : offset + 2 * l + 1] = torch.eye(2 * l + 1, dtype=dtype, device=device)
        offset += 2 * l + 1
    return m


def _check_tensor(x, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def rfft(x: Tensor, l: int) -> Tensor:
    r"""Real Fourier coefficients ``(..., 2l+1)`` of samples ``x (..., res)`` at ``alpha_j = 2 pi j / res``.

    Output ``m = -l..l`` is ``sum_j x_j S_m(alpha_j)`` (``S`` of :func:`spherical_harmonics_alpha`): the same as
    ``x @ sha`` but by FFT. Needs ``l <= res // 2``. Equal to ``e3nn.o3.rfft``.
    """
    _check_tensor(x, "x")
    if x.ndim == 0:
        raise ValueError("rfft: x must have shape (..., res)")
    *size, res = x.shape
    if isinstance(l, bool) or not isinstance(l, int) or not 0 <= l <= res // 2:
        raise ValueError(f"rfft: l must be an int in [0, res // 2] = [0, {res // 2}] for res = {res} samples, got {l!r}")
    z = torch.fft.rfft(x.reshape(-1, res), dim=1)
    z = torch.cat([z[:, 1 : l + 1].imag.flip(1).mul(-math.sqrt(2)), z[:, :1].real, z[:, 1 : l + 1].real.mul(math.sqrt(2))], dim=1)
    return z.reshape(*size, 2 * l + 1)


def irfft(x: Tensor, res: int) -> Tensor:
    r"""Samples ``(..., res)`` at ``alpha_j = 2 pi j / res`` of the real Fourier series ``x (..., 2l+1)``.

    Output ``j`` is ``sum_m x_m S_m(alpha_j)``: the same as ``sha @ x`` but by FFT. ``res`` must be odd and at
    least ``2l+1``. Equal to ``e3nn.o3.irfft``.
    """
    _check_tensor(x, "x")
    if x.ndim == 0 or x.shape[-1] % 2 != 1:
        raise ValueError(f"irfft: x must have shape (..., 2l+1) (an odd last dimension), got {tuple(x.shape)}")
    *size, sm = x.shape
    if isinstance(res, bool) or not isinstance(res, int) or res % 2 != 1 or res < sm:
        raise ValueError(f"irfft: res must be an odd int >= {sm} (the size of x's last dimension), got {res!r}")
    pad = (res - sm) // 2
    x = torch.nn.functional.pad(x.reshape(-1, sm), (pad, pad))
    l = res // 2
    z = torch.complex(
        torch.cat([x[:, l : l + 1], x[:, l + 1 :].div(math.sqrt(2))], dim=1),
        torch.cat([torch.zeros_like(x[:, :1]), x[:, :l].flip(-1).div(-math.sqrt(2))], dim=1),
    )
    return (torch.fft.irfft(z, n=res, dim=1) * res).reshape(*size, res)


def _degree_scales(normalization: NormalizationLike, lmax: int, like: Tensor, to_grid: bool, lmax_in: int) -> Tensor:
    """Per-degree factor ``(lmax+1,)`` applied to ``shb`` (e3nn's ``n``); ``FromS2Grid``'s is the inverse of ``ToS2Grid``'s."""
    if isinstance(normalization, Tensor):
        if normalization.shape != (lmax + 1,):
            raise ValueError(f"a tensor normalization must have shape (lmax + 1,) = ({lmax + 1},), got {tuple(normalization.shape)}")
        return normalization.to(like)
    if normalization not in _GRID_NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_GRID_NORMALIZATIONS} or a tensor of shape (lmax + 1,), got {normalization!r}")
    sqrt_2l1 = like.new_tensor([math.sqrt(2 * l + 1) for l in range(lmax + 1)])
    if normalization == "integral":
        return like.new_ones(lmax + 1) * (1.0 if to_grid else 4 * math.pi)
    # 'component': every component of F with variance 1 gives each degree the same variance on the sphere;
    # 'norm': the same for components of variance 1 / (2l + 1).
    if to_grid:
        per_degree = 1 / sqrt_2l1 if normalization == "component" else like.new_ones(lmax + 1)
        return math.sqrt(4 * math.pi) * per_degree / math.sqrt(lmax + 1)
    per_degree = sqrt_2l1 if normalization == "component" else like.new_ones(lmax + 1)
    return math.sqrt(4 * math.pi) * per_degree * math.sqrt(lmax_in + 1)


def _per_order(shb: Tensor, scales: Tensor, lmax: int) -> Tensor:
    """``(2 lmax + 1, res_beta, (lmax+1)^2)``: ``out[lmax + m, b, l^2 + l + m] = shb[b, l^2 + l + m] * scales[l]`` (e3nn's
    ``einsum('lmj,bj,lmi,l->mbi')`` with the expand matrix, which has one nonzero term per entry)."""
    expand = _expand_matrix(range(lmax + 1), like=shb)  # [l, m, i]
    return torch.einsum("lmi,bi,l->mbi", expand, shb, scales)


# _FOURIER_SUM: e3nn switches to rfft / irfft when res_alpha is odd and >= 2 lmax + 1; both modules here always
# contract with ``sha`` instead. The sums are the same (to 1e-15 relative in float64), the matrix product was 1.1-6.6x
# faster than the FFT on CPU at lmax = 6..40 (batch 64), and it compiles without complex operators, which inductor
# does not generate code for.


def _check_dtype(module: torch.nn.Module, x: Tensor) -> None:
    if x.dtype != module.shb.dtype or x.device != module.shb.device:
        raise TypeError(
            f"{type(module).__name__}: x is {x.dtype} on {x.device} but the module is {module.shb.dtype} on "
            f"{module.shb.device}; convert one of them (e.g. module.to({x.dtype}))"
        )


class _S2GridModule(torch.nn.Module):
    """What :class:`ToS2Grid` and :class:`FromS2Grid` share: the grid's sizes, e3nn's buffers (in e3nn's order),
    ``__repr__`` and :attr:`grid`."""

    def _set_grid(self, lmax: int, res_beta: int, res_alpha: int, alphas: Tensor, betas: Tensor, sha: Tensor,
                  shb: Tensor) -> None:  # fmt: skip
        self.lmax, self.res_beta, self.res_alpha = lmax, res_beta, res_alpha
        self.register_buffer("alphas", alphas)
        self.register_buffer("betas", betas)
        self.register_buffer("sha", sha)
        self.register_buffer("shb", shb)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(lmax={self.lmax} res={self.res_beta}x{self.res_alpha} (beta x alpha))"

    @property
    def grid(self) -> Tensor:
        """The grid points ``(res_beta, res_alpha, 3)`` on the unit sphere."""
        beta, alpha = torch.meshgrid(self.betas, self.alphas, indexing="ij")
        return angles_to_xyz(alpha, beta)


class ToS2Grid(_S2GridModule):
    r"""Spherical tensor ``(..., (lmax+1)^2)`` -> signal on the grid ``(..., res_beta, res_alpha)``.

    Output ``[..., i, j] = sum_l n_l F^l . Y^l(x_ij)`` with ``Y`` in 'integral' normalisation and ``n_l`` set by
    ``normalization``: ``'integral'`` 1; ``'component'`` ``sqrt(4 pi / ((2l+1)(lmax+1)))`` (default; unit-variance
    components give a unit-variance signal); ``'norm'`` ``sqrt(4 pi / (lmax+1))``; or a tensor ``(lmax+1,)``.
    Equal to ``e3nn.o3.ToS2Grid``, buffers ``alphas (res_alpha,)``, ``betas (res_beta,)``, ``sha (res_alpha,
    2lmax+1)`` and ``shb (2lmax+1, res_beta, (lmax+1)^2)`` included, built once here.

    Args:
        lmax: the largest degree; None: the largest the resolution inverts.
        res: ``res_beta`` or ``(res_beta, res_alpha)`` (either may be None); by default ``res_beta = 2 (lmax + 1)``
            and ``res_alpha = max(2 lmax + 1, res_beta - 1)``. ``res_beta`` must be even.
        normalization: see above.
        dtype, device: of the buffers (default: torch's default dtype); inputs must match.
    """

    def __init__(self, lmax: Optional[int] = None, res: Resolution = None, normalization: NormalizationLike = "component",
                 dtype=None, device=None) -> None:  # fmt: skip
        super().__init__()
        lmax, res_beta, res_alpha = _resolution(lmax, res)
        betas, alphas, shb, sha = spherical_harmonics_s2_grid(lmax, res_beta, res_alpha, dtype=dtype, device=device)
        scales = _degree_scales(normalization, lmax, betas, True, lmax)
        self._set_grid(lmax, res_beta, res_alpha, alphas, betas, sha, _per_order(shb, scales, lmax))

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(..., (lmax+1)^2)`` -> ``(..., res_beta, res_alpha)``, in the module's dtype."""
        _check_tensor(x, "x")
        if x.ndim == 0 or x.shape[-1] != self.shb.shape[-1]:
            raise ValueError(f"{self!r} expects x of shape (..., (lmax + 1)^2) = (..., {self.shb.shape[-1]}), got {tuple(x.shape)}")
        _check_dtype(self, x)
        size = x.shape[:-1]
        x = torch.einsum("mbi,zi->zbm", self.shb, x.reshape(-1, x.shape[-1]))  # [batch, beta, m]
        x = torch.einsum("am,zbm->zba", self.sha, x)  # the Fourier sum: see _FOURIER_SUM
        return x.reshape(*size, *x.shape[1:])


class FromS2Grid(_S2GridModule):
    r"""Signal on the grid ``(..., res_beta, res_alpha)`` -> spherical tensor ``(..., (lmax+1)^2)``.

    The quadrature of ``f Y^l`` over the sphere, scaled so that it inverts :class:`ToS2Grid` of the same
    ``normalization`` (exactly, for signals of degree at most ``lmax``): the factors are ``4 pi`` ('integral'),
    ``sqrt(4 pi (2l+1) (lmax_in+1))`` ('component', default), ``sqrt(4 pi (lmax_in+1))`` ('norm') or a tensor
    ``(lmax+1,)``. Equal to ``e3nn.o3.FromS2Grid``, with the same buffers ``alphas``, ``betas``, ``sha``, ``shb``
    (the quadrature weights folded into ``shb``), built once here.

    Args:
        res: ``res_beta`` or ``(res_beta, res_alpha)``; see :class:`ToS2Grid`.
        lmax: the largest output degree; None: the largest the resolution allows.
        normalization: see above.
        lmax_in: the ``lmax`` of the ToS2Grid this inverts (default ``lmax``); only 'component' and 'norm' use it.
        dtype, device: of the buffers; inputs must match.
    """

    def __init__(self, res: Resolution = None, lmax: Optional[int] = None, normalization: NormalizationLike = "component",
                 lmax_in: Optional[int] = None, dtype=None, device=None) -> None:  # fmt: skip
        super().__init__()
        lmax, res_beta, res_alpha = _resolution(lmax, res)
        if lmax_in is None:
            lmax_in = lmax
        betas, alphas, shb, sha = spherical_harmonics_s2_grid(lmax, res_beta, res_alpha, dtype=dtype, device=device)
        scales = _degree_scales(normalization, lmax, betas, False, lmax_in)
        weights = _quadrature_weights(res_beta // 2, dtype=betas.dtype, device=betas.device) * res_beta**2 / res_alpha
        self._set_grid(lmax, res_beta, res_alpha, alphas, betas, sha, _per_order(shb * weights[:, None], scales, lmax))

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(..., res_beta, res_alpha)`` -> ``(..., (lmax+1)^2)``, in the module's dtype."""
        _check_tensor(x, "x")
        if x.ndim < 2 or tuple(x.shape[-2:]) != (self.res_beta, self.res_alpha):
            raise ValueError(f"{self!r} expects x of shape (..., res_beta, res_alpha) = (..., {self.res_beta}, {self.res_alpha}), "
                             f"got {tuple(x.shape)}")  # fmt: skip
        _check_dtype(self, x)
        size = x.shape[:-2]
        x = x.reshape(-1, self.res_beta, self.res_alpha)
        x = torch.einsum("am,zba->zbm", self.sha, x)  # the Fourier sum: see _FOURIER_SUM
        x = torch.einsum("mbi,zbm->zi", self.shb, x)
        return x.reshape(*size, x.shape[1])
