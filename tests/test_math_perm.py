"""fastso3.math.perm, the Gram-Schmidt helpers and the index formulas, against e3nn.math 0.6.0 (oracle) and
against the group axioms."""

import math
import random

import pytest
import torch
from e3nn import math as e3nn_math
from e3nn.math import perm as e3nn_perm

import fastso3.math as fm
from fastso3.math import perm


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5])
def test_every_permutation_equals_e3nn(n, f64):
    for i in range(math.factorial(n)):
        p = e3nn_perm.from_int(i, n)
        assert perm.from_int(i, n) == p and perm.to_int(p) == i
        assert perm.inverse(p) == e3nn_perm.inverse(p)
        assert perm.to_cycles(p) == e3nn_perm.to_cycles(p)
        assert perm.sign(p) == e3nn_perm.sign(p)
        assert torch.equal(perm.natural_representation(p, dtype=torch.float64), e3nn_perm.natural_representation(p, dtype=torch.float64))
        if n >= 2:
            # default dtype float64 (fixture): e3nn builds part of this matrix in the default dtype
            assert torch.equal(perm.standard_representation(p), e3nn_perm.standard_representation(p))
    assert perm.group(n) == e3nn_perm.group(n)
    assert len(perm.group(n)) == math.factorial(n)


def test_group_axioms_and_homomorphisms():
    for n in [3, 5]:
        for p in perm.group(n):
            assert perm.compose(p, perm.inverse(p)) == perm.identity(n) == perm.compose(perm.inverse(p), p)
    rng = random.Random(0)
    random.seed(0)
    for n in [3, 7]:
        p1, p2 = perm.rand(n), perm.rand(n)
        assert perm.is_perm(p1) and perm.sign(perm.compose(p1, p2)) == perm.sign(p1) * perm.sign(p2)
        for rep in (perm.natural_representation, perm.standard_representation):
            a = rep(p1, dtype=torch.float64) @ rep(p2, dtype=torch.float64)
            torch.testing.assert_close(a, rep(perm.compose(p1, p2), dtype=torch.float64), atol=1e-12, rtol=0)
            r = rep(p1, dtype=torch.float64)
            torch.testing.assert_close(r @ r.T, torch.eye(len(r), dtype=torch.float64), atol=1e-12, rtol=0)
        x = torch.arange(n, dtype=torch.float64)
        assert torch.equal(perm.natural_representation(p1, dtype=torch.float64) @ x, x[list(perm.inverse(p1))])
    # rand draws from Python's `random` as e3nn does: same seed, same permutation
    state = rng.getstate()
    random.setstate(state)
    ours = perm.rand(6)
    random.setstate(state)
    assert ours == e3nn_perm.rand(6)


def test_germinate_and_is_group():
    for gens in [{(1, 2, 3, 4, 0)}, {(1, 0, 2, 3), (0, 2, 1, 3), (0, 1, 3, 2)}]:
        g = perm.germinate(gens)
        assert g == e3nn_perm.germinate(gens) and perm.is_group(g)
    assert len(perm.germinate({(1, 0, 2, 3), (0, 2, 1, 3), (0, 1, 3, 2)})) == 24
    assert not perm.is_group(set())
    assert not perm.is_group({(1, 0, 2), (0, 2, 1), (1, 2, 0), (2, 0, 1), (2, 1, 0)})  # no identity
    assert not perm.is_group({(0, 1, 2), (1, 2, 0)})  # no inverse
    assert not perm.is_group({(0, 1, 2, 3), (3, 0, 1, 2), (1, 2, 3, 0)})  # not closed
    assert perm.to_cycles((2, 3, 0, 1)) == {(0, 2), (1, 3)}
    assert perm.sign((1, 0, 3, 2, 5, 6, 7, 4)) == -1


def test_bad_permutations_raise_value_errors():
    with pytest.raises(ValueError, match="p1"):
        perm.compose((0, 0), (0, 1))
    with pytest.raises(ValueError, match="same length"):
        perm.compose((0, 1), (0, 1, 2))
    with pytest.raises(ValueError, match="one length"):
        perm.is_group({(0,), (0, 1)})


def test_orthonormalize_and_complete_basis_equal_e3nn():
    x = torch.randn(4, 6, dtype=torch.float64)
    x = torch.cat([x, x[:1] + x[1:2]])  # a dependent row is dropped
    for ours, theirs in zip(fm.orthonormalize(x), e3nn_math.orthonormalize(x)):
        assert torch.equal(ours, theirs)
    final, matrix = fm.orthonormalize(x)
    assert final.shape == (4, 6)
    torch.testing.assert_close(final @ final.T, torch.eye(4, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(matrix @ x, final, atol=1e-12, rtol=0)
    assert torch.equal(fm.complete_basis(final), e3nn_math.complete_basis(final))
    assert fm.complete_basis(final).shape == (2, 6)
    blocks = [torch.randn(2, 3, 1), torch.randn(2, 2, 4)]
    assert torch.equal(fm.direct_sum(*blocks), e3nn_math.direct_sum(*blocks))
    with pytest.raises(ValueError, match="original"):
        fm.orthonormalize(torch.ones(3))


@pytest.mark.parametrize("formula", ["ij=ji", "ij=-ji", "ijk=-ikj=-jik", "ijk=jki", "ijkl=jikl=klij", "ijkl=-jikl=-ijlk=klij"])
def test_reduce_permutation_equals_e3nn(formula):
    ours = fm.germinate_formulas(formula)
    assert ours == e3nn_math.germinate_formulas(formula)
    Q, base = fm.reduce_permutation(*ours, dtype=torch.float64, i=3)
    Q_e3nn, base_e3nn = e3nn_math.reduce_permutation(*ours, dtype=torch.float64, i=3)
    assert base == base_e3nn and torch.equal(Q, Q_e3nn)
    flat = Q.flatten(1)
    torch.testing.assert_close(flat @ flat.T, torch.eye(len(Q), dtype=torch.float64), atol=1e-14, rtol=0)


def test_formula_errors_are_value_and_runtime_errors():
    for bad, match in [("ij=ik", "not a permutation"), ("-ij=ji", "first"), ("ij=jji", "not a permutation")]:
        with pytest.raises(ValueError, match=match):
            fm.germinate_formulas(bad)
    with pytest.raises(RuntimeError, match="no dimension"):
        fm.reduce_permutation(*fm.germinate_formulas("ij"), i=3)
    with pytest.raises(ValueError, match="should be the same"):
        fm.reduce_permutation(*fm.germinate_formulas("ij=ji"), i=3, j=2)
