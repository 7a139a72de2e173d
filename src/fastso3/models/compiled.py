"""Compiled force training: energy -> forces (and stress) traced once with ``make_fx``, then ``torch.compile``d.

``torch.compile`` of a model whose loss contains forces fails (AOT autograd has no double backward), and
compiling the whole step breaks on ``autograd.grad``. As NequIP does, the energy and its first derivatives
are traced into one plain graph of aten and fastso3 ops (``make_fx`` with symbolic shapes: any number of
atoms and edges), so the training loss's backward through it is a single backward that AOT autograd compiles.
Parameters and buffers are graph inputs (``torch.func.functional_call``), so optimiser updates are seen.
Duck shaping is off while tracing: a number of atoms that equals a parameter's size must stay its own symbol.
"""

from __future__ import annotations

import torch
import torch.fx.experimental._config as fx_config
from torch.fx.experimental.proxy_tensor import make_fx

from ._potential import Potential
from .mace import MACE
from .outputs import forces_and_stress

__all__ = ["CompiledEnergyForces", "compile_energy_and_forces"]

# Models whose compiled parameter gradients are tested against eager. NequIP's and ESCN's are not yet: for
# two-layer NequIPs AOT autograd's gradient of a force loss differs from eager (issue 16).
SUPPORTED = (MACE,)


class CompiledEnergyForces:
    """``model``'s energies ``(G,)``, forces ``(N, 3)`` and stresses ``(G, 3, 3)``, differentiable in the
    parameters, from one compiled graph per number of structures ``G`` (any ``N`` and ``E``).

    Call with ``positions (N, 3)``, ``cell (G, 3, 3)``, ``atomic_numbers (N,)``, ``edge_src``/``edge_dst (E,)``,
    integer ``shifts (E, 3)``, ``batch (N,)`` and ``num_graphs``, as ``Potential.forward`` takes them.
    """

    def __init__(self, model: Potential, stress: bool = True) -> None:
        if not isinstance(model, SUPPORTED):
            raise NotImplementedError(f"compile_energy_and_forces: {type(model).__name__} is not supported yet "
                                      f"(tested: {[c.__name__ for c in SUPPORTED]}); train it eagerly")  # fmt: skip
        self.model, self.stress = model, stress
        self._graphs: dict[int, object] = {}

    def _compiled(self, num_graphs: int, example: tuple):
        def energy_forces(params, buffers, positions, cell, numbers, edge_src, edge_dst, shifts, batch):
            def energy(p, c):
                args = (p, numbers, edge_src, edge_dst, shifts, c, batch, num_graphs)
                return torch.func.functional_call(self.model, (params, buffers), args)

            out = forces_and_stress(energy, positions, cell, batch, stress=self.stress, create_graph=True)
            return tuple(out[k] for k in ("energy", "forces", "stress") if k in out)

        with fx_config.patch(use_duck_shape=False):
            traced = make_fx(energy_forces, tracing_mode="symbolic")(*example)
        return torch.compile(traced, dynamic=True, fullgraph=True)

    def __call__(self, positions, cell, atomic_numbers, edge_src, edge_dst, shifts, batch, num_graphs: int) -> dict:
        params, buffers = dict(self.model.named_parameters()), dict(self.model.named_buffers())
        inputs = (params, buffers, positions, cell, atomic_numbers, edge_src, edge_dst, shifts, batch)
        if num_graphs not in self._graphs:
            self._graphs[num_graphs] = self._compiled(num_graphs, inputs)
        return dict(zip(("energy", "forces", "stress"), self._graphs[num_graphs](*inputs)))


def compile_energy_and_forces(model: Potential, stress: bool = True) -> CompiledEnergyForces:
    """The compiled energy, forces and (with ``stress``) stress of ``model`` for training on forces (see the
    module docstring). The first call for each number of structures traces and compiles (about a minute)."""
    return CompiledEnergyForces(model, stress)
