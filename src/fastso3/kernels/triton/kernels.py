"""Triton kernels for sparse accumulation and the channel-wise table ops, with their launchers.

Layout: samples (rows) are blocked per program; channels, where there are any, are the vector
(innermost) dimension of a ``(BLOCK_Z, BLOCK_C)`` tile. Table entries are sorted by output and a
row pointer gives each output's entry range, so one program owns one output row of one sample block
and writes it once (no atomics). All paths of a table run in one launch. Products are accumulated
in float32 (float64 for float64 inputs) and rounded to the input dtype on store.

The launchers take trusted inputs (validated by the public fronts) and allocate the output.
"""

import torch
import triton
import triton.language as tl

__all__ = ["channelwise", "sparse_accumulate"]

# Stated explicitly (triton 3.9 warns when it is left to the default): fused multiply-adds, which
# also round once instead of twice.
_COMPILE_OPTIONS = {"enable_fp_fusion": True}


def _acc_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _device_guard(t: torch.Tensor):
    """Launch on ``t``'s GPU (triton launches on the current device); a no-op for CPU (interpreter) tensors."""
    return torch.cuda.device(t.device.index if t.is_cuda else -1)


def _row_ptr(sorted_rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """(n_rows + 1,) int64: entries ``ptr[r]:ptr[r + 1]`` of an output-sorted index array have output ``r``."""
    return torch.searchsorted(sorted_rows, torch.arange(n_rows + 1, device=sorted_rows.device))


# --------------------------------------------------------------------------- sparse accumulation


@triton.jit
def _sparse_accumulate_kernel(x1, x2, out, ptr, idx1, idx2, mult, nz, n1, n2, n_out,
                              ACC: tl.constexpr, BLOCK_Z: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0)
    o = pid % n_out  # consecutive programs share a sample block, so its rows stay in cache
    z = (pid // n_out) * BLOCK_Z + tl.arange(0, BLOCK_Z)
    live = z < nz
    z = z.to(tl.int64)
    acc = tl.zeros([BLOCK_Z], dtype=ACC)
    for k in range(tl.load(ptr + o), tl.load(ptr + o + 1)):
        v1 = tl.load(x1 + z * n1 + tl.load(idx1 + k), mask=live, other=0.0).to(ACC)
        v2 = tl.load(x2 + z * n2 + tl.load(idx2 + k), mask=live, other=0.0).to(ACC)
        acc += v1 * v2 * tl.load(mult + k).to(ACC)
    tl.store(out + z * n_out + o, acc.to(out.dtype.element_ty), mask=live)


def sparse_accumulate(x1, x2, idx_out, idx1, idx2, mult, output_size: int) -> torch.Tensor:
    """x1: (..., n1), x2: (..., n2), same leading shape and dtype (float16/bfloat16/float32/float64);
    int64 indices and mult (x dtype): (nnz,), in any order -> (..., output_size), x dtype."""
    lead, n1, n2 = x1.shape[:-1], x1.shape[-1], x2.shape[-1]
    rows = x1.shape[:-1].numel()  # explicit: a zero-width input has no -1 to infer
    a, b = x1.reshape(rows, n1).contiguous(), x2.reshape(rows, n2).contiguous()
    out = a.new_empty(a.shape[0], output_size)
    order = torch.argsort(idx_out, stable=True)
    ptr = _row_ptr(idx_out[order], output_size)
    block = 64
    grid = (triton.cdiv(a.shape[0], block) * output_size,)
    if grid[0]:
        with _device_guard(a):
            _sparse_accumulate_kernel[grid](a, b, out, ptr, idx1[order], idx2[order], mult[order], a.shape[0], n1,
                                            n2, output_size, ACC=_acc_dtype(a.dtype), BLOCK_Z=block,
                                            **_COMPILE_OPTIONS)  # fmt: skip
    return out.reshape(*lead, output_size)


# --------------------------------------------------------------------------- channel-wise table ops


@triton.jit
def _channel_offsets(z, u, dim, base, step, row):
    """(BLOCK_Z, BLOCK_C) offsets of channels ``u`` of table row ``row`` in samples ``z`` of a (Z, dim) tensor."""
    return z[:, None] * dim + tl.load(base + row) + u[None, :] * tl.load(step + row)


@triton.jit
def _cw_channeled_kernel(a, a_dim, a_base, a_step, b, b_dim, b_base, b_step, s, s_dim,
                         out, out_dim, out_base, out_step, ptr, ia, ib, i_s, coef, nz, n_rows, nc,
                         ACC: tl.constexpr, BLOCK_Z: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0)
    r = pid % n_rows
    z = (pid // n_rows) * BLOCK_Z + tl.arange(0, BLOCK_Z)
    u = tl.arange(0, BLOCK_C)
    live = z < nz
    tile = live[:, None] & (u < nc)[None, :]
    z = z.to(tl.int64)
    acc = tl.zeros([BLOCK_Z, BLOCK_C], dtype=ACC)
    for e in range(tl.load(ptr + r), tl.load(ptr + r + 1)):
        va = tl.load(a + _channel_offsets(z, u, a_dim, a_base, a_step, tl.load(ia + e)), mask=tile, other=0.0)
        vb = tl.load(b + _channel_offsets(z, u, b_dim, b_base, b_step, tl.load(ib + e)), mask=tile, other=0.0)
        vs = tl.load(s + z * s_dim + tl.load(i_s + e), mask=live, other=0.0).to(ACC) * tl.load(coef + e).to(ACC)
        acc += va.to(ACC) * vb.to(ACC) * vs[:, None]
    tl.store(out + _channel_offsets(z, u, out_dim, out_base, out_step, r), acc.to(out.dtype.element_ty), mask=tile)


@triton.jit
def _cw_scalar_kernel(a, a_dim, a_base, a_step, b, b_dim, b_base, b_step, d, d_dim, d_base, d_step,
                      out, n_out, ptr, ia, ib, i_d, coef, nz, nc,
                      ACC: tl.constexpr, BLOCK_Z: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0)
    o = pid % n_out
    z = (pid // n_out) * BLOCK_Z + tl.arange(0, BLOCK_Z)
    u = tl.arange(0, BLOCK_C)
    live = z < nz
    tile = live[:, None] & (u < nc)[None, :]
    z = z.to(tl.int64)
    acc = tl.zeros([BLOCK_Z, BLOCK_C], dtype=ACC)
    for e in range(tl.load(ptr + o), tl.load(ptr + o + 1)):
        va = tl.load(a + _channel_offsets(z, u, a_dim, a_base, a_step, tl.load(ia + e)), mask=tile, other=0.0)
        vb = tl.load(b + _channel_offsets(z, u, b_dim, b_base, b_step, tl.load(ib + e)), mask=tile, other=0.0)
        vd = tl.load(d + _channel_offsets(z, u, d_dim, d_base, d_step, tl.load(i_d + e)), mask=tile, other=0.0)
        acc += va.to(ACC) * vb.to(ACC) * vd.to(ACC) * tl.load(coef + e).to(ACC)
    # one channel reduction per output, after all its entries
    tl.store(out + z * n_out + o, tl.sum(acc, axis=1).to(out.dtype.element_ty), mask=live)


def channelwise(kind: str, a, b, c, layouts, n_out: int, entries, channels: int) -> torch.Tensor:
    """One channel-wise table op (see ``kernels/channelwise.py``): ``kind`` is ``"channeled"`` or ``"scalar"``.

    a, b, c: (Z, dim_slot) tensors of one dtype (float16/bfloat16/float32/float64) -> (Z, n_out).
    ``layouts``: per role (out, a, b, c), ``(base, step)`` int64 tensors of a channeled slot, None for
    the channel-free one (c for ``"channeled"``, out for ``"scalar"``). ``entries``: (io, ia, ib, ic, coef),
    (nnz,) each, sorted by io; coef in the inputs' dtype.
    """
    a, b, c = a.contiguous(), b.contiguous(), c.contiguous()
    io, ia, ib, ic, coef = entries
    nz = a.shape[0]
    out = a.new_empty(nz, n_out)
    rows = n_out if layouts[0] is None else layouts[0][0].numel()
    ptr = _row_ptr(io, rows)
    block_c = triton.next_power_of_2(channels)
    block_z = max(1, min(32, 1024 // block_c))  # a tile of ~1k values per operand
    grid = (triton.cdiv(nz, block_z) * rows,)
    if not grid[0]:
        return out
    meta = {"ACC": _acc_dtype(a.dtype), "BLOCK_Z": block_z, "BLOCK_C": block_c, **_COMPILE_OPTIONS}
    ops_a = (a, a.shape[1], *layouts[1])
    ops_b = (b, b.shape[1], *layouts[2])
    with _device_guard(a):
        if kind == "channeled":
            _cw_channeled_kernel[grid](*ops_a, *ops_b, c, c.shape[1], out, n_out, *layouts[0], ptr, ia, ib, ic, coef,
                                       nz, rows, channels, **meta)  # fmt: skip
        else:
            _cw_scalar_kernel[grid](*ops_a, *ops_b, c, c.shape[1], *layouts[3], out, n_out, ptr, ia, ib, ic, coef,
                                    nz, channels, **meta)  # fmt: skip
    return out
