"""Framework-neutral plans for tensor products and equivariant linear maps (numpy only).

A *plan* describes a tensor product completely, once, as plain data: the irreps, the instructions
(paths), the final path coefficients, the Clebsch-Gordan blocks (dense and sparse), the slice of the
flat weight vector each path reads, the output mask and cost estimates. Executors (the readable torch
reference in ``fastso3.kernels.reference``, faster kernels) and modules only *consume* plans; nothing
is rebuilt in a forward pass.

The numbers follow e3nn 0.6.0 (``docs/conventions.md`` section 5):

* a path ``(i_in1, i_in2, i_out, mode, has_weight[, path_weight])`` computes
  ``c * sum_ijk C_ijk x_ui y_vj`` with the weights of its connection ``mode`` (table below) and the
  real Clebsch-Gordan block ``C = wigner_3j(l1, l2, l_out)`` (Frobenius norm 1);
* the coefficient is ``c = sqrt(alpha * out_var[i_out] * path_weight / F)`` with
  ``alpha = dim_out`` ('component'), ``dim1 * dim2`` ('norm') or ``1`` ('none'), and ``F`` the fan-in:
  'element': the sum, over the instructions into the same output, of ``in1_var * in2_var *
  num_elements``; 'path': ``in1_var * in2_var * num_elements`` of this instruction times the number of
  instructions into that output; 'none': 1. ``F`` is ignored when it is 0. The float operations are
  done in e3nn's order, so ``c`` is bit-identical to e3nn's ``Instruction.path_weight``;
* paths into one output are summed, outputs are concatenated in ``irreps_out`` order and outputs no
  path reaches are zero.

Connection modes (``m1``, ``m2``, ``mo``: multiplicities of in1, in2 and out; ``P = m1 (m2 - 1) / 2``
pairs ``u < v`` in ``numpy.triu_indices(m, 1)`` order, the same as ``torch.triu_indices(m, m, 1)``):

======  ======================================  ===============  ==============================  ============
mode    computes                                path_shape       constraint                      num_elements
======  ======================================  ===============  ==============================  ============
uvw     z_w = sum_uv w_uvw x_u (x) y_v          (m1, m2, mo)     weighted                        m1 m2
uvu     z_u = sum_v w_uv x_u (x) y_v            (m1, m2)         mo = m1                         m2
uvv     z_v = sum_u w_uv x_u (x) y_v            (m1, m2)         mo = m2                         m1
uuw     z_w = sum_u w_uw x_u (x) y_u            (m1, mo)         m1 = m2 (unweighted: mo = 1)    m1
uuu     z_u = w_u x_u (x) y_u                   (m1,)            m1 = m2 = mo                    1
uvuv    z_(u m2 + v) = w_uv x_u (x) y_v         (m1, m2)         mo = m1 m2                      1
uvu<v   z_(u<v) = w_(uv) x_u (x) y_v            (P,)             m1 = m2, mo = P                 1
u<vw    z_w = sum_(u<v) w_(uv)w x_u (x) y_v     (P, mo)          m1 = m2, weighted               P
======  ======================================  ===============  ==============================  ============

``w = 1`` when ``has_weight`` is False. As in e3nn, the multiplicity constraints are only checked for
paths whose three blocks are non-empty (empty paths are skipped at execution).
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple, Optional, Sequence

import numpy as np

from .cg import SparseCG, wigner_3j, wigner_3j_sparse
from .irreps import Irreps

__all__ = [
    "CONNECTION_MODES",
    "Instruction",
    "InstructionError",
    "InstructionIndexError",
    "PathPlan",
    "TensorProductPlan",
    "tensor_product_plan",
    "LinearInstruction",
    "LinearPlan",
    "linear_plan",
]

CONNECTION_MODES = ("uvw", "uvu", "uvv", "uuw", "uuu", "uvuv", "uvu<v", "u<vw")
IRREP_NORMALIZATIONS = ("component", "norm", "none")
PATH_NORMALIZATIONS = ("element", "path", "none")


class InstructionError(ValueError, AssertionError):
    """An instruction that breaks a selection rule or its connection mode's constraint. Also an
    AssertionError, which e3nn 0.6.0 raises there (its ``assert``s), so code catching either works."""


class InstructionIndexError(ValueError, IndexError):
    """An instruction index outside its irreps. Also an IndexError, which e3nn 0.6.0 raises there."""


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _prod(shape: Sequence[int]) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


def _slice_str(s: Optional[slice]) -> str:
    return "-" if s is None else f"[{s.start}:{s.stop}]"


# ------------------------------------------------------------------------------------------------
# Tensor product
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One path of a tensor product, as e3nn stores it.

    ``path_weight`` is the *final* coefficient ``c`` (e3nn's convention), ``user_path_weight`` the
    value the user passed (1.0 by default), which sits under the square root of ``c``.
    Iterating (or unpacking) yields e3nn's seven fields ``(i_in1, i_in2, i_out, connection_mode,
    has_weight, path_weight, path_shape)``.
    """

    i_in1: int
    i_in2: int
    i_out: int
    connection_mode: str
    has_weight: bool
    path_weight: float
    path_shape: tuple
    user_path_weight: float = 1.0

    def __iter__(self) -> Iterator[Any]:
        return iter(
            (self.i_in1, self.i_in2, self.i_out, self.connection_mode, self.has_weight, self.path_weight, self.path_shape)
        )


