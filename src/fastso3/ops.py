"""Public low-level ops (validated wrappers around the registered ``torch.library`` ops)."""

from __future__ import annotations

import torch

from .kernels import registry
from .kernels._checks import check_index
from .kernels.ops import sparse_accumulate_op

__all__ = ["sparse_accumulate", "tensor_product_conv"]


def sparse_accumulate(
    X1: torch.Tensor,
    X2: torch.Tensor,
    idx_output: torch.Tensor,
    output_size: int,
    idx_1: torch.Tensor,
    idx_2: torch.Tensor,
    multipliers: torch.Tensor,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """Sparse accumulation: ``out[..., idx_output[k]] += X1[..., idx_1[k]] * X2[..., idx_2[k]] * multipliers[k]``.

    Args:
        X1: ``(..., n1)`` float32 or float64.
        X2: ``(..., n2)``, same leading shape, dtype and device as ``X1``.
        idx_output, idx_1, idx_2: ``(nnz,)`` int64, in ``[0, output_size)``, ``[0, n1)``, ``[0, n2)``.
        output_size: size of the last output dimension.
        multipliers: ``(nnz,)`` constants (no gradient), cast to ``X1``'s dtype.
        backend: None (device default), ``'cpu'`` or ``'reference'``; see ``fastso3.kernels.registry``.

    Returns:
        ``(..., output_size)``, differentiable to any order in ``X1`` and ``X2``.
    """
    for name, x in (("X1", X1), ("X2", X2)):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim == 0:
            raise TypeError(f"{name} must be a floating-point tensor with at least one dimension")
    if isinstance(output_size, bool) or not isinstance(output_size, int) or output_size < 0:
        raise ValueError(f"output_size must be a non-negative int, got {output_size!r}")
    if not isinstance(multipliers, torch.Tensor) or multipliers.ndim != 1:
        raise TypeError("multipliers must be a 1-D tensor")
    if multipliers.requires_grad:
        raise ValueError("multipliers are constants; gradients with respect to them are not supported")
    # the op checks shapes, dtypes and the indices (dtype, length, device, range), eager and compiled alike
    backend = registry.resolve_backend("sparse_accumulate", backend, X1.device, X1.dtype)
    mult = multipliers.to(device=X1.device, dtype=X1.dtype)
    return sparse_accumulate_op(X1, X2, idx_output, idx_1, idx_2, mult, output_size, backend)


def tensor_product_conv(
    node_features: torch.Tensor,
    edge_src: torch.Tensor,
    edge_dst: torch.Tensor,
    edge_attr: torch.Tensor,
    edge_weights: torch.Tensor,
    plan,
    num_nodes: int,
    *,
    deterministic: bool = True,
    backend: str | None = None,
) -> torch.Tensor:
    """Fused channel-wise tensor-product convolution (MACE/NequIP interaction):
    ``out[n] = sum_{e: edge_dst[e] = n} TP(node_features[edge_src[e]], edge_attr[e], edge_weights[e])``,
    without materialising per-edge features or outputs.

    Args:
        node_features: ``(N, irreps_in1.dim)`` float32 or float64, e3nn layout.
        edge_src, edge_dst: ``(E,)`` int64, senders in ``[0, N)`` and receivers in ``[0, num_nodes)``.
        edge_attr: ``(E, irreps_in2.dim)`` (e.g. spherical harmonics), same dtype and device.
        edge_weights: ``(E, weight_numel)`` per-edge path weights, e3nn's order, or a
            :class:`fastso3.o3.FactoredWeight` ``(hidden (E, H), matrix (H, weight_numel))`` (a radial MLP's last
            layer, :meth:`fastso3.nn.FullyConnectedNet.factored`): the weights ``hidden @ matrix``, which the
            ``'cpu'`` backend forms a block of edges at a time and never stores whole, nor their gradient.
        plan: a channel-wise ``TensorProductPlan`` (``fastso3.core.channelwise.is_channelwise``: weighted
            ``uvu`` paths, one multiplicity for ``irreps_in1`` and ``irreps_out``, multiplicity-1 ``irreps_in2``),
            or a ``fastso3.o3.TensorProduct`` with such a plan (its own weights are not used).
        num_nodes: the number of receivers ``N_out`` (rows of the output).
        deterministic: sum each receiver's edges in a fixed order (receiver-sorted segments, no atomics),
            so results are bitwise reproducible. ``False`` permits a non-deterministic kernel where one exists:
            the ``'triton'`` backend then adds edges into their receivers with atomics (every derivative too);
            on the CPU backends, which are always deterministic, it changes nothing.
        backend: None (device default), ``'cpu'``, ``'reference'`` or ``'triton'``; see ``fastso3.kernels.registry``.

    Returns:
        ``(num_nodes, irreps_out.dim)``, differentiable to any order in the float inputs (both factors of a
        ``FactoredWeight``).
    """
    from .core.channelwise import is_channelwise
    from .kernels.conv import ATOMIC_BACKEND, conv_channeled_op, csr, plan_table
    from .kernels.conv_factored import conv_factored_op
    from .o3 import FactoredWeight

    plan = getattr(plan, "plan", plan)
    if not hasattr(plan, "paths") or not is_channelwise(plan):
        raise ValueError("tensor_product_conv needs a channel-wise ('uvu', per-edge weights) tensor-product plan")
    factored = isinstance(edge_weights, FactoredWeight)
    if factored:  # H (hidden's columns) is free; the matrix's rows are checked against it below
        weights = (("edge_weights.hidden", edge_weights.hidden, None),
                   ("edge_weights.matrix", edge_weights.matrix, plan.weight_numel))  # fmt: skip
    else:
        weights = (("edge_weights", edge_weights, plan.weight_numel),)
    expected = (("node_features", node_features, plan.irreps_in1.dim), ("edge_attr", edge_attr, plan.irreps_in2.dim), *weights)
    for name, t, dim in expected:
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.ndim != 2 or (dim is not None and t.shape[1] != dim):
            got = f"{t.dtype} of shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a 2-D floating-point tensor (rows, {dim or 'H'}), got {got}")
        if t.dtype != node_features.dtype or t.device != node_features.device:
            raise TypeError(f"{name} ({t.dtype}, {t.device}) must match node_features ({node_features.dtype}, {node_features.device})")
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, torch.SymInt)) or num_nodes < 0:
        raise ValueError(f"num_nodes must be a non-negative int, got {num_nodes!r}")
    edges = edge_attr.shape[0]
    per_edge = edge_weights.hidden if factored else edge_weights
    if per_edge.shape[0] != edges:
        name = "edge_weights.hidden" if factored else "edge_weights"
        raise ValueError(f"{name} has {per_edge.shape[0]} rows but edge_attr has {edges}")
    if factored and edge_weights.matrix.shape[0] != per_edge.shape[1]:
        raise ValueError(f"edge_weights.matrix must have shape (H, {plan.weight_numel}) with H = {per_edge.shape[1]} "
                         f"(edge_weights.hidden's columns), got {tuple(edge_weights.matrix.shape)}")  # fmt: skip
    if not isinstance(deterministic, bool):
        raise TypeError(f"deterministic must be a bool, got {deterministic!r}")
    # one entry per edge_attr row, int64 for the CSR below; the op checks their values
    for name, idx in (("edge_src", edge_src), ("edge_dst", edge_dst)):
        check_index("tensor_product_conv", name, idx, 0, length=edges, device=node_features.device, values=False)
    backend = registry.resolve_backend("tensor_product_conv", backend, node_features.device, node_features.dtype)
    if backend == "triton" and not deterministic:
        backend = ATOMIC_BACKEND
    table = plan_table(plan)
    src, dst = edge_src.contiguous(), edge_dst.contiguous()
    (ptr_dst, perm_dst), (ptr_src, perm_src) = csr(dst, num_nodes), csr(src, node_features.shape[0])
    if factored:
        return conv_factored_op(None, node_features, edge_attr, edge_weights.hidden, edge_weights.matrix, [dst, src],
                                [ptr_dst, ptr_src], [perm_dst, perm_src], table, [0], backend)[0]  # fmt: skip
    # table slots: 0 output (gathered through dst), 1 node features (src), 2 edge_attr, 3 edge_weights (per edge)
    return conv_channeled_op(
        node_features, edge_weights, edge_attr, [dst, src, None, None], [ptr_dst, ptr_src, None, None],
        [perm_dst, perm_src, None, None], table, [0, 1, 3, 2], backend,
    )  # fmt: skip
