"""Pieces shared by the e3nn 0.6.0 model zoo (``fastso3.nn.models.*``): graph helpers, the gated layer
schedule and the point convolution's common part.

e3nn repeats these in every model file (``e3nn/nn/models/gate_points_2101.py``, ``v2103/...``,
``v2106/...``); here they are written once and re-exported under e3nn's module names.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence

import torch

from ... import graph
from ...core.irreps import Irrep, Irreps
from ...kernels._checks import check_index, tracing
from ...math import soft_one_hot_linspace
from ...o3 import FullyConnectedTensorProduct, SphericalHarmonics, TensorProduct
from .._activation import Gate
from .._fc import FullyConnectedNet

#: e3nn's activations by parity of the scalar: even scalars silu / sigmoid gates, odd ones tanh.
ACT_SCALARS = {1: torch.nn.functional.silu, -1: torch.tanh}
ACT_GATES = {1: torch.sigmoid, -1: torch.tanh}


def tp_path_exists(irreps_in1: Any, irreps_in2: Any, ir_out: Any) -> bool:
    """Whether some irrep of ``irreps_in1`` times some irrep of ``irreps_in2`` contains ``ir_out``."""
    irreps_in1 = Irreps(irreps_in1).simplify()
    irreps_in2 = Irreps(irreps_in2).simplify()
    ir_out = Irrep(ir_out)
    return any(ir_out in ir1 * ir2 for _, ir1 in irreps_in1 for _, ir2 in irreps_in2)


def scatter(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum the rows of ``src`` ``(E, C)`` into ``dim_size`` rows by ``index`` ``(E,)`` int64: ``(dim_size, C)``.

    e3nn's special case of ``torch_scatter.scatter`` (``dim=0``, sum), on :func:`fastso3.graph.scatter_sum`.
    """
    return graph.scatter_sum(src, index, 0, dim_size)


