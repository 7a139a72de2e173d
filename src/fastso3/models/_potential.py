"""What every potential of ``fastso3.models`` shares: species, embedding, edge vectors, readout and energies."""

from __future__ import annotations

import inspect

import torch

from .. import o3
from ..core.irreps import Irreps
from .blocks import AtomicEnergies, ScaleShift, SpeciesIndex


ACTIVATIONS = {"silu": torch.nn.functional.silu, "tanh": torch.tanh, "gelu": torch.nn.functional.gelu,
               "relu": torch.nn.functional.relu}  # fmt: skip


def activation(value):
    """An activation from its name in :data:`ACTIVATIONS` (or the function itself)."""
    if callable(value):
        return value
    if value not in ACTIVATIONS:
        raise ValueError(f"unknown activation {value!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[value]


def _plain(value):
    """A constructor argument as data ``torch.load(weights_only=True)`` reads back."""
    if isinstance(value, Irreps):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if callable(value):
        names = [name for name, f in ACTIVATIONS.items() if f is value]
        if not names:
            raise ValueError(f"cannot store the activation {value!r}: use one of {sorted(ACTIVATIONS)} by name")
        return names[0]
    return value


class Potential(torch.nn.Module):
    """Base of the models: ``(positions, atomic_numbers, graph) -> energy per structure``.

    Subclasses compute per-atom interaction energies in :meth:`atom_energies`; this class builds the edge
    vectors and the species, scales and shifts those energies, adds the per-element E0s and sums per structure.
    """

    def __init__(self, name: str, atomic_numbers: list[int], r_max: float, atomic_energies: list[float] | None,
                 scale: float, shift: float) -> None:  # fmt: skip
        super().__init__()
        self.species = SpeciesIndex(atomic_numbers)
        self.num_species = len(atomic_numbers)
        self.r_max = float(r_max)
        self.scale_shift = ScaleShift(scale, shift)
        energies = atomic_energies if atomic_energies is not None else [0.0] * self.num_species
        self.atomic_energies = AtomicEnergies(energies)
        self._name = name
        self.config: dict = {}

    def _store_config(self, arguments: dict) -> None:
        """Keep the constructor's arguments (``locals()`` at the top of a subclass's ``__init__``) as plain data,
        so ``fastso3.models.save`` can write the model and ``load`` rebuild it."""
        names = inspect.signature(type(self).__init__).parameters
        self.config = {k: _plain(arguments[k]) for k in names if k != "self"}

    def atom_energies(self, onehot: torch.Tensor, species: torch.Tensor, edge_src: torch.Tensor,
                      edge_dst: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """``(N,)`` interaction energies per atom (before scale and shift) from the one-hot species ``(N, S)``,
        the species index ``(N,)`` and the edges with their vectors ``vec (E, 3) = r_dst - r_src (+ shift)``."""
        raise NotImplementedError

    def _check_inputs(self, positions, atomic_numbers, edge_src, edge_dst) -> None:
        name = self._name
        if not isinstance(positions, torch.Tensor) or positions.dim() != 2 or positions.shape[1] != 3:
            raise ValueError(f"{name}: positions must be an (N, 3) tensor, got {tuple(getattr(positions, 'shape', ()))}")
        dtype = self.atomic_energies.energies.dtype
        if positions.dtype != dtype:
            raise TypeError(f"{name}: positions are {positions.dtype} but the model is {dtype}; convert one of them "
                            f"(model.to({positions.dtype}) or positions.to({dtype}))")  # fmt: skip
        if atomic_numbers.shape != (positions.shape[0],):
            raise ValueError(f"{name}: atomic_numbers must have shape ({positions.shape[0]},) to match positions, "
                             f"got {tuple(atomic_numbers.shape)}")  # fmt: skip
        if edge_src.shape != edge_dst.shape or edge_src.dim() != 1:
            raise ValueError(f"{name}: edge_src and edge_dst must be (E,) tensors of one length, got "
                             f"{tuple(edge_src.shape)} and {tuple(edge_dst.shape)}")  # fmt: skip

    def forward(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, edge_src: torch.Tensor,
                edge_dst: torch.Tensor, shifts: torch.Tensor | None = None, cell: torch.Tensor | None = None,
                batch: torch.Tensor | None = None, num_graphs: int = 1) -> torch.Tensor:  # fmt: skip
        """Energies ``(num_graphs,)`` (energy units) of structures given by

        positions ``(N, 3)`` (length units, the model's dtype), atomic_numbers ``(N,)`` int64, edges ``(E,)``
        int64 (e.g. from ``fastso3.graph.neighbor_list``), integer ``shifts (E, 3)`` with ``cell (G, 3, 3)``
        for periodic structures, ``batch (N,)`` int64 structure index.
        Differentiable in positions and cell: use ``models.forces_and_stress`` for forces and stress.
        """
        self._check_inputs(positions, atomic_numbers, edge_src, edge_dst)
        if batch is None:
            batch = torch.zeros(positions.shape[0], dtype=torch.int64, device=positions.device)
        vec = positions[edge_dst] - positions[edge_src]
        if shifts is not None:
            if cell is None:
                raise ValueError(f"{self._name}: shifts need the cells (G, 3, 3) of the structures")
            vec = vec + torch.einsum("ei,eij->ej", shifts.to(vec.dtype), cell[batch[edge_src]])
        species = self.species(atomic_numbers)
        onehot = torch.nn.functional.one_hot(species, self.num_species).to(positions.dtype)
        node_energy = self.scale_shift(self.atom_energies(onehot, species, edge_src, edge_dst, vec))
        node_energy = node_energy + self.atomic_energies(species).to(positions.dtype)
        # a (G, N) one-hot product, not index_add: inductor's CPU codegen fails on a float64 scatter into few
        # rows (torch 2.13), and G N is small for any batch of structures
        membership = torch.nn.functional.one_hot(batch, num_graphs).to(node_energy.dtype)
        return membership.T @ node_energy


class ReadoutPotential(Potential):
    """A potential whose layers map embedded species to ``hidden`` features (:meth:`interact`), read out by
    two linears to one scalar per atom: species as ``scalars x 0e`` features -> layers -> readout."""

    def __init__(self, name: str, atomic_numbers: list[int], r_max: float, hidden: Irreps,
                 atomic_energies: list[float] | None, scale: float, shift: float) -> None:  # fmt: skip
        super().__init__(name, atomic_numbers, r_max, atomic_energies, scale, shift)
        self.scalars = hidden.count("0e")
        if self.scalars == 0:
            raise ValueError(f"{name}: hidden_irreps needs even scalars (0e), got {hidden}")
        self.embedding = o3.Linear(f"{self.num_species}x0e", f"{self.scalars}x0e")
        middle = f"{max(self.scalars // 2, 1)}x0e"
        self.readout = torch.nn.Sequential(o3.Linear(hidden, middle), o3.Linear(middle, "1x0e"))

    def interact(self, h: torch.Tensor, onehot: torch.Tensor, edge_src: torch.Tensor, edge_dst: torch.Tensor,
                 vec: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """``h (N, scalars)`` embedded species -> ``(N, hidden.dim)`` after message passing over edge vectors
        ``vec (E, 3) = r_dst - r_src (+ shift)``."""
        raise NotImplementedError

    def atom_energies(self, onehot, species, edge_src, edge_dst, vec):
        return self.readout(self.interact(self.embedding(onehot), onehot, edge_src, edge_dst, vec))[:, 0]
