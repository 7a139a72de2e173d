"""``backend="cpu"``: fastso3's compiled CPU kernels as jax primitives lowered to XLA FFI custom calls.

Three primitives, each one kernel of the C ABI library (``fastso3/kernels/cpu``, built by its loader), reached
through the handler shim ``csrc/xla_ffi.cpp`` (compiled against ``jax.ffi.include_dir()`` on first use and
cached in ``$FASTSO3_CACHE`` by hash, like the kernels; linked against that library):

- ``fastso3_sh(x)``: spherical harmonics ``(..., 3) -> (..., (lmax+1)^2)`` from the plan's forward table;
- ``fastso3_sparse_accumulate(x1, x2)``: ``out[o] += c * x1[a] * x2[b]`` over a named, numpy-built table
  (here the spherical-harmonics gradient table of :func:`fastso3.core.sh.sh_grad_table`);
- ``fastso3_channelwise(a, b, c)``: the 4-linear form ``F(g, x, y, w)`` of a channel-wise ("uvu") table
  (:func:`fastso3.core.channelwise.channelwise_table`) contracted into one slot, ``slot``, from the other three
  (in :data:`~fastso3.core.channelwise.SLOT_ROLES` order); the channel-wise kernels' two ops.

Derivative rules (the torch ops' scheme): ``dY = SA(du, Y)`` with ``du`` the tangent of ``x / |x|`` (an
elementwise jnp expression XLA fuses), and the sparse accumulation is bilinear, so its jvp is two more
accumulations and its transpose one with the table's roles permuted. The channel-wise contraction is linear in
each operand: its jvp is a sum of contractions into the same slot, its transpose the contraction into the
operand's slot (the torch ops' scheme, ``fastso3.kernels.channelwise``). Every derivative is again these
primitives, so ``jax.grad``, ``jax.jvp``, ``jax.hessian`` work to any order. Batching (``jax.vmap``) moves the
mapped axis to the front: both kernels treat all leading axes as rows. Tables enter the custom call as
attributes, so the jaxpr holds only hashable parameters (``lmax``, ``normalization``, ``roles``).
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from ..core.channelwise import SLOT_ROLES, channelwise_table, kernel_entries
from ..core.sh import sh_grad_table, sh_plan
from ..kernels.cpu.loader import CPUKernelUnavailable, build_shared_object, library_path

__all__ = ["BACKENDS", "channelwise_cpu", "check_backend", "register_channelwise", "sh_cpu"]

BACKENDS = ("xla", "cpu")
_SHIM = Path(__file__).parent / "csrc" / "xla_ffi.cpp"
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def check_backend(backend: str) -> None:
    """Raise ValueError for an unknown backend and :class:`CPUKernelUnavailable` if ``'cpu'`` cannot be built."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cpu":
        _register_targets()


@functools.lru_cache(maxsize=None)
def _build_and_register() -> CPUKernelUnavailable | None:
    try:
        kernels = library_path()
        flags = ["-O2", "-std=c++17", "-shared", "-fPIC", f"-I{jax.ffi.include_dir()}", f"-DFASTSO3_JAX={jax.__version__}"]
        # Linked by absolute path: the shim resolves the kernels in the library the loader already loaded.
        shim = ctypes.CDLL(str(build_shared_object("fastso3_xla_ffi", [_SHIM], flags, (kernels,))))
    except (OSError, CPUKernelUnavailable) as exc:
        return exc if isinstance(exc, CPUKernelUnavailable) else CPUKernelUnavailable(str(exc))
    for kernel in ("sh", "sparse_accumulate", "cw_channeled", "cw_scalar"):
        for suffix in _SUFFIX.values():
            name = f"fastso3_xla_{kernel}_{suffix}"
            jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(shim, name)), platform="cpu")
    return None


def _register_targets() -> None:
    error = _build_and_register()
    if error is not None:
        raise CPUKernelUnavailable(f"fastso3.jax backend='cpu' is unavailable: {error}")


def _nthreads() -> int:
    """One OpenMP thread per kernel call: XLA runs computations on its own thread pool, and OpenMP teams started
    from those threads idle-spin against each other (measured: a fixed ~12 ms stall per call with 2 threads on
    2 cores, against 0.26 ms with 1 thread for 10,000 points)."""
    return 1


