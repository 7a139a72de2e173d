"""Atomic graphs of labelled structures, one batched graph per batch, and the statistics a potential starts from.

A graph's edges are ``fastso3.graph.neighbor_list``'s (vesin's cell lists; ASE's rules: ``|r_j - r_i + S cell|
< r_max``, no self edge ``(i, i, 0)``, images of ``i`` itself included when the cell is small), built once per
structure when the :class:`GraphDataset` is made.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from ..graph import neighbor_list
from .reading import Configuration, DataError

__all__ = ["AtomicGraph", "Batch", "GraphDataset", "atomic_energies_least_squares", "average_num_neighbors",
           "collate", "energy_scale_shift"]  # fmt: skip


@dataclass
class AtomicGraph:
    """One structure with its edges. ``positions (N, 3)``, ``cell (3, 3)`` float64; ``numbers (N,)``,
    ``edge_src``/``edge_dst (E,)``, ``shifts (E, 3)`` int64; labels ``energy ()``, ``forces (N, 3)``,
    ``stress (3, 3)`` (zeros where absent, with ``has_*`` flags); ``weight ()``."""

    positions: torch.Tensor
    cell: torch.Tensor
    numbers: torch.Tensor
    edge_src: torch.Tensor
    edge_dst: torch.Tensor
    shifts: torch.Tensor
    energy: torch.Tensor
    forces: torch.Tensor
    stress: torch.Tensor
    has_energy: torch.Tensor
    has_forces: torch.Tensor
    has_stress: torch.Tensor
    weight: torch.Tensor


@dataclass
class Batch(AtomicGraph):
    """Graphs joined into one: node and edge tensors concatenated (edges renumbered), ``batch (N,)`` the structure
    of each atom, ``num_atoms (G,)``, per-structure tensors stacked (``cell (G, 3, 3)``, ``energy (G,)``, ...)."""

    batch: torch.Tensor
    num_atoms: torch.Tensor

    @property
    def num_graphs(self) -> int:
        return int(self.num_atoms.shape[0])

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Batch":
        """The batch on ``device`` with its float tensors in ``dtype``."""
        moved = {}
        for f in fields(self):
            t = getattr(self, f.name)
            moved[f.name] = t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None)
        return Batch(**moved)


def _graph(config: Configuration, r_max: float) -> AtomicGraph:
    positions = torch.tensor(config.positions)
    cell = torch.tensor(config.cell)
    src, dst, shifts = neighbor_list(positions, cell, config.pbc.tolist(), r_max, method="vesin")
    n = len(config.numbers)
    if n > 1 and len(src) == 0:
        raise DataError(f"{config.source}: no two atoms are within the cutoff r_max = {r_max} A of each other")
    label = lambda value, shape: torch.zeros(shape, dtype=torch.float64) if value is None else torch.tensor(value, dtype=torch.float64)  # noqa: E731
    return AtomicGraph(
        positions=positions, cell=cell, numbers=torch.tensor(config.numbers), edge_src=src, edge_dst=dst,
        shifts=shifts, energy=label(config.energy, ()), forces=label(config.forces, (n, 3)),
        stress=label(config.stress, (3, 3)), has_energy=torch.tensor(config.energy is not None),
        has_forces=torch.tensor(config.forces is not None), has_stress=torch.tensor(config.stress is not None),
        weight=torch.tensor(config.weight, dtype=torch.float64),
    )  # fmt: skip


class GraphDataset(torch.utils.data.Dataset):
    """The graphs of ``configurations`` with cutoff ``r_max`` (A); every element must be in ``atomic_numbers``.

    Raises :class:`DataError` (naming the structure) for an element the model does not know or a structure with
    no neighbours within the cutoff.
    """

    def __init__(self, configurations: list[Configuration], r_max: float, atomic_numbers: list[int]) -> None:
        known = set(int(z) for z in atomic_numbers)
        for config in configurations:
            unknown = sorted(set(config.numbers.tolist()) - known)
            if unknown:
                raise DataError(f"{config.source}: elements {unknown} are not among the model's {sorted(known)}")
        self.configurations = configurations
        self.r_max = float(r_max)
        self.graphs = [_graph(c, r_max) for c in configurations]

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> AtomicGraph:
        return self.graphs[index]


def collate(graphs: list[AtomicGraph]) -> Batch:
    """One :class:`Batch` of ``graphs`` (a ``DataLoader``'s ``collate_fn``)."""
    counts = torch.tensor([len(g.numbers) for g in graphs])
    offsets = torch.cumsum(counts, 0) - counts
    cat = lambda name: torch.cat([getattr(g, name) for g in graphs])  # noqa: E731
    stack = lambda name: torch.stack([getattr(g, name) for g in graphs])  # noqa: E731
    return Batch(
        positions=cat("positions"), cell=stack("cell"), numbers=cat("numbers"),
        edge_src=torch.cat([g.edge_src + o for g, o in zip(graphs, offsets)]),
        edge_dst=torch.cat([g.edge_dst + o for g, o in zip(graphs, offsets)]), shifts=cat("shifts"),
        energy=stack("energy"), forces=cat("forces"), stress=stack("stress"), has_energy=stack("has_energy"),
        has_forces=stack("has_forces"), has_stress=stack("has_stress"), weight=stack("weight"),
        batch=torch.repeat_interleave(torch.arange(len(graphs)), counts), num_atoms=counts,
    )  # fmt: skip


def atomic_energies_least_squares(configurations: list[Configuration], atomic_numbers: list[int]) -> list[float]:
    """Per-element reference energies E0 (eV): the least-squares fit ``E ~ sum_i E0[Z_i]`` over the structures
    with an energy (MACE's ``E0s="average"``), in the order of ``atomic_numbers``."""
    rows, energies = [], []
    for c in configurations:
        if c.energy is not None:
            rows.append([np.count_nonzero(c.numbers == z) for z in atomic_numbers])
            energies.append(c.energy)
    if not rows:
        raise DataError("atomic_energies_least_squares: no structure has an energy")
    solution, *_ = np.linalg.lstsq(np.asarray(rows, dtype=np.float64), np.asarray(energies), rcond=None)
    return solution.tolist()


def average_num_neighbors(dataset: GraphDataset) -> float:
    """Edges per atom over the data set (MACE's and NequIP's ``avg_num_neighbors``)."""
    atoms = sum(len(g.numbers) for g in dataset.graphs)
    return sum(len(g.edge_src) for g in dataset.graphs) / max(atoms, 1)


def energy_scale_shift(configurations: list[Configuration], atomic_numbers: list[int],
                       atomic_energies: list[float]) -> tuple[float, float]:  # fmt: skip
    """``(scale, shift)`` of the per-atom interaction energies: the force RMS (eV/A; 1 without forces) and the
    mean energy per atom after subtracting the E0s (eV), as MACE's ``ScaleShiftMACE`` defaults them."""
    e0 = dict(zip(atomic_numbers, atomic_energies))
    per_atom = [(c.energy - sum(e0[int(z)] for z in c.numbers)) / len(c.numbers) for c in configurations
                if c.energy is not None]  # fmt: skip
    forces = [c.forces for c in configurations if c.forces is not None]
    scale = float(np.sqrt(np.mean(np.concatenate([f.reshape(-1) for f in forces]) ** 2))) if forces else 1.0
    return (scale if scale > 0 else 1.0), (float(np.mean(per_atom)) if per_atom else 0.0)
