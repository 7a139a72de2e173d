import pytest
import torch

from fastso3.o3 import Irreps, rand_matrix
from fastso3.so2 import EdgeRotation, SO2_conv, SO2_conv_e, get_mask, get_message, rotate, rotate_back
from fastso3.so2._conv import so2_decode, so2_encode
from fastso3.so2.reference import message_reference, so2_reference

B, CI, CO, H, L, C0I, C0O = 6, 3, 2, 4, 3, 2, 3


def _inputs(kind, bias=True, b=B):
    conv = SO2_conv_e(CI, CO, H, L, C0I, C0O, bias=bias) if kind == "e" else SO2_conv(CI, CO, L, C0I, C0O, bias=bias)
    if bias:
        torch.nn.init.normal_(conv.bias_0)
    x = torch.randn(b, CI, L, 2 * L + 1) * get_mask(L)
    x0 = torch.randn(b, C0I)
    if kind == "e":
        w, w0 = torch.randn(b, H, 2 * L), torch.randn(b, H)
    else:
        w, w0 = (torch.randn(b, CI, L, 2 * L, CO, L), torch.randn(b, C0I + CI * L, C0O + CO * L))
    return conv, (x, x0, w, w0, torch.randn(b, 3))


def _D(R):
    """Padded (1, L, 2L+1, 2L+1) Wigner blocks of a rotation R (3, 3), rows of e3nn's D^l(R)."""
    irreps = [Irreps(f"1x{l}e") for l in range(1, L + 1)]
    pad = torch.nn.functional.pad
    return torch.stack([pad(ir.D_from_matrix(R), (L - l,) * 4) for l, ir in enumerate(irreps, 1)])[None]


def test_fastso3_parameter_names_and_shapes():
    conv = SO2_conv_e(CI, CO, H, L, C0I, C0O, bias=True)
    shapes = {k: tuple(v.shape) for k, v in conv.state_dict().items()}
    assert shapes == {
        "Mask_out": (1, 1, L, 2 * L + 1),
        "en0": (CI * L + C0I, H),
        "de0": (H, CO * L + C0O),
        "bias_0": (1, CO * L + C0O),
        "en1": (CI, L, H, L),
        "de1": (H, CO, L, L),
        "en2": (CI, L, H, L),
        "de2": (H, CO, L, L),
    }
    assert set(SO2_conv(CI, CO, L, C0I, C0O).state_dict()) == {"Mask_out"}


@pytest.mark.parametrize("kind", ["e", "simple"])
def test_matches_per_m_reference_for_any_roll(f64, kind):
    conv, (x, x0, w, w0, v) = _inputs(kind)
    y, y0 = get_message(x, x0, w, w0, v, conv, L)
    for gamma in (None, 6 * torch.rand(B)):
        r, r0 = message_reference(x, x0, w, w0, v, conv, gamma)
        torch.testing.assert_close(y, r, atol=1e-13, rtol=0)
        torch.testing.assert_close(y0, r0, atol=1e-13, rtol=0)
    # the in-frame layer alone, too
    xr = rotate(EdgeRotation(L)(v), x)
    ys, _ = so2_reference(conv, [xr[:, :, l - 1, L - l : L + l + 1] for l in range(1, L + 1)], x0, w, w0)
    yf, _ = conv(xr, x0, w, w0)
    for l, yl in enumerate(ys, 1):
        torch.testing.assert_close(yf[:, :, l - 1, L - l : L + l + 1], yl, atol=1e-13, rtol=0)


def test_fused_message_equals_rotate_conv_rotate_back(f64):
    """get_message runs SO2_conv_e with the rotation fused in (forward_rotated): same values and gradients
    (features, gates, edge vectors, parameters) as the unfused rotate -> forward -> rotate_back."""
    conv, inputs = _inputs("e")
    results = []
    for fused in (True, False):
        x, x0, w, w0, v = (t.clone().requires_grad_() for t in inputs)
        if fused:
            y, y0 = get_message(x, x0, w, w0, v, conv, L)
        else:
            W = conv.rotation(v)
            y, y0 = conv(rotate(W, x), x0, w, w0)
            y = rotate_back(W, y)
        g = torch.Generator().manual_seed(1)
        loss = (y * torch.randn(y.shape, generator=g)).sum() + (y0 * torch.randn(y0.shape, generator=g)).sum()
        grads = torch.autograd.grad(loss, [x, x0, w, w0, v, *conv.parameters()])
        results.append([y, y0, *grads])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", ["e", "simple"])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-12)])
def test_message_equivariance(kind, dtype, tol):
    conv, (x, x0, w, w0, v) = _inputs(kind)
    conv.to(dtype)
    x, x0, w, w0, v = (t.to(dtype) for t in (x, x0, w, w0, v))
    R = rand_matrix(dtype=torch.float64)
    D = _D(R).to(dtype)
    y, y0 = get_message(x, x0, w, w0, v, conv, L)
    yR, y0R = get_message(rotate(D.expand(B, -1, -1, -1), x), x0, w, w0, v @ R.to(dtype).T, conv, L)
    assert (rotate(D.expand(B, -1, -1, -1), y) - yR).abs().max() < tol
    assert (y0 - y0R).abs().max() < tol


