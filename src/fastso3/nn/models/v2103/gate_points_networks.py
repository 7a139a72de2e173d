"""e3nn's example networks of March 2021 (``e3nn.nn.models.v2103.gate_points_networks``), on fastso3.

Same classes, constructor arguments, defaults, submodule and parameter names as e3nn 0.6.0
(``e3nn/nn/models/v2103/gate_points_networks.py``); e3nn state dicts load with ``strict=True``. Where e3nn
calls ``torch_cluster.radius_graph`` and ``torch_scatter.scatter``, these use :func:`fastso3.graph.radius_graph`
(the same edge set: distinct points of one graph closer than ``max_radius``, coincident ones included) and
:func:`fastso3.graph.scatter_sum`.
"""

from __future__ import annotations

from typing import Any, Dict

import torch

from .... import graph
from ....core.irreps import Irreps
from .._common import PointsNetwork, data_batch
from .gate_points_message_passing import MessagePassing

__all__ = ["NetworkForAGraphWithAttributes", "SimpleNetwork"]


def _hidden_irreps(mul: int, lmax: int) -> Irreps:
    """``mul`` copies of every ``(l, p)``, ``l <= lmax``, odd parity first."""
    return Irreps([(mul, (l, p)) for l in range(lmax + 1) for p in [-1, 1]])


def _message_passing(
    irreps_node_input, irreps_node_hidden, irreps_node_output, irreps_node_attr, irreps_edge_attr, layers, fc_neurons,
    num_neighbors,
) -> MessagePassing:  # fmt: skip
    """v2103's message passing: ``layers`` gated layers of ``irreps_node_hidden``."""
    return MessagePassing(
        irreps_node_input=irreps_node_input,
        irreps_node_hidden=irreps_node_hidden,
        irreps_node_output=irreps_node_output,
        irreps_node_attr=irreps_node_attr,
        irreps_edge_attr=irreps_edge_attr,
        layers=layers,
        fc_neurons=fc_neurons,
        num_neighbors=num_neighbors,
    )


