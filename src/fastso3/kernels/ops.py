"""torch.library ops: schemas, fake (meta) implementations, autograd.

Each op takes a concrete ``backend`` string (resolved by the public front, see ``registry``) and
dispatches to the reference twin or the compiled kernel. Gradients are built from the same ops,
so derivatives of every order work and ``torch.compile(fullgraph=True)`` sees opaque ops:

- ``sparse_accumulate`` is bilinear; its backward is two more ``sparse_accumulate`` calls with
  the index roles swapped.
- ``spherical_harmonics``' backward is one ``sparse_accumulate`` of the cotangent with the saved
  output (the gradient of a degree-l harmonic is a CG contraction of degree l-1), followed by the
  chain rule through ``x / |x|`` (``normalize_vjp``, whose own derivative is plain torch).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..core.sh import SHPlan, sh_grad_table, sh_plan
from . import registry
from ._checks import backend_for, check_index, check_shape, same_floats
from .reference import sh as reference_sh
from .reference import sparse_accumulation as reference_sa

__all__ = [
    "normalize_vjp_op",
    "sparse_accumulate_op",
    "sparse_accumulate_table_op",
    "spherical_harmonics_op",
    "sh_tables",
]


def _nthreads() -> int:
    return torch.get_num_threads()


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


# --------------------------------------------------------------------------- sparse accumulation


def _sparse_accumulate(x1, x2, idx_out, idx1, idx2, mult, output_size, backend):
    if backend == "reference":
        return reference_sa.sparse_accumulate(x1, x2, idx_out, idx1, idx2, mult, output_size)
    if backend == "triton":
        from .triton import kernels as triton_kernels

        return triton_kernels.sparse_accumulate(x1, x2, idx_out, idx1, idx2, mult, output_size)
    from .cpu.loader import load_library

    lead = x1.shape[:-1]
    n1, n2 = x1.shape[-1], x2.shape[-1]
    a = x1.reshape(lead.numel(), n1).contiguous()  # explicit rows: a zero-width input has no -1 to infer
    b = x2.reshape(lead.numel(), n2).contiguous()
    out = torch.empty(a.shape[0], output_size, dtype=x1.dtype, device=x1.device)
    idx_out, idx1, idx2, mult = (t.contiguous() for t in (idx_out, idx1, idx2, mult))
    fn = getattr(load_library(), f"fastso3_sparse_accumulate_{_SUFFIX[x1.dtype]}")
    fn(_ptr(a), _ptr(b), _ptr(out), a.shape[0], n1, n2, output_size, idx_out.numel(),
       _ptr(idx_out), _ptr(idx1), _ptr(idx2), _ptr(mult), _nthreads())  # fmt: skip
    return out.reshape(*lead, output_size)


_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


@torch.library.custom_op("fastso3::sparse_accumulate", mutates_args=())
def sparse_accumulate_op(
    x1: torch.Tensor,
    x2: torch.Tensor,
    idx_out: torch.Tensor,
    idx1: torch.Tensor,
    idx2: torch.Tensor,
    mult: torch.Tensor,
    output_size: int,
    backend: str,
) -> torch.Tensor:
    """x1: (..., n1), x2: (..., n2) with equal leading shapes; int64 indices and mult (x dtype): (nnz,).

    Returns ``out: (..., output_size)`` with ``out[..., idx_out[k]] += x1[..., idx1[k]] * x2[..., idx2[k]] * mult[k]``.
    Checks everything its kernel reads (see ``_checks``), also when called directly or compiled.
    """
    _check_sparse_accumulate("sparse_accumulate", x1, x2, idx_out, idx1, idx2, mult, output_size, backend)
    registry.record("sparse_accumulate", backend)
    return _sparse_accumulate(x1, x2, idx_out, idx1, idx2, mult, output_size, backend)


def _check_sparse_accumulate(op, x1, x2, idx_out, idx1, idx2, mult, output_size, backend) -> None:
    """In the public function's terms: X1, X2, idx_output, idx_1, idx_2, multipliers."""
    same_floats(op, X1=x1, X2=x2, multipliers=mult)
    backend_for(op, backend, x1)
    if x1.dim() == 0 or x1.shape[:-1] != x2.shape[:-1]:
        raise ValueError(f"{op}: X1 {tuple(x1.shape)} and X2 {tuple(x2.shape)} must have the same leading dimensions")
    if output_size < 0:
        raise ValueError(f"{op}: output_size must be non-negative, got {output_size}")
    check_shape(op, "multipliers", mult, (None,))
    nnz = mult.numel()
    for name, idx, bound in (("idx_output", idx_out, output_size), ("idx_1", idx1, x1.shape[-1]), ("idx_2", idx2, x2.shape[-1])):
        check_index(op, name, idx, bound, length=nnz, device=x1.device)


@sparse_accumulate_op.register_fake
def _(x1, x2, idx_out, idx1, idx2, mult, output_size, backend):
    return x1.new_empty(*x1.shape[:-1], output_size)


