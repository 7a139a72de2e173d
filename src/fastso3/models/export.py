"""Export for deployment: a potential's energy, forces and stress as one ``torch.export`` program, compiled ahead
of time by AOTInductor into a ``.pt2`` package that runs without the model's Python code.

The program maps

    positions (N, 3), cell (G, 3, 3), atomic_numbers (N,) int64, edge_src, edge_dst (E,) int64,
    shifts (E, 3) int64, batch (N,) int64  ->  energy (G,), forces (N, 3), stress (G, 3, 3)

(``Potential.forward``'s inputs, ``forces_and_stress``'s outputs) for any number of atoms ``N`` and edges ``E``
(``torch.export.Dim``) and the number of structures ``G`` fixed at export (1 by default). ``torch.export`` cannot
trace ``autograd.grad``, so :func:`.compiled.trace_energy_forces` (``make_fx`` with symbolic shapes) traces energy ->
forces -> stress into one graph of aten and ``fastso3::`` ops, and that graph is exported.

What loading needs: Python with this torch version and ``fastso3`` (the ``fastso3::`` ops are Python
``torch.library`` ops, which AOTInductor calls back through its proxy executor; :func:`load_exported` imports and
registers them), and the package's device. It does not need the model's class, configuration or weights: the
ops' tables (``fastso3.kernels.tables``) and the metadata (cutoff, atomic numbers, dtype) are in the package's
``fastso3.json``. Running with no Python at all would need the ops registered in C++ (``TORCH_LIBRARY``) around
the C kernels of ``kernels/cpu/csrc``, with the tables as tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.export.pt2_archive._package import load_pt2, package_pt2

from ..graph import neighbor_list
from ..kernels import tables
from ._potential import Potential
from .compiled import trace_energy_forces

__all__ = ["FORMAT", "INPUTS", "OUTPUTS", "ExportedPotential", "example_inputs", "export_potential", "export_program",
           "load_exported"]

FORMAT = "fastso3-package/1"
INPUTS = ("positions", "cell", "atomic_numbers", "edge_src", "edge_dst", "shifts", "batch")
OUTPUTS = ("energy", "forces", "stress")
_METADATA = "fastso3.json"


class _Program(torch.nn.Module):
    """The traced energy -> forces -> stress graph with the model's parameters and buffers as its buffers."""

    def __init__(self, traced: torch.fx.GraphModule, params: dict, buffers: dict) -> None:
        super().__init__()
        self.traced, self.names = traced, (list(params), list(buffers))
        for i, value in enumerate([*params.values(), *buffers.values()]):
            self.register_buffer(f"state_{i}", value.detach().clone())

    def forward(self, positions, cell, atomic_numbers, edge_src, edge_dst, shifts, batch):
        values = iter(getattr(self, f"state_{i}") for i in range(sum(map(len, self.names))))
        params, buffers = ({name: next(values) for name in names} for names in self.names)
        return self.traced(params, buffers, positions, cell, atomic_numbers, edge_src, edge_dst, shifts, batch)


def example_inputs(model: Potential, num_graphs: int = 1, atoms: int = 6, seed: int = 0) -> tuple:
    """Inputs to trace ``model`` with: ``num_graphs`` periodic cubic cells of side ``1.5 r_max`` holding ``atoms``
    random atoms each (its elements in turn), edges from ``fastso3.graph.neighbor_list``. Sizes above one, so no
    size is specialised."""
    dtype, device = model.atomic_energies.energies.dtype, model.atomic_energies.energies.device
    zs, gen = model.species.atomic_numbers, torch.Generator().manual_seed(seed)
    positions, cells, src, dst, shifts = [], [], [], [], []
    for g in range(num_graphs):
        cell = torch.eye(3, dtype=torch.float64) * 1.5 * model.r_max
        pos = torch.rand(atoms, 3, generator=gen, dtype=torch.float64) @ cell
        s, d, sh = neighbor_list(pos, cell, True, model.r_max)
        positions.append(pos), cells.append(cell), src.append(s + g * atoms), dst.append(d + g * atoms), shifts.append(sh)
    numbers = torch.tensor([zs[i % len(zs)] for i in range(atoms)] * num_graphs)
    batch = torch.arange(num_graphs).repeat_interleave(atoms)
    floats = [torch.cat(positions).to(dtype), torch.stack(cells).to(dtype)]
    return tuple(t.to(device) for t in (*floats, numbers, torch.cat(src), torch.cat(dst), torch.cat(shifts), batch))


