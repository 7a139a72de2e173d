"""Permutations of ``{0, ..., n-1}`` as tuples, with the semantics of ``e3nn.math.perm`` (e3nn 0.6.0).

A permutation ``p`` of length ``n`` is a tuple holding each of ``0 .. n-1`` once and maps ``i -> p[i]``.
Groups are Python sets of such tuples. Used by :class:`fastso3.o3.ReducedTensorProducts` (through the
index formulas of :mod:`fastso3.math._reduce`) and by code written for ``e3nn.math.perm``.

* :func:`compose` ``(p1, p2)`` is ``p1 . p2`` (``i -> p1[p2[i]]``), :func:`inverse`, :func:`identity`;
* :func:`from_int` / :func:`to_int`: the bijection between ``range(n!)`` and permutations of length
  ``n`` (mixed radix, e3nn's numbering), :func:`rand` (a uniform draw from Python's ``random``),
  :func:`group` (all ``n!`` permutations);
* :func:`germinate` (closure of a set under inverse and composition), :func:`is_group`;
* :func:`to_cycles` (cycles of length >= 2, each starting at its smallest element), :func:`sign`;
* :func:`natural_representation` ``(n, n)`` and :func:`standard_representation` ``(n-1, n-1)``
  (the irrep of ``S_n`` on the complement of ``(1, ..., 1)``), tensors in ``dtype`` (default: torch's).

Differences from e3nn: invalid arguments raise ``ValueError`` naming the argument where e3nn asserts.
Source of the definitions: e3nn 0.6.0, ``e3nn/math/perm.py``.
"""

from __future__ import annotations

import math
import random
from typing import Optional, Set, Tuple

import torch

from ._linalg import complete_basis

TY_PERM = Tuple[int, ...]

__all__ = [
    "TY_PERM",
    "compose",
    "from_int",
    "germinate",
    "group",
    "identity",
    "inverse",
    "is_group",
    "is_perm",
    "natural_representation",
    "rand",
    "sign",
    "standard_representation",
    "to_cycles",
    "to_int",
]


def is_perm(p: TY_PERM) -> bool:
    """Whether ``p`` holds each of ``0 .. len(p)-1`` exactly once."""
    return sorted(set(p)) == list(range(len(p)))


def _check_perm(p: TY_PERM, name: str) -> None:
    if not is_perm(p):
        raise ValueError(f"{name}={p!r} is not a permutation of 0..{len(p) - 1}")


def identity(n: int) -> TY_PERM:
    """``(0, 1, ..., n-1)``."""
    return tuple(range(n))


def compose(p1: TY_PERM, p2: TY_PERM) -> TY_PERM:
    """``p1 . p2``: ``i -> p1[p2[i]]`` (``p2`` acts first)."""
    _check_perm(p1, "p1")
    _check_perm(p2, "p2")
    if len(p1) != len(p2):
        raise ValueError(f"p1 and p2 must have the same length, got {len(p1)} and {len(p2)}")
    return tuple(p1[j] for j in p2)


def inverse(p: TY_PERM) -> TY_PERM:
    """The permutation ``q`` with ``q[p[i]] = i``."""
    q = [0] * len(p)
    for i, j in enumerate(p):
        q[j] = i
    return tuple(q)


def from_int(i: int, n: int) -> TY_PERM:
    """The ``i``-th permutation of length ``n`` (``0 <= i < n!``), in e3nn's mixed-radix numbering:
    digit ``k`` (radix ``n - k``) picks the next element among those still unused."""
    pool = list(range(n))
    out = []
    for radix in range(n, 0, -1):
        i, digit = divmod(i, radix)
        out.append(pool.pop(digit))
    return tuple(out)


def to_int(p: TY_PERM) -> int:
    """Inverse of :func:`from_int`: ``from_int(to_int(p), len(p)) == p``."""
    pool = list(range(len(p)))
    i, weight = 0, 1
    for j in p:
        digit = pool.index(j)
        i += digit * weight
        weight *= len(pool)
        pool.pop(digit)
    return i


def rand(n: int) -> TY_PERM:
    """A uniformly random permutation of length ``n``, drawn with Python's ``random`` (as e3nn)."""
    return from_int(random.randint(0, math.factorial(n) - 1), n)


def group(n: int) -> Set[TY_PERM]:
    """The symmetric group ``S_n``: all ``n!`` permutations of length ``n``."""
    return {from_int(i, n) for i in range(math.factorial(n))}


def germinate(subset: Set[TY_PERM]) -> Set[TY_PERM]:
    """The smallest set containing ``subset`` that is closed under inverse and composition (for a
    non-empty ``subset``: the group it generates)."""
    subset = set(subset)
    while True:
        size = len(subset)
        subset |= {inverse(p) for p in subset}
        subset |= {compose(p1, p2) for p1 in subset for p2 in subset}
        if len(subset) == size:
            return subset


def is_group(g: Set[TY_PERM]) -> bool:
    """Whether ``g`` (a set of permutations of one length) contains the identity and is closed under
    inverse and composition. The empty set is not a group."""
    if len(g) == 0:
        return False
    lengths = {len(p) for p in g}
    if len(lengths) != 1:
        raise ValueError(f"g must hold permutations of one length, got lengths {sorted(lengths)}")
    (n,) = lengths
    if identity(n) not in g:
        return False
    if any(inverse(p) not in g for p in g):
        return False
    return all(compose(p1, p2) in g for p1 in g for p2 in g)


def to_cycles(p: TY_PERM) -> Set[Tuple[int, ...]]:
    """The cycles of ``p`` of length >= 2, each as ``(c0, p[c0], p[p[c0]], ...)`` with ``c0`` its smallest element."""
    seen = set()
    cycles = set()
    for start in range(len(p)):
        if start in seen:
            continue
        cycle = [start]
        while p[cycle[-1]] != start:
            cycle.append(p[cycle[-1]])
        seen.update(cycle)
        if len(cycle) >= 2:
            cycles.add(tuple(cycle))  # `start` is the smallest: every smaller element was seen before
    return cycles


def sign(p: TY_PERM) -> int:
    """``+1`` for an even permutation, ``-1`` for an odd one."""
    return (-1) ** sum(len(c) - 1 for c in to_cycles(p))


def natural_representation(
    p: TY_PERM, dtype: Optional[torch.dtype] = None, device: Optional[torch.device] = None
) -> torch.Tensor:
    """The permutation matrix ``(n, n)`` of ``p``: row ``a`` is the unit vector ``e_{p^-1(a)}``, so
    ``natural_representation(p) @ x == x[list(inverse(p))]`` and the map is a group homomorphism."""
    return torch.eye(len(p), dtype=dtype, device=device)[list(inverse(p))]


def standard_representation(
    p: TY_PERM, dtype: Optional[torch.dtype] = None, device: Optional[torch.device] = None
) -> torch.Tensor:
    """The standard irrep of ``S_n``, ``(n-1, n-1)``: :func:`natural_representation` restricted to the
    orthogonal complement of ``(1, ..., 1)``, in the basis ``complete_basis(ones(1, n), eps=0.1/n)``."""
    n = len(p)
    basis = complete_basis(torch.ones(1, n, dtype=dtype, device=device), eps=0.1 / n)
    return basis @ natural_representation(p, dtype=dtype, device=device) @ basis.T