@dataclass(frozen=True, eq=False)
class PathPlan:
    """Everything an executor needs for one instruction.

    Attributes:
        index: position of the instruction in ``TensorProductPlan.instructions``.
        i_in1, i_in2, i_out, mode, has_weight: as in the instruction.
        coefficient: the final coefficient ``c`` (``Instruction.path_weight``).
        path_shape: shape of this path's weight block (row-major in the flat weight vector).
        l1, l2, l3: degrees of in1, in2 and out; ``d1, d2, d3 = 2l+1``.
        mul1, mul2, mul_out: multiplicities.
        cg: dense real Clebsch-Gordan block ``(d1, d2, d3)``, float64, read-only, norm 1 (not scaled by c).
        cg_sparse: its non-zero entries (:class:`~fastso3.core.cg.SparseCG`).
        weight_slice: slice of the flat weight vector (``None`` if unweighted).
        in1_slice, in2_slice, out_slice: slices of the feature vectors, ``mul * (2l+1)`` wide.
        pairs: for ``uvu<v`` and ``u<vw``: ``(2, P)`` int64 array of the ``u < v`` pairs
            (``triu_indices`` order); ``None`` otherwise.
        empty: True if a block is empty (the path contributes nothing and is skipped).
        cg_first: ``"in1"`` or ``"in2"``: which input the reference executor contracts with ``C``
            first (the cheaper order, from the FLOP formula below).
        flops: floating-point operations per sample (see :func:`path_flops`).
    """

    index: int
    i_in1: int
    i_in2: int
    i_out: int
    mode: str
    has_weight: bool
    coefficient: float
    path_shape: tuple
    l1: int
    l2: int
    l3: int
    mul1: int
    mul2: int
    mul_out: int
    cg: np.ndarray = field(repr=False)
    cg_sparse: SparseCG = field(repr=False)
    weight_slice: Optional[slice]
    in1_slice: slice
    in2_slice: slice
    out_slice: slice
    pairs: Optional[np.ndarray] = field(repr=False)
    empty: bool
    cg_first: str
    flops: int

    @property
    def d1(self) -> int:
        return 2 * self.l1 + 1

    @property
    def d2(self) -> int:
        return 2 * self.l2 + 1

    @property
    def d3(self) -> int:
        return 2 * self.l3 + 1

    def bytes_per_sample(self, itemsize: int = 4, shared_weights: bool = True) -> int:
        """Minimal traffic of this path alone: ``itemsize * (m1 d1 + m2 d2 + mo d3 [+ weights])``
        (read the two input blocks, write the output block, and read per-sample weights)."""
        n = self.mul1 * self.d1 + self.mul2 * self.d2 + self.mul_out * self.d3
        if not shared_weights and self.has_weight:
            n += _prod(self.path_shape)
        return itemsize * n

    @property
    def cg_key(self) -> tuple:
        """``(l1, l2, l3)``: paths with the same key share the same CG block."""
        return (self.l1, self.l2, self.l3)


def _num_pairs(mul1: int, mul2: int) -> int:
    # e3nn's formula (m1 (m2 - 1) // 2); equals m (m - 1) / 2 when m1 = m2 = m.
    return mul1 * (mul2 - 1) // 2


def _path_shape(mode: str, mul1: int, mul2: int, mul_out: int) -> tuple:
    return {
        "uvw": (mul1, mul2, mul_out),
        "uvu": (mul1, mul2),
        "uvv": (mul1, mul2),
        "uuw": (mul1, mul_out),
        "uuu": (mul1,),
        "uvuv": (mul1, mul2),
        "uvu<v": (_num_pairs(mul1, mul2),),
        "u<vw": (_num_pairs(mul1, mul2), mul_out),
    }[mode]


def _num_elements(mode: str, mul1: int, mul2: int) -> int:
    """Fan-in of one output component through one path (used by the normalization)."""
    return {
        "uvw": mul1 * mul2,
        "uvu": mul2,
        "uvv": mul1,
        "uuw": mul1,
        "uuu": 1,
        "uvuv": 1,
        "uvu<v": 1,
        "u<vw": _num_pairs(mul1, mul2),
    }[mode]


def _num_products(mode: str, mul1: int, mul2: int) -> int:
    """Number of ``(u, v)`` pairs whose product ``x_u (x) y_v`` the path needs."""
    if mode in ("uuw", "uuu"):
        return mul1
    if mode in ("uvu<v", "u<vw"):
        return _num_pairs(mul1, mul2)
    return mul1 * mul2


