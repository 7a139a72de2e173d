"""Irreducible representations of O(3) and their direct sums, with e3nn 0.6.0 (torch) semantics.

* :class:`Irrep` ``(l, p)``: degree ``l >= 0`` and parity ``p in {+1, -1}``; written ``"1o"``, ``"2e"``
  (``"ly"`` means the spherical-harmonics parity ``(-1)^l``). A tuple, so ``Irrep("1o") == (1, -1)``.
* :class:`MulIr` ``(mul, ir)``: ``mul`` copies of one irrep.
* :class:`Irreps`: a tuple of :class:`MulIr`, written ``"16x0e + 8x1o"``.

Only numpy is needed at import. :meth:`Irreps.randn` imports torch when called. The rotation
matrices (``D_from_*``) are computed by the front that owns the arguments (``fastso3.o3`` for torch
tensors, ``fastso3.jax`` for jax arrays; see :class:`RotationBackend`), so they return that framework's arrays.
"""

from __future__ import annotations

import itertools
import numbers
import re
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional, Union

__all__ = ["Irrep", "MulIr", "Irreps", "RotationBackend", "register_rotation_backend"]

_PARITY_CHARS = {"e": 1, "o": -1}
_IRREP_RE = re.compile(r"\s*([0-9]+)\s*([eoy])\s*", re.ASCII)
_TERM_RE = re.compile(r"\s*(?:([0-9]+)\s*x\s*)?([0-9]+)\s*([eoy])\s*", re.ASCII)


