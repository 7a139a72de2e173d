"""Interatomic potentials on fastso3: building blocks and outputs (models land here; see issue 14).

- :mod:`~fastso3.models.blocks`: radial bases (Bessel, Gaussian), cutoff envelopes (polynomial, cosine), the
  Z -> species table, per-element reference energies and the energy scale/shift;
- :class:`NequIP` and its :class:`InteractionBlock` on the fused channel-wise convolution;
- :func:`forces_and_stress`: forces, virials and stress of an energy model through positions and strain.
"""

from . import blocks
from .blocks import *  # noqa: F403  (the names of blocks.__all__)
from .nequip import InteractionBlock, NequIP
from .outputs import forces_and_stress

__all__ = [*blocks.__all__, "InteractionBlock", "NequIP", "forces_and_stress"]
