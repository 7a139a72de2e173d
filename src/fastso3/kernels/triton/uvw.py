"""Triton kernels for the fully connected ("uvw") op ``fastso3::uvw`` (``kernels/uvw.py``), with their launcher.

The op contracts three slots of the 4-linear form (0: ``g``, 1: ``x1``, 2: ``x2``, 3: ``W``) into the fourth.
Path coefficients are folded into the CG values, so every term of a path is ``val_e * g[w,k] x1[u,i] x2[v,j]
W[u,v,w]`` over its CG entries ``e = (i, j, k)``.

- Slots 0-2 (``_vector_slot_kernel``): the output block ``(mul, d)`` of one irrep is written by every path
  that has it, so a program owns one output row ``(irrep, component)`` of a block of ``BLOCK_Z`` samples and
  walks those paths (no atomics). Per path the two other slots split into a *loop* operand ``A`` (one channel
  at a time) and a *tile* operand ``B``: for each channel ``a`` of ``A``, ``t[z, b] = sum_e val_e A[z,a,.]
  B[z,b,.]`` over the path's entries of this component, then ``out[z, o] += sum_b t[z, b] W[a, b, o]`` as a
  ``(BLOCK_Z, BLOCK_B, BLOCK_O)`` tile. (slot 0: A = x1, B = x2, o = w; slot 1: A = x2, B = g, o = u;
  slot 2: A = x1, B = g, o = v.)
- Slot 3 (``_weight_slot_kernel``): a program owns one row ``u`` of one path's weight block for a block of
  samples, a ``(BLOCK_Z, BLOCK_V, BLOCK_W)`` tile. Shared weights (the weights' gradient summed over samples)
  are reduced deterministically: each program stores its sample block's sum into its own row of a
  ``(sample blocks, weight_numel)`` buffer, which is summed in a fixed order afterwards.

Products are accumulated in float32 (float64 for float64 inputs) and rounded to the input dtype on store.
Tiles hold whole channel ranges (masked to the next power of two), sized for correctness, not tuned.
"""

import numpy as np
import torch
import triton
import triton.language as tl

from .kernels import _COMPILE_OPTIONS, _acc_dtype, _device_guard

__all__ = ["uvw"]

WEIGHT_SLOT = 3
_TILE = 4096  # values per 3-d tile: BLOCK_Z shrinks as the channel tiles grow
_LAUNCH_TABLES: dict[tuple, tuple] = {}


