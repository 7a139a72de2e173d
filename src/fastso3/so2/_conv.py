"""FastSo3-compatible SO(2) convolutions in the padded layout (torch).

In the edge frame (edge along +y) a degree-``l`` feature's components ``(m, -m)`` only mix with the same ``|m|``
of other degrees, as a complex multiplication: with ``A, B`` maps over (channel, degree),

    y_{+m} = A_m x_{+m} - B_m x_{-m},    y_{-m} = A_m x_{-m} + B_m x_{+m},    y_0 = A_0 x_0,

which commutes with rolls about y (``x_{+m} + i x_{-m}`` is multiplied by ``e^{i m phi}``). All ``m`` are handled
at once by batched matmuls over a ``|m|`` axis (no Python loop over ``m``, no data-dependent indexing).
Parameter names, shapes, initialisation and semantics are those of FastSo3 (wzm2256/FastSo3, ``so2.py``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fastso3.graph import scatter_sum
from fastso3.kernels import registry
from fastso3.kernels.so2_frame_linear import so2_frame_linear_op
from fastso3.kernels.so2_table import so2_table_op

from ._layout import get_mask
from ._rotation import EdgeRotation, rotate, rotate_back

__all__ = ["SO2_conv", "SO2_conv_e", "get_message", "so2_decode", "so2_decode_orders", "so2_encode", "so2_gate"]


def so2_encode(x: Tensor, W: Tensor | None, en0: Tensor, en: Tensor, backend: str | None = None,
               index: Tensor | None = None, tables: bool = False, scalars: Tensor | None = None) -> Tensor:  # fmt: skip
    """Rotate into the edge frame and encode every order: ``e (M, B, H)``, ``M = 2K+1`` orders ``m = -K..K``.

    Shapes: ``x (B, C, L, 2L+1)`` node-frame features with ``W (B, L, M, 2L+1)`` Wigner blocks, or already in the
    frame with ``W = None`` (then every order is kept: ``M = 2L+1``); ``en0 (C, L, H0)`` the ``m = 0`` encoder (``H0 <= H``, hidden units
    beyond ``H0`` are zero there); ``en (C, L, H, K)`` the encoder of ``+-|m|`` (last axis ``|m| - 1``). Every
    order reads only its degrees ``l >= |m|`` (the rotated features have nothing else), and the rotated features
    never reach memory (``fastso3::so2_frame_linear``). With ``index (B,)`` int64, ``x (N, C, L, 2L+1)`` is a table
    of node features and edge ``b`` reads row ``index[b]`` (the gather fused into the rotation). With ``tables``
    (``W`` and ``index`` given) the encoder is applied per node first and each edge rotates its sender's row of
    the table ``(L, N, 2L+1, M, H)`` (``fastso3::so2_table``): less work per edge for small ``L``. ``scalars``
    (rows of ``x``, ``H``): added to the ``m = 0`` row (each edge its row ``index[b]``; with ``tables``, inside the
    table op).
    """
    C, L, H, K = en.shape
    H0 = en0.shape[2]
    if H0 > H:
        raise ValueError(f"so2_encode: the m = 0 hidden size {H0} exceeds the |m| > 0 one {H}")
    if W is None and K != L:
        raise ValueError(f"so2_encode: features in the frame (W = None) keep every order: mmax = L = {L}, got {K}")
    a = en.permute(3, 2, 1, 0).reshape(K, H, L * C)  # columns ordered (l, c), as the frame's m-major memory
    a0 = torch.nn.functional.pad(en0.permute(2, 1, 0).reshape(H0, L * C), (0, 0, 0, H - H0))
    a = torch.cat([a.flip(0), a0[None], a], 0)  # orders -K..K; -m shares the weights of +m
    if tables:
        _check_tables("so2_encode", W, index)
        n, M = x.shape[0], 2 * K + 1
        # per degree, (nodes n, C) @ (C, orders m h): the table (L, N, 2L+1, M, H) in the op's layout
        xt = x.permute(2, 0, 3, 1).reshape(L, n * (2 * L + 1), C)
        table = torch.bmm(xt, a.view(M, H, L, C).permute(2, 3, 0, 1).reshape(L, C, M * H))
        return _table([None, W, table.view(L, n, 2 * L + 1, M, H), None, scalars], [0], backend, index, n)[0]
    e = _frame_linear([None, a, W, x], 0, backend, index, 0 if index is None else x.shape[0])
    if scalars is not None:  # in place: the op's fresh output, saved by no backward
        rows = x.shape[0]  # one per edge, or the node table's rows
        if scalars.dtype != e.dtype or scalars.device != e.device or tuple(scalars.shape) != (rows, H):
            raise ValueError(f"so2_encode: scalars must be ({rows}, {H}) {e.dtype} on {e.device}, got "
                             f"{tuple(scalars.shape)} {scalars.dtype} on {scalars.device}")  # fmt: skip
        e[K] += scalars if index is None else scalars.index_select(0, index)
    return e


def so2_gate(e: Tensor, gates: Tensor, complex_path: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Split the encoded orders ``e (2K+1, B, H)`` into ``(e_minus, e_m0, e_plus)`` and gate ``|m| > 0``:
    ``e_minus, e_plus (K, B, H)`` by ``|m|``, ``e_m0 (B, H)`` the ``m = 0`` row as it is.

    ``gates (K, B, H)``, shared by ``+m`` and ``-m``. With ``complex_path`` the hidden axis is ``[a, b]`` (the real
    and imaginary maps ``A_m``, ``B_m`` side by side, ``H = 2 H'``): ``y_{+m} = [a_{+m}, -b_{-m}] [de1; de2]``,
    ``y_{-m} = [a_{-m}, b_{+m}] [de1; de2]``, so the decoder multiplies the halves back together. Splits rather
    than slices: their gradient is one concatenation, not a zero-filled tensor per slice.
    """
    K = (e.shape[0] - 1) // 2
    minus, m0, plus = e.split([K, 1, K])
    e_plus, e_minus = plus * gates, minus.flip(0) * gates
    if complex_path:
        (a_plus, b_plus), (a_minus, b_minus) = e_plus.split(e.shape[2] // 2, -1), e_minus.split(e.shape[2] // 2, -1)
        e_plus, e_minus = torch.cat([a_plus, -b_minus], -1), torch.cat([a_minus, b_plus], -1)
    return e_minus, m0[0], e_plus


def so2_decode(
    e_minus: Tensor, e_0: Tensor, e_plus: Tensor, de_0: Tensor, de: Tensor, W: Tensor | None, backend: str | None = None,
    index: Tensor | None = None, num_nodes: int = 0, tables: bool = False,
) -> Tensor:  # fmt: skip
    """Decode every order and rotate back: ``y (B, C_out, L, 2L+1)``, zero in the padding (``W = None``: left in
    the frame, every order kept, ``M = 2L+1``).

    Shapes: ``e_minus, e_plus (K, B, H)`` by ``|m|`` (:func:`so2_gate`); ``e_0 (B, H0)`` the ``m = 0`` hidden
    features and ``de_0 (H0, C_out, L)`` their decoder, ``H0 <= H``; ``de (H, C_out, L, K)``; ``W``, ``index``,
    ``num_nodes`` and ``tables`` as for :func:`so2_decode_orders`, which this calls on the orders stacked.
    """
    K, _, H = e_plus.shape
    if e_0.dim() != 2 or e_0.shape[1] != de_0.shape[0] or de_0.shape[0] > H:
        raise ValueError(f"so2_decode: e_0 must be (B, H0) with H0 = de_0.shape[0] = {de_0.shape[0]} <= {H}, got "
                         f"{tuple(e_0.shape)}")  # fmt: skip
    e_0 = torch.nn.functional.pad(e_0, (0, H - e_0.shape[1]))
    return so2_decode_orders(torch.cat([e_minus.flip(0), e_0[None], e_plus], 0), de_0, de, W, backend, index,
                             num_nodes, tables)  # fmt: skip


def so2_decode_orders(
    e: Tensor, de_0: Tensor, de: Tensor, W: Tensor | None, backend: str | None = None, index: Tensor | None = None,
    num_nodes: int = 0, tables: bool = False, gates: Tensor | None = None, scalars: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:  # fmt: skip
    """:func:`so2_decode` of the hidden features of every order ``e (M = 2K+1, B, H)``, ``m = -K..K`` (the ``m = 0``
    row's units beyond ``H0`` are not decoded into ``y``), times ``gates (B, K+1, H)`` if given (``+-m`` share ``|m|``'s; with
    ``tables`` the product is fused into the table op and never reaches memory): ``y (B, C_out, L, 2L+1)``.

    ``de_0 (H0, C_out, L)``, ``de (H, C_out, L, K)``. One pass over blocks of edges decodes into cache and rotates
    back from there. With ``index (B,)`` int64 each edge's result is summed into row ``index[b]`` of
    ``y (num_nodes, C_out, L, 2L+1)`` (in edge order, deterministic; the per-edge results never reach memory).
    With ``tables`` (``W`` and ``index`` given) each edge's rotated-back hidden features are summed into a table
    ``(L, num_nodes, 2L+1, M, H)`` (``fastso3::so2_table``) that the decoder maps per node. With ``scalars``,
    returns ``(y, s)``: ``s`` the gated ``m = 0`` rows ``(B, H)``, summed like ``y`` into ``(num_nodes, H)`` with an
    ``index`` (the input of the scalar outputs' decoder).
    """
    M, _, H = e.shape
    K = (M - 1) // 2
    H0, Co, L = de_0.shape
    if H0 > H:
        raise ValueError(f"so2_decode: the m = 0 hidden size {H0} exceeds the |m| > 0 one {H}")
    if W is None and K != L:
        raise ValueError(f"so2_decode: features in the frame (W = None) keep every order: mmax = L = {L}, got {K}")
    d = de.permute(3, 0, 2, 1).reshape(K, H, L * Co)  # columns ordered (l, c)
    d0 = torch.nn.functional.pad(de_0.permute(0, 2, 1).reshape(H0, L * Co), (0, 0, 0, H - H0))
    d = torch.cat([d.flip(0), d0[None], d], 0)
    if gates is not None and gates.shape != (e.shape[1], K + 1, H):
        raise ValueError(f"so2_decode: gates must have shape {(e.shape[1], K + 1, H)}, got {tuple(gates.shape)}")
    if tables:
        _check_tables("so2_decode", W, index)
        table, *s = _table([e, W, None, gates, None], [2, 4] if scalars else [2], backend, index, num_nodes)
        dt = d.view(M, H, L, Co).permute(2, 0, 1, 3).reshape(L, M * H, Co)
        y = torch.bmm(table.view(L, num_nodes * (2 * L + 1), M * H), dt)  # per degree, (nodes n, m h) @ (m h, C)
        y = y.view(L, num_nodes, 2 * L + 1, Co).permute(1, 3, 0, 2)
        return (y, s[0]) if scalars else y
    if gates is not None:
        e = e * gates.index_select(1, (torch.arange(M, device=e.device) - K).abs()).transpose(0, 1)
    y = _frame_linear([e, d, W, None], 3, backend, index, num_nodes)
    if not scalars:
        return y
    return y, (e[K] if index is None else scatter_sum(e[K], index, dim=0, dim_size=num_nodes))


def _check_tables(name: str, W: Tensor | None, index: Tensor | None) -> None:
    if W is None or index is None:
        raise ValueError(f"{name}: tables=True needs the Wigner blocks W and an index")


def _table(slots: list, outputs: list[int], backend: str | None, index: Tensor, num_nodes: int) -> list[Tensor]:
    like = next(t for t in slots if t is not None)
    chosen = registry.resolve_backend("so2_table", backend, like.device, like.dtype)
    return so2_table_op(*slots, index, num_nodes, outputs, chosen)


def _frame_linear(slots: list, slot: int, backend: str | None, index: Tensor | None, num_nodes: int) -> Tensor:
    like = next(t for t in slots if t is not None)
    chosen = registry.resolve_backend("so2_frame_linear", backend, like.device, like.dtype)
    return so2_frame_linear_op(*slots, index, num_nodes, [slot], chosen)[0]


def _check(name: str, t: Tensor, shape: tuple, what: str) -> None:
    if not isinstance(t, Tensor) or t.dim() != len(shape) + 1 or tuple(t.shape[1:]) != shape:
        got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"{name}: {what} must have shape (B, {', '.join(map(str, shape))}), got {got}")


def _check_counts(name: str, **counts) -> None:
    for key, v in counts.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name}: {key} must be a non-negative int, got {v!r}")