def _sa_setup(ctx, inputs, output):
    x1, x2, idx_out, idx1, idx2, mult, output_size, backend = inputs
    ctx.save_for_backward(x1, x2, idx_out, idx1, idx2, mult)
    ctx.backend = backend


def _sa_backward(ctx, grad):
    x1, x2, idx_out, idx1, idx2, mult = ctx.saved_tensors
    g1 = g2 = None
    if ctx.needs_input_grad[0]:
        g1 = sparse_accumulate_op(grad, x2, idx1, idx_out, idx2, mult, x1.shape[-1], ctx.backend)
    if ctx.needs_input_grad[1]:
        g2 = sparse_accumulate_op(grad, x1, idx2, idx_out, idx1, mult, x2.shape[-1], ctx.backend)
    return g1, g2, None, None, None, None, None, None


sparse_accumulate_op.register_autograd(_sa_backward, setup_context=_sa_setup)


# --------------------------------------------------------------------------- table-keyed sparse accumulation
# Library-internal tables (e.g. the spherical-harmonics gradient) are named, not passed as tensors:
# constant tensors inside a graph break torch.compile's tracing of the backward. A table has three
# slots (index arrays) and one coefficient array; ``roles = [o, a, b]`` says which slot indexes the
# output, ``x1`` and ``x2``. Differentiating permutes the roles, so every derivative is this same op.


def _table_arrays(table: str, roles: tuple[int, int, int]) -> tuple[tuple[np.ndarray, ...], np.ndarray, tuple[int, int, int]]:
    """((idx_out, idx1, idx2), coef, sizes) of the named table for these roles, sorted by output."""
    kind, *args = table.split(":")
    if kind == "sh_grad":
        return sh_grad_table(int(args[0]), args[1], roles)
    raise ValueError(f"unknown sparse-accumulation table {table!r}")


@functools.lru_cache(maxsize=None)
def _table_tensors(table: str, roles: tuple[int, int, int], device: torch.device, dtype: torch.dtype):
    """(idx_out, idx1, idx2, coef) for these roles as tensors on ``device``, built once."""
    slots, coef, _ = _table_arrays(table, roles)
    idx = [torch.tensor(sl, dtype=torch.int64, device=device) for sl in slots]
    return (*idx, torch.tensor(coef, dtype=dtype, device=device))


@torch.library.custom_op("fastso3::sparse_accumulate_table", mutates_args=())
def sparse_accumulate_table_op(x1: torch.Tensor, x2: torch.Tensor, table: str, roles: list[int], backend: str) -> torch.Tensor:
    """Sparse accumulation with a named library table; see the comment above."""
    op = "sparse_accumulate_table"
    same_floats(op, x1=x1, x2=x2)
    backend_for("sparse_accumulate", backend, x1)
    if sorted(roles) != [0, 1, 2]:
        raise ValueError(f"{op}: roles must be a permutation of 0, 1, 2, got {roles}")
    dims = _table_arrays(table, tuple(roles))[2]
    check_shape(op, "x2", x2, (*x1.shape[:-1], dims[2]))
    check_shape(op, "x1", x1, (*x1.shape[:-1], dims[1]))
    idx_out, idx1, idx2, coef = _table_tensors(table, tuple(roles), x1.device, x1.dtype)
    return _sparse_accumulate(x1, x2, idx_out, idx1, idx2, coef, dims[0], backend)


@sparse_accumulate_table_op.register_fake
def _(x1, x2, table, roles, backend):
    return x1.new_empty(*x1.shape[:-1], _table_arrays(table, tuple(roles))[2][0])


def _sat_setup(ctx, inputs, output):
    x1, x2, table, roles, backend = inputs
    ctx.save_for_backward(x1, x2)
    ctx.table, ctx.roles, ctx.backend = table, roles, backend


def _sat_backward(ctx, grad):
    x1, x2 = ctx.saved_tensors
    o, a, b = ctx.roles
    g1 = g2 = None
    if ctx.needs_input_grad[0]:
        g1 = sparse_accumulate_table_op(grad, x2, ctx.table, [a, o, b], ctx.backend)
    if ctx.needs_input_grad[1]:
        g2 = sparse_accumulate_table_op(grad, x1, ctx.table, [b, o, a], ctx.backend)
    return g1, g2, None, None, None


sparse_accumulate_table_op.register_autograd(_sat_backward, setup_context=_sat_setup)


# --------------------------------------------------------------------------- spherical harmonics


