"""Edge-frame rotation of per-node tables of hidden features, as one op over a (gated) multilinear form.

With ``e (M = 2K+1, B, H)`` per-edge hidden features by order, ``W (B, L, M, N = 2L+1)`` Wigner blocks (see
:mod:`fastso3.kernels.so2_rotation`), ``P (L, R, N, M, H)`` a table per node (degree-major: per-degree matmuls
over the nodes write and read it in place), ``g (B, K+1, H)`` per-edge gates shared by ``+-m`` (optional),
``S (R, H)`` per-node scalars of the ``m = 0`` row (optional) and ``index (B,)`` (int64, values in ``[0, R)``)
the node of each edge,

    F(e, W, P, g, S) = sum_{b,m,h} e[m,b,h] g[b,|m - K|,h] (sum_{|m - K| <= l+1} sum_{|n - L| <= l+1}
                       W[b,l,m,n] P[l,index[b],n,m,h] + [m = K] S[index[b],h])

(degree ``l+1`` at index ``l``: only its block of ``W`` counts). ``fastso3::so2_table(e, W, P, g, S, index,
num_nodes, outputs, backend)`` contracts it into each slot of ``outputs`` (0: ``e``, 1: ``W``, 2: ``P``, 3: ``g``,
4: ``S``, ``R = num_nodes``) from the others. ``g`` or ``S`` None outside ``outputs`` means no gate, no scalar
term; ``W`` and ``P`` both None, no rotated term (what a derivative of the scalar term passes).

Why: an SO(2) layer's per-order encoder ``e[m] = sum_{l,c} A[m,h,l,c] (W x)[c,l,m]`` can apply ``A`` to the
node features first (``P[l,i,n,m,h] = sum_c A[m,h,l,c] x[i,c,l,n]``, once per node) and then rotate the table
row of each edge's sender (slot 0); the decoder likewise sums each edge's gated, rotated-back hidden features
into its receiver (slot 2, the gating fused: the gated features never reach memory) and applies its matrices
per node. The scalar channels pass through the ``m = 0`` row without a rotation: slot 0 adds the sender's
encoded scalars ``S`` and slot 4 sums the gated ``m = 0`` rows into the receivers, so nothing per edge is sliced
or modified in place. The per-edge work is then a rotation of width ``H`` instead of a rotation of width ``C``
plus the per-order matmuls, and nothing of width ``C`` exists per edge; the table is ``M L N H`` numbers per
node, so this pays for small ``L`` (see ``SO2Convolution``).

Autograd permutes the slots (derivatives of every order are the same op). The CPU kernel visits the edges sorted
by node (a counting sort), so each table row is read (slots 0, 1, 3) or summed (slots 2, 4, per node over its
edges in edge order: deterministic, thread-count independent) while it is in cache; the reference twin is one gather,
masks and one einsum (and an ``index_add_`` for slots 2, 3 and 4). Outputs contiguous; entries outside the blocks
are zero.
"""

from __future__ import annotations

import ctypes
from typing import Optional

import torch

from . import registry
from ._checks import check_index
from ._multilinear import register_multilinear_autograd

__all__ = ["so2_table_op"]

_TERMS = ({0, 1, 2, 3}, {0, 3, 4})  # the slots of F's two terms (e W P g and e g S)


