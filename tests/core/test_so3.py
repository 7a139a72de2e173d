"""Generators and closed-form Wigner D tables (fastso3.core.so3)."""

import math

import numpy as np
import pytest
import scipy.linalg

from fastso3.core import so3

e3nn_o3 = pytest.importorskip("e3nn.o3")

EPS = np.zeros((3, 3, 3))
for _i, _j, _k in [(0, 1, 2), (1, 2, 0), (2, 0, 1)]:
    EPS[_i, _j, _k], EPS[_i, _k, _j] = 1, -1




@pytest.mark.e3nn
@pytest.mark.parametrize("l", range(13))
def test_so3_generators_match_e3nn(f64, l):
    X = so3.so3_generators(l)
    assert X.shape == (3, 2 * l + 1, 2 * l + 1) and X.dtype == np.float64
    assert np.abs(X - e3nn_o3.so3_generators(l).numpy()).max() <= 1e-14


@pytest.mark.e3nn
@pytest.mark.parametrize("j", [0, 0.5, 1, 1.5, 2, 2.5, 3, 4, 7.5, 10])
def test_su2_generators_match_e3nn(f64, j):
    X = so3.su2_generators(j)
    n = int(round(2 * j)) + 1
    assert X.shape == (3, n, n) and X.dtype == np.complex128
    assert np.abs(X - e3nn_o3.su2_generators(j).numpy()).max() <= 1e-14


def test_l1_generators_are_textbook():
    Lx = np.array([[0, 0, 0], [0, 0, -1], [0, 1, 0]])
    Ly = np.array([[0, 0, 1], [0, 0, 0], [-1, 0, 0]])
    Lz = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 0]])
    assert np.array_equal(so3.so3_generators(1), np.stack([Lx, Ly, Lz]))
    t = 0.83
    c, s = math.cos(t), math.sin(t)
    Rx = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    Ry = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    Rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    for X, R in zip(so3.so3_generators(1), [Rx, Ry, Rz]):
        assert np.abs(scipy.linalg.expm(t * X) - R).max() <= 1e-15


@pytest.mark.parametrize("l", [0, 1, 2, 3, 7, 12, 20])
def test_so3_commutation_relations(l):
    X = so3.so3_generators(l)
    assert np.abs(X + X.transpose(0, 2, 1)).max() == 0  # antisymmetric
    comm = np.einsum("aij,bjk->abik", X, X) - np.einsum("bij,ajk->abik", X, X)
    expected = np.einsum("abc,cik->abik", EPS, X)  # [X_x, X_y] = X_z and cyclic
    assert np.abs(comm - expected).max() <= 1e-12
    # Casimir: sum X_a^2 = -l(l+1) I
    assert np.abs(np.einsum("aij,ajk->ik", X, X) + l * (l + 1) * np.eye(2 * l + 1)).max() <= 1e-12


@pytest.mark.parametrize("j", [0.5, 1, 1.5, 4, 6.5])
def test_su2_commutation_relations(j):
    X = so3.su2_generators(j)
    assert np.abs(X + X.conj().transpose(0, 2, 1)).max() <= 1e-15  # anti-Hermitian
    comm = np.einsum("aij,bjk->abik", X, X) - np.einsum("bij,ajk->abik", X, X)
    assert np.abs(comm - np.einsum("abc,cik->abik", EPS, X)).max() <= 1e-12


@pytest.mark.parametrize("l", range(21))
def test_J_is_symmetric_involution(l):
    J = so3.wigner_J(l)
    n = 2 * l + 1
    assert J.shape == (n, n) and J.dtype == np.float64
    assert np.abs(J @ J - np.eye(n)).max() <= 1e-14
    assert np.array_equal(J, J.T)
    X = so3.so3_generators(l)
    # J X_y J = X_x (so that J D_y(t) J = D_x(t)) and J X_z J = -X_z
    scale = max(l, 1)
    assert np.abs(J @ X[1] @ J - X[0]).max() <= 2e-15 * scale
    assert np.abs(J @ X[2] @ J + X[2]).max() <= 2e-15 * scale


