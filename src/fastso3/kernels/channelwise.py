"""Channel-wise ("uvu") tensor products as two table-driven ops, channels innermost.

A table has four index slots and a coefficient per entry; slot 0 indexes the output ``g``, slot 1 the
input ``x``, slot 2 the channel-free input ``y`` (e.g. spherical harmonics) and slot 3 the weights ``w``:

    F(g, x, y, w) = sum_e c[e] sum_u g[o_e, u] x[a_e, u] y[s_e] w[b_e, u]      (per sample)

Every derivative of the product ``out = dF/dg`` is a partial derivative of this 4-linear form, i.e. one of

- ``cw_channeled(A, B, S)``: ``out[i, u] = sum_e c A[.., u] B[.., u] S[..]`` (output in a channeled slot),
- ``cw_scalar(A, B, D)``:    ``out[i]    = sum_e c sum_u A[.., u] B[.., u] D[.., u]`` (output in slot 2),

with ``roles`` naming which table slot indexes the output and each operand. Autograd permutes the roles,
so derivatives of every order reuse the two kernels. Channeled tensors are ``(Z, n, C)``, slot-2
tensors ``(Z, n)``. Tables are named (see :func:`register_table`) rather than passed as tensors, which
keeps constant tensors out of traced graphs.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np
import torch

from ..core.channelwise import SLOT_ROLES, kernel_entries
from . import registry
from ._checks import backend_for, check_shape, same_floats
from ._multilinear import register_multilinear_autograd

__all__ = [
    "SCALAR_SLOT",
    "channelwise_factored_tensor_product",
    "channelwise_tensor_product",
    "cw_factored_op",
    "cw_channeled_op",
    "cw_contract_op",
    "cw_scalar_op",
    "register_channelwise_plan",
    "register_table",
]

SCALAR_SLOT = 2
# name -> (index slots, coefficients, per-slot layout); a layout is (row bases, row steps, channels, dim)
# for a channeled slot and (None, None, 0, dim) for the channel-free slot 2.
_TABLES: dict[str, tuple] = {}


def register_table(name: str, slots: tuple, coef: np.ndarray, layouts: tuple) -> str:
    """Register a table under ``name``: four int64 index arrays, float64 coefficients, four slot layouts.

    A channeled slot's layout is ``(base, step, C, dim)``: row ``r``, channel ``u`` of a sample lives at
    ``base[r] + u * step[r]`` of its ``dim`` values (e3nn's mul_ir blocks have step ``2l+1``).
    """
    if name in _TABLES:
        return name
    if len(slots) != 4 or len(layouts) != 4 or any(len(sl) != len(coef) for sl in slots):
        raise ValueError("a channel-wise table needs four index arrays of the coefficients' length and four layouts")
    for sl, (base, _, _, dim) in zip(slots, layouts):
        rows = dim if base is None else len(base)
        if len(sl) and (sl.min() < 0 or sl.max() >= rows):
            raise ValueError(f"table {name!r}: an index is out of range for its slot of {rows} rows")
    _TABLES[name] = (tuple(np.asarray(sl, dtype=np.int64) for sl in slots), np.asarray(coef, np.float64), layouts)
    return name


@functools.lru_cache(maxsize=None)
def _tensors(name: str, roles: tuple[int, ...], device: torch.device, dtype: torch.dtype):
    slots, coef, _ = _TABLES[name]
    order = np.argsort(slots[roles[0]], kind="stable")  # output-sorted: accumulation stays in cache
    idx = [torch.from_numpy(slots[r][order].copy()).to(device) for r in roles]
    return (*idx, torch.from_numpy(coef[order].copy()).to(device=device, dtype=dtype))


@functools.lru_cache(maxsize=None)
def _layout(name: str, slot: int, device: torch.device):
    """(base, step, flat index (rows, C)) tensors of a channeled slot."""
    base, step, channels, _ = _TABLES[name][2][slot]
    flat = base[:, None] + np.arange(channels)[None, :] * step[:, None]
    return tuple(torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(device) for a in (base, step, flat))


@functools.cache
def _entries(name: str, roles: tuple[int, ...], kind: str, device: torch.device, dtype: torch.dtype):
    """:func:`fastso3.core.channelwise.kernel_entries` as tensors on ``device``."""
    slots, coef, _ = _TABLES[name]
    idx, coef = kernel_entries(slots, coef, roles, kind)
    return (*(torch.from_numpy(i).to(device) for i in idx), torch.from_numpy(coef).to(device=device, dtype=dtype))


def _dim(name: str, slot: int) -> int:
    return _TABLES[name][2][slot][3]


def _channels(name: str) -> int:
    return _TABLES[name][2][0][2]


def check_table_roles(op: str, tables: dict, name: str, roles: list[int], slots: int) -> None:
    """``name`` is a registered table and ``roles`` a permutation of its ``slots`` slots."""
    if name not in tables:
        raise ValueError(f"{op}: unknown table {name!r} (tables are registered from plans by the public functions)")
    if sorted(roles) != list(range(slots)):
        raise ValueError(f"{op}: roles must be a permutation of 0..{slots - 1}, got {roles}")


def _check(op: str, a, b, c, name: str, roles: list[int], backend: str) -> None:
    """What the kernels read: one float dtype and device, (Z, dim of its slot) operands, a known backend."""
    same_floats(op, a=a, b=b, c=c)
    backend_for("channelwise_tensor_product", backend, a)
    check_table_roles(op, _TABLES, name, roles, 4)
    for label, t, slot in zip("abc", (a, b, c), roles[1:]):
        check_shape(op, label, t, (a.shape[0], _dim(name, slot)))


def _run(kind: str, a, b, c, name: str, roles: list[int], backend: str, out: torch.Tensor | None = None) -> torch.Tensor:
    """The table op; ``out``: an optional contiguous ``(Z, n_out)`` tensor to write the result into."""
    if out is not None and backend != "cpu":
        return out.copy_(_run(kind, a, b, c, name, roles, backend))
    z, n_out = a.shape[0], _dim(name, roles[0])
    io, ia, ib, ic, coef = (_entries(name, tuple(roles), kind, a.device, a.dtype) if backend == "cpu"
                            else _tensors(name, tuple(roles), a.device, a.dtype))  # fmt: skip
    channeled = [0, 1, 2] if kind == "scalar" else [0, 1]  # which of (a, b, c) carry channels
    if backend == "reference":
        rows = [t[:, _layout(name, roles[1 + i], t.device)[2]] if i in channeled else t for i, t in enumerate((a, b, c))]
        if kind == "channeled":
            terms = rows[0][:, ia] * rows[1][:, ib] * (rows[2][:, ic] * coef).unsqueeze(-1)
            flat = _layout(name, roles[0], a.device)[2]
            out_rows = terms.new_zeros(z, flat.shape[0], flat.shape[1]).index_add_(1, io, terms)
            out = out_rows.new_zeros(z, n_out)
            out[:, flat] = out_rows
            return out
        terms = (rows[0][:, ia] * rows[1][:, ib] * rows[2][:, ic]).sum(-1) * coef
        return terms.new_zeros(z, n_out).index_add_(1, io, terms)
    if backend == "triton":
        from .triton import kernels as triton_kernels

        layouts = [None if slot == SCALAR_SLOT else _layout(name, slot, a.device)[:2] for slot in roles]
        return triton_kernels.channelwise(kind, a, b, c, layouts, n_out, (io, ia, ib, ic, coef), _channels(name))
    from .cpu.loader import load_library

    a, b, c = a.contiguous(), b.contiguous(), c.contiguous()
    out = new_output(z, n_out, like=a) if out is None else out

    def described(t, slot):
        base, step, _ = _layout(name, slot, t.device)
        return t.data_ptr(), t.shape[1], base.numel(), base.data_ptr(), step.data_ptr()

    ops = [described(a, roles[1]), described(b, roles[2])]
    ops.append(described(c, roles[3]) if kind == "scalar" else (c.data_ptr(), c.shape[1]))
    target = described(out, roles[0]) if kind == "channeled" else (out.data_ptr(), n_out)
    fn = getattr(load_library(), f"fastso3_cw_{kind}_{'f32' if a.dtype == torch.float32 else 'f64'}")
    fn(*ops[0], *ops[1], *ops[2], *target, z, _channels(name), coef.numel(), io.data_ptr(), ia.data_ptr(),
       ib.data_ptr(), ic.data_ptr(), coef.data_ptr(), torch.get_num_threads())  # fmt: skip
    return out


_HUGE_PAGE_BYTES = 1 << 23  # outputs from 8 MiB get huge-page advice before their first touch


def new_output(*shape: int, like: torch.Tensor, zeros: bool = False, advise: bool = True) -> torch.Tensor:
    """A fresh tensor like ``like`` for a CPU kernel to fill: from 8 MiB (and ``advise``), advised to use
    transparent huge pages before anything touches it (``fastso3_advise_huge_pages``). ``zeros``: zero-filled."""
    out = like.new_empty(shape)
    size = out.numel() * out.element_size()
    if advise and size >= _HUGE_PAGE_BYTES:
        from .cpu.loader import library_function

        library_function("fastso3_advise_huge_pages", ctypes.c_void_p, ctypes.c_int64)(out.data_ptr(), size)
    return out.zero_() if zeros else out


@torch.library.custom_op("fastso3::cw_channeled", mutates_args=())
def cw_channeled_op(a: torch.Tensor, b: torch.Tensor, s: torch.Tensor, table: str, roles: list[int], backend: str) -> torch.Tensor:
    """a, b: (Z, dim) channeled, s: (Z, ns) channel-free -> (Z, dim_out); ``roles`` = slots of (out, a, b, s)."""
    _check("cw_channeled", a, b, s, table, roles, backend)
    registry.record("channelwise_tensor_product", backend)
    return _run("channeled", a, b, s, table, roles, backend)


@cw_channeled_op.register_fake
def _(a, b, s, table, roles, backend):
    return a.new_empty(a.shape[0], _dim(table, roles[0]))


@torch.library.custom_op("fastso3::cw_scalar", mutates_args=())
def cw_scalar_op(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor, table: str, roles: list[int], backend: str) -> torch.Tensor:
    """a, b, d: (Z, dim) channeled -> (Z, n_out) in the channel-free slot; ``roles`` = slots of (out, a, b, d)."""
    _check("cw_scalar", a, b, d, table, roles, backend)
    registry.record("channelwise_tensor_product", backend)
    return _run("scalar", a, b, d, table, roles, backend)


@cw_scalar_op.register_fake
def _(a, b, d, table, roles, backend):
    return a.new_empty(a.shape[0], _dim(table, roles[0]))


def _setup(ctx, inputs, output):
    *tensors, table, roles, backend = inputs
    ctx.save_for_backward(*tensors)
    ctx.table, ctx.roles, ctx.backend = table, roles, backend


def _backward(ctx, g):
    """The op contracted the 4-linear form into slot ``roles[0]``; its gradients are the contractions into its
    operands' slots with ``g`` in that slot, all from one :func:`cw_contract_op`."""
    by_slot: list = [None] * 4
    by_slot[ctx.roles[0]] = g
    for slot, t in zip(ctx.roles[1:], ctx.saved_tensors):
        by_slot[slot] = t
    wanted = [slot for slot, need in zip(ctx.roles[1:], ctx.needs_input_grad[:3]) if need]
    grads = dict(zip(wanted, cw_contract_op(*by_slot, ctx.table, wanted, ctx.backend))) if wanted else {}
    return (*(grads.get(slot) for slot in ctx.roles[1:]), None, None, None)


cw_channeled_op.register_autograd(_backward, setup_context=_setup)
cw_scalar_op.register_autograd(_backward, setup_context=_setup)


def _check_contract(by_slot: list, table: str, outputs: list[int], backend: str) -> None:
    """What the kernels read: distinct output slots, every other slot given, one float dtype and device,
    ``(Z, dim of its slot)`` operands, a known backend."""
    if not outputs or len(set(outputs)) != len(outputs) or any(s not in range(4) for s in outputs):
        raise ValueError(f"cw_contract: outputs must be distinct slots among 0..3, got {outputs}")
    if table not in _TABLES:
        raise ValueError(f"cw_contract: unknown table {table!r} (tables are registered from plans by the public functions)")
    missing = [r for r in range(4) if by_slot[r] is None and any(r != s for s in outputs)]
    if missing:
        raise ValueError(f"cw_contract: slots {missing} are operands of the outputs {outputs} and must be given")
    first = same_floats("cw_contract", **{f"slot {r}": t for r, t in enumerate(by_slot)})
    backend_for("channelwise_tensor_product", backend, first)
    for r, t in enumerate(by_slot):
        if t is not None:
            check_shape("cw_contract", f"slot {r}", t, (first.shape[0], _dim(table, r)))


def _run_contract(by_slot: list, table: str, outputs: list[int], backend: str,
                  outs: list[torch.Tensor] | None = None) -> list[torch.Tensor]:  # fmt: skip
    """The contractions into ``outputs`` (written into ``outs``, contiguous ``(Z, dim)`` tensors or None, if
    given): one pass of the CPU kernel over the samples, else one table op each (the reference twin)."""
    if backend != "cpu":
        return [_contract(by_slot, s, table, backend, o) for s, o in zip(outputs, outs or [None] * len(outputs))]
    from .cpu.loader import library_function

    p, i64 = ctypes.c_void_p, ctypes.c_int64
    tensors = [None if t is None else t.contiguous() for t in by_slot]
    like = next(t for t in tensors if t is not None)
    z, nc = like.shape[0], _channels(table)
    layouts = [(None, None) if r == SCALAR_SLOT else _layout(table, r, like.device)[:2] for r in range(4)]
    outs = [new_output(z, _dim(table, s), like=like) if o is None else o for s, o in zip(outputs, outs or [None] * len(outputs))]
    entries = [_entries(table, SLOT_ROLES[s][1], SLOT_ROLES[s][0], like.device, like.dtype) for s in outputs]

    def array(ctype, values):
        return (ctype * len(values))(*values)

    def address(t):
        return None if t is None else t.data_ptr()

    fn = library_function(f"fastso3_cw_contract_{'f32' if like.dtype == torch.float32 else 'f64'}",
                          p, p, p, p, p, i64, p, p, p, p, p, p, i64, i64, ctypes.c_int)  # fmt: skip
    fn(array(p, [address(t) for t in tensors]), array(i64, [_dim(table, r) for r in range(4)]),
       array(i64, [_dim(table, r) if base is None else base.numel() for r, (base, _) in enumerate(layouts)]),
       array(p, [address(base) for base, _ in layouts]), array(p, [address(step) for _, step in layouts]),
       len(outputs), array(i64, outputs), array(i64, [r for s in outputs for r in SLOT_ROLES[s][1][1:]]),
       array(p, [o.data_ptr() for o in outs]), array(i64, [e[-1].numel() for e in entries]),
       array(p, [i.data_ptr() for e in entries for i in e[:4]]), array(p, [e[4].data_ptr() for e in entries]),
       z, nc, torch.get_num_threads())  # fmt: skip
    return outs


@torch.library.custom_op("fastso3::cw_contract", mutates_args=())
def cw_contract_op(
    t0: torch.Tensor | None, t1: torch.Tensor | None, t2: torch.Tensor | None, t3: torch.Tensor | None, table: str,
    outputs: list[int], backend: str,
) -> list[torch.Tensor]:  # fmt: skip
    """The contractions of the 4-linear form of ``table`` into the slots ``outputs`` (0 out, 1 x1, 2 x2, 3 w)
    from the tensors of the other slots, ``(Z, dim of the slot)`` each (None only for a slot that is the sole
    output) -> one ``(Z, dim)`` tensor per output slot. The gradients of a product in one op: on ``"cpu"`` one
    pass over the samples that loads each operand once."""
    by_slot = [t0, t1, t2, t3]
    _check_contract(by_slot, table, outputs, backend)
    registry.record("channelwise_tensor_product", backend)
    return _run_contract(by_slot, table, outputs, backend)


@cw_contract_op.register_fake
def _(t0, t1, t2, t3, table, outputs, backend):
    _check_contract([t0, t1, t2, t3], table, outputs, backend)
    like = next(t for t in (t0, t1, t2, t3) if t is not None)
    return [like.new_empty(like.shape[0], _dim(table, s)) for s in outputs]


register_multilinear_autograd(cw_contract_op, 4)


def _plan_table_name(plan) -> str:
    return f"uvu:{hash(plan.key)}"


def register_channelwise_plan(plan) -> str:
    """Register the table of a channel-wise plan (``fastso3.core.channelwise``); returns its name."""
    from ..core.channelwise import channelwise_table

    name = _plan_table_name(plan)
    if name not in _TABLES:
        register_table(name, *channelwise_table(plan))
    return name


def channelwise_tensor_product(plan, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor, backend: str) -> torch.Tensor:
    """A registered channel-wise plan on per-sample inputs, in e3nn's layouts.

    x1: ``(Z, irreps_in1.dim)``, x2: ``(Z, irreps_in2.dim)``, weight: ``(Z, weight_numel)``, one dtype
    -> ``(Z, irreps_out.dim)``. One table op; every derivative is the same pair of kernels.
    """
    return cw_channeled_op(x1, weight, x2, _plan_table_name(plan), [0, 1, 3, 2], backend)


# --- per-sample weights as two factors ``w = h @ M`` (a radial MLP's last hidden layer and last linear layer) ---

FACTOR_SLOTS = 5  # g, x1, x2, h, M: F(g, x1, x2, h M) is a 5-linear form, contracted by one op into any slots
# Samples per block of the CPU path: the block's weights (up to 16 MiB, half this machine's L3) stay in cache
# between the GEMM that forms them and the kernels that read them, and the (Z, weight_numel) weights are never
# stored. Smaller blocks measured slower on 2 loaded cores (MACE-L, 4000 edges: 2 MiB blocks 4x the time of
# one block): each block is a few parallel regions, and each waits for a preempted thread.
_BLOCK_BYTES = 1 << 24


def _contract(by_slot: list, slot: int, table: str, backend: str, out: torch.Tensor | None = None) -> torch.Tensor:
    """The 4-linear form of ``table`` contracted into ``slot`` (0 out, 1 x1, 2 x2, 3 w) from the other three,
    written into ``out`` if given."""
    kind, roles = SLOT_ROLES[slot]
    roles = list(roles)
    return _run(kind, *(by_slot[r] for r in roles[1:]), table, roles, backend, out)


def _check_factored(slots: list, outputs: list, table: str) -> None:
    """What the kernels will read: slots present, one dtype and device, matching shapes."""
    if not outputs or len(set(outputs)) != len(outputs) or any(s not in range(FACTOR_SLOTS) for s in outputs):
        raise ValueError(f"cw_factored: outputs must be distinct slots among 0..4, got {outputs}")
    if any(t is None for t in slots[1:]) or (slots[0] is None and outputs != [0]):
        raise ValueError("cw_factored: x1, x2, h and m are required; g may be None only for outputs == [0]")
    same_floats("cw_factored", **dict(zip(("g", "x1", "x2", "h", "m"), slots)))
    if table not in _TABLES:
        raise ValueError(f"cw_factored: unknown table {table!r}")
    z, nh = slots[3].shape if slots[3].dim() == 2 else (-1, -1)
    expected = [(z, _dim(table, 0)), (z, _dim(table, 1)), (z, _dim(table, 2)), (z, nh), (nh, _dim(table, 3))]
    for name, t, shape in zip(("g", "x1", "x2", "h", "m"), slots, expected):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"cw_factored: {name} must have shape {shape} (Z, H from h), got {tuple(t.shape)}")


