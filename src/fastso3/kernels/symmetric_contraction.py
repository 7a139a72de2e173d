"""MACE's symmetric contraction: the readable dense twin, the factorised torch composition and fused kernels.

The factorised plan (``fastso3.core.symmetric_contraction``) turns the contraction, per node ``n`` and channel
``c``, into the monomials ``m_q`` of the inputs, one projection ``P`` and per-node weights ``w = (Q W)[z_n]``:

    out[n, s, c] = sum_{col: out(col) = s} w[n, rank(col), c] sum_q P[q, col] m_q(x[n, :, c])

Backends:

- ``"reference"``: MACE's formula as written, ``U_nu`` (dense, ``(M, D, .., D, K)``) contracted with the weights
  of each node's element and then with ``x`` once per order. The test oracle.
- ``"factorized"``: the formula above as differentiable torch ops (gathers, products, matmuls), any device.
- ``"cpu"`` / ``"triton"``: the op ``fastso3::symmetric_contraction`` (C++, ``cpu/csrc/symmetric_contraction.cpp``;
  Triton, ``triton/symmetric_contraction.py``), fused per node and block of channels: the monomials and their
  projection never leave the cache. Its backward is the op ``fastso3::symmetric_contraction_backward`` (same
  kernels); its derivative is ``fastso3::symmetric_contraction_double_backward`` (C++) where no further
  derivative is taken, and the factorised composition's, written out as torch ops, where one is (grad mode on,
  ``create_graph``), so every order exists.

``backend=None`` picks ``"cpu"`` for CPU tensors, ``"triton"`` for CUDA tensors when triton imports, and
``"factorized"`` otherwise. An explicitly requested backend that cannot run raises.
"""

from __future__ import annotations

import ctypes
import functools
from typing import NamedTuple, Sequence

import numpy as np
import torch

from ..core.symmetric_contraction import SymmetricContractionPlan, sparse_projection
from . import registry
from ._checks import check_index, check_shape, same_floats, tracing
from .tables import content_digest

__all__ = [
    "SYMMETRIC_CONTRACTION_BACKENDS",
    "SymmetricContractionTables",
    "register_symmetric_contraction_plan",
    "symmetric_contraction",
    "symmetric_contraction_backward_op",
    "symmetric_contraction_double_backward_op",
    "symmetric_contraction_op",
]

SYMMETRIC_CONTRACTION_BACKENDS = ("reference", "factorized", "cpu", "triton")
_OP = "symmetric_contraction"
_FUSED = ("factorized", "cpu", "triton")  # the backends the op runs
_PLANS: dict[str, SymmetricContractionPlan] = {}


class SymmetricContractionTables(NamedTuple):
    """What the front needs besides the registered plan ``name``: per weight block the factor ``(R_b, K_b)``
    (``factors``) and the dense ``U (M, D, .., D, K)`` (``u_matrices``, read by the reference backend only), in
    the module's dtype and device; ``blocks``: per weight block ``(output index, nu, K)``; ``output_dims``:
    ``2l+1`` per output irrep."""

    name: str
    factors: Sequence[torch.Tensor]
    u_matrices: Sequence[torch.Tensor]
    blocks: tuple
    output_dims: tuple


def register_symmetric_contraction_plan(plan: SymmetricContractionPlan) -> str:
    """Register a plan for the op, named by the content of all its fields; returns its name."""
    name = f"symmetric_contraction:{content_digest(tuple(plan))}"
    _PLANS.setdefault(name, plan)
    return name


