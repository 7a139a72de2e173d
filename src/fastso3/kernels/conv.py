"""Fused channel-wise tensor-product convolution: the table ops of ``kernels/channelwise.py`` over graph edges.

The channel-wise product is a 4-linear form ``F(g, x, y, w)`` over a registered table (slot 0 the output,
1 the node features, 2 the edge attributes, 3 the per-edge weights). A convolution sums it over edges with
each slot's tensor gathered through an optional per-slot index (``None``: indexed by the edge itself):

    F_conv = sum_e F(g[index[0][e]], x[index[1][e]], y[index[2][e]], w[index[3][e]])

For a convolution ``index = [edge_dst, edge_src, None, None]``. Every op here is the partial derivative of
``F_conv`` with respect to one slot (``roles[0]``), a sum over the segments of that slot's index, so, as for
``cw_channeled``/``cw_scalar``, autograd only permutes ``roles`` and derivatives of every order reuse the two
ops with the same index arrays:

- ``conv_channeled(A, B, S)``: output in a channeled slot (0, 1 or 3),
- ``conv_scalar(A, B, D)``: output in the channel-free slot 2.

An indexed slot also carries its CSR form (``ptr[k]``: ``(rows + 1,)`` segment offsets, ``perm[k]``:
``(E,)`` edges sorted stably by ``index[k]``), built once per call by :func:`csr`. The ``"cpu"`` kernel
(``cpu/csrc/conv.cpp``) assigns each output row to one thread and adds its segment's edges in that fixed
order: bitwise reproducible, no atomics, no per-edge output. The ``"reference"`` backend gathers, runs the
per-sample table op and ``index_add_``s (deterministic on CPU; on CUDA as deterministic as ``index_add_``).
The ``"triton"`` kernels (``triton/conv.py``) walk the same segments in order, deterministically; the backend
string ``"triton:atomic"`` (``tensor_product_conv(deterministic=False)``) selects their atomic-add mode instead.
The mode travels in the string, so autograd hands it to every derivative without a schema change.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np
import torch

from . import registry
from ._checks import backend_for, check_index, check_shape, same_floats
from .channelwise import (
    _TABLES,
    SCALAR_SLOT,
    _channels,
    _dim,
    _entries,
    _layout,
    check_table_roles,
    _run,
    _tensors,
    new_output,
    register_channelwise_plan,
)

__all__ = ["ATOMIC_BACKEND", "conv_channeled_op", "conv_scalar_op", "csr", "plan_table"]

ATOMIC_BACKEND = "triton:atomic"  # the triton kernels with atomic adds into the output rows (not reproducible)

Indices = list[torch.Tensor | None]


# Run eagerly, as a constant, while torch.compile traces: registration is numpy work on the plan.
@torch.compiler.assume_constant_result
def plan_table(plan) -> str:
    """The registered table name of a channel-wise plan (registering it on first use)."""
    return register_channelwise_plan(plan)


def csr(index: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ptr (rows + 1,), perm (E,))`` int64 of ``index`` ``(E,)`` int64 with values in ``[0, rows)``.

    ``perm`` sorts the edges stably by ``index`` (a fixed summation order); segment ``r`` is
    ``perm[ptr[r]:ptr[r + 1]]``. No data-dependent shapes, so it traces under ``torch.compile``.
    """
    perm = torch.argsort(index, stable=True)
    ptr = torch.searchsorted(index[perm], torch.arange(rows + 1, device=index.device, dtype=index.dtype))
    return ptr, perm


def _edges(index: Indices, a: torch.Tensor) -> int:
    return next((i.shape[0] for i in index if i is not None), a.shape[0])


def _rows(slot: int, index: Indices, ptr: Indices, edges: int) -> int:
    """Number of samples (rows of the tensor) of a table slot: its CSR's rows if indexed, else one per edge."""
    return edges if index[slot] is None else ptr[slot].shape[0] - 1