def _as_int(value: Any, what: str) -> int:
    """``value`` as a Python int; bools and non-integral numbers are rejected."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what} must be an int, got {value!r}")
    return int(value)


def _pair(value: Any) -> Optional[tuple]:
    """``value`` as a 2-tuple if it is a tuple or list of length 2 (``len`` of tuple subclasses is not trusted)."""
    if isinstance(value, tuple) and tuple.__len__(value) == 2:
        return tuple.__getitem__(value, 0), tuple.__getitem__(value, 1)
    if isinstance(value, list) and len(value) == 2:
        return value[0], value[1]
    return None


def _parity(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value not in (1, -1):
        raise ValueError(f"parity must be +1 or -1, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------------
# Rotation matrices: the math of each array framework is registered by its front
# ----------------------------------------------------------------------------------------------


class RotationBackend(NamedTuple):
    """How one front builds rotation matrices with its own arrays (torch: ``fastso3.o3``, jax: ``fastso3.jax``).

    The Wigner-D tables (``fastso3.core.so3``: generators, ``J``) are shared numpy; each front evaluates
    them in its framework and registers itself with :func:`register_rotation_backend` when imported.

    * ``owns(value)``: True for the front's arrays; ``D_from_*`` use the backend owning an argument.
    * ``as_angles(*values)``: floating arrays of one dtype, broadcast together.
    * ``wigner_D(l, alpha, beta, gamma)``: ``(..., 2l+1, 2l+1)``.
    * ``matrix_to_angles(R)``, ``quaternion_to_angles(q)``, ``axis_angle_to_angles(axis, angle)``: Y-X-Y angles.
    * ``det_sign(R)``: ``sign(det R)``, ``(...)``.
    * ``with_parity(D, p, k)``: ``p^k D`` with ``k`` ``(...)``.
    * ``block_diagonal(blocks, dim)``: ``(..., dim, dim)`` from ``[(D (..., d, d), mul), ...]`` (each D repeated
      ``mul`` times on the diagonal).
    * ``default``: used for arguments no backend owns (Python numbers, numpy arrays).
    """

    name: str
    owns: Callable[[Any], bool]
    as_angles: Callable[..., list]
    wigner_D: Callable[[int, Any, Any, Any], Any]
    matrix_to_angles: Callable[[Any], tuple]
    quaternion_to_angles: Callable[[Any], tuple]
    axis_angle_to_angles: Callable[[Any, Any], tuple]
    det_sign: Callable[[Any], Any]
    with_parity: Callable[[Any, int, Any], Any]
    block_diagonal: Callable[[list, int], Any]
    default: bool = False


_ROTATION_BACKENDS: dict = {}


def register_rotation_backend(backend: RotationBackend) -> None:
    """Make ``D_from_*`` accept the arrays of ``backend`` (called by each front when it is imported)."""
    _ROTATION_BACKENDS[backend.name] = backend


def _rotation_backend(*values: Any) -> RotationBackend:
    """The backend owning one of ``values``, else the default one (torch when its front is loaded)."""
    backends = list(_ROTATION_BACKENDS.values())
    for value in values:
        for backend in backends:
            if value is not None and backend.owns(value):
                return backend
    for backend in sorted(backends, key=lambda b: not b.default):
        return backend
    raise RuntimeError(
        "Irreps.D_from_* need an array front: import fastso3.o3 (torch tensors) or fastso3.jax (jax arrays) first"
    )


class _RotationMixin:
    """``D_from_quaternion``, ``D_from_matrix`` and ``D_from_axis_angle``, all through ``D_from_angles``."""

    __slots__ = ()

    def D_from_angles(self, alpha: Any, beta: Any, gamma: Any, k: Any = None) -> Any:  # pragma: no cover
        raise NotImplementedError

    def D_from_quaternion(self, q: Any, k: Any = None) -> Any:
        """``(..., dim, dim)`` representation matrix of the rotation given by the quaternion ``q`` ``(..., 4)``.

        Quaternions are scalar-first ``(w, x, y, z)``; ``k`` (broadcastable to ``(...)``) applies the
        inversion ``k`` times. The result is a tensor of the framework of ``q`` (torch or jax).
        """
        return self.D_from_angles(*_rotation_backend(q).quaternion_to_angles(q), k)

    def D_from_matrix(self, R: Any) -> Any:
        """``(..., dim, dim)`` representation matrix of the orthogonal matrix ``R`` ``(..., 3, 3)``.

        Improper matrices (det = -1) are the inversion times the rotation ``-R``, so each irrep
        is multiplied by its parity ``p``. The result is in the framework of ``R`` (torch or jax).
        """
        backend = _rotation_backend(R)
        (R,) = backend.as_angles(R)
        d = backend.det_sign(R)
        R = d[..., None, None] * R
        k = (1 - d) / 2
        return self.D_from_angles(*backend.matrix_to_angles(R), k)

    def D_from_axis_angle(self, axis: Any, angle: Any) -> Any:
        """``(..., dim, dim)`` representation matrix of the rotation by ``angle`` ``(...)`` about ``axis`` ``(..., 3)``.

        The axis need not be normalized. The result is in the framework of the arguments (torch or jax).
        """
        return self.D_from_angles(*_rotation_backend(axis, angle).axis_angle_to_angles(axis, angle))


def _angles_and_backend(alpha: Any, beta: Any, gamma: Any, k: Any) -> tuple:
    """``(backend, alpha, beta, gamma, k)`` with the angles (and ``k`` if given) as broadcast arrays."""
    backend = _rotation_backend(alpha, beta, gamma, k)
    if k is None:
        return (backend, *backend.as_angles(alpha, beta, gamma), None)
    return (backend, *backend.as_angles(alpha, beta, gamma, k))


# ----------------------------------------------------------------------------------------------
# Irrep
# ----------------------------------------------------------------------------------------------


class Irrep(_RotationMixin, tuple):
    """An irreducible representation of O(3): degree ``l`` and parity ``p``.

    ``Irrep(1, -1)``, ``Irrep("1o")``, ``Irrep((1, -1))`` and ``Irrep(Irrep("1o"))`` are the same;
    ``"ly"`` means parity ``(-1)^l``. Dimension ``2l + 1``. Being a tuple ``(l, p)``, an Irrep
    compares and hashes like one (``Irrep("1o") == (1, -1)``); it also equals its string.
    """

    __slots__ = ()

    def __new__(cls, l: Any, p: Any = None) -> "Irrep":
        if p is None:
            if isinstance(l, Irrep):
                return l
            if isinstance(l, MulIr):
                raise ValueError(f"cannot make an Irrep from {l!r} (a multiplicity and an irrep); use .ir")
            if isinstance(l, str):
                match = _IRREP_RE.fullmatch(l)
                if match is None:
                    raise ValueError(f'unable to parse irrep {l!r}: expected "<l><e|o|y>", such as "1o"')
                l = int(match.group(1))
                char = match.group(2)
                p = (-1) ** l if char == "y" else _PARITY_CHARS[char]
            elif _pair(l) is not None:
                l, p = _pair(l)
            else:
                raise ValueError(f"unable to interpret {l!r} as an irrep")
        elif isinstance(l, (Irrep, str, tuple, list)):
            raise ValueError(f"Irrep(l, p) takes an int l when p is given, got l={l!r}")
        l = _as_int(l, "l")
        if l < 0:
            raise ValueError(f"l must be non-negative, got {l}")
        return super().__new__(cls, (l, _parity(p)))

    @property
    def l(self) -> int:  # noqa: E743
        """Degree."""
        return self[0]

    @property
    def p(self) -> int:
        """Parity, +1 or -1."""
        return self[1]

    @property
    def dim(self) -> int:
        """``2l + 1``."""
        return 2 * self[0] + 1

    def is_scalar(self) -> bool:
        """True only for ``0e``."""
        return self[0] == 0 and self[1] == 1

    @classmethod
    def iterator(cls, lmax: Optional[int] = None) -> Iterator["Irrep"]:
        """All irreps, ``0e, 0o, 1o, 1e, 2e, 2o, ...`` (natural parity ``(-1)^l`` first), up to ``lmax``."""
        for l in itertools.count():
            if lmax is not None and l > lmax:
                return
            yield cls(l, (-1) ** l)
            yield cls(l, -((-1) ** l))

    def __repr__(self) -> str:
        return f"{self[0]}{'e' if self[1] == 1 else 'o'}"

    __str__ = __repr__

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, str):
            try:
                other = Irrep(other)
            except ValueError:
                return False
        return tuple.__eq__(self, other)

    def __ne__(self, other: Any) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = tuple.__hash__

    def __mul__(self, other: Any) -> Any:
        """``ir1 * ir2``: generator of the irreps in the product, ``|l1-l2| <= L <= l1+l2``, parity ``p1 p2``.

        ``ir * n`` (an int) is ``n * ir``, an :class:`Irreps`.
        """
        if isinstance(other, numbers.Integral) and not isinstance(other, bool):
            return self.__rmul__(other)
        if not isinstance(other, (Irrep, str, tuple, list)):
            return NotImplemented
        other = Irrep(other)
        p = self.p * other.p
        return (Irrep(l, p) for l in range(abs(self.l - other.l), self.l + other.l + 1))

    def __rmul__(self, mul: Any) -> "Irreps":
        """``n * ir``: the :class:`Irreps` ``nx<ir>``."""
        if not isinstance(mul, numbers.Integral) or isinstance(mul, bool):
            return NotImplemented
        return Irreps([(mul, self)])

    def __add__(self, other: Any) -> "Irreps":
        if not isinstance(other, (Irrep, Irreps, MulIr, str, tuple, list)):
            return NotImplemented
        return Irreps(self) + Irreps(other)

    def __radd__(self, other: Any) -> "Irreps":
        if not isinstance(other, (Irrep, Irreps, MulIr, str, tuple, list)):
            return NotImplemented
        return Irreps(other) + Irreps(self)

    def D_from_angles(self, alpha: Any, beta: Any, gamma: Any, k: Any = None) -> Any:
        """``(..., 2l+1, 2l+1)`` matrix ``p^k D^l(alpha, beta, gamma)`` (Y-X-Y Euler angles).

        ``alpha``, ``beta``, ``gamma`` and ``k`` (number of inversions, default 0) broadcast to ``(...)``.
        """
        backend, alpha, beta, gamma, k = _angles_and_backend(alpha, beta, gamma, k)
        D = backend.wigner_D(self.l, alpha, beta, gamma)
        return D if k is None or self.p == 1 else backend.with_parity(D, self.p, k)


# ----------------------------------------------------------------------------------------------
# MulIr
# ----------------------------------------------------------------------------------------------


class MulIr(tuple):
    """``mul`` copies of the irrep ``ir``: a tuple ``(mul, ir)`` with ``.mul``, ``.ir`` and ``.dim``."""

    __slots__ = ()
    _fields = ("mul", "ir")

    def __new__(cls, mul: Any, ir: Any = None) -> "MulIr":
        if ir is None:
            if isinstance(mul, MulIr):
                return mul
            pair = _pair(mul)
            if pair is None:
                raise ValueError(f"unable to interpret {mul!r} as (mul, irrep)")
            mul, ir = pair
        mul = _as_int(mul, "multiplicity")
        if mul < 0:
            raise ValueError(f"multiplicity must be non-negative, got {mul}")
        return super().__new__(cls, (mul, Irrep(ir)))

    @property
    def mul(self) -> int:
        """Multiplicity."""
        return self[0]

    @property
    def ir(self) -> Irrep:
        """The irrep."""
        return self[1]

    @property
    def dim(self) -> int:
        """``mul * (2l + 1)``."""
        return self[0] * self[1].dim

    def _replace(self, **kwargs: Any) -> "MulIr":
        return MulIr(kwargs.pop("mul", self[0]), kwargs.pop("ir", self[1]))

    def __repr__(self) -> str:
        return f"{self[0]}x{self[1]!r}"

    __str__ = __repr__


# ----------------------------------------------------------------------------------------------
# Irreps
# ----------------------------------------------------------------------------------------------


class IrrepsSort(NamedTuple):
    """Result of :meth:`Irreps.sort`: ``irreps[i] = old[inv[i]]`` and ``p = inv^-1``."""

    irreps: "Irreps"
    p: tuple
    inv: tuple


IrrepsSort.__name__ = "sort"  # the repr reads ``sort(irreps=..., p=..., inv=...)`` as in e3nn


def _parse_irreps_string(text: str) -> list:
    if text.strip() == "":
        return []
    out = []
    for term in text.split("+"):
        match = _TERM_RE.fullmatch(term)
        if match is None:
            what = "an empty term" if term.strip() == "" else f"the term {term.strip()!r}"
            raise ValueError(
                f'unable to parse irreps {text!r}: {what} is not of the form "[<mul>x]<l><e|o|y>"'
                ' (write irreps as "16x0e + 8x1o")'
            )
        mul = 1 if match.group(1) is None else int(match.group(1))
        l = int(match.group(2))
        char = match.group(3)
        p = (-1) ** l if char == "y" else _PARITY_CHARS[char]
        out.append(MulIr(mul, Irrep(l, p)))
    return out


def _int_pair(value: Any) -> Optional[tuple]:
    """``(l, p)`` if ``value`` is a tuple or list of two ints, else None."""
    pair = _pair(value)
    if pair is not None and all(isinstance(v, numbers.Integral) for v in pair):
        return pair
    return None


def _irreps_entries(value: Any, pairs_of_ints_are_irreps: bool = False) -> list:
    """The list of MulIr that ``value`` stands for. In a list, a plain pair is ``(mul, irrep)`` (e3nn's
    ``Irreps``), or an irrep ``(l, p)`` if it holds two ints and ``pairs_of_ints_are_irreps`` (e3nn's
    ``filter``)."""
    if value is None:
        return []
    if isinstance(value, Irreps):
        return list(value)
    if isinstance(value, str):
        return _parse_irreps_string(value)
    if isinstance(value, Irrep):
        return [MulIr(1, value)]
    if isinstance(value, MulIr):
        return [value]
    if isinstance(value, tuple) and _int_pair(value) is not None:
        return [MulIr(1, Irrep(_int_pair(value)))]  # an irrep as a tuple (l, p), such as e3nn's Irrep
    if not isinstance(value, Iterable):
        raise ValueError(f"unable to interpret {value!r} as irreps")
    out = []
    for item in value:
        if isinstance(item, str):
            out.extend(_parse_irreps_string(item))
        elif isinstance(item, Irrep):
            out.append(MulIr(1, item))
        elif isinstance(item, MulIr):
            out.append(item)
        elif (pairs_of_ints_are_irreps or type(item) not in (tuple, list)) and _int_pair(item) is not None:
            out.append(MulIr(1, Irrep(_int_pair(item))))  # (l, p), or a tuple subclass: another library's Irrep
        elif _pair(item) is not None:  # a plain pair is (mul, irrep), as in e3nn: [(32, 1)] raises
            try:
                out.append(MulIr(*_pair(item)))
            except ValueError as err:
                raise ValueError(
                    f"unable to interpret {item!r} in {value!r} as (mul, irrep): {err} "
                    "(an irrep needs its parity: (mul, (l, p)) or (mul, '1e'))"
                ) from None
        else:
            raise ValueError(f"unable to interpret {item!r} in {value!r} as (mul, irrep), an irrep or a string")
    return out


def _irrep_set(value: Any, name: str) -> frozenset:
    """The set of irreps named by a ``filter`` argument (a string, Irrep, MulIr, Irreps or a list of them)."""
    try:
        return frozenset(ir for _, ir in _irreps_entries(value, pairs_of_ints_are_irreps=True))
    except ValueError as err:
        raise ValueError(f"filter: cannot read {name}={value!r} as irreps or a list of irreps: {err}") from None


class _SliceByMul:
    __slots__ = ("_irreps",)

    def __init__(self, irreps: "Irreps") -> None:
        self._irreps = irreps

    def __getitem__(self, index: Any) -> "Irreps":
        if not isinstance(index, slice):
            raise IndexError("Irreps.slice_by_mul only supports slices, such as irreps.slice_by_mul[2:5]")
        if index.step not in (None, 1):
            raise NotImplementedError("Irreps.slice_by_mul does not support strides")
        start, stop, _ = index.indices(self._irreps.num_irreps)
        if start > stop:
            return Irreps()
        out = []
        offset = 0
        for mul, ir in self._irreps:
            end = offset + mul
            if start <= offset and end <= stop:
                # The whole entry is inside: kept as is (zero multiplicities included, as in e3nn).
                out.append(MulIr(mul, ir))
            elif start < end and offset < stop:
                out.append(MulIr(min(stop, end) - max(start, offset), ir))
            offset = end
        return Irreps(out)


class Irreps(_RotationMixin, tuple):
    """A direct sum of irreps: a tuple of :class:`MulIr` ``(mul, ir)``.

    Built from a string ``"16x0e + 8x1o"`` (``"1e"`` means ``1x1e``; ``""`` is empty), an
    :class:`Irrep`, a :class:`MulIr`, ``None``, another Irreps, or a list of ``(mul, irrep-like)``,
    Irrep, MulIr or strings. Features with these irreps have shape ``(..., dim)``: entry ``i``
    occupies ``slices()[i]`` as a row-major ``(mul, 2l+1)`` block.

    ``+`` concatenates; ``n * irreps`` and ``irreps * n`` repeat the tuple ``n`` times (as in
    e3nn torch). An Irreps compares equal to the equivalent tuple and to its string.
    """

    __slots__ = ()

    def __new__(cls, irreps: Any = None) -> "Irreps":
        if type(irreps) is cls:
            return irreps
        return super().__new__(cls, _irreps_entries(irreps))

    # --- sizes --------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """``sum(mul * (2l + 1))``, the feature dimension."""
        return sum(mul * ir.dim for mul, ir in self)

    @property
    def num_irreps(self) -> int:
        """``sum(mul)``, the number of irrep copies."""
        return sum(mul for mul, _ in self)

    @property
    def ls(self) -> list:
        """The degree of each copy (``l`` repeated ``mul`` times)."""
        return [ir.l for mul, ir in self for _ in range(mul)]

    @property
    def lmax(self) -> int:
        """The largest degree among the copies (``max(ls)``); ValueError if there are none."""
        ls = [ir.l for mul, ir in self if mul > 0]
        if not ls:
            raise ValueError(f"cannot get lmax of Irreps {self!r}: it has no copies")
        return max(ls)

    def slices(self) -> list:
        """``slice`` of each entry in a ``(..., dim)`` feature vector."""
        out = []
        offset = 0
        for mul_ir in self:
            out.append(slice(offset, offset + mul_ir.dim))
            offset += mul_ir.dim
        return out

    def count(self, ir: Any) -> int:
        """Total multiplicity of the irrep ``ir``."""
        ir = Irrep(ir)
        return sum(mul for mul, irrep in self if irrep == ir)

    def __contains__(self, ir: Any) -> bool:
        if isinstance(ir, MulIr):
            return tuple.__contains__(self, ir)
        ir = Irrep(ir)
        return any(irrep == ir for _, irrep in self)

    # --- reorganisation -----------------------------------------------------------------------

    def simplify(self) -> "Irreps":
        """Merge adjacent equal irreps and drop zero multiplicities, without sorting: ``1e+1e+0e -> 2x1e+1x0e``."""
        out: list = []
        for mul, ir in self:
            if mul == 0:
                continue
            if out and out[-1][1] == ir:
                out[-1] = (out[-1][0] + mul, ir)
            else:
                out.append((mul, ir))
        return Irreps(out)

    def remove_zero_multiplicities(self) -> "Irreps":
        """The entries with ``mul > 0``, in order."""
        return Irreps([mul_ir for mul_ir in self if mul_ir.mul > 0])

    def sort(self) -> IrrepsSort:
        """Stable sort by ``(l, p)`` (so ``0o < 0e < 1o < 1e``): ``(irreps, p, inv)``.

        ``irreps[i] = self[inv[i]]`` and ``p[old] = new`` is the inverse permutation.
        """
        inv = tuple(sorted(range(len(self)), key=lambda i: self[i].ir))
        p = [0] * len(inv)
        for new, old in enumerate(inv):
            p[old] = new
        return IrrepsSort(Irreps([self[i] for i in inv]), tuple(p), inv)

    def regroup(self) -> "Irreps":
        """``sort().irreps.simplify()``."""
        return self.sort().irreps.simplify()

    def filter(
        self,
        keep: Union[Any, Callable[[MulIr], bool], None] = None,
        drop: Union[Any, Callable[[MulIr], bool], None] = None,
        *,
        lmax: Optional[int] = None,
    ) -> "Irreps":
        """The entries whose irrep is in ``keep`` (or not in ``drop``), and with ``l <= lmax``.

        ``keep``/``drop`` is a string (``"1o + 2e"``), Irreps, Irrep, MulIr, a list of those, or a
        callable on :class:`MulIr`. Give at most one of them; ``lmax`` can be combined with either.
        Multiplicities in ``keep``/``drop`` are ignored; order and zero multiplicities are kept.
        """
        if keep is not None and drop is not None:
            raise ValueError("filter: give keep or drop, not both")
        if keep is None and drop is None and lmax is None:
            return self
        tests = []
        if keep is not None:
            if callable(keep) and not isinstance(keep, (Irrep, Irreps, MulIr)):
                tests.append(lambda mul_ir, f=keep: bool(f(mul_ir)))
            else:
                kept = _irrep_set(keep, "keep")
                tests.append(lambda mul_ir: mul_ir.ir in kept)
        if drop is not None:
            if callable(drop) and not isinstance(drop, (Irrep, Irreps, MulIr)):
                tests.append(lambda mul_ir, f=drop: not f(mul_ir))
            else:
                dropped = _irrep_set(drop, "drop")
                tests.append(lambda mul_ir: mul_ir.ir not in dropped)
        if lmax is not None:
            lmax = _as_int(lmax, "lmax")
            tests.append(lambda mul_ir: mul_ir.ir.l <= lmax)
        return Irreps([mul_ir for mul_ir in self if all(test(mul_ir) for test in tests)])

    @property
    def slice_by_mul(self) -> _SliceByMul:
        """Slicing in units of copies: ``Irreps("2x0e+3x1o").slice_by_mul[1:4] == "1x0e+2x1o"``.

        As in e3nn, an entry covering copies ``[i, i + mul)`` is kept whole when ``start <= i`` and
        ``i + mul <= stop`` (so zero multiplicities at the ends are kept), and cut to its overlap
        when ``start < i + mul`` and ``i < stop``.
        """
        return _SliceByMul(self)

    @staticmethod
    def spherical_harmonics(lmax: int, p: int = -1) -> "Irreps":
        """``1x0e + 1x1o + 1x2e + ...`` up to ``lmax``: degree ``l`` has parity ``p^l``."""
        lmax = _as_int(lmax, "lmax")
        p = _parity(p)
        return Irreps([(1, (l, p**l)) for l in range(lmax + 1)])

    # --- tuple behaviour ----------------------------------------------------------------------

    def __getitem__(self, index: Any) -> Any:
        out = tuple.__getitem__(self, index)
        if isinstance(index, slice):
            return Irreps(out)
        return out

    def __add__(self, other: Any) -> "Irreps":
        if not isinstance(other, (Irreps, Irrep, MulIr, str, tuple, list)):
            return NotImplemented
        return Irreps(tuple.__add__(self, tuple(Irreps(other))))

    def __radd__(self, other: Any) -> "Irreps":
        if not isinstance(other, (Irreps, Irrep, MulIr, str, tuple, list)):
            return NotImplemented
        return Irreps(other) + self

    def __mul__(self, other: Any) -> "Irreps":
        if isinstance(other, Irreps):
            raise NotImplementedError("Irreps * Irreps is not defined; use a tensor product")
        if not isinstance(other, numbers.Integral) or isinstance(other, bool):
            return NotImplemented
        return Irreps(tuple.__mul__(self, int(other)))

    __rmul__ = __mul__

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, str):
            try:
                other = Irreps(other)
            except ValueError:
                return False
        return tuple.__eq__(self, other)

    def __ne__(self, other: Any) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = tuple.__hash__

    def __repr__(self) -> str:
        return "+".join(repr(mul_ir) for mul_ir in self)

    __str__ = __repr__

    # --- tensors (torch) ----------------------------------------------------------------------

    def randn(
        self,
        *size: int,
        normalization: str = "component",
        requires_grad: bool = False,
        dtype: Any = None,
        device: Any = None,
    ) -> Any:
        """Random features of shape ``size`` with the single ``-1`` replaced by ``dim``.

        ``'component'``: iid N(0, 1) entries. ``'norm'``: each copy (a ``2l+1`` block) has norm exactly 1.
        """
        import torch

        if size.count(-1) != 1:
            raise ValueError(f"randn: size must contain exactly one -1 (replaced by dim), got {size}")
        di = size.index(-1)
        lsize, rsize = size[:di], size[di + 1 :]
        if normalization == "component":
            return torch.randn(*lsize, self.dim, *rsize, requires_grad=requires_grad, dtype=dtype, device=device)
        if normalization != "norm":
            raise ValueError(f"randn: normalization must be 'component' or 'norm', got {normalization!r}")
        chunks = []
        for mul, ir in self:
            r = torch.randn(*lsize, mul, ir.dim, *rsize, dtype=dtype, device=device)
            r = r / r.norm(dim=di + 1, keepdim=True)
            chunks.append(r.reshape(*lsize, mul * ir.dim, *rsize))
        if chunks:
            x = torch.cat(chunks, dim=di)
        else:
            x = torch.zeros(*lsize, 0, *rsize, dtype=dtype, device=device)
        return x.requires_grad_(requires_grad)

    def D_from_angles(self, alpha: Any, beta: Any, gamma: Any, k: Any = None) -> Any:
        """``(..., dim, dim)`` block-diagonal matrix: ``p^k D^l(alpha, beta, gamma)`` for each copy.

        ``alpha``, ``beta``, ``gamma`` and ``k`` (number of inversions, default 0) broadcast to ``(...)``.
        """
        backend, alpha, beta, gamma, k = _angles_and_backend(alpha, beta, gamma, k)
        by_l: dict = {}
        by_ir: dict = {}
        blocks = []
        for mul, ir in self:
            if mul == 0:
                continue
            if ir not in by_ir:
                if ir.l not in by_l:
                    by_l[ir.l] = backend.wigner_D(ir.l, alpha, beta, gamma)
                D = by_l[ir.l]
                by_ir[ir] = D if k is None or ir.p == 1 else backend.with_parity(D, ir.p, k)
            blocks.append((by_ir[ir], mul))
        if not blocks:  # no copies: an empty matrix with the batch shape of the angles
            return backend.block_diagonal([(backend.wigner_D(0, alpha, beta, gamma), 0)], self.dim)
        return backend.block_diagonal(blocks, self.dim)