def path_flops(mode: str, has_weight: bool, mul1: int, mul2: int, mul_out: int, nnz: int, d3: int) -> int:
    """Floating-point operations per sample of one path (multiply and add counted separately).

    ``3 * nnz * P`` for the Clebsch-Gordan contraction ``sum_ij C_ijk x_i y_j`` of each of the ``P``
    needed ``(u, v)`` pairs (``nnz`` non-zeros, two multiplies and one add each), plus the weight
    contraction: ``2 * P * mo * d3`` for the "w" modes (uvw, u<vw, uuw; uuw unweighted: ``P * d3``
    adds), ``2 * P * d3`` for uvu/uvv (``P * d3`` adds when unweighted), ``P * d3`` for a weighted
    uuu/uvuv/uvu<v, plus ``mo * d3`` for the final multiplication by ``c``. It counts the sparse
    algorithm (the minimum work), not what the dense reference executor does.
    """
    p = _num_products(mode, mul1, mul2)
    flops = 3 * nnz * p
    if mode in ("uvw", "u<vw"):
        flops += 2 * p * mul_out * d3
    elif mode == "uuw":
        flops += (2 * p * mul_out if has_weight else p) * d3
    elif mode in ("uvu", "uvv"):
        flops += (2 * p if has_weight else p) * d3
    elif has_weight:  # uuu, uvuv, uvu<v
        flops += p * d3
    n_out = {"uvw": mul_out, "u<vw": mul_out, "uuw": mul_out, "uvu": mul1, "uvv": mul2}.get(mode, p)
    return flops + n_out * d3


def _as_index(value: Any, n: int, what: str, position: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"instruction {position}: {what} must be an int, got {value!r}")
    value = int(value)
    if not -n <= value < n:
        raise InstructionIndexError(f"instruction {position}: {what}={value} is out of range for irreps with {n} entries")
    return value % n


def _as_variances(var: Any, irreps: Irreps, name: str) -> tuple:
    if var is None:
        return tuple(1.0 for _ in irreps)
    values = tuple(float(v) for v in var)
    if len(values) != len(irreps):
        raise ValueError(f"{name} has {len(values)} entries, but the irreps {irreps} have {len(irreps)}")
    if any(not v >= 0 for v in values):
        raise ValueError(f"{name} must be non-negative, got {values}")
    return values


def _normalize_instruction(ins: Any, position: int) -> tuple:
    if isinstance(ins, Instruction):
        return (ins.i_in1, ins.i_in2, ins.i_out, ins.connection_mode, ins.has_weight, ins.user_path_weight)
    try:
        ins = tuple(ins)
    except TypeError:
        raise ValueError(f"instruction {position}: expected a tuple (i_in1, i_in2, i_out, mode, has_weight[, path_weight]), got {ins!r}") from None
    if len(ins) == 5:
        ins = ins + (1.0,)
    if len(ins) != 6:
        raise ValueError(
            f"instruction {position}: expected (i_in1, i_in2, i_out, mode, has_weight[, path_weight]), got {ins!r}"
        )
    return ins