# Public names of the index slots of a convolution table (``tensor_product_conv``'s arguments).
_INDEX_NAMES = {0: ("edge_dst", "receivers: num_nodes"), 1: ("edge_src", "senders: rows of node_features")}
_OPERAND_NAMES = {0: "the output cotangent", 1: "node_features", 2: "edge_attr", 3: "edge_weights"}


def _check(op, tensors, index: Indices, ptr: Indices, perm: Indices, table: str, roles: list[int], backend: str) -> int:
    """Edge count, after checking everything the kernels read (they read raw memory): dtypes, devices and
    the backend; each operand ``(rows of its slot, dim of its slot)``; each index, its CSR ``ptr`` and
    ``perm`` int64, of the right lengths, with values in range. Runs on data, so it lives in the op's
    implementation, which is eager even under ``torch.compile``."""
    a = same_floats(op, **{f"operand {k}": t for k, t in enumerate(tensors)})
    backend_for("tensor_product_conv", backend.partition(":")[0], a)
    check_table_roles(op, _TABLES, table, roles, 4)
    edges = check_graph(op, a, index, ptr, perm)
    for t, slot in zip(tensors, roles[1:]):
        check_shape(op, _OPERAND_NAMES[slot], t, (_rows(slot, index, ptr, edges), _dim(table, slot)))
    return edges


def check_graph(op: str, a: torch.Tensor, index: Indices, ptr: Indices, perm: Indices) -> int:
    """Edge count, after checking each slot's index, CSR ``ptr`` and ``perm`` (int64, on ``a``'s device, of the
    right lengths, values in range; ``ptr`` from 0 to E, never decreasing; ``perm`` a permutation of the edges,
    or two threads would write one per-edge row and leave another unwritten; ``a``: the first float operand, a
    per-edge one when no slot is indexed)."""
    if not (len(index) == len(ptr) == len(perm) == 4):
        raise ValueError(f"{op}: index, ptr and perm need one entry per table slot (4)")
    edges = _edges(index, a)
    for slot in range(4):
        if index[slot] is None:
            continue
        if ptr[slot] is None or perm[slot] is None:
            raise ValueError(f"{op}: the indexed slot {slot} needs its ptr and perm (see csr)")
        check_index(op, f"ptr[{slot}]", ptr[slot], edges + 1, device=a.device)
        rows = ptr[slot].shape[0] - 1
        if rows < 0:
            raise ValueError(f"{op}: ptr[{slot}] must have rows + 1 >= 1 entries")
        name, what = _INDEX_NAMES.get(slot, (f"index[{slot}]", "rows"))
        check_index(op, name, index[slot], rows, length=edges, device=a.device, what=what)
        check_index(op, f"perm[{slot}]", perm[slot], edges, length=edges, device=a.device)
        p = ptr[slot]
        if p[0] != 0 or p[-1] != edges or bool((p[1:] < p[:-1]).any()):
            raise ValueError(f"{op}: ptr[{slot}] must start at 0, never decrease and end at E = {edges} (see csr)")
        if edges and bool((torch.bincount(perm[slot], minlength=edges) != 1).any()):
            raise ValueError(f"{op}: perm[{slot}] must be a permutation of the {edges} edges (see csr)")
    return edges


@functools.cache
def _permutation(name: str, slot: int, device: torch.device) -> torch.Tensor | None:
    """``(rows * C,)`` int64: the column, in a channeled slot's layout, of each value of its channels-innermost
    ``(rows, C)`` form; None if the layout already is channels-innermost (the weights' layout)."""
    flat = _layout(name, slot, device)[2].reshape(-1).contiguous()
    if torch.equal(flat, torch.arange(flat.numel(), device=device)):
        return None
    return flat


def _to_rows(t: torch.Tensor, name: str, slot: int) -> torch.Tensor:
    """(Z, dim) in the slot's layout -> contiguous (Z, rows, C) channels-innermost."""
    perm = _permutation(name, slot, t.device)
    rows = t if perm is None else t.index_select(1, perm)  # index_select: far faster than t[:, flat]
    return rows.reshape(t.shape[0], *_layout(name, slot, t.device)[2].shape)