@functools.lru_cache(maxsize=None)
def sh_tables(lmax: int, normalization: str, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The plan's forward tables as tensors on ``device`` (indices int64, coefficients in ``dtype``), built once."""
    plan = sh_plan(lmax, normalization)

    def t(a: np.ndarray, dt) -> torch.Tensor:
        return torch.tensor(a, dtype=dt, device=device)

    return {
        "fwd_out": t(plan.fwd_out, torch.int64),
        "fwd_in": t(plan.fwd_in, torch.int64),
        "fwd_dim": t(plan.fwd_dim, torch.int64),
        "fwd_coef": t(plan.fwd_coef, dtype),
        "scale": t(plan.scale, dtype),
    }


def _sh_cpu(x: torch.Tensor, plan: SHPlan, normalize: bool) -> torch.Tensor:
    from .cpu.loader import load_library

    tab = sh_tables(plan.lmax, plan.normalization, x.device, x.dtype)
    pts = x.reshape(x.shape[:-1].numel(), 3).contiguous()
    out = torch.empty(pts.shape[0], plan.size, dtype=x.dtype, device=x.device)
    fn = getattr(load_library(), f"fastso3_sh_forward_{_SUFFIX[x.dtype]}")
    fn(_ptr(pts), _ptr(out), pts.shape[0], int(normalize), plan.size, tab["fwd_coef"].numel(),
       _ptr(tab["fwd_out"]), _ptr(tab["fwd_in"]), _ptr(tab["fwd_dim"]), _ptr(tab["fwd_coef"]),
       _ptr(tab["scale"]), _nthreads())  # fmt: skip
    return out.reshape(*x.shape[:-1], plan.size)


@torch.library.custom_op("fastso3::spherical_harmonics", mutates_args=())
def spherical_harmonics_op(x: torch.Tensor, lmax: int, normalize: bool, normalization: str, backend: str) -> torch.Tensor:
    """x: (..., 3) float -> (..., (lmax+1)**2): all degrees 0..lmax in e3nn's basis and ``normalization``."""
    op = "spherical_harmonics"
    same_floats(op, x=x)
    backend_for(op, backend, x)
    if x.dim() == 0 or x.shape[-1] != 3:
        raise ValueError(f"{op}: x must have shape (..., 3), got {tuple(x.shape)}")
    if lmax < 0:
        raise ValueError(f"{op}: lmax must be non-negative, got {lmax}")
    registry.record(op, backend)
    plan = sh_plan(lmax, normalization)
    if backend == "reference":
        return reference_sh.spherical_harmonics(x, plan, normalize)
    return _sh_cpu(x, plan, normalize)


@spherical_harmonics_op.register_fake
def _(x, lmax, normalize, normalization, backend):
    return x.new_empty(*x.shape[:-1], (lmax + 1) ** 2)


def _sh_setup(ctx, inputs, output):
    x, lmax, normalize, normalization, backend = inputs
    ctx.save_for_backward(x, output)
    ctx.lmax, ctx.normalize, ctx.normalization, ctx.backend = lmax, normalize, normalization, backend


def _sh_backward(ctx, grad):
    x, y = ctx.saved_tensors
    # d y / d u as a CG contraction of the cotangent with the (saved, differentiable) output.
    table = f"sh_grad:{ctx.lmax}:{ctx.normalization}"
    grad_u = sparse_accumulate_table_op(grad, y, table, [0, 1, 2], ctx.backend)
    if ctx.normalize:
        grad_u = normalize_vjp_op(x, grad_u, ctx.backend)
    return grad_u, None, None, None, None


spherical_harmonics_op.register_autograd(_sh_backward, setup_context=_sh_setup)


# --------------------------------------------------------------------------- chain rule of x / |x|


@torch.library.custom_op("fastso3::normalize_vjp", mutates_args=())
def normalize_vjp_op(x: torch.Tensor, g: torch.Tensor, backend: str) -> torch.Tensor:
    """x, g: (..., 3) -> (..., 3): the cotangent of ``x`` for ``u = x / |x|`` given the cotangent ``g`` of ``u``.

    ``(g - u (u . g)) / |x|``, and 0 where ``x = 0`` (where ``u`` is defined as 0).
    """
    op = "normalize_vjp"
    same_floats(op, x=x, g=g)
    backend_for(op, backend, x)
    check_shape(op, "g", g, tuple(x.shape))
    check_shape(op, "x", x, (*x.shape[:-1], 3))
    if backend == "reference":
        return reference_sh.normalize_vjp(x, g)
    from .cpu.loader import load_library

    a, b = x.reshape(x.shape[:-1].numel(), 3).contiguous(), g.reshape(g.shape[:-1].numel(), 3).contiguous()
    out = torch.empty_like(a)
    getattr(load_library(), f"fastso3_normalize_vjp_{_SUFFIX[x.dtype]}")(_ptr(a), _ptr(b), _ptr(out), a.shape[0], _nthreads())
    return out.reshape(x.shape)


@normalize_vjp_op.register_fake
def _(x, g, backend):
    return torch.empty_like(x)


def _nv_setup(ctx, inputs, output):
    x, g, backend = inputs
    ctx.save_for_backward(x, g)
    ctx.backend = backend


def _nv_backward(ctx, v):
    x, g = ctx.saved_tensors
    grad_x = grad_g = None
    if ctx.needs_input_grad[1]:
        # linear in g with a symmetric matrix: the cotangent of g is the same map applied to v
        grad_g = normalize_vjp_op(x, v, ctx.backend)
    if ctx.needs_input_grad[0]:
        grad_x = reference_sh.normalize_vjp_grad_x(x, g, v)
    return grad_x, grad_g, None


normalize_vjp_op.register_autograd(_nv_backward, setup_context=_nv_setup)
