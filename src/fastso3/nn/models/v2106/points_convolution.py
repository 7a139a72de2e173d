"""e3nn's point convolution of June 2021 (``e3nn.nn.models.v2106.points_convolution``), on fastso3.

Same constructor, submodules (``sc``, ``lin1``, ``fc``, ``tp``, ``lin2``, ``alpha``) and numbers as e3nn 0.6.0
(``e3nn/nn/models/v2106/points_convolution.py``); compared to v2103 the learned angle is replaced by a
learned factor ``alpha`` (zero at initialisation, after https://arxiv.org/pdf/2002.10444.pdf).
"""

from __future__ import annotations

import torch

from ....core.irreps import Irreps
from ....o3 import FullyConnectedTensorProduct
from ....util.jit import compile_mode
from .._common import MixedPointConvolution, scatter

__all__ = ["Convolution", "scatter"]


@compile_mode("script")  # as e3nn marks it; fastso3 has no TorchScript (NotImplementedError)
class Convolution(MixedPointConvolution):
    r"""Equivariant convolution: ``out = sc(x, z) + alpha(m, z) lin2(m, z)``.

    ``m = sum_neighbours tp(lin1(x, z)[src], edge_attr, fc(edge_scalars)) / sqrt(num_neighbors)``;
    ``alpha`` is a ``0e`` per node, replaced by 1 on the output components the self connection cannot
    reach. ``alpha``'s weights start at zero, so a fresh layer is its self connection.

    ``forward(node_input, node_attr, edge_src, edge_dst, edge_attr, edge_scalars)``:

    * ``node_input``: ``(N, irreps_node_input.dim)``; ``node_attr``: ``(N, irreps_node_attr.dim)``;
    * ``edge_src``, ``edge_dst``: ``(E,)`` int64 in ``[0, N)`` (messages go from ``edge_src`` to ``edge_dst``);
    * ``edge_attr``: ``(E, irreps_edge_attr.dim)``; ``edge_scalars``: ``(E, fc_neurons[0])``;
    * returns ``(N, irreps_node_output.dim)``; float32 or float64 (the modules' dtype).

    Args:
        irreps_node_input, irreps_node_attr, irreps_edge_attr, irreps_node_output: the irreps.
        fc_neurons: sizes of the radial network's input and hidden layers (its output is ``tp.weight_numel``).
        num_neighbors: typical number of neighbours (the sum is divided by its square root).

    Raises:
        ValueError: ``irreps_node_input x irreps_edge_attr`` reaches nothing in ``irreps_node_output``, or
            the messages and node attributes cannot make the scalar ``alpha`` (e3nn: AssertionError).
    """

    _require_mid = True

    def _build_mix(self, irreps_mid: Irreps) -> None:
        self.alpha = FullyConnectedTensorProduct(irreps_mid, self.irreps_node_attr, "0e")
        with torch.no_grad():
            self.alpha.weight.zero_()
        if not self.alpha.output_mask[0] == 1.0:
            raise ValueError(
                f"irreps_mid={irreps_mid} and irreps_node_attr={self.irreps_node_attr} are not able to generate "
                "scalars (add a 0e to irreps_node_attr)"
            )

    def _mix(
        self, node_self_connection: torch.Tensor, node_conv_out: torch.Tensor, node_features: torch.Tensor,
        node_attr: torch.Tensor,
    ) -> torch.Tensor:  # fmt: skip
        alpha = self.alpha(node_features, node_attr)
        m = self.sc.output_mask
        alpha = (1 - m) + alpha * m
        return node_self_connection + alpha * node_conv_out
