"""SO(3)/SU(2) Lie-algebra generators and the constant tables of the closed-form Wigner D (numpy only).

Conventions (e3nn 0.6.0, see docs/conventions.md section 2):

* ``su2_generators(j)`` are, in the complex basis ``|j, m>`` ordered ``m = -j..j`` and with the
  Condon-Shortley spin matrices ``J_x, J_y, J_z``, the three anti-Hermitian matrices
  ``(-i J_y, i J_z, i J_x)``. They satisfy ``[X_a, X_b] = eps_abc X_c``.
* ``so3_generators(l) = Q^H su2_generators(l) Q`` with ``Q = change_basis_real_to_complex(l)``: real
  antisymmetric matrices; index 0 generates rotations about x, 1 about y, 2 about z. For ``l = 1`` they
  are the textbook ``L_x, L_y, L_z`` (``expm(t X[0]) = matrix_x(t)``, ...).
* In e3nn's real basis the rotations about the polar axis y have the closed form (``k = l + m``)
  ``D_y(phi)[k, k] = cos((l-k) phi)``, ``D_y(phi)[k, 2l-k] = sin((l-k) phi)``.
* ``wigner_J(l)`` is ``D^l(S)`` for ``S`` the rotation by pi about ``(e_x + e_y)/sqrt(2)``, which swaps the
  x and y axes (and maps z to -z). Since ``S^2 = 1`` and ``S R_y(t) S = R_x(t)``,

      J @ J = I,   J = J^T,   D_x(t) = J @ D_y(t) @ J,

  so that ``D(alpha, beta, gamma) = D_y(alpha) J D_y(beta) J D_y(gamma)`` needs no matrix exponential.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np

from fastso3.core.cg import change_basis_real_to_complex

__all__ = [
    "su2_generators",
    "so3_generators",
    "wigner_J",
    "wigner_D_y",
]


def _two_j(j) -> int:
    if isinstance(j, bool) or not isinstance(j, (int, float, np.integer, np.floating)):
        raise ValueError(f"j must be a non-negative integer or half-integer, got {j!r}")
    two_j = 2 * j
    if not math.isclose(two_j, round(two_j), abs_tol=1e-9) or two_j < 0:
        raise ValueError(f"j must be a non-negative integer or half-integer, got {j!r}")
    return int(round(two_j))


@functools.lru_cache(maxsize=None)
def _su2_generators_cached(two_j: int) -> np.ndarray:
    j = two_j / 2
    m = -j + np.arange(two_j + 1)  # m = -j .. j
    # J_+ |m> = sqrt(j(j+1) - m(m+1)) |m+1>: entry [index(m+1), index(m)], the first sub-diagonal.
    j_plus = np.diag(np.sqrt(j * (j + 1) - m[:-1] * (m[:-1] + 1)), k=-1).astype(np.complex128)
    j_minus = j_plus.T.copy()
    j_x = (j_plus + j_minus) / 2
    j_y = (j_plus - j_minus) / 2j
    j_z = np.diag(m).astype(np.complex128)
    gens = np.stack([-1j * j_y, 1j * j_z, 1j * j_x])
    gens.setflags(write=False)
    return gens


def su2_generators(j) -> np.ndarray:
    """SU(2) generators of spin ``j``, shape ``(3, 2j+1, 2j+1)``, complex128 (e3nn's definition).

    ``j`` may be an integer or a half-integer. Basis ``|j, m>``, ``m = -j..j``; the matrices are
    ``(-i J_y, i J_z, i J_x)`` (Condon-Shortley ``J``), anti-Hermitian, ``[X_a, X_b] = eps_abc X_c``.
    The returned array is cached and read-only.
    """
    return _su2_generators_cached(_two_j(j))


def _check_l(l) -> int:
    if isinstance(l, bool) or not isinstance(l, (int, np.integer)) or l < 0:
        raise ValueError(f"l must be a non-negative int, got {l!r}")
    return int(l)


@functools.lru_cache(maxsize=None)
def _so3_generators_cached(l: int) -> np.ndarray:
    q = change_basis_real_to_complex(l)
    x = q.conj().T @ su2_generators(l) @ q
    imag = np.abs(x.imag).max()
    if imag > 1e-12:  # a construction error, never a user error
        raise AssertionError(f"so3_generators({l}) has an imaginary part {imag}")
    x = np.ascontiguousarray(x.real)
    # Every entry is +-sqrt(integer)/2 (J_+- matrix elements, times 1/sqrt(2)^2 or 1/sqrt(2) * sqrt(2)):
    # snap to the correctly rounded value (this also zeroes the structural zeros exactly).
    four_x2 = np.rint(4 * x * x)
    if np.abs(4 * x * x - four_x2).max() > 1e-6:  # a construction error
        raise AssertionError(f"so3_generators({l}): unexpected entries")
    x = np.sign(x) * np.sqrt(four_x2) / 2
    x.setflags(write=False)
    return x


def so3_generators(l: int) -> np.ndarray:
    """Real SO(3) generators for degree ``l``, shape ``(3, 2l+1, 2l+1)``, float64 (equal to e3nn's).

    Index 0 generates rotations about x, 1 about y, 2 about z: ``D^l(R_a(t)) = expm(t X[a])``.
    Antisymmetric, ``[X_x, X_y] = X_z`` (cyclic). Cached and read-only.
    """
    return _so3_generators_cached(_check_l(l))


def _wigner_small_d_half_pi(l: int) -> np.ndarray:
    """Standard Wigner ``d^l_{m'm}(pi/2) = <l m'| exp(-i pi/2 J_y) |l m>``, indexed ``[l+m', l+m]``.

    Wigner's formula at beta = pi/2, where ``cos(beta/2) = sin(beta/2) = 1/sqrt 2``:
    ``d = 2^-l sum_s (-1)^(m'-m+s) sqrt((l+m')!(l-m')!(l+m)!(l-m)!) / ((l+m-s)! s! (m'-m+s)! (l-m'-s)!)``,
    evaluated in exact rational arithmetic and rounded once.
    """
    fact = [math.factorial(i) for i in range(2 * l + 1)]
    n = 2 * l + 1
    d = np.zeros((n, n))
    for mp in range(-l, l + 1):
        for m in range(-l, l + 1):
            # The four factorial arguments sum to 2l: (2l)! times each term is a multinomial coefficient.
            total = 0
            for s in range(max(0, m - mp), min(l + m, l - mp) + 1):
                multinomial = fact[2 * l] // (fact[l + m - s] * fact[s] * fact[mp - m + s] * fact[l - mp - s])
                total += (-1) ** (mp - m + s) * multinomial
            if total != 0:
                square = Fraction(total * total * fact[l + mp] * fact[l - mp] * fact[l + m] * fact[l - m])
                square /= fact[2 * l] ** 2 * 4**l
                d[l + mp, l + m] = math.copysign(math.sqrt(float(square)), total)
    return d


def _D_y_quarter_turn(l: int) -> np.ndarray:
    """Exact ``D_y(pi/2)``: entries ``cos((l-k) pi/2)``, ``sin((l-k) pi/2)`` in ``{0, +-1}``."""
    n = 2 * l + 1
    out = np.zeros((n, n))
    for k in range(n):
        p = (l - k) % 4  # (l-k) pi/2 modulo 2 pi
        out[k, k] = (1, 0, -1, 0)[p]
        if k != l:
            out[k, 2 * l - k] = (0, 1, 0, -1)[p]
    return out


@functools.lru_cache(maxsize=None)
def _wigner_J_cached(l: int) -> np.ndarray:
    # S = Ry(pi/2) Rx(pi/2) Ry(pi/2), so J = D_y(pi/2) D_x(pi/2) D_y(pi/2). In the complex basis the real
    # x generator is -i J_y, hence D_x(pi/2) = Q^H d(pi/2) Q with the standard small-d matrix; D_y(pi/2) is a
    # signed permutation. Every entry of J is thus a short sum of correctly rounded numbers (~1e-16 accurate).
    q = change_basis_real_to_complex(l)
    dx = q.conj().T @ _wigner_small_d_half_pi(l) @ q
    imag = np.abs(dx.imag).max()
    if imag > 1e-12:  # a construction error
        raise AssertionError(f"wigner_J({l}) has an imaginary part {imag}")
    dy = _D_y_quarter_turn(l)
    j = dy @ dx.real @ dy
    j = (j + j.T) / 2
    j[np.abs(j) < 1e-15] = 0.0
    unit = np.abs(np.abs(j) - 1) < 1e-15  # an entry +-1 of an orthogonal matrix is exact
    j[unit] = np.sign(j[unit])
    j.setflags(write=False)
    return j


def wigner_J(l: int) -> np.ndarray:
    """The constant ``J_l = D^l(S)``, ``S`` = rotation by pi about ``(e_x+e_y)/sqrt 2``; shape ``(2l+1, 2l+1)``.

    Symmetric orthogonal involution (``J @ J = I``) with ``D_x(t) = J @ D_y(t) @ J``. Computed once per ``l``
    from Wigner's exact formula for ``d(pi/2)`` (float64, ~1e-16 accurate), cached and read-only.
    """
    return _wigner_J_cached(_check_l(l))


def wigner_D_y(l: int, angle) -> np.ndarray:
    """Closed-form ``D^l`` of the rotation by ``angle`` about y, shape ``(..., 2l+1, 2l+1)``, float64.

    ``D[k, k] = cos((l-k) angle)`` and ``D[k, 2l-k] = sin((l-k) angle)`` with ``k = l + m``.
    """
    l = _check_l(l)
    angle = np.asarray(angle, dtype=np.float64)
    freq = np.arange(l, -l - 1, -1, dtype=np.float64)  # l - k
    phase = angle[..., None] * freq
    out = np.zeros(angle.shape + (2 * l + 1, 2 * l + 1))
    k = np.arange(2 * l + 1)
    out[..., k, k] = np.cos(phase)
    out[..., k, 2 * l - k] += np.sin(phase)  # the middle entry gets sin(0) = 0
    return out
