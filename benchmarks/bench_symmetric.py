"""Benchmark ``symmetric``: MACE's symmetric contraction alone, fastso3's factorised path vs mace-torch's.

Configuration: inputs ``C x (0e+1o+2e+3o)`` (MACE's atomic basis with l <= 3), correlation 3, ten elements,
256 nodes, float32; outputs ``C x 0e`` (MACE-small/medium's last layer) and ``C x (0e+1o)`` (MACE-L's hidden
layer), C = 64 and 128 (32 with ``--quick``); the same weights (mace-torch's, loaded by name). Providers:

* ``fastso3``: ``fastso3.nn.SymmetricContraction`` with its default backend, the fused C++ kernel (``cpu``);
* ``fastso3-factorized``: the same plan as torch ops (monomials, one GEMM with the low-rank projection);
* ``mace``: ``mace.modules.symmetric_contraction.SymmetricContraction`` (opt_einsum-optimised contractions).

Measurements: ``forward`` and ``forward+backward`` (gradient w.r.t. the inputs and the weights).

Run: ``fastso3 bench symmetric [--quick]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Benchmark, Case, Unavailable, main

NODES, ELEMENTS = 256, 10
MEASURES = ("forward", "forward+backward")


def _modules(channels: int, outputs: str):
    try:
        from e3nn import o3
        from mace.modules.symmetric_contraction import SymmetricContraction as MaceContraction
    except ImportError as exc:
        raise Unavailable("mace-torch (installed with --no-deps, see the Makefile) or e3nn is missing") from exc
    from fastso3.nn import SymmetricContraction

    irreps_in = f"{channels}x0e+{channels}x1o+{channels}x2e+{channels}x3o"
    irreps_out = "+".join(f"{channels}x{ir}" for ir in outputs.split("+"))
    torch.manual_seed(0)
    theirs = MaceContraction(o3.Irreps(irreps_in), o3.Irreps(irreps_out), 3, num_elements=ELEMENTS,
                             use_reduced_cg=False)  # fmt: skip
    ours = SymmetricContraction(irreps_in, irreps_out, 3, ELEMENTS)
    ours.load_state_dict(theirs.state_dict(), strict=False)
    return ours, theirs


def _inputs(channels: int):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(NODES, channels, 16, generator=g)
    species = torch.randint(0, ELEMENTS, (NODES,), generator=g)
    return x, species


def _factory(channels: int, outputs: str, provider: str, measure: str):
    def factory():
        ours, theirs = _modules(channels, outputs)
        x, species = _inputs(channels)
        x.requires_grad_(measure == "forward+backward")
        if provider == "mace":
            module, second = theirs, torch.nn.functional.one_hot(species, ELEMENTS).float()
        else:
            module, second = ours, species
            ours.backend = "factorized" if provider == "fastso3-factorized" else None
        params = list(module.parameters())

        def run():
            out = module(x, second)
            if measure == "forward":
                return out
            return torch.autograd.grad(out.square().sum(), [x, *params])

        return run

    return factory


def _checks(channels: int):
    def checks():
        ours, theirs = _modules(channels, "0e+1o")
        x, species = _inputs(channels)
        expected = theirs(x, torch.nn.functional.one_hot(species, ELEMENTS).float())
        return {"max_rel_diff_float32": float((ours(x, species) - expected).abs().max() / expected.abs().max())}

    return checks


def make_benchmark(quick: bool = False) -> Benchmark:
    channels = [32] if quick else [64, 128]
    cases = [
        Case(name=f"{measure} C={c} out={outputs}", params={"measure": measure, "channels": c, "outputs": outputs},
             providers={p: _factory(c, outputs, p, measure) for p in ("fastso3", "fastso3-factorized", "mace")})  # fmt: skip
        for measure in MEASURES
        for outputs in ("0e", "0e+1o")
        for c in channels
    ]
    timing = (
        {"warmup": 1, "min_repeats": 3, "max_repeats": 3, "min_time": 0.05, "block_time": 0.005}
        if quick
        else {"warmup": 2, "min_repeats": 5, "max_repeats": 20, "min_time": 0.5, "block_time": 0.02}
    )
    return Benchmark(
        name="symmetric",
        description="MACE symmetric contraction (C x (0e+1o+2e+3o) -> C x out, correlation 3, 10 elements, "
        "256 nodes), float32: fastso3's fused kernel and factorised torch path vs mace-torch 0.3.16",
        cases=cases,
        reference="mace",
        ratios=[("mace/fastso3", "mace", "fastso3"), ("factorized/fused", "fastso3-factorized", "fastso3")],
        settings={"dtype": "float32", "nodes": NODES, "elements": ELEMENTS, "quick": quick},
        plot_x="channels",
        plot_panels="measure",
        checks=_checks(channels[0]),
        timing=timing,
    )


if __name__ == "__main__":
    sys.exit(main(make_benchmark))
