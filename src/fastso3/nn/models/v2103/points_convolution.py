"""e3nn's point convolution of March 2021 (``e3nn.nn.models.v2103.points_convolution``), on fastso3.

Same constructor, submodules (``sc``, ``lin1``, ``fc``, ``tp``, ``lin2``, ``lin3``) and numbers as e3nn 0.6.0
(``e3nn/nn/models/v2103/points_convolution.py``); the neighbour sum uses :func:`fastso3.graph.scatter_sum`.
"""

from __future__ import annotations

import torch

from ....core.irreps import Irreps
from ....o3 import FullyConnectedTensorProduct
from ....util.jit import compile_mode
from .._common import MixedPointConvolution

__all__ = ["Convolution"]


@compile_mode("script")  # as e3nn marks it; fastso3 has no TorchScript (NotImplementedError)
class Convolution(MixedPointConvolution):
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

    _require_mid = False

    def _build_mix(self, irreps_mid: Irreps) -> None:
        self.lin3 = FullyConnectedTensorProduct(irreps_mid, self.irreps_node_attr, "0e")

    def _mix(
        self, node_self_connection: torch.Tensor, node_conv_out: torch.Tensor, node_features: torch.Tensor,
        node_attr: torch.Tensor,
    ) -> torch.Tensor:  # fmt: skip
        node_angle = 0.1 * self.lin3(node_features, node_attr)  # starts small: favours the self connection
        cos, sin = node_angle.cos(), node_angle.sin()
        m = self.sc.output_mask
        sin = (1 - m) + sin * m
        return cos * node_self_connection + sin * node_conv_out
