"""e3nn's gated message passing of June 2021 (``e3nn.nn.models.v2106.gate_points_message_passing``), on fastso3.

Same classes, functions, constructor arguments, submodule and parameter names as e3nn 0.6.0
(``e3nn/nn/models/v2106/gate_points_message_passing.py``); e3nn state dicts load with ``strict=True``.
"""

from __future__ import annotations

from typing import Any, Sequence

from ....core.irreps import Irreps
from .._common import Compose, GatedMessagePassing, radius_graph, tp_path_exists
from .points_convolution import Convolution

__all__ = ["Compose", "MessagePassing", "radius_graph", "tp_path_exists"]


class MessagePassing(GatedMessagePassing):
    r"""One gated layer per hidden entry of ``irreps_node_sequence`` (a
    :class:`~fastso3.nn.models.v2106.points_convolution.Convolution` then a :class:`~fastso3.nn.Gate` to its
    reachable part), then a convolution to ``irreps_node_sequence[-1]``.

    ``forward(node_features, node_attr, edge_src, edge_dst, edge_attr, edge_scalars)``:
    ``(N, irreps_node_input.dim)``, ``(N, irreps_node_attr.dim)``, ``(E,)`` int64 twice (sender, receiver),
    ``(E, irreps_edge_attr.dim)``, ``(E, fc_neurons[0])`` -> ``(N, irreps_node_output.dim)``.
    ``irreps_node_sequence`` (attribute) lists the irreps actually produced between the layers.

    Args:
        irreps_node_sequence: node irreps of the input, of each hidden layer and of the output.
        irreps_node_attr, irreps_edge_attr: node and edge attribute irreps (fixed through the layers).
        fc_neurons: radial network input and hidden sizes.
        num_neighbors: typical number of neighbours.

    Raises:
        ValueError: an empty ``irreps_node_sequence``, or a layer needs gates that no scalar
            path can produce.
    """

    def __init__(
        self,
        irreps_node_sequence: Sequence[Any],
        irreps_node_attr: Any,
        irreps_edge_attr: Any,
        fc_neurons: Sequence[int],
        num_neighbors: float,
    ) -> None:
        super().__init__()
        self.num_neighbors = num_neighbors
        irreps_node_sequence = [Irreps(irreps) for irreps in irreps_node_sequence]
        if not irreps_node_sequence:
            raise ValueError("irreps_node_sequence must list at least one Irreps (input, hidden..., output)")
        self.irreps_node_attr = Irreps(irreps_node_attr)
        self.irreps_edge_attr = Irreps(irreps_edge_attr)
        self.irreps_node_sequence = self._build_layers(irreps_node_sequence, Convolution, fc_neurons, check_gates=True)
        self.irreps_node_input = self.irreps_node_sequence[0]
        self.irreps_node_output = self.irreps_node_sequence[-1]
