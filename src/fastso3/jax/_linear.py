"""Equivariant linear maps in jax from :func:`fastso3.core.tensor_product.linear_plan` (the torch front's plan).

``z_w = c sum_u W[u, w] x_u`` per instruction (``W`` a ``(mul_in, mul_out)`` block), summed per output, plus
biases on 0e outputs. :class:`FunctionalLinear` is e3nn-jax 0.21.0's ``FunctionalLinear``
(``e3nn_jax/_src/linear.py``): ``gradient_normalization`` g sets ``path_weight = c^g`` and
``weight_std = c^(1-g)``. :class:`Linear` is the parameter-holding layer of ``e3nn_jax.flax.Linear``
(``_src/linear_flax.py``) written as a plain ``init``/``apply`` pair so that it needs no flax: same
parameter names ``"w[i_in,i_out] {mul_ir_in},{mul_ir_out}"`` / ``"b[i_out] {mul_ir_out}"``, the input is
regrouped and output irreps absent from the input are dropped (unless ``force_irreps_out``).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from ..core.irreps import Irreps
from ..core.tensor_product import linear_plan
from ._irreps_array import IrrepsArray, as_irreps_array, from_chunks
from ._tensor_product import _exponent, _float_dtype

__all__ = ["FunctionalLinear", "Linear"]


class FunctionalLinear:
    """Linear map with explicit weights: ``lin(ws, x)``.

    Args:
        irreps_in, irreps_out: the irreps.
        instructions: ``(i_in, i_out)`` pairs with equal irreps (default: all such pairs).
        biases: a bool (a bias on every 0e output) or one bool per output entry.
        path_normalization: 'element' (default) or 'path'.
        gradient_normalization: 'path' (default) or 'element' (or 1.0 / 0.0).

    Attributes:
        plan: the :class:`~fastso3.core.tensor_product.LinearPlan`.
        instructions: weight instructions then bias ones (``i_in = -1``), each with ``path_weight`` and
            ``weight_std`` (e3nn-jax's ``linear.Instruction`` fields).
    """

    def __init__(self, irreps_in: Any, irreps_out: Any, instructions: Optional[Sequence[tuple]] = None,
                 biases: Union[bool, Sequence[bool], None] = None, path_normalization: Union[str, float, None] = None,
                 gradient_normalization: Union[str, float, None] = None):  # fmt: skip
        p = _exponent(path_normalization, "path_normalization")
        if p not in (0.0, 1.0):
            raise ValueError(f"path_normalization must be 'element' (0) or 'path' (1), got {path_normalization!r}")
        g = _exponent(gradient_normalization, "gradient_normalization")
        self.plan = linear_plan(irreps_in, irreps_out, instructions, False if biases is None else biases,
                                "element" if p == 0.0 else "path")  # fmt: skip
        self.irreps_in, self.irreps_out = self.plan.irreps_in, self.plan.irreps_out
        self.instructions = [
            (ins.i_in, ins.i_out, ins.path_shape, ins.path_weight**g, ins.path_weight ** (1.0 - g))
            if ins.i_in != -1 else (ins.i_in, ins.i_out, ins.path_shape, 1.0, 0.0)
            for ins in self.plan.instructions
        ]  # fmt: skip
        self.output_mask = np.asarray(self.plan.output_mask, dtype=bool)

    @property
    def num_weights(self) -> int:
        return self.plan.weight_numel + self.plan.bias_numel

    def split_weights(self, weights: jax.Array) -> list:
        """One ``path_shape`` array per instruction from a flat ``(num_weights,)`` array (instruction order)."""
        out, cursor = [], 0
        for _, _, shape, _, _ in self.instructions:
            n = int(np.prod(shape))
            out.append(weights[cursor : cursor + n].reshape(shape))
            cursor += n
        return out

    def __call__(self, ws: Any, input: Any) -> IrrepsArray:
        """``input`` ``(..., irreps_in.dim)`` -> ``(..., irreps_out.dim)``; ``ws`` a list (one per instruction) or flat."""
        x = input if isinstance(input, IrrepsArray) else IrrepsArray(self.irreps_in, input)
        x = x.rechunk(self.irreps_in)
        if not isinstance(ws, (list, tuple)):
            ws = self.split_weights(jnp.asarray(ws))
        if len(ws) != len(self.instructions):
            raise ValueError(f"ws: expected {len(self.instructions)} arrays (one per instruction), got {len(ws)}")
        dtype = _float_dtype(x.dtype, *(jnp.asarray(w).dtype for w in ws))
        lead = x.shape[:-1]
        outputs: list = [[] for _ in self.irreps_out]
        for (i_in, i_out, shape, path_weight, _), w in zip(self.instructions, ws):
            w = jnp.asarray(w, dtype)
            if w.shape != tuple(shape):
                raise ValueError(f"ws: a weight of shape {w.shape} for an instruction of shape {shape}")
            if i_in == -1:
                outputs[i_out].append(path_weight * jnp.reshape(w, (self.irreps_out[i_out].mul, 1)))
                continue
            chunk = x.chunks[i_in]
            if chunk is None or 0 in shape:  # zero input or empty block: skipped while tracing
                continue
            outputs[i_out].append(path_weight * jnp.einsum("uw,...ui->...wi", w, chunk.astype(dtype)))
        chunks = [None if not o else jnp.broadcast_to(sum(o[1:], o[0]), lead + (mul_ir.mul, mul_ir.ir.dim))
                  for o, mul_ir in zip(outputs, self.irreps_out)]  # fmt: skip
        return from_chunks(self.irreps_out, chunks, lead, dtype)

    def matrix(self, ws: Sequence[Any]) -> jax.Array:
        """The ``(irreps_in.dim, irreps_out.dim)`` matrix of the map (weight instructions only)."""
        eye = jnp.eye(self.irreps_in.dim, dtype=_float_dtype(*(jnp.asarray(w).dtype for w in ws)))
        weight_only = [w if ins[0] != -1 else jnp.zeros_like(w) for ins, w in zip(self.instructions, ws)]
        return self(weight_only, IrrepsArray(self.irreps_in, eye)).array

    def __repr__(self) -> str:
        return f"FunctionalLinear({self.irreps_in} -> {self.irreps_out}, {len(self.instructions)} instructions, {self.num_weights} weights)"


class Linear:
    """Equivariant linear layer with its own parameters (e3nn-jax ``flax.Linear`` without flax).

    ``params = layer.init(key, x)`` gives ``{"params": {name: array}}`` (weights ``N(0, weight_std^2)``);
    ``layer.apply(params, x)`` (or ``layer(params, x)``) applies it to ``x`` ``(..., dim)``.

    Args:
        irreps_out: the wanted output irreps.
        irreps_in: optional; checked against the input if given.
        biases, path_normalization, gradient_normalization, instructions: as in :class:`FunctionalLinear`.
        force_irreps_out: keep output irreps that the input cannot reach (as zeros).
        simplify_irreps_internally: regroup the input and simplify ``irreps_out`` first (default, as e3nn-jax).
    """

    def __init__(self, irreps_out: Any, irreps_in: Any = None, *, biases: bool = False, path_normalization=None,
                 gradient_normalization=None, instructions=None, force_irreps_out: bool = False,
                 simplify_irreps_internally: bool = True):  # fmt: skip
        self.irreps_out = Irreps(irreps_out)
        self.irreps_in = None if irreps_in is None else Irreps(irreps_in)
        self.biases, self.instructions = biases, instructions
        self.path_normalization, self.gradient_normalization = path_normalization, gradient_normalization
        self.force_irreps_out, self.simplify_irreps_internally = force_irreps_out, simplify_irreps_internally

    def _functional(self, x: Any) -> tuple:
        x = as_irreps_array(x)
        if self.irreps_in is not None and x.irreps.simplify() != self.irreps_in.simplify():
            raise ValueError(f"Linear: the input has irreps {x.irreps}, the layer was built for {self.irreps_in}")
        irreps_out = self.irreps_out
        if self.simplify_irreps_internally:
            x = x.remove_zero_chunks().regroup()
            irreps_out = irreps_out.simplify()
        if not self.force_irreps_out:
            irreps_out = irreps_out.filter(keep=x.irreps)
        return x, FunctionalLinear(x.irreps, irreps_out, self.instructions, self.biases, self.path_normalization,
                                   self.gradient_normalization)  # fmt: skip

    @staticmethod
    def _names(lin: FunctionalLinear) -> list:
        return [f"b[{i_out}] {lin.irreps_out[i_out]}" if i_in == -1 else
                f"w[{i_in},{i_out}] {lin.irreps_in[i_in]},{lin.irreps_out[i_out]}"
                for i_in, i_out, _, _, _ in lin.instructions]  # fmt: skip

    def init(self, key: jax.Array, x: Any) -> dict:
        """``{"params": {name: weights}}`` with weights ``weight_std * N(0, 1)`` (biases zero) in ``x``'s dtype."""
        x, lin = self._functional(x)
        dtype = _float_dtype(x.dtype)
        keys = jax.random.split(key, max(1, len(lin.instructions)))
        params = {name: std * jax.random.normal(k, shape, dtype)
                  for name, (_, _, shape, _, std), k in zip(self._names(lin), lin.instructions, keys)}  # fmt: skip
        return {"params": params}

    def apply(self, params: dict, x: Any) -> IrrepsArray:
        """The layer on ``x`` ``(..., dim)`` with ``params`` from :meth:`init`."""
        x, lin = self._functional(x)
        p = params["params"] if "params" in params else params
        missing = [name for name in self._names(lin) if name not in p]
        if missing:
            raise ValueError(f"Linear.apply: params lack {missing}; build them with Linear.init on the same input irreps")
        return lin([p[name] for name in self._names(lin)], x)

    __call__ = apply
