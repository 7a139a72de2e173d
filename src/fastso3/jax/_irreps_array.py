"""``IrrepsArray``: a jax array of shape ``(..., irreps.dim)`` that also knows its irreps and its zero chunks.

Follows e3nn-jax 0.21.0's ``IrrepsArray`` (``e3nn_jax/_src/irreps_array.py``, ``_src/basic.py``): the data is
one contiguous array ``array`` in e3nn's layout (entry ``i`` is a row-major ``(mul, 2l+1)`` block, see
docs/conventions.md section 1.3) and ``chunks`` views it per entry as ``(..., mul, 2l+1)`` arrays, with ``None``
for chunks known to be zero (``zero_flags``) so that the operations of :mod:`fastso3.jax` skip their paths at
trace time. It is a pytree (leaf ``array``, static ``irreps``); as in e3nn-jax the zero flags do not cross
``jit``/``vmap`` boundaries (a traced value is not known to be zero). The seed's spellings ``IrrepsData``,
``from_contiguous``, ``.contiguous`` and ``.list`` are aliases.

Sorting uses e3nn-jax's order ``0e < 0o < 1o < 1e < 2e < 2o`` (``Irrep.iterator`` order), not the torch one.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..core.irreps import Irrep, Irreps

__all__ = ["IrrepsArray", "IrrepsData", "from_chunks", "as_irreps_array", "zeros", "concatenate", "jax_sort_key"]


def jax_sort_key(ir: Irrep) -> tuple:
    """e3nn-jax's irrep order: by ``l``, then the natural parity ``(-1)^l`` first."""
    return (ir.l, -ir.p * (-1) ** ir.l)


def _jax_sort(irreps: Irreps) -> tuple:
    """``(sorted irreps, inv)`` with a stable sort in e3nn-jax's order; ``sorted[i] = irreps[inv[i]]``."""
    inv = tuple(sorted(range(len(irreps)), key=lambda i: jax_sort_key(irreps[i].ir)))
    return Irreps([irreps[i] for i in inv]), inv


def _default_float():
    return jnp.zeros(()).dtype


