"""Data for training potentials: labelled structures from ASE files, atomic graphs, batches and statistics.

- :func:`read_configurations` (any ``ase.io`` format, MACE-style keys or calculator results) and
  :class:`DataError` (every message names the file, structure index and key);
- :class:`GraphDataset` (edges from vesin through ``fastso3.graph.neighbor_list``), :func:`collate` -> :class:`Batch`;
- :func:`atomic_energies_least_squares`, :func:`average_num_neighbors`, :func:`energy_scale_shift`;
- :func:`emt_cuau`: the embedded default data set (Cu/Au with ASE's EMT), generated on first use.
"""

from .builtin import emt_cuau, generate_emt_cuau
from .graphs import (
    AtomicGraph,
    Batch,
    GraphDataset,
    atomic_energies_least_squares,
    average_num_neighbors,
    collate,
    energy_scale_shift,
)
from .reading import Configuration, DataError, configurations_from_atoms, read_configurations

__all__ = ["AtomicGraph", "Batch", "Configuration", "DataError", "GraphDataset", "atomic_energies_least_squares",
           "average_num_neighbors", "collate", "configurations_from_atoms", "emt_cuau", "generate_emt_cuau",
           "energy_scale_shift", "read_configurations"]  # fmt: skip