def _float(name: str, x: jax.Array) -> None:
    if np.dtype(x.dtype) not in _SUFFIX:
        raise TypeError(f"{name}: backend='cpu' needs float32 or float64, got {x.dtype}")


def _impl(prim: Primitive):
    """Eager calls compile the primitive alone (one cached jit per parameter set)."""

    @functools.lru_cache(maxsize=None)
    def compiled(**params):
        return jax.jit(functools.partial(prim.bind, **params))

    return lambda *args, **params: compiled(**params)(*args)


def _cpu_only(name: str):
    def lowering(ctx, *args, **params):
        raise NotImplementedError(f"{name}: backend='cpu' runs the compiled CPU kernels on CPU devices only; "
                                  "use backend='xla' on other platforms")  # fmt: skip

    return lowering


def _to_front(x: jax.Array, dim, size: int) -> jax.Array:
    """``x`` with its mapped axis first (broadcast to ``size`` if unmapped)."""
    if dim is None:
        return jnp.broadcast_to(x, (size, *x.shape))
    return jnp.moveaxis(x, dim, 0)


# --------------------------------------------------------------------------- spherical harmonics

_sh_p = Primitive("fastso3_sh")
_sh_p.def_impl(_impl(_sh_p))


@_sh_p.def_abstract_eval
def _sh_abstract(x, *, lmax, normalize, normalization):
    return jax.core.ShapedArray((*x.shape[:-1], (lmax + 1) ** 2), x.dtype)


def _sh_lowering(ctx, x, *, lmax, normalize, normalization):
    dtype = np.dtype(ctx.avals_in[0].dtype)
    plan = sh_plan(lmax, normalization)
    return jax.ffi.ffi_lowering(f"fastso3_xla_sh_{_SUFFIX[dtype]}")(
        ctx, x, normalize=np.int64(normalize), size=np.int64(plan.size), e_out=plan.fwd_out, e_in=plan.fwd_in,
        e_dim=plan.fwd_dim, coef=plan.fwd_coef.astype(dtype), scale=plan.scale.astype(dtype),
        nthreads=np.int64(_nthreads()))  # fmt: skip


def _unit_tangent(x: jax.Array, dx: jax.Array) -> jax.Array:
    """Tangent of ``u = x / |x|``: ``(dx - u (u . dx)) / |x|``, 0 at ``x = 0`` (where the kernel holds u at 0)."""
    r2 = jnp.sum(x * x, axis=-1, keepdims=True)
    inv = jnp.where(r2 > 0, jax.lax.rsqrt(jnp.where(r2 > 0, r2, 1)), 0)
    u = x * inv
    return (dx - u * jnp.sum(u * dx, axis=-1, keepdims=True)) * inv


def _sh_jvp(primals, tangents, *, lmax, normalize, normalization):
    (x,), (dx,) = primals, tangents
    y = _sh_p.bind(x, lmax=lmax, normalize=normalize, normalization=normalization)
    du = _unit_tangent(x, dx) if normalize else dx
    # dY^l/du is the plan's CG contraction of Y^{l-1} (fastso3.core.sh): the gradient table, jvp roles.
    return y, _sa_p.bind(du, y, table=("sh_grad", lmax, normalization), roles=(1, 0, 2))


def _sh_batch(args, dims, **params):
    (x,), (d,) = args, dims
    return _sh_p.bind(jnp.moveaxis(x, d, 0), **params), 0


ad.primitive_jvps[_sh_p] = _sh_jvp
batching.primitive_batchers[_sh_p] = _sh_batch
mlir.register_lowering(_sh_p, _sh_lowering, platform="cpu")
mlir.register_lowering(_sh_p, _cpu_only("spherical_harmonics"))


def sh_cpu(x: jax.Array, lmax: int, normalize: bool, normalization: str) -> jax.Array:
    """``(..., 3)`` float32/float64 -> ``(..., (lmax+1)^2)``: degrees ``0..lmax`` with the CPU kernel."""
    _float("spherical_harmonics", x)
    if x.ndim == 0 or x.shape[-1] != 3:
        raise ValueError(f"spherical_harmonics: x must have shape (..., 3), got {x.shape}")
    sh_plan(lmax, normalization)  # validates lmax and normalization
    _register_targets()
    return _sh_p.bind(x, lmax=int(lmax), normalize=bool(normalize), normalization=normalization)