class IrrepsArray:
    """``irreps`` + ``array`` ``(..., irreps.dim)`` + optional ``zero_flags`` (one bool per entry).

    Args:
        irreps: anything :class:`fastso3.core.irreps.Irreps` accepts.
        array: ``(..., irreps.dim)`` array (jax or numpy).
        zero_flags: a bool per entry, True where the chunk is known to be zero (its entries must be 0).

    Raises:
        ValueError: if the last axis of ``array`` is not ``irreps.dim`` or ``zero_flags`` has the wrong length.
    """

    __slots__ = ("irreps", "array", "zero_flags", "_chunks")

    def __init__(self, irreps: Any, array: Any, *, zero_flags: Optional[Sequence[bool]] = None, chunks=None):
        self.irreps = Irreps(irreps)
        self.array = jnp.asarray(array)
        if self.array.ndim == 0 or self.array.shape[-1] != self.irreps.dim:
            raise ValueError(
                f"IrrepsArray: array of shape {self.array.shape} does not match irreps {self.irreps} "
                f"(expected a last axis of {self.irreps.dim})"
            )
        if zero_flags is not None:
            zero_flags = tuple(bool(z) for z in zero_flags)
            if len(zero_flags) != len(self.irreps):
                raise ValueError(f"zero_flags has {len(zero_flags)} flags, irreps {self.irreps} has {len(self.irreps)} entries")
            if not any(zero_flags):
                zero_flags = None
        self.zero_flags = zero_flags
        self._chunks = None if chunks is None else list(chunks)

    # --- pytree ---------------------------------------------------------------------------------

    def tree_flatten(self):
        return (self.array,), self.irreps

    @classmethod
    def tree_unflatten(cls, irreps, leaves):
        out = object.__new__(cls)
        out.irreps, out.array, out.zero_flags, out._chunks = irreps, leaves[0], None, None
        return out

    # --- views ----------------------------------------------------------------------------------

    @property
    def chunks(self) -> list:
        """One ``(..., mul, 2l+1)`` array per entry, ``None`` for a chunk known to be zero."""
        if self._chunks is None:
            lead = self.array.shape[:-1]
            flags = self.zero_flags or (False,) * len(self.irreps)
            self._chunks = [
                None if zero else jnp.reshape(self.array[..., s], lead + (mul, ir.dim))
                for (mul, ir), s, zero in zip(self.irreps, self.irreps.slices(), flags)
            ]
        return self._chunks

    @property
    def shape(self) -> tuple:
        return self.array.shape

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def dtype(self):
        return self.array.dtype

    def __len__(self) -> int:
        return len(self.array)

    def __repr__(self) -> str:
        return f"{self.irreps} {self.array}"

    # Seed spellings (e3nn-jax before 0.7: IrrepsData, .contiguous, .list).
    contiguous = property(lambda self: self.array)
    list = property(lambda self: self.chunks)

    @staticmethod
    def from_contiguous(irreps: Any, array: Any) -> "IrrepsArray":
        """``IrrepsArray(irreps, array)`` (the seed's ``IrrepsData.from_contiguous``)."""
        return IrrepsArray(irreps, array)

    # --- reshaping and dtype --------------------------------------------------------------------

    def _like(self, array, irreps=None, zero_flags="same") -> "IrrepsArray":
        return IrrepsArray(self.irreps if irreps is None else irreps, array,
                           zero_flags=self.zero_flags if zero_flags == "same" else zero_flags)  # fmt: skip

    def reshape(self, shape: Sequence[int]) -> "IrrepsArray":
        """New leading shape; the last entry of ``shape`` must be ``-1`` or ``irreps.dim``."""
        shape = tuple(shape)
        if shape[-1] not in (-1, self.irreps.dim):
            raise ValueError(f"reshape: the last axis must stay {self.irreps.dim} (or -1), got {shape}")
        return self._like(jnp.reshape(self.array, shape[:-1] + (self.irreps.dim,)))

    def astype(self, dtype) -> "IrrepsArray":
        return self._like(self.array.astype(dtype))

    def broadcast_to(self, shape: Sequence[int]) -> "IrrepsArray":
        shape = tuple(shape)
        if shape[-1] not in (-1, self.irreps.dim):
            raise ValueError(f"broadcast_to: the last axis must stay {self.irreps.dim} (or -1), got {shape}")
        return self._like(jnp.broadcast_to(self.array, shape[:-1] + (self.irreps.dim,)))

    # --- reorganisation -------------------------------------------------------------------------

    def _from_entries(self, irreps: Irreps, indices: Sequence[int]) -> "IrrepsArray":
        """The entries ``indices`` of ``self``, in that order, with irreps ``irreps``."""
        chunks = [self.chunks[i] for i in indices]
        return from_chunks(irreps, chunks, self.shape[:-1], self.dtype)

    def remove_zero_chunks(self) -> "IrrepsArray":
        """Drop the entries known to be zero."""
        keep = [i for i, c in enumerate(self.chunks) if c is not None]
        return self._from_entries(Irreps([self.irreps[i] for i in keep]), keep)

    def simplify(self) -> "IrrepsArray":
        """Merge adjacent equal irreps (the data is unchanged)."""
        return self.rechunk(self.irreps.simplify())

    def sort(self) -> "IrrepsArray":
        """Stable sort of the entries in e3nn-jax's order (``0e < 0o < 1o < 1e``)."""
        irreps, inv = _jax_sort(self.irreps)
        return self._from_entries(irreps, inv)

    def regroup(self) -> "IrrepsArray":
        """``sort().simplify()``."""
        return self.sort().simplify()

    def filter(self, keep: Any = None, drop: Any = None, *, lmax: Optional[int] = None) -> "IrrepsArray":
        """The entries kept by ``Irreps.filter(keep, drop, lmax=lmax)`` (give ``keep`` or ``drop``, not both)."""
        kept = set(self.irreps.filter(keep, drop, lmax=lmax))
        indices = [i for i, mul_ir in enumerate(self.irreps) if mul_ir in kept and mul_ir.mul > 0]
        return self._from_entries(Irreps([self.irreps[i] for i in indices]), indices)

    def rechunk(self, irreps: Any) -> "IrrepsArray":
        """The same data seen with ``irreps``; ``irreps.simplify()`` must equal ``self.irreps.simplify()``."""
        irreps = Irreps(irreps)
        if irreps.simplify() != self.irreps.simplify():
            raise ValueError(f"rechunk: {irreps} and {self.irreps} are not the same irreps once simplified")
        if irreps == self.irreps:
            return self
        # An entry of the new irreps is zero if every copy it covers lies in a zero entry.
        zero_copy = [z for (mul, _), z in zip(self.irreps, self.zero_flags or (False,) * len(self.irreps)) for _ in range(mul)]
        flags, offset = [], 0
        for mul, _ in irreps:
            flags.append(mul > 0 and all(zero_copy[offset : offset + mul]))
            offset += mul
        return IrrepsArray(irreps, self.array, zero_flags=flags)

    def __getitem__(self, index: Any) -> "IrrepsArray":
        """Leading axes index as for an array; on the last axis: an irreps string that is a run of entries
        (``x[..., "1o + 2e"]``), or a slice on entry boundaries (``x[..., 3:8]``)."""
        if not isinstance(index, tuple):
            index = (index,)
        last_is_irreps = any(i is Ellipsis for i in index[:-1]) or len(index) == self.ndim
        if last_is_irreps and isinstance(index[-1], (str, Irreps, Irrep)):
            return self._index_leading(index[:-1])._select_irreps(Irreps(index[-1]))
        if last_is_irreps and isinstance(index[-1], slice) and index[-1] != slice(None):
            return self._index_leading(index[:-1])._select_dims(index[-1])
        if any(i is Ellipsis for i in index) and index[-1] is not Ellipsis and index[-1] != slice(None):
            raise IndexError(f"IrrepsArray: cannot index the irreps axis with {index[-1]!r}")
        return self._index_leading(index)

    def _index_leading(self, index: tuple) -> "IrrepsArray":
        """Index the leading axes only (the irreps axis is left whole)."""
        if not index:
            return self
        whole_last = len(index) == self.ndim and isinstance(index[-1], slice) and index[-1] == slice(None)
        if not any(i is Ellipsis for i in index) and len(index) >= self.ndim and not whole_last:
            raise IndexError(f"IrrepsArray: cannot index the irreps axis with {index[-1]!r}")
        return self._like(self.array[index])

    def _select_irreps(self, wanted: Irreps) -> "IrrepsArray":
        n = len(wanted)
        starts = [i for i in range(len(self.irreps) - n + 1) if self.irreps[i : i + n] == wanted]
        if len(starts) != 1:
            raise IndexError(f"IrrepsArray: {wanted} must appear exactly once as a run of entries of {self.irreps}")
        return self._from_entries(wanted, range(starts[0], starts[0] + n))

    def _select_dims(self, s: slice) -> "IrrepsArray":
        start, stop, step = s.indices(self.irreps.dim)
        bounds = [0] + [sl.stop for sl in self.irreps.slices()]
        if step != 1 or start not in bounds or stop not in bounds:
            raise IndexError(f"IrrepsArray: slice {s} of {self.irreps} must fall on entry boundaries {bounds}")
        i, j = bounds.index(start), bounds.index(stop)
        return self._from_entries(self.irreps[i:j], range(i, j))

    # --- rotations ------------------------------------------------------------------------------

    def transform_by_matrix(self, R: Any) -> "IrrepsArray":
        """``D(R) x`` for an orthogonal ``R (3, 3)`` (improper ones apply the parity)."""
        D = self.irreps.D_from_matrix(jnp.asarray(R, self.dtype))
        return self._like(self.array @ D.T.astype(self.dtype))

    def transform_by_angles(self, alpha, beta, gamma, k: int = 0, inverse: bool = False) -> "IrrepsArray":
        """``D(alpha, beta, gamma) p^k x`` (Y-X-Y angles); ``inverse=True`` applies the inverse."""
        D = self.irreps.D_from_angles(*(jnp.asarray(a, self.dtype) for a in (alpha, beta, gamma)), jnp.asarray(k))
        D = D.T if inverse else D
        return self._like(self.array @ D.T.astype(self.dtype))

    # --- arithmetic -----------------------------------------------------------------------------

    def _same_irreps(self, other: "IrrepsArray", op: str) -> "IrrepsArray":
        if other.irreps.simplify() != self.irreps.simplify():
            raise ValueError(f"IrrepsArray {op}: irreps {self.irreps} and {other.irreps} differ")
        return other.rechunk(self.irreps)

    def _add(self, other: Any, sign: float) -> "IrrepsArray":
        if isinstance(other, IrrepsArray):
            other = self._same_irreps(other, "+" if sign > 0 else "-")
            flags = None
            if self.zero_flags and other.zero_flags:
                flags = [a and b for a, b in zip(self.zero_flags, other.zero_flags)]
            return self._like(self.array + sign * other.array, zero_flags=flags)
        if isinstance(other, numbers.Number) and other == 0:
            return self
        if all(ir.l == 0 and ir.p == 1 for _, ir in self.irreps):
            return self._like(self.array + sign * jnp.asarray(other), zero_flags=None)
        raise ValueError(f"IrrepsArray: can only add a number to scalar (0e) irreps, not {self.irreps}")

    def __add__(self, other: Any) -> "IrrepsArray":
        return self._add(other, 1.0)

    __radd__ = __add__

    def __sub__(self, other: Any) -> "IrrepsArray":
        return self._add(other, -1.0)

    def __rsub__(self, other: Any) -> "IrrepsArray":
        return (-self)._add(other, 1.0)

    def __neg__(self) -> "IrrepsArray":
        return self._like(-self.array)

    def _scale(self, other: Any, divide: bool) -> "IrrepsArray":
        other = jnp.asarray(other)
        if other.ndim > 0 and other.shape[-1] not in (1, self.irreps.num_irreps):
            raise ValueError(
                f"IrrepsArray * array: the last axis of the array must be 1 or num_irreps={self.irreps.num_irreps}, "
                f"got shape {other.shape}"
            )
        if other.ndim > 0 and other.shape[-1] != 1:  # one factor per copy, repeated over its 2l+1 components
            other = jnp.repeat(other, np.array([ir.dim for mul, ir in self.irreps for _ in range(mul)]), axis=-1,
                               total_repeat_length=self.irreps.dim)  # fmt: skip
        return self._like(self.array / other if divide else self.array * other)

    def __mul__(self, other: Any) -> "IrrepsArray":
        if isinstance(other, IrrepsArray):
            from ._tensor_product import elementwise_tensor_product

            if not (all(ir.l == 0 for _, ir in self.irreps) or all(ir.l == 0 for _, ir in other.irreps)):
                raise ValueError(f"IrrepsArray * IrrepsArray needs one side of scalars, got {self.irreps} and {other.irreps}")
            return elementwise_tensor_product(self, other)
        return self._scale(other, divide=False)

    def __rmul__(self, other: Any) -> "IrrepsArray":
        return self._scale(other, divide=False)

    def __truediv__(self, other: Any) -> "IrrepsArray":
        if isinstance(other, IrrepsArray):
            if not all(ir.l == 0 for _, ir in other.irreps) or other.irreps.num_irreps != self.irreps.num_irreps:
                raise ValueError(f"IrrepsArray / IrrepsArray needs {self.irreps.num_irreps} scalars, got {other.irreps}")
            other = other.array
        return self._scale(other, divide=True)


