"""Fused channel-wise convolution with factored per-edge weights ``w = h M``: ``h (E, H)`` a radial MLP's last
hidden layer and ``M (H, weight_numel)`` its last linear layer (``fastso3.nn.FullyConnectedNet.factored``).

The convolution's 4-linear form (``kernels/conv.py``) with ``h M`` in its weight slot is a 5-linear form
``F(g, x, y, h, M)``: slots 0 ``g`` (receivers, through ``edge_dst``), 1 ``x`` (senders, through ``edge_src``),
2 ``y`` (per edge), 3 ``h`` (per edge), 4 ``M``. ``fastso3::conv_factored`` contracts it into any subset of its
slots, so autograd (``_multilinear``) reuses the op for derivatives of every order.

``"cpu"`` never stores the ``(E, weight_numel)`` weights nor their gradient. It walks the edges in blocks of
about 16 MiB of weights, each block the edges of consecutive rows of a node slot's CSR (receivers for slot 0,
senders for slot 1): one GEMM forms the block's weights in a buffer reused by every block, the convolution
kernels run on the block (each row's edges all lie in its block, so a node output row is written once, in
the same fixed edge order as the unfactored kernel), and the block's weight gradient is projected at once
(``dh = dW M^T``, ``dM += h^T dW`` in block order). The per-edge outputs (slots 2 and 3) and ``M``'s gradient
(slot 4) ride along the blocks of the first node slot contracted (receivers when none is). The convolution
kernels' results do not depend on the thread count (the GEMMs are torch's).
``"reference"`` and ``"triton"`` multiply the factors first and run the convolution ops on ``h M``: the
reference twin.
"""

from __future__ import annotations

import threading

import torch

from ..core.channelwise import SLOT_ROLES
from . import registry
from ._checks import backend_for, check_shape, same_floats
from ._multilinear import multilinear_backward
from .channelwise import _BLOCK_BYTES, _TABLES, SCALAR_SLOT, _dim, _layout, new_output
from .conv import _impl, _to_rows, check_graph, cpu_kernel

__all__ = ["FACTOR_SLOTS", "conv_factored_op"]

FACTOR_SLOTS = 5
_NAMES = ("g", "x", "y", "h", "m")
_WEIGHT_SLOT = 3  # of the convolution's 4-linear form


def _shapes(slots: list, ptr: list, table: str) -> list[tuple]:
    """The shape of each of the five slots: (receivers, dim0), (senders, dim1), (E, dim2), (E, H), (H, dim3)."""
    edges, hidden = slots[3].shape
    return [(ptr[0].shape[0] - 1, _dim(table, 0)), (ptr[1].shape[0] - 1, _dim(table, 1)), (edges, _dim(table, 2)),
            (edges, hidden), (hidden, _dim(table, 3))]  # fmt: skip


def _check(slots: list, index: list, ptr: list, perm: list, table: str, outputs: list[int], backend: str) -> None:
    """What the kernels read: the slots, one float dtype and device, the graph (``conv.check_graph``), every
    slot's shape, a known backend."""
    op = "conv_factored"
    if not outputs or len(set(outputs)) != len(outputs) or any(s not in range(FACTOR_SLOTS) for s in outputs):
        raise ValueError(f"{op}: outputs must be distinct slots among 0..4, got {outputs}")
    if any(t is None for t in slots[1:]) or (slots[0] is None and outputs != [0]):
        raise ValueError(f"{op}: x, y, h and m are required; g may be None only for outputs == [0]")
    first = same_floats(op, **dict(zip(_NAMES, slots)))
    backend_for("tensor_product_conv", backend.partition(":")[0], first)
    if table not in _TABLES:
        raise ValueError(f"{op}: unknown table {table!r} (tables are registered from plans by the public functions)")
    if not (len(index) == len(ptr) == len(perm) == 2):
        raise ValueError(f"{op}: index, ptr and perm must be [receivers, senders] lists")
    edges = check_graph(op, slots[2], [*index, None, None], [*ptr, None, None], [*perm, None, None])
    if slots[3].dim() != 2:
        raise ValueError(f"{op}: h must have shape (E, H), got {tuple(slots[3].shape)}")
    for name, t, shape in zip(_NAMES, slots, _shapes(slots, ptr, table)):
        if t is not None:
            check_shape(op, name, t, (edges, *shape[1:]) if name in "yh" else shape)