@triton.jit
def _vector_slot_kernel(out, out_dim, a, a_dim, b, b_dim, w, w_stride, rows, order, geo, seg, ia, ib, val,
                        nz, n_rows, d_max,
                        ACC: tl.constexpr, BLOCK_Z: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_O: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0)
    r = pid % n_rows  # consecutive programs share a sample block, so its rows stay in cache
    z = (pid // n_rows) * BLOCK_Z + tl.arange(0, BLOCK_Z)
    live = z < nz
    z = z.to(tl.int64)
    cb, co = tl.arange(0, BLOCK_B), tl.arange(0, BLOCK_O)
    row = rows + 6 * r  # (first path, end path, component, out offset, out mul, out d)
    comp, o_off, n_o, o_d = tl.load(row + 2), tl.load(row + 3), tl.load(row + 4), tl.load(row + 5)
    acc = tl.zeros([BLOCK_Z, BLOCK_O], dtype=ACC)
    for q in range(tl.load(row), tl.load(row + 1)):
        p = tl.load(order + q)
        pg = geo + 10 * p  # (a offset, a mul, a d, b offset, b mul, b d, w offset, w strides of a, b, o)
        a_off, n_a, a_d = tl.load(pg), tl.load(pg + 1), tl.load(pg + 2)
        b_off, n_b, b_d = tl.load(pg + 3), tl.load(pg + 4), tl.load(pg + 5)
        w_off, sa, sb, so = tl.load(pg + 6), tl.load(pg + 7), tl.load(pg + 8), tl.load(pg + 9)
        e0, e1 = tl.load(seg + p * d_max + comp), tl.load(seg + p * d_max + comp + 1)
        b_tile = live[:, None] & (cb < n_b)[None, :]
        w_tile = b_tile[:, :, None] & (co < n_o)[None, None, :]
        w_rows = w + z[:, None, None] * w_stride + w_off + cb[None, :, None] * sb + co[None, None, :] * so
        for ca in range(n_a):
            t = tl.zeros([BLOCK_Z, BLOCK_B], dtype=ACC)
            for e in range(e0, e1):
                va = tl.load(a + z * a_dim + a_off + ca * a_d + tl.load(ia + e), mask=live, other=0.0).to(ACC)
                vb = tl.load(b + z[:, None] * b_dim + b_off + cb[None, :] * b_d + tl.load(ib + e), mask=b_tile,
                             other=0.0)  # fmt: skip
                t += (va * tl.load(val + e))[:, None] * vb.to(ACC)
            wt = tl.load(w_rows + ca * sa, mask=w_tile, other=0.0).to(ACC)
            acc += tl.sum(t[:, :, None] * wt, axis=1)
    target = out + z[:, None] * out_dim + o_off + co[None, :] * o_d + comp
    tl.store(target, acc.to(out.dtype.element_ty), mask=live[:, None] & (co < n_o)[None, :])


@triton.jit
def _weight_slot_kernel(out, out_stride, g, g_dim, x1, x1_dim, x2, x2_dim, rows, paths, cg, val, nz, n_rows,
                        SHARED: tl.constexpr, ACC: tl.constexpr, BLOCK_Z: tl.constexpr, BLOCK_V: tl.constexpr,
                        BLOCK_W: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0)
    r = pid % n_rows
    block = pid // n_rows
    z = block * BLOCK_Z + tl.arange(0, BLOCK_Z)
    live = z < nz
    z = z.to(tl.int64)
    p, u = tl.load(rows + 2 * r), tl.load(rows + 2 * r + 1)
    path = paths + 12 * p  # the table's columns, UVW_PATH_COLUMNS
    off_out, mw, d3 = tl.load(path), tl.load(path + 1), tl.load(path + 2)
    off1, d1 = tl.load(path + 3), tl.load(path + 5)
    off2, mv, d2 = tl.load(path + 6), tl.load(path + 7), tl.load(path + 8)
    off_w, e0, e1 = tl.load(path + 9), tl.load(path + 10), tl.load(path + 11)
    cv, cw = tl.arange(0, BLOCK_V), tl.arange(0, BLOCK_W)
    v_tile = live[:, None] & (cv < mv)[None, :]
    w_tile = live[:, None] & (cw < mw)[None, :]
    acc = tl.zeros([BLOCK_Z, BLOCK_V, BLOCK_W], dtype=ACC)
    for e in range(e0, e1):
        i, j, k = tl.load(cg + 3 * e), tl.load(cg + 3 * e + 1), tl.load(cg + 3 * e + 2)
        v1 = tl.load(x1 + z * x1_dim + off1 + u * d1 + i, mask=live, other=0.0).to(ACC) * tl.load(val + e)
        v2 = tl.load(x2 + z[:, None] * x2_dim + off2 + cv[None, :] * d2 + j, mask=v_tile, other=0.0).to(ACC)
        vg = tl.load(g + z[:, None] * g_dim + off_out + cw[None, :] * d3 + k, mask=w_tile, other=0.0).to(ACC)
        acc += (v1[:, None] * v2)[:, :, None] * vg[:, None, :]
    cols = off_w + u * mv * mw + cv[:, None] * mw + cw[None, :]
    vw = (cv < mv)[:, None] & (cw < mw)[None, :]
    if SHARED:  # this sample block's sum, into its own row of the partial sums
        tl.store(out + block * out_stride + cols, tl.sum(acc, axis=0).to(out.dtype.element_ty), mask=vw)
    else:
        tl.store(out + z[:, None, None] * out_stride + cols[None, :, :], acc.to(out.dtype.element_ty),
                 mask=live[:, None, None] & vw[None, :, :])  # fmt: skip


# Per output slot 0-2: (loop slot A, tile slot B); per slot 0, 1, 2: its CG column (k, i, j) and the path
# table's column of its multiplicity (mul_out, mul1, mul2).
_OPERANDS = {0: (1, 2), 1: (2, 0), 2: (1, 0)}
_CG_COLUMN = (2, 0, 1)
_MUL_COLUMN = (1, 4, 7)


def _slot_tables(name: str, table: tuple, slot: int, device: torch.device, acc: torch.dtype) -> tuple:
    """The launch tables of one output slot of a registered uvw table (cached per device and accumulator dtype).

    Slots 0-2: ``(rows (R, 6), order (P,), geo (P, 10), seg (P * d_max + 1,), ia, ib, val (nnz,), d_max)``,
    entries sorted by (path, output component). Slot 3: ``(rows (R, 2), paths (P, 12), cg (nnz, 3), val)``.
    """
    key = (name, slot, device, acc)
    if key in _LAUNCH_TABLES:
        return _LAUNCH_TABLES[key]
    paths, _, coef, cg_idx, cg_val, _ = table
    path_of = np.repeat(np.arange(len(paths)), paths[:, 11] - paths[:, 10])
    val = cg_val * coef[path_of]  # path coefficients folded into the CG values

    def as_tensor(x, dtype=torch.int64):
        return torch.as_tensor(np.ascontiguousarray(x)).to(device=device, dtype=dtype)

    if slot == WEIGHT_SLOT:
        rows = [(p, u) for p in range(len(paths)) for u in range(paths[p, 4])]
        out = (as_tensor(np.array(rows, np.int64).reshape(-1, 2)), as_tensor(paths), as_tensor(cg_idx), as_tensor(val, acc))
    else:
        # per path: the (offset, mul, d) blocks of slots 0, 1, 2 and the weight strides of channels w, u, v
        blocks = paths[:, :9].reshape(-1, 3, 3)
        mv, mw = paths[:, 7], paths[:, 1]
        w_strides = np.stack([np.ones_like(mw), mv * mw, mw], axis=1)  # slot 0's channel w, 1's u, 2's v
        sa, sb = _OPERANDS[slot]
        geo = np.concatenate([blocks[:, sa], blocks[:, sb], paths[:, 9:10], w_strides[:, [sa, sb, slot]]], axis=1)
        comp = cg_idx[:, _CG_COLUMN[slot]]
        d_max = int(blocks[:, slot, 2].max(initial=1))
        entry_order = np.lexsort((comp, path_of))
        seg = np.searchsorted((path_of * d_max + comp)[entry_order], np.arange(len(paths) * d_max + 1))
        order = np.argsort(blocks[:, slot, 0], kind="stable")  # paths grouped by their output block
        rows = []
        for off in np.unique(blocks[:, slot, 0]):
            first, end = np.searchsorted(blocks[order, slot, 0], [off, off + 1])
            _, n_o, d_o = blocks[order[first], slot]
            rows += [(first, end, c, off, n_o, d_o) for c in range(d_o)]
        ia, ib = (cg_idx[entry_order, _CG_COLUMN[s]] for s in (sa, sb))
        out = (as_tensor(np.array(rows, np.int64)), as_tensor(order), as_tensor(geo), as_tensor(seg), as_tensor(ia),
               as_tensor(ib), as_tensor(val[entry_order], acc), d_max)  # fmt: skip
    _LAUNCH_TABLES[key] = out
    return out


def uvw(by_slot: list, slot: int, name: str, table: tuple, shared: bool) -> torch.Tensor:
    """One slot of the uvw op: ``by_slot`` the four slot tensors (``by_slot[slot]`` is ignored), contiguous, of
    one dtype (float16/bfloat16/float32/float64): per-sample ``(Z, dim_s)``, weights ``(weight_numel,)`` if
    ``shared`` else ``(Z, weight_numel)``; ``table`` the registered uvw table ``name`` (``core.uvw.uvw_table``).
    Returns ``(weight_numel,)`` for shared weights as the output slot, else ``(Z, dim_slot)``, in that dtype.
    Inputs are trusted (validated by the op's callers).
    """
    dims = table[-1]
    ref = next(t for s, t in enumerate(by_slot) if s != slot)
    nz = next(t.shape[0] for s, t in enumerate(by_slot) if s != slot and not (s == WEIGHT_SLOT and shared))
    acc = torch.float64 if ref.dtype == torch.float64 else torch.float32
    meta = {"ACC": _acc_dtype(ref.dtype), **_COMPILE_OPTIONS}
    paths = table[0]
    block = [triton.next_power_of_2(int(paths[:, c].max(initial=1))) for c in _MUL_COLUMN]  # channel tile of slots 0-2
    if slot == WEIGHT_SLOT:
        rows, path_table, cg, val = _slot_tables(name, table, slot, ref.device, acc)
        block_v, block_w = block[2], block[0]
        block_z = max(1, min(32, _TILE // (block_v * block_w)))
        n_blocks = triton.cdiv(nz, block_z)
        # shared: a row of partial sums per sample block, in the accumulator dtype, summed in a fixed order below
        out = ref.new_zeros((n_blocks, dims[slot]), dtype=acc) if shared else ref.new_zeros((nz, dims[slot]))
        g, x1, x2 = by_slot[:3]
        if n_blocks and len(rows):
            with _device_guard(ref):
                _weight_slot_kernel[(n_blocks * len(rows),)](out, dims[slot], g, dims[0], x1, dims[1], x2, dims[2], rows,
                                                             path_table, cg, val, nz, len(rows), SHARED=shared,
                                                             BLOCK_Z=block_z, BLOCK_V=block_v, BLOCK_W=block_w,
                                                             **meta)  # fmt: skip
        return out.sum(0).to(ref.dtype) if shared else out
    rows, order, geo, seg, ia, ib, val, d_max = _slot_tables(name, table, slot, ref.device, acc)
    sa, sb = _OPERANDS[slot]
    block_b, block_o = block[sb], block[slot]
    block_z = max(1, min(32, _TILE // (block_b * block_o)))
    out = ref.new_zeros((nz, dims[slot]))  # irreps without a path stay zero
    grid = (triton.cdiv(nz, block_z) * len(rows),)
    if grid[0]:
        w_stride = 0 if shared else dims[WEIGHT_SLOT]
        with _device_guard(ref):
            _vector_slot_kernel[grid](out, dims[slot], by_slot[sa], dims[sa], by_slot[sb], dims[sb],
                                      by_slot[WEIGHT_SLOT], w_stride, rows, order, geo, seg, ia, ib, val, nz,
                                      len(rows), d_max, BLOCK_Z=block_z, BLOCK_B=block_b, BLOCK_O=block_o,
                                      **meta)  # fmt: skip
    return out
