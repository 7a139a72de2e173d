"""Spherical-harmonics plan: the tables every backend evaluates (numpy only).

All degrees come from one recursion on Clebsch-Gordan blocks (see docs/conventions.md):

    Y^0 = 1,    Y^l_k(x) = a_l * sum_{j,i} C^{(l, l-1, 1)}[k, j, i] Y^{l-1}_j(x) x_i

with ``a_l > 0`` chosen so that ``|Y^l(u)|^2 = 2l+1`` on the unit sphere ('component'
normalisation). Each ``Y^l`` is a homogeneous harmonic polynomial of degree ``l``, so its
gradient is again a CG contraction of the previous degree (Euler's identity fixes the scale):

    d Y^l_k / d x_i = l * a_l * sum_j C^{(l, l-1, 1)}[k, j, i] Y^{l-1}_j(x).

Both formulas are sparse accumulations over the non-zero CG entries; the gradient of the
gradient is again the same kind of table, so derivatives of every order reuse one kernel.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .cg import wigner_3j, wigner_3j_sparse

__all__ = ["SHPlan", "sh_plan", "sh_grad_table", "NORMALIZATIONS", "sh_offset"]

NORMALIZATIONS = ("integral", "component", "norm")


def sh_offset(l: int) -> int:
    """Index of ``Y^l_{-l}`` in the concatenated ``l = 0..lmax`` vector, i.e. ``l**2``."""
    return l * l


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


_PROBE = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])


@functools.lru_cache(maxsize=None)
def _a(l: int) -> float:
    """a_l: fixes |Y^l|^2 = 2l+1 on the sphere (the norm is constant there, so one probe suffices)."""
    raw = _contract(l, _component_values(l - 1, _PROBE), _PROBE)
    return math.sqrt(2 * l + 1) / np.linalg.norm(raw)


def _component_values(l: int, u: np.ndarray) -> np.ndarray:
    y = np.ones(1)
    for degree in range(1, l + 1):
        y = _a(degree) * _contract(degree, y, u)
    return y


def _contract(l: int, y_prev: np.ndarray, u: np.ndarray) -> np.ndarray:
    c = wigner_3j_sparse(l, l - 1, 1)
    out = np.zeros(2 * l + 1)
    np.add.at(out, c.i1, c.values * y_prev[c.i2] * u[c.i3])
    return out


@dataclass(frozen=True, eq=False)
class SHPlan:
    """Tables for spherical harmonics of degrees ``0..lmax`` (output size ``(lmax+1)**2``).

    Forward (entries sorted by ``fwd_out``, so each degree only reads finished lower degrees)::

        out[0] = 1;  out[fwd_out[e]] += fwd_coef[e] * out[fwd_in[e]] * u[fwd_dim[e]]

    on unnormalised 'component' values, then ``out *= scale`` (per component).

    Backward, on the *scaled* outputs ``y`` and the cotangent ``g``::

        grad_u[bwd_dim[e]] += bwd_coef[e] * g[bwd_g[e]] * y[bwd_y[e]]
    """

    lmax: int
    normalization: str
    size: int
    scale: np.ndarray  # (size,) float64: component -> requested normalisation
    fwd_out: np.ndarray  # int64
    fwd_in: np.ndarray  # int64
    fwd_dim: np.ndarray  # int64, 0..2
    fwd_coef: np.ndarray  # float64
    bwd_dim: np.ndarray  # int64, output index of the sparse accumulation (0..2)
    bwd_g: np.ndarray  # int64
    bwd_y: np.ndarray  # int64
    bwd_coef: np.ndarray  # float64
    recursion_blocks: tuple  # per l >= 1: a_l * C^{(l, l-1, 1)}, dense (2l+1, 2l-1, 3), for the reference

    def __repr__(self) -> str:
        return (
            f"SHPlan(lmax={self.lmax}, normalization={self.normalization!r}, size={self.size}, "
            f"forward_entries={len(self.fwd_coef)}, backward_entries={len(self.bwd_coef)})"
        )


def _normalization_scale(l: int, normalization: str) -> float:
    if normalization == "component":
        return 1.0
    if normalization == "norm":
        return 1.0 / math.sqrt(2 * l + 1)
    if normalization == "integral":
        return 1.0 / math.sqrt(4 * math.pi)
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def sh_plan(lmax: int, normalization: str = "integral") -> SHPlan:
    """The cached, immutable :class:`SHPlan` for degrees ``0..lmax``."""
    if not isinstance(lmax, (int, np.integer)) or isinstance(lmax, bool) or lmax < 0:
        raise ValueError(f"lmax must be a non-negative int, got {lmax!r}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    return _sh_plan(int(lmax), normalization)


@functools.lru_cache(maxsize=None)
def _sh_plan(lmax: int, normalization: str) -> SHPlan:
    scale = np.concatenate([np.full(2 * l + 1, _normalization_scale(l, normalization)) for l in range(lmax + 1)])
    fwd = [[], [], [], []]
    bwd = [[], [], [], []]
    for l in range(1, lmax + 1):
        c = wigner_3j_sparse(l, l - 1, 1)
        a = _a(l)
        out_idx = sh_offset(l) + c.i1
        in_idx = sh_offset(l - 1) + c.i2
        for lst, values in zip(fwd, (out_idx, in_idx, c.i3, a * c.values)):
            lst.append(values)
        # d out_k / d u_i with out = scale * Y and Y^{l-1} = out / scale.
        coef = l * a * c.values * scale[out_idx] / scale[in_idx]
        for lst, values in zip(bwd, (c.i3, out_idx, in_idx, coef)):
            lst.append(values)

    def cat(parts, dtype, order=None):
        a = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
        return _frozen(a if order is None else a[order])

    # Forward entries sorted by output (stable): kernels accumulate one output at a time.
    order = np.argsort(np.concatenate(fwd[0]), kind="stable") if fwd[0] else None

    return SHPlan(
        lmax=lmax,
        normalization=normalization,
        size=(lmax + 1) ** 2,
        scale=_frozen(scale),
        fwd_out=cat(fwd[0], np.int64, order),
        fwd_in=cat(fwd[1], np.int64, order),
        fwd_dim=cat(fwd[2], np.int64, order),
        fwd_coef=cat(fwd[3], np.float64, order),
        bwd_dim=cat(bwd[0], np.int64),
        bwd_g=cat(bwd[1], np.int64),
        bwd_y=cat(bwd[2], np.int64),
        bwd_coef=cat(bwd[3], np.float64),
        recursion_blocks=tuple(_frozen(_a(l) * wigner_3j(l, l - 1, 1)) for l in range(1, lmax + 1)),
    )


@functools.lru_cache(maxsize=None)
def sh_grad_table(lmax: int, normalization: str, roles: tuple[int, int, int]) -> tuple[tuple[np.ndarray, ...], np.ndarray, tuple[int, int, int]]:
    """The plan's gradient table as a sparse accumulation ``out[i_out] += coef * x1[i_1] * x2[i_2]``.

    The table's three slots are (point component ``0..2``, cotangent ``g``, output ``y``), of sizes
    ``(3, size, size)``; ``roles = (o, a, b)`` says which slot indexes the output, ``x1`` and ``x2``
    (``(0, 1, 2)``: the vjp ``grad_u``; ``(1, 0, 2)``: the jvp ``dy`` from ``du``). Every derivative of a
    sparse accumulation is one with permuted roles. Returns ``((i_out, i_1, i_2), coef, (n_out, n_1, n_2))``,
    int64 / float64, sorted by output (the kernels' fast path), read-only.
    """
    if sorted(roles) != [0, 1, 2]:
        raise ValueError(f"roles must be a permutation of 0, 1, 2, got {roles}")
    plan = sh_plan(lmax, normalization)
    slots, dims = (plan.bwd_dim, plan.bwd_g, plan.bwd_y), (3, plan.size, plan.size)
    order = np.argsort(slots[roles[0]], kind="stable")
    return (tuple(_frozen(slots[r][order]) for r in roles), _frozen(plan.bwd_coef[order]),
            tuple(dims[r] for r in roles))  # fmt: skip
