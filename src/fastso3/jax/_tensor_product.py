"""Tensor products in jax, executed from the numpy plans of :mod:`fastso3.core` (the torch front's plans).

Every function here asks :func:`fastso3.core.tensor_product.tensor_product_plan` (or a builder of
:mod:`fastso3.core.tensor_product_builders`) for the instructions, coefficients and Clebsch-Gordan blocks and
only writes the jax contraction of each path: ``c * sum_ijk C_ijk x_ui y_vj`` with the weights of its mode
(table in ``fastso3/core/tensor_product.py``). Paths that read a chunk known to be zero (``None`` in
:attr:`IrrepsArray.chunks`) are skipped while tracing, so they cost nothing in the jaxpr.

Names, signatures and defaults follow e3nn-jax 0.21.0 (``e3nn_jax/_src/tensor_products.py`` and
``e3nn_jax/_src/legacy/core_tensor_product.py``): :func:`tensor_product` (outputs sorted in e3nn-jax's
order and regrouped), :func:`elementwise_tensor_product` (unsorted), ``FunctionalTensorProduct`` with
``left_right`` and ``right``, and ``FunctionalFullyConnectedTensorProduct``. ``gradient_normalization``
(``'element'`` = 0, ``'path'`` = 1, default) moves ``c`` between the forward pass (``path_weight = c^g``) and
the weight initialisation (``weight_std = c^(1-g)``); ``g = 1`` gives e3nn torch's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from ..core.irreps import Irreps
from ..core.tensor_product import TensorProductPlan, _num_elements, tensor_product_plan
from ..core.tensor_product_builders import (
    _irrep_filter,
    elementwise_tensor_product_plan,
    fully_connected_tensor_product_spec,
)
from ._ffi import channelwise_cpu, check_backend, register_channelwise
from ._irreps_array import IrrepsArray, _jax_sort, as_irreps_array, from_chunks

__all__ = [
    "Instruction",
    "FunctionalTensorProduct",
    "FunctionalFullyConnectedTensorProduct",
    "tensor_product",
    "full_tensor_product",
    "elementwise_tensor_product",
    "tensor_square",
]

# (mode, has_weight) -> einsum over (weights, scaled CG (i, j, k), x1 (..., u, i), x2 (..., v, j)).
_EINSUM = {
    ("uuw", True): "uw,ijk,...ui,...uj->...wk",
    ("uuw", False): "ijk,...ui,...uj->...k",
    ("uvuv", True): "uv,ijk,...ui,...vj->...uvk",
    ("uvu<v", True): "w,ijk,...wij->...wk",
    ("uvu<v", False): "ijk,...wij->...wk",
    ("u<vw", True): "qw,ijk,...qij->...wk",
}


def _float_dtype(*values) -> Any:
    dtype = jnp.result_type(*[v for v in values if v is not None])
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.zeros(()).dtype


def _as_input(x: Any, irreps: Irreps, name: str) -> IrrepsArray:
    """``x`` rechunked to ``irreps`` (a raw array is read as having these irreps)."""
    if not isinstance(x, IrrepsArray):
        x = IrrepsArray(irreps, x)
    try:
        return x.rechunk(irreps)
    except ValueError:
        raise ValueError(f"{name} has irreps {x.irreps}, expected {irreps}") from None


def _execute(plan: TensorProductPlan, coefficients: Sequence[float], weights: Sequence[Any],
             x1: IrrepsArray, x2: IrrepsArray, dtype) -> IrrepsArray:  # fmt: skip
    """Run every path of ``plan`` on the chunks of ``x1``, ``x2`` (weights: one ``path_shape`` array per
    weighted path); paths with an empty block or a zero chunk are skipped.

    Weighted ``uvw`` and unweighted ``uvuv`` paths go through :func:`_sparse_pairs` (the CG block's non-zero
    entries as fused elementwise products); the weighted ``uvw`` paths into one output then share one matmul
    with their weights stacked (:func:`_uvw_group`). The other modes are one einsum per path."""
    lead = jnp.broadcast_shapes(x1.shape[:-1], x2.shape[:-1])
    outputs: list = [[] for _ in plan.irreps_out]
    uvw: list = [[] for _ in plan.irreps_out]
    weights = iter(weights)
    for path, c in zip(plan.paths, coefficients):
        w = next(weights) if path.has_weight else None
        a, b = x1.chunks[path.i_in1], x2.chunks[path.i_in2]
        if path.empty or a is None or b is None or c == 0:
            continue
        a, b = a.astype(dtype), b.astype(dtype)
        if path.mode == "uvw" and w is not None:
            uvw[path.i_out].append((path, c * jnp.asarray(w, dtype), _sparse_pairs(path, a, b, dtype)))
            continue
        if path.mode == "uvuv" and w is None:
            t = _sparse_pairs(path, a, b, dtype, c)  # (..., d3, u v)
            outputs[path.i_out].append(jnp.swapaxes(t, -1, -2))
            continue
        if path.mode in _CHANNELWISE:
            outputs[path.i_out].append(_sparse_channelwise(path, a, b, None if w is None else jnp.asarray(w, dtype), c))
            continue
        cg = jnp.asarray(c * path.cg, dtype)
        if path.mode in ("uvu<v", "u<vw"):
            u, v = path.pairs
            pair_products = jnp.einsum("...ui,...vj->...uvij", a, b)[..., u, v, :, :]
            operands = (pair_products,)
        else:
            operands = (a, b)
        w = None if w is None else jnp.asarray(w, dtype)
        operands = (cg, *operands) if w is None else (w, cg, *operands)
        out = jnp.einsum(_EINSUM[path.mode, path.has_weight], *operands)
        if path.mode == "uvuv":
            out = jnp.reshape(out, out.shape[:-3] + (path.mul_out, path.d3))
        elif path.mode == "uuw" and not path.has_weight:
            out = out[..., None, :]
        outputs[path.i_out].append(out)
    for i_out, group in enumerate(uvw):
        if group:
            outputs[i_out].append(_uvw_group(group))
    chunks = [None if not outs else sum(outs[1:], outs[0]) for outs in outputs]
    return from_chunks(plan.irreps_out, chunks, lead, dtype)


def _sparse_pairs(path, a: jax.Array, b: jax.Array, dtype, c: float = 1.0) -> jax.Array:
    """``t[..., k, (u, v)] = c sum_ij C_ijk a[..., u, i] b[..., v, j]`` over the block's non-zero entries.

    ``a`` ``(..., u, d1)``, ``b`` ``(..., v, d2)`` -> ``(..., d3, u v)``: single-entry products XLA fuses into
    one loop (a dense einsum of a CG block multiplies mostly zeros, and the small per-sample matrix products
    it becomes under ``vmap`` are slow on CPU)."""
    lead = jnp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    rows = _cg_rows(path, c, lambda i, j: a[..., :, None, i] * b[..., None, :, j])
    zero = jnp.zeros(lead + (path.mul1, path.mul2), dtype)
    t = jnp.stack([zero if r is None else jnp.broadcast_to(r, zero.shape) for r in rows], axis=-3)
    return jnp.reshape(t, lead + (path.d3, path.mul1 * path.mul2))


def _cg_rows(path, c: float, product) -> list:
    """``rows[k] = sum (c C_ijk) product(i, j)`` over the CG block's non-zero entries ``(i, j, k)``; None for an
    output component no entry reaches."""
    sp = path.cg_sparse
    rows: list = [None] * path.d3
    for i, j, k, value in zip(sp.i1.tolist(), sp.i2.tolist(), sp.i3.tolist(), sp.values.tolist()):
        term = (c * value) * product(i, j)
        rows[k] = term if rows[k] is None else rows[k] + term
    return rows


_CHANNELWISE = ("uvu", "uvv", "uuu")


def _sparse_channelwise(path, a: jax.Array, b: jax.Array, w: Optional[jax.Array], c: float) -> jax.Array:
    """A path whose output channel is an input channel (``uvu``, ``uvv``, ``uuu``) -> ``(..., channels, d3)``.

    With one summed channel (MACE's and NequIP's ``uvu`` with a ``1x`` second input) the weights scale the
    input that carries the output's channels, ``sum_ij C_ijk (w[u] a[u, i]) b[j]``: their gradient then
    reuses that input's cotangent, which the input's own gradient needs anyway; otherwise they (or,
    unweighted, a sum) fold the summed channels into the other input first, ``b'[u, j] = sum_v w[u, v]
    b[v, j]`` (``uvv`` mirrored). Elementwise products XLA fuses into one loop, instead of an einsum per path
    whose tiny contractions become per-sample matrix products under ``vmap``."""
    if w is not None:
        w = {"uvu": w, "uvv": w.T, "uuu": w[:, None]}[path.mode]  # (output channel, summed channel)
        if w.shape[1] == 1:
            a, b = (a, w * b) if path.mode == "uvv" else (w * a, b)
            return _channel_products(path, a, b, c)
    if path.mode == "uvu":
        b = jnp.sum(b, axis=-2, keepdims=True) if w is None else jnp.einsum("uv,...vj->...uj", w, b)
    elif path.mode == "uvv":
        a = jnp.sum(a, axis=-2, keepdims=True) if w is None else jnp.einsum("vu,...ui->...vi", w, a)
    return _channel_products(path, a, b, c)


def _split(x: jax.Array) -> list:
    """The components ``x[..., i:i+1]`` by ``jnp.split``: the transpose of a split is one concatenation, where
    that of each single-component index is a zero-padded full-size array (3x slower input gradients)."""
    return jnp.split(x, x.shape[-1], axis=-1)


def _channel_products(path, a: jax.Array, b: jax.Array, c: float) -> jax.Array:
    """``c sum_ij C_ijk a[..., u, i] b[..., u, j]`` -> ``(..., u, d3)`` over the block's non-zero entries
    (``u`` broadcasts)."""
    a_parts, b_parts = _split(a), _split(b)
    rows = _cg_rows(path, c, lambda i, j: a_parts[i] * b_parts[j])
    shape = jnp.broadcast_shapes(a.shape[:-1], b.shape[:-1]) + (1,)
    zero = jnp.zeros(shape, jnp.result_type(a, b))
    return jnp.concatenate([zero if r is None else jnp.broadcast_to(r, shape) for r in rows], axis=-1)


def _uvw_group(group: list) -> jax.Array:
    """``out[..., w, k] = sum_paths sum_(u v) t[..., k, (u v)] W[(u v), w]``: the ``uvw`` paths into one
    output as one matmul over their stacked pair products and weights (``c`` already in the weights)."""
    t = jnp.concatenate([jnp.broadcast_to(t, jnp.broadcast_shapes(*(g[2].shape[:-1] for g in group)) + t.shape[-1:])
                         for _, _, t in group], axis=-1)  # fmt: skip
    w = jnp.concatenate([jnp.reshape(w, (-1, w.shape[-1])) for _, w, _ in group], axis=0)
    return jnp.swapaxes(jnp.matmul(t, w), -1, -2)


def _exponent(value: Union[str, float, None], name: str) -> float:
    if value is None:
        return 1.0 if name == "gradient_normalization" else 0.0
    if isinstance(value, str):
        if value not in ("element", "path"):
            raise ValueError(f"{name} must be 'element', 'path' or a number, got {value!r}")
        return {"element": 0.0, "path": 1.0}[value]
    return float(value)


@dataclass(frozen=True)
class Instruction:
    """One path, as e3nn-jax's ``legacy.Instruction``: ``path_weight`` multiplies the path in the forward pass,
    ``weight_std`` is the standard deviation to initialise its weights with (None when unweighted)."""

    i_in1: int
    i_in2: int
    i_out: int
    connection_mode: str
    has_weight: bool
    path_weight: float
    weight_std: Optional[float]
    first_input_multiplicity: int
    second_input_multiplicity: int
    output_multiplicity: int
    path_shape: tuple
    num_elements: int


class FunctionalTensorProduct:
    """A tensor product with explicit weights, e3nn-jax's ``legacy.FunctionalTensorProduct``.

    Args:
        irreps_in1, irreps_in2, irreps_out: the irreps.
        instructions: ``(i_in1, i_in2, i_out, mode, has_weight[, path_weight])`` (modes of
            ``fastso3.core.tensor_product``).
        in1_var, in2_var, out_var: variances per entry (default 1).
        irrep_normalization: 'component' (default), 'norm' or 'none'.
        path_normalization: 'element' (default) or 'path' (0.0 / 1.0 are accepted).
        gradient_normalization: 'path' (default, 1.0) or 'element' (0.0), or a float exponent.
        backend: 'xla' (default: jnp contractions XLA fuses) or 'cpu' (fastso3's compiled channel-wise CPU
            kernel through ``jax.ffi``, :mod:`fastso3.jax._ffi`; needs a channel-wise plan, every path a weighted
            ``uvu`` path as in :mod:`fastso3.core.channelwise`, else ValueError).

    Attributes:
        plan: the :class:`~fastso3.core.tensor_product.TensorProductPlan` (also used by the torch front).
        instructions: one :class:`Instruction` per path.
        output_mask: ``(irreps_out.dim,)`` bool, True where a path reaches.
    """

    def __init__(self, irreps_in1: Any, irreps_in2: Any, irreps_out: Any, instructions: Sequence[tuple],
                 in1_var: Optional[List[float]] = None, in2_var: Optional[List[float]] = None,
                 out_var: Optional[List[float]] = None, irrep_normalization: Optional[str] = None,
                 path_normalization: Union[str, float, None] = None,
                 gradient_normalization: Union[str, float, None] = None, *, backend: str = "xla"):  # fmt: skip
        check_backend(backend)
        path_exponent = _exponent(path_normalization, "path_normalization")
        if path_exponent not in (0.0, 1.0):
            raise ValueError(f"path_normalization must be 'element' (0) or 'path' (1), got {path_normalization!r}")
        g = _exponent(gradient_normalization, "gradient_normalization")
        self.plan = tensor_product_plan(irreps_in1, irreps_in2, irreps_out, instructions, in1_var, in2_var, out_var,
                                        irrep_normalization, "element" if path_exponent == 0.0 else "path")  # fmt: skip
        self.irreps_in1, self.irreps_in2, self.irreps_out = self.plan.irreps_in1, self.plan.irreps_in2, self.plan.irreps_out
        # The plan's c is e3nn's sqrt(alpha); e3nn-jax splits it between the forward pass and the init.
        self.instructions = [
            Instruction(p.i_in1, p.i_in2, p.i_out, p.mode, p.has_weight,
                        p.coefficient**g if p.has_weight else p.coefficient,
                        p.coefficient ** (1.0 - g) if p.has_weight else None,
                        p.mul1, p.mul2, p.mul_out, p.path_shape, _num_elements(p.mode, p.mul1, p.mul2))  # fmt: skip
            for p in self.plan.paths
        ]
        self.output_mask = np.asarray(self.plan.output_mask, dtype=bool)
        self.backend = backend
        # the table holds c; the forward multiplies c^g (weights scaled by c^(g - 1), 1 where c = 0)
        self._cw_table = register_channelwise(self.plan) if backend == "cpu" else None
        self._cw_scale = [p.coefficient ** (g - 1.0) if p.coefficient != 0 else 1.0 for p in self.plan.paths]

    def _weights_list(self, weights: Any) -> list:
        weighted = [ins for ins in self.instructions if ins.has_weight]
        if isinstance(weights, (list, tuple)):
            if len(weights) != len(weighted):
                raise ValueError(f"weights: expected {len(weighted)} arrays (one per weighted instruction), got {len(weights)}")
            for w, ins in zip(weights, weighted):
                if tuple(jnp.shape(w)) != ins.path_shape:
                    raise ValueError(f"weights: a weight of shape {jnp.shape(w)} for a path of shape {ins.path_shape}; "
                                     "map over batch or channel axes with jax.vmap")  # fmt: skip
            return list(weights)
        weights = jnp.asarray(weights)
        if weights.shape != (self.plan.weight_numel,):
            raise ValueError(f"weights: expected a flat array of {self.plan.weight_numel} entries, got shape {weights.shape}")
        return [weights[p.weight_slice].reshape(p.path_shape) for p in self.plan.paths if p.has_weight]

    def left_right(self, weights: Any, input1: Any, input2: Any = None, **_unused_e3nn_options) -> IrrepsArray:
        """The product of ``input1`` ``(..., irreps_in1.dim)`` and ``input2`` ``(..., irreps_in2.dim)``.

        ``weights``: a list of one ``path_shape`` array per weighted instruction, or one flat array; omit it
        (``left_right(x1, x2)``) when no path is weighted. Leading axes of the inputs broadcast; batch or
        channel axes of the weights are added with ``jax.vmap`` (see docs/jax.md). Returns an
        :class:`IrrepsArray` with ``irreps_out``, dtype the promoted one of the arguments.
        ``custom_einsum_jvp``/``fused``/``sparse`` (e3nn-jax options) are accepted and have no effect.
        """
        if input2 is None:
            weights, input1, input2 = [], weights, input1
        ws = self._weights_list(weights)
        x1 = _as_input(input1, self.irreps_in1, "input1")
        x2 = _as_input(input2, self.irreps_in2, "input2")
        dtype = _float_dtype(x1.dtype, x2.dtype, *(jnp.asarray(w).dtype for w in ws))
        if self.backend == "cpu":
            return self._left_right_cpu(ws, x1, x2, dtype)
        return _execute(self.plan, [ins.path_weight for ins in self.instructions], ws, x1, x2, dtype)

    def _left_right_cpu(self, ws: list, x1: IrrepsArray, x2: IrrepsArray, dtype) -> IrrepsArray:
        """The channel-wise kernel on every sample: the shared weights are broadcast to each sample."""
        lead = jnp.broadcast_shapes(x1.shape[:-1], x2.shape[:-1])
        w = jnp.concatenate([s * jnp.reshape(jnp.asarray(w, dtype), (-1,)) for s, w in zip(self._cw_scale, ws)])
        operands = [jnp.broadcast_to(v.astype(dtype), lead + v.shape[-1:]) for v in (x1.array, x2.array, w)]
        return IrrepsArray(self.irreps_out, channelwise_cpu(self._cw_table, *operands))

    def right(self, weights: Any, input2: Any = None) -> jax.Array:
        """The matrix ``(irreps_in1.dim, irreps_out.dim)`` of ``x1 -> left_right(weights, x1, input2)``."""
        if input2 is None:
            weights, input2 = [], weights
        x2 = _as_input(input2, self.irreps_in2, "input2")
        basis = jnp.eye(self.irreps_in1.dim, dtype=_float_dtype(x2.dtype))
        return jax.vmap(lambda e: self.left_right(weights, IrrepsArray(self.irreps_in1, e), x2).array)(basis)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.irreps_in1.simplify()} x {self.irreps_in2.simplify()} -> "
                f"{self.irreps_out.simplify()} | {self.plan.num_paths} paths | {self.plan.weight_numel} weights)")  # fmt: skip


def FunctionalFullyConnectedTensorProduct(irreps_in1: Any, irreps_in2: Any, irreps_out: Any,
                                          in1_var=None, in2_var=None, out_var=None, irrep_normalization=None,
                                          path_normalization=None, gradient_normalization=None) -> FunctionalTensorProduct:  # fmt: skip
    """A weighted ``uvw`` path for every ``ir_out in ir1 x ir2`` (loop order ``i_in1, i_in2, i_out``), as
    e3nn-jax's ``legacy.FunctionalFullyConnectedTensorProduct`` and the torch ``FullyConnectedTensorProduct``."""
    spec = fully_connected_tensor_product_spec(irreps_in1, irreps_in2, irreps_out)
    return FunctionalTensorProduct(spec["irreps_in1"], spec["irreps_in2"], spec["irreps_out"], spec["instructions"],
                                   in1_var, in2_var, out_var, irrep_normalization, path_normalization,
                                   gradient_normalization)  # fmt: skip