def _check(e, w, p, g, s0, index, num_nodes: int, outputs: list) -> tuple[int, int, int, int, int]:
    """``(B, R, L, M, H)`` after checking what the kernel will read (the index's values: by the op's body)."""
    if not outputs or len(set(outputs)) != len(outputs) or any(s not in range(5) for s in outputs):
        raise ValueError(f"so2_table: outputs must be distinct slots among 0, 1, 2, 3, 4, got {outputs}")
    slots = (e, w, p, g, s0)
    for s in range(5):
        # an output needs the other slots of its terms; an input g or S may be None: absent (no gate, no scalar
        # term), and W with P: absent together (no rotated term)
        if slots[s] is None and (any(t != s and any({s, t} <= T for T in _TERMS) for t in outputs)
                                 if s in outputs else s == 0):  # fmt: skip
            raise ValueError(f"so2_table: slot {s} is needed (e always; an output shares its terms' slots)")
    for s, partner in ((1, 2), (2, 1)):  # W's output reads P, P's reads W; as inputs they come together
        if slots[partner] is None and (s in outputs or slots[s] is not None and partner not in outputs):
            raise ValueError(f"so2_table: slot {partner} is needed (W and P are given together, or both left out: "
                             "no rotated term)")  # fmt: skip
    given = {n: t for n, t in zip(("e", "W", "P", "g", "S"), slots) if t is not None}
    if w is None and p is None and s0 is None and not {1, 2, 4} & set(outputs):
        raise ValueError("so2_table: no term to contract: give W and P (the rotated term) or S (the scalars)")
    first = next(iter(given.values()))
    if any(t.dtype != first.dtype or t.device != first.device for t in given.values()):
        raise TypeError("so2_table: " + ", ".join(f"{n} is {t.dtype} on {t.device}" for n, t in given.items()))
    if any(t.dim() != d for t, d in ((e, 3), (w, 4), (p, 5), (g, 3), (s0, 2)) if t is not None):
        raise ValueError(
            "so2_table: expected e (M, B, H), W (B, L, M, 2L+1), P (L, R, 2L+1, M, H), g (B, K+1, H), S (R, H), got "
            + ", ".join(f"{n} {tuple(t.shape)}" for n, t in given.items())
        )
    if num_nodes < 0:
        raise ValueError(f"so2_table: num_nodes must be >= 0, got {num_nodes}")
    check_index("so2_table", "index", index, num_nodes, device=first.device, values=False)
    B = index.shape[0]
    L = w.shape[1] if w is not None else p.shape[0] if p is not None else 0  # 0: no term with a rotation
    M = next((m for m in (w.shape[2] if w is not None else None, p.shape[3] if p is not None else None,
                          e.shape[0] if e is not None else None, 2 * g.shape[1] - 1 if g is not None else None)
              if m is not None), None)  # fmt: skip
    H = next((t.shape[-1] for t in (e, p, g, s0) if t is not None), None)
    if M is None or H is None:
        raise ValueError("so2_table: the orders M and the hidden size H need e, W, P or g (and e, P, g or S)")
    if M % 2 == 0 or M < 1 or (w is not None or p is not None) and (M > 2 * L + 1 or L < 1):
        raise ValueError(f"so2_table: the number of orders M = {M} must be odd, <= 2L+1 and L >= 1 (L = {L})")
    shapes = (("e", e, (M, B, H)), ("W", w, (B, L, M, 2 * L + 1)), ("P", p, (L, num_nodes, 2 * L + 1, M, H)),
              ("g", g, (B, (M + 1) // 2, H)), ("S", s0, (num_nodes, H)))
    for name, t, shape in shapes:
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"so2_table: {name} must have shape {shape}, got {tuple(t.shape)}")
    return B, num_nodes, L, M, H


def _new_output(like: torch.Tensor, slot: int, dims: tuple) -> torch.Tensor:
    B, R, L, M, H = dims
    shapes = ((M, B, H), (B, L, M, 2 * L + 1), (L, R, 2 * L + 1, M, H), (B, (M + 1) // 2, H), (R, H))
    return like.new_empty(shapes[slot])


def _block(L: int, M: int, device: torch.device) -> torch.Tensor:
    """Boolean ``(L, M, 2L+1)``: the entries of each degree's block (degree ``l+1``: orders ``<= l+1``)."""
    degree = torch.arange(1, L + 1, device=device)[:, None, None]
    rows = (torch.arange(M, device=device) - (M - 1) // 2).abs()[None, :, None] <= degree
    cols = (torch.arange(2 * L + 1, device=device) - L).abs()[None, None, :] <= degree
    return rows & cols


def _reference(slots: list, slot: int, index: torch.Tensor, dims: tuple) -> torch.Tensor:
    """Masked W, the gathered table rows, the gates spread over +-m, one einsum; slots 2 and 4 summed into the
    nodes."""
    e, w, p, g, s0 = slots
    B, R, L, M, H = dims
    K = (M - 1) // 2
    block = _block(L, M, index.device)
    e_like = next(t for t in slots if t is not None).new_zeros
    if w is not None:
        w = torch.where(block[None], w, 0)
    if p is not None:  # (L, B, N, M, H)
        p = torch.where(block.transpose(1, 2)[:, None, :, :, None], p.index_select(1, index), 0)
    order = (torch.arange(M, device=index.device) - K).abs()  # |m| of each row
    if g is not None:  # (M, B, H)
        g = g.index_select(1, order).transpose(0, 1)
    if e is not None and g is not None and slot != 3:
        e = e * g
    if slot == 4:
        return e[K].new_zeros(R, H).index_add_(0, index, e[K])
    if slot in (0, 3):
        rotated = torch.einsum("blmn,lbnmh->mbh", w, p) if w is not None and p is not None else e_like(M, B, H)
        if s0 is not None:
            rotated = rotated.index_add(0, torch.tensor([K], device=index.device), s0.index_select(0, index)[None])
        if slot == 0:
            return rotated if g is None else rotated * g
        return rotated.new_zeros(K + 1, B, H).index_add_(0, order, rotated * e).transpose(0, 1)
    if slot == 1:
        if p is None:
            return e_like(B, L, M, 2 * L + 1)
        return torch.where(block[None], torch.einsum("mbh,lbnmh->blmn", e, p), 0)
    per_edge = torch.einsum("mbh,blmn->lbnmh", e, w)
    return per_edge.new_zeros(L, R, *per_edge.shape[2:]).index_add_(1, index, per_edge)


def _cpu(slots: list, outs: dict, index: torch.Tensor, dims: tuple) -> None:
    from .cpu.loader import library_function

    B, R, L, M, H = dims
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    like = next(t for t in slots if t is not None)
    suffix = "f32" if like.dtype == torch.float32 else "f64"
    fn = library_function(f"fastso3_so2_table_{suffix}", *([ptr] * 11), *([i64] * 5), ctypes.c_int)
    keep = [t.contiguous() if t is not None else None for t in slots]
    fn(*(t.data_ptr() if t is not None else None for t in keep), index.data_ptr(),
       *(outs[s].data_ptr() if s in outs else None for s in range(5)), B, R, L, M, H,
       torch.get_num_threads())  # fmt: skip


@torch.library.custom_op("fastso3::so2_table", mutates_args=())
def so2_table_op(
    e: Optional[torch.Tensor],
    w: Optional[torch.Tensor],
    p: Optional[torch.Tensor],
    g: Optional[torch.Tensor],
    s0: Optional[torch.Tensor],
    index: torch.Tensor,
    num_nodes: int,
    outputs: list[int],
    backend: str,
) -> list[torch.Tensor]:
    """The slots ``outputs`` of ``F(e, W, P, g, S)``, each from the others (see the module docstring)."""
    dims = _check(e, w, p, g, s0, index, num_nodes, outputs)
    slots = [e, w, p, g, s0]
    like = next(t for t in slots if t is not None)
    registry.check_backend("so2_table", backend, like)
    registry.record("so2_table", backend)
    check_index("so2_table", "index", index, num_nodes, what="table rows")  # the kernel reads rows through it
    index = index.contiguous()
    outs = {s: _new_output(like, s, dims) for s in outputs}
    if dims[-1] == 0:  # H = 0: every sum over the hidden units is empty, and P may stand for any number of nodes
        return [outs[s].zero_() for s in outputs]
    if backend == "reference":
        for s in outputs:
            outs[s].copy_(_reference(slots, s, index, dims))
    else:
        _cpu(slots, outs, index, dims)
    return [outs[s] for s in outputs]


@so2_table_op.register_fake
def _(e, w, p, g, s0, index, num_nodes, outputs, backend):
    dims = _check(e, w, p, g, s0, index, num_nodes, outputs)
    like = next(t for t in (e, w, p, g, s0) if t is not None)
    return [_new_output(like, s, dims) for s in outputs]


register_multilinear_autograd(so2_table_op, 5, exclusive=[(1, 4), (2, 4)])  # W, P and S: in separate terms
