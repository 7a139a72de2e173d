"""S2 / SO(3) grids, Legendre functions and alpha-beta harmonics against e3nn 0.6.0 (float64) and by their properties."""

import math

import pytest
import torch

from fastso3 import o3
from fastso3.o3 import _s2grid
from fastso3.testing import assert_equivariant

e3nn_o3 = pytest.importorskip("e3nn.o3")
e3nn_s2grid = pytest.importorskip("e3nn.o3._s2grid")

NORMALIZATIONS = ["integral", "component", "norm"]
# (lmax, res): FFT in alpha (odd res_alpha >= 2 lmax + 1), dense alpha (even res_alpha), defaults filled in.
GRIDS = [(5, None), (3, (12, 13)), (4, (10, 12)), (None, (14, 11)), (2, (8, None)), (0, None)]


def _max_diff(a, b):
    return (a - b).abs().max().item() if a.numel() else 0.0


@pytest.mark.parametrize("lmax, res", GRIDS)
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_grids_equal_e3nn(f64, lmax, res, normalization):
    ours_to, ref_to = o3.ToS2Grid(lmax, res, normalization), e3nn_o3.ToS2Grid(lmax, res, normalization)
    ours_from = o3.FromS2Grid(res, lmax, normalization, lmax_in=3)
    ref_from = e3nn_o3.FromS2Grid(res, lmax, normalization, lmax_in=3)
    for ours, ref in ((ours_to, ref_to), (ours_from, ref_from)):
        assert (ours.lmax, ours.res_beta, ours.res_alpha) == (ref.lmax, ref.res_beta, ref.res_alpha)
        assert repr(ours) == repr(ref)
        ours_state, ref_state = ours.state_dict(), ref.state_dict()
        assert list(ours_state) == list(ref_state)  # alphas, betas, sha, shb
        for key in ref_state:
            assert ours_state[key].shape == ref_state[key].shape
            assert _max_diff(ours_state[key], ref_state[key]) <= 1e-13 * max(1.0, ref_state[key].abs().max().item())
        assert _max_diff(ours.grid, ref.grid) <= 1e-15
    x = torch.randn(2, 3, (ours_to.lmax + 1) ** 2)
    assert _max_diff(ours_to(x), ref_to(x)) <= 1e-12
    signal = torch.randn(2, ours_from.res_beta, ours_from.res_alpha)
    assert _max_diff(ours_from(signal), ref_from(signal)) <= 1e-12


def test_tensor_normalization_and_e3nn_state_dict(f64):
    scales = torch.rand(4) + 0.5
    ours, ref = o3.ToS2Grid(3, (10, 9), normalization=scales), e3nn_o3.ToS2Grid(3, (10, 9), normalization=scales)
    assert _max_diff(ours.shb, ref.shb) <= 1e-15
    ref_from = e3nn_o3.FromS2Grid((10, 9), 3, normalization="norm")
    ours_from = o3.FromS2Grid((10, 9), 3, normalization="integral")
    ours_from.load_state_dict(ref_from.state_dict())  # e3nn's buffers load as they are
    signal = torch.randn(10, 9)
    assert _max_diff(ours_from(signal), ref_from(signal)) <= 1e-13


def test_helpers_equal_e3nn(f64):
    betas, alphas, shb, sha = o3.spherical_harmonics_s2_grid(6, 14, 15)
    for ours, ref in zip((betas, alphas, shb, sha), e3nn_o3.spherical_harmonics_s2_grid(6, 14, 15)):
        assert _max_diff(ours, ref) <= 1e-14
    for b in (1, 4, 7):
        assert _max_diff(_s2grid._quadrature_weights(b), e3nn_s2grid._quadrature_weights(b)) <= 1e-17
    assert torch.equal(_s2grid._expand_matrix([0, 2, 1]), e3nn_s2grid._expand_matrix([0, 2, 1]))
    x = torch.randn(3, 2, 15)
    assert _max_diff(o3.rfft(x, 6), e3nn_o3.rfft(x, 6)) <= 1e-13
    assert _max_diff(o3.rfft(x, 6), x @ sha) <= 1e-12  # the FFT is the Fourier sum
    coefficients = torch.randn(3, 13)
    assert _max_diff(o3.irfft(coefficients, 15), e3nn_o3.irfft(coefficients, 15)) <= 1e-13
    assert _max_diff(o3.irfft(coefficients, 15), coefficients @ sha.T) <= 1e-12
    for args in ((None, None, 11), (4, None, None), (None, 12, None), (2, 16, 21)):
        assert _s2grid._complete_lmax_res(*args) == e3nn_s2grid._complete_lmax_res(*args)


