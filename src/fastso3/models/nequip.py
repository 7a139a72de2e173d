"""NequIP (Batzner et al., Nat. Commun. 13, 2453 (2022)) on fastso3's fused channel-wise convolution.

Architecture as the paper and ``nequip`` 0.6 lay it out (restated, not copied): a one-hot species embedding
mapped linearly to scalar features; ``num_layers`` interaction blocks, each

    x  = Linear(h)                                       (self-interaction)
    m  = sum_{j in N(i)} TP_uvu(x_j, Y(r_ij); R(|r_ij|)) / sqrt(avg_num_neighbors)   (fused convolution)
    m  = Linear(m)
    h' = Gate(m + SelfConnection(h, species))            (+ h when the irreps match: ResNet update)

with ``Y`` the spherical harmonics up to ``lmax`` (``normalize=True``, component normalization), ``R`` an MLP
of the Bessel basis times the polynomial envelope; then a two-layer linear readout to one scalar per atom,
scaled and shifted, plus the per-element reference energies, summed per structure.
"""

from __future__ import annotations

import math

import torch

from .. import nn, o3
from ..core.irreps import Irreps
from ..core.tensor_product_builders import channelwise_tensor_product_spec
from ..ops import tensor_product_conv
from ._potential import ReadoutPotential
from .blocks import RadialEmbedding

__all__ = ["InteractionBlock", "NequIP"]


def scalar_activations(irreps_scalars: Irreps) -> list:
    """NequIP's activations of the gate's scalars: SiLU for even (0e), tanh for odd (0o) ones."""
    return [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in irreps_scalars]


def _gate(irreps_hidden: Irreps) -> tuple[nn.Gate, Irreps]:
    """The gate producing ``irreps_hidden`` and its input irreps (scalars, one 0e gate per gated irrep, gated)."""
    scalars = Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l == 0])
    gated = Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l > 0])
    gates = Irreps([(gated.num_irreps, "0e")]) if gated.num_irreps else Irreps("")
    gate = nn.Gate(scalars, scalar_activations(scalars), gates, [torch.sigmoid] * len(gates), gated)
    return gate, gate.irreps_in


class InteractionBlock(torch.nn.Module):
    """One NequIP interaction: ``h (N, irreps_in.dim) -> (N, irreps_out.dim)`` (see the module docstring).

    Args:
        irreps_in, irreps_out: node feature irreps (``irreps_out`` as e3nn-style irreps, e.g. ``"32x0e+16x1o"``).
        irreps_sh: the edge spherical harmonics' irreps.
        num_species: size of the one-hot species attributes used by the self-connection.
        num_basis: radial basis size; radial_hidden: the radial MLP's hidden widths.
        avg_num_neighbors: the message sum is divided by its square root.
    """

    def __init__(self, irreps_in, irreps_out, irreps_sh, num_species: int, num_basis: int = 8,
                 radial_hidden: tuple[int, ...] = (64, 64), avg_num_neighbors: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        self.irreps_in, self.irreps_out, self.irreps_sh = Irreps(irreps_in), Irreps(irreps_out), Irreps(irreps_sh)
        if not avg_num_neighbors > 0:
            raise ValueError(f"InteractionBlock: avg_num_neighbors must be positive, got {avg_num_neighbors}")
        self.gate, irreps_gate_in = _gate(self.irreps_out)
        self.linear_1 = o3.Linear(self.irreps_in, self.irreps_in)
        spec = channelwise_tensor_product_spec(self.irreps_in, self.irreps_sh, irreps_gate_in)
        self.conv = o3.TensorProduct(self.irreps_in, self.irreps_sh, spec["irreps_out"], spec["instructions"],
                                     shared_weights=False, internal_weights=False)  # fmt: skip
        self.radial = nn.FullyConnectedNet([num_basis, *radial_hidden, self.conv.weight_numel], torch.nn.functional.silu)
        self.linear_2 = o3.Linear(self.conv.irreps_out, irreps_gate_in)
        self.self_connection = o3.FullyConnectedTensorProduct(self.irreps_in, f"{num_species}x0e", irreps_gate_in)
        self.resnet = self.irreps_in == self.irreps_out
        self.norm = 1.0 / math.sqrt(avg_num_neighbors)

    def forward(self, h: torch.Tensor, species_onehot: torch.Tensor, edge_src: torch.Tensor, edge_dst: torch.Tensor,
                edge_sh: torch.Tensor, edge_radial: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """h: ``(N, irreps_in.dim)``; species_onehot: ``(N, num_species)``; edge_src/edge_dst: ``(E,)`` int64;
        edge_sh: ``(E, irreps_sh.dim)``; edge_radial: ``(E, num_basis)`` (basis times envelope)."""
        x = self.linear_1(h)
        message = tensor_product_conv(x, edge_src, edge_dst, edge_sh, self.radial(edge_radial), self.conv, h.shape[0])
        out = self.gate(self.linear_2(message * self.norm) + self.self_connection(h, species_onehot))
        return out + h if self.resnet else out


class NequIP(ReadoutPotential):
    """A NequIP potential: ``(positions, atomic_numbers, graph) -> energy per structure`` (see ``Potential.forward``).

    Args:
        atomic_numbers: the elements the model knows, in its species order (e.g. ``[1, 6, 8]``).
        r_max: cutoff (length units, Angstrom in the field); edges longer than it contribute nothing.
        hidden_irreps: node features of every layer, one multiplicity for all irreps (the fused channel-wise
            convolution's layout, as MACE's), e.g. ``"32x0e + 32x1o + 32x2e"``.
        lmax: degree of the edge spherical harmonics.
        num_layers, num_basis, radial_hidden, avg_num_neighbors: see :class:`InteractionBlock`.
        atomic_energies: per-element reference energies E0 in the order of ``atomic_numbers`` (default zeros).
        scale, shift: of the per-atom energies (energy units; e.g. the force RMS and mean energy per atom).
    """

    def __init__(self, atomic_numbers: list[int], r_max: float, hidden_irreps="8x0e + 8x1o + 8x2e", lmax: int = 2,
                 num_layers: int = 3, num_basis: int = 8, radial_hidden: tuple[int, ...] = (64, 64),
                 avg_num_neighbors: float = 1.0, atomic_energies: list[float] | None = None, scale: float = 1.0,
                 shift: float = 0.0) -> None:  # fmt: skip
        hidden = Irreps(hidden_irreps)
        super().__init__("NequIP", atomic_numbers, r_max, hidden, atomic_energies, scale, shift)
        self._store_config(locals())
        if len({mul for mul, _ in hidden}) != 1:
            raise ValueError(f"NequIP: hidden_irreps needs one multiplicity (the fused convolution's), got {hidden}")
        self.irreps_sh = Irreps.spherical_harmonics(lmax)
        self.radial_embedding = RadialEmbedding(r_max, num_basis)
        irreps = [Irreps(f"{self.scalars}x0e")] + [hidden] * num_layers
        self.layers = torch.nn.ModuleList(
            InteractionBlock(a, b, self.irreps_sh, self.num_species, num_basis, radial_hidden, avg_num_neighbors)
            for a, b in zip(irreps, irreps[1:])
        )

    def interact(self, h, onehot, edge_src, edge_dst, vec):
        sh = o3.spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
        radial = self.radial_embedding(torch.linalg.vector_norm(vec, dim=-1))
        for layer in self.layers:
            h = layer(h, onehot, edge_src, edge_dst, sh, radial)
        return h