def _prepare(input1: Any, input2: Any) -> tuple:
    x1, x2 = as_irreps_array(input1), as_irreps_array(input2)
    dtype = _float_dtype(x1.dtype, x2.dtype)
    return x1.astype(dtype), x2.astype(dtype), dtype


def _full_plan(irreps1: Irreps, irreps2: Irreps, filter_ir_out: Any, irrep_normalization: Optional[str]) -> TensorProductPlan:
    """Unweighted ``uvuv`` paths in e3nn-jax's generation order (entries of in1, of in2, ``ir1 x ir2``)."""
    keep = _irrep_filter(filter_ir_out)
    out: list = []
    instructions: list = []
    for i1, (m1, ir1) in enumerate(irreps1):
        for i2, (m2, ir2) in enumerate(irreps2):
            for iro in ir1 * ir2:
                if keep is None or iro in keep:
                    instructions.append((i1, i2, len(out), "uvuv", False))
                    out.append((m1 * m2, iro))
    # One path per output, so 'element' normalisation leaves c = sqrt(alpha), e3nn-jax's CG scaling.
    return tensor_product_plan(irreps1, irreps2, out, instructions, irrep_normalization=irrep_normalization)


def tensor_product(input1: Any, input2: Any, *, filter_ir_out: Any = None, irrep_normalization: Optional[str] = None,
                   regroup_output: bool = True) -> Union[IrrepsArray, Irreps]:  # fmt: skip
    """Every product ``x_u (x) y_v`` reduced into irreps (e3nn-jax ``tensor_product``).

    Args:
        input1, input2: IrrepsArray ``(..., dim)`` (leading axes broadcast), raw arrays (read as scalars),
            or Irreps (then only the output Irreps is returned).
        filter_ir_out: keep only these output irreps.
        irrep_normalization: 'component' (default), 'norm' or 'none'.
        regroup_output: regroup the inputs and the output (sorted in e3nn-jax's order, merged).

    Returns:
        IrrepsArray of the promoted floating dtype; output sorted (``0e < 0o < 1o < 1e``), regrouped if asked.
    """
    if isinstance(input1, (str, Irreps)) and isinstance(input2, (str, Irreps)):
        irreps1, irreps2 = (_jax_sort(Irreps(i))[0].simplify() if regroup_output else Irreps(i) for i in (input1, input2))
        irreps = _jax_sort(_full_plan(irreps1, irreps2, filter_ir_out, irrep_normalization).irreps_out)[0]
        return irreps.simplify() if regroup_output else irreps
    x1, x2, dtype = _prepare(input1, input2)
    if regroup_output:
        x1, x2 = x1.regroup(), x2.regroup()
    plan = _full_plan(x1.irreps, x2.irreps, filter_ir_out, irrep_normalization)
    out = _execute(plan, [p.coefficient for p in plan.paths], [], x1, x2, dtype).sort()
    return out.regroup() if regroup_output else out


