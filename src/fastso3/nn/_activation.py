"""Scalar activations and the gate nonlinearity, as ``e3nn.nn.Activation`` / ``e3nn.nn.Gate``."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch

from ..core.irreps import Irrep, Irreps
from ..math import _module_device, normalize2mom
from ._util import IgnoreE3nnKeys, merge_runs, take

__all__ = ["Activation", "Gate"]


def _parity_of(act: Callable) -> int:
    """+1 if ``act`` is even, -1 if odd, 0 otherwise (tested on ``linspace(0, 10, 256)``, tol 1e-5, as e3nn)."""
    x = torch.linspace(0, 10, 256, device=_module_device(act))
    with torch.no_grad():
        a1, a2 = act(x), act(-x)
        if (a1 - a2).abs().max() < 1e-5:
            return 1
        if (a1 + a2).abs().max() < 1e-5:
            return -1
    return 0


class Activation(torch.nn.Module):
    r"""Elementwise activations on the scalar entries of an irreps feature (``e3nn.nn.Activation``).

    Shapes and dtypes: ``(..., irreps_in.dim) -> (..., irreps_out.dim)`` (the same dim), any floating
    dtype the activations accept; ``forward(x, dim=-1)`` can act along another axis.

    ``acts`` has one entry per entry of ``irreps_in``: None leaves it unchanged (any ``l``); a
    function (l = 0 only) is moment-normalised with :class:`~fastso3.math.normalize2mom` and applied.
    Parity: on ``0e`` any function is allowed and the output is ``0e``; on ``0o`` an even function
    gives ``0e``, an odd one ``0o``, anything else raises ValueError (parity probed on
    ``linspace(0, 10, 256)`` with tolerance 1e-5, as e3nn).

    Raises:
        ValueError: ``len(acts) != len(irreps_in)``, an activation on ``l > 0``, or a parity violation.
    """

    def __init__(self, irreps_in: Any, acts: Sequence[Optional[Callable]]) -> None:
        super().__init__()
        irreps_in = Irreps(irreps_in)
        acts = list(acts)
        if len(irreps_in) != len(acts):
            raise ValueError(
                f"Activation: irreps_in has {len(irreps_in)} entries ({irreps_in}) but {len(acts)} activations were given"
            )
        acts = [normalize2mom(a) if a is not None else None for a in acts]
        irreps_out = []
        paths = []
        for i, ((mul, ir), act, sl) in enumerate(zip(irreps_in, acts, irreps_in.slices())):
            if act is None:
                irreps_out.append((mul, ir))
                paths.append((sl.start, sl.stop - sl.start, -1))
                continue
            if ir.l != 0:
                raise ValueError(f"Activation: cannot apply an activation function to the non-scalar entry {mul}x{ir}")
            p_out = ir.p
            if ir.p == -1:
                p_out = _parity_of(act)
                if p_out == 0:
                    raise ValueError(
                        f"Activation: the parity is violated: entry {i} ({mul}x{ir}) is odd but its activation "
                        "is neither even nor odd"
                    )
            irreps_out.append((mul, (0, p_out)))
            paths.append((sl.start, mul, i))
        self.irreps_in = irreps_in
        self.irreps_out = Irreps(irreps_out)
        self.acts = torch.nn.ModuleList(acts)
        self._paths = tuple(paths)  # (start, length, index of the act or -1)

    def extra_repr(self) -> str:
        marks = "".join("x" if a is not None else " " for a in self.acts)
        return f"[{marks}] ({self.irreps_in} -> {self.irreps_out})"

    def forward(self, features: torch.Tensor, dim: int = -1) -> torch.Tensor:
        out = []
        for start, length, i in self._paths:
            chunk = features.narrow(dim, start, length)
            out.append(chunk if i < 0 else self.acts[i](chunk))
        if len(out) == 1:
            return out[0]
        if len(out) == 0:
            return torch.zeros_like(features)
        return torch.cat(out, dim=dim)


def _elementwise_irreps_out(irreps_1: Irreps, irreps_2: Irreps) -> Irreps:
    """Output irreps of e3nn's ``ElementwiseTensorProduct(irreps_1, irreps_2)`` when ``irreps_2`` is scalar:
    both simplified, entries split so that multiplicities align, ``(mul, ir_1 * ir_2)`` per pair."""
    a = [tuple(m) for m in irreps_1.simplify()]
    b = [tuple(m) for m in irreps_2.simplify()]
    i = 0
    while i < len(a):
        (m1, ir1), (m2, ir2) = a[i], b[i]
        if m1 < m2:
            b[i] = (m1, ir2)
            b.insert(i + 1, (m2 - m1, ir2))
        elif m2 < m1:
            a[i] = (m2, ir1)
            a.insert(i + 1, (m1 - m2, ir1))
        i += 1
    return Irreps([(mul, Irrep(ir1.l, ir1.p * ir2.p)) for (mul, ir1), (_, ir2) in zip(a, b)])


class Gate(IgnoreE3nnKeys, torch.nn.Module):
    r"""Gate nonlinearity (``e3nn.nn.Gate``): ``act(scalars) (+) gated_i * act_gate(g_i)``.

    Shapes and dtypes: ``(..., irreps_in.dim) -> (..., irreps_out.dim)``, in the input's dtype.

    Input layout, exactly as e3nn: ``(scalars + gates + gated)``, each simplified, stably sorted in
    torch order (``0o < 0e < 1o < 1e < ...``) and simplified again; for ``3x0e``, ``2x0e``, ``1o+2e``
    the input is ``5x0e+1x1o+1x2e`` whose first 3 scalars are the scalars and next 2 the gates.
    Output: ``Activation(irreps_scalars, act_scalars)`` then the gated irreps, copy ``u`` multiplied
    by ``act_gates``-activated gate ``u`` (an exact product; an odd gate flips the parity);
    ``irreps_out = scalars_out + gated_out`` with e3nn's ``ElementwiseTensorProduct`` entry split.

    e3nn state dicts load directly (the parameter-free ``mul.weight`` and ``mul.output_mask`` of
    e3nn's internal product are ignored).

    Raises:
        ValueError: non-scalar ``irreps_scalars``/``irreps_gates``, ``irreps_gates.num_irreps !=
            irreps_gated.num_irreps``, or an activation error (see :class:`Activation`).
    """

    _e3nn_ignored_keys = ("mul.weight", "mul.output_mask")

    def __init__(
        self,
        irreps_scalars: Any,
        act_scalars: Sequence[Optional[Callable]],
        irreps_gates: Any,
        act_gates: Sequence[Optional[Callable]],
        irreps_gated: Any,
    ) -> None:
        super().__init__()
        irreps_scalars, irreps_gates, irreps_gated = Irreps(irreps_scalars), Irreps(irreps_gates), Irreps(irreps_gated)
        if any(ir.l > 0 for mul, ir in irreps_gates if mul > 0):
            raise ValueError(f"Gate scalars must be scalars, instead got irreps_gates = {irreps_gates}")
        if any(ir.l > 0 for mul, ir in irreps_scalars if mul > 0):
            raise ValueError(f"Scalars must be scalars, instead got irreps_scalars = {irreps_scalars}")
        if irreps_gates.num_irreps != irreps_gated.num_irreps:
            raise ValueError(
                f"There are {irreps_gated.num_irreps} irreps in irreps_gated, but a different number "
                f"({irreps_gates.num_irreps}) of gate scalars in irreps_gates"
            )

        groups = [irreps_scalars.simplify(), irreps_gates.simplify(), irreps_gated.simplify()]
        self.irreps_scalars, self.irreps_gates, self.irreps_gated = groups
        cat = Irreps(sum((list(g) for g in groups), []))
        sorted_irreps, perm, _ = cat.sort()  # perm[old entry] = new entry
        slices = sorted_irreps.slices()
        runs = []
        first = 0
        for g in groups:
            ranges = [(slices[perm[i]].start, slices[perm[i]].stop) for i in range(first, first + len(g))]
            runs.append(merge_runs(ranges))
            first += len(g)
        self._scalar_runs, self._gate_runs, self._gated_runs = runs
        self._irreps_in = sorted_irreps.simplify()
        self._dim_in = self._irreps_in.dim

        self.act_scalars = Activation(irreps_scalars, act_scalars)
        self.act_gates = Activation(irreps_gates, act_gates)
        gated_out = _elementwise_irreps_out(irreps_gated, self.act_gates.irreps_out)
        self._irreps_out = self.act_scalars.irreps_out + gated_out
        self._has_gates = irreps_gated.dim > 0

        # gate copy u multiplies every component of gated copy u
        index = [u for u, ir in enumerate(ir for mul, ir in irreps_gated for _ in range(mul)) for _ in range(ir.dim)]
        self.register_buffer("_gate_index", torch.tensor(index, dtype=torch.long), persistent=False)

    @property
    def irreps_in(self) -> Irreps:
        """Input irreps (sorted, simplified)."""
        return self._irreps_in

    @property
    def irreps_out(self) -> Irreps:
        """Output irreps: activated scalars, then gated irreps."""
        return self._irreps_out

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}"

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[-1] != self._dim_in:
            raise ValueError(f"Gate: expected a last dimension of {self._dim_in} ({self._irreps_in}), got {features.shape[-1]}")
        if not features.is_floating_point():
            raise TypeError(f"Gate: the features must be a floating-point tensor, got {features.dtype}")
        scalars = self.act_scalars(take(features, self._scalar_runs))
        if not self._has_gates:
            return scalars
        gates = self.act_gates(take(features, self._gate_runs))
        gated = take(features, self._gated_runs) * gates.index_select(-1, self._gate_index)
        return torch.cat([scalars, gated], dim=-1)
