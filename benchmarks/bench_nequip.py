"""Benchmark ``nequip``: a NequIP potential's energy and forces, fastso3 vs the same network on e3nn 0.6.0.

Configuration: ``fastso3.models.NequIP`` with hidden irreps ``32x0e+32x1o+32x2e``, spherical harmonics l <= 2,
3 layers, r_max 4 A, two elements; a periodic-free cluster of random points at a density of 30
neighbours per atom in the bulk (16 per atom at 64 atoms, most near the surface), 64 and 256 atoms (32 with ``--quick``). Float32, same weights. Providers:

* ``fastso3``: the model (fused channel-wise convolution, compiled CPU kernels);
* ``fastso3-compiled`` (``train`` only): the model through ``models.compile_energy_and_forces`` (``fastso3 train
  --compile``; traced and compiled once in the warm-up, outside the timing);
* ``e3nn``: ``fastso3.compat.E3nnNequIP``, the same forward on e3nn modules (gathered TensorProduct + index_add).

Measurements: ``energy`` (forward) and ``energy+forces`` (forward and the gradient w.r.t. positions), with
the graph built once outside the timed call; ``train``: one training step on forces at 1,024 atoms (a
density of 22 neighbours in the bulk: 18,244 edges, the shape of issue 16's target): energy and forces
(create_graph), the loss ``E^2 + |F|^2``, its gradient w.r.t. the parameters and an Adam step.

Run: ``fastso3 bench nequip [--quick]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Benchmark, Case, Unavailable, main

R_MAX = 4.0
MEASURES = ("energy", "energy+forces")
TRAIN_ATOMS, TRAIN_NEIGHBOURS = 1024, 22  # 18,244 edges


def _system(atoms: int, neighbours: float = 30):
    from fastso3.graph import radius_graph
    from fastso3.models import NequIP

    torch.manual_seed(0)
    model = NequIP([1, 8], r_max=R_MAX, hidden_irreps="32x0e + 32x1o + 32x2e", num_layers=3,
                   avg_num_neighbors=30.0)  # fmt: skip
    side = (atoms * 4.19 * R_MAX**3 / neighbours) ** (1 / 3)  # about ``neighbours`` per atom in the bulk
    pos = torch.rand(atoms, 3, generator=torch.Generator().manual_seed(1)) * side
    z = torch.where(torch.arange(atoms) % 3 == 0, 8, 1)
    src, dst = radius_graph(pos, R_MAX)
    return model, pos, z, src, dst


def _factory(atoms: int, provider: str, measure: str):
    def factory():
        model, pos, z, src, dst = _system(atoms, TRAIN_NEIGHBOURS if measure == "train" else 30)
        if provider == "e3nn":
            try:
                from fastso3.compat import E3nnNequIP

                energy = E3nnNequIP(model)
            except ImportError as exc:
                raise Unavailable("e3nn is not installed") from exc
        else:
            energy = model
        if measure == "train":
            return _train_step(model, energy, provider, pos, z, src, dst)
        x = pos.clone().requires_grad_(measure == "energy+forces")

        def run():
            e = energy(x, z, src, dst).sum()
            return torch.autograd.grad(e, x)[0] if measure == "energy+forces" else e

        return run

    return factory


def _train_step(model, energy, provider: str, pos, z, src, dst):
    """The timed training step of ``energy`` (``model`` itself, or its e3nn twin) on one non-periodic structure."""
    from fastso3.models import compile_energy_and_forces

    optimizer = torch.optim.Adam(energy.parameters(), lr=1e-4)
    if provider == "fastso3-compiled":
        compiled = compile_energy_and_forces(model, stress=False)
        no_cell = (torch.zeros(1, 3, 3), z, src, dst, torch.zeros(len(src), 3))
        graph = (*no_cell, torch.zeros(len(pos), dtype=torch.int64), 1)

        def outputs():
            out = compiled(pos, *graph)
            return out["energy"].sum(), out["forces"]
    else:

        def outputs():
            x = pos.clone().requires_grad_(True)
            e = energy(x, z, src, dst).sum()
            return e, -torch.autograd.grad(e, x, create_graph=True)[0]

    def run():
        e, f = outputs()
        loss = e.square() + f.square().sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return run


def _checks(atoms: int):
    def checks():
        from fastso3.compat import E3nnNequIP

        model, pos, z, src, dst = _system(atoms)
        ours, theirs = model(pos, z, src, dst).sum(), E3nnNequIP(model)(pos, z, src, dst)
        edges = len(_system(TRAIN_ATOMS, TRAIN_NEIGHBOURS)[3])
        return {f"abs_energy_diff_n{atoms}": float((ours - theirs).abs()), f"edges_per_atom_n{atoms}": len(src) / atoms,
                f"edges_n{TRAIN_ATOMS}": edges}

    return checks


def make_benchmark(quick: bool = False) -> Benchmark:
    sizes = [32] if quick else [64, 256]
    cases = [
        Case(name=f"{measure} n={n}", params={"measure": measure, "atoms": n},
             providers={p: _factory(n, p, measure) for p in ("fastso3", "e3nn")})  # fmt: skip
        for measure in MEASURES
        for n in sizes
    ]
    cases.append(Case(name=f"train n={TRAIN_ATOMS}", params={"measure": "train", "atoms": TRAIN_ATOMS},
                      providers={p: _factory(TRAIN_ATOMS, p, "train") for p in ("fastso3", "fastso3-compiled", "e3nn")}))  # fmt: skip
    timing = (
        {"warmup": 1, "min_repeats": 3, "max_repeats": 5, "min_time": 0.05, "block_time": 0.005}
        if quick
        else {"warmup": 2, "min_repeats": 5, "max_repeats": 20, "min_time": 1.0, "block_time": 0.02}
    )
    return Benchmark(
        name="nequip",
        description="NequIP potential (32x0e+32x1o+32x2e, sh l<=2, 3 layers, ~30 neighbours), float32: energy and "
        "energy+forces, and a training step on forces at 1,024 atoms (18k edges; fastso3 eager and compiled), fastso3 "
        "vs the same network and weights on e3nn 0.6.0",
        cases=cases,
        reference="e3nn",
        ratios=[("e3nn/fastso3", "e3nn", "fastso3"), ("e3nn/fastso3-compiled", "e3nn", "fastso3-compiled"),
                ("fastso3/fastso3-compiled", "fastso3", "fastso3-compiled")],
        settings={"dtype": "float32", "r_max": R_MAX, "quick": quick},
        plot_x="atoms",
        plot_panels="measure",
        checks=_checks(sizes[0]),
        timing=timing,
    )


if __name__ == "__main__":
    sys.exit(main(make_benchmark))