class _SO2Base(torch.nn.Module):
    def __init__(self, c_in: int, c_out: int, L: int, c_L0_in: int, c_L0_out: int, bias: bool) -> None:
        super().__init__()
        _check_counts(type(self).__name__, c_in=c_in, c_out=c_out, L=L, c_L0_in=c_L0_in, c_L0_out=c_L0_out)
        if L < 1:
            raise ValueError(f"{type(self).__name__}: L must be >= 1, got {L}")
        self.register_buffer("Mask_out", get_mask(L))
        self.L, self.c_in, self.c_out, self.c_L0_in, self.c_L0_out, self.bias = (
            L,
            c_in,
            c_out,
            c_L0_in,
            c_L0_out,
            bias,
        )
        # the edge-frame Wigner blocks used by get_message (non-persistent: FastSo3 state dicts load as they are)
        self.rotation = EdgeRotation(L)

    def _check_inputs(self, x: Tensor, x_L0: Tensor, w: Tensor, w_L0: Tensor, w_shape: tuple, w_L0_shape: tuple):
        name = type(self).__name__
        L = self.L
        _check(name, x, (self.c_in, L, 2 * L + 1), "x")
        _check(name, x_L0, (self.c_L0_in,), "x_L0")
        _check(name, w, w_shape, "w")
        _check(name, w_L0, w_L0_shape, "w_L0")
        if not x.shape[0] == x_L0.shape[0] == w.shape[0] == w_L0.shape[0]:
            raise ValueError(f"{name}: x, x_L0, w, w_L0 must have the same number of edges")

    def _m0(self, x: Tensor, x_L0: Tensor, y0: Tensor) -> tuple[Tensor, Tensor]:
        """Split the ``m = 0`` output ``(B, c_L0_out + c_out L)`` into ``(y_L0, y_m0 (B, c_out, L))``."""
        if self.bias:
            y0 = y0 + self.bias_0
        return y0[:, : self.c_L0_out], y0[:, self.c_L0_out :].reshape(len(y0), self.c_out, self.L)

    @staticmethod
    def _x_m0(x_0: Tensor, x_L0: Tensor) -> Tensor:
        """``[x_L0, x_{m=0}]`` from ``x_0 (B, c_in, L)``, as ``(B, c_L0_in + c_in L)``, channel-major as FastSo3."""
        return torch.cat([x_L0, x_0.flatten(1)], 1)