def _reference(kind, tensors, index, ptr, name, roles, edges):
    per_edge = [t if index[slot] is None else t[index[slot]] for t, slot in zip(tensors, roles[1:])]
    out = _run(kind, *per_edge, name, roles, "reference")
    dst = index[roles[0]]
    return out if dst is None else out.new_zeros(_rows(roles[0], index, ptr, edges), out.shape[1]).index_add_(0, dst, out)


def kernel_operands(kind: str, tensors, name: str, roles: list[int]) -> list[torch.Tensor]:
    """The operands of the CPU kernel: each channeled one as contiguous ``(rows, its rows, C)`` channels-innermost."""
    channeled = (0, 1, 2) if kind == "scalar" else (0, 1)  # which operands carry channels
    return [(_to_rows(t, name, slot) if i in channeled else t).contiguous() for i, (t, slot) in enumerate(zip(tensors, roles[1:]))]


def _cpu(kind, tensors, index, ptr, perm, name, roles, edges):
    return cpu_kernel(kind, kernel_operands(kind, tensors, name, roles), index, ptr, perm, name, roles, edges)


def cpu_kernel(kind, ops, index, ptr, perm, name, roles, edges, out=None):
    """The CPU kernel on :func:`kernel_operands`; ``out``: an optional contiguous ``(rows of the output slot, dim)``
    tensor to write into."""
    from .cpu.loader import library_function

    io, ia, ib, ic, coef = _entries(name, tuple(roles), kind, ops[0].device, ops[0].dtype)
    o = roles[0]
    n_out = _rows(o, index, ptr, edges)
    # the channeled kernel writes its rows straight into the output slot's layout (place: value i's column)
    place = _permutation(name, o, ops[0].device) if kind == "channeled" else None
    # per-edge outputs (the weight gradient: E x weights) are large and fresh: huge pages spare their page faults
    out = new_output(n_out, _dim(name, o), like=ops[0]) if out is None else out

    def address(t):
        return None if t is None else t.data_ptr()

    p, i64 = ctypes.c_void_p, ctypes.c_int64
    suffix = "f32" if out.dtype == torch.float32 else "f64"
    layout = [p, p, p] if kind == "channeled" else [p, p]  # ptr, perm (and place)
    fn = library_function(f"fastso3_conv_{kind}_{suffix}", *[p, i64, p] * 3, p, i64, i64, *layout, i64, i64, p, p, p, p, p, ctypes.c_int)
    index, ptr, perm = ([None if i is None else i.contiguous() for i in arrays] for arrays in (index, ptr, perm))
    operands = [v for t, slot in zip(ops, roles[1:]) for v in (t.data_ptr(), t.stride(0), address(index[slot]))]
    # per-edge output: visit the edges sorted by the widest gathered operand's index (cache reuse of its rows)
    gathered = [slot for slot in roles[1:] if index[slot] is not None]
    order = perm[o] if index[o] is not None or not gathered else perm[max(gathered, key=lambda k: _dim(name, k))]
    placed = [] if kind == "scalar" else [address(place)]
    fn(*operands, out.data_ptr(), n_out, out.stride(0), address(ptr[o]), address(order), *placed,
       _channels(name), coef.numel(), io.data_ptr(), ia.data_ptr(), ib.data_ptr(), ic.data_ptr(), coef.data_ptr(),
       torch.get_num_threads())  # fmt: skip
    return out


def _triton(kind, tensors, index, ptr, perm, name, roles, edges, atomic):
    from .triton.conv import conv

    device, o = tensors[0].device, roles[0]
    layouts = [None if slot == SCALAR_SLOT else _layout(name, slot, device)[:2] for slot in roles]
    segments = None if atomic or index[o] is None else (ptr[o], perm[o])
    return conv(kind, tensors, [index[slot] for slot in roles[1:]], layouts, index[o], segments,
                _rows(o, index, ptr, edges), _dim(name, o), _tensors(name, tuple(roles), device, tensors[0].dtype),
                _channels(name))  # fmt: skip