def _row_blocks(ptr: torch.Tensor, block: int) -> list[tuple[int, int]]:
    """Row ranges ``[r0, r1)`` covering a CSR's rows in order, each of at most ``block`` edges plus one row's."""
    rows, edges = ptr.shape[0] - 1, int(ptr[-1])
    starts = torch.searchsorted(ptr, torch.tensor(range(block, edges, block), dtype=ptr.dtype, device=ptr.device))
    cuts = sorted({0, rows, *starts.tolist()})
    return list(zip(cuts[:-1], cuts[1:]))


def _composed(slots: list, index: list, ptr: list, perm: list, table: str, outputs: list[int], backend: str) -> list:
    """The reference twin (and the triton path): the convolution ops on the weights ``h M``."""
    g, x, y, h, m = slots
    by_slot = [g, x, y, h @ m]
    index4, ptr4, perm4 = [*index, None, None], [*ptr, None, None], [*perm, None, None]

    def contract(t):
        kind, roles = SLOT_ROLES[t]
        return _impl(kind, *(by_slot[r] for r in roles[1:]), index4, ptr4, perm4, table, list(roles), backend)

    dw = contract(_WEIGHT_SLOT) if 3 in outputs or 4 in outputs else None
    done = {3: None if dw is None else dw @ m.T, 4: None if dw is None else h.T @ dw}
    return [done[s] if s >= 3 else contract(s) for s in outputs]


_WORKSPACE = threading.local()  # per thread: {(purpose, dtype, device): the largest flat buffer used so far}


def _workspace(purpose: str, n: int, rows: int, m: torch.Tensor) -> torch.Tensor:
    """An ``(n, weight_numel)`` buffer for a block's weights (``purpose`` "w") or their gradient ("dw"), a view of
    a flat one kept per thread between calls (and shared by every weight_numel): a fresh 16 MiB buffer per call
    costs its page faults (and, with huge pages, a compaction stall) every time. Grows to ``max(n, rows)`` rows
    when too small."""
    buffers = _WORKSPACE.__dict__.setdefault("buffers", {})
    key, size = (purpose, m.dtype, m.device), n * m.shape[1]
    buffer = buffers.get(key)
    if buffer is None or buffer.numel() < size:
        buffer = buffers[key] = m.new_empty(max(n, rows) * m.shape[1])
    return buffer[:size].view(n, m.shape[1])


def _cpu(slots: list, index: list, ptr: list, perm: list, table: str, outputs: list[int], block: int) -> list:
    """The blocked CPU path (see the module docstring)."""
    g, x, y, h, m = slots
    outs = {s: new_output(*shape, like=x, zeros=s == 4) for s, shape in enumerate(_shapes(slots, ptr, table)) if s in outputs}
    node_slots = [s for s in outputs if s < 2] or [0]
    per_edge = [s for s in outputs if s >= 2]
    rows = {0: None if g is None else _to_rows(g, table, 0), 1: _to_rows(x, table, 1)}  # channels innermost, once
    typical = min(block, h.shape[0])  # rows of a buffer: a block's edges, most blocks
    weight_rows = _layout(table, 3, x.device)[2].shape  # (paths, C): a block's weights as channels-innermost rows
    for first, s in enumerate(node_slots):
        riders = per_edge if first == 0 else []
        contracted = [t for t, wanted in ((s, s in outs), (2, 2 in riders), (3, 3 in riders or 4 in riders)) if wanted]
        for r0, r1 in _row_blocks(ptr[s], block):
            j0, j1 = int(ptr[s][r0]), int(ptr[s][r1])
            edges = perm[s][j0:j1]
            n = j1 - j0
            # the block as a graph of its own: its edges in the CSR's order, the CSR of slot s's rows r0..r1
            local_index = [index[0].index_select(0, edges), index[1].index_select(0, edges), None, None]
            local_ptr = [None] * 4
            local_ptr[s] = ptr[s][r0 : r1 + 1] - j0
            hidden = h.index_select(0, edges)
            operands = {**rows, 2: y.index_select(0, edges)}
            if any(t != _WEIGHT_SLOT for t in contracted):
                operands[3] = torch.mm(hidden, m, out=_workspace("w", n, typical, m)).view(n, *weight_rows)
            for t in contracted:
                kind, roles = SLOT_ROLES[t]
                ops = [operands[r] for r in roles[1:]]
                if t == _WEIGHT_SLOT:
                    dw = cpu_kernel(kind, ops, local_index, local_ptr, [None] * 4, table, list(roles), n,
                                    _workspace("dw", n, typical, m))  # fmt: skip
                    if 3 in outs:
                        outs[3].index_copy_(0, edges, torch.mm(dw, m.T))
                    if 4 in outs:
                        outs[4].addmm_(hidden.T, dw)
                elif t == SCALAR_SLOT:
                    outs[2].index_copy_(0, edges, cpu_kernel(kind, ops, local_index, local_ptr, [None] * 4, table, list(roles), n))
                else:
                    cpu_kernel(kind, ops, local_index, local_ptr, [None] * 4, table, list(roles), n, outs[t][r0:r1])
    return [outs[s] for s in outputs]