# --------------------------------------------------------------------------- sparse accumulation

_sa_p = Primitive("fastso3_sparse_accumulate")
_sa_p.def_impl(_impl(_sa_p))


def _table(table: tuple, roles: tuple) -> tuple:
    kind, lmax, normalization = table
    if kind != "sh_grad":
        raise ValueError(f"unknown sparse-accumulation table {table!r}")
    return sh_grad_table(lmax, normalization, roles)


@_sa_p.def_abstract_eval
def _sa_abstract(x1, x2, *, table, roles):
    sizes = _table(table, roles)[2]
    if x1.dtype != x2.dtype or x1.shape[:-1] != x2.shape[:-1] or (x1.shape[-1], x2.shape[-1]) != sizes[1:]:
        raise ValueError(f"sparse accumulation with table {table}, roles {roles}: got x1 {x1.shape} {x1.dtype} and "
                         f"x2 {x2.shape} {x2.dtype}, expected (..., {sizes[1]}) and (..., {sizes[2]}) of one dtype")  # fmt: skip
    return jax.core.ShapedArray((*x1.shape[:-1], sizes[0]), x1.dtype)


def _sa_lowering(ctx, x1, x2, *, table, roles):
    dtype = np.dtype(ctx.avals_in[0].dtype)
    (e_out, e_in1, e_in2), coef, _ = _table(table, roles)
    return jax.ffi.ffi_lowering(f"fastso3_xla_sparse_accumulate_{_SUFFIX[dtype]}")(
        ctx, x1, x2, e_out=e_out, e_in1=e_in1, e_in2=e_in2, coef=coef.astype(dtype), nthreads=np.int64(_nthreads()))


def _sa_batch(args, dims, *, table, roles):
    size = next(x.shape[d] for x, d in zip(args, dims) if d is not None)
    x1, x2 = (_to_front(x, d, size) for x, d in zip(args, dims))
    return _sa_p.bind(x1, x2, table=table, roles=roles), 0


def _sa_transpose_x1(ct, x1, x2, *, table, roles):
    o, a, b = roles
    return _sa_p.bind(ct, x2, table=table, roles=(a, o, b))


def _sa_transpose_x2(ct, x1, x2, *, table, roles):
    o, a, b = roles
    return _sa_p.bind(ct, x1, table=table, roles=(b, o, a))


ad.defbilinear(_sa_p, _sa_transpose_x1, _sa_transpose_x2)
batching.primitive_batchers[_sa_p] = _sa_batch
mlir.register_lowering(_sa_p, _sa_lowering, platform="cpu")
mlir.register_lowering(_sa_p, _cpu_only("sparse accumulation"))


# --------------------------------------------------------------------------- channel-wise (uvu) products

_cw_p = Primitive("fastso3_channelwise")
_cw_p.def_impl(_impl(_cw_p))
# name -> (slots (out, x, y, w), coefficients, layouts) of fastso3.core.channelwise.channelwise_table
_CW_TABLES: dict[str, tuple] = {}


def register_channelwise(plan) -> str:
    """Register the channel-wise table of ``plan`` (ValueError if it is not channel-wise); returns its name."""
    name = f"uvu:{hash(plan.key)}"
    if name not in _CW_TABLES:
        _CW_TABLES[name] = channelwise_table(plan)
    return name


def _cw_dim(table: str, slot: int) -> int:
    return _CW_TABLES[table][2][slot][3]


@_cw_p.def_abstract_eval
def _cw_abstract(a, b, c, *, table, slot):
    roles = SLOT_ROLES[slot][1]
    expected = tuple(_cw_dim(table, r) for r in roles[1:])
    if min(a.ndim, b.ndim, c.ndim) == 0 or len({a.dtype, b.dtype, c.dtype}) != 1 or not (
            a.shape[:-1] == b.shape[:-1] == c.shape[:-1] and (a.shape[-1], b.shape[-1], c.shape[-1]) == expected):  # fmt: skip
        raise ValueError(f"channel-wise contraction into slot {slot}: got {a.shape}, {b.shape}, {c.shape} "
                         f"({a.dtype}, {b.dtype}, {c.dtype}), expected (..., d) with d = {expected}, one dtype")  # fmt: skip
    return jax.core.ShapedArray((*a.shape[:-1], _cw_dim(table, slot)), a.dtype)


