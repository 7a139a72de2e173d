"""Spherical harmonics in jax from the recursion tables of :func:`fastso3.core.sh.sh_plan`.

``Y^0 = 1``, ``Y^l = a_l C^{(l, l-1, 1)} Y^{l-1} x`` evaluated from the plan's sparse forward table, then the
plan's normalisation scale; the same tables the torch front's kernels evaluate. The derivative is a
``custom_jvp`` on the same table (Euler's identity for homogeneous polynomials), valid to every order.
``backend="cpu"`` runs the torch front's compiled kernel on the same plan instead (:mod:`fastso3.jax._ffi`).
Signature and defaults of e3nn-jax 0.21.0
(``e3nn_jax/_src/spherical_harmonics/__init__.py``): ``normalization`` defaults to ``'component'``
(e3nn torch: 'integral'), ``normalize=True`` maps a zero vector to ``Y^0`` and zeros.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp

import numpy as np

from ..core.irreps import Irreps
from ..core.sh import sh_plan
from ._ffi import check_backend, sh_cpu
from ._irreps_array import IrrepsArray, from_chunks

__all__ = ["spherical_harmonics", "sh"]


def _output_irreps(irreps_out: Any, input_parity: Optional[int]) -> Irreps:
    if isinstance(irreps_out, range):
        irreps_out = list(irreps_out)
    if isinstance(irreps_out, int) and not isinstance(irreps_out, bool):
        irreps_out = [irreps_out]
    if isinstance(irreps_out, (list, tuple)) and all(isinstance(l, int) and not isinstance(l, bool) for l in irreps_out):
        if input_parity is None:
            raise ValueError("spherical_harmonics: with degrees as ints the input must be an IrrepsArray (1o or 1e)")
        return Irreps([(1, (l, input_parity**l)) for l in irreps_out])
    irreps = Irreps(irreps_out)
    if any(ir.l % 2 == 0 and ir.p != 1 for _, ir in irreps):
        raise ValueError(f"spherical_harmonics: even degrees are even (e), got {irreps}")
    odd = {ir.p for _, ir in irreps if ir.l % 2 == 1}
    if len(odd) > 1 or (input_parity is not None and odd and odd != {input_parity}):
        raise ValueError(f"spherical_harmonics: the odd degrees of {irreps} must have the parity of the input vector")
    return irreps


def spherical_harmonics(irreps_out: Union[Any, int, Sequence[int]], input: Any, normalize: bool,
                        normalization: Optional[str] = None, *, algorithm: Any = None,
                        backend: str = "xla") -> IrrepsArray:  # fmt: skip
    """Spherical harmonics ``Y^l(x)`` of the vectors ``input`` ``(..., 3)`` (x, y, z; y is the polar axis).

    Args:
        irreps_out: Irreps (e.g. ``"0e + 1o + 2e"``), or degrees (int or list) when ``input`` is an IrrepsArray.
        input: IrrepsArray ``1x1o``/``1x1e`` or a raw ``(..., 3)`` array.
        normalize: restrict to the sphere (divide by the norm; a zero vector stays zero).
        normalization: 'component' (default, ``|Y^l|^2 = 2l+1``), 'norm' (``|Y^l| = 1``) or 'integral'.
        algorithm: accepted for e3nn-jax compatibility; the plan's recursion is always used.
        backend: 'xla' (default: jnp operations XLA fuses) or 'cpu' (fastso3's compiled CPU kernel through
            ``jax.ffi``, float32/float64 on CPU devices; raises ``CPUKernelUnavailable`` if it cannot be built).

    Returns:
        IrrepsArray ``(..., irreps_out.dim)`` with the dtype of ``input``.
    """
    parity = None
    if isinstance(input, IrrepsArray):
        if input.irreps.num_irreps != 1 or input.irreps.dim != 3:
            raise ValueError(f"spherical_harmonics: the input must be one vector (1x1o or 1x1e), got {input.irreps}")
        parity = input.irreps[0].ir.p
        input = input.array
    check_backend(backend)
    x = jnp.asarray(input)
    if x.ndim == 0 or x.shape[-1] != 3:
        raise ValueError(f"spherical_harmonics: input must have shape (..., 3), got {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.zeros(()).dtype)
    irreps = _output_irreps(irreps_out, parity)
    normalization = "component" if normalization is None else normalization
    if irreps.num_irreps == 0:
        return IrrepsArray(irreps, jnp.zeros(x.shape[:-1] + (0,), x.dtype))
    if backend == "cpu":
        return _spherical_harmonics_cpu(irreps, x, normalize, normalization)
    if normalize:
        r2 = _squared_norm(x, irreps.lmax)
        x = x / jnp.sqrt(jnp.where(r2 == 0.0, 1.0, r2))
    plan = sh_plan(irreps.lmax, normalization)
    components = _components(irreps.lmax, x)
    chunks = []
    for mul, ir in irreps:
        scale = float(plan.scale[ir.l**2])
        y = components[ir.l] if scale == 1.0 else components[ir.l] * jnp.asarray(scale, x.dtype)
        chunks.append(jnp.broadcast_to(y[..., None, :], x.shape[:-1] + (mul, ir.dim)))
    return from_chunks(irreps, chunks, x.shape[:-1], x.dtype)


def _spherical_harmonics_cpu(irreps: Irreps, x: jax.Array, normalize: bool, normalization: str) -> IrrepsArray:
    """All degrees ``0..lmax`` from the CPU kernel, then the columns ``irreps`` asks for (one gather, none when
    ``irreps`` is ``0..lmax`` once each)."""
    y = sh_cpu(x, irreps.lmax, normalize, normalization)
    columns = [c for mul, ir in irreps for _ in range(mul) for c in range(ir.l**2, (ir.l + 1) ** 2)]
    if columns != list(range(y.shape[-1])):
        y = jnp.take(y, np.asarray(columns), axis=-1)
    return IrrepsArray(irreps, y)


def _squared_norm(x: jax.Array, lmax: int) -> jax.Array:
    """``|x|^2`` ``(..., 1)``. Up to l_max = _SLICED_NORM_LMAX as three products (XLA's CPU reduction over a last
    axis of 3 made l_max = 1 1.6x slower); above, a reduction, which XLA does not recompute inside the larger
    fused recursion (the products made l_max = 8 1.6x slower)."""
    if lmax <= _SLICED_NORM_LMAX:
        return x[..., 0:1] ** 2 + x[..., 1:2] ** 2 + x[..., 2:3] ** 2
    return jnp.sum(x**2, axis=-1, keepdims=True)


_SLICED_NORM_LMAX = 4


def _degree_one(v: jax.Array) -> jax.Array:
    """Degree 1 (``Y^1_k = c_k v_{d_k}``, the plan's entries read from ``Y^0 = 1``) as one vector operation on
    ``v`` ``(..., 3)``: at l_max = 1 the per-component slices of the recursion are most of the work. (Only
    there: from l_max = 2 on, the slices of this vector made XLA's gradient at l_max = 8 10x slower.)"""
    plan = sh_plan(1, "component")
    dims, coef = plan.fwd_dim.tolist(), plan.fwd_coef.tolist()
    v = v if dims == [0, 1, 2] else v[..., np.asarray(dims)]
    if np.allclose(coef, coef[0], rtol=1e-14, atol=0):  # sqrt(3) three times: a scalar XLA folds in
        return v * coef[0]
    return v * np.asarray(coef, v.dtype)


def _accumulate(lmax: int, factors: list, xs: list, scale_by_degree: bool, out: list) -> list:
    """``out[fwd_out] += c * factors[fwd_in] * xs[fwd_dim]`` over the plan's sparse forward table, with
    ``c = fwd_coef`` (times the degree of the output when ``scale_by_degree``); ``None`` entries of ``out`` are
    zeros. Single-component products, which XLA fuses into one loop (a dense CG contraction per degree would
    multiply mostly zeros). The entries are sorted by output, so ``factors`` may be ``out`` itself (the
    recursion: a degree only reads finished lower degrees)."""
    plan = sh_plan(lmax, "component")
    for o, i, d, c in zip(plan.fwd_out.tolist(), plan.fwd_in.tolist(), plan.fwd_dim.tolist(), plan.fwd_coef.tolist()):
        term = (math.isqrt(o) * c if scale_by_degree else c) * factors[i] * xs[d]
        out[o] = term if out[o] is None else out[o] + term
    return out


def _by_degree(lmax: int, comps: list) -> tuple:
    """One ``(..., 2l+1)`` array per degree (stacked once, right where the output chunks are made)."""
    return tuple(jnp.stack(comps[l * l : (l + 1) ** 2], axis=-1) for l in range(lmax + 1))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _components(lmax: int, x: jax.Array) -> tuple:
    """Unnormalised 'component' values, one ``(..., 2l+1)`` array per degree: ``Y^0 = 1``, then the recursion."""
    if lmax == 1:
        return jnp.ones(x.shape[:-1] + (1,), x.dtype), _degree_one(x)
    comps: list = [jnp.ones(x.shape[:-1], x.dtype)] + [None] * ((lmax + 1) ** 2 - 1)
    return _by_degree(lmax, _accumulate(lmax, comps, [x[..., i] for i in range(3)], False, comps))


@_components.defjvp
def _components_jvp(lmax: int, primals: tuple, tangents: tuple) -> tuple:
    # Y^l is homogeneous of degree l, so dY^l_k/dx_i = l a_l sum_j C[k, j, i] Y^{l-1}_j (fastso3.core.sh):
    # the same table as the forward pass, on the primal values; linear in the tangent, so jax transposes it
    # for reverse mode, and higher derivatives differentiate this rule again.
    (x,), (x_dot,) = primals, tangents
    y = _components(lmax, x)
    if lmax == 1:
        return y, (jnp.zeros(x.shape[:-1] + (1,), x.dtype), _degree_one(x_dot))
    comps = [degree[..., m] for degree in y for m in range(degree.shape[-1])]
    zero = [jnp.zeros(x.shape[:-1], x.dtype)] + [None] * (len(comps) - 1)
    return y, _by_degree(lmax, _accumulate(lmax, comps, [x_dot[..., i] for i in range(3)], True, zero))


def sh(irreps_out: Any, input: jax.Array, normalize: bool, normalization: Optional[str] = None, *,
       algorithm: Any = None, backend: str = "xla") -> jax.Array:  # fmt: skip
    """:func:`spherical_harmonics` on a raw ``(..., 3)`` array (read as ``1o``), returning the raw array."""
    return spherical_harmonics(irreps_out, IrrepsArray("1o", input), normalize, normalization, backend=backend).array