def export_program(model: Potential, example: tuple | None = None, num_graphs: int = 1) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model``'s energy, forces and stress (see the module docstring), dynamic in the
    numbers of atoms and edges. ``example``: inputs in :data:`INPUTS` order (default :func:`example_inputs`);
    its cell's first dimension sets ``G``."""
    example = example_inputs(model, num_graphs) if example is None else tuple(example)
    traced = trace_energy_forces(model, example, example[1].shape[0], create_graph=False)
    program = _Program(traced, dict(model.named_parameters()), dict(model.named_buffers())).eval()
    atoms, edges = torch.export.Dim("atoms", min=1), torch.export.Dim("edges", min=0)
    dynamic = ({0: atoms}, None, {0: atoms}, {0: edges}, {0: edges}, {0: edges}, {0: atoms})
    return torch.export.export(program, example, dynamic_shapes=dynamic, strict=False)


def export_potential(model: Potential, path: str | Path, *, aoti: bool = True, example: tuple | None = None,
                     num_graphs: int = 1, inductor_configs: dict | None = None) -> Path:  # fmt: skip
    """Write ``model``'s energy, forces and stress as a ``.pt2`` package (for :func:`load_exported` and
    ``fastso3.calculator.FastSO3Calculator``), in the model's dtype and for its device.

    Args:
        model: a ``fastso3.models`` potential.
        path: the package, ending in ``.pt2``.
        aoti: compile the program with AOTInductor (minutes on a small machine); False stores the exported
            program only, run as a graph of torch ops in Python.
        example: inputs to trace with (:data:`INPUTS` order); default :func:`example_inputs`.
        num_graphs: structures per call ``G`` when ``example`` is None.
        inductor_configs: passed to AOTInductor.

    Returns:
        The path.
    """
    path = Path(path)
    if path.suffix != ".pt2":
        raise ValueError(f"export_potential: the package's name must end in .pt2, got {path}")
    program = export_program(model, example, num_graphs)
    energies = model.atomic_energies.energies
    metadata = {"format": FORMAT, "model": type(model).__name__,
                "dtype": str(energies.dtype).removeprefix("torch."), "device": str(energies.device),
                "r_max": model.r_max, "atomic_numbers": model.species.atomic_numbers,
                "num_graphs": int(program.example_inputs[0][1].shape[0]), "runtime": "aoti" if aoti else "export",
                "inputs": list(INPUTS), "outputs": list(OUTPUTS), "torch": torch.__version__,
                "tables": tables.snapshot(tables.table_names(program.graph))}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {_METADATA: json.dumps(metadata)}
    if not aoti:
        package_pt2(path, exported_programs={"model": program}, extra_files=extra)
        return path
    # as aoti_compile_and_package does, but into one archive with the metadata (it takes no extra files)
    options = {**(inductor_configs or {}), "aot_inductor.package": True}
    files = torch._inductor.aot_compile(program.module(check_guards=False), program.example_inputs[0], options=options)
    package_pt2(path, aoti_files={"model": files}, extra_files=extra)
    return path


