"""Benchmark ``model``: an MD step's model call (energy + forces) of a periodic cell, fastso3 eager, compiled and
exported (AOTInductor), against the same network on its peer.

Systems: rattled periodic Cu3Au fcc supercells (a = 3.61 A), float32, the neighbour list built once outside the
timed call. Atom-steps per second = atoms / median time. Models and peers (same weights):

* ``NequIP``: the issue's shape, hidden ``32x0e+32x1o+32x2e``, sh l <= 2, 3 layers, r_max 4 A (18 neighbours
  per atom), 1,000 atoms; peer ``fastso3.compat.E3nnNequIP`` (the same forward on e3nn 0.6.0 modules);
* ``MACE``: ``bench mace``'s model (64x0e+64x1o, l <= 3, correlation 3, 2 layers, r_max 5 A, 42 neighbours),
  500 atoms; peer mace-torch itself (``fastso3.compat.from_mace`` converts it).

Providers: ``peer``; ``fastso3 eager`` (the model and ``autograd.grad``, as ``FastSO3Calculator``);
``fastso3 compiled`` (``torch.compile(model, dynamic=True, fullgraph=True)``, as ``FastSO3Calculator(compile=True)``);
``fastso3 aoti`` (``fastso3.models.export_potential`` -> ``load_exported``, as ``FastSO3Calculator("x.pt2")``,
input checks included). Compiling and exporting happen in the set-up (minutes each), outside the timing.

Run: ``fastso3 bench model [--quick]`` (``--quick``: one-layer, 8-channel models on 108 and 32 atoms).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_mace import mace_torch_model
from harness import Benchmark, Case, Unavailable, main

PROVIDERS = ("peer", "fastso3 eager", "fastso3 compiled", "fastso3 aoti")


def _cell(repeat: tuple[int, int, int], r_max: float):
    from ase.build import bulk

    from fastso3.graph import neighbor_list

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)
    atoms.numbers[::4] = 79
    atoms.rattle(0.05, seed=0)
    pos = torch.tensor(atoms.positions, dtype=torch.float32)
    cell = torch.tensor(np.asarray(atoms.cell), dtype=torch.float32)
    src, dst, shifts = neighbor_list(pos, cell, True, r_max)
    return pos, cell, torch.tensor(atoms.numbers), src, dst, shifts


def _nequip(quick: bool):
    from fastso3.models import NequIP

    torch.manual_seed(0)
    hidden, layers = ("8x0e+8x1o+8x2e", 1) if quick else ("32x0e+32x1o+32x2e", 3)
    return NequIP([29, 79], r_max=4.0, hidden_irreps=hidden, num_layers=layers, avg_num_neighbors=18.0)


def _mace_torch(quick: bool):
    hidden, ell, correlation, layers = ("8x0e+8x1o", 1, 2, 1) if quick else ("64x0e+64x1o", 3, 3, 2)
    return mace_torch_model(hidden, ell, correlation, layers)


def _factory(kind: str, quick: bool, repeat: tuple, provider: str):
    def factory():
        r_max = 4.0 if kind == "NequIP" else 5.0
        pos, cell, z, src, dst, shifts = _cell(repeat, r_max)
        if kind == "NequIP":
            model = _nequip(quick)
        else:
            from fastso3.compat import from_mace, mace_inputs

            theirs = _mace_torch(quick)
            model = from_mace(theirs)
        for p in model.parameters():
            p.requires_grad_(False)
        if provider == "peer" and kind == "NequIP":
            try:
                from fastso3.compat import E3nnNequIP

                peer = E3nnNequIP(model)
            except ImportError as exc:
                raise Unavailable("e3nn is not installed") from exc

            def run():
                x = pos.clone().requires_grad_(True)
                return torch.autograd.grad(-peer(x, z, src, dst, shifts, cell), x)[0]

            return run
        if provider == "peer":
            return lambda: theirs(mace_inputs(theirs, pos.clone(), z, src, dst, shifts, cell), training=False)["forces"]
        if provider == "fastso3 aoti":
            from fastso3.models import export_potential, load_exported

            with tempfile.TemporaryDirectory() as scratch:
                potential = load_exported(export_potential(model, Path(scratch) / "model.pt2"))
            return lambda: potential(pos, cell[None], z, src, dst, shifts)["forces"]
        energy = torch.compile(model, dynamic=True, fullgraph=True) if provider == "fastso3 compiled" else model

        def run():
            x = pos.clone().requires_grad_(True)
            return torch.autograd.grad(-energy(x, z, src, dst, shifts, cell[None]).sum(), x)[0]

        run()  # the compile, outside the timing
        return run

    return factory


def make_benchmark(quick: bool = False) -> Benchmark:
    systems = [("NequIP", (3, 3, 3) if quick else (5, 5, 10)), ("MACE", (2, 2, 2) if quick else (5, 5, 5))]
    cases = [
        Case(name=f"{kind} md step n={4 * int(np.prod(repeat))}", params={"model": kind, "atoms": 4 * int(np.prod(repeat))},
             providers={p: _factory(kind, quick, repeat, p) for p in PROVIDERS})  # fmt: skip
        for kind, repeat in systems
    ]
    timing = (
        {"warmup": 1, "min_repeats": 3, "max_repeats": 5, "min_time": 0.1, "block_time": 0.005}
        if quick
        else {"warmup": 2, "min_repeats": 5, "max_repeats": 15, "min_time": 2.0, "block_time": 0.02}
    )
    return Benchmark(
        name="model",
        description="MD step (energy+forces) of periodic Cu3Au cells, float32: fastso3 eager, torch.compile'd and "
        "AOTInductor-exported vs the same weights on the peer (NequIP: fastso3.compat.E3nnNequIP on e3nn 0.6.0; "
        "MACE: mace-torch); atom-steps/s = atoms / median",
        cases=cases,
        reference="peer",
        ratios=[("eager/aoti", "fastso3 eager", "fastso3 aoti"), ("eager/compiled", "fastso3 eager", "fastso3 compiled")],
        settings={"dtype": "float32", "quick": quick, "peers": {"NequIP": "e3nn 0.6.0 (fastso3.compat.E3nnNequIP)",
                                                                "MACE": "mace-torch"}},  # fmt: skip
        plot_panels="model",
        timing=timing,
    )


if __name__ == "__main__":
    sys.exit(main(make_benchmark))
