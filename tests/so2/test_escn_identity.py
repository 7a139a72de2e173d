"""The eSCN identity: a CG tensor product with the edge spherical harmonics is an SO(2) convolution in the edge
frame, so get_message with the matching SO2_conv weights reproduces it."""

import torch

from fastso3.o3 import FullyConnectedTensorProduct, Irreps, spherical_harmonics
from fastso3.so2 import SO2_conv, from_padded, get_message, to_padded

C0, C, L = 2, 2, 2
IRREPS = Irreps(f"{C0}x0e+{C}x1o+{C}x2e")
# every l2 <= 2L under both parity labels: even-labelled paths give the "real" (A) part, odd ones the "imaginary" (B)
SH_LS = list(range(2 * L + 1))
IRREPS_SH = Irreps("+".join(f"1x{l}{p}" for l in SH_LS for p in "eo"))


def _sh(v):
    y = spherical_harmonics(SH_LS, v, True, normalization="component")
    parts = y.split([2 * l + 1 for l in SH_LS], -1)
    return torch.cat([t for p in parts for t in (p, p)], -1)


def test_tensor_product_equals_so2_message(f64):
    tp = FullyConnectedTensorProduct(IRREPS, IRREPS_SH, IRREPS)
    d = IRREPS.dim
    # the TP as a linear map of x in the edge frame (edge along +y)
    G = tp(torch.eye(d), _sh(torch.tensor([[0.0, 1.0, 0.0]])).expand(d, -1)).T  # (out, in)
    # its padded form: Gp[c_out, l_out, m_out, c_in, l_in, m_in] (+ the degree-0 rows and columns)
    basis_in = [to_padded(e, IRREPS) for e in torch.eye(d)]
    Gx = torch.stack([to_padded(G[:, i], IRREPS)[0] for i in range(d)], -1)  # (C, L, 2L+1, d_in)
    G0 = torch.stack([to_padded(G[:, i], IRREPS)[1] for i in range(d)], -1)  # (C0, d_in)
    xin = torch.stack([b[0] for b in basis_in], -1)  # (C, L, 2L+1, d_in) one-hot
    x0in = torch.stack([b[1] for b in basis_in], -1)  # (C0, d_in)
    Gp = torch.einsum("alqi,cmri->alqcmr", Gx, xin)  # (C, L, 2L+1, C, L, 2L+1)

    # the eSCN structure: only |m_out| = |m_in| couple, as A x_{+m} - B x_{-m}, A x_{-m} + B x_{+m}
    mo = torch.arange(-L, L + 1)
    struct = (mo[:, None].abs() == mo[None, :].abs()).double()
    assert (Gp * (1 - struct)[None, None, :, None, None, :]).abs().max() < 1e-12
    w = torch.zeros(1, C, L, 2 * L, C, L)
    for m in range(1, L + 1):
        A = Gp[:, :, L + m, :, :, L + m]
        Bm = Gp[:, :, L - m, :, :, L + m]  # y_{-m} gets +B x_{+m}
        torch.testing.assert_close(Gp[:, :, L - m, :, :, L - m], A, atol=1e-12, rtol=0)
        torch.testing.assert_close(Gp[:, :, L + m, :, :, L - m], -Bm, atol=1e-12, rtol=0)
        w[0, :, :, L + m - 1] = A.permute(2, 3, 0, 1)
        w[0, :, :, L - m] = Bm.permute(2, 3, 0, 1)
    assert w[0, :, :, :L].abs().max() > 1e-3  # the odd-labelled paths really give a B part
    # m = 0: rows [y_L0, y_m0 (channel-major)], columns [x_L0, x_m0]
    rows = torch.cat([G0, Gx[:, :, L].flatten(0, 1)], 0)  # (C0 + C L, d_in)
    cols_sel = torch.cat([x0in, xin[:, :, L].flatten(0, 1)], 0)  # (C0 + C L, d_in) one-hot
    w_L0 = (rows @ cols_sel.T).T[None]  # (1, C0 + C L, C0 + C L)

    conv = SO2_conv(C, C, L, C0, C0)
    b = 16
    v = torch.cat([torch.randn(b - 4, 3), torch.tensor([[0.0, 2, 0], [0, -1, 0], [1, 0, 0], [0, 0, -3]])])
    x = IRREPS.randn(b, -1)
    xp, x0 = to_padded(x, IRREPS)
    y, y0 = get_message(xp, x0, w.expand(b, -1, -1, -1, -1, -1), w_L0.expand(b, -1, -1), v, conv, L)
    torch.testing.assert_close(from_padded(y, y0, IRREPS), tp(x, _sh(v)), atol=1e-12, rtol=0)