def full_tensor_product(input1: Any, input2: Any, filter_ir_out: Any = None,
                        irrep_normalization: Optional[str] = None) -> IrrepsArray:  # fmt: skip
    """The seed's ``full_tensor_product`` (e3nn-jax before 0.14): :func:`tensor_product` with regrouped output."""
    return tensor_product(input1, input2, filter_ir_out=filter_ir_out, irrep_normalization=irrep_normalization)


def elementwise_tensor_product(input1: Any, input2: Any, *, filter_ir_out: Any = None,
                               irrep_normalization: Optional[str] = None) -> IrrepsArray:  # fmt: skip
    """``z_u = x_u (x) y_u`` copy by copy (e3nn-jax ``elementwise_tensor_product``); output unsorted.

    Both inputs need the same number of copies (``num_irreps``); their entries are split so the
    multiplicities align (the plan of ``fastso3.o3.ElementwiseTensorProduct``).
    """
    x1, x2, dtype = _prepare(input1, input2)
    plan = elementwise_tensor_product_plan(x1.irreps, x2.irreps, filter_ir_out, irrep_normalization)
    x1, x2 = x1.rechunk(plan.irreps_in1), x2.rechunk(plan.irreps_in2)
    return _execute(plan, [p.coefficient for p in plan.paths], [], x1, x2, dtype)


