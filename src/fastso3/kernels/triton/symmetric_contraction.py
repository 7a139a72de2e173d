"""Triton kernels of ``fastso3::symmetric_contraction`` and its backward (``kernels/symmetric_contraction.py``).

A sample is one (node, channel) pair; x is ``(N, D, C)``, so component ``i`` of sample ``z = n C + c`` is at
``(z // C) D C + i C + z % C``. Each program owns one row of its output for a block of ``BLOCK_Z`` samples and
writes it once (no atomics, a fixed order: deterministic):

- forward, a program per output component ``s``: ``out[s] = sum_{col of s} w[rank(col)] sum_{q in col}
  P[q, col] m_q``, the monomials recomputed from x per entry (three loads that hit the cache);
- ``gw``, a program per weight row ``r``: ``sum_{col of rank r} g[out(col)] acc[col]`` (the same kernel as the
  forward, with the roles of w and g swapped);
- ``gx``, a program per input component ``i``: over the derivative terms ``(q, other factors)`` of the
  monomials holding ``i``, ``gm_q * (other factors)``, with ``gm_q = sum_col P[q, col] w[rank(col)] g[out(col)]``.

Products are accumulated in float32 (float64 for float64 inputs) and rounded to the input dtype on store.
"""

import torch
import triton
import triton.language as tl

from .kernels import _COMPILE_OPTIONS, _acc_dtype, _device_guard

__all__ = ["backward", "forward"]

_BLOCK_Z = 64


@triton.jit
def _component(t, base, channel, c, i, rows, live, ACC: tl.constexpr):
    """Row ``i`` of an (N, rows, C) tensor for the block's samples; ``i == rows`` is the constant 1."""
    v = tl.load(t + base + tl.minimum(i, rows - 1) * c + channel, mask=live, other=0.0).to(ACC)
    return tl.where(i < rows, v, 1.0)


@triton.jit
def _monomial(x, base, channel, c, d, mono, q, live, ORDER: tl.constexpr, ACC: tl.constexpr):
    m = _component(x, base, channel, c, tl.load(mono + q * ORDER), d, live, ACC)
    for k in tl.static_range(1, ORDER):
        m *= _component(x, base, channel, c, tl.load(mono + q * ORDER + k), d, live, ACC)
    return m


@triton.jit
def _column(x, base, channel, c, d, mono, by_column_ptr, by_column_monomial, by_column_value, col, live,
            ORDER: tl.constexpr, ACC: tl.constexpr, BLOCK_Z: tl.constexpr):  # fmt: skip
    """``acc[col] = sum_q P[q, col] m_q`` for the block."""
    acc = tl.zeros([BLOCK_Z], dtype=ACC)
    for e in range(tl.load(by_column_ptr + col), tl.load(by_column_ptr + col + 1)):
        q = tl.load(by_column_monomial + e)
        acc += tl.load(by_column_value + e).to(ACC) * _monomial(x, base, channel, c, d, mono, q, live, ORDER, ACC)
    return acc


