import math

import numpy as np
import pytest
import torch

from fastso3.core.irreps import Irreps
from fastso3.kernels import registry
from fastso3.o3._spherical_harmonics import SphericalHarmonics, spherical_harmonics
from fastso3.o3._wigner import wigner_D
from fastso3.o3._rotation import rand_matrix, matrix_to_angles

e3nn_o3 = pytest.importorskip("e3nn.o3")

BACKENDS = ["reference", "cpu"]
NORMALIZATIONS = ["integral", "component", "norm"]


def points(n, dtype=torch.float64):
    return torch.randn(n, 3, dtype=dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_values_match_e3nn_float64(backend, normalization):
    x = points(200)
    ls = list(range(13))
    ours = spherical_harmonics(ls, x, True, normalization, backend=backend)
    ref = e3nn_o3.spherical_harmonics(ls, x, True, normalization)
    assert (ours - ref).abs().max() <= 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
def test_unnormalized_inputs_match_e3nn(backend):
    # Homogeneous polynomials: compare relative to the size of the values. At l = 12 (values up to ~1e5) both
    # e3nn's recurrence and the readable reference twin round at 1-2e-12 relative (measured on random points,
    # either backend), so 1e-11 is e3nn's own float64 rounding with headroom, not a kernel tolerance.
    x = points(100)
    ls = list(range(13))
    ours = spherical_harmonics(ls, x, False, "component", backend=backend)
    ref = e3nn_o3.spherical_harmonics(ls, x, False, "component")
    assert ((ours - ref).abs() / (1 + ref.abs())).max() <= 1e-11


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_close_to_float64(backend):
    x = points(500)
    ours32 = spherical_harmonics(8, x.float(), True, "component", backend=backend)
    ref64 = e3nn_o3.spherical_harmonics(8, x, True, "component")
    ref32 = e3nn_o3.spherical_harmonics(8, x.float(), True, "component")
    assert ours32.dtype == torch.float32
    our_err = (ours32.double() - ref64).abs().max()
    e3nn_err = (ref32.double() - ref64).abs().max()
    assert our_err <= 2 * e3nn_err + 10 * torch.finfo(torch.float32).eps


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_match_e3nn(backend):
    x = points(64).requires_grad_()
    ls = [0, 1, 2, 5, 9, 12]
    g = torch.randn(64, sum(2 * l + 1 for l in ls), dtype=torch.float64)
    (ours,) = torch.autograd.grad((spherical_harmonics(ls, x, True, backend=backend) * g).sum(), x)
    (ref,) = torch.autograd.grad((e3nn_o3.spherical_harmonics(ls, x, True) * g).sum(), x)
    assert ((ours - ref).abs() / (1 + ref.abs())).max() <= 1e-11


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_derivatives_match_e3nn(backend):
    x = points(16).requires_grad_()

    def hess_vec(fn):
        y = fn(x)
        (g,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
        (h,) = torch.autograd.grad(g.sin().sum(), x)
        return h

    ours = hess_vec(lambda t: spherical_harmonics(4, t, True, backend=backend))
    ref = hess_vec(lambda t: e3nn_o3.spherical_harmonics(4, t, True))
    assert ((ours - ref).abs() / (1 + ref.abs())).max() <= 1e-10


def test_degree_selection_and_order():
    x = points(10)
    full = spherical_harmonics(list(range(4)), x, True)
    picked = spherical_harmonics([3, 0, 2], x, True)
    expected = torch.cat([full[:, 9:16], full[:, 0:1], full[:, 4:9]], dim=1)
    torch.testing.assert_close(picked, expected, rtol=0, atol=0)
    ref = e3nn_o3.spherical_harmonics("2x1o+0e+3o", x, True)
    assert (spherical_harmonics("2x1o+0e+3o", x, True) - ref).abs().max() <= 1e-12


def test_irreps_parity_rules():
    x = points(3)
    # odd degrees as pseudovectors: same values, input irrep 1e
    module = SphericalHarmonics("0e+1e+2e", True)
    assert module.irreps_in == Irreps("1e") and module.irreps_out == Irreps("0e+1e+2e")
    torch.testing.assert_close(module(x), spherical_harmonics([0, 1, 2], x, True))
    assert SphericalHarmonics("0e+1o", True).irreps_in == Irreps("1o")
    with pytest.raises(ValueError):
        spherical_harmonics("1e+3o", x, True)  # inconsistent odd parities
    with pytest.raises(ValueError):
        spherical_harmonics("2o", x, True)  # even degree must be even
    with pytest.raises(ValueError):
        SphericalHarmonics("1o", True, irreps_in="1e")


@pytest.mark.parametrize("backend", BACKENDS)
def test_equivariance_to_l20(backend):
    x = points(30)
    R = rand_matrix(dtype=torch.float64)
    alpha, beta, gamma = matrix_to_angles(R)
    for l in (0, 1, 2, 7, 13, 20):
        y = spherical_harmonics(l, x, True, "component", backend=backend)
        y_rot = spherical_harmonics(l, x @ R.T, True, "component", backend=backend)
        D = wigner_D(l, alpha, beta, gamma)
        assert (y_rot - y @ D.T).abs().max() <= 1e-10 * math.sqrt(2 * l + 1), l


@pytest.mark.parametrize("backend", BACKENDS)
def test_orthonormality_by_quadrature(backend):
    lmax = 20
    # Exact quadrature for products of degree <= 2*lmax: Gauss-Legendre in y = cos(beta), uniform in alpha.
    ys, wy = np.polynomial.legendre.leggauss(lmax + 1)
    n_alpha = 2 * lmax + 2
    alphas = 2 * np.pi * np.arange(n_alpha) / n_alpha
    y, a = np.meshgrid(ys, alphas, indexing="ij")
    s = np.sqrt(1 - y**2)
    xyz = torch.tensor(np.stack([s * np.sin(a), y, s * np.cos(a)], -1).reshape(-1, 3))
    w = torch.tensor((wy[:, None] * np.full(n_alpha, 2 * np.pi / n_alpha)).reshape(-1))
    Y = spherical_harmonics(list(range(lmax + 1)), xyz, True, "integral", backend=backend)
    gram = Y.T @ (Y * w[:, None])
    assert (gram - torch.eye(gram.shape[0], dtype=gram.dtype)).abs().max() <= 1e-11


@pytest.mark.parametrize("normalization,expected", [("component", lambda l: 2 * l + 1), ("norm", lambda l: 1.0)])
def test_per_degree_normalization(normalization, expected):
    x = points(50)
    for l in (1, 4, 15):
        y = spherical_harmonics(l, x, True, normalization)
        torch.testing.assert_close(y.pow(2).sum(-1), torch.full((50,), float(expected(l)), dtype=torch.float64))


@pytest.mark.parametrize("backend", BACKENDS)
def test_parity_and_homogeneity(backend):
    x = points(20)
    for l in (1, 2, 5, 16):
        y = spherical_harmonics(l, x, False, backend=backend)
        torch.testing.assert_close(spherical_harmonics(l, -x, False, backend=backend), (-1) ** l * y)
        torch.testing.assert_close(spherical_harmonics(l, 2 * x, False, backend=backend), 2**l * y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_vector_gives_zeros_and_finite_gradients(backend):
    x = torch.zeros(3, 3, dtype=torch.float64)
    x[1] = torch.tensor([0.0, 0.0, 1e-30])
    x.requires_grad_()
    y = spherical_harmonics(list(range(5)), x, True, "component", backend=backend)
    assert torch.equal(y[0], torch.cat([torch.ones(1), torch.zeros(24)]).double())
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    assert torch.equal(g[0], torch.zeros(3, dtype=torch.float64))
    assert torch.isfinite(g).all() and torch.isfinite(h).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("normalize", [True, False])
def test_gradcheck_and_gradgradcheck(backend, normalize):
    x = points(6).requires_grad_()
    fn = lambda t: spherical_harmonics([0, 1, 3, 6], t, normalize, "norm", backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_batch_dimensions_and_noncontiguous_input():
    x = torch.randn(3, 4, 5, dtype=torch.float64).transpose(-1, -2)[..., :3]  # (3, 5, 3), non-contiguous
    y = spherical_harmonics(3, x, True, backend="cpu")
    assert y.shape == (3, 5, 7)
    torch.testing.assert_close(y, spherical_harmonics(3, x.contiguous(), True, backend="reference"))


def test_backend_is_recorded_and_explicit():
    x = points(4)
    spherical_harmonics(2, x, True, backend="reference")
    assert registry.last_backend("spherical_harmonics") == "reference"
    spherical_harmonics(2, x, True)
    assert registry.last_backend("spherical_harmonics") == "cpu"
    with pytest.raises(registry.BackendUnavailable):
        spherical_harmonics(2, x.half(), True, backend="cpu")
    with pytest.raises(ValueError, match="unknown backend"):
        spherical_harmonics(2, x, True, backend="cuda-magic")


@pytest.mark.parametrize(
    "ls,x,error",
    [
        (2, torch.randn(4, 2), ValueError),
        (2, torch.randn(()), ValueError),
        (2, torch.ones(4, 3, dtype=torch.int64), TypeError),
        (-1, torch.randn(4, 3), ValueError),
        ([], torch.randn(4, 3), ValueError),
        (True, torch.randn(4, 3), TypeError),
    ],
)
def test_bad_inputs_raise(ls, x, error):
    with pytest.raises(error):
        spherical_harmonics(ls, x, True)


def test_bad_normalization_raises():
    with pytest.raises(ValueError, match="normalization"):
        spherical_harmonics(2, torch.randn(4, 3), True, "unit")


@pytest.mark.compile
def test_torch_compile_fullgraph_values_and_grads():
    torch._dynamo.reset()

    def fn(x):
        return spherical_harmonics(3, x, True, "component").pow(2).sum(-1).mean() + spherical_harmonics(
            [1, 2], x, True
        ).sin().sum()

    compiled = torch.compile(fn, fullgraph=True, dynamic=True)
    for n in (7, 11):
        x = torch.randn(n, 3, requires_grad=True)
        eager = fn(x)
        (g_eager,) = torch.autograd.grad(eager, x)
        out = compiled(x)
        (g_comp,) = torch.autograd.grad(out, x)
        torch.testing.assert_close(out, eager)
        torch.testing.assert_close(g_comp, g_eager)