def test_legendre_and_alpha_beta_equal_e3nn(f64):
    ls = [0, 3, 1, 7, 12]
    z, y = torch.randn(9), torch.randn(9)  # off the unit circle too: the polynomial itself
    ref = e3nn_o3.Legendre(ls)(z, y)
    assert _max_diff(o3.Legendre(ls)(z, y), ref) <= 1e-12 * ref.abs().max().item()
    beta = torch.rand(40) * math.pi
    assert _max_diff(o3.Legendre(ls)(beta.cos(), beta.sin()), e3nn_o3.Legendre(ls)(beta.cos(), beta.sin())) <= 1e-12
    alpha, beta = torch.randn(5, 4) * 3, torch.randn(5, 4) * 3  # any real angles
    for l, e3nn_l in ((0, 0), (4, 4), ([0, 2, 1], [0, 2, 1]), (o3.Irreps("2x1e + 0e"), e3nn_o3.Irreps("2x1e + 0e"))):
        for normalization in NORMALIZATIONS:
            ours = o3.spherical_harmonics_alpha_beta(l, alpha, beta, normalization=normalization)
            ref = e3nn_o3.spherical_harmonics_alpha_beta(e3nn_l, alpha, beta, normalization=normalization)
            assert _max_diff(ours, ref) <= 1e-13
    assert _max_diff(o3.spherical_harmonics_alpha(5, alpha), e3nn_o3.spherical_harmonics_alpha(5, alpha)) == 0.0


def test_alpha_beta_properties(f64):
    # Y(R x) = D(R) Y(x), the harmonics of the direction, and the Legendre factor is the m = 0 column of D.
    x = torch.randn(10, 3)
    alpha, beta = o3.xyz_to_angles(x)
    for l in range(5):
        assert _max_diff(o3.spherical_harmonics_alpha_beta(l, alpha, beta), o3.spherical_harmonics(l, x, True)) <= 1e-13
        a, b, _ = o3.rand_angles()
        column = o3.spherical_harmonics_alpha_beta(l, a, b) * math.sqrt(4 * math.pi / (2 * l + 1))
        assert _max_diff(column, o3.wigner_D(l, a, b, torch.zeros(()))[:, l]) <= 1e-13
    alpha = torch.randn(3, requires_grad=True)
    beta = torch.rand(3, requires_grad=True)
    torch.autograd.gradcheck(lambda a, b: o3.SphericalHarmonicsAlphaBeta([1, 3])(a, b), (alpha, beta))


@pytest.mark.parametrize("lmax, res", [(5, (12, 11)), (3, (10, 12)), (None, (14, 16))])
def test_round_trips(f64, lmax, res):
    to_grid, from_grid = o3.ToS2Grid(lmax, res), o3.FromS2Grid(res, lmax)
    x = torch.randn(4, (to_grid.lmax + 1) ** 2)
    assert _max_diff(from_grid(to_grid(x)), x) <= 1e-12  # exact quadrature for band-limited signals
    signal = to_grid(from_grid(torch.randn(to_grid.res_beta, to_grid.res_alpha)))  # band-limit a signal
    assert _max_diff(to_grid(from_grid(signal)), signal) <= 1e-12


def test_integral_normalization_is_the_sphere_integral(f64):
    # FromS2Grid('integral') of f gives int f Y dOmega: for f = Y^2_1 that is the unit vector of component (2, 1).
    from_grid = o3.FromS2Grid((20, 21), 4, normalization="integral")
    grid = from_grid.grid
    f = o3.spherical_harmonics(2, grid, True)[..., 3]
    expected = torch.zeros(25)
    expected[4 + 3] = 1.0
    assert _max_diff(from_grid(f), expected) <= 1e-12


def test_pointwise_nonlinearity_is_equivariant(f64):
    to_grid, from_grid = o3.ToS2Grid(3, (60, 61)), o3.FromS2Grid((60, 61), 3)

    def f(x):
        return from_grid(to_grid(x).exp())

    f.irreps_in = f.irreps_out = o3.Irreps.spherical_harmonics(3)
    assert_equivariant(f, tolerance=1e-6)  # the aliasing of exp on a 60 x 61 grid is below 1e-7


