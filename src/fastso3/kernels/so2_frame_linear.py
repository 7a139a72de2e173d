"""Per-order linear maps of padded SO(2) features in the edge frame, with the rotation fused in.

With ``x (B, C, L, N = 2L+1)`` padded features in the node frame, ``W (B, L, M, N)`` Wigner blocks
(``M = 2 mmax + 1`` rows, see :mod:`fastso3.kernels.so2_rotation`), ``A (M, H, L C)`` one matrix per order
(columns ordered ``(l, c)``) and ``e (M, B, H)`` hidden features per order,

    F(e, A, W, x) = sum_{m,b,h,l,c} e[m,b,h] A[m,h,(l,c)] (W x)[b,c,l,m]

where ``W x`` is the rotation into the edge frame (only each degree's block counts). ``W = None`` is the
identity (``x`` already in the frame, ``M = N``). ``fastso3::so2_frame_linear(e, A, W, x, index, num_nodes,
outputs, backend)`` contracts ``F`` into each slot of ``outputs`` (0: ``e``, 1: ``A``, 2: ``W``, 3: ``x``) from
the others:

- slot 0, ``e[m] = (W x)[m] A[m]^T``: rotate, then encode (the SO(2) bottleneck's first half);
- slot 3, ``x = W^T (e[m] A[m])_m``: decode, then rotate back (its second half; zero in the padding);
- slots 1 and 2: the gradients of the matrices and of the Wigner blocks.

With an ``index (B,)`` (int64, values in ``[0, num_nodes)``) ``x`` is a table of node features
``(num_nodes, C, L, N)`` and edge ``b`` reads row ``index[b]``: ``x[b]`` above becomes ``x[index[b]]``, so slot 0
gathers the senders' features (the gather fused into the rotation) and slot 3 sums each edge into its node, in
edge order (deterministic); per-edge features never reach memory. ``index = None`` (``num_nodes = 0``): ``x`` is
per edge.

Autograd permutes the slots (derivatives of every order are the same op). The CPU backend walks the edges in
blocks of 16 MB: each block is rotated into a reused buffer that stays in cache and multiplied there
(``torch.bmm`` into the output's rows), so the rotated features, ``(M, B, L, C)`` as large as ``x``, never reach
memory; with an index, a block's slot-3 output is summed into its nodes (``index_add_``) from a reused buffer. The
reference twin (any device) materialises them: a gather, one rotation (``so2_rotation``'s reference) and one
einsum per slot, and a scatter. Output layouts (every backend): ``e (M, B, H)``, ``A (M, H, L C)``, ``W (B, L, M, N)``,
``x (B, C, L, N)``, contiguous.
"""

from __future__ import annotations

from typing import Optional

import torch

from . import registry
from ._checks import check_index, check_slots
from ._multilinear import register_multilinear_autograd
from .so2_rotation import _cpu as _rotation_cpu
from .so2_rotation import _masks
from .so2_rotation import _reference as _rotation_reference

__all__ = ["so2_frame_linear_op"]

_BLOCK_BYTES = 16 << 20  # rotated features per block: in L3 between the rotation and its matmuls, and
# enough rows (~400 edges at C = 128, L = 6) for the matmuls to run near full speed


