"""Building blocks of interatomic potentials: radial bases, smooth cutoff envelopes, species and energy scales.

Conventions follow MACE (``mace/modules/radial.py``) and NequIP (``nequip/nn/radial_basis.py``,
``cutoffs.py``), whose formulas are restated here:

- Bessel basis: ``sqrt(2 / r_max) * sin(n pi r / r_max) / r`` for ``n = 1..num_basis`` (the frequencies
  ``n pi / r_max`` optionally trainable, as both do);
- Gaussian basis: ``exp(-(r - mu_k)^2 / (2 sigma^2))`` on ``num_basis`` centres evenly spaced in
  ``[0, r_max]`` with ``sigma`` their spacing (e3nn's/SchNet's smearing);
- polynomial envelope of order p (DimeNet; MACE and NequIP default p = 6), with ``x = r / r_max``:
  ``1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)`` for ``x < 1`` and 0 beyond: value, first and
  second derivative vanish at the cutoff;
- cosine envelope: ``(cos(pi x) + 1) / 2`` for ``x < 1``, 0 beyond.

Shapes: distances ``(E,)`` or ``(E, 1)`` in length units (Angstrom in the field) -> ``(E, num_basis)``,
in the distances' dtype; every block is differentiable to any order and ``torch.compile``-friendly (no
data-dependent control flow).
"""

from __future__ import annotations

import math

import torch

from ..kernels._checks import tracing

__all__ = [
    "AtomicEnergies",
    "BesselBasis",
    "CosineCutoff",
    "GaussianBasis",
    "PolynomialCutoff",
    "RadialEmbedding",
    "ScaleShift",
    "SpeciesIndex",
]


def _as_column(r: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(r, torch.Tensor) or not r.is_floating_point():
        raise TypeError(f"{name}: distances must be a floating-point tensor, got {getattr(r, 'dtype', type(r).__name__)}")
    if r.dim() == 2 and r.shape[1] == 1:
        return r
    if r.dim() != 1:
        raise ValueError(f"{name}: distances must have shape (E,) or (E, 1), got {tuple(r.shape)}")
    return r.unsqueeze(-1)


def _check_positive(name: str, **values: float) -> None:
    for key, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name}: {key} must be a positive finite number, got {v!r}")


class BesselBasis(torch.nn.Module):
    """``(E,)`` distances -> ``(E, num_basis)``: ``sqrt(2 / r_max) sin(n pi r / r_max) / r`` (MACE, NequIP).

    The limit ``r -> 0`` is finite (``sqrt(2 / r_max) n pi / r_max``), evaluated as such: no NaN at r = 0.
    """

    def __init__(self, r_max: float, num_basis: int = 8, trainable: bool = False) -> None:
        super().__init__()
        _check_positive("BesselBasis", r_max=r_max, num_basis=num_basis)
        self.r_max = float(r_max)
        self.num_basis = int(num_basis)
        self.trainable = bool(trainable)
        if trainable:  # in the default dtype, as any parameter; fixed frequencies are exact in every dtype
            self.bessel_weights = torch.nn.Parameter(self._frequencies(torch.get_default_dtype(), None))

    def _frequencies(self, dtype: torch.dtype, device) -> torch.Tensor:
        return torch.arange(1, self.num_basis + 1, dtype=dtype, device=device) * (math.pi / self.r_max)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        x = _as_column(r, "BesselBasis")
        w = self.bessel_weights.to(x.dtype) if self.trainable else self._frequencies(x.dtype, x.device)
        small = x.abs() < 1e-6 * self.r_max
        safe = torch.where(small, torch.ones_like(x), x)
        # sin(w r) / r = w (1 - (w r)^2 / 6 + ...) near 0: the remainder (w r)^4 / 120 is below float64 resolution
        values = torch.where(small, w * (1 - (w * x) ** 2 / 6), torch.sin(w * safe) / safe)
        return math.sqrt(2.0 / self.r_max) * values

    def extra_repr(self) -> str:
        return f"r_max={self.r_max}, num_basis={self.num_basis}"


class GaussianBasis(torch.nn.Module):
    """``(E,)`` distances -> ``(E, num_basis)`` Gaussians on evenly spaced centres in ``[0, r_max]``."""

    def __init__(self, r_max: float, num_basis: int = 8) -> None:
        super().__init__()
        _check_positive("GaussianBasis", r_max=r_max, num_basis=num_basis)
        if num_basis < 2:
            raise ValueError("GaussianBasis: num_basis must be at least 2 (the width is the centres' spacing)")
        self.r_max = float(r_max)
        self.num_basis = int(num_basis)
        self.width = self.r_max / (self.num_basis - 1)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        x = _as_column(r, "GaussianBasis")
        centres = torch.arange(self.num_basis, dtype=x.dtype, device=x.device) * self.width
        return torch.exp(-0.5 * ((x - centres) / self.width) ** 2)


