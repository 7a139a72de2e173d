"""Benchmark ``nequip``: a NequIP potential's energy and forces, fastso3 vs the same network on e3nn 0.6.0.

Configuration: ``fastso3.models.NequIP`` with hidden irreps ``32x0e+32x1o+32x2e``, spherical harmonics l <= 2,
3 layers, r_max 4 A, two elements; a periodic-free cluster of random points at a density of 30
neighbours per atom in the bulk (16 per atom at 64 atoms, most near the surface), 64 and 256 atoms (32 with ``--quick``). Float32, same weights. Providers:

* ``fastso3``: the model (fused channel-wise convolution, compiled CPU kernels);
* ``e3nn``: ``fastso3.compat.E3nnNequIP``, the same forward on e3nn modules (gathered TensorProduct + index_add).

Measurements: ``energy`` (forward) and ``energy+forces`` (forward and the gradient w.r.t. positions), with
the graph built once outside the timed call.

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


def _system(atoms: int):
    from fastso3.graph import radius_graph
    from fastso3.models import NequIP

    torch.manual_seed(0)
    model = NequIP([1, 8], r_max=R_MAX, hidden_irreps="32x0e + 32x1o + 32x2e", num_layers=3,
                   avg_num_neighbors=30.0)  # fmt: skip
    side = (atoms * 4.19 * R_MAX**3 / 30) ** (1 / 3)  # about 30 neighbours per atom
    pos = torch.rand(atoms, 3, generator=torch.Generator().manual_seed(1)) * side
    z = torch.where(torch.arange(atoms) % 3 == 0, 8, 1)
    src, dst = radius_graph(pos, R_MAX)
    return model, pos, z, src, dst


def _factory(atoms: int, provider: str, measure: str):
    def factory():
        model, pos, z, src, dst = _system(atoms)
        if provider == "e3nn":
            try:
                from fastso3.compat import E3nnNequIP

                energy = E3nnNequIP(model)
            except ImportError as exc:
                raise Unavailable("e3nn is not installed") from exc
        else:
            energy = model
        x = pos.clone().requires_grad_(measure == "energy+forces")

        def run():
            e = energy(x, z, src, dst).sum()
            return torch.autograd.grad(e, x)[0] if measure == "energy+forces" else e

        return run

    return factory


def _checks(atoms: int):
    def checks():
        from fastso3.compat import E3nnNequIP

        model, pos, z, src, dst = _system(atoms)
        ours, theirs = model(pos, z, src, dst).sum(), E3nnNequIP(model)(pos, z, src, dst)
        return {f"abs_energy_diff_n{atoms}": float((ours - theirs).abs()), f"edges_per_atom_n{atoms}": len(src) / atoms}

    return checks


def make_benchmark(quick: bool = False) -> Benchmark:
    sizes = [32] if quick else [64, 256]
    cases = [
        Case(name=f"{measure} n={n}", params={"measure": measure, "atoms": n},
             providers={p: _factory(n, p, measure) for p in ("fastso3", "e3nn")})  # fmt: skip
        for measure in MEASURES
        for n in sizes
    ]
    timing = (
        {"warmup": 1, "min_repeats": 3, "max_repeats": 5, "min_time": 0.05, "block_time": 0.005}
        if quick
        else {"warmup": 2, "min_repeats": 5, "max_repeats": 20, "min_time": 1.0, "block_time": 0.02}
    )
    return Benchmark(
        name="nequip",
        description="NequIP potential (32x0e+32x1o+32x2e, sh l<=2, 3 layers, ~30 neighbours), float32: energy and "
        "energy+forces, fastso3 vs the same network and weights on e3nn 0.6.0",
        cases=cases,
        reference="e3nn",
        ratios=[("e3nn/fastso3", "e3nn", "fastso3")],
        settings={"dtype": "float32", "r_max": R_MAX, "quick": quick},
        plot_x="atoms",
        plot_panels="measure",
        checks=_checks(sizes[0]),
        timing=timing,
    )


if __name__ == "__main__":
    sys.exit(main(make_benchmark))
