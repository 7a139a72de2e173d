"""An eSCN-style potential (Passaro & Zitnick, ICML 2023): NequIP's layer structure with the SO(2) convolution of
``fastso3.so2`` (edge-frame rotation, per-order linear maps, radial gates) in place of the CG convolution.

Each interaction block: ``h' = Gate(Linear(SO2Convolution(h)) + SelfConnection(h, species)) (+ h)``.
"""

from __future__ import annotations

import torch

from .. import o3
from ..core.irreps import Irreps
from ..so2 import SO2Convolution
from ._potential import ReadoutPotential
from .nequip import _gate

__all__ = ["ESCN", "SO2InteractionBlock"]


class SO2InteractionBlock(torch.nn.Module):
    """``h (N, irreps_in.dim) -> (N, irreps_out.dim)`` through an :class:`~fastso3.so2.SO2Convolution`.

    Args:
        irreps_in, irreps_out: node features (``irreps_out`` of the form ``c0x0e + cx1o + cx2e + ...``).
        num_species: size of the one-hot species attributes of the self-connection.
        mmax, num_basis, r_max, avg_num_neighbors: of the SO(2) convolution.
    """

    def __init__(self, irreps_in, irreps_out, num_species: int, r_max: float, mmax: int | None = None,
                 num_basis: int = 8, avg_num_neighbors: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        self.irreps_in, self.irreps_out = Irreps(irreps_in), Irreps(irreps_out)
        self.gate, irreps_gate_in = _gate(self.irreps_out)
        self.conv = SO2Convolution(self.irreps_in, self.irreps_out, mmax=mmax, num_basis=num_basis, r_max=r_max,
                                   avg_num_neighbors=avg_num_neighbors)  # fmt: skip
        self.linear = o3.Linear(self.irreps_out, irreps_gate_in)
        self.self_connection = o3.FullyConnectedTensorProduct(self.irreps_in, f"{num_species}x0e", irreps_gate_in)
        self.resnet = self.irreps_in == self.irreps_out

    def forward(self, h: torch.Tensor, species_onehot: torch.Tensor, edge_index: torch.Tensor,
                edge_vec: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """h: ``(N, irreps_in.dim)``; species_onehot: ``(N, num_species)``; edge_index ``(2, E)`` [src, dst];
        edge_vec ``(E, 3)``."""
        out = self.gate(self.linear(self.conv(h, edge_index, edge_vec)) + self.self_connection(h, species_onehot))
        return out + h if self.resnet else out


class ESCN(ReadoutPotential):
    """An eSCN-style potential on ``fastso3.so2``: ``(positions, atomic_numbers, graph) -> energy per structure``.

    Args: as :class:`~fastso3.models.NequIP`, with ``mmax`` (the SO(2) orders kept, default all) in place of
    ``lmax`` (the degrees come from ``hidden_irreps``).
    """

    def __init__(self, atomic_numbers: list[int], r_max: float, hidden_irreps="8x0e + 8x1o + 8x2e",
                 num_layers: int = 2, mmax: int | None = None, num_basis: int = 8, avg_num_neighbors: float = 1.0,
                 atomic_energies: list[float] | None = None, scale: float = 1.0, shift: float = 0.0) -> None:  # fmt: skip
        hidden = Irreps(hidden_irreps)
        super().__init__("ESCN", atomic_numbers, r_max, hidden, atomic_energies, scale, shift)
        self._store_config(locals())
        irreps = [Irreps(f"{self.scalars}x0e")] + [hidden] * num_layers
        self.layers = torch.nn.ModuleList(
            SO2InteractionBlock(a, b, self.num_species, r_max, mmax, num_basis, avg_num_neighbors)
            for a, b in zip(irreps, irreps[1:])
        )

    def interact(self, h, onehot, edge_src, edge_dst, vec):
        edge_index = torch.stack([edge_src, edge_dst])
        for layer in self.layers:
            h = layer(h, onehot, edge_index, vec)
        return h