def _grouped(keys: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ptr (count+1,), order)``: the entries with key ``k`` are ``order[ptr[k]:ptr[k+1]]``, in entry order."""
    ptr = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=count), out=ptr[1:])
    return ptr, np.argsort(keys, kind="stable").astype(np.int64)


def _build_tensors(name: str, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The plan's tables: the factorised composition's (dense projection, 0/1 column sums), the C++ kernel's
    (projection in CSR by monomial) and the Triton kernel's (the projection by column, the columns by output
    component and by weight row, and each monomial's derivative terms by input component)."""
    plan = _PLANS[name]
    d, s = plan.num_inputs, sum(plan.output_dims)
    monomials = np.where(plan.monomial_index < 0, d, plan.monomial_index)  # index d: the factor 1
    ptr, column, value = sparse_projection(plan)
    column_sum = np.zeros((len(plan.column_output), s))
    column_sum[np.arange(len(plan.column_output)), plan.column_output] = 1.0
    by_column_ptr, by_column = _grouped(column, len(plan.column_rank))
    entry_monomial = np.repeat(np.arange(len(monomials)), np.diff(ptr))
    out_ptr, out_columns = _grouped(plan.column_output, s)
    rank_ptr, rank_columns = _grouped(plan.column_rank, plan.rank)
    order = monomials.shape[1]
    terms = [(i, q, [monomials[q, l] for l in range(order) if l != k])
             for q in range(len(monomials)) for k, i in enumerate(monomials[q]) if i < d]  # fmt: skip
    term_input = np.asarray([i for i, _, _ in terms], dtype=np.int64)
    term_ptr, term_order = _grouped(term_input, d)
    others = np.asarray([o for _, _, o in terms], dtype=np.int64).reshape(len(terms), order - 1)
    as_index = functools.partial(torch.as_tensor, dtype=torch.int64, device=device)
    as_float = functools.partial(torch.as_tensor, dtype=dtype, device=device)
    return {
        "monomial_index": as_index(monomials),
        "projection": as_float(plan.projection),
        "column_rank": as_index(plan.column_rank),
        "column_output": as_index(plan.column_output),
        "column_sum": as_float(column_sum),
        "rank_sum": as_float(np.eye(max(plan.rank, 1))[plan.column_rank][:, :plan.rank]),
        "ptr": as_index(ptr),
        "column": as_index(column),
        "value": as_float(value),
        "by_column_ptr": as_index(by_column_ptr),
        "by_column_monomial": as_index(entry_monomial[by_column]),
        "by_column_value": as_float(value[by_column]),
        "out_ptr": as_index(out_ptr),
        "out_columns": as_index(out_columns),
        "rank_ptr": as_index(rank_ptr),
        "rank_columns": as_index(rank_columns),
        "term_ptr": as_index(term_ptr),
        "term_monomial": as_index(np.asarray([q for _, q, _ in terms], dtype=np.int64)[term_order]),
        "term_others": as_index(np.concatenate([others[term_order], np.full((len(terms), 2 - others.shape[1]), d)],
                                               axis=1)),  # fmt: skip  (two "other" factors, padded with the 1)
    }


_cached_tensors = functools.lru_cache(maxsize=None)(_build_tensors)