@dataclass(frozen=True, eq=False)
class TensorProductPlan:
    """An immutable description of a tensor product (see the module docstring for the math).

    Build it with :func:`tensor_product_plan`. Plans are hashable and compare by :attr:`key` (the
    irreps, the instructions and the normalization settings), so they can key caches.

    Attributes:
        irreps_in1, irreps_in2, irreps_out: the irreps (not simplified).
        instructions: the :class:`Instruction` of every path, in the given order.
        paths: one :class:`PathPlan` per instruction (same order).
        irrep_normalization, path_normalization, in1_var, in2_var, out_var: the settings.
        weight_numel: length of the flat weight vector (weighted paths in instruction order, each a
            row-major ``path_shape`` block).
        output_mask: ``(irreps_out.dim,)`` float64, 1 where a path with a non-zero coefficient and a
            non-empty weight shape reaches, 0 elsewhere (e3nn's ``output_mask``).
        flops: per-sample FLOPs, the sum of the paths' (see :func:`path_flops`).
        key: a hashable tuple that identifies the plan.
    """

    irreps_in1: Irreps
    irreps_in2: Irreps
    irreps_out: Irreps
    instructions: tuple
    paths: tuple = field(repr=False)
    irrep_normalization: str
    path_normalization: str
    in1_var: tuple
    in2_var: tuple
    out_var: tuple
    weight_numel: int
    output_mask: np.ndarray = field(repr=False)
    flops: int
    key: tuple = field(repr=False)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, TensorProductPlan):
            return NotImplemented
        return self.key == other.key

    @property
    def num_paths(self) -> int:
        """``sum(prod(path_shape))``, e3nn's "paths" count in the module repr."""
        return sum(_prod(ins.path_shape) for ins in self.instructions)

    def bytes_per_sample(self, itemsize: int = 4, shared_weights: bool = True) -> int:
        """Minimal memory traffic per sample: read ``x1`` and ``x2`` once, write the output once, and,
        with per-sample weights, read them once: ``itemsize * (dim1 + dim2 + dim_out [+ weight_numel])``.
        CG blocks and shared weights are assumed to stay in cache."""
        n = self.irreps_in1.dim + self.irreps_in2.dim + self.irreps_out.dim
        if not shared_weights:
            n += self.weight_numel
        return itemsize * n

    def weight_slices(self) -> list:
        """``slice`` of the flat weight vector for each instruction (``None`` for unweighted ones)."""
        return [p.weight_slice for p in self.paths]

    def cg_keys(self) -> list:
        """The distinct ``(l1, l2, l3)`` of the non-empty paths, in first-use order."""
        out: list = []
        for p in self.paths:
            if not p.empty and p.cg_key not in out:
                out.append(p.cg_key)
        return out

    def __repr__(self) -> str:
        head = (
            f"TensorProductPlan({self.irreps_in1} x {self.irreps_in2} -> {self.irreps_out} | "
            f"{len(self.instructions)} instructions, {self.num_paths} paths, {self.weight_numel} weights, "
            f"{self.flops} flops/sample | irrep_normalization={self.irrep_normalization!r}, "
            f"path_normalization={self.path_normalization!r})"
        )
        lines = [head]
        for p in self.paths:
            ir1 = self.irreps_in1[p.i_in1]
            ir2 = self.irreps_in2[p.i_in2]
            iro = self.irreps_out[p.i_out]
            lines.append(
                f"  [{p.index}] {p.i_in1}:{ir1} x {p.i_in2}:{ir2} -> {p.i_out}:{iro}  {p.mode:<5}  c={p.coefficient:.6g}"
                f"  shape={p.path_shape}  w{_slice_str(p.weight_slice)}{'  (empty)' if p.empty else ''}"
            )
        return "\n".join(lines)

    __str__ = __repr__


def tensor_product_plan(
    irreps_in1: Any,
    irreps_in2: Any,
    irreps_out: Any,
    instructions: Sequence[Any],
    in1_var: Optional[Sequence[float]] = None,
    in2_var: Optional[Sequence[float]] = None,
    out_var: Optional[Sequence[float]] = None,
    irrep_normalization: Optional[str] = "component",
    path_normalization: Optional[str] = "element",
) -> TensorProductPlan:
    """Validate a tensor product and describe it as a :class:`TensorProductPlan` (cached).

    Args:
        irreps_in1, irreps_in2, irreps_out: anything :class:`~fastso3.core.irreps.Irreps` accepts.
        instructions: e3nn tuples ``(i_in1, i_in2, i_out, mode, has_weight[, path_weight=1.0])``
            (or :class:`Instruction` objects, whose ``user_path_weight`` is used). Negative indices
            count from the end.
        in1_var, in2_var, out_var: one variance per entry of the irreps (default 1).
        irrep_normalization: 'component' (default), 'norm' or 'none' (None means 'component').
        path_normalization: 'element' (default), 'path' or 'none' (None means 'element').

    Returns:
        The plan; equal arguments return the same (cached) object.

    Raises:
        ValueError: on a bad index, mode, parity (``p1 p2 != p_out``), triangle rule, multiplicity
            constraint of the mode, variance length, or a negative path weight. The index errors are an
            :class:`InstructionIndexError` (also IndexError), the mode, parity, triangle and multiplicity
            errors an :class:`InstructionError` (also AssertionError), the types e3nn 0.6.0 raises.
    """
    irreps_in1 = Irreps(irreps_in1)
    irreps_in2 = Irreps(irreps_in2)
    irreps_out = Irreps(irreps_out)
    if irrep_normalization is None:
        irrep_normalization = "component"
    if path_normalization is None:
        path_normalization = "element"
    if irrep_normalization not in IRREP_NORMALIZATIONS:
        raise ValueError(f"irrep_normalization must be one of {IRREP_NORMALIZATIONS}, got {irrep_normalization!r}")
    if path_normalization not in PATH_NORMALIZATIONS:
        raise ValueError(f"path_normalization must be one of {PATH_NORMALIZATIONS}, got {path_normalization!r}")

    normalized = []
    for position, ins in enumerate(instructions):
        i1, i2, io, mode, has_weight, path_weight = _normalize_instruction(ins, position)
        i1 = _as_index(i1, len(irreps_in1), "i_in1", position)
        i2 = _as_index(i2, len(irreps_in2), "i_in2", position)
        io = _as_index(io, len(irreps_out), "i_out", position)
        if mode not in CONNECTION_MODES:
            raise InstructionError(f"instruction {position}: unknown connection mode {mode!r}; expected one of {CONNECTION_MODES}")
        if not isinstance(has_weight, (bool, np.bool_)):
            raise ValueError(f"instruction {position}: has_weight must be a bool, got {has_weight!r}")
        try:
            path_weight = float(path_weight)
        except (TypeError, ValueError):
            raise ValueError(f"instruction {position}: path_weight must be a number, got {path_weight!r}") from None
        normalized.append((i1, i2, io, mode, bool(has_weight), path_weight))

    return _tensor_product_plan(
        irreps_in1,
        irreps_in2,
        irreps_out,
        tuple(normalized),
        _as_variances(in1_var, irreps_in1, "in1_var"),
        _as_variances(in2_var, irreps_in2, "in2_var"),
        _as_variances(out_var, irreps_out, "out_var"),
        irrep_normalization,
        path_normalization,
    )