def _check(e, a, w, x, index, num_nodes: int, outputs: list) -> tuple[int, int, int, int, int]:
    """``(B, C, L, M, H)`` after checking what the kernels will read (the index's values: by the op's body)."""
    slots = (e, a, w, x)
    check_slots("so2_frame_linear", slots, outputs, optional=(2,))  # W = None is the identity
    if w is None and 2 in outputs and len(outputs) > 1:
        raise ValueError("so2_frame_linear: W is needed for outputs other than slot 2")
    given = {n: t for n, t in zip("eAWx", slots) if t is not None}
    first = next(iter(given.values()))
    if any(t.dtype != first.dtype or t.device != first.device for t in given.values()):
        raise TypeError("so2_frame_linear: " + ", ".join(f"{n} is {t.dtype} on {t.device}" for n, t in given.items()))
    if any(t.dim() != d for t, d in ((e, 3), (a, 3), (w, 4), (x, 4)) if t is not None):
        raise ValueError(
            "so2_frame_linear: expected e (M, B, H), A (M, H, L C), W (B, L, M, 2L+1), x (B, C, L, 2L+1), got "
            + ", ".join(f"{n} {tuple(t.shape)}" for n, t in given.items())
        )
    M, H, LC = a.shape if a is not None else (e.shape[0], e.shape[2], None)
    if index is None:
        if num_nodes != 0:
            raise ValueError(f"so2_frame_linear: num_nodes must be 0 without an index, got {num_nodes}")
        B = x.shape[0] if x is not None else e.shape[1]
    else:
        if num_nodes < 0:
            raise ValueError(f"so2_frame_linear: num_nodes must be >= 0, got {num_nodes}")
        check_index("so2_frame_linear", "index", index, num_nodes, device=first.device, values=False)
        B = index.shape[0]
    rows = B if index is None else num_nodes  # of x
    if outputs == [2]:  # W is the output: its shape follows x's
        L = x.shape[2]
    elif w is not None:  # read by the kernels: the whole shape must be right
        L = w.shape[1]
        if w.shape[0] != B or w.shape[2] != M or w.shape[3] != 2 * L + 1:
            raise ValueError(f"so2_frame_linear: W must have shape ({B}, L, {M}, 2L+1), got {tuple(w.shape)}")
    else:  # the identity: x is in the frame
        L = (M - 1) // 2
    if M % 2 == 0 or M > 2 * L + 1 or L < 1:
        raise ValueError(f"so2_frame_linear: the number of orders M = {M} must be odd, <= 2L+1 and L >= 1 (L = {L})")
    if x is not None:
        if x.shape[2:] != (L, 2 * L + 1) or x.shape[0] != rows:
            raise ValueError(f"so2_frame_linear: x must have shape ({rows}, C, {L}, {2 * L + 1}), got {tuple(x.shape)}")
        C = x.shape[1]
    else:
        if LC % L:
            raise ValueError(f"so2_frame_linear: A's last axis ({LC}) must be L C with L = {L}")
        C = LC // L
    if e is not None and e.shape != (M, B, H):
        raise ValueError(f"so2_frame_linear: e must have shape ({M}, {B}, {H}), got {tuple(e.shape)}")
    if a is not None and a.shape != (M, H, L * C):
        raise ValueError(f"so2_frame_linear: A must have shape ({M}, {H}, {L * C}), got {tuple(a.shape)}")
    return B, C, L, M, H


def _new_output(like: torch.Tensor, slot: int, dims: tuple, index, num_nodes: int) -> torch.Tensor:
    B, C, L, M, H = dims
    rows = B if index is None else num_nodes
    shape = ((M, B, H), (M, H, L * C), (B, L, M, 2 * L + 1), (rows, C, L, 2 * L + 1))[slot]
    return like.new_zeros(shape) if slot == 1 or (slot == 3 and index is not None) else like.new_empty(shape)


def _reference(slots: list, slot: int, dims: tuple, index, num_nodes: int) -> torch.Tensor:
    """Gather ``x``'s rows, materialise the rotated features (``x``'s slot) or the decoded ones (``e A``), then one
    einsum (and the sum into the nodes for slot 3)."""
    e, a, w, x = slots
    B, C, L, M, _ = dims
    if index is not None:
        x = None if x is None else x.index_select(0, index)
        if slot == 3:
            per_edge = _reference([e, a, w, None], 3, dims, None, 0)
            return per_edge.new_zeros(num_nodes, *per_edge.shape[1:]).index_add_(0, index, per_edge)
    if slot in (0, 1):
        if w is None:  # identity: the block's columns of x as they are
            y = torch.where(_masks(L, M, x.device)[1][None, None, :, 0], x, 0)
        else:
            y = _rotation_reference([None, w, x], 0, x, L, M)
        y = y.permute(3, 0, 2, 1).reshape(M, B, L * C)
        return torch.einsum("mbk,mhk->mbh", y, a) if slot == 0 else torch.einsum("mbh,mbk->mhk", e, y)
    z = torch.einsum("mbh,mhk->mbk", e, a).reshape(M, B, L, C).permute(1, 3, 2, 0)
    if slot == 3 and w is None:
        return torch.where(_masks(L, M, z.device)[0][None, None, :, :, 0], z, 0)
    return _rotation_reference([z, w, x], slot - 1, z, L, M)