jax.tree_util.register_pytree_node_class(IrrepsArray)

IrrepsData = IrrepsArray  # the seed's name (e3nn-jax before 0.7)


def from_chunks(irreps: Any, chunks: Sequence[Any], leading_shape: tuple, dtype=None) -> IrrepsArray:
    """An IrrepsArray from one ``leading_shape + (mul, 2l+1)`` chunk per entry; ``None`` chunks are zeros.

    ``dtype`` is needed only when every chunk is None (default: jax's default float).
    """
    irreps = Irreps(irreps)
    chunks = list(chunks)
    if len(chunks) != len(irreps):
        raise ValueError(f"from_chunks: {len(chunks)} chunks for {len(irreps)} entries of {irreps}")
    leading_shape = tuple(leading_shape)
    if dtype is None:
        present = [c.dtype for c in chunks if c is not None]
        dtype = jnp.result_type(*present) if present else _default_float()
    parts = []
    for (mul, ir), c in zip(irreps, chunks):
        if c is None:
            parts.append(jnp.zeros(leading_shape + (mul * ir.dim,), dtype))
        else:
            if c.shape[-2:] != (mul, ir.dim):
                raise ValueError(f"from_chunks: a chunk of shape {c.shape} for {mul}x{ir} (expected (..., {mul}, {ir.dim}))")
            parts.append(jnp.reshape(jnp.broadcast_to(c, leading_shape + c.shape[-2:]), leading_shape + (mul * ir.dim,)).astype(dtype))
    array = jnp.concatenate(parts, axis=-1) if parts else jnp.zeros(leading_shape + (0,), dtype)
    out = IrrepsArray(irreps, array, zero_flags=[c is None for c in chunks])
    out._chunks = [None if c is None else jnp.broadcast_to(c, leading_shape + c.shape[-2:]).astype(dtype) for c in chunks]
    return out