def test_float32_and_gradients():
    to_grid, from_grid = o3.ToS2Grid(4, (10, 11)), o3.FromS2Grid((10, 12), 4)  # FFT and dense alpha
    assert to_grid.shb.dtype == torch.float32
    x = torch.randn(3, 25)
    with torch.no_grad():
        ref = e3nn_o3.ToS2Grid(4, (10, 11), dtype=torch.float64)(x.double())
    assert _max_diff(to_grid(x).double(), ref) <= 1e-5 * ref.abs().max().item()
    x64 = torch.randn(2, 25, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(o3.ToS2Grid(4, (10, 11), dtype=torch.float64), (x64,))
    signal = torch.randn(2, 10, 12, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(from_grid.to(torch.float64), (signal,))
    assert from_grid(torch.zeros(0, 3, 10, 12, dtype=torch.float64)).shape == (0, 3, 25)


def test_devices_follow_the_arguments():
    # The meta device stands in for an accelerator: every buffer and constant must follow dtype= / device= or the input.
    to_grid, from_grid = o3.ToS2Grid(3, (8, 9), device="meta"), o3.FromS2Grid((8, 9), 3, device="meta")
    assert {t.device.type for t in (*to_grid.buffers(), *from_grid.buffers())} == {"meta"}
    assert to_grid(torch.empty(2, 16, device="meta")).shape == (2, 8, 9)
    assert from_grid(torch.empty(2, 8, 9, device="meta")).shape == (2, 16)
    z = torch.empty(5, device="meta")
    assert o3.Legendre([1, 2])(z, z).shape == (5, 8)  # a module on the CPU, inputs elsewhere, as e3nn's


def test_errors():
    with pytest.raises(ValueError, match="res_beta must be even"):
        o3.ToS2Grid(2, (9, 10))
    with pytest.raises(ValueError, match="too small for lmax"):
        o3.FromS2Grid((8, 11), 5)
    with pytest.raises(ValueError, match="all of lmax"):
        o3.ToS2Grid()
    with pytest.raises(ValueError, match="normalization"):
        o3.ToS2Grid(2, normalization="seminorm")
    with pytest.raises(ValueError, match=r"\(\.\.\., 9\)"):
        o3.ToS2Grid(2)(torch.randn(3, 10))
    with pytest.raises(ValueError, match="res_beta, res_alpha"):
        o3.FromS2Grid(6, 2)(torch.randn(3, 6))
    with pytest.raises(TypeError, match="module.to"):
        o3.ToS2Grid(2)(torch.randn(9, dtype=torch.float64))
    with pytest.raises(ValueError, match="odd"):
        o3.irfft(torch.randn(5), 8)
    with pytest.raises(ValueError, match="res // 2"):
        o3.rfft(torch.randn(5), 3)
    with pytest.raises(ValueError, match="component"):
        o3.SO3Grid(2, 3, normalization="norm")
    with pytest.raises(ValueError, match="normalization"):
        o3.SphericalHarmonicsAlphaBeta(2, normalization="unit")


@pytest.mark.parametrize("aspect_ratio", [1, 2])
def test_so3_grid_equals_e3nn(f64, aspect_ratio):
    ours, ref = o3.SO3Grid(2, 3, aspect_ratio=aspect_ratio), e3nn_o3.SO3Grid(2, 3, aspect_ratio=aspect_ratio)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for key, value in ref.state_dict().items():
        assert _max_diff(ours.state_dict()[key], value) <= 1e-13
    assert (ours.res_alpha, ours.res_beta, ours.res_gamma) == (ref.res_alpha, ref.res_beta, ref.res_gamma)
    x = torch.randn(2, ours.D.shape[-1])
    assert _max_diff(ours.to_grid(x), ref.to_grid(x)) <= 1e-12
    assert _max_diff(ours.from_grid(ours.to_grid(x)), x) <= 1e-12  # exact on degree <= lmax
    signal = torch.randn(2, ours.res_alpha, ours.res_beta, ours.res_gamma)
    assert _max_diff(ours.from_grid(signal), ref.from_grid(signal)) <= 1e-12
    assert repr(ours) == "SO3Grid (2)"


@pytest.mark.compile
@pytest.mark.slow
def test_compile_fullgraph_grids():
    torch._dynamo.reset()
    for module, x in ((o3.ToS2Grid(3, (8, 9)), torch.randn(5, 16)), (o3.FromS2Grid((8, 9), 3), torch.randn(5, 8, 9))):
        compiled = torch.compile(module, fullgraph=True)
        torch.testing.assert_close(compiled(x), module(x), atol=1e-5, rtol=1e-5)
    alpha, beta = torch.randn(6), torch.randn(6)
    for module in (o3.SphericalHarmonicsAlphaBeta([0, 1, 2]), o3.Legendre([0, 3])):
        compiled = torch.compile(module, fullgraph=True)
        torch.testing.assert_close(compiled(alpha, beta), module(alpha, beta), atol=1e-5, rtol=1e-5)
