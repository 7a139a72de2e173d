"""Real Clebsch-Gordan coefficients in e3nn 0.6.0's basis (numpy only).

The construction follows e3nn's definition (see docs/conventions.md):

1. the complex SU(2) Clebsch-Gordan coefficients, evaluated exactly with rational
   arithmetic (Racah's formula) and rounded once to float64;
2. a change of basis to e3nn's real basis, ``C[j,l,m] = sum Q1[i,j] Q2[k,l] conj(Q3[n,m]) C_su2[i,k,n]``;
3. division by the Frobenius norm, so that ``||C||_F = 1``.

This fixes every sign: ``C^{111} = +eps/sqrt(6)`` and ``C^{ll0} = +delta/sqrt(2l+1)``.
"""

from __future__ import annotations

import functools
import itertools
import math
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from .limits import WIGNER_3J_MAX_ENTRIES, check_work

__all__ = [
    "E3NN_044_OPPOSITE_SIGN",
    "e3nn_044_sign",
    "change_basis_real_to_complex",
    "su2_clebsch_gordan",
    "wigner_3j",
    "wigner_3j_sparse",
    "SparseCG",
]


def _check_triangle(l1: int, l2: int, l3: int) -> None:
    for name, value in (("l1", l1), ("l2", l2), ("l3", l3)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if not abs(l2 - l3) <= l1 <= l2 + l3:
        raise ValueError(f"(l1, l2, l3) = ({l1}, {l2}, {l3}) violates the triangle rule |l2-l3| <= l1 <= l2+l3")


def _su2_cg_exact(j1: int, m1: int, j2: int, m2: int, j3: int, m3: int) -> float:
    """<j1 m1 j2 m2 | j3 m3> for integer spins, by Racah's formula in exact arithmetic."""
    if m1 + m2 != m3:
        return 0.0
    f = math.factorial
    prefactor = Fraction(
        (2 * j3 + 1) * f(j3 + j1 - j2) * f(j3 - j1 + j2) * f(j1 + j2 - j3),
        f(j1 + j2 + j3 + 1),
    ) * (f(j3 + m3) * f(j3 - m3) * f(j1 - m1) * f(j1 + m1) * f(j2 - m2) * f(j2 + m2))
    k_min = max(0, j2 - j3 - m1, j1 - j3 + m2)
    k_max = min(j1 + j2 - j3, j1 - m1, j2 + m2)
    total = Fraction(0)
    for k in range(k_min, k_max + 1):
        denominator = (
            f(k) * f(j1 + j2 - j3 - k) * f(j1 - m1 - k) * f(j2 + m2 - k) * f(j3 - j2 + m1 + k) * f(j3 - j1 - m2 + k)
        )
        total += Fraction((-1) ** k, denominator)
    if total == 0:
        return 0.0
    # sqrt(prefactor) * total = sign * sqrt(prefactor * total^2), rounded once.
    return math.copysign(math.sqrt(float(prefactor * total * total)), total)


@functools.lru_cache(maxsize=None)
def change_basis_real_to_complex(l: int) -> np.ndarray:
    """Q_l, shape ``(2l+1, 2l+1)`` complex128: rows complex m, columns e3nn's real index.

    Includes e3nn's global factor ``(-i)^l`` that makes the real Clebsch-Gordan coefficients real.
    """
    q = np.zeros((2 * l + 1, 2 * l + 1), dtype=np.complex128)
    s = 1 / math.sqrt(2)
    for m in range(-l, 0):
        q[l + m, l - m] = s
        q[l + m, l + m] = -1j * s
    q[l, l] = 1
    for m in range(1, l + 1):
        q[l + m, l + m] = (-1) ** m * s
        q[l + m, l - m] = 1j * (-1) ** m * s
    q = (-1j) ** l * q
    q.setflags(write=False)
    return q


def su2_clebsch_gordan(j1: int, j2: int, j3: int) -> np.ndarray:
    """Complex-basis SU(2) coefficients, shape ``(2j1+1, 2j2+1, 2j3+1)``, indexed by ``j + m``."""
    _check_triangle(j3, j1, j2)
    return _su2_clebsch_gordan(int(j1), int(j2), int(j3))


# The cached bodies take validated ints only: lru_cache keys 1, 1.0 and True alike.
@functools.lru_cache(maxsize=None)
def _su2_clebsch_gordan(j1: int, j2: int, j3: int) -> np.ndarray:
    mat = np.zeros((2 * j1 + 1, 2 * j2 + 1, 2 * j3 + 1))
    for m1 in range(-j1, j1 + 1):
        for m2 in range(max(-j2, -j3 - m1), min(j2, j3 - m1) + 1):
            mat[j1 + m1, j2 + m2, j3 + m1 + m2] = _su2_cg_exact(j1, m1, j2, m2, j3, m1 + m2)
    mat.setflags(write=False)
    return mat


def wigner_3j(l1: int, l2: int, l3: int, *, allow_large: bool = False) -> np.ndarray:
    """Real Clebsch-Gordan coefficients ``C^{l1 l2 l3}``, shape ``(2l1+1, 2l2+1, 2l3+1)``, float64.

    Identical to ``e3nn.o3.wigner_3j`` (0.6.0): invariant under ``D^{l1} x D^{l2} x D^{l3}``,
    Frobenius norm 1. The returned array is cached and read-only.

    Raises:
        ValueError: if the triangle rule ``|l2-l3| <= l1 <= l2+l3`` fails.
        TooLarge: for more than ``limits.WIGNER_3J_MAX_ENTRIES`` entries, unless ``allow_large=True``.
    """
    _check_triangle(l1, l2, l3)
    entries = (2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1)
    check_work(f"wigner_3j({l1}, {l2}, {l3})", entries, WIGNER_3J_MAX_ENTRIES,
               f"{entries:.3g} entries ({entries * 8 / 1e6:.0f} MB, minutes of exact arithmetic at large l)",
               "allow_large=True", allow_large)  # fmt: skip
    return _wigner_3j(int(l1), int(l2), int(l3))


@functools.lru_cache(maxsize=None)
def _wigner_3j(l1: int, l2: int, l3: int) -> np.ndarray:
    q1 = change_basis_real_to_complex(l1)
    q2 = change_basis_real_to_complex(l2)
    q3 = change_basis_real_to_complex(l3)
    c = np.einsum("ij,kl,nm,ikn->jlm", q1, q2, q3.conj(), _su2_clebsch_gordan(l1, l2, l3), optimize=True)
    imag = np.abs(c.imag).max()
    if imag > 1e-10:  # a construction error, never a user error
        raise AssertionError(f"wigner_3j({l1},{l2},{l3}) has an imaginary part {imag}")
    c = c.real
    c = c / np.linalg.norm(c)
    # Exact zeros are structural; remove rounding noise so the sparse form is exact.
    c[np.abs(c) < 1e-14] = 0.0
    c.setflags(write=False)
    return c


class SparseCG(NamedTuple):
    """Non-zero entries of a real CG block: ``C[i1[k], i2[k], i3[k]] = values[k]`` (sorted by i3, i1, i2)."""

    i1: np.ndarray
    i2: np.ndarray
    i3: np.ndarray
    values: np.ndarray


def wigner_3j_sparse(l1: int, l2: int, l3: int) -> SparseCG:
    """The non-zero entries of ``wigner_3j(l1, l2, l3)``, ordered by output index ``i3``."""
    _check_triangle(l1, l2, l3)
    return _wigner_3j_sparse(int(l1), int(l2), int(l3))


@functools.lru_cache(maxsize=None)
def _wigner_3j_sparse(l1: int, l2: int, l3: int) -> SparseCG:
    c = _wigner_3j(l1, l2, l3)
    i3, i1, i2 = np.nonzero(c.transpose(2, 0, 1))
    arrays = [a.astype(np.int64) for a in (i1, i2, i3)] + [c[i1, i2, i3].copy()]
    for a in arrays:
        a.setflags(write=False)
    return SparseCG(*arrays)


# e3nn 0.4.4's wigner_3j (its precomputed constants.pt) is minus e3nn 0.6.0's (and fastso3's) for exactly these
# triples with every l <= 7 (all with l1 + l2 + l3 odd; found by comparing the two tables entry by entry); for
# every other triple in that range the tables are equal. Published MACE checkpoints were trained under 0.4.4.
E3NN_044_OPPOSITE_SIGN = frozenset(
    perm
    for triple in [(1, 2, 2), (1, 3, 3), (1, 4, 4), (1, 5, 5), (1, 6, 6), (1, 7, 7), (3, 4, 6), (3, 5, 7), (4, 4, 5),
                   (4, 5, 6), (4, 6, 7), (5, 5, 5), (5, 6, 6), (5, 7, 7)]
    for perm in itertools.permutations(triple)
)  # fmt: skip
_E3NN_044_CHECKED_LMAX = 7


def e3nn_044_sign(l1: int, l2: int, l3: int) -> int:
    """``+1`` or ``-1``: e3nn 0.4.4's ``wigner_3j(l1, l2, l3)`` divided by fastso3's (e3nn 0.6.0's).

    Raises ``ValueError`` above l = 7, where the two tables were not compared."""
    if max(l1, l2, l3) > _E3NN_044_CHECKED_LMAX:
        raise ValueError(f"e3nn_044_sign: known for l <= {_E3NN_044_CHECKED_LMAX} only, got ({l1}, {l2}, {l3})")
    return -1 if (l1, l2, l3) in E3NN_044_OPPOSITE_SIGN else 1