@functools.lru_cache(maxsize=512)
def _tensor_product_plan(
    irreps_in1: Irreps,
    irreps_in2: Irreps,
    irreps_out: Irreps,
    instructions: tuple,
    in1_var: tuple,
    in2_var: tuple,
    out_var: tuple,
    irrep_normalization: str,
    path_normalization: str,
) -> TensorProductPlan:
    # --- validation -------------------------------------------------------------------------------
    for position, (i1, i2, io, mode, has_weight, _path_weight) in enumerate(instructions):
        (m1, ir1), (m2, ir2), (mo, iro) = irreps_in1[i1], irreps_in2[i2], irreps_out[io]
        where = f"instruction {position} ({i1}:{m1}x{ir1} x {i2}:{m2}x{ir2} -> {io}:{mo}x{iro}, {mode!r})"
        if ir1.p * ir2.p != iro.p:
            raise InstructionError(f"{where}: parity mismatch, {ir1} x {ir2} has parity {ir1.p * ir2.p:+d}, not {iro.p:+d}")
        if not abs(ir1.l - ir2.l) <= iro.l <= ir1.l + ir2.l:
            raise InstructionError(f"{where}: triangle rule violated, |{ir1.l}-{ir2.l}| <= {iro.l} <= {ir1.l}+{ir2.l} fails")
        if m1 == 0 or m2 == 0 or mo == 0:
            continue  # empty paths are skipped; e3nn checks nothing else for them
        if mode in ("uvw", "u<vw") and not has_weight:
            raise InstructionError(f"{where}: connection mode {mode!r} needs has_weight=True")
        problems = {
            "uvu": (mo != m1, "needs mul_out == mul_in1"),
            "uvv": (mo != m2, "needs mul_out == mul_in2"),
            "uuw": (m1 != m2 or (not has_weight and mo != 1), "needs mul_in1 == mul_in2 (and mul_out == 1 if unweighted)"),
            "uuu": (not m1 == m2 == mo, "needs mul_in1 == mul_in2 == mul_out"),
            "uvuv": (mo != m1 * m2, "needs mul_out == mul_in1 * mul_in2"),
            "uvu<v": (m1 != m2 or mo != m1 * (m1 - 1) // 2, "needs mul_in1 == mul_in2 == m and mul_out == m(m-1)/2"),
            "u<vw": (m1 != m2, "needs mul_in1 == mul_in2"),
        }.get(mode, (False, ""))
        if problems[0]:
            raise InstructionError(f"{where}: connection mode {mode!r} {problems[1]}")

    # --- coefficients (e3nn's formula, its float operations in its order) -------------------------
    def num_elements(ins: tuple) -> int:
        return _num_elements(ins[3], irreps_in1[ins[0]].mul, irreps_in2[ins[1]].mul)

    coefficients = []
    for position, ins in enumerate(instructions):
        i1, i2, io, mode, has_weight, path_weight = ins
        ir1, ir2, iro = irreps_in1[i1].ir, irreps_in2[i2].ir, irreps_out[io].ir
        if irrep_normalization == "component":
            alpha: float = iro.dim
        elif irrep_normalization == "norm":
            alpha = ir1.dim * ir2.dim
        else:
            alpha = 1
        if path_normalization == "element":
            fan_in: float = sum(in1_var[j[0]] * in2_var[j[1]] * num_elements(j) for j in instructions if j[2] == io)
        elif path_normalization == "path":
            fan_in = in1_var[i1] * in2_var[i2] * num_elements(ins)
            fan_in *= len([j for j in instructions if j[2] == io])
        else:
            fan_in = 1
        if fan_in > 0.0:
            alpha /= fan_in
        alpha *= out_var[io]
        alpha *= path_weight
        if alpha < 0:
            raise ValueError(f"instruction {position}: path_weight must be non-negative, got {path_weight}")
        coefficients.append(math.sqrt(alpha))

    # --- paths ------------------------------------------------------------------------------------
    s1, s2, so = irreps_in1.slices(), irreps_in2.slices(), irreps_out.slices()
    ins_out = []
    paths = []
    offset = 0
    for index, ((i1, i2, io, mode, has_weight, user_weight), c) in enumerate(zip(instructions, coefficients)):
        (m1, ir1), (m2, ir2), (mo, iro) = irreps_in1[i1], irreps_in2[i2], irreps_out[io]
        shape = _path_shape(mode, m1, m2, mo)
        ins_out.append(Instruction(i1, i2, io, mode, has_weight, c, shape, user_weight))
        weight_slice = None
        if has_weight:
            n = _prod(shape)
            weight_slice = slice(offset, offset + n)
            offset += n
        cg = wigner_3j(ir1.l, ir2.l, iro.l)
        sparse = wigner_3j_sparse(ir1.l, ir2.l, iro.l)
        pairs = None
        if mode in ("uvu<v", "u<vw"):
            pairs = _readonly(np.stack(np.triu_indices(m1, 1)).astype(np.int64).reshape(2, -1))
        empty = m1 == 0 or m2 == 0 or mo == 0 or 0 in shape
        d1, d2, d3 = ir1.dim, ir2.dim, iro.dim
        p = _num_products(mode, m1, m2)
        # contract C with in1 first: m1*d1*d2*d3 then P*d2*d3; with in2 first: m2*d1*d2*d3 then P*d1*d3
        # (for the uu and u<v modes the first step runs over the P needed products).
        n1 = m1 if mode[:2] == "uv" and mode != "uvu<v" else p
        n2 = m2 if mode[:2] == "uv" and mode != "uvu<v" else p
        cost_in1 = n1 * d1 * d2 * d3 + p * d2 * d3
        cost_in2 = n2 * d1 * d2 * d3 + p * d1 * d3
        paths.append(
            PathPlan(
                index=index,
                i_in1=i1,
                i_in2=i2,
                i_out=io,
                mode=mode,
                has_weight=has_weight,
                coefficient=c,
                path_shape=shape,
                l1=ir1.l,
                l2=ir2.l,
                l3=iro.l,
                mul1=m1,
                mul2=m2,
                mul_out=mo,
                cg=cg,
                cg_sparse=sparse,
                weight_slice=weight_slice,
                in1_slice=s1[i1],
                in2_slice=s2[i2],
                out_slice=so[io],
                pairs=pairs,
                empty=empty,
                cg_first="in1" if cost_in1 <= cost_in2 else "in2",
                flops=0 if empty else path_flops(mode, has_weight, m1, m2, mo, len(sparse.values), d3),
            )
        )

    mask = np.zeros(irreps_out.dim)
    for io, s in enumerate(so):
        if any(p.i_out == io and p.coefficient != 0 and 0 not in p.path_shape for p in paths):
            mask[s] = 1.0

    key = (
        "TensorProductPlan",
        str(irreps_in1),
        str(irreps_in2),
        str(irreps_out),
        instructions,
        in1_var,
        in2_var,
        out_var,
        irrep_normalization,
        path_normalization,
    )
    return TensorProductPlan(
        irreps_in1=irreps_in1,
        irreps_in2=irreps_in2,
        irreps_out=irreps_out,
        instructions=tuple(ins_out),
        paths=tuple(paths),
        irrep_normalization=irrep_normalization,
        path_normalization=path_normalization,
        in1_var=in1_var,
        in2_var=in2_var,
        out_var=out_var,
        weight_numel=offset,
        output_mask=_readonly(mask),
        flops=sum(p.flops for p in paths),
        key=key,
    )


# ------------------------------------------------------------------------------------------------
# Linear
# ------------------------------------------------------------------------------------------------


class LinearInstruction(NamedTuple):
    """One instruction of a Linear, e3nn's ``(i_in, i_out, path_shape, path_weight)``.

    ``i_in == -1`` marks a bias (``path_shape = (mul_out * dim,)``, ``path_weight = 1``);
    ``path_weight`` is the final coefficient.
    """

    i_in: int
    i_out: int
    path_shape: tuple
    path_weight: float

    def __repr__(self) -> str:
        return f"Instruction(i_in={self[0]}, i_out={self[1]}, path_shape={self[2]}, path_weight={self[3]})"


@dataclass(frozen=True, eq=False)
class LinearPlan:
    """An immutable description of an equivariant linear map (e3nn ``o3.Linear``).

    ``z_w = c * sum_u W[u, w] x_u`` for each weight instruction (``W`` a row-major ``(mul_in,
    mul_out)`` block of the flat weight vector), summed per output, plus the biases on the flagged
    0e outputs.

    Attributes:
        irreps_in, irreps_out: the irreps.
        instructions: e3nn's list: the weight instructions, then one bias instruction (``i_in=-1``)
            per biased output.
        path_normalization, f_in, f_out: the settings.
        weight_numel, bias_numel: sizes of the flat weight and bias vectors.
        weight_slices: for each weight instruction (same order), its slice of the weight vector.
        bias_slices: for each bias instruction, its slice of the bias vector.
        in_slices, out_slices: ``irreps.slices()``.
        output_mask: ``(irreps_out.dim,)`` float64, 1 where an instruction (weight or bias) reaches.
        flops: per-sample FLOPs ``sum 2 * mul_in * mul_out * (2l+1)`` (times ``f_in * f_out``) plus the
            coefficient multiplications and the bias additions.
        key: a hashable tuple identifying the plan.
    """

    irreps_in: Irreps
    irreps_out: Irreps
    instructions: tuple
    path_normalization: str
    f_in: Optional[int]
    f_out: Optional[int]
    biases: tuple
    weight_numel: int
    bias_numel: int
    weight_slices: tuple = field(repr=False)
    bias_slices: tuple = field(repr=False)
    in_slices: tuple = field(repr=False)
    out_slices: tuple = field(repr=False)
    output_mask: np.ndarray = field(repr=False)
    flops: int
    key: tuple = field(repr=False)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, LinearPlan):
            return NotImplemented
        return self.key == other.key

    @property
    def weight_instructions(self) -> tuple:
        return tuple(ins for ins in self.instructions if ins.i_in != -1)

    @property
    def bias_instructions(self) -> tuple:
        return tuple(ins for ins in self.instructions if ins.i_in == -1)

    def bytes_per_sample(self, itemsize: int = 4, shared_weights: bool = True) -> int:
        """``itemsize * (f_in dim_in + f_out dim_out [+ weight_numel f_in f_out + bias_numel f_out])``."""
        fi, fo = self.f_in or 1, self.f_out or 1
        n = fi * self.irreps_in.dim + fo * self.irreps_out.dim
        if not shared_weights:
            n += fi * fo * self.weight_numel + fo * self.bias_numel
        return itemsize * n

    def __repr__(self) -> str:
        lines = [
            f"LinearPlan({self.irreps_in} -> {self.irreps_out} | {len(self.weight_slices)} paths, "
            f"{self.weight_numel} weights, {self.bias_numel} biases, {self.flops} flops/sample | "
            f"path_normalization={self.path_normalization!r}, f_in={self.f_in}, f_out={self.f_out})"
        ]
        for ins, s in zip(self.weight_instructions, self.weight_slices):
            lines.append(
                f"  {ins.i_in}:{self.irreps_in[ins.i_in]} -> {ins.i_out}:{self.irreps_out[ins.i_out]}"
                f"  c={ins.path_weight:.6g}  shape={ins.path_shape}  w{_slice_str(s)}"
            )
        for ins, s in zip(self.bias_instructions, self.bias_slices):
            lines.append(f"  bias -> {ins.i_out}:{self.irreps_out[ins.i_out]}  b{_slice_str(s)}")
        return "\n".join(lines)

    __str__ = __repr__