def _impl(kind, a, b, c, index, ptr, perm, table, roles, backend):
    tensors = (a, b, c)
    edges = _check(f"conv_{kind}", tensors, index, ptr, perm, table, roles, backend)
    backend, _, mode = backend.partition(":")  # "triton:atomic" -> ("triton", "atomic")
    registry.record("tensor_product_conv", backend)
    if backend == "triton":
        return _triton(kind, tensors, index, ptr, perm, table, roles, edges, mode == "atomic")
    if backend == "reference":
        return _reference(kind, tensors, index, ptr, table, roles, edges)
    return _cpu(kind, tensors, index, ptr, perm, table, roles, edges)


@torch.library.custom_op("fastso3::conv_channeled", mutates_args=())
def conv_channeled_op(
    a: torch.Tensor, b: torch.Tensor, s: torch.Tensor, index: Indices, ptr: Indices, perm: Indices,
    table: str, roles: list[int], backend: str,
) -> torch.Tensor:  # fmt: skip
    """a, b: ``(rows, dim)`` channeled, s: ``(rows, ns)`` -> ``(rows_out, dim_out)``; ``roles`` = table slots of
    (out, a, b, s); ``index``/``ptr``/``perm``: per table slot (see the module docstring)."""
    return _impl("channeled", a, b, s, index, ptr, perm, table, roles, backend)


@torch.library.custom_op("fastso3::conv_scalar", mutates_args=())
def conv_scalar_op(
    a: torch.Tensor, b: torch.Tensor, d: torch.Tensor, index: Indices, ptr: Indices, perm: Indices,
    table: str, roles: list[int], backend: str,
) -> torch.Tensor:  # fmt: skip
    """a, b, d: ``(rows, dim)`` channeled -> ``(rows_out, n_out)`` in the channel-free slot; as ``conv_channeled``."""
    return _impl("scalar", a, b, d, index, ptr, perm, table, roles, backend)


def _fake(a, b, c, index, ptr, perm, table, roles, backend):
    return a.new_empty(_rows(roles[0], index, ptr, _edges(index, a)), _dim(table, roles[0]))


conv_channeled_op.register_fake(_fake)
conv_scalar_op.register_fake(_fake)


def _setup(ctx, inputs, output):
    a, b, c, index, ptr, perm, table, roles, backend = inputs
    ctx.save_for_backward(a, b, c, *index, *ptr, *perm)
    ctx.table, ctx.roles, ctx.backend = table, roles, backend


def _saved(ctx):
    a, b, c, *rest = ctx.saved_tensors
    return a, b, c, (rest[0:4], rest[4:8], rest[8:12], ctx.table)


def _channeled_backward(ctx, g):
    a, b, s, (ix, pt, pm, t) = _saved(ctx)
    o, ra, rb, rs = ctx.roles
    be, need = ctx.backend, ctx.needs_input_grad
    ga = conv_channeled_op(g, b, s, ix, pt, pm, t, [ra, o, rb, rs], be) if need[0] else None
    gb = conv_channeled_op(a, g, s, ix, pt, pm, t, [rb, ra, o, rs], be) if need[1] else None
    gs = conv_scalar_op(g, a, b, ix, pt, pm, t, [rs, o, ra, rb], be) if need[2] else None
    return ga, gb, gs, None, None, None, None, None, None


def _scalar_backward(ctx, g):
    a, b, d, (ix, pt, pm, t) = _saved(ctx)
    o, ra, rb, rd = ctx.roles
    be, need = ctx.backend, ctx.needs_input_grad
    ga = conv_channeled_op(b, d, g, ix, pt, pm, t, [ra, rb, rd, o], be) if need[0] else None
    gb = conv_channeled_op(a, d, g, ix, pt, pm, t, [rb, ra, rd, o], be) if need[1] else None
    gd = conv_channeled_op(a, b, g, ix, pt, pm, t, [rd, ra, rb, o], be) if need[2] else None
    return ga, gb, gd, None, None, None, None, None, None


conv_channeled_op.register_autograd(_channeled_backward, setup_context=_setup)
conv_scalar_op.register_autograd(_scalar_backward, setup_context=_setup)
