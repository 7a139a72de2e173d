"""Real Clebsch-Gordan coefficients (fastso3.core.cg) against e3nn 0.6.0 and their defining properties."""

import math

import numpy as np
import pytest
import torch

from fastso3.core import cg
from fastso3.o3 import _rotation, _wigner

e3nn_o3 = pytest.importorskip("e3nn.o3")


def _triples(lmax):
    for l1 in range(lmax + 1):
        for l2 in range(lmax + 1):
            for l3 in range(abs(l1 - l2), min(l1 + l2, lmax) + 1):
                yield l1, l2, l3


def _e3nn_3j(l1, l2, l3):
    return e3nn_o3.wigner_3j(l1, l2, l3, dtype=torch.float64).numpy()


@pytest.mark.e3nn
def test_wigner_3j_matches_e3nn_up_to_6():
    worst = 0.0
    count = 0
    for l1, l2, l3 in _triples(6):
        c = cg.wigner_3j(l1, l2, l3)
        ref = _e3nn_3j(l1, l2, l3)
        assert c.shape == ref.shape == (2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
        assert c.dtype == np.float64
        worst = max(worst, np.abs(c - ref).max())
        count += 1
    assert count == 175
    assert worst <= 1e-14


@pytest.mark.e3nn
@pytest.mark.parametrize("ls", [(12, 12, 12), (12, 7, 9), (3, 11, 12), (10, 12, 2), (8, 0, 8)])
def test_wigner_3j_matches_e3nn_large(ls):
    assert np.abs(cg.wigner_3j(*ls) - _e3nn_3j(*ls)).max() <= 1e-14


@pytest.mark.parametrize("ls", list(_triples(5)) + [(20, 20, 20), (12, 10, 5), (15, 7, 9)])
def test_frobenius_norm_one(ls):
    assert abs(np.linalg.norm(cg.wigner_3j(*ls)) - 1) <= 1e-14


def test_sign_anchor_111():
    eps = np.zeros((3, 3, 3))
    for i, j, k in [(0, 1, 2), (1, 2, 0), (2, 0, 1)]:
        eps[i, j, k] = 1
        eps[i, k, j] = -1
    assert np.abs(cg.wigner_3j(1, 1, 1) - eps / math.sqrt(6)).max() <= 1e-15


@pytest.mark.parametrize("l", range(9))
def test_sign_anchor_delta(l):
    delta = np.eye(2 * l + 1) / math.sqrt(2 * l + 1)
    assert np.abs(cg.wigner_3j(l, l, 0)[:, :, 0] - delta).max() <= 1e-15
    assert np.abs(cg.wigner_3j(0, l, l)[0] - delta).max() <= 1e-15
    assert np.abs(cg.wigner_3j(l, 0, l)[:, 0, :] - delta).max() <= 1e-15


def test_sign_anchor_112_and_222():
    assert abs(cg.wigner_3j(1, 1, 2)[1, 1, 2] - 2 / math.sqrt(30)) <= 1e-15
    assert abs(cg.wigner_3j(2, 2, 2)[2, 2, 2] - 0.2390457218668787) <= 1e-14


@pytest.mark.parametrize("ls", [(20, 20, 20), (12, 10, 5), (1, 1, 2), (3, 4, 5), (7, 7, 0), (13, 6, 19)])
def test_invariance_under_wigner_D(ls):
    a, b, c = _rotation.rand_angles(3, dtype=torch.float64)
    C = torch.from_numpy(cg.wigner_3j(*ls).copy())
    D1, D2, D3 = (_wigner.wigner_D(l, a, b, c) for l in ls)
    rotated = torch.einsum("nia,njb,nkc,abc->nijk", D1, D2, D3, C)
    assert (rotated - C).abs().max().item() <= 1e-13


@pytest.mark.parametrize("ls", [(1, 2, 3), (2, 2, 2), (3, 5, 4), (1, 1, 1), (6, 3, 4), (10, 4, 7)])
def test_permutation_symmetry(ls):
    l1, l2, l3 = ls
    c = cg.wigner_3j(l1, l2, l3)
    sign = (-1) ** (l1 + l2 + l3)
    assert np.abs(cg.wigner_3j(l2, l1, l3) - sign * c.transpose(1, 0, 2)).max() <= 1e-15
    assert np.abs(cg.wigner_3j(l1, l3, l2) - sign * c.transpose(0, 2, 1)).max() <= 1e-15
    assert np.abs(cg.wigner_3j(l3, l2, l1) - sign * c.transpose(2, 1, 0)).max() <= 1e-15
    # cyclic permutations: no sign
    assert np.abs(cg.wigner_3j(l2, l3, l1) - c.transpose(1, 2, 0)).max() <= 1e-15


@pytest.mark.parametrize("ls", [(1, 1, 3), (0, 1, 2), (5, 1, 1), (2, 6, 3), (0, 0, 1)])
def test_triangle_violation_raises(ls):
    with pytest.raises(ValueError):
        cg.wigner_3j(*ls)


@pytest.mark.parametrize("bad", [(-1, 1, 1), (1, -2, 1), (2, 2, -1)])
def test_bad_arguments_raise(bad):
    with pytest.raises(ValueError):
        cg.wigner_3j(*bad)


@pytest.mark.parametrize("ls", list(_triples(4)) + [(12, 10, 5), (20, 20, 20)])
def test_sparse_reconstructs_dense(ls):
    dense = cg.wigner_3j(*ls)
    sp = cg.wigner_3j_sparse(*ls)
    rebuilt = np.zeros_like(dense)
    rebuilt[sp.i1, sp.i2, sp.i3] = sp.values
    assert np.array_equal(rebuilt, dense)
    assert np.all(sp.values != 0)
    assert np.count_nonzero(dense) == len(sp.values)
    assert np.all(np.diff(sp.i3) >= 0)  # ordered by output index


def test_tables_are_read_only_and_cached():
    c = cg.wigner_3j(2, 3, 4)
    assert c is cg.wigner_3j(2, 3, 4)
    with pytest.raises(ValueError):
        c[0, 0, 0] = 1.0


def test_non_int_degrees_raise_even_when_cached():
    cg.wigner_3j(1, 1, 1)  # cache the int key first: 1.0 and True hash alike
    for bad in (1.0, True):
        with pytest.raises(ValueError):
            cg.wigner_3j(bad, 1, 1)
        with pytest.raises(ValueError):
            cg.wigner_3j_sparse(1, bad, 1)
