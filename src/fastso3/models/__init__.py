"""Interatomic potentials on fastso3: building blocks and outputs (models land here; see issue 14).

- :mod:`~fastso3.models.blocks`: radial bases (Bessel, Gaussian), cutoff envelopes (polynomial, cosine), the
  Z -> species table, per-element reference energies and the energy scale/shift;
- :func:`forces_and_stress`: forces, virials and stress of an energy model through positions and strain.
"""

from .blocks import (
    AtomicEnergies,
    BesselBasis,
    CosineCutoff,
    GaussianBasis,
    PolynomialCutoff,
    RadialEmbedding,
    ScaleShift,
    SpeciesIndex,
)
from .outputs import forces_and_stress

__all__ = [
    "AtomicEnergies",
    "BesselBasis",
    "CosineCutoff",
    "GaussianBasis",
    "PolynomialCutoff",
    "RadialEmbedding",
    "ScaleShift",
    "SpeciesIndex",
    "forces_and_stress",
]