class SO2_conv_e(_SO2Base):
    """FastSo3's efficient SO(2) convolution (eSCN's bottleneck form), in the edge frame.

    Parameters (FastSo3 names and shapes; ``H = c_hidden``): ``en0 (c_in L + c_L0_in, H)``,
    ``de0 (H, c_out L + c_L0_out)``, ``en1, en2 (c_in, L, H, L)``, ``de1, de2 (H, c_out, L, L)`` (last axis
    ``|m| - 1``), ``bias_0 (1, c_out L + c_L0_out)`` if ``bias``; initialised as FastSo3 (Kaiming uniform, same
    order, so a seed gives FastSo3's values).

    ``forward(x, x_L0, w, w_L0) -> (y, y_L0)``: ``x (B, c_in, L, 2L+1)`` (padding must be zero), ``x_L0 (B,
    c_L0_in)``, ``w (B, H, 2L)`` (``w[:, :, L + |m| - 1]`` gates ``A_m``, ``w[:, :, L - |m|]`` gates ``B_m``),
    ``w_L0 (B, H)``; ``y (B, c_out, L, 2L+1)`` (padding zero), ``y_L0 (B, c_L0_out)``. Any float dtype.
    """

    def __init__(
        self, c_in: int, c_out: int, c_hidden: int, L: int, c_L0_in: int = 0, c_L0_out: int = 0, bias: bool = False
    ) -> None:
        _check_counts("SO2_conv_e", c_hidden=c_hidden)
        super().__init__(c_in, c_out, L, c_L0_in, c_L0_out, bias)
        self.c_hidden = H = c_hidden
        self.en0 = torch.nn.Parameter(torch.empty(c_in * L + c_L0_in, H))
        self.de0 = torch.nn.Parameter(torch.empty(H, c_out * L + c_L0_out))
        if bias:
            self.bias_0 = torch.nn.Parameter(torch.zeros(1, c_out * L + c_L0_out))
        self.en1 = torch.nn.Parameter(torch.empty(c_in, L, H, L))
        self.de1 = torch.nn.Parameter(torch.empty(H, c_out, L, L))
        self.en2 = torch.nn.Parameter(torch.empty(c_in, L, H, L))
        self.de2 = torch.nn.Parameter(torch.empty(H, c_out, L, L))
        for p in (self.en0, self.de0, self.en1, self.de1, self.en2, self.de2):
            torch.nn.init.kaiming_uniform_(p, a=math.sqrt(5))

    def forward(self, x: Tensor, x_L0: Tensor, w: Tensor, w_L0: Tensor) -> tuple[Tensor, Tensor]:
        self._check_inputs(x, x_L0, w, w_L0, (self.c_hidden, 2 * self.L), (self.c_hidden,))
        return self._bottleneck(x, None, x_L0, w, w_L0)

    def forward_rotated(
        self, x: Tensor, x_L0: Tensor, w: Tensor, w_L0: Tensor, W: Tensor
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        """``rotate_back(W, y), y_L0`` with ``y, y_L0 = forward(rotate(W, x), x_L0, w, w_L0)``, fused: what
        :func:`get_message` computes. ``x (B, c_in, L, 2L+1)`` in the node frame, ``W (B, L, 2L+1, 2L+1)`` the
        edge-frame Wigner blocks (:class:`EdgeRotation`); the rotated features never reach memory."""
        self._check_inputs(x, x_L0, w, w_L0, (self.c_hidden, 2 * self.L), (self.c_hidden,))
        return self._bottleneck(x, W, x_L0, w, w_L0)

    def _bottleneck(self, x: Tensor, W: Tensor | None, x_L0: Tensor, w: Tensor, w_L0: Tensor) -> tuple[Tensor, Tensor]:
        L, H, c0 = self.L, self.c_hidden, self.c_L0_in
        e = so2_encode(x, W, self.en0[c0:].reshape(self.c_in, L, H), torch.cat([self.en1, self.en2], 2))
        wk = w.permute(2, 0, 1)  # (2L, B, H): A_m gated by w[..., L + m - 1], B_m by w[..., L - m]
        e_minus, e_m0, e_plus = so2_gate(e, torch.cat([wk[L:], wk[:L].flip(0)], -1), complex_path=True)
        e_0 = (e_m0[:, :H] + x_L0 @ self.en0[:c0]) * w_L0  # FastSo3's [x_L0, x_{m=0}] @ en0, gated
        # the scalar outputs here; the m = 0 column decoded with the other orders (as FastSo3's de0 @ e_0 + bias_0)
        y_L0 = e_0 @ self.de0[:, : self.c_L0_out]
        de_0 = self.de0[:, self.c_L0_out :].reshape(H, self.c_out, L)
        if self.bias:
            y_L0 = y_L0 + self.bias_0[:, : self.c_L0_out]
            e_0 = torch.cat([e_0, torch.ones_like(e_0[:, :1])], 1)  # the bias as one more hidden unit
            de_0 = torch.cat([de_0, self.bias_0[:, self.c_L0_out :].reshape(1, self.c_out, L)], 0)
        # entries of de1, de2 with |m| > l decode into the padding, which so2_decode leaves zero (FastSo3 masks it)
        return so2_decode(e_minus, e_0, e_plus, de_0, torch.cat([self.de1, self.de2], 0), W), y_L0


class SO2_conv(_SO2Base):
    """FastSo3's simple SO(2) convolution: a full per-edge linear map in the edge frame.

    ``forward(x, x_L0, w, w_L0) -> (y, y_L0)``: ``x (B, c_in, L, 2L+1)`` (padding must be zero), ``x_L0 (B,
    c_L0_in)``, ``w (B, c_in, L, 2L, c_out, L)`` (axis 3: ``L + |m| - 1`` holds ``A_m``, ``L - |m|`` holds
    ``B_m``, each ``(c_in, l_in) -> (c_out, l_out)``), ``w_L0 (B, c_L0_in + c_in L, c_L0_out + c_out L)``;
    ``y (B, c_out, L, 2L+1)``, ``y_L0 (B, c_L0_out)``. ``bias_0 (1, c_out L + c_L0_out)`` if ``bias`` (FastSo3
    adds the constant 1 instead, a bug not reproduced).
    """

    def __init__(self, c_in: int, c_out: int, L: int, c_L0_in: int = 0, c_L0_out: int = 0, bias: bool = False) -> None:
        super().__init__(c_in, c_out, L, c_L0_in, c_L0_out, bias)
        if bias:
            self.bias_0 = torch.nn.Parameter(torch.zeros(1, c_out * L + c_L0_out))

    def forward(self, x: Tensor, x_L0: Tensor, w: Tensor, w_L0: Tensor) -> tuple[Tensor, Tensor]:
        L, ci, co = self.L, self.c_in, self.c_out
        self._check_inputs(x, x_L0, w, w_L0, (ci, L, 2 * L, co, L), (self.c_L0_in + ci * L, self.c_L0_out + co * L))
        y_L0, y_m0 = self._m0(x, x_L0, torch.einsum("bi,bio->bo", self._x_m0(x[..., L], x_L0), w_L0))
        xs = torch.stack([x[..., L + 1 :], x[..., :L].flip(-1)])  # (2, B, c_in, L, L): +m, -m; last axis |m|-1
        a = torch.einsum("sbclk,bclkdo->sbdok", xs, w[:, :, :, L:])
        # B_m sits at w[:, :, :, L - m]: contract the m-reversed input, then reverse back (no copy of w)
        b = torch.einsum("sbclk,bclkdo->sbdok", xs.flip(-1), w[:, :, :, :L]).flip(-1)
        y = torch.cat([(a[1] + b[0]).flip(-1), y_m0[..., None], a[0] - b[1]], -1)
        return y * self.Mask_out, y_L0


def get_message(
    x: Tensor, x_L0: Tensor, w: Tensor, w_L0: Tensor, edges_vec: Tensor, conv: torch.nn.Module, L: int
) -> tuple[Tensor, Tensor]:
    """FastSo3's ``get_message``: rotate ``x`` to the edge frame, apply ``conv``, rotate back.

    Shapes as the conv's ``forward`` plus ``edges_vec (B, 3)``; returns ``(message (B, c_out, L, 2L+1),
    message_L0 (B, c_L0_out))``. The edge frame is :func:`~fastso3.so2.edge_rotation` (deterministic roll;
    the message does not depend on the roll). Edges shorter than ``1e-9`` use the frame ``R = I``.
    """
    if getattr(conv, "L", L) != L:
        raise ValueError(f"get_message: L={L} but the conv was built with L={conv.L}")
    if edges_vec.shape != (x.shape[0], 3):
        raise ValueError(f"get_message: edges_vec must have shape ({x.shape[0]}, 3), got {tuple(edges_vec.shape)}")
    rotation = conv.rotation if isinstance(getattr(conv, "rotation", None), EdgeRotation) else EdgeRotation(L)
    W = rotation(edges_vec.to(x.dtype))
    if isinstance(conv, SO2_conv_e):
        return conv.forward_rotated(x, x_L0, w, w_L0, W)
    y, y_L0 = conv(rotate(W, x), x_L0, w, w_L0)
    return rotate_back(W, y), y_L0
