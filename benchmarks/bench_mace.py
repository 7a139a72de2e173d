"""Benchmark ``mace``: a MACE potential, fastso3 (``compat.from_mace``) vs mace-torch 0.3.16 itself (on e3nn 0.6.0).

Configuration: ``ScaleShiftMACE`` with RealAgnosticResidual blocks, hidden irreps ``64x0e+64x1o``, spherical
harmonics l <= 3, correlation 3, 2 layers, r_max 5 A, radial MLP [64, 64, 64]; rattled periodic Cu3Au fcc
supercells of 32, 108 and 500 atoms (42 neighbours per atom); float32; the same weights (the fastso3 model is
converted from the mace-torch one). Providers:

* ``fastso3``: ``fastso3.models.MACE`` (fused channel-wise convolution, fused symmetric-contraction kernel);
* ``mace``: mace-torch's own model and code.

Measurements: ``energy+forces`` (an MD step's model call) and ``train step`` (energy and forces, then the
gradient of an energy + forces loss w.r.t. the parameters), with the neighbour list built once outside. The
checks add each library's forward-time shares per block (interaction product, radial MLP, linears, symmetric
contraction, other), timed with module hooks on the largest system.

Run: ``fastso3 bench mace [--quick]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Benchmark, Case, Unavailable, main

R_MAX = 5.0
MEASURES = ("energy+forces", "train step")


def mace_torch_model(hidden: str, max_ell: int = 3, correlation: int = 3, layers: int = 2):
    """mace-torch's ScaleShiftMACE (residual interactions, Cu and Au, r_max 5 A); also used by bench_model."""
    try:
        from e3nn import o3
        from mace import modules
    except ImportError as exc:
        raise Unavailable("mace-torch (installed with --no-deps, see the Makefile) or e3nn is missing") from exc
    torch.manual_seed(0)
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    return modules.ScaleShiftMACE(
        r_max=R_MAX, num_bessel=8, num_polynomial_cutoff=5, max_ell=max_ell, interaction_cls=block,
        interaction_cls_first=block, num_interactions=layers, num_elements=2, hidden_irreps=o3.Irreps(hidden),
        MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.array([-3.7, -3.2]), avg_num_neighbors=42.0,
        atomic_numbers=[29, 79], correlation=correlation, gate=torch.nn.functional.silu, radial_MLP=[64, 64, 64],
        use_reduced_cg=False, atomic_inter_scale=1.0, atomic_inter_shift=0.0,
    )  # fmt: skip


def _system(repeat: int):
    from ase.build import bulk

    from fastso3.graph import neighbor_list

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((repeat, repeat, repeat))
    atoms.numbers[::4] = 79
    atoms.rattle(0.05, seed=0)
    pos = torch.tensor(atoms.positions, dtype=torch.float32)
    cell = torch.tensor(np.asarray(atoms.cell), dtype=torch.float32)
    z = torch.tensor(atoms.numbers)
    src, dst, shifts = neighbor_list(pos, cell, True, R_MAX)
    return pos, cell, z, src, dst, shifts


def _factory(repeat: int, provider: str, measure: str, hidden: str):
    def factory():
        from fastso3.compat import from_mace, mace_inputs

        theirs = mace_torch_model(hidden)
        pos, cell, z, src, dst, shifts = _system(repeat)
        train = measure == "train step"
        if provider == "mace":
            def energy_forces():
                out = theirs(mace_inputs(theirs, pos.clone(), z, src, dst, shifts, cell), training=train)
                return out["energy"], out["forces"]

            params = list(theirs.parameters())
        else:
            ours = from_mace(theirs)

            def energy_forces():
                x = pos.clone().requires_grad_(True)
                e = ours(x, z, src, dst, shifts, cell.unsqueeze(0))
                (f,) = torch.autograd.grad(-e.sum(), x, create_graph=train)
                return e, f

            params = list(ours.parameters())

        def run():
            e, f = energy_forces()
            if train:
                loss = e.square().sum() + f.square().sum()
                return torch.autograd.grad(loss, [p for p in params if p.requires_grad])
            return f

        return run

    return factory


# Blocks of both models by module name (mace-torch's names, which fastso3.models.MACE keeps).
_TIMED = {
    "block": r"interactions\.\d+",
    "radial MLP": r"interactions\.\d+\.conv_tp_weights",
    "interaction linears": r"interactions\.\d+\.(linear_up|linear|skip_tp)",
    "product linears": r"products\.\d+\.linear",
    "symmetric contraction": r"products\.\d+\.symmetric_contractions",
}