def _tensors(name: str, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The plan's tables on ``device``: cached, except while tracing (a cache filled with traced tensors would
    hand them to later eager calls); traced graphs keep them as constants."""
    return _build_tensors(name, device, dtype) if tracing() else _cached_tensors(name, device, dtype)


def _sizes(name: str) -> tuple[int, int, int]:
    """``(D, R, S)``: inputs per channel, factorised weight rows, output components."""
    plan = _PLANS[name]
    return plan.num_inputs, plan.rank, sum(plan.output_dims)


# ----------------------------------------------------------------------------------------------------- twins


def _reference(x, species, weights, tables):
    outputs = [0.0] * len(tables.output_dims)
    for w, u, (o, nu, _) in zip(weights, tables.u_matrices, tables.blocks):
        t = torch.einsum("m...k,nkc->ncm...", u, w[species])  # (N, C, M, D, .., D)
        for _ in range(nu):
            t = torch.einsum("ncm...d,ncd->ncm...", t, x)
        outputs[o] = outputs[o] + t
    n = x.shape[0]
    return torch.cat([out.reshape(n, -1) for out in outputs], dim=1)


# Columns (node, channel pairs) per block: a block's monomials (Q x _CHUNK) stay in cache between the
# gathers, the products and the GEMM instead of streaming a (Q, N C) tensor through memory five times.
_CHUNK = 2048


def _projected(rows: torch.Tensor, index: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """``(cols, B)``: the monomials of ``rows (D + 1, B)`` (gathers and products) times the projection."""
    monomials = rows.index_select(0, index[:, 0])
    for j in range(1, index.shape[1]):
        monomials = monomials * rows.index_select(0, index[:, j])
    return projection.T @ monomials


def _factorized(x: torch.Tensor, w: torch.Tensor, name: str) -> torch.Tensor:
    """``x (N, D, C)``, per-node weights ``w (N, R, C)`` -> ``(N, S, C)``, as differentiable torch ops."""
    t = _tensors(name, x.device, x.dtype)
    n, d, c = x.shape
    # Components first, (D + 1, N C): every gather below copies whole contiguous rows; row d is the factor 1.
    rows = torch.cat([x.transpose(0, 1).reshape(d, n * c), x.new_ones(1, n * c)])
    index, projection = t["monomial_index"], t["projection"]
    if tracing() or n * c <= _CHUNK:  # one block: a loop over a symbolic size would fix it in the graph
        projected = _projected(rows, index, projection)
    else:
        projected = torch.cat([_projected(rows[:, a:a + _CHUNK], index, projection)
                               for a in range(0, n * c, _CHUNK)], dim=1)  # fmt: skip
    per_column = w.index_select(1, t["column_rank"]).transpose(0, 1).reshape(-1, n * c)
    summed = t["column_sum"].T @ (projected * per_column)  # (S, N C)
    return summed.reshape(-1, n, c).transpose(0, 1)


def _factors(sources: list, index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(Q, B)``: per monomial the product over its positions ``l`` of ``sources[l][index[:, l]]`` (rows
    ``(D + 1, B)`` like ``like``); a ``None`` source skips its position (the factor a derivative removes)."""
    out = like.new_ones(index.shape[0], like.shape[1])
    for l, rows in enumerate(sources):
        if rows is not None:
            out = out * rows.index_select(0, index[:, l])
    return out


def _per_column(t: dict, x, w, g):
    """The backward's operands as ``(rows, B = N C)`` tensors: x with its row of ones, w and g per column."""
    n, d, c = x.shape
    rows = torch.cat([x.transpose(0, 1).reshape(d, n * c), x.new_ones(1, n * c)])
    w_col = w.index_select(1, t["column_rank"]).transpose(0, 1).reshape(-1, n * c)
    g_col = g.index_select(1, t["column_output"]).transpose(0, 1).reshape(-1, n * c)
    return rows, w_col, g_col


def _scatter_rows(terms: list, index: torch.Tensor, d: int, like: torch.Tensor) -> torch.Tensor:
    """``(D, B)``: the sum of ``terms[k]`` (``(Q, B)``, or None) added into rows ``index[:, k]`` (row D, the
    constant, dropped)."""
    out = like.new_zeros(d + 1, like.shape[1])
    for k, term in enumerate(terms):
        if term is not None:
            out = out.index_add(0, index[:, k], term)
    return out[:d]


def _input_grad(gm: torch.Tensor, rows: torch.Tensor, index: torch.Tensor, d: int) -> torch.Tensor:
    """``(D, B)``: ``sum_q gm_q d m_q / d x``, the derivative by positions (product rule)."""
    order = index.shape[1]
    return _scatter_rows([gm * _factors([None if l == k else rows for l in range(order)], index, rows)
                          for k in range(order)], index, d, rows)  # fmt: skip


def _unflatten(t: torch.Tensor, n: int, c: int) -> torch.Tensor:
    """``(K, N C) -> (N, K, C)``."""
    return t.reshape(-1, n, c).transpose(0, 1)