@triton.jit
def _grouped_columns_kernel(x, f, out, nz, c, d, f_rows, out_rows, mono, by_column_ptr, by_column_monomial,
                            by_column_value, factor_of, group_ptr, group_columns,
                            ORDER: tl.constexpr, ACC: tl.constexpr, BLOCK_Z: tl.constexpr):  # fmt: skip
    """``out[row] = sum_{col in group row} f[factor_of(col)] acc[col]``: the forward (groups: output components,
    f = w by rank) and the weight gradient (groups: weight rows, f = g by output component)."""
    pid = tl.program_id(0)
    row = pid % out_rows
    z = ((pid // out_rows) * BLOCK_Z + tl.arange(0, BLOCK_Z)).to(tl.int64)
    live = z < nz
    node, channel = z // c, z % c
    acc = tl.zeros([BLOCK_Z], dtype=ACC)
    for j in range(tl.load(group_ptr + row), tl.load(group_ptr + row + 1)):
        col = tl.load(group_columns + j)
        a = _column(x, node * d * c, channel, c, d, mono, by_column_ptr, by_column_monomial, by_column_value, col,
                    live, ORDER, ACC, BLOCK_Z)  # fmt: skip
        acc += _component(f, node * f_rows * c, channel, c, tl.load(factor_of + col), f_rows, live, ACC) * a
    tl.store(out + node * out_rows * c + row * c + channel, acc.to(out.dtype.element_ty), mask=live)


@triton.jit
def _input_grad_kernel(g, x, w, gx, nz, c, d, r, s, ptr, column, value, column_rank, column_output,
                       term_ptr, term_monomial, term_others,
                       ACC: tl.constexpr, BLOCK_Z: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0)
    row = pid % d
    z = ((pid // d) * BLOCK_Z + tl.arange(0, BLOCK_Z)).to(tl.int64)
    live = z < nz
    node, channel = z // c, z % c
    xb, wb, gb = node * d * c, node * r * c, node * s * c
    acc = tl.zeros([BLOCK_Z], dtype=ACC)
    for t in range(tl.load(term_ptr + row), tl.load(term_ptr + row + 1)):
        q = tl.load(term_monomial + t)
        gm = tl.zeros([BLOCK_Z], dtype=ACC)
        for e in range(tl.load(ptr + q), tl.load(ptr + q + 1)):
            col = tl.load(column + e)
            wg = _component(w, wb, channel, c, tl.load(column_rank + col), r, live, ACC)
            wg *= _component(g, gb, channel, c, tl.load(column_output + col), s, live, ACC)
            gm += tl.load(value + e).to(ACC) * wg
        gm *= _component(x, xb, channel, c, tl.load(term_others + 2 * t), d, live, ACC)
        gm *= _component(x, xb, channel, c, tl.load(term_others + 2 * t + 1), d, live, ACC)
        acc += gm
    tl.store(gx + xb + row * c + channel, acc.to(gx.dtype.element_ty), mask=live)


def _grid(samples: int, rows: int) -> tuple:
    return (triton.cdiv(samples, _BLOCK_Z) * rows,)


def forward(x: torch.Tensor, w: torch.Tensor, t: dict, s: int) -> torch.Tensor:
    """``x (N, D, C)``, ``w (N, R, C)`` (contiguous, trusted: the op checked them), the plan's tables ``t`` ->
    ``(N, S, C)``."""
    n, d, c = x.shape
    out = x.new_empty(n, s, c)
    grid = _grid(n * c, s)
    if grid[0]:
        with _device_guard(x):
            _grouped_columns_kernel[grid](x, w, out, n * c, c, d, w.shape[1], s, t["monomial_index"],
                                          t["by_column_ptr"], t["by_column_monomial"], t["by_column_value"],
                                          t["column_rank"], t["out_ptr"], t["out_columns"],
                                          ORDER=t["monomial_index"].shape[1], ACC=_acc_dtype(x.dtype), BLOCK_Z=_BLOCK_Z,
                                          **_COMPILE_OPTIONS)  # fmt: skip
    return out


def backward(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, t: dict, need_x: bool, need_w: bool) -> tuple:
    """``(gx (N, D, C), gw (N, R, C))`` for ``g (N, S, C)``; a gradient not asked for is empty, ``(0,)``."""
    n, d, c = x.shape
    r, s = w.shape[1], g.shape[1]
    gx, gw = x.new_empty(x.shape if need_x else 0), x.new_empty(w.shape if need_w else 0)
    meta = {"ACC": _acc_dtype(x.dtype), "BLOCK_Z": _BLOCK_Z, **_COMPILE_OPTIONS}
    with _device_guard(x):
        if need_w and _grid(n * c, r)[0]:
            _grouped_columns_kernel[_grid(n * c, r)](x, g, gw, n * c, c, d, s, r, t["monomial_index"],
                                                     t["by_column_ptr"], t["by_column_monomial"], t["by_column_value"],
                                                     t["column_output"], t["rank_ptr"], t["rank_columns"],
                                                     ORDER=t["monomial_index"].shape[1], **meta)  # fmt: skip
        if need_x and _grid(n * c, d)[0]:
            _input_grad_kernel[_grid(n * c, d)](g, x, w, gx, n * c, c, d, r, s, t["ptr"], t["column"], t["value"],
                                                t["column_rank"], t["column_output"], t["term_ptr"], t["term_monomial"],
                                                t["term_others"], **meta)  # fmt: skip
    return gx, gw
