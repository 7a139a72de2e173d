"""Closed-form Wigner D (fastso3.o3._wigner) against e3nn 0.6.0 and the group axioms."""

import math

import pytest
import torch

from fastso3.core import so3
from fastso3.o3 import _rotation as r
from fastso3.o3 import _wigner as w

e3nn_o3 = pytest.importorskip("e3nn.o3")




def _eye(l, dtype=torch.float64):
    return torch.eye(2 * l + 1, dtype=dtype)


@pytest.mark.e3nn
@pytest.mark.parametrize("l", range(13))
def test_matches_e3nn(f64, l):
    a, b, c = r.rand_angles(200)
    # include angles outside [0, 2pi) and the poles of beta
    a[:3] = torch.tensor([-7.0, 13.0, 2 * math.pi])
    b[:3] = torch.tensor([0.0, math.pi, -1.0])
    D = w.wigner_D(l, a, b, c)
    assert D.shape == (200, 2 * l + 1, 2 * l + 1) and D.dtype == torch.float64
    assert (D - e3nn_o3.wigner_D(l, a, b, c)).abs().max().item() <= 1e-12


@pytest.mark.parametrize("shape", [(), (5,), (2, 3)])
def test_l1_is_the_rotation_matrix(f64, shape):
    a, b, c = r.rand_angles(*shape)
    assert (w.wigner_D(1, a, b, c) - r.angles_to_matrix(a, b, c)).abs().max().item() <= 1e-15
    R = r.rand_matrix(*shape)
    assert (w.wigner_D_from_matrix(1, R) - R).abs().max().item() <= 1e-14


def test_l0_is_one(f64):
    a, b, c = r.rand_angles(4)
    assert torch.equal(w.wigner_D(0, a, b, c), torch.ones(4, 1, 1))


@pytest.mark.parametrize("l", [2, 5, 11, 16, 20])
def test_homomorphism_and_orthogonality(f64, l):
    R1, R2 = r.rand_matrix(50), r.rand_matrix(50)
    D1, D2 = w.wigner_D_from_matrix(l, R1), w.wigner_D_from_matrix(l, R2)
    D12 = w.wigner_D_from_matrix(l, R1 @ R2)
    assert (D12 - D1 @ D2).abs().max().item() <= 1e-13
    assert (D1 @ D1.mT - _eye(l)).abs().max().item() <= 1e-13
    # inverse
    a, b, c = r.rand_angles(50)
    Dinv = w.wigner_D(l, *r.inverse_angles(a, b, c))
    assert (Dinv - w.wigner_D(l, a, b, c).mT).abs().max().item() <= 1e-13


@pytest.mark.parametrize("l", [3, 20])
def test_factorization_into_elementary_rotations(f64, l):
    """D(a, b, c) = D_y(a) D_x(b) D_y(c), with D_x and D_y from eigen-exponentials of the generators."""
    X = torch.from_numpy(so3.so3_generators(l).copy())

    def expm(t, G):
        e, V = torch.linalg.eigh(1j * G.to(torch.complex128))
        return ((V * torch.exp(-1j * t * e.round())) @ V.conj().T).real

    a, b, c = 0.7, 2.1, -1.3
    expected = expm(a, X[1]) @ expm(b, X[0]) @ expm(c, X[1])
    D = w.wigner_D(l, torch.tensor(a), torch.tensor(b), torch.tensor(c))
    assert (D - expected).abs().max().item() <= 1e-13
    Dz = w.wigner_D_from_axis_angle(l, torch.tensor([0.0, 0.0, 1.0]), torch.tensor(0.9))
    assert (Dz - expm(0.9, X[2])).abs().max().item() <= 1e-13


@pytest.mark.parametrize("l", [2, 7])
def test_from_quaternion_and_axis_angle(f64, l):
    a, b, c = r.rand_angles(20)
    D = w.wigner_D(l, a, b, c)
    assert (w.wigner_D_from_quaternion(l, r.angles_to_quaternion(a, b, c)) - D).abs().max().item() <= 1e-13
    axis, angle = r.angles_to_axis_angle(a, b, c)
    assert (w.wigner_D_from_axis_angle(l, axis, angle) - D).abs().max().item() <= 1e-13
    assert (w.wigner_D_from_matrix(l, r.angles_to_matrix(a, b, c)) - D).abs().max().item() <= 1e-13


def test_from_matrix_rejects_improper(f64):
    with pytest.raises(ValueError):
        w.wigner_D_from_matrix(2, -r.rand_matrix(3))


