"""Fully connected ("uvw") tensor products as one table-driven op over a 4-linear form.

The product of a uvw plan (``fastso3.core.uvw``) is ``out = dF/dg`` of

    F(g, x1, x2, W) = sum_p c_p sum_{ijk} C_ijk sum_{u,v,w} g[w,k] x1[u,i] x2[v,j] W_p[u,v,w]

whose slots are 0: ``g`` (the output / its cotangent), 1: ``x1``, 2: ``x2``, 3: ``W``. The op
``fastso3::uvw(a, b, c, table, roles, shared_weights, backend)`` contracts three slots into the fourth;
``roles`` names the slots of ``(out, a, b, c)``. Autograd permutes the roles, so derivatives of every order
are the same op. Per-sample tensors are ``(Z, dim)``; shared weights are ``(weight_numel,)`` and, as an
output, are summed over the samples.

Factored per-sample weights ``W = h M`` (``h: (Z, H)``, ``M: (H, weight_numel)``: a radial MLP's last hidden
layer and its last linear layer) make the 5-linear form ``F(g, x1, x2, h, M) = F(g, x1, x2, h M)``, slots
0: ``g``, 1: ``x1``, 2: ``x2``, 3: ``h``, 4: ``M``. ``fastso3::uvw_factored`` contracts it into any subset of
its slots; on CPU the weights and their gradient exist only per chunk of samples, never as ``(Z, weight_numel)``
tensors, which are the memory traffic of a convolution's radial MLP.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Optional

import numpy as np
import torch

from ..core.uvw import uvw_table
from . import registry
from ._checks import backend_for, check_shape, same_floats
from ._multilinear import register_multilinear_autograd

__all__ = ["register_uvw_plan", "uvw_factored_op", "uvw_factored_tensor_product", "uvw_op", "uvw_tensor_product"]

WEIGHT_SLOT = 3
# Index letters of each slot in the reference's einsums: g[w,k], x1[u,i], x2[v,j], W[u,v,w].
_LETTERS = ("zwk", "zui", "zvj", "zuvw")
_TABLES: dict[str, tuple] = {}


def _table_name(plan) -> str:
    return f"uvw:{hash(plan.key)}"


def register_uvw_plan(plan) -> str:
    """Register the table of a uvw plan (see ``fastso3.core.uvw``); returns its name."""
    name = _table_name(plan)
    if name not in _TABLES:
        _TABLES[name] = uvw_table(plan)
    return name


@functools.lru_cache(maxsize=None)
def _tensors(name: str, device: torch.device, dtype: torch.dtype) -> tuple:
    paths, pivots, coef, cg_idx, cg_val, dims = _TABLES[name]
    return (
        torch.from_numpy(paths).to(device),
        torch.from_numpy(pivots).to(device),
        torch.from_numpy(coef).to(device=device, dtype=dtype),
        torch.from_numpy(cg_idx).to(device),
        torch.from_numpy(cg_val).to(device=device, dtype=dtype),
        torch.tensor(dims, dtype=torch.int64),
    )


def _check(op: str, by_slot: list, table: str, shared: bool, backend: str) -> None:
    """What the kernels read: one float dtype and device, a known backend and table, and each slot's tensor
    ``(Z, dim of its slot)`` (shared weights: ``(weight_numel,)``); ``None`` marks the output slot."""
    first = same_floats(op, **{name: t for name, t in zip(("g", "x1", "x2", "weight"), by_slot)})
    backend_for("uvw_tensor_product", backend, first)
    if table not in _TABLES:
        raise ValueError(f"{op}: unknown table {table!r} (tables are registered from plans by the public functions)")
    dims = _TABLES[table][-1]
    z = next(t.shape[0] for s, t in enumerate(by_slot) if t is not None and t.dim() and not (s == WEIGHT_SLOT and shared))
    for s, (name, t) in enumerate(zip(("g", "x1", "x2", "weight"), by_slot)):
        if t is not None:
            check_shape(op, name, t, (dims[s],) if s == WEIGHT_SLOT and shared else (z, dims[s]))


def _out_shape(inputs, roles, table: str, shared: bool) -> tuple:
    dims = _TABLES[table][-1]
    if roles[0] == WEIGHT_SLOT and shared:
        return (dims[WEIGHT_SLOT],)
    z = next(t.shape[0] for t, r in zip(inputs, roles[1:]) if r != WEIGHT_SLOT or not shared)
    return (z, dims[roles[0]])


def _reference(by_slot: list, slot: int, out: torch.Tensor, table: str, shared: bool) -> torch.Tensor:
    """Per path, one einsum of the three given slots and the dense CG block into ``slot``."""
    paths, _, coef, cg_idx, cg_val, _ = _TABLES[table]
    letters = list(_LETTERS)
    if shared:
        letters[WEIGHT_SLOT] = "uvw"
    lead = out.shape[:-1]
    for (off_out, mw, d3, off1, mu, d1, off2, mv, d2, off_w, start, end), c in zip(paths.tolist(), coef):
        blocks = ((off_out, (mw, d3)), (off1, (mu, d1)), (off2, (mv, d2)), (off_w, (mu, mv, mw)))
        cg = np.zeros((d1, d2, d3))
        cg[tuple(cg_idx[start:end].T)] = cg_val[start:end]
        operands, subscripts = [], []
        for s, t in enumerate(by_slot):
            if s != slot:
                off, shape = blocks[s]
                size = int(np.prod(shape))
                batch = () if (s == WEIGHT_SLOT and shared) else (t.shape[0],)
                operands.append(t[..., off : off + size].reshape(*batch, *shape))
                subscripts.append(letters[s])
        block = torch.einsum(f"{','.join(subscripts)},ijk->{letters[slot]}", *operands, out.new_tensor(cg))
        off, shape = blocks[slot]
        size = int(np.prod(shape))
        out[..., off : off + size] += c * block.reshape(*lead, size)  # explicit size: lead may be (0,)
    return out


def _cpu(by_slot: list, slot: int, out: torch.Tensor, table: str, shared: bool, out2=None) -> torch.Tensor:
    """The kernel into ``out``; with ``out2`` (slot 1 only), slot 2 into ``out2`` in the same pass."""
    from .cpu.loader import library_function

    paths, pivots, coef, cg_idx, cg_val, dims = _tensors(table, out.device, out.dtype)
    ptr = ctypes.c_void_p
    suffix = "f32" if out.dtype == torch.float32 else "f64"
    fn = library_function(f"fastso3_uvw_{suffix}", ctypes.c_int, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ctypes.c_int64,
                          ptr, ctypes.c_int64, ctypes.c_int64, ptr, ptr, ptr, ptr, ptr, ctypes.c_int)  # fmt: skip
    strides, ptrs = [], []
    for s, t in enumerate(by_slot):
        if s == slot and out2 is None:  # the output slot: its pointer is unused (a pair reads x1 and x2)
            ptrs.append(out.data_ptr())
            strides.append(0)
        else:
            ptrs.append(t.data_ptr())
            strides.append(0 if (s == WEIGHT_SLOT and shared) else t.shape[-1])
    stride = torch.tensor(strides, dtype=torch.int64)
    nz = out.shape[0] if out.dim() == 2 else next(t.shape[0] for s, t in enumerate(by_slot) if s != slot and strides[s])
    fn(slot, *ptrs, stride.data_ptr(), out.data_ptr(), None if out2 is None else out2.data_ptr(),
       0 if out.dim() == 1 else out.shape[1], dims.data_ptr(), nz,
       paths.shape[0], paths.data_ptr(), pivots.data_ptr(), coef.data_ptr(), cg_idx.data_ptr(), cg_val.data_ptr(),
       torch.get_num_threads())  # fmt: skip
    return out


@torch.library.custom_op("fastso3::uvw", mutates_args=())
def uvw_op(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, table: str, roles: list[int], shared_weights: bool, backend: str
) -> torch.Tensor:
    """a, b, c: the tensors of slots ``roles[1:]`` -> the slot ``roles[0]`` (see the module docstring)."""
    if sorted(roles) != [0, 1, 2, 3]:
        raise ValueError(f"uvw: roles must be a permutation of 0..3, got {roles}")
    by_slot: list = [None] * 4
    for t, r in zip((a, b, c), roles[1:]):
        by_slot[r] = t
    _check("uvw", by_slot, table, shared_weights, backend)
    by_slot = [None if t is None else t.contiguous() for t in by_slot]
    registry.record("uvw_tensor_product", backend)
    shape = _out_shape((a, b, c), roles, table, shared_weights)
    if backend == "reference":  # accumulates path by path into zeros; the kernel writes every entry
        return _reference(by_slot, roles[0], a.new_zeros(shape), table, shared_weights)
    if backend == "triton":
        from .triton.uvw import uvw

        return uvw(by_slot, roles[0], table, _TABLES[table], shared_weights)
    return _cpu(by_slot, roles[0], a.new_empty(shape), table, shared_weights)


@uvw_op.register_fake
def _(a, b, c, table, roles, shared_weights, backend):
    return a.new_empty(_out_shape((a, b, c), roles, table, shared_weights))


def _setup(ctx, inputs, output):
    a, b, c, table, roles, shared, backend = inputs
    ctx.save_for_backward(a, b, c)
    ctx.table, ctx.roles, ctx.shared, ctx.backend = table, roles, shared, backend


def _backward(ctx, grad):
    saved = ctx.saved_tensors
    roles = ctx.roles
    if roles == [0, 1, 2, 3] and ctx.needs_input_grad[0] and ctx.needs_input_grad[1]:
        # the product's backward with both input gradients: one pass shares their common contraction
        gw = uvw_op(grad, saved[0], saved[1], ctx.table, [3, 0, 1, 2], ctx.shared, ctx.backend) if ctx.needs_input_grad[2] else None
        return *uvw_input_grads_op(grad, saved[0], saved[1], saved[2], ctx.table, ctx.shared, ctx.backend), gw, None, None, None, None
    grads = []
    for t in range(3):
        if not ctx.needs_input_grad[t]:
            grads.append(None)
            continue
        i, j = (k for k in range(3) if k != t)
        new_roles = [roles[t + 1], roles[0], roles[i + 1], roles[j + 1]]
        grads.append(uvw_op(grad, saved[i], saved[j], ctx.table, new_roles, ctx.shared, ctx.backend))
    return *grads, None, None, None, None


uvw_op.register_autograd(_backward, setup_context=_setup)


@torch.library.custom_op("fastso3::uvw_input_grads", mutates_args=())
def uvw_input_grads_op(
    g: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor, table: str, shared_weights: bool, backend: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Slots 1 and 2 from ``(g, x1, x2, w)``: the gradients of the product w.r.t. both inputs, ``(Z, dim1)``, ``(Z, dim2)``."""
    _check("uvw_input_grads", [g, x1, x2, w], table, shared_weights, backend)
    registry.record("uvw_tensor_product", backend)
    by_slot = [t.contiguous() for t in (g, x1, x2, w)]
    if backend == "reference":
        return tuple(_reference(by_slot, s, g.new_zeros(by_slot[s].shape), table, shared_weights) for s in (1, 2))
    if backend == "triton":  # one launch per slot
        from .triton.uvw import uvw

        return tuple(uvw(by_slot, s, table, _TABLES[table], shared_weights) for s in (1, 2))
    out1, out2 = g.new_empty(x1.shape), g.new_empty(x2.shape)
    _cpu(by_slot, 1, out1, table, shared_weights, out2)
    return out1, out2


