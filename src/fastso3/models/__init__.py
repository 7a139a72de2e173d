"""Interatomic potentials on fastso3: building blocks and outputs (models land here; see issue 14).

- :mod:`~fastso3.models.blocks`: radial bases (Bessel, Gaussian) and cutoff envelopes (polynomial, cosine);
- :func:`forces_and_stress`: forces, virials and stress of an energy model through positions and strain.
"""

from .blocks import BesselBasis, CosineCutoff, GaussianBasis, PolynomialCutoff, RadialEmbedding
from .outputs import forces_and_stress

__all__ = ["BesselBasis", "CosineCutoff", "GaussianBasis", "PolynomialCutoff", "RadialEmbedding", "forces_and_stress"]
