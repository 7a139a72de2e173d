"""``IrrepsTensor``: irreps plus one contiguous tensor, with optional "known zero" flags.

Plain tensors ``(..., irreps.dim)`` stay the main currency of fastso3; an :class:`IrrepsTensor` is a
light wrapper that carries the irreps with the data (like e3nn-jax's ``IrrepsArray``, see
``docs/conventions.md`` section 1.4):

* ``array``: the contiguous ``(..., irreps.dim)`` tensor (entry ``i`` occupies ``irreps.slices()[i]``
  as a row-major ``(mul, 2l+1)`` block);
* ``zero_flags``: one bool per irreps entry, True where the entry is *known* to be zero (its block of
  ``array`` holds zeros). Functions may skip work on such entries (the functional tensor product
  skips the paths that read them);
* ``chunks``: the ``(..., mul, 2l+1)`` views of the entries (None for the known-zero ones), made
  on first use.

It is a pytree node (leaf: ``array``; context: ``(irreps, zero_flags)``), so it passes through
``torch.func.vmap``/``grad``/``jacrev`` and ``torch.compile(fullgraph=True)``, and the zero flags
survive these transforms. Under ``torch.compile``: multiply by a tensor with ``x.mul(t)`` (dynamo
does not dispatch ``x * t`` to ``__mul__``); with ``dynamic=True`` the ints of the irreps of an
input become symbols, which works but can be unified with an equal batch size (a recompile).
``torch.export`` takes IrrepsTensor inputs and outputs in non-strict mode (the default) only.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
import torch.utils._pytree as pytree

from .core.irreps import Irrep, Irreps, MulIr

__all__ = ["IrrepsTensor"]


def _leading(shape: Any) -> tuple:
    if isinstance(shape, (int, torch.SymInt)):
        return (shape,)
    return tuple(shape)


def _is_irreps_index(index: Any) -> bool:
    return isinstance(index, (str, Irreps, Irrep, MulIr))


def _flags(zero_flags: Any, n: int) -> tuple:
    if zero_flags is None:
        return (False,) * n
    flags = tuple(bool(f) for f in zero_flags)
    if len(flags) != n:
        raise ValueError(f"zero_flags has {len(flags)} entries, but the irreps have {n}")
    return flags


class IrrepsTensor:
    """Irreps and a tensor ``array`` of shape ``(..., irreps.dim)``.

    Args:
        irreps: anything :class:`~fastso3.core.irreps.Irreps` accepts.
        array: a tensor whose last dimension is ``irreps.dim``.
        zero_flags: optional, one bool per irreps entry: True marks an entry known to be zero (the
            caller guarantees it; it is not checked). Default: nothing known.

    Constructors: :meth:`from_chunks`, :meth:`zeros`, :meth:`zeros_like`, :meth:`randn`.

    Operations (all return new objects; ``array`` is never modified in place):

    * ``x[..., "1e + 2e"]``: the entries spelled by the irreps, which must appear exactly once as
      consecutive entries of ``x.irreps`` (else ValueError); ``x[..., 3:8]``: a slice of the last
      axis on copy boundaries; any other index (``x[0]``, ``x[:, 1:3]``) acts on the leading axes;
    * ``x + y``, ``x - y`` (identical irreps; ``0`` and, for all-``0e`` irreps, plain numbers also
      work), ``-x``, ``x * s`` and ``x / s`` with ``s`` a number, a tensor whose last dimension is 1
      (broadcast over the leading axes) or ``irreps.num_irreps`` (one factor per copy); inside
      ``torch.compile`` write ``x.mul(t)`` for a tensor ``t`` (dynamo does not route ``x * t``);
    * :meth:`transform_by_matrix`, :meth:`transform_by_angles`, :meth:`transform_by_quaternion`,
      :meth:`transform_by_axis_angle` (the representation ``D`` of ``irreps`` applied to each vector);
    * :meth:`simplify`, :meth:`sort`, :meth:`regroup`, :meth:`filter`, :meth:`remove_zero_chunks`;
    * :meth:`to`, :meth:`detach`, ``.shape`` (the full shape of ``array``), ``.ndim``, ``.dtype``,
      ``.device``, ``len(x)`` (the first leading axis).
    """

    def __init__(self, irreps: Any, array: torch.Tensor, zero_flags: Sequence[bool] | None = None) -> None:
        irreps = Irreps(irreps)
        if not isinstance(array, torch.Tensor):
            raise TypeError(f"array must be a torch.Tensor, got {type(array).__name__}")
        if array.dim() == 0 or array.shape[-1] != irreps.dim:
            raise ValueError(f"array must have shape (..., {irreps.dim}) for irreps {irreps}, got {tuple(array.shape)}")
        self.irreps: Irreps = irreps
        self.array: torch.Tensor = array
        self.zero_flags: tuple = _flags(zero_flags, len(irreps))
        self._chunks: list | None = None

    # --- constructors -----------------------------------------------------------------------------

    @classmethod
    def from_chunks(
        cls,
        irreps: Any,
        chunks: Sequence[torch.Tensor | None],
        leading_shape: Any,
        dtype: torch.dtype | None = None,
        device: Any = None,
    ) -> IrrepsTensor:
        """Assemble ``array`` from one ``(*leading_shape, mul, 2l+1)`` tensor per entry.

        A ``None`` chunk is written as zeros and flagged in ``zero_flags``:
        ``from_chunks("1o+2x0e", [None, torch.ones(2, 1)], ())`` has ``array = [0, 0, 0, 1, 1]`` and
        ``zero_flags = (True, False)``. ``dtype``/``device`` default to the first given chunk's (or
        torch's default dtype and the CPU if all are None).
        """
        irreps = Irreps(irreps)
        leading = _leading(leading_shape)
        chunks = list(chunks)
        if len(chunks) != len(irreps):
            raise ValueError(f"expected {len(irreps)} chunks (one per entry of {irreps}), got {len(chunks)}")
        given = [c for c in chunks if c is not None]
        if dtype is None:
            dtype = given[0].dtype if given else torch.get_default_dtype()
        if device is None:
            device = given[0].device if given else None
        blocks = []
        flags = []
        for (mul, ir), chunk in zip(irreps, chunks):
            if chunk is None:
                flags.append(True)
                blocks.append(torch.zeros(*leading, mul * ir.dim, dtype=dtype, device=device))
                continue
            if not isinstance(chunk, torch.Tensor):
                raise TypeError(f"chunks must be tensors or None, got {type(chunk).__name__}")
            if tuple(chunk.shape) != (*leading, mul, ir.dim):
                raise ValueError(
                    f"the chunk of {mul}x{ir} must have shape {(*leading, mul, ir.dim)}, got {tuple(chunk.shape)}"
                )
            flags.append(False)
            blocks.append(chunk.to(dtype=dtype, device=device).reshape(*leading, mul * ir.dim))
        if blocks:
            array = torch.cat(blocks, dim=-1)
        else:
            array = torch.zeros(*leading, 0, dtype=dtype, device=device)
        out = cls(irreps, array, flags)
        out._chunks = [None if c is None else c.to(dtype=dtype, device=device) for c in chunks]
        return out

    @classmethod
    def zeros(cls, irreps: Any, leading_shape: Any = (), dtype: torch.dtype | None = None, device: Any = None) -> IrrepsTensor:
        """All zeros, every entry flagged as known zero."""
        irreps = Irreps(irreps)
        array = torch.zeros(*_leading(leading_shape), irreps.dim, dtype=dtype, device=device)
        return cls(irreps, array, (True,) * len(irreps))

    @classmethod
    def zeros_like(cls, x: IrrepsTensor) -> IrrepsTensor:
        return cls(x.irreps, torch.zeros_like(x.array), (True,) * len(x.irreps))

    @classmethod
    def randn(
        cls,
        irreps: Any,
        leading_shape: Any = (),
        normalization: str = "component",
        dtype: torch.dtype | None = None,
        device: Any = None,
        requires_grad: bool = False,
    ) -> IrrepsTensor:
        """Random data: ``'component'``: iid N(0, 1) entries; ``'norm'``: each copy has norm exactly 1
        (as :meth:`Irreps.randn <fastso3.core.irreps.Irreps.randn>`)."""
        irreps = Irreps(irreps)
        array = irreps.randn(*_leading(leading_shape), -1, normalization=normalization, dtype=dtype, device=device)
        return cls(irreps, array.requires_grad_(requires_grad))

    # --- properties -------------------------------------------------------------------------------

    @property
    def shape(self) -> torch.Size:
        """The shape of ``array``: ``(*leading, irreps.dim)``."""
        return self.array.shape

    @property
    def ndim(self) -> int:
        return self.array.dim()

    @property
    def dtype(self) -> torch.dtype:
        return self.array.dtype

    @property
    def device(self) -> torch.device:
        return self.array.device

    @property
    def chunks(self) -> list:
        """One ``(..., mul, 2l+1)`` view of ``array`` per entry, None for the known-zero entries."""
        if self._chunks is not None:
            return self._chunks
        leading = self.array.shape[:-1]
        out = []
        for (mul, ir), s, zero in zip(self.irreps, self.irreps.slices(), self.zero_flags):
            out.append(None if zero else self.array[..., s].reshape(*leading, mul, ir.dim))
        if not torch.compiler.is_compiling():  # no attribute side effects inside a traced region
            self._chunks = out
        return out

    def __len__(self) -> int:
        if self.array.dim() < 2:
            raise TypeError("len() of an IrrepsTensor without leading axes")
        return self.array.shape[0]

    def __repr__(self) -> str:
        flags = "" if not any(self.zero_flags) else f", zero_flags={self.zero_flags}"
        return f"IrrepsTensor({self.irreps}, shape={tuple(self.array.shape)}, dtype={self.array.dtype}{flags})\n{self.array}"

    def _with(self, array: torch.Tensor, irreps: Any = None, zero_flags: Any = None) -> IrrepsTensor:
        return IrrepsTensor(self.irreps if irreps is None else irreps, array, self.zero_flags if zero_flags is None else zero_flags)

    # --- tensor-like ------------------------------------------------------------------------------

    def to(self, *args: Any, **kwargs: Any) -> IrrepsTensor:
        """``array.to(*args, **kwargs)`` (dtype, device), keeping irreps and zero flags."""
        return self._with(self.array.to(*args, **kwargs))

    def detach(self) -> IrrepsTensor:
        return self._with(self.array.detach())

    # --- indexing ---------------------------------------------------------------------------------

    def _entry_range(self, irreps: Irreps) -> tuple:
        n = len(irreps)
        starts = [i for i in range(len(self.irreps) - n + 1) if tuple(self.irreps[i : i + n]) == tuple(irreps)]
        if n == 0 or len(starts) != 1:
            where = "does not appear" if not starts else f"appears {len(starts)} times"
            raise ValueError(f"cannot index with {irreps}: it {where} in {self.irreps} (it must appear exactly once)")
        return starts[0], starts[0] + n

    def _slice_last(self, index: slice) -> tuple:
        """(irreps, zero_flags, column slice) for a slice of the last axis on copy boundaries."""
        start, stop, step = index.indices(self.irreps.dim)
        if step != 1:
            raise IndexError(f"slices of the irreps axis must have step 1, got {index}")
        stop = max(stop, start)
        entries = []
        flags = []
        offset = 0
        for (mul, ir), zero in zip(self.irreps, self.zero_flags):
            lo, hi = max(start, offset), min(stop, offset + mul * ir.dim)
            if lo < hi:
                if (lo - offset) % ir.dim or (hi - offset) % ir.dim:
                    raise IndexError(f"the slice {start}:{stop} of the irreps axis of {self.irreps} cuts a copy of {ir}")
                entries.append(((hi - lo) // ir.dim, ir))
                flags.append(zero)
            offset += mul * ir.dim
        return Irreps(entries), tuple(flags), slice(start, stop)

    def __getitem__(self, index: Any) -> IrrepsTensor:
        if not isinstance(index, tuple):
            index = (index,)
        has_ellipsis = any(i is Ellipsis for i in index)
        last = index[-1] if index else Ellipsis
        consumed = sum(
            i.dim() if isinstance(i, torch.Tensor) and i.dtype == torch.bool else 1
            for i in index
            if i is not None and i is not Ellipsis
        )
        if _is_irreps_index(last):
            a, b = self._entry_range(Irreps(last))
            slices = self.irreps.slices()
            irreps, flags = self.irreps[a:b], self.zero_flags[a:b]
            columns = slice(slices[a].start, slices[b - 1].stop)
        elif (has_ellipsis and last is not Ellipsis) or (not has_ellipsis and consumed >= self.array.dim()):
            # the last index element reaches the irreps axis
            if not isinstance(last, slice):
                raise IndexError(
                    "the irreps axis of an IrrepsTensor can only be indexed by irreps (x[..., '1o']) or a slice "
                    f"on copy boundaries (x[..., 3:8]), got {last!r}"
                )
            irreps, flags, columns = self._slice_last(last)
        else:  # leading axes only
            array = self.array[index] if has_ellipsis else self.array[(*index, Ellipsis)]
            return IrrepsTensor(self.irreps, array, self.zero_flags)
        lead = index[:-1]
        if any(i is Ellipsis for i in lead):
            array = self.array[(*lead, columns)]
        else:
            array = self.array[(*lead, Ellipsis, columns)]
        return IrrepsTensor(irreps, array, flags)

    # --- arithmetic -------------------------------------------------------------------------------

    def _check_same(self, other: IrrepsTensor, op: str) -> None:
        if tuple(self.irreps) != tuple(other.irreps):
            raise ValueError(f"{op} needs identical irreps, got {self.irreps} and {other.irreps}")

    def _is_all_scalar(self) -> bool:
        return all(ir.l == 0 and ir.p == 1 for _, ir in self.irreps)

    def __add__(self, other: Any) -> IrrepsTensor:
        if isinstance(other, IrrepsTensor):
            self._check_same(other, "+")
            flags = tuple(a and b for a, b in zip(self.zero_flags, other.zero_flags))
            return IrrepsTensor(self.irreps, self.array + other.array, flags)
        if isinstance(other, numbers.Number) and not isinstance(other, bool):
            if other == 0:
                return self
            if self._is_all_scalar():
                return IrrepsTensor(self.irreps, self.array + other)
            raise ValueError(f"cannot add the number {other} to {self.irreps} (only to 0e irreps)")
        return NotImplemented

    __radd__ = __add__

    def __neg__(self) -> IrrepsTensor:
        return self._with(-self.array)

    def __sub__(self, other: Any) -> IrrepsTensor:
        if isinstance(other, IrrepsTensor):
            self._check_same(other, "-")
            flags = tuple(a and b for a, b in zip(self.zero_flags, other.zero_flags))
            return IrrepsTensor(self.irreps, self.array - other.array, flags)
        if isinstance(other, numbers.Number) and not isinstance(other, bool):
            return self + (-other)
        return NotImplemented

    def __rsub__(self, other: Any) -> IrrepsTensor:
        return (-self) + other

    def _per_component(self, factor: torch.Tensor) -> torch.Tensor:
        """``(..., num_irreps)`` factors, each repeated over the ``2l+1`` components of its copy."""
        lead = factor.shape[:-1]
        parts = []
        offset = 0
        for mul, ir in self.irreps:
            if mul > 0:
                f = factor[..., offset : offset + mul]
                parts.append(f.unsqueeze(-1).expand(*lead, mul, ir.dim).reshape(*lead, mul * ir.dim))
            offset += mul
        if not parts:
            return factor.new_zeros(*lead, 0)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def __mul__(self, other: Any) -> IrrepsTensor:
        if isinstance(other, IrrepsTensor):
            raise TypeError("IrrepsTensor * IrrepsTensor is not defined; use a tensor product (fastso3.functional)")
        if isinstance(other, numbers.Number) and not isinstance(other, bool):
            return self._with(self.array * other)
        if isinstance(other, torch.Tensor):
            if other.dim() == 0 or other.shape[-1] == 1:
                return self._with(self.array * other)
            if other.shape[-1] == self.irreps.num_irreps:
                return self._with(self.array * self._per_component(other))
            raise ValueError(
                f"a factor must have last dimension 1 or num_irreps={self.irreps.num_irreps} (one per copy), "
                f"got shape {tuple(other.shape)}"
            )
        return NotImplemented

    __rmul__ = __mul__

    def mul(self, other: Any) -> IrrepsTensor:
        """``self * other``. Use this form with a tensor factor inside ``torch.compile``: dynamo
        (torch 2.13) does not dispatch ``IrrepsTensor * Tensor`` to ``__mul__``."""
        return self.__mul__(other)

    def __truediv__(self, other: Any) -> IrrepsTensor:
        if isinstance(other, numbers.Number) and not isinstance(other, bool):
            return self._with(self.array / other)
        if isinstance(other, torch.Tensor):
            return self * (1.0 / other)
        return NotImplemented

    # --- rotations --------------------------------------------------------------------------------

    def _as_angle(self, value: Any) -> torch.Tensor:
        dtype = self.array.dtype if self.array.dtype.is_floating_point else torch.get_default_dtype()
        if isinstance(value, torch.Tensor):
            return value.to(dtype=dtype, device=self.array.device)
        return torch.as_tensor(value, dtype=dtype, device=self.array.device)

    def _rotate(self, alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, k: torch.Tensor | None) -> IrrepsTensor:
        """Apply ``p^k D^l(alpha, beta, gamma)`` to every copy (the block-diagonal matrix of
        ``Irreps.D_from_angles``, one ``(2l+1)``-block at a time; known-zero entries stay zero)."""
        from .o3._wigner import wigner_D

        alpha, beta, gamma = torch.broadcast_tensors(alpha, beta, gamma)
        lead = torch.broadcast_shapes(self.array.shape[:-1], alpha.shape)
        sign = None if k is None else (1.0 - 2.0 * torch.remainder(k, 2))  # (-1)^k for integer k
        by_l: dict = {}
        parts = []
        for (mul, ir), s, zero in zip(self.irreps, self.irreps.slices(), self.zero_flags):
            if mul == 0:
                continue
            d = 2 * ir.l + 1
            if zero:
                parts.append(self.array.new_zeros(*lead, mul * d))
                continue
            chunk = self.array[..., s].reshape(*self.array.shape[:-1], mul, d)
            if ir.l == 0:
                out = chunk.expand(*lead, mul, 1)
            else:
                if ir.l not in by_l:
                    by_l[ir.l] = wigner_D(ir.l, alpha, beta, gamma)
                D = by_l[ir.l]  # (..., d, d)
                out = torch.matmul(chunk, D.transpose(-1, -2))  # (..., mul, d): batch dims broadcast
                out = out.expand(*lead, mul, d)
            if ir.p == -1 and sign is not None:
                out = out * sign[..., None, None]
            parts.append(out.reshape(*lead, mul * d))
        if not parts:
            array = self.array.new_zeros(*lead, 0)
        else:
            array = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        return IrrepsTensor(self.irreps, array, self.zero_flags)

    def transform_by_angles(self, alpha: Any, beta: Any, gamma: Any, k: Any = 0) -> IrrepsTensor:
        """``D x`` with ``D = irreps.D_from_angles(alpha, beta, gamma, k)``: the rotation
        ``Ry(alpha) Rx(beta) Ry(gamma)`` followed by ``k`` inversions. Angles (and ``k``) broadcast
        with the leading axes."""
        a, b, g, k = (self._as_angle(v) for v in (alpha, beta, gamma, k))
        return self._rotate(a, b, g, k)

    def transform_by_matrix(self, R: Any) -> IrrepsTensor:
        """``D(R) x`` (``irreps.D_from_matrix(R)``) for orthogonal ``R`` ``(..., 3, 3)``; ``det R = -1``
        is the inversion times the rotation ``-R`` (each entry picks up its parity). A ``1o`` vector
        ``v`` becomes ``R v``. No validation of ``R`` (so it works under ``vmap`` and ``compile``)."""
        R = self._as_angle(R)
        d = torch.sign(_det3(R))
        alpha, beta, gamma = _matrix_to_angles(d[..., None, None] * R)
        return self._rotate(alpha, beta, gamma, (1.0 - d) / 2)

    def transform_by_quaternion(self, q: Any, k: Any = 0) -> IrrepsTensor:
        """``D x`` for the rotation of the (scalar-first, unit) quaternion ``q`` ``(..., 4)``, then
        ``k`` inversions."""
        from .o3._rotation import quaternion_to_matrix

        alpha, beta, gamma = _matrix_to_angles(quaternion_to_matrix(self._as_angle(q)))
        return self._rotate(alpha, beta, gamma, self._as_angle(k))

    def transform_by_axis_angle(self, axis: Any, angle: Any) -> IrrepsTensor:
        """``D x`` for the rotation by ``angle`` about ``axis`` ``(..., 3)`` (need not be normalised)."""
        from .o3._rotation import axis_angle_to_matrix

        alpha, beta, gamma = _matrix_to_angles(axis_angle_to_matrix(self._as_angle(axis), self._as_angle(angle)))
        return self._rotate(alpha, beta, gamma, None)

    # --- reorganisation ---------------------------------------------------------------------------

    def _entries(self) -> list:
        """``[(mul, l, p)]`` as plain ints (cheap to handle while torch.compile traces)."""
        return [(mul, ir.l, ir.p) for mul, ir in self.irreps]

    def _take(self, order: Sequence[int]) -> IrrepsTensor:
        """The entries ``order`` (in that order)."""
        entries = self._entries()
        slices = self.irreps.slices()
        order = list(order)
        if order == list(range(len(entries))):
            array = self.array
        elif not order:
            array = self.array[..., :0]
        else:
            array = torch.cat([self.array[..., slices[i]] for i in order], dim=-1)
        irreps = Irreps([(entries[i][0], (entries[i][1], entries[i][2])) for i in order])
        return IrrepsTensor(irreps, array, tuple(self.zero_flags[i] for i in order))

    def simplify(self) -> IrrepsTensor:
        """Merge adjacent equal irreps and drop zero multiplicities (``array`` is unchanged); a merged
        entry is known zero if all its parts were."""
        merged: list = []
        flags: list = []
        for (mul, l, p), zero in zip(self._entries(), self.zero_flags):
            if mul == 0:
                continue
            if merged and merged[-1][1] == l and merged[-1][2] == p:
                merged[-1] = (merged[-1][0] + mul, l, p)
                flags[-1] = flags[-1] and zero
            else:
                merged.append((mul, l, p))
                flags.append(zero)
        return IrrepsTensor(Irreps([(mul, (l, p)) for mul, l, p in merged]), self.array, flags)

    def sort(self) -> IrrepsTensor:
        """Entries stably sorted as :meth:`Irreps.sort <fastso3.core.irreps.Irreps.sort>` (``(l, p)``
        order: ``0o < 0e < 1o < 1e``), data permuted accordingly."""
        keys = [2 * l + (p + 1) // 2 for _, l, p in self._entries()]
        order: list = []
        for i, key in enumerate(keys):  # stable insertion sort (traceable even if the ints are symbolic)
            pos = len(order)
            while pos > 0 and keys[order[pos - 1]] > key:
                pos -= 1
            order.insert(pos, i)
        return self._take(order)

    def regroup(self) -> IrrepsTensor:
        """``sort().simplify()``."""
        return self.sort().simplify()

    def filter(self, keep: Any = None, drop: Any = None, *, lmax: int | None = None) -> IrrepsTensor:
        """The entries kept by :meth:`Irreps.filter <fastso3.core.irreps.Irreps.filter>` (order kept):
        ``keep``/``drop`` irreps (or a callable on ``MulIr``), and/or ``l <= lmax``."""
        if keep is not None and drop is not None:
            raise ValueError("filter: give keep or drop, not both")

        def as_test(sel: Any) -> Any:
            if callable(sel) and not isinstance(sel, (str, Irrep, Irreps, MulIr)):
                return lambda i: bool(sel(self.irreps[i]))
            if isinstance(sel, (str, Irreps, MulIr)):
                wanted = [(ir.l, ir.p) for _, ir in Irreps(sel)]
            elif isinstance(sel, Irrep):
                wanted = [(sel.l, sel.p)]
            else:
                wanted = [(ir.l, ir.p) for _, ir in Irreps(list(sel))]
            return lambda i: (entries[i][1], entries[i][2]) in wanted

        entries = self._entries()
        tests = []
        if keep is not None:
            tests.append(as_test(keep))
        if drop is not None:
            t = as_test(drop)
            tests.append(lambda i: not t(i))
        if lmax is not None:
            tests.append(lambda i: entries[i][1] <= lmax)
        return self._take([i for i in range(len(entries)) if all(t(i) for t in tests)])

    def remove_zero_chunks(self) -> IrrepsTensor:
        """Drop the known-zero entries."""
        return self._take([i for i, zero in enumerate(self.zero_flags) if not zero])


def _det3(R: torch.Tensor) -> torch.Tensor:
    return (
        R[..., 0, 0] * (R[..., 1, 1] * R[..., 2, 2] - R[..., 1, 2] * R[..., 2, 1])
        - R[..., 0, 1] * (R[..., 1, 0] * R[..., 2, 2] - R[..., 1, 2] * R[..., 2, 0])
        + R[..., 0, 2] * (R[..., 1, 0] * R[..., 2, 1] - R[..., 1, 1] * R[..., 2, 0])
    )


def _matrix_to_angles(R: torch.Tensor) -> tuple:
    """Y-X-Y Euler angles of rotation matrices, without the det check of ``o3.matrix_to_angles``
    (its ``.item()`` cannot run under ``vmap``): beta and alpha from ``R e_y``, gamma from the
    remaining rotation about y."""
    from .o3._rotation import angles_to_matrix, xyz_to_angles

    alpha, beta = xyz_to_angles(R[..., :, 1])
    Rab = angles_to_matrix(alpha, beta, torch.zeros_like(alpha))
    cos = (Rab[..., :, 0] * R[..., :, 0]).sum(-1)
    sin = (Rab[..., :, 0] * R[..., :, 2]).sum(-1)
    return alpha, beta, torch.atan2(sin, cos)


# --- pytree -----------------------------------------------------------------------------------------


def _flatten(x: IrrepsTensor) -> tuple:
    return [x.array], (x.irreps, x.zero_flags)


def _unflatten(leaves: Sequence[Any], context: tuple) -> IrrepsTensor:
    irreps, zero_flags = context
    out = IrrepsTensor.__new__(IrrepsTensor)
    # No validation: pytree utilities may rebuild the node with placeholder leaves (not tensors).
    out.irreps = irreps
    out.array = leaves[0]
    out.zero_flags = zero_flags
    out._chunks = None
    return out


def _flatten_with_keys(x: IrrepsTensor) -> tuple:
    return [(pytree.GetAttrKey("array"), x.array)], (x.irreps, x.zero_flags)


pytree.register_pytree_node(
    IrrepsTensor,
    _flatten,
    _unflatten,
    serialized_type_name="fastso3.irreps_tensor.IrrepsTensor",
    flatten_with_keys_fn=_flatten_with_keys,
)
