"""MACE (Batatia et al., NeurIPS 2022; mace-torch 0.3.x) on fastso3's fused convolution and symmetric contraction.

The architecture as ``mace/modules/models.py`` and ``blocks.py`` lay it out (restated, not copied), with the
same module and parameter names, so a mace-torch model's parameters load by name (``fastso3.compat.from_mace``):

    h_0   = Linear(onehot(Z))                                            (node_embedding, scalars)
    per layer t:
      sc  = FCTP(h, onehot)                                              (residual blocks only)
      m   = sum_j TP_uvu(Linear(h)_j, Y(r_ij); MLP(R(r_ij))) ; m = Linear(m) / avg_num_neighbors
      m   = FCTP(m, onehot)                                              (non-residual blocks: RealAgnostic)
      h   = Linear(SymmetricContraction(m as (N, C, D), Z)) + sc         (products, correlation nu <= 3)
      e  += readout_t(h)      (Linear; the last of several layers: Linear -> Activation -> Linear)
    E     = sum_i (scale e_i + shift + E0(Z_i))

``Y``: spherical harmonics up to ``max_ell`` (normalized vectors, component normalization); ``R``: the Bessel
basis times the polynomial envelope of order ``num_polynomial_cutoff``; the radial MLP is e3nn's
``FullyConnectedNet`` with SiLU. The last layer keeps only scalars (``C x 0e``), as MACE's does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .. import nn, o3
from ..core.irreps import Irreps
from ..ops import tensor_product_conv
from ._potential import Potential, activation
from .blocks import RadialEmbedding

__all__ = ["MACE", "MACEInteraction", "MACEProduct"]

INTERACTIONS = ("RealAgnostic", "RealAgnosticResidual")


def conv_instructions(irreps_in: Irreps, irreps_sh: Irreps, target: Irreps) -> tuple[Irreps, list]:
    """MACE's ``tp_out_irreps_with_instructions``: one ``uvu`` path per (input, harmonic, output in ``target``),
    the outputs sorted by irrep (not merged), the instructions renumbered and ordered by output."""
    outputs, instructions = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in target:
                    instructions.append((i, j, len(outputs), "uvu", True))
                    outputs.append((mul, ir_out))
    irreps_mid, p, _ = Irreps(outputs).sort()
    instructions = sorted(((i, j, p[k], mode, train) for i, j, k, mode, train in instructions), key=lambda t: t[2])
    return irreps_mid, instructions


def _channels_last(x: torch.Tensor, irreps: Irreps) -> torch.Tensor:
    """MACE's ``reshape_irreps``: ``(N, irreps.dim)`` e3nn layout -> ``(N, C, D)``, one multiplicity ``C``."""
    n, mul = x.shape[0], irreps[0].mul
    return torch.cat([chunk.reshape(n, mul, ir.dim) for chunk, (_, ir) in zip(x.split([m * ir.dim for m, ir in irreps], 1), irreps)], -1)


