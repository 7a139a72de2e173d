"""fastso3.math against e3nn.math 0.6.0 (oracle) and against the documented formulas."""

import math

import pytest
import torch

from fastso3.testing import default_dtype

import fastso3.math as fm

e3nn_math = pytest.importorskip("e3nn.math")

BASES = ["gaussian", "cosine", "smooth_finite", "fourier", "bessel"]

# conventions.md 6.1: e3nn's Monte-Carlo constants and the exact Gaussian integrals (6 decimals)
TABLE = {
    "silu": (torch.nn.functional.silu, 1.679177, 1.676532),
    "tanh": (torch.tanh, 1.593733, 1.592537),
    "sigmoid": (torch.sigmoid, 1.846706, 1.846229),
    "gelu": (torch.nn.functional.gelu, 1.536064, 1.533530),
    "relu": (torch.relu, 1.416339, 1.414214),
}




# --------------------------------------------------------------------------------------------------
# soft_one_hot_linspace
# --------------------------------------------------------------------------------------------------
@pytest.mark.e3nn
@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("cutoff", [True, False])
@pytest.mark.parametrize("start,end,number", [(-0.5, 1.5, 4), (0.0, 5.0, 10), (1.0, 1.3, 2)])
def test_soft_one_hot_linspace_matches_e3nn_float64(basis, cutoff, start, end, number):
    x = torch.cat([torch.linspace(start - 1.0, end + 1.0, 301, dtype=torch.float64), torch.randn(50, dtype=torch.float64)])
    x = x[x != start]  # e3nn's bessel is NaN exactly at start (tested separately)
    with default_dtype(torch.float64):  # e3nn's smooth_finite constant follows the default dtype
        expected = e3nn_math.soft_one_hot_linspace(x, start, end, number, basis, cutoff)
        got = fm.soft_one_hot_linspace(x, start, end, number, basis, cutoff)
    assert got.shape == (x.shape[0], number) and got.dtype == torch.float64
    assert torch.isfinite(expected).all()
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


@pytest.mark.e3nn
@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_soft_one_hot_linspace_bit_equal_under_float32_default(basis, dtype):
    # e3nn computes the smooth_finite constant e^2 in the *default* dtype; we reproduce the rounding
    x = (torch.rand(4, 33) * 3 - 1).to(dtype)
    for cutoff in (True, False):
        expected = e3nn_math.soft_one_hot_linspace(x, -0.25, 1.25, 6, basis, cutoff)
        got = fm.soft_one_hot_linspace(x, -0.25, 1.25, 6, basis, cutoff)
        assert got.shape == (4, 33, 6) and got.dtype == dtype
        assert torch.equal(got, expected)


def test_soft_one_hot_linspace_formulas():
    x = torch.tensor([0.1, 0.37, 0.8], dtype=torch.float64)
    # gaussian with cutoff: centres linspace(0, 1, 5)[1:-1], step 1/4
    v = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    d = (x[:, None] - v) / 0.25
    torch.testing.assert_close(fm.soft_one_hot_linspace(x, 0.0, 1.0, 3, "gaussian", True), torch.exp(-(d**2)) / 1.12, atol=1e-15, rtol=0)
    # cosine without cutoff: centres linspace(0, 1, 3), step 1/2
    v = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    d = (x[:, None] - v) / 0.5
    expected = torch.cos(math.pi / 2 * d) * (d.abs() < 1)
    torch.testing.assert_close(fm.soft_one_hot_linspace(x, 0.0, 1.0, 3, "cosine", False), expected, atol=1e-15, rtol=0)
    # fourier
    i = torch.arange(1, 4, dtype=torch.float64)
    expected = torch.sin(math.pi * i * x[:, None]) / math.sqrt(0.25 + 3 / 2)
    torch.testing.assert_close(fm.soft_one_hot_linspace(x, 0.0, 1.0, 3, "fourier", True), expected, atol=1e-15, rtol=0)
    # bessel on [0, 2]
    n = torch.arange(1, 4, dtype=torch.float64)
    expected = math.sqrt(2 / 2.0) * torch.sin(n * math.pi * x[:, None] / 2.0) / x[:, None]
    torch.testing.assert_close(fm.soft_one_hot_linspace(x, 0.0, 2.0, 3, "bessel", False), expected, atol=1e-14, rtol=0)


