"""Energies and forces of small mace-torch 0.3.16 MACE models (float64), for a run on the real e3nn 0.6.0
and one under ``python -m fastso3.as_e3nn`` to compare.

``python mace_energies.py OUT STATE``: builds the models (seeded) and saves ``{config: {"fresh": {"energy",
"forces"}}}`` to OUT; if the file STATE exists, also ``"loaded"``, the outputs with the parameters and buffers
loaded from it, else the models' state dicts are saved there.
"""

import sys
from pathlib import Path

import numpy as np
import torch

torch.set_default_dtype(torch.float64)

from ase.build import bulk
from e3nn import o3
from mace import modules

from fastso3.compat import mace_inputs
from fastso3.graph import neighbor_list

CONFIGS = {
    "ScaleShiftMACE-residual-corr3": ("ScaleShiftMACE", "RealAgnosticResidualInteractionBlock", 3),
    "MACE-agnostic-corr2": ("MACE", "RealAgnosticInteractionBlock", 2),
}


def build(cls: str, block: str, correlation: int) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = dict(
        r_max=3.5, num_bessel=6, num_polynomial_cutoff=5, max_ell=3, interaction_cls=modules.interaction_classes[block],
        interaction_cls_first=modules.interaction_classes[block], num_interactions=2, num_elements=2,
        hidden_irreps=o3.Irreps("4x0e+4x1o"), MLP_irreps=o3.Irreps("8x0e"), atomic_energies=np.array([-1.5, -2.5]),
        avg_num_neighbors=12.0, atomic_numbers=[29, 79], correlation=correlation, gate=torch.nn.functional.silu,
        radial_MLP=[8, 8], use_reduced_cg=False,
    )  # fmt: skip
    if cls == "ScaleShiftMACE":
        return modules.ScaleShiftMACE(atomic_inter_scale=1.3, atomic_inter_shift=0.2, **kwargs)
    return modules.MACE(**kwargs)


def inputs(model: torch.nn.Module) -> dict:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.numbers[[1, 3]] = 79
    atoms.rattle(0.1, seed=1)
    pos, cell = torch.tensor(atoms.positions), torch.tensor(np.asarray(atoms.cell))
    src, dst, shifts = neighbor_list(pos, cell, True, float(model.r_max))
    return mace_inputs(model, pos, torch.tensor(atoms.numbers), src, dst, shifts, cell)


def outputs(model: torch.nn.Module) -> dict:
    out = model(inputs(model), compute_force=True, training=False)
    return {"energy": out["energy"].detach(), "forces": out["forces"].detach()}


def main(out_path: str, state_path: str) -> None:
    saved = torch.load(state_path, weights_only=True) if Path(state_path).exists() else None
    results, states = {}, {}
    for name, config in CONFIGS.items():
        model = build(*config)
        states[name] = model.state_dict()
        results[name] = {"fresh": outputs(model)}
        if saved is not None:
            model.load_state_dict(saved[name])
            results[name]["loaded"] = outputs(model)
    if saved is None:
        torch.save(states, state_path)
    torch.save(results, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:3])