def _factored_shape(slots: list, s: int, table: str) -> tuple:
    z, nh = slots[3].shape
    return (z, _dim(table, s)) if s < 3 else ((z, nh) if s == 3 else (nh, _dim(table, 3)))


def _factored_blocks(slots: list, outputs: list, table: str, backend: str, block: int) -> list:
    """The contractions over blocks of ``block`` samples: per block, ``w = h M`` and the weight gradient
    ``dW`` exist only for the block, projected at once (``dh = dW M^T``, ``dM += h^T dW`` in block order)."""
    g, x1, x2, h, m = slots
    z = x1.shape[0]
    outs = {s: new_output(*_factored_shape(slots, s, table), like=x1, zeros=s == 4, advise=backend == "cpu")
            for s in outputs}  # fmt: skip
    # one weight (and weight-gradient) buffer for every block: results go straight into the outputs' rows
    contracted = [s for s in outputs if s < 3] + ([3] if 3 in outputs or 4 in outputs else [])
    w_buffer = x1.new_empty(min(block, z), m.shape[1]) if any(s < 3 for s in outputs) else None
    dw_buffer = x1.new_empty(min(block, z), m.shape[1]) if 3 in contracted and backend == "cpu" else None
    for b0 in range(0, z, block):
        rows = slice(b0, min(b0 + block, z))
        by_slot = [None if g is None else g[rows], x1[rows], x2[rows], None]
        if w_buffer is not None:
            by_slot[3] = torch.mm(h[rows], m, out=w_buffer[: rows.stop - b0])
        dw = None if dw_buffer is None else dw_buffer[: rows.stop - b0]
        # every contraction of the block in one pass (the other backends' weight gradient: a fresh tensor)
        done = _run_contract(by_slot, table, contracted, backend, [outs[s][rows] if s < 3 else dw for s in contracted])
        dw = done[-1] if 3 in contracted else None
        if 3 in outputs:
            torch.mm(dw, m.T, out=outs[3][rows])
        if 4 in outputs:
            outs[4].addmm_(h[rows].T, dw)
    return [outs[s] for s in outputs]