def _orders(M: int, C: int) -> list[tuple[slice, int]]:
    """Per ``|m| = k``: the orders ``+-k`` (a strided slice of the ``M`` axis) and the first column ``(l, c)`` of
    their degrees ``>= k``, the only ones they have (earlier columns of the rotated features are zero)."""
    K = (M - 1) // 2
    return [(slice(K - k, K + k + 1, max(2 * k, 1)), max(k - 1, 0) * C) for k in range(K + 1)]


def _cpu(slots: list, outs: dict, dims: tuple, index) -> None:
    """Blocks of edges: rotate into a cached buffer, multiply there; the rotation kernel does the rest (with an
    index it gathers the rows of ``x``, and a block's slot-3 output is summed into the nodes from a buffer)."""
    e, a, w, x = slots
    B, C, L, M, _ = dims
    like = a if a is not None else e
    block = max(1, min(B, _BLOCK_BYTES // max(1, M * L * C * like.element_size())))
    buf = like.new_empty(M * block * L * C)
    back_buf = like.new_empty(block, C, L, 2 * L + 1) if index is not None and 3 in outs else None
    orders = _orders(M, C)
    for b0 in range(0, B, block):
        nb, rows = min(block, B - b0), slice(b0, b0 + block)
        wb = None if w is None else w[rows]
        # x's rows of the block: gathered by the kernel through the index, or a slice
        xb, xr = (x, index[rows]) if index is not None else (None if x is None else x[rows], None)
        frame = buf[: M * nb * L * C].view(M, nb, L * C)  # m-major, as the rotation kernel writes slot 0
        if 0 in outs or 1 in outs:
            _rotation_cpu([None, wb, xb], {0: frame}, (nb, C, L, M), xr)
            for m, c0 in orders:
                if 0 in outs:
                    torch.bmm(frame[m, :, c0:], a[m, :, c0:].transpose(1, 2), out=outs[0][m, rows])
                if 1 in outs:
                    outs[1][m, :, c0:].baddbmm_(e[m, rows].transpose(1, 2), frame[m, :, c0:])
        if 2 in outs or 3 in outs:
            for m, c0 in orders:  # the columns before c0 are never read (outside the degrees' blocks)
                torch.bmm(e[m, rows], a[m, :, c0:], out=frame[m, :, c0:])
            z = frame.view(M, nb, L, C).permute(1, 3, 2, 0)
            back = {1: outs[2][rows]} if 2 in outs else {}
            if 3 in outs:
                back[2] = outs[3][rows] if back_buf is None else back_buf[:nb]
            _rotation_cpu([z, wb, xb if 2 in outs else None], back, (nb, C, L, M), xr if 2 in outs else None)
            if back_buf is not None:
                outs[3].index_add_(0, xr, back_buf[:nb])


@torch.library.custom_op("fastso3::so2_frame_linear", mutates_args=())
def so2_frame_linear_op(
    e: Optional[torch.Tensor],
    a: Optional[torch.Tensor],
    w: Optional[torch.Tensor],
    x: Optional[torch.Tensor],
    index: Optional[torch.Tensor],
    num_nodes: int,
    outputs: list[int],
    backend: str,
) -> list[torch.Tensor]:
    """The slots ``outputs`` of ``F(e, A, W, x)`` (``x`` read through ``index`` if given), each from the others
    (see the module docstring)."""
    dims = _check(e, a, w, x, index, num_nodes, outputs)
    slots = [e, a, w, x]
    like = next(t for t in slots if t is not None)
    registry.check_backend("so2_frame_linear", backend, like)
    registry.record("so2_frame_linear", backend)
    if index is not None:  # the kernel reads x's rows through it
        check_index("so2_frame_linear", "index", index, num_nodes, what="rows of x")
        index = index.contiguous()
    outs = {s: _new_output(like, s, dims, index, num_nodes) for s in outputs}
    if backend == "reference":
        for s in outputs:
            outs[s].copy_(_reference(slots, s, dims, index, num_nodes))
    elif dims[0]:
        _cpu(slots, outs, dims, index)
    return [outs[s] for s in outputs]


@so2_frame_linear_op.register_fake
def _(e, a, w, x, index, num_nodes, outputs, backend):
    like = next(t for t in (e, a, w, x) if t is not None)
    return [_new_output(like, s, _check(e, a, w, x, index, num_nodes, outputs), index, num_nodes) for s in outputs]


register_multilinear_autograd(so2_frame_linear_op, 4)