def _cw_lowering(ctx, a, b, c, *, table, slot):
    dtype = np.dtype(ctx.avals_in[0].dtype)
    slots, coef, layouts = _CW_TABLES[table]
    kind, roles = SLOT_ROLES[slot]
    (io, ia, ib, ic), coef = kernel_entries(slots, coef, roles, kind)
    empty = np.zeros(0, np.int64)

    def layout(s):  # (base, step) of a channeled slot; none for the channel-free one
        base, step = layouts[s][:2]
        if base is None:
            return empty, empty
        return np.ascontiguousarray(base, np.int64), np.ascontiguousarray(step, np.int64)

    (a_base, a_step), (b_base, b_step), (c_base, c_step), (o_base, o_step) = (layout(r) for r in (*roles[1:], roles[0]))
    return jax.ffi.ffi_lowering(f"fastso3_xla_cw_{kind}_{_SUFFIX[dtype]}")(
        ctx, a, b, c, a_base=a_base, a_step=a_step, b_base=b_base, b_step=b_step, c_base=c_base, c_step=c_step,
        o_base=o_base, o_step=o_step, io=io, ia=ia, ib=ib, ic=ic, coef=coef.astype(dtype),
        channels=np.int64(layouts[0][2]), nthreads=np.int64(_nthreads()))  # fmt: skip


def _cw_contract(by_slot: dict, slot: int, table: str) -> jax.Array:
    """The form contracted into ``slot`` from ``by_slot`` (the other three slots' arrays)."""
    return _cw_p.bind(*(by_slot[r] for r in SLOT_ROLES[slot][1][1:]), table=table, slot=slot)


def _cw_jvp(primals, tangents, *, table, slot):
    out = _cw_p.bind(*primals, table=table, slot=slot)
    terms = [_cw_p.bind(*primals[:i], t, *primals[i + 1:], table=table, slot=slot)
             for i, t in enumerate(tangents) if type(t) is not ad.Zero]  # fmt: skip
    return out, functools.reduce(jnp.add, terms)  # jax calls a jvp rule only with some tangent non-zero


def _cw_transpose(ct, a, b, c, *, table, slot):
    operands = (a, b, c)
    linear = [i for i, x in enumerate(operands) if ad.is_undefined_primal(x)]
    if len(linear) != 1:
        raise NotImplementedError("channel-wise contraction: transposing in more than one operand at once")
    (i,) = linear
    roles = SLOT_ROLES[slot][1]
    if type(ct) is ad.Zero:
        return [None] * i + [ad.Zero(operands[i].aval)] + [None] * (2 - i)
    by_slot = {roles[0]: ct, **{r: x for j, (r, x) in enumerate(zip(roles[1:], operands)) if j != i}}
    return [None] * i + [_cw_contract(by_slot, roles[1 + i], table)] + [None] * (2 - i)


def _cw_batch(args, dims, *, table, slot):
    size = next(x.shape[d] for x, d in zip(args, dims) if d is not None)
    return _cw_p.bind(*(_to_front(x, d, size) for x, d in zip(args, dims)), table=table, slot=slot), 0


ad.primitive_jvps[_cw_p] = _cw_jvp
ad.primitive_transposes[_cw_p] = _cw_transpose
batching.primitive_batchers[_cw_p] = _cw_batch
mlir.register_lowering(_cw_p, _cw_lowering, platform="cpu")
mlir.register_lowering(_cw_p, _cpu_only("channel-wise tensor product"))


def channelwise_cpu(table: str, x1: jax.Array, x2: jax.Array, w: jax.Array) -> jax.Array:
    """A registered channel-wise table (:func:`register_channelwise`) on per-sample inputs of one float dtype:
    x1 ``(..., irreps_in1.dim)``, x2 ``(..., irreps_in2.dim)``, w ``(..., weight_numel)`` (the table's weight
    layout ``w[p * C + u]``, coefficients in the table) -> ``(..., irreps_out.dim)``."""
    for name, x in (("x1", x1), ("x2", x2), ("weights", w)):
        _float(f"channel-wise tensor product {name}", x)
    _register_targets()
    return _cw_contract({1: x1, 2: x2, 3: w}, 0, table)