@uvw_input_grads_op.register_fake
def _(g, x1, x2, w, table, shared_weights, backend):
    return g.new_empty(x1.shape), g.new_empty(x2.shape)


def _input_grads_setup(ctx, inputs, output):
    g, x1, x2, w, table, shared, backend = inputs
    ctx.save_for_backward(g, x1, x2, w)
    ctx.table, ctx.shared, ctx.backend = table, shared, backend


def _input_grads_backward(ctx, c1, c2):
    # (d1, d2) = (F_1(g, x2, w), F_2(g, x1, w)); with cotangents (c1, c2) in slots 1 and 2 each derivative is
    # the plain op with c1 or c2 standing in for the slot it is the cotangent of.
    g, x1, x2, w = ctx.saved_tensors
    t, sh, be, need = ctx.table, ctx.shared, ctx.backend, ctx.needs_input_grad
    gg = (uvw_op(c1, x2, w, t, [0, 1, 2, 3], sh, be) + uvw_op(x1, c2, w, t, [0, 1, 2, 3], sh, be)) if need[0] else None
    g1 = uvw_op(g, c2, w, t, [1, 0, 2, 3], sh, be) if need[1] else None
    g2 = uvw_op(g, c1, w, t, [2, 0, 1, 3], sh, be) if need[2] else None
    gw = (uvw_op(g, c1, x2, t, [3, 0, 1, 2], sh, be) + uvw_op(g, x1, c2, t, [3, 0, 1, 2], sh, be)) if need[3] else None
    return gg, g1, g2, gw, None, None, None