def _factorized_backward(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, name: str) -> tuple:
    """``(d x, d w)`` of ``sum g * _factorized(x, w)`` as differentiable torch ops (the fused op's oracle)."""
    t = _tensors(name, x.device, x.dtype)
    n, d, c = x.shape
    rows, w_col, g_col = _per_column(t, x, w, g)
    index, projection = t["monomial_index"], t["projection"]
    acc = projection.T @ _factors([rows] * index.shape[1], index, rows)
    gw = t["rank_sum"].T @ (acc * g_col)
    gx = _input_grad(projection @ (w_col * g_col), rows, index, d)
    return _unflatten(gx, n, c), _unflatten(gw, n, c)


def _factorized_double_backward(g, x, w, hx, hw, name: str) -> tuple:
    """The cotangents of ``(g, x, w)`` for ``hx . dx + hw . dw`` of :func:`_factorized_backward` (``hw`` None:
    zero), as torch ops (so every further order exists): with ``Dm = d m / d x [hx]``,

    - ``g``: ``sum_col (hw acc + w P^T Dm)`` per output component (the forward's tangent);
    - ``w``: ``g P^T Dm`` per weight row;
    - ``x``: the backward's ``x``-gradient with ``hw`` for ``w``, plus ``sum_q (P (w g))_q d (Dm_q) / d x``.
    """
    t = _tensors(name, x.device, x.dtype)
    n, d, c = x.shape
    rows, w_col, g_col = _per_column(t, x, w, g)
    h_rows = torch.cat([hx.transpose(0, 1).reshape(d, n * c), hx.new_zeros(1, n * c)])  # the constant's tangent: 0
    index, projection = t["monomial_index"], t["projection"]
    order = range(index.shape[1])
    d_acc = projection.T @ sum([_factors([h_rows if l == k else rows for l in order], index, rows) for k in order])
    per_column = w_col * d_acc
    if hw is not None:
        hw_col = hw.index_select(1, t["column_rank"]).transpose(0, 1).reshape(-1, n * c)
        per_column = per_column + hw_col * (projection.T @ _factors([rows for _ in order], index, rows))
    grad_g = t["column_sum"].T @ per_column
    grad_w = t["rank_sum"].T @ (g_col * d_acc)
    gm = projection @ (w_col * g_col)
    hessian = _scatter_rows([gm * sum([_factors([None if l == k else h_rows if l == j else rows for l in order], index,
                                                rows) for j in order if j != k]) if len(order) > 1 else None
                             for k in order], index, d, rows)  # fmt: skip
    grad_x = hessian if hw is None else hessian + _input_grad(projection @ (hw_col * g_col), rows, index, d)
    return _unflatten(grad_g, n, c), _unflatten(grad_x, n, c), _unflatten(grad_w, n, c)


# ------------------------------------------------------------------------------------------------- fused op


def _check_op(op: str, x, w, name: str, backend: str, g=None) -> None:
    """What the kernels read: one float dtype and device, a known backend and plan, and the shapes."""
    same_floats(op, x=x, weights=w, grad=g)
    if backend not in _FUSED:
        raise registry.BackendUnavailable(f"{op}: backend {backend!r} does not run the op; choose one of {_FUSED}")
    if backend != "factorized":
        registry.check_backend(_OP, backend, x)
    if name not in _PLANS:
        raise ValueError(f"{op}: unknown plan {name!r} (plans are registered by SymmetricContraction)")
    d, r, s = _sizes(name)
    check_shape(op, "x", x, (None, d, None))
    n, _, c = x.shape
    check_shape(op, "weights", w, (n, r, c))
    if g is not None:
        check_shape(op, "grad", g, (n, s, c))


def _kernel_args(name: str, x: torch.Tensor) -> tuple:
    t = _tensors(name, x.device, x.dtype)
    plan = _PLANS[name]
    sizes = (plan.num_inputs, t["monomial_index"].shape[0], len(plan.column_rank), sum(plan.output_dims),
             plan.rank, t["monomial_index"].shape[1])  # fmt: skip
    pointers = [t[k].data_ptr() for k in ("monomial_index", "ptr", "column", "value", "by_column_ptr", "by_column_monomial",
                                          "by_column_value", "column_rank", "column_output")]  # fmt: skip
    return sizes, pointers