class MACEInteraction(torch.nn.Module):
    """One interaction block: ``h (N, irreps_in.dim) -> (m (N, C, D), sc (N, hidden.dim) or None)``.

    ``residual=True`` is MACE's ``RealAgnosticResidualInteractionBlock`` (the self-connection ``sc`` of the
    input features, added after the product); ``False`` is ``RealAgnosticInteractionBlock`` (the species-wise
    linear applied to the message, no ``sc``).
    """

    def __init__(self, irreps_in, irreps_sh, target, hidden, num_species: int, num_basis: int,
                 radial_mlp: Sequence[int], avg_num_neighbors: float, residual: bool) -> None:  # fmt: skip
        super().__init__()
        if not avg_num_neighbors > 0:
            raise ValueError(f"MACEInteraction: avg_num_neighbors must be positive, got {avg_num_neighbors}")
        self.irreps_in, self.target, self.residual = Irreps(irreps_in), Irreps(target), residual
        self.avg_num_neighbors = float(avg_num_neighbors)
        species = f"{num_species}x0e"
        self.linear_up = o3.Linear(self.irreps_in, self.irreps_in)
        irreps_mid, instructions = conv_instructions(self.irreps_in, Irreps(irreps_sh), self.target)
        self.conv_tp = o3.TensorProduct(self.irreps_in, irreps_sh, irreps_mid, instructions,
                                        shared_weights=False, internal_weights=False)  # fmt: skip
        self.conv_tp_weights = nn.FullyConnectedNet([num_basis, *radial_mlp, self.conv_tp.weight_numel],
                                                    torch.nn.functional.silu)  # fmt: skip
        self.linear = o3.Linear(irreps_mid, self.target)
        if residual:
            self.skip_tp = o3.FullyConnectedTensorProduct(self.irreps_in, species, hidden)
        else:
            self.skip_tp = o3.FullyConnectedTensorProduct(self.target, species, self.target)

    def forward(self, h: torch.Tensor, onehot: torch.Tensor, edge_src: torch.Tensor, edge_dst: torch.Tensor,
                edge_sh: torch.Tensor, edge_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """h ``(N, irreps_in.dim)``; onehot ``(N, S)``; edges ``(E,)`` int64; edge_sh ``(E, sh.dim)``;
        edge_feats ``(E, num_basis)`` (radial basis times envelope)."""
        sc = self.skip_tp(h, onehot) if self.residual else None
        x = self.linear_up(h)
        weights = self.conv_tp_weights(edge_feats)
        message = tensor_product_conv(x, edge_src, edge_dst, edge_sh, weights, self.conv_tp, h.shape[0])
        message = self.linear(message) / self.avg_num_neighbors
        if not self.residual:
            message = self.skip_tp(message, onehot)
        return _channels_last(message, self.target), sc


class MACEProduct(torch.nn.Module):
    """MACE's ``EquivariantProductBasisBlock``: ``Linear(SymmetricContraction(m, Z)) (+ sc)``."""

    def __init__(self, irreps_in, target, correlation: int, num_species: int, use_sc: bool,
                 u_matrices: dict | None = None) -> None:  # fmt: skip
        super().__init__()
        self.use_sc = use_sc
        self.symmetric_contractions = nn.SymmetricContraction(irreps_in, target, correlation, num_species, u_matrices)
        self.linear = o3.Linear(target, target)

    def forward(self, m: torch.Tensor, sc: torch.Tensor | None, species: torch.Tensor) -> torch.Tensor:
        out = self.linear(self.symmetric_contractions(m, species))
        return out + sc if self.use_sc and sc is not None else out


class _LinearBlock(torch.nn.Module):
    """A linear under MACE's name (``node_embedding.linear``, ``readouts[t].linear``)."""

    def __init__(self, irreps_in, irreps_out) -> None:
        super().__init__()
        self.linear = o3.Linear(irreps_in, irreps_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class _NonLinearReadout(torch.nn.Module):
    """MACE's ``NonLinearReadoutBlock``: ``Linear -> Activation(gate) -> Linear`` to one scalar."""

    def __init__(self, irreps_in, mlp_irreps, gate: Callable) -> None:
        super().__init__()
        self.linear_1 = o3.Linear(irreps_in, mlp_irreps)
        self.non_linearity = nn.Activation(mlp_irreps, [gate])
        self.linear_2 = o3.Linear(mlp_irreps, "0e")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.non_linearity(self.linear_1(x)))


class MACE(Potential):
    """A MACE potential: ``(positions, atomic_numbers, graph) -> energy per structure`` (see ``Potential.forward``).

    Args (MACE's names and defaults where it has them):
        atomic_numbers: the elements, in species order (e.g. ``[29, 79]``).
        r_max: cutoff (Angstrom); num_bessel: radial basis size; num_polynomial_cutoff: envelope order p.
        max_ell: degree of the edge spherical harmonics (up to 3 tested).
        num_interactions: layers; hidden_irreps: node features, one multiplicity, e.g. ``"32x0e + 32x1o"``
            (up to L = 2 tested; ``0o``/``1e`` pseudo-tensors allowed).
        MLP_irreps: hidden scalars of the last, non-linear readout; gate: its activation (a function or a name
            of ``ACTIVATIONS``: ``"silu"``, ``"tanh"``, ...).
        correlation: body order minus one of each product (an int, or one per layer), 1 to 3.
        avg_num_neighbors: the message sum is divided by it; radial_MLP: hidden widths of the radial MLP.
        interaction / interaction_first: ``"RealAgnosticResidual"`` or ``"RealAgnostic"`` (MACE's blocks).
        atomic_energies: E0 per element (eV); scale, shift: of the per-atom interaction energies
            (``ScaleShiftMACE``; 1 and 0 give plain ``MACE``).
        keep_last_layer_irreps: keep ``hidden_irreps`` in the last layer instead of its scalars.
        u_matrices: ``{(layer, output index, nu): U}`` of a converted model (see ``fastso3.compat.from_mace``).
    """

    def __init__(self, atomic_numbers: list[int], r_max: float = 5.0, num_bessel: int = 8,
                 num_polynomial_cutoff: int = 5, max_ell: int = 3, num_interactions: int = 2,
                 hidden_irreps="32x0e + 32x1o", MLP_irreps="16x0e", correlation: int | Sequence[int] = 3,
                 avg_num_neighbors: float = 1.0, radial_MLP: Sequence[int] = (64, 64, 64),
                 interaction: str = "RealAgnosticResidual", interaction_first: str = "RealAgnosticResidual",
                 atomic_energies: list[float] | None = None, scale: float = 1.0, shift: float = 0.0,
                 gate: Callable | str = "silu", keep_last_layer_irreps: bool = False,
                 u_matrices: dict | None = None) -> None:  # fmt: skip
        super().__init__("MACE", atomic_numbers, r_max, atomic_energies, scale, shift)
        self._store_config(locals())
        hidden = Irreps(hidden_irreps)
        for name in (interaction, interaction_first):
            if name not in INTERACTIONS:
                raise ValueError(f"MACE: interaction blocks are {INTERACTIONS}, got {name!r}")
        if len({mul for mul, _ in hidden}) != 1 or hidden.count("0e") == 0:
            raise ValueError(f"MACE: hidden_irreps needs one multiplicity and even scalars, got {hidden}")
        correlations = [correlation] * num_interactions if isinstance(correlation, int) else list(correlation)
        if len(correlations) != num_interactions:
            raise ValueError(f"MACE: {len(correlations)} correlations for {num_interactions} interactions")
        channels = hidden[0].mul
        scalars = Irreps(f"{channels}x0e")
        self.irreps_sh = Irreps.spherical_harmonics(max_ell)
        self.node_embedding = _LinearBlock(f"{self.num_species}x0e", scalars)
        self.radial_embedding = RadialEmbedding(r_max, num_bessel, polynomial_p=num_polynomial_cutoff)
        # Pseudo-tensor features couple to harmonics of both parities after the first layer, as in MACE.
        sh_both = Irreps([(1, (l, p)) for l in range(max_ell + 1) for p in (1, -1)])
        sh_inter = sh_both if hidden.count("0o") > 0 else self.irreps_sh
        self.interactions, self.products = torch.nn.ModuleList(), torch.nn.ModuleList()
        self.readouts = torch.nn.ModuleList()
        irreps_in = scalars
        for t in range(num_interactions):
            last = t == num_interactions - 1
            out = scalars if last and not keep_last_layer_irreps else hidden
            sh_target = self.irreps_sh if t == 0 else sh_inter
            target = Irreps([(channels, ir) for _, ir in sh_target]).sort().irreps.simplify()
            residual = (interaction_first if t == 0 else interaction) == "RealAgnosticResidual"
            self.interactions.append(MACEInteraction(irreps_in, self.irreps_sh, target, out, self.num_species,
                                                     num_bessel, radial_MLP, avg_num_neighbors, residual))  # fmt: skip
            layer_u = {(o, nu): u for (layer, o, nu), u in (u_matrices or {}).items() if layer == t}
            self.products.append(MACEProduct(target, out, correlations[t], self.num_species,
                                             use_sc=t > 0 or residual, u_matrices=layer_u))  # fmt: skip
            nonlinear = last and t > 0  # as MACE: a one-layer model reads out linearly
            self.readouts.append(_NonLinearReadout(out, MLP_irreps, activation(gate)) if nonlinear else _LinearBlock(out, "0e"))
            irreps_in = out

    def atom_energies(self, onehot, species, edge_src, edge_dst, vec):
        sh = o3.spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
        edge_feats = self.radial_embedding(torch.linalg.vector_norm(vec, dim=-1))
        h = self.node_embedding(onehot)
        energy = torch.zeros_like(onehot[:, 0])
        for interaction, product, readout in zip(self.interactions, self.products, self.readouts):
            m, sc = interaction(h, onehot, edge_src, edge_dst, sh, edge_feats)
            h = product(m, sc, species)
            energy = energy + readout(h)[:, 0]
        return energy
