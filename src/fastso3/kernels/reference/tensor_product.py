"""Readable reference execution of tensor-product and linear plans (pure torch, differentiable).

Each path is a short chain of two-operand einsums following the connection-mode table of
``fastso3.core.tensor_product``; paths are summed per output and the outputs concatenated in
``irreps_out`` order (zeros where no path reaches). Everything is plain autograd, so gradients and
double gradients come for free, and ``torch.compile(fullgraph=True)`` traces it.

The plan is only read: CG blocks and pair indices arrive as tensors (module buffers, or
:func:`tp_constants`, cached per (plan, device, dtype)), never rebuilt from numpy in a forward pass.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch._subclasses.fake_tensor import unset_fake_temporarily
from torch.fx.experimental.proxy_tensor import disable_proxy_modes_tracing

from ...core.tensor_product import LinearPlan, TensorProductPlan

__all__ = ["tensor_product", "tensor_product_right", "linear", "tp_constants"]

_CONSTANTS: dict = {}


def tp_constants(plan: TensorProductPlan, dtype: torch.dtype, device: torch.device | str = "cpu") -> tuple:
    """``(cg_blocks, pair_indices)`` for ``plan`` on ``device``: two tuples aligned with ``plan.paths``.

    ``cg_blocks[i]``: the ``(d1, d2, d3)`` CG block of path ``i`` in ``dtype`` (``None`` for empty
    paths; paths with the same ``(l1, l2, l3)`` share one tensor). ``pair_indices[i]``: the ``(2, P)``
    int64 ``u < v`` pairs for modes ``uvu<v``/``u<vw``, else ``None``. Cached per (plan, dtype,
    device); the tensors must not be modified.
    """
    device = torch.device(device)
    key = (plan.key, dtype, device)
    hit = _CONSTANTS.get(key)
    if hit is None:
        # Real tensors even when first called under torch.export / make_fx (fake or proxy modes): the
        # cache outlives the trace.
        with unset_fake_temporarily(), disable_proxy_modes_tracing():
            hit = _build_constants(plan, dtype, device)
        _CONSTANTS[key] = hit
    return hit


def _build_constants(plan: TensorProductPlan, dtype: torch.dtype, device: torch.device) -> tuple:
    blocks: dict = {}
    cgs = []
    pairs = []
    for p in plan.paths:
        if p.empty:
            cgs.append(None)
        else:
            if p.cg_key not in blocks:
                blocks[p.cg_key] = torch.from_numpy(p.cg.copy()).to(dtype=dtype, device=device)
            cgs.append(blocks[p.cg_key])
        pairs.append(None if p.pairs is None else torch.from_numpy(p.pairs.copy()).to(dtype=torch.long, device=device))
    return tuple(cgs), tuple(pairs)


def _batch_numel(shape: Sequence) -> int:
    n = 1
    for s in shape:
        n = n * s
    return n


def _contract_cg(x: torch.Tensor, y: torch.Tensor, cg: torch.Tensor, same_u: bool, in1_first: bool) -> torch.Tensor:
    """``sum_ij C_ijk x_ui y_vj``: ``(Z, m1, m2, d3)``, or ``(Z, m, d3)`` with ``same_u`` (u = v)."""
    if same_u:
        if in1_first:
            return torch.einsum("zujk,zuj->zuk", torch.einsum("zui,ijk->zujk", x, cg), y)
        return torch.einsum("zui,zuik->zuk", x, torch.einsum("zuj,ijk->zuik", y, cg))
    if in1_first:
        return torch.einsum("zujk,zvj->zuvk", torch.einsum("zui,ijk->zujk", x, cg), y)
    return torch.einsum("zui,zvik->zuvk", x, torch.einsum("zvj,ijk->zvik", y, cg))


def tensor_product(
    plan: TensorProductPlan,
    x1: torch.Tensor,
    x2: torch.Tensor,
    weight: Optional[torch.Tensor],
    cg_blocks: Sequence[Optional[torch.Tensor]],
    pair_indices: Optional[Sequence[Optional[torch.Tensor]]] = None,
    shared_weights: bool = True,
) -> torch.Tensor:
    """Evaluate ``plan`` on ``x1 (x) x2`` with ``weight``.

    Args:
        plan: the tensor product.
        x1: ``(..., irreps_in1.dim)``, float32 or float64.
        x2: ``(..., irreps_in2.dim)``, same dtype; batch dimensions broadcast with ``x1``'s.
        weight: ``(weight_numel,)`` if ``shared_weights``, else ``(..., weight_numel)`` (its batch
            dimensions broadcast too); ignored (may be None or empty) when ``plan.weight_numel == 0``.
        cg_blocks: one CG tensor per path of the plan, in the inputs' dtype (see :func:`tp_constants`).
        pair_indices: one ``(2, P)`` long tensor per ``uvu<v``/``u<vw`` path (None elsewhere); built
            on the fly when omitted.
        shared_weights: see ``weight``.

    Returns:
        ``(..., irreps_out.dim)``, with the broadcast batch shape.
    """
    has_w = plan.weight_numel > 0
    shapes = [x1.shape[:-1], x2.shape[:-1]]
    if has_w and not shared_weights:
        shapes.append(weight.shape[:-1])
    batch = torch.broadcast_shapes(*shapes)
    z = _batch_numel(batch)
    d_in1, d_in2, d_out = plan.irreps_in1.dim, plan.irreps_in2.dim, plan.irreps_out.dim
    x1 = x1.expand(*batch, d_in1).reshape(z, d_in1)
    x2 = x2.expand(*batch, d_in2).reshape(z, d_in2)
    if has_w and not shared_weights:
        weight = weight.expand(*batch, plan.weight_numel).reshape(z, plan.weight_numel)

    # One split per input instead of a slice per path: the backward of a split is one concatenation,
    # while every slice's backward would allocate and fill a full-size zero tensor.
    chunks1 = x1.split([mul_ir.dim for mul_ir in plan.irreps_in1], dim=1)
    chunks2 = x2.split([mul_ir.dim for mul_ir in plan.irreps_in2], dim=1)
    outs: list = [None] * len(plan.irreps_out)
    for p in plan.paths:
        if p.empty:
            continue
        x = chunks1[p.i_in1].reshape(z, p.mul1, p.d1)
        y = chunks2[p.i_in2].reshape(z, p.mul2, p.d2)
        cg = cg_blocks[p.index]
        in1_first = p.cg_first == "in1"
        w = None
        if p.has_weight:
            w = weight[..., p.weight_slice]
            w = w.reshape(p.path_shape) if shared_weights else w.reshape(z, *p.path_shape)
        mode = p.mode
        if mode in ("uvu<v", "u<vw"):
            pairs = pair_indices[p.index] if pair_indices is not None else None
            if pairs is None:
                pairs = torch.triu_indices(p.mul1, p.mul1, 1, device=x.device)
            prod = _contract_cg(x[:, pairs[0]], y[:, pairs[1]], cg, True, in1_first)  # (z, P, d3)
            if mode == "uvu<v":
                out = prod if w is None else prod * w.unsqueeze(-1)
            elif shared_weights:
                out = torch.einsum("zqk,qw->zwk", prod, w)
            else:
                out = torch.einsum("zqk,zqw->zwk", prod, w)
        elif mode in ("uuw", "uuu"):
            prod = _contract_cg(x, y, cg, True, in1_first)  # (z, m, d3)
            if mode == "uuu":
                out = prod if w is None else prod * w.unsqueeze(-1)
            elif w is None:
                out = prod.sum(1, keepdim=True)
            elif shared_weights:
                out = torch.einsum("zuk,uw->zwk", prod, w)
            else:
                out = torch.einsum("zuk,zuw->zwk", prod, w)
        elif mode == "uvw" and shared_weights:
            # Shared weights: contract them with x first (one large matmul) instead of building the
            # (z, m1, m2, d3) product of the two inputs.
            xw = torch.einsum("zui,uvw->zivw", x, w)
            out = torch.einsum("zivw,zvik->zwk", xw, torch.einsum("zvj,ijk->zvik", y, cg))
        else:
            prod = _contract_cg(x, y, cg, False, in1_first)  # (z, m1, m2, d3)
            if mode == "uvw":
                out = torch.einsum("zuvk,zuvw->zwk", prod, w)
            elif mode == "uvu":
                if w is None:
                    out = prod.sum(2)
                else:
                    out = torch.einsum("zuvk,uv->zuk" if shared_weights else "zuvk,zuv->zuk", prod, w)
            elif mode == "uvv":
                if w is None:
                    out = prod.sum(1)
                else:
                    out = torch.einsum("zuvk,uv->zvk" if shared_weights else "zuvk,zuv->zvk", prod, w)
            else:  # uvuv
                out = prod if w is None else prod * w.unsqueeze(-1)
        out = p.coefficient * out.reshape(z, p.mul_out * p.d3)
        prev = outs[p.i_out]
        outs[p.i_out] = out if prev is None else prev + out

    blocks = []
    for i_out, mul_ir in enumerate(plan.irreps_out):
        if mul_ir.dim == 0:
            continue
        block = outs[i_out]
        blocks.append(block if block is not None else x1.new_zeros(z, mul_ir.dim))
    if not blocks:
        return x1.new_zeros(*batch, d_out)
    result = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)
    return result.reshape(*batch, d_out)


def _diag_u(t: torch.Tensor) -> torch.Tensor:
    """``(z, u, i, [v,] k) -> (z, u, i, U, [v,] k)`` with ``delta_uU``."""
    if t.dim() == 4:  # z u i k
        return torch.diag_embed(t.permute(0, 2, 3, 1)).permute(0, 3, 1, 4, 2)  # z i k u U -> z u i U k
    return torch.diag_embed(t.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 5, 2, 3)  # z i v k u U -> z u i U v k


def tensor_product_right(
    plan: TensorProductPlan,
    x2: torch.Tensor,
    weight: Optional[torch.Tensor],
    cg_blocks: Sequence[Optional[torch.Tensor]],
    shared_weights: bool = True,
) -> torch.Tensor:
    """The operator ``R`` with ``tensor_product(x1, x2) = einsum('...i,...ij->...j', x1, R)``.

    Args:
        x2: ``(..., irreps_in2.dim)``; weight, cg_blocks, shared_weights: as in :func:`tensor_product`.

    Returns:
        ``(..., irreps_in1.dim, irreps_out.dim)``.

    Raises:
        NotImplementedError: for modes ``uvu<v`` and ``u<vw`` (as e3nn).
    """
    for p in plan.paths:
        if p.mode in ("uvu<v", "u<vw"):
            raise NotImplementedError(f"right() is not implemented for connection mode {p.mode!r}")
    has_w = plan.weight_numel > 0
    shapes = [x2.shape[:-1]]
    if has_w and not shared_weights:
        shapes.append(weight.shape[:-1])
    batch = torch.broadcast_shapes(*shapes)
    z = _batch_numel(batch)
    d_in1, d_in2, d_out = plan.irreps_in1.dim, plan.irreps_in2.dim, plan.irreps_out.dim
    x2 = x2.expand(*batch, d_in2).reshape(z, d_in2)
    if has_w and not shared_weights:
        weight = weight.expand(*batch, plan.weight_numel).reshape(z, plan.weight_numel)

    grid: dict = {}
    for p in plan.paths:
        if p.empty:
            continue
        y = x2[:, p.in2_slice].reshape(z, p.mul2, p.d2)
        yc = torch.einsum("zvj,ijk->zvik", y, cg_blocks[p.index])  # (z, m2, d1, d3)
        w = None
        if p.has_weight:
            w = weight[..., p.weight_slice]
            w = w.reshape(p.path_shape) if shared_weights else w.reshape(z, *p.path_shape)
        zz = "" if shared_weights else "z"
        m1, m2, mo = p.mul1, p.mul2, p.mul_out
        if p.mode == "uvw":
            r = torch.einsum(f"zvik,{zz}uvw->zuiwk", yc, w)
        elif p.mode == "uvu":
            t = yc.sum(1, keepdim=True).expand(z, m1, p.d1, p.d3) if w is None else torch.einsum(f"zvik,{zz}uv->zuik", yc, w)
            r = _diag_u(t)
        elif p.mode == "uvv":
            if w is None:
                r = yc.permute(0, 2, 1, 3).unsqueeze(1).expand(z, m1, p.d1, m2, p.d3)
            else:
                r = torch.einsum(f"zvik,{zz}uv->zuivk", yc, w)
        elif p.mode == "uuw":
            r = yc.unsqueeze(3) if w is None else torch.einsum(f"zuik,{zz}uw->zuiwk", yc, w)
        elif p.mode == "uuu":
            r = _diag_u(yc if w is None else yc * w[..., None, None])
        else:  # uvuv
            if w is None:
                t = yc.permute(0, 2, 1, 3).unsqueeze(1).expand(z, m1, p.d1, m2, p.d3)
            else:
                t = torch.einsum(f"zvik,{zz}uv->zuivk", yc, w)
            r = _diag_u(t)
        r = p.coefficient * r.reshape(z, m1 * p.d1, mo * p.d3)
        key = (p.i_in1, p.i_out)
        prev = grid.get(key)
        grid[key] = r if prev is None else prev + r

    rows = []
    for i1, mul_ir1 in enumerate(plan.irreps_in1):
        if mul_ir1.dim == 0:
            continue
        row = []
        for io, mul_iro in enumerate(plan.irreps_out):
            if mul_iro.dim == 0:
                continue
            block = grid.get((i1, io))
            row.append(block if block is not None else x2.new_zeros(z, mul_ir1.dim, mul_iro.dim))
        rows.append(torch.cat(row, dim=2) if row else x2.new_zeros(z, mul_ir1.dim, 0))
    if not rows:
        return x2.new_zeros(*batch, d_in1, d_out)
    return torch.cat(rows, dim=1).reshape(*batch, d_in1, d_out)


def linear(
    plan: LinearPlan,
    x: torch.Tensor,
    weight: Optional[torch.Tensor],
    bias: Optional[torch.Tensor],
    shared_weights: bool = True,
) -> torch.Tensor:
    """Evaluate the equivariant linear map ``plan`` (e3nn ``o3.Linear``).

    Args:
        x: ``(..., irreps_in.dim)``, or ``(..., f_in, irreps_in.dim)`` when the plan has ``f_in``.
        weight: ``([f_in, f_out,] weight_numel)`` if ``shared_weights``, else
            ``(..., [f_in, f_out,] weight_numel)`` (batch dimensions broadcast with ``x``'s).
        bias: ``([f_out,] bias_numel)`` if shared, else ``(..., [f_out,] bias_numel)``; ignored when
            ``plan.bias_numel == 0``.

    Returns:
        ``(..., irreps_out.dim)`` or ``(..., f_out, irreps_out.dim)``.
    """
    feat = plan.f_in is not None
    fi, fo = (plan.f_in, plan.f_out) if feat else (1, 1)
    nf = 1 if feat else 0  # feature axes of x / bias
    has_w, has_b = plan.weight_numel > 0, plan.bias_numel > 0
    shapes = [x.shape[: x.dim() - 1 - nf]]
    if not shared_weights:
        if has_w:
            shapes.append(weight.shape[: weight.dim() - 1 - 2 * nf])
        if has_b:
            shapes.append(bias.shape[: bias.dim() - 1 - nf])
    batch = torch.broadcast_shapes(*shapes)
    z = _batch_numel(batch)
    d_in, d_out = plan.irreps_in.dim, plan.irreps_out.dim
    x = x.expand(*batch, *((fi,) if feat else ()), d_in).reshape(z, fi, d_in)
    if not shared_weights:
        if has_w:
            weight = weight.expand(*batch, *((fi, fo) if feat else ()), plan.weight_numel)
            weight = weight.reshape(z, fi, fo, plan.weight_numel)
        if has_b:
            bias = bias.expand(*batch, *((fo,) if feat else ()), plan.bias_numel).reshape(z, fo, plan.bias_numel)
    elif has_w:
        weight = weight.reshape(fi, fo, plan.weight_numel)
    if shared_weights and has_b:
        bias = bias.reshape(1, fo, plan.bias_numel)

    outs: list = [None] * len(plan.irreps_out)
    for ins, ws in zip(plan.weight_instructions, plan.weight_slices):
        mul_in, ir = plan.irreps_in[ins.i_in]
        mul_out = plan.irreps_out[ins.i_out].mul
        if mul_in == 0 or mul_out == 0:
            continue
        xi = x[..., plan.in_slices[ins.i_in]].reshape(z, fi, mul_in, ir.dim)
        w = weight[..., ws]
        if feat:
            if shared_weights:
                out = torch.einsum("zxui,xyuw->zywi", xi, w.reshape(fi, fo, mul_in, mul_out))
            else:
                out = torch.einsum("zxui,zxyuw->zywi", xi, w.reshape(z, fi, fo, mul_in, mul_out))
        elif shared_weights:
            out = torch.einsum("zui,uw->zwi", xi.reshape(z, mul_in, ir.dim), w.reshape(mul_in, mul_out))
        else:
            out = torch.einsum("zui,zuw->zwi", xi.reshape(z, mul_in, ir.dim), w.reshape(z, mul_in, mul_out))
        out = ins.path_weight * out.reshape(z, fo, mul_out * ir.dim)
        prev = outs[ins.i_out]
        outs[ins.i_out] = out if prev is None else prev + out
    for ins, bs in zip(plan.bias_instructions, plan.bias_slices):
        if ins.path_shape[0] == 0:
            continue
        b = bias[..., bs]
        prev = outs[ins.i_out]
        outs[ins.i_out] = b.expand(z, fo, ins.path_shape[0]) if prev is None else prev + b

    blocks = []
    for i_out, mul_ir in enumerate(plan.irreps_out):
        if mul_ir.dim == 0:
            continue
        block = outs[i_out]
        blocks.append(block if block is not None else x.new_zeros(z, fo, mul_ir.dim))
    out_shape = (*batch, *((fo,) if feat else ()), d_out)
    if not blocks:
        return x.new_zeros(out_shape)
    result = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=-1)
    return result.reshape(out_shape)