def as_irreps_array(array: Any) -> IrrepsArray:
    """An IrrepsArray as is; a raw array ``(..., n)`` becomes ``nx0e``."""
    if isinstance(array, IrrepsArray):
        return array
    array = jnp.asarray(array)
    if array.ndim == 0:
        raise ValueError("as_irreps_array: a scalar has no irreps axis; give an array of shape (..., n)")
    return IrrepsArray(f"{array.shape[-1]}x0e", array)


def zeros(irreps: Any, leading_shape: tuple = (), dtype=None) -> IrrepsArray:
    """Zeros of shape ``leading_shape + (dim,)`` with every chunk flagged as zero."""
    irreps = Irreps(irreps)
    return from_chunks(irreps, [None] * len(irreps), leading_shape, dtype)


def concatenate(arrays: Sequence[IrrepsArray], axis: int = -1) -> IrrepsArray:
    """Join along the irreps axis (``axis=-1``: the irreps add up) or along a leading axis (same irreps)."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError("concatenate: no arrays given")
    ndim = arrays[0].ndim
    if axis in (-1, ndim - 1):
        lead = jnp.broadcast_shapes(*(a.shape[:-1] for a in arrays))
        irreps = Irreps(sum((tuple(a.irreps) for a in arrays), ()))
        chunks = [c for a in arrays for c in a.chunks]
        return from_chunks(irreps, chunks, lead, jnp.result_type(*(a.dtype for a in arrays)))
    first = arrays[0]
    others = [first._same_irreps(a, "concatenate") for a in arrays[1:]]
    return IrrepsArray(first.irreps, jnp.concatenate([first.array] + [a.array for a in others], axis=axis))