def linear_plan(
    irreps_in: Any,
    irreps_out: Any,
    instructions: Optional[Sequence[Any]] = None,
    biases: Any = False,
    path_normalization: str = "element",
    f_in: Optional[int] = None,
    f_out: Optional[int] = None,
) -> LinearPlan:
    """Validate an equivariant linear map and describe it as a :class:`LinearPlan` (cached).

    Args:
        irreps_in, irreps_out: anything :class:`~fastso3.core.irreps.Irreps` accepts.
        instructions: ``(i_in, i_out)`` pairs with equal irreps; default: every such pair, ``i_in``
            as the outer loop.
        biases: a bool (True: a bias on every 0e output) or one bool per output entry (only 0e
            entries may have one).
        path_normalization: 'element': ``c = 1 / sqrt(sum of mul_in over the instructions into the
            same output)``; 'path': ``c = 1 / sqrt(mul_in * number of those instructions)``. ``f_in``
            multiplies the quantity under the root; a zero fan-in counts as 1.
        f_in, f_out: optional feature axes (give both or neither): inputs ``(..., f_in, dim_in)``,
            outputs ``(..., f_out, dim_out)``, weights ``(f_in, f_out, weight_numel)``.

    Raises:
        ValueError: on an out-of-range index, unequal irreps, a bias on a non-0e output, a wrong
            number of bias flags, an unknown path normalization, or only one of ``f_in``/``f_out``. A bad
            index is an :class:`InstructionIndexError` (also IndexError, as in e3nn 0.6.0).
    """
    irreps_in = Irreps(irreps_in)
    irreps_out = Irreps(irreps_out)
    if path_normalization not in ("element", "path"):
        raise ValueError(f"path_normalization must be 'element' or 'path', got {path_normalization!r}")
    if (f_in is None) != (f_out is None):
        raise ValueError(f"give both f_in and f_out or neither, got f_in={f_in!r}, f_out={f_out!r}")
    for name, f in (("f_in", f_in), ("f_out", f_out)):
        if f is not None and (isinstance(f, bool) or not isinstance(f, numbers.Integral) or f < 1):
            raise ValueError(f"{name} must be a positive int, got {f!r}")
    if instructions is None:
        pairs = tuple(
            (i_in, i_out)
            for i_in, (_, ir_in) in enumerate(irreps_in)
            for i_out, (_, ir_out) in enumerate(irreps_out)
            if ir_in == ir_out
        )
    else:
        pairs = []
        for position, ins in enumerate(instructions):
            try:
                i_in, i_out = ins
            except (TypeError, ValueError):
                raise ValueError(f"Linear instruction {position}: expected a pair (i_in, i_out), got {ins!r}") from None
            for what, value, n in (("i_in", i_in, len(irreps_in)), ("i_out", i_out, len(irreps_out))):
                if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < n:
                    raise InstructionIndexError(f"Linear instruction {position}: {what}={value!r} is not a valid index (0..{n - 1})")
            if irreps_in[i_in].ir != irreps_out[i_out].ir:
                raise ValueError(
                    f"Linear instruction {position}: {irreps_in[i_in]} (input {i_in}) and {irreps_out[i_out]} "
                    f"(output {i_out}) do not have the same irrep"
                )
            pairs.append((int(i_in), int(i_out)))
        pairs = tuple(pairs)
    if isinstance(biases, (bool, np.bool_)):
        flags = tuple(bool(biases) and ir.is_scalar() for _, ir in irreps_out)
    else:
        flags = tuple(bool(b) for b in biases)
        if len(flags) != len(irreps_out):
            raise ValueError(f"biases has {len(flags)} flags, but irreps_out {irreps_out} has {len(irreps_out)} entries")
        bad = [str(irreps_out[i]) for i, b in enumerate(flags) if b and not irreps_out[i].ir.is_scalar()]
        if bad:
            raise ValueError(f"biases are only allowed on 0e outputs, got a bias on {', '.join(bad)}")
    return _linear_plan(irreps_in, irreps_out, pairs, flags, path_normalization, f_in, f_out)


