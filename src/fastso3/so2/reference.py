"""Readable per-``m`` twins of the SO(2) layers: the test oracle and the "per-m loop" benchmark baseline.

Independent of the fast path on purpose: Wigner blocks from Euler angles (``fastso3.o3.wigner_D``, any roll
``gamma``), per-degree features without padding, and an explicit Python loop over ``m`` that touches only the
valid degrees ``l >= m`` (as the official eSCN code does).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastso3.o3 import wigner_D, xyz_to_angles

from ._conv import SO2_conv, SO2_conv_e

__all__ = ["edge_wigner_euler", "message_reference", "so2_reference"]


def edge_wigner_euler(edges_vec: Tensor, L: int, gamma: Tensor | None = None) -> list[Tensor]:
    """``[D^l(R) (B, 2l+1, 2l+1) for l = 1..L]`` with ``R = R(alpha, beta, gamma)^T``, which maps the edge to ``+y``.

    ``(alpha, beta)`` are the edge's angles; ``gamma (B,)`` is the roll about the edge (default 0).
    """
    alpha, beta = xyz_to_angles(edges_vec)
    gamma = torch.zeros_like(alpha) if gamma is None else gamma
    return [wigner_D(l, alpha, beta, gamma).mT for l in range(1, L + 1)]


def _path(en: Tensor, de: Tensor, gate: Tensor, v: Tensor, m: int) -> Tensor:
    """``de_m diag(gate) en_m v`` over the degrees ``l >= m``: ``v (B, c_in, L-m+1)`` -> ``(B, c_out, L-m+1)``."""
    h = torch.einsum("bcl,clh->bh", v, en[:, m - 1 :, :, m - 1]) * gate
    return torch.einsum("bh,hdl->bdl", h, de[:, :, m - 1 :, m - 1])


def so2_reference(conv: torch.nn.Module, xs: list[Tensor], x_L0: Tensor, w: Tensor, w_L0: Tensor):
    """``conv`` (``SO2_conv_e`` or ``SO2_conv``) applied with a loop over ``m`` to per-degree features.

    ``xs[l-1] (B, c_in, 2l+1)`` in the edge frame; returns ``([y_l (B, c_out, 2l+1)], y_L0 (B, c_L0_out))``.
    """
    L = conv.L
    x0 = torch.cat([x_L0, torch.stack([x[:, :, l] for l, x in enumerate(xs, 1)], -1).flatten(1)], 1)
    if isinstance(conv, SO2_conv_e):
        y0 = (x0 @ conv.en0) * w_L0 @ conv.de0
    elif isinstance(conv, SO2_conv):
        y0 = torch.einsum("bi,bio->bo", x0, w_L0)
    else:
        raise TypeError(f"so2_reference: unsupported conv {type(conv).__name__}")
    if conv.bias:
        y0 = y0 + conv.bias_0
    ys = [x.new_zeros(x.shape[0], conv.c_out, 2 * l + 1) for l, x in enumerate(xs, 1)]
    m0 = y0[:, conv.c_L0_out :].reshape(len(y0), conv.c_out, L)
    for l in range(1, L + 1):
        ys[l - 1][:, :, l] = m0[:, :, l - 1]
    for m in range(1, L + 1):
        deg = range(m, L + 1)
        xp = torch.stack([xs[l - 1][:, :, l + m] for l in deg], -1)  # (B, c_in, n)
        xn = torch.stack([xs[l - 1][:, :, l - m] for l in deg], -1)
        if isinstance(conv, SO2_conv_e):
            ga, gb = w[:, :, L + m - 1], w[:, :, L - m]
            yp = _path(conv.en1, conv.de1, ga, xp, m) - _path(conv.en2, conv.de2, gb, xn, m)
            yn = _path(conv.en1, conv.de1, ga, xn, m) + _path(conv.en2, conv.de2, gb, xp, m)
        else:
            A = w[:, :, m - 1 :, L + m - 1, :, m - 1 :]  # (B, c_in, n, c_out, n)
            Bm = w[:, :, m - 1 :, L - m, :, m - 1 :]
            yp = torch.einsum("bcl,bcldo->bdo", xp, A) - torch.einsum("bcl,bcldo->bdo", xn, Bm)
            yn = torch.einsum("bcl,bcldo->bdo", xn, A) + torch.einsum("bcl,bcldo->bdo", xp, Bm)
        for i, l in enumerate(deg):
            ys[l - 1][:, :, l + m] = yp[:, :, i]
            ys[l - 1][:, :, l - m] = yn[:, :, i]
    return ys, y0[:, : conv.c_L0_out]


def message_reference(
    x: Tensor, x_L0: Tensor, w: Tensor, w_L0: Tensor, edges_vec: Tensor, conv: torch.nn.Module, gamma=None
) -> tuple[Tensor, Tensor]:
    """``get_message`` by the per-``m`` loop and Euler-angle Wigner blocks; same shapes as ``get_message``."""
    L = conv.L
    Ds = edge_wigner_euler(edges_vec.to(x.dtype), L, gamma)
    xs = [torch.einsum("bij,bcj->bci", D, x[:, :, l - 1, L - l : L + l + 1]) for l, D in enumerate(Ds, 1)]
    ys, y_L0 = so2_reference(conv, xs, x_L0, w, w_L0)
    ys = [torch.einsum("bji,bcj->bci", D, y) for D, y in zip(Ds, ys)]
    pad = torch.nn.functional.pad
    return torch.stack([pad(y, (L - l, L - l)) for l, y in enumerate(ys, 1)], 2), y_L0
