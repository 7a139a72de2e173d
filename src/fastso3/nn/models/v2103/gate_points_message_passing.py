"""e3nn's gated message passing of March 2021 (``e3nn.nn.models.v2103.gate_points_message_passing``), on fastso3.

Same classes, constructor arguments, submodule and parameter names as e3nn 0.6.0
(``e3nn/nn/models/v2103/gate_points_message_passing.py``); e3nn state dicts load with ``strict=True``.
"""

from __future__ import annotations

from typing import Any, Sequence

from ....core.irreps import Irreps
from .._common import Compose, GatedMessagePassing, tp_path_exists
from .points_convolution import Convolution

__all__ = ["Compose", "MessagePassing", "tp_path_exists"]


class MessagePassing(GatedMessagePassing):
    r"""``layers`` times (:class:`~fastso3.nn.models.v2103.points_convolution.Convolution` then
    :class:`~fastso3.nn.Gate` to the reachable part of ``irreps_node_hidden``), then a convolution to
    ``irreps_node_output``.

    ``forward(node_features, node_attr, edge_src, edge_dst, edge_attr, edge_scalars)``:
    ``(N, irreps_node_input.dim)``, ``(N, irreps_node_attr.dim)``, ``(E,)`` int64 twice (sender, receiver),
    ``(E, irreps_edge_attr.dim)``, ``(E, fc_neurons[0])`` -> ``(N, irreps_node_output.dim)``.

    Args:
        irreps_node_input, irreps_node_hidden, irreps_node_output: node irreps before, between and after layers.
        irreps_node_attr, irreps_edge_attr: node and edge attribute irreps (fixed through the layers).
        layers: number of gated layers.
        fc_neurons: radial network input and hidden sizes.
        num_neighbors: typical number of neighbours.
    """

    def __init__(
        self,
        irreps_node_input: Any,
        irreps_node_hidden: Any,
        irreps_node_output: Any,
        irreps_node_attr: Any,
        irreps_edge_attr: Any,
        layers: int,
        fc_neurons: Sequence[int],
        num_neighbors: float,
    ) -> None:
        super().__init__()
        self.num_neighbors = num_neighbors
        self.irreps_node_input = Irreps(irreps_node_input)
        self.irreps_node_hidden = Irreps(irreps_node_hidden)
        self.irreps_node_output = Irreps(irreps_node_output)
        self.irreps_node_attr = Irreps(irreps_node_attr)
        self.irreps_edge_attr = Irreps(irreps_edge_attr)
        sequence = [self.irreps_node_input] + layers * [self.irreps_node_hidden] + [self.irreps_node_output]
        self._build_layers(sequence, Convolution, fc_neurons, check_gates=False)
