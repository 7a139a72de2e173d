"""Nonlinearities and radial bases in jax with e3nn-jax 0.21.0's definitions.

Sources (facts only): ``e3nn_jax/_src/activation.py`` (``soft_odd``, ``normalize_function``: divide by the
RMS of ``phi`` over ``normalspace(1_000_001)``, the deterministic grid ``sqrt 2 erfinv(linspace(-1, 1, n+2)[1:-1])``;
parity of an activation from ``linspace(0, 10, 256)`` with tolerance 1e-5), ``_src/gate.py`` (the **last**
``num_irreps(non-scalars)`` scalars are the gates), ``_src/basic.py`` (``norm``: per copy, zero-safe sqrt) and
``_src/radial.py`` (``soft_one_hot_linspace``, ``sus``). docs/conventions.md sections 6.2 and 7 list them.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp

from ..core.irreps import Irreps
from ._irreps_array import IrrepsArray, as_irreps_array, concatenate, from_chunks

__all__ = ["soft_odd", "normalspace", "normalize_function", "scalar_activation", "gate", "norm", "sus",
           "soft_one_hot_linspace"]  # fmt: skip


def soft_odd(x):
    """``(1 - exp(-x^2)) x``, the default odd activation."""
    return (1 - jnp.exp(-(x**2))) * x


def normalspace(n: int) -> jax.Array:
    """``n`` quantiles of the standard normal distribution (``sqrt 2 erfinv`` of an even grid on (-1, 1))."""
    return jnp.sqrt(2.0) * jsp.erfinv(jnp.linspace(-1.0, 1.0, n + 2)[1:-1])


@functools.lru_cache(maxsize=64)
def _second_moment(phi: Callable) -> float:
    # One compiled program (eager, every op would compile on its own); concrete even inside a trace.
    with jax.ensure_compile_time_eval():
        return float(jax.jit(lambda: jnp.mean(phi(normalspace(1_000_001)) ** 2) ** 0.5)())


def normalize_function(phi: Callable) -> Callable:
    """``phi / c`` with ``c^2 = E[phi(z)^2]``, ``z ~ N(0, 1)`` on the quantile grid (``phi`` itself if ``c ~ 1``)."""
    c = _second_moment(phi)
    if abs(c - 1.0) <= 1e-8 + 1e-5:  # jnp.allclose(c, 1)
        return phi
    return lambda x: phi(x) / c


@functools.lru_cache(maxsize=64)
def _parity(phi: Callable) -> int:
    def deviations():
        x = jnp.linspace(0.0, 10.0, 256)
        a1, a2 = phi(x), phi(-x)
        return jnp.max(jnp.abs(a1 - a2)), jnp.max(jnp.abs(a1 + a2))

    with jax.ensure_compile_time_eval():
        even, odd = (float(d) for d in jax.jit(deviations)())
    return 1 if even < 1e-5 else -1 if odd < 1e-5 else 0


def scalar_activation(input: IrrepsArray, acts: Optional[Sequence[Optional[Callable]]] = None, *,
                      even_act: Callable = jax.nn.gelu, odd_act: Callable = soft_odd,
                      normalize_act: bool = True) -> IrrepsArray:  # fmt: skip
    """One activation per entry (``None``: identity; only scalars may be activated).

    Default: ``even_act`` on 0e, ``odd_act`` on 0o. An odd input keeps parity -1 under an odd activation and
    becomes 0e under an even one; other activations of odd scalars raise ValueError.
    """
    input = as_irreps_array(input)
    if acts is None:
        acts = [({1: even_act, -1: odd_act}[ir.p] if ir.l == 0 else None) for _, ir in input.irreps]
    if len(acts) != len(input.irreps):
        raise ValueError(f"scalar_activation: {len(acts)} activations for the {len(input.irreps)} entries of {input.irreps}")
    irreps_out, chunks = [], []
    for (mul, ir), x, act in zip(input.irreps, input.chunks, acts):
        if act is None:
            irreps_out.append((mul, ir))
            chunks.append(x)
            continue
        if ir.l != 0:
            raise ValueError(f"scalar_activation: cannot activate the non-scalar {mul}x{ir} of {input.irreps}")
        if normalize_act:
            act = normalize_function(act)
        p = _parity(act) if ir.p == -1 else 1
        if p == 0:
            raise ValueError(f"scalar_activation: {mul}x{ir} is odd, so its activation must be even or odd")
        irreps_out.append((mul, (0, p)))
        if x is None:
            zero_at_zero = bool(jnp.allclose(act(jnp.array(0.0)), 0.0))
            chunks.append(None if zero_at_zero else act(jnp.zeros(input.shape[:-1] + (mul, 1), input.dtype)))
        else:
            chunks.append(act(x))
    return from_chunks(irreps_out, chunks, input.shape[:-1], input.dtype)


def gate(input: IrrepsArray, even_act: Callable = jax.nn.gelu, odd_act: Callable = soft_odd,
         even_gate_act: Callable = jax.nn.sigmoid, odd_gate_act: Callable = jax.nn.tanh,
         normalize_act: bool = True) -> IrrepsArray:  # fmt: skip
    """Gate nonlinearity (e3nn-jax ``gate``): the scalars (0e, 0o in input order) are split into extra scalars,
    activated by ``even_act``/``odd_act``, and the **last** ``num_irreps`` of the non-scalars gates, activated by
    ``even_gate_act``/``odd_gate_act`` and multiplied onto the non-scalars. Output ``[extra, gates * vectors]``.

    Raises:
        ValueError: if there are fewer scalars than non-scalar copies.
    """
    if not isinstance(input, IrrepsArray):
        raise TypeError(f"gate: input must be an IrrepsArray, got {type(input).__name__}")
    scalars = input.filter(keep=["0e", "0o"])
    vectors = input.filter(drop=["0e", "0o"])
    if vectors.shape[-1] == 0:
        return scalar_activation(scalars, even_act=even_act, odd_act=odd_act, normalize_act=normalize_act)
    n_gates = vectors.irreps.num_irreps
    if scalars.irreps.num_irreps < n_gates:
        raise ValueError(f"gate: {input.irreps} has {scalars.irreps.num_irreps} scalars for {n_gates} non-scalar copies")
    n_extra = scalars.irreps.num_irreps - n_gates
    extra = _slice_by_mul(scalars, 0, n_extra)
    gates = _slice_by_mul(scalars, n_extra, scalars.irreps.num_irreps)
    extra = scalar_activation(extra, even_act=even_act, odd_act=odd_act, normalize_act=normalize_act)
    gates = scalar_activation(gates, even_act=even_gate_act, odd_act=odd_gate_act, normalize_act=normalize_act)
    return concatenate([extra, gates * vectors], axis=-1)


def _slice_by_mul(x: IrrepsArray, start: int, stop: int) -> IrrepsArray:
    """Copies ``start:stop`` of ``x`` (counted in copies), as ``Irreps.slice_by_mul``."""
    irreps = x.irreps.slice_by_mul[start:stop]
    offset = sum(mul * ir.dim for mul, ir in x.irreps.slice_by_mul[:start])
    return IrrepsArray(irreps, x.array[..., offset : offset + irreps.dim])


def norm(input: IrrepsArray, *, squared: bool = False, per_irrep: bool = True) -> IrrepsArray:
    """Norm of each copy (``mul x 0e`` per entry; zero chunks stay zero) or of the whole vector (``1x0e``).

    The square root is safe at 0 (value and gradient 0).
    """
    input = as_irreps_array(input)

    def f(x):
        if x is None:
            return None
        x = jnp.sum(x * x, axis=-1, keepdims=True)
        if squared:
            return x
        safe = jnp.sqrt(jnp.where(x == 0.0, 1.0, x))
        return jnp.where(x == 0.0, 0.0, safe)

    if per_irrep:
        return from_chunks(Irreps([(mul, "0e") for mul, _ in input.irreps]), [f(x) for x in input.chunks],
                           input.shape[:-1], input.dtype)  # fmt: skip
    return IrrepsArray("0e", f(input.array))


def sus(x):
    """Soft unit step: ``exp(-1/x)`` for ``x > 0``, else 0 (smooth at 0)."""
    return jnp.where(x > 0.0, jnp.exp(-1.0 / jnp.where(x > 0.0, x, 1.0)), 0.0)


def soft_one_hot_linspace(input, *, start: float, end: float, number: int, basis: Optional[str] = None,
                          cutoff: Optional[bool] = None, start_zero: Optional[bool] = None,
                          end_zero: Optional[bool] = None) -> jax.Array:  # fmt: skip
    """Smooth one-hot projection of ``input`` ``(...)`` on ``number`` functions spanning ``[start, end]``: ``(..., number)``.

    ``basis``: 'gaussian' (``exp(-d^2)/1.12``), 'cosine', 'smooth_finite' (``1.14136 e^2 sus(d+1) sus(1-d)``) or
    'fourier'; ``d = (x - v_i)/step``. ``cutoff`` sets both ``start_zero`` and ``end_zero`` (the functions vanish
    at that end: its centre is dropped from ``linspace``). The same numbers as ``fastso3.math.soft_one_hot_linspace``
    (e3nn torch) for ``start_zero = end_zero = cutoff``.

    Raises:
        ValueError: unknown basis, unset ``start_zero``/``end_zero``, or fourier with different ends.
    """
    x = jnp.asarray(input)
    if cutoff is not None:
        if start_zero is not None or end_zero is not None:
            raise ValueError("soft_one_hot_linspace: give cutoff or start_zero/end_zero, not both")
        start_zero = end_zero = cutoff
    if start_zero not in (True, False) or end_zero not in (True, False):
        raise ValueError("soft_one_hot_linspace: cutoff (or both start_zero and end_zero) must be True or False")
    if basis not in ("gaussian", "cosine", "smooth_finite", "fourier"):
        raise ValueError(f"soft_one_hot_linspace: basis={basis!r}; expected 'gaussian', 'cosine', 'smooth_finite' or 'fourier'")
    if basis == "fourier":
        t = (x[..., None] - start) / (end - start)
        if start_zero != end_zero:
            raise ValueError("soft_one_hot_linspace: the fourier basis needs start_zero == end_zero")
        if start_zero:
            i = jnp.arange(1, number + 1)
            return jnp.where((0.0 < t) & (t < 1.0), jnp.sin(jnp.pi * i * t) / jnp.sqrt(0.25 + number / 2), 0.0)
        return jnp.cos(jnp.pi * jnp.arange(0, number) * t) / jnp.sqrt(0.25 + number / 2)
    extra = int(start_zero) + int(end_zero)  # centres dropped at the zero ends
    values = jnp.linspace(start, end, number + extra, dtype=x.dtype)
    step = values[1] - values[0]
    values = values[int(start_zero) : len(values) - int(end_zero)]
    d = (x[..., None] - values) / step
    if basis == "gaussian":
        return jnp.exp(-(d**2)) / 1.12
    if basis == "cosine":
        return jnp.where((-1.0 < d) & (d < 1.0), jnp.cos(jnp.pi / 2 * d), 0.0)
    return 1.14136 * jnp.exp(2.0) * sus(d + 1.0) * sus(1.0 - d)
