"""``SO2Convolution``: an eSCN point convolution on e3nn ``mul_ir`` node features (torch)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from fastso3.core.irreps import Irreps
from fastso3.kernels._checks import check_index, tracing
from fastso3.math import polynomial_cutoff, soft_one_hot_linspace
from fastso3.nn import FullyConnectedNet

from ._conv import so2_decode_orders, so2_encode
from ._layout import from_padded, get_mask, padded_irreps, to_padded
from ._rotation import EdgeRotation

__all__ = ["SO2Convolution"]


def _parity_class(irreps: Irreps, name: str) -> int:
    """``eps`` with ``p = eps (-1)^l`` for every entry of ``irreps`` (1 if empty)."""
    eps = {ir.p * (-1) ** ir.l for mul, ir in irreps if mul > 0}
    if len(eps) > 1:
        raise ValueError(
            f"SO2Convolution: {name} {irreps} mixes parities; every entry must have p = (-1)^l, or every entry "
            "p = -(-1)^l (e.g. 0e+1o+2e or 0o+1e+2o)"
        )
    return eps.pop() if eps else 1


class SO2Convolution(torch.nn.Module):
    r"""eSCN convolution: ``out[i] = sum_{e: dst(e)=i} D(R_e)^T SO2(D(R_e) x[src(e)], gates(|v_e|)) / sqrt(n_avg)``.

    Per edge: the sender's features are rotated to the edge frame (edge along +y, rows ``|m| <= mmax``), mixed per
    ``|m|`` by the bottleneck ``y_{+-m} = de_m(gate_m(|v|) * en_m(x_{+-m}))`` (``m = 0`` also takes and gives the
    scalars), rotated back and summed into the receiver. The gates come from a radial MLP on the Bessel basis of
    ``u = |v| / r_max`` times the polynomial envelope (NequIP/MACE), smooth and zero from ``|v| = r_max`` on.

    Only the "real" SO(2) path is used, which is exactly the parity-respecting part of the CG tensor product with
    the edge spherical harmonics, so the layer is E(3)-equivariant (rotations and inversion) for irreps whose
    parities are all ``(-1)^l`` (or all ``-(-1)^l``, same class on both sides).

    Normalisation (e3nn style): parameters are ``N(0, 1)`` and every contraction is divided by the square root of
    its fan-in; the rotated-back degree ``l`` is rescaled by ``sqrt((2l+1)/(2 min(l, mmax)+1))``, so for
    unit-second-moment inputs each message has unit second moment; sums are divided by ``sqrt(avg_num_neighbors)``.

    Args:
        irreps_in, irreps_out: ``C0 x 0 + C x 1 + ... + C x L`` (any order; one common multiplicity for the
            degrees >= 1, see :func:`~fastso3.so2.padded_irreps`); ``lmax = max(L_in, L_out)``.
        mmax: the largest ``|m|`` kept in the edge frame (default ``lmax``).
        hidden: bottleneck width ``H`` (default ``max(C_in, C_out, 1)``).
        num_basis: radial basis size; ``radial_hidden``: hidden widths of the radial MLP (SiLU).
        r_max: cutoff radius; ``avg_num_neighbors``: the normalisation of the sum.

    Attribute ``tables`` (default ``lmax <= 3``, where it is faster): apply the encoder and decoder matrices per
    node and rotate per-node tables of hidden features per edge (``fastso3::so2_table``) instead of rotating the
    features per edge into the per-order matmuls (``fastso3::so2_frame_linear``); the same function either way.

    ``forward(x (N, irreps_in.dim), edge_index (2, E) int [src, dst], edge_vec (E, 3)) -> (N, irreps_out.dim)``,
    in the dtype of the parameters. Edges shorter than ``1e-9`` use the frame ``R = I`` (their message is that of an
    edge along +y of zero length).
    """

    def __init__(
        self,
        irreps_in,
        irreps_out,
        mmax: int | None = None,
        hidden: int | None = None,
        num_basis: int = 8,
        radial_hidden: Sequence[int] = (64,),
        r_max: float = 5.0,
        avg_num_neighbors: float = 1.0,
    ) -> None:
        super().__init__()
        self.irreps_in, self.irreps_out = Irreps(irreps_in), Irreps(irreps_out)
        if _parity_class(self.irreps_in, "irreps_in") != _parity_class(self.irreps_out, "irreps_out"):
            raise ValueError(
                "SO2Convolution: irreps_in and irreps_out must be in the same parity class (both p = (-1)^l or both "
                "p = -(-1)^l); the other case needs the odd-parity SO(2) path, which is not offered"
            )
        c0_in, c_in, l_in = padded_irreps(self.irreps_in)
        c0_out, c_out, l_out = padded_irreps(self.irreps_out)
        L = max(l_in, l_out, 1)
        mmax = L if mmax is None else mmax
        if isinstance(mmax, bool) or not isinstance(mmax, int) or not 0 <= mmax <= L:
            raise ValueError(f"SO2Convolution: mmax must be an int in 0..{L}, got {mmax!r}")
        H = max(c_in, c_out, 1) if hidden is None else hidden
        self.L, self.mmax, self.hidden = L, mmax, H
        self.r_max, self.num_basis, self.avg_num_neighbors = float(r_max), num_basis, float(avg_num_neighbors)
        self._dims = (c0_in, c_in, l_in, c0_out, c_out, l_out)
        self.rotation = EdgeRotation(L, mmax)
        self.tables = L <= 3
        # the radial MLP is told the basis' second moment for u uniform on [0, 1], so its gates have unit moment
        var = self._radial_basis(torch.linspace(0, 1, 4097, dtype=torch.float64)[1:]).pow(2).mean().item()
        self.radial = FullyConnectedNet(
            [num_basis, *radial_hidden, H * (mmax + 1)], torch.nn.functional.silu, variance_in=var
        )
        self.en0 = torch.nn.Parameter(torch.randn(c0_in + c_in * L, H))
        self.de0 = torch.nn.Parameter(torch.randn(H, c0_out + c_out * L))
        self.en = torch.nn.Parameter(torch.randn(c_in, L, H, mmax))
        self.de = torch.nn.Parameter(torch.randn(H, c_out, L, mmax))
        # fan-in of en_m: the c_in (L_in - m + 1) input entries with l >= m (degrees above L_in are zero)
        fan = [max(c_in * (l_in - m + 1), 1) for m in range(1, mmax + 1)]
        self.register_buffer("en_scale", torch.tensor(fan, dtype=torch.get_default_dtype()).rsqrt(), persistent=False)
        kept = [(2 * l + 1) / (2 * min(l, mmax) + 1) for l in range(1, L + 1)]
        self.register_buffer(
            "out_scale",
            torch.tensor(kept, dtype=torch.get_default_dtype()).sqrt()[:, None] * get_mask(L)[0, 0],
            persistent=False,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out} | lmax={self.L}, mmax={self.mmax}, "
            f"hidden={self.hidden})"
        )

    def _radial_basis(self, u: Tensor) -> Tensor:
        """``(E, num_basis)`` Bessel functions of ``u = |v| / r_max`` times the polynomial envelope.

        Bounds are literals so that they stay constants under ``torch.compile(dynamic=True)``.
        """
        return soft_one_hot_linspace(u, 0.0, 1.0, self.num_basis, "bessel", False) * polynomial_cutoff(u, 1.0)[:, None]

    def edge_messages(self, x_src: Tensor, edge_vec: Tensor) -> Tensor:
        """Per-edge messages ``(E, irreps_out.dim)`` of senders ``x_src (E, irreps_in.dim)``, edges ``edge_vec (E, 3)``.

        Not divided by ``sqrt(avg_num_neighbors)`` (``forward`` does that after the sum).
        """
        return self._convolve(x_src, edge_vec, None, None, 0)

    def _convolve(self, x: Tensor, edge_vec: Tensor, src: Tensor | None, dst: Tensor | None, num_nodes: int) -> Tensor:
        """``sum_{e: dst(e) = i} message(x[src(e)], edge_vec[e])`` as ``(num_nodes, irreps_out.dim)`` for node
        features ``x (N, irreps_in.dim)`` and int64 ``src, dst (E,)``; with ``src = dst = None`` the messages of
        ``x (E, irreps_in.dim)``, one per edge.

        Everything per node is done on the nodes (layout changes, the scalar encoder and decoder, the output
        rescaling): per edge only the Wigner blocks, the gates and the hidden features ``(2 mmax + 1, E, H)``
        reach memory, the gather and the sum being fused into the rotations (``index`` of ``so2_encode`` and
        ``so2_decode_orders``), and with ``tables`` the gating and the scalars into the table op.
        """
        c0_in, c_in, l_in, c0_out, c_out, l_out = self._dims
        L, K, H = self.L, self.mmax, self.hidden
        x, x0 = to_padded(x, self.irreps_in)
        if l_in < L:  # pad the degrees l_in+1..L with zeros
            x = torch.nn.functional.pad(x, (L - l_in, L - l_in, 0, L - l_in))
        W = self.rotation(edge_vec)  # (E, L, 2K+1, 2L+1)
        # functions of u = |v| / r_max with literal bounds, which stay constants under torch.compile(dynamic=True)
        radial = self._radial_basis(torch.linalg.vector_norm(edge_vec, dim=-1) / self.r_max)
        gates = self.radial(radial).reshape(-1, K + 1, H)  # shared by +m and -m
        en0 = self.en0 / math.sqrt(max(c0_in + c_in * l_in, 1))
        tables = self.tables and src is not None
        s0 = x0 @ en0[:c0_in]  # the scalars' encoding, per node (or per edge), joins the m = 0 row
        e = so2_encode(x, W, en0[c0_in:].reshape(c_in, L, H), self.en * self.en_scale, index=src, tables=tables,
                       scalars=s0)  # fmt: skip
        de0 = self.de0 / math.sqrt(H)
        de_0 = de0[:, c0_out:].reshape(H, c_out, L)  # the m = 0 column is decoded with the other orders
        y, s = so2_decode_orders(e, de_0, self.de / math.sqrt(H), W, index=dst, num_nodes=num_nodes, tables=tables,
                                 gates=gates, scalars=True)  # fmt: skip
        y0 = s @ de0[:, :c0_out]  # the scalar outputs: linear in the gated m = 0 rows, summed into the nodes first
        y = y * self.out_scale
        return from_padded(y[:, :, :l_out, L - l_out : L + l_out + 1], y0, self.irreps_out)

    def forward(self, x: Tensor, edge_index: Tensor, edge_vec: Tensor) -> Tensor:
        if x.shape[-1] != self.irreps_in.dim or x.dim() != 2:
            raise ValueError(f"SO2Convolution: x must be (N, {self.irreps_in.dim}), got {tuple(x.shape)}")
        if edge_index.dim() != 2 or edge_index.shape[0] != 2 or edge_vec.shape != (edge_index.shape[1], 3):
            raise ValueError(
                f"SO2Convolution: expected edge_index (2, E) and edge_vec (E, 3), got {tuple(edge_index.shape)} "
                f"and {tuple(edge_vec.shape)}"
            )
        if x.dtype != edge_vec.dtype or x.dtype != self.en.dtype:
            raise TypeError(
                f"SO2Convolution: x is {x.dtype}, edge_vec {edge_vec.dtype} and the module's parameters "
                f"{self.en.dtype}; convert the inputs or call module.to({x.dtype})"
            )
        for name, idx in (("edge_index[0] (senders)", edge_index[0]), ("edge_index[1] (receivers)", edge_index[1])):
            # values are read eagerly; compiled indexing has its own bounds checks
            check_index("SO2Convolution", name, idx, x.shape[0], device=x.device, what="nodes",
                        values=not tracing())  # fmt: skip
        out = self._convolve(x, edge_vec, edge_index[0], edge_index[1], x.shape[0])
        return out / math.sqrt(self.avg_num_neighbors)
