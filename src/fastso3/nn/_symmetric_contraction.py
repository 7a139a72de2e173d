"""``SymmetricContraction``: MACE's many-body product basis with per-element weights, on a factorised plan."""

from __future__ import annotations

import torch

from ..core.irreps import Irreps
from ..core.symmetric_contraction import symmetric_contraction_plan
from ..kernels.symmetric_contraction import (SymmetricContractionTables, register_symmetric_contraction_plan,
                                             symmetric_contraction)

__all__ = ["SymmetricContraction"]


class _Contraction(torch.nn.Module):
    """The weights of one output irrep, named as MACE's ``Contraction``: ``weights_max`` (the highest order)
    and ``weights[j]`` (order ``correlation - 1 - j``), each ``(num_elements, K, channels)``."""

    def __init__(self, sizes: list[int], num_elements: int, channels: int) -> None:
        super().__init__()
        first, *rest = [torch.randn(num_elements, k, channels) / k for k in sizes]
        self.weights_max = torch.nn.Parameter(first)
        self.weights = torch.nn.ParameterList(rest)


class SymmetricContraction(torch.nn.Module):
    """MACE's symmetric contraction (Batatia et al. 2022, Eqs. 10-11): ``(N, C, D), (N,) -> (N, irreps_out.dim)``.

    Args:
        irreps_in: the node features, every irrep with the same multiplicity ``C`` (e.g. ``"8x0e+8x1o+8x2e+8x3o"``);
            ``D`` = the dimension of one copy of each.
        irreps_out: ``C`` copies of each output irrep (e.g. ``"8x0e+8x1o"``), each irrep once.
        correlation: the body order minus one, 1 to 3.
        num_elements: rows of the per-element weights.
        u_matrices: optional ``{(output index, nu): U}`` replacing fastso3's U (a converted MACE model's buffers).
        backend: ``None`` (the fused kernel of the device: ``"cpu"`` or ``"triton"``), ``"factorized"`` (torch
            ops) or ``"reference"`` (the dense twin); see ``fastso3.kernels.symmetric_contraction``.

    Forward: ``x (N, C, D)`` in MACE's ``reshape_irreps`` layout (float, the module's dtype) and ``species (N,)``
    int64 in ``[0, num_elements)``; returns ``(N, irreps_out.dim)`` in the e3nn layout. Weights are initialised
    and laid out as MACE's (``contractions[o].weights_max``, ``contractions[o].weights[j]``), so MACE's
    parameters load by name. The factors and U are non-persistent buffers (they follow ``.to(dtype)``); the
    plan's other tables are registered once and fetched per device and dtype by the kernels.
    """

    def __init__(self, irreps_in, irreps_out, correlation: int, num_elements: int,
                 u_matrices: dict | None = None, backend: str | None = None) -> None:  # fmt: skip
        super().__init__()
        self.irreps_in, self.irreps_out = Irreps(irreps_in), Irreps(irreps_out)
        muls = {mul for mul, _ in self.irreps_in} | {mul for mul, _ in self.irreps_out}
        if len(muls) != 1:
            raise ValueError(f"SymmetricContraction: irreps_in and irreps_out need one multiplicity, got "
                             f"{self.irreps_in} and {self.irreps_out}")  # fmt: skip
        self.channels = muls.pop()
        self.correlation, self.num_elements, self.backend = correlation, num_elements, backend
        coupling = Irreps([(1, ir) for _, ir in self.irreps_in])
        outputs = Irreps([(1, ir) for _, ir in self.irreps_out])
        plan = symmetric_contraction_plan(coupling, outputs, correlation, u_matrices)
        self._blocks, self._output_dims = plan.blocks, plan.output_dims
        dtype = torch.get_default_dtype()
        sizes: dict[int, list[int]] = {}
        for o, _, k in plan.blocks:
            sizes.setdefault(o, []).append(k)
        self.contractions = torch.nn.ModuleList(
            _Contraction(sizes[o], num_elements, self.channels) for o in range(len(plan.output_dims))
        )
        self._plan = register_symmetric_contraction_plan(plan)
        for b, ((_, factor), u) in enumerate(zip(plan.weight_factors, plan.u_matrices)):
            self.register_buffer(f"factor_{b}", torch.as_tensor(factor, dtype=dtype), persistent=False)
            self.register_buffer(f"u_{b}", torch.as_tensor(u, dtype=dtype), persistent=False)

    def _weights(self) -> list[torch.Tensor]:
        return [w for c in self.contractions for w in (c.weights_max, *c.weights)]

    def tables(self) -> SymmetricContractionTables:
        count = len(self._blocks)
        return SymmetricContractionTables(
            self._plan, [getattr(self, f"factor_{b}") for b in range(count)], [getattr(self, f"u_{b}") for b in range(count)],
            self._blocks, self._output_dims,
        )  # fmt: skip

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        return symmetric_contraction(x, species, self._weights(), self.tables(), self.backend)

    def extra_repr(self) -> str:
        return (f"{self.irreps_in} -> {self.irreps_out}, correlation={self.correlation}, "
                f"num_elements={self.num_elements}")  # fmt: skip