uvw_input_grads_op.register_autograd(_input_grads_backward, setup_context=_input_grads_setup)


def uvw_tensor_product(plan, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor, shared_weights: bool,
                       backend: str) -> torch.Tensor:  # fmt: skip
    """A registered uvw plan in e3nn's layouts.

    x1: ``(Z, irreps_in1.dim)``, x2: ``(Z, irreps_in2.dim)``, weight: ``(weight_numel,)`` if
    ``shared_weights`` else ``(Z, weight_numel)``; one dtype -> ``(Z, irreps_out.dim)``.
    """
    return uvw_op(x1, x2, weight, _table_name(plan), [0, 1, 2, 3], shared_weights, backend)


FACTOR_SLOTS = 5  # g, x1, x2, h, M


def _check_factored(slots: list, outputs: list, table: str) -> None:
    """What the kernel will read (it reads raw memory): slots present, one dtype and device, matching shapes."""
    if not outputs or len(set(outputs)) != len(outputs) or any(s not in range(FACTOR_SLOTS) for s in outputs):
        raise ValueError(f"uvw_factored: outputs must be distinct slots among 0..4, got {outputs}")
    if any(t is None for t in slots[1:]) or (slots[0] is None and outputs != [0]):
        raise ValueError("uvw_factored: x1, x2, h and m are required; g may be None only for outputs == [0]")
    same_floats("uvw_factored", **dict(zip(("g", "x1", "x2", "h", "m"), slots)))
    if table not in _TABLES:
        raise ValueError(f"uvw_factored: unknown table {table!r}")
    dims = _TABLES[table][-1]
    z, nh = slots[3].shape if slots[3].dim() == 2 else (-1, -1)
    expected = [(z, dims[0]), (z, dims[1]), (z, dims[2]), (z, nh), (nh, dims[WEIGHT_SLOT])]
    for name, t, shape in zip(("g", "x1", "x2", "h", "m"), slots, expected):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"uvw_factored: {name} must have shape {shape} (Z, H from h), got {tuple(t.shape)}")