def _forward_shares(model, call, repeats: int = 3) -> dict:
    """Shares of a forward's (energy) time per block, timed by module hooks; ``call()`` runs one forward. The
    interaction product is its block's time minus the radial MLP and linears inside it (fastso3's fused
    convolution is a function call, not a module); "other" is embeddings, harmonics, readouts, glue."""
    import re
    import time

    spent = dict.fromkeys(_TIMED, 0.0)
    hooks = []
    for name, module in model.named_modules():
        for group, pattern in _TIMED.items():
            if re.fullmatch(pattern, name):
                def pre(module, args):
                    module._bench_start = time.perf_counter()

                def post(module, args, out, group=group):
                    spent[group] += time.perf_counter() - module._bench_start

                hooks += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    call()  # warm-up
    spent.update(dict.fromkeys(spent, 0.0))
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    total = time.perf_counter() - start
    for hook in hooks:
        hook.remove()
    shares = {
        "interaction product": spent["block"] - spent["radial MLP"] - spent["interaction linears"],
        "radial MLP": spent["radial MLP"],
        "linears": spent["interaction linears"] + spent["product linears"],
        "symmetric contraction": spent["symmetric contraction"],
    }
    shares["other"] = total - sum(shares.values())
    return {group: round(t / total, 3) for group, t in shares.items()}


def _checks(repeat: int, hidden: str, repeats_measured):
    def checks():
        from fastso3.compat import from_mace, mace_inputs

        from fastso3.testing import default_dtype

        with default_dtype(torch.float64):  # built in float64: a cast float32 model keeps float32-rounded constants
            theirs = mace_torch_model(hidden)
        ours = from_mace(theirs)
        pos, cell, z, src, dst, shifts = (t.double() if t.is_floating_point() else t for t in _system(repeat))
        e_theirs = theirs(mace_inputs(theirs, pos, z, src, dst, shifts, cell), compute_force=False)["energy"]
        e_ours = ours(pos, z, src, dst, shifts, cell.unsqueeze(0))
        result = {"rel_energy_diff_float64": float((e_ours - e_theirs).abs().detach() / e_theirs.abs()),
                  "edges_per_atom": len(src) / len(z)}  # fmt: skip
        # forward-time (energy) shares per block, float32, the largest system
        theirs32 = theirs.float()  # in place: the float64 checks are done
        ours32 = from_mace(theirs32)
        pos, cell, z, src, dst, shifts = _system(max(repeats_measured))
        with torch.no_grad():
            result["forward_shares_fastso3"] = _forward_shares(
                ours32, lambda: ours32(pos, z, src, dst, shifts, cell.unsqueeze(0)))
            result["forward_shares_mace"] = _forward_shares(
                theirs32, lambda: theirs32(mace_inputs(theirs32, pos, z, src, dst, shifts, cell), compute_force=False))
        return result

    return checks


def make_benchmark(quick: bool = False) -> Benchmark:
    hidden = "16x0e+16x1o" if quick else "64x0e+64x1o"
    repeats = {32: 2} if quick else {32: 2, 108: 3, 500: 5}
    cases = [
        Case(name=f"{measure} n={n}", params={"measure": measure, "atoms": n},
             providers={p: _factory(r, p, measure, hidden) for p in ("fastso3", "mace")})  # fmt: skip
        for measure in MEASURES
        for n, r in repeats.items()
    ]
    timing = (
        {"warmup": 1, "min_repeats": 3, "max_repeats": 3, "min_time": 0.05, "block_time": 0.005}
        if quick
        else {"warmup": 1, "min_repeats": 5, "max_repeats": 10, "min_time": 1.0, "block_time": 0.02}
    )
    return Benchmark(
        name="mace",
        description=f"ScaleShiftMACE ({hidden}, sh l<=3, correlation 3, 2 layers, r_max 5, periodic Cu3Au), "
        "float32: energy+forces and a training step, fastso3 (from_mace) vs mace-torch 0.3.16 on e3nn 0.6.0",
        cases=cases,
        reference="mace",
        ratios=[("mace/fastso3", "mace", "fastso3")],
        settings={"dtype": "float32", "r_max": R_MAX, "hidden_irreps": hidden, "quick": quick},
        plot_x="atoms",
        plot_panels="measure",
        checks=_checks(2, hidden, list(repeats.values())),
        timing=timing,
    )


if __name__ == "__main__":
    sys.exit(main(make_benchmark))