def radius_graph(pos: torch.Tensor, r_max: float, batch: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Ordered pairs ``(i, j)`` of distinct points of the same structure with ``0 < |pos[i] - pos[j]| < r_max``.

    Args:
        pos: ``(N, 3)`` float positions.
        r_max: cutoff (> 0), same units as ``pos``.
        batch: optional ``(N,)`` int64 structure index per point (default: one structure).

    Returns:
        ``(2, E)`` int64 on ``pos.device``, sorted by row 0 then row 1 (e3nn's ``nonzero()`` order), every
        pair in both directions. e3nn's models use row 0 as the sender.

    The edge set of e3nn's naive ``radius_graph`` (``e3nn/nn/models/gate_points_2101.py``: ``cdist``, keep
    ``0 < r < r_max`` within a structure), decided here in float64 by :func:`fastso3.graph.radius_graph`.
    e3nn's ``cdist`` takes its matrix-product path above 25 points, where the diagonal rounds above 0 and
    self edges (with zero edge vectors) appear; fastso3 never adds them (docs/conventions.md).
    """
    src, dst = graph.radius_graph(pos, r_max, batch)
    # fastso3 sorts (src, dst) by dst then src; the pair set is symmetric, so (dst, src) is row-major order.
    pairs = torch.stack([dst, src])
    coincident = (pos[dst] == pos[src]).all(dim=-1)  # e3nn's ``r > 0``: no edge between coincident points
    return pairs[:, ~coincident]


def num_graphs(batch: torch.Tensor) -> int:
    """``max(batch) + 1`` (0 without nodes): the pooled output's number of rows."""
    return int(batch.max()) + 1 if batch.numel() > 0 else 0


def data_batch(data: dict, pos: torch.Tensor) -> torch.Tensor:
    """``data['batch']`` if given, else every node in structure 0 (``(N,)`` int64)."""
    if "batch" in data:
        return data["batch"]
    return pos.new_zeros(pos.shape[0], dtype=torch.long)


class Compose(torch.nn.Module):
    """``second(first(*inputs))``; exposes ``irreps_in`` / ``irreps_out`` of the two modules where they have them."""

    def __init__(self, first: torch.nn.Module, second: torch.nn.Module) -> None:
        super().__init__()
        self.first = first
        self.second = second
        if hasattr(first, "irreps_in"):
            self.irreps_in = first.irreps_in
        if hasattr(second, "irreps_out"):
            self.irreps_out = second.irreps_out

    def forward(self, *inputs: Any) -> Any:
        return self.second(self.first(*inputs))


def gated_layer(
    irreps_node: Irreps, irreps_edge_attr: Irreps, irreps_hidden: Irreps, *, simplify: bool, check_gates: bool
) -> Gate:
    """The :class:`~fastso3.nn.Gate` after a convolution from ``irreps_node``: the entries of ``irreps_hidden``
    that a product ``irreps_node x irreps_edge_attr`` can reach, scalars activated, the rest gated by as many
    ``0e`` gates (``0o`` when no ``0e`` path exists).

    ``simplify``: merge the scalar and gate irreps (e3nn's v2103/v2106; not 2101/2102). ``check_gates``: raise
    ValueError when no scalar path exists for needed gates (v2106; v2103 and before build ``0o`` gates anyway).
    """
    reachable = [(mul, ir) for mul, ir in irreps_hidden if tp_path_exists(irreps_node, irreps_edge_attr, ir)]
    irreps_scalars = Irreps([(mul, ir) for mul, ir in reachable if ir.l == 0])
    irreps_gated = Irreps([(mul, ir) for mul, ir in reachable if ir.l > 0])
    if tp_path_exists(irreps_node, irreps_edge_attr, "0e"):
        gate_ir = "0e"
    elif not check_gates or tp_path_exists(irreps_node, irreps_edge_attr, "0o"):
        gate_ir = "0o"
    elif irreps_gated.dim > 0:
        raise ValueError(
            f"irreps_node={irreps_node} times irreps_edge_attr={irreps_edge_attr} is unable to produce gates "
            f"needed for irreps_gated={irreps_gated}; add scalars to the node or edge irreps"
        )
    else:
        gate_ir = "0e"  # no gated irreps: no gates are built
    irreps_gates = Irreps([(mul, gate_ir) for mul, _ in irreps_gated])
    if simplify:
        irreps_scalars, irreps_gates = irreps_scalars.simplify(), irreps_gates.simplify()
    return Gate(
        irreps_scalars,
        [ACT_SCALARS[ir.p] for _, ir in irreps_scalars],
        irreps_gates,
        [ACT_GATES[ir.p] for _, ir in irreps_gates],
        irreps_gated,
    )


class PointConvolution(torch.nn.Module):
    """The part every e3nn point convolution shares: ``sc``, ``lin1``, ``fc``, ``tp``, ``lin2`` (e3nn's names).

    Subclasses call :meth:`_build` in ``__init__`` and :meth:`_messages` in ``forward``:

    * ``sc = FCTP(irreps_in, irreps_node_attr, irreps_out)``: the self connection (if ``self_connection``);
    * ``lin1 = FCTP(irreps_in, irreps_node_attr, irreps_in)``;
    * ``tp``: ``uvu`` product of ``lin1``'s output (at the sender) with the edge attributes into ``irreps_mid``
      (each reachable irrep of ``irreps_out``, plus ``0e`` if ``keep_0e``, sorted), weighted per edge by
      ``fc(edge_scalars)``; summed at the receiver and divided by ``sqrt(num_neighbors)``;
    * ``lin2 = FCTP(irreps_mid, irreps_node_attr_output, irreps_out)`` (the receivers' attributes, by default
      ``irreps_node_attr``).
    """

    def _build(
        self,
        irreps_in: Irreps,
        irreps_node_attr: Irreps,
        irreps_edge_attr: Irreps,
        irreps_out: Irreps,
        fc_neurons: Sequence[int],
        num_neighbors: float,
        *,
        keep_0e: bool,
        require_mid: bool = False,
        self_connection: bool = True,
        irreps_node_attr_output: Optional[Irreps] = None,
    ) -> Irreps:
        """Create the shared submodules (in e3nn's registration order, so a seed gives e3nn's weights); return
        ``irreps_mid``. ``require_mid``: raise ValueError when ``irreps_mid`` is empty (v2106; e3nn asserts).
        """
        if isinstance(num_neighbors, bool) or not isinstance(num_neighbors, numbers.Real) or not num_neighbors > 0:
            raise ValueError(
                f"num_neighbors must be a positive number (typical neighbour count), got {num_neighbors!r}"
            )
        if self_connection:
            self.sc = FullyConnectedTensorProduct(irreps_in, irreps_node_attr, irreps_out)
        self.lin1 = FullyConnectedTensorProduct(irreps_in, irreps_node_attr, irreps_in)

        mid = []
        instructions = []
        for i, (mul, ir_in) in enumerate(irreps_in):
            for j, (_, ir_edge) in enumerate(irreps_edge_attr):
                for ir_out in ir_in * ir_edge:
                    if ir_out in irreps_out or (keep_0e and ir_out == Irrep(0, 1)):
                        instructions.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        irreps_mid, perm, _ = Irreps(mid).sort()
        if require_mid and irreps_mid.dim == 0:
            raise ValueError(
                f"irreps_node_input={irreps_in} times irreps_edge_attr={irreps_edge_attr} produces nothing in "
                f"irreps_node_output={irreps_out}"
            )
        instructions = [(i1, i2, perm[k], mode, train) for i1, i2, k, mode, train in instructions]
        tp = TensorProduct(
            irreps_in, irreps_edge_attr, irreps_mid, instructions, internal_weights=False, shared_weights=False
        )
        self.fc = FullyConnectedNet(list(fc_neurons) + [tp.weight_numel], torch.nn.functional.silu)
        self.tp = tp
        attr_out = irreps_node_attr if irreps_node_attr_output is None else irreps_node_attr_output
        self.lin2 = FullyConnectedTensorProduct(irreps_mid, attr_out, irreps_out)
        self._sqrt_num_neighbors = num_neighbors**0.5
        return irreps_mid

    def _messages(
        self,
        node_input: torch.Tensor,
        node_attr: torch.Tensor,
        edge_src: torch.Tensor,
        edge_dst: torch.Tensor,
        edge_attr: torch.Tensor,
        edge_scalars: torch.Tensor,
        num_receivers: int,
    ) -> torch.Tensor:
        """The neighbour sum ``(num_receivers, irreps_mid.dim)`` (before ``lin2``) over the edges
        ``edge_src -> edge_dst``; senders are the rows of ``node_input``."""
        op = type(self).__name__
        values = not tracing()
        check_index(op, "edge_src", edge_src, node_input.shape[0], what="senders", values=values)
        check_index(op, "edge_dst", edge_dst, num_receivers, length=edge_src.numel(), what="receivers", values=values)
        weight = self.fc(edge_scalars)
        node_features = self.lin1(node_input, node_attr)
        edge_features = self.tp(node_features[edge_src], edge_attr, weight)
        return scatter(edge_features, edge_dst, num_receivers).div(self._sqrt_num_neighbors)


class MixedPointConvolution(PointConvolution):
    """Shared constructor and ``forward`` of e3nn's v2103 / v2106 point convolutions (same arguments): the
    :class:`PointConvolution` with a self connection and ``keep_0e``, its output
    ``_mix(sc(x, z), lin2(m, z), m, z)`` for the neighbour sum ``m``.

    Subclasses set ``_require_mid`` (see :meth:`PointConvolution._build`) and define ``_build_mix(irreps_mid)``
    (creates the submodule registered after ``lin2``) and ``_mix(node_self_connection, node_conv_out,
    node_features, node_attr)`` (the output, ``(N, irreps_node_output.dim)``).
    """

    _require_mid: bool

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
            fc_neurons, num_neighbors, keep_0e=True, require_mid=self._require_mid,
        )  # fmt: skip
        self._build_mix(irreps_mid)

    def forward(
        self,
        node_input: torch.Tensor,
        node_attr: torch.Tensor,
        edge_src: torch.Tensor,
        edge_dst: torch.Tensor,
        edge_attr: torch.Tensor,
        edge_scalars: torch.Tensor,
    ) -> torch.Tensor:
        """``(N, irreps_node_input.dim)`` -> ``(N, irreps_node_output.dim)``; see the subclasses for the shapes."""
        node_self_connection = self.sc(node_input, node_attr)
        node_features = self._messages(
            node_input, node_attr, edge_src, edge_dst, edge_attr, edge_scalars, node_input.shape[0]
        )
        node_conv_out = self.lin2(node_features, node_attr)
        return self._mix(node_self_connection, node_conv_out, node_features, node_attr)


