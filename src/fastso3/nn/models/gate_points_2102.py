"""e3nn's gated point-cloud model of February 2021 (``e3nn.nn.models.gate_points_2102``), on fastso3.

As :mod:`~fastso3.nn.models.gate_points_2101`, but the radial networks also read the ``0e`` node attributes
of both ends of each edge (e3nn 0.6.0, ``e3nn/nn/models/gate_points_2102.py``). e3nn state dicts load with
``strict=True`` and give e3nn's outputs.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ...util.jit import compile_mode
from .._extract import ExtractIr
from . import gate_points_2101
from ._common import Compose, radius_graph, scatter, tp_path_exists
from .gate_points_2101 import smooth_cutoff

__all__ = ["Compose", "Convolution", "Network", "radius_graph", "scatter", "smooth_cutoff", "tp_path_exists"]


@compile_mode("script")  # as e3nn marks it; fastso3 has no TorchScript (NotImplementedError)
class Convolution(gate_points_2101.Convolution):
    r"""The convolution of :class:`fastso3.nn.models.gate_points_2101.Convolution`, its radial network fed with
    ``number_of_edge_features`` scalars per edge.

    ``forward(node_input, node_attr, edge_src, edge_dst, edge_attr, edge_features)``: ``edge_features`` is
    ``(E, number_of_edge_features)``; the other shapes as in gate_points_2101; returns ``(N, irreps_out.dim)``.
    """

    def __init__(
        self,
        irreps_in: Any,
        irreps_node_attr: Any,
        irreps_edge_attr: Any,
        irreps_out: Optional[Any],
        number_of_edge_features: int,
        radial_layers: int,
        radial_neurons: int,
        num_neighbors: float,
    ) -> None:
        super().__init__(
            irreps_in, irreps_node_attr, irreps_edge_attr, irreps_out, number_of_edge_features, radial_layers,
            radial_neurons, num_neighbors,
        )  # fmt: skip

    def forward(
        self,
        node_input: torch.Tensor,
        node_attr: torch.Tensor,
        edge_src: torch.Tensor,
        edge_dst: torch.Tensor,
        edge_attr: torch.Tensor,
        edge_features: torch.Tensor,
    ) -> torch.Tensor:
        return super().forward(node_input, node_attr, edge_src, edge_dst, edge_attr, edge_features)


class Network(gate_points_2101.Network):
    r"""The network of :class:`fastso3.nn.models.gate_points_2101.Network` (same arguments, inputs and outputs)
    whose radial networks read ``[gaussians(r), z_0e[src], z_0e[dst]]``: ``number_of_basis + 2 *
    irreps_node_attr.count('0e')`` features per edge, ``z_0e`` the ``0e`` part of the node attributes
    (extracted by the submodule ``ext_z``).
    """

    _convolution = Convolution

    def _edge_features_setup(self) -> int:
        self.ext_z = ExtractIr(self.irreps_node_attr, "0e")
        return self.number_of_basis + 2 * self.irreps_node_attr.count("0e")

    def _edge_features(
        self, edge_length_embedded: torch.Tensor, z: torch.Tensor, edge_src: torch.Tensor, edge_dst: torch.Tensor
    ) -> torch.Tensor:
        scalar_z = self.ext_z(z)
        return torch.cat([edge_length_embedded, scalar_z[edge_src], scalar_z[edge_dst]], dim=1)
