"""e3nn's example networks of June 2021 (``e3nn.nn.models.v2106.gate_points_networks``), on fastso3.

Same classes, functions, constructor arguments, defaults, submodule and parameter names as e3nn 0.6.0
(``e3nn/nn/models/v2106/gate_points_networks.py``); e3nn state dicts load with ``strict=True``. Compared to
v2103: the message passing of :mod:`fastso3.nn.models.v2106.gate_points_message_passing`, the
``smooth_finite`` radial basis, e3nn's own naive ``radius_graph`` (:func:`radius_graph`, no coincident
points) and, for :class:`NetworkForAGraphWithAttributes`, an optional ``edge_index`` (built from ``pos`` when
absent) and ``x`` as a synonym of ``node_input``.
"""

from __future__ import annotations

from typing import Dict

import torch

from ..v2103 import gate_points_networks as v2103
from .._common import data_batch, radius_graph, scatter
from .gate_points_message_passing import MessagePassing

__all__ = ["NetworkForAGraphWithAttributes", "SimpleNetwork", "radius_graph", "scatter"]


def _message_passing(
    irreps_node_input, irreps_node_hidden, irreps_node_output, irreps_node_attr, irreps_edge_attr, layers, fc_neurons,
    num_neighbors,
) -> MessagePassing:  # fmt: skip
    """v2106's message passing over ``[input] + layers * [hidden] + [output]``."""
    return MessagePassing(
        irreps_node_sequence=[irreps_node_input] + layers * [irreps_node_hidden] + [irreps_node_output],
        irreps_node_attr=irreps_node_attr,
        irreps_edge_attr=irreps_edge_attr,
        fc_neurons=fc_neurons,
        num_neighbors=num_neighbors,
    )


class SimpleNetwork(v2103.SimpleNetwork):
    r"""As :class:`fastso3.nn.models.v2103.gate_points_networks.SimpleNetwork` (same arguments, inputs and
    outputs), with v2106's message passing, ``smooth_finite`` radial basis and :func:`radius_graph`."""

    _basis = "smooth_finite"
    _make_message_passing = staticmethod(_message_passing)

    def _radius_graph(self, pos: torch.Tensor, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        edge_index = radius_graph(pos, self.max_radius, batch)
        return edge_index[0], edge_index[1]


class NetworkForAGraphWithAttributes(v2103.NetworkForAGraphWithAttributes):
    r"""As :class:`fastso3.nn.models.v2103.gate_points_networks.NetworkForAGraphWithAttributes` (same
    arguments and outputs), with v2106's message passing and ``smooth_finite`` basis.

    ``data``: ``pos`` ``(N, 3)``, ``node_input`` or ``x`` ``(N, irreps_node_input.dim)``, ``node_attr``
    ``(N, irreps_node_attr.dim)``, ``edge_attr`` ``(E, irreps_edge_attr.dim)``, optional ``edge_index`` ``(2, E)``
    int64 (default: :func:`radius_graph` of ``pos``; ``edge_attr`` must then match its edges) and ``batch``.
    """

    _basis = "smooth_finite"
    _make_message_passing = staticmethod(_message_passing)

    def preprocess(self, data: Dict[str, torch.Tensor]):
        """``(batch, node_input, node_attr, edge_attr, edge_src, edge_dst, edge_vec)`` of ``data``."""
        pos = data["pos"]
        batch = data_batch(data, pos)
        edge_index = data["edge_index"] if "edge_index" in data else radius_graph(pos, self.max_radius, batch)
        edge_src, edge_dst = edge_index[0], edge_index[1]
        edge_vec = pos[edge_src] - pos[edge_dst]
        node_input = data["x"] if "x" in data else data["node_input"]
        return batch, node_input, data["node_attr"], data["edge_attr"], edge_src, edge_dst, edge_vec

    def forward(self, data: Dict[str, torch.Tensor]) -> torch.Tensor:
        """See the class docstring."""
        return self._run(*self.preprocess(data))