_P, _I64 = ctypes.c_void_p, ctypes.c_int64
_SIZES = [_I64] * 6
_TABLE_POINTERS = [_P] * 9


def _cpu_forward(x: torch.Tensor, w: torch.Tensor, name: str) -> torch.Tensor:
    from .cpu.loader import library_function

    suffix = "f32" if x.dtype == torch.float32 else "f64"
    fn = library_function(f"fastso3_symcon_forward_{suffix}", _P, _P, _P, _I64, _I64, *_SIZES, *_TABLE_POINTERS,
                          ctypes.c_int)  # fmt: skip
    sizes, pointers = _kernel_args(name, x)
    out = x.new_empty(x.shape[0], _sizes(name)[2], x.shape[2])
    fn(x.data_ptr(), w.data_ptr(), out.data_ptr(), x.shape[0], x.shape[2], *sizes, *pointers, torch.get_num_threads())
    return out


def _cpu_backward(g, x, w, name: str, need_x: bool, need_w: bool) -> tuple:
    from .cpu.loader import library_function

    suffix = "f32" if x.dtype == torch.float32 else "f64"
    fn = library_function(f"fastso3_symcon_backward_{suffix}", _P, _P, _P, _P, _P, _I64, _I64, *_SIZES,
                          *_TABLE_POINTERS, ctypes.c_int)  # fmt: skip
    sizes, pointers = _kernel_args(name, x)
    gx, gw = x.new_empty(x.shape if need_x else 0), x.new_empty(w.shape if need_w else 0)
    fn(g.data_ptr(), x.data_ptr(), w.data_ptr(), gx.data_ptr() if need_x else None, gw.data_ptr() if need_w else None,
       x.shape[0], x.shape[2], *sizes, *pointers, torch.get_num_threads())  # fmt: skip
    return gx, gw


@torch.library.custom_op("fastso3::symmetric_contraction", mutates_args=())
def symmetric_contraction_op(x: torch.Tensor, weights: torch.Tensor, plan: str, backend: str) -> torch.Tensor:
    """``x (N, D, C)``, per-node factorised weights ``(N, R, C)`` -> ``(N, S, C)`` (see the module docstring)."""
    _check_op("symmetric_contraction_op", x, weights, plan, backend)
    x, weights = x.contiguous(), weights.contiguous()
    if backend == "factorized":
        return _factorized(x, weights, plan).contiguous()
    if backend == "triton":
        from .triton.symmetric_contraction import forward

        return forward(x, weights, _tensors(plan, x.device, x.dtype), _sizes(plan)[2])
    return _cpu_forward(x, weights, plan)


@symmetric_contraction_op.register_fake
def _(x, weights, plan, backend):
    return x.new_empty(x.shape[0], _sizes(plan)[2], x.shape[2])


def _setup(ctx, inputs, output):
    x, weights, plan, backend = inputs
    ctx.save_for_backward(x, weights)
    ctx.plan, ctx.backend = plan, backend


def _backward(ctx, grad):
    x, weights = ctx.saved_tensors
    need_x, need_w = ctx.needs_input_grad[:2]
    gx, gw = symmetric_contraction_backward_op(grad, x, weights, ctx.plan, ctx.backend, need_x, need_w)
    return gx if need_x else None, gw if need_w else None, None, None


symmetric_contraction_op.register_autograd(_backward, setup_context=_setup)


