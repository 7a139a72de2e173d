"""Benchmark ``tp``: tensor products, fastso3 against e3nn 0.6.0 with identical weights, float32.

Configurations (the tensor-product issue's table):

* ``tutorial``: the seed tutorial's ``FullyConnectedTensorProduct(10x0e+10x1e, sh(lmax=2), 20x0e+10x1e)``
  with per-sample weights, 2000 edges;
* ``uvu-L{1,2,3}``: MACE/NequIP-style channel-wise ``uvu`` products ``C x (0e+1o+...)`` (degrees <= L)
  times ``sh(L)`` into every reachable output of degree <= L, per-edge weights, C = 64, 5000 edges;
* ``square``: ``FullyConnectedTensorProduct(32x0e+32x1o+32x2e, same, same)``, shared weights, 5000 samples.

Measurements: ``forward``, and ``forward+backward`` (gradients w.r.t. both inputs and the weights).
The fastso3 module is ``fastso3.compat.from_e3nn`` of the e3nn module, so the weights are identical;
the outputs are cross-checked before timing.

Run: ``fastso3 bench tp [--quick]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Benchmark, Case, Unavailable, main

MEASURES = ("forward", "forward+backward")


def _e3nn_o3():
    try:
        from e3nn import o3
    except ImportError as exc:
        raise Unavailable("e3nn is not installed") from exc
    return o3


def _uvu(o3, channels: int, lmax: int):
    from fastso3.core.tensor_product_builders import channelwise_tensor_product_spec

    irreps_in1 = o3.Irreps([(channels, (l, (-1) ** l)) for l in range(lmax + 1)])
    irreps_sh = o3.Irreps.spherical_harmonics(lmax)
    keep = [(l, p) for l in range(lmax + 1) for p in (1, -1)]
    spec = channelwise_tensor_product_spec(str(irreps_in1), str(irreps_sh), keep)
    return o3.TensorProduct(irreps_in1, irreps_sh, str(spec["irreps_out"]), spec["instructions"], shared_weights=False)


def _configs(quick: bool) -> list[tuple[str, callable, int]]:
    scale = 10 if quick else 1
    return [
        (
            "tutorial",
            lambda o3: o3.FullyConnectedTensorProduct(
                "10x0e+10x1e", o3.Irreps.spherical_harmonics(2), "20x0e+10x1e", shared_weights=False
            ),
            2000 // scale,
        ),
        *[(f"uvu-L{l}", (lambda o3, l=l: _uvu(o3, 64, l)), 5000 // scale) for l in (1, 2, 3)],
        (
            "square",
            lambda o3: o3.FullyConnectedTensorProduct("32x0e+32x1o+32x2e", "32x0e+32x1o+32x2e", "32x0e+32x1o+32x2e"),
            5000 // scale,
        ),
    ]


def _build(make, n: int):
    """(e3nn module, fastso3 twin, inputs) with the same weights, float32."""
    o3 = _e3nn_o3()
    from fastso3.compat import from_e3nn

    torch.manual_seed(0)
    tp = make(o3)
    ours = from_e3nn(tp)
    gen = torch.Generator().manual_seed(1)
    x1 = torch.randn(n, tp.irreps_in1.dim, generator=gen)
    x2 = torch.randn(n, tp.irreps_in2.dim, generator=gen)
    w = None if tp.shared_weights else torch.randn(n, tp.weight_numel, generator=gen)
    return tp, ours, (x1, x2, w)


def _factory(make, n: int, which: str, measure: str):
    def factory():
        tp, ours, (x1, x2, w) = _build(make, n)
        module = tp if which == "e3nn" else ours
        if measure == "forward":
            args = (x1, x2) if w is None else (x1, x2, w)
            return lambda: module(*args)
        leaves = [t.clone().requires_grad_() for t in (x1, x2, w) if t is not None]
        g = torch.randn(n, tp.irreps_out.dim, generator=torch.Generator().manual_seed(2))

        def run():
            for t in leaves:
                t.grad = None
            module.zero_grad(set_to_none=True)
            module(*leaves).backward(g)
            return leaves[0].grad

        run()
        return run

    return factory


def _checks(quick: bool):
    def checks():
        out = {}
        for name, make, n in _configs(quick):
            tp, ours, (x1, x2, w) = _build(make, min(n, 200))
            args = (x1, x2) if w is None else (x1, x2, w)
            out[f"max_abs_diff_{name}"] = float((tp(*args) - ours(*args)).abs().max())
        return out

    return checks


def make_benchmark(quick: bool = False) -> Benchmark:
    cases = []
    for measure in MEASURES:
        for name, make, n in _configs(quick):
            cases.append(
                Case(
                    name=f"{measure} {name}",
                    params={"measure": measure, "config": name, "n": n},
                    providers={which: _factory(make, n, which, measure) for which in ("fastso3", "e3nn")},
                )
            )
    timing = (
        {"warmup": 1, "min_repeats": 3, "max_repeats": 10, "min_time": 0.05, "block_time": 0.005}
        if quick
        else {"warmup": 3, "min_repeats": 7, "max_repeats": 50, "min_time": 1.0, "block_time": 0.02}
    )
    return Benchmark(
        name="tp",
        description="tensor products (float32), fastso3 vs e3nn 0.6.0 with identical weights; forward and "
        "forward+backward (gradients w.r.t. both inputs and the weights)",
        cases=cases,
        reference="e3nn",
        ratios=[("e3nn/fastso3", "e3nn", "fastso3")],
        settings={"dtype": "float32", "quick": quick, "channels_uvu": 64},
        plot_panels="measure",
        checks=_checks(quick),
        timing=timing,
    )


if __name__ == "__main__":
    sys.exit(main(make_benchmark))