@pytest.mark.parametrize("l", [1, 2, 5, 11])
def test_J_is_D_of_the_pi_rotation(l):
    X = so3.so3_generators(l)
    expected = scipy.linalg.expm(math.pi * (X[0] + X[1]) / math.sqrt(2))
    assert np.abs(so3.wigner_J(l) - expected).max() <= 1e-14 * (l + 1)


def test_J_l1_swaps_x_and_y():
    assert np.array_equal(so3.wigner_J(1), np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]]))


def _expm_antisymmetric(t, X):
    """exp(t X) for a real antisymmetric X with integer spectrum of iX, via eigh (more accurate than expm)."""
    w, V = np.linalg.eigh(1j * X)
    return ((V * np.exp(-1j * t * np.rint(w))) @ V.conj().T).real


@pytest.mark.parametrize("l", [0, 1, 2, 4, 8, 13, 20])
def test_closed_forms_match_expm(l):
    X = so3.so3_generators(l)
    J = so3.wigner_J(l)
    for t in [0.37, -1.9, 2.8, math.pi]:
        Dy = so3.wigner_D_y(l, t)
        assert np.abs(Dy - _expm_antisymmetric(t, X[1])).max() <= 1e-14
        assert np.abs(J @ Dy @ J - _expm_antisymmetric(t, X[0])).max() <= 1e-14
    # scipy's Pade expm agrees to its own (lower) accuracy
    assert np.abs(J @ so3.wigner_D_y(l, 0.37) @ J - scipy.linalg.expm(0.37 * X[0])).max() <= 1e-13


@pytest.mark.parametrize("l", [3, 20])
def test_D_y_entries_and_batch(l):
    t = np.array([[0.1, 0.2], [1.3, -2.0]])
    D = so3.wigner_D_y(l, t)
    assert D.shape == (2, 2, 2 * l + 1, 2 * l + 1)
    for k in range(2 * l + 1):
        assert np.allclose(D[..., k, k], np.cos((l - k) * t), rtol=0, atol=1e-15)
        if k != l:
            assert np.allclose(D[..., k, 2 * l - k], np.sin((l - k) * t), rtol=0, atol=1e-15)
    assert np.count_nonzero(D[1, 0]) <= 2 * (2 * l + 1) - 1


@pytest.mark.parametrize("l", [5, 20])
def test_closed_form_homomorphism_and_orthogonality(l):
    rng = np.random.default_rng(0)
    J = so3.wigner_J(l)

    def D(a, b, c):
        return so3.wigner_D_y(l, a) @ J @ so3.wigner_D_y(l, b) @ J @ so3.wigner_D_y(l, c)

    for _ in range(5):
        a, b, c = rng.uniform(-4, 4, 3)
        M = D(a, b, c)
        assert np.abs(M @ M.T - np.eye(2 * l + 1)).max() <= 1e-13
        # D_y(a) D_y(b) = D_y(a + b); D_x likewise
        assert np.abs(so3.wigner_D_y(l, a) @ so3.wigner_D_y(l, b) - so3.wigner_D_y(l, a + b)).max() <= 1e-13
        Dx = J @ so3.wigner_D_y(l, a) @ J @ J @ so3.wigner_D_y(l, b) @ J
        assert np.abs(Dx - J @ so3.wigner_D_y(l, a + b) @ J).max() <= 1e-13


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_l_raises(bad):
    with pytest.raises(ValueError):
        so3.so3_generators(bad)
    with pytest.raises(ValueError):
        so3.wigner_J(bad)


@pytest.mark.parametrize("bad", [-0.5, 0.3, True, "1"])
def test_bad_j_raises(bad):
    with pytest.raises(ValueError):
        so3.su2_generators(bad)


def test_tables_read_only():
    for arr in (so3.so3_generators(3), so3.su2_generators(2), so3.wigner_J(3)):
        with pytest.raises(ValueError):
            arr[0, 0] = 1
