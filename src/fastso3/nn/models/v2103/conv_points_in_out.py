"""e3nn's graph convolution between different input and output nodes
(``e3nn.nn.models.v2103.conv_points_in_out``), on fastso3.

Same constructor, submodules (``lin1``, ``fc``, ``tp``, ``lin2``) and numbers as e3nn 0.6.0
(``e3nn/nn/models/v2103/conv_points_in_out.py``); the neighbour sum uses :func:`fastso3.graph.scatter_sum`.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ....core.irreps import Irreps
from ....util.jit import compile_mode
from .._common import PointConvolution

__all__ = ["Convolution"]


@compile_mode("script")  # as e3nn marks it; fastso3 has no TorchScript (NotImplementedError)
class Convolution(PointConvolution):
    r"""Equivariant convolution from ``N_in`` input nodes to ``N_out`` output nodes (no self connection):
    ``out = lin2(sum_{edges to the output node} tp(lin1(x, z_in)[src], edge_attr, fc(edge_scalar_attr))
    / sqrt(num_neighbors), z_out)``.

    ``forward(node_input, node_attr_input, node_attr_output, edge_src, edge_dst, edge_attr, edge_scalar_attr)``:

    * ``node_input``: ``(N_in, irreps_node_input.dim)``; ``node_attr_input``: ``(N_in, irreps_node_attr_input.dim)``;
    * ``node_attr_output``: ``(N_out, irreps_node_attr_output.dim)`` (its rows are the output nodes);
    * ``edge_src``: ``(E,)`` int64 in ``[0, N_in)``; ``edge_dst``: ``(E,)`` int64 in ``[0, N_out)``;
    * ``edge_attr``: ``(E, irreps_edge_attr.dim)``; ``edge_scalar_attr``: ``(E, num_edge_scalar_attr)``;
    * returns ``(N_out, irreps_node_output.dim)``; float32 or float64 (the modules' dtype).

    Args:
        irreps_node_input, irreps_node_output: input and output node irreps.
        irreps_node_attr_input, irreps_node_attr_output: attribute irreps of the input and output nodes.
        irreps_edge_attr: edge attribute irreps.
        num_edge_scalar_attr: number of scalar edge features fed to the radial network ``fc``.
        radial_layers, radial_neurons: hidden layers of ``fc`` and their width.
        num_neighbors: typical number of neighbours (the sum is divided by its square root).
    """

    def __init__(
        self,
        irreps_node_input: Any,
        irreps_node_output: Optional[Any],
        irreps_node_attr_input: Any,
        irreps_node_attr_output: Any,
        irreps_edge_attr: Any,
        num_edge_scalar_attr: int,
        radial_layers: int,
        radial_neurons: int,
        num_neighbors: float,
    ) -> None:
        super().__init__()
        self.irreps_node_input = Irreps(irreps_node_input)
        self.irreps_node_attr_input = Irreps(irreps_node_attr_input)
        self.irreps_node_attr_output = Irreps(irreps_node_attr_output)
        self.irreps_edge_attr = Irreps(irreps_edge_attr)
        self.irreps_node_output = Irreps(irreps_node_output)
        self.num_neighbors = num_neighbors
        self._build(
            self.irreps_node_input, self.irreps_node_attr_input, self.irreps_edge_attr, self.irreps_node_output,
            [num_edge_scalar_attr] + radial_layers * [radial_neurons], num_neighbors, keep_0e=False,
            self_connection=False, irreps_node_attr_output=self.irreps_node_attr_output,
        )  # fmt: skip

    def forward(
        self,
        node_input: torch.Tensor,
        node_attr_input: torch.Tensor,
        node_attr_output: torch.Tensor,
        edge_src: torch.Tensor,
        edge_dst: torch.Tensor,
        edge_attr: torch.Tensor,
        edge_scalar_attr: torch.Tensor,
    ) -> torch.Tensor:
        node_output = self._messages(
            node_input, node_attr_input, edge_src, edge_dst, edge_attr, edge_scalar_attr, node_attr_output.shape[0]
        )
        return self.lin2(node_output, node_attr_output)