def test_inversion_without_the_odd_path(f64):
    """With B = 0 (en2 = 0) the message maps natural-parity features (p = (-1)^l) equivariantly under -I."""
    conv, (x, x0, w, w0, v) = _inputs("e")
    with torch.no_grad():
        conv.en2.zero_()
    sign = torch.tensor([(-1.0) ** l for l in range(1, L + 1)])[:, None]
    y, y0 = get_message(x, x0, w, w0, v, conv, L)
    yP, y0P = get_message(x * sign, x0, w, w0, -v, conv, L)
    torch.testing.assert_close(yP, y * sign)
    torch.testing.assert_close(y0P, y0)


@pytest.mark.parametrize("kind", ["e", "simple"])
def test_deterministic_and_mask_invariants(f64, kind):
    conv, (x, x0, w, w0, v) = _inputs(kind)
    x = x.requires_grad_()
    y, y0 = get_message(x, x0, w, w0, v, conv, L)
    y2, y02 = get_message(x, x0, w, w0, v, conv, L)
    assert torch.equal(y, y2) and torch.equal(y0, y02)
    pad = 1 - get_mask(L)
    assert (y * pad).abs().max() == 0
    (g,) = torch.autograd.grad((y * torch.randn_like(y)).sum() + y0.sum(), x)
    assert (g * pad).abs().max() == 0


@pytest.mark.parametrize("kind", ["e", "simple"])
def test_gradcheck_including_axes(f64, single_thread, kind):
    """First and second derivatives, edges exactly along +-x, +-y, +-z (chart switch at y = 0, poles)."""
    Lr, n = 2, 6
    conv = SO2_conv_e(1, 1, 2, Lr, 1, 1) if kind == "e" else SO2_conv(1, 1, Lr, 1, 1)
    v = torch.cat([torch.eye(3), -torch.eye(3)]) * 1.5
    x = torch.randn(n, 1, Lr, 2 * Lr + 1) * get_mask(Lr)
    x0 = torch.randn(n, 1)
    if kind == "e":
        w, w0 = torch.randn(n, 2, 2 * Lr), torch.randn(n, 2)
    else:
        w, w0 = torch.randn(n, 1, Lr, 2 * Lr, 1, Lr), torch.randn(n, 1 + Lr, 1 + Lr)
    x, x0, w, w0, v = (t.clone().requires_grad_() for t in (x, x0, w, w0, v))

    def f(x, x0, w, w0, v):
        return get_message(x * get_mask(Lr), x0, w, w0, v, conv, Lr)

    assert torch.autograd.gradcheck(f, (x, x0, w, w0, v))
    assert torch.autograd.gradgradcheck(lambda x, v: f(x, x0, w, w0, v), (x, v))


def test_bad_inputs():
    conv, (x, x0, w, w0, v) = _inputs("e")
    with pytest.raises(ValueError, match="x must have shape"):
        conv(x[:, :, :2], x0, w, w0)
    with pytest.raises(ValueError, match="w must have shape"):
        conv(x, x0, w[..., :-1], w0)
    with pytest.raises(ValueError, match="same number of edges"):
        conv(x, x0[:-1], w, w0)
    with pytest.raises(ValueError, match="L=2 but the conv"):
        get_message(x, x0, w, w0, v, conv, 2)
    with pytest.raises(ValueError, match="edges_vec"):
        get_message(x, x0, w, w0, v[:, :2], conv, L)
    with pytest.raises(ValueError, match="non-negative int"):
        SO2_conv(2, -1, 2)
    with pytest.raises(ValueError, match="L must be >= 1"):
        SO2_conv_e(2, 2, 2, 0)
    # features already in the frame keep every order: the bottleneck's helpers refuse mmax < L there
    with pytest.raises(ValueError, match="keep every order"):
        so2_encode(x, None, torch.zeros(CI, L, H), torch.zeros(CI, L, H, L - 1))
    with pytest.raises(ValueError, match="keep every order"):
        e = torch.zeros(L - 1, B, H)
        so2_decode(e, torch.zeros(B, H), e, torch.zeros(H, CO, L), torch.zeros(H, CO, L, L - 1), None)
    # scalars of the wrong shape or dtype are refused, not broadcast or cast into the m = 0 row
    en0, en = torch.zeros(CI, L, H), torch.zeros(CI, L, H, L)
    other = torch.float64 if x.dtype == torch.float32 else torch.float32
    for scalars in (torch.zeros(H), torch.zeros(1, H), torch.zeros(B, H, dtype=other)):
        with pytest.raises(ValueError, match="scalars must be"):
            so2_encode(x, None, en0, en, scalars=scalars)
    # an m = 0 row wider than its decoder (or than H) is refused, not cropped
    e = torch.zeros(L, B, H)
    with pytest.raises(ValueError, match="e_0 must be"):
        so2_decode(e, torch.zeros(B, H + 3), e, torch.zeros(H, CO, L), torch.zeros(H, CO, L, L), None)
    with pytest.raises(ValueError, match="e_0 must be"):
        so2_decode(e, torch.zeros(B, H + 3), e, torch.zeros(H + 3, CO, L), torch.zeros(H, CO, L, L), None)


def test_zero_length_edges_are_finite(f64):
    conv, (x, x0, w, w0, v) = _inputs("e")
    v = v.clone()
    v[0] = 0
    v.requires_grad_()
    y, y0 = get_message(x, x0, w, w0, v, conv, L)
    (g,) = torch.autograd.grad(y.sum() + y0.sum(), v)
    assert torch.isfinite(y).all() and torch.isfinite(g).all() and g[0].abs().max() == 0
