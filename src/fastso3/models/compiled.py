"""Compiled force training: energy -> forces (and stress) traced once with ``make_fx``, then ``torch.compile``d.

``torch.compile`` of a model whose loss contains forces fails (AOT autograd has no double backward), and
compiling the whole step breaks on ``autograd.grad``. As NequIP does, the energy and its first derivatives
are traced into one plain graph of aten and fastso3 ops (``make_fx`` with symbolic shapes: any number of
atoms and edges), so the training loss's backward through it is a single backward that AOT autograd compiles.
Parameters and buffers are graph inputs (``torch.func.functional_call``), so optimiser updates are seen.
Duck shaping is off while tracing: a number of atoms that equals a parameter's size must stay its own symbol.

``make_fx`` records autograd's saving of an op's output for its backward (``tanh``, ``sigmoid``: their
backward reads their result) as ``detach(detach(output))`` (PyTorch issue 175477). Eager autograd reattaches
such a saved output to its graph; the traced graph would cut it, and the gradient of the forces in the
parameters would miss the terms through it (NequIP's gates). Those pairs are replaced by the output itself;
a user's ``detach`` (a single one) is kept.
"""

from __future__ import annotations

import torch
import torch.fx.experimental._config as fx_config
from torch.fx.experimental.proxy_tensor import make_fx

from ._potential import Potential
from .escn import ESCN
from .mace import MACE
from .nequip import NequIP
from .outputs import forces_and_stress

__all__ = ["CompiledEnergyForces", "compile_energy_and_forces", "trace_energy_forces"]

# Models whose compiled parameter gradients are tested against eager.
SUPPORTED = (MACE, NequIP, ESCN)


def _reattach_saved_outputs(traced: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``traced`` with every ``detach(detach(x))`` (autograd's save and unpack of an output ``x``) read as
    ``x``, the detaches left unused removed (see the module docstring)."""
    detach = torch.ops.aten.detach.default
    graph = traced.graph
    for node in list(graph.nodes):
        if node.target is detach and getattr(node.args[0], "target", None) is detach:
            node.replace_all_uses_with(node.args[0].args[0])
    graph.eliminate_dead_code()
    traced.recompile()
    return traced


def _state(model: Potential) -> tuple[dict, dict]:
    return dict(model.named_parameters()), dict(model.named_buffers())


def trace_energy_forces(model: Potential, inputs: tuple, num_graphs: int, *, stress: bool = True,
                        create_graph: bool = True) -> torch.fx.GraphModule:  # fmt: skip
    """``model``'s energy, forces and (with ``stress``) stress as one graph of aten and ``fastso3::`` ops, traced
    with symbolic sizes at ``inputs`` = ``(positions, cell, atomic_numbers, edge_src, edge_dst, shifts, batch)``
    (any ``N`` and ``E`` afterwards; ``num_graphs`` fixed). The graph maps ``(params, buffers, *inputs)`` to
    ``(energy, forces[, stress])``, ``params``/``buffers`` the dicts of ``named_parameters()``/``named_buffers()``;
    ``create_graph`` keeps it differentiable in them (training) rather than first derivatives only (inference)."""

    def energy_forces(params, buffers, positions, cell, numbers, edge_src, edge_dst, shifts, batch):
        def energy(p, c):
            args = (p, numbers, edge_src, edge_dst, shifts, c, batch, num_graphs)
            return torch.func.functional_call(model, (params, buffers), args)

        out = forces_and_stress(energy, positions, cell, batch, stress=stress, create_graph=create_graph)
        return tuple(out[k] for k in ("energy", "forces", "stress") if k in out)

    params, buffers = _state(model)
    if not create_graph:
        params, buffers = ({k: v.detach() for k, v in d.items()} for d in (params, buffers))
    with fx_config.patch(use_duck_shape=False):
        return _reattach_saved_outputs(make_fx(energy_forces, tracing_mode="symbolic")(params, buffers, *inputs))


class CompiledEnergyForces(torch.nn.Module):
    """``model``'s energies ``(G,)``, forces ``(N, 3)`` and stresses ``(G, 3, 3)``, differentiable in the
    parameters, from one compiled graph per number of structures ``G`` (any ``N`` and ``E``).

    A module whose parameters are ``model``'s (``model`` is its submodule): the parameters enter the graph as
    inputs, so their gradients accumulate as eagerly and ``DistributedDataParallel(compiled)`` reduces them.
    Call with ``positions (N, 3)``, ``cell (G, 3, 3)``, ``atomic_numbers (N,)``, ``edge_src``/``edge_dst (E,)``,
    integer ``shifts (E, 3)``, ``batch (N,)`` and ``num_graphs``, as ``Potential.forward`` takes them.
    ``backend`` is ``torch.compile``'s (``"inductor"``; ``"aot_eager"`` compiles in seconds, runs eagerly).
    """

    def __init__(self, model: Potential, stress: bool = True, backend: str = "inductor") -> None:
        if not isinstance(model, SUPPORTED):
            raise NotImplementedError(f"compile_energy_and_forces: {type(model).__name__} is not supported yet "
                                      f"(tested: {[c.__name__ for c in SUPPORTED]}); train it eagerly")  # fmt: skip
        super().__init__()
        self.model, self.stress, self.backend = model, stress, backend
        self._graphs: dict[int, object] = {}

    def traced(self, positions, cell, atomic_numbers, edge_src, edge_dst, shifts, batch,
               num_graphs: int) -> torch.fx.GraphModule:  # fmt: skip
        """The uncompiled graph for ``num_graphs`` structures (:func:`trace_energy_forces` with second derivatives)."""
        return trace_energy_forces(self.model, (positions, cell, atomic_numbers, edge_src, edge_dst, shifts, batch),
                                   num_graphs, stress=self.stress, create_graph=True)  # fmt: skip

    def forward(self, positions, cell, atomic_numbers, edge_src, edge_dst, shifts, batch, num_graphs: int) -> dict:
        graph_inputs = (positions, cell, atomic_numbers, edge_src, edge_dst, shifts, batch)
        if num_graphs not in self._graphs:
            traced = self.traced(*graph_inputs, num_graphs)
            self._graphs[num_graphs] = torch.compile(traced, backend=self.backend, dynamic=True, fullgraph=True)
        return dict(zip(("energy", "forces", "stress"), self._graphs[num_graphs](*_state(self.model), *graph_inputs)))


def compile_energy_and_forces(model: Potential, stress: bool = True, backend: str = "inductor") -> CompiledEnergyForces:
    """The compiled energy, forces and (with ``stress``) stress of ``model`` for training on forces (see the
    module docstring and :class:`CompiledEnergyForces`). The first call for each number of structures traces
    and compiles (about a minute with inductor)."""
    return CompiledEnergyForces(model, stress, backend)