class SimpleNetwork(PointsNetwork):
    r"""Message passing on the radius graph of a point cloud, no node attributes.

    ``forward(data)``, ``data`` a dict (or ``torch_geometric`` ``Data``) of ``pos`` ``(N, 3)``, ``x``
    ``(N, irreps_in.dim)`` and optional ``batch`` ``(N,)`` int64 -> ``(num_graphs, irreps_out.dim)`` summed over
    each graph's nodes and divided by ``sqrt(num_nodes)`` (``pool_nodes``), else ``(N, irreps_out.dim)``.
    Edge attributes: component-normalised spherical harmonics up to ``lmax``; radial input: 10 cosine basis
    functions of the edge length (zero at ``max_radius``).

    Args:
        irreps_in, irreps_out: node input and output irreps.
        max_radius: cutoff of the radius graph (length units of ``pos``).
        num_neighbors, num_nodes: typical numbers of neighbours and of nodes per graph (normalisation).
        mul: multiplicity of each hidden irrep; layers: gated layers; lmax: hidden and edge degrees.
        pool_nodes: sum over the nodes of each graph.
    """

    _basis = "cosine"
    _make_message_passing = staticmethod(_message_passing)

    def __init__(
        self,
        irreps_in: Any,
        irreps_out: Any,
        max_radius: float,
        num_neighbors: int,
        num_nodes: int,
        mul: int = 50,
        layers: int = 3,
        lmax: int = 2,
        pool_nodes: bool = True,
    ) -> None:
        super().__init__()
        self._setup_edges(lmax, max_radius)
        self.num_nodes = num_nodes
        self.pool_nodes = pool_nodes
        self.mp = self._make_message_passing(
            irreps_in, _hidden_irreps(mul, lmax), irreps_out, "0e", Irreps.spherical_harmonics(lmax), layers,
            [self.number_of_basis, 100], num_neighbors,
        )  # fmt: skip
        self.irreps_in = self.mp.irreps_node_input
        self.irreps_out = self.mp.irreps_node_output

    def _radius_graph(self, pos: torch.Tensor, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(edge_src, edge_dst)``: torch_cluster's ``radius_graph(pos, max_radius, batch)`` edge set."""
        return graph.radius_graph(pos, self.max_radius, batch)

    def preprocess(self, data: Dict[str, torch.Tensor]):
        """``(batch, x, edge_src, edge_dst, edge_vec)`` of ``data``, ``edge_vec = pos[src] - pos[dst]`` (e3nn's
        sign)."""
        pos = data["pos"]
        batch = data_batch(data, pos)
        edge_src, edge_dst = self._radius_graph(pos, batch)
        edge_vec = pos[edge_src] - pos[edge_dst]
        return batch, data["x"], edge_src, edge_dst, edge_vec

    def forward(self, data: Dict[str, torch.Tensor]) -> torch.Tensor:
        """See the class docstring."""
        batch, node_inputs, edge_src, edge_dst, edge_vec = self.preprocess(data)
        del data
        edge_attr, edge_length_embedding = self._embed(edge_vec)
        node_attr = node_inputs.new_ones(node_inputs.shape[0], 1)  # node attributes are not used here
        node_outputs = self.mp(node_inputs, node_attr, edge_src, edge_dst, edge_attr, edge_length_embedding)
        return self._pool(node_outputs, batch)


class NetworkForAGraphWithAttributes(PointsNetwork):
    r"""Message passing on a given graph with node and edge attributes.

    ``forward(data)``, ``data`` a dict of ``pos`` ``(N, 3)``, ``edge_index`` ``(2, E)`` int64 (row 0 senders),
    ``node_input`` ``(N, irreps_node_input.dim)``, ``node_attr`` ``(N, irreps_node_attr.dim)``, ``edge_attr``
    ``(E, irreps_edge_attr.dim)`` and optional ``batch`` -> ``(num_graphs, irreps_node_output.dim)`` (pooled as
    :class:`SimpleNetwork`) or ``(N, irreps_node_output.dim)``. The message passing sees the edge attributes
    followed by the spherical harmonics of ``pos[src] - pos[dst]`` up to ``lmax``.

    Args: irreps_node_input, irreps_node_attr, irreps_edge_attr, irreps_node_output, then as :class:`SimpleNetwork`.
    """

    _basis = "cosine"
    _make_message_passing = staticmethod(_message_passing)

    def __init__(
        self,
        irreps_node_input: Any,
        irreps_node_attr: Any,
        irreps_edge_attr: Any,
        irreps_node_output: Any,
        max_radius: float,
        num_neighbors: int,
        num_nodes: int,
        mul: int = 50,
        layers: int = 3,
        lmax: int = 2,
        pool_nodes: bool = True,
    ) -> None:
        super().__init__()
        self._setup_edges(lmax, max_radius)
        self.num_nodes = num_nodes
        self.irreps_edge_attr = Irreps(irreps_edge_attr)
        self.pool_nodes = pool_nodes
        self.mp = self._make_message_passing(
            irreps_node_input, _hidden_irreps(mul, lmax), irreps_node_output, irreps_node_attr,
            self.irreps_edge_attr + Irreps.spherical_harmonics(lmax), layers, [self.number_of_basis, 100],
            num_neighbors,
        )  # fmt: skip
        self.irreps_node_input = self.mp.irreps_node_input
        self.irreps_node_attr = self.mp.irreps_node_attr
        self.irreps_node_output = self.mp.irreps_node_output

    def forward(self, data: Dict[str, torch.Tensor]) -> torch.Tensor:
        """See the class docstring."""
        pos = data["pos"]
        edge_src, edge_dst = data["edge_index"][0], data["edge_index"][1]
        return self._run(
            data_batch(data, pos), data["node_input"], data["node_attr"], data["edge_attr"], edge_src, edge_dst,
            pos[edge_src] - pos[edge_dst],
        )  # fmt: skip

    def _run(self, batch, node_input, node_attr, edge_attr, edge_src, edge_dst, edge_vec) -> torch.Tensor:
        edge_sh, edge_length_embedding = self._embed(edge_vec)
        edge_attr = torch.cat([edge_attr, edge_sh], dim=1)
        node_outputs = self.mp(node_input, node_attr, edge_src, edge_dst, edge_attr, edge_length_embedding)
        return self._pool(node_outputs, batch)