def _factored_shape(slots: list, s: int, table: str) -> tuple:
    dims = _TABLES[table][-1]
    z, nh = slots[3].shape
    return (z, dims[s]) if s < 3 else ((z, nh) if s == 3 else (nh, dims[WEIGHT_SLOT]))


def _factored_composed(slots: list, outputs: list, table: str, uvw_slot) -> list:
    """The factored op through the materialised weights ``W = h M``: ``uvw_slot(by_slot, s)`` computes slot
    ``s`` of the 4-linear form; the weight gradient ``dW`` is projected, ``dh = dW M^T``, ``dM = h^T dW``."""
    g, x1, x2, h, m = slots
    by_slot = [g, x1, x2, h @ m]
    dw = uvw_slot(by_slot, WEIGHT_SLOT) if any(s >= 3 for s in outputs) else None
    return [uvw_slot(by_slot, s) if s < 3 else (dw @ m.T if s == 3 else h.T @ dw) for s in outputs]


def _factored_cpu(slots: list, outputs: list, table: str) -> list:
    from .cpu.loader import library_function

    paths, pivots, coef, cg_idx, cg_val, dims = _tensors(table, slots[1].device, slots[1].dtype)
    ptr = ctypes.c_void_p
    suffix = "f32" if slots[1].dtype == torch.float32 else "f64"
    fn = library_function(f"fastso3_uvw_factored_{suffix}", *([ptr] * 11), ctypes.c_int64, ctypes.c_int64,
                          ctypes.c_int64, ptr, ptr, ptr, ptr, ptr, ctypes.c_int)  # fmt: skip
    outs = {s: slots[1].new_empty(_factored_shape(slots, s, table)) for s in outputs}
    z, nh = slots[3].shape
    fn(*(None if t is None else t.data_ptr() for t in slots),
       *(outs[s].data_ptr() if s in outs else None for s in range(FACTOR_SLOTS)),
       dims.data_ptr(), nh, z, paths.shape[0], paths.data_ptr(), pivots.data_ptr(), coef.data_ptr(),
       cg_idx.data_ptr(), cg_val.data_ptr(), torch.get_num_threads())  # fmt: skip
    return [outs[s] for s in outputs]