def test_soft_one_hot_linspace_bessel_limit_at_start():
    # e3nn gives NaN (0/0) at x == start; fastso3 gives the limit (or 0 with the cutoff mask)
    x = torch.tensor([0.5, 0.5 + 1e-9], dtype=torch.float64, requires_grad=True)
    out = fm.soft_one_hot_linspace(x, 0.5, 2.5, 4, "bessel", False)
    n = torch.arange(1, 5, dtype=torch.float64)
    torch.testing.assert_close(out[0], math.sqrt(2 / 2.0) * n * math.pi / 2.0, atol=1e-14, rtol=0)
    torch.testing.assert_close(out[1], out[0], atol=1e-7, rtol=0)
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(g).all()
    out_c = fm.soft_one_hot_linspace(x.detach(), 0.5, 2.5, 4, "bessel", True)
    assert torch.equal(out_c[0], torch.zeros(4, dtype=torch.float64))
    with default_dtype(torch.float64):
        assert torch.isnan(e3nn_math.soft_one_hot_linspace(x.detach(), 0.5, 2.5, 4, "bessel", False)[0]).all()


@pytest.mark.parametrize("basis", BASES)
def test_soft_one_hot_linspace_nan_propagates(basis):
    x = torch.tensor([float("nan"), 0.3], dtype=torch.float64)
    out = fm.soft_one_hot_linspace(x, 0.0, 1.0, 4, basis, False)
    assert torch.isnan(out[0]).all() and torch.isfinite(out[1]).all()


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("cutoff", [True, False])
def test_soft_one_hot_linspace_gradgradcheck(basis, cutoff):
    # points away from the kinks of the cosine basis and from the bessel singularity
    x = torch.tensor([0.13, 0.41, 0.77, 1.08], dtype=torch.float64, requires_grad=True)

    def f(x):
        return fm.soft_one_hot_linspace(x, 0.0, 1.0, 5, basis, cutoff)

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_soft_one_hot_linspace_bad_inputs():
    x = torch.linspace(0, 1, 5)
    with pytest.raises(ValueError, match="cutoff"):
        fm.soft_one_hot_linspace(x, 0.0, 1.0, 4, "gaussian")
    with pytest.raises(ValueError, match="cutoff"):
        fm.soft_one_hot_linspace(x, 0.0, 1.0, 4, "gaussian", cutoff=1)
    with pytest.raises(ValueError, match="basis"):
        fm.soft_one_hot_linspace(x, 0.0, 1.0, 4, cutoff=True)
    with pytest.raises(ValueError, match="basis"):
        fm.soft_one_hot_linspace(x, 0.0, 1.0, 4, "laguerre", True)
    for number in (0, -3):
        with pytest.raises(ValueError, match="number"):
            fm.soft_one_hot_linspace(x, 0.0, 1.0, number, "gaussian", True)
    with pytest.raises(TypeError, match="number"):
        fm.soft_one_hot_linspace(x, 0.0, 1.0, 2.5, "gaussian", True)
    with pytest.raises(ValueError, match="number >= 2"):
        fm.soft_one_hot_linspace(x, 0.0, 1.0, 1, "gaussian", False)
    for start, end in ((1.0, 1.0), (2.0, 1.0)):
        with pytest.raises(ValueError, match="greater than start"):
            fm.soft_one_hot_linspace(x, start, end, 4, "cosine", True)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            fm.soft_one_hot_linspace(x, bad, 1.0, 4, "cosine", True)
    with pytest.raises(TypeError, match="floating"):
        fm.soft_one_hot_linspace(torch.arange(3), 0.0, 1.0, 4, "cosine", True)
    # a single function is fine where no step is needed
    assert fm.soft_one_hot_linspace(x, 0.0, 1.0, 1, "gaussian", True).shape == (5, 1)
    assert fm.soft_one_hot_linspace(x, 0.0, 1.0, 1, "fourier", False).shape == (5, 1)