class GatedMessagePassing(torch.nn.Module):
    """Shared body of e3nn's v2103 / v2106 ``MessagePassing``: ``Compose(Convolution, Gate)`` per hidden irreps,
    then a last ``Convolution``; ``forward`` runs them in turn on the node features (the graph fixed)."""

    def _build_layers(
        self, irreps_node_sequence: Sequence[Irreps], convolution: type, fc_neurons: Sequence[int], *, check_gates: bool
    ) -> list:
        """Create ``self.layers``; return the irreps of the node features between layers (input first)."""
        self.layers = torch.nn.ModuleList()
        irreps_node = irreps_node_sequence[0]
        sequence = [irreps_node]
        for irreps_node_hidden in irreps_node_sequence[1:-1]:
            gate = gated_layer(
                irreps_node, self.irreps_edge_attr, irreps_node_hidden, simplify=True, check_gates=check_gates
            )
            conv = convolution(
                irreps_node, self.irreps_node_attr, self.irreps_edge_attr, gate.irreps_in, fc_neurons,
                self.num_neighbors,
            )  # fmt: skip
            self.layers.append(Compose(conv, gate))
            irreps_node = gate.irreps_out
            sequence.append(irreps_node)
        irreps_node_output = irreps_node_sequence[-1]
        self.layers.append(
            convolution(
                irreps_node, self.irreps_node_attr, self.irreps_edge_attr, irreps_node_output, fc_neurons,
                self.num_neighbors,
            )  # fmt: skip
        )
        sequence.append(irreps_node_output)
        return sequence

    def forward(
        self,
        node_features: torch.Tensor,
        node_attr: torch.Tensor,
        edge_src: torch.Tensor,
        edge_dst: torch.Tensor,
        edge_attr: torch.Tensor,
        edge_scalars: torch.Tensor,
    ) -> torch.Tensor:
        """``(N, irreps_node_input.dim)`` -> ``(N, irreps_node_output.dim)``; see the subclasses for the shapes."""
        for lay in self.layers:
            node_features = lay(node_features, node_attr, edge_src, edge_dst, edge_attr, edge_scalars)
        return node_features