@torch.library.custom_op("fastso3::uvw_factored", mutates_args=())
def uvw_factored_op(
    g: Optional[torch.Tensor], x1: torch.Tensor, x2: torch.Tensor, h: torch.Tensor, m: torch.Tensor, table: str,
    outputs: list[int], backend: str,
) -> list[torch.Tensor]:  # fmt: skip
    """The contractions of ``F(g, x1, x2, h, M)`` into the slots ``outputs``, each from the four others.

    g: ``(Z, dim_out)`` or None (only when ``outputs == [0]``), x1: ``(Z, dim1)``, x2: ``(Z, dim2)``,
    h: ``(Z, H)``, m: ``(H, weight_numel)``, one dtype -> one tensor per output slot, shaped like that slot.
    """
    _check_factored([g, x1, x2, h, m], outputs, table)
    backend_for("uvw_tensor_product", backend, x1)
    registry.record("uvw_tensor_product", backend)
    slots = [None if t is None else t.contiguous() for t in (g, x1, x2, h, m)]
    if backend == "cpu":
        return _factored_cpu(slots, outputs, table)
    if backend == "triton":  # the Triton uvw kernels on materialised weights
        from .triton.uvw import uvw

        return _factored_composed(slots, outputs, table, lambda by, s: uvw(by, s, table, _TABLES[table], False))
    dims = _TABLES[table][-1]
    return _factored_composed(
        slots, outputs, table, lambda by, s: _reference(by, s, x1.new_zeros(x1.shape[0], dims[s]), table, False)
    )


@uvw_factored_op.register_fake
def _(g, x1, x2, h, m, table, outputs, backend):
    slots = [g, x1, x2, h, m]
    _check_factored(slots, outputs, table)
    return [x1.new_empty(_factored_shape(slots, s, table)) for s in outputs]


register_multilinear_autograd(uvw_factored_op, 5)


def uvw_factored_tensor_product(plan, x1: torch.Tensor, x2: torch.Tensor, hidden: torch.Tensor, matrix: torch.Tensor,
                                backend: str) -> torch.Tensor:  # fmt: skip
    """A registered uvw plan with per-sample weights ``hidden @ matrix``, never materialised on CPU.

    x1: ``(Z, irreps_in1.dim)``, x2: ``(Z, irreps_in2.dim)``, hidden: ``(Z, H)``, matrix: ``(H, weight_numel)``;
    one dtype -> ``(Z, irreps_out.dim)``.
    """
    return uvw_factored_op(None, x1, x2, hidden, matrix, _table_name(plan), [0], backend)[0]