@torch.library.custom_op("fastso3::conv_factored", mutates_args=())
def conv_factored_op(
    g: torch.Tensor | None, x: torch.Tensor, y: torch.Tensor, h: torch.Tensor, m: torch.Tensor,
    index: list[torch.Tensor], ptr: list[torch.Tensor], perm: list[torch.Tensor], table: str, outputs: list[int],
    backend: str,
) -> list[torch.Tensor]:  # fmt: skip
    """The contractions of ``F(g, x, y, h, M)`` (see the module docstring) into the slots ``outputs``.

    g: ``(receivers, dim_out)`` or None (only when ``outputs == [0]``), x: ``(senders, dim1)``, y: ``(E, dim2)``,
    h: ``(E, H)``, m: ``(H, weight_numel)``, one float dtype and device; index ``[edge_dst, edge_src]`` ``(E,)``
    int64, with their CSR forms ``ptr`` ``[(receivers + 1,), (senders + 1,)]`` and ``perm`` ``[(E,), (E,)]``
    (``conv.csr``) -> one tensor per output slot, shaped like that slot.
    """
    slots = [g, x, y, h, m]
    _check(slots, index, ptr, perm, table, outputs, backend)
    registry.record("tensor_product_conv", backend.partition(":")[0])
    if backend != "cpu":
        return _composed(slots, index, ptr, perm, table, outputs, backend)
    slots = [None if t is None else t.contiguous() for t in slots]
    block = max(1, _BLOCK_BYTES // max(1, m.shape[1] * m.element_size()))
    return _cpu(slots, [i.contiguous() for i in index], ptr, perm, table, outputs, block)


@conv_factored_op.register_fake
def _(g, x, y, h, m, index, ptr, perm, table, outputs, backend):
    shapes = _shapes([g, x, y, h, m], ptr, table)
    return [x.new_empty(shapes[s]) for s in outputs]


def _setup(ctx, inputs, output):
    *slots, index, ptr, perm, table, outputs, backend = inputs
    ctx.save_for_backward(*slots, *index, *ptr, *perm)
    ctx.table, ctx.outputs, ctx.backend = table, outputs, backend


def _backward(ctx, cotangents):
    saved = ctx.saved_tensors
    slots, graph = saved[:FACTOR_SLOTS], saved[FACTOR_SLOTS:]
    index, ptr, perm = list(graph[0:2]), list(graph[2:4]), list(graph[4:6])
    grads = multilinear_backward(
        slots, ctx.outputs, cotangents, ctx.needs_input_grad[:FACTOR_SLOTS],
        lambda args, targets: conv_factored_op(*args, index, ptr, perm, ctx.table, targets, ctx.backend),
    )  # fmt: skip
    return *grads, [None] * 2, [None] * 2, [None] * 2, None, None, None


conv_factored_op.register_autograd(_backward, setup_context=_setup)
