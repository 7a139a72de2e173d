"""Spherical harmonics with e3nn 0.6.0's values, any degree, fused CPU kernel, all derivative orders."""

from __future__ import annotations

from typing import Sequence, Union

import torch

from ..core.irreps import Irrep, Irreps
from ..core.limits import SH_MAX_DEGREE, check_work
from ..core.sh import NORMALIZATIONS
from ..kernels import registry
from ..kernels.ops import spherical_harmonics_op

__all__ = ["spherical_harmonics", "SphericalHarmonics"]

LsLike = Union[int, Sequence[int], str, Irreps]


def _parse_ls(ls: LsLike) -> tuple[list[int], Irreps, Irrep]:
    """The requested degrees, the output irreps and the input irrep (1o, or 1e for pseudovectors)."""
    if isinstance(ls, (str, Irreps)):
        irreps = Irreps(ls)
        degrees = [ir.l for mul, ir in irreps for _ in range(mul)]
        if not degrees:
            raise ValueError("spherical_harmonics: the requested irreps are empty")
        odd_parities = {ir.p for _, ir in irreps if ir.l % 2 == 1}
        even_parities = {ir.p for _, ir in irreps if ir.l % 2 == 0}
        if even_parities - {1}:
            raise ValueError(f"spherical harmonics of even degree are even (e), got {irreps}")
        if len(odd_parities) > 1:
            raise ValueError(f"spherical harmonics of odd degree must all have the same parity, got {irreps}")
        irrep_in = Irrep("1e") if odd_parities == {1} else Irrep("1o")
        return degrees, irreps, irrep_in
    degrees = _degrees(ls)
    return degrees, Irreps([(1, (l, (-1) ** l)) for l in degrees]), Irrep("1o")


def _degrees(ls: LsLike) -> list[int]:
    """The degrees of an int or a list of ints (the fast path of the functional API)."""
    if isinstance(ls, bool):
        raise TypeError("ls must be an int, a list of ints, a str or an Irreps, not a bool")
    if isinstance(ls, int):
        ls = [ls]
    if isinstance(ls, (str, Irreps)):
        return _parse_ls(ls)[0]
    degrees = list(ls)
    if not degrees or any(isinstance(l, bool) or not isinstance(l, int) or l < 0 for l in degrees):
        raise ValueError(f"spherical_harmonics: ls must be a non-empty list of non-negative ints, got {ls!r}")
    return degrees


def _check_lmax(lmax: int, allow_large: bool) -> None:
    check_work("spherical_harmonics", lmax, SH_MAX_DEGREE,
               f"degree {lmax} ({(lmax + 1) ** 2} components; the recursion tables take minutes at l ~ 1000)",
               "allow_large=True", allow_large)  # fmt: skip


def _select(full: torch.Tensor, degrees: list[int]) -> torch.Tensor:
    if degrees == list(range(len(degrees))):
        return full
    return torch.cat([full[..., l * l : (l + 1) * (l + 1)] for l in degrees], dim=-1)


def _check_input(x: torch.Tensor, normalization: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 0 or x.shape[-1] != 3:
        raise ValueError(f"x must have shape (..., 3), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def spherical_harmonics(
    ls: LsLike,
    x: torch.Tensor,
    normalize: bool,
    normalization: str = "integral",
    *,
    backend: str | None = None,
    allow_large: bool = False,
) -> torch.Tensor:
    """Real spherical harmonics of ``x``, equal to ``e3nn.o3.spherical_harmonics`` (0.6.0).

    Args:
        ls: degrees: an int, a list of ints, or irreps such as ``"0e + 1o + 2e"`` (odd degrees
            ``o`` for vectors, ``e`` for pseudovectors). Any degree works (tested to l = 20).
        x: ``(..., 3)``, float32 or float64 (any float dtype with ``backend='reference'``);
            the components are (x, y, z) and y is the polar axis.
        normalize: divide ``x`` by its norm first. A zero vector then gives ``Y^0`` and zeros
            for ``l >= 1`` (its gradient is 0, never NaN).
        normalization: ``'integral'`` (default, e3nn torch), ``'component'`` (``|Y^l|^2 = 2l+1``)
            or ``'norm'`` (``|Y^l| = 1``) on the unit sphere.
        backend: None (default for the device), ``'cpu'`` (compiled kernel) or ``'reference'``.
        allow_large: degrees above ``fastso3.core.limits.SH_MAX_DEGREE`` (128) raise ``TooLarge``
            (their tables take minutes to build) unless this is True.

    Returns:
        ``(..., sum(2l+1))`` in ``x``'s dtype, the degrees in the requested order, each ``m = -l..l``.
        First and second derivatives work (``torch.compile(fullgraph=True)`` too).
    """
    degrees = _degrees(ls)
    _check_lmax(max(degrees), allow_large)
    _check_input(x, normalization)
    return _spherical_harmonics(degrees, x, normalize, normalization, backend)


def _spherical_harmonics(
    degrees: list[int], x: torch.Tensor, normalize: bool, normalization: str, backend: str | None
) -> torch.Tensor:
    backend = registry.resolve_backend("spherical_harmonics", backend, x.device, x.dtype)
    full = spherical_harmonics_op(x, max(degrees), bool(normalize), normalization, backend)
    return _select(full, degrees)


class SphericalHarmonics(torch.nn.Module):
    """Module form of :func:`spherical_harmonics`: ``(..., 3) -> (..., irreps_out.dim)``.

    Args:
        irreps_out: the degrees (int, list of ints, str or Irreps), as e3nn's ``SphericalHarmonics``.
        normalize, normalization, backend: as in :func:`spherical_harmonics`.
        irreps_in: ``"1o"`` (vectors, default) or ``"1e"`` (pseudovectors); must agree with ``irreps_out``.
    """

    def __init__(
        self,
        irreps_out: LsLike,
        normalize: bool,
        normalization: str = "integral",
        irreps_in: str | Irreps | None = None,
        *,
        backend: str | None = None,
        allow_large: bool = False,
    ) -> None:
        super().__init__()
        degrees, irreps, irrep_in = _parse_ls(irreps_out)
        _check_lmax(max(degrees), allow_large)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if irreps_in is not None and Irreps(irreps_in) != Irreps([(1, irrep_in)]):
            raise ValueError(f"irreps_in {irreps_in} is inconsistent with irreps_out {irreps} (expected {irrep_in})")
        if backend is not None and backend not in registry.BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {registry.BACKENDS} or None")
        self.irreps_in = Irreps([(1, irrep_in)])
        self.irreps_out = irreps
        self.normalize = bool(normalize)
        self.normalization = normalization
        self.backend = backend
        self._degrees = degrees

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(..., 3)`` -> ``(..., irreps_out.dim)``."""
        _check_input(x, self.normalization)
        return _spherical_harmonics(self._degrees, x, self.normalize, self.normalization, self.backend)

    def extra_repr(self) -> str:
        return f"{self.irreps_out}, normalize={self.normalize}, normalization={self.normalization!r}"
