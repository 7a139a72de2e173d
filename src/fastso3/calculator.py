"""An ASE calculator for the potentials of ``fastso3.models``: energy, forces, stress, per-atom energies, Hessian.

    from fastso3.calculator import FastSO3Calculator
    atoms.calc = FastSO3Calculator("run/model.pt")          # a file of fastso3.models.save, or a model
    atoms.calc = FastSO3Calculator("run/model.pt2")         # a package of fastso3.models.export_potential

Units are the model's (eV and Angstrom for models trained on the usual data). The neighbour list is
``fastso3.graph.neighbor_list`` (vesin's cell lists for large cells) with the model's cutoff, rebuilt at
every call: molecular dynamics steps need no skin bookkeeping.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from .graph import neighbor_list
from .models import forces_and_stress, load, load_exported
from .models._potential import Potential

__all__ = ["FastSO3Calculator"]


class FastSO3Calculator(Calculator):
    """ASE calculator of a fastso3 potential.

    Args:
        model: a ``fastso3.models`` potential, the path of a file written by ``fastso3.models.save`` (or by
            ``fastso3 train``), or of a ``.pt2`` package of ``fastso3.models.export_potential`` (or ``fastso3
            export``): the exported energy, forces and stress run without the model's code, in the package's
            dtype and on its device; no ``compile``, no Hessian.
        device: where the model runs (``"cpu"``, ``"cuda"``).
        dtype: ``torch.float64`` or ``torch.float32`` (or ``"float64"``, ``"float32"``); default: the model's own.
        compile: run the model through ``torch.compile(dynamic=True, fullgraph=True)``: the energy's graph is
            compiled once for a number of atoms (any number of edges: one graph for an MD run), and forces and
            stress (first derivatives) come from its compiled backward. The first call compiles (tens of
            seconds); another number of atoms compiles again.

    Properties: ``energy`` and ``free_energy`` (eV), ``forces`` ``(N, 3)`` (eV/A), ``stress`` (6, Voigt
    ``xx yy zz yz xz xy``, eV/A^3, ASE's sign) for cells periodic along all three axes, and :meth:`get_hessian`.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model: Potential | str | Path, device: str | torch.device = "cpu",
                 dtype: torch.dtype | str | None = None, compile: bool = False, **kwargs) -> None:  # fmt: skip
        super().__init__(**kwargs)
        dtype = _float_dtype(dtype)
        self.package = load_exported(model) if isinstance(model, (str, Path)) and Path(model).suffix == ".pt2" else None
        if self.package is not None:
            if compile or dtype not in (None, self.package.dtype) or torch.device(device) != self.package.device:
                raise ValueError(f"FastSO3Calculator: the package {model} runs compiled, in {self.package.dtype} on "
                                 f"{self.package.device}; compile, dtype and device cannot change it")  # fmt: skip
            self.model, self.device, self.dtype, self.r_max = None, self.package.device, self.package.dtype, self.package.r_max
            return
        self.model = load(model, device) if isinstance(model, (str, Path)) else model.to(device).eval()
        if dtype is not None:
            self.model = self.model.to(dtype)
        self.device, self.r_max = torch.device(device), self.model.r_max
        self.dtype = self.model.atomic_energies.energies.dtype
        for p in self.model.parameters():
            p.requires_grad_(False)  # inference: gradients w.r.t. positions and strain only
        self._forward = torch.compile(self.model, dynamic=True, fullgraph=True) if compile else self.model

    def _inputs(self, atoms):
        positions = torch.tensor(atoms.get_positions(), dtype=self.dtype, device=self.device)
        cell = torch.tensor(np.asarray(atoms.get_cell()), dtype=self.dtype, device=self.device)
        numbers = torch.tensor(atoms.get_atomic_numbers(), dtype=torch.int64, device=self.device)
        src, dst, shifts = neighbor_list(positions, cell, atoms.get_pbc().tolist(), self.r_max)
        return positions, cell, numbers, src, dst, shifts

    def _energy_fn(self, numbers, src, dst, shifts):
        return lambda pos, cell: self._forward(pos, numbers, src, dst, shifts, cell)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        positions, cell, numbers, src, dst, shifts = self._inputs(self.atoms)
        periodic = bool(self.atoms.pbc.all())
        if "stress" in properties and not periodic:
            raise ValueError("FastSO3Calculator: stress needs a cell periodic along all three axes")
        if self.package is not None:
            out = self.package(positions, cell.unsqueeze(0), numbers, src, dst, shifts)
        else:
            out = forces_and_stress(self._energy_fn(numbers, src, dst, shifts), positions, cell, stress=periodic)
        energy = float(out["energy"].sum())
        self.results = {"energy": energy, "free_energy": energy, "forces": out["forces"].cpu().double().numpy()}
        if periodic:
            s = out["stress"][0].cpu().double().numpy()
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])

    def get_hessian(self, atoms=None) -> np.ndarray:
        """``(3N, 3N)`` second derivatives of the energy in the positions (eV/A^2), by double autograd."""
        if self.package is not None:
            raise NotImplementedError("FastSO3Calculator.get_hessian: a package holds first derivatives only; "
                                      "use the model's file (fastso3.models.save)")  # fmt: skip
        atoms = self.atoms if atoms is None else atoms
        positions, cell, numbers, src, dst, shifts = self._inputs(atoms)
        energy = self._energy_fn(numbers, src, dst, shifts)
        flat = positions.reshape(-1)
        hessian = torch.autograd.functional.hessian(lambda x: energy(x.reshape(-1, 3), cell.unsqueeze(0)).sum(), flat)
        return hessian.cpu().double().numpy()


def _float_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``dtype`` as a torch float dtype (float32 / float64, or their names), None kept; anything else raises."""
    named = {"float32": torch.float32, "float64": torch.float64}
    if dtype is None or dtype in named.values():
        return dtype
    if isinstance(dtype, str) and dtype in named:
        return named[dtype]
    raise ValueError(f"FastSO3Calculator: dtype must be torch.float32 or torch.float64 (or 'float32', 'float64'), "
                     f"got {dtype!r}")
