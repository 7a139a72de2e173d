"""e3nn's point convolution of March 2021 (``e3nn.nn.models.v2103.points_convolution``), on fastso3.

Same constructor, submodules (``sc``, ``lin1``, ``fc``, ``tp``, ``lin2``, ``lin3``) and numbers as e3nn 0.6.0
(``e3nn/nn/models/v2103/points_convolution.py``); the neighbour sum uses :func:`fastso3.graph.scatter_sum`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ....core.irreps import Irreps
from ....o3 import FullyConnectedTensorProduct
from ....util.jit import compile_mode
from .._common import PointConvolution

__all__ = ["Convolution"]


@compile_mode("script")  # as e3nn marks it; fastso3 has no TorchScript (NotImplementedError)
class Convolution(PointConvolution):
    r"""Equivariant convolution mixing a self connection and a neighbour sum by a learned angle.

    ``out = cos(a) sc(x, z) + sin(a) lin2(m, z)`` with ``m = sum_neighbours tp(lin1(x, z)[src], edge_attr,
    fc(edge_scalars)) / sqrt(num_neighbors)`` and ``a = 0.1 lin3(m, z)`` (one ``0e`` per node; ``sin(a)`` is
    replaced by 1 on the output components the self connection cannot reach).

    ``forward(node_input, node_attr, edge_src, edge_dst, edge_attr, edge_scalars)``:

    * ``node_input``: ``(N, irreps_node_input.dim)``; ``node_attr``: ``(N, irreps_node_attr.dim)``;
    * ``edge_src``, ``edge_dst``: ``(E,)`` int64 in ``[0, N)`` (messages go from ``edge_src`` to ``edge_dst``);
    * ``edge_attr``: ``(E, irreps_edge_attr.dim)``; ``edge_scalars``: ``(E, fc_neurons[0])``;
    * returns ``(N, irreps_node_output.dim)``; float32 or float64 (the modules' dtype).

    Args:
        irreps_node_input, irreps_node_attr, irreps_edge_attr, irreps_node_output: the irreps.
        fc_neurons: sizes of the radial network's input and hidden layers (its output is ``tp.weight_numel``).
        num_neighbors: typical number of neighbours (the sum is divided by its square root).
    """

    def __init__(
        self,
        irreps_node_input: Any,
        irreps_node_attr: Any,
        irreps_edge_attr: Any,
        irreps_node_output: Any,
        fc_neurons: Sequence[int],
        num_neighbors: float,
    ) -> None:
        super().__init__()
        self.irreps_node_input = Irreps(irreps_node_input)
        self.irreps_node_attr = Irreps(irreps_node_attr)
        self.irreps_edge_attr = Irreps(irreps_edge_attr)
        self.irreps_node_output = Irreps(irreps_node_output)
        self.num_neighbors = num_neighbors
        irreps_mid = self._build(
            self.irreps_node_input, self.irreps_node_attr, self.irreps_edge_attr, self.irreps_node_output,
            fc_neurons, num_neighbors, keep_0e=True,
        )  # fmt: skip
        self.lin3 = FullyConnectedTensorProduct(irreps_mid, self.irreps_node_attr, "0e")

    def forward(
        self,
        node_input: torch.Tensor,
        node_attr: torch.Tensor,
        edge_src: torch.Tensor,
        edge_dst: torch.Tensor,
        edge_attr: torch.Tensor,
        edge_scalars: torch.Tensor,
    ) -> torch.Tensor:
        node_self_connection = self.sc(node_input, node_attr)
        node_features = self._messages(
            node_input, node_attr, edge_src, edge_dst, edge_attr, edge_scalars, node_input.shape[0]
        )
        node_conv_out = self.lin2(node_features, node_attr)
        node_angle = 0.1 * self.lin3(node_features, node_attr)  # starts small: favours the self connection
        cos, sin = node_angle.cos(), node_angle.sin()
        m = self.sc.output_mask
        sin = (1 - m) + sin * m
        return cos * node_self_connection + sin * node_conv_out
