"""e3nn's gated point-cloud model of January 2021 (``e3nn.nn.models.gate_points_2101``), on fastso3.

Same classes, functions, constructor arguments, submodule and parameter names as e3nn 0.6.0
(``e3nn/nn/models/gate_points_2101.py``): e3nn state dicts load with ``strict=True`` and give e3nn's
outputs. Exactly equivariant to E(3) (O(3) when the irreps carry parities).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import torch

from ...core.irreps import Irreps
from ...math import soft_one_hot_linspace
from ...o3 import SphericalHarmonics
from ...util.jit import compile_mode
from ._common import (
    Compose, PointConvolution, data_batch, gated_layer, num_graphs, radius_graph, scatter, tp_path_exists,
)  # fmt: skip

__all__ = ["Compose", "Convolution", "Network", "radius_graph", "scatter", "smooth_cutoff", "tp_path_exists"]


@compile_mode("script")  # as e3nn marks it; fastso3 has no TorchScript (NotImplementedError)
class Convolution(PointConvolution):
    r"""Equivariant convolution: ``sin(pi/8) sc(x, z) + cos(pi/8) lin2(sum_neighbours tp(lin1(x, z), Y, fc(h)))``.

    ``forward(node_input, node_attr, edge_src, edge_dst, edge_attr, edge_length_embedded)``:

    * ``node_input``: ``(N, irreps_in.dim)``; ``node_attr``: ``(N, irreps_node_attr.dim)``;
    * ``edge_src``, ``edge_dst``: ``(E,)`` int64 in ``[0, N)``, messages flow from ``edge_src`` to ``edge_dst``;
    * ``edge_attr``: ``(E, irreps_edge_attr.dim)``; ``edge_length_embedded``: ``(E, number_of_basis)``;
    * returns ``(N, irreps_out.dim)``; float32 or float64 (the modules' dtype).

    Output components that the self connection ``sc`` cannot reach (``sc.output_mask`` 0) take the
    convolution with coefficient 1 instead of ``cos(pi/8)``.

    Args:
        irreps_in, irreps_node_attr, irreps_edge_attr, irreps_out: irreps of the node features, node
            attributes, edge attributes and output.
        number_of_basis: size of the edge-length embedding fed to the radial network ``fc``.
        radial_layers, radial_neurons: hidden layers and their width in ``fc``.
        num_neighbors: typical number of neighbours (the sum over edges is divided by its square root).
    """

    def __init__(
        self,
        irreps_in: Any,
        irreps_node_attr: Any,
        irreps_edge_attr: Any,
        irreps_out: Any,
        number_of_basis: int,
        radial_layers: int,
        radial_neurons: int,
        num_neighbors: float,
    ) -> None:
        super().__init__()
        self.irreps_in = Irreps(irreps_in)
        self.irreps_node_attr = Irreps(irreps_node_attr)
        self.irreps_edge_attr = Irreps(irreps_edge_attr)
        self.irreps_out = Irreps(irreps_out)
        self.num_neighbors = num_neighbors
        self._build(
            self.irreps_in,
            self.irreps_node_attr,
            self.irreps_edge_attr,
            self.irreps_out,
            [number_of_basis] + radial_layers * [radial_neurons],
            num_neighbors,
            keep_0e=False,
        )
        c_s, c_x = math.sin(math.pi / 8), math.cos(math.pi / 8)
        self._c_s = c_s
        # not persistent: e3nn's state dict has no such entry
        self.register_buffer("_c_x", (1 - self.sc.output_mask) + c_x * self.sc.output_mask, persistent=False)

    def forward(
        self,
        node_input: torch.Tensor,
        node_attr: torch.Tensor,
        edge_src: torch.Tensor,
        edge_dst: torch.Tensor,
        edge_attr: torch.Tensor,
        edge_length_embedded: torch.Tensor,
    ) -> torch.Tensor:
        s = self.sc(node_input, node_attr)
        num_nodes = node_input.shape[0]
        x = self._messages(node_input, node_attr, edge_src, edge_dst, edge_attr, edge_length_embedded, num_nodes)
        return self._c_s * s + self._c_x * self.lin2(x, node_attr)


def smooth_cutoff(x: torch.Tensor) -> torch.Tensor:
    """Smooth step from 1 (``x <= 0.5``) to 0 (``x >= 1``): ``(1 - cos(pi u)) / 2`` with ``u = 2 (x - 1)``.

    ``x``: float tensor of any shape (a distance over the cutoff, unitless); returns the same shape and dtype.
    """
    u = 2 * (x - 1)
    y = (math.pi * u).cos().neg().add(1).div(2)
    return torch.where(u > 0, torch.zeros_like(y), torch.where(u < -1, torch.ones_like(y), y))


class Network(torch.nn.Module):
    r"""Equivariant point-cloud network: ``layers`` times (:class:`Convolution` then :class:`~fastso3.nn.Gate`),
    then a last :class:`Convolution` to ``irreps_out``; summed over each graph's nodes when ``reduce_output``.

    ``forward(data)`` with ``data`` a dict (or ``torch_geometric`` ``Data``) of

    * ``pos``: ``(N, 3)`` positions (same length units as ``max_radius``);
    * ``x``: ``(N, irreps_in.dim)`` node features (required when ``irreps_in`` is not None; ones otherwise);
    * ``z``: ``(N, irreps_node_attr.dim)`` node attributes (required when ``irreps_node_attr`` is not None);
    * ``batch``: optional ``(N,)`` int64 graph index of each node;

    returns ``(num_graphs, irreps_out.dim)`` (divided by ``sqrt(num_nodes)``), or ``(N, irreps_out.dim)``
    without ``reduce_output``. Edges join nodes of one graph closer than ``max_radius`` (:func:`radius_graph`);
    edge attributes are ``smooth_cutoff(r / max_radius) Y(r_vec)`` (component-normalised spherical harmonics)
    and the radial networks see ``sqrt(number_of_basis)``-scaled gaussians of ``r``.

    Args (e3nn's): irreps_in (or None), irreps_hidden, irreps_out, irreps_node_attr (or None: ``0e`` ones),
    irreps_edge_attr (the spherical harmonics), layers, max_radius, number_of_basis, radial_layers,
    radial_neurons, num_neighbors, num_nodes (typical graph size), reduce_output.
    """

    _convolution = Convolution

    def __init__(
        self,
        irreps_in: Optional[Any],
        irreps_hidden: Any,
        irreps_out: Any,
        irreps_node_attr: Optional[Any],
        irreps_edge_attr: Any,
        layers: int,
        max_radius: float,
        number_of_basis: int,
        radial_layers: int,
        radial_neurons: int,
        num_neighbors: float,
        num_nodes: float,
        reduce_output: bool = True,
    ) -> None:
        super().__init__()
        self.max_radius = max_radius
        self.number_of_basis = number_of_basis
        self.num_neighbors = num_neighbors
        self.num_nodes = num_nodes
        self.reduce_output = reduce_output

        self.irreps_in = Irreps(irreps_in) if irreps_in is not None else None
        self.irreps_hidden = Irreps(irreps_hidden)
        self.irreps_out = Irreps(irreps_out)
        self.irreps_node_attr = Irreps(irreps_node_attr) if irreps_node_attr is not None else Irreps("0e")
        self.irreps_edge_attr = Irreps(irreps_edge_attr)

        self.input_has_node_in = irreps_in is not None
        self.input_has_node_attr = irreps_node_attr is not None

        edge_features = self._edge_features_setup()
        irreps = self.irreps_in if self.irreps_in is not None else Irreps("0e")
        self.layers = torch.nn.ModuleList()
        for _ in range(layers):
            gate = gated_layer(irreps, self.irreps_edge_attr, self.irreps_hidden, simplify=False, check_gates=False)
            conv = self._convolution(
                irreps, self.irreps_node_attr, self.irreps_edge_attr, gate.irreps_in, edge_features, radial_layers,
                radial_neurons, num_neighbors,
            )  # fmt: skip
            irreps = gate.irreps_out
            self.layers.append(Compose(conv, gate))
        self.layers.append(
            self._convolution(
                irreps, self.irreps_node_attr, self.irreps_edge_attr, self.irreps_out, edge_features, radial_layers,
                radial_neurons, num_neighbors,
            )  # fmt: skip
        )
        self._sh = SphericalHarmonics(self.irreps_edge_attr, True, normalization="component")

    def _edge_features_setup(self) -> int:
        """Number of scalar edge features the radial networks read."""
        return self.number_of_basis

    def _edge_features(
        self, edge_length_embedded: torch.Tensor, z: torch.Tensor, edge_src: torch.Tensor, edge_dst: torch.Tensor
    ) -> torch.Tensor:
        """The radial networks' input ``(E, number of edge features)``: here the length embedding."""
        return edge_length_embedded

    def forward(self, data: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``data`` (dict of ``pos``, optional ``x``, ``z``, ``batch``) -> outputs; see the class docstring."""
        pos = data["pos"]
        batch = data_batch(data, pos)
        edge_index = radius_graph(pos, self.max_radius, batch)
        edge_src = edge_index[0]
        edge_dst = edge_index[1]
        edge_vec = pos[edge_src] - pos[edge_dst]
        edge_sh = self._sh(edge_vec)
        edge_length = edge_vec.norm(dim=1)
        edge_length_embedded = soft_one_hot_linspace(
            x=edge_length, start=0.0, end=self.max_radius, number=self.number_of_basis, basis="gaussian", cutoff=False
        ).mul(self.number_of_basis**0.5)
        edge_attr = smooth_cutoff(edge_length / self.max_radius)[:, None] * edge_sh

        if self.input_has_node_in and "x" in data:
            x = data["x"]
        elif self.irreps_in is not None:
            raise ValueError(f"{type(self).__name__}: data has no 'x' (node features {self.irreps_in}); pass data['x']")
        else:
            x = pos.new_ones((pos.shape[0], 1))

        if self.input_has_node_attr and "z" in data:
            z = data["z"]
        elif self.irreps_node_attr != Irreps("0e"):
            raise ValueError(
                f"{type(self).__name__}: data has no 'z' (node attributes {self.irreps_node_attr}); pass data['z']"
            )
        else:
            z = pos.new_ones((pos.shape[0], 1))

        edge_features = self._edge_features(edge_length_embedded, z, edge_src, edge_dst)
        for lay in self.layers:
            x = lay(x, z, edge_src, edge_dst, edge_attr, edge_features)

        if self.reduce_output:
            return scatter(x, batch, num_graphs(batch)).div(self.num_nodes**0.5)
        return x
