"""Benchmark ``train``: one training step of ``fastso3 train``'s default model, fastso3 vs mace-torch on e3nn 0.6.0.

Configuration: the default ``TrainConfig`` model (MACE, hidden ``16x0e+16x1o``, l <= 2, correlation 2,
2 interactions, radial MLP [32, 32], r_max 4.5 A) with the statistics of the embedded EMT Cu/Au data, float32;
batches of 4 and 16 structures of that data set (8-32 atoms each). The mace-torch model is built with the same
architecture and converted (``compat.from_mace``), so both providers hold the same weights. Providers:

* ``fastso3``: ``fastso3.models.MACE``, eager;
* ``fastso3-compiled``: the same through ``models.compile_energy_and_forces`` (``fastso3 train --compile``;
  compiled once in the warm-up, outside the timing);
* ``mace``: mace-torch's model (on e3nn 0.6.0) behind the same call signature.

Measurement: a full step as ``fastso3 train`` runs it: energies, forces and stresses (strain derivative),
the loss, its gradient w.r.t. the parameters, and an Adam step. Throughput: atoms per second.

Run: ``fastso3 bench train [--quick]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Benchmark, Case, Unavailable, main


class _MaceAsPotential(torch.nn.Module):
    """A mace-torch model behind ``fastso3.models.Potential``'s call signature (energy per structure)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.mace = model

    def forward(self, positions, numbers, edge_src, edge_dst, shifts, cell, batch, num_graphs):
        from fastso3.compat import mace_inputs

        data = mace_inputs(self.mace, positions, numbers, edge_src, edge_dst, shifts, cell, batch)
        return self.mace(data, training=True, compute_force=False)["energy"]


def _setup(batch_size: int):
    from fastso3.data import GraphDataset, collate, emt_cuau, read_configurations
    from fastso3.training import TrainConfig
    from fastso3.training.trainer import _build_model

    config = TrainConfig(default_dtype="float32", progress=False)
    configs = read_configurations(emt_cuau())
    data = GraphDataset(configs, config.r_max, [29, 79])
    ours = _build_model(config, data, [29, 79])
    batch = collate([data[i] for i in range(0, 8 * batch_size, 8)]).to(dtype=torch.float32)
    return config, ours, batch


def _mace_twin(ours):
    """A mace-torch model of ``ours``'s architecture holding its weights."""
    try:
        from e3nn import o3
        from mace import modules
    except ImportError as exc:
        raise Unavailable("mace-torch (installed with --no-deps, see the Makefile) or e3nn is missing") from exc
    from fastso3.compat import to_mace
    from fastso3.testing import default_dtype

    c = ours.config
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    with default_dtype(torch.float32):
        theirs = modules.ScaleShiftMACE(
            r_max=c["r_max"], num_bessel=c["num_bessel"], num_polynomial_cutoff=c["num_polynomial_cutoff"],
            max_ell=c["max_ell"], interaction_cls=block, interaction_cls_first=block,
            num_interactions=c["num_interactions"], num_elements=2, hidden_irreps=o3.Irreps(c["hidden_irreps"]),
            MLP_irreps=o3.Irreps(c["MLP_irreps"]), atomic_energies=np.array(c["atomic_energies"]),
            avg_num_neighbors=c["avg_num_neighbors"], atomic_numbers=c["atomic_numbers"],
            correlation=c["correlation"], gate=torch.nn.functional.silu, radial_MLP=list(c["radial_MLP"]),
            use_reduced_cg=False, atomic_inter_scale=c["scale"], atomic_inter_shift=c["shift"],
        )  # fmt: skip
    return to_mace(ours, theirs)


def _factory(batch_size: int, provider: str):
    def factory():
        from fastso3.training import loss_terms, predict

        from fastso3.models import compile_energy_and_forces

        config, ours, batch = _setup(batch_size)
        model = _MaceAsPotential(_mace_twin(ours)) if provider == "mace" else ours
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        compiled = compile_energy_and_forces(ours) if provider == "fastso3-compiled" else None

        def outputs():
            if compiled is None:
                return predict(model, batch, training=True)
            return compiled(batch.positions, batch.cell, batch.numbers, batch.edge_src, batch.edge_dst, batch.shifts,
                            batch.batch, batch.num_graphs)  # fmt: skip

        def run():
            loss = loss_terms(outputs(), batch, config).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss

        return run

    return factory


def _checks():
    from fastso3.training import predict

    config, ours, batch = _setup(4)
    theirs = _MaceAsPotential(_mace_twin(ours))
    a, b = predict(ours, batch, training=False), predict(theirs, batch, training=False)
    return {"max_rel_energy_diff_float32": float(((a["energy"] - b["energy"]) / b["energy"]).abs().max()),
            "max_abs_force_diff_float32": float((a["forces"] - b["forces"]).abs().max()),
            "atoms_per_batch": json.dumps({4: int(batch.num_atoms.sum()), 16: int(_setup(16)[2].num_atoms.sum())})}  # fmt: skip


def make_benchmark(quick: bool = False) -> Benchmark:
    sizes = [4] if quick else [4, 16]
    cases = [Case(name=f"train step batch={n}", params={"batch": n},
                  providers={p: _factory(n, p) for p in ("fastso3", "fastso3-compiled", "mace")})
             for n in sizes]  # fmt: skip
    timing = (
        {"warmup": 1, "min_repeats": 3, "max_repeats": 3, "min_time": 0.05, "block_time": 0.005}
        if quick
        else {"warmup": 2, "min_repeats": 5, "max_repeats": 20, "min_time": 1.0, "block_time": 0.02}
    )
    return Benchmark(
        name="train",
        description="one training step (energy, forces, stress, loss backward, Adam) of fastso3 train's default "
        "MACE on the embedded EMT Cu/Au data, float32: fastso3 vs mace-torch 0.3.16 on e3nn 0.6.0, same weights",
        cases=cases,
        reference="mace",
        ratios=[("mace/fastso3", "mace", "fastso3"), ("mace/fastso3-compiled", "mace", "fastso3-compiled")],
        settings={"dtype": "float32", "quick": quick},
        plot_x="batch",
        plot_panels=None,
        checks=_checks,
        timing=timing,
    )


if __name__ == "__main__":
    sys.exit(main(make_benchmark))