def _square_alpha(normalization: str, normalized_input: bool, d1: int, d2: int, d_out: int, l_out: int,
                  diagonal: bool) -> float:  # fmt: skip
    """e3nn-jax 0.21's ``tensor_square`` path normalisation ``alpha`` (the CG block is scaled by sqrt(alpha)).

    Off-diagonal products (two entries, or two copies ``u < v`` of one entry) use the ``tensor_product``
    factors; the ``u = u`` products of one entry (only even ``l_out``, the symmetric part) correct for the
    mean of ``x_u (x) x_u``, which is not zero for ``l_out = 0``."""
    if normalization == "none":
        return 1.0
    component = normalization == "component"
    if not diagonal:
        if normalized_input:
            return float(d1 * d2 * d_out) if component else float(d1 * d2)
        return float(d_out) if component else float(d1 * d2)
    if normalized_input:
        base = d_out * d1 if l_out == 0 else d1 * (d1 + 2) / 2
        return float(base * (d_out if component and l_out > 0 else 1))
    scale = d_out if component else d1 * d2
    return scale / (d1 + 2) if l_out == 0 else scale / 2


def tensor_square(input: Any, *, irrep_normalization: Optional[str] = None, normalized_input: bool = False,
                  regroup_output: bool = True) -> IrrepsArray:  # fmt: skip
    """The products of ``input`` with itself without repeats (e3nn-jax 0.21 ``tensor_square``).

    Per pair of entries ``i1 < i2``: every ``x_u (x) x_v`` (``uvuv``); per entry: the pairs ``u < v`` of its
    copies (``uvu<v``) and, for even ``l_out`` only, the squares ``x_u (x) x_u`` (``uuu``); with e3nn-jax's
    normalisation (:func:`_square_alpha`).

    Args:
        input: IrrepsArray ``(..., dim)`` (a raw array is read as scalars).
        irrep_normalization: 'component' (default), 'norm' or 'none'.
        normalized_input: the input is strictly normalised (changes the factors, as in e3nn-jax).
        regroup_output: regroup the input and the output.

    Returns:
        IrrepsArray of the input's floating dtype, sorted in e3nn-jax's order (regrouped if asked).
    """
    x = as_irreps_array(input)
    dtype = _float_dtype(x.dtype)
    x = x.astype(dtype)
    if regroup_output:
        x = x.regroup()
    normalization = "component" if irrep_normalization is None else irrep_normalization
    if normalization not in ("component", "norm", "none"):
        raise ValueError(f"irrep_normalization must be 'component', 'norm' or 'none', got {irrep_normalization!r}")
    out: list = []
    instructions: list = []
    alphas: list = []

    def add(i1, i2, mul, ir_out, mode, diagonal):
        (_, ir1), (_, ir2) = x.irreps[i1], x.irreps[i2]
        instructions.append((i1, i2, len(out), mode, False))
        out.append((mul, ir_out))
        alphas.append(_square_alpha(normalization, normalized_input, ir1.dim, ir2.dim, ir_out.dim, ir_out.l, diagonal))

    for i1, (mul1, ir1) in enumerate(x.irreps):
        for i2, (mul2, ir2) in enumerate(x.irreps):
            for ir_out in ir1 * ir2:
                if i1 < i2:
                    add(i1, i2, mul1 * mul2, ir_out, "uvuv", False)
                elif i1 == i2:
                    if mul1 > 1:
                        add(i1, i1, mul1 * (mul1 - 1) // 2, ir_out, "uvu<v", False)
                    if ir_out.l % 2 == 0:
                        add(i1, i1, mul1, ir_out, "uuu", True)
    if not instructions:
        return IrrepsArray(Irreps(""), jnp.zeros(x.shape[:-1] + (0,), dtype))
    plan = tensor_product_plan(x.irreps, x.irreps, out, instructions, irrep_normalization="none")
    result = _execute(plan, [float(np.sqrt(a)) for a in alphas], [], x, x, dtype).sort()
    return result.regroup() if regroup_output else result
