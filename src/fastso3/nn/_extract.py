"""``Extract``, ``ExtractIr`` and ``Identity`` (as in ``e3nn.nn``)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..core.irreps import Irrep, Irreps
from ._util import merge_runs, take

__all__ = ["Extract", "ExtractIr", "Identity"]


class Extract(torch.nn.Module):
    r"""Pick entries of an irreps feature into one or more outputs.

    Shapes and dtypes: ``(..., irreps_in.dim) -> tuple of (..., irreps_outs[k].dim)`` (or one tensor
    with ``squeeze_out`` and a single output), in the input's dtype.

    ``instructions[k]`` lists, for each entry of ``irreps_outs[k]``, the index of the ``irreps_in``
    entry it copies (their dims must match; as in e3nn, the irreps themselves are not compared).
    Outputs that are one contiguous block of the input are returned as views (``narrow``); others
    are concatenations (new tensors). e3nn always returns new tensors; the values are the same.

    Raises:
        ValueError: mismatched lengths, an out-of-range index, or an entry whose dim differs.
    """

    def __init__(self, irreps_in: Any, irreps_outs: Sequence[Any], instructions: Sequence[Sequence[int]], squeeze_out: bool = False) -> None:
        super().__init__()
        self.irreps_in = Irreps(irreps_in)
        self.irreps_outs = tuple(Irreps(irreps) for irreps in irreps_outs)
        self.instructions = [tuple(ins) for ins in instructions]
        self.squeeze_out = bool(squeeze_out)
        if len(self.irreps_outs) != len(self.instructions):
            raise ValueError(f"{len(self.irreps_outs)} irreps_outs but {len(self.instructions)} instructions")
        slices = self.irreps_in.slices()
        runs = []
        for irreps_out, ins in zip(self.irreps_outs, self.instructions):
            if len(irreps_out) != len(ins):
                raise ValueError(f"irreps_out {irreps_out} has {len(irreps_out)} entries but its instruction {ins} has {len(ins)}")
            for mul_ir, i in zip(irreps_out, ins):
                if not 0 <= i < len(self.irreps_in):
                    raise ValueError(f"instruction index {i} out of range for irreps_in {self.irreps_in}")
                if self.irreps_in[i].dim != mul_ir.dim:
                    raise ValueError(f"entry {i} of irreps_in ({self.irreps_in[i]}) does not have the dim of {mul_ir}")
            runs.append(merge_runs((slices[i].start, slices[i].stop) for i in ins))
        self._runs = tuple(runs)
        self._dim_in = self.irreps_in.dim

    def forward(self, x: torch.Tensor):
        if x.shape[-1] != self._dim_in:
            raise ValueError(f"Extract: expected a last dimension of {self._dim_in}, got {x.shape[-1]}")
        out = tuple(take(x, runs) for runs in self._runs)
        if self.squeeze_out and len(out) == 1:
            return out[0]
        return out


class ExtractIr(Extract):
    r"""The entries of ``irreps_in`` equal to the irrep ``ir``, concatenated.

    Shapes and dtypes: ``(..., irreps_in.dim) -> (..., irreps_out.dim)``.
    """

    def __init__(self, irreps_in: Any, ir: Any) -> None:
        ir = Irrep(ir)
        irreps_in = Irreps(irreps_in)
        irreps_out = Irreps([mul_ir for mul_ir in irreps_in if mul_ir.ir == ir])
        instructions = [tuple(i for i, mul_ir in enumerate(irreps_in) if mul_ir.ir == ir)]
        super().__init__(irreps_in, [irreps_out], instructions, squeeze_out=True)
        self.irreps_out = irreps_out


class Identity(torch.nn.Module):
    r"""Identity on irreps features (``e3nn.nn.Identity``).

    Shapes and dtypes: ``(..., dim) -> (..., dim)``, the input itself.

    ``irreps_in`` and ``irreps_out`` (stored simplified) must be equal up to simplification. Holds
    e3nn's ``output_mask`` buffer (ones) so state dicts match.

    Raises:
        ValueError: ``irreps_in.simplify() != irreps_out.simplify()``.
    """

    def __init__(self, irreps_in: Any, irreps_out: Any) -> None:
        super().__init__()
        self.irreps_in = Irreps(irreps_in).simplify()
        self.irreps_out = Irreps(irreps_out).simplify()
        if self.irreps_in != self.irreps_out:
            raise ValueError(f"Identity: irreps_in {self.irreps_in} != irreps_out {self.irreps_out}")
        self.register_buffer("output_mask", torch.ones(self.irreps_out.dim))

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}"

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features
