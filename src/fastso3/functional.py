"""Functional API: tensor products and linear maps as pure functions of tensors.

A plan (:class:`~fastso3.core.tensor_product.TensorProductPlan`, :class:`~fastso3.core.tensor_product.LinearPlan`)
says *what* to compute; these functions compute it for given inputs and weights, with no module, no
state and no parameters, so they compose with ``torch.func`` (``vmap``, ``grad``, ``jacrev``,
``functional_call``) and ``torch.compile(fullgraph=True)``::

    plan = fully_connected_tensor_product_plan("8x0e+8x1o", "0e+1o", "8x0e+8x1o")
    w = torch.randn(plan.weight_numel)
    out = tensor_product(plan, x1, x2, w)                                     # (..., out.dim)
    out = torch.func.vmap(tensor_product, (None, 0, 0, None))(plan, x1, x2, w)  # the same, shared weights
    out = torch.func.vmap(tensor_product, (None, 0, 0, 0))(plan, x1, x2, ws)    # one weight vector per sample

The numbers are those of the :mod:`fastso3.o3` modules built on the same plan (and of e3nn 0.6.0):
they run the same execution. Inputs may also be :class:`~fastso3.irreps_tensor.IrrepsTensor`; then
the output is one too, and paths that read a known-zero entry are skipped.

``torch.compile(fullgraph=True)`` (also ``dynamic=True``) and ``torch.export`` (strict or not,
dynamic batch) trace these functions; the plan's constant tensors (CG blocks) are made once, outside
the trace, and enter the graph as constants. With ``dynamic=True``, dynamo turns the ints it reads
from a plan held in a *local* variable into symbols: this works, but a batch size equal to one of
them (say ``weight_numel``) is unified with it and recompiles; plans held by an ``nn.Module`` or a
global stay static.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from .core.tensor_product import (
    LinearPlan,
    TensorProductPlan,
    linear_plan,
    tensor_product_plan,
)
from .core.tensor_product_builders import (
    elementwise_tensor_product_plan,
    full_tensor_product_plan,
    fully_connected_tensor_product_plan,
    tensor_square_plan,
)
from .irreps_tensor import IrrepsTensor
from .kernels.reference import tensor_product as _reference

__all__ = [
    "elementwise_tensor_product_plan",
    "full_tensor_product_plan",
    "fully_connected_tensor_product_plan",
    "linear",
    "linear_plan",
    "reduced_plan",
    "tensor_product",
    "tensor_product_plan",
    "tensor_square_plan",
]

Features = torch.Tensor | IrrepsTensor
Weights = torch.Tensor | Sequence[torch.Tensor] | None


# --------------------------------------------------------------------------------------------------
# Execution: the one place that calls the executor (switch it here when the dispatcher lands).
# --------------------------------------------------------------------------------------------------

class _Table:
    """A global namespace filled at trace time (see :func:`_tp_constants`)."""


_CONSTANTS = _Table()  # "plan<id>_<dtype>_<device>" -> (plan, (cg_blocks, pair_indices))


@torch.compiler.assume_constant_result
def _prepare_constants(plan: TensorProductPlan, dtype: torch.dtype, device: torch.device) -> str:
    """Store the constants of ``plan`` in ``_CONSTANTS`` and return their attribute name.

    Under torch.compile this runs eagerly, at trace time, and its result is a constant."""
    name = f"plan{id(plan)}_{str(dtype).replace('torch.', '')}_{device.type}{'' if device.index is None else device.index}"
    hit = getattr(_CONSTANTS, name, None)
    if hit is None or hit[0] is not plan:
        setattr(_CONSTANTS, name, (plan, _reference.tp_constants(plan, dtype, device)))
    return name


def _tp_constants(plan: TensorProductPlan, dtype: torch.dtype, device: torch.device) -> tuple:
    """``(cg_blocks, pair_indices)`` of ``plan`` (as ``tp_constants``).

    Under torch.compile the tensors are stored by :func:`_prepare_constants` at trace time and then
    read as attributes of a global object, so they reach the graph with a source and constant
    shapes: no per-call cost, and no symbolic shapes with ``dynamic=True``.
    """
    return getattr(_CONSTANTS, _prepare_constants(plan, dtype, device))[1]


def _execute_tensor_product(
    plan: TensorProductPlan,
    run_plan: TensorProductPlan,
    x1: torch.Tensor,
    x2: torch.Tensor,
    weights: torch.Tensor | None,
    shared_weights: bool,
) -> torch.Tensor:
    """Evaluate ``run_plan`` (``plan`` or a :func:`reduced_plan` of it: same paths, indices and weight
    layout, some paths marked empty) with the constants of ``plan``."""
    cgs, pairs = _tp_constants(plan, x1.dtype, x1.device)
    return _reference.tensor_product(run_plan, x1, x2, weights, cgs, pairs, shared_weights)


def _execute_linear(
    plan: LinearPlan, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, shared: bool
) -> torch.Tensor:
    return _reference.linear(plan, x, weight, bias, shared)


# --------------------------------------------------------------------------------------------------
# Known-zero inputs
# --------------------------------------------------------------------------------------------------

_REDUCED: dict = {}


def _build_reduced_plan(plan: TensorProductPlan, keep: tuple) -> TensorProductPlan:
    paths = tuple(p if k or p.empty else dataclasses.replace(p, empty=True, flops=0) for p, k in zip(plan.paths, keep))
    # Pure python (no numpy), so that torch.compile can trace it; output_mask is the full plan's.
    return dataclasses.replace(
        plan,
        paths=paths,
        flops=sum(p.flops for p in paths),
        key=plan.key + (("skip", keep),),
    )


def reduced_plan(plan: TensorProductPlan, zero1: Sequence[bool], zero2: Sequence[bool]) -> TensorProductPlan:
    """``plan`` with the paths that read a known-zero entry marked empty (skipped by executors).

    ``zero1``/``zero2``: one bool per entry of ``irreps_in1``/``irreps_in2`` (True: known zero). The
    result keeps the instructions, coefficients, path indices and weight layout of ``plan`` (so the
    same weight vector and the same constants apply) and has a different ``key``; its
    ``output_mask`` is still the full plan's. Returns ``plan`` itself when nothing is skipped.
    """
    zero1, zero2 = tuple(bool(z) for z in zero1), tuple(bool(z) for z in zero2)
    keep = tuple(not (zero1[p.i_in1] or zero2[p.i_in2]) for p in plan.paths)
    if all(k or p.empty for k, p in zip(keep, plan.paths)):
        return plan
    cache_key = (plan.key, keep)
    hit = _REDUCED.get(cache_key)
    if hit is not None:
        return hit
    out = _build_reduced_plan(plan, keep)
    if not torch.compiler.is_compiling():
        _REDUCED[cache_key] = out
    return out


def _output_zero_flags(plan: TensorProductPlan) -> tuple:
    """True for each output entry that no non-empty path with a non-zero coefficient reaches."""
    reached = [False] * len(plan.irreps_out)
    for p in plan.paths:
        if not p.empty and p.coefficient != 0:
            reached[p.i_out] = True
    return tuple(not r for r in reached)


# --------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------


def _unwrap(x: Any, irreps: Any, name: str) -> tuple:
    """``(tensor, zero_flags or None)``; checks the type and the last dimension (and the irreps)."""
    flags = None
    if isinstance(x, IrrepsTensor):
        if tuple(x.irreps) != tuple(irreps):
            raise ValueError(f"{name} has irreps {x.irreps}, but the plan expects {irreps}")
        flags = x.zero_flags
        x = x.array
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or an IrrepsTensor, got {type(x).__name__}")
    if x.dim() == 0 or x.shape[-1] != irreps.dim:
        raise ValueError(f"{name} must have shape (..., {irreps.dim}) (irreps {irreps}), got {tuple(x.shape)}")
    return x, flags


def _flatten_weight_list(shapes: list, weights: Sequence[torch.Tensor]) -> torch.Tensor:
    if len(weights) != len(shapes):
        raise ValueError(f"expected {len(shapes)} weight tensors (one per weighted instruction), got {len(weights)}")
    flat = []
    for i, (w, shape) in enumerate(zip(weights, shapes)):
        if not isinstance(w, torch.Tensor):
            raise TypeError(f"weights[{i}] must be a torch.Tensor, got {type(w).__name__}")
        n = len(shape)
        if w.dim() < n or tuple(w.shape[w.dim() - n :]) != tuple(shape):
            raise ValueError(f"weights[{i}] must have shape (...) + {tuple(shape)}, got {tuple(w.shape)}")
        size = 1
        for s in shape:
            size *= s
        flat.append(w.reshape(*w.shape[: w.dim() - n], size))
    batch = torch.broadcast_shapes(*[w.shape[:-1] for w in flat])
    return torch.cat([w.expand(*batch, w.shape[-1]) for w in flat], dim=-1)


def _tp_weights(plan: TensorProductPlan, weights: Weights, dtype: torch.dtype) -> tuple:
    """``(flat weights or None, shared)``."""
    if plan.weight_numel == 0:
        return None, True
    if weights is None:
        raise ValueError(f"this tensor product has {plan.weight_numel} weights: pass weights of shape ({plan.weight_numel},) or (..., {plan.weight_numel})")
    if isinstance(weights, (list, tuple)):
        weights = _flatten_weight_list([ins.path_shape for ins in plan.instructions if ins.has_weight], weights)
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"weights must be a torch.Tensor or a list of tensors, got {type(weights).__name__}")
    if weights.dim() == 0 or weights.shape[-1] != plan.weight_numel:
        raise ValueError(f"weights must have shape ({plan.weight_numel},) or (..., {plan.weight_numel}), got {tuple(weights.shape)}")
    if weights.dtype != dtype:
        raise TypeError(f"weights are {weights.dtype} but the inputs are {dtype}")
    return weights, weights.dim() == 1


# --------------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------------


def tensor_product(plan: TensorProductPlan, x1: Features, x2: Features, weights: Weights = None) -> Features:
    """Evaluate the tensor product ``plan`` on ``x1 (x) x2``.

    Args:
        plan: a :class:`~fastso3.core.tensor_product.TensorProductPlan` (see
            :func:`~fastso3.core.tensor_product.tensor_product_plan` and the builders such as
            :func:`fully_connected_tensor_product_plan`).
        x1: ``(..., irreps_in1.dim)``, float32 or float64, or an IrrepsTensor with ``irreps_in1``.
        x2: ``(..., irreps_in2.dim)``, same dtype, or an IrrepsTensor with ``irreps_in2``; the leading
            dimensions of ``x1`` and ``x2`` broadcast.
        weights: ``(weight_numel,)``, shared by all samples, or ``(..., weight_numel)``, one vector per
            sample (leading dimensions broadcast with the inputs'), or a list with one tensor of shape
            ``path_shape`` (or ``(...) + path_shape``) per weighted instruction. Not needed when the
            plan has no weights. The flat layout is the plan's (``PathPlan.weight_slice``).

    Returns:
        ``(..., irreps_out.dim)``; an :class:`~fastso3.irreps_tensor.IrrepsTensor` with
        ``irreps_out`` if an input is one: then the paths that read a known-zero entry are skipped
        and the outputs that no remaining path reaches are flagged as known zero.

    Under ``torch.func.vmap`` the logical shapes are the per-sample ones, so shared weights are
    ``in_dims=None`` and per-sample weights ``in_dims=0`` (both are ``(weight_numel,)`` inside).
    """
    if not isinstance(plan, TensorProductPlan):
        raise TypeError(f"plan must be a TensorProductPlan, got {type(plan).__name__}")
    wrap = isinstance(x1, IrrepsTensor) or isinstance(x2, IrrepsTensor)
    x1, zero1 = _unwrap(x1, plan.irreps_in1, "x1")
    x2, zero2 = _unwrap(x2, plan.irreps_in2, "x2")
    if x1.dtype != x2.dtype:
        raise TypeError(f"x1 and x2 must have the same dtype, got {x1.dtype} and {x2.dtype}")
    w, shared = _tp_weights(plan, weights, x1.dtype)
    run = plan
    if zero1 is not None or zero2 is not None:
        run = reduced_plan(
            plan,
            zero1 if zero1 is not None else (False,) * len(plan.irreps_in1),
            zero2 if zero2 is not None else (False,) * len(plan.irreps_in2),
        )
    out = _execute_tensor_product(plan, run, x1, x2, w, shared)
    if not wrap:
        return out
    return IrrepsTensor(plan.irreps_out, out, _output_zero_flags(run))


def linear(plan: LinearPlan, x: Features, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> Features:
    """Evaluate the equivariant linear map ``plan`` (a :class:`~fastso3.core.tensor_product.LinearPlan`,
    see :func:`~fastso3.core.tensor_product.linear_plan`), as ``o3.Linear`` does.

    Args:
        x: ``(..., irreps_in.dim)``, or ``(..., f_in, irreps_in.dim)`` when the plan has ``f_in``; or an
            IrrepsTensor with ``irreps_in``.
        weight: ``([f_in, f_out,] weight_numel)``, shared, or with extra leading dimensions
            ``(..., [f_in, f_out,] weight_numel)``, one per sample. Not needed if ``weight_numel == 0``.
        bias: ``([f_out,] bias_numel)`` or ``(..., [f_out,] bias_numel)``; default zeros.

    Returns:
        ``(..., [f_out,] irreps_out.dim)``; an IrrepsTensor with ``irreps_out`` if ``x`` is one, whose
        outputs are flagged known zero when every input that reaches them is (and no bias does).
    """
    if not isinstance(plan, LinearPlan):
        raise TypeError(f"plan must be a LinearPlan, got {type(plan).__name__}")
    wrap = isinstance(x, IrrepsTensor)
    x, zero = _unwrap(x, plan.irreps_in, "x")
    feat = plan.f_in is not None
    w_shape = (plan.f_in, plan.f_out, plan.weight_numel) if feat else (plan.weight_numel,)
    b_shape = (plan.f_out, plan.bias_numel) if feat else (plan.bias_numel,)
    if feat and (x.dim() < 2 or x.shape[-2] != plan.f_in):
        raise ValueError(f"x must have shape (..., {plan.f_in}, {plan.irreps_in.dim}) (f_in={plan.f_in}), got {tuple(x.shape)}")

    def check(t: torch.Tensor | None, shape: tuple, name: str) -> torch.Tensor | None:
        if shape[-1] == 0:
            return None
        if t is None:
            if name == "bias":
                return x.new_zeros(shape)
            raise ValueError(f"this linear map has {shape[-1]} weights: pass weight of shape {shape}")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < len(shape) or tuple(t.shape[t.dim() - len(shape) :]) != shape:
            raise ValueError(f"{name} must have shape {shape} or (...,) + {shape}, got {tuple(t.shape)}")
        if t.dtype != x.dtype:
            raise TypeError(f"{name} is {t.dtype} but x is {x.dtype}")
        return t

    w = check(weight, w_shape, "weight")
    b = check(bias, b_shape, "bias")
    per_sample = (w is not None and w.dim() > len(w_shape)) or (b is not None and b.dim() > len(b_shape))
    if per_sample:  # give the shared one a leading dimension so that both broadcast as per-sample
        if w is not None and w.dim() == len(w_shape):
            w = w.unsqueeze(0)
        if b is not None and b.dim() == len(b_shape):
            b = b.unsqueeze(0)
    out = _execute_linear(plan, x, w, b, not per_sample)
    if not wrap:
        return out
    zero_in = zero if zero is not None else (False,) * len(plan.irreps_in)
    reached = [False] * len(plan.irreps_out)
    for ins in plan.instructions:
        if ins.i_in == -1 or not zero_in[ins.i_in]:
            reached[ins.i_out] = True
    return IrrepsTensor(plan.irreps_out, out, tuple(not r for r in reached))