@torch.library.custom_op("fastso3::symmetric_contraction_backward", mutates_args=())
def symmetric_contraction_backward_op(grad: torch.Tensor, x: torch.Tensor, weights: torch.Tensor, plan: str,
                                      backend: str, need_x: bool, need_weights: bool) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``(d x (N, D, C), d weights (N, R, C))`` of ``sum grad * op(x, weights)`` for ``grad (N, S, C)``; a gradient
    not asked for (``need_*`` false) is returned empty, ``(0,)``."""
    _check_op("symmetric_contraction_backward_op", x, weights, plan, backend, grad)
    grad, x, weights = grad.contiguous(), x.contiguous(), weights.contiguous()
    if backend == "factorized":
        gx, gw = _factorized_backward(grad, x, weights, plan)
        return (gx.contiguous() if need_x else x.new_empty(0)), (gw.contiguous() if need_weights else x.new_empty(0))
    if backend == "triton":
        from .triton.symmetric_contraction import backward

        return backward(grad, x, weights, _tensors(plan, x.device, x.dtype), need_x, need_weights)
    return _cpu_backward(grad, x, weights, plan, need_x, need_weights)


@symmetric_contraction_backward_op.register_fake
def _(grad, x, weights, plan, backend, need_x, need_weights):
    return x.new_empty(x.shape if need_x else 0), x.new_empty(weights.shape if need_weights else 0)


def _backward_setup(ctx, inputs, output):
    grad, x, weights, plan, backend, need_x, need_w = inputs
    ctx.save_for_backward(grad, x, weights)
    ctx.plan, ctx.backend, ctx.need = plan, backend, (need_x, need_w)


def _double_backward(ctx, grad_gx, grad_gw):
    grad, x, weights = ctx.saved_tensors
    hx, hw = [c if need and c is not None and c.numel() else None for c, need in zip((grad_gx, grad_gw), ctx.need)]
    if hx is None:
        hx = torch.zeros_like(x)
    # The fused kernel where no further derivative is taken (a force loss's backward, a Hessian); with
    # create_graph (grad mode on) the torch-op composition, whose own derivatives autograd takes.
    if ctx.backend == "cpu" and not torch.is_grad_enabled():
        grads = symmetric_contraction_double_backward_op(grad, x, weights, hx, hw, ctx.plan, ctx.backend)
    else:
        grads = _factorized_double_backward(grad, x, weights, hx, hw, ctx.plan)
    return *grads, None, None, None, None


@torch.library.custom_op("fastso3::symmetric_contraction_double_backward", mutates_args=())
def symmetric_contraction_double_backward_op(grad: torch.Tensor, x: torch.Tensor, weights: torch.Tensor,
                                             grad_x: torch.Tensor, grad_weights: torch.Tensor | None, plan: str,
                                             backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """The cotangents of ``(grad, x, weights)`` for cotangents ``grad_x (N, D, C)`` and ``grad_weights (N, R, C)``
    (``None``: zero) of the backward's outputs (see :func:`_factorized_double_backward`). No autograd: it runs
    only where no further derivative is taken."""
    _check_op("symmetric_contraction_double_backward_op", x, weights, plan, backend, grad)
    same_floats("symmetric_contraction_double_backward_op", x=x, grad_x=grad_x, grad_weights=grad_weights)
    check_shape("symmetric_contraction_double_backward_op", "grad_x", grad_x, tuple(x.shape))
    if grad_weights is not None:
        check_shape("symmetric_contraction_double_backward_op", "grad_weights", grad_weights, tuple(weights.shape))
    if backend != "cpu":
        return tuple(t.contiguous() for t in _factorized_double_backward(grad, x, weights, grad_x, grad_weights, plan))
    from .cpu.loader import library_function

    grad, x, weights, grad_x = grad.contiguous(), x.contiguous(), weights.contiguous(), grad_x.contiguous()
    grad_weights = None if grad_weights is None else grad_weights.contiguous()
    suffix = "f32" if x.dtype == torch.float32 else "f64"
    fn = library_function(f"fastso3_symcon_double_backward_{suffix}", *[_P] * 8, _I64, _I64, *_SIZES, *_TABLE_POINTERS,
                          ctypes.c_int)  # fmt: skip
    sizes, pointers = _kernel_args(plan, x)
    gg, gx, gw = x.new_empty(grad.shape), x.new_empty(x.shape), x.new_empty(weights.shape)
    fn(grad.data_ptr(), x.data_ptr(), weights.data_ptr(), grad_x.data_ptr(),
       None if grad_weights is None else grad_weights.data_ptr(), gg.data_ptr(), gx.data_ptr(), gw.data_ptr(),
       x.shape[0], x.shape[2], *sizes, *pointers, torch.get_num_threads())  # fmt: skip
    return gg, gx, gw


@symmetric_contraction_double_backward_op.register_fake
def _(grad, x, weights, grad_x, grad_weights, plan, backend):
    return x.new_empty(grad.shape), x.new_empty(x.shape), x.new_empty(weights.shape)


symmetric_contraction_backward_op.register_autograd(_double_backward, setup_context=_backward_setup)


# ---------------------------------------------------------------------------------------------------- front


def _resolve(x: torch.Tensor, backend: str | None) -> str:
    if backend is None:
        chosen = registry.resolve_backend(_OP, None, x.device, x.dtype)
        return "factorized" if chosen == "reference" else chosen
    if backend not in SYMMETRIC_CONTRACTION_BACKENDS:
        raise registry.BackendUnavailable(
            f"{_OP}: backend {backend!r} does not exist; choose one of {SYMMETRIC_CONTRACTION_BACKENDS} or None"
        )
    if backend in ("cpu", "triton"):
        registry.check_backend(_OP, backend, x)
    return backend


def _check(x, species, weights, tables, backend) -> str:
    if len(weights) != len(tables.blocks):
        raise ValueError(f"{_OP}: expected {len(tables.blocks)} weight tensors (one per output irrep and order), "
                         f"got {len(weights)}")  # fmt: skip
    same_floats(_OP, x=x, **{f"weights[{i}]": w for i, w in enumerate(weights)})
    backend = _resolve(x, backend)
    check_shape(_OP, "x", x, (None, None, _sizes(tables.name)[0]))
    elements = weights[0].shape[0] if weights[0].dim() == 3 else 0
    for i, (w, (_, nu, k)) in enumerate(zip(weights, tables.blocks)):
        check_shape(_OP, f"weights[{i}] (order {nu})", w, (elements, k, x.shape[1]))
    # traced graphs keep torch's own bounds check of index_select (a value check would be data-dependent)
    check_index(_OP, "species", species, elements, length=x.shape[0], device=x.device, what="elements",
                values=not tracing())  # fmt: skip
    return backend


def symmetric_contraction(x: torch.Tensor, species: torch.Tensor, weights: Sequence[torch.Tensor],
                          tables: SymmetricContractionTables, backend: str | None = None) -> torch.Tensor:  # fmt: skip
    """MACE's symmetric contraction of ``x`` with per-element weights.

    Args:
        x: ``(N, C, D)`` float32/float64, the atomic basis per node and channel (MACE's ``reshape_irreps``
            layout: ``D`` components of one copy of each input irrep).
        species: ``(N,)`` int64 element index of each node in ``[0, E)``.
        weights: one ``(E, K, C)`` tensor per ``tables.blocks`` entry (same dtype and device as ``x``).
        tables: the plan (see :class:`SymmetricContractionTables`).
        backend: one of :data:`SYMMETRIC_CONTRACTION_BACKENDS` or None (see the module docstring).

    Returns:
        ``(N, sum_o C (2 l_o + 1))``: per output irrep ``o`` a ``(C, 2l_o+1)`` block, the e3nn layout of
        ``C x o1 + C x o2 + ...``.
    """
    backend = _check(x, species, weights, tables, backend)
    if not tracing():  # a traced dict write would guard on it and recompile the next call
        registry.record(_OP, backend)
    if backend == "reference":
        return _reference(x, species, weights, tables)
    factored = torch.cat([torch.einsum("rk,ekc->erc", f, w) for f, w in zip(tables.factors, weights)], dim=1)
    per_node = factored.index_select(0, species)  # (N, R, C)
    inputs = x.transpose(1, 2)  # (N, D, C): channels innermost
    if backend == "factorized":
        out = _factorized(inputs, per_node, tables.name)
    else:
        out = symmetric_contraction_op(inputs.contiguous(), per_node, tables.name, backend)
    n = x.shape[0]
    return torch.cat([block.transpose(1, 2).reshape(n, -1) for block in out.split(list(tables.output_dims), dim=1)], dim=1)