def test_broadcasting_and_python_numbers(f64):
    a = torch.rand(4, 1)
    b = torch.rand(1, 3)
    c = torch.rand(())
    D = w.wigner_D(2, a, b, c)
    assert D.shape == (4, 3, 5, 5)
    assert (D[2, 1] - w.wigner_D(2, a[2, 0], b[0, 1], c)).abs().max().item() <= 1e-15
    assert w.wigner_D(3, 0.1, b, 0.3).shape == (1, 3, 7, 7)
    assert w.wigner_D(3, 0.1, 0.2, 0.3).dtype == torch.float64


def test_float32():
    a, b, c = r.rand_angles(100, dtype=torch.float32)
    for l in [1, 4, 10]:
        D = w.wigner_D(l, a, b, c)
        assert D.dtype == torch.float32
        ref = w.wigner_D(l, a.double(), b.double(), c.double())
        assert (D.double() - ref).abs().max().item() <= 2e-5 * (l + 1)
        assert (D @ D.mT - _eye(l, torch.float32)).abs().max().item() <= 1e-5 * (l + 1)


@pytest.mark.parametrize("bad", [-1, 1.0, True, "2"])
def test_bad_l(bad):
    with pytest.raises(ValueError):
        w.wigner_D(bad, torch.zeros(()), torch.zeros(()), torch.zeros(()))


@pytest.mark.parametrize("l", [2, 3])
def test_gradcheck(l):
    a = torch.tensor([0.3, 2.0, -4.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.7, 2.5, 1.4], dtype=torch.float64, requires_grad=True)
    c = torch.tensor([1.1, -0.4, 5.0], dtype=torch.float64, requires_grad=True)

    def f(a, b, c):
        return w.wigner_D(l, a, b, c)

    assert torch.autograd.gradcheck(f, (a, b, c))
    assert torch.autograd.gradgradcheck(f, (a, b, c))


def test_derivative_is_the_generator(f64):
    """d/dt D(t, 0, 0) at t = 0 is X_y; d/dt D(0, t, 0) is X_x."""
    l = 4
    X = torch.from_numpy(so3.so3_generators(l).copy())
    t = torch.zeros((), requires_grad=True)
    z = torch.zeros(())
    jac_y = torch.autograd.functional.jacobian(lambda t: w.wigner_D(l, t, z, z), t)
    jac_x = torch.autograd.functional.jacobian(lambda t: w.wigner_D(l, z, t, z), t)
    assert (jac_y - X[1]).abs().max().item() <= 1e-14
    assert (jac_x - X[0]).abs().max().item() <= 1e-14


def test_generators_torch_wrappers():
    X = w.so3_generators(3, dtype=torch.float64)
    assert X.shape == (3, 7, 7) and X.dtype == torch.float64
    assert torch.equal(X, torch.from_numpy(so3.so3_generators(3).copy()))
    assert w.so3_generators(2).dtype == torch.get_default_dtype()
    S = w.su2_generators(1.5, dtype=torch.float64)
    assert S.dtype == torch.complex128 and S.shape == (3, 4, 4)
    assert w.su2_generators(1).dtype in (torch.complex64, torch.complex128)


@pytest.mark.e3nn
def test_generators_torch_wrappers_match_e3nn(f64):
    for l in range(6):
        assert (w.so3_generators(l) - e3nn_o3.so3_generators(l)).abs().max().item() <= 1e-15
        assert (w.su2_generators(l) - e3nn_o3.su2_generators(l)).abs().max().item() <= 1e-15


@pytest.mark.compile
def test_torch_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    w._J_CACHE.clear()  # cold cache: the J table is built while tracing
    a, b, c = r.rand_angles(16, dtype=torch.float64)
    compiled = torch.compile(w.wigner_D, fullgraph=True)
    for l in [2, 3]:  # the second l makes dynamo see l as a symbolic int
        assert (compiled(l, a, b, c) - w.wigner_D(l, a, b, c)).abs().max().item() <= 1e-14
    af, bf, cf = a.float(), b.float(), c.float()
    assert (compiled(3, af, bf, cf) - w.wigner_D(3, af, bf, cf)).abs().max().item() <= 1e-6

    def from_matrix(R):
        return w.wigner_D_from_matrix(2, R)

    R = r.rand_matrix(8, dtype=torch.float64)
    out = torch.compile(from_matrix, fullgraph=True)(R)
    assert (out - from_matrix(R)).abs().max().item() <= 1e-14