class PolynomialCutoff(torch.nn.Module):
    """``(E,)`` distances -> ``(E, 1)``: the order-``p`` polynomial envelope, smooth to second order at r_max."""

    def __init__(self, r_max: float, p: int = 6) -> None:
        super().__init__()
        _check_positive("PolynomialCutoff", r_max=r_max, p=p)
        self.r_max = float(r_max)
        self.p = int(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        x = _as_column(r, "PolynomialCutoff") / self.r_max
        p = self.p
        env = 1.0 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
        return env * (x < 1.0)

    def extra_repr(self) -> str:
        return f"r_max={self.r_max}, p={self.p}"


class CosineCutoff(torch.nn.Module):
    """``(E,)`` distances -> ``(E, 1)``: ``(cos(pi r / r_max) + 1) / 2`` inside the cutoff, 0 beyond."""

    def __init__(self, r_max: float) -> None:
        super().__init__()
        _check_positive("CosineCutoff", r_max=r_max)
        self.r_max = float(r_max)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        x = _as_column(r, "CosineCutoff") / self.r_max
        return 0.5 * (torch.cos(math.pi * x) + 1.0) * (x < 1.0)


class RadialEmbedding(torch.nn.Module):
    """``(E,)`` distances -> ``(E, num_basis)``: a radial basis times a cutoff envelope (MACE's and NequIP's
    edge embedding). ``basis``: ``"bessel"`` or ``"gaussian"``; ``cutoff``: ``"polynomial"`` or ``"cosine"``."""

    def __init__(self, r_max: float, num_basis: int = 8, basis: str = "bessel", cutoff: str = "polynomial",
                 polynomial_p: int = 6, trainable: bool = False) -> None:  # fmt: skip
        super().__init__()
        if basis == "bessel":
            self.basis = BesselBasis(r_max, num_basis, trainable=trainable)
        elif basis == "gaussian":
            self.basis = GaussianBasis(r_max, num_basis)
        else:
            raise ValueError(f"RadialEmbedding: basis must be 'bessel' or 'gaussian', got {basis!r}")
        if cutoff == "polynomial":
            self.cutoff = PolynomialCutoff(r_max, polynomial_p)
        elif cutoff == "cosine":
            self.cutoff = CosineCutoff(r_max)
        else:
            raise ValueError(f"RadialEmbedding: cutoff must be 'polynomial' or 'cosine', got {cutoff!r}")
        self.r_max = float(r_max)
        self.num_basis = int(num_basis)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.basis(r) * self.cutoff(r)


class SpeciesIndex(torch.nn.Module):
    """``atomic_numbers (N,) int64 -> species index (N,) int64`` in ``[0, len(atomic_numbers))``, the order given.

    The model keeps this Z -> index table (a buffer), so data depends on the model only through its cutoff.
    Unknown atomic numbers raise ``ValueError`` naming them (eagerly; under ``torch.compile`` the check is traced
    away and the lookup's own bounds checks remain).
    """

    def __init__(self, atomic_numbers: list[int]) -> None:
        super().__init__()
        zs = [int(z) for z in atomic_numbers]
        if not zs or len(set(zs)) != len(zs) or min(zs) < 1 or max(zs) > 118:
            raise ValueError(f"SpeciesIndex: atomic_numbers must be distinct elements in 1..118, got {atomic_numbers}")
        table = torch.full((119,), -1, dtype=torch.int64)
        table[torch.tensor(zs)] = torch.arange(len(zs))
        self.register_buffer("table", table)
        self.atomic_numbers = zs

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dtype != torch.int64 or z.dim() != 1:
            raise TypeError(f"SpeciesIndex: atomic numbers must be a 1-D int64 tensor, got {z.dtype} {tuple(z.shape)}")
        if not tracing() and z.numel():
            bad = (z < 1) | (z > 118) | (self.table[z.clamp(0, 118)] < 0)
            if bool(bad.any()):
                unknown = sorted(set(z[bad].tolist()))
                raise ValueError(f"SpeciesIndex: atomic numbers {unknown} are not among the model's {self.atomic_numbers}")
        return self.table[z]


class AtomicEnergies(torch.nn.Module):
    """``species index (N,) -> E0 (N,)``: fixed per-element reference energies (a buffer, energy units)."""

    def __init__(self, energies: list[float]) -> None:
        super().__init__()
        self.register_buffer("energies", torch.tensor([float(e) for e in energies], dtype=torch.get_default_dtype()))

    def forward(self, species: torch.Tensor) -> torch.Tensor:
        return self.energies[species]


class ScaleShift(torch.nn.Module):
    """``x -> scale * x + shift`` (MACE's ``ScaleShiftBlock``): per-atom energies from normalised model outputs;
    ``scale`` and ``shift`` are buffers in energy units (e.g. the force RMS and the mean energy per atom)."""

    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.get_default_dtype()))
        self.register_buffer("shift", torch.tensor(float(shift), dtype=torch.get_default_dtype()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale.to(x.dtype) * x + self.shift.to(x.dtype)