class PointsNetwork(torch.nn.Module):
    """Shared edge embedding and pooling of e3nn's v2103 / v2106 ``gate_points_networks``.

    Subclasses set ``_basis`` (the radial basis of :func:`fastso3.math.soft_one_hot_linspace`) and call
    :meth:`_setup_edges` in ``__init__``.
    """

    _basis: str

    def _setup_edges(self, lmax: int, max_radius: float) -> None:
        self.lmax = lmax
        self.max_radius = max_radius
        self.number_of_basis = 10
        self._sh = SphericalHarmonics(list(range(lmax + 1)), True, normalization="component")

    def _embed(self, edge_vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``edge_vec`` ``(E, 3)`` -> (spherical harmonics ``(E, (lmax + 1)^2)``, length embedding ``(E, 10)``).

        The basis with ``cutoff=True`` goes to zero at ``max_radius``, so no extra smooth cutoff is needed.
        """
        edge_sh = self._sh(edge_vec)
        edge_length_embedding = soft_one_hot_linspace(
            edge_vec.norm(dim=1), 0.0, self.max_radius, self.number_of_basis, basis=self._basis, cutoff=True
        ).mul(self.number_of_basis**0.5)
        return edge_sh, edge_length_embedding

    def _pool(self, node_outputs: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """Sum per graph over ``sqrt(num_nodes)`` when ``pool_nodes``, else the node outputs."""
        if self.pool_nodes:
            return scatter(node_outputs, batch, num_graphs(batch)).div(self.num_nodes**0.5)
        return node_outputs