@torch.library.custom_op("fastso3::cw_factored", mutates_args=())
def cw_factored_op(
    g: torch.Tensor | None, x1: torch.Tensor, x2: torch.Tensor, h: torch.Tensor, m: torch.Tensor, table: str,
    outputs: list[int], backend: str,
) -> list[torch.Tensor]:  # fmt: skip
    """The contractions of ``F(g, x1, x2, h, M)`` (``w = h M`` in the table's weight slot) into ``outputs``.

    g: ``(Z, dim_out)`` or None (only when ``outputs == [0]``), x1: ``(Z, dim1)``, x2: ``(Z, dim2)``,
    h: ``(Z, H)``, m: ``(H, weight_numel)``, one dtype -> one tensor per output slot, shaped like that slot.
    ``"cpu"`` works on blocks of samples (up to 16 MiB of weights, ``_BLOCK_BYTES``); ``"reference"`` and ``"triton"`` multiply
    the factors first (the reference twin: ``w = h M``, the plain contractions, ``dh = dW M^T``, ``dM = h^T dW``).
    """
    slots = [g, x1, x2, h, m]
    _check_factored(slots, outputs, table)
    backend_for("channelwise_tensor_product", backend, x1)
    registry.record("channelwise_tensor_product", backend)
    slots = [None if t is None else t.contiguous() for t in slots]
    z = x1.shape[0]
    block = max(1, _BLOCK_BYTES // max(1, m.shape[1] * m.element_size())) if backend == "cpu" else max(z, 1)
    return _factored_blocks(slots, outputs, table, backend, block)


@cw_factored_op.register_fake
def _(g, x1, x2, h, m, table, outputs, backend):
    slots = [g, x1, x2, h, m]
    _check_factored(slots, outputs, table)
    return [x1.new_empty(_factored_shape(slots, s, table)) for s in outputs]


register_multilinear_autograd(cw_factored_op, FACTOR_SLOTS)


def channelwise_factored_tensor_product(plan, x1: torch.Tensor, x2: torch.Tensor, hidden: torch.Tensor,
                                        matrix: torch.Tensor, backend: str) -> torch.Tensor:  # fmt: skip
    """A registered channel-wise plan with per-sample weights ``hidden @ matrix``, never stored whole on CPU.

    x1: ``(Z, irreps_in1.dim)``, x2: ``(Z, irreps_in2.dim)``, hidden: ``(Z, H)``, matrix: ``(H, weight_numel)``;
    one dtype -> ``(Z, irreps_out.dim)``.
    """
    return cw_factored_op(None, x1, x2, hidden, matrix, _plan_table_name(plan), [0], backend)[0]