class ExportedPotential:
    """A potential loaded from a package of :func:`export_potential`.

    Call with :data:`INPUTS` (``batch`` may be omitted when ``G = 1``); returns ``{"energy" (G,), "forces" (N, 3),
    "stress" (G, 3, 3)}`` (NaN stress for a zero cell), in the package's dtype and on its device.

    Attributes: ``metadata`` (the package's ``fastso3.json``), ``r_max``, ``atomic_numbers``, ``dtype``,
    ``device``, ``num_graphs``, ``runtime`` (``"aoti"`` or ``"export"``).
    """

    def __init__(self, path: str | Path) -> None:
        tables.register_ops()
        contents = load_pt2(str(path))
        if _METADATA not in contents.extra_files:
            raise ValueError(f"load_exported: {path} is not a fastso3 package (no {_METADATA}; write it with "
                             "fastso3.models.export_potential)")  # fmt: skip
        self.metadata = json.loads(contents.extra_files[_METADATA])
        if self.metadata.get("format") != FORMAT:
            raise ValueError(f"load_exported: {path} has format {self.metadata.get('format')!r}, expected {FORMAT!r}")
        tables.restore(self.metadata["tables"])
        self.r_max, self.atomic_numbers = float(self.metadata["r_max"]), list(self.metadata["atomic_numbers"])
        self.dtype, self.device = getattr(torch, self.metadata["dtype"]), torch.device(self.metadata["device"])
        self.num_graphs, self.runtime = int(self.metadata["num_graphs"]), self.metadata["runtime"]
        self._run = contents.aoti_runners["model"] if self.runtime == "aoti" else contents.exported_programs["model"].module()
        self._known = torch.zeros(119, dtype=torch.bool, device=self.device)
        self._known[self.atomic_numbers] = True

    def _check(self, positions, cell, atomic_numbers, edge_src, edge_dst, shifts, batch) -> None:
        """What the compiled program reads without checking: shapes, dtypes, device, index ranges, elements."""
        n, e, g = positions.shape[0], edge_src.shape[0], self.num_graphs
        expected = {"positions": (positions, self.dtype, (n, 3)), "cell": (cell, self.dtype, (g, 3, 3)),
                    "atomic_numbers": (atomic_numbers, torch.int64, (n,)), "edge_src": (edge_src, torch.int64, (e,)),
                    "edge_dst": (edge_dst, torch.int64, (e,)), "shifts": (shifts, torch.int64, (e, 3)),
                    "batch": (batch, torch.int64, (n,))}  # fmt: skip
        for name, (t, dtype, shape) in expected.items():
            if not isinstance(t, torch.Tensor) or t.dtype != dtype or tuple(t.shape) != shape or t.device != self.device:
                got = (t.dtype, tuple(t.shape), str(t.device)) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"ExportedPotential: {name} must be {dtype} {shape} on {self.device}, got {got}")
        if n == 0:
            raise ValueError("ExportedPotential: no atoms")
        for name, t, bound in (("edge_src", edge_src, n), ("edge_dst", edge_dst, n), ("batch", batch, g)):
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= bound):
                raise IndexError(f"ExportedPotential: {name} has values outside [0, {bound})")
        z = atomic_numbers
        unknown = (z < 1) | (z > 118) | ~self._known[z.clamp(0, 118)]
        if bool(unknown.any()):
            raise ValueError(f"ExportedPotential: atomic numbers {sorted(set(z[unknown].tolist()))} are not among "
                             f"the model's {self.atomic_numbers}")  # fmt: skip

    def __call__(self, positions, cell, atomic_numbers, edge_src, edge_dst, shifts, batch=None) -> dict[str, torch.Tensor]:
        if batch is None:
            batch = torch.zeros(positions.shape[0], dtype=torch.int64, device=positions.device)
        inputs = (positions, cell, atomic_numbers, edge_src, edge_dst, shifts, batch)
        self._check(*inputs)
        return dict(zip(OUTPUTS, self._run(*inputs)))


def load_exported(path: str | Path) -> ExportedPotential:
    """The potential of a package written by :func:`export_potential` (see the module docstring for what
    loading needs)."""
    return ExportedPotential(path)