@functools.lru_cache(maxsize=512)
def _linear_plan(
    irreps_in: Irreps,
    irreps_out: Irreps,
    pairs: tuple,
    flags: tuple,
    path_normalization: str,
    f_in: Optional[int],
    f_out: Optional[int],
) -> LinearPlan:
    def coefficient(i_in: int, i_out: int) -> float:
        # e3nn's formula and operation order: an int fan-in, times f_in, to the power -1/2.
        x: Any = sum(irreps_in[j_in if path_normalization == "element" else i_in].mul for j_in, j_out in pairs if j_out == i_out)
        if f_in is not None:
            x *= f_in
        x = 1.0 if x == 0 else x
        return x ** (-0.5)

    instructions = [
        LinearInstruction(i_in, i_out, (irreps_in[i_in].mul, irreps_out[i_out].mul), coefficient(i_in, i_out))
        for i_in, i_out in pairs
    ]
    instructions += [
        LinearInstruction(-1, i_out, (mul_ir.dim,), 1.0) for i_out, (flag, mul_ir) in enumerate(zip(flags, irreps_out)) if flag
    ]
    weight_slices = []
    offset = 0
    for ins in instructions:
        if ins.i_in != -1:
            n = _prod(ins.path_shape)
            weight_slices.append(slice(offset, offset + n))
            offset += n
    bias_slices = []
    boffset = 0
    for ins in instructions:
        if ins.i_in == -1:
            n = _prod(ins.path_shape)
            bias_slices.append(slice(boffset, boffset + n))
            boffset += n
    so = irreps_out.slices()
    mask = np.zeros(irreps_out.dim)
    for io, s in enumerate(so):
        if any(ins.i_out == io and 0 not in ins.path_shape for ins in instructions):
            mask[s] = 1.0
    ff = (f_in or 1) * (f_out or 1)
    flops = 0
    for ins in instructions:
        mo, ir = irreps_out[ins.i_out]
        if ins.i_in == -1:
            flops += (f_out or 1) * ins.path_shape[0]
        else:
            flops += ff * 2 * irreps_in[ins.i_in].mul * mo * ir.dim + (f_out or 1) * mo * ir.dim
    key = ("LinearPlan", str(irreps_in), str(irreps_out), pairs, flags, path_normalization, f_in, f_out)
    return LinearPlan(
        irreps_in=irreps_in,
        irreps_out=irreps_out,
        instructions=tuple(instructions),
        path_normalization=path_normalization,
        f_in=f_in,
        f_out=f_out,
        biases=flags,
        weight_numel=offset,
        bias_numel=boffset,
        weight_slices=tuple(weight_slices),
        bias_slices=tuple(bias_slices),
        in_slices=tuple(irreps_in.slices()),
        out_slices=tuple(so),
        output_mask=_readonly(mask),
        flops=flops,
        key=key,
    )