# --------------------------------------------------------------------------------------------------
# soft_unit_step and bessel
# --------------------------------------------------------------------------------------------------
@pytest.mark.e3nn
def test_soft_unit_step_matches_e3nn_and_derivative():
    x = torch.linspace(-2, 5, 701, dtype=torch.float64, requires_grad=True)
    y = fm.soft_unit_step(x)
    assert torch.equal(y, e3nn_math.soft_unit_step(x.detach()))
    (g,) = torch.autograd.grad(y.sum(), x)
    xd = x.detach()
    expected = torch.where(xd > 0, torch.exp(-1 / xd) / xd**2, torch.zeros_like(xd))
    torch.testing.assert_close(g, expected, atol=1e-15, rtol=1e-14)


def test_soft_unit_step_nan_free_and_double_differentiable():
    x = torch.tensor([-3.0, -1e-300, 0.0, 1e-300, 1e-3, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    y = fm.soft_unit_step(x)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x)
    for t in (y, g, gg):
        assert torch.isfinite(t).all()
        assert torch.equal(t[:3], torch.zeros(3, dtype=torch.float64))
    # second derivative of e^{-1/x}: e^{-1/x} (1 - 2x) / x^4
    xd = x.detach()[4:]
    torch.testing.assert_close(gg[4:], torch.exp(-1 / xd) * (1 - 2 * xd) / xd**4, atol=0, rtol=1e-12)
    xs = torch.tensor([0.3, 0.9, 1.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(fm.soft_unit_step, (xs,))


@pytest.mark.e3nn
def test_bessel_matches_e3nn_with_limit():
    x = torch.cat([torch.zeros(1), torch.rand(40) * 3]).to(torch.float64)
    for n, x_max in ((1, 1.0), (8, 3.0)):
        assert torch.equal(fm.bessel(x, n, x_max), e3nn_math.bessel(x, n, x_max))
    k = torch.arange(1, 9, dtype=torch.float64)
    torch.testing.assert_close(fm.bessel(torch.zeros(1, dtype=torch.float64), 8, 3.0)[0], math.sqrt(2 / 3) * k * math.pi / 3, atol=1e-14, rtol=0)
    xg = torch.tensor([0.0, 0.7], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(fm.bessel(xg, 4).sum(), xg)
    assert torch.isfinite(g).all()
    with pytest.raises(ValueError):
        fm.bessel(x, 0)
    with pytest.raises(TypeError):
        fm.bessel(x, 2.0)
    with pytest.raises(ValueError):
        fm.bessel(x, 3, x_max=-1.0)


# --------------------------------------------------------------------------------------------------
# cutoff envelopes
# --------------------------------------------------------------------------------------------------
def test_polynomial_cutoff():
    r_max = 2.5
    x = torch.linspace(0, 3.0, 61, dtype=torch.float64)
    u = x / r_max
    for p in (6, 3, 5.0):
        expected = (1 - (p + 1) * (p + 2) / 2 * u**p + p * (p + 2) * u ** (p + 1) - p * (p + 1) / 2 * u ** (p + 2)) * (u < 1)
        torch.testing.assert_close(fm.polynomial_cutoff(x, r_max, p), expected, atol=1e-15, rtol=0)
    # f(0) = 1, f = f' = f'' = 0 at r_max (approached from inside), 0 beyond
    xg = torch.tensor([0.0, r_max * (1 - 1e-6), r_max, 3.0], dtype=torch.float64, requires_grad=True)
    f = fm.polynomial_cutoff(xg, r_max)
    (g,) = torch.autograd.grad(f.sum(), xg, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), xg)
    assert f[0].item() == 1.0 and f[2].item() == 0.0 and f[3].item() == 0.0
    # (1e-13: the cancellation of the 4-term form near u = 1; the true value there is ~1e-16)
    assert abs(f[1].item()) < 1e-13 and abs(g[1].item()) < 1e-9 and abs(gg[1].item()) < 1e-4
    with pytest.raises(ValueError):
        fm.polynomial_cutoff(x, 0.0)
    with pytest.raises(ValueError):
        fm.polynomial_cutoff(x, 1.0, p=0)


def test_cosine_cutoff():
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0], dtype=torch.float64)
    expected = torch.tensor([1.0, 0.5 * (math.cos(math.pi / 4) + 1), 0.5, 0.5 * (math.cos(3 * math.pi / 4) + 1), 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(fm.cosine_cutoff(x, 2.0), expected, atol=1e-15, rtol=0)
    with pytest.raises(ValueError):
        fm.cosine_cutoff(x, -2.0)
    with pytest.raises(TypeError):
        fm.cosine_cutoff([0.1], 1.0)


# --------------------------------------------------------------------------------------------------
# normalize2mom and moment
# --------------------------------------------------------------------------------------------------
@pytest.mark.e3nn
@pytest.mark.parametrize("name", list(TABLE))
def test_normalize2mom_constants_equal_e3nn(name):
    f, mc, exact = TABLE[name]
    ours = fm.normalize2mom(f)
    theirs = e3nn_math.normalize2mom(f)
    assert ours.cst == theirs.cst  # bit for bit
    assert ours._is_id is False
    assert abs(ours.cst - mc) <= 5e-7  # the table, 6 decimals
    x = torch.randn(100, dtype=torch.float64)
    assert torch.equal(ours(x), theirs(x))
    # the Monte-Carlo constant is measurably off the true integral (0.1-0.2 %)
    assert abs(ours.cst - exact) > 2e-4


@pytest.mark.parametrize("name", list(TABLE))
def test_normalize2mom_exact_integral(name):
    f, _, exact = TABLE[name]
    n = fm.normalize2mom(f, exact=True)
    assert abs(n.cst - exact) <= 1e-6
    x = torch.randn(10, dtype=torch.float64)
    torch.testing.assert_close(n(x), f(x) * n.cst, atol=0, rtol=0)


def test_normalize2mom_exact_known_integrals():
    # E[z^2] = 1 exactly -> identity; E[(z^2)^2] = 3; E[relu(z)^2] = 1/2
    ident = fm.normalize2mom(lambda z: z, exact=True)
    assert ident._is_id and abs(ident.cst - 1) < 1e-12
    assert abs(fm.normalize2mom(lambda z: z * z, exact=True).cst - 3**-0.5) < 1e-12
    assert abs(fm.normalize2mom(torch.relu, exact=True).cst - 2**0.5) < 1e-12
    # with e3nn's Monte-Carlo samples, E[z^2] = 0.99778..., so even the identity gets rescaled
    mc = fm.normalize2mom(lambda z: z)
    assert not mc._is_id and abs(mc.cst - 1.001111) < 1e-6
    assert e3nn_math.normalize2mom(lambda z: z).cst == mc.cst


@pytest.mark.e3nn
def test_moment_matches_e3nn():
    for n in (1, 2, 3):
        assert torch.equal(fm.moment(torch.tanh, n, dtype=torch.float64), e3nn_math.moment(torch.tanh, n, dtype=torch.float64))


def test_normalize2mom_module_and_errors():
    act = torch.nn.SiLU()
    n = fm.normalize2mom(act)
    assert n.f is act and dict(n.named_modules())["f"] is act
    with pytest.raises(TypeError):
        fm.normalize2mom(3.0)
    with pytest.raises(ValueError):
        fm.normalize2mom(torch.zeros_like)
    with pytest.raises(ValueError):
        fm.normalize2mom(torch.zeros_like, exact=True)
