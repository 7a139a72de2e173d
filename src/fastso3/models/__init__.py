"""Interatomic potentials on fastso3: building blocks, models and outputs.

- :mod:`~fastso3.models.blocks`: radial bases (Bessel, Gaussian), cutoff envelopes (polynomial, cosine), the
  Z -> species table, per-element reference energies and the energy scale/shift;
- :class:`NequIP` and its :class:`InteractionBlock` on the fused channel-wise convolution; :class:`ESCN` and its
  :class:`SO2InteractionBlock` on ``fastso3.so2.SO2Convolution``;
- :class:`MACE` (RealAgnostic / RealAgnosticResidual blocks, correlation 1-3) on ``nn.SymmetricContraction``;
- :func:`forces_and_stress`: forces, virials and stress of an energy model through positions and strain;
- :func:`compile_energy_and_forces`: energy -> forces (and stress) traced and compiled for training on forces;
- :func:`save` / :func:`load`: models as plain data (``torch.load(weights_only=True)`` reads the files);
- :func:`export_potential` / :func:`load_exported`: energy, forces and stress as a ``torch.export`` program
  compiled by AOTInductor into a ``.pt2`` package that runs without the model's code (:mod:`.export`).
"""

from . import blocks
from .blocks import *  # noqa: F403  (the names of blocks.__all__)
from .escn import ESCN, SO2InteractionBlock
from .mace import MACE, MACEInteraction, MACEProduct
from .nequip import InteractionBlock, NequIP
from .compiled import compile_energy_and_forces
from .export import export_potential, load_exported
from .io import load, save
from .outputs import forces_and_stress

__all__ = [*blocks.__all__, "ESCN", "InteractionBlock", "MACE", "MACEInteraction", "MACEProduct", "NequIP", "SO2InteractionBlock", "compile_energy_and_forces", "export_potential",
           "forces_and_stress", "load", "load_exported", "save"]
